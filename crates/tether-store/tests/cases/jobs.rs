//! Pull jobs: one active job per source, claims with leases, heartbeats, takeover after a
//! lease expires, cancel, approval, the job's changes and their undo, accounts not seen, and
//! schedules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use tether_core::{plan_links, ChangeResult, Origin};
use tether_store::jobs::*;
use tether_store::{AnyStore, ApplyBatch, NewRun, Store, StoreError, Timestamp};
use time::Duration;

fn new_job(source_pk: i64, at: Timestamp) -> NewJob {
    NewJob {
        source_pk,
        dry_run: false,
        requested_by: "admin:alice".to_owned(),
        at,
    }
}

fn claim(owner: &str, now: Timestamp) -> JobClaim<'_> {
    JobClaim {
        job_pk: None,
        owner,
        now,
        lease_expires_at: now + Duration::seconds(30),
    }
}

fn finish<'a>(
    owner: &'a str,
    state: JobState,
    progress: &'a JobProgress,
    report: &'a serde_json::Value,
    at: Timestamp,
) -> JobFinish<'a> {
    JobFinish {
        owner,
        state,
        progress,
        error: None,
        report,
        at,
    }
}

fn is_active_conflict(result: &Result<Job, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict { constraint, .. }) if *constraint == ONE_ACTIVE_JOB)
}

pub async fn jobs_one_active_per_source(store: &impl JobStoreAndStore) {
    let jira = file_source(store, "jira").await;
    let scim = file_source(store, "scim").await;
    let first = store
        .insert_job(&new_job(jira.pk, T0))
        .await
        .expect("insert");
    assert_eq!(first.state, JobState::Queued);
    assert_eq!(first.source, "jira");
    assert_eq!(first.attempts, 0);
    assert_eq!(first.created_at, T0);
    assert!(first.lease_owner.is_none());

    let second = store.insert_job(&new_job(jira.pk, T1)).await;
    assert!(
        is_active_conflict(&second),
        "a second active job for one source must be refused, got {second:?}"
    );
    let message = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains(&first.pk.to_string()),
        "the conflict names the active job: {message}"
    );
    // Another source is independent.
    let other = store.insert_job(&new_job(scim.pk, T1)).await.expect("scim");
    assert_ne!(other.pk, first.pk);
    assert_eq!(
        store
            .find_active_job(jira.pk)
            .await
            .expect("find")
            .map(|j| j.pk),
        Some(first.pk)
    );

    // Held jobs count as active too.
    let owner = "runner-a";
    store
        .claim_job(&claim(owner, T1))
        .await
        .expect("claim")
        .expect("a job");
    let progress = JobProgress::default();
    let report = serde_json::json!({ "held": true });
    store
        .finish_job(
            first.pk,
            &finish(owner, JobState::AwaitingApproval, &progress, &report, T1),
        )
        .await
        .expect("hold");
    assert!(is_active_conflict(
        &store.insert_job(&new_job(jira.pk, T2)).await
    ));

    // Once the job stops, the source takes a new one.
    store
        .cancel_job(first.pk, "admin:alice", T2)
        .await
        .expect("cancel");
    let third = store
        .insert_job(&new_job(jira.pk, T2))
        .await
        .expect("after cancel");
    assert_eq!(third.state, JobState::Queued);

    let missing = store.insert_job(&new_job(9_999, T2)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "a missing source is NotFound, got {missing:?}"
    );
    assert!(matches!(
        store.get_job(9_999).await,
        Err(StoreError::NotFound(_))
    ));

    let listed = store
        .list_jobs(&JobFilter {
            source_pk: Some(jira.pk),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|j| j.pk).collect::<Vec<_>>(),
        vec![third.pk, first.pk],
        "newest first, only this source"
    );
    let cancelled = store
        .list_jobs(&JobFilter {
            state: Some(JobState::Cancelled),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .expect("list by state");
    assert_eq!(
        cancelled.iter().map(|j| j.pk).collect::<Vec<_>>(),
        vec![first.pk]
    );
}

/// The methods a jobs case needs: the store and its jobs units of work.
pub trait JobStoreAndStore: Store + JobStore {}
impl<T: Store + JobStore> JobStoreAndStore for T {}

pub async fn jobs_claim_lease_heartbeat_takeover(db: &TestDb) {
    let a = &db.store;
    // A second process on the same database.
    let b = AnyStore::open(&db.url).await.expect("second store");
    let source = file_source(a, "jira").await;
    let job = a.insert_job(&new_job(source.pk, T0)).await.expect("insert");

    let now = T0 + Duration::seconds(1);
    let claimed = a
        .claim_job(&claim("runner-a", now))
        .await
        .expect("claim")
        .expect("the queued job");
    assert_eq!(claimed.pk, job.pk);
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.lease_owner.as_deref(), Some("runner-a"));
    assert_eq!(claimed.lease_expires_at, Some(now + Duration::seconds(30)));
    assert_eq!(claimed.started_at, Some(now));

    // While the lease holds, nobody else gets the job.
    let later = now + Duration::seconds(10);
    assert_eq!(
        b.claim_job(&claim("runner-b", later))
            .await
            .expect("claim b"),
        None
    );

    // Heartbeat renews the lease; progress from the owner is written.
    let renewed = later + Duration::seconds(30);
    assert_eq!(
        a.heartbeat_job(job.pk, "runner-a", renewed, later)
            .await
            .expect("hb"),
        Lease::Held {
            cancel_requested: false
        }
    );
    let progress = JobProgress {
        phase: Some("fetch".to_owned()),
        pages: 3,
        accounts_fetched: 3_000,
        ..JobProgress::default()
    };
    assert_eq!(
        a.update_job_progress(job.pk, "runner-a", &progress, later)
            .await
            .expect("progress"),
        Lease::Held {
            cancel_requested: false
        }
    );
    assert_eq!(
        b.update_job_progress(job.pk, "runner-b", &JobProgress::default(), later)
            .await
            .expect("progress b"),
        Lease::Lost,
        "only the lease owner writes progress"
    );
    let seen = b.get_job(job.pk).await.expect("get");
    assert_eq!(seen.progress, progress);
    assert_eq!(seen.lease_expires_at, Some(renewed));

    // Before the renewed lease expires: still no takeover.
    let before_expiry = renewed - Duration::seconds(1);
    assert_eq!(
        b.claim_job(&claim("runner-b", before_expiry))
            .await
            .expect("claim"),
        None,
        "the heartbeat extended the lease"
    );

    // Runner A dies: after its lease expires, B takes the job over.
    let after_expiry = renewed + Duration::seconds(1);
    let taken = b
        .claim_job(&claim("runner-b", after_expiry))
        .await
        .expect("claim")
        .expect("the expired job");
    assert_eq!(taken.pk, job.pk);
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.lease_owner.as_deref(), Some("runner-b"));
    assert_eq!(taken.started_at, Some(now), "the first start is kept");
    assert_eq!(
        taken.progress, progress,
        "the progress stays until the new owner writes"
    );

    // B closes what A left open.
    let run = b
        .insert_job_run(
            job.pk,
            &NewRun {
                source_pk: source.pk,
                kind: "pull".to_owned(),
                dry_run: false,
                external_id_field: source.external_id_field,
                actor: "admin:alice".to_owned(),
                started_at: now,
            },
        )
        .await
        .expect("run");
    assert_eq!(
        b.fail_unfinished_runs(job.pk, after_expiry)
            .await
            .expect("close"),
        1
    );
    assert_eq!(
        b.fail_unfinished_runs(job.pk, after_expiry)
            .await
            .expect("again"),
        0
    );
    let runs = b.list_runs(source.pk, 10).await.expect("runs");
    assert_eq!(runs[0].pk, run);
    assert_eq!(runs[0].state, "failed");
    assert_eq!(runs[0].finished_at, Some(after_expiry));

    // A comes back: it has lost the lease and can write nothing.
    assert_eq!(
        a.heartbeat_job(
            job.pk,
            "runner-a",
            after_expiry + Duration::seconds(30),
            after_expiry
        )
        .await
        .expect("hb a"),
        Lease::Lost
    );
    let report = serde_json::json!({ "by": "a" });
    assert_eq!(
        a.finish_job(
            job.pk,
            &finish(
                "runner-a",
                JobState::Succeeded,
                &progress,
                &report,
                after_expiry
            )
        )
        .await
        .expect("finish a"),
        Lease::Lost
    );
    assert_eq!(
        b.get_job(job.pk).await.expect("get").state,
        JobState::Running
    );

    let done = JobProgress {
        phase: Some("report".to_owned()),
        changes_applied: 7,
        ..progress.clone()
    };
    let report = serde_json::json!({ "by": "b", "applied": 7 });
    let end = after_expiry + Duration::seconds(5);
    assert_eq!(
        b.finish_job(
            job.pk,
            &finish("runner-b", JobState::Succeeded, &done, &report, end)
        )
        .await
        .expect("finish b"),
        Lease::Held {
            cancel_requested: false
        }
    );
    let finished = a.get_job(job.pk).await.expect("get");
    assert_eq!(finished.state, JobState::Succeeded);
    assert_eq!(finished.report, Some(report));
    assert_eq!(finished.progress, done);
    assert_eq!(finished.finished_at, Some(end));
    assert_eq!(finished.lease_owner, None);
    assert_eq!(finished.lease_expires_at, None);
    assert_eq!(
        a.claim_job(&claim("runner-a", end + Duration::hours(1)))
            .await
            .expect("claim"),
        None,
        "a finished job is never claimed again"
    );
    assert!(a.find_active_job(source.pk).await.expect("find").is_none());
}

pub async fn jobs_concurrent_claims_and_inserts_take_one(db: &TestDb) {
    let a = &db.store;
    let b = AnyStore::open(&db.url).await.expect("second store");
    let source = file_source(a, "jira").await;

    // Two processes enqueue the same source's job at once: exactly one succeeds.
    for round in 0..5 {
        let at = T0 + Duration::minutes(round);
        let (job_a, job_b) = (new_job(source.pk, at), new_job(source.pk, at));
        let (first, second) = tokio::join!(a.insert_job(&job_a), b.insert_job(&job_b));
        let ok = [&first, &second].iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            ok, 1,
            "round {round}: exactly one insert wins: {first:?} / {second:?}"
        );
        assert!(
            is_active_conflict(&first) || is_active_conflict(&second),
            "the loser gets the one-active-job conflict"
        );
        // Two runners claim at once: exactly one gets it.
        let now = at + Duration::seconds(1);
        let (claim_a, claim_b) = (claim("runner-a", now), claim("runner-b", now));
        let (ca, cb) = tokio::join!(a.claim_job(&claim_a), b.claim_job(&claim_b));
        let (ca, cb) = (ca.expect("claim a"), cb.expect("claim b"));
        assert_eq!(
            usize::from(ca.is_some()) + usize::from(cb.is_some()),
            1,
            "round {round}: exactly one claim wins"
        );
        let (owner, job) = match (ca, cb) {
            (Some(job), None) => ("runner-a", job),
            (None, Some(job)) => ("runner-b", job),
            _ => unreachable!(),
        };
        let report = serde_json::json!({});
        let progress = JobProgress::default();
        assert_eq!(
            a.finish_job(
                job.pk,
                &finish(owner, JobState::Succeeded, &progress, &report, now)
            )
            .await
            .expect("finish"),
            Lease::Held {
                cancel_requested: false
            }
        );
    }
}

pub async fn jobs_cancel_approve_reject(store: &impl JobStoreAndStore) {
    let source = file_source(store, "jira").await;
    let progress = JobProgress::default();
    let report = serde_json::json!({ "planned": 40 });

    // Queued: cancelled at once.
    let queued = store
        .insert_job(&new_job(source.pk, T0))
        .await
        .expect("insert");
    let cancelled = store
        .cancel_job(queued.pk, "admin:bob", T0)
        .await
        .expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.finished_at, Some(T0));
    let again = store.cancel_job(queued.pk, "admin:bob", T0).await;
    assert!(
        matches!(again, Err(StoreError::Invalid(_))),
        "a finished job cannot be cancelled: {again:?}"
    );

    // Running: asked to stop; the runner sees it and ends the job.
    let running = store
        .insert_job(&new_job(source.pk, T1))
        .await
        .expect("insert");
    store
        .claim_job(&claim("runner", T1))
        .await
        .expect("claim")
        .expect("job");
    let asked = store
        .cancel_job(running.pk, "admin:bob", T1)
        .await
        .expect("cancel");
    assert_eq!(
        asked.state,
        JobState::Running,
        "a running job stops at its next check"
    );
    assert!(asked.cancel_requested);
    assert_eq!(
        store
            .heartbeat_job(running.pk, "runner", T1 + Duration::seconds(30), T1)
            .await
            .expect("hb"),
        Lease::Held {
            cancel_requested: true
        }
    );
    assert_eq!(
        store
            .update_job_progress(running.pk, "runner", &progress, T1)
            .await
            .expect("progress"),
        Lease::Held {
            cancel_requested: true
        }
    );
    store
        .finish_job(
            running.pk,
            &finish("runner", JobState::Cancelled, &progress, &report, T1),
        )
        .await
        .expect("finish");
    assert_eq!(
        store.get_job(running.pk).await.expect("get").state,
        JobState::Cancelled
    );

    // Running, but its runner died (lease expired): cancelled at once.
    let orphan = store
        .insert_job(&new_job(source.pk, T1))
        .await
        .expect("insert");
    store
        .claim_job(&claim("dead", T1))
        .await
        .expect("claim")
        .expect("job");
    let gone = store
        .cancel_job(orphan.pk, "admin:bob", T2)
        .await
        .expect("cancel");
    assert_eq!(gone.state, JobState::Cancelled);
    assert_eq!(gone.lease_owner, None);

    // Held for approval, approved: queued again with the approved count, then claimed.
    let held = store
        .insert_job(&new_job(source.pk, T2))
        .await
        .expect("insert");
    let not_held = store
        .decide_job(
            held.pk,
            &JobDecision {
                approve: true,
                approved_changes: 40,
                by: "admin:bob",
                at: T2,
            },
        )
        .await;
    assert!(
        matches!(not_held, Err(StoreError::Invalid(_))),
        "only a held job can be approved: {not_held:?}"
    );
    store
        .claim_job(&claim("runner", T2))
        .await
        .expect("claim")
        .expect("job");
    store
        .finish_job(
            held.pk,
            &finish("runner", JobState::AwaitingApproval, &progress, &report, T2),
        )
        .await
        .expect("hold");
    let waiting = store.get_job(held.pk).await.expect("get");
    assert_eq!(waiting.state, JobState::AwaitingApproval);
    assert_eq!(waiting.finished_at, None, "a held job has not finished");
    assert_eq!(waiting.lease_owner, None, "nothing runs a held job");
    assert_eq!(
        waiting.report,
        Some(report.clone()),
        "the plan summary is visible"
    );
    assert_eq!(
        store.claim_job(&claim("runner", T3)).await.expect("claim"),
        None,
        "a held job is not claimed"
    );
    let approved = store
        .decide_job(
            held.pk,
            &JobDecision {
                approve: true,
                approved_changes: 40,
                by: "admin:bob",
                at: T3,
            },
        )
        .await
        .expect("approve");
    assert_eq!(approved.state, JobState::Queued);
    assert_eq!(approved.approved_changes, Some(40));
    assert_eq!(approved.decided_by.as_deref(), Some("admin:bob"));
    assert_eq!(approved.decided_at, Some(T3));
    let reclaimed = store
        .claim_job(&claim("runner", T3))
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(reclaimed.pk, held.pk);
    assert_eq!(reclaimed.approved_changes, Some(40));
    store
        .finish_job(
            held.pk,
            &finish("runner", JobState::Succeeded, &progress, &report, T3),
        )
        .await
        .expect("finish");

    // Held, rejected: cancelled, nothing more runs.
    let rejected = store
        .insert_job(&new_job(source.pk, T3))
        .await
        .expect("insert");
    store
        .claim_job(&claim("runner", T3))
        .await
        .expect("claim")
        .expect("job");
    store
        .finish_job(
            rejected.pk,
            &finish("runner", JobState::AwaitingApproval, &progress, &report, T3),
        )
        .await
        .expect("hold");
    let decided = store
        .decide_job(
            rejected.pk,
            &JobDecision {
                approve: false,
                approved_changes: 0,
                by: "admin:carol",
                at: T3,
            },
        )
        .await
        .expect("reject");
    assert_eq!(decided.state, JobState::Cancelled);
    assert_eq!(decided.approved_changes, None);
    assert_eq!(decided.decided_by.as_deref(), Some("admin:carol"));
    assert_eq!(
        store.claim_job(&claim("runner", T3)).await.expect("claim"),
        None
    );

    // A runner may not put a job back to queued or running.
    let bad = store
        .finish_job(
            rejected.pk,
            &finish("runner", JobState::Queued, &progress, &report, T3),
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
}

pub async fn jobs_changes_undo_and_unseen_accounts(store: &impl JobStoreAndStore) {
    let source = file_source(store, "jira").await;
    import_users(
        store,
        &[
            user("u1", Some("ann@example.com")),
            user("u2", Some("bob@example.com")),
            user("u3", Some("cid@example.com")),
        ],
    )
    .await;
    store
        .import_accounts(
            source.pk,
            &[
                account("a1", Some("ann@example.com")),
                account("a2", Some("bob@example.com")),
                account("a3", Some("cid@example.com")),
            ],
            T0,
        )
        .await
        .expect("accounts");

    // A complete pull that no longer returns a3: it is kept but not used for matching.
    let seen = store
        .mark_accounts_seen(source.pk, &["a1".to_owned(), "a2".to_owned()])
        .await
        .expect("seen");
    assert_eq!(
        seen,
        SeenSummary {
            unseen: 1,
            seen_again: 0
        }
    );
    let again = store
        .mark_accounts_seen(source.pk, &["a1".to_owned(), "a2".to_owned()])
        .await
        .expect("seen again");
    assert_eq!(
        again,
        SeenSummary::default(),
        "nothing changes the second time"
    );
    let input = store
        .load_plan_input(source.pk, source.external_id_field)
        .await
        .expect("plan input");
    let ids: Vec<&str> = input
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, vec!["a1", "a2"], "an account not seen is not matched");

    // The job's run links u1 and u2.
    let job = store
        .insert_job(&new_job(source.pk, T0))
        .await
        .expect("job");
    store
        .claim_job(&claim("runner", T0))
        .await
        .expect("claim")
        .expect("job");
    let run_pk = store
        .insert_job_run(
            job.pk,
            &NewRun {
                source_pk: source.pk,
                kind: "pull".to_owned(),
                dry_run: false,
                external_id_field: source.external_id_field,
                actor: "admin:alice".to_owned(),
                started_at: T0,
            },
        )
        .await
        .expect("run");
    let plan = plan_links(&input.users, &input.accounts, &rules(&source));
    assert_eq!(plan.changes.len(), 2);
    let results = store
        .apply_batch(&ApplyBatch {
            source_pk: source.pk,
            run_pk,
            origin: Origin::Pull,
            actor: "admin:alice",
            at: T0,
            changes: &plan.changes,
            outcomes: &[],
        })
        .await
        .expect("apply");
    assert!(results.iter().all(|r| *r == ChangeResult::Applied));
    let changes = store
        .list_job_changes(job.pk, Some("new_link"), None, 100)
        .await
        .expect("changes");
    assert_eq!(
        changes
            .iter()
            .map(|c| (
                c.user_id.as_str(),
                c.old_value.as_deref(),
                c.new_value.as_deref()
            ))
            .collect::<Vec<_>>(),
        vec![("u1", None, Some("a1")), ("u2", None, Some("a2"))]
    );
    // Paging by audit key.
    let rest = store
        .list_job_changes(job.pk, None, Some(changes[0].audit_pk), 100)
        .await
        .expect("page");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].user_id, "u2");

    // Someone re-links u2 by hand (an import replacing the value) before the undo.
    store
        .import_users(
            &[linked_user("u2", Some("bob@example.com"), "manual-bob")],
            &import_options(true, T1),
        )
        .await
        .expect("hand edit");
    let progress = JobProgress::default();
    store
        .finish_job(
            job.pk,
            &finish(
                "runner",
                JobState::Succeeded,
                &progress,
                &serde_json::json!({}),
                T1,
            ),
        )
        .await
        .expect("finish");

    let undo_run = store
        .insert_job_run(
            job.pk,
            &NewRun {
                source_pk: source.pk,
                kind: "undo".to_owned(),
                dry_run: false,
                external_id_field: source.external_id_field,
                actor: "admin:bob".to_owned(),
                started_at: T2,
            },
        )
        .await
        .expect("undo run");
    let undone = store
        .undo_changes(&UndoBatch {
            run_pk: undo_run,
            actor: "admin:bob",
            at: T2,
            changes: &changes,
        })
        .await
        .expect("undo");
    assert_eq!(
        undone,
        vec![
            UndoResult::Reverted,
            UndoResult::Changed {
                current: Some("manual-bob".to_owned())
            }
        ]
    );
    let users = users_by_id(store).await;
    assert_eq!(users["u1"].external_id, None, "u1's link is reverted");
    assert_eq!(users["u1"].external_id_origin, None);
    assert_eq!(
        users["u2"].external_id.as_deref(),
        Some("manual-bob"),
        "u2's edit is kept"
    );
    let audit = store
        .list_audit(Some(users["u1"].pk), 10)
        .await
        .expect("audit");
    assert_eq!(audit[0].reason, "undo");
    assert_eq!(audit[0].old_value.as_deref(), Some("a1"));
    assert_eq!(audit[0].new_value, None);
    assert_eq!(audit[0].actor, "admin:bob");
    assert_eq!(audit[0].run_pk, Some(undo_run));
    let undo_rows = store
        .list_job_changes(job.pk, Some("undo"), None, 100)
        .await
        .expect("undo rows");
    assert_eq!(undo_rows.len(), 1);

    // Undoing again changes nothing: the value is no longer the job's.
    let twice = store
        .undo_changes(&UndoBatch {
            run_pk: undo_run,
            actor: "admin:bob",
            at: T2,
            changes: &changes[..1],
        })
        .await
        .expect("undo twice");
    assert_eq!(twice, vec![UndoResult::Changed { current: None }]);

    let report = serde_json::json!({ "reverted": 1 });
    let marked = store
        .mark_job_undone(job.pk, "admin:bob", T2, &report)
        .await
        .expect("mark");
    assert_eq!(marked.undone_at, Some(T2));
    assert_eq!(marked.undo_report, Some(report.clone()));
    let twice = store
        .mark_job_undone(job.pk, "admin:bob", T3, &report)
        .await;
    assert!(matches!(twice, Err(StoreError::Invalid(_))), "{twice:?}");

    // The pull sees a3 again: it is matched again.
    let back = store
        .mark_accounts_seen(
            source.pk,
            &["a1".to_owned(), "a2".to_owned(), "a3".to_owned()],
        )
        .await
        .expect("seen");
    assert_eq!(
        back,
        SeenSummary {
            unseen: 0,
            seen_again: 1
        }
    );
    let input = store
        .load_plan_input(source.pk, source.external_id_field)
        .await
        .expect("plan input");
    assert_eq!(input.accounts.len(), 3);
}

pub async fn jobs_schedules_enqueue_due_sources(store: &impl JobStoreAndStore) {
    let hourly = file_source(store, "hourly").await;
    let daily = file_source(store, "daily").await;
    let manual = file_source(store, "manual").await;
    store
        .set_schedule(hourly.pk, Some(60), Some(T0))
        .await
        .expect("schedule");
    store
        .set_schedule(daily.pk, Some(1_440), Some(T0 + Duration::hours(12)))
        .await
        .expect("schedule");
    assert_eq!(
        store.get_schedule(manual.pk).await.expect("get"),
        Schedule {
            every_minutes: None,
            next_run_at: None
        }
    );
    assert!(matches!(
        store.set_schedule(9_999, Some(5), Some(T0)).await,
        Err(StoreError::NotFound(_))
    ));

    let now = T0 + Duration::minutes(5);
    let due = store
        .enqueue_due_jobs(now, "schedule")
        .await
        .expect("enqueue");
    assert_eq!(
        due.iter().map(|j| j.source.as_str()).collect::<Vec<_>>(),
        vec!["hourly"]
    );
    assert_eq!(due[0].requested_by, "schedule");
    assert_eq!(
        store
            .get_schedule(hourly.pk)
            .await
            .expect("get")
            .next_run_at,
        Some(now + Duration::minutes(60))
    );
    // Not due again until the interval passed.
    assert!(store
        .enqueue_due_jobs(now, "schedule")
        .await
        .expect("enqueue")
        .is_empty());

    // Due while its job is still active: the schedule moves on, no second job.
    let next = now + Duration::minutes(61);
    assert!(store
        .enqueue_due_jobs(next, "schedule")
        .await
        .expect("enqueue")
        .is_empty());
    assert_eq!(
        store
            .get_schedule(hourly.pk)
            .await
            .expect("get")
            .next_run_at,
        Some(next + Duration::minutes(60))
    );
    let jobs = store
        .list_jobs(&JobFilter {
            source_pk: Some(hourly.pk),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(jobs.len(), 1);

    store
        .set_schedule(hourly.pk, None, None)
        .await
        .expect("clear");
    assert_eq!(
        store.get_schedule(hourly.pk).await.expect("get"),
        Schedule {
            every_minutes: None,
            next_run_at: None
        }
    );
}
