//! Pull jobs end to end through the API of `tether serve` (a subprocess), on both stores,
//! against a real directory: the Jira Cloud simulator of tether-sources, reached over HTTP
//! with basic auth, the credential stored sealed through the sources API. The background
//! runner does the work; the test only calls the API (and reads users with the CLI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod jobs_common;

use jobs_common::*;
use serde_json::json;
use std::time::Duration;
use tether_sources::simulator::{accounts_from_emails, Flavor, SimConfig, Simulator};

const SECRET_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A simulator whose accounts carry the e-mails of users 1..=`matching` (plus quirk-free).
async fn simulator(matching: usize, latency_ms: u64) -> Simulator {
    let emails: Vec<String> = (1..=matching)
        .map(|n| format!("user{n:05}@example.com"))
        .collect();
    let mut config = SimConfig::new(Flavor::Cloud, accounts_from_emails(&emails, 7, false));
    config.latency = Duration::from_millis(latency_ms);
    Simulator::start(config).await.unwrap()
}

async fn add_jira_source(server: &Server, name: &str, sim: &Simulator, extra: serde_json::Value) {
    let mut settings = json!({ "base_url": sim.url(), "user": "sim@example.com" });
    if let (Some(settings), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        settings.extend(extra.clone());
    }
    let response = server
        .post(
            "/api/v1/sources",
            json!({ "name": name, "kind": "jira_cloud", "settings": settings, "secret": "sim-token" }),
        )
        .await;
    let status = response.status();
    assert!(
        status.is_success(),
        "creating source {name}: {status} {}",
        response.text().await.unwrap()
    );
}

async fn start_job(server: &Server, body: serde_json::Value) -> i64 {
    let response = server.post("/api/v1/jobs", body).await;
    assert_eq!(response.status(), 202, "POST /api/v1/jobs");
    let job: serde_json::Value = response.json().await.unwrap();
    assert_eq!(job["state"], "queued");
    job["id"].as_i64().unwrap()
}

async fn api_pull_safeguard_undo_and_errors(db: Db) {
    let (users, _) = write_org(&db, 10, 0, 0);
    ok(&db, &["import", "users", users.to_str().unwrap()]);
    let sim = simulator(5, 0).await;
    let token = admin_token(&db, "ops");
    let server = Server::start(&db, &token, &[("TETHER_SECRET_KEY", SECRET_KEY)]);
    add_jira_source(&server, "jira", &sim, json!({})).await;

    // Without a token: refused.
    let anonymous = server
        .client
        .post(format!("{}/api/v1/jobs", server.url))
        .json(&json!({ "source": "jira" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // A dry run fetches and plans, writes nothing.
    let dry = start_job(&server, json!({ "source": "jira", "dry_run": true })).await;
    let dry = server.wait_stopped(dry).await;
    assert_eq!(dry["state"], "succeeded", "{dry}");
    assert_eq!(dry["report"]["fetch"]["accounts"], 5);
    assert_eq!(dry["report"]["planned"], 5);
    assert_eq!(linked_count(&db), 0);

    // 5 of 10 users would change: above 20%, the job waits for approval.
    let id = start_job(&server, json!({ "source": "jira" })).await;
    let again = server
        .post("/api/v1/jobs", json!({ "source": "jira" }))
        .await;
    assert_eq!(again.status(), 409, "one active job per source");
    let conflict: serde_json::Value = again.json().await.unwrap();
    assert_eq!(conflict["code"], "conflict");
    assert!(
        conflict["message"]
            .as_str()
            .unwrap()
            .contains(&id.to_string()),
        "{conflict}"
    );
    let held = server.wait_stopped(id).await;
    assert_eq!(held["state"], "awaiting_approval", "{held}");
    assert_eq!(held["report"]["safeguard"]["share_percent"], 50.0);
    assert_eq!(held["progress"]["changes_planned"], 5);
    assert_eq!(linked_count(&db), 0);

    let approved = server
        .post(&format!("/api/v1/jobs/{id}/approve"), json!({}))
        .await;
    assert_eq!(approved.status(), 202);
    let done = server.wait_stopped(id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["decided_by"], "token:ops");
    assert_eq!(done["report"]["applied"], 5);
    assert_eq!(done["report"]["fetch"]["complete"], true);
    assert_eq!(linked_count(&db), 5);
    let ids = external_ids(&db);
    assert!(
        ids["u00001"].as_deref().unwrap().starts_with("557058:"),
        "{ids:?}"
    );

    // Reports.
    let csv = server.get(&format!("/api/v1/jobs/{id}/report.csv")).await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("tether-job-{id}.csv")));
    let csv = csv.text().await.unwrap();
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("change,new_link"))
            .count(),
        5,
        "{csv}"
    );
    let report: serde_json::Value = server
        .get(&format!("/api/v1/jobs/{id}/report.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["changes"].as_array().unwrap().len(), 5);
    assert_eq!(report["job"]["id"], id);

    // Undo: all five are untouched, so all are reverted.
    let undo = server
        .post(&format!("/api/v1/jobs/{id}/undo"), json!({}))
        .await;
    assert_eq!(undo.status(), 200);
    let undo: serde_json::Value = undo.json().await.unwrap();
    assert_eq!(undo["reverted"], 5, "{undo}");
    assert_eq!(linked_count(&db), 0);
    let twice = server
        .post(&format!("/api/v1/jobs/{id}/undo"), json!({}))
        .await;
    assert_eq!(twice.status(), 400);

    // Held again, rejected: nothing applied.
    let id = start_job(&server, json!({ "source": "jira" })).await;
    let held = server.wait_stopped(id).await;
    assert_eq!(held["state"], "awaiting_approval");
    let rejected = server
        .post(&format!("/api/v1/jobs/{id}/reject"), json!({}))
        .await;
    assert_eq!(rejected.status(), 200);
    let rejected: serde_json::Value = rejected.json().await.unwrap();
    assert_eq!(rejected["state"], "cancelled");
    assert_eq!(linked_count(&db), 0);

    // Errors name what is wrong.
    assert_eq!(server.get("/api/v1/jobs/999999").await.status(), 404);
    let bad = server.get("/api/v1/jobs/abc").await;
    assert_eq!(bad.status(), 400);
    let unknown = server
        .post("/api/v1/jobs", json!({ "source": "nope" }))
        .await;
    assert_eq!(unknown.status(), 404);
    let cancel_done = server
        .post(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(
        cancel_done.status(),
        400,
        "a finished job cannot be cancelled"
    );
    let typo = server
        .post("/api/v1/jobs", json!({ "sourc": "jira" }))
        .await;
    assert_eq!(typo.status(), 400);

    let listed: serde_json::Value = server
        .get("/api/v1/jobs?source=jira")
        .await
        .json()
        .await
        .unwrap();
    let states: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["cancelled", "succeeded", "succeeded"]);
    let held_only: serde_json::Value = server
        .get("/api/v1/jobs?state=cancelled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(held_only["jobs"].as_array().unwrap().len(), 1);
}

async fn api_cancel_stops_a_running_pull(db: Db) {
    let (users, _) = write_org(&db, 10, 0, 0);
    ok(&db, &["import", "users", users.to_str().unwrap()]);
    // 10 one-account pages, one at a time, 300 ms each: about 3 s of fetching.
    let sim = simulator(10, 300).await;
    let token = admin_token(&db, "ops");
    let server = Server::start(&db, &token, &[("TETHER_SECRET_KEY", SECRET_KEY)]);
    add_jira_source(
        &server,
        "slow",
        &sim,
        json!({ "page_size": 1, "concurrency": 1 }),
    )
    .await;
    let id = start_job(&server, json!({ "source": "slow" })).await;
    server
        .wait_for(id, Duration::from_secs(30), |job| {
            job["state"] == "running" && job["progress"]["pages"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    let cancel = server
        .post(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancel.status(), 202);
    let job = server.wait_stopped(id).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        job["progress"]["pages"].as_u64().unwrap() < 10,
        "stopped before the end of the fetch: {job}"
    );
    assert_eq!(linked_count(&db), 0);
    // The source is free again.
    let next = server
        .post("/api/v1/jobs", json!({ "source": "slow", "dry_run": true }))
        .await;
    assert_eq!(next.status(), 202);
}

/// The Jobs pages: an admin signs in, starts a job with the form, and the job page shows
/// the live fragment, which tells htmx to reload once the job stopped.
async fn ui_jobs_pages(db: Db) {
    let (users, accounts) = write_org(&db, 10, 1, 0);
    ok(&db, &["import", "users", users.to_str().unwrap()]);
    file_source(&db, "dir", &accounts).await;
    let mut create = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["admin", "create", "--username", "root", "--password-stdin"])
        .env("TETHER_DATABASE_URL", &db.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = create.stdin.take().unwrap();
        writeln!(stdin, "correct horse battery staple").unwrap();
    }
    assert!(create.wait().unwrap().success());
    let token = admin_token(&db, "ops");
    let server = Server::start(&db, &token, &[]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Sign in: the login form's CSRF token is its cookie's value.
    let form = client
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    let mut cookies = set_cookies(&form);
    let login_cookie = cookies
        .iter()
        .find(|(name, _)| name == "tether_login")
        .map(|(_, value)| value.clone())
        .expect("the sign-in page sets its CSRF cookie");
    let signed_in = client
        .post(format!("{}/login", server.url))
        .header("cookie", cookie_header(&cookies))
        .form(&[
            ("csrf", login_cookie.as_str()),
            ("username", "root"),
            ("password", "correct horse battery staple"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        signed_in.status().is_redirection(),
        "sign-in: {}",
        signed_in.status()
    );
    cookies.extend(set_cookies(&signed_in));
    let cookie = cookie_header(&cookies);
    let page = |path: String| {
        let request = client
            .get(format!("{}{path}", server.url))
            .header("cookie", &cookie);
        async move { request.send().await.unwrap() }
    };

    let list = page("/jobs".to_owned()).await;
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    let csrf = list
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the start form carries the CSRF token")
        .to_owned();

    // A form without the CSRF token is refused.
    let forged = client
        .post(format!("{}/jobs", server.url))
        .header("cookie", &cookie)
        .form(&[("csrf", "forged"), ("source", "dir")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let started = client
        .post(format!("{}/jobs", server.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("source", "dir")])
        .send()
        .await
        .unwrap();
    assert!(started.status().is_redirection());
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let id: i64 = location.trim_start_matches("/jobs/").parse().unwrap();
    let job = server.wait_stopped(id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["requested_by"], "admin:root");

    let shown = page(location.clone()).await.text().await.unwrap();
    assert!(shown.contains(&format!("Job {id}")), "{shown}");
    assert!(shown.contains("id=\"job-progress\""));
    assert!(shown.contains("Report (CSV)"));
    assert!(
        shown.contains("Undo this job"),
        "a finished job with changes can be undone"
    );
    let fragment = page(format!("/jobs/{id}/progress")).await;
    assert_eq!(fragment.status(), 200);
    assert_eq!(
        fragment
            .headers()
            .get("hx-refresh")
            .map(|v| v.to_str().unwrap()),
        Some("true"),
        "a stopped job's fragment asks for a reload"
    );
    let fragment = fragment.text().await.unwrap();
    assert!(
        !fragment.contains("hx-trigger"),
        "a stopped job is not polled: {fragment}"
    );

    // Undo through the page's form.
    let undone = client
        .post(format!("{}/jobs/{id}/undo", server.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(undone.status().is_redirection());
    assert!(undone.headers()["location"]
        .to_str()
        .unwrap()
        .contains("ok="));
    assert_eq!(linked_count(&db), 0);
}

fn set_cookies(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

fn cookie_header(cookies: &[(String, String)]) -> String {
    cookies
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::postgres()).await;
                }
            )*
        }
    };
}

on_both_stores!(
    api_pull_safeguard_undo_and_errors,
    api_cancel_stops_a_running_pull,
    ui_jobs_pages,
);
