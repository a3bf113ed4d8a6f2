//! Pull jobs (DESIGN §4.3): fetch a source's accounts → store them → plan → safeguard →
//! apply → report, as a row in the store that any process can run.
//!
//! - `mod.rs` (this file): the application functions the CLI, the API and the UI call:
//!   start, list, show, cancel, approve, reject, undo, schedule.
//! - `pull.rs`: one job's phases, reusing the store's safe apply.
//! - `runner.rs`: claiming a job's lease, the heartbeat, and the background runner of
//!   `tether serve` (queued and scheduled jobs).
//! - `undo.rs`, `report.rs`: reverting a finished job, and its report as JSON and CSV.
//! - `cli.rs`: the `pull` and `jobs` commands.
//!
//! **One job per source**, across processes: the store refuses a second active job
//! (`jobs_one_active_per_source`) and hands a job's lease to one runner at a time.
//!
//! **A runner that dies** (kill, crash, lost host) stops renewing its lease. Once the lease
//! expires, the next runner to poll takes the job over and runs it again from the start:
//! fetching and storing accounts are upserts, the plan is recomputed from the store, and the
//! apply writes an External ID only where it still holds what the new plan saw, so a re-run
//! converges and never duplicates a link. A job taken over more than [`MAX_ATTEMPTS`] times
//! fails with a clear error instead of looping.
//!
//! This module reads no clock itself: callers pass `at`, and the runner gets a clock function.

pub mod cli;
mod pull;
pub mod report;
pub mod runner;
mod undo;

use crate::app::App;
use crate::error::{AppError, AppResult};
use tether_store::jobs::{Job, JobDecision, JobFilter, JobState, JobStore, NewJob, Schedule};
use tether_store::Timestamp;

pub use undo::UndoReport;

/// A job started more than this many times (its process died each time) fails.
pub const MAX_ATTEMPTS: u32 = 3;

/// The default lease: a runner renews it every third of this; a job whose runner stopped is
/// taken over this long after its last heartbeat.
pub const DEFAULT_LEASE_SECONDS: i64 = 30;

/// The lease duration: `TETHER_JOB_LEASE_SECONDS` (tests make it short), else the default.
pub fn lease_seconds() -> i64 {
    std::env::var("TETHER_JOB_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= 1)
        .unwrap_or(DEFAULT_LEASE_SECONDS)
}

/// Enqueues a pull of `source` (by name). A source with an active job is refused
/// (`Conflict`, naming that job). The Pull User Data page, `POST /api/v1/jobs` and
/// `tether pull` all start jobs here.
pub async fn start(
    app: &App,
    source: &str,
    dry_run: bool,
    actor: &str,
    at: Timestamp,
) -> AppResult<Job> {
    let source = app.source(Some(source)).await?;
    Ok(app
        .store
        .insert_job(&NewJob {
            source_pk: source.pk,
            dry_run,
            requested_by: actor.to_owned(),
            at,
        })
        .await?)
}

/// One job by id.
pub async fn get(app: &App, job: i64) -> AppResult<Job> {
    Ok(app.store.get_job(job).await?)
}

/// Jobs, newest first; optionally one source's, or those in one state.
pub async fn list(
    app: &App,
    source: Option<&str>,
    state: Option<JobState>,
    before: Option<i64>,
    limit: u32,
) -> AppResult<Vec<Job>> {
    let source_pk = match source {
        Some(name) => Some(app.source(Some(name)).await?.pk),
        None => None,
    };
    Ok(app
        .store
        .list_jobs(&JobFilter {
            source_pk,
            state,
            before_pk: before,
            limit: limit.clamp(1, 1_000),
        })
        .await?)
}

/// Cancels a queued or held job at once, or asks a running one to stop at its next page or
/// batch (what it applied so far stays, and can be undone).
pub async fn cancel(app: &App, job: i64, actor: &str, at: Timestamp) -> AppResult<Job> {
    Ok(app.store.cancel_job(job, actor, at).await?)
}

/// Approves a job held by the mass-change safeguard: it is queued again and applies its plan
/// (re-planned from the stored accounts) as long as it makes no more changes than were shown.
pub async fn approve(app: &App, job: i64, actor: &str, at: Timestamp) -> AppResult<Job> {
    let held = app.store.get_job(job).await?;
    Ok(app
        .store
        .decide_job(
            job,
            &JobDecision {
                approve: true,
                approved_changes: held.progress.changes_planned,
                by: actor,
                at,
            },
        )
        .await?)
}

/// Rejects a held job: it is cancelled and applies nothing.
pub async fn reject(app: &App, job: i64, actor: &str, at: Timestamp) -> AppResult<Job> {
    Ok(app
        .store
        .decide_job(
            job,
            &JobDecision {
                approve: false,
                approved_changes: 0,
                by: actor,
                at,
            },
        )
        .await?)
}

/// Reverts a finished job's changes where the External ID still holds the job's value; the
/// rest is listed in the returned report (also stored on the job).
pub async fn undo(app: &App, job: i64, actor: &str, at: Timestamp) -> AppResult<UndoReport> {
    undo::undo(app, job, actor, at).await
}

/// Sets a source's pull schedule: every `minutes` (first run one interval from `at`), or none.
pub async fn set_schedule(
    app: &App,
    source: &str,
    minutes: Option<u32>,
    at: Timestamp,
) -> AppResult<Schedule> {
    let source = app.source(Some(source)).await?;
    if minutes == Some(0) {
        return Err(AppError::Input(
            "schedule: the interval must be at least 1 minute (use `off` to stop)".to_owned(),
        ));
    }
    let next = minutes.map(|m| at + time::Duration::minutes(i64::from(m)));
    app.store.set_schedule(source.pk, minutes, next).await?;
    Ok(app.store.get_schedule(source.pk).await?)
}

/// The mass-change threshold (Settings › Security, default 20%).
pub async fn threshold_percent(app: &App) -> AppResult<u32> {
    use tether_store::admin::AdminStore;
    Ok(app
        .store
        .get_settings()
        .await?
        .mass_change_threshold_percent)
}
