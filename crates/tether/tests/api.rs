//! The REST API under /api/v1, over HTTP against a `tether serve` subprocess (SQLite).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/server.rs"]
mod server;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server::Server;
use std::collections::BTreeSet;

/// Every endpoint of this module, with a body that would be valid for writes.
fn endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    let reason = Some(json!({"reason": "test"}));
    vec![
        (Method::GET, "/api/v1/users", None),
        (Method::GET, "/api/v1/users/u00001", None),
        (Method::GET, "/api/v1/users/u00001/diagnosis", None),
        (
            Method::PUT,
            "/api/v1/users/u00001/external-id",
            Some(json!({"external_id": "x", "reason": "r"})),
        ),
        (
            Method::DELETE,
            "/api/v1/users/u00001/external-id",
            reason.clone(),
        ),
        (Method::POST, "/api/v1/users/u00001/exclude", reason.clone()),
        (Method::POST, "/api/v1/users/u00001/include", reason),
        (Method::GET, "/api/v1/settings", None),
        (
            Method::PUT,
            "/api/v1/settings",
            Some(json!({"auto_populate": true})),
        ),
        (Method::GET, "/api/v1/sources", None),
        (
            Method::POST,
            "/api/v1/sources",
            Some(json!({"name": "s", "kind": "file"})),
        ),
        (Method::GET, "/api/v1/sources/demo-directory", None),
        (
            Method::PATCH,
            "/api/v1/sources/demo-directory",
            Some(json!({"link_inactive": true})),
        ),
        (
            Method::POST,
            "/api/v1/sources/demo-directory/plan",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v1/sources/demo-directory/apply",
            Some(json!({})),
        ),
        (Method::GET, "/api/v1/sources/demo-directory/runs", None),
        (Method::GET, "/api/v1/audit", None),
        (Method::GET, "/api/v1/events", None),
        (Method::GET, "/api/v1/dashboard", None),
        (Method::GET, "/api/v1/tokens", None),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "n", "scope": "admin"})),
        ),
        (Method::DELETE, "/api/v1/tokens/1", None),
    ]
}

struct Api<'a> {
    server: &'a Server,
    client: reqwest::Client,
    token: String,
}

impl<'a> Api<'a> {
    fn new(server: &'a Server) -> Self {
        Api {
            server,
            client: server.client(),
            token: server.token("admin"),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method.clone(), self.server.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {value}");
        value
    }

    /// Expects a 400 `invalid_input` naming `field`.
    async fn invalid(&self, method: Method, path: &str, body: Option<Value>, field: &str) {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {value}");
        assert_eq!(value["code"], "invalid_input", "{method} {path}: {value}");
        assert_eq!(value["field"], field, "{method} {path}: {value}");
        assert!(value["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn every_endpoint_refuses_callers_without_an_admin_token() {
    let server = Server::start(&[]);
    let client = server.client();
    let scim = server.token("scim");
    for (method, path, body) in endpoints() {
        let send = |auth: Option<&str>| {
            let mut request = client.request(method.clone(), server.url(path));
            if let Some(token) = auth {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        let response = send(None).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        let value: Value = response.json().await.unwrap();
        assert_eq!(value["code"], "unauthorized", "{method} {path}");

        let response = send(Some("tether_0000")).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} bogus token"
        );

        let response = send(Some(&scim)).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{method} {path} scim token"
        );
        let value: Value = response.json().await.unwrap();
        assert_eq!(value["code"], "forbidden", "{method} {path}");
    }
}

#[tokio::test]
async fn users_are_listed_in_keyset_pages_filtered_and_searched() {
    let server = Server::demo();
    let api = Api::new(&server);

    // Bounds of `limit`, and bad cursors, situations and parameters.
    for bad in ["0", "501", "-3", "many"] {
        api.invalid(
            Method::GET,
            &format!("/api/v1/users?limit={bad}"),
            None,
            "limit",
        )
        .await;
    }
    api.invalid(Method::GET, "/api/v1/users?after=nope", None, "after")
        .await;
    api.invalid(
        Method::GET,
        "/api/v1/users?situation=happy",
        None,
        "situation",
    )
    .await;
    api.invalid(
        Method::GET,
        "/api/v1/users?situaton=linked",
        None,
        "situaton",
    )
    .await;
    api.invalid(
        Method::GET,
        "/api/v1/users?situation=linked&source=nowhere",
        None,
        "source",
    )
    .await;
    api.invalid(
        Method::GET,
        "/api/v1/users?situation=linked&q=alice",
        None,
        "situation",
    )
    .await;

    let first = api.get("/api/v1/users").await;
    assert_eq!(
        first["items"].as_array().unwrap().len(),
        50,
        "default limit"
    );
    let item = &first["items"][0];
    for key in [
        "id",
        "username",
        "email",
        "display_name",
        "active",
        "external_id",
        "external_id_origin",
        "excluded",
    ] {
        assert!(item.get(key).is_some(), "user has {key}: {item}");
    }

    // The whole list in pages of the maximum size: every user once, in order.
    let mut all: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &next {
            Some(after) => format!("/api/v1/users?limit=500&after={after}"),
            None => "/api/v1/users?limit=500".to_owned(),
        };
        let page = api.get(&path).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 500);
        all.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match page["next"].as_str() {
            Some(cursor) => {
                assert_eq!(items.len(), 500, "only full pages have a next");
                next = Some(cursor.to_owned());
            }
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    let dashboard = api.get("/api/v1/dashboard").await;
    assert_eq!(all.len() as u64, dashboard["users"].as_u64().unwrap());
    assert!(all.len() >= 3000, "the demo has a few thousand users");
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no user twice");

    // Small pages walk the same order with no gaps or repeats.
    let mut walked: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..5 {
        let path = match &next {
            Some(after) => format!("/api/v1/users?limit=7&after={after}"),
            None => "/api/v1/users?limit=7".to_owned(),
        };
        let page = api.get(&path).await;
        walked.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_owned()),
        );
        next = page["next"].as_str().map(str::to_owned);
    }
    assert_eq!(walked, all[..35].to_vec());

    // A situation filter (the demo's first sync left most users missing_field).
    let page = api
        .get("/api/v1/users?situation=missing_field&limit=20")
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    for user in items.iter().take(3) {
        let id = user["id"].as_str().unwrap();
        let detail = api.get(&format!("/api/v1/users/{id}")).await;
        assert_eq!(
            detail["diagnosis"]["situation"], "missing_field",
            "{detail}"
        );
    }
    let named = api
        .get("/api/v1/users?situation=missing_field&limit=20&source=demo-directory")
        .await;
    assert_eq!(named["items"], page["items"]);
    let linked = api.get("/api/v1/users?situation=linked&limit=500").await;
    let missing = api
        .get("/api/v1/users?situation=missing_field&limit=500")
        .await;
    let linked_ids: BTreeSet<&str> = linked["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert!(missing["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| !linked_ids.contains(u["id"].as_str().unwrap())));

    // Search: case-insensitive prefix of username, display name or e-mail.
    let found = api.get("/api/v1/users?q=ALICE.ADA&limit=500").await;
    let items = found["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for user in items {
        let matches = ["username", "display_name", "email"].iter().any(|k| {
            user[k]
                .as_str()
                .is_some_and(|v| v.to_lowercase().starts_with("alice.ada"))
        });
        assert!(matches, "{user} does not match the search");
    }
    assert!(items.iter().any(|u| u["id"] == "u00001"), "{found}");
    // Search pages too.
    let one = api.get("/api/v1/users?q=alice&limit=1").await;
    let after = one["next"].as_str().expect("more than one Alice");
    let two = api
        .get(&format!("/api/v1/users?q=alice&limit=1&after={after}"))
        .await;
    assert_ne!(one["items"][0]["id"], two["items"][0]["id"]);
    let none = api.get("/api/v1/users?q=zzzz-nobody").await;
    assert_eq!(none, json!({"items": [], "next": null}));
}

#[tokio::test]
async fn external_ids_set_by_hand_are_audited_and_clashes_name_the_holder() {
    let server = Server::demo();
    let api = Api::new(&server);
    let path = "/api/v1/users/u00002/external-id";

    // Invalid input names the field.
    api.invalid(
        Method::PUT,
        path,
        Some(json!({"external_id": "m-1"})),
        "reason",
    )
    .await;
    api.invalid(
        Method::PUT,
        path,
        Some(json!({"external_id": "m-1", "reason": " "})),
        "reason",
    )
    .await;
    api.invalid(
        Method::PUT,
        path,
        Some(json!({"external_id": "m-1", "reason": "r", "colour": 1})),
        "colour",
    )
    .await;
    api.invalid(
        Method::PUT,
        path,
        Some(json!({"external_id": 7, "reason": "r"})),
        "external_id",
    )
    .await;
    let response = api
        .client
        .put(server.url(path))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"external_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let value: Value = response.json().await.unwrap();
    assert_eq!(
        (value["code"].as_str(), value["field"].as_str()),
        (Some("invalid_input"), Some("body")),
        "{value}"
    );
    let response = api
        .client
        .put(server.url(path))
        .bearer_auth(&api.token)
        .header("content-type", "text/plain")
        .body(r#"{"external_id": "m-1", "reason": "r"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, value) = api
        .call(
            Method::PUT,
            "/api/v1/users/nobody/external-id",
            Some(json!({"external_id": "m-1", "reason": "r"})),
        )
        .await;
    assert_eq!(
        (status, value["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // Set by hand: origin manual, audited with the token's name and the reason.
    let (status, user) = api
        .call(
            Method::PUT,
            path,
            Some(json!({"external_id": "m-1", "expected": null, "reason": "ticket 42"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["external_id"], "m-1");
    assert_eq!(user["external_id_origin"], "manual");
    let audit = api.get("/api/v1/audit?user=u00002").await;
    let entry = &audit["items"][0];
    assert_eq!(entry["origin"], "manual", "{audit}");
    assert_eq!(entry["user"], "u00002");
    assert_eq!(entry["new_value"], "m-1");
    assert_eq!(entry["old_value"], Value::Null);
    assert_eq!(entry["reason"], "ticket 42");
    assert!(
        entry["actor"].as_str().unwrap().starts_with("token:"),
        "{entry}"
    );
    let manual = api.get("/api/v1/audit?origin=manual").await;
    assert!(manual["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["origin"] == "manual"));
    assert!(manual["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["user"] == "u00002"));
    api.invalid(Method::GET, "/api/v1/audit?origin=magic", None, "origin")
        .await;
    api.invalid(Method::GET, "/api/v1/audit?limit=501", None, "limit")
        .await;
    let detail = api.get("/api/v1/users/u00002").await;
    assert_eq!(detail["external_id"], "m-1");
    assert_eq!(detail["audit"][0]["reason"], "ticket 42");
    assert!(detail["external_id_set_at"].as_str().is_some());

    // Another user may not take the value: 409 naming the holder.
    let (status, value) = api
        .call(
            Method::PUT,
            "/api/v1/users/u00003/external-id",
            Some(json!({"external_id": "m-1", "reason": "r"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert_eq!(value["code"], "conflict");
    assert!(
        value["message"].as_str().unwrap().contains("u00002"),
        "{value}"
    );

    // A stale `expected` is refused, and nothing changes.
    let (status, value) = api
        .call(
            Method::PUT,
            path,
            Some(json!({"external_id": "m-2", "expected": "m-0", "reason": "r"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert_eq!(api.get("/api/v1/users/u00002").await["external_id"], "m-1");

    // Clear by hand.
    let (status, user) = api
        .call(
            Method::DELETE,
            path,
            Some(json!({"expected": "m-1", "reason": "wrong person"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["external_id"], Value::Null);
    let audit = api.get("/api/v1/audit?user=u00002&limit=1").await;
    assert_eq!(audit["items"][0]["old_value"], "m-1");
    assert_eq!(audit["items"][0]["new_value"], Value::Null);

    // Audit pages go back in time without overlap.
    for n in 0..4 {
        let (status, _) = api
            .call(
                Method::PUT,
                path,
                Some(json!({"external_id": format!("p-{n}"), "reason": "paging"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let first = api.get("/api/v1/audit?user=u00002&limit=2").await;
    let before = first["next"].as_str().unwrap();
    let second = api
        .get(&format!(
            "/api/v1/audit?user=u00002&limit=2&before={before}"
        ))
        .await;
    let a: Vec<i64> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let b: Vec<i64> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(a.len(), 2);
    assert!(a[0] > a[1] && a[1] > b[0], "{a:?} then {b:?}");

    // The live diagnosis explains.
    let diagnosis = api.get("/api/v1/users/u00005/diagnosis").await;
    assert_eq!(diagnosis["user_id"], "u00005");
    assert!(diagnosis["explanation"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert!(diagnosis["evidence"].is_object());
    let (status, _) = api
        .call(Method::GET, "/api/v1/users/nobody/diagnosis", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn excluded_users_are_left_alone_by_runs() {
    let server = Server::start_with(&[], |db| {
        let dir = std::path::Path::new(db.strip_prefix("sqlite:").unwrap())
            .parent()
            .unwrap()
            .to_owned();
        let users = dir.join("users.csv");
        std::fs::write(
            &users,
            "id,username,email,display_name,active,external_id\n\
             a1,ann,ann@example.com,Ann,true,\n\
             b2,ben,ben@example.com,Ben,true,\n\
             c3,cat,cat@example.com,Cat,true,\n\
             d4,dan,dan@example.com,Dan,true,\n",
        )
        .unwrap();
        let accounts = dir.join("accounts.csv");
        std::fs::write(
            &accounts,
            "account_id,username,key,email,display_name,active,account_type\n\
             acc-ann,ann,,ann@example.com,Ann,true,atlassian\n\
             acc-ben,ben,,ben@example.com,Ben,true,atlassian\n\
             acc-cat,cat,,cat@example.com,Cat,true,atlassian\n",
        )
        .unwrap();
        server::run_tether(db, &["import", "users", users.to_str().unwrap()]);
        server::run_tether(db, &["sources", "add", "dir"]);
        server::run_tether(
            db,
            &[
                "import",
                "accounts",
                "--source",
                "dir",
                accounts.to_str().unwrap(),
            ],
        );
    });
    let api = Api::new(&server);

    let (status, user) = api
        .call(
            Method::POST,
            "/api/v1/users/a1/exclude",
            Some(json!({"reason": "contractor"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["excluded"], true);
    api.invalid(
        Method::POST,
        "/api/v1/users/a1/exclude",
        Some(json!({})),
        "reason",
    )
    .await;

    // A plan writes nothing.
    let (status, plan) = api
        .call(Method::POST, "/api/v1/sources/dir/plan", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["run"], Value::Null);
    assert_eq!(plan["planned"], 2, "{plan}");
    assert_eq!(plan["summary"]["excluded"], 1, "{plan}");
    assert_eq!(plan["summary"]["no_match"], 1, "{plan}");
    assert_eq!(
        api.get("/api/v1/users/b2").await["external_id"],
        Value::Null
    );
    assert_eq!(api.get("/api/v1/sources/dir/runs").await, json!([]));
    api.invalid(
        Method::POST,
        "/api/v1/sources/dir/plan",
        Some(json!({"field": "shoe_size"})),
        "field",
    )
    .await;
    let (status, _) = api
        .call(Method::POST, "/api/v1/sources/nowhere/plan", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Apply: the others are linked, the excluded user is not touched.
    let (status, run) = api
        .call(Method::POST, "/api/v1/sources/dir/apply", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["applied"], 2, "{run}");
    let run_id = run["run"].as_i64().expect("a recorded run");
    assert_eq!(api.get("/api/v1/users/b2").await["external_id"], "acc-ben");
    assert_eq!(api.get("/api/v1/users/c3").await["external_id"], "acc-cat");
    let a1 = api.get("/api/v1/users/a1").await;
    assert_eq!(a1["external_id"], Value::Null, "{a1}");
    assert_eq!(a1["excluded"], true);
    assert_eq!(a1["diagnosis"]["situation"], "excluded", "{a1}");
    assert_eq!(
        api.get("/api/v1/users/a1/diagnosis").await["situation"],
        "excluded"
    );
    let audit = api.get("/api/v1/audit?origin=pull").await;
    let users: BTreeSet<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, BTreeSet::from(["b2", "c3"]));
    // Hand edits of an excluded user are refused too.
    let (status, _) = api
        .call(
            Method::PUT,
            "/api/v1/users/a1/external-id",
            Some(json!({"external_id": "acc-ann", "reason": "r"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let runs = api.get("/api/v1/sources/dir/runs").await;
    assert_eq!(runs[0]["id"], run_id);
    assert_eq!(runs[0]["state"], "succeeded");
    api.invalid(
        Method::GET,
        "/api/v1/sources/dir/runs?limit=0",
        None,
        "limit",
    )
    .await;
    let linked = api.get("/api/v1/users?situation=linked").await;
    let ids: Vec<&str> = linked["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b2", "c3"]);
    let excluded = api.get("/api/v1/users?situation=excluded&source=dir").await;
    assert_eq!(excluded["items"][0]["id"], "a1");

    let dashboard = api.get("/api/v1/dashboard").await;
    assert_eq!(dashboard["source"], "dir");
    assert_eq!(dashboard["users"], 4);
    let situations = &dashboard["situations"];
    let linked =
        situations["linked"].as_u64().unwrap_or(0) + situations["new_link"].as_u64().unwrap_or(0);
    assert_eq!(linked, 2, "{dashboard}");
    assert_eq!(situations["excluded"], 1, "{dashboard}");
    assert_eq!(dashboard["last_run"]["id"], run_id);
    assert_eq!(dashboard["history"].as_array().unwrap().len(), 1);

    // Included again, the next run links the user.
    let (status, user) = api
        .call(
            Method::POST,
            "/api/v1/users/a1/include",
            Some(json!({"reason": "hired"})),
        )
        .await;
    assert_eq!((status, &user["excluded"]), (StatusCode::OK, &json!(false)));
    let (_, run) = api
        .call(Method::POST, "/api/v1/sources/dir/apply", None)
        .await;
    assert_eq!(run["applied"], 1, "{run}");
    assert_eq!(api.get("/api/v1/users/a1").await["external_id"], "acc-ann");
    let events = api.get("/api/v1/events").await;
    assert!(events["items"].as_array().unwrap().len() >= 2, "{events}");
}

#[tokio::test]
async fn settings_are_read_and_changed_field_by_field() {
    let server = Server::start(&[]);
    let api = Api::new(&server);
    let settings = api.get("/api/v1/settings").await;
    assert_eq!(
        settings,
        json!({"auto_populate": false, "require_verified_email": true, "link_inactive": false, "mass_change_threshold_percent": 20})
    );
    let (status, changed) = api
        .call(
            Method::PUT,
            "/api/v1/settings",
            Some(json!({"auto_populate": true, "mass_change_threshold_percent": 35})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        changed,
        json!({"auto_populate": true, "require_verified_email": true, "link_inactive": false, "mass_change_threshold_percent": 35})
    );
    assert_eq!(api.get("/api/v1/settings").await, changed);
    api.invalid(
        Method::PUT,
        "/api/v1/settings",
        Some(json!({"auto_populate": true, "dark_mode": true})),
        "dark_mode",
    )
    .await;
    api.invalid(
        Method::PUT,
        "/api/v1/settings",
        Some(json!({"mass_change_threshold_percent": 0})),
        "mass_change_threshold_percent",
    )
    .await;
    api.invalid(
        Method::PUT,
        "/api/v1/settings",
        Some(json!({"mass_change_threshold_percent": 101})),
        "mass_change_threshold_percent",
    )
    .await;
    api.invalid(
        Method::PUT,
        "/api/v1/settings",
        Some(json!({"auto_populate": "yes"})),
        "auto_populate",
    )
    .await;
    assert_eq!(
        api.get("/api/v1/settings").await,
        changed,
        "refused changes change nothing"
    );
    let events = api.get("/api/v1/events?limit=500").await;
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"].as_str().unwrap().contains("settings")),
        "{events}"
    );
    api.invalid(Method::GET, "/api/v1/events?before=x", None, "before")
        .await;
}

#[tokio::test]
async fn sources_are_added_and_edited_and_their_secret_never_shown() {
    let server = Server::start(&[]);
    let api = Api::new(&server);
    assert_eq!(api.get("/api/v1/sources").await, json!([]));
    let secret = "s3cret-token-value-9f8e7d";
    let (status, source) = api
        .call(
            Method::POST,
            "/api/v1/sources",
            Some(json!({
                "name": "idp",
                "kind": "scim",
                "external_id_field": "account_id",
                "link_inactive": false,
                "settings": {"base_url": "https://idp.example.com/scim/v2", "page_size": 100},
                "secret": secret,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{source}");
    assert_eq!(source["name"], "idp");
    assert_eq!(source["kind"], "scim");
    assert_eq!(source["has_secret"], true);
    assert_eq!(
        source["settings"]["base_url"],
        "https://idp.example.com/scim/v2"
    );
    assert_eq!(source["settings"]["page_size"], 100);
    assert!(source.get("secret").is_none());
    for path in [
        "/api/v1/sources",
        "/api/v1/sources/idp",
        "/api/v1/events?limit=500",
    ] {
        let text = api.get(path).await.to_string();
        assert!(!text.contains(secret), "{path} shows the secret: {text}");
    }
    let listed = api.get("/api/v1/sources").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["has_secret"], true);

    let (status, _) = api
        .call(
            Method::POST,
            "/api/v1/sources",
            Some(json!({"name": "idp", "kind": "scim"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    api.invalid(
        Method::POST,
        "/api/v1/sources",
        Some(json!({"name": "x", "kind": "ldap"})),
        "kind",
    )
    .await;
    api.invalid(
        Method::POST,
        "/api/v1/sources",
        Some(json!({"kind": "file"})),
        "name",
    )
    .await;
    api.invalid(
        Method::POST,
        "/api/v1/sources",
        Some(json!({"name": " x", "kind": "file"})),
        "name",
    )
    .await;
    api.invalid(
        Method::POST,
        "/api/v1/sources",
        Some(json!({"name": "x", "kind": "file", "external_id_field": "shoe"})),
        "external_id_field",
    )
    .await;
    api.invalid(
        Method::POST,
        "/api/v1/sources",
        Some(json!({"name": "x", "kind": "file", "settings": {"colour": "red"}})),
        "settings.colour",
    )
    .await;

    let (status, patched) = api
        .call(
            Method::PATCH,
            "/api/v1/sources/idp",
            Some(json!({"link_inactive": true, "external_id_field": "email"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["link_inactive"], true);
    assert_eq!(patched["external_id_field"], "email");
    assert_eq!(
        patched["has_secret"], true,
        "a patch without secret keeps it"
    );
    assert_eq!(
        patched["settings"]["base_url"],
        "https://idp.example.com/scim/v2"
    );
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v1/sources/nowhere",
            Some(json!({"link_inactive": true})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.invalid(
        Method::PATCH,
        "/api/v1/sources/idp",
        Some(json!({"secret": 5})),
        "secret",
    )
    .await;

    let (status, file) = api
        .call(Method::POST, "/api/v1/sources", Some(json!({"name": "hr-file", "kind": "file", "settings": {"path": "/tmp/accounts.csv"}})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(file["has_secret"], false);
    assert_eq!(file["external_id_field"], "account_id");
    // Two sources: a situation filter must name one.
    api.invalid(
        Method::GET,
        "/api/v1/users?situation=linked",
        None,
        "source",
    )
    .await;
}

#[tokio::test]
async fn tokens_are_shown_once_listed_without_secrets_and_revoked() {
    let server = Server::start(&[]);
    let api = Api::new(&server);
    let (status, created) = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "ci", "scope": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tether_"));
    assert_eq!(created["name"], "ci");
    assert_eq!(created["scope"], "admin");
    let id = created["id"].as_i64().unwrap();

    // The new token works.
    let response = api
        .client
        .get(server.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.unwrap();
    let text = listed.to_string();
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    assert!(!text.contains(&token) && !text.contains(&hash), "{text}");
    assert!(!text.contains(&api.token[7..]), "{text}");
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert_eq!(mine["revoked_at"], Value::Null);
    assert!(mine["last_used_at"].as_str().is_some(), "{mine}");

    api.invalid(
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": "x", "scope": "root"})),
        "scope",
    )
    .await;
    api.invalid(
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": " ", "scope": "scim"})),
        "name",
    )
    .await;
    api.invalid(Method::DELETE, "/api/v1/tokens/abc", None, "id")
        .await;
    let (status, _) = api
        .call(Method::DELETE, "/api/v1/tokens/999999", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = api
        .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let response = api
        .client
        .get(server.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let listed = api.get("/api/v1/tokens").await;
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert!(mine["revoked_at"].as_str().is_some());

    // A scim token made here is refused by the API.
    let (_, scim) = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "idp", "scope": "scim"})),
        )
        .await;
    let response = api
        .client
        .get(server.url("/api/v1/users"))
        .bearer_auth(scim["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
