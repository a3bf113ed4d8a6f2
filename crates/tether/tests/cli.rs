//! End-to-end tests of the `tether` command line, as a new user would run it, against both
//! stores: SQLite in a temporary file, and PostgreSQL on the server named by
//! `TETHER_TEST_PG_URL` (scripts/test starts one). Each test gets a fresh database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

struct Db {
    url: String,
    _dir: tempfile::TempDir,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("tether.db").display());
    Db { url, _dir: dir }
}

fn postgres() -> Db {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = std::env::var("TETHER_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("TETHER_TEST_PG_URL is not set: run scripts/test, or start a cluster with scripts/pg-cluster.sh start DIR and export the URL it prints")
    });
    let name = format!(
        "cli_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let status = Command::new("psql")
        .args([server.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot create database {name} on {server}"
    );
    let base = server.rsplit_once('/').map(|(base, _)| base).unwrap();
    Db {
        url: format!("{base}/{name}"),
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn tether(db: &Db, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("TETHER_DATABASE_URL", &db.url)
        .current_dir(examples())
        .output()
        .unwrap()
}

fn ok(db: &Db, args: &[&str]) -> String {
    let out = tether(db, args);
    assert!(
        out.status.success(),
        "tether {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn setup(db: &Db) {
    ok(db, &["sources", "add", "jira"]);
    ok(db, &["import", "users", "users.csv"]);
    ok(
        db,
        &["import", "accounts", "accounts.csv", "--source", "jira"],
    );
}

fn situations(db: &Db) -> BTreeMap<String, String> {
    ok(db, &["diagnose", "--all", "--format", "jsonl"])
        .lines()
        .map(json)
        .map(|d| {
            (
                d["user_id"].as_str().unwrap().to_owned(),
                d["situation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[test] fn $name() { super::$name(&super::sqlite()) })*
        }
        mod postgres_store {
            $(#[test] fn $name() { super::$name(&super::postgres()) })*
        }
    };
}

both_stores!(
    every_situation_from_the_examples,
    reconcile_applies_once_and_a_second_run_writes_nothing,
    dry_run_writes_nothing,
    import_is_idempotent,
    bad_rows_refuse_the_whole_file,
    junk_is_refused_without_panic,
    unknown_names_are_errors,
    users_filter_by_situation,
    diagnose_finds_users_by_email_in_another_case,
    field_username_explains_missing_usernames,
    tokens_are_printed_once_and_stored_hashed,
    a_killed_run_loses_nothing_and_a_rerun_converges,
);

fn every_situation_from_the_examples(db: &Db) {
    setup(db);
    let expected: BTreeMap<String, String> = [
        ("u001", "new_link"),           // e-mail differs only in case
        ("u002", "linked"),             // linked by ID although the e-mails differ
        ("u003", "conflict"), // holds an ID no account has; its e-mail's account has another
        ("u004", "duplicate_accounts"), // two accounts share the address
        ("u005", "inactive_account"),
        ("u006", "duplicate_users"),
        ("u007", "duplicate_users"),
        ("u008", "no_email"),
        ("u009", "invalid_email"),
        ("u010", "new_link"),
        ("u011", "no_match"), // straße is not strasse
        ("u012", "account_taken"),
        ("u013", "new_link"), // IDN domain vs punycode, upper-case local part
        ("u014", "linked"),
        ("u015", "no_match"), // only an app account has the address
    ]
    .into_iter()
    .map(|(u, s)| (u.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(situations(db), expected);
    let dup = json(&ok(db, &["diagnose", "u004", "--format", "json"]));
    assert_eq!(dup["situation"], "duplicate_accounts");
    assert_eq!(
        dup["explanation"],
        "2 accounts share dave.kim@example.com in source jira: 557058:5b10a284…, 557058:5c22e1f9…."
    );
}

fn reconcile_applies_once_and_a_second_run_writes_nothing(db: &Db) {
    setup(db);
    let first = json(&ok(
        db,
        &["reconcile", "--source", "jira", "--format", "json"],
    ));
    assert_eq!(first["applied"], 3);
    assert_eq!(first["summary"]["new_link"], 3);
    assert_eq!(first["summary"]["linked"], 2);
    let second = json(&ok(
        db,
        &["reconcile", "--source", "jira", "--format", "json"],
    ));
    assert_eq!(second["applied"], 0);
    assert_eq!(second["planned"], 0);
    assert_eq!(
        second["outcomes_written"], 0,
        "a run with nothing new rewrites no outcome"
    );
    assert_eq!(second["summary"]["linked"], 5);
    assert!(second["summary"].get("new_link").is_none());
    let alice = json(&ok(db, &["diagnose", "alice", "--format", "json"]));
    assert_eq!(alice["situation"], "linked");
    assert_eq!(
        alice["external_id"],
        "557058:5b10a284-4c20-4657-9ede-21a6d1c0b001"
    );
    assert_eq!(alice["external_id_origin"], "pull");
}

fn dry_run_writes_nothing(db: &Db) {
    setup(db);
    let plan = json(&ok(
        db,
        &[
            "reconcile",
            "--source",
            "jira",
            "--dry-run",
            "--format",
            "json",
        ],
    ));
    assert_eq!(plan["planned"], 3);
    assert_eq!(plan["applied"], 0);
    assert!(plan["run"].is_null());
    let users = ok(db, &["users", "--format", "jsonl"]);
    let linked = users
        .lines()
        .map(json)
        .filter(|u| !u["external_id"].is_null())
        .count();
    assert_eq!(
        linked, 3,
        "only the imported External IDs exist after a dry run"
    );
}

fn import_is_idempotent(db: &Db) {
    setup(db);
    let again = ok(db, &["import", "users", "users.csv"]);
    assert!(
        again.contains("0 inserted, 0 updated, 15 unchanged; 0 External IDs set"),
        "{again}"
    );
    let again = ok(
        db,
        &["import", "accounts", "accounts.csv", "--source", "jira"],
    );
    assert!(
        again.contains("0 inserted, 0 updated, 13 unchanged"),
        "{again}"
    );
}

fn bad_rows_refuse_the_whole_file(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.csv");
    std::fs::write(
        &file,
        "id,username,email,display_name,active,external_id\n\
         u1,a,a@example.com,A,true,\n\
         u2,b,b@example.com,B,perhaps,\n\
         u3,c,c@example.com,C,true,X\n\
         u4,d,d@example.com,D,true,X\n",
    )
    .unwrap();
    let out = tether(db, &["import", "users", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3, column active: 'perhaps' is not a boolean"),
        "{err}"
    );
    assert!(
        err.contains("line 5, column external_id: 'X' is already the External ID on line 4"),
        "{err}"
    );
    assert_eq!(
        ok(db, &["users", "--format", "jsonl"]).lines().count(),
        0,
        "nothing was written"
    );
    let partial = ok(
        db,
        &["import", "users", file.to_str().unwrap(), "--skip-invalid"],
    );
    assert!(partial.contains("2 rows; 2 inserted"), "{partial}");
}

fn junk_is_refused_without_panic(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["junk.csv", "junk.jsonl"] {
        let file = dir.path().join(name);
        let junk: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&file, junk).unwrap();
        let out = tether(db, &["import", "users", file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    assert_eq!(ok(db, &["users", "--format", "jsonl"]).lines().count(), 0);
}

fn unknown_names_are_errors(db: &Db) {
    setup(db);
    let out = tether(db, &["reconcile", "--source", "jirra"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("unknown source 'jirra'; known sources: jira"));
    let out = tether(db, &["reconcile", "--source", "jira", "--field", "usernme"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown External ID field 'usernme'"));
    let out = tether(
        db,
        &["import", "accounts", "accounts.csv", "--source", "nope"],
    );
    assert_eq!(out.status.code(), Some(4));
    let out = tether(db, &["diagnose", "nobody@example.com"]);
    assert_eq!(out.status.code(), Some(4));
}

fn users_filter_by_situation(db: &Db) {
    setup(db);
    ok(db, &["reconcile", "--source", "jira"]);
    let ids: Vec<String> = ok(
        db,
        &[
            "users",
            "--situation",
            "duplicate_users",
            "--format",
            "jsonl",
        ],
    )
    .lines()
    .map(|l| json(l)["id"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(ids, ["u006", "u007"]);
    let csv = ok(db, &["users", "--situation", "linked", "--format", "csv"]);
    assert_eq!(
        csv.lines().next(),
        Some("id,username,email,display_name,active,external_id")
    );
    assert_eq!(csv.lines().count(), 1 + 5);
}

fn diagnose_finds_users_by_email_in_another_case(db: &Db) {
    setup(db);
    let found = json(&ok(
        db,
        &[
            "diagnose",
            "  ALICE.martin@EXAMPLE.com ",
            "--format",
            "json",
        ],
    ));
    assert_eq!(found["user_id"], "u001");
    assert_eq!(found["situation"], "new_link");
    let text = ok(db, &["diagnose", "u012"]);
    assert!(text.contains("situation:   account_taken"), "{text}");
    assert!(
        text.contains("is already the External ID of u014 (olivia)"),
        "{text}"
    );
}

fn field_username_explains_missing_usernames(db: &Db) {
    setup(db);
    let plan = json(&ok(
        db,
        &[
            "reconcile",
            "--source",
            "jira",
            "--field",
            "username",
            "--dry-run",
            "--format",
            "json",
        ],
    ));
    assert_eq!(plan["planned"], 0);
    assert_eq!(
        plan["summary"]["missing_field"], 4,
        "u001, u010, u013 and u012 (whose account has no username)"
    );
    ok(
        db,
        &["reconcile", "--source", "jira", "--field", "username"],
    );
    let alice = json(&ok(db, &["diagnose", "u001", "--format", "json"]));
    assert_eq!(alice["situation"], "missing_field");
    assert!(
        alice["fix"]
            .as_str()
            .unwrap()
            .starts_with("Set External ID field to account_id"),
        "{alice}"
    );
}

fn tokens_are_printed_once_and_stored_hashed(db: &Db) {
    let out = ok(
        db,
        &["token", "create", "--name", "okta", "--scope", "scim"],
    );
    let token = out.lines().last().unwrap();
    assert!(
        token.starts_with("tether_") && token.len() == 7 + 64,
        "{out}"
    );
    let again = tether(
        db,
        &["token", "create", "--name", "okta", "--scope", "scim"],
    );
    assert_eq!(again.status.code(), Some(3), "a taken name is refused");
    let bad = tether(db, &["token", "create", "--name", "x", "--scope", "root"]);
    assert_eq!(bad.status.code(), Some(2));
    if let Some(path) = db.url.strip_prefix("sqlite:") {
        for file in [path.to_owned(), format!("{path}-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "token stored in clear in {file}"
            );
        }
    }
}

/// Writes `n` users and `n` matching accounts (every third address in upper case).
fn write_population(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let users = dir.join("users.csv");
    let accounts = dir.join("accounts.csv");
    let mut u = String::from("id,username,email,display_name,active,external_id\n");
    let mut a = String::from("account_id,username,key,email,display_name,active,account_type\n");
    for i in 0..n {
        let email = format!("person{i}@example.com");
        let shown = if i % 3 == 0 {
            email.to_uppercase()
        } else {
            email.clone()
        };
        u.push_str(&format!("u{i:05},person{i},{shown},Person {i},true,\n"));
        a.push_str(&format!(
            "557058:{i:08x}-0000-4000-8000-000000000000,,,{email},Person {i},true,atlassian\n"
        ));
    }
    std::fs::write(&users, u).unwrap();
    std::fs::write(&accounts, a).unwrap();
    (users, accounts)
}

fn linked_count(db: &Db) -> usize {
    ok(db, &["users", "--format", "jsonl"])
        .lines()
        .map(json)
        .filter(|u| !u["external_id"].is_null())
        .count()
}

fn audit_count(db: &Db) -> usize {
    ok(db, &["audit", "--limit", "100000", "--format", "jsonl"])
        .lines()
        .count()
}

fn a_killed_run_loses_nothing_and_a_rerun_converges(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let (users, accounts) = write_population(dir.path(), 1000);
    ok(db, &["sources", "add", "jira"]);
    ok(db, &["import", "users", users.to_str().unwrap()]);
    ok(
        db,
        &[
            "import",
            "accounts",
            accounts.to_str().unwrap(),
            "--source",
            "jira",
        ],
    );

    let killed = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["reconcile", "--source", "jira", "--batch-size", "100"])
        .env("TETHER_DATABASE_URL", &db.url)
        .env("TETHER_TEST_ABORT_AFTER_BATCHES", "3")
        .output()
        .unwrap();
    assert!(
        !killed.status.success() && killed.status.code().is_none(),
        "the run was killed: {killed:?}"
    );
    // Exactly the three committed batches are there, each link with its audit entry.
    assert_eq!(linked_count(db), 300);
    assert_eq!(audit_count(db), 300);

    let rerun = json(&ok(
        db,
        &[
            "reconcile",
            "--source",
            "jira",
            "--format",
            "json",
            "--batch-size",
            "100",
        ],
    ));
    assert_eq!(rerun["summary"]["linked"], 300);
    assert_eq!(rerun["summary"]["new_link"], 700);
    assert_eq!(rerun["applied"], 700);
    let last = json(&ok(
        db,
        &["reconcile", "--source", "jira", "--format", "json"],
    ));
    assert_eq!(last["applied"], 0);
    assert_eq!(last["summary"]["linked"], 1000);
    assert_eq!(linked_count(db), 1000);
    assert_eq!(
        audit_count(db),
        1000,
        "one audit entry per link, none lost or doubled"
    );
}
