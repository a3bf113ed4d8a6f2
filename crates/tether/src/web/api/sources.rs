//! `/api/v1/sources`: list, add, show, edit (the credential is write-only: responses only say
//! `has_secret`), plan (a dry run), apply, and the runs of a source.

use super::{page_limit, parse_name, rfc3339, ApiJson, ApiQuery};
use crate::app::{ReconcileOptions, ReconcileReport};
use crate::clock;
use crate::web::auth::AdminCaller;
use crate::web::error::{ApiError, ApiResult};
use crate::web::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tether_core::ExternalIdField;
use tether_sources::SourceSettings;
use tether_store::{NewSource, Run};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sources", get(list_sources).post(create_source))
        .route(
            "/api/v1/sources/{name}",
            get(show_source).patch(update_source),
        )
        .route("/api/v1/sources/{name}/plan", post(plan_source))
        .route("/api/v1/sources/{name}/apply", post(apply_source))
        .route("/api/v1/sources/{name}/runs", get(list_source_runs))
}

/// The kinds of source.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    JiraCloud,
    JiraDc,
    Scim,
    File,
}

impl SourceKind {
    fn as_str(self) -> &'static str {
        match self {
            SourceKind::JiraCloud => "jira_cloud",
            SourceKind::JiraDc => "jira_dc",
            SourceKind::Scim => "scim",
            SourceKind::File => "file",
        }
    }
}

/// A source's connection settings (everything but the credential). Fields a kind does not
/// use are `null`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Jira site or SCIM base URL.
    pub base_url: Option<String>,
    /// Jira Cloud: the e-mail address the API token belongs to.
    pub user: Option<String>,
    /// SCIM: `id` or `externalId`; Jira Data Center: `key` or `name`.
    pub account_id_attribute: Option<String>,
    /// File: the path of a CSV or JSON Lines accounts file on the server.
    pub path: Option<String>,
    pub page_size: Option<u32>,
    pub concurrency: Option<u32>,
    pub timeout_seconds: Option<u32>,
}

impl From<ConnectionSettings> for SourceSettings {
    fn from(s: ConnectionSettings) -> Self {
        SourceSettings {
            base_url: s.base_url,
            user: s.user,
            account_id_attribute: s.account_id_attribute,
            path: s.path,
            page_size: s.page_size,
            concurrency: s.concurrency,
            timeout_seconds: s.timeout_seconds,
        }
    }
}

impl From<SourceSettings> for ConnectionSettings {
    fn from(s: SourceSettings) -> Self {
        ConnectionSettings {
            base_url: s.base_url,
            user: s.user,
            account_id_attribute: s.account_id_attribute,
            path: s.path,
            page_size: s.page_size,
            concurrency: s.concurrency,
            timeout_seconds: s.timeout_seconds,
        }
    }
}

/// A source as shown. Never the credential.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SourceView {
    pub name: String,
    /// `jira_cloud`, `jira_dc`, `scim` or `file`.
    pub kind: String,
    /// Which account field fills External IDs: `account_id`, `username`, `key` or `email`.
    pub external_id_field: String,
    pub link_inactive: bool,
    /// RFC 3339.
    pub created_at: String,
    pub settings: ConnectionSettings,
    /// Whether a credential is stored (it is never shown again).
    pub has_secret: bool,
}

async fn view(state: &AppState, source: tether_store::Source) -> ApiResult<SourceView> {
    let (settings, has_secret) = state.app.source_settings(&source).await?;
    Ok(SourceView {
        external_id_field: source.external_id_field.as_str().to_owned(),
        name: source.name,
        kind: source.kind,
        link_inactive: source.link_inactive,
        created_at: rfc3339(source.created_at),
        settings: settings.into(),
        has_secret,
    })
}

async fn find(state: &AppState, name: &str) -> ApiResult<tether_store::Source> {
    Ok(state.app.source(Some(name)).await?)
}

/// Lists the sources.
#[utoipa::path(
    get, path = "/api/v1/sources", tag = "sources",
    responses((status = 200, body = Vec<SourceView>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_sources(
    State(state): State<AppState>,
    _caller: AdminCaller,
) -> ApiResult<Json<Vec<SourceView>>> {
    let sources = state.app.list_sources().await?;
    let mut views = Vec::with_capacity(sources.len());
    for source in sources {
        views.push(view(&state, source).await?);
    }
    Ok(Json(views))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSourceBody {
    pub name: String,
    pub kind: SourceKind,
    /// Default `account_id`.
    #[schema(value_type = Option<String>)]
    pub external_id_field: Option<String>,
    #[serde(default)]
    pub link_inactive: bool,
    #[serde(default)]
    pub settings: ConnectionSettings,
    /// The credential (Jira API token, personal access token, SCIM bearer token). Write-only.
    pub secret: Option<String>,
}

/// Adds a source.
#[utoipa::path(
    post, path = "/api/v1/sources", tag = "sources",
    request_body = NewSourceBody,
    responses(
        (status = 201, body = SourceView),
        (status = 400, body = ApiError), (status = 409, description = "The name is taken", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn create_source(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiJson(body): ApiJson<NewSourceBody>,
) -> ApiResult<(StatusCode, Json<SourceView>)> {
    let field = match body.external_id_field.as_deref() {
        None | Some("") => ExternalIdField::default(),
        Some(text) => parse_name("external_id_field", text)?,
    };
    let secret = body
        .secret
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if secret.is_some() && state.app.secret_key.is_none() {
        return Err(ApiError::invalid(
            "secret",
            "cannot store a credential: the server has no secret key (set TETHER_SECRET_KEY)",
        ));
    }
    let at = clock::now();
    let source = state
        .app
        .add_source(
            NewSource {
                name: body.name.clone(),
                kind: body.kind.as_str().to_owned(),
                external_id_field: field,
                link_inactive: body.link_inactive,
            },
            at,
        )
        .await
        .map_err(|e| {
            let mut error = ApiError::from(e);
            if error.code == "invalid_input" {
                error.field = Some("name".to_owned());
            }
            error
        })?;
    let settings = SourceSettings::from(body.settings);
    state
        .app
        .configure_source(
            &source,
            None,
            None,
            Some(&settings),
            secret,
            &caller.actor(),
            at,
        )
        .await?;
    let source = find(&state, &source.name).await?;
    Ok((StatusCode::CREATED, Json(view(&state, source).await?)))
}

/// One source.
#[utoipa::path(
    get, path = "/api/v1/sources/{name}", tag = "sources",
    params(("name" = String, Path, description = "The source's name")),
    responses((status = 200, body = SourceView), (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
pub async fn show_source(
    State(state): State<AppState>,
    _caller: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult<Json<SourceView>> {
    let source = find(&state, &name).await?;
    Ok(Json(view(&state, source).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePatch {
    #[schema(value_type = Option<String>)]
    pub external_id_field: Option<String>,
    pub link_inactive: Option<bool>,
    /// Replaces the connection settings as a whole.
    pub settings: Option<ConnectionSettings>,
    /// A new credential; leave out to keep the stored one.
    pub secret: Option<String>,
}

/// Changes a source; fields left out keep their value.
#[utoipa::path(
    patch, path = "/api/v1/sources/{name}", tag = "sources",
    params(("name" = String, Path, description = "The source's name")),
    request_body = SourcePatch,
    responses(
        (status = 200, body = SourceView),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn update_source(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SourcePatch>,
) -> ApiResult<Json<SourceView>> {
    let source = find(&state, &name).await?;
    let field = body
        .external_id_field
        .as_deref()
        .map(|f| parse_name::<ExternalIdField>("external_id_field", f))
        .transpose()?;
    let settings = body.settings.map(SourceSettings::from);
    let secret = body
        .secret
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if secret.is_some() && state.app.secret_key.is_none() {
        return Err(ApiError::invalid(
            "secret",
            "cannot store a credential: the server has no secret key (set TETHER_SECRET_KEY)",
        ));
    }
    state
        .app
        .configure_source(
            &source,
            field,
            body.link_inactive,
            settings.as_ref(),
            secret,
            &caller.actor(),
            clock::now(),
        )
        .await?;
    let source = find(&state, &name).await?;
    Ok(Json(view(&state, source).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunBody {
    /// Overrides the source's External ID field (`account_id`, `username`, `key`, `email`);
    /// an applied run saves it on the source.
    #[schema(value_type = Option<String>)]
    pub field: Option<String>,
}

/// A planned change that lost a race with another writer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RaceView {
    pub user_pk: i64,
    pub planned: String,
    pub result: String,
}

/// What a plan or a run found and did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReconcileView {
    pub source: String,
    pub field: String,
    pub dry_run: bool,
    /// The run's id; `null` for a plan, which records nothing.
    pub run: Option<i64>,
    pub users: u64,
    pub accounts: u64,
    /// Users per situation, as planned.
    pub summary: BTreeMap<String, u64>,
    /// External IDs the plan would write.
    pub planned: u64,
    /// External IDs written.
    pub applied: u64,
    pub conflicts: Vec<RaceView>,
    pub outcomes_written: u64,
    pub duration_ms: u64,
}

impl From<ReconcileReport> for ReconcileView {
    fn from(r: ReconcileReport) -> Self {
        ReconcileView {
            source: r.source,
            field: r.field.as_str().to_owned(),
            dry_run: r.dry_run,
            run: r.run,
            users: r.users,
            accounts: r.accounts,
            summary: r
                .summary
                .into_iter()
                .map(|(s, n)| (s.as_str().to_owned(), n))
                .collect(),
            planned: r.planned,
            applied: r.applied,
            conflicts: r
                .conflicts
                .into_iter()
                .map(|c| RaceView {
                    user_pk: c.user_pk,
                    planned: c.planned,
                    result: c.result,
                })
                .collect(),
            outcomes_written: r.outcomes_written,
            duration_ms: r.duration_ms,
        }
    }
}

async fn reconcile(
    state: &AppState,
    name: &str,
    body: RunBody,
    dry_run: bool,
) -> ApiResult<Json<ReconcileView>> {
    let field = body
        .field
        .as_deref()
        .map(|f| parse_name::<ExternalIdField>("field", f))
        .transpose()?;
    let options = ReconcileOptions {
        field,
        dry_run,
        ..ReconcileOptions::default()
    };
    let report = state
        .app
        .reconcile(name, options, clock::now(), &crate::app::NoProgress)
        .await?;
    Ok(Json(report.into()))
}

/// A dry run: plans the source over its stored accounts and writes nothing.
#[utoipa::path(
    post, path = "/api/v1/sources/{name}/plan", tag = "sources",
    params(("name" = String, Path, description = "The source's name")),
    request_body(content = RunBody, description = "Optional"),
    responses(
        (status = 200, body = ReconcileView),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn plan_source(
    State(state): State<AppState>,
    _caller: AdminCaller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RunBody>,
) -> ApiResult<Json<ReconcileView>> {
    reconcile(&state, &name, body, true).await
}

/// Plans the source over its stored accounts and applies the plan (a recorded run).
#[utoipa::path(
    post, path = "/api/v1/sources/{name}/apply", tag = "sources",
    params(("name" = String, Path, description = "The source's name")),
    request_body(content = RunBody, description = "Optional"),
    responses(
        (status = 200, body = ReconcileView),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn apply_source(
    State(state): State<AppState>,
    _caller: AdminCaller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RunBody>,
) -> ApiResult<Json<ReconcileView>> {
    reconcile(&state, &name, body, false).await
}

/// A recorded run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    /// `reconcile` or `pull`.
    pub kind: String,
    pub dry_run: bool,
    pub external_id_field: String,
    pub actor: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The plan's counts per situation and the run's figures.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    pub applied: u64,
}

impl From<Run> for RunView {
    fn from(run: Run) -> Self {
        RunView {
            id: run.pk,
            kind: run.kind,
            dry_run: run.dry_run,
            external_id_field: run.external_id_field.as_str().to_owned(),
            actor: run.actor,
            state: run.state,
            started_at: rfc3339(run.started_at),
            finished_at: run.finished_at.map(rfc3339),
            summary: run.summary,
            applied: run.applied,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many runs, newest first: 1 to 500 (default 50).
    limit: Option<String>,
}

/// The newest runs of a source.
#[utoipa::path(
    get, path = "/api/v1/sources/{name}/runs", tag = "sources",
    params(("name" = String, Path, description = "The source's name"), RunsQuery),
    responses(
        (status = 200, body = Vec<RunView>),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_source_runs(
    State(state): State<AppState>,
    _caller: AdminCaller,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Vec<RunView>>> {
    let limit = page_limit(query.limit.as_deref())?;
    let source = find(&state, &name).await?;
    let runs = state.app.list_runs(&source, limit).await?;
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}
