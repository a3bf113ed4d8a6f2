//! The SQLite store: the embedded default, one file in WAL mode.
//!
//! Built on rusqlite rather than sqlx: the link engine reads a million users and writes as
//! many rows per run, and a direct prepared statement is several times cheaper per row than
//! sqlx's worker-thread channel (see ARCHITECTURE.md, "Why rusqlite"). Writes go through one
//! connection (SQLite has one writer); reads take a connection from a small pool, so a long
//! read never waits for a write. Work runs on the calling thread through
//! `tokio::task::block_in_place` when the runtime allows it.

// Units of work for each feature, in files of their own (they see this module's helpers).
mod admin;
mod jobs;
mod scim;
mod signin;

use crate::*;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use std::collections::HashSet;
use std::sync::{Condvar, Mutex};
use tether_core::{
    settle, AccountRow, AccountType, ChangeResult, ExternalIdField, Origin, Situation, UserRow,
};
use time::format_description::well_known::Rfc3339;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_admin.sql")),
    (3, include_str!("../migrations/sqlite/0003_jobs.sql")),
    (4, include_str!("../migrations/sqlite/0004_scim.sql")),
    (5, include_str!("../migrations/sqlite/0005_signin.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_oidc_login_provider.sql"),
    ),
];
/// Reader connections, opened on demand and kept. A read waits for one when all are busy
/// rather than opening another: opening costs the schema's parse and the PRAGMAs, which under
/// concurrent reads (SCIM lookups) cost more than the wait. Each keeps its own page cache
/// (`READER_CACHE_KIB`), so this also bounds memory.
const READERS: usize = 8;
/// The page cache of each reader connection (the writer's is `WRITER_CACHE_KIB`).
const READER_CACHE_KIB: i64 = 65_536;
/// The page cache of the writer connection.
const WRITER_CACHE_KIB: i64 = 131_072;

/// The reader connections: those idle, and how many are open in all.
#[derive(Default)]
struct Readers {
    idle: Vec<Connection>,
    open: usize,
}

/// A SQLite database file.
pub struct SqliteStore {
    path: String,
    writer: Mutex<Connection>,
    readers: Mutex<Readers>,
    /// Signalled when a reader connection is returned (or one fewer is open).
    reader_returned: Condvar,
    /// Tells the checkpointer thread to stop when the store is dropped.
    checkpointer_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// WAL pages after which a commit checkpoints by itself. The background checkpointer keeps
/// the WAL far below this, so a commit (a sign-in, a SCIM write) rarely pays for a
/// checkpoint; the limit is the fallback if that thread cannot keep up.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// Checkpoints the WAL in the background (PASSIVE: never blocks readers or the writer).
fn spawn_checkpointer(path: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("tether-sqlite-checkpoint".to_owned())
        .spawn(move || {
            let mut connection: Option<Connection> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if connection.is_none() {
                    connection = connect(&path, false, READER_CACHE_KIB).ok();
                }
                if let Some(c) = &connection {
                    if c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").is_err() {
                        connection = None;
                    }
                }
            }
        });
    // Without the thread, commits checkpoint by themselves (WAL_AUTOCHECKPOINT_PAGES).
    drop(spawned);
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and migrates it.
    pub async fn open(path: &str) -> Result<Self> {
        let mut writer = connect(path, true, WRITER_CACHE_KIB)?;
        migrate(&mut writer)?;
        writer.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
        ))?;
        let checkpointer_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !path.contains(":memory:") && !path.contains("mode=memory") {
            spawn_checkpointer(path.to_owned(), checkpointer_stop.clone());
        }
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Readers::default()),
            reader_returned: Condvar::new(),
            checkpointer_stop,
        })
    }

    fn write<T>(&self, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        blocking(|| {
            let mut connection = self
                .writer
                .lock()
                .map_err(|_| StoreError::Task("writer lock poisoned".into()))?;
            work(&mut connection)
        })
    }

    fn read<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        blocking(|| {
            let connection = self.take_reader()?;
            // Given back even if `work` panics.
            let reader = ReaderGuard {
                store: self,
                connection: Some(connection),
            };
            match &reader.connection {
                Some(connection) => work(connection),
                None => Err(StoreError::Task("reader connection missing".into())),
            }
        })
    }

    /// An idle reader, a new one while fewer than [`READERS`] are open, else the next one
    /// returned.
    fn take_reader(&self) -> Result<Connection> {
        let poisoned = || StoreError::Task("reader pool poisoned".into());
        let mut readers = self.readers.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(connection) = readers.idle.pop() {
                return Ok(connection);
            }
            if readers.open < READERS {
                readers.open += 1;
                drop(readers);
                return match connect(&self.path, false, READER_CACHE_KIB) {
                    Ok(connection) => Ok(connection),
                    Err(e) => {
                        if let Ok(mut readers) = self.readers.lock() {
                            readers.open -= 1;
                        }
                        self.reader_returned.notify_one();
                        Err(e)
                    }
                };
            }
            readers = self.reader_returned.wait(readers).map_err(|_| poisoned())?;
        }
    }
}

/// A reader connection on loan; returned to the pool when dropped.
struct ReaderGuard<'a> {
    store: &'a SqliteStore,
    connection: Option<Connection>,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut readers) = self.store.readers.lock() {
            match self.connection.take() {
                // A connection whose work panicked mid-transaction is not reused.
                Some(connection) if !std::thread::panicking() => readers.idle.push(connection),
                _ => readers.open -= 1,
            }
        }
        self.store.reader_returned.notify_one();
    }
}

/// Runs blocking database work without stalling other tasks on a multi-thread runtime.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

fn connect(path: &str, create: bool, cache_kib: i64) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let connection = Connection::open_with_flags(path, flags)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 10000;
         PRAGMA temp_store = MEMORY;",
    )?;
    connection.execute_batch(&format!("PRAGMA cache_size = -{cache_kib};"))?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> Result<()> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    )?;
    for (version, sql) in MIGRATIONS {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !applied {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                [version],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Timestamps are stored as RFC 3339 text in UTC with exactly six fraction digits, so they
/// sort as text and round-trip to the microsecond, as PostgreSQL's `timestamptz` does.
fn ts(at: Timestamp) -> Result<String> {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let micros = utc.nanosecond() / 1_000 * 1_000;
    let utc = utc
        .replace_nanosecond(micros)
        .map_err(|e| StoreError::Corrupt(format!("timestamp: {e}")))?;
    utc.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .map_err(|e| StoreError::Corrupt(format!("timestamp: {e}")))
}

fn require_source(c: &Connection, source_pk: i64) -> Result<()> {
    let exists: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sources WHERE pk = ?1)",
        [source_pk],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("source {source_pk}")))
    }
}

fn parse_ts(text: &str) -> rusqlite::Result<Timestamp> {
    Timestamp::parse(text, &Rfc3339).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn parse_name<T: std::str::FromStr>(text: &str) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse::<T>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Turns a unique-constraint failure into [`StoreError::Conflict`] named like the schema's
/// constraints; everything else passes through.
fn conflict(error: rusqlite::Error, value: &str) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &error {
        if failure.code == rusqlite::ErrorCode::ConstraintViolation && message.starts_with("UNIQUE")
        {
            let constraint = match message.trim_start_matches("UNIQUE constraint failed: ") {
                "users.id" => "users_id",
                "users.external_id" => "users_external_id",
                "sources.name" => "sources_name",
                "accounts.source_pk, accounts.account_id" => "accounts_source_account_id",
                "tokens.name" => "tokens_name",
                "tokens.hash" => "tokens_hash",
                "admins.username" => "admins_username",
                "sessions.id_hash" => "sessions_id_hash",
                _ => "unknown",
            };
            return StoreError::Conflict {
                constraint,
                message: format!("'{value}' is already taken ({constraint})"),
            };
        }
    }
    StoreError::Sqlite(error)
}

const SOURCE_COLUMNS: &str = "pk, name, kind, external_id_field, link_inactive, created_at";

fn source_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Source> {
    Ok(Source {
        pk: row.get(0)?,
        name: row.get(1)?,
        kind: row.get(2)?,
        external_id_field: parse_name(&row.get::<_, String>(3)?)?,
        link_inactive: row.get(4)?,
        created_at: parse_ts(&row.get::<_, String>(5)?)?,
    })
}

const USER_COLUMNS: &str =
    "u.pk, u.id, u.username, u.email, u.email_key, u.display_name, u.active, \
     u.external_id, u.external_id_origin, u.external_id_set_at, u.excluded";

fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        pk: row.get(0)?,
        id: row.get(1)?,
        username: row.get(2)?,
        email: row.get(3)?,
        email_key: row.get(4)?,
        display_name: row.get(5)?,
        active: row.get(6)?,
        external_id: row.get(7)?,
        external_id_origin: row
            .get::<_, Option<String>>(8)?
            .map(|o| parse_name::<Origin>(&o))
            .transpose()?,
        external_id_set_at: row
            .get::<_, Option<String>>(9)?
            .map(|t| parse_ts(&t))
            .transpose()?,
        excluded: row.get(10)?,
    })
}

const ACCOUNT_COLUMNS: &str =
    "pk, source_pk, account_id, username, key, email, email_key, display_name, active, account_type";

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        pk: row.get(0)?,
        source_pk: row.get(1)?,
        account_id: row.get(2)?,
        username: row.get(3)?,
        key: row.get(4)?,
        email: row.get(5)?,
        email_key: row.get(6)?,
        display_name: row.get(7)?,
        active: row.get(8)?,
        account_type: parse_name(&row.get::<_, String>(9)?)?,
    })
}

fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let summary: String = row.get(8)?;
    Ok(Run {
        pk: row.get(0)?,
        kind: row.get(1)?,
        dry_run: row.get(2)?,
        external_id_field: parse_name(&row.get::<_, String>(3)?)?,
        actor: row.get(4)?,
        state: row.get(5)?,
        started_at: parse_ts(&row.get::<_, String>(6)?)?,
        finished_at: row
            .get::<_, Option<String>>(7)?
            .map(|t| parse_ts(&t))
            .transpose()?,
        summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
        applied: row.get::<_, i64>(9)? as u64,
    })
}

/// One audit row to append.
struct AuditWrite<'a> {
    at: &'a str,
    actor: &'a str,
    origin: Origin,
    user_pk: i64,
    old: Option<&'a str>,
    new: Option<&'a str>,
    reason: &'a str,
    run_pk: Option<i64>,
}

fn insert_audit(tx: &Transaction<'_>, entry: AuditWrite<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        entry.at,
        entry.actor,
        entry.origin.as_str(),
        entry.user_pk,
        entry.old,
        entry.new,
        entry.reason,
        entry.run_pk
    ])?;
    Ok(())
}

fn apply_one(
    tx: &Transaction<'_>,
    batch: &ApplyBatch<'_>,
    at: &str,
    change: &tether_core::Change,
) -> Result<ChangeResult> {
    // The unique index on external_id refuses a value another user holds; SQLite then undoes
    // just this statement, and the user is classified below as Taken.
    let written = tx
        .prepare_cached(
            "UPDATE users SET external_id = ?1, external_id_origin = ?2, external_id_set_at = ?3
             WHERE pk = ?4 AND external_id IS ?5 AND excluded = 0",
        )?
        .execute(params![
            change.new,
            batch.origin.as_str(),
            at,
            change.user_pk,
            change.old
        ]);
    let written = match written {
        Ok(n) => n,
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            0
        }
        Err(e) => return Err(e.into()),
    };
    if written == 1 {
        insert_audit(
            tx,
            AuditWrite {
                at,
                actor: batch.actor,
                origin: batch.origin,
                user_pk: change.user_pk,
                old: change.old.as_deref(),
                new: Some(&change.new),
                reason: "new_link",
                run_pk: Some(batch.run_pk),
            },
        )?;
        return Ok(ChangeResult::Applied);
    }
    let current: Option<(Option<String>, bool)> = tx
        .prepare_cached("SELECT external_id, excluded FROM users WHERE pk = ?1")?
        .query_row([change.user_pk], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match current {
        None => ChangeResult::Gone,
        Some((Some(value), _)) if value == change.new => ChangeResult::AlreadySet,
        Some((value, _)) if value != change.old => ChangeResult::Changed {
            current: value.unwrap_or_default(),
        },
        Some((_, true)) => ChangeResult::Excluded,
        Some(_) => {
            let holder: Option<i64> = tx
                .prepare_cached("SELECT pk FROM users WHERE external_id = ?1")?
                .query_row([&change.new], |r| r.get(0))
                .optional()?;
            match holder {
                Some(holder_pk) => ChangeResult::Taken { holder_pk },
                None => ChangeResult::Changed {
                    current: String::new(),
                },
            }
        }
    })
}

fn upsert_outcome(
    tx: &Transaction<'_>,
    source_pk: i64,
    run_pk: i64,
    outcome: &tether_core::Outcome,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO outcomes (source_pk, user_pk, situation, evidence, run_pk) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (source_pk, user_pk) DO UPDATE
         SET situation = excluded.situation, evidence = excluded.evidence, run_pk = excluded.run_pk",
    )?
    .execute(params![source_pk, outcome.user_pk, outcome.situation.as_str(), outcome.evidence.encode(), run_pk])?;
    Ok(())
}

/// Reads the engine's input; `only` limits the account columns to what that field needs.
fn link_input(c: &Connection, source_pk: i64, only: Option<ExternalIdField>) -> Result<LinkInput> {
    let mut input = LinkInput::default();
    let user_count: i64 = c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
    input.users.reserve(user_count as usize);
    input.stored.reserve(user_count as usize);
    let mut statement = c.prepare(
        "SELECT u.pk, u.external_id, u.email IS NOT NULL, u.email_key, u.excluded, o.situation, o.evidence
         FROM users AS u LEFT JOIN outcomes AS o ON o.source_pk = ?1 AND o.user_pk = u.pk
         ORDER BY u.pk",
    )?;
    let mut rows = statement.query([source_pk])?;
    while let Some(row) = rows.next()? {
        input.users.push(UserRow {
            pk: row.get(0)?,
            external_id: row.get(1)?,
            has_email: row.get(2)?,
            email_key: row.get(3)?,
            excluded: row.get(4)?,
        });
        let situation: Option<String> = row.get(5)?;
        input.stored.push(match situation {
            Some(situation) => Some(StoredOutcome {
                situation: parse_name::<Situation>(&situation)?,
                evidence: row.get(6)?,
            }),
            None => None,
        });
    }
    // `+source_pk` keeps SQLite from reading the accounts through a source_pk index and then
    // sorting a million rows by pk: a scan in rowid order is already sorted.
    let mut statement = c.prepare(
        "SELECT pk, account_id,
                CASE WHEN ?2 IS NULL OR ?2 = 'username' THEN username END,
                CASE WHEN ?2 IS NULL OR ?2 = 'key' THEN key END,
                CASE WHEN ?2 IS NULL OR ?2 = 'email' THEN email END,
                email_key, active, account_type
         FROM accounts WHERE +source_pk = ?1 AND seen ORDER BY pk",
    )?;
    let mut rows = statement.query(params![source_pk, only.map(ExternalIdField::as_str)])?;
    while let Some(row) = rows.next()? {
        input.accounts.push(AccountRow {
            pk: row.get(0)?,
            account_id: row.get(1)?,
            username: row.get(2)?,
            key: row.get(3)?,
            email: row.get(4)?,
            email_key: row.get(5)?,
            active: row.get(6)?,
            account_type: parse_name::<AccountType>(&row.get::<_, String>(7)?)?,
        });
    }
    Ok(input)
}

/// The rows `sql` (which takes one pk) finds for `pks`, in that order; unknown keys skipped.
fn rows_by_pk<T>(
    c: &Connection,
    sql: &str,
    pks: &[i64],
    map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut statement = c.prepare_cached(sql)?;
    let mut found = Vec::with_capacity(pks.len());
    for pk in pks {
        if let Some(row) = statement.query_row([pk], map).optional()? {
            found.push(row);
        }
    }
    Ok(found)
}

impl Store for SqliteStore {
    async fn insert_source(&self, source: &NewSource, at: Timestamp) -> Result<Source> {
        let created_at = ts(at)?;
        self.write(|c| {
            c.query_row(
                &format!(
                    "INSERT INTO sources (name, kind, external_id_field, link_inactive, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING {SOURCE_COLUMNS}"
                ),
                params![
                    source.name,
                    source.kind,
                    source.external_id_field.as_str(),
                    source.link_inactive,
                    created_at
                ],
                source_row,
            )
            .map_err(|e| conflict(e, &source.name))
        })
    }

    async fn find_source(&self, name: &str) -> Result<Option<Source>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE name = ?1"),
                [name],
                source_row,
            )
            .optional()?)
        })
    }

    async fn list_sources(&self) -> Result<Vec<Source>> {
        self.read(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {SOURCE_COLUMNS} FROM sources ORDER BY name"
            ))?;
            let rows = statement.query_map([], source_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn update_source_field(&self, source_pk: i64, field: ExternalIdField) -> Result<()> {
        self.write(|c| {
            let n = c.execute(
                "UPDATE sources SET external_id_field = ?1 WHERE pk = ?2",
                params![field.as_str(), source_pk],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("source {source_pk}")));
            }
            Ok(())
        })
    }

    async fn import_users(
        &self,
        rows: &[NewUser],
        options: &ImportOptions<'_>,
    ) -> Result<ImportSummary> {
        let at = ts(options.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let before: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
            let mut changed = 0u64;
            let mut external_ids_set = 0u64;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO users (id, username, email, email_key, display_name, active)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET
                        username = excluded.username, email = excluded.email, email_key = excluded.email_key,
                        display_name = excluded.display_name, active = excluded.active
                     WHERE users.username IS NOT excluded.username OR users.email IS NOT excluded.email
                        OR users.email_key IS NOT excluded.email_key
                        OR users.display_name IS NOT excluded.display_name OR users.active IS NOT excluded.active",
                )?;
                let mut current = tx.prepare_cached("SELECT pk, external_id FROM users WHERE id = ?1")?;
                let mut holder = tx.prepare_cached("SELECT id FROM users WHERE external_id = ?1")?;
                let mut set = tx.prepare_cached(
                    "UPDATE users SET external_id = ?1, external_id_origin = 'import', external_id_set_at = ?2 WHERE pk = ?3",
                )?;
                for row in rows {
                    let mut row_changed = upsert.execute(params![
                        row.id,
                        row.username,
                        row.email,
                        row.email_key,
                        row.display_name,
                        row.active
                    ])? > 0;
                    if let Some(external_id) = &row.external_id {
                        let (pk, stored): (i64, Option<String>) =
                            current.query_row([&row.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                        if stored.as_deref() != Some(external_id.as_str()) {
                            if let Some(other) = holder.query_row([external_id], |r| r.get::<_, String>(0)).optional()? {
                                return Err(StoreError::Conflict {
                                    constraint: "users_external_id",
                                    message: format!(
                                        "External ID '{external_id}' of user '{}' is already held by user '{other}'",
                                        row.id
                                    ),
                                });
                            }
                            if let Some(stored) = &stored {
                                if !options.replace_external_ids {
                                    return Err(StoreError::Invalid(format!(
                                        "user '{}' already has External ID '{stored}'; the file says '{external_id}' \
                                         (use --replace-external-ids to overwrite)",
                                        row.id
                                    )));
                                }
                            }
                            set.execute(params![external_id, at, pk])?;
                            insert_audit(
                                &tx,
                                AuditWrite {
                                    at: &at,
                                    actor: options.actor,
                                    origin: Origin::Import,
                                    user_pk: pk,
                                    old: stored.as_deref(),
                                    new: Some(external_id),
                                    reason: "import",
                                    run_pk: None,
                                },
                            )?;
                            external_ids_set += 1;
                            row_changed = true;
                        }
                    }
                    changed += u64::from(row_changed);
                }
            }
            let after: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
            tx.commit()?;
            let inserted = (after - before).max(0) as u64;
            Ok(ImportSummary {
                inserted,
                updated: changed.saturating_sub(inserted),
                unchanged: rows.len() as u64 - changed,
                external_ids_set,
            })
        })
    }

    async fn import_accounts(
        &self,
        source_pk: i64,
        rows: &[NewAccount],
        _at: Timestamp,
    ) -> Result<ImportSummary> {
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require_source(&tx, source_pk)?;
            let count = |tx: &Transaction<'_>| -> Result<i64> {
                Ok(tx.query_row("SELECT count(*) FROM accounts WHERE source_pk = ?1", [source_pk], |r| r.get(0))?)
            };
            let before = count(&tx)?;
            let mut changed = 0u64;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO accounts (source_pk, account_id, username, key, email, email_key, display_name, active, account_type)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (source_pk, account_id) DO UPDATE SET
                        username = excluded.username, key = excluded.key, email = excluded.email,
                        email_key = excluded.email_key, display_name = excluded.display_name,
                        active = excluded.active, account_type = excluded.account_type
                     WHERE accounts.username IS NOT excluded.username OR accounts.key IS NOT excluded.key
                        OR accounts.email IS NOT excluded.email OR accounts.email_key IS NOT excluded.email_key
                        OR accounts.display_name IS NOT excluded.display_name
                        OR accounts.active IS NOT excluded.active OR accounts.account_type IS NOT excluded.account_type",
                )?;
                for row in rows {
                    changed += upsert.execute(params![
                        source_pk,
                        row.account_id,
                        row.username,
                        row.key,
                        row.email,
                        row.email_key,
                        row.display_name,
                        row.active,
                        row.account_type.as_str()
                    ])? as u64;
                }
            }
            let after = count(&tx)?;
            tx.commit()?;
            let inserted = (after - before).max(0) as u64;
            Ok(ImportSummary {
                inserted,
                updated: changed.saturating_sub(inserted),
                unchanged: rows.len() as u64 - changed,
                external_ids_set: 0,
            })
        })
    }

    async fn load_link_input(&self, source_pk: i64) -> Result<LinkInput> {
        self.read(|c| link_input(c, source_pk, None))
    }

    async fn load_plan_input(&self, source_pk: i64, field: ExternalIdField) -> Result<LinkInput> {
        self.read(|c| link_input(c, source_pk, Some(field)))
    }

    async fn insert_run(&self, run: &NewRun) -> Result<i64> {
        let started_at = ts(run.started_at)?;
        self.write(|c| {
            require_source(c, run.source_pk)?;
            Ok(c.query_row(
                "INSERT INTO runs (source_pk, kind, dry_run, external_id_field, actor, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING pk",
                params![
                    run.source_pk,
                    run.kind,
                    run.dry_run,
                    run.external_id_field.as_str(),
                    run.actor,
                    started_at
                ],
                |r| r.get(0),
            )?)
        })
    }

    async fn apply_batch(&self, batch: &ApplyBatch<'_>) -> Result<Vec<ChangeResult>> {
        let at = ts(batch.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(batch.changes.len());
            let mut settled = HashSet::with_capacity(batch.changes.len());
            for change in batch.changes {
                let result = apply_one(&tx, batch, &at, change)?;
                if let Some(outcome) = settle(change, &result) {
                    upsert_outcome(&tx, batch.source_pk, batch.run_pk, &outcome)?;
                }
                settled.insert(change.user_pk);
                results.push(result);
            }
            for outcome in batch.outcomes {
                if !settled.contains(&outcome.user_pk) {
                    upsert_outcome(&tx, batch.source_pk, batch.run_pk, outcome)?;
                }
            }
            tx.commit()?;
            Ok(results)
        })
    }

    async fn finish_run(&self, run_pk: i64, finish: &RunFinish) -> Result<()> {
        let finished_at = ts(finish.finished_at)?;
        let summary = finish.summary.to_string();
        self.write(|c| {
            let n = c.execute(
                "UPDATE runs SET finished_at = ?1, state = ?2, summary = ?3, applied = ?4 WHERE pk = ?5",
                params![finished_at, finish.state, summary, finish.applied as i64, run_pk],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("run {run_pk}")));
            }
            Ok(())
        })
    }

    async fn list_runs(&self, source_pk: i64, limit: u32) -> Result<Vec<Run>> {
        self.read(|c| {
            let mut statement = c.prepare(
                "SELECT pk, kind, dry_run, external_id_field, actor, state, started_at, finished_at, summary, applied
                 FROM runs WHERE source_pk = ?1 ORDER BY pk DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![source_pk, limit], run_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn list_users(&self, filter: &UserFilter) -> Result<Vec<UserRecord>> {
        let after = filter.after_pk.unwrap_or(i64::MIN);
        self.read(|c| {
            let users = match filter.situation {
                None => {
                    let mut statement = c.prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM users AS u WHERE u.pk > ?1 ORDER BY u.pk LIMIT ?2"
                    ))?;
                    let rows = statement.query_map(params![after, filter.limit], user_row)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
                Some((source_pk, situation)) => {
                    let mut statement = c.prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM outcomes AS o JOIN users AS u ON u.pk = o.user_pk
                         WHERE o.source_pk = ?1 AND o.situation = ?2 AND o.user_pk > ?3 {}
                         ORDER BY o.user_pk LIMIT ?4",
                        crate::partial_index_hint(situation)
                    ))?;
                    let rows =
                        statement.query_map(params![source_pk, situation.as_str(), after, filter.limit], user_row)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            Ok(users)
        })
    }

    async fn find_users(&self, ident: &str, email_key: Option<&str>) -> Result<Vec<UserRecord>> {
        self.read(|c| {
            for (column, value) in [
                ("id", Some(ident)),
                ("username", Some(ident)),
                ("email_key", email_key),
            ] {
                let Some(value) = value else { continue };
                let mut statement = c.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users AS u WHERE u.{column} = ?1 ORDER BY u.pk"
                ))?;
                let found = statement
                    .query_map([value], user_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if !found.is_empty() {
                    return Ok(found);
                }
            }
            Ok(Vec::new())
        })
    }

    async fn get_users_by_pk(&self, pks: &[i64]) -> Result<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users AS u WHERE u.pk = ?1");
        self.read(|c| rows_by_pk(c, &sql, pks, user_row))
    }

    async fn get_accounts_by_pk(&self, pks: &[i64]) -> Result<Vec<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE pk = ?1");
        self.read(|c| rows_by_pk(c, &sql, pks, account_row))
    }

    async fn count_users(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    async fn list_audit(&self, user_pk: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        self.read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT pk, at, actor, origin, user_pk, old_value, new_value, reason, run_pk FROM audit
                 WHERE ?1 IS NULL OR user_pk = ?1 ORDER BY pk DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![user_pk, limit], |row| {
                Ok(AuditEntry {
                    pk: row.get(0)?,
                    at: parse_ts(&row.get::<_, String>(1)?)?,
                    actor: row.get(2)?,
                    origin: parse_name(&row.get::<_, String>(3)?)?,
                    user_pk: row.get(4)?,
                    old_value: row.get(5)?,
                    new_value: row.get(6)?,
                    reason: row.get(7)?,
                    run_pk: row.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn insert_token(&self, token: &NewToken) -> Result<i64> {
        let created_at = ts(token.created_at)?;
        self.write(|c| {
            c.query_row(
                "INSERT INTO tokens (name, scope, hash, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING pk",
                params![token.name, token.scope, token.hash, created_at],
                |r| r.get(0),
            )
            .map_err(|e| conflict(e, &token.name))
        })
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
    }
}

#[cfg(test)]
mod reader_pool_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reads_beyond_the_pool_wait_for_a_reader_and_never_open_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db").display().to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = runtime.block_on(SqliteStore::open(&path)).unwrap();
        let (active, peak, done) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        std::thread::scope(|scope| {
            for _ in 0..4 * READERS {
                scope.spawn(|| {
                    store
                        .read(|c| {
                            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            let _: i64 =
                                c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
                            // Hold the reader a while, so that the others pile up.
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            active.fetch_sub(1, Ordering::SeqCst);
                            done.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 4 * READERS, "every read ran");
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= READERS, "{peak} readers at once");
        assert!(peak > 1, "reads run side by side");
        let readers = store.readers.lock().unwrap();
        assert!(readers.open <= READERS);
        assert_eq!(readers.idle.len(), readers.open, "all returned");
    }
}
