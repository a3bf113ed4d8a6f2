//! PostgreSQL store (stub).
#![allow(unused_variables, clippy::panic)]

use crate::*;
use tether_core::{ChangeResult, ExternalIdField};

/// STUB: being written.
pub struct PgStore;

impl PgStore {
    pub async fn open(_url: &str) -> Result<Self> {
        unimplemented!()
    }
}

impl Store for PgStore {
    async fn insert_source(&self, source: &NewSource, at: Timestamp) -> Result<Source> {
        unimplemented!()
    }
    async fn find_source(&self, name: &str) -> Result<Option<Source>> {
        unimplemented!()
    }
    async fn list_sources(&self) -> Result<Vec<Source>> {
        unimplemented!()
    }
    async fn update_source_field(&self, source_pk: i64, field: ExternalIdField) -> Result<()> {
        unimplemented!()
    }
    async fn import_users(&self, rows: &[NewUser], options: &ImportOptions<'_>) -> Result<ImportSummary> {
        unimplemented!()
    }
    async fn import_accounts(&self, source_pk: i64, rows: &[NewAccount], at: Timestamp) -> Result<ImportSummary> {
        unimplemented!()
    }
    async fn load_link_input(&self, source_pk: i64) -> Result<LinkInput> {
        unimplemented!()
    }
    async fn insert_run(&self, run: &NewRun) -> Result<i64> {
        unimplemented!()
    }
    async fn apply_batch(&self, batch: &ApplyBatch<'_>) -> Result<Vec<ChangeResult>> {
        unimplemented!()
    }
    async fn finish_run(&self, run_pk: i64, finish: &RunFinish) -> Result<()> {
        unimplemented!()
    }
    async fn list_runs(&self, source_pk: i64, limit: u32) -> Result<Vec<Run>> {
        unimplemented!()
    }
    async fn list_users(&self, filter: &UserFilter) -> Result<Vec<UserRecord>> {
        unimplemented!()
    }
    async fn find_users(&self, ident: &str, email_key: Option<&str>) -> Result<Vec<UserRecord>> {
        unimplemented!()
    }
    async fn get_users_by_pk(&self, pks: &[i64]) -> Result<Vec<UserRecord>> {
        unimplemented!()
    }
    async fn get_accounts_by_pk(&self, pks: &[i64]) -> Result<Vec<AccountRecord>> {
        unimplemented!()
    }
    async fn count_users(&self) -> Result<u64> {
        unimplemented!()
    }
    async fn list_audit(&self, user_pk: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        unimplemented!()
    }
    async fn insert_token(&self, token: &NewToken) -> Result<i64> {
        unimplemented!()
    }
    async fn ping(&self) -> Result<()> {
        unimplemented!()
    }
}

