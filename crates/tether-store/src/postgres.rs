//! The PostgreSQL store: one database shared by several replicas.
//!
//! Connections come from a deadpool pool; each trait method takes one connection and runs one
//! transaction (a lone statement is its own). Bulk paths are set-based, never a statement per
//! row: rows travel by binary COPY into a temporary staging table dropped at commit, and one
//! `INSERT … SELECT … ON CONFLICT` or `UPDATE … FROM` writes them all, so a million users cost
//! a handful of statements. Unique violations become [`StoreError::Conflict`] carrying the
//! constraint's name (see [`classify`]). Migrations run at open, each in its own transaction
//! under an advisory lock, so replicas that start together do not race.
//!
//! This module must not decide situations (it only calls [`tether_core::settle`]) and must
//! not read the clock: every timestamp it writes comes from the caller.

// Units of work for each feature, in files of their own (they see this module's helpers).
mod admin;
mod jobs;
mod scim;
mod signin;

use crate::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Transaction};
use futures_util::{pin_mut, TryStreamExt};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;
use tether_core::{
    settle, AccountRow, AccountType, Change, ChangeResult, ExternalIdField, Origin, Situation,
    UnknownName, UserRow,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::{DbError, SqlState};
use tokio_postgres::types::Type;
use tokio_postgres::{IsolationLevel, Row};

/// Embedded migrations, applied in order; a version once applied is never edited.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_admin.sql")),
    (3, include_str!("../migrations/postgres/0003_jobs.sql")),
    (4, include_str!("../migrations/postgres/0004_scim.sql")),
    (5, include_str!("../migrations/postgres/0005_signin.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_oidc_login_provider.sql"),
    ),
];

/// The advisory lock that serializes migrations across processes ("tether" in ASCII).
const MIGRATION_LOCK: i64 = 0x7465_7468_6572;

/// How many times `apply_batch` runs a batch that lost a race to a concurrent writer.
const APPLY_ATTEMPTS: u32 = 3;

/// Above this many staged rows, statistics are gathered so the planner picks hash joins.
const ANALYZE_THRESHOLD: usize = 10_000;

/// TLS for `sslmode=prefer|require` URLs: rustls with the web PKI roots.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Pool(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A PostgreSQL database reached through a connection pool.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to a `postgres://` URL (TLS as its `sslmode` says) and migrates the database.
    pub async fn open(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url.parse()?;
        Self::open_config(config).await
    }

    /// Like [`PgStore::open`], from a parsed configuration (tests use it to pick a database).
    pub async fn open_config(config: tokio_postgres::Config) -> Result<Self> {
        let manager = Manager::from_config(
            config,
            tls_connector()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Pooled connections; `sslmode` in the URL decides TLS (`prefer` by default, `require`
    /// to insist), verified against the web PKI roots with rustls, the one TLS stack.
    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|err| match err {
            PoolError::Backend(err) => StoreError::Postgres(err),
            other => StoreError::Pool(other.to_string()),
        })
    }

    /// Applies the migrations this build knows and the database lacks.
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let mut newest_applied = 0;
        for &(version, sql) in MIGRATIONS {
            let tx = client.transaction().await?;
            // Held until this transaction ends; a second process waits here, then finds the
            // version recorded and skips it.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY)",
            )
            .await?;
            newest_applied = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM schema_migrations",
                    &[],
                )
                .await?
                .try_get(0)?;
            let applied = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[&version],
                )
                .await?
                .is_some();
            if !applied {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[&version],
                )
                .await?;
            }
            tx.commit().await?;
        }
        let known = MIGRATIONS.last().map_or(0, |&(version, _)| version);
        if newest_applied > known {
            return Err(StoreError::Invalid(format!(
                "the database schema is at version {newest_applied} but this tether knows only up to \
                 {known}: upgrade tether"
            )));
        }
        Ok(())
    }
}

// --- errors --------------------------------------------------------------------------------

/// Turns the server's unique violations into `Conflict`, missing referenced rows into
/// `NotFound`, and a row given twice in one bulk statement into `Invalid`.
fn classify(err: StoreError) -> StoreError {
    let StoreError::Postgres(pg) = &err else {
        return err;
    };
    let Some(db) = pg.as_db_error() else {
        return err;
    };
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION {
        if let Some(constraint) = db.constraint().and_then(known_constraint) {
            return StoreError::Conflict {
                constraint,
                message: conflict_message(constraint, db),
            };
        }
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        if let Some(value) = db.detail().and_then(key_values) {
            if db.table() == Some("runs") || db.table() == Some("accounts") {
                return StoreError::NotFound(format!("source {value} does not exist"));
            }
        }
    } else if *code == SqlState::CARDINALITY_VIOLATION {
        return StoreError::Invalid(format!(
            "the same record appears twice in one batch ({})",
            db.message()
        ));
    }
    err
}

/// Our constraint names as `'static` strings (they are the contract in `Conflict`).
fn known_constraint(name: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "users_id",
        "users_external_id",
        "sources_name",
        "accounts_source_account_id",
        "tokens_name",
        "tokens_hash",
        "admins_username",
        "sessions_id_hash",
    ];
    KNOWN.iter().copied().find(|known| *known == name)
}

/// The values in a detail like `Key (source_pk, account_id)=(1, abc) already exists.`
fn key_values(detail: &str) -> Option<&str> {
    let start = detail.find(")=(")? + 3;
    let rest = &detail[start..];
    let end = rest.rfind(')')?;
    Some(&rest[..end])
}

fn conflict_message(constraint: &'static str, db: &DbError) -> String {
    let value = db.detail().and_then(key_values);
    match (constraint, value) {
        ("users_id", Some(id)) => format!("a user with id '{id}' already exists"),
        ("users_external_id", Some(id)) => {
            format!("External ID '{id}' is already held by another user")
        }
        ("sources_name", Some(name)) => format!("a source named '{name}' already exists"),
        ("accounts_source_account_id", Some(values)) => {
            let account_id = values.split_once(", ").map_or(values, |(_, id)| id);
            format!("account '{account_id}' already exists in this source")
        }
        ("tokens_name", Some(name)) => format!("a token named '{name}' already exists"),
        ("admins_username", Some(name)) => {
            format!("an administrator named '{name}' already exists")
        }
        // Never echo a token hash.
        ("tokens_hash", _) => "a token with the same hash already exists".to_owned(),
        _ => format!("the value is already taken ({constraint})"),
    }
}

/// Whether a failed `apply_batch` lost a race that a fresh attempt can win.
fn is_retryable(err: &StoreError) -> bool {
    let StoreError::Postgres(pg) = err else {
        return false;
    };
    let Some(db) = pg.as_db_error() else {
        return false;
    };
    let code = db.code();
    (*code == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("users_external_id"))
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
}

fn parse_name<T: FromStr<Err = UnknownName>>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|err: UnknownName| StoreError::Corrupt(err.to_string()))
}

fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} is out of range")))
}

fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is negative")))
}

// --- rows ----------------------------------------------------------------------------------

const SOURCE_COLUMNS: &str = "pk, name, kind, external_id_field, link_inactive, created_at";

fn source_from(row: &Row) -> Result<Source> {
    Ok(Source {
        pk: row.try_get(0)?,
        name: row.try_get(1)?,
        kind: row.try_get(2)?,
        external_id_field: parse_name(row.try_get(3)?)?,
        link_inactive: row.try_get(4)?,
        created_at: row.try_get(5)?,
    })
}

const USER_COLUMNS: &str =
    "u.pk, u.id, u.username, u.email, u.email_key, u.display_name, u.active, \
     u.external_id, u.external_id_origin, u.external_id_set_at, u.excluded";

fn user_from(row: &Row) -> Result<UserRecord> {
    let origin: Option<&str> = row.try_get(8)?;
    Ok(UserRecord {
        pk: row.try_get(0)?,
        id: row.try_get(1)?,
        username: row.try_get(2)?,
        email: row.try_get(3)?,
        email_key: row.try_get(4)?,
        display_name: row.try_get(5)?,
        active: row.try_get(6)?,
        external_id: row.try_get(7)?,
        external_id_origin: origin.map(parse_name::<Origin>).transpose()?,
        external_id_set_at: row.try_get(9)?,
        excluded: row.try_get(10)?,
    })
}

const ACCOUNT_COLUMNS: &str =
    "a.pk, a.source_pk, a.account_id, a.username, a.key, a.email, a.email_key, \
     a.display_name, a.active, a.account_type";

fn account_from(row: &Row) -> Result<AccountRecord> {
    Ok(AccountRecord {
        pk: row.try_get(0)?,
        source_pk: row.try_get(1)?,
        account_id: row.try_get(2)?,
        username: row.try_get(3)?,
        key: row.try_get(4)?,
        email: row.try_get(5)?,
        email_key: row.try_get(6)?,
        display_name: row.try_get(7)?,
        active: row.try_get(8)?,
        account_type: parse_name(row.try_get(9)?)?,
    })
}

const RUN_COLUMNS: &str =
    "pk, kind, dry_run, external_id_field, actor, state, started_at, finished_at, summary, applied";

fn run_from(row: &Row) -> Result<Run> {
    Ok(Run {
        pk: row.try_get(0)?,
        kind: row.try_get(1)?,
        dry_run: row.try_get(2)?,
        external_id_field: parse_name(row.try_get(3)?)?,
        actor: row.try_get(4)?,
        state: row.try_get(5)?,
        started_at: row.try_get(6)?,
        finished_at: row.try_get(7)?,
        summary: row.try_get(8)?,
        applied: to_u64(row.try_get(9)?, "applied count")?,
    })
}

const AUDIT_COLUMNS: &str = "pk, at, actor, origin, user_pk, old_value, new_value, reason, run_pk";

fn audit_from(row: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        pk: row.try_get(0)?,
        at: row.try_get(1)?,
        actor: row.try_get(2)?,
        origin: parse_name(row.try_get(3)?)?,
        user_pk: row.try_get(4)?,
        old_value: row.try_get(5)?,
        new_value: row.try_get(6)?,
        reason: row.try_get(7)?,
        run_pk: row.try_get(8)?,
    })
}

/// Opens a binary COPY into `copy_sql`'s table with columns of `types`.
async fn copy_writer(
    tx: &Transaction<'_>,
    copy_sql: &str,
    types: &[Type],
) -> Result<BinaryCopyInWriter> {
    let sink = tx.copy_in(copy_sql).await?;
    Ok(BinaryCopyInWriter::new(sink, types))
}

// --- bulk import ---------------------------------------------------------------------------

const STAGE_USERS: &str = r#"
CREATE TEMP TABLE import_users (
    ord bigint NOT NULL, id text COLLATE "C" NOT NULL, username text COLLATE "C" NOT NULL,
    email text, email_key text COLLATE "C", display_name text NOT NULL, active boolean NOT NULL,
    external_id text COLLATE "C"
) ON COMMIT DROP"#;

/// The first row in file order that cannot be imported: its External ID is held by another
/// user (who does not give it up in an earlier row), or, unless $1, it would replace a
/// different stored External ID. This is the row a row-by-row import would stop at.
const USERS_REFUSED: &str = "
SELECT i.id, i.external_id, h.id AS holder, u.external_id AS stored
FROM import_users i
LEFT JOIN users u ON u.id = i.id
LEFT JOIN users h ON h.external_id = i.external_id AND h.id <> i.id
     AND NOT EXISTS (SELECT 1 FROM import_users e
                     WHERE e.id = h.id AND e.ord < i.ord AND e.external_id <> i.external_id)
WHERE i.external_id IS NOT NULL
  AND (h.pk IS NOT NULL OR (NOT $1::boolean AND u.external_id <> i.external_id))
ORDER BY i.ord LIMIT 1";

/// The assignments an import makes to a stored user `u` from the incoming row `new` (`i` in
/// an `UPDATE … FROM`, `EXCLUDED` in `ON CONFLICT`). A blank External ID keeps the stored one.
fn user_assignments(new: &str) -> String {
    format!(
        "username = {new}.username, email = {new}.email, email_key = {new}.email_key,
         display_name = {new}.display_name, active = {new}.active,
         external_id = coalesce({new}.external_id, u.external_id),
         external_id_origin = CASE WHEN coalesce({new}.external_id, u.external_id) IS DISTINCT FROM u.external_id
                                   THEN 'import' ELSE u.external_id_origin END,
         external_id_set_at = CASE WHEN coalesce({new}.external_id, u.external_id) IS DISTINCT FROM u.external_id
                                   THEN $1::timestamptz ELSE u.external_id_set_at END"
    )
}

/// Whether the incoming row `new` would change the stored user `u`.
fn user_differs(new: &str) -> String {
    format!(
        "(u.username, u.email, u.email_key, u.display_name, u.active, u.external_id)
         IS DISTINCT FROM ({new}.username, {new}.email, {new}.email_key, {new}.display_name, {new}.active,
                           coalesce({new}.external_id, u.external_id))"
    )
}

/// One statement writes an import: existing users that differ are updated through a hash
/// join (identical rows are neither written nor locked, so a re-import writes nothing), the
/// missing ones are inserted in file order, every External ID written gets an audit entry,
/// and the counts come back: inserted, updated, audited, and raced, the users another writer
/// inserted differently since this statement's snapshot (`ON CONFLICT` met them; the caller
/// refuses the import, since they skipped the External ID checks). `before` reads the
/// snapshot: the External IDs being replaced. $1 at, $2 actor.
static USERS_WRITE: LazyLock<String> = LazyLock::new(|| {
    let (set_from_file, file_differs) = (user_assignments("i"), user_differs("i"));
    let (set_from_excluded, excluded_differs) =
        (user_assignments("EXCLUDED"), user_differs("EXCLUDED"));
    format!(
        "WITH before AS (
             SELECT u.id, u.external_id FROM users u JOIN import_users i ON i.id = u.id
             WHERE i.external_id IS DISTINCT FROM u.external_id AND i.external_id IS NOT NULL
         ), updated AS (
             UPDATE users u SET {set_from_file}
             FROM import_users i WHERE u.id = i.id AND {file_differs}
             RETURNING u.pk, u.id, u.external_id, false AS inserted
         ), inserted AS (
             INSERT INTO users AS u (id, username, email, email_key, display_name, active,
                                     external_id, external_id_origin, external_id_set_at)
             SELECT id, username, email, email_key, display_name, active, external_id,
                    CASE WHEN external_id IS NOT NULL THEN 'import' END,
                    CASE WHEN external_id IS NOT NULL THEN $1::timestamptz END
             FROM import_users i WHERE NOT EXISTS (SELECT 1 FROM users e WHERE e.id = i.id)
             ORDER BY i.ord
             ON CONFLICT ON CONSTRAINT users_id DO UPDATE SET {set_from_excluded} WHERE {excluded_differs}
             RETURNING u.pk, u.id, u.external_id, (u.xmax = 0) AS inserted
         ), written AS (
             SELECT * FROM updated UNION ALL SELECT * FROM inserted
         ), audited AS (
             INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason)
             SELECT $1::timestamptz, $2::text, 'import', w.pk, b.external_id, w.external_id, 'import'
             FROM written w LEFT JOIN before b ON b.id = w.id
             WHERE w.external_id IS NOT NULL AND (b.id IS NOT NULL OR w.inserted)
             ORDER BY w.pk
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM inserted WHERE inserted),
                (SELECT count(*) FROM updated),
                (SELECT count(*) FROM audited),
                (SELECT count(*) FROM inserted WHERE NOT inserted)"
    )
});

/// [`USERS_WRITE`] for an empty users table: every row is inserted (in staging order, which
/// is file order; nothing depends on it), and
/// every External ID given is audited. Same result columns. $1 at, $2 actor.
const USERS_FIRST_LOAD: &str = "
WITH inserted AS (
    INSERT INTO users (id, username, email, email_key, display_name, active,
                       external_id, external_id_origin, external_id_set_at)
    SELECT id, username, email, email_key, display_name, active, external_id,
           CASE WHEN external_id IS NOT NULL THEN 'import' END,
           CASE WHEN external_id IS NOT NULL THEN $1::timestamptz END
    FROM import_users i
    RETURNING pk, external_id
), audited AS (
    INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason)
    SELECT $1::timestamptz, $2::text, 'import', pk, NULL, external_id, 'import'
    FROM inserted WHERE external_id IS NOT NULL ORDER BY pk
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), 0::bigint, (SELECT count(*) FROM audited), 0::bigint";

const STAGE_ACCOUNTS: &str = r#"
CREATE TEMP TABLE import_accounts (
    ord bigint NOT NULL, account_id text COLLATE "C" NOT NULL, username text COLLATE "C",
    key text COLLATE "C", email text, email_key text COLLATE "C", display_name text NOT NULL,
    active boolean NOT NULL, account_type text NOT NULL
) ON COMMIT DROP"#;

fn account_assignments(new: &str) -> String {
    format!(
        "username = {new}.username, key = {new}.key, email = {new}.email, email_key = {new}.email_key,
         display_name = {new}.display_name, active = {new}.active, account_type = {new}.account_type"
    )
}

fn account_differs(new: &str) -> String {
    format!(
        "(a.username, a.key, a.email, a.email_key, a.display_name, a.active, a.account_type)
         IS DISTINCT FROM ({new}.username, {new}.key, {new}.email, {new}.email_key, {new}.display_name,
                           {new}.active, {new}.account_type)"
    )
}

/// Like [`USERS_WRITE`] for one source's accounts, without External IDs. $1 source.
static ACCOUNTS_WRITE: LazyLock<String> = LazyLock::new(|| {
    let (set_from_file, file_differs) = (account_assignments("i"), account_differs("i"));
    let (set_from_excluded, excluded_differs) =
        (account_assignments("EXCLUDED"), account_differs("EXCLUDED"));
    format!(
        "WITH updated AS (
             UPDATE accounts a SET {set_from_file}
             FROM import_accounts i
             WHERE a.source_pk = $1 AND a.account_id = i.account_id AND {file_differs}
             RETURNING false AS inserted
         ), inserted AS (
             INSERT INTO accounts AS a (source_pk, account_id, username, key, email, email_key,
                                        display_name, active, account_type)
             SELECT $1, account_id, username, key, email, email_key, display_name, active, account_type
             FROM import_accounts i
             WHERE NOT EXISTS (SELECT 1 FROM accounts e WHERE e.source_pk = $1 AND e.account_id = i.account_id)
             ORDER BY i.ord
             ON CONFLICT ON CONSTRAINT accounts_source_account_id DO UPDATE SET {set_from_excluded}
             WHERE {excluded_differs}
             RETURNING (a.xmax = 0) AS inserted
         ), written AS (
             SELECT * FROM updated UNION ALL SELECT * FROM inserted
         )
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
    )
});

/// [`ACCOUNTS_WRITE`] for a source without accounts yet: a plain insert. $1 source.
const ACCOUNTS_FIRST_LOAD: &str = "
WITH inserted AS (
    INSERT INTO accounts (source_pk, account_id, username, key, email, email_key,
                          display_name, active, account_type)
    SELECT $1, account_id, username, key, email, email_key, display_name, active, account_type
    FROM import_accounts i
    RETURNING 1
)
SELECT count(*), 0::bigint FROM inserted";

/// Sorts and hash joins over a million staged rows stay in memory instead of spilling.
const BULK_WORK_MEM: &str = "SET LOCAL work_mem = '256MB'";

fn summary_from(row: &Row, total: usize, external_ids_set: u64) -> Result<ImportSummary> {
    let inserted = to_u64(row.try_get(0)?, "count")?;
    let updated = to_u64(row.try_get(1)?, "count")?;
    Ok(ImportSummary {
        inserted,
        updated,
        unchanged: (total as u64).saturating_sub(inserted + updated),
        external_ids_set,
    })
}

// --- linking -------------------------------------------------------------------------------

const LINK_USERS: &str = "
SELECT u.pk, u.external_id, u.email IS NOT NULL, u.email_key, u.excluded, o.situation, o.evidence
FROM users u LEFT JOIN outcomes o ON o.source_pk = $1 AND o.user_pk = u.pk
ORDER BY u.pk";

const LINK_ACCOUNTS: &str = "
SELECT pk, account_id,
       CASE WHEN $2::text IS NULL OR $2::text = 'username' THEN username END,
       CASE WHEN $2::text IS NULL OR $2::text = 'key' THEN key END,
       CASE WHEN $2::text IS NULL OR $2::text = 'email' THEN email END,
       email_key, active, account_type
FROM accounts WHERE source_pk = $1 AND seen ORDER BY pk";

const STAGE_CHANGES: &str = r#"
CREATE TEMP TABLE apply_changes (
    ord bigint NOT NULL, user_pk bigint NOT NULL, old text COLLATE "C", new text COLLATE "C" NOT NULL
) ON COMMIT DROP"#;

/// What each staged change finds now: whether the user exists, its External ID, whether it is
/// excluded, and who holds the new value. The lookups are index probes (`OFFSET 0` keeps the
/// planner from turning a batch of probes into a walk over the whole users index).
const SEEN_CHANGES: &str = "
    SELECT c.ord, c.user_pk, c.old, c.new, u.pk IS NOT NULL AS present, u.external_id,
           coalesce(u.excluded, false) AS excluded,
           (SELECT h.pk FROM users h WHERE h.external_id = c.new) AS holder_pk
    FROM apply_changes c
    LEFT JOIN LATERAL (SELECT pk, external_id, excluded FROM users WHERE pk = c.user_pk OFFSET 0) u ON true";

/// One statement: what each change finds, the writes where the user still holds `old`, is not
/// excluded and nobody holds the value, their audit entries, and one row per change to
/// classify. The `UPDATE` re-checks its `WHERE` on the latest row version after waiting for a
/// concurrent writer, so nothing is overwritten; a change refused that way is re-read by
/// [`RESEEN_CHANGES`]. $1 origin, $2 at, $3 actor, $4 run.
static APPLY_CHANGES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH seen AS ({SEEN_CHANGES}
         ), updated AS (
             UPDATE users u SET external_id = s.new, external_id_origin = $1::text,
                                external_id_set_at = $2::timestamptz
             FROM seen s
             WHERE u.pk = s.user_pk AND s.holder_pk IS NULL
               AND u.external_id IS NOT DISTINCT FROM s.old AND NOT u.excluded
             RETURNING s.ord, u.pk, s.old, s.new
         ), audited AS (
             INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
             SELECT $2::timestamptz, $3::text, $1::text, pk, old, new, 'new_link', $4::bigint
             FROM updated ORDER BY ord
         )
         SELECT s.ord, d.ord IS NOT NULL, s.present, s.external_id, s.excluded, s.holder_pk
         FROM seen s LEFT JOIN updated d ON d.ord = s.ord
         ORDER BY s.ord"
    )
});

/// The changes given by position ($1), read again in a new snapshot.
static RESEEN_CHANGES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.ord, false, s.present, s.external_id, s.excluded, s.holder_pk
         FROM ({SEEN_CHANGES}) s WHERE s.ord = ANY($1) ORDER BY s.ord"
    )
});

const STAGE_OUTCOMES: &str = "
CREATE TEMP TABLE apply_outcomes (
    user_pk bigint NOT NULL, situation text NOT NULL, evidence text NOT NULL
) ON COMMIT DROP";

/// Writes only the outcomes that differ from the stored ones.
const OUTCOMES_UPSERT: &str = "
INSERT INTO outcomes AS o (source_pk, user_pk, situation, evidence, run_pk)
SELECT $1, user_pk, situation, evidence, $2 FROM apply_outcomes
ON CONFLICT (source_pk, user_pk) DO UPDATE SET
    situation = EXCLUDED.situation, evidence = EXCLUDED.evidence, run_pk = EXCLUDED.run_pk
WHERE (o.situation, o.evidence) IS DISTINCT FROM (EXCLUDED.situation, EXCLUDED.evidence)";

/// What a change found. The order matches the SQLite store: gone, already holding the value,
/// holding another value than the plan saw, excluded, and only then another holder. `None`
/// when the row says the change should have been written: a concurrent writer changed it
/// after the statement's snapshot, and it must be read again.
fn change_result(change: &Change, row: &Row) -> Result<Option<ChangeResult>> {
    let applied: bool = row.try_get(1)?;
    let present: bool = row.try_get(2)?;
    let current: Option<String> = row.try_get(3)?;
    let excluded: bool = row.try_get(4)?;
    let holder_pk: Option<i64> = row.try_get(5)?;
    Ok(Some(if applied {
        ChangeResult::Applied
    } else if !present {
        ChangeResult::Gone
    } else if current.as_deref() == Some(change.new.as_str()) {
        ChangeResult::AlreadySet
    } else if current != change.old {
        // `Changed` needs a value; a link removed since the plan reads as an empty one.
        ChangeResult::Changed {
            current: current.unwrap_or_default(),
        }
    } else if excluded {
        ChangeResult::Excluded
    } else if let Some(holder_pk) = holder_pk {
        ChangeResult::Taken { holder_pk }
    } else {
        return Ok(None);
    }))
}

/// A batch whose outcome a concurrent writer made unclear: run it again from the start.
#[derive(Debug)]
struct LostRace;

/// Refuses a batch that names a user or a value twice: its writes would depend on order.
fn check_batch(changes: &[Change]) -> Result<()> {
    let mut users = HashSet::with_capacity(changes.len());
    let mut values = HashSet::with_capacity(changes.len());
    for change in changes {
        if !users.insert(change.user_pk) {
            return Err(StoreError::Invalid(format!(
                "user {} has two changes in one batch",
                change.user_pk
            )));
        }
        if !values.insert(change.new.as_str()) {
            return Err(StoreError::Invalid(format!(
                "External ID '{}' is given twice in one batch",
                change.new
            )));
        }
    }
    Ok(())
}

// --- reading -------------------------------------------------------------------------------

/// The first kind of identifier with any hit wins: id, then username, then e-mail key.
fn find_users_sql() -> String {
    format!(
        "WITH by_id AS (SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1),
         by_username AS (SELECT {USER_COLUMNS} FROM users u
                         WHERE u.username = $1 AND NOT EXISTS (SELECT 1 FROM by_id)),
         by_email AS (SELECT {USER_COLUMNS} FROM users u
                      WHERE u.email_key = $2 AND NOT EXISTS (SELECT 1 FROM by_id)
                        AND NOT EXISTS (SELECT 1 FROM by_username))
         SELECT * FROM by_id UNION ALL SELECT * FROM by_username UNION ALL SELECT * FROM by_email
         ORDER BY pk"
    )
}

/// The requested pks with their positions: records come back in the order asked for, a
/// missing one is skipped.
const IN_REQUESTED_ORDER: &str = "FROM unnest($1::bigint[]) WITH ORDINALITY AS p (pk, n)";

// --- the store -----------------------------------------------------------------------------

impl PgStore {
    async fn insert_source_tx(&self, source: &NewSource, at: Timestamp) -> Result<Source> {
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO sources (name, kind, external_id_field, link_inactive, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING {SOURCE_COLUMNS}"
        );
        let row = client
            .query_one(
                &sql,
                &[
                    &source.name,
                    &source.kind,
                    &source.external_id_field.as_str(),
                    &source.link_inactive,
                    &at,
                ],
            )
            .await?;
        source_from(&row)
    }

    async fn find_source_tx(&self, name: &str) -> Result<Option<Source>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SOURCE_COLUMNS} FROM sources WHERE name = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&name])
            .await?
            .as_ref()
            .map(source_from)
            .transpose()
    }

    async fn list_sources_tx(&self) -> Result<Vec<Source>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {SOURCE_COLUMNS} FROM sources ORDER BY name"),
                &[],
            )
            .await?;
        rows.iter().map(source_from).collect()
    }

    async fn update_source_field_tx(&self, source_pk: i64, field: ExternalIdField) -> Result<()> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE sources SET external_id_field = $2 WHERE pk = $1",
                &[&source_pk, &field.as_str()],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "source {source_pk} does not exist"
            )));
        }
        Ok(())
    }

    async fn import_users_tx(
        &self,
        rows: &[NewUser],
        options: &ImportOptions<'_>,
    ) -> Result<ImportSummary> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(BULK_WORK_MEM).await?;
        tx.batch_execute(STAGE_USERS).await?;
        let writer = copy_writer(
            &tx,
            "COPY import_users (ord, id, username, email, email_key, display_name, active, external_id) \
             FROM STDIN (FORMAT binary)",
            &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::BOOL, Type::TEXT],
        )
        .await?;
        pin_mut!(writer);
        for (ord, user) in (0_i64..).zip(rows) {
            writer
                .as_mut()
                .write(&[
                    &ord,
                    &user.id,
                    &user.username,
                    &user.email,
                    &user.email_key,
                    &user.display_name,
                    &user.active,
                    &user.external_id,
                ])
                .await?;
        }
        writer.finish().await?;
        // A first load into an empty table has nothing to compare, update or refuse (the file
        // was checked for duplicate ids and External IDs): a plain insert. A concurrent
        // writer's rows would make it fail on users_id, refusing the import.
        let empty: bool = tx
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM users)", &[])
            .await?
            .try_get(0)?;
        if !empty && rows.len() >= ANALYZE_THRESHOLD {
            tx.batch_execute("ANALYZE import_users").await?;
        }
        let refused = if empty {
            None
        } else {
            tx.query_opt(USERS_REFUSED, &[&options.replace_external_ids])
                .await?
        };
        if let Some(row) = refused {
            let id: String = row.try_get(0)?;
            let value: String = row.try_get(1)?;
            let holder: Option<String> = row.try_get(2)?;
            let stored: Option<String> = row.try_get(3)?;
            return Err(match holder {
                Some(holder) => StoreError::Conflict {
                    constraint: "users_external_id",
                    message: format!(
                        "External ID '{value}' of user '{id}' is already held by user '{holder}'"
                    ),
                },
                None => StoreError::Invalid(format!(
                    "user '{id}' already has External ID '{}'; the file says '{value}' \
                     (use --replace-external-ids to overwrite)",
                    stored.unwrap_or_default()
                )),
            });
        }

        let write = if empty {
            USERS_FIRST_LOAD
        } else {
            USERS_WRITE.as_str()
        };
        let counts = tx.query_one(write, &[&options.at, &options.actor]).await?;
        let raced = to_u64(counts.try_get(3)?, "count")?;
        if raced > 0 {
            // Dropping the transaction rolls the import back; a second run sees these users
            // as existing and checks them like any other.
            return Err(StoreError::Conflict {
                constraint: "users_id",
                message: format!(
                    "{raced} of these users were added by someone else while the import ran; \
                     nothing was written: import again"
                ),
            });
        }
        let external_ids_set = to_u64(counts.try_get(2)?, "count")?;
        let summary = summary_from(&counts, rows.len(), external_ids_set)?;
        tx.commit().await?;
        Ok(summary)
    }

    async fn import_accounts_tx(
        &self,
        source_pk: i64,
        rows: &[NewAccount],
    ) -> Result<ImportSummary> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // A share lock keeps the source from being deleted under the import.
        if tx
            .query_opt(
                "SELECT 1 FROM sources WHERE pk = $1 FOR SHARE",
                &[&source_pk],
            )
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!(
                "source {source_pk} does not exist"
            )));
        }
        tx.batch_execute(BULK_WORK_MEM).await?;
        tx.batch_execute(STAGE_ACCOUNTS).await?;
        let writer = copy_writer(
            &tx,
            "COPY import_accounts (ord, account_id, username, key, email, email_key, display_name, active, \
             account_type) FROM STDIN (FORMAT binary)",
            &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::BOOL, Type::TEXT],
        )
        .await?;
        pin_mut!(writer);
        for (ord, account) in (0_i64..).zip(rows) {
            writer
                .as_mut()
                .write(&[
                    &ord,
                    &account.account_id,
                    &account.username,
                    &account.key,
                    &account.email,
                    &account.email_key,
                    &account.display_name,
                    &account.active,
                    &account.account_type.as_str(),
                ])
                .await?;
        }
        writer.finish().await?;
        let empty: bool = tx
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM accounts WHERE source_pk = $1)",
                &[&source_pk],
            )
            .await?
            .try_get(0)?;
        if !empty && rows.len() >= ANALYZE_THRESHOLD {
            tx.batch_execute("ANALYZE import_accounts").await?;
        }
        let write = if empty {
            ACCOUNTS_FIRST_LOAD
        } else {
            ACCOUNTS_WRITE.as_str()
        };
        let counts = tx.query_one(write, &[&source_pk]).await?;
        let summary = summary_from(&counts, rows.len(), 0)?;
        tx.commit().await?;
        Ok(summary)
    }

    async fn load_link_input_tx(
        &self,
        source_pk: i64,
        only: Option<ExternalIdField>,
    ) -> Result<LinkInput> {
        let mut client = self.client().await?;
        // One snapshot for users, outcomes and accounts.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut input = LinkInput::default();

        let users = tx.query_raw(LINK_USERS, [source_pk]).await?;
        pin_mut!(users);
        while let Some(row) = users.try_next().await? {
            input.users.push(UserRow {
                pk: row.try_get(0)?,
                external_id: row.try_get(1)?,
                has_email: row.try_get(2)?,
                email_key: row.try_get(3)?,
                excluded: row.try_get(4)?,
            });
            let situation: Option<&str> = row.try_get(5)?;
            input.stored.push(match situation {
                Some(situation) => Some(StoredOutcome {
                    situation: parse_name::<Situation>(situation)?,
                    evidence: row.try_get(6)?,
                }),
                None => None,
            });
        }

        let only: Option<&str> = only.map(ExternalIdField::as_str);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&source_pk, &only];
        let accounts = tx.query_raw(LINK_ACCOUNTS, params).await?;
        pin_mut!(accounts);
        while let Some(row) = accounts.try_next().await? {
            input.accounts.push(AccountRow {
                pk: row.try_get(0)?,
                account_id: row.try_get(1)?,
                username: row.try_get(2)?,
                key: row.try_get(3)?,
                email: row.try_get(4)?,
                email_key: row.try_get(5)?,
                active: row.try_get(6)?,
                account_type: parse_name::<AccountType>(row.try_get(7)?)?,
            });
        }
        tx.commit().await?;
        Ok(input)
    }

    async fn insert_run_tx(&self, run: &NewRun) -> Result<i64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO runs (source_pk, kind, dry_run, external_id_field, actor, started_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING pk",
                &[
                    &run.source_pk,
                    &run.kind,
                    &run.dry_run,
                    &run.external_id_field.as_str(),
                    &run.actor,
                    &run.started_at,
                ],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// One attempt at a batch; `Err(LostRace)` asks for another.
    async fn apply_batch_tx(
        &self,
        batch: &ApplyBatch<'_>,
    ) -> Result<Result<Vec<ChangeResult>, LostRace>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;

        let mut results = Vec::with_capacity(batch.changes.len());
        if !batch.changes.is_empty() {
            tx.batch_execute(STAGE_CHANGES).await?;
            let writer = copy_writer(
                &tx,
                "COPY apply_changes (ord, user_pk, old, new) FROM STDIN (FORMAT binary)",
                &[Type::INT8, Type::INT8, Type::TEXT, Type::TEXT],
            )
            .await?;
            pin_mut!(writer);
            for (ord, change) in (0_i64..).zip(batch.changes) {
                writer
                    .as_mut()
                    .write(&[&ord, &change.user_pk, &change.old, &change.new])
                    .await?;
            }
            writer.finish().await?;
            if batch.changes.len() >= ANALYZE_THRESHOLD {
                tx.batch_execute("ANALYZE apply_changes").await?;
            }
            let rows = tx
                .query(
                    APPLY_CHANGES.as_str(),
                    &[
                        &batch.origin.as_str(),
                        &batch.at,
                        &batch.actor,
                        &batch.run_pk,
                    ],
                )
                .await?;
            if rows.len() != batch.changes.len() {
                return Err(StoreError::Corrupt(format!(
                    "{} changes staged but {} classified",
                    batch.changes.len(),
                    rows.len()
                )));
            }
            let mut raced = Vec::new();
            for ((ord, change), row) in (0_i64..).zip(batch.changes).zip(&rows) {
                match change_result(change, row)? {
                    Some(result) => results.push(result),
                    None => {
                        raced.push(ord);
                        results.push(ChangeResult::Gone); // replaced below
                    }
                }
            }
            if !raced.is_empty() {
                for row in tx.query(RESEEN_CHANGES.as_str(), &[&raced]).await? {
                    let index = usize::try_from(row.try_get::<_, i64>(0)?)
                        .map_err(|_| StoreError::Corrupt("negative change position".into()))?;
                    let (Some(change), Some(slot)) =
                        (batch.changes.get(index), results.get_mut(index))
                    else {
                        return Err(StoreError::Corrupt(format!(
                            "no change at position {index}"
                        )));
                    };
                    match change_result(change, &row)? {
                        Some(result) => *slot = result,
                        None => return Ok(Err(LostRace)),
                    }
                }
            }
        }

        // The outcomes to store: those given, except that each changed user gets the settled
        // one (none for a user that is gone).
        let changed: HashSet<i64> = batch.changes.iter().map(|change| change.user_pk).collect();
        let settled: Vec<_> = batch
            .changes
            .iter()
            .zip(&results)
            .filter_map(|(change, result)| settle(change, result))
            .collect();
        let outcomes: Vec<_> = batch
            .outcomes
            .iter()
            .filter(|outcome| !changed.contains(&outcome.user_pk))
            .chain(settled.iter())
            .collect();
        if !outcomes.is_empty() {
            tx.batch_execute(STAGE_OUTCOMES).await?;
            let writer = copy_writer(
                &tx,
                "COPY apply_outcomes (user_pk, situation, evidence) FROM STDIN (FORMAT binary)",
                &[Type::INT8, Type::TEXT, Type::TEXT],
            )
            .await?;
            pin_mut!(writer);
            for outcome in &outcomes {
                writer
                    .as_mut()
                    .write(&[
                        &outcome.user_pk,
                        &outcome.situation.as_str(),
                        &outcome.evidence.encode(),
                    ])
                    .await?;
            }
            writer.finish().await?;
            if outcomes.len() >= ANALYZE_THRESHOLD {
                tx.batch_execute("ANALYZE apply_outcomes").await?;
            }
            tx.execute(OUTCOMES_UPSERT, &[&batch.source_pk, &batch.run_pk])
                .await?;
        }
        tx.commit().await?;
        Ok(Ok(results))
    }

    async fn finish_run_tx(&self, run_pk: i64, finish: &RunFinish) -> Result<()> {
        let client = self.client().await?;
        let applied = to_i64(finish.applied, "applied count")?;
        let changed = client
            .execute(
                "UPDATE runs SET finished_at = $2, state = $3, summary = $4, applied = $5 WHERE pk = $1",
                &[&run_pk, &finish.finished_at, &finish.state, &finish.summary, &applied],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("run {run_pk} does not exist")));
        }
        Ok(())
    }

    async fn list_runs_tx(&self, source_pk: i64, limit: u32) -> Result<Vec<Run>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE source_pk = $1 ORDER BY pk DESC LIMIT $2"
            ))
            .await?;
        let rows = client
            .query(&statement, &[&source_pk, &i64::from(limit)])
            .await?;
        rows.iter().map(run_from).collect()
    }

    async fn list_users_tx(&self, filter: &UserFilter) -> Result<Vec<UserRecord>> {
        let client = self.client().await?;
        let after = filter.after_pk.unwrap_or(i64::MIN);
        let limit = i64::from(filter.limit);
        let rows = match filter.situation {
            None => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM users u WHERE u.pk > $1 ORDER BY u.pk LIMIT $2"
                    ))
                    .await?;
                client.query(&statement, &[&after, &limit]).await?
            }
            Some((source_pk, situation)) => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM users u
                         JOIN outcomes o ON o.user_pk = u.pk AND o.source_pk = $3 AND o.situation = $4
                         WHERE u.pk > $1 {} ORDER BY u.pk LIMIT $2",
                        crate::partial_index_hint(situation)
                    ))
                    .await?;
                client
                    .query(
                        &statement,
                        &[&after, &limit, &source_pk, &situation.as_str()],
                    )
                    .await?
            }
        };
        rows.iter().map(user_from).collect()
    }

    async fn find_users_tx(&self, ident: &str, email_key: Option<&str>) -> Result<Vec<UserRecord>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&find_users_sql()).await?;
        let rows = client.query(&statement, &[&ident, &email_key]).await?;
        rows.iter().map(user_from).collect()
    }

    async fn get_users_by_pk_tx(&self, pks: &[i64]) -> Result<Vec<UserRecord>> {
        let client = self.client().await?;
        let statement =
            client.prepare_cached(&format!("SELECT {USER_COLUMNS} {IN_REQUESTED_ORDER} JOIN users u ON u.pk = p.pk ORDER BY p.n")).await?;
        let rows = client.query(&statement, &[&pks]).await?;
        rows.iter().map(user_from).collect()
    }

    async fn get_accounts_by_pk_tx(&self, pks: &[i64]) -> Result<Vec<AccountRecord>> {
        let client = self.client().await?;
        let statement =
            client.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} {IN_REQUESTED_ORDER} JOIN accounts a ON a.pk = p.pk ORDER BY p.n")).await?;
        let rows = client.query(&statement, &[&pks]).await?;
        rows.iter().map(account_from).collect()
    }

    async fn count_users_tx(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client.query_one("SELECT count(*) FROM users", &[]).await?;
        to_u64(row.try_get(0)?, "count")
    }

    async fn list_audit_tx(&self, user_pk: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        let client = self.client().await?;
        let limit = i64::from(limit);
        let rows = match user_pk {
            Some(user_pk) => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit WHERE user_pk = $1 ORDER BY pk DESC LIMIT $2"
                    ))
                    .await?;
                client.query(&statement, &[&user_pk, &limit]).await?
            }
            None => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit ORDER BY pk DESC LIMIT $1"
                    ))
                    .await?;
                client.query(&statement, &[&limit]).await?
            }
        };
        rows.iter().map(audit_from).collect()
    }

    async fn insert_token_tx(&self, token: &NewToken) -> Result<i64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO tokens (name, scope, hash, created_at) VALUES ($1, $2, $3, $4) RETURNING pk",
                &[&token.name, &token.scope, &token.hash, &token.created_at],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn ping_tx(&self) -> Result<()> {
        let client = self.client().await?;
        client.batch_execute("SELECT 1").await?;
        Ok(())
    }
}

impl Store for PgStore {
    async fn insert_source(&self, source: &NewSource, at: Timestamp) -> Result<Source> {
        self.insert_source_tx(source, at).await.map_err(classify)
    }
    async fn find_source(&self, name: &str) -> Result<Option<Source>> {
        self.find_source_tx(name).await.map_err(classify)
    }
    async fn list_sources(&self) -> Result<Vec<Source>> {
        self.list_sources_tx().await.map_err(classify)
    }
    async fn update_source_field(&self, source_pk: i64, field: ExternalIdField) -> Result<()> {
        self.update_source_field_tx(source_pk, field)
            .await
            .map_err(classify)
    }
    async fn import_users(
        &self,
        rows: &[NewUser],
        options: &ImportOptions<'_>,
    ) -> Result<ImportSummary> {
        self.import_users_tx(rows, options).await.map_err(classify)
    }
    async fn import_accounts(
        &self,
        source_pk: i64,
        rows: &[NewAccount],
        _at: Timestamp,
    ) -> Result<ImportSummary> {
        self.import_accounts_tx(source_pk, rows)
            .await
            .map_err(classify)
    }
    async fn load_link_input(&self, source_pk: i64) -> Result<LinkInput> {
        self.load_link_input_tx(source_pk, None)
            .await
            .map_err(classify)
    }

    async fn load_plan_input(&self, source_pk: i64, field: ExternalIdField) -> Result<LinkInput> {
        self.load_link_input_tx(source_pk, Some(field))
            .await
            .map_err(classify)
    }
    async fn insert_run(&self, run: &NewRun) -> Result<i64> {
        self.insert_run_tx(run).await.map_err(classify)
    }
    async fn apply_batch(&self, batch: &ApplyBatch<'_>) -> Result<Vec<ChangeResult>> {
        check_batch(batch.changes)?;
        let mut attempt = 1;
        loop {
            let outcome = self.apply_batch_tx(batch).await;
            let retry = match &outcome {
                Ok(Err(LostRace)) => true,
                // A concurrent writer took a value after this attempt looked: the rolled-back
                // attempt's checks will see it next time.
                Err(err) => is_retryable(err),
                Ok(Ok(_)) => false,
            };
            if retry && attempt < APPLY_ATTEMPTS {
                attempt += 1;
                continue;
            }
            return match outcome {
                Ok(Ok(results)) => Ok(results),
                Ok(Err(LostRace)) => Err(StoreError::Invalid(format!(
                    "concurrent writers kept changing these users; gave up after {APPLY_ATTEMPTS} attempts"
                ))),
                Err(err) => Err(classify(err)),
            };
        }
    }
    async fn finish_run(&self, run_pk: i64, finish: &RunFinish) -> Result<()> {
        self.finish_run_tx(run_pk, finish).await.map_err(classify)
    }
    async fn list_runs(&self, source_pk: i64, limit: u32) -> Result<Vec<Run>> {
        self.list_runs_tx(source_pk, limit).await.map_err(classify)
    }
    async fn list_users(&self, filter: &UserFilter) -> Result<Vec<UserRecord>> {
        self.list_users_tx(filter).await.map_err(classify)
    }
    async fn find_users(&self, ident: &str, email_key: Option<&str>) -> Result<Vec<UserRecord>> {
        self.find_users_tx(ident, email_key).await.map_err(classify)
    }
    async fn get_users_by_pk(&self, pks: &[i64]) -> Result<Vec<UserRecord>> {
        self.get_users_by_pk_tx(pks).await.map_err(classify)
    }
    async fn get_accounts_by_pk(&self, pks: &[i64]) -> Result<Vec<AccountRecord>> {
        self.get_accounts_by_pk_tx(pks).await.map_err(classify)
    }
    async fn count_users(&self) -> Result<u64> {
        self.count_users_tx().await.map_err(classify)
    }
    async fn list_audit(&self, user_pk: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        self.list_audit_tx(user_pk, limit).await.map_err(classify)
    }
    async fn insert_token(&self, token: &NewToken) -> Result<i64> {
        self.insert_token_tx(token).await.map_err(classify)
    }
    async fn ping(&self) -> Result<()> {
        self.ping_tx().await.map_err(classify)
    }
}

/// PostgreSQL-specific machinery: the migration runner, the set-based import's promise to
/// write nothing for identical rows, and the races `apply_batch` must survive. The behaviours
/// both stores share are in the contract suite (`tests/`). Like it, these run against the
/// server in `TETHER_TEST_PG_URL` (see `scripts/pg-cluster.sh`), each in a new database.
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use time::macros::datetime;

    const AT: Timestamp = datetime!(2025-03-01 09:00:00.123456 UTC);

    /// A new, empty database on the test server.
    async fn new_database(name: &str) -> tokio_postgres::Config {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let url = std::env::var("TETHER_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "TETHER_TEST_PG_URL is not set: start a cluster with scripts/pg-cluster.sh start DIR \
                 and export the URL it prints"
            )
        });
        let database = format!(
            "tether_pg_{name}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&url.parse().unwrap()).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.dbname(&database);
        config
    }

    /// Drops a test's database (a failed test keeps its own, to look at).
    async fn drop_database(config: &tokio_postgres::Config) {
        let url = std::env::var("TETHER_TEST_PG_URL").unwrap();
        let name = config.get_dbname().unwrap();
        connect(&url.parse().unwrap())
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
    }

    async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    fn user(id: &str, external_id: Option<&str>) -> NewUser {
        NewUser {
            id: id.to_owned(),
            username: id.to_owned(),
            email: Some(format!("{id}@example.com")),
            email_key: Some(format!("{id}@example.com")),
            display_name: id.to_uppercase(),
            active: true,
            external_id: external_id.map(str::to_owned),
        }
    }

    async fn user_pk(store: &PgStore, id: &str) -> i64 {
        store.find_users(id, None).await.unwrap()[0].pk
    }

    /// Waits until some backend of the database is blocked on a lock.
    async fn until_blocked(client: &tokio_postgres::Client) {
        loop {
            let blocked: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if blocked > 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_starting_together_migrate_once() {
        let config = new_database("migrate").await;
        let (a, b, c) = tokio::join!(
            PgStore::open_config(config.clone()),
            PgStore::open_config(config.clone()),
            PgStore::open_config(config.clone()),
        );
        for store in [a, b, c] {
            store.unwrap().ping().await.unwrap();
        }
        let client = connect(&config).await;
        let versions: Vec<i64> = client
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let known: Vec<i64> = MIGRATIONS.iter().map(|&(version, _)| version).collect();
        assert_eq!(versions, known);
        drop_database(&config).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_schema_newer_than_this_build_is_refused() {
        let config = new_database("newer").await;
        PgStore::open_config(config.clone()).await.unwrap();
        connect(&config)
            .await
            .batch_execute("INSERT INTO schema_migrations VALUES (9999)")
            .await
            .unwrap();
        match PgStore::open_config(config.clone()).await {
            Err(StoreError::Invalid(message)) => assert!(message.contains("9999"), "{message}"),
            other => panic!("expected Invalid, got {:?}", other.err()),
        }
        drop_database(&config).await;
    }

    /// `INSERT … ON CONFLICT DO UPDATE … WHERE` would lock (and so write) every identical row;
    /// the import's `UPDATE … FROM` touches only rows that differ.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reimporting_identical_users_neither_writes_nor_locks_them() {
        let config = new_database("reimport").await;
        let store = PgStore::open_config(config.clone()).await.unwrap();
        let rows: Vec<NewUser> = (0..50)
            .map(|i| NewUser {
                external_id: (i % 5 == 0).then(|| format!("ext-{i}")),
                ..user(&format!("user{i}"), None)
            })
            .collect();
        let options = ImportOptions {
            actor: "test",
            at: AT,
            replace_external_ids: false,
        };
        store.import_users(&rows, &options).await.unwrap();
        let client = connect(&config).await;
        let versions =
            "SELECT string_agg(xmin::text || '/' || xmax::text, ',' ORDER BY pk) FROM users";
        let before: String = client.query_one(versions, &[]).await.unwrap().get(0);

        let summary = store.import_users(&rows, &options).await.unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                inserted: 0,
                updated: 0,
                unchanged: 50,
                external_ids_set: 0
            }
        );
        let after: String = client.query_one(versions, &[]).await.unwrap().get(0);
        assert_eq!(
            before, after,
            "an identical re-import rewrote or locked rows"
        );
        let audited: i64 = client
            .query_one("SELECT count(*) FROM audit", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(audited, 10);
        drop_database(&config).await;
    }

    /// A writer that commits after `apply_batch` took its snapshot: the `UPDATE` waits for
    /// it, re-checks and skips the user, and the change is re-read as `Changed`. A value taken
    /// meanwhile makes the write fail on `users_external_id`, and the retried batch reports
    /// `Taken`. Neither leaves an audit entry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apply_batch_rereads_and_retries_after_losing_a_race() {
        let config = new_database("race").await;
        let store = std::sync::Arc::new(PgStore::open_config(config.clone()).await.unwrap());
        let options = ImportOptions {
            actor: "test",
            at: AT,
            replace_external_ids: false,
        };
        store
            .import_users(
                &[user("ann", None), user("bob", None), user("cy", None)],
                &options,
            )
            .await
            .unwrap();
        let (ann, bob, cy) = (
            user_pk(&store, "ann").await,
            user_pk(&store, "bob").await,
            user_pk(&store, "cy").await,
        );

        let mut writer = connect(&config).await;
        let concurrent = writer.transaction().await.unwrap();
        concurrent
            .execute(
                "UPDATE users SET external_id = 'by-login' WHERE pk = $1",
                &[&ann],
            )
            .await
            .unwrap();
        concurrent
            .execute(
                "UPDATE users SET external_id = 'wanted' WHERE pk = $1",
                &[&cy],
            )
            .await
            .unwrap();
        let apply = {
            let store = store.clone();
            tokio::spawn(async move {
                let changes = [
                    Change {
                        user_pk: ann,
                        account_pk: 1,
                        old: None,
                        new: "acc-ann".into(),
                    },
                    Change {
                        user_pk: bob,
                        account_pk: 2,
                        old: None,
                        new: "wanted".into(),
                    },
                ];
                let batch = ApplyBatch {
                    source_pk: 1,
                    run_pk: 1,
                    origin: Origin::Pull,
                    actor: "test",
                    at: AT,
                    changes: &changes,
                    outcomes: &[],
                };
                store.apply_batch(&batch).await
            })
        };
        until_blocked(&connect(&config).await).await;
        concurrent.commit().await.unwrap();

        let results = apply.await.unwrap().unwrap();
        assert_eq!(
            results,
            vec![
                ChangeResult::Changed {
                    current: "by-login".into()
                },
                ChangeResult::Taken { holder_pk: cy }
            ]
        );
        assert!(store
            .list_audit(None, 10)
            .await
            .unwrap()
            .iter()
            .all(|entry| entry.reason == "import"));
        let input = store.load_link_input(1).await.unwrap();
        let stored: Vec<_> = input
            .stored
            .iter()
            .map(|s| s.as_ref().map(|s| s.situation))
            .collect();
        assert_eq!(
            stored,
            vec![
                Some(Situation::Conflict),
                Some(Situation::AccountTaken),
                None
            ]
        );
        drop_database(&config).await;
    }

    /// A user inserted by another writer after the import's snapshot skipped the External
    /// ID checks, so the import is refused whole; run again, it goes through them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_racing_a_concurrent_insert_is_refused_whole() {
        let config = new_database("import_race").await;
        let store = std::sync::Arc::new(PgStore::open_config(config.clone()).await.unwrap());
        let mut writer = connect(&config).await;
        let concurrent = writer.transaction().await.unwrap();
        concurrent
            .execute(
                "INSERT INTO users (id, username, external_id) VALUES ('dan', 'dan', 'theirs')",
                &[],
            )
            .await
            .unwrap();
        let import = {
            let store = store.clone();
            tokio::spawn(async move {
                let rows = [user("eve", None), user("dan", Some("ours"))];
                let options = ImportOptions {
                    actor: "test",
                    at: AT,
                    replace_external_ids: false,
                };
                store.import_users(&rows, &options).await
            })
        };
        until_blocked(&connect(&config).await).await;
        concurrent.commit().await.unwrap();

        match import.await.unwrap() {
            Err(StoreError::Conflict {
                constraint: "users_id",
                ..
            }) => {}
            other => panic!("expected a users_id conflict, got {other:?}"),
        }
        assert!(store.find_users("eve", None).await.unwrap().is_empty());
        let rows = [user("eve", None), user("dan", Some("ours"))];
        let options = ImportOptions {
            actor: "test",
            at: AT,
            replace_external_ids: false,
        };
        assert!(matches!(
            store.import_users(&rows, &options).await,
            Err(StoreError::Invalid(_))
        ));
        drop_database(&config).await;
    }

    /// A file may hand an External ID from one user to another when the giver's row comes
    /// first; the set-based write must not depend on the order it visits the rows in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn external_ids_move_between_users_in_one_import() {
        let config = new_database("move").await;
        let store = PgStore::open_config(config.clone()).await.unwrap();
        let replace = ImportOptions {
            actor: "test",
            at: AT,
            replace_external_ids: true,
        };
        let start: Vec<NewUser> = (0..200)
            .map(|i| user(&format!("user{i}"), Some(&format!("x{i}"))))
            .collect();
        store.import_users(&start, &replace).await.unwrap();

        // user0 gives x0 up for a new value, user1 takes x0 and gives x1 up, …, and a new
        // user takes x199 last.
        let chain: Vec<NewUser> = (0..200)
            .map(|i| {
                let value = if i == 0 {
                    "fresh".to_owned()
                } else {
                    format!("x{}", i - 1)
                };
                user(&format!("user{i}"), Some(&value))
            })
            .chain([user("newcomer", Some("x199"))])
            .collect();
        // Backwards, every row takes a value a later row gives up: refused, as a row-by-row
        // import would.
        let backwards: Vec<NewUser> = chain.iter().rev().cloned().collect();
        assert!(matches!(
            store.import_users(&backwards, &replace).await,
            Err(StoreError::Conflict {
                constraint: "users_external_id",
                ..
            })
        ));

        let summary = store.import_users(&chain, &replace).await.unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                inserted: 1,
                updated: 200,
                unchanged: 0,
                external_ids_set: 201
            }
        );
        let held = |id: &'static str| {
            let store = &store;
            async move {
                store.find_users(id, None).await.unwrap()[0]
                    .external_id
                    .clone()
            }
        };
        assert_eq!(held("user150").await.as_deref(), Some("x149"));
        assert_eq!(held("newcomer").await.as_deref(), Some("x199"));
        drop_database(&config).await;
    }

    #[test]
    fn conflict_details_yield_the_value() {
        assert_eq!(
            key_values("Key (external_id)=(abc) already exists."),
            Some("abc")
        );
        assert_eq!(
            key_values("Key (source_pk, account_id)=(1, 5b10:a)) already exists."),
            Some("1, 5b10:a)")
        );
        assert_eq!(key_values("something else"), None);
        assert_eq!(known_constraint("tokens_hash"), Some("tokens_hash"));
        assert_eq!(known_constraint("users_pkey"), None);
    }
}
