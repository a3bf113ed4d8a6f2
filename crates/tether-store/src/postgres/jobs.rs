//! jobs: the postgres implementation of the `jobs` units of work (see `crate::jobs`).
//!
//! Several replicas share one database: a claim picks its candidate row `FOR UPDATE SKIP
//! LOCKED` and takes the lease in the same statement, so two runners never get one job, and
//! the partial unique index `jobs_one_active_per_source` refuses a second active job for a
//! source whichever process inserts it.

use super::*;
use crate::jobs::*;

const JOB_COLUMNS: &str =
    "j.pk, j.source_pk, s.name, j.kind, j.dry_run, j.state, j.phase, j.pages, \
     j.accounts_fetched, j.users_planned, j.changes_planned, j.changes_applied, j.requested_by, \
     j.created_at, j.started_at, j.updated_at, j.finished_at, j.error, j.report, \
     j.cancel_requested, j.approved_changes, j.decided_by, j.decided_at, j.attempts, \
     j.lease_owner, j.lease_expires_at, j.undone_at, j.undone_by, j.undo_report";

fn job_from(row: &Row) -> Result<Job> {
    let state: &str = row.try_get(5)?;
    let approved: Option<i64> = row.try_get(20)?;
    Ok(Job {
        pk: row.try_get(0)?,
        source_pk: row.try_get(1)?,
        source: row.try_get(2)?,
        kind: row.try_get(3)?,
        dry_run: row.try_get(4)?,
        state: state.parse()?,
        progress: JobProgress {
            phase: row.try_get(6)?,
            pages: to_u64(row.try_get(7)?, "pages")?,
            accounts_fetched: to_u64(row.try_get(8)?, "accounts fetched")?,
            users_planned: to_u64(row.try_get(9)?, "users planned")?,
            changes_planned: to_u64(row.try_get(10)?, "changes planned")?,
            changes_applied: to_u64(row.try_get(11)?, "changes applied")?,
        },
        requested_by: row.try_get(12)?,
        created_at: row.try_get(13)?,
        started_at: row.try_get(14)?,
        updated_at: row.try_get(15)?,
        finished_at: row.try_get(16)?,
        error: row.try_get(17)?,
        report: row.try_get(18)?,
        cancel_requested: row.try_get(19)?,
        approved_changes: approved
            .map(|n| to_u64(n, "approved changes"))
            .transpose()?,
        decided_by: row.try_get(21)?,
        decided_at: row.try_get(22)?,
        attempts: u32::try_from(row.try_get::<_, i32>(23)?).unwrap_or(0),
        lease_owner: row.try_get(24)?,
        lease_expires_at: row.try_get(25)?,
        undone_at: row.try_get(26)?,
        undone_by: row.try_get(27)?,
        undo_report: row.try_get(28)?,
    })
}

async fn job_by_pk(client: &impl deadpool_postgres::GenericClient, job_pk: i64) -> Result<Job> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs j JOIN sources s ON s.pk = j.source_pk WHERE j.pk = $1"
            ),
            &[&job_pk],
        )
        .await?;
    match row {
        Some(row) => job_from(&row),
        None => Err(StoreError::NotFound(format!("job {job_pk} does not exist"))),
    }
}

async fn active_job(
    client: &impl deadpool_postgres::GenericClient,
    source_pk: i64,
) -> Result<Option<Job>> {
    client
        .query_opt(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs j JOIN sources s ON s.pk = j.source_pk
                 WHERE j.source_pk = $1 AND j.state IN ('queued', 'running', 'awaiting_approval')"
            ),
            &[&source_pk],
        )
        .await?
        .as_ref()
        .map(job_from)
        .transpose()
}

async fn require_source(
    client: &impl deadpool_postgres::GenericClient,
    source_pk: i64,
) -> Result<()> {
    if client
        .query_opt("SELECT 1 FROM sources WHERE pk = $1", &[&source_pk])
        .await?
        .is_none()
    {
        return Err(StoreError::NotFound(format!(
            "source {source_pk} does not exist"
        )));
    }
    Ok(())
}

const INSERT_JOB: &str = "
INSERT INTO jobs (source_pk, kind, dry_run, state, requested_by, created_at, updated_at)
VALUES ($1, 'pull', $2, 'queued', $3, $4, $4)
ON CONFLICT DO NOTHING RETURNING pk";

fn lease_of(row: Option<Row>) -> Result<Lease> {
    Ok(match row {
        Some(row) => Lease::Held {
            cancel_requested: row.try_get(0)?,
        },
        None => Lease::Lost,
    })
}

fn to_db(value: u64, what: &str) -> Result<i64> {
    to_i64(value, what)
}

impl PgStore {
    async fn insert_job_tx(&self, job: &NewJob) -> Result<Job> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        require_source(&tx, job.source_pk).await?;
        let inserted = tx
            .query_opt(
                INSERT_JOB,
                &[&job.source_pk, &job.dry_run, &job.requested_by, &job.at],
            )
            .await?;
        let Some(row) = inserted else {
            let holder = active_job(&tx, job.source_pk).await?;
            return Err(StoreError::Conflict {
                constraint: ONE_ACTIVE_JOB,
                message: match holder {
                    Some(holder) => format!(
                        "source '{}' already has an active job ({}, {})",
                        holder.source, holder.pk, holder.state
                    ),
                    None => "the source already has an active job".to_owned(),
                },
            });
        };
        let job = job_by_pk(&tx, row.try_get(0)?).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn list_jobs_tx(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let client = self.client().await?;
        let state = filter.state.map(JobState::as_str);
        let limit = i64::from(filter.limit);
        let rows = client
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs j JOIN sources s ON s.pk = j.source_pk
                     WHERE ($1::bigint IS NULL OR j.source_pk = $1) AND ($2::text IS NULL OR j.state = $2)
                       AND ($3::bigint IS NULL OR j.pk < $3)
                     ORDER BY j.pk DESC LIMIT $4"
                ),
                &[&filter.source_pk, &state, &filter.before_pk, &limit],
            )
            .await?;
        rows.iter().map(job_from).collect()
    }

    async fn claim_job_tx(&self, claim: &JobClaim<'_>) -> Result<Option<Job>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let claimed = tx
            .query_opt(
                "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2,
                    attempts = attempts + 1, started_at = coalesce(started_at, $3), updated_at = $3
                 WHERE pk = (SELECT pk FROM jobs
                             WHERE ($4::bigint IS NULL OR pk = $4)
                               AND (state = 'queued' OR (state = 'running' AND lease_expires_at < $3))
                             ORDER BY pk LIMIT 1
                             FOR UPDATE SKIP LOCKED)
                 RETURNING pk",
                &[
                    &claim.owner,
                    &claim.lease_expires_at,
                    &claim.now,
                    &claim.job_pk,
                ],
            )
            .await?;
        let job = match claimed {
            Some(row) => Some(job_by_pk(&tx, row.try_get(0)?).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(job)
    }

    async fn cancel_job_tx(&self, job_pk: i64, by: &str, at: Timestamp) -> Result<Job> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT 1 FROM jobs WHERE pk = $1 FOR UPDATE", &[&job_pk])
            .await?;
        let job = job_by_pk(&tx, job_pk).await?;
        let expired = job.lease_expires_at.is_some_and(|until| until < at);
        match job.state {
            JobState::Queued | JobState::AwaitingApproval => {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', cancel_requested = true, finished_at = $1,
                        updated_at = $1, decided_by = coalesce(decided_by, $2) WHERE pk = $3",
                    &[&at, &by, &job_pk],
                )
                .await?;
            }
            JobState::Running if expired => {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', cancel_requested = true, finished_at = $1,
                        updated_at = $1, lease_owner = NULL, lease_expires_at = NULL,
                        error = 'the process running it stopped; cancelled by ' || $2::text
                     WHERE pk = $3",
                    &[&at, &by, &job_pk],
                )
                .await?;
            }
            JobState::Running => {
                tx.execute(
                    "UPDATE jobs SET cancel_requested = true, updated_at = $1 WHERE pk = $2",
                    &[&at, &job_pk],
                )
                .await?;
            }
            JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                return Err(StoreError::Invalid(format!(
                    "job {job_pk} has already {}; there is nothing to cancel",
                    job.state
                )));
            }
        }
        let job = job_by_pk(&tx, job_pk).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn decide_job_tx(&self, job_pk: i64, decision: &JobDecision<'_>) -> Result<Job> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT 1 FROM jobs WHERE pk = $1 FOR UPDATE", &[&job_pk])
            .await?;
        let job = job_by_pk(&tx, job_pk).await?;
        if job.state != JobState::AwaitingApproval {
            return Err(StoreError::Invalid(format!(
                "job {job_pk} is {}, not awaiting approval",
                job.state
            )));
        }
        if decision.approve {
            let approved = to_db(decision.approved_changes, "approved changes")?;
            tx.execute(
                "UPDATE jobs SET state = 'queued', approved_changes = $1, decided_by = $2,
                    decided_at = $3, updated_at = $3 WHERE pk = $4",
                &[&approved, &decision.by, &decision.at, &job_pk],
            )
            .await?;
        } else {
            tx.execute(
                "UPDATE jobs SET state = 'cancelled', decided_by = $1, decided_at = $2,
                    updated_at = $2, finished_at = $2 WHERE pk = $3",
                &[&decision.by, &decision.at, &job_pk],
            )
            .await?;
        }
        let job = job_by_pk(&tx, job_pk).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn mark_accounts_seen_tx(
        &self,
        source_pk: i64,
        account_ids: &[String],
    ) -> Result<SeenSummary> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        require_source(&tx, source_pk).await?;
        let stored: i64 = tx
            .query_one(
                "SELECT count(*) FROM accounts WHERE source_pk = $1",
                &[&source_pk],
            )
            .await?
            .try_get(0)?;
        let distinct = account_ids.iter().collect::<HashSet<_>>().len();
        if usize::try_from(stored).is_ok_and(|stored| stored <= distinct) {
            // The pull returned every stored account: all are seen.
            let seen_again = tx
                .execute(
                    "UPDATE accounts SET seen = true WHERE source_pk = $1 AND NOT seen",
                    &[&source_pk],
                )
                .await?;
            tx.commit().await?;
            return Ok(SeenSummary {
                unseen: 0,
                seen_again,
            });
        }
        tx.batch_execute(
            r#"CREATE TEMP TABLE pulled_accounts (account_id text COLLATE "C" NOT NULL) ON COMMIT DROP"#,
        )
        .await?;
        let writer = copy_writer(
            &tx,
            "COPY pulled_accounts (account_id) FROM STDIN (FORMAT binary)",
            &[Type::TEXT],
        )
        .await?;
        pin_mut!(writer);
        for account_id in account_ids {
            writer.as_mut().write(&[account_id]).await?;
        }
        writer.finish().await?;
        if account_ids.len() >= ANALYZE_THRESHOLD {
            tx.batch_execute("ANALYZE pulled_accounts").await?;
        }
        let unseen = tx
            .execute(
                "UPDATE accounts a SET seen = false WHERE a.source_pk = $1 AND a.seen
                   AND NOT EXISTS (SELECT 1 FROM pulled_accounts p WHERE p.account_id = a.account_id)",
                &[&source_pk],
            )
            .await?;
        let seen_again = tx
            .execute(
                "UPDATE accounts a SET seen = true WHERE a.source_pk = $1 AND NOT a.seen
                   AND EXISTS (SELECT 1 FROM pulled_accounts p WHERE p.account_id = a.account_id)",
                &[&source_pk],
            )
            .await?;
        tx.commit().await?;
        Ok(SeenSummary { unseen, seen_again })
    }

    async fn undo_changes_tx(&self, batch: &UndoBatch<'_>) -> Result<Vec<UndoResult>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let user_pks: Vec<i64> = batch.changes.iter().map(|c| c.user_pk).collect();
        let olds: Vec<Option<&str>> = batch
            .changes
            .iter()
            .map(|c| c.old_value.as_deref())
            .collect();
        let news: Vec<Option<&str>> = batch
            .changes
            .iter()
            .map(|c| c.new_value.as_deref())
            .collect();
        let rows = tx
            .query(
                "WITH c AS (
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY
                         AS c (user_pk, old, new, ord)
                 ), updated AS (
                     UPDATE users u SET external_id = c.old,
                         external_id_origin = CASE WHEN c.old IS NULL THEN NULL ELSE 'manual' END,
                         external_id_set_at = CASE WHEN c.old IS NULL THEN NULL ELSE $4::timestamptz END
                     FROM c WHERE u.pk = c.user_pk AND u.external_id = c.new AND NOT u.excluded
                     RETURNING c.ord, u.pk, c.old, c.new
                 ), audited AS (
                     INSERT INTO audit (at, actor, origin, user_pk, old_value, new_value, reason, run_pk)
                     SELECT $4::timestamptz, $5::text, 'manual', pk, new, old, 'undo', $6::bigint
                     FROM updated ORDER BY ord
                 )
                 SELECT c.ord, d.ord IS NOT NULL, u.pk IS NOT NULL, u.external_id
                 FROM c LEFT JOIN updated d ON d.ord = c.ord LEFT JOIN users u ON u.pk = c.user_pk
                 ORDER BY c.ord",
                &[
                    &user_pks,
                    &olds,
                    &news,
                    &batch.at,
                    &batch.actor,
                    &batch.run_pk,
                ],
            )
            .await?;
        let mut results = Vec::with_capacity(rows.len());
        for row in &rows {
            let reverted: bool = row.try_get(1)?;
            let present: bool = row.try_get(2)?;
            results.push(if reverted {
                UndoResult::Reverted
            } else if !present {
                UndoResult::Gone
            } else {
                UndoResult::Changed {
                    current: row.try_get(3)?,
                }
            });
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn mark_job_undone_tx(
        &self,
        job_pk: i64,
        by: &str,
        at: Timestamp,
        report: &serde_json::Value,
    ) -> Result<Job> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT 1 FROM jobs WHERE pk = $1 FOR UPDATE", &[&job_pk])
            .await?;
        let job = job_by_pk(&tx, job_pk).await?;
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
            "UPDATE jobs SET undone_at = $1, undone_by = $2, undo_report = $3, updated_at = $1
             WHERE pk = $4",
            &[&at, &by, report, &job_pk],
        )
        .await?;
        let job = job_by_pk(&tx, job_pk).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn enqueue_due_jobs_tx(&self, now: Timestamp, requested_by: &str) -> Result<Vec<Job>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Concurrent replicas: the UPDATE locks the due sources; the second waits, then finds
        // them no longer due.
        let rows = tx
            .query(
                "WITH due AS (
                     UPDATE sources SET next_run_at = $1::timestamptz + make_interval(mins => greatest(schedule_minutes, 1))
                     WHERE schedule_minutes IS NOT NULL AND next_run_at <= $1
                     RETURNING pk
                 )
                 INSERT INTO jobs (source_pk, kind, dry_run, state, requested_by, created_at, updated_at)
                 SELECT pk, 'pull', false, 'queued', $2, $1, $1 FROM due ORDER BY pk
                 ON CONFLICT DO NOTHING RETURNING pk",
                &[&now, &requested_by],
            )
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            jobs.push(job_by_pk(&tx, row.try_get(0)?).await?);
        }
        tx.commit().await?;
        jobs.sort_by_key(|job| job.pk);
        Ok(jobs)
    }
}

impl JobStore for PgStore {
    async fn insert_job(&self, job: &NewJob) -> Result<Job> {
        self.insert_job_tx(job).await.map_err(classify)
    }

    async fn get_job(&self, job_pk: i64) -> Result<Job> {
        let client = self.client().await?;
        job_by_pk(&client, job_pk).await.map_err(classify)
    }

    async fn find_active_job(&self, source_pk: i64) -> Result<Option<Job>> {
        let client = self.client().await?;
        active_job(&client, source_pk).await.map_err(classify)
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        self.list_jobs_tx(filter).await.map_err(classify)
    }

    async fn claim_job(&self, claim: &JobClaim<'_>) -> Result<Option<Job>> {
        self.claim_job_tx(claim).await.map_err(classify)
    }

    async fn heartbeat_job(
        &self,
        job_pk: i64,
        owner: &str,
        lease_expires_at: Timestamp,
        at: Timestamp,
    ) -> Result<Lease> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE jobs SET lease_expires_at = $1, updated_at = $2
                 WHERE pk = $3 AND lease_owner = $4 AND state = 'running'
                 RETURNING cancel_requested",
                &[&lease_expires_at, &at, &job_pk, &owner],
            )
            .await?;
        lease_of(row)
    }

    async fn update_job_progress(
        &self,
        job_pk: i64,
        owner: &str,
        progress: &JobProgress,
        at: Timestamp,
    ) -> Result<Lease> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE jobs SET phase = $1, pages = $2, accounts_fetched = $3, users_planned = $4,
                    changes_planned = $5, changes_applied = $6, updated_at = $7
                 WHERE pk = $8 AND lease_owner = $9 AND state = 'running'
                 RETURNING cancel_requested",
                &[
                    &progress.phase,
                    &to_db(progress.pages, "pages")?,
                    &to_db(progress.accounts_fetched, "accounts")?,
                    &to_db(progress.users_planned, "users")?,
                    &to_db(progress.changes_planned, "changes")?,
                    &to_db(progress.changes_applied, "changes")?,
                    &at,
                    &job_pk,
                    &owner,
                ],
            )
            .await?;
        lease_of(row)
    }

    async fn finish_job(&self, job_pk: i64, finish: &JobFinish<'_>) -> Result<Lease> {
        if finish.state == JobState::Running || finish.state == JobState::Queued {
            return Err(StoreError::Invalid(format!(
                "a runner cannot finish a job as {}",
                finish.state
            )));
        }
        let finished_at = (!finish.state.is_active()).then_some(finish.at);
        let progress = finish.progress;
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE jobs SET state = $1, phase = $2, pages = $3, accounts_fetched = $4,
                    users_planned = $5, changes_planned = $6, changes_applied = $7, error = $8,
                    report = $9, updated_at = $10, finished_at = $11,
                    lease_owner = NULL, lease_expires_at = NULL
                 WHERE pk = $12 AND lease_owner = $13 AND state = 'running'
                 RETURNING cancel_requested",
                &[
                    &finish.state.as_str(),
                    &progress.phase,
                    &to_db(progress.pages, "pages")?,
                    &to_db(progress.accounts_fetched, "accounts")?,
                    &to_db(progress.users_planned, "users")?,
                    &to_db(progress.changes_planned, "changes")?,
                    &to_db(progress.changes_applied, "changes")?,
                    &finish.error,
                    finish.report,
                    &finish.at,
                    &finished_at,
                    &job_pk,
                    &finish.owner,
                ],
            )
            .await?;
        lease_of(row)
    }

    async fn cancel_job(&self, job_pk: i64, by: &str, at: Timestamp) -> Result<Job> {
        self.cancel_job_tx(job_pk, by, at).await.map_err(classify)
    }

    async fn decide_job(&self, job_pk: i64, decision: &JobDecision<'_>) -> Result<Job> {
        self.decide_job_tx(job_pk, decision).await.map_err(classify)
    }

    async fn insert_job_run(&self, job_pk: i64, run: &NewRun) -> Result<i64> {
        let client = self.client().await?;
        require_source(&client, run.source_pk).await?;
        let row = client
            .query_one(
                "INSERT INTO runs (source_pk, kind, dry_run, external_id_field, actor, started_at, job_pk)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING pk",
                &[
                    &run.source_pk,
                    &run.kind,
                    &run.dry_run,
                    &run.external_id_field.as_str(),
                    &run.actor,
                    &run.started_at,
                    &job_pk,
                ],
            )
            .await
            .map_err(|e| classify(e.into()))?;
        Ok(row.try_get(0)?)
    }

    async fn fail_unfinished_runs(&self, job_pk: i64, at: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE runs SET state = 'failed', finished_at = $1
                 WHERE job_pk = $2 AND finished_at IS NULL",
                &[&at, &job_pk],
            )
            .await?)
    }

    async fn mark_accounts_seen(
        &self,
        source_pk: i64,
        account_ids: &[String],
    ) -> Result<SeenSummary> {
        self.mark_accounts_seen_tx(source_pk, account_ids)
            .await
            .map_err(classify)
    }

    async fn list_job_changes(
        &self,
        job_pk: i64,
        reason: Option<&str>,
        after_audit_pk: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JobChange>> {
        let client = self.client().await?;
        let after = after_audit_pk.unwrap_or(0);
        let limit = i64::from(limit);
        let rows = client
            .query(
                "SELECT a.pk, a.user_pk, coalesce(u.id, ''), u.email, a.old_value, a.new_value, a.reason,
                        a.at, u.external_id
                 FROM runs r JOIN audit a ON a.run_pk = r.pk
                 LEFT JOIN users u ON u.pk = a.user_pk
                 WHERE r.job_pk = $1 AND ($2::text IS NULL OR a.reason = $2) AND a.pk > $3
                 ORDER BY a.pk LIMIT $4",
                &[&job_pk, &reason, &after, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(JobChange {
                    audit_pk: row.try_get(0)?,
                    user_pk: row.try_get(1)?,
                    user_id: row.try_get(2)?,
                    email: row.try_get(3)?,
                    old_value: row.try_get(4)?,
                    new_value: row.try_get(5)?,
                    reason: row.try_get(6)?,
                    at: row.try_get(7)?,
                    current: row.try_get(8)?,
                })
            })
            .collect()
    }

    async fn undo_changes(&self, batch: &UndoBatch<'_>) -> Result<Vec<UndoResult>> {
        self.undo_changes_tx(batch).await.map_err(classify)
    }

    async fn mark_job_undone(
        &self,
        job_pk: i64,
        by: &str,
        at: Timestamp,
        report: &serde_json::Value,
    ) -> Result<Job> {
        self.mark_job_undone_tx(job_pk, by, at, report)
            .await
            .map_err(classify)
    }

    async fn set_schedule(
        &self,
        source_pk: i64,
        every_minutes: Option<u32>,
        next: Option<Timestamp>,
    ) -> Result<()> {
        let client = self.client().await?;
        let minutes: Option<i32> = every_minutes.map(|m| i32::try_from(m).unwrap_or(i32::MAX));
        let changed = client
            .execute(
                "UPDATE sources SET schedule_minutes = $1, next_run_at = $2 WHERE pk = $3",
                &[&minutes, &next, &source_pk],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "source {source_pk} does not exist"
            )));
        }
        Ok(())
    }

    async fn get_schedule(&self, source_pk: i64) -> Result<Schedule> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT schedule_minutes, next_run_at FROM sources WHERE pk = $1",
                &[&source_pk],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("source {source_pk} does not exist")))?;
        let minutes: Option<i32> = row.try_get(0)?;
        Ok(Schedule {
            every_minutes: minutes.map(|m| u32::try_from(m).unwrap_or(0)),
            next_run_at: row.try_get(1)?,
        })
    }

    async fn enqueue_due_jobs(&self, now: Timestamp, requested_by: &str) -> Result<Vec<Job>> {
        self.enqueue_due_jobs_tx(now, requested_by)
            .await
            .map_err(classify)
    }
}
