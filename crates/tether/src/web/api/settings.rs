//! `/api/v1/settings`: Settings › Security.

use super::ApiJson;
use crate::clock;
use crate::web::auth::AdminCaller;
use crate::web::error::{ApiError, ApiResult};
use crate::web::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tether_store::admin::Settings;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/settings", get(show_settings).put(update_settings))
}

/// Settings › Security.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecuritySettings {
    /// Auto-populate account ID: link users at sign-in by verified e-mail.
    pub auto_populate: bool,
    /// Sign-in linking requires `email_verified = true`.
    pub require_verified_email: bool,
    /// Runs may link inactive accounts.
    pub link_inactive: bool,
    /// A job that would change more than this share of users (1 to 100) waits for approval.
    pub mass_change_threshold_percent: u32,
}

impl From<Settings> for SecuritySettings {
    fn from(s: Settings) -> Self {
        SecuritySettings {
            auto_populate: s.auto_populate,
            require_verified_email: s.require_verified_email,
            link_inactive: s.link_inactive,
            mass_change_threshold_percent: s.mass_change_threshold_percent,
        }
    }
}

/// Changes to Settings › Security: fields left out keep their value; unknown fields are
/// refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    pub auto_populate: Option<bool>,
    pub require_verified_email: Option<bool>,
    pub link_inactive: Option<bool>,
    pub mass_change_threshold_percent: Option<u32>,
}

/// Settings › Security.
#[utoipa::path(
    get, path = "/api/v1/settings", tag = "settings",
    responses((status = 200, body = SecuritySettings), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn show_settings(
    State(state): State<AppState>,
    _caller: AdminCaller,
) -> ApiResult<Json<SecuritySettings>> {
    Ok(Json(state.app.settings().await?.into()))
}

/// Changes Settings › Security (recorded in the event log).
#[utoipa::path(
    put, path = "/api/v1/settings", tag = "settings",
    request_body = SettingsUpdate,
    responses(
        (status = 200, body = SecuritySettings),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn update_settings(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiJson(update): ApiJson<SettingsUpdate>,
) -> ApiResult<Json<SecuritySettings>> {
    let mut settings = state.app.settings().await?;
    if let Some(v) = update.auto_populate {
        settings.auto_populate = v;
    }
    if let Some(v) = update.require_verified_email {
        settings.require_verified_email = v;
    }
    if let Some(v) = update.link_inactive {
        settings.link_inactive = v;
    }
    if let Some(v) = update.mass_change_threshold_percent {
        if !(1..=100).contains(&v) {
            return Err(ApiError::invalid(
                "mass_change_threshold_percent",
                "mass_change_threshold_percent must be between 1 and 100",
            ));
        }
        settings.mass_change_threshold_percent = v;
    }
    let saved = state
        .app
        .update_settings(&settings, &caller.actor(), clock::now())
        .await?;
    Ok(Json(saved.into()))
}
