//! `/api/v1/tokens`: API bearer tokens. A token's value is shown once, when created; the
//! store keeps only its hash, and no response ever carries either again.

use super::{rfc3339, ApiJson};
use crate::clock;
use crate::web::auth::AdminCaller;
use crate::web::error::{ApiError, ApiResult};
use crate::web::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tether_store::admin::TokenRecord;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
}

/// A token as listed: never its value or hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    /// `admin` or `scim`.
    pub scope: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        TokenView {
            id: t.pk,
            name: t.name,
            scope: t.scope,
            created_at: rfc3339(t.created_at),
            revoked_at: t.revoked_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
        }
    }
}

/// What a token may do.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The REST API.
    Admin,
    /// SCIM provisioning (/scim/v2).
    Scim,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    pub name: String,
    pub scope: Scope,
}

/// A new token: `token` is shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: TokenView,
    /// Send as `Authorization: Bearer TOKEN`. Store it now: it cannot be shown again.
    pub token: String,
}

/// Lists the tokens (revoked ones too), never their values.
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    _caller: AdminCaller,
) -> ApiResult<Json<Vec<TokenView>>> {
    let tokens = state.app.list_tokens().await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Creates a token and returns its value, once.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    request_body = NewTokenBody,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_token(
    State(state): State<AppState>,
    _caller: AdminCaller,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid("name", "name must not be empty"));
    }
    let scope = match body.scope {
        Scope::Admin => "admin",
        Scope::Scim => "scim",
    };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        ApiError::internal()
    })?;
    let token = state
        .app
        .create_token(name, scope, secret, clock::now())
        .await?;
    // The record just written: the newest token of that name.
    let record = state
        .app
        .list_tokens()
        .await?
        .into_iter()
        .filter(|t| t.name == name && t.revoked_at.is_none())
        .max_by_key(|t| t.pk)
        .ok_or_else(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            record: record.into(),
            token,
        }),
    ))
}

/// Revokes a token; it stops working at once.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let pk: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid("id", format!("token id must be a number, not '{id}'")))?;
    state
        .app
        .revoke_token(pk, &caller.actor(), clock::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
