//! `/api/v1/audit` (External ID changes), `/api/v1/events` (administrative events) and
//! `/api/v1/dashboard`.

use super::sources::RunView;
use super::users::{optional_source, AuditEntry};
use super::{cursor, page_limit, paginate, parse_name, rfc3339, ApiQuery};
use crate::web::auth::AdminCaller;
use crate::web::error::{ApiError, ApiResult};
use crate::web::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tether_core::Origin;
use tether_store::admin::AuditFilter;
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/dashboard", get(dashboard))
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `before` for older entries; `null` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this user's entries (the user's id).
    user: Option<String>,
    /// Only entries of this origin: `login`, `pull`, `scim`, `manual` or `import`.
    origin: Option<String>,
    /// Only entries by this actor (e.g. `admin:alice`, `token:ci`).
    actor: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<String>,
}

/// The audit log of External ID changes, newest first.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    _caller: AdminCaller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = page_limit(query.limit.as_deref())?;
    let before_pk = cursor("before", query.before.as_deref())?;
    let origin = query
        .origin
        .as_deref()
        .filter(|o| !o.is_empty())
        .map(|o| parse_name::<Origin>("origin", o))
        .transpose()?;
    let user_pk = match query.user.as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(id) => Some(state.app.user_pk(id).await.map_err(|e| {
            let mut error = ApiError::from(e);
            error.field = Some("user".to_owned());
            error
        })?),
    };
    let rows = state
        .app
        .audit_page(&AuditFilter {
            before_pk,
            limit: limit + 1,
            user_pk,
            origin,
            actor: query.actor.filter(|a| !a.is_empty()),
        })
        .await?;
    let (rows, next) = paginate(rows, limit, |(entry, _)| entry.pk);
    Ok(Json(AuditPage {
        items: rows
            .into_iter()
            .map(|(entry, user)| AuditEntry::new(entry, user))
            .collect(),
        next,
    }))
}

/// An administrative event (settings changed, source changed, token revoked, sign-ins, …).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    pub detail: String,
}

/// One page of events, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `before` for older events; `null` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The `next` of the previous page.
    before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<String>,
}

/// The administrative event log, newest first.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "audit",
    params(EventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_events(
    State(state): State<AppState>,
    _caller: AdminCaller,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    let limit = page_limit(query.limit.as_deref())?;
    let before_pk = cursor("before", query.before.as_deref())?;
    let rows = state.app.list_events(before_pk, limit + 1).await?;
    let (rows, next) = paginate(rows, limit, |e| e.pk);
    Ok(Json(EventPage {
        items: rows
            .into_iter()
            .map(|e| EventView {
                id: e.pk,
                at: rfc3339(e.at),
                actor: e.actor,
                kind: e.kind,
                subject: e.subject,
                detail: e.detail,
            })
            .collect(),
        next,
    }))
}

/// One point of the linked-share chart.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SharePointView {
    pub at: String,
    pub linked: u64,
    pub total: u64,
    pub run_kind: String,
}

/// The dashboard of one source.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DashboardView {
    /// The source shown; `null` when none exists (or several and none was named).
    pub source: Option<String>,
    pub users: u64,
    /// Users per situation after the newest applied run.
    pub situations: BTreeMap<String, u64>,
    /// The linked share after each applied run, oldest first.
    pub history: Vec<SharePointView>,
    pub last_run: Option<RunView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// The source; may be left out when only one exists.
    source: Option<String>,
}

/// Users per situation and the linked share over time.
#[utoipa::path(
    get, path = "/api/v1/dashboard", tag = "dashboard",
    params(DashboardQuery),
    responses(
        (status = 200, body = DashboardView),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn dashboard(
    State(state): State<AppState>,
    _caller: AdminCaller,
    ApiQuery(query): ApiQuery<DashboardQuery>,
) -> ApiResult<Json<DashboardView>> {
    let source = optional_source(&state, query.source.as_deref()).await?;
    let d = state.app.dashboard(source.as_ref()).await?;
    Ok(Json(DashboardView {
        source: d.source.map(|s| s.name),
        users: d.users,
        situations: d.situations,
        history: d
            .history
            .into_iter()
            .map(|p| SharePointView {
                at: rfc3339(p.at),
                linked: p.linked,
                total: p.total,
                run_kind: p.run_kind,
            })
            .collect(),
        last_run: d.last_run.map(RunView::from),
    }))
}
