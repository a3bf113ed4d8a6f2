//! A sign-in and a reconcile (the pull's apply) on the same users at the same time: every
//! user ends with exactly one External ID and exactly one audited write, whichever writer
//! won, and the loser overwrote nothing. Run through the real front ends: `tether reconcile`
//! (a process, in small batches) against `tether serve`'s sign-in decision API, sharing one
//! database (SQLite, and PostgreSQL). Half the sign-ins bring the same account ID as the
//! directory, half another one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tether_store::admin::{AdminStore, Settings};
use tether_store::{AnyStore, Store, UserFilter};
use time::macros::datetime;

const USERS: usize = 1500;

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(db: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("TETHER_DATABASE_URL", db)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tether {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn serve(db: &str) -> (Peer, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TETHER_DATABASE_URL", db)
        .env_remove("TETHER_OIDC_ISSUER")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("tether: listening on ").nth(1) {
                let _ = sender.send(url.trim().to_owned());
            }
        }
    });
    let base = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("tether serve prints where it listens within 60 s");
    (Peer(child), base)
}

/// A fresh database: a SQLite file in `dir`, or a new database on the PostgreSQL server named
/// by `TETHER_TEST_PG_URL` (scripts/test starts one; without it the PostgreSQL test fails).
fn database(postgres: bool, dir: &std::path::Path, name: &str) -> String {
    if !postgres {
        return format!("sqlite:{}", dir.join("tether.db").display());
    }
    let server = std::env::var("TETHER_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("TETHER_TEST_PG_URL is not set: run scripts/test, or start a cluster with scripts/pg-cluster.sh start DIR and export the URL it prints")
    });
    let database = format!("{name}_{}", std::process::id());
    for statement in [
        format!("DROP DATABASE IF EXISTS {database}"),
        format!("CREATE DATABASE {database}"),
    ] {
        let status = Command::new("psql")
            .args([server.as_str(), "-qc", &statement])
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .status()
            .unwrap();
        assert!(status.success(), "{statement} on {server}");
    }
    let base = server.rsplit_once('/').map(|(base, _)| base).unwrap();
    format!("{base}/{database}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_sign_in_racing_a_reconcile_links_each_user_once() {
    race(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_sign_in_racing_a_reconcile_links_each_user_once() {
    race(true).await;
}

async fn race(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(postgres, dir.path(), "signin_race");
    let mut users = String::from("id,username,email,display_name,active,external_id\n");
    let mut accounts =
        String::from("account_id,username,key,email,display_name,active,account_type\n");
    for i in 0..USERS {
        users.push_str(&format!("u{i},user{i},r{i}@example.com,User {i},true,\n"));
        accounts.push_str(&format!(
            "acc-{i},,,R{i}@Example.com,Account {i},true,atlassian\n"
        ));
    }
    let users_file = dir.path().join("users.csv");
    let accounts_file = dir.path().join("accounts.csv");
    std::fs::write(&users_file, users).unwrap();
    std::fs::write(&accounts_file, accounts).unwrap();
    cli(&db, &["import", "users", users_file.to_str().unwrap()]);
    cli(&db, &["sources", "add", "cloud"]);
    cli(
        &db,
        &[
            "import",
            "accounts",
            accounts_file.to_str().unwrap(),
            "--source",
            "cloud",
        ],
    );
    let token = cli(
        &db,
        &["token", "create", "--name", "race", "--scope", "admin"],
    )
    .lines()
    .last()
    .unwrap()
    .trim()
    .to_owned();
    let store = AnyStore::open(&db).await.unwrap();
    let settings = Settings {
        auto_populate: true,
        ..store.get_settings().await.unwrap()
    };
    store
        .update_settings(&settings, "test", datetime!(2026-01-01 00:00 UTC))
        .await
        .unwrap();
    let (_server, base) = serve(&db);

    // Even users sign in with the directory's account ID, odd users with another one.
    let subject = |i: usize| {
        if i.is_multiple_of(2) {
            format!("acc-{i}")
        } else {
            format!("login-{i}")
        }
    };
    let reconcile_db = db.clone();
    let reconcile = tokio::task::spawn_blocking(move || {
        cli(
            &reconcile_db,
            &[
                "reconcile",
                "--source",
                "cloud",
                "--batch-size",
                "25",
                "--format",
                "json",
            ],
        )
    });
    let client = reqwest::Client::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    let mut sign_ins = Vec::new();
    for i in 0..USERS {
        let (client, base, token, limit) =
            (client.clone(), base.clone(), token.clone(), limit.clone());
        let body = serde_json::json!({
            "issuer": "https://idp.example.com", "subject": subject(i),
            "email": format!("R{i}@EXAMPLE.COM"), "email_verified": true,
        });
        sign_ins.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let response = client
                .post(format!("{base}/api/v1/sign-in/resolve"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for task in sign_ins {
        answers.push(task.await.unwrap());
    }
    let report: serde_json::Value = serde_json::from_str(&reconcile.await.unwrap()).unwrap();

    let users = store
        .list_users(&UserFilter {
            after_pk: None,
            limit: 10_000,
            situation: None,
        })
        .await
        .unwrap();
    assert_eq!(users.len(), USERS);
    let audit = store.list_audit(None, 100_000).await.unwrap();
    let (mut by_login, mut by_pull) = (0, 0);
    for (i, answer) in answers.iter().enumerate() {
        let user = users.iter().find(|u| u.id == format!("u{i}")).unwrap();
        let writes: Vec<_> = audit
            .iter()
            .filter(|e| e.user_pk == user.pk && e.new_value != e.old_value)
            .collect();
        assert_eq!(
            writes.len(),
            1,
            "u{i}: exactly one audited write: {writes:?}"
        );
        let value = user
            .external_id
            .clone()
            .expect("every user linked by one writer");
        assert_eq!(writes[0].new_value.as_deref(), Some(value.as_str()), "u{i}");
        let situation = answer["situation"].as_str().unwrap();
        let linked_now = answer["linked_now"].as_bool().unwrap();
        if linked_now {
            by_login += 1;
            assert_eq!(situation, "new_link", "u{i}");
            assert_eq!(value, subject(i), "u{i}: the sign-in's value");
            assert_eq!(writes[0].origin, tether_core::Origin::Login);
        } else {
            by_pull += 1;
            assert_eq!(value, format!("acc-{i}"), "u{i}: the pull's value");
            assert_eq!(writes[0].origin, tether_core::Origin::Pull);
            // Same value: the person signs in as that profile; another value: refused, not overwritten.
            let expected = if i.is_multiple_of(2) {
                "linked"
            } else {
                "conflict"
            };
            assert_eq!(situation, expected, "u{i}: {answer}");
        }
    }
    let applied = report["applied"].as_u64().unwrap();
    assert_eq!(
        applied, by_pull,
        "the reconcile's writes are the pull-won users"
    );
    assert_eq!(by_login + by_pull, USERS as u64);
    eprintln!("won by sign-in: {by_login}, by the reconcile: {by_pull}");
}
