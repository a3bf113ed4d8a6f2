//! Jobs routes: the API under /api/v1/jobs and the Jobs pages.
//!
//! API (bearer token of scope `admin`, or an admin session with `X-CSRF-Token` on writes):
//!
//! | method and path                         | does                                     | answers |
//! |-----------------------------------------|------------------------------------------|---------|
//! | `POST /api/v1/jobs` `{source, dry_run}` | enqueue a pull (the runner picks it up)  | 202 job; 409 when the source has an active job |
//! | `GET /api/v1/jobs?source=&state=&before=&limit=` | jobs, newest first              | 200 `{jobs}` |
//! | `GET /api/v1/jobs/{id}`                 | one job with progress and report         | 200 job |
//! | `POST /api/v1/jobs/{id}/cancel`         | cancel, or ask a running job to stop     | 202 job |
//! | `POST /api/v1/jobs/{id}/approve`        | apply a job held by the safeguard        | 202 job |
//! | `POST /api/v1/jobs/{id}/reject`         | cancel a held job, applying nothing      | 200 job |
//! | `POST /api/v1/jobs/{id}/undo`           | revert the job's untouched changes       | 200 undo report |
//! | `GET /api/v1/jobs/{id}/report.json`, `.csv` | the report with every change        | 200 download |
//!
//! Pages: `/jobs` (list and a start form), `/jobs/{id}` (live progress through an htmx
//! fragment polled every second, the report, and the approve / reject / cancel / undo forms).

use super::api::rfc3339;
use super::auth::{check_csrf, AdminCaller, AdminPage};
use super::error::{ApiError, ApiResult};
use super::ui::layout::{csrf_field, notice, page, situation_badge, Nav};
use super::AppState;
use crate::clock;
use crate::jobs;
use crate::jobs::report::PullReport;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;
use tether_store::admin::Session;
use tether_store::jobs::{Job, JobState};
use tether_store::Store;

/// The jobs endpoints of the OpenAPI document (merged by `web::api::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        api_start,
        api_list,
        api_show,
        api_cancel,
        api_approve,
        api_reject,
        api_undo,
        api_report_json,
        api_report_csv
    ),
    components(schemas(StartJob)),
    tags((name = "jobs", description = "Pull jobs: start, progress, approve, reject, cancel, undo, reports"))
)]
pub struct JobsApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", get(api_list).post(api_start))
        .route("/api/v1/jobs/{id}", get(api_show))
        .route("/api/v1/jobs/{id}/cancel", post(api_cancel))
        .route("/api/v1/jobs/{id}/approve", post(api_approve))
        .route("/api/v1/jobs/{id}/reject", post(api_reject))
        .route("/api/v1/jobs/{id}/undo", post(api_undo))
        .route("/api/v1/jobs/{id}/report.json", get(api_report_json))
        .route("/api/v1/jobs/{id}/report.csv", get(api_report_csv))
        .route("/jobs", get(ui_list).post(ui_start))
        .route("/jobs/{id}", get(ui_show))
        .route("/jobs/{id}/progress", get(ui_progress))
        .route("/jobs/{id}/{action}", post(ui_action))
}

/// How many background workers `tether serve` runs: `TETHER_JOB_WORKERS`, else 2.
fn workers() -> usize {
    std::env::var("TETHER_JOB_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(2)
        .clamp(1, 16)
}

/// Starts the background job runner of `tether serve` (called once by `web::serve`).
pub fn start_background(state: &AppState) {
    for _ in 0..workers() {
        let state = state.clone();
        tokio::spawn(async move { jobs::runner::work(&state.app, clock::now).await });
    }
}

fn job_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid("id", format!("job id '{text}' is not a number")))
}

// --- API ------------------------------------------------------------------------------------

/// Starts a pull of `source`; `dry_run` fetches and plans only.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StartJob {
    source: String,
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post, path = "/api/v1/jobs", tag = "jobs",
    request_body = StartJob,
    responses(
        (status = 202, description = "A job: `id`, `source`, `kind`, `dry_run`, `state` (queued, running, awaiting_approval, succeeded, failed, cancelled), `progress` {phase, pages, accounts_fetched, users_planned, changes_planned, changes_applied}, `report`, `error`, `requested_by`, `attempts`, timestamps, `decided_by`, `approved_changes`, `undo_report`", body = serde_json::Value),
        (status = 400, body = ApiError), (status = 404, description = "Unknown source", body = ApiError),
        (status = 409, description = "The source already has an active job", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn api_start(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    body: Result<Json<StartJob>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let job = jobs::start(
        &state.app,
        &body.source,
        body.dry_run,
        &caller.actor(),
        clock::now(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this source's jobs.
    source: Option<String>,
    /// Only jobs in this state.
    state: Option<String>,
    /// Jobs older than this id (the next page).
    before: Option<i64>,
    /// At most this many (default 50, at most 1000).
    limit: Option<u32>,
}

fn parse_state(text: &str) -> ApiResult<JobState> {
    text.parse()
        .map_err(|_| ApiError::invalid("state", format!("unknown job state '{text}'")))
}

#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses((status = 200, description = "`{jobs: [job]}`, newest first", body = serde_json::Value), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_list(
    State(state): State<AppState>,
    AdminCaller(_): AdminCaller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let job_state = query.state.as_deref().map(parse_state).transpose()?;
    let jobs = jobs::list(
        &state.app,
        query.source.as_deref(),
        job_state,
        query.before,
        query.limit.unwrap_or(50),
    )
    .await?;
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, description = "A job: `id`, `source`, `kind`, `dry_run`, `state` (queued, running, awaiting_approval, succeeded, failed, cancelled), `progress` {phase, pages, accounts_fetched, users_planned, changes_planned, changes_applied}, `report`, `error`, `requested_by`, `attempts`, timestamps, `decided_by`, `approved_changes`, `undo_report`", body = serde_json::Value), (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_show(
    State(state): State<AppState>,
    AdminCaller(_): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(jobs::get(&state.app, job_id(&id)?).await?))
}

#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 202, description = "Cancelled, or (running) asked to stop at its next page or batch", body = serde_json::Value),
        (status = 400, description = "The job has finished", body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_cancel(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = jobs::cancel(&state.app, job_id(&id)?, &caller.actor(), clock::now()).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/approve", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 202, description = "Queued again to apply its plan", body = serde_json::Value),
        (status = 400, description = "Not awaiting approval", body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_approve(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = jobs::approve(&state.app, job_id(&id)?, &caller.actor(), clock::now()).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/reject", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, description = "Cancelled; nothing applied", body = serde_json::Value),
        (status = 400, description = "Not awaiting approval", body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_reject(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(
        jobs::reject(&state.app, job_id(&id)?, &caller.actor(), clock::now()).await?,
    ))
}

#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/undo", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, description = "`{job, run, changes, reverted, kept: [{user_id, email, job_value, current, reason}]}`", body = serde_json::Value),
        (status = 400, description = "Active, a dry run, or already undone", body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_undo(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<jobs::UndoReport>> {
    Ok(Json(
        jobs::undo(&state.app, job_id(&id)?, &caller.actor(), clock::now()).await?,
    ))
}

fn download(id: i64, extension: &str, content_type: &'static str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"tether-job-{id}.{extension}\"");
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("content-disposition"), value);
    }
    response
}

#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/report.json", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, description = "`{job, changes: [{audit_pk, user_id, email, old_value, new_value, reason, at, current}]}` as a download", body = serde_json::Value),
        (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_report_json(
    State(state): State<AppState>,
    AdminCaller(_): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let report = jobs::report::json(&state.app, id).await?;
    let text = serde_json::to_string_pretty(&report).map_err(|_| ApiError::internal())?;
    Ok(download(id, "json", "application/json", text))
}

#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/report.csv", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, description = "CSV: section,name,value,user_id,email,old_external_id,new_external_id,current_external_id", content_type = "text/csv", body = String),
        (status = 404, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []), ("session" = []))
)]
async fn api_report_csv(
    State(state): State<AppState>,
    AdminCaller(_): AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let text = jobs::report::csv(&state.app, id).await?;
    Ok(download(id, "csv", "text/csv; charset=utf-8", text))
}

// --- pages ----------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct Flash {
    error: Option<String>,
    ok: Option<String>,
}

fn flash(query: &Flash) -> Markup {
    html! {
        @if let Some(error) = &query.error { (notice("error", error)) }
        @if let Some(ok) = &query.ok { (notice("ok", ok)) }
    }
}

fn state_badge(state: JobState) -> Markup {
    let class = match state {
        JobState::Succeeded => "s-linked",
        JobState::Failed => "s-conflict",
        JobState::AwaitingApproval => "s-missing_field",
        _ => "",
    };
    html! { span class={"badge " (class)} { (state.as_str()) } }
}

fn render_error(error: ApiError) -> Response {
    error.into_response()
}

async fn ui_list(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Query(query): Query<Flash>,
) -> Response {
    let listed = jobs::list(&state.app, None, None, None, 100).await;
    let sources = state.app.store.list_sources().await;
    let (listed, sources) = match (listed, sources) {
        (Ok(listed), Ok(sources)) => (listed, sources),
        (Err(e), _) => return render_error(e.into()),
        (_, Err(e)) => return render_error(e.into()),
    };
    let body = html! {
        (flash(&query))
        section.card {
            form.row method="post" action="/jobs" {
                (csrf_field(&session))
                label { "Source " select name="source" {
                    @for source in &sources { option value=(source.name) { (source.name) " (" (source.kind) ")" } }
                } }
                label { input type="checkbox" name="dry_run" value="on"; " dry run (fetch and plan only)" }
                button type="submit" { "Run pull" }
            }
        }
        table {
            thead { tr {
                th.num { "Job" } th { "Source" } th { "State" } th { "Phase" }
                th.num { "Accounts" } th.num { "Planned" } th.num { "Applied" }
                th { "Requested by" } th { "Created" }
            } }
            tbody {
                @for job in &listed {
                    tr {
                        td.num { a href={"/jobs/" (job.pk)} { (job.pk) } }
                        td { (job.source) @if job.dry_run { " " span.muted { "(dry run)" } } }
                        td { (state_badge(job.state)) @if job.undone_at.is_some() { " " span.muted { "undone" } } }
                        td { (job.progress.phase.as_deref().unwrap_or("-")) }
                        td.num { (job.progress.accounts_fetched) }
                        td.num { (job.progress.changes_planned) }
                        td.num { (job.progress.changes_applied) }
                        td { (job.requested_by) }
                        td.mono { (rfc3339(job.created_at)) }
                    }
                }
            }
        }
        @if listed.is_empty() { p.muted { "No jobs yet: run a pull above, or from Sources › Pull User Data." } }
    };
    Html(page("Jobs", Nav::Jobs, &session, body).into_string()).into_response()
}

#[derive(Deserialize)]
struct StartForm {
    csrf: String,
    source: String,
    dry_run: Option<String>,
}

async fn ui_start(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Form(form): Form<StartForm>,
) -> Response {
    if let Err(e) = check_csrf(&session, &form.csrf) {
        return render_error(e);
    }
    let dry_run = form.dry_run.is_some();
    match jobs::start(
        &state.app,
        &form.source,
        dry_run,
        &session.principal,
        clock::now(),
    )
    .await
    {
        Ok(job) => Redirect::to(&format!("/jobs/{}", job.pk)).into_response(),
        Err(e) => Redirect::to(&format!(
            "/jobs?error={}",
            super::auth::urlencode(&e.to_string())
        ))
        .into_response(),
    }
}

fn polls(job: &Job) -> bool {
    matches!(job.state, JobState::Queued | JobState::Running)
}

/// The live part of a job page: polled every second while the job is queued or running.
fn progress_fragment(job: &Job) -> Markup {
    let p = &job.progress;
    let url = format!("/jobs/{}/progress", job.pk);
    html! {
        div #job-progress data-run-state=(job.state.as_str()) hx-get=[polls(job).then_some(url.as_str())] hx-trigger=[polls(job).then_some("every 1s")] hx-swap="outerHTML" {
            p {
                (state_badge(job.state))
                @if let Some(phase) = &p.phase { " phase " strong { (phase) } }
                @if job.cancel_requested && job.state == JobState::Running { " " span.muted { "(stopping: cancel requested)" } }
            }
            dl.facts {
                dt { "Pages fetched" } dd { (p.pages) }
                dt { "Accounts fetched" } dd { (p.accounts_fetched) }
                dt { "Users planned" } dd { (p.users_planned) }
                dt { "Changes planned" } dd { (p.changes_planned) }
                dt { "Changes applied" } dd { (p.changes_applied) }
            }
            @if p.phase.as_deref() == Some("apply") && p.changes_planned > 0 {
                progress max=(p.changes_planned) value=(p.changes_applied) { (p.changes_applied) }
            }
        }
    }
}

async fn ui_progress(
    State(state): State<AppState>,
    AdminPage(_): AdminPage,
    Path(id): Path<String>,
) -> Response {
    let job = match job_id(&id) {
        Ok(id) => jobs::get(&state.app, id).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match job {
        Ok(job) => {
            let mut response = Html(progress_fragment(&job).into_string()).into_response();
            if !polls(&job) {
                // The job stopped: reload the page for its report and actions.
                response.headers_mut().insert(
                    HeaderName::from_static("hx-refresh"),
                    HeaderValue::from_static("true"),
                );
            }
            response
        }
        Err(e) => render_error(e),
    }
}

fn action_form(session: &Session, job: i64, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action={"/jobs/" (job) "/" (action)} {
            (csrf_field(session))
            button type="submit" class=(class) { (label) }
        }
    }
}

async fn ui_show(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path(id): Path<String>,
    Query(query): Query<Flash>,
) -> Response {
    let job = match job_id(&id) {
        Ok(id) => jobs::get(&state.app, id).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let job = match job {
        Ok(job) => job,
        Err(e) => return render_error(e),
    };
    let report = job
        .report
        .as_ref()
        .and_then(|v| PullReport::deserialize(v).ok());
    let undo: Option<jobs::UndoReport> = job
        .undo_report
        .as_ref()
        .and_then(|v| jobs::UndoReport::deserialize(v).ok());
    let body = html! {
        (flash(&query))
        section.card {
            dl.facts {
                dt { "Source" } dd { (job.source) }
                dt { "Kind" } dd { (job.kind) @if job.dry_run { " (dry run: nothing is stored or written)" } }
                dt { "Requested by" } dd { (job.requested_by) " at " span.mono { (rfc3339(job.created_at)) } }
                @if let Some(at) = job.finished_at { dt { "Finished" } dd.mono { (rfc3339(at)) } }
                @if job.attempts > 1 { dt { "Attempts" } dd { (job.attempts) " (taken over after its process stopped)" } }
                @if let Some(by) = &job.decided_by { dt { "Decided by" } dd { (by)
                    @if let Some(n) = job.approved_changes { " (approved " (n) " changes)" } @else { " (rejected)" } } }
                @if let Some(error) = &job.error { dt { "Error" } dd { (notice("error", error)) } }
            }
            (progress_fragment(&job))
            p.row {
                @if job.state == JobState::AwaitingApproval {
                    (action_form(&session, job.pk, "approve", "Approve and apply", ""))
                    (action_form(&session, job.pk, "reject", "Reject", "danger"))
                }
                @if job.state.is_active() { (action_form(&session, job.pk, "cancel", "Cancel", "secondary")) }
                @if !job.state.is_active() && !job.dry_run && job.undone_at.is_none() && job.progress.changes_applied > 0 {
                    (action_form(&session, job.pk, "undo", "Undo this job's changes", "danger"))
                }
                a.button.secondary href={"/api/v1/jobs/" (job.pk) "/report.csv"} { "Report (CSV)" }
                a.button.secondary href={"/api/v1/jobs/" (job.pk) "/report.json"} { "Report (JSON)" }
            }
        }
        @if let Some(report) = &report {
            @if report.safeguard.held && job.state == JobState::AwaitingApproval {
                (notice("warn", &format!(
                    "Held by the mass-change safeguard: {} changes are {:.1}% of {} users, above the {}% threshold. Review the plan, then approve or reject.",
                    report.planned, report.safeguard.share_percent, report.users, report.safeguard.threshold_percent)))
            }
            h2 { "Report" }
            section.card {
                dl.facts {
                    dt { "Fetched" } dd { (report.fetch.accounts) " accounts in " (report.fetch.pages) " pages"
                        @if !report.fetch.complete && report.fetch.pages > 0 { " — " strong { "incomplete" } } }
                    dt { "Stored" } dd { (report.store.inserted) " new, " (report.store.updated) " updated, " (report.store.unchanged) " unchanged; " (report.store.unseen) " no longer seen" }
                    dt { "Planned" } dd { (report.planned) " changes for " (report.users) " users (" (report.safeguard.share_percent) "%)" }
                    dt { "Applied" } dd { (report.applied) " External IDs written; " (report.conflicts.len()) " changed by someone else meanwhile" }
                    dt { "Duration" } dd { (report.duration_ms) " ms (fetch " (report.timings.fetch_ms) ", store " (report.timings.store_ms) ", plan " (report.timings.plan_ms) ", apply " (report.timings.apply_ms) ")" }
                }
                @for warning in &report.fetch.warnings { (notice("warn", warning)) }
                @if !report.summary.is_empty() {
                    table { thead { tr { th { "Situation" } th.num { "Users" } } }
                        tbody { @for (situation, count) in &report.summary {
                            tr { td { (situation_badge(situation.as_str())) } td.num { (count) } }
                        } } }
                }
            }
            @if !report.planned_sample.is_empty() {
                h2 { "Planned changes (first " (report.planned_sample.len()) ")" }
                table { thead { tr { th { "User" } th { "E-mail" } th { "New External ID" } } }
                    tbody { @for change in &report.planned_sample {
                        tr { td { (change.user_id) } td { (change.email.as_deref().unwrap_or("")) } td.mono { (change.new) } }
                    } } }
            }
        }
        @if let Some(undo) = &undo {
            h2 { "Undo" }
            section.card {
                p { "Undone by " (job.undone_by.as_deref().unwrap_or("?")) ": " (undo.reverted) " of " (undo.changes) " External IDs reverted; " (undo.kept.len()) " left alone because they changed since." }
                @if !undo.kept.is_empty() {
                    table { thead { tr { th { "User" } th { "Job wrote" } th { "Now" } th { "Why kept" } } }
                        tbody { @for kept in &undo.kept {
                            tr { td { (kept.user_id) } td.mono { (kept.job_value.as_deref().unwrap_or("")) } td.mono { (kept.current.as_deref().unwrap_or("(none)")) } td { (kept.reason) } }
                        } } }
                }
            }
        }
    };
    let title = format!("Job {}", job.pk);
    Html(page(&title, Nav::Jobs, &session, body).into_string()).into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn ui_action(
    State(state): State<AppState>,
    AdminPage(session): AdminPage,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_csrf(&session, &form.csrf) {
        return render_error(e);
    }
    let id = match job_id(&id) {
        Ok(id) => id,
        Err(e) => return render_error(e),
    };
    let (actor, at, app) = (&session.principal, clock::now(), &state.app);
    let done = match action.as_str() {
        "cancel" => jobs::cancel(app, id, actor, at)
            .await
            .map(|_| "cancel requested".to_owned()),
        "approve" => jobs::approve(app, id, actor, at)
            .await
            .map(|_| "approved: the job applies its plan now".to_owned()),
        "reject" => jobs::reject(app, id, actor, at)
            .await
            .map(|_| "rejected: nothing was applied".to_owned()),
        "undo" => jobs::undo(app, id, actor, at).await.map(|report| {
            format!(
                "undone: {} of {} External IDs reverted, {} left alone",
                report.reverted,
                report.changes,
                report.kept.len()
            )
        }),
        other => {
            return render_error(ApiError::not_found(format!(
                "no job action '{other}': use cancel, approve, reject or undo"
            )))
        }
    };
    let (key, text) = match done {
        Ok(text) => ("ok", text),
        Err(e) => ("error", e.to_string()),
    };
    Redirect::to(&format!(
        "/jobs/{id}?{key}={}",
        super::auth::urlencode(&text)
    ))
    .into_response()
}
