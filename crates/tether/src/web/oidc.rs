//! OpenID Connect sign-in routes and the sign-in decision API (DESIGN §4.4, §5):
//!
//! - `GET /auth/login[?next=/path]` — starts the authorization code flow (PKCE S256, state,
//!   nonce); the browser keeps only a random handle in a short-lived cookie.
//! - `GET /auth/callback` — checks state, exchanges the code, validates the ID token, resolves
//!   the sign-in; admins land on the admin UI, other users on `/me`; a refusal gets a page
//!   saying what happened and what the administrator can do.
//! - `POST /auth/logout` — ends the session.
//! - `GET /me` — "My account": the signed-in profile's link status and recent sign-ins.
//! - `POST /api/v1/sign-in/resolve` — the same decision for applications with their own SSO.
//!
//! The provider is configured on Settings › Security, by environment or a JSON file
//! (`crate::oidc::config`, `crate::app::oidc`); it is discovered on first use and again when
//! the configuration changes. Handlers parse, call one application function, render.

use super::auth::{self, AdminCaller, SignedIn};
use super::error::ApiError;
use super::ui::layout::{bare, notice, situation_badge, when};
use super::AppState;
use crate::app::signin::{
    local_path, OidcCallback, OidcOutcome, SignInRequest, OIDC_LOGIN_MINUTES,
};
use crate::clock;
use crate::oidc::config::{ConfigError, FixedLayers};
use crate::oidc::{OidcConfig, Provider};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tether_core::signin::SignInClaims;
use time::OffsetDateTime;

/// The cookie holding the handle of a sign-in in flight.
const FLOW_COOKIE: &str = "tether_oidc";

/// The relying party of this process: the settings it was started with (environment and
/// file, read once), and the provider discovered for the configuration in effect. The
/// configuration is resolved again at every sign-in (one read of the saved Settings ›
/// Security document), so a save on any replica takes effect on all of them; the provider is
/// discovered again only when the configuration changed.
#[derive(Default)]
pub struct OidcRuntime {
    fixed: OnceLock<Result<FixedLayers, ConfigError>>,
    provider: RwLock<Option<Arc<Provider>>>,
    /// The last failed discovery: for [`DISCOVERY_RETRY_SECONDS`], the same configuration
    /// gets the same answer without asking the provider again.
    failure: Mutex<Option<(OidcConfig, OffsetDateTime, String)>>,
}

/// How long a failed discovery is remembered.
const DISCOVERY_RETRY_SECONDS: i64 = 10;

/// Whether sign-in through the identity platform works, for Settings › Security.
pub enum OidcStatus {
    Off,
    On { issuer: String, keys: usize },
    Broken(String),
}

impl OidcRuntime {
    /// The environment and the `TETHER_OIDC_CONFIG` file, read on first use.
    pub fn fixed(&self) -> Result<&FixedLayers, &ConfigError> {
        self.fixed
            .get_or_init(|| {
                let fixed = FixedLayers::load(|name| std::env::var(name).ok());
                if let Err(e) = &fixed {
                    tracing::error!(error = %e, "OpenID Connect settings from the environment are unusable");
                }
                fixed
            })
            .as_ref()
    }

    /// This server's callback URL, the redirect URL's default.
    pub fn default_redirect(state: &AppState) -> String {
        format!("{}/auth/callback", state.public_url.trim_end_matches('/'))
    }

    /// The configuration in effect; `Err` says why sign-in is unavailable.
    async fn config(&self, state: &AppState) -> Result<Option<OidcConfig>, String> {
        let fixed = self.fixed().map_err(|e| e.to_string())?;
        state
            .app
            .oidc_config(fixed, &Self::default_redirect(state))
            .await
            .map_err(|e| e.to_string())
    }

    /// The provider for `config`: the cached one if its configuration is the same, else a
    /// fresh discovery (kept when it works).
    async fn provider_for(&self, config: OidcConfig) -> Result<Arc<Provider>, String> {
        if let Some(provider) = self.provider.read().ok().and_then(|p| p.clone()) {
            if *provider.config() == config {
                return Ok(provider);
            }
        }
        if let Ok(failure) = self.failure.lock() {
            if let Some((failed, at, message)) = failure.as_ref() {
                let recent = clock::now() - *at < time::Duration::seconds(DISCOVERY_RETRY_SECONDS);
                if *failed == config && recent {
                    return Err(message.clone());
                }
            }
        }
        let issuer = config.issuer.clone();
        let remembered = config.clone();
        let discovered = match crate::oidc::provider::http_client() {
            Ok(http) => Provider::discover(config, http).await,
            Err(e) => Err(e),
        };
        match discovered {
            Ok(provider) => {
                let provider = Arc::new(provider);
                if let Ok(mut slot) = self.provider.write() {
                    *slot = Some(provider.clone());
                }
                tracing::info!(issuer = %issuer, "OpenID Connect provider discovered");
                Ok(provider)
            }
            Err(e) => {
                tracing::error!(issuer = %issuer, error = %e, "OpenID Connect discovery failed");
                if let Ok(mut failure) = self.failure.lock() {
                    *failure = Some((remembered, clock::now(), e.to_string()));
                }
                Err(e.to_string())
            }
        }
    }

    /// The discovered provider; `Err` is a page saying why sign-in is unavailable.
    async fn provider(&self, state: &AppState) -> Result<Arc<Provider>, Response> {
        let config = match self.config(state).await {
            Ok(Some(config)) => config,
            Ok(None) => {
                return Err(failure_page(
                    StatusCode::NOT_FOUND,
                    "Sign-in through the identity platform is not configured on this server.",
                    "An administrator sets the identity platform's issuer, client ID and client secret on Settings › Security (or through TETHER_OIDC_* variables, see the README).",
                ))
            }
            Err(message) => {
                // The details are for administrators (the log, Settings › Security).
                tracing::error!(error = %message, "OpenID Connect sign-in is unavailable: its settings are unusable");
                return Err(failure_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is unavailable: its settings on this server are incomplete or invalid.",
                    "An administrator corrects them on Settings › Security, whose Single sign-on section names the problem.",
                ));
            }
        };
        self.provider_for(config).await.map_err(|_| {
            failure_page(
                StatusCode::BAD_GATEWAY,
                "Sign-in is unavailable: the identity provider could not be reached.",
                "Try again in a minute; if it persists, an administrator checks the issuer on Settings › Security (it shows what the provider answered) and the provider.",
            )
        })
    }

    /// Whether sign-in works now: the configuration, and a discovery of its provider.
    pub async fn status(&self, state: &AppState) -> OidcStatus {
        match self.config(state).await {
            Ok(None) => OidcStatus::Off,
            Err(message) => OidcStatus::Broken(message),
            Ok(Some(config)) => {
                let issuer = config.issuer.clone();
                match self.provider_for(config).await {
                    Ok(provider) => OidcStatus::On {
                        issuer,
                        keys: provider.key_count(),
                    },
                    Err(e) => OidcStatus::Broken(format!("the provider at {issuer}: {e}")),
                }
            }
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/me", get(my_account))
        .route("/api/v1/sign-in/resolve", post(resolve))
}

fn flow_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!("{FLOW_COOKIE}={value}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

fn failure_page(status: StatusCode, what: &str, fix: &str) -> Response {
    let body = html! {
        (notice("error", what))
        h2 { "What to do" }
        p { (fix) }
        p { a href="/auth/login" { "Sign in again" } }
    };
    (status, Html(bare("Sign-in failed", body).into_string())).into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// `GET /auth/login`: sends the browser to the provider.
async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let provider = match state.oidc.provider(&state).await {
        Ok(provider) => provider,
        Err(page) => return page,
    };
    let handle = match auth::random_hex() {
        Ok(handle) => handle,
        Err(e) => return e.into_response(),
    };
    match state
        .app
        .start_oidc_sign_in(
            &provider,
            &handle,
            local_path(query.next.as_deref()).as_deref(),
            clock::now(),
        )
        .await
    {
        Ok(url) => (
            [(
                header::SET_COOKIE,
                flow_cookie(&state, &handle, OIDC_LOGIN_MINUTES * 60),
            )],
            Redirect::to(&url),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// `GET /auth/callback`: finishes the sign-in.
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let clear = (header::SET_COOKIE, flow_cookie(&state, "", 0));
    let provider = match state.oidc.provider(&state).await {
        Ok(provider) => provider,
        Err(page) => return page,
    };
    let callback = OidcCallback {
        handle: auth::cookie_value(&headers, FLOW_COOKIE),
        code: query.code,
        state: query.state,
        error: query.error,
        error_description: query.error_description,
        iss: query.iss,
    };
    let outcome = match state
        .app
        .finish_oidc_sign_in(&provider, &callback, clock::now())
        .await
    {
        Ok(outcome) => outcome,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match outcome {
        OidcOutcome::Admitted {
            principal,
            is_admin,
            user_pk,
            resolution,
            return_to,
        } => {
            tracing::info!(
                principal = %principal,
                is_admin,
                situation = resolution.situation.as_str(),
                linked_now = resolution.linked_now,
                "signed in through OpenID Connect"
            );
            let session = match auth::start_session(&state, &principal, is_admin, user_pk).await {
                Ok(cookie) => cookie,
                Err(e) => return e.into_response(),
            };
            let target = match (is_admin, return_to) {
                (true, Some(path)) => path,
                (true, None) => "/".to_owned(),
                (false, _) => "/me".to_owned(),
            };
            let mut response = Redirect::to(&target).into_response();
            let response_headers = response.headers_mut();
            for cookie in [session, flow_cookie(&state, "", 0)] {
                if let Ok(value) = header::HeaderValue::from_str(&cookie) {
                    response_headers.append(header::SET_COOKIE, value);
                }
            }
            response
        }
        OidcOutcome::Refused(resolution) => {
            let body = html! {
                (notice("error", "Your sign-in was refused, and nothing was changed on your profile."))
                h2 { "What happened" }
                p { (resolution.explanation) }
                h2 { "What an administrator can do" }
                p { (resolution.fix) }
                p.muted {
                    "Reference for the administrator: sign-in event " (resolution.event) ", "
                    (situation_badge(resolution.situation.as_str()))
                }
            };
            (
                StatusCode::FORBIDDEN,
                [clear],
                Html(bare("Sign-in refused", body).into_string()),
            )
                .into_response()
        }
        OidcOutcome::Failed { what, fix } => {
            tracing::warn!(reason = %what, "OpenID Connect sign-in failed");
            let mut response = failure_page(StatusCode::BAD_REQUEST, &what, &fix);
            if let Ok(value) = header::HeaderValue::from_str(&clear.1) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /auth/logout`: ends the session.
async fn logout(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = auth::check_csrf(&session, &form.csrf) {
        return failure_page(
            StatusCode::FORBIDDEN,
            &e.message,
            "Reload the page and sign out again.",
        );
    }
    let cookie = auth::end_session(&state, &headers).await;
    let body = html! {
        (notice("ok", "You are signed out of tether."))
        p { a href="/auth/login" { "Sign in again" } }
    };
    (
        [(header::SET_COOKIE, cookie)],
        Html(bare("Signed out", body).into_string()),
    )
        .into_response()
}

/// `GET /me`: the signed-in person's profile and link status.
async fn my_account(State(state): State<AppState>, SignedIn(session): SignedIn) -> Response {
    let signout = html! {
        form method="post" action="/auth/logout" {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { "Sign out" }
        }
    };
    let Some(user_pk) = session.user_pk else {
        let body = html! {
            p { "You are signed in as " (session.principal) ", without a profile in the application." }
            @if session.is_admin { p { a href="/" { "Go to the administration" } } }
            (signout)
        };
        return Html(bare("My account", body).into_string()).into_response();
    };
    let account = match state.app.my_account(user_pk).await {
        Ok(account) => account,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let body: Markup = html! {
        dl {
            dt { "Profile" } dd { (account.user_id) " (" (account.username) ")" }
            dt { "Name" } dd { (account.display_name) }
            dt { "E-mail" } dd { (account.email.as_deref().unwrap_or("(none)")) }
            dt { "External ID" }
            dd {
                @match &account.external_id {
                    Some(id) => {
                        code { (id) }
                        @if let Some(origin) = account.external_id_origin { " — set by " (origin.as_str()) }
                        @if let Some(at) = account.external_id_set_at { " on " (at.date().to_string()) }
                    }
                    None => { "not linked yet" }
                }
            }
        }
        @if account.external_id.is_some() {
            (notice("ok", "Your profile is linked to your account on the identity platform."))
        } @else {
            (notice("warn", "Your profile is not linked yet; an administrator can see why in tether."))
        }
        h2 { "Recent sign-ins" }
        table {
            thead { tr { th { "When" } th { "Outcome" } th { "Explanation" } } }
            tbody {
                @for event in &account.sign_ins {
                    tr {
                        td { (when(&event.at)) }
                        td { (situation_badge(event.situation.as_str())) @if event.linked_now { " (linked now)" } }
                        td { (event.explanation) }
                    }
                }
            }
        }
        @if session.is_admin { p { a href="/" { "Go to the administration" } } }
        (signout)
    };
    Html(bare("My account", body).into_string()).into_response()
}

/// The sign-in decision API, for the OpenAPI document (`web/api/openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(resolve),
    components(schemas(ResolveBody)),
    tags((name = "sign-in", description = "The sign-in decision for applications that run their own SSO"))
)]
pub struct SignInApi;

/// The decision API's request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    issuer: String,
    subject: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

/// `POST /api/v1/sign-in/resolve`: `{issuer, subject, email, email_verified}` →
/// `{user_id, linked_now, signed_in, situation, explanation, fix}` under the same rules as
/// the OpenID Connect sign-in. A refusal is a decision (200), not an error.
#[utoipa::path(
    post, path = "/api/v1/sign-in/resolve", tag = "sign-in",
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The decision: `user_id`, `signed_in`, `linked_now`, `situation`, `explanation`, `fix`, `event`; a refusal has `signed_in: false`", body = serde_json::Value),
        (status = 400, body = crate::web::error::ApiError),
        (status = 401, body = crate::web::error::ApiError),
        (status = 403, body = crate::web::error::ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn resolve(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    body: Bytes,
) -> Response {
    let body: ResolveBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return ApiError::invalid(
                "body",
                format!("expected {{issuer, subject, email, email_verified}}: {e}"),
            )
            .into_response()
        }
    };
    let request = SignInRequest {
        issuer: body.issuer,
        claims: SignInClaims {
            account_id: body.subject,
            email: body.email,
            email_verified: body.email_verified,
        },
    };
    let actor = format!("api:{}", caller.actor());
    let watch = clock::Stopwatch::start();
    match state
        .app
        .resolve_sign_in(&request, &actor, clock::now())
        .await
    {
        Ok(resolution) => {
            // The decision and its write alone (bench/signin.py reads this).
            tracing::info!(
                situation = resolution.situation.as_str(),
                linked_now = resolution.linked_now,
                decision_us = watch.elapsed_micros(),
                "sign-in resolved"
            );
            Json(resolution).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
