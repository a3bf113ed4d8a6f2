//! `/api/v1/users`: the users list (situation filter, search, keyset pages), a user's page,
//! the live diagnosis, External IDs set or cleared by hand, exclusion.

use super::{cursor, page_limit, paginate, parse_name, rfc3339, ApiJson, ApiQuery};
use crate::app::admin::UserDetail;
use crate::app::{Diagnosis, Who};
use crate::clock;
use crate::web::auth::AdminCaller;
use crate::web::error::{ApiError, ApiResult};
use crate::web::AppState;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use tether_core::Situation;
use tether_store::admin::UserSearch;
use tether_store::{UserFilter, UserRecord};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{id}", get(show_user))
        .route("/api/v1/users/{id}/diagnosis", get(diagnose_user))
        .route(
            "/api/v1/users/{id}/external-id",
            put(set_external_id).delete(clear_external_id),
        )
        .route("/api/v1/users/{id}/exclude", post(exclude_user))
        .route("/api/v1/users/{id}/include", post(include_user))
}

/// A user as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// The application's user id (stable; used in every `/users/{id}` URL).
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    /// Who set the External ID: `login`, `pull`, `scim`, `manual` or `import`.
    pub external_id_origin: Option<String>,
    /// Excluded users are never changed by runs.
    pub excluded: bool,
}

impl From<UserRecord> for User {
    fn from(user: UserRecord) -> Self {
        User {
            id: user.id,
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            active: user.active,
            external_id: user.external_id,
            external_id_origin: user.external_id_origin.map(|o| o.as_str().to_owned()),
            excluded: user.excluded,
        }
    }
}

/// One page of users.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Only users the last run of the source left in this situation (`linked`, `conflict`,
    /// `no_match`, `duplicate_accounts`, …). Cannot be combined with `q`.
    situation: Option<String>,
    /// The source whose runs `situation` refers to; may be left out when only one exists.
    source: Option<String>,
    /// Case-insensitive prefix of the username, display name or e-mail, or an exact id or
    /// External ID.
    q: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<String>,
}

/// Lists users in id order, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    params(UsersQuery),
    responses(
        (status = 200, body = UserPage),
        (status = 400, description = "Invalid parameter (`field` names it)", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list_users(
    State(state): State<AppState>,
    _caller: AdminCaller,
    ApiQuery(query): ApiQuery<UsersQuery>,
) -> ApiResult<Json<UserPage>> {
    let limit = page_limit(query.limit.as_deref())?;
    let after_pk = cursor("after", query.after.as_deref())?;
    let situation = query
        .situation
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_name::<Situation>("situation", s))
        .transpose()?;
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let rows = match (q, situation) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "situation",
                "q and situation cannot be combined: search, or filter by situation",
            ))
        }
        (Some(q), None) => {
            state
                .app
                .search_users(&UserSearch {
                    query: q.to_owned(),
                    after_pk,
                    limit: limit + 1,
                })
                .await?
        }
        (None, situation) => {
            let situation = match situation {
                None => None,
                Some(situation) => {
                    let source = named_or_only_source(&state, query.source.as_deref()).await?;
                    Some((source.pk, situation))
                }
            };
            state
                .app
                .list_users(&UserFilter {
                    after_pk,
                    limit: limit + 1,
                    situation,
                })
                .await?
        }
    };
    let (rows, next) = paginate(rows, limit, |u| u.pk);
    Ok(Json(UserPage {
        items: rows.into_iter().map(User::from).collect(),
        next,
    }))
}

/// The source named by `?source=`, or the only one; errors name the `source` parameter.
pub(super) async fn named_or_only_source(
    state: &AppState,
    name: Option<&str>,
) -> ApiResult<tether_store::Source> {
    let name = name.filter(|n| !n.is_empty());
    state.app.source(name).await.map_err(|e| {
        let mut error = ApiError::from(e);
        if error.status == axum::http::StatusCode::NOT_FOUND {
            error.status = axum::http::StatusCode::BAD_REQUEST;
            error.code = "invalid_input";
        }
        if error.code == "invalid_input" {
            error.field = Some("source".to_owned());
        }
        error
    })
}

/// The source named by `?source=`, the only one, or none when there are several or none.
pub(super) async fn optional_source(
    state: &AppState,
    name: Option<&str>,
) -> ApiResult<Option<tether_store::Source>> {
    match name.filter(|n| !n.is_empty()) {
        Some(name) => named_or_only_source(state, Some(name)).await.map(Some),
        None => Ok(state.app.source(None).await.ok()),
    }
}

/// One audit entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Pass as `before` to list older entries.
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    pub actor: String,
    /// `login`, `pull`, `scim`, `manual` or `import`.
    pub origin: String,
    /// The user's id.
    pub user: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub reason: String,
    /// The run that wrote it, if any.
    pub run: Option<i64>,
}

impl AuditEntry {
    pub fn new(entry: tether_store::AuditEntry, user: String) -> Self {
        AuditEntry {
            id: entry.pk,
            at: rfc3339(entry.at),
            actor: entry.actor,
            origin: entry.origin.as_str().to_owned(),
            user,
            old_value: entry.old_value,
            new_value: entry.new_value,
            reason: entry.reason,
            run: entry.run_pk,
        }
    }
}

/// Where a user stands against a source, explained.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DiagnosisView {
    pub user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub external_id_origin: Option<String>,
    /// `linked`, `conflict`, `orphaned_link`, `no_email`, `invalid_email`,
    /// `inactive_account`, `no_match`, `duplicate_accounts`, `duplicate_users`,
    /// `missing_field`, `account_taken`, `new_link` or `excluded`.
    pub situation: String,
    pub explanation: String,
    pub fix: String,
    pub source: String,
    /// The source's External ID field: `account_id`, `username`, `key` or `email`.
    pub field: String,
    /// The accounts and users involved: `{accounts: [...], users: [...], total}`.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
}

impl From<Diagnosis> for DiagnosisView {
    fn from(d: Diagnosis) -> Self {
        DiagnosisView {
            evidence: serde_json::to_value(&d.evidence).unwrap_or(serde_json::Value::Null),
            user_id: d.user_id,
            username: d.username,
            email: d.email,
            external_id: d.external_id,
            external_id_origin: d.external_id_origin.map(|o| o.as_str().to_owned()),
            situation: d.situation.as_str().to_owned(),
            explanation: d.explanation,
            fix: d.fix,
            source: d.source,
            field: d.field.as_str().to_owned(),
        }
    }
}

/// A user's page: the record, the diagnosis stored by the source's last run, and the audit.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserDetailView {
    #[serde(flatten)]
    pub user: User,
    /// RFC 3339; when the External ID was last set.
    pub external_id_set_at: Option<String>,
    /// `null` when no run of the source has planned this user since its last change.
    pub diagnosis: Option<DiagnosisView>,
    /// Newest first (at most 100).
    pub audit: Vec<AuditEntry>,
}

impl From<UserDetail> for UserDetailView {
    fn from(d: UserDetail) -> Self {
        let audit = d
            .audit
            .into_iter()
            .map(|e| AuditEntry::new(e, d.id.clone()))
            .collect();
        UserDetailView {
            user: User {
                id: d.id,
                username: d.username,
                email: d.email,
                display_name: d.display_name,
                active: d.active,
                external_id: d.external_id,
                external_id_origin: d.external_id_origin.map(|o| o.as_str().to_owned()),
                excluded: d.excluded,
            },
            external_id_set_at: d.external_id_set_at.map(rfc3339),
            diagnosis: d.diagnosis.map(DiagnosisView::from),
            audit,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SourceQuery {
    /// The source; may be left out when only one exists.
    source: Option<String>,
}

/// A user's page: record, stored diagnosis, audit history.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's id"), SourceQuery),
    responses(
        (status = 200, body = UserDetailView),
        (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn show_user(
    State(state): State<AppState>,
    _caller: AdminCaller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<SourceQuery>,
) -> ApiResult<Json<UserDetailView>> {
    let source = optional_source(&state, query.source.as_deref()).await?;
    let detail = state.app.user_detail(&id, source.as_ref()).await?;
    Ok(Json(detail.into()))
}

/// A fresh diagnosis of one user against a source (plans over the stored accounts now).
#[utoipa::path(
    get, path = "/api/v1/users/{id}/diagnosis", tag = "users",
    params(("id" = String, Path, description = "The user's id"), SourceQuery),
    responses(
        (status = 200, body = DiagnosisView),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn diagnose_user(
    State(state): State<AppState>,
    _caller: AdminCaller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<SourceQuery>,
) -> ApiResult<Json<DiagnosisView>> {
    let source = named_or_only_source(&state, query.source.as_deref()).await?;
    let diagnoses = state
        .app
        .diagnose(Who::One(&id), Some(&source.name))
        .await?;
    diagnoses
        .into_iter()
        .find(|d| d.user_id == id)
        .map(|d| Json(d.into()))
        .ok_or_else(|| ApiError::not_found(format!("no user has the id '{id}'")))
}

/// `expected` may be absent (no check), `null` (the user must have none) or a value.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetExternalId {
    pub external_id: String,
    /// The External ID the caller saw: the write happens only if the user still holds it
    /// (`null`: the user must have none). Leave it out to skip the check.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expected: Option<Option<String>>,
    /// Why, for the audit trail (required).
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearExternalId {
    /// As for setting: the value the caller saw; leave out to skip the check.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expected: Option<Option<String>>,
    pub reason: String,
}

/// Sets a user's External ID by hand (audited with origin `manual`), under the engine's
/// rules: never a value another user holds, never on an excluded user.
#[utoipa::path(
    put, path = "/api/v1/users/{id}/external-id", tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    request_body = SetExternalId,
    responses(
        (status = 200, body = User),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Held by another user (the message names the holder), changed meanwhile, or excluded", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn set_external_id(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetExternalId>,
) -> ApiResult<Json<User>> {
    let user = state
        .app
        .edit_external_id_unless_stale(
            &id,
            body.expected.as_ref().map(Option::as_deref),
            Some(&body.external_id),
            &body.reason,
            &caller.actor(),
            clock::now(),
        )
        .await
        .map_err(|e| with_field(e.into(), "reason", "external_id"))?;
    Ok(Json(user.into()))
}

/// Clears a user's External ID by hand (audited with origin `manual`).
#[utoipa::path(
    delete, path = "/api/v1/users/{id}/external-id", tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    request_body = ClearExternalId,
    responses(
        (status = 200, body = User),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn clear_external_id(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ClearExternalId>,
) -> ApiResult<Json<User>> {
    let user = state
        .app
        .edit_external_id_unless_stale(
            &id,
            body.expected.as_ref().map(Option::as_deref),
            None,
            &body.reason,
            &caller.actor(),
            clock::now(),
        )
        .await
        .map_err(|e| with_field(e.into(), "reason", "external_id"))?;
    Ok(Json(user.into()))
}

/// Names the field of an application's input error from its message.
fn with_field(mut error: ApiError, first: &str, second: &str) -> ApiError {
    if error.code == "invalid_input" && error.field.is_none() {
        error.field = if error.message.starts_with(first) {
            Some(first.to_owned())
        } else if error.message.starts_with(second) {
            Some(second.to_owned())
        } else {
            None
        };
    }
    error
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, for the event log.
    pub reason: String,
}

/// Excludes a user: runs never change an excluded user.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/exclude", tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    request_body = Reason,
    responses(
        (status = 200, body = User),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn exclude_user(
    state: State<AppState>,
    caller: AdminCaller,
    id: Path<String>,
    body: ApiJson<Reason>,
) -> ApiResult<Json<User>> {
    set_excluded(state, caller, id, body, true).await
}

/// Includes an excluded user again.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/include", tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    request_body = Reason,
    responses(
        (status = 200, body = User),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn include_user(
    state: State<AppState>,
    caller: AdminCaller,
    id: Path<String>,
    body: ApiJson<Reason>,
) -> ApiResult<Json<User>> {
    set_excluded(state, caller, id, body, false).await
}

async fn set_excluded(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Reason>,
    excluded: bool,
) -> ApiResult<Json<User>> {
    if body.reason.trim().is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "reason must say why the user is excluded or included",
        ));
    }
    let user = state
        .app
        .set_excluded(&id, excluded, &body.reason, &caller.actor(), clock::now())
        .await?;
    Ok(Json(user.into()))
}
