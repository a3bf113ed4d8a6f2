//! jobs: the sqlite implementation of the `jobs` units of work (see `crate::jobs`).
//!
//! SQLite has one writer, so a claim cannot race another claim in this process or any other:
//! the same `UPDATE … WHERE pk = (oldest runnable) RETURNING` shape as PostgreSQL, run in an
//! immediate transaction.

use super::*;
use crate::jobs::*;

const JOB_COLUMNS: &str =
    "j.pk, j.source_pk, s.name, j.kind, j.dry_run, j.state, j.phase, j.pages, \
     j.accounts_fetched, j.users_planned, j.changes_planned, j.changes_applied, j.requested_by, \
     j.created_at, j.started_at, j.updated_at, j.finished_at, j.error, j.report, \
     j.cancel_requested, j.approved_changes, j.decided_by, j.decided_at, j.attempts, \
     j.lease_owner, j.lease_expires_at, j.undone_at, j.undone_by, j.undo_report";

fn opt_ts(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    row.get::<_, Option<String>>(index)?
        .map(|t| parse_ts(&t))
        .transpose()
}

fn opt_json(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    Ok(row
        .get::<_, Option<String>>(index)?
        .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
}

fn count(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, i64>(index)?.max(0) as u64)
}

fn job_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        pk: row.get(0)?,
        source_pk: row.get(1)?,
        source: row.get(2)?,
        kind: row.get(3)?,
        dry_run: row.get(4)?,
        state: parse_name(&row.get::<_, String>(5)?)?,
        progress: JobProgress {
            phase: row.get(6)?,
            pages: count(row, 7)?,
            accounts_fetched: count(row, 8)?,
            users_planned: count(row, 9)?,
            changes_planned: count(row, 10)?,
            changes_applied: count(row, 11)?,
        },
        requested_by: row.get(12)?,
        created_at: parse_ts(&row.get::<_, String>(13)?)?,
        started_at: opt_ts(row, 14)?,
        updated_at: parse_ts(&row.get::<_, String>(15)?)?,
        finished_at: opt_ts(row, 16)?,
        error: row.get(17)?,
        report: opt_json(row, 18)?,
        cancel_requested: row.get(19)?,
        approved_changes: row.get::<_, Option<i64>>(20)?.map(|n| n.max(0) as u64),
        decided_by: row.get(21)?,
        decided_at: opt_ts(row, 22)?,
        attempts: row.get::<_, i64>(23)?.max(0) as u32,
        lease_owner: row.get(24)?,
        lease_expires_at: opt_ts(row, 25)?,
        undone_at: opt_ts(row, 26)?,
        undone_by: row.get(27)?,
        undo_report: opt_json(row, 28)?,
    })
}

fn job_by_pk(c: &Connection, job_pk: i64) -> Result<Job> {
    c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs AS j JOIN sources AS s ON s.pk = j.source_pk WHERE j.pk = ?1"
    ))?
    .query_row([job_pk], job_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("job {job_pk} does not exist")))
}

fn active_job(c: &Connection, source_pk: i64) -> Result<Option<Job>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs AS j JOIN sources AS s ON s.pk = j.source_pk
             WHERE j.source_pk = ?1 AND j.state IN ('queued', 'running', 'awaiting_approval')"
    ))?
    .query_row([source_pk], job_row)
    .optional()?)
}

/// The conflict for a second active job, naming the one that holds the source.
fn active_conflict(c: &Connection, source_pk: i64) -> StoreError {
    let holder = active_job(c, source_pk).ok().flatten();
    StoreError::Conflict {
        constraint: ONE_ACTIVE_JOB,
        message: match holder {
            Some(job) => format!(
                "source '{}' already has an active job ({}, {})",
                job.source, job.pk, job.state
            ),
            None => "the source already has an active job".to_owned(),
        },
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, Some(message))
        if failure.code == rusqlite::ErrorCode::ConstraintViolation && message.starts_with("UNIQUE"))
}

fn insert_job_row(tx: &Transaction<'_>, job: &NewJob, at: &str) -> Result<Option<i64>> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO jobs (source_pk, kind, dry_run, state, requested_by, created_at, updated_at)
             VALUES (?1, 'pull', ?2, 'queued', ?3, ?4, ?4)
             ON CONFLICT DO NOTHING RETURNING pk",
        )?
        .query_row(params![job.source_pk, job.dry_run, job.requested_by, at], |r| {
            r.get(0)
        })
        .optional();
    match inserted {
        Ok(pk) => Ok(pk),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn lease_of(value: Option<bool>) -> Lease {
    match value {
        Some(cancel_requested) => Lease::Held { cancel_requested },
        None => Lease::Lost,
    }
}

impl JobStore for SqliteStore {
    async fn insert_job(&self, job: &NewJob) -> Result<Job> {
        let at = ts(job.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require_source(&tx, job.source_pk)?;
            let Some(pk) = insert_job_row(&tx, job, &at)? else {
                return Err(active_conflict(&tx, job.source_pk));
            };
            let created = job_by_pk(&tx, pk)?;
            tx.commit()?;
            Ok(created)
        })
    }

    async fn get_job(&self, job_pk: i64) -> Result<Job> {
        self.read(|c| job_by_pk(c, job_pk))
    }

    async fn find_active_job(&self, source_pk: i64) -> Result<Option<Job>> {
        self.read(|c| active_job(c, source_pk))
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        self.read(|c| {
            let mut statement = c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs AS j JOIN sources AS s ON s.pk = j.source_pk
                 WHERE (?1 IS NULL OR j.source_pk = ?1) AND (?2 IS NULL OR j.state = ?2)
                   AND (?3 IS NULL OR j.pk < ?3)
                 ORDER BY j.pk DESC LIMIT ?4"
            ))?;
            let rows = statement.query_map(
                params![
                    filter.source_pk,
                    filter.state.map(JobState::as_str),
                    filter.before_pk,
                    filter.limit
                ],
                job_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn claim_job(&self, claim: &JobClaim<'_>) -> Result<Option<Job>> {
        let now = ts(claim.now)?;
        let until = ts(claim.lease_expires_at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claimed: Option<i64> = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_expires_at = ?2,
                        attempts = attempts + 1, started_at = coalesce(started_at, ?3), updated_at = ?3
                     WHERE pk = (SELECT pk FROM jobs
                                 WHERE (?4 IS NULL OR pk = ?4)
                                   AND (state = 'queued' OR (state = 'running' AND lease_expires_at < ?3))
                                 ORDER BY pk LIMIT 1)
                     RETURNING pk",
                )?
                .query_row(params![claim.owner, until, now, claim.job_pk], |r| r.get(0))
                .optional()?;
            let job = claimed.map(|pk| job_by_pk(&tx, pk)).transpose()?;
            tx.commit()?;
            Ok(job)
        })
    }

    async fn heartbeat_job(
        &self,
        job_pk: i64,
        owner: &str,
        lease_expires_at: Timestamp,
        at: Timestamp,
    ) -> Result<Lease> {
        let (until, at) = (ts(lease_expires_at)?, ts(at)?);
        self.write(|c| {
            let held: Option<bool> = c
                .prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ?1, updated_at = ?2
                     WHERE pk = ?3 AND lease_owner = ?4 AND state = 'running'
                     RETURNING cancel_requested",
                )?
                .query_row(params![until, at, job_pk, owner], |r| r.get(0))
                .optional()?;
            Ok(lease_of(held))
        })
    }

    async fn update_job_progress(
        &self,
        job_pk: i64,
        owner: &str,
        progress: &JobProgress,
        at: Timestamp,
    ) -> Result<Lease> {
        let at = ts(at)?;
        self.write(|c| {
            let held: Option<bool> = c
                .prepare_cached(
                    "UPDATE jobs SET phase = ?1, pages = ?2, accounts_fetched = ?3, users_planned = ?4,
                        changes_planned = ?5, changes_applied = ?6, updated_at = ?7
                     WHERE pk = ?8 AND lease_owner = ?9 AND state = 'running'
                     RETURNING cancel_requested",
                )?
                .query_row(
                    params![
                        progress.phase,
                        progress.pages as i64,
                        progress.accounts_fetched as i64,
                        progress.users_planned as i64,
                        progress.changes_planned as i64,
                        progress.changes_applied as i64,
                        at,
                        job_pk,
                        owner
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(lease_of(held))
        })
    }

    async fn finish_job(&self, job_pk: i64, finish: &JobFinish<'_>) -> Result<Lease> {
        if finish.state == JobState::Running || finish.state == JobState::Queued {
            return Err(StoreError::Invalid(format!(
                "a runner cannot finish a job as {}",
                finish.state
            )));
        }
        let at = ts(finish.at)?;
        let finished_at = (!finish.state.is_active()).then(|| at.clone());
        let report = finish.report.to_string();
        let progress = finish.progress;
        self.write(|c| {
            let held: Option<bool> = c
                .prepare_cached(
                    "UPDATE jobs SET state = ?1, phase = ?2, pages = ?3, accounts_fetched = ?4,
                        users_planned = ?5, changes_planned = ?6, changes_applied = ?7, error = ?8,
                        report = ?9, updated_at = ?10, finished_at = ?11,
                        lease_owner = NULL, lease_expires_at = NULL
                     WHERE pk = ?12 AND lease_owner = ?13 AND state = 'running'
                     RETURNING cancel_requested",
                )?
                .query_row(
                    params![
                        finish.state.as_str(),
                        progress.phase,
                        progress.pages as i64,
                        progress.accounts_fetched as i64,
                        progress.users_planned as i64,
                        progress.changes_planned as i64,
                        progress.changes_applied as i64,
                        finish.error,
                        report,
                        at,
                        finished_at,
                        job_pk,
                        finish.owner
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(lease_of(held))
        })
    }

    async fn cancel_job(&self, job_pk: i64, by: &str, at: Timestamp) -> Result<Job> {
        let at = ts(at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let job = job_by_pk(&tx, job_pk)?;
            let expired = job
                .lease_expires_at
                .map(ts)
                .transpose()?
                .is_some_and(|until| until < at);
            match job.state {
                // Nothing runs it (or its runner died): cancelled at once.
                JobState::Queued | JobState::AwaitingApproval => {
                    tx.execute(
                        "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?1,
                            updated_at = ?1, decided_by = coalesce(decided_by, ?2) WHERE pk = ?3",
                        params![at, by, job_pk],
                    )?;
                }
                JobState::Running if expired => {
                    tx.execute(
                        "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?1,
                            updated_at = ?1, lease_owner = NULL, lease_expires_at = NULL,
                            error = 'the process running it stopped; cancelled by ' || ?2
                         WHERE pk = ?3",
                        params![at, by, job_pk],
                    )?;
                }
                // Its runner stops between pages and batches.
                JobState::Running => {
                    tx.execute(
                        "UPDATE jobs SET cancel_requested = 1, updated_at = ?1 WHERE pk = ?2",
                        params![at, job_pk],
                    )?;
                }
                JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                    return Err(StoreError::Invalid(format!(
                        "job {job_pk} has already {}; there is nothing to cancel",
                        job.state
                    )));
                }
            }
            let job = job_by_pk(&tx, job_pk)?;
            tx.commit()?;
            Ok(job)
        })
    }

    async fn decide_job(&self, job_pk: i64, decision: &JobDecision<'_>) -> Result<Job> {
        let at = ts(decision.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let job = job_by_pk(&tx, job_pk)?;
            if job.state != JobState::AwaitingApproval {
                return Err(StoreError::Invalid(format!(
                    "job {job_pk} is {}, not awaiting approval",
                    job.state
                )));
            }
            if decision.approve {
                tx.execute(
                    "UPDATE jobs SET state = 'queued', approved_changes = ?1, decided_by = ?2,
                        decided_at = ?3, updated_at = ?3 WHERE pk = ?4",
                    params![decision.approved_changes as i64, decision.by, at, job_pk],
                )?;
            } else {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', decided_by = ?1, decided_at = ?2,
                        updated_at = ?2, finished_at = ?2 WHERE pk = ?3",
                    params![decision.by, at, job_pk],
                )?;
            }
            let job = job_by_pk(&tx, job_pk)?;
            tx.commit()?;
            Ok(job)
        })
    }

    async fn insert_job_run(&self, job_pk: i64, run: &NewRun) -> Result<i64> {
        let started_at = ts(run.started_at)?;
        self.write(|c| {
            require_source(c, run.source_pk)?;
            Ok(c.query_row(
                "INSERT INTO runs (source_pk, kind, dry_run, external_id_field, actor, started_at, job_pk)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING pk",
                params![
                    run.source_pk,
                    run.kind,
                    run.dry_run,
                    run.external_id_field.as_str(),
                    run.actor,
                    started_at,
                    job_pk
                ],
                |r| r.get(0),
            )?)
        })
    }

    async fn fail_unfinished_runs(&self, job_pk: i64, at: Timestamp) -> Result<u64> {
        let at = ts(at)?;
        self.write(|c| {
            Ok(c.execute(
                "UPDATE runs SET state = 'failed', finished_at = ?1
                 WHERE job_pk = ?2 AND finished_at IS NULL",
                params![at, job_pk],
            )? as u64)
        })
    }

    async fn mark_accounts_seen(
        &self,
        source_pk: i64,
        account_ids: &[String],
    ) -> Result<SeenSummary> {
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require_source(&tx, source_pk)?;
            let stored: i64 = tx.query_row(
                "SELECT count(*) FROM accounts WHERE source_pk = ?1",
                [source_pk],
                |r| r.get(0),
            )?;
            let distinct = account_ids.iter().collect::<HashSet<_>>().len();
            if usize::try_from(stored).is_ok_and(|stored| stored <= distinct) {
                // The pull returned every stored account: all are seen.
                let seen_again = tx.execute(
                    "UPDATE accounts SET seen = 1 WHERE source_pk = ?1 AND seen = 0",
                    [source_pk],
                )? as u64;
                tx.commit()?;
                return Ok(SeenSummary {
                    unseen: 0,
                    seen_again,
                });
            }
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS pulled_accounts (account_id TEXT PRIMARY KEY) WITHOUT ROWID;
                 DELETE FROM temp.pulled_accounts;",
            )?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO temp.pulled_accounts (account_id) VALUES (?1)",
                )?;
                for account_id in account_ids {
                    insert.execute([account_id])?;
                }
            }
            let unseen = tx.execute(
                "UPDATE accounts SET seen = 0 WHERE source_pk = ?1 AND seen = 1
                   AND account_id NOT IN (SELECT account_id FROM temp.pulled_accounts)",
                [source_pk],
            )? as u64;
            let seen_again = tx.execute(
                "UPDATE accounts SET seen = 1 WHERE source_pk = ?1 AND seen = 0
                   AND account_id IN (SELECT account_id FROM temp.pulled_accounts)",
                [source_pk],
            )? as u64;
            tx.execute_batch("DELETE FROM temp.pulled_accounts")?;
            tx.commit()?;
            Ok(SeenSummary { unseen, seen_again })
        })
    }

    async fn list_job_changes(
        &self,
        job_pk: i64,
        reason: Option<&str>,
        after_audit_pk: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobChange>> {
        self.read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT a.pk, a.user_pk, coalesce(u.id, ''), u.email, a.old_value, a.new_value, a.reason,
                        a.at, u.external_id
                 FROM runs AS r JOIN audit AS a ON a.run_pk = r.pk
                 LEFT JOIN users AS u ON u.pk = a.user_pk
                 WHERE r.job_pk = ?1 AND (?2 IS NULL OR a.reason = ?2) AND a.pk > ?3
                 ORDER BY a.pk LIMIT ?4",
            )?;
            let rows = statement.query_map(
                params![job_pk, reason, after_audit_pk.unwrap_or(0), limit],
                |row| {
                    Ok(JobChange {
                        audit_pk: row.get(0)?,
                        user_pk: row.get(1)?,
                        user_id: row.get(2)?,
                        email: row.get(3)?,
                        old_value: row.get(4)?,
                        new_value: row.get(5)?,
                        reason: row.get(6)?,
                        at: parse_ts(&row.get::<_, String>(7)?)?,
                        current: row.get(8)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn undo_changes(&self, batch: &UndoBatch<'_>) -> Result<Vec<UndoResult>> {
        let at = ts(batch.at)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(batch.changes.len());
            for change in batch.changes {
                let Some(new_value) = change.new_value.as_deref() else {
                    results.push(UndoResult::Changed {
                        current: change.current.clone(),
                    });
                    continue;
                };
                let written = tx
                    .prepare_cached(
                        "UPDATE users SET external_id = ?1,
                            external_id_origin = CASE WHEN ?1 IS NULL THEN NULL ELSE 'manual' END,
                            external_id_set_at = CASE WHEN ?1 IS NULL THEN NULL ELSE ?2 END
                         WHERE pk = ?3 AND external_id = ?4 AND excluded = 0",
                    )?
                    .execute(params![change.old_value, at, change.user_pk, new_value]);
                let written = match written {
                    Ok(n) => n,
                    Err(e) if is_unique_violation(&e) => 0,
                    Err(e) => return Err(e.into()),
                };
                if written == 1 {
                    insert_audit(
                        &tx,
                        AuditWrite {
                            at: &at,
                            actor: batch.actor,
                            origin: Origin::Manual,
                            user_pk: change.user_pk,
                            old: Some(new_value),
                            new: change.old_value.as_deref(),
                            reason: "undo",
                            run_pk: Some(batch.run_pk),
                        },
                    )?;
                    results.push(UndoResult::Reverted);
                    continue;
                }
                let current: Option<Option<String>> = tx
                    .prepare_cached("SELECT external_id FROM users WHERE pk = ?1")?
                    .query_row([change.user_pk], |r| r.get(0))
                    .optional()?;
                results.push(match current {
                    None => UndoResult::Gone,
                    Some(current) => UndoResult::Changed { current },
                });
            }
            tx.commit()?;
            Ok(results)
        })
    }

    async fn mark_job_undone(
        &self,
        job_pk: i64,
        by: &str,
        at: Timestamp,
        report: &serde_json::Value,
    ) -> Result<Job> {
        let at = ts(at)?;
        let report = report.to_string();
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let job = job_by_pk(&tx, job_pk)?;
            if job.state.is_active() || job.undone_at.is_some() {
                return Err(StoreError::Invalid(format!(
                    "job {job_pk} cannot be marked undone: it is {}{}",
                    job.state,
                    if job.undone_at.is_some() {
                        " and already undone"
                    } else {
                        ""
                    }
                )));
            }
            tx.execute(
                "UPDATE jobs SET undone_at = ?1, undone_by = ?2, undo_report = ?3, updated_at = ?1
                 WHERE pk = ?4",
                params![at, by, report, job_pk],
            )?;
            let job = job_by_pk(&tx, job_pk)?;
            tx.commit()?;
            Ok(job)
        })
    }

    async fn set_schedule(
        &self,
        source_pk: i64,
        every_minutes: Option<u32>,
        next: Option<Timestamp>,
    ) -> Result<()> {
        let next = next.map(ts).transpose()?;
        self.write(|c| {
            let n = c.execute(
                "UPDATE sources SET schedule_minutes = ?1, next_run_at = ?2 WHERE pk = ?3",
                params![every_minutes, next, source_pk],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("source {source_pk}")));
            }
            Ok(())
        })
    }

    async fn get_schedule(&self, source_pk: i64) -> Result<Schedule> {
        self.read(|c| {
            c.query_row(
                "SELECT schedule_minutes, next_run_at FROM sources WHERE pk = ?1",
                [source_pk],
                |row| {
                    Ok(Schedule {
                        every_minutes: row.get(0)?,
                        next_run_at: opt_ts(row, 1)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("source {source_pk}")))
        })
    }

    async fn enqueue_due_jobs(&self, now: Timestamp, requested_by: &str) -> Result<Vec<Job>> {
        let now_text = ts(now)?;
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let due: Vec<(i64, u32)> = {
                let mut statement = tx.prepare_cached(
                    "SELECT pk, schedule_minutes FROM sources
                     WHERE schedule_minutes IS NOT NULL AND next_run_at <= ?1 ORDER BY pk",
                )?;
                let rows = statement.query_map([&now_text], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut jobs = Vec::new();
            for (source_pk, minutes) in due {
                let next = ts(now + time::Duration::minutes(i64::from(minutes.max(1))))?;
                tx.execute(
                    "UPDATE sources SET next_run_at = ?1 WHERE pk = ?2",
                    params![next, source_pk],
                )?;
                let job = NewJob {
                    source_pk,
                    dry_run: false,
                    requested_by: requested_by.to_owned(),
                    at: now,
                };
                if let Some(pk) = insert_job_row(&tx, &job, &now_text)? {
                    jobs.push(job_by_pk(&tx, pk)?);
                }
            }
            tx.commit()?;
            Ok(jobs)
        })
    }
}
