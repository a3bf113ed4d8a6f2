//! Sign-in with OpenID Connect end to end, as a browser does it: `tether serve` (a
//! subprocess, on SQLite and on PostgreSQL) against a real OpenID provider (PyPI oidc-provider-mock, from
//! `$TETHER_PEERS_BIN`, started here on a free port), through HTTP with redirects and
//! cookies. The first sign-in links by an e-mail in another case; the second matches by
//! External ID after the e-mail changed; every refusal (unverified e-mail, two profiles with
//! the e-mail, a profile linked to another account, an inactive profile, Auto-populate off,
//! a missing, mismatched or replayed state) links nothing. Admins (by a group claim) land on
//! the admin UI. The decision API answers under the same rules.
//!
//! Token-level forgeries (tampered signature, a key the provider does not publish, `alg:
//! none`, HMAC keyed with the public key, wrong audience or issuer, expired, wrong nonce, and
//! an authorization response naming another issuer) go through `/auth/callback` from a
//! forging provider written here (the mock only ever signs correctly): each is refused for
//! its reason with nothing linked or audited, and the same flow with a correct token links.
//! The validator's own tests (`src/oidc/tests.rs`) cover more variants of each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/peers.rs"]
mod peers;

use peers::Provider;
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_store::admin::{AdminStore, NewEvent, Settings};
use tether_store::{AnyStore, Store, UserRecord};
use time::macros::datetime;

/// A process this test started; killed (by its id) when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `child`'s stream line by line on a thread; returns the first line containing
/// `marker`, waiting at most 60 s, and keeps draining the rest.
fn first_line_with(stream: impl std::io::Read + Send + 'static, marker: &'static str) -> String {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(marker) {
                let _ = sender.send(line);
                sent = true;
            }
        }
    });
    receiver
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no line with '{marker}' within 60 s"))
}

fn tether_cli(db: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("TETHER_DATABASE_URL", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "tether {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `tether serve` on a free port, configured for the provider.
fn start_tether(db: &str, issuer: &str) -> (Peer, String) {
    start_tether_with(
        db,
        &[
            ("TETHER_OIDC_ISSUER", issuer),
            ("TETHER_OIDC_CLIENT_ID", "tether-e2e"),
            ("TETHER_OIDC_CLIENT_SECRET", "e2e-secret"),
            ("TETHER_OIDC_ADMIN_CLAIM", "groups=tether-admins"),
        ],
    )
}

/// `tether serve` on a free port with the variables `vars`, and no `TETHER_OIDC_*` variable
/// but theirs (none of the test runner's own).
fn start_tether_with(db: &str, vars: &[(&str, &str)]) -> (Peer, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TETHER_DATABASE_URL", db)
        .env_remove("TETHER_PUBLIC_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("TETHER_OIDC_") {
            command.env_remove(name);
        }
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let peer = Peer(child);
    let line = first_line_with(stderr, "tether: listening on ");
    let base = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    (peer, base)
}

/// What the browser saw at the end of one sign-in.
struct SignIn {
    /// The callback's status (303 when let in).
    status: StatusCode,
    /// Where the callback sent the browser, if it did.
    landed: Option<String>,
    /// The final page.
    body: String,
    /// The callback URL the provider redirected to (to replay it).
    callback: String,
    /// The handle of the flow cookie `/auth/login` set.
    handle: String,
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location on a {} response", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Sets the claims the provider will put in `sub`'s ID token.
async fn provider_user(provider: &str, sub: &str, claims: serde_json::Value) {
    let response = reqwest::Client::new()
        .put(format!("{provider}/users/{sub}"))
        .json(&claims)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// /auth/login → the provider's authorization form, answered as `sub` → /auth/callback →
/// wherever tether sends the browser.
async fn sign_in(client: &reqwest::Client, tether: &str, sub: &str) -> SignIn {
    let start = client
        .get(format!("{tether}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status(),
        StatusCode::SEE_OTHER,
        "/auth/login redirects"
    );
    let cookie = start
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("tether_oidc="))
        .expect("/auth/login sets the flow cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let handle = cookie
        .trim_start_matches("tether_oidc=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let authorize = location(&start);
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("nonce="), "{authorize}");
    let consent = client
        .post(&authorize)
        .form(&[("sub", sub)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        consent.status(),
        StatusCode::FOUND,
        "the provider redirects back: {}",
        consent.text().await.unwrap_or_default()
    );
    let callback = location(&consent);
    assert!(
        callback.starts_with(&format!("{tether}/auth/callback?")),
        "{callback}"
    );
    let answer = client.get(&callback).send().await.unwrap();
    let status = answer.status();
    if status == StatusCode::SEE_OTHER {
        let landed = location(&answer);
        let page = client
            .get(format!("{tether}{landed}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{landed}");
        return SignIn {
            status,
            landed: Some(landed),
            body: page.text().await.unwrap(),
            callback,
            handle,
        };
    }
    SignIn {
        status,
        landed: None,
        body: answer.text().await.unwrap(),
        callback,
        handle,
    }
}

async fn user(store: &AnyStore, id: &str) -> UserRecord {
    let found = store.find_users(id, None).await.unwrap();
    assert_eq!(found.len(), 1, "one user {id}");
    found.into_iter().next().unwrap()
}

async fn set_auto_populate(store: &AnyStore, on: bool) {
    let settings = Settings {
        auto_populate: on,
        ..store.get_settings().await.unwrap()
    };
    store
        .update_settings(&settings, "test", datetime!(2026-01-01 00:00 UTC))
        .await
        .unwrap();
}

const USERS: &str = "id,username,email,display_name,active,external_id
u-alice,alice,Alice@Example.COM,Alice Liddell,true,
u-carol,carol,carol@example.com,Carol,true,
u-dup1,dup1,dup@example.com,Dup One,true,
u-dup2,dup2,DUP@example.com,Dup Two,true,
u-dave,dave,dave@example.com,Dave,true,acc-dave-old
u-gina,gina,gina@example.com,Gina,true,
u-ivan,ivan,ivan@example.com,Ivan,false,
";

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

/// What every scenario starts from: the OpenID provider, running (its `url` is its issuer),
/// and a fresh database (`name` on PostgreSQL, see [`database`]; a SQLite file in the
/// directory returned) with `USERS` imported and Auto-populate on: its URL, an admin API
/// token and the store.
async fn fixture(
    postgres: bool,
    name: &str,
) -> (Provider, tempfile::TempDir, String, String, AnyStore) {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let db = database(postgres, dir.path(), name);
    let users_file = dir.path().join("users.csv");
    std::fs::write(&users_file, USERS).unwrap();
    tether_cli(
        &db,
        &["import", "users", users_file.to_str().unwrap()],
        None,
    );
    let token_output = tether_cli(
        &db,
        &["token", "create", "--name", "e2e", "--scope", "admin"],
        None,
    );
    let token = token_output.lines().last().unwrap().trim().to_owned();
    let store = AnyStore::open(&db).await.unwrap();
    set_auto_populate(&store, true).await;
    (provider, dir, db, token, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sign_in_links_then_matches_and_refusals_link_nothing() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sign_in_links_then_matches_and_refusals_link_nothing() {
    scenario(true).await;
}

async fn scenario(postgres: bool) {
    let (provider_process, _dir, db, token, store) = fixture(postgres, "signin_oidc").await;
    let provider = provider_process.url.clone();
    let (_tether_process, tether) = start_tether(&db, &provider);

    // 1. First sign-in: the profile's e-mail differs in case; linked by e-mail (origin login).
    provider_user(
        &provider,
        "acc-alice",
        serde_json::json!({"email": "alice@example.com", "email_verified": true, "name": "Alice"}),
    )
    .await;
    let alice_browser = browser();
    let first = sign_in(&alice_browser, &tether, "acc-alice").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert_eq!(first.landed.as_deref(), Some("/me"));
    assert!(
        first.body.contains("acc-alice"),
        "My account shows the link: {}",
        first.body
    );
    assert!(first.body.contains("new_link"), "{}", first.body);
    let alice = user(&store, "u-alice").await;
    assert_eq!(alice.external_id.as_deref(), Some("acc-alice"));
    assert_eq!(alice.external_id_origin, Some(tether_core::Origin::Login));
    // The admin sees it in the audit log, with origin login.
    let audit = tether_cli(
        &db,
        &["audit", "--user", "u-alice", "--format", "jsonl"],
        None,
    );
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["origin"], "login");
    assert_eq!(entries[0]["new_value"], "acc-alice");
    assert_eq!(entries[0]["old_value"], serde_json::Value::Null);

    // A replayed callback (even with the flow cookie put back) is refused and changes nothing.
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&first.callback)
        .header("Cookie", format!("tether_oidc={}", first.handle))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.text().await.unwrap().contains("replayed state"));

    // Sign-out ends the session: /me asks to sign in again.
    let me = alice_browser
        .get(format!("{tether}/me"))
        .send()
        .await
        .unwrap();
    let page = me.text().await.unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a sign-out form with its CSRF token")
        .to_owned();
    let out = alice_browser
        .post(format!("{tether}/auth/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let after = alice_browser
        .get(format!("{tether}/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "signed out");

    // 2. Second sign-in after the e-mail changed at the provider: matched by External ID.
    provider_user(
        &provider,
        "acc-alice",
        serde_json::json!({"email": "alice.new@elsewhere.example", "email_verified": true}),
    )
    .await;
    let second = sign_in(&browser(), &tether, "acc-alice").await;
    assert_eq!(second.landed.as_deref(), Some("/me"), "{}", second.body);
    assert!(second.body.contains("u-alice"), "{}", second.body);
    assert!(second.body.contains("linked"), "{}", second.body);
    let audit = store.list_audit(Some(alice.pk), 10).await.unwrap();
    assert_eq!(audit.len(), 1, "nothing more written");

    // Refusals: each gets a page saying what happened and what the admin can do, and links nothing.
    let refusals: &[(&str, serde_json::Value, &str, &str)] = &[
        (
            "acc-carol",
            serde_json::json!({"email": "carol@example.com", "email_verified": false}),
            "u-carol",
            "email_verified",
        ),
        (
            "acc-dup",
            serde_json::json!({"email": "dup@example.com", "email_verified": true}),
            "u-dup1",
            "duplicate_users",
        ),
        (
            "acc-dave-new",
            serde_json::json!({"email": "Dave@example.com", "email_verified": true}),
            "u-dave",
            "conflict",
        ),
        (
            "acc-ivan",
            serde_json::json!({"email": "ivan@example.com", "email_verified": true}),
            "u-ivan",
            "inactive_profile",
        ),
        (
            "acc-nobody",
            serde_json::json!({"email": "nobody@example.com", "email_verified": true}),
            "u-gina",
            "no_match",
        ),
    ];
    for (sub, claims, profile, expected) in refusals {
        provider_user(&provider, sub, claims.clone()).await;
        let before = user(&store, profile).await;
        let refused = sign_in(&browser(), &tether, sub).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{sub}: {}",
            refused.body
        );
        assert!(refused.body.contains(expected), "{sub}: {}", refused.body);
        assert!(
            refused.body.contains("What an administrator can do"),
            "{}",
            refused.body
        );
        assert_eq!(
            user(&store, profile).await,
            before,
            "{sub}: nothing changed"
        );
    }
    assert_eq!(user(&store, "u-dup2").await.external_id, None);
    assert_eq!(
        user(&store, "u-dave").await.external_id.as_deref(),
        Some("acc-dave-old")
    );

    // Auto-populate off: a profile that would link by e-mail is refused.
    set_auto_populate(&store, false).await;
    provider_user(
        &provider,
        "acc-gina",
        serde_json::json!({"email": "gina@example.com", "email_verified": true}),
    )
    .await;
    let off = sign_in(&browser(), &tether, "acc-gina").await;
    assert_eq!(off.status, StatusCode::FORBIDDEN);
    assert!(off.body.contains("auto_populate_off"), "{}", off.body);
    assert_eq!(user(&store, "u-gina").await.external_id, None);
    // …but a profile already linked still signs in by its External ID.
    let linked = sign_in(&browser(), &tether, "acc-alice").await;
    assert_eq!(linked.landed.as_deref(), Some("/me"));
    set_auto_populate(&store, true).await;

    // A missing state (no flow cookie) and a state that is not this browser's are refused.
    let stranger = browser();
    let no_cookie = stranger
        .get(format!("{tether}/auth/callback?code=abc&state=xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), StatusCode::BAD_REQUEST);
    assert!(no_cookie.text().await.unwrap().contains("missing state"));
    let started = stranger
        .get(format!("{tether}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let mismatch = stranger
        .get(format!("{tether}/auth/callback?code=abc&state=not-the-one"))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    assert!(mismatch.text().await.unwrap().contains("state mismatch"));
    assert_eq!(user(&store, "u-gina").await.external_id, None);

    // An administrator (by group claim) lands on the admin UI, without a profile of their own.
    provider_user(
        &provider,
        "acc-admin",
        serde_json::json!({"email": "it@example.com", "email_verified": true, "groups": ["staff", "tether-admins"]}),
    )
    .await;
    let admin = sign_in(&browser(), &tether, "acc-admin").await;
    assert_eq!(admin.landed.as_deref(), Some("/"), "{}", admin.body);

    // The sign-in trail has every decision.
    let events = tether_store::signin::SigninStore::list_sign_in_events(&store, None, 100)
        .await
        .unwrap();
    let situations: Vec<&str> = events.iter().rev().map(|e| e.situation.as_str()).collect();
    assert_eq!(
        situations,
        vec![
            "new_link",
            "linked",
            "email_not_verified",
            "duplicate_users",
            "conflict",
            "inactive_profile",
            "no_match",
            "auto_populate_off",
            "linked",
            "no_match",
        ],
    );
    // A refusal about a profile is on that profile's audit trail, External ID unchanged.
    let dave = user(&store, "u-dave").await;
    let dave_audit = store.list_audit(Some(dave.pk), 10).await.unwrap();
    assert_eq!(dave_audit[0].origin, tether_core::Origin::Login);
    assert!(
        dave_audit[0]
            .reason
            .starts_with("sign_in_refused: conflict"),
        "{dave_audit:?}"
    );
    assert_eq!(dave_audit[0].new_value.as_deref(), Some("acc-dave-old"));

    // The decision API: same rules, admin token required.
    let api = reqwest::Client::new();
    let resolve = |body: serde_json::Value| {
        api.post(format!("{tether}/api/v1/sign-in/resolve"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let answer: serde_json::Value = resolve(serde_json::json!({
        "issuer": "https://portal.example.com", "subject": "acc-gina",
        "email": "GINA@example.com", "email_verified": true
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(answer["user_id"], "u-gina");
    assert_eq!(answer["linked_now"], true);
    assert_eq!(answer["situation"], "new_link");
    assert!(answer["explanation"].as_str().unwrap().contains("u-gina"));
    let again: serde_json::Value = resolve(serde_json::json!({
        "issuer": "https://portal.example.com", "subject": "acc-gina",
        "email": "changed@example.com", "email_verified": false
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (again["situation"].as_str(), again["linked_now"].as_bool()),
        (Some("linked"), Some(false))
    );
    let duplicate: serde_json::Value = resolve(serde_json::json!({
        "issuer": "https://portal.example.com", "subject": "acc-x", "email": "dup@example.com", "email_verified": true
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(duplicate["situation"], "duplicate_users");
    assert_eq!(duplicate["linked_now"], false);
    let bad = resolve(serde_json::json!({"issuer": "x", "subject": " "}))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(
        (bad["code"].as_str(), bad["field"].as_str()),
        (Some("invalid_input"), Some("subject"))
    );
    let anonymous = api
        .post(format!("{tether}/api/v1/sign-in/resolve"))
        .json(&serde_json::json!({"issuer": "x", "subject": "acc-dup", "email": "dup@example.com", "email_verified": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sign_in_configured_on_the_settings_page() {
    configured_on_the_page(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sign_in_configured_on_the_settings_page() {
    configured_on_the_page(true).await;
}

async fn oidc_settings(tether: &str, token: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .get(format!("{tether}/api/v1/settings/oidc"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// PUT /api/v1/settings/oidc: the status and the body's text.
async fn put_oidc_settings(
    tether: &str,
    token: &str,
    body: serde_json::Value,
) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .put(format!("{tether}/api/v1/settings/oidc"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Where `/auth/login` sends the browser.
async fn authorize_url(tether: &str) -> (StatusCode, String) {
    let response = browser()
        .get(format!("{tether}/auth/login"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let target = response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, target)
}

/// Issue 5's "Done when" without a restart: a server started with no `TETHER_OIDC_*`
/// variable is configured through Settings › Security (its API; the browser test fills the
/// page's form), a user signs in and is linked with origin `login`; a later save takes effect
/// at the next sign-in; the environment wins over the page, field by field; bad settings are
/// refused with the field named and nothing saved; the secret is never shown.
async fn configured_on_the_page(postgres: bool) {
    const SECRET: &str = "page-secret-9f3c1e";
    let (provider_process, _dir, db, token, store) = fixture(postgres, "signin_page").await;
    let provider = provider_process.url.clone();
    // PostgreSQL has no key file beside the database: the sealing key comes from the
    // environment, as on every replica. SQLite keeps one beside its file.
    let key = "11".repeat(32);
    let sealing: Vec<(&str, &str)> = if postgres {
        vec![("TETHER_SECRET_KEY", key.as_str())]
    } else {
        Vec::new()
    };
    let (tether_process, tether) = start_tether_with(&db, &sealing);

    // Off: nothing configured anywhere.
    let off = oidc_settings(&tether, &token).await;
    assert_eq!(off["status"], "off", "{off}");
    assert_eq!(off["origins"]["issuer"], "default", "{off}");
    let (status, _) = authorize_url(&tether).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "sign-in is off");

    // Bad settings are refused, naming the field, and nothing is saved.
    let good = serde_json::json!({
        "issuer": provider,
        "client_id": "tether-page",
        "client_secret": SECRET,
        "admin_claim": "groups=tether-admins",
    });
    for (field, value) in [
        ("issuer", serde_json::json!("ftp://idp.example.com")),
        ("scopes", serde_json::json!(["email", "profile"])),
        (
            "redirect_url",
            serde_json::json!("http://127.0.0.1:1/elsewhere"),
        ),
        ("admin_claim", serde_json::json!("groups")),
        ("admin_emails", serde_json::json!(["not-an-address"])),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let (status, text) = put_oidc_settings(&tether, &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {text}");
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["field"], field, "{text}");
    }
    let (status, text) = put_oidc_settings(
        &tether,
        &token,
        serde_json::json!({"issuer": provider, "bogus": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("bogus"), "{text}");
    assert_eq!(store.find_setting_document("oidc").await.unwrap(), None);
    assert_eq!(oidc_settings(&tether, &token).await["status"], "off");

    // Saved: on at once, the secret sealed and never shown.
    let (status, text) = put_oidc_settings(&tether, &token, good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let on: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(on["status"], "on", "{on}");
    assert_eq!(on["client_secret_set"], true);
    assert_eq!(on["origins"]["issuer"], "page");
    assert_eq!(on["origins"]["client_secret"], "page");
    assert_eq!(on["origins"]["redirect_url"], "default");
    assert_eq!(on["effective"]["client_id"], "tether-page");
    let stored = store.find_setting_document("oidc").await.unwrap().unwrap();
    assert!(
        !stored.contains(SECRET),
        "the secret is stored sealed: {stored}"
    );
    let events = store.list_events(None, 10).await.unwrap();
    let event = events
        .iter()
        .find(|e| e.subject == "oidc")
        .expect("the save is in the event log");
    assert!(
        event.detail.contains("client_secret set"),
        "{}",
        event.detail
    );
    assert!(
        event.detail.contains("client_id=tether-page"),
        "{}",
        event.detail
    );
    assert!(!event.detail.contains(SECRET), "{}", event.detail);

    // A user signs in and is linked by e-mail, with origin login.
    provider_user(
        &provider,
        "acc-alice",
        serde_json::json!({"email": "ALICE@example.com", "email_verified": true}),
    )
    .await;
    let first = sign_in(&browser(), &tether, "acc-alice").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert_eq!(first.landed.as_deref(), Some("/me"));
    let alice = user(&store, "u-alice").await;
    assert_eq!(alice.external_id.as_deref(), Some("acc-alice"));
    assert_eq!(alice.external_id_origin, Some(tether_core::Origin::Login));
    // The admin claim configured on the page makes an admin.
    provider_user(
        &provider,
        "acc-admin",
        serde_json::json!({"email": "ops@example.com", "email_verified": true, "groups": ["tether-admins"]}),
    )
    .await;
    let admin_browser = browser();
    let admin = sign_in(&admin_browser, &tether, "acc-admin").await;
    assert_eq!(admin.landed.as_deref(), Some("/"), "{}", admin.body);

    // A later save (the secret left out: kept) takes effect at the next sign-in.
    let mut renamed = good.clone();
    renamed["client_id"] = serde_json::json!("tether-page-2");
    renamed.as_object_mut().unwrap().remove("client_secret");
    let (status, text) = put_oidc_settings(&tether, &token, renamed).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // Who is admitted may have changed: the platform admin signs in again.
    let after_save = admin_browser
        .get(format!("{tether}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(after_save.status(), StatusCode::SEE_OTHER, "session ended");
    assert_eq!(
        oidc_settings(&tether, &token).await["client_secret_set"],
        true
    );
    let (status, target) = authorize_url(&tether).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(target.contains("client_id=tether-page-2"), "{target}");
    let second = sign_in(&browser(), &tether, "acc-alice").await;
    assert_eq!(second.landed.as_deref(), Some("/me"), "{}", second.body);

    // A sign-in started before a save is not finished after it: its code and verifier go to
    // no other client or provider.
    let interrupted = browser();
    let start = interrupted
        .get(format!("{tether}/auth/login"))
        .send()
        .await
        .unwrap();
    let authorize = location(&start);
    let mut moved = good.clone();
    moved["client_id"] = serde_json::json!("tether-page-3");
    moved.as_object_mut().unwrap().remove("client_secret");
    let (status, text) = put_oidc_settings(&tether, &token, moved.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let consent = interrupted
        .post(&authorize)
        .form(&[("sub", "acc-alice")])
        .send()
        .await
        .unwrap();
    let answer = interrupted.get(location(&consent)).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let page = answer.text().await.unwrap();
    assert!(page.contains("sign-in settings changed"), "{page}");

    // A save names the version it read: a save over someone else's later save is refused.
    let version = oidc_settings(&tether, &token).await["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut first_edit = moved.clone();
    first_edit["version"] = serde_json::json!(version);
    first_edit["scopes"] = serde_json::json!(["openid", "email"]);
    let (status, text) = put_oidc_settings(&tether, &token, first_edit).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let mut stale_edit = moved.clone();
    stale_edit["version"] = serde_json::json!(version);
    stale_edit["admin_claim"] = serde_json::json!("groups=everyone");
    let (status, text) = put_oidc_settings(&tether, &token, stale_edit).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let now = oidc_settings(&tether, &token).await;
    assert_eq!(now["saved"]["admin_claim"], "groups=tether-admins", "{now}");
    assert_eq!(
        now["saved"]["scopes"],
        serde_json::json!(["openid", "email"])
    );

    // A saved secret never follows the issuer elsewhere: a new issuer needs a new secret.
    let mut elsewhere = moved.clone();
    elsewhere["issuer"] = serde_json::json!("http://127.0.0.1:1");
    let (status, text) = put_oidc_settings(&tether, &token, elsewhere).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["field"], "client_secret", "{text}");
    assert_eq!(
        oidc_settings(&tether, &token).await["effective"]["issuer"],
        provider.as_str()
    );

    // A document a newer tether wrote (with keys this one does not know) still works.
    let raw = store.find_setting_document("oidc").await.unwrap().unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&raw).unwrap();
    newer["written_by"] = serde_json::json!("tether 9");
    newer["settings"]["future_setting"] = serde_json::json!("x");
    assert!(store
        .put_setting_document(
            "oidc",
            Some(&raw),
            &newer.to_string(),
            &NewEvent {
                at: datetime!(2026-01-02 00:00 UTC),
                actor: "test",
                kind: "settings_changed",
                subject: "oidc",
                detail: "a newer version's document",
            },
        )
        .await
        .unwrap());
    assert_eq!(oidc_settings(&tether, &token).await["status"], "on");
    let third = sign_in(&browser(), &tether, "acc-alice").await;
    assert_eq!(third.landed.as_deref(), Some("/me"), "{}", third.body);

    // Another server on the same database, with another sealing key and the client ID in its
    // environment. It cannot open the saved secret: sign-in is unavailable there, the
    // settings say why (naming the field), the public page does not, and an admin recovers
    // by entering the secret again.
    drop(tether_process);
    let other_key = "22".repeat(32);
    let vars = vec![
        ("TETHER_SECRET_KEY", other_key.as_str()),
        ("TETHER_OIDC_CLIENT_ID", "tether-env"),
    ];
    let (_fixed_process, fixed) = start_tether_with(&db, &vars);
    let view = oidc_settings(&fixed, &token).await;
    assert_eq!(view["status"], "error", "{view}");
    assert_eq!(view["error"]["field"], "client_secret", "{view}");
    let refused = browser()
        .get(format!("{fixed}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = refused.text().await.unwrap();
    assert!(page.contains("incomplete or invalid"), "{page}");
    assert!(
        !page.contains("TETHER_SECRET_KEY"),
        "no details in public: {page}"
    );
    let (status, text) = put_oidc_settings(
        &fixed,
        &token,
        serde_json::json!({"issuer": provider, "client_secret": "entered-again"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let view = oidc_settings(&fixed, &token).await;
    assert_eq!(view["status"], "on", "{view}");
    // The environment wins there, and its page cannot change that field.
    assert_eq!(view["origins"]["client_id"], "environment", "{view}");
    assert_eq!(view["origins"]["issuer"], "page", "{view}");
    assert_eq!(view["effective"]["client_id"], "tether-env", "{view}");
    let (_, target) = authorize_url(&fixed).await;
    assert!(target.contains("client_id=tether-env"), "{target}");
    let (status, text) = put_oidc_settings(
        &fixed,
        &token,
        serde_json::json!({"issuer": provider, "client_id": "tether-page-4"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("TETHER_OIDC_CLIENT_ID"), "{text}");

    // The secret can be removed; clearing the issuer turns sign-in off.
    let (status, text) = put_oidc_settings(
        &fixed,
        &token,
        serde_json::json!({"issuer": provider, "client_secret": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        oidc_settings(&fixed, &token).await["client_secret_set"],
        false
    );
    let (status, text) = put_oidc_settings(&fixed, &token, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(oidc_settings(&fixed, &token).await["status"], "off");
    let (status, _) = authorize_url(&fixed).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// --- the negative suite end to end: a provider that forges -----------------------------------

/// What the forging provider does at the next sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forgery {
    /// A correct token: the control, which must link.
    None,
    /// The payload changed after signing (another subject).
    Tampered,
    /// Signed by a key the provider does not publish, under the provider's kid.
    UnknownKey,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 keyed with the provider's published public key.
    HmacWithPublicKey,
    WrongAudience,
    WrongIssuer,
    Expired,
    WrongNonce,
    /// A correct token, but the authorization response names another issuer (RFC 9207).
    IssParameter,
}

/// An OpenID provider written here that signs what the test asks (oidc-provider-mock only
/// signs correctly): discovery, JWKS, an authorization endpoint that answers at once, and a
/// token endpoint that returns the forged ID token.
#[derive(Clone)]
struct Forger {
    base: String,
    forgery: Arc<Mutex<Forgery>>,
    email: String,
}

const FORGED_ACCOUNT: &str = "acc-forged";

fn forger_key(which: &str) -> openidconnect::core::CoreRsaPrivateSigningKey {
    let pem = match which {
        "a" => include_str!("../src/oidc/testdata/rsa-test-key-a.pem"),
        _ => include_str!("../src/oidc/testdata/rsa-test-key-b.pem"),
    };
    openidconnect::core::CoreRsaPrivateSigningKey::from_pem(
        pem,
        Some(openidconnect::JsonWebKeyId::new("kid-a".to_owned())),
    )
    .unwrap()
}

fn forger_jwks() -> String {
    use openidconnect::PrivateSigningKey;
    let set =
        openidconnect::core::CoreJsonWebKeySet::new(vec![forger_key("a").as_verification_key()]);
    serde_json::to_string(&set).unwrap()
}

/// The provider's clock: a real one, as tether checks `exp` and `iat` against its own.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn forged_token(forger: &Forger, nonce: &str, forgery: Forgery) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use openidconnect::core::{CoreHmacKey, CoreJwsSigningAlgorithm};
    use openidconnect::PrivateSigningKey;
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let now = unix_now();
    let mut claims = serde_json::json!({
        "iss": forger.base, "sub": FORGED_ACCOUNT, "aud": "tether-forged",
        "iat": now, "exp": now + 300, "nonce": nonce,
        "email": forger.email, "email_verified": true,
    });
    match forgery {
        Forgery::WrongAudience => claims["aud"] = serde_json::json!("someone-else"),
        Forgery::WrongIssuer => claims["iss"] = serde_json::json!("https://idp.evil.example"),
        Forgery::Expired => {
            claims["iat"] = serde_json::json!(now - 1200);
            claims["exp"] = serde_json::json!(now - 600);
        }
        Forgery::WrongNonce => claims["nonce"] = serde_json::json!("n-not-the-one"),
        _ => {}
    }
    let rs256 = |key: &str, claims: &serde_json::Value| {
        let input = format!(
            "{}.{}",
            b64(&serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "kid-a"})),
            b64(claims)
        );
        let signature = forger_key(key)
            .sign(
                &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                input.as_bytes(),
            )
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    match forgery {
        Forgery::Tampered => {
            let token = rs256("a", &claims);
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            claims["sub"] = serde_json::json!("acc-mallory");
            parts[1] = b64(&claims);
            parts.join(".")
        }
        Forgery::UnknownKey => rs256("b", &claims),
        Forgery::AlgNone => format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&claims)
        ),
        Forgery::HmacWithPublicKey => {
            let input = format!(
                "{}.{}",
                b64(&serde_json::json!({"alg": "HS256", "kid": "kid-a"})),
                b64(&claims)
            );
            let signature = CoreHmacKey::new(forger_jwks().into_bytes())
                .sign(&CoreJwsSigningAlgorithm::HmacSha256, input.as_bytes())
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
        _ => rs256("a", &claims),
    }
}

async fn start_forger(email: &str) -> Forger {
    use axum::extract::{Form, Query, State};
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    type Params = Query<std::collections::HashMap<String, String>>;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forger = Forger {
        base: format!("http://{}", listener.local_addr().unwrap()),
        forgery: Arc::new(Mutex::new(Forgery::None)),
        email: email.to_owned(),
    };
    async fn discovery(State(f): State<Forger>) -> Response {
        axum::Json(serde_json::json!({
            "issuer": f.base,
            "authorization_endpoint": format!("{}/authorize", f.base),
            "token_endpoint": format!("{}/token", f.base),
            "jwks_uri": format!("{}/jwks", f.base),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .into_response()
    }
    async fn jwks() -> Response {
        ([("content-type", "application/json")], forger_jwks()).into_response()
    }
    async fn authorize(State(f): State<Forger>, Query(q): Params) -> Response {
        // The code carries the nonce to the token endpoint.
        let mut target = format!(
            "{}?code={}&state={}",
            q["redirect_uri"], q["nonce"], q["state"]
        );
        if *f.forgery.lock().unwrap() == Forgery::IssParameter {
            target.push_str("&iss=https%3A%2F%2Fidp.evil.example");
        }
        Redirect::to(&target).into_response()
    }
    async fn token(
        State(f): State<Forger>,
        Form(form): Form<std::collections::HashMap<String, String>>,
    ) -> Response {
        let forgery = *f.forgery.lock().unwrap();
        axum::Json(serde_json::json!({
            "access_token": "at-forged", "token_type": "Bearer", "expires_in": 300,
            "id_token": forged_token(&f, &form["code"], forgery),
        }))
        .into_response()
    }
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(forger.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    forger
}

/// Every forgery of the negative suite, delivered through `/auth/callback` as a provider
/// would: refused with a page, nothing linked, nothing audited; then the same flow with a
/// correct token links, so the refusals are the tokens', not the harness's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_through_the_callback_link_nothing() {
    // The fixture's users, Auto-populate on (its mock provider stays unused here).
    let (_mock, _dir, db, _token, store) = fixture(false, "signin_forged").await;
    let forger = start_forger("GINA@example.com").await;
    let (_tether_process, tether) = start_tether_with(
        &db,
        &[
            ("TETHER_OIDC_ISSUER", forger.base.as_str()),
            ("TETHER_OIDC_CLIENT_ID", "tether-forged"),
            ("TETHER_OIDC_CLIENT_SECRET", "forged-secret"),
        ],
    );
    let gina = user(&store, "u-gina").await;
    for forgery in [
        Forgery::Tampered,
        Forgery::UnknownKey,
        Forgery::AlgNone,
        Forgery::HmacWithPublicKey,
        Forgery::WrongAudience,
        Forgery::WrongIssuer,
        Forgery::Expired,
        Forgery::WrongNonce,
        Forgery::IssParameter,
        Forgery::None,
    ] {
        *forger.forgery.lock().unwrap() = forgery;
        let client = browser();
        let start = client
            .get(format!("{tether}/auth/login"))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), StatusCode::SEE_OTHER, "{forgery:?}");
        let authorize = client.get(location(&start)).send().await.unwrap();
        let callback = location(&authorize);
        assert!(callback.starts_with(&tether), "{forgery:?}: {callback}");
        let answer = client.get(&callback).send().await.unwrap();
        let status = answer.status();
        let landed = answer
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let page = answer.text().await.unwrap();
        let now = user(&store, "u-gina").await;
        let audit = store.list_audit(Some(gina.pk), 10).await.unwrap();
        if forgery == Forgery::None {
            assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
            assert_eq!(landed.as_deref(), Some("/me"));
            assert_eq!(now.external_id.as_deref(), Some(FORGED_ACCOUNT));
            assert_eq!(audit.len(), 1);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{forgery:?}: {page}");
            assert!(page.contains("Sign-in failed"), "{forgery:?}: {page}");
            let why = match forgery {
                Forgery::Tampered | Forgery::UnknownKey => "signature does not verify",
                Forgery::AlgNone => "alg: none",
                Forgery::HmacWithPublicKey => "`HS256` is not one of",
                Forgery::WrongAudience => "wrong audience",
                Forgery::WrongIssuer => "wrong issuer",
                Forgery::Expired => "expired",
                Forgery::WrongNonce => "wrong nonce",
                Forgery::IssParameter => "comes from another identity provider",
                Forgery::None => unreachable!(),
            };
            assert!(
                page.contains(why),
                "{forgery:?} refused for its reason: {page}"
            );
            assert_eq!(now.external_id, None, "{forgery:?} linked nothing");
            assert!(audit.is_empty(), "{forgery:?} audited nothing: {audit:?}");
        }
    }
}
