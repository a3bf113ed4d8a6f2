//! The web layer: `tether serve`. Routes, middleware (request ids, structured request logs,
//! metrics, security headers, body limits) and the shared [`AppState`].
//!
//! The only module that knows HTTP status codes. Handlers parse input, call one application
//! function (`crate::app`), and render JSON (`api`), HTML (`ui`) or SCIM (`scim`).

pub mod api;
pub mod auth;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod oidc;
pub mod scim;
pub mod ui;

use crate::app::App;
use crate::clock;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tower_http::limit::RequestBodyLimitLayer;

/// Request bodies larger than this are refused with 413 (SCIM and API payloads are small;
/// uploads of account files have their own, larger limit on their route).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub app: App,
    /// Send cookies with `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Where browsers reach this server, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    pub metrics: metrics::Metrics,
    pub login_limiter: auth::LoginLimiter,
    /// Set when the server runs with `--demo` (the sign-in page says how to sign in).
    pub demo_hint: Option<String>,
    /// The OpenID Connect relying party (its fixed settings and discovered provider).
    pub oidc: oidc::OidcRuntime,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(app: App, public_url: String, demo_hint: Option<String>) -> Self {
        AppState(Arc::new(Inner {
            app,
            secure_cookies: public_url.starts_with("https://"),
            public_url,
            metrics: metrics::Metrics::default(),
            login_limiter: auth::LoginLimiter::new(),
            demo_hint,
            oidc: oidc::OidcRuntime::default(),
        }))
    }
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .merge(ui::routes())
        .merge(api::routes())
        .merge(jobs::routes())
        .merge(oidc::routes())
        .merge(scim::routes())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(security_headers))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state)
}

/// `GET /healthz`: 200 when the store answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    use tether_store::Store;
    match state.app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&[]),
    )
        .into_response()
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// A request id: the caller's `X-Request-Id` when sane, else a new one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{:x}",
                std::process::id(),
                REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)
            )
        })
}

/// Logs one structured line per request (with its id), records metrics, and echoes the id.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let watch = clock::Stopwatch::start();
    let id = request_id(&request);
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = {
        let _enter = span.enter();
        drop(_enter);
        tracing::Instrument::instrument(next.run(request), span.clone()).await
    };
    let elapsed_ms = watch.elapsed_micros() as f64 / 1000.0;
    let status = response.status().as_u16();
    state.metrics.record(&method, &route, status, elapsed_ms);
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %path,
            route = %route,
            status,
            elapsed_ms,
            "request"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

/// Security headers on every response: a strict content security policy (no inline
/// scripts), no MIME sniffing, no framing, no referrer leaks.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Options of `tether serve`.
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Where browsers reach the server; defaults to `http://LISTEN`.
    pub public_url: Option<String>,
    pub demo_hint: Option<String>,
}

/// Runs the server until SIGINT or SIGTERM, then finishes the requests in flight.
pub async fn serve(app: App, options: ServeOptions) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
    let bound = listener.local_addr()?;
    let public_url = options
        .public_url
        .unwrap_or_else(|| format!("http://{bound}"));
    // Tests and scripts read this line to find the port.
    eprintln!("tether: listening on http://{bound}");
    if let Some(hint) = &options.demo_hint {
        eprintln!("tether: open {public_url}/ and sign in with {hint}");
    } else {
        use tether_store::admin::AdminStore;
        if app.store.count_admins().await.unwrap_or(0) == 0 {
            eprintln!(
                "tether: no administrator yet: create one with `tether admin create --username NAME`, then sign in at {public_url}/login"
            );
        }
    }
    let state = AppState::new(app, public_url, options.demo_hint);
    jobs::start_background(&state);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    eprintln!("tether: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
