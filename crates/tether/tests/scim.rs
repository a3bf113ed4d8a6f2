//! The SCIM 2.0 service provider end to end: `tether serve` runs as a subprocess on a fresh
//! SQLite file (the store behaviours it relies on run on both stores in the contract suite),
//! and real clients talk to it: scim2-tester (PyPI scim2-cli, `$TETHER_PEERS_BIN/scim2`),
//! and the requests provisioning platforms (Entra, Okta) send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Server {
    child: Child,
    base: String,
    token: String,
    db_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tether(db_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("TETHER_DATABASE_URL", db_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tether {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates a token and returns it (the last line of the output).
fn token(db_url: &str, name: &str, scope: &str) -> String {
    let out = tether(
        db_url,
        &["token", "create", "--name", name, "--scope", scope],
    );
    out.lines().last().unwrap().trim().to_owned()
}

/// A fresh database with `users_csv` imported (when given), a scim token, and a server.
fn start(users_csv: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite:{}", dir.path().join("tether.db").display());
    if let Some(csv) = users_csv {
        let path = dir.path().join("users.csv");
        std::fs::write(&path, csv).unwrap();
        tether(&db_url, &["import", "users", path.to_str().unwrap()]);
    }
    let token = token(&db_url, "provisioning", "scim");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TETHER_DATABASE_URL", &db_url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (found, wait) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.strip_prefix("tether: listening on ") {
                let _ = found.send(url.trim().to_owned());
            }
        }
    });
    let url = wait
        .recv_timeout(Duration::from_secs(60))
        .expect("tether serve printed no 'tether: listening on' line within 60 s");
    Server {
        child,
        base: format!("{url}/scim/v2"),
        token,
        db_url,
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    content_type: String,
    etag: Option<String>,
    body: Value,
}

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    if_match: Option<&str>,
) -> Answer {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", server.base);
    let mut request = client.request(method.parse().unwrap(), &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/scim+json")
            .body(body.to_owned());
    }
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let etag = header("etag");
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
    };
    Answer {
        status,
        content_type,
        etag,
        body,
    }
}

async fn scim(server: &Server, method: &str, path: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| b.to_string());
    call(
        server,
        method,
        path,
        Some(&server.token),
        body.as_deref(),
        None,
    )
    .await
}

fn filter(text: &str) -> String {
    format!("/Users?filter={}", urlencode(text))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts an RFC 7644 §3.12 error.
fn assert_error(answer: &Answer, status: u16, scim_type: Option<&str>, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert!(
        answer.content_type.starts_with("application/scim+json"),
        "{what}: content type {}",
        answer.content_type
    );
    assert_eq!(
        answer.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{what}"
    );
    assert_eq!(answer.body["status"], json!(status.to_string()), "{what}");
    assert_eq!(
        answer.body.get("scimType").and_then(Value::as_str),
        scim_type,
        "{what}: {}",
        answer.body
    );
    assert!(answer.body["detail"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
}

fn users_jsonl(server: &Server) -> Vec<Value> {
    tether(&server.db_url, &["users", "--format", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn audit_jsonl(server: &Server) -> Vec<Value> {
    tether(&server.db_url, &["audit", "--format", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const USERS_CSV: &str = "id,username,email,display_name,active,external_id
u1,Ann.Lee@Example.com,Ann.Lee@Example.com,Ann Lee,true,
u2,bob@example.com,bob@example.com,Bob,true,aaid-bob
";

#[test]
fn scim2_tester_passes_every_check() {
    let peers = std::env::var("TETHER_PEERS_BIN").unwrap_or_else(|_| {
        panic!(
            "TETHER_PEERS_BIN is not set, so scim2-tester cannot run: run scripts/test, or \
             eval the last line of scripts/peers/install"
        )
    });
    let scim2 = Path::new(&peers).join("scim2");
    assert!(
        scim2.exists(),
        "{} is missing: run scripts/peers/install",
        scim2.display()
    );
    let server = start(Some(USERS_CSV));
    let out = Command::new(&scim2)
        .args([
            "--url",
            &server.base,
            "--header",
            &format!("Authorization: Bearer {}", server.token),
            "test",
            "--check-status-code",
            "--check-content-type",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Each check prints one line "STATUS check_name" (SUCCESS, ERROR, SKIPPED, …) followed
    // by indented details.
    let statuses: Vec<&str> = stdout
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()
                .filter(|w| !l.starts_with(' ') && w.chars().all(|c| c.is_ascii_uppercase()))
        })
        .collect();
    let successes = statuses.iter().filter(|s| **s == "SUCCESS").count();
    let others: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace().next().is_some_and(|w| {
                !l.starts_with(' ') && w.chars().all(|c| c.is_ascii_uppercase()) && w != "SUCCESS"
            })
        })
        .collect();
    assert!(
        out.status.success() && others.is_empty() && successes >= 120,
        "scim2-tester: {successes} checks passed (expected at least 120), not passed: {others:?}\n\
         exit {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_flow_finds_and_links_the_existing_user() {
    let server = start(Some(USERS_CSV));

    // Entra and Okta search by userName before creating, in whatever case they hold it.
    let found = scim(
        &server,
        "GET",
        &filter("userName eq \"ANN.LEE@example.COM\""),
        None,
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(found.content_type.starts_with("application/scim+json"));
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    let ann = &found.body["Resources"][0];
    assert_eq!(ann["id"], "u1");
    assert_eq!(ann["userName"], "Ann.Lee@Example.com");
    // … or by e-mail, compared by its normalized match key.
    for by_email in [
        "emails.value eq \"ann.lee@EXAMPLE.com\"",
        "emails[value eq \"ANN.LEE@example.com\"]",
    ] {
        let found = scim(&server, "GET", &filter(by_email), None).await;
        assert_eq!(found.body["totalResults"], 1, "{by_email}: {}", found.body);
    }

    // A POST of the same userName in another case is refused, naming the holder.
    let duplicate = scim(
        &server,
        "POST",
        "/Users",
        Some(json!({"schemas": [USER], "userName": "ann.lee@example.com"})),
    )
    .await;
    assert_error(&duplicate, 409, Some("uniqueness"), "duplicate userName");
    assert!(duplicate.body["detail"].as_str().unwrap().contains("'u1'"));

    // The platform links the user by setting externalId (Entra's PATCH shape).
    let linked = scim(
        &server,
        "PATCH",
        "/Users/u1",
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "externalId", "value": "aaid-ann"},
            {"op": "Replace", "path": "active", "value": "True"}
        ]})),
    )
    .await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    assert_eq!(linked.body["externalId"], "aaid-ann");
    let users = users_jsonl(&server);
    let u1 = users.iter().find(|u| u["id"] == "u1").unwrap();
    assert_eq!(u1["external_id"], "aaid-ann");
    let audit = audit_jsonl(&server);
    assert_eq!(
        audit.len(),
        2,
        "the import's aaid-bob and SCIM's aaid-ann: {audit:?}"
    );
    assert_eq!(audit[0]["origin"], "scim");
    assert_eq!(audit[0]["user_id"], "u1");
    assert_eq!(audit[0]["new_value"], "aaid-ann");
    assert_eq!(audit[0]["actor"], "scim:provisioning");
    let by_external_id = scim(&server, "GET", &filter("externalId eq \"aaid-ann\""), None).await;
    assert_eq!(by_external_id.body["Resources"][0]["id"], "u1");

    // An External ID another user holds is refused, naming the holder; nothing changes.
    let taken = scim(
        &server,
        "PATCH",
        "/Users/u1",
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "externalId", "value": "aaid-bob"}]})),
    )
    .await;
    assert_error(&taken, 409, Some("uniqueness"), "taken externalId");
    assert!(taken.body["detail"].as_str().unwrap().contains("'u2'"));
    assert_eq!(audit_jsonl(&server).len(), 2);

    // ETags: a stale If-Match is 412 and writes nothing; the current one passes.
    let current = scim(&server, "GET", "/Users/u1", None).await;
    let etag = current.etag.clone().unwrap();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(current.body["meta"]["version"], json!(etag));
    let rename = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Ann L."}]})
    .to_string();
    let stale = call(
        &server,
        "PATCH",
        "/Users/u1",
        Some(&server.token),
        Some(&rename),
        Some("W/\"stale\""),
    )
    .await;
    assert_error(&stale, 412, None, "stale If-Match");
    let fresh = call(
        &server,
        "PATCH",
        "/Users/u1",
        Some(&server.token),
        Some(&rename),
        Some(&etag),
    )
    .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_ne!(
        fresh.etag.unwrap(),
        etag,
        "the version changes with the resource"
    );

    // Groups hold users.
    let group = scim(
        &server,
        "POST",
        "/Groups",
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Planners", "members": [{"value": "u1"}, {"value": "u2"}]}),
        ),
    )
    .await;
    assert_eq!(group.status, 201, "{}", group.body);
    assert_eq!(group.body["members"].as_array().unwrap().len(), 2);

    // DELETE hides the user from SCIM and keeps it (deactivated) with its External ID.
    let deleted = scim(&server, "DELETE", "/Users/u1", None).await;
    assert_eq!(deleted.status, 204);
    assert_error(
        &scim(&server, "GET", "/Users/u1", None).await,
        404,
        None,
        "deleted user",
    );
    let u1 = users_jsonl(&server)
        .into_iter()
        .find(|u| u["id"] == "u1")
        .unwrap();
    assert_eq!(u1["external_id"], "aaid-ann");
    assert_eq!(u1["active"], false);
    let group_id = group.body["id"].as_str().unwrap();
    let group = scim(&server, "GET", &format!("/Groups/{group_id}"), None).await;
    assert_eq!(
        group.body["members"],
        json!([{"value": "u2", "$ref": format!("{}/Users/u2", server.base), "type": "User"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_scim_errors_and_writes_nothing() {
    let server = start(Some(USERS_CSV));
    let admin = token(&server.db_url, "admin", "admin");
    let users_before = users_jsonl(&server);
    let audit_before = audit_jsonl(&server);
    let post = |body: &'static str| {
        call(
            &server,
            "POST",
            "/Users",
            Some(&server.token),
            Some(body),
            None,
        )
    };

    assert_error(
        &post("{\"schemas\": [").await,
        400,
        Some("invalidSyntax"),
        "malformed JSON",
    );
    let unknown = post(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "zed", "shoeSize": 44}"#).await;
    assert_error(&unknown, 400, Some("invalidSyntax"), "unknown attribute");
    assert!(unknown.body["detail"]
        .as_str()
        .unwrap()
        .contains("shoeSize"));
    let wrong_type = post(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "zed", "active": 7}"#).await;
    assert_error(&wrong_type, 400, Some("invalidValue"), "wrong type");
    let no_name = post(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}"#).await;
    assert_error(&no_name, 400, Some("invalidValue"), "missing userName");
    let taken = post(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "zed", "externalId": "aaid-bob"}"#).await;
    assert_error(
        &taken,
        409,
        Some("uniqueness"),
        "taken externalId on create",
    );

    for (path, scim_type) in [
        (filter("userName eq"), "invalidFilter"),
        (filter("userName xx \"a\""), "invalidFilter"),
        (filter("(userName eq \"a\""), "invalidFilter"),
        ("/Users?count=201".to_owned(), "tooMany"),
        ("/Users?count=ten".to_owned(), "invalidValue"),
        ("/Users?sortOrder=sideways".to_owned(), "invalidValue"),
    ] {
        let answer = scim(&server, "GET", &path, None).await;
        assert_error(&answer, 400, Some(scim_type), &path);
    }
    let deep = format!("{}userName eq \"a\"{}", "(".repeat(200), ")".repeat(200));
    assert_error(
        &scim(&server, "GET", &filter(&deep), None).await,
        400,
        Some("invalidFilter"),
        "deep filter",
    );
    let bad_path = scim(
        &server,
        "PATCH",
        "/Users/u1",
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]})),
    )
    .await;
    assert_error(&bad_path, 400, Some("invalidPath"), "bad PATCH path");
    let bad_op = scim(
        &server,
        "PATCH",
        "/Users/u1",
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "merge", "path": "displayName", "value": "x"}]})),
    )
    .await;
    assert_error(&bad_op, 400, Some("invalidSyntax"), "unknown PATCH op");
    let id_change = scim(
        &server,
        "PATCH",
        "/Users/u1",
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": 5}]})),
    )
    .await;
    assert_error(
        &id_change,
        400,
        Some("invalidValue"),
        "userName of the wrong type",
    );
    assert_error(
        &scim(&server, "GET", "/Users/nobody", None).await,
        404,
        None,
        "unknown id",
    );

    // Tokens: none, unknown, and one of scope admin.
    let server_ref = &server;
    let list = |token: Option<String>| async move {
        call(server_ref, "GET", "/Users", token.as_deref(), None, None).await
    };
    assert_error(&list(None).await, 401, None, "no token");
    assert_error(
        &list(Some("tether_0000".into())).await,
        401,
        None,
        "unknown token",
    );
    assert_error(&list(Some(admin)).await, 403, None, "admin token");
    let forbidden_write = call(
        &server,
        "POST",
        "/Users",
        Some("tether_0000"),
        Some(r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "zed"}"#),
        None,
    )
    .await;
    assert_error(&forbidden_write, 401, None, "write with an unknown token");

    assert_eq!(users_jsonl(&server), users_before, "no user was written");
    assert_eq!(
        audit_jsonl(&server),
        audit_before,
        "no audit entry was written"
    );
}
