//! Undoing a finished job: each External ID the job wrote is reverted only where the user
//! still holds the job's value (and is not excluded), with an audit entry (origin `manual`,
//! reason `undo`) in the undo's own run; every other change is listed, with what the user
//! holds now, and left alone.

use crate::app::App;
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use tether_store::jobs::{JobStore, UndoBatch, UndoResult};
use tether_store::{NewRun, RunFinish, Store, Timestamp};

/// A change an undo left alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeptChange {
    pub user_id: String,
    pub email: Option<String>,
    /// What the job wrote.
    pub job_value: Option<String>,
    /// What the user holds now (`None`: no External ID, or the user is gone).
    pub current: Option<String>,
    /// `changed since` or `user deleted`.
    pub reason: String,
}

/// What an undo did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UndoReport {
    pub job: i64,
    pub run: i64,
    pub changes: u64,
    pub reverted: u64,
    pub kept: Vec<KeptChange>,
}

/// Changes reverted per transaction.
const UNDO_BATCH: u32 = 10_000;

pub async fn undo(app: &App, job_pk: i64, actor: &str, at: Timestamp) -> AppResult<UndoReport> {
    let job = app.store.get_job(job_pk).await?;
    if job.state.is_active() {
        return Err(AppError::Input(format!(
            "job {job_pk} is {}: cancel it or let it finish before undoing it",
            job.state
        )));
    }
    if job.dry_run {
        return Err(AppError::Input(format!(
            "job {job_pk} was a dry run: it changed nothing to undo"
        )));
    }
    if job.undone_at.is_some() {
        return Err(AppError::Input(format!(
            "job {job_pk} was already undone by {}",
            job.undone_by.as_deref().unwrap_or("someone")
        )));
    }
    let source = app.source(Some(&job.source)).await?;
    let run_pk = app
        .store
        .insert_job_run(
            job.pk,
            &NewRun {
                source_pk: source.pk,
                kind: "undo".to_owned(),
                dry_run: false,
                external_id_field: source.external_id_field,
                actor: actor.to_owned(),
                started_at: at,
            },
        )
        .await?;
    let mut report = UndoReport {
        job: job.pk,
        run: run_pk,
        ..UndoReport::default()
    };
    let mut after = None;
    let mut failure = None;
    loop {
        let page = match app
            .store
            .list_job_changes(job.pk, Some("new_link"), after, UNDO_BATCH)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let Some(last) = page.last() else { break };
        after = Some(last.audit_pk);
        let results = match app
            .store
            .undo_changes(&UndoBatch {
                run_pk,
                actor,
                at,
                changes: &page,
            })
            .await
        {
            Ok(results) => results,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        for (change, result) in page.iter().zip(results) {
            report.changes += 1;
            match result {
                UndoResult::Reverted => report.reverted += 1,
                UndoResult::Changed { current } => report.kept.push(KeptChange {
                    user_id: change.user_id.clone(),
                    email: change.email.clone(),
                    job_value: change.new_value.clone(),
                    current,
                    reason: "changed since".to_owned(),
                }),
                UndoResult::Gone => report.kept.push(KeptChange {
                    user_id: change.user_id.clone(),
                    email: change.email.clone(),
                    job_value: change.new_value.clone(),
                    current: None,
                    reason: "user deleted".to_owned(),
                }),
            }
        }
    }
    let value = serde_json::to_value(&report).map_err(|e| AppError::Io(e.to_string()))?;
    app.store
        .finish_run(
            run_pk,
            &RunFinish {
                finished_at: at,
                state: if failure.is_some() {
                    "failed"
                } else {
                    "succeeded"
                }
                .to_owned(),
                summary: serde_json::json!({
                    "job": job.pk,
                    "changes": report.changes,
                    "reverted": report.reverted,
                    "kept": report.kept.len(),
                }),
                applied: report.reverted,
            },
        )
        .await?;
    if let Some(e) = failure {
        // What was reverted stays reverted (and audited); undo again to finish.
        return Err(e.into());
    }
    app.store.mark_job_undone(job.pk, actor, at, &value).await?;
    Ok(report)
}
