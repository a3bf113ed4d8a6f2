//! Web security over HTTP against a `tether serve` subprocess: CSRF on forms and on
//! cookie-authenticated API writes, cookie flags, security headers, body limits, the sign-in
//! rate limit, and no secret in any response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/server.rs"]
mod server;

use reqwest::StatusCode;
use serde_json::{json, Value};
use server::{set_cookie_header, Server};

#[tokio::test]
async fn forms_and_cookie_api_writes_without_the_csrf_token_are_refused() {
    let server = Server::demo();
    let client = server.client();
    let session = server.sign_in_demo().await;

    // Forms.
    // Each form is otherwise complete (the fields of every form at once; extra ones are
    // ignored), so only the token is missing or wrong.
    let fields = [
        ("auto_populate", "yes"),
        ("require_verified_email", "yes"),
        ("link_inactive", "no"),
        ("mass_change_threshold_percent", "20"),
        ("excluded", "yes"),
        ("reason", "r"),
        ("op", "set"),
        ("external_id", "x-1"),
        ("name", "n"),
        ("scope", "admin"),
    ];
    let paths = [
        "/settings/security",
        "/logout",
        "/tokens",
        "/users/u00001/exclude",
        "/users/u00001/external-id",
    ];
    for path in paths {
        for csrf in [None, Some("0".repeat(64))] {
            let mut form: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
            if let Some(csrf) = &csrf {
                form.push(("csrf", csrf.clone()));
            }
            let response = client
                .post(server.url(path))
                .header("cookie", &session.cookie)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "POST {path} with csrf {csrf:?}"
            );
        }
    }
    // The sign-in form has its own (double-submit) token.
    let response = client
        .post(server.url("/login"))
        .form(&[
            ("username", "admin"),
            ("password", server.demo_password.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "POST /login without csrf"
    );

    // Nothing changed, and the session still works.
    let settings: Value = client
        .get(server.url("/api/v1/settings"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["auto_populate"], false, "{settings}");

    // API writes with the session cookie need X-CSRF-Token.
    let put = |csrf: Option<&str>| {
        let mut request = client
            .put(server.url("/api/v1/settings"))
            .header("cookie", &session.cookie)
            .json(&json!({"auto_populate": true}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    for csrf in [None, Some("wrong"), Some(&"0".repeat(64)[..])] {
        let response = put(csrf).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "X-CSRF-Token {csrf:?}"
        );
        let value: Value = response.json().await.unwrap();
        assert_eq!(value["code"], "forbidden");
    }
    let response = put(Some(&session.csrf)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let value: Value = response.json().await.unwrap();
    assert_eq!(value["auto_populate"], true);

    // Signing out with the token works, and the cookie is then dead.
    let response = client
        .post(server.url("/logout"))
        .header("cookie", &session.cookie)
        .form(&[("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let response = client
        .get(server.url("/api/v1/settings"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookies_are_http_only_and_same_site_lax_and_secure_behind_https() {
    let server = Server::demo();
    let client = server.client();
    let login = client.get(server.url("/login")).send().await.unwrap();
    let cookie = set_cookie_header(&login, "tether_login").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let session =
        sign_in_response(&server, "admin", server.demo_password.as_deref().unwrap()).await;
    let cookie = set_cookie_header(&session, "tether_session").expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    let server = Server::start(&["--demo", "--public-url", "https://tether.example.com"]);
    let client = server.client();
    let login = client.get(server.url("/login")).send().await.unwrap();
    let cookie = set_cookie_header(&login, "tether_login").unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    let session =
        sign_in_response(&server, "admin", server.demo_password.as_deref().unwrap()).await;
    let cookie =
        set_cookie_header(&session, "__Host-tether_session").expect("a __Host- session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Domain="),
        "__Host- cookies have no Domain: {cookie}"
    );
}

/// POST /login's response (with the form's CSRF cookie and field).
async fn sign_in_response(server: &Server, username: &str, password: &str) -> reqwest::Response {
    let client = server.client();
    let form = client.get(server.url("/login")).send().await.unwrap();
    let login_cookie = server::set_cookie(&form, "tether_login").unwrap();
    let html = form.text().await.unwrap();
    let csrf = server::attribute_after(&html, "name=\"csrf\"", "value").unwrap();
    client
        .post(server.url("/login"))
        .header("cookie", format!("tether_login={login_cookie}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_and_api_answers_carry_security_headers() {
    let server = Server::demo();
    let client = server.client();
    let session = server.sign_in_demo().await;
    let token = server.token("admin");
    let mut responses = vec![
        (
            "/login",
            client.get(server.url("/login")).send().await.unwrap(),
        ),
        (
            "/api/v1/users",
            client
                .get(server.url("/api/v1/users"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        ),
        (
            "/api/v1/users (401)",
            client
                .get(server.url("/api/v1/users"))
                .send()
                .await
                .unwrap(),
        ),
    ];
    for path in [
        "/",
        "/users",
        "/settings/security",
        "/sources",
        "/audit",
        "/tokens",
    ] {
        let response = client
            .get(server.url(path))
            .header("cookie", &session.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        responses.push((path, response));
    }
    for (path, response) in &responses {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_owned()
        };
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP {csp} lacks {directive}"
            );
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let server = Server::demo();
    let token = server.token("admin");
    // Announced sizes over the limit are refused before the body is read. (Sending the
    // body too would race: the server answers 413 and closes while the client still writes.)
    for path in [
        "/login",
        "/api/v1/settings",
        "/settings/security",
        "/api/v1/sources",
    ] {
        for length in [1024 * 1024 + 1, 2 * 1024 * 1024] {
            assert_eq!(
                status_of_announced_body(&server, path, length),
                413,
                "POST {path} with {length} bytes"
            );
        }
    }
    // Just under the limit is read (and refused for its unknown field, not its size).
    let small = format!("{{\"pad\": \"{}\"}}", "x".repeat(1000 * 1000));
    let response = server
        .client()
        .put(server.url("/api/v1/settings"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let value: Value = response.json().await.unwrap();
    assert_eq!(value["field"], "pad");
}

/// Sends `POST path` announcing `length` bytes of body, sends none, and returns the status.
fn status_of_announced_body(server: &Server, path: &str, length: usize) -> u16 {
    use std::io::{Read, Write};
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    let line = String::from_utf8_lossy(&head).to_string();
    line[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("status line {line:?}"))
}

#[tokio::test]
async fn the_sixth_wrong_password_is_refused_with_429() {
    let server = Server::demo();
    for attempt in 1..=5 {
        let response = sign_in_response(&server, "admin", "not-the-password").await;
        assert!(
            response.status().is_redirection(),
            "attempt {attempt}: {}",
            response.status()
        );
        assert!(set_cookie_header(&response, "tether_session").is_none());
    }
    let response = sign_in_response(&server, "admin", "not-the-password").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // Even the right password waits now.
    let response =
        sign_in_response(&server, "admin", server.demo_password.as_deref().unwrap()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie_header(&response, "tether_session").is_none());
}

#[tokio::test]
async fn no_response_carries_a_secret() {
    let server = Server::demo();
    let client = server.client();
    let token = server.token("admin");
    let scim = server.token("scim");
    let session = server.sign_in_demo().await;
    let secret = "jira-api-token-5f4e3d2c1b";
    let response = client
        .post(server.url("/api/v1/sources"))
        .bearer_auth(&token)
        .json(&json!({"name": "jira", "kind": "jira_cloud", "settings": {"base_url": "https://acme.atlassian.net", "user": "bot@acme.example"}, "secret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let hash = |t: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(t.as_bytes()))
    };
    let forbidden = [
        secret.to_owned(),
        token.clone(),
        scim.clone(),
        hash(&token),
        hash(&scim),
        token["tether_".len()..].to_owned(),
    ];
    let api = [
        "/api/v1/sources",
        "/api/v1/sources/jira",
        "/api/v1/tokens",
        "/api/v1/events?limit=500",
        "/api/v1/audit?limit=500",
        "/api/v1/dashboard",
        "/api/v1/openapi.json",
    ];
    for path in api {
        let response = client
            .get(server.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let text = response.text().await.unwrap();
        for needle in &forbidden {
            assert!(!text.contains(needle.as_str()), "{path} shows a secret");
        }
    }
    for path in ["/sources", "/sources/jira", "/tokens", "/audit", "/"] {
        let response = client
            .get(server.url(path))
            .header("cookie", &session.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let text = response.text().await.unwrap();
        for needle in &forbidden {
            assert!(!text.contains(needle.as_str()), "{path} shows a secret");
        }
    }
}
