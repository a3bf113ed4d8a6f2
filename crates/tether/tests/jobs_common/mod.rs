//! Shared by the jobs tests: a fresh database (SQLite file or a new PostgreSQL database),
//! the `tether` binary, generated organisations, a file source, and `tether serve` as a
//! subprocess with an admin token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tether_store::admin::{AdminStore, SourceUpdate};
use tether_store::{AnyStore, Store};

pub struct Db {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("tether.db").display());
        Db { url, dir }
    }

    /// A new database on the server in `TETHER_TEST_PG_URL`.
    pub fn postgres() -> Db {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = std::env::var("TETHER_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "TETHER_TEST_PG_URL is not set, so the PostgreSQL jobs tests cannot run: run \
                 scripts/test, or start a cluster with scripts/pg-cluster.sh start DIR and export \
                 the URL it prints"
            )
        });
        let name = format!(
            "jobs_{}_{}",
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
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn store(&self) -> AnyStore {
        AnyStore::open(&self.url).await.unwrap()
    }
}

pub fn tether_env(db: &Db, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .args(args)
        .env("TETHER_DATABASE_URL", &db.url)
        .env("USER", "tester")
        .current_dir(db.dir.path());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

pub fn tether(db: &Db, args: &[&str]) -> Output {
    tether_env(db, args, &[])
}

/// Runs `tether ARGS`, asserts success, returns stdout.
pub fn ok(db: &Db, args: &[&str]) -> String {
    let out = tether(db, args);
    assert!(
        out.status.success(),
        "tether {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `tether ARGS --format json` (ARGS without the flag) and parses stdout.
pub fn json(db: &Db, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&ok(db, &all)).unwrap()
}

/// An organisation: `users` users `u00001…` with e-mails `user00001@example.com`; accounts
/// for the first `matching` of them (account ids `acc-00001…`), plus `extra` accounts
/// nobody matches. Returns (users.csv, accounts.csv).
pub fn write_org(db: &Db, users: usize, matching: usize, extra: usize) -> (PathBuf, PathBuf) {
    let users_path = db.path("users.csv");
    let accounts_path = db.path("accounts.csv");
    let mut out = std::fs::File::create(&users_path).unwrap();
    writeln!(out, "id,username,email,display_name,active,external_id").unwrap();
    for n in 1..=users {
        writeln!(out, "u{n:05},user{n},User{n:05}@Example.com,User {n},true,").unwrap();
    }
    write_accounts(
        &accounts_path,
        (1..=matching).chain(900_000..900_000 + extra),
    );
    (users_path, accounts_path)
}

/// An accounts file with the accounts numbered `numbers`.
pub fn write_accounts(path: &Path, numbers: impl Iterator<Item = usize>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        out,
        "account_id,username,key,email,display_name,active,account_type"
    )
    .unwrap();
    for n in numbers {
        writeln!(
            out,
            "acc-{n:05},,,user{n:05}@example.com,Account {n},true,atlassian"
        )
        .unwrap();
    }
}

/// Adds a `file` source reading `path` (its connection settings, as the Sources page saves them).
pub async fn file_source(db: &Db, name: &str, path: &Path) {
    ok(db, &["sources", "add", name]);
    point_source(db, name, path).await;
}

/// Changes the file a `file` source reads.
pub async fn point_source(db: &Db, name: &str, path: &Path) {
    let store = db.store().await;
    let source = store.find_source(name).await.unwrap().unwrap();
    let settings = serde_json::json!({ "path": path.display().to_string() }).to_string();
    store
        .update_source(
            source.pk,
            &SourceUpdate {
                settings: Some(settings),
                ..SourceUpdate::default()
            },
        )
        .await
        .unwrap();
}

/// Every user's External ID, by id.
pub fn external_ids(db: &Db) -> BTreeMap<String, Option<String>> {
    ok(db, &["users", "--format", "jsonl"])
        .lines()
        .map(|line| {
            let user: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                user["id"].as_str().unwrap().to_owned(),
                user["external_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

pub fn linked_count(db: &Db) -> usize {
    external_ids(db).values().filter(|v| v.is_some()).count()
}

/// `tether serve` on a free port, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Server {
    /// Starts the server; `token` is an admin token created beforehand (see [`admin_token`]).
    pub fn start(db: &Db, token: &str, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("TETHER_DATABASE_URL", &db.url)
            .env("TETHER_JOB_POLL_MS", "100")
            .env("RUST_LOG", "warn")
            .current_dir(db.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(url) = line.strip_prefix("tether: listening on ") {
                        let _ = sender.send(url.trim().to_owned());
                        sent = true;
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let url = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("tether serve did not print its URL within 60 s"));
        Server {
            child,
            url,
            token: token.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, as on a power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn job(&self, id: i64) -> serde_json::Value {
        let response = self.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(response.status(), 200, "GET job {id}");
        response.json().await.unwrap()
    }

    /// Polls the job until `done` holds for it (at most `within`).
    pub async fn wait_for(
        &self,
        id: i64,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        // A deadline counted in polls: tests do not read the clock.
        let step = Duration::from_millis(50);
        let polls = within.as_millis() / step.as_millis();
        for _ in 0..polls {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            tokio::time::sleep(step).await;
        }
        let job = self.job(id).await;
        assert!(
            done(&job),
            "job {id} did not get there within {within:?}; it is now: {job}"
        );
        job
    }

    /// Waits until the job is no longer queued or running.
    pub async fn wait_stopped(&self, id: i64) -> serde_json::Value {
        self.wait_for(id, Duration::from_secs(120), |job| {
            !matches!(job["state"].as_str(), Some("queued" | "running"))
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates an admin token (printed alone on the last line).
pub fn admin_token(db: &Db, name: &str) -> String {
    let out = ok(db, &["token", "create", "--name", name, "--scope", "admin"]);
    out.lines().last().unwrap().trim().to_owned()
}
