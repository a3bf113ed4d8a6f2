//! The contract suite's harness: a fresh database per test (a temp-file SQLite database, or a
//! new database on the PostgreSQL server named by `TETHER_TEST_PG_URL`), a raw connection
//! beside the store for what the trait cannot do, and the fixtures the cases share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use tether_core::{
    match_key, plan_links, Change, ChangeResult, ExternalIdField, Origin, Outcome, Plan, Rules,
};
use tether_store::{
    AnyStore, ApplyBatch, ImportOptions, LinkInput, NewAccount, NewRun, NewSource, NewUser,
    RunFinish, Source, Store, StoredOutcome, Timestamp, UserFilter, UserRecord,
};
use time::macros::datetime;

/// The environment variable naming the PostgreSQL server the postgres cases run against.
pub const PG_URL_VAR: &str = "TETHER_TEST_PG_URL";

/// Fixed points in time: the store never reads the clock, and neither do its tests.
pub const T0: Timestamp = datetime!(2025-03-01 09:00:00 UTC);
pub const T1: Timestamp = datetime!(2025-03-02 10:30:00 UTC);
pub const T2: Timestamp = datetime!(2025-03-03 11:45:00 UTC);
pub const T3: Timestamp = datetime!(2025-03-04 12:15:00 UTC);

enum Backend {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres {
        server_url: String,
        database: String,
    },
}

/// One test's own database and the store opened on it.
pub struct TestDb {
    pub store: AnyStore,
    /// The URL the store was opened with, to open it again.
    pub url: String,
    backend: Backend,
}

impl TestDb {
    /// A store on a new SQLite file in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("tether.db");
        let url = format!("sqlite:{}", path.display());
        let store = AnyStore::open(&url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
        TestDb {
            store,
            url,
            backend: Backend::Sqlite { path, _dir: dir },
        }
    }

    /// A store on a new database `t_<test>_<pid>` of the server in `TETHER_TEST_PG_URL`.
    pub async fn postgres(test: &str) -> TestDb {
        let server_url = match std::env::var(PG_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => panic!(
                "{PG_URL_VAR} is not set, so the PostgreSQL contract tests cannot run: start a \
                 cluster with scripts/pg-cluster.sh start DIR and export {PG_URL_VAR}, or run \
                 scripts/test"
            ),
        };
        // PostgreSQL names stop at 63 bytes.
        let test: String = test.chars().take(40).collect();
        let database = format!("t_{}_{}", test, std::process::id());
        let admin = connect_pg(&server_url).await;
        // Two statements: a multi-statement query is a transaction, which CREATE DATABASE refuses.
        for statement in [
            format!("DROP DATABASE IF EXISTS {database}"),
            format!("CREATE DATABASE {database}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {}", pg_error(&e)));
        }
        let url = with_database(&server_url, &database);
        let store = AnyStore::open(&url)
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e}", tether_store::redact_url(&url)));
        TestDb {
            store,
            url,
            backend: Backend::Postgres {
                server_url,
                database,
            },
        }
    }

    /// Runs one statement through a connection of the database's own driver, beside the
    /// store; returns the rows it touched or the database's error text.
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, String> {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let connection = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
                connection
                    .busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(|e| e.to_string())?;
                connection
                    .execute(sql, [])
                    .map(|n| n as u64)
                    .map_err(|e| e.to_string())
            }
            Backend::Postgres { .. } => {
                let client = connect_pg(&self.url).await;
                client.execute(sql, &[]).await.map_err(|e| pg_error(&e))
            }
        }
    }

    /// Counts the rows `sql` (a `SELECT count(*) …`) returns, through a raw connection.
    pub async fn count_raw(&self, sql: &str) -> i64 {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let connection = rusqlite::Connection::open(path).expect("a raw SQLite connection");
                connection
                    .query_row(sql, [], |row| row.get::<_, i64>(0))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Backend::Postgres { .. } => {
                let client = connect_pg(&self.url).await;
                let row = client
                    .query_one(sql, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {}", pg_error(&e)));
                row.get::<_, i64>(0)
            }
        }
    }

    /// Closes the store and drops a PostgreSQL test database (a failed test keeps its own,
    /// to look at).
    pub async fn finish(self) {
        let TestDb { store, backend, .. } = self;
        drop(store);
        if let Backend::Postgres {
            server_url,
            database,
        } = backend
        {
            let admin = connect_pg(&server_url).await;
            // Best effort: a leftover database is dropped by the next run's CREATE.
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .await;
        }
    }
}

/// The server's message too: `tokio_postgres::Error`'s `Display` says only "db error".
fn pg_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{error}: {} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

async fn connect_pg(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to {}: {}",
                tether_store::redact_url(url),
                pg_error(&e)
            )
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{database}{query}")
}

// --- fixtures -----------------------------------------------------------------------------

/// A user as an import file gives it: username = id, e-mail's match key computed.
pub fn user(id: &str, email: Option<&str>) -> NewUser {
    NewUser {
        id: id.to_owned(),
        username: id.to_owned(),
        email: email.map(str::to_owned),
        email_key: match_key(email).key().map(str::to_owned),
        display_name: format!("User {id}"),
        active: true,
        external_id: None,
    }
}

/// [`user`] with an External ID.
pub fn linked_user(id: &str, email: Option<&str>, external_id: &str) -> NewUser {
    NewUser {
        external_id: Some(external_id.to_owned()),
        ..user(id, email)
    }
}

/// An active account of type `atlassian`, username and key derived from the id.
pub fn account(account_id: &str, email: Option<&str>) -> NewAccount {
    NewAccount {
        account_id: account_id.to_owned(),
        username: Some(format!("name-{account_id}")),
        key: Some(format!("key-{account_id}")),
        email: email.map(str::to_owned),
        email_key: match_key(email).key().map(str::to_owned),
        display_name: format!("Account {account_id}"),
        active: true,
        account_type: tether_core::AccountType::Atlassian,
    }
}

pub fn import_options(replace_external_ids: bool, at: Timestamp) -> ImportOptions<'static> {
    ImportOptions {
        actor: "importer",
        at,
        replace_external_ids,
    }
}

/// Adds a `file` source with the default External ID field.
pub async fn file_source(store: &impl Store, name: &str) -> Source {
    store
        .insert_source(
            &NewSource {
                name: name.to_owned(),
                kind: "file".to_owned(),
                external_id_field: ExternalIdField::AccountId,
                link_inactive: false,
            },
            T0,
        )
        .await
        .expect("insert_source")
}

pub async fn import_users(store: &impl Store, rows: &[NewUser]) {
    store
        .import_users(rows, &import_options(false, T0))
        .await
        .expect("import_users");
}

/// Every user, in pk order, read page by page.
pub async fn all_users(store: &impl Store) -> Vec<UserRecord> {
    let mut users = Vec::new();
    let mut after_pk = None;
    loop {
        let page = store
            .list_users(&UserFilter {
                after_pk,
                limit: 500,
                situation: None,
            })
            .await
            .expect("list_users");
        let Some(last) = page.last() else { break };
        // A store that repeats a row would page forever: fail instead.
        assert!(
            page.len() <= 500,
            "list_users exceeded its limit: {} rows",
            page.len()
        );
        assert!(
            page.windows(2).all(|w| w[0].pk < w[1].pk) && after_pk.is_none_or(|after| page[0].pk > after),
            "list_users pages must be ordered by pk and start after after_pk ({after_pk:?}): got {:?}",
            page.iter().map(|u| u.pk).collect::<Vec<_>>()
        );
        after_pk = Some(last.pk);
        users.extend(page);
    }
    users
}

/// The users by id.
pub async fn users_by_id(store: &impl Store) -> BTreeMap<String, UserRecord> {
    all_users(store)
        .await
        .into_iter()
        .map(|u| (u.id.clone(), u))
        .collect()
}

/// The one user with this id.
pub async fn user_by_id(store: &impl Store, id: &str) -> UserRecord {
    let mut found = store.find_users(id, None).await.expect("find_users");
    found.retain(|u| u.id == id);
    assert_eq!(found.len(), 1, "exactly one user with id {id}");
    found.remove(0)
}

/// What a store keeps of an outcome.
pub fn stored(outcome: &Outcome) -> StoredOutcome {
    StoredOutcome {
        situation: outcome.situation,
        evidence: outcome.evidence.encode(),
    }
}

/// The source's matching rules.
pub fn rules(source: &Source) -> Rules {
    Rules {
        field: source.external_id_field,
        link_inactive: source.link_inactive,
    }
}

/// Plans a source from what the store holds now.
pub async fn plan(store: &impl Store, source: &Source) -> (LinkInput, Plan) {
    let input = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    let plan = plan_links(&input.users, &input.accounts, &rules(source));
    (input, plan)
}

/// The outcomes of `plan` that differ from those `input` holds, as a run passes them on.
pub fn new_outcomes(input: &LinkInput, plan: &Plan) -> Vec<Outcome> {
    let stored_by_user: BTreeMap<i64, Option<&StoredOutcome>> = input
        .users
        .iter()
        .zip(&input.stored)
        .map(|(u, s)| (u.pk, s.as_ref()))
        .collect();
    plan.outcomes
        .iter()
        .filter(|o| stored_by_user.get(&o.user_pk).copied().flatten() != Some(&stored(o)))
        .cloned()
        .collect()
}

/// What one run did.
pub struct RunReport {
    pub run_pk: i64,
    pub plan: Plan,
    /// One per change of the plan, in order.
    pub results: Vec<ChangeResult>,
}

impl RunReport {
    pub fn applied(&self) -> u64 {
        self.results
            .iter()
            .filter(|r| **r == ChangeResult::Applied)
            .count() as u64
    }
}

/// A reconcile run as the jobs make it: load, plan, record the run, apply in batches of
/// `batch_size` users, record the end.
pub async fn run(
    store: &impl Store,
    source: &Source,
    at: Timestamp,
    batch_size: usize,
) -> RunReport {
    let (input, plan) = plan(store, source).await;
    let run_pk = start_run(store, source, at).await;
    let results = apply(
        store,
        source,
        run_pk,
        at,
        &input,
        &plan,
        &plan.changes,
        batch_size,
    )
    .await;
    let report = RunReport {
        run_pk,
        plan,
        results,
    };
    store
        .finish_run(
            run_pk,
            &RunFinish {
                finished_at: at,
                state: "succeeded".to_owned(),
                summary: serde_json::json!({ "changes": report.plan.changes.len() }),
                applied: report.applied(),
            },
        )
        .await
        .expect("finish_run");
    report
}

/// Applies `changes` (planned from `input`) and the outcomes that changed, in batches of
/// `batch_size` users; returns one result per change.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    store: &impl Store,
    source: &Source,
    run_pk: i64,
    at: Timestamp,
    input: &LinkInput,
    plan: &Plan,
    changes: &[Change],
    batch_size: usize,
) -> Vec<ChangeResult> {
    let outcomes = new_outcomes(input, plan);
    let mut pks: Vec<i64> = plan.outcomes.iter().map(|o| o.user_pk).collect();
    pks.extend(changes.iter().map(|c| c.user_pk));
    pks.sort_unstable();
    pks.dedup();
    let mut results = Vec::with_capacity(changes.len());
    for chunk in pks.chunks(batch_size.max(1)) {
        let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
        let in_chunk = |pk: i64| first <= pk && pk <= last;
        let batch_changes: Vec<Change> = changes
            .iter()
            .filter(|c| in_chunk(c.user_pk))
            .cloned()
            .collect();
        let batch_outcomes: Vec<Outcome> = outcomes
            .iter()
            .filter(|o| in_chunk(o.user_pk))
            .cloned()
            .collect();
        let batch = ApplyBatch {
            source_pk: source.pk,
            run_pk,
            origin: Origin::Pull,
            actor: "tester",
            at,
            changes: &batch_changes,
            outcomes: &batch_outcomes,
        };
        let batch_results = store.apply_batch(&batch).await.expect("apply_batch");
        assert_eq!(
            batch_results.len(),
            batch_changes.len(),
            "apply_batch returns one result per change"
        );
        results.extend(batch_results);
    }
    results
}

/// The stored outcome of each user for one source, by user pk.
pub fn stored_by_user(input: &LinkInput) -> BTreeMap<i64, Option<StoredOutcome>> {
    assert_eq!(
        input.users.len(),
        input.stored.len(),
        "`stored` is aligned with `users`"
    );
    input
        .users
        .iter()
        .map(|u| u.pk)
        .zip(input.stored.iter().cloned())
        .collect()
}

/// Records the start of a reconcile run by "tester" at `at`.
pub async fn start_run(store: &impl Store, source: &Source, at: Timestamp) -> i64 {
    store
        .insert_run(&NewRun {
            source_pk: source.pk,
            kind: "reconcile".to_owned(),
            dry_run: false,
            external_id_field: source.external_id_field,
            actor: "tester".to_owned(),
            started_at: at,
        })
        .await
        .expect("insert_run")
}
