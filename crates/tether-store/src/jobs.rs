//! The `jobs` units of work: trait, records, and the dispatch for [`crate::AnyStore`].
//!
//! A pull job is a row with a state, progress counters, a lease and a report. The database
//! enforces one active job (queued, running or awaiting approval) per source with a partial
//! unique index, so two processes can never both start one; a runner takes a job by claiming
//! its lease in one statement (`UPDATE … RETURNING`; on PostgreSQL the candidate row is picked
//! `FOR UPDATE SKIP LOCKED`), renews it with heartbeats, and a job whose lease expired is
//! claimed again by any runner (a takeover). Every write checks the lease owner, so a runner
//! that lost its lease cannot overwrite the new owner's progress or result.
//!
//! A job's External ID changes are the audit rows of its runs (`runs.job_pk`): they are
//! written in the same transaction as the changes themselves, so they are exact after a crash.

use crate::{AnyStore, NewRun, Result, Timestamp};
use serde::Serialize;
use std::future::Future;
use std::str::FromStr;

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    AwaitingApproval,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: &'static [JobState] = &[
        JobState::Queued,
        JobState::Running,
        JobState::AwaitingApproval,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::AwaitingApproval => "awaiting_approval",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Queued, running or awaiting approval: the source has its one job.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Running | JobState::AwaitingApproval
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = crate::StoreError;
    fn from_str(text: &str) -> Result<Self> {
        JobState::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("unknown job state '{text}'")))
    }
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub source_pk: i64,
    pub dry_run: bool,
    /// Who asked: `cli:alice`, `admin:bob`, `token:okta`, `schedule`.
    pub requested_by: String,
    pub at: Timestamp,
}

/// Progress of a running job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobProgress {
    /// `fetch`, `store`, `plan`, `safeguard`, `apply`, `report`.
    pub phase: Option<String>,
    pub pages: u64,
    pub accounts_fetched: u64,
    pub users_planned: u64,
    pub changes_planned: u64,
    pub changes_applied: u64,
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    #[serde(rename = "id")]
    pub pk: i64,
    #[serde(skip)]
    pub source_pk: i64,
    /// The source's name.
    pub source: String,
    pub kind: String,
    pub dry_run: bool,
    pub state: JobState,
    pub progress: JobProgress,
    pub requested_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
    /// The report (JSON), once the job stopped or was held for approval.
    pub report: Option<serde_json::Value>,
    pub cancel_requested: bool,
    /// How many changes an admin approved; `None` until a held job is approved.
    pub approved_changes: Option<u64>,
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<Timestamp>,
    pub attempts: u32,
    pub lease_owner: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_expires_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub undone_at: Option<Timestamp>,
    pub undone_by: Option<String>,
    pub undo_report: Option<serde_json::Value>,
}

/// Which jobs to list (newest first).
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub source_pk: Option<i64>,
    pub state: Option<JobState>,
    pub before_pk: Option<i64>,
    pub limit: u32,
}

/// A runner's request for a job's lease.
#[derive(Clone, Debug)]
pub struct JobClaim<'a> {
    /// Only this job (the CLI runs the job it enqueued); `None`: the oldest runnable one.
    pub job_pk: Option<i64>,
    /// Who holds the lease: a unique name per runner (host, process, random).
    pub owner: &'a str,
    pub now: Timestamp,
    pub lease_expires_at: Timestamp,
}

/// What a heartbeat or progress write found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Still ours; whether someone asked to cancel.
    Held { cancel_requested: bool },
    /// Another runner took the job over, or it is no longer running: stop at once.
    Lost,
}

/// How a runner ends its hold of a job.
#[derive(Clone, Debug)]
pub struct JobFinish<'a> {
    pub owner: &'a str,
    /// `succeeded`, `failed`, `cancelled`, or `awaiting_approval` (held by the safeguard).
    pub state: JobState,
    pub progress: &'a JobProgress,
    pub error: Option<&'a str>,
    pub report: &'a serde_json::Value,
    pub at: Timestamp,
}

/// An admin's decision on a job held for approval.
#[derive(Clone, Debug)]
pub struct JobDecision<'a> {
    pub approve: bool,
    /// With `approve`: the number of changes the admin saw (the job applies at most that).
    pub approved_changes: u64,
    pub by: &'a str,
    pub at: Timestamp,
}

/// One External ID change a job made (or an undo of one), from the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobChange {
    pub audit_pk: i64,
    #[serde(skip)]
    pub user_pk: i64,
    /// The user's id; empty when the user no longer exists.
    pub user_id: String,
    pub email: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    /// `new_link` (the job's change) or `undo`.
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// The user's External ID now.
    pub current: Option<String>,
}

/// Undoes a batch of a job's changes.
#[derive(Clone, Debug)]
pub struct UndoBatch<'a> {
    /// The undo's own run (kind `undo`, with the job's key).
    pub run_pk: i64,
    pub actor: &'a str,
    pub at: Timestamp,
    /// `new_link` changes of the job.
    pub changes: &'a [JobChange],
}

/// What undoing one change did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum UndoResult {
    /// The External ID held the job's value and now holds the one before it again.
    Reverted,
    /// Someone changed the External ID since (or the user is now excluded): left alone.
    Changed { current: Option<String> },
    /// The user no longer exists.
    Gone,
}

/// A source's pull schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// Minutes between pulls; `None`: no schedule.
    pub every_minutes: Option<u32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run_at: Option<Timestamp>,
}

/// What marking a complete pull's accounts did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeenSummary {
    /// Accounts the pull did not return, now marked not seen (not used for matching).
    pub unseen: u64,
    /// Accounts marked not seen before that the pull returned again.
    pub seen_again: u64,
}

/// The constraint that refuses a second active job for one source.
pub const ONE_ACTIVE_JOB: &str = "jobs_one_active_per_source";

/// Units of work of pull jobs. Every method runs in one transaction.
pub trait JobStore: Send + Sync {
    /// Enqueues a job; a source with an active job is
    /// `Conflict { constraint: "jobs_one_active_per_source" }`, a missing source `NotFound`.
    fn insert_job(&self, job: &NewJob) -> impl Future<Output = Result<Job>> + Send;
    /// The job, or `NotFound`.
    fn get_job(&self, job_pk: i64) -> impl Future<Output = Result<Job>> + Send;
    /// The source's queued, running or held job.
    fn find_active_job(&self, source_pk: i64) -> impl Future<Output = Result<Option<Job>>> + Send;
    fn list_jobs(&self, filter: &JobFilter) -> impl Future<Output = Result<Vec<Job>>> + Send;
    /// Takes the lease of the oldest queued job, or of a running job whose lease expired
    /// before `now` (a takeover): state `running`, `attempts` + 1. `None` when there is none.
    fn claim_job(&self, claim: &JobClaim<'_>) -> impl Future<Output = Result<Option<Job>>> + Send;
    /// Renews the lease if `owner` still holds it.
    fn heartbeat_job(
        &self,
        job_pk: i64,
        owner: &str,
        lease_expires_at: Timestamp,
        at: Timestamp,
    ) -> impl Future<Output = Result<Lease>> + Send;
    /// Writes progress if `owner` still holds the lease.
    fn update_job_progress(
        &self,
        job_pk: i64,
        owner: &str,
        progress: &JobProgress,
        at: Timestamp,
    ) -> impl Future<Output = Result<Lease>> + Send;
    /// Ends the owner's hold: a final state, or `awaiting_approval`; the lease is released.
    /// `Lost` when `owner` no longer holds the lease (nothing written).
    fn finish_job(
        &self,
        job_pk: i64,
        finish: &JobFinish<'_>,
    ) -> impl Future<Output = Result<Lease>> + Send;
    /// Cancels a queued or held job at once; asks a running one to stop (its runner checks
    /// between pages and batches). A finished job is `Invalid`.
    fn cancel_job(
        &self,
        job_pk: i64,
        by: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<Job>> + Send;
    /// Approves (back to `queued`, to be applied) or rejects (`cancelled`) a held job; a job
    /// in any other state is `Invalid`.
    fn decide_job(
        &self,
        job_pk: i64,
        decision: &JobDecision<'_>,
    ) -> impl Future<Output = Result<Job>> + Send;
    /// Records a run made by a job and returns its key.
    fn insert_job_run(&self, job_pk: i64, run: &NewRun)
        -> impl Future<Output = Result<i64>> + Send;
    /// Closes the runs of a job that a dead runner left open (state `failed`, finished at
    /// `at`); returns how many. A runner taking a job over calls it first.
    fn fail_unfinished_runs(
        &self,
        job_pk: i64,
        at: Timestamp,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// After a complete pull: marks the source's accounts not in `account_ids` not seen, and
    /// those in it seen (only rows that change are written). `account_ids` are accounts of
    /// the source (the pull has just stored them): when the source holds no others, nothing
    /// is unseen and the ids need not be compared one by one (the usual case).
    fn mark_accounts_seen(
        &self,
        source_pk: i64,
        account_ids: &[String],
    ) -> impl Future<Output = Result<SeenSummary>> + Send;
    /// The audit rows of the job's runs after `after_audit_pk`, oldest first, at most `limit`;
    /// `reason` limits them to `new_link` (the job's changes) or `undo`.
    fn list_job_changes(
        &self,
        job_pk: i64,
        reason: Option<&str>,
        after_audit_pk: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<JobChange>>> + Send;
    /// Reverts each change where the user's External ID still holds `new_value` (and the user
    /// is not excluded), with an audit row each (origin `manual`, reason `undo`).
    fn undo_changes(
        &self,
        batch: &UndoBatch<'_>,
    ) -> impl Future<Output = Result<Vec<UndoResult>>> + Send;
    /// Marks a finished job undone with its undo report; a job not finished or already undone
    /// is `Invalid`.
    fn mark_job_undone(
        &self,
        job_pk: i64,
        by: &str,
        at: Timestamp,
        report: &serde_json::Value,
    ) -> impl Future<Output = Result<Job>> + Send;
    /// Sets (or clears, with `None`) a source's pull schedule; the next run is due at `next`.
    fn set_schedule(
        &self,
        source_pk: i64,
        every_minutes: Option<u32>,
        next: Option<Timestamp>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn get_schedule(&self, source_pk: i64) -> impl Future<Output = Result<Schedule>> + Send;
    /// Enqueues a job for every source whose scheduled run is due at `now` and that has no
    /// active job, and moves each due source's next run to `now` + its interval.
    fn enqueue_due_jobs(
        &self,
        now: Timestamp,
        requested_by: &str,
    ) -> impl Future<Output = Result<Vec<Job>>> + Send;
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            AnyStore::Sqlite(store) => store.$method($($arg),*).await,
            AnyStore::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl JobStore for AnyStore {
    async fn insert_job(&self, job: &NewJob) -> Result<Job> {
        delegate!(self, insert_job(job))
    }
    async fn get_job(&self, job_pk: i64) -> Result<Job> {
        delegate!(self, get_job(job_pk))
    }
    async fn find_active_job(&self, source_pk: i64) -> Result<Option<Job>> {
        delegate!(self, find_active_job(source_pk))
    }
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        delegate!(self, list_jobs(filter))
    }
    async fn claim_job(&self, claim: &JobClaim<'_>) -> Result<Option<Job>> {
        delegate!(self, claim_job(claim))
    }
    async fn heartbeat_job(
        &self,
        job_pk: i64,
        owner: &str,
        lease_expires_at: Timestamp,
        at: Timestamp,
    ) -> Result<Lease> {
        delegate!(self, heartbeat_job(job_pk, owner, lease_expires_at, at))
    }
    async fn update_job_progress(
        &self,
        job_pk: i64,
        owner: &str,
        progress: &JobProgress,
        at: Timestamp,
    ) -> Result<Lease> {
        delegate!(self, update_job_progress(job_pk, owner, progress, at))
    }
    async fn finish_job(&self, job_pk: i64, finish: &JobFinish<'_>) -> Result<Lease> {
        delegate!(self, finish_job(job_pk, finish))
    }
    async fn cancel_job(&self, job_pk: i64, by: &str, at: Timestamp) -> Result<Job> {
        delegate!(self, cancel_job(job_pk, by, at))
    }
    async fn decide_job(&self, job_pk: i64, decision: &JobDecision<'_>) -> Result<Job> {
        delegate!(self, decide_job(job_pk, decision))
    }
    async fn insert_job_run(&self, job_pk: i64, run: &NewRun) -> Result<i64> {
        delegate!(self, insert_job_run(job_pk, run))
    }
    async fn fail_unfinished_runs(&self, job_pk: i64, at: Timestamp) -> Result<u64> {
        delegate!(self, fail_unfinished_runs(job_pk, at))
    }
    async fn mark_accounts_seen(
        &self,
        source_pk: i64,
        account_ids: &[String],
    ) -> Result<SeenSummary> {
        delegate!(self, mark_accounts_seen(source_pk, account_ids))
    }
    async fn list_job_changes(
        &self,
        job_pk: i64,
        reason: Option<&str>,
        after_audit_pk: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobChange>> {
        delegate!(
            self,
            list_job_changes(job_pk, reason, after_audit_pk, limit)
        )
    }
    async fn undo_changes(&self, batch: &UndoBatch<'_>) -> Result<Vec<UndoResult>> {
        delegate!(self, undo_changes(batch))
    }
    async fn mark_job_undone(
        &self,
        job_pk: i64,
        by: &str,
        at: Timestamp,
        report: &serde_json::Value,
    ) -> Result<Job> {
        delegate!(self, mark_job_undone(job_pk, by, at, report))
    }
    async fn set_schedule(
        &self,
        source_pk: i64,
        every_minutes: Option<u32>,
        next: Option<Timestamp>,
    ) -> Result<()> {
        delegate!(self, set_schedule(source_pk, every_minutes, next))
    }
    async fn get_schedule(&self, source_pk: i64) -> Result<Schedule> {
        delegate!(self, get_schedule(source_pk))
    }
    async fn enqueue_due_jobs(&self, now: Timestamp, requested_by: &str) -> Result<Vec<Job>> {
        delegate!(self, enqueue_due_jobs(now, requested_by))
    }
}
