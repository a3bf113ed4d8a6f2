//! Faults on PostgreSQL (`TETHER_TEST_PG_URL`): `tether serve` killed with SIGKILL in the
//! middle of a large pull's apply, then restarted: the store is consistent at every point (no
//! External ID lost or duplicated, every link matches its audit entry), the job is taken over
//! once its lease expires and finishes, and a re-run converges. And two servers on one
//! database starting the same source's job at once: exactly one job exists and one runner
//! applies it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod jobs_common;

use jobs_common::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use tether_sources::simulator::{accounts_from_emails, Flavor, SimConfig, Simulator};

const SECRET_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn psql(db: &Db, sql: &str) -> String {
    let out = Command::new("psql")
        .args([db.url.as_str(), "-tAqc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn count(db: &Db, sql: &str) -> i64 {
    psql(db, sql).parse().unwrap()
}

/// The invariants that must hold whatever happened: External IDs unique, every user's
/// External ID is the new value of their latest audit entry (so nothing was written without
/// its audit, nor audited without being written), and each link was written once.
fn assert_consistent(db: &Db) -> i64 {
    let linked = count(
        db,
        "SELECT count(*) FROM users WHERE external_id IS NOT NULL",
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) - count(DISTINCT external_id) FROM users WHERE external_id IS NOT NULL"
        ),
        0,
        "External IDs are unique"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM users u WHERE u.external_id IS DISTINCT FROM
               (SELECT a.new_value FROM audit a WHERE a.user_pk = u.pk ORDER BY a.pk DESC LIMIT 1)"
        ),
        0,
        "every user's External ID is what their latest audit entry says"
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM audit WHERE reason = 'new_link'"),
        linked,
        "each link was written (and audited) exactly once"
    );
    linked
}

async fn simulator(users: usize, latency_ms: u64) -> Simulator {
    let emails: Vec<String> = (1..=users)
        .map(|n| format!("user{n:05}@example.com"))
        .collect();
    let mut config = SimConfig::new(Flavor::Cloud, accounts_from_emails(&emails, 11, false));
    config.latency = Duration::from_millis(latency_ms);
    Simulator::start(config).await.unwrap()
}

async fn setup(server: &Server, sim: &Simulator) {
    let created = server
        .post(
            "/api/v1/sources",
            json!({
                "name": "jira", "kind": "jira_cloud", "secret": "sim-token",
                "settings": { "base_url": sim.url(), "user": "sim@example.com", "page_size": 500 }
            }),
        )
        .await;
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    // A first pull links everyone: let it through the safeguard.
    let mut settings: serde_json::Value =
        server.get("/api/v1/settings").await.json().await.unwrap();
    settings["mass_change_threshold_percent"] = json!(100);
    let saved = server
        .client
        .put(format!("{}/api/v1/settings", server.url))
        .bearer_auth(&server.token)
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert!(
        saved.status().is_success(),
        "{}",
        saved.text().await.unwrap()
    );
}

fn server_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TETHER_SECRET_KEY", SECRET_KEY),
        ("TETHER_JOB_LEASE_SECONDS", "2"),
        ("TETHER_JOB_BATCH_SIZE", "100"),
        ("TETHER_JOB_WORKERS", "1"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_apply_the_job_is_taken_over_and_a_rerun_converges() {
    const USERS: usize = 20_000;
    let db = Db::postgres();
    let (users, _) = write_org(&db, USERS, 0, 0);
    ok(&db, &["import", "users", users.to_str().unwrap()]);
    let sim = simulator(USERS, 20).await;
    let token = admin_token(&db, "ops");
    let env = server_env();
    let mut first = Server::start(&db, &token, &env);
    setup(&first, &sim).await;

    let started = first
        .post("/api/v1/jobs", json!({ "source": "jira" }))
        .await;
    assert_eq!(started.status(), 202);
    let id = started.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let mid = first
        .wait_for(id, Duration::from_secs(120), |job| {
            job["progress"]["phase"] == "apply"
                && job["progress"]["changes_applied"].as_u64().unwrap_or(0) >= 1_000
        })
        .await;
    first.kill();
    assert_eq!(mid["attempts"], 1);

    // Right after the kill: consistent, partly applied, the job still leased to the dead runner.
    let linked = assert_consistent(&db);
    assert!(
        (1_000..USERS as i64).contains(&linked),
        "killed mid-apply: {linked} of {USERS} linked"
    );
    assert_eq!(
        psql(&db, &format!("SELECT state FROM jobs WHERE pk = {id}")),
        "running"
    );

    // Restart: once the lease expires, the new process takes the job over and finishes it.
    let second = Server::start(&db, &token, &env);
    let done = second.wait_stopped(id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "taken over once: {done}");
    let report = &done["report"];
    assert_eq!(
        report["fetch"]["accounts"], USERS as u64,
        "re-run from the start"
    );
    assert_eq!(
        report["applied"].as_i64().unwrap() + linked,
        USERS as i64,
        "the takeover writes exactly what the killed run had not: {report}"
    );
    assert_eq!(
        assert_consistent(&db),
        USERS as i64,
        "nobody lost, nobody twice"
    );
    let undo_scope = count(
        &db,
        &format!(
            "SELECT count(*) FROM audit a JOIN runs r ON r.pk = a.run_pk WHERE r.job_pk = {id}"
        ),
    );
    assert_eq!(
        undo_scope, USERS as i64,
        "both attempts' changes belong to the job"
    );

    // A re-run converges: nothing left to do.
    let rerun = second
        .post("/api/v1/jobs", json!({ "source": "jira" }))
        .await;
    assert_eq!(rerun.status(), 202);
    let rerun_id = rerun.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let rerun = second.wait_stopped(rerun_id).await;
    assert_eq!(rerun["state"], "succeeded");
    assert_eq!(rerun["report"]["planned"], 0, "{rerun}");
    assert_eq!(rerun["report"]["store"]["unchanged"], USERS as u64);
    assert_eq!(assert_consistent(&db), USERS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_starting_the_same_job_run_it_once() {
    const USERS: usize = 3_000;
    let db = Db::postgres();
    let (users, _) = write_org(&db, USERS, 0, 0);
    ok(&db, &["import", "users", users.to_str().unwrap()]);
    let sim = simulator(USERS, 5).await;
    let token = admin_token(&db, "ops");
    let mut env = server_env();
    env.retain(|(key, _)| *key != "TETHER_JOB_WORKERS");
    let a = Server::start(&db, &token, &env);
    let b = Server::start(&db, &token, &env);
    setup(&a, &sim).await;

    for round in 0..3 {
        let (from_a, from_b) = tokio::join!(
            a.post("/api/v1/jobs", json!({ "source": "jira" })),
            b.post("/api/v1/jobs", json!({ "source": "jira" }))
        );
        let statuses = [from_a.status().as_u16(), from_b.status().as_u16()];
        let mut sorted = statuses;
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [202, 409],
            "round {round}: exactly one job starts: {statuses:?}"
        );
        let winner = if statuses[0] == 202 { from_a } else { from_b };
        let id = winner.json::<serde_json::Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        let done = a.wait_stopped(id).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(done["attempts"], 1, "claimed once: {done}");
        assert_eq!(
            count(
                &db,
                &format!("SELECT count(*) FROM runs WHERE job_pk = {id} AND kind = 'pull'")
            ),
            1,
            "one runner applied it"
        );
        assert_eq!(count(&db, "SELECT count(*) FROM jobs"), round + 1);
    }
    assert_eq!(assert_consistent(&db), USERS as i64);
}
