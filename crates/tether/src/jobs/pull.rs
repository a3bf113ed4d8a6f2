//! One pull job's phases: fetch → store → plan → safeguard → apply → report.
//!
//! Every phase is safe to run again: storing accounts is an upsert, the plan is recomputed
//! from the store, and the apply goes through `Store::apply_batch`, which writes an External
//! ID only where it still holds what the plan saw. That is what lets a runner take over a job
//! whose process died and simply run it again from the start.
//!
//! The phases check the cancel flag between pages and between batches, and stop at once when
//! the heartbeat reports the lease lost (another runner owns the job then).

use super::report::{Conflict, PlannedChange, PullReport};
use crate::app::{App, APPLY_BATCH};
use crate::clock::Stopwatch;
use crate::error::{AppError, AppResult};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tether_core::{plan_links, AccountRow, ChangeResult, Origin, Outcome, Rules, Situation};
use tether_sources::{Page, ProgressCounter, SourceError};
use tether_store::jobs::{Job, JobProgress, JobState, JobStore};
use tether_store::{ApplyBatch, NewAccount, NewRun, RunFinish, Source, Store, Timestamp};

/// A clock: the runner passes `crate::clock::now`; nothing here reads the clock itself.
pub type Clock = fn() -> Timestamp;

/// What a running job shares with its heartbeat.
#[derive(Default)]
pub struct Live {
    /// Someone asked to cancel (set by the heartbeat from the job row).
    pub cancel: AtomicBool,
    /// Another runner owns the job now: stop without writing anything more.
    pub lost: AtomicBool,
    pub progress: Mutex<JobProgress>,
    pub fetched: ProgressCounter,
}

impl Live {
    pub fn snapshot(&self) -> JobProgress {
        let mut progress = self.progress.lock().map(|p| p.clone()).unwrap_or_default();
        if progress.phase.as_deref() == Some("fetch") {
            let fetched = self.fetched.get();
            progress.pages = fetched.pages;
            progress.accounts_fetched = fetched.accounts;
        }
        progress
    }

    fn update(&self, change: impl FnOnce(&mut JobProgress)) {
        if let Ok(mut progress) = self.progress.lock() {
            change(&mut progress);
        }
    }

    fn phase(&self, phase: &str) {
        let fetched = self.fetched.get();
        self.update(|p| {
            if p.phase.as_deref() == Some("fetch") {
                p.pages = fetched.pages;
                p.accounts_fetched = fetched.accounts;
            }
            p.phase = Some(phase.to_owned());
        });
    }
}

/// How a job's run ended.
pub enum Ended {
    /// Write this state and report.
    Finish {
        state: JobState,
        error: Option<String>,
        report: Box<PullReport>,
    },
    /// The lease was lost: the new owner writes the result.
    Lost,
}

/// Why the phases stopped early.
enum Stop {
    Cancelled,
    Lost,
    Failed(String),
}

impl From<AppError> for Stop {
    fn from(error: AppError) -> Self {
        Stop::Failed(error.to_string())
    }
}

impl From<tether_store::StoreError> for Stop {
    fn from(error: tether_store::StoreError) -> Self {
        Stop::Failed(error.to_string())
    }
}

fn check(live: &Live) -> Result<(), Stop> {
    if live.lost.load(Ordering::SeqCst) {
        Err(Stop::Lost)
    } else if live.cancel.load(Ordering::SeqCst) {
        Err(Stop::Cancelled)
    } else {
        Ok(())
    }
}

/// Changes written per transaction: `TETHER_JOB_BATCH_SIZE` (the fault tests make batches
/// small so a kill lands mid-apply), else the reconcile default.
fn batch_size() -> usize {
    std::env::var("TETHER_JOB_BATCH_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|v| *v >= 1)
        .unwrap_or(APPLY_BATCH)
}

/// Runs a claimed job's phases and says how it ended.
pub async fn run(app: &App, job: &Job, live: &Live, clock: Clock) -> Ended {
    let watch = Stopwatch::start();
    let mut report = PullReport::start(job);
    if job.attempts > super::MAX_ATTEMPTS {
        report.error = Some(format!(
            "the job was started {} times and its process stopped each time; giving up",
            job.attempts - 1
        ));
        report.duration_ms = watch.elapsed_ms();
        return Ended::Finish {
            state: JobState::Failed,
            error: report.error.clone(),
            report: Box::new(report),
        };
    }
    let result = phases(app, job, live, clock, &mut report).await;
    report.duration_ms = watch.elapsed_ms();
    let (state, error) = match result {
        Ok(state) => (state, None),
        Err(Stop::Lost) => return Ended::Lost,
        Err(Stop::Cancelled) => (JobState::Cancelled, None),
        Err(Stop::Failed(message)) => (JobState::Failed, Some(message)),
    };
    report.state = state.as_str().to_owned();
    report.error = error.clone();
    live.phase("report");
    Ended::Finish {
        state,
        error,
        report: Box::new(report),
    }
}

async fn phases(
    app: &App,
    job: &Job,
    live: &Live,
    clock: Clock,
    report: &mut PullReport,
) -> Result<JobState, Stop> {
    let source = app.source(Some(&job.source)).await?;
    report.field = source.external_id_field;
    if job.attempts > 1 {
        // A takeover (or the run after an approval): close what an earlier attempt left open.
        app.store.fail_unfinished_runs(job.pk, clock()).await?;
    }
    let approved = job.approved_changes;

    // After an approval the accounts are already stored: plan and apply only.
    let fetched = match approved {
        Some(_) => {
            report.carry_fetch_from(job.report.as_ref());
            None
        }
        None => Some(fetch_and_store(app, job, &source, live, clock, report).await?),
    };
    check(live)?;

    // Plan.
    live.phase("plan");
    let watch = Stopwatch::start();
    let mut input = app
        .store
        .load_plan_input(source.pk, source.external_id_field)
        .await?;
    if job.dry_run {
        // A dry run stores nothing: it plans against the accounts just fetched.
        input.accounts = fetched
            .unwrap_or_default()
            .into_iter()
            .zip(1_i64..)
            .map(|(account, pk)| account_row(account, pk))
            .collect();
    }
    let rules = Rules {
        field: source.external_id_field,
        link_inactive: source.link_inactive,
    };
    let plan = plan_links(&input.users, &input.accounts, &rules);
    report.users = input.users.len() as u64;
    report.accounts = input.accounts.len() as u64;
    report.summary = plan.summary();
    report.planned = plan.changes.len() as u64;
    report.timings.plan_ms = watch.elapsed_ms();
    live.update(|p| {
        p.users_planned = report.users;
        p.changes_planned = report.planned;
    });
    check(live)?;

    // Safeguard.
    live.phase("safeguard");
    let threshold = super::threshold_percent(app).await?;
    let share = if report.users == 0 {
        0.0
    } else {
        report.planned as f64 * 100.0 / report.users as f64
    };
    report.safeguard.threshold_percent = threshold;
    report.safeguard.share_percent = (share * 100.0).round() / 100.0;
    report.safeguard.approved_changes = approved;
    report.safeguard.decided_by = job.decided_by.clone();
    if job.dry_run {
        return Ok(JobState::Succeeded);
    }
    let hold = match approved {
        // The admin saw this many changes; a plan that grew since needs a new look.
        Some(approved) => report.planned > approved,
        None => share > f64::from(threshold),
    };
    if hold {
        report.safeguard.held = true;
        report.planned_sample = sample(app, &plan.changes).await?;
        return Ok(JobState::AwaitingApproval);
    }

    // Apply.
    live.phase("apply");
    let watch = Stopwatch::start();
    let at = clock();
    let run_pk = app
        .store
        .insert_job_run(
            job.pk,
            &NewRun {
                source_pk: source.pk,
                kind: "pull".to_owned(),
                dry_run: false,
                external_id_field: source.external_id_field,
                actor: job.requested_by.clone(),
                started_at: at,
            },
        )
        .await?;
    report.run = Some(run_pk);
    let diffs = outcome_diffs(&plan.outcomes, &input.stored);
    let size = batch_size();
    let batches = plan.changes.len().max(diffs.len()).div_ceil(size);
    let mut result = Ok(());
    for n in 0..batches {
        if let Err(stop) = check(live) {
            result = Err(stop);
            break;
        }
        let changes = chunk(&plan.changes, n, size);
        let outcomes = chunk(&diffs, n, size);
        let batch = ApplyBatch {
            source_pk: source.pk,
            run_pk,
            origin: Origin::Pull,
            actor: &job.requested_by,
            at: clock(),
            changes,
            outcomes,
        };
        match app.store.apply_batch(&batch).await {
            Ok(results) => {
                for (change, outcome) in changes.iter().zip(results) {
                    match outcome {
                        ChangeResult::Applied => report.applied += 1,
                        ChangeResult::AlreadySet => {}
                        other => report.conflicts.push(Conflict {
                            user_pk: change.user_pk,
                            planned: change.new.clone(),
                            result: format!("{other:?}"),
                        }),
                    }
                }
                let applied = report.applied;
                live.update(|p| p.changes_applied = applied);
            }
            Err(e) => {
                result = Err(Stop::Failed(e.to_string()));
                break;
            }
        }
    }
    report.timings.apply_ms = watch.elapsed_ms();
    let state = match &result {
        Ok(()) => "succeeded",
        Err(Stop::Cancelled) => "cancelled",
        Err(_) => "failed",
    };
    // A lost lease still closes the run this process opened.
    app.store
        .finish_run(
            run_pk,
            &RunFinish {
                finished_at: clock(),
                state: state.to_owned(),
                summary: serde_json::json!({
                    "job": job.pk,
                    "summary": report.summary,
                    "planned": report.planned,
                    "conflicts": report.conflicts.len(),
                    "users": report.users,
                    "accounts": report.accounts,
                }),
                applied: report.applied,
            },
        )
        .await?;
    result.map(|()| JobState::Succeeded)
}

/// Fetches every page, then stores the accounts in one transaction (a kill mid-fetch stores
/// nothing) and, after a complete fetch, marks the accounts it did not return as not seen.
/// Returns the fetched accounts (a dry run plans against them).
async fn fetch_and_store(
    app: &App,
    job: &Job,
    source: &Source,
    live: &Live,
    clock: Clock,
    report: &mut PullReport,
) -> Result<Vec<NewAccount>, Stop> {
    live.phase("fetch");
    let watch = Stopwatch::start();
    let remote = super::runner::connect(app, source).await?;
    let pages: Mutex<Vec<NewAccount>> = Mutex::new(Vec::new());
    let sink = |page: Page| -> Result<(), SourceError> {
        live.fetched.record(&page);
        if live.lost.load(Ordering::SeqCst) {
            return Err(SourceError::Cancelled);
        }
        pages
            .lock()
            .map_err(|_| SourceError::Remote("page buffer poisoned".to_owned()))?
            .extend(page.accounts);
        Ok(())
    };
    let fetched = remote.fetch(&sink, &live.cancel).await;
    drop(remote);
    let fetch_report = match fetched {
        Ok(fetch_report) => fetch_report,
        Err(SourceError::Cancelled) => {
            check(live)?;
            return Err(Stop::Cancelled);
        }
        Err(e) => return Err(Stop::Failed(format!("fetching from {}: {e}", source.name))),
    };
    let counted = live.fetched.get();
    live.update(|p| {
        p.pages = counted.pages;
        p.accounts_fetched = counted.accounts;
    });
    let accounts = pages.into_inner().unwrap_or_default();
    report.fetch.pages = fetch_report.pages.max(counted.pages);
    report.fetch.accounts = accounts.len() as u64;
    report.fetch.complete = fetch_report.complete;
    report.fetch.warnings = fetch_report.warnings;
    report.timings.fetch_ms = watch.elapsed_ms();
    check(live)?;

    // The same account can come twice (e.g. a search by prefix): the last copy wins.
    let mut seen = HashSet::with_capacity(accounts.len());
    let mut unique: Vec<NewAccount> = accounts
        .into_iter()
        .rev()
        .filter(|a| seen.insert(a.account_id.clone()))
        .collect();
    unique.reverse();
    report.fetch.duplicates = report.fetch.accounts - unique.len() as u64;
    if job.dry_run {
        return Ok(unique);
    }

    live.phase("store");
    let watch = Stopwatch::start();
    let summary = app
        .store
        .import_accounts(source.pk, &unique, clock())
        .await?;
    report.store.inserted = summary.inserted;
    report.store.updated = summary.updated;
    report.store.unchanged = summary.unchanged;
    if fetch_report.complete {
        let marking = Stopwatch::start();
        let ids: Vec<String> = unique.iter().map(|a| a.account_id.clone()).collect();
        let seen = app.store.mark_accounts_seen(source.pk, &ids).await?;
        report.timings.mark_seen_ms = marking.elapsed_ms();
        report.store.unseen = seen.unseen;
        report.store.seen_again = seen.seen_again;
    } else {
        report.fetch.warnings.push(
            "the directory could not be read completely: accounts it did not return are kept as seen"
                .to_owned(),
        );
    }
    report.timings.store_ms = watch.elapsed_ms();
    Ok(Vec::new())
}

/// Outcomes as they will stand after the run (a new link is stored as linked), only those
/// that differ from the stored ones: the rule `App::reconcile` follows.
fn outcome_diffs(
    outcomes: &[Outcome],
    stored: &[Option<tether_store::StoredOutcome>],
) -> Vec<Outcome> {
    let mut diffs = Vec::new();
    for (outcome, stored) in outcomes.iter().zip(stored) {
        if outcome.situation == Situation::NewLink {
            continue;
        }
        let evidence = outcome.evidence.encode();
        let same = stored
            .as_ref()
            .is_some_and(|s| s.situation == outcome.situation && s.evidence == evidence);
        if !same {
            diffs.push(outcome.clone());
        }
    }
    diffs
}

/// The first planned changes with the users' ids, for the approval screen.
async fn sample(app: &App, changes: &[tether_core::Change]) -> AppResult<Vec<PlannedChange>> {
    let first: Vec<&tether_core::Change> = changes.iter().take(100).collect();
    let pks: Vec<i64> = first.iter().map(|c| c.user_pk).collect();
    let users = app.store.get_users_by_pk(&pks).await?;
    Ok(first
        .iter()
        .zip(users.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(change, user)| PlannedChange {
            user_id: user
                .filter(|u| u.pk == change.user_pk)
                .map(|u| u.id.clone())
                .unwrap_or_default(),
            email: user
                .filter(|u| u.pk == change.user_pk)
                .and_then(|u| u.email.clone()),
            new: change.new.clone(),
        })
        .collect())
}

fn chunk<T>(items: &[T], n: usize, size: usize) -> &[T] {
    let start = (n * size).min(items.len());
    let end = ((n + 1) * size).min(items.len());
    &items[start..end]
}

fn account_row(account: NewAccount, pk: i64) -> AccountRow {
    AccountRow {
        pk,
        account_id: account.account_id,
        username: account.username,
        key: account.key,
        email: account.email,
        email_key: account.email_key,
        active: account.active,
        account_type: account.account_type,
    }
}
