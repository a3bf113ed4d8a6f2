//! tether-store: where users, accounts, sources, runs, outcomes, tokens and the audit trail
//! live. One [`Store`] trait, two implementations: SQLite (embedded default, one file, WAL)
//! and PostgreSQL (for several replicas). Both pass the same contract suite (`tests/`).
//!
//! Each trait method is one unit of work: one transaction, all or nothing.
//! Architecture invariant: only this crate knows SQL. It never reads the clock (callers pass
//! `at`), never decides a situation (the core does; see [`tether_core::settle`]), and knows
//! nothing of HTTP or the CLI.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
mod error;
pub mod jobs;
pub mod postgres;
pub mod scim;
pub mod signin;
pub mod sqlite;
mod types;

pub use error::{Result, StoreError};
pub use types::*;

use std::future::Future;
use tether_core::{ChangeResult, ExternalIdField, Situation};

/// The store's units of work. Every method runs in one transaction.
pub trait Store: Send + Sync {
    // --- sources -------------------------------------------------------------------------
    /// Adds a source; a taken name is `Conflict { constraint: "sources_name" }`.
    fn insert_source(
        &self,
        source: &NewSource,
        at: Timestamp,
    ) -> impl Future<Output = Result<Source>> + Send;
    fn find_source(&self, name: &str) -> impl Future<Output = Result<Option<Source>>> + Send;
    fn list_sources(&self) -> impl Future<Output = Result<Vec<Source>>> + Send;
    /// Changes a source's External ID field (the Pull User Data dropdown).
    fn update_source_field(
        &self,
        source_pk: i64,
        field: ExternalIdField,
    ) -> impl Future<Output = Result<()>> + Send;

    // --- bulk import -----------------------------------------------------------------------
    /// Inserts or updates users by `id`, all or nothing, in file order (so an External ID can
    /// move to a user once an earlier row took it from its holder). Rows must already be validated
    /// (unique ids and External IDs within the batch). An External ID held by another user
    /// is `Conflict { constraint: "users_external_id" }` naming nothing written. A row whose
    /// External ID is blank leaves the stored one alone; a row whose External ID differs
    /// from a stored non-null one is refused unless `replace_external_ids`. Every External
    /// ID written is audited with origin `import`. Re-importing the same rows writes nothing.
    fn import_users(
        &self,
        rows: &[NewUser],
        options: &ImportOptions<'_>,
    ) -> impl Future<Output = Result<ImportSummary>> + Send;
    /// Inserts or updates accounts of one source by `account_id`, all or nothing.
    /// Re-importing the same rows writes nothing.
    fn import_accounts(
        &self,
        source_pk: i64,
        rows: &[NewAccount],
        at: Timestamp,
    ) -> impl Future<Output = Result<ImportSummary>> + Send;

    // --- linking ---------------------------------------------------------------------------
    /// Everything the engine needs to plan one source: all users (with the outcome stored
    /// for this source by the last run, if any) and all of the source's accounts.
    fn load_link_input(&self, source_pk: i64) -> impl Future<Output = Result<LinkInput>> + Send;
    /// [`Store::load_link_input`] with only the account columns that planning with `field`
    /// needs (the others are `None`): on a large directory it saves the memory of the e-mails,
    /// usernames and keys a plan does not read. Plans made from either are identical.
    fn load_plan_input(
        &self,
        source_pk: i64,
        field: ExternalIdField,
    ) -> impl Future<Output = Result<LinkInput>> + Send;
    /// Records the start of a run and returns its key.
    fn insert_run(&self, run: &NewRun) -> impl Future<Output = Result<i64>> + Send;
    /// Writes one batch of a run in one transaction: each change only where the user's
    /// External ID still holds `change.old` (and the value is free), its audit entry, and the
    /// outcomes (for changed users, the settled outcome replaces the one given).
    /// Returns one result per change, in order.
    fn apply_batch(
        &self,
        batch: &ApplyBatch<'_>,
    ) -> impl Future<Output = Result<Vec<ChangeResult>>> + Send;
    /// Records the end of a run.
    fn finish_run(
        &self,
        run_pk: i64,
        finish: &RunFinish,
    ) -> impl Future<Output = Result<()>> + Send;
    /// A source's runs, newest first; an unfinished run's summary is `{}`.
    fn list_runs(
        &self,
        source_pk: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Run>>> + Send;

    // --- reading ---------------------------------------------------------------------------
    /// Users ordered by pk after `after_pk`, at most `limit`, optionally only those whose
    /// stored outcome for `situation.0` is `situation.1`.
    fn list_users(
        &self,
        filter: &UserFilter,
    ) -> impl Future<Output = Result<Vec<UserRecord>>> + Send;
    /// Users whose id, username or e-mail match key equals `ident` (in that order of
    /// preference: the first kind that matches anything wins).
    fn find_users(
        &self,
        ident: &str,
        email_key: Option<&str>,
    ) -> impl Future<Output = Result<Vec<UserRecord>>> + Send;
    /// Users in the order of `pks`; unknown keys are skipped (likewise `get_accounts_by_pk`).
    fn get_users_by_pk(&self, pks: &[i64]) -> impl Future<Output = Result<Vec<UserRecord>>> + Send;
    fn get_accounts_by_pk(
        &self,
        pks: &[i64],
    ) -> impl Future<Output = Result<Vec<AccountRecord>>> + Send;
    fn count_users(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Audit entries for one user (or all when `None`), newest first.
    fn list_audit(
        &self,
        user_pk: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send;

    // --- tokens ----------------------------------------------------------------------------
    /// Stores a token's hash; a taken name is `Conflict { constraint: "tokens_name" }`.
    fn insert_token(&self, token: &NewToken) -> impl Future<Output = Result<i64>> + Send;

    /// Answers when the store is reachable.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Stored outcome situations counted for one source.
pub fn situation_counts(input: &LinkInput) -> std::collections::BTreeMap<Situation, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for stored in input.stored.iter().flatten() {
        *counts.entry(stored.situation).or_insert(0) += 1;
    }
    counts
}

/// The condition that lets the partial index `outcomes_situation` (which leaves out `linked`)
/// serve a filter on any other situation.
pub(crate) fn partial_index_hint(situation: Situation) -> &'static str {
    if situation == Situation::Linked {
        ""
    } else {
        "AND o.situation <> 'linked'"
    }
}

/// Either store, chosen by the URL scheme.
pub enum AnyStore {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl AnyStore {
    /// Opens `sqlite:PATH` (created if missing) or `postgres://…`, and runs migrations.
    pub async fn open(url: &str) -> Result<AnyStore> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyStore::Postgres(postgres::PgStore::open(url).await?))
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            Ok(AnyStore::Sqlite(sqlite::SqliteStore::open(path).await?))
        } else {
            Err(StoreError::InvalidUrl(redact_url(url)))
        }
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            AnyStore::Sqlite(store) => store.$method($($arg),*).await,
            AnyStore::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store for AnyStore {
    async fn insert_source(&self, source: &NewSource, at: Timestamp) -> Result<Source> {
        delegate!(self, insert_source(source, at))
    }
    async fn find_source(&self, name: &str) -> Result<Option<Source>> {
        delegate!(self, find_source(name))
    }
    async fn list_sources(&self) -> Result<Vec<Source>> {
        delegate!(self, list_sources())
    }
    async fn update_source_field(&self, source_pk: i64, field: ExternalIdField) -> Result<()> {
        delegate!(self, update_source_field(source_pk, field))
    }
    async fn import_users(
        &self,
        rows: &[NewUser],
        options: &ImportOptions<'_>,
    ) -> Result<ImportSummary> {
        delegate!(self, import_users(rows, options))
    }
    async fn import_accounts(
        &self,
        source_pk: i64,
        rows: &[NewAccount],
        at: Timestamp,
    ) -> Result<ImportSummary> {
        delegate!(self, import_accounts(source_pk, rows, at))
    }
    async fn load_link_input(&self, source_pk: i64) -> Result<LinkInput> {
        delegate!(self, load_link_input(source_pk))
    }
    async fn load_plan_input(&self, source_pk: i64, field: ExternalIdField) -> Result<LinkInput> {
        delegate!(self, load_plan_input(source_pk, field))
    }
    async fn insert_run(&self, run: &NewRun) -> Result<i64> {
        delegate!(self, insert_run(run))
    }
    async fn apply_batch(&self, batch: &ApplyBatch<'_>) -> Result<Vec<ChangeResult>> {
        delegate!(self, apply_batch(batch))
    }
    async fn finish_run(&self, run_pk: i64, finish: &RunFinish) -> Result<()> {
        delegate!(self, finish_run(run_pk, finish))
    }
    async fn list_runs(&self, source_pk: i64, limit: u32) -> Result<Vec<Run>> {
        delegate!(self, list_runs(source_pk, limit))
    }
    async fn list_users(&self, filter: &UserFilter) -> Result<Vec<UserRecord>> {
        delegate!(self, list_users(filter))
    }
    async fn find_users(&self, ident: &str, email_key: Option<&str>) -> Result<Vec<UserRecord>> {
        delegate!(self, find_users(ident, email_key))
    }
    async fn get_users_by_pk(&self, pks: &[i64]) -> Result<Vec<UserRecord>> {
        delegate!(self, get_users_by_pk(pks))
    }
    async fn get_accounts_by_pk(&self, pks: &[i64]) -> Result<Vec<AccountRecord>> {
        delegate!(self, get_accounts_by_pk(pks))
    }
    async fn count_users(&self) -> Result<u64> {
        delegate!(self, count_users())
    }
    async fn list_audit(&self, user_pk: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        delegate!(self, list_audit(user_pk, limit))
    }
    async fn insert_token(&self, token: &NewToken) -> Result<i64> {
        delegate!(self, insert_token(token))
    }
    async fn ping(&self) -> Result<()> {
        delegate!(self, ping())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://tether:s3cret@db:5432/t"),
            "postgres://tether:***@db:5432/t"
        );
        assert_eq!(redact_url("postgres://db/t"), "postgres://db/t");
        assert_eq!(redact_url("sqlite:tether.db"), "sqlite:tether.db");
    }
}
