//! Records that cross the store boundary.

use serde::Serialize;
use tether_core::{
    AccountRow, AccountType, Change, ExternalIdField, Origin, Outcome, Situation, UserRow,
};

/// A point in time, always UTC. Callers pass it; the store never reads the clock.
pub type Timestamp = time::OffsetDateTime;

/// A source to add.
#[derive(Clone, Debug)]
pub struct NewSource {
    pub name: String,
    /// `file`, `jira_cloud`, `jira_dc`, `scim`.
    pub kind: String,
    pub external_id_field: ExternalIdField,
    pub link_inactive: bool,
}

/// A source of accounts.
#[derive(Clone, Debug, Serialize)]
pub struct Source {
    #[serde(skip)]
    pub pk: i64,
    pub name: String,
    pub kind: String,
    pub external_id_field: ExternalIdField,
    pub link_inactive: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A user row from an import file, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    /// As given, trimmed; `None` when blank.
    pub email: Option<String>,
    /// The match key; `None` when blank or invalid.
    pub email_key: Option<String>,
    pub display_name: String,
    pub active: bool,
    /// `None` leaves the stored External ID alone.
    pub external_id: Option<String>,
}

/// An account row from an import file or a pull, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    pub account_id: String,
    pub username: Option<String>,
    pub key: Option<String>,
    pub email: Option<String>,
    pub email_key: Option<String>,
    pub display_name: String,
    pub active: bool,
    pub account_type: AccountType,
}

/// How an import writes.
#[derive(Clone, Debug)]
pub struct ImportOptions<'a> {
    pub actor: &'a str,
    pub at: Timestamp,
    /// Overwrite a stored External ID that differs from the file's.
    pub replace_external_ids: bool,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// External IDs written (each audited).
    pub external_ids_set: u64,
}

/// An outcome stored by an earlier run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOutcome {
    pub situation: Situation,
    /// [`tether_core::Evidence::encode`]'s text.
    pub evidence: String,
}

/// The engine's input for one source.
#[derive(Clone, Debug, Default)]
pub struct LinkInput {
    pub users: Vec<UserRow>,
    /// Aligned with `users`: the outcome the last run stored for this source.
    pub stored: Vec<Option<StoredOutcome>>,
    pub accounts: Vec<AccountRow>,
}

/// A run to record.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub source_pk: i64,
    /// `reconcile`, later `pull`.
    pub kind: String,
    pub dry_run: bool,
    pub external_id_field: ExternalIdField,
    pub actor: String,
    pub started_at: Timestamp,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunFinish {
    pub finished_at: Timestamp,
    /// `succeeded` or `failed`.
    pub state: String,
    /// JSON: the plan's situation counts and anything else worth keeping.
    pub summary: serde_json::Value,
    pub applied: u64,
}

/// A recorded run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub pk: i64,
    pub kind: String,
    pub dry_run: bool,
    pub external_id_field: ExternalIdField,
    pub actor: String,
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    pub summary: serde_json::Value,
    pub applied: u64,
}

/// One batch of a run's writes.
#[derive(Clone, Debug)]
pub struct ApplyBatch<'a> {
    pub source_pk: i64,
    pub run_pk: i64,
    pub origin: Origin,
    pub actor: &'a str,
    pub at: Timestamp,
    pub changes: &'a [Change],
    /// Outcomes that differ from the stored ones (changed users are settled by the store).
    pub outcomes: &'a [Outcome],
}

/// Which users to list.
#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    pub after_pk: Option<i64>,
    pub limit: u32,
    /// Only users whose stored outcome for this source is this situation.
    pub situation: Option<(i64, Situation)>,
}

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub pk: i64,
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_key: Option<String>,
    pub display_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    pub external_id_origin: Option<Origin>,
    pub external_id_set_at: Option<Timestamp>,
    pub excluded: bool,
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    pub pk: i64,
    pub source_pk: i64,
    pub account_id: String,
    pub username: Option<String>,
    pub key: Option<String>,
    pub email: Option<String>,
    pub email_key: Option<String>,
    pub display_name: String,
    pub active: bool,
    pub account_type: AccountType,
}

/// One entry of the append-only audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub pk: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    pub actor: String,
    pub origin: Origin,
    pub user_pk: i64,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub reason: String,
    pub run_pk: Option<i64>,
}

/// A bearer token to store (only its hash).
#[derive(Clone, Debug)]
pub struct NewToken {
    pub name: String,
    /// `admin` or `scim`.
    pub scope: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub created_at: Timestamp,
}
