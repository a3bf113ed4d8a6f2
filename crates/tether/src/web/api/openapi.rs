//! The OpenAPI 3 document of /api/v1, generated from the handlers' `#[utoipa::path]`
//! attributes and the DTOs' `ToSchema` derives. Served without credentials at
//! `GET /api/v1/openapi.json`.
//!
//! **Adding endpoints elsewhere** (jobs, sign-in, …): put `#[utoipa::path(...)]` on each
//! handler, gather them in a `#[derive(utoipa::OpenApi)] #[openapi(paths(...))] pub struct
//! XxxApi;` in your module, and add `XxxApi::openapi` to [`PARTS`] below. A test
//! (tests/api_openapi.rs) fails for every `/api/v1` route of `src/web` missing here.

use super::{audit, settings, sources, tokens, users};
use crate::web::error::ApiError;
use crate::web::AppState;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// The API's own handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tether admin API",
        description = "Everything the admin UI does, as JSON. Authenticate with \
            `Authorization: Bearer TOKEN` (a token of scope `admin`; `tether token create \
            --scope admin`), or with an administrator's session cookie plus the session's \
            `X-CSRF-Token` header on writes. Errors are `{code, message, field?}` with a \
            stable `code`: `unauthorized`, `forbidden`, `not_found`, `invalid_input`, \
            `conflict`, `unsupported_media_type`, `payload_too_large`, `internal`. Lists \
            are pages: pass a page's `next` as `after` (users) or `before` (audit, events)."
    ),
    paths(
        users::list_users,
        users::show_user,
        users::diagnose_user,
        users::set_external_id,
        users::clear_external_id,
        users::exclude_user,
        users::include_user,
        sources::list_sources,
        sources::create_source,
        sources::show_source,
        sources::update_source,
        sources::plan_source,
        sources::apply_source,
        sources::list_source_runs,
        settings::show_settings,
        settings::update_settings,
        settings::show_oidc_settings,
        settings::update_oidc_settings,
        audit::list_audit,
        audit::list_events,
        audit::dashboard,
        tokens::list_tokens,
        tokens::create_token,
        tokens::revoke_token,
        openapi_json,
    ),
    components(schemas(ApiError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "users", description = "Users, their situation, hand edits, exclusion"),
        (name = "sources", description = "Sources of accounts, plans and runs"),
        (name = "settings", description = "Settings › Security"),
        (name = "audit", description = "Audit log and event log"),
        (name = "dashboard", description = "Counts per situation and history"),
        (name = "tokens", description = "API bearer tokens"),
        (name = "openapi", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The documents of other modules' `/api/v1` handlers, merged into the served one.
/// Add `path::to::XxxApi::openapi,` here (one line per module).
pub const PARTS: &[fn() -> utoipa::openapi::OpenApi] = &[
    crate::web::jobs::JobsApi::openapi,
    crate::web::oidc::SignInApi::openapi,
];

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token of scope `admin`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "tether_session",
                "An administrator's session (`__Host-tether_session` over https); writes \
                 also need the session's `X-CSRF-Token` header",
            ))),
        );
    }
}

/// The whole document: [`ApiDoc`] and every part of [`PARTS`].
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in PARTS {
        doc.merge(part());
    }
    doc
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "openapi",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    match document().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the OpenAPI document");
            ApiError::internal().into_response()
        }
    }
}
