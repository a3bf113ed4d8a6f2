//! The SCIM source against a real SCIM 2.0 server: PyPI `scim2-server` from
//! `$TETHER_PEERS_BIN` (installed by `scripts/peers/install`), started on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;
use tether_core::AccountType;
use tether_sources::{connect, FetchReport, NewAccount, Page, Secret, SourceError, SourceSettings};

const TOKEN: &str = "scim-test-token";

/// A `scim2-server` process, killed when dropped.
struct ScimServer {
    child: Child,
    url: String,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TCP port process `pid` listens on, read from /proc (the server is started on port 0
/// and does not print the port it got).
fn listening_port(pid: u32) -> Option<u16> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let target = std::fs::read_link(entry.ok()?.path()).ok();
        if let Some(inode) = target
            .as_ref()
            .and_then(|t| t.to_str())
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_owned());
        }
    }
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 ("ADDR:PORT" in hex), st field 3 (0A = LISTEN), inode 9.
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next()?;
                return u16::from_str_radix(port, 16).ok();
            }
        }
    }
    None
}

async fn start_server() -> ScimServer {
    let bin = std::env::var("TETHER_PEERS_BIN").unwrap_or_else(|_| {
        panic!(
            "TETHER_PEERS_BIN is not set: run `eval \"$(scripts/peers/install | tail -1)\"` \
             (scripts/test does) so that this test can start PyPI scim2-server"
        )
    });
    let child = Command::new(format!("{bin}/scim2-server"))
        .args([
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--bearer-token",
            TOKEN,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}/scim2-server: {e}"));
    let mut server = ScimServer {
        child,
        url: String::new(),
    };
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "scim2-server did not start listening within 30 s"
        );
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("scim2-server exited: {status}");
        }
        if let Some(port) = listening_port(server.child.id()) {
            let url = format!("http://127.0.0.1:{port}/v2");
            let ready = client
                .get(format!("{url}/ServiceProviderConfig"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                server.url = url;
                return server;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn user_json(i: usize) -> serde_json::Value {
    let emails = match i % 4 {
        0 => json!([
            {"value": format!("home{i}@home.example"), "type": "home"},
            {"value": format!("User{i}@Example.com"), "type": "work", "primary": true}
        ]),
        1 => json!([
            {"value": format!("home{i}@home.example"), "type": "home"},
            {"value": format!("user{i}@example.com"), "type": "work"}
        ]),
        2 => json!([{"value": format!("user{i}@example.com")}]),
        _ => json!([]),
    };
    let mut user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{i}"),
        "active": !i.is_multiple_of(5),
        "emails": emails,
    });
    if i % 10 != 9 {
        user["externalId"] = json!(format!("ext-{i}"));
    }
    if i.is_multiple_of(2) {
        user["displayName"] = json!(format!("User Number {i}"));
    } else {
        user["name"] = json!({"formatted": format!("Formatted {i}")});
    }
    user
}

async fn seed(server: &ScimServer, count: usize) -> HashMap<String, usize> {
    let client = reqwest::Client::new();
    let created: Vec<(String, usize)> = stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/Users", server.url);
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/scim+json")
                    .body(user_json(i).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201, "creating user{i}");
                let body: serde_json::Value = response.json().await.unwrap();
                (body["id"].as_str().unwrap().to_owned(), i)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    created.into_iter().collect()
}

async fn fetch(
    settings: &SourceSettings,
    token: &str,
) -> Result<(Vec<NewAccount>, FetchReport), SourceError> {
    let source = connect("scim", settings, Some(Secret(token.to_owned())))?;
    let accounts = Mutex::new(Vec::new());
    let sink = |page: Page| {
        accounts.lock().unwrap().extend(page.accounts);
        Ok(())
    };
    let report = source.fetch(&sink, &AtomicBool::new(false)).await?;
    Ok((accounts.into_inner().unwrap(), report))
}

#[tokio::test]
async fn scim_source_reads_a_real_scim_server() {
    let server = start_server().await;
    let ids = seed(&server, 300).await;
    let settings = SourceSettings {
        base_url: Some(server.url.clone()),
        page_size: Some(40),
        concurrency: Some(4),
        ..SourceSettings::default()
    };

    let (accounts, report) = fetch(&settings, TOKEN).await.unwrap();
    assert_eq!(accounts.len(), 300, "{:?}", report.warnings);
    assert!(report.complete);
    assert_eq!(report.pages, 8, "300 users in pages of 40");
    for account in &accounts {
        let i = ids[&account.account_id];
        assert_eq!(
            account.username.as_deref(),
            Some(format!("user{i}").as_str())
        );
        assert_eq!(account.active, i % 5 != 0, "user{i}");
        assert_eq!(account.account_type, AccountType::Unknown);
        let expected_email = match i % 4 {
            0 => Some(format!("User{i}@Example.com")),
            1 | 2 => Some(format!("user{i}@example.com")),
            _ => None,
        };
        assert_eq!(account.email, expected_email, "user{i}");
        assert_eq!(
            account.email_key,
            expected_email.map(|e| e.to_lowercase()),
            "user{i}"
        );
        let name = if i % 2 == 0 {
            format!("User Number {i}")
        } else {
            format!("Formatted {i}")
        };
        assert_eq!(account.display_name, name);
    }

    // externalId as the account ID: users without one are skipped, with a warning.
    let by_external = SourceSettings {
        account_id_attribute: Some("externalId".to_owned()),
        ..settings.clone()
    };
    let (accounts, report) = fetch(&by_external, TOKEN).await.unwrap();
    assert_eq!(accounts.len(), 270);
    assert!(accounts.iter().any(|a| a.account_id == "ext-0"));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("30 records were skipped: no externalId")),
        "{:?}",
        report.warnings
    );

    let error = fetch(&settings, "not-the-token").await.unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized(_)), "{error:?}");
    assert!(!error.to_string().contains("not-the-token"));
}

/// A server that returns fewer records than asked (here at most 7), with or without
/// `totalResults`: the source continues each short page, so nothing is skipped.
#[tokio::test]
async fn scim_source_fills_the_gaps_of_a_server_that_caps_count() {
    use axum::extract::Query;
    for with_total in [true, false] {
        let app = axum::Router::new().route(
            "/scim/Users",
            axum::routing::get(move |Query(q): Query<HashMap<String, u64>>| async move {
                let start = q["startIndex"];
                let count = q["count"].min(7);
                let resources: Vec<_> = (start..=50)
                    .take(count as usize)
                    .map(|i| json!({"id": format!("u{i}"), "userName": format!("user{i}")}))
                    .collect();
                let mut body = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                    "startIndex": start,
                    "itemsPerPage": resources.len(),
                    "Resources": resources,
                });
                if with_total {
                    body["totalResults"] = json!(50);
                }
                axum::Json(body)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = SourceSettings {
            base_url: Some(format!("http://{address}/scim")),
            page_size: Some(20),
            concurrency: Some(3),
            ..SourceSettings::default()
        };
        let (accounts, report) = fetch(&settings, "any").await.unwrap();
        let mut ids: Vec<String> = accounts.into_iter().map(|a| a.account_id).collect();
        ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
        let expected: Vec<String> = (1..=50).map(|i| format!("u{i}")).collect();
        assert_eq!(ids, expected, "with totalResults: {with_total}");
        assert!(report.complete);
        server.abort();
    }
}
