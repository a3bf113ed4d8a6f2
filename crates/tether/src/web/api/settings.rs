//! `/api/v1/settings`: Settings › Security; `/api/v1/settings/oidc`: its single sign-on
//! (OpenID Connect) part.

use super::ApiJson;
use crate::app::oidc::SecretChange;
use crate::clock;
use crate::oidc::config::{FieldOrigin, OidcFields};
use crate::web::auth::AdminCaller;
use crate::web::error::{ApiError, ApiResult};
use crate::web::oidc::OidcRuntime;
use crate::web::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tether_store::admin::Settings;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/settings", get(show_settings).put(update_settings))
        .route(
            "/api/v1/settings/oidc",
            get(show_oidc_settings).put(update_oidc_settings),
        )
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

/// The single sign-on settings of Settings › Security. The client secret is write-only.
#[derive(Debug, Serialize, ToSchema)]
pub struct OidcSettingsBody {
    /// Whether sign-in through OpenID Connect is configured (`off`, `on`) or unusable
    /// (`error`, see `error`). No discovery is made for this answer.
    pub status: &'static str,
    /// Why the configuration in effect is unusable, naming the field.
    pub error: Option<ApiError>,
    /// The values in effect (environment over file over this page), without the secret.
    pub effective: OidcValues,
    /// The values saved on the page.
    pub saved: OidcValues,
    /// Whether a client secret is set anywhere (its value is never shown).
    pub client_secret_set: bool,
    /// Where each field comes from: `environment`, `file`, `page` or `default`. The page (and
    /// this API) cannot change a field the environment or the file sets.
    #[schema(value_type = Object)]
    pub origins: std::collections::BTreeMap<&'static str, FieldOrigin>,
    /// The redirect URL used when none is set.
    pub default_redirect_url: String,
    /// The version of the saved settings: send it back in `PUT` as `version` so that the save
    /// is refused (409) if another administrator saved meanwhile.
    pub version: String,
}

/// OpenID Connect fields (lists as arrays).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcValues {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub redirect_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub account_id_claim: Option<String>,
    /// `NAME=VALUE`, e.g. `groups=tether-admins`.
    pub admin_claim: Option<String>,
    pub admin_subjects: Option<Vec<String>>,
    pub admin_emails: Option<Vec<String>>,
}

impl From<&OidcFields> for OidcValues {
    fn from(f: &OidcFields) -> Self {
        OidcValues {
            issuer: f.issuer.clone(),
            client_id: f.client_id.clone(),
            redirect_url: f.redirect_url.clone(),
            scopes: f.scopes.clone(),
            account_id_claim: f.account_id_claim.clone(),
            admin_claim: f.admin_claim.clone(),
            admin_subjects: f.admin_subjects.clone(),
            admin_emails: f.admin_emails.clone(),
        }
    }
}

/// The single sign-on settings to save: they replace what the page saved (a field left out
/// or `null` is unset there). `client_secret`: a string sets it, `null` removes it, left out
/// keeps it (only while the issuer stays the same). `version`: the `version` of a `GET`; the
/// save is refused with 409 if the settings changed since.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcSettingsUpdate {
    pub version: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Option<String>>,
    pub redirect_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub account_id_claim: Option<String>,
    pub admin_claim: Option<String>,
    pub admin_subjects: Option<Vec<String>>,
    pub admin_emails: Option<Vec<String>>,
}

impl std::fmt::Debug for OidcSettingsUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettingsUpdate")
            .field("version", &self.version)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self
                    .client_secret
                    .as_ref()
                    .map(|s| s.as_ref().map(|_| "***")),
            )
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

async fn oidc_body(state: &AppState) -> ApiResult<OidcSettingsBody> {
    let fixed = state
        .oidc
        .fixed()
        .map_err(|e| ApiError::invalid(&e.field(), e.message.clone()))?;
    let default_redirect = OidcRuntime::default_redirect(state);
    let view = state.app.oidc_settings(fixed, &default_redirect).await?;
    let (status, error) = match view.config {
        Ok(None) => ("off", None),
        Ok(Some(_)) => ("on", None),
        Err(e) => ("error", Some(ApiError::from(e))),
    };
    Ok(OidcSettingsBody {
        status,
        error,
        effective: (&view.effective).into(),
        saved: (&view.page).into(),
        client_secret_set: view.secret_set,
        origins: view.origins.into_iter().collect(),
        default_redirect_url: default_redirect,
        version: view.version,
    })
}

/// The single sign-on (OpenID Connect) settings and where each comes from.
#[utoipa::path(
    get, path = "/api/v1/settings/oidc", tag = "settings",
    responses((status = 200, body = OidcSettingsBody), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn show_oidc_settings(
    State(state): State<AppState>,
    _caller: AdminCaller,
) -> ApiResult<Json<OidcSettingsBody>> {
    Ok(Json(oidc_body(&state).await?))
}

/// Saves the single sign-on settings (recorded in the event log, without the secret). A
/// configuration that would not work, or a field the environment or the file sets, is
/// refused with the field named and nothing saved; `409` when another administrator saved
/// meanwhile.
#[utoipa::path(
    put, path = "/api/v1/settings/oidc", tag = "settings",
    request_body = OidcSettingsUpdate,
    responses(
        (status = 200, body = OidcSettingsBody),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 409, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn update_oidc_settings(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiJson(update): ApiJson<OidcSettingsUpdate>,
) -> ApiResult<Json<OidcSettingsBody>> {
    let fixed = state
        .oidc
        .fixed()
        .map_err(|e| ApiError::invalid(&e.field(), e.message.clone()))?;
    let v = &update;
    let fields = OidcFields {
        issuer: v.issuer.clone(),
        client_id: v.client_id.clone(),
        client_secret: None,
        redirect_url: v.redirect_url.clone(),
        scopes: v.scopes.clone(),
        account_id_claim: v.account_id_claim.clone(),
        admin_claim: v.admin_claim.clone(),
        admin_subjects: v.admin_subjects.clone(),
        admin_emails: v.admin_emails.clone(),
    };
    let secret = match update.client_secret {
        None => SecretChange::Keep,
        Some(None) => SecretChange::Remove,
        Some(Some(value)) => SecretChange::Set(value),
    };
    state
        .app
        .save_oidc_settings(
            fixed,
            &OidcRuntime::default_redirect(&state),
            fields,
            secret,
            update.version.as_deref(),
            &caller.actor(),
            clock::now(),
        )
        .await?;
    Ok(Json(oidc_body(&state).await?))
}
