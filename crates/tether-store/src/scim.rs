//! The `scim` units of work: trait, records, and the dispatch for [`crate::AnyStore`].
//!
//! SCIM users are the application's users (table `users`): `userName` is `username`,
//! `externalId` is the External ID, `active` and `displayName` are their columns, and what
//! has no column (name, all e-mails, the enterprise extension, …) is kept as a JSON object
//! (`scim_attributes`) so that a client reads back what it wrote. A SCIM DELETE only hides
//! the user (`scim_deleted_at`): the row, its External ID and its audit trail stay.
//!
//! This module stores and finds; it does not know the SCIM schemas or JSON shapes of the
//! protocol (the application layer renders and validates), nor HTTP.

use crate::{Result, Timestamp};
use std::future::Future;

/// A user as SCIM sees it. Users hidden by a SCIM DELETE are never returned.
#[derive(Clone, Debug, PartialEq)]
pub struct ScimUser {
    pub pk: i64,
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    /// Excluded from linking by an admin: its External ID is never changed.
    pub excluded: bool,
    /// The SCIM attributes without a column of their own: a JSON object (or `Null`).
    pub attributes: serde_json::Value,
    /// Set when SCIM created or last wrote the user; `None` for users imported otherwise.
    pub created_at: Option<Timestamp>,
    pub modified_at: Option<Timestamp>,
}

/// What a SCIM create or replace writes. Keys are computed by the caller (Rust) so that
/// both stores agree on Unicode case and e-mail normalization.
#[derive(Clone, Debug, PartialEq)]
pub struct ScimUserWrite {
    pub username: String,
    /// Unicode lower-case of `username`: unique among visible users for SCIM writes.
    pub username_key: String,
    pub email: Option<String>,
    /// [`tether_core::match_key`] of `email`; `None` when blank or invalid.
    pub email_key: Option<String>,
    pub display_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    pub attributes: serde_json::Value,
}

/// Who writes and when (the audit trail records both; origin is always `scim`).
#[derive(Clone, Copy, Debug)]
pub struct ScimContext<'a> {
    pub actor: &'a str,
    pub at: Timestamp,
}

/// One indexed equality; a list of them is their disjunction (`or`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScimLookup {
    Id(String),
    /// Unicode lower-case of the userName sought.
    UserNameKey(String),
    ExternalId(String),
    /// The match key of the e-mail sought.
    EmailKey(String),
}

/// Orders for paging users in SQL; every one ends with `pk` so pages never overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimUserOrder {
    Pk,
    Id,
    UserName,
    DisplayName,
    Email,
    Created,
    Modified,
}

/// Orders for paging groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimGroupOrder {
    Pk,
    Id,
    DisplayName,
    Created,
    Modified,
}

/// One page in SQL order.
#[derive(Clone, Copy, Debug)]
pub struct ScimPage<O> {
    pub order: O,
    pub descending: bool,
    /// Rows to skip (SCIM's `startIndex - 1`).
    pub offset: u64,
    pub limit: u32,
}

/// A member of a group, as rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimMember {
    pub user_id: String,
    /// The user's display name, or its username when that is empty.
    pub display: String,
}

/// A SCIM group.
#[derive(Clone, Debug, PartialEq)]
pub struct ScimGroup {
    pub pk: i64,
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub attributes: serde_json::Value,
    /// Visible users only, ordered by user id.
    pub members: Vec<ScimMember>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

/// What a SCIM group create or replace writes.
#[derive(Clone, Debug, PartialEq)]
pub struct ScimGroupWrite {
    pub display_name: String,
    /// Unicode lower-case of `display_name`: unique.
    pub display_name_key: String,
    pub external_id: Option<String>,
    pub attributes: serde_json::Value,
    /// User ids; an unknown or hidden one is `StoreError::NotFound` naming it.
    pub members: Vec<String>,
}

/// The constraint name of a taken userName in [`crate::StoreError::Conflict`].
pub const USERNAME_CONSTRAINT: &str = "users_username_key";
/// The constraint name of a taken group displayName.
pub const GROUP_NAME_CONSTRAINT: &str = "groups_display_name";

/// The SCIM units of work. Each method is one transaction. Conflicts are
/// `StoreError::Conflict` whose message names the holder's id: `users_username_key`,
/// `users_external_id`, `users_id`, `groups_display_name`, `groups_id`.
pub trait ScimStore: Send + Sync {
    /// Visible users.
    fn count_scim_users(&self) -> impl Future<Output = Result<u64>> + Send;
    fn find_scim_user(&self, id: &str) -> impl Future<Output = Result<Option<ScimUser>>> + Send;
    /// Visible users matching any of `lookups`, by pk, at most `limit`.
    fn find_scim_users(
        &self,
        lookups: &[ScimLookup],
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ScimUser>>> + Send;
    /// One page of visible users.
    fn list_scim_users(
        &self,
        page: &ScimPage<ScimUserOrder>,
    ) -> impl Future<Output = Result<Vec<ScimUser>>> + Send;
    /// Creates a user with id `id`. A userName another visible user holds (any case) or an
    /// External ID any user holds is a `Conflict`; nothing is written. A set External ID is
    /// audited (origin `scim`).
    fn insert_scim_user(
        &self,
        id: &str,
        user: &ScimUserWrite,
        context: ScimContext<'_>,
    ) -> impl Future<Output = Result<ScimUser>> + Send;
    /// Reads the visible user `id` under a write lock, asks `change` for the new state, and
    /// writes it in the same transaction (so the write applies to exactly the state the
    /// caller saw). `change`'s refusal is returned as the inner error with nothing written.
    /// A changed userName or External ID is checked as on insert; a changed External ID is
    /// audited. Absent or hidden: `NotFound`.
    fn update_scim_user<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> impl Future<Output = Result<std::result::Result<ScimUser, E>>> + Send
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<ScimUserWrite, E> + Send;
    /// Hides the visible user `id` from SCIM (and deactivates it, and drops its group
    /// memberships) once `check` accepts its current state. Absent or hidden: `NotFound`.
    fn delete_scim_user<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        check: F,
    ) -> impl Future<Output = Result<std::result::Result<(), E>>> + Send
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<(), E> + Send;

    fn count_scim_groups(&self) -> impl Future<Output = Result<u64>> + Send;
    fn find_scim_group(&self, id: &str) -> impl Future<Output = Result<Option<ScimGroup>>> + Send;
    /// Groups whose displayName key is `display_name_key` (zero or one).
    fn find_scim_groups_by_name(
        &self,
        display_name_key: &str,
    ) -> impl Future<Output = Result<Vec<ScimGroup>>> + Send;
    fn list_scim_groups(
        &self,
        page: &ScimPage<ScimGroupOrder>,
    ) -> impl Future<Output = Result<Vec<ScimGroup>>> + Send;
    fn insert_scim_group(
        &self,
        id: &str,
        group: &ScimGroupWrite,
        context: ScimContext<'_>,
    ) -> impl Future<Output = Result<ScimGroup>> + Send;
    /// Like [`ScimStore::update_scim_user`], for groups (members are replaced as given).
    fn update_scim_group<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> impl Future<Output = Result<std::result::Result<ScimGroup, E>>> + Send
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<ScimGroupWrite, E> + Send;
    /// Deletes a group and its memberships (users are untouched).
    fn delete_scim_group<E, F>(
        &self,
        id: &str,
        check: F,
    ) -> impl Future<Output = Result<std::result::Result<(), E>>> + Send
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<(), E> + Send;
}

/// The Unicode lower-case key of a userName or group displayName. Both stores compare these
/// keys byte for byte; SQL's lower() is ASCII-only on both, so the key is always computed here.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            crate::AnyStore::Sqlite(store) => store.$method($($arg),*).await,
            crate::AnyStore::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl ScimStore for crate::AnyStore {
    async fn count_scim_users(&self) -> Result<u64> {
        delegate!(self, count_scim_users())
    }
    async fn find_scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        delegate!(self, find_scim_user(id))
    }
    async fn find_scim_users(&self, lookups: &[ScimLookup], limit: u32) -> Result<Vec<ScimUser>> {
        delegate!(self, find_scim_users(lookups, limit))
    }
    async fn list_scim_users(&self, page: &ScimPage<ScimUserOrder>) -> Result<Vec<ScimUser>> {
        delegate!(self, list_scim_users(page))
    }
    async fn insert_scim_user(
        &self,
        id: &str,
        user: &ScimUserWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimUser> {
        delegate!(self, insert_scim_user(id, user, context))
    }
    async fn update_scim_user<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> Result<std::result::Result<ScimUser, E>>
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<ScimUserWrite, E> + Send,
    {
        delegate!(self, update_scim_user(id, context, change))
    }
    async fn delete_scim_user<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        check: F,
    ) -> Result<std::result::Result<(), E>>
    where
        E: Send,
        F: FnOnce(&ScimUser) -> std::result::Result<(), E> + Send,
    {
        delegate!(self, delete_scim_user(id, context, check))
    }
    async fn count_scim_groups(&self) -> Result<u64> {
        delegate!(self, count_scim_groups())
    }
    async fn find_scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        delegate!(self, find_scim_group(id))
    }
    async fn find_scim_groups_by_name(&self, display_name_key: &str) -> Result<Vec<ScimGroup>> {
        delegate!(self, find_scim_groups_by_name(display_name_key))
    }
    async fn list_scim_groups(&self, page: &ScimPage<ScimGroupOrder>) -> Result<Vec<ScimGroup>> {
        delegate!(self, list_scim_groups(page))
    }
    async fn insert_scim_group(
        &self,
        id: &str,
        group: &ScimGroupWrite,
        context: ScimContext<'_>,
    ) -> Result<ScimGroup> {
        delegate!(self, insert_scim_group(id, group, context))
    }
    async fn update_scim_group<E, F>(
        &self,
        id: &str,
        context: ScimContext<'_>,
        change: F,
    ) -> Result<std::result::Result<ScimGroup, E>>
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<ScimGroupWrite, E> + Send,
    {
        delegate!(self, update_scim_group(id, context, change))
    }
    async fn delete_scim_group<E, F>(
        &self,
        id: &str,
        check: F,
    ) -> Result<std::result::Result<(), E>>
    where
        E: Send,
        F: FnOnce(&ScimGroup) -> std::result::Result<(), E> + Send,
    {
        delegate!(self, delete_scim_group(id, check))
    }
}
