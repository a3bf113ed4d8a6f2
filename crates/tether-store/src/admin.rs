//! The `admin` units of work: administrators, browser sessions, settings, tokens, source
//! connections, hand edits of External IDs, the event log, and the reads the admin UI needs
//! (user search, filtered audit). Trait, records, and the dispatch for [`crate::AnyStore`].

use crate::{AnyStore, AuditEntry, Result, Timestamp, UserRecord};
use serde::{Deserialize, Serialize};
use std::future::Future;
use tether_core::{ChangeResult, Origin};

/// A local administrator.
#[derive(Clone, Debug)]
pub struct Admin {
    pub pk: i64,
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// A browser session to store.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// Hex SHA-256 of the cookie value.
    pub id_hash: String,
    /// `admin:NAME` for a local administrator, `user:ID` for a signed-in user.
    pub principal: String,
    pub is_admin: bool,
    pub user_pk: Option<i64>,
    pub csrf: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A stored session.
#[derive(Clone, Debug)]
pub struct Session {
    pub pk: i64,
    pub principal: String,
    pub is_admin: bool,
    pub user_pk: Option<i64>,
    pub csrf: String,
    pub expires_at: Timestamp,
}

/// Settings › Security (DESIGN §1, §4.3, §4.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Auto-populate account ID: link at sign-in by verified e-mail.
    pub auto_populate: bool,
    /// Sign-in linking requires `email_verified = true` (on by default).
    pub require_verified_email: bool,
    /// Pull jobs may link inactive accounts (sources can also say so).
    pub link_inactive: bool,
    /// A job that would change more than this share of users waits for approval.
    pub mass_change_threshold_percent: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            auto_populate: false,
            require_verified_email: true,
            link_inactive: false,
            mass_change_threshold_percent: 20,
        }
    }
}

/// A bearer token as listed (never its value or hash).
#[derive(Clone, Debug, Serialize)]
pub struct TokenRecord {
    pub pk: i64,
    pub name: String,
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<Timestamp>,
}

/// A source's connection: settings JSON and the sealed secret.
#[derive(Clone, Debug, Default)]
pub struct SourceConnection {
    pub settings: String,
    pub sealed_secret: Option<Vec<u8>>,
}

/// Changes to a source; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct SourceUpdate {
    pub external_id_field: Option<tether_core::ExternalIdField>,
    pub link_inactive: Option<bool>,
    pub settings: Option<String>,
    /// `Some(None)` removes the secret.
    pub sealed_secret: Option<Option<Vec<u8>>>,
}

/// Which audit entries to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub before_pk: Option<i64>,
    pub limit: u32,
    pub user_pk: Option<i64>,
    pub origin: Option<Origin>,
    pub actor: Option<String>,
}

/// A user search: `query` is matched, without case, as a prefix of the display name or the
/// e-mail match key, or exactly against the id, the username or the External ID. (Each arm
/// is an index range; a username prefix index would cost every External ID write one more
/// index entry, for little.)
#[derive(Clone, Debug, Default)]
pub struct UserSearch {
    pub query: String,
    pub after_pk: Option<i64>,
    pub limit: u32,
}

/// An External ID set or cleared by hand.
#[derive(Clone, Debug)]
pub struct ExternalIdEdit<'a> {
    pub user_pk: i64,
    /// What the admin saw: the write happens only if the user still holds it.
    pub expected: Option<&'a str>,
    pub new: Option<&'a str>,
    pub origin: Origin,
    pub actor: &'a str,
    pub reason: &'a str,
    pub at: Timestamp,
}

/// An administrative event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub pk: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    pub detail: String,
}

/// An event to record.
#[derive(Clone, Debug)]
pub struct NewEvent<'a> {
    pub at: Timestamp,
    pub actor: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub detail: &'a str,
}

/// Units of work of the admin server. Every method runs in one transaction.
pub trait AdminStore: Send + Sync {
    /// Adds an administrator; a taken name is `Conflict { constraint: "admins_username" }`.
    fn insert_admin(
        &self,
        username: &str,
        password_hash: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<i64>> + Send;
    fn find_admin(&self, username: &str) -> impl Future<Output = Result<Option<Admin>>> + Send;
    fn count_admins(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Changes an administrator's password hash; `NotFound` when there is no such admin.
    fn update_admin_password(
        &self,
        username: &str,
        password_hash: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    fn insert_session(&self, session: &NewSession) -> impl Future<Output = Result<()>> + Send;
    /// A session that has not expired at `now`.
    fn find_session(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;
    /// Ends a session, and every session that expired before `now`.
    fn delete_session(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Ends every session of someone who signed in through the identity platform (every
    /// principal but `admin:NAME`); returns how many. For a change of the sign-in settings.
    fn end_platform_sessions(&self) -> impl Future<Output = Result<u64>> + Send;
    /// The settings, with defaults for keys never saved.
    fn get_settings(&self) -> impl Future<Output = Result<Settings>> + Send;
    /// Saves the settings and records an event naming what changed.
    fn update_settings(
        &self,
        settings: &Settings,
        actor: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The JSON document stored under `key` (e.g. `oidc`, the sign-in settings), if any. The
    /// store does not read it; the Security keys of [`Settings`] are not documents.
    fn find_setting_document(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Stores `value` under `key` only if the stored document is still `expected` (what the
    /// caller read: `None` for none), and records `event` in the same transaction. `Ok(false)`:
    /// someone else saved first and nothing was written. The Security keys are refused
    /// (`Invalid`).
    fn put_setting_document(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        event: &NewEvent<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn list_tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send;
    /// A token that is not revoked, by hash; marks it used at `at`.
    fn find_token(
        &self,
        hash: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<TokenRecord>>> + Send;
    /// Revokes a token; `NotFound` when there is no such token, a no-op when already revoked.
    fn revoke_token(&self, pk: i64, at: Timestamp) -> impl Future<Output = Result<()>> + Send;

    fn get_source_connection(
        &self,
        source_pk: i64,
    ) -> impl Future<Output = Result<SourceConnection>> + Send;
    fn update_source(
        &self,
        source_pk: i64,
        update: &SourceUpdate,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The user with this id; `NotFound` when absent.
    fn get_user(&self, id: &str) -> impl Future<Output = Result<UserRecord>> + Send;
    fn search_users(
        &self,
        search: &UserSearch,
    ) -> impl Future<Output = Result<Vec<UserRecord>>> + Send;
    fn list_audit_page(
        &self,
        filter: &AuditFilter,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send;

    /// Sets or clears one user's External ID under the engine's safety rules: only when it
    /// still holds `expected`, never on an excluded user, never to a value another user holds
    /// (`Taken`). A write is audited and forgets the user's stored outcomes (they were
    /// planned against the old value; the next run plans the user again).
    fn set_external_id(
        &self,
        edit: &ExternalIdEdit<'_>,
    ) -> impl Future<Output = Result<ChangeResult>> + Send;
    /// Marks a user excluded (never changed by runs) or included again; records an event.
    fn set_excluded(
        &self,
        user_pk: i64,
        excluded: bool,
        actor: &str,
        reason: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The outcome the last run stored for this user and source.
    fn find_outcome(
        &self,
        source_pk: i64,
        user_pk: i64,
    ) -> impl Future<Output = Result<Option<crate::StoredOutcome>>> + Send;

    fn insert_event(&self, event: &NewEvent<'_>) -> impl Future<Output = Result<()>> + Send;
    fn list_events(
        &self,
        before_pk: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl AdminStore for AnyStore {
    async fn insert_admin(&self, username: &str, hash: &str, at: Timestamp) -> Result<i64> {
        dispatch!(self, s => s.insert_admin(username, hash, at))
    }
    async fn find_admin(&self, username: &str) -> Result<Option<Admin>> {
        dispatch!(self, s => s.find_admin(username))
    }
    async fn count_admins(&self) -> Result<u64> {
        dispatch!(self, s => s.count_admins())
    }
    async fn update_admin_password(&self, username: &str, hash: &str) -> Result<()> {
        dispatch!(self, s => s.update_admin_password(username, hash))
    }
    async fn insert_session(&self, session: &NewSession) -> Result<()> {
        dispatch!(self, s => s.insert_session(session))
    }
    async fn find_session(&self, id_hash: &str, now: Timestamp) -> Result<Option<Session>> {
        dispatch!(self, s => s.find_session(id_hash, now))
    }
    async fn delete_session(&self, id_hash: &str, now: Timestamp) -> Result<()> {
        dispatch!(self, s => s.delete_session(id_hash, now))
    }
    async fn end_platform_sessions(&self) -> Result<u64> {
        dispatch!(self, s => s.end_platform_sessions())
    }
    async fn get_settings(&self) -> Result<Settings> {
        dispatch!(self, s => s.get_settings())
    }
    async fn update_settings(&self, settings: &Settings, actor: &str, at: Timestamp) -> Result<()> {
        dispatch!(self, s => s.update_settings(settings, actor, at))
    }
    async fn find_setting_document(&self, key: &str) -> Result<Option<String>> {
        dispatch!(self, s => s.find_setting_document(key))
    }
    async fn put_setting_document(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        event: &NewEvent<'_>,
    ) -> Result<bool> {
        dispatch!(self, s => s.put_setting_document(key, expected, value, event))
    }
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        dispatch!(self, s => s.list_tokens())
    }
    async fn find_token(&self, hash: &str, at: Timestamp) -> Result<Option<TokenRecord>> {
        dispatch!(self, s => s.find_token(hash, at))
    }
    async fn revoke_token(&self, pk: i64, at: Timestamp) -> Result<()> {
        dispatch!(self, s => s.revoke_token(pk, at))
    }
    async fn get_source_connection(&self, source_pk: i64) -> Result<SourceConnection> {
        dispatch!(self, s => s.get_source_connection(source_pk))
    }
    async fn update_source(&self, source_pk: i64, update: &SourceUpdate) -> Result<()> {
        dispatch!(self, s => s.update_source(source_pk, update))
    }
    async fn get_user(&self, id: &str) -> Result<UserRecord> {
        dispatch!(self, s => s.get_user(id))
    }
    async fn search_users(&self, search: &UserSearch) -> Result<Vec<UserRecord>> {
        dispatch!(self, s => s.search_users(search))
    }
    async fn list_audit_page(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        dispatch!(self, s => s.list_audit_page(filter))
    }
    async fn set_external_id(&self, edit: &ExternalIdEdit<'_>) -> Result<ChangeResult> {
        dispatch!(self, s => s.set_external_id(edit))
    }
    async fn set_excluded(
        &self,
        user_pk: i64,
        excluded: bool,
        actor: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        dispatch!(self, s => s.set_excluded(user_pk, excluded, actor, reason, at))
    }
    async fn find_outcome(
        &self,
        source_pk: i64,
        user_pk: i64,
    ) -> Result<Option<crate::StoredOutcome>> {
        dispatch!(self, s => s.find_outcome(source_pk, user_pk))
    }
    async fn insert_event(&self, event: &NewEvent<'_>) -> Result<()> {
        dispatch!(self, s => s.insert_event(event))
    }
    async fn list_events(&self, before_pk: Option<i64>, limit: u32) -> Result<Vec<Event>> {
        dispatch!(self, s => s.list_events(before_pk, limit))
    }
}

/// The upper bound of a prefix range: `prefix` followed by the highest code point, so that
/// `key >= prefix AND key < upper` selects exactly the keys starting with `prefix`.
pub(crate) fn prefix_upper(prefix: &str) -> String {
    let mut upper = prefix.to_owned();
    upper.push(char::MAX);
    upper
}

/// The keys of [`Settings`], one row each.
pub(crate) const SETTINGS_KEYS: [&str; 4] = [
    "auto_populate",
    "require_verified_email",
    "link_inactive",
    "mass_change_threshold_percent",
];

/// Refuses a document key that is one of the Security settings' keys.
pub(crate) fn check_document_key(key: &str) -> Result<()> {
    if key.is_empty() || SETTINGS_KEYS.contains(&key) {
        return Err(crate::StoreError::Invalid(format!(
            "'{key}' is not a settings document key"
        )));
    }
    Ok(())
}

/// The settings' keys as stored, with their JSON values.
pub(crate) fn settings_rows(settings: &Settings) -> Result<Vec<(&'static str, String)>> {
    let value = serde_json::to_value(settings)
        .map_err(|e| crate::StoreError::Corrupt(format!("settings: {e}")))?;
    let mut rows = Vec::new();
    for key in SETTINGS_KEYS {
        let v = value.get(key).cloned().unwrap_or(serde_json::Value::Null);
        rows.push((key, v.to_string()));
    }
    Ok(rows)
}

/// Settings from stored `(key, JSON value)` rows; unknown keys are ignored (a newer tether
/// may have written them), missing ones take their defaults.
pub(crate) fn settings_from_rows(rows: Vec<(String, String)>) -> Result<Settings> {
    let mut object = serde_json::to_value(Settings::default())
        .map_err(|e| crate::StoreError::Corrupt(format!("settings: {e}")))?;
    if let Some(map) = object.as_object_mut() {
        for (key, value) in rows {
            if map.contains_key(&key) {
                let parsed: serde_json::Value = serde_json::from_str(&value)
                    .map_err(|e| crate::StoreError::Corrupt(format!("setting {key}: {e}")))?;
                map.insert(key, parsed);
            }
        }
    }
    serde_json::from_value(object).map_err(|e| crate::StoreError::Corrupt(format!("settings: {e}")))
}
