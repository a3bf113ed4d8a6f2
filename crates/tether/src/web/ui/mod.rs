//! The admin UI: server-rendered pages (maud) that follow the admin's path of DESIGN §1.
//! Every form carries the session's CSRF token; every page is behind an admin session.

pub mod layout;
mod pages;

use super::auth::{self, AdminPage};
use super::AppState;
use crate::clock;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use layout::{bare, notice};
use maud::html;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/htmx.min.js", get(htmx))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .merge(pages::routes())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../static/app.css"),
    )
}
async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../static/app.js"),
    )
}
async fn htmx() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../static/htmx.min.js"),
    )
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
}

/// Only local paths are followed after sign-in (no open redirects).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// The sign-in page. The form's CSRF protection is a double-submit cookie: the page sets a
/// random `tether_login` cookie and puts the same value in the form.
async fn login_form(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let token = match auth::random_hex() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let next = safe_next(query.next.as_deref());
    let body = html! {
        @if let Some(error) = &query.error { (notice("error", error)) }
        form.stack method="post" action="/login" {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="next" value=(next);
            label for="username" { "Administrator" }
            input #username type="text" name="username" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            p { button type="submit" { "Sign in" } }
        }
        @if let Some(hint) = &state.demo_hint {
            p.muted { "Demo: sign in with " (hint) "." }
        }
        p.muted { "Users of the application sign in with " a href="/auth/login" { "single sign-on" } "." }
    };
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    (
        [(
            header::SET_COOKIE,
            format!("tether_login={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=1800{secure}"),
        )],
        Html(bare("Sign in", body).into_string()),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    username: String,
    password: String,
    next: Option<String>,
}

fn back_to_login(message: &str, next: &str) -> Response {
    Redirect::to(&format!(
        "/login?error={}&next={}",
        auth::urlencode(message),
        auth::urlencode(next)
    ))
    .into_response()
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let cookie = auth::cookie_value(&headers, "tether_login").unwrap_or_default();
    if form.csrf.is_empty() || !auth::same_secret(&cookie, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            Html(bare("Sign in", notice("error", "The form expired or was not sent from this site: reload the sign-in page and try again.")).into_string()),
        )
            .into_response();
    }
    let now = clock::now().unix_timestamp();
    let client = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("direct")
        .to_owned();
    let keys = vec![
        format!("user:{}", form.username.to_lowercase()),
        format!("client:{client}"),
    ];
    if !state.login_limiter.allowed(&keys, now) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, auth::WINDOW_SECONDS.to_string())],
            Html(
                bare(
                    "Sign in",
                    notice(
                        "error",
                        "Too many failed sign-ins: wait a few minutes and try again.",
                    ),
                )
                .into_string(),
            ),
        )
            .into_response();
    }
    match state.app.verify_admin(&form.username, &form.password).await {
        Ok(true) => {
            state.login_limiter.succeeded(&keys);
            match auth::start_session(&state, &format!("admin:{}", form.username), true, None).await
            {
                Ok(cookie) => {
                    let _ = tether_store::admin::AdminStore::insert_event(
                        &state.app.store,
                        &tether_store::admin::NewEvent {
                            at: clock::now(),
                            actor: &format!("admin:{}", form.username),
                            kind: "admin_signed_in",
                            subject: &form.username,
                            detail: "",
                        },
                    )
                    .await;
                    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
                }
                Err(e) => e.into_response(),
            }
        }
        Ok(false) => {
            state.login_limiter.failed(&keys, now);
            back_to_login("Wrong administrator name or password.", &next)
        }
        Err(e) => super::error::ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    AdminPageOrUser(session): AdminPageOrUser,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(e) = auth::check_csrf(&session, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            Html(bare("Sign out", notice("error", &e.message)).into_string()),
        )
            .into_response();
    }
    let cookie = auth::end_session(&state, &headers).await;
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

/// Any signed-in session (sign-out works for users too).
struct AdminPageOrUser(tether_store::admin::Session);

impl axum::extract::FromRequestParts<AppState> for AdminPageOrUser {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        auth::SignedIn::from_request_parts(parts, state)
            .await
            .map(|s| AdminPageOrUser(s.0))
    }
}

#[allow(dead_code)]
fn _uses(_: AdminPage) {}
