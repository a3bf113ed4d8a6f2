//! A job's report: what it fetched and stored, the situation counts of its plan, the
//! safeguard's numbers, what it applied, the source's warnings and errors, and timings.
//! Stored as JSON on the job; downloadable as JSON (with the job's changes) or CSV.

use crate::app::App;
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tether_core::{ExternalIdField, Situation};
use tether_store::jobs::{Job, JobChange, JobStore};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchSection {
    pub pages: u64,
    pub accounts: u64,
    /// Accounts returned more than once (the last copy is kept).
    pub duplicates: u64,
    /// False when part of the directory could not be read.
    pub complete: bool,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSection {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Accounts the pull no longer returned: kept, but not used for matching.
    pub unseen: u64,
    pub seen_again: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SafeguardSection {
    pub threshold_percent: u32,
    /// Planned changes as a share of all users, in percent.
    pub share_percent: f64,
    /// The job stopped for approval.
    pub held: bool,
    pub approved_changes: Option<u64>,
    pub decided_by: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    pub fetch_ms: u64,
    pub store_ms: u64,
    /// Of `store_ms`: marking the accounts a complete pull did not return.
    pub mark_seen_ms: u64,
    pub plan_ms: u64,
    pub apply_ms: u64,
}

/// A planned change lost to a concurrent writer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Conflict {
    pub user_pk: i64,
    pub planned: String,
    pub result: String,
}

/// A planned change, shown while the job waits for approval.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PlannedChange {
    pub user_id: String,
    pub email: Option<String>,
    pub new: String,
}

/// The report stored on a job.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PullReport {
    pub job: i64,
    pub source: String,
    pub field: ExternalIdField,
    pub dry_run: bool,
    pub state: String,
    pub attempts: u32,
    pub fetch: FetchSection,
    pub store: StoreSection,
    pub users: u64,
    pub accounts: u64,
    /// Users per situation, as planned.
    pub summary: BTreeMap<Situation, u64>,
    pub planned: u64,
    pub applied: u64,
    pub conflicts: Vec<Conflict>,
    pub safeguard: SafeguardSection,
    /// While held: the first planned changes.
    pub planned_sample: Vec<PlannedChange>,
    /// The run that applied the changes.
    pub run: Option<i64>,
    pub timings: Timings,
    pub duration_ms: u64,
    pub error: Option<String>,
}

impl PullReport {
    pub fn start(job: &Job) -> Self {
        PullReport {
            job: job.pk,
            source: job.source.clone(),
            dry_run: job.dry_run,
            state: job.state.as_str().to_owned(),
            attempts: job.attempts,
            ..PullReport::default()
        }
    }

    /// After an approval the job does not fetch again: keep what the first pass saw.
    pub fn carry_fetch_from(&mut self, earlier: Option<&serde_json::Value>) {
        if let Some(earlier) = earlier.and_then(|v| PullReport::deserialize(v).ok()) {
            self.fetch = earlier.fetch;
            self.store = earlier.store;
            self.timings.fetch_ms = earlier.timings.fetch_ms;
            self.timings.store_ms = earlier.timings.store_ms;
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Every change of a job (and every undo of one), oldest first.
pub async fn all_changes(app: &App, job: i64) -> AppResult<Vec<JobChange>> {
    let mut changes = Vec::new();
    let mut after = None;
    loop {
        let page = app.store.list_job_changes(job, None, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.audit_pk);
        changes.extend(page);
    }
    Ok(changes)
}

/// The downloadable report: the job, its stored report, and its changes.
pub async fn json(app: &App, job: i64) -> AppResult<serde_json::Value> {
    let job = app.store.get_job(job).await?;
    let changes = all_changes(app, job.pk).await?;
    Ok(serde_json::json!({
        "job": job,
        "changes": changes,
    }))
}

/// The report as one CSV table an admin can filter: `section,name,value` rows for the job,
/// the fetch, the situation counts, warnings and errors, then one `change` (or `undo`) row
/// per External ID written, with the user and the value it holds now.
pub async fn csv(app: &App, job: i64) -> AppResult<String> {
    let job = app.store.get_job(job).await?;
    let report = job
        .report
        .as_ref()
        .and_then(|v| PullReport::deserialize(v).ok())
        .unwrap_or_else(|| PullReport::start(&job));
    let changes = all_changes(app, job.pk).await?;
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let io = |e: ::csv::Error| AppError::Io(e.to_string());
    writer
        .write_record([
            "section",
            "name",
            "value",
            "user_id",
            "email",
            "old_external_id",
            "new_external_id",
            "current_external_id",
        ])
        .map_err(io)?;
    let mut row = |section: &str, name: &str, value: String| {
        writer
            .write_record([section, name, &value, "", "", "", "", ""])
            .map_err(io)
    };
    row("job", "id", job.pk.to_string())?;
    row("job", "source", job.source.clone())?;
    row("job", "state", job.state.to_string())?;
    row("job", "dry_run", job.dry_run.to_string())?;
    row("job", "requested_by", job.requested_by.clone())?;
    row("job", "attempts", job.attempts.to_string())?;
    row("job", "duration_ms", report.duration_ms.to_string())?;
    if let Some(error) = &job.error {
        row("error", "error", error.clone())?;
    }
    row("fetch", "pages", report.fetch.pages.to_string())?;
    row("fetch", "accounts", report.fetch.accounts.to_string())?;
    row("fetch", "complete", report.fetch.complete.to_string())?;
    for warning in &report.fetch.warnings {
        row("warning", "source", warning.clone())?;
    }
    row("store", "inserted", report.store.inserted.to_string())?;
    row("store", "updated", report.store.updated.to_string())?;
    row("store", "unseen", report.store.unseen.to_string())?;
    for (situation, count) in &report.summary {
        row("situation", situation.as_str(), count.to_string())?;
    }
    row("result", "planned", report.planned.to_string())?;
    row("result", "applied", report.applied.to_string())?;
    row("result", "conflicts", report.conflicts.len().to_string())?;
    row(
        "safeguard",
        "share_percent",
        report.safeguard.share_percent.to_string(),
    )?;
    row(
        "safeguard",
        "threshold_percent",
        report.safeguard.threshold_percent.to_string(),
    )?;
    for change in &changes {
        let section = if change.reason == "undo" {
            "undo"
        } else {
            "change"
        };
        writer
            .write_record([
                section,
                change.reason.as_str(),
                "",
                change.user_id.as_str(),
                change.email.as_deref().unwrap_or(""),
                change.old_value.as_deref().unwrap_or(""),
                change.new_value.as_deref().unwrap_or(""),
                change.current.as_deref().unwrap_or(""),
            ])
            .map_err(io)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| AppError::Io(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| AppError::Io(e.to_string()))
}
