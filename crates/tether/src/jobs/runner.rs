//! Running jobs: claiming a job's lease, the heartbeat that renews it (and carries progress
//! and cancel requests), and the background runner of `tether serve`.
//!
//! A claimed job runs as two futures joined in one task: the job's phases and its heartbeat.
//! Every 500 ms the heartbeat writes changed progress; every third of the lease it renews the
//! lease. Both writes come back with the row's cancel flag (which the phases check between
//! pages and batches) or with `Lost` when another runner has taken the job over, which stops
//! the phases without writing anything more.

use super::pull::{self, Clock, Ended, Live};
use crate::app::App;
use crate::clock::Stopwatch;
use crate::error::{AppError, AppResult};
use std::sync::atomic::Ordering;
use tether_store::jobs::{Job, JobClaim, JobFinish, JobProgress, JobStore, Lease};
use tether_store::Source;

/// Sees a running job's progress (the CLI draws a bar; the server needs nothing).
pub trait Observer: Send + Sync {
    fn progress(&self, _progress: &JobProgress) {}
}

/// Observes nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// A name for this runner, unique across processes and hosts: the lease owner.
pub fn owner_name(role: &str) -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    format!(
        "{role}@{host}:{}:{}",
        std::process::id(),
        hex::encode(random)
    )
}

/// Opens the remote directory (or file) of a source.
pub async fn connect(app: &App, source: &Source) -> AppResult<Box<dyn tether_sources::Source>> {
    let (settings, secret) = app.source_connection(source).await?;
    tether_sources::connect(&source.kind, &settings, secret)
        .map_err(|e| AppError::Input(format!("source {}: {e}", source.name)))
}

/// Claims `job_pk` (or, with `None`, the oldest queued job or one whose runner died) and runs
/// it to its end. `None` when there was nothing to claim.
pub async fn claim_and_run(
    app: &App,
    job_pk: Option<i64>,
    owner: &str,
    clock: Clock,
    observer: &dyn Observer,
) -> AppResult<Option<Job>> {
    let lease = time::Duration::seconds(super::lease_seconds());
    let now = clock();
    let claimed = app
        .store
        .claim_job(&JobClaim {
            job_pk,
            owner,
            now,
            lease_expires_at: now + lease,
        })
        .await?;
    match claimed {
        Some(job) => execute(app, job, owner, clock, observer).await.map(Some),
        None => Ok(None),
    }
}

async fn execute(
    app: &App,
    job: Job,
    owner: &str,
    clock: Clock,
    observer: &dyn Observer,
) -> AppResult<Job> {
    let live = Live::default();
    if job.cancel_requested {
        live.cancel.store(true, Ordering::SeqCst);
    }
    let done = tokio::sync::Notify::new();
    let work = async {
        let ended = pull::run(app, &job, &live, clock).await;
        done.notify_one();
        ended
    };
    let beat = heartbeat(app, &job, owner, &live, clock, &done, observer);
    let (ended, ()) = tokio::join!(work, beat);
    if let Ended::Finish {
        state,
        error,
        report,
    } = ended
    {
        let progress = live.snapshot();
        observer.progress(&progress);
        let lease = app
            .store
            .finish_job(
                job.pk,
                &JobFinish {
                    owner,
                    state,
                    progress: &progress,
                    error: error.as_deref(),
                    report: &report.to_json(),
                    at: clock(),
                },
            )
            .await?;
        if lease == Lease::Lost {
            tracing::warn!(
                job = job.pk,
                "the job was taken over before it finished here"
            );
        }
    }
    Ok(app.store.get_job(job.pk).await?)
}

async fn heartbeat(
    app: &App,
    job: &Job,
    owner: &str,
    live: &Live,
    clock: Clock,
    done: &tokio::sync::Notify,
    observer: &dyn Observer,
) {
    let lease_ms = (super::lease_seconds() * 1_000) as u64;
    let renew_every = (lease_ms / 3).max(200);
    let mut since_renewal = Stopwatch::start();
    let mut written: Option<JobProgress> = None;
    loop {
        tokio::select! {
            () = done.notified() => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(500.min(renew_every))) => {}
        }
        let progress = live.snapshot();
        observer.progress(&progress);
        let mut status = None;
        if written.as_ref() != Some(&progress) {
            match app
                .store
                .update_job_progress(job.pk, owner, &progress, clock())
                .await
            {
                Ok(lease) => {
                    status = Some(lease);
                    written = Some(progress);
                }
                Err(e) => tracing::warn!(job = job.pk, "writing progress: {e}"),
            }
        }
        if since_renewal.elapsed_ms() >= renew_every {
            let now = clock();
            let until = now + time::Duration::milliseconds(lease_ms as i64);
            match app.store.heartbeat_job(job.pk, owner, until, now).await {
                Ok(lease) => {
                    status = Some(lease);
                    since_renewal = Stopwatch::start();
                }
                Err(e) => tracing::warn!(job = job.pk, "renewing the lease: {e}"),
            }
        }
        match status {
            Some(Lease::Held { cancel_requested }) if cancel_requested => {
                live.cancel.store(true, Ordering::SeqCst);
            }
            Some(Lease::Lost) => {
                live.lost.store(true, Ordering::SeqCst);
                live.cancel.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// How often an idle runner looks for work: `TETHER_JOB_POLL_MS`, else one second.
fn poll_interval() -> std::time::Duration {
    let ms = std::env::var("TETHER_JOB_POLL_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v >= 10)
        .unwrap_or(1_000);
    std::time::Duration::from_millis(ms)
}

/// One background worker of `tether serve` (started by `web::jobs::start_background`, which
/// runs a few side by side): it enqueues the scheduled jobs that are due and runs one claimed
/// job at a time, so jobs of different sources run side by side and one source's never do.
pub async fn work(app: &App, clock: Clock) {
    let owner = owner_name("serve");
    loop {
        if let Err(e) = app.store.enqueue_due_jobs(clock(), "schedule").await {
            tracing::warn!("enqueuing scheduled jobs: {e}");
        }
        match claim_and_run(app, None, &owner, clock, &Quiet).await {
            Ok(Some(job)) => {
                tracing::info!(job = job.pk, source = %job.source, state = %job.state, "job stopped");
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("running a job: {e}"),
        }
        tokio::time::sleep(poll_interval()).await;
    }
}
