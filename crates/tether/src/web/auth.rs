//! Who is calling: bearer tokens (scopes `admin`, `scim`) and browser sessions, with CSRF
//! tokens for every form and every cookie-authenticated API write.
//!
//! Cookies are `HttpOnly`, `SameSite=Lax`, and `Secure` (with the `__Host-` prefix) when the
//! public URL is https. Only hashes of session ids and tokens are stored.

use super::error::ApiError;
use super::AppState;
use crate::app::token_hash;
use crate::clock;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::sync::Mutex;
use tether_store::admin::{AdminStore, NewSession, Session, TokenRecord};

/// How long a browser session lives.
pub const SESSION_HOURS: i64 = 12;

/// A random 256-bit value, hex.
pub fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        ApiError::internal()
    })?;
    Ok(hex::encode(bytes))
}

/// The session cookie's name (`__Host-` only over TLS, where browsers enforce it).
pub fn cookie_name(state: &AppState) -> &'static str {
    if state.secure_cookies {
        "__Host-tether_session"
    } else {
        "tether_session"
    }
}

/// Starts a session for `principal` (`admin:NAME` or `user:ID`) and returns the
/// `Set-Cookie` header value to send.
pub async fn start_session(
    state: &AppState,
    principal: &str,
    is_admin: bool,
    user_pk: Option<i64>,
) -> Result<String, ApiError> {
    let id = random_hex()?;
    let csrf = random_hex()?;
    let now = clock::now();
    state
        .app
        .store
        .insert_session(&NewSession {
            id_hash: token_hash(&id),
            principal: principal.to_owned(),
            is_admin,
            user_pk,
            csrf,
            created_at: now,
            expires_at: now + time::Duration::hours(SESSION_HOURS),
        })
        .await?;
    Ok(session_cookie(state, &id, SESSION_HOURS * 3600))
}

/// Ends the caller's session (if any) and returns the `Set-Cookie` value that clears it.
pub async fn end_session(state: &AppState, parts_headers: &axum::http::HeaderMap) -> String {
    if let Some(id) = cookie_value(parts_headers, cookie_name(state)) {
        if let Err(e) = state
            .app
            .store
            .delete_session(&token_hash(&id), clock::now())
            .await
        {
            tracing::warn!(error = %e, "could not delete a session");
        }
    }
    session_cookie(state, "", 0)
}

fn session_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(state)
    )
}

/// A cookie's value from the request headers.
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The session of the request's cookie, if it is valid.
pub async fn current_session(state: &AppState, parts: &Parts) -> Result<Option<Session>, ApiError> {
    let Some(id) = cookie_value(&parts.headers, cookie_name(state)) else {
        return Ok(None);
    };
    if id.len() != 64 {
        return Ok(None);
    }
    Ok(state
        .app
        .store
        .find_session(&token_hash(&id), clock::now())
        .await?)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn token(state: &AppState, token: &str) -> Result<Option<TokenRecord>, ApiError> {
    Ok(state
        .app
        .store
        .find_token(&token_hash(token), clock::now())
        .await?)
}

/// Compares in constant time (CSRF tokens).
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuses a form whose CSRF token is not the session's.
pub fn check_csrf(session: &Session, token: &str) -> Result<(), ApiError> {
    if same_secret(&session.csrf, token) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the form's CSRF token is missing or stale: reload the page and try again",
        ))
    }
}

/// Who called the API.
#[derive(Clone, Debug)]
pub enum Caller {
    Token {
        name: String,
        #[allow(dead_code)] // kept for logs and future per-scope rules
        scope: String,
    },
    Session(Session),
}

impl Caller {
    /// The actor written to the audit trail.
    pub fn actor(&self) -> String {
        match self {
            Caller::Token { name, .. } => format!("token:{name}"),
            Caller::Session(session) => session.principal.clone(),
        }
    }
}

/// An API caller with administrator rights: a bearer token of scope `admin`, or an admin's
/// browser session (whose writes must carry the `X-CSRF-Token` header).
#[derive(Clone, Debug)]
pub struct AdminCaller(pub Caller);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = bearer(parts) {
            return match token(state, value).await? {
                Some(t) if t.scope == "admin" => Ok(AdminCaller(Caller::Token {
                    name: t.name,
                    scope: t.scope,
                })),
                Some(t) => Err(ApiError::forbidden(format!(
                    "this token has scope '{}'; this endpoint needs scope 'admin'",
                    t.scope
                ))),
                None => Err(ApiError::unauthorized(
                    "the bearer token is unknown or revoked",
                )),
            };
        }
        match current_session(state, parts).await? {
            Some(session) if session.is_admin => {
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                if !safe {
                    let sent = parts
                        .headers
                        .get("x-csrf-token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    check_csrf(&session, sent)?;
                }
                Ok(AdminCaller(Caller::Session(session)))
            }
            Some(_) => Err(ApiError::forbidden(
                "this session is not an administrator's",
            )),
            None => Err(ApiError::unauthorized(
                "sign in, or send 'Authorization: Bearer TOKEN' with a token of scope 'admin'",
            )),
        }
    }
}

/// A SCIM client: a bearer token of scope `scim`. The rejection is the bare status and
/// message; the SCIM layer renders it as an RFC 7644 §3.12 error.
#[derive(Clone, Debug)]
pub struct ScimCaller {
    pub token_name: String,
}

/// Why a SCIM caller was refused.
#[derive(Clone, Debug)]
pub struct ScimAuthError {
    pub status: axum::http::StatusCode,
    pub detail: String,
}

impl IntoResponse for ScimAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/scim+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl FromRequestParts<AppState> for ScimCaller {
    type Rejection = ScimAuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, ScimAuthError> {
        let unauthorized = |detail: &str| ScimAuthError {
            status: axum::http::StatusCode::UNAUTHORIZED,
            detail: detail.to_owned(),
        };
        let Some(value) = bearer(parts) else {
            return Err(unauthorized(
                "send 'Authorization: Bearer TOKEN' with a token of scope 'scim'",
            ));
        };
        match token(state, value).await {
            Ok(Some(t)) if t.scope == "scim" => Ok(ScimCaller { token_name: t.name }),
            Ok(Some(t)) => Err(ScimAuthError {
                status: axum::http::StatusCode::FORBIDDEN,
                detail: format!(
                    "this token has scope '{}'; SCIM needs scope 'scim'",
                    t.scope
                ),
            }),
            Ok(None) => Err(unauthorized("the bearer token is unknown or revoked")),
            Err(e) => Err(ScimAuthError {
                status: e.status,
                detail: e.message,
            }),
        }
    }
}

/// A page for administrators: the admin's session, or a redirect to the sign-in page.
#[derive(Clone, Debug)]
pub struct AdminPage(pub Session);

/// A page for anyone signed in (administrators and users who signed in with OpenID Connect).
#[derive(Clone, Debug)]
pub struct SignedIn(pub Session);

/// Sends the browser to sign in, then back here.
pub struct SignInFirst(String);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to(&format!("/login?next={}", urlencode(&self.0))).into_response()
    }
}

pub fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

fn here(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned())
}

impl FromRequestParts<AppState> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match current_session(state, parts).await {
            Ok(Some(session)) if session.is_admin => Ok(AdminPage(session)),
            Ok(Some(_)) => Err(Redirect::to("/me").into_response()),
            Ok(None) => Err(SignInFirst(here(parts)).into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match current_session(state, parts).await {
            Ok(Some(session)) => Ok(SignedIn(session)),
            Ok(None) => Err(SignInFirst(here(parts)).into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Password sign-in attempts: at most `MAX_FAILURES` failures per user name (and per client
/// address) in a window of `WINDOW_SECONDS`; then 429 until the window passes. Per process.
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<i64>>>,
}

pub const MAX_FAILURES: usize = 5;
pub const WINDOW_SECONDS: i64 = 300;

impl LoginLimiter {
    pub fn new() -> Self {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `keys` may try now (`now` in Unix seconds).
    pub fn allowed(&self, keys: &[String], now: i64) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return false;
        };
        keys.iter().all(|key| {
            let entry = map.entry(key.clone()).or_default();
            entry.retain(|t| now - t < WINDOW_SECONDS);
            entry.len() < MAX_FAILURES
        })
    }

    pub fn failed(&self, keys: &[String], now: i64) {
        if let Ok(mut map) = self.failures.lock() {
            if map.len() > 100_000 {
                map.clear();
            }
            for key in keys {
                map.entry(key.clone()).or_default().push(now);
            }
        }
    }

    pub fn succeeded(&self, keys: &[String]) {
        if let Ok(mut map) = self.failures.lock() {
            for key in keys {
                map.remove(key);
            }
        }
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}
