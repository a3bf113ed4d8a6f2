//! Opening and migrations, tokens, runs, ping, and a large batch through the bulk paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use crate::support::*;
use tether_core::{ChangeResult, ExternalIdField, Situation};
use tether_store::{
    situation_counts, AnyStore, ImportSummary, NewAccount, NewRun, NewToken, NewUser, RunFinish,
    Store, StoreError,
};

pub async fn migrations_are_idempotent(db: &TestDb) {
    let source = file_source(&db.store, "hr").await;
    import_users(
        &db.store,
        &[linked_user("u1", Some("ann@example.com"), "ext-1")],
    )
    .await;
    for attempt in 1..=2 {
        let again = AnyStore::open(&db.url).await.unwrap_or_else(|e| {
            panic!("opening an existing database again (attempt {attempt}) must succeed: {e}")
        });
        again.ping().await.expect("ping");
        let found = again
            .find_source("hr")
            .await
            .expect("find_source")
            .expect("the source survives");
        assert_eq!(found.pk, source.pk);
        assert_eq!(
            again.count_users().await.expect("count_users"),
            1,
            "the data survives"
        );
        assert_eq!(
            again.list_audit(None, 10).await.expect("list_audit").len(),
            1
        );
        drop(again);
    }
    // The first store still works beside the reopened ones.
    assert_eq!(
        db.store.list_sources().await.expect("list_sources").len(),
        1
    );
}

pub async fn empty_store_and_empty_batches(store: &impl Store) {
    store.ping().await.expect("ping");
    assert_eq!(store.count_users().await.expect("count_users"), 0);
    assert!(store.list_sources().await.expect("list_sources").is_empty());
    assert!(store
        .list_audit(None, 10)
        .await
        .expect("list_audit")
        .is_empty());
    assert!(all_users(store).await.is_empty());

    let source = file_source(store, "cloud").await;
    let none = store
        .import_users(&[], &import_options(false, T1))
        .await
        .expect("an empty user import");
    assert_eq!(none, ImportSummary::default());
    let none = store
        .import_accounts(source.pk, &[], T1)
        .await
        .expect("an empty account import");
    assert_eq!(none, ImportSummary::default());
    let input = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    assert!(input.users.is_empty() && input.stored.is_empty() && input.accounts.is_empty());
    let report = run(store, &source, T1, 100).await;
    assert!(report.results.is_empty());
    assert!(
        store
            .get_users_by_pk(&[1, 2, 3])
            .await
            .expect("get_users_by_pk")
            .is_empty(),
        "unknown keys are skipped"
    );
    assert!(store
        .get_accounts_by_pk(&[1, 2, 3])
        .await
        .expect("get_accounts_by_pk")
        .is_empty());
    store.ping().await.expect("ping");
}

/// Callers pass `OffsetDateTime::now_utc()`, which has nanoseconds; PostgreSQL keeps
/// microseconds. Both stores must give back the same instant: the caller's, to the microsecond.
pub async fn timestamps_round_trip_to_the_microsecond(store: &impl Store) {
    let at = T0 + time::Duration::nanoseconds(123_456_789);
    let kept = T0 + time::Duration::microseconds(123_456);
    let source = store
        .insert_source(
            &tether_store::NewSource {
                name: "precise".to_owned(),
                kind: "file".to_owned(),
                external_id_field: ExternalIdField::AccountId,
                link_inactive: false,
            },
            at,
        )
        .await
        .expect("insert_source");
    let found = store
        .find_source("precise")
        .await
        .expect("find_source")
        .expect("found");
    assert_eq!(found.created_at, kept, "created_at");
    assert_eq!(
        source.created_at, kept,
        "the returned source says what was stored"
    );

    store
        .import_users(
            &[linked_user("u1", None, "ext-1")],
            &import_options(false, at),
        )
        .await
        .expect("import_users");
    let record = user_by_id(store, "u1").await;
    assert_eq!(record.external_id_set_at, Some(kept), "external_id_set_at");
    let audit = store.list_audit(None, 10).await.expect("list_audit");
    assert_eq!(audit[0].at, kept, "audit at");

    let run_pk = store
        .insert_run(&NewRun {
            source_pk: source.pk,
            kind: "reconcile".to_owned(),
            dry_run: true,
            external_id_field: ExternalIdField::AccountId,
            actor: "tester".to_owned(),
            started_at: at,
        })
        .await
        .expect("insert_run");
    let finished = at + time::Duration::nanoseconds(999);
    store
        .finish_run(
            run_pk,
            &RunFinish {
                finished_at: finished,
                state: "succeeded".to_owned(),
                summary: serde_json::json!({}),
                applied: 0,
            },
        )
        .await
        .expect("finish_run");
    let runs = store.list_runs(source.pk, 1).await.expect("list_runs");
    let finished_kept = T0 + time::Duration::microseconds(123_457);
    assert_eq!(
        (runs[0].started_at, runs[0].finished_at),
        (kept, Some(finished_kept)),
        "run times"
    );
}

/// A record the caller names that does not exist is `NotFound`, and nothing is written.
/// Every call is tried and all wrong answers are reported together.
pub async fn missing_records_are_not_found(store: &impl Store) {
    let source = file_source(store, "cloud").await;
    let missing_source = source.pk + 1000;
    let mut wrong = Vec::new();
    let mut expect_not_found = |what: &str, result: tether_store::Result<()>| {
        if !matches!(result, Err(StoreError::NotFound(_))) {
            wrong.push(format!("{what} must be NotFound, got {result:?}"));
        }
    };
    let result = store
        .update_source_field(missing_source, ExternalIdField::Email)
        .await;
    expect_not_found("update_source_field of a missing source", result);
    let new_run = NewRun {
        source_pk: missing_source,
        kind: "reconcile".to_owned(),
        dry_run: false,
        external_id_field: ExternalIdField::AccountId,
        actor: "tester".to_owned(),
        started_at: T1,
    };
    let result = store.insert_run(&new_run).await.map(|_| ());
    expect_not_found("insert_run for a missing source", result);
    let result = store
        .import_accounts(missing_source, &[account("acc-1", None)], T1)
        .await
        .map(|_| ());
    expect_not_found("import_accounts into a missing source", result);
    let finish = RunFinish {
        finished_at: T2,
        state: "succeeded".to_owned(),
        summary: serde_json::json!({}),
        applied: 0,
    };
    let result = store.finish_run(987_654, &finish).await;
    expect_not_found("finish_run of a missing run", result);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(store
        .list_runs(missing_source, 10)
        .await
        .expect("list_runs")
        .is_empty());
    assert!(store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input")
        .accounts
        .is_empty());
}

fn token(name: &str, scope: &str, hash: &str) -> NewToken {
    NewToken {
        name: name.to_owned(),
        scope: scope.to_owned(),
        hash: hash.to_owned(),
        created_at: T0,
    }
}

pub async fn tokens_insert_and_conflict(store: &impl Store) {
    let ci = store
        .insert_token(&token("ci", "admin", &"a".repeat(64)))
        .await
        .expect("insert_token");
    let scim = store
        .insert_token(&token("scim-jira", "scim", &"b".repeat(64)))
        .await
        .expect("insert_token");
    assert_ne!(ci, scim);
    match store
        .insert_token(&token("ci", "scim", &"c".repeat(64)))
        .await
    {
        Err(StoreError::Conflict { constraint, .. }) => assert_eq!(constraint, "tokens_name"),
        other => panic!("a duplicate token name must be Conflict{{tokens_name}}, got {other:?}"),
    }
    let third = store
        .insert_token(&token("ci-2", "admin", &"c".repeat(64)))
        .await
        .expect("the refused name wrote nothing");
    assert!(third != ci && third != scim);
}

pub async fn list_runs_records_runs(store: &impl Store) {
    let source = file_source(store, "cloud").await;
    let other = file_source(store, "other").await;
    let new_run = |source_pk, dry_run, field, at| NewRun {
        source_pk,
        kind: "reconcile".to_owned(),
        dry_run,
        external_id_field: field,
        actor: "admin".to_owned(),
        started_at: at,
    };
    let first = store
        .insert_run(&new_run(source.pk, true, ExternalIdField::AccountId, T0))
        .await
        .expect("insert_run");
    let second = store
        .insert_run(&new_run(source.pk, false, ExternalIdField::Email, T1))
        .await
        .expect("insert_run");
    let elsewhere = store
        .insert_run(&new_run(other.pk, false, ExternalIdField::Key, T1))
        .await
        .expect("insert_run");
    let third = store
        .insert_run(&new_run(source.pk, false, ExternalIdField::Username, T2))
        .await
        .expect("insert_run");
    assert_eq!(
        [first, second, third, elsewhere]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        4
    );

    store
        .finish_run(
            second,
            &RunFinish {
                finished_at: T3,
                state: "failed".to_owned(),
                summary: serde_json::json!({ "error": "source unreachable", "situations": { "linked": 3 } }),
                applied: 7,
            },
        )
        .await
        .expect("finish_run");

    let runs = store.list_runs(source.pk, 10).await.expect("list_runs");
    assert_eq!(
        runs.iter().map(|r| r.pk).collect::<Vec<_>>(),
        vec![third, second, first],
        "newest first (a limit keeps the newest)"
    );
    let by_pk: BTreeMap<i64, &tether_store::Run> = runs.iter().map(|r| (r.pk, r)).collect();
    assert_eq!(
        by_pk.keys().copied().collect::<Vec<_>>(),
        {
            let mut own = vec![first, second, third];
            own.sort_unstable();
            own
        },
        "the source's own runs"
    );
    let view = |pk: i64| {
        let r = by_pk[&pk];
        (
            r.kind.clone(),
            r.dry_run,
            r.external_id_field,
            r.actor.clone(),
            r.state.clone(),
            r.started_at,
            r.finished_at,
            r.applied,
        )
    };
    assert_eq!(
        view(first),
        (
            "reconcile".to_owned(),
            true,
            ExternalIdField::AccountId,
            "admin".to_owned(),
            "running".to_owned(),
            T0,
            None,
            0
        )
    );
    assert_eq!(
        view(second),
        (
            "reconcile".to_owned(),
            false,
            ExternalIdField::Email,
            "admin".to_owned(),
            "failed".to_owned(),
            T1,
            Some(T3),
            7
        )
    );
    assert_eq!(view(third).2, ExternalIdField::Username);
    assert_eq!(
        by_pk[&second].summary,
        serde_json::json!({ "error": "source unreachable", "situations": { "linked": 3 } })
    );
    assert_eq!(
        by_pk[&first].summary,
        serde_json::json!({}),
        "an unfinished run has an empty summary"
    );

    let newest: Vec<i64> = store
        .list_runs(source.pk, 2)
        .await
        .expect("list_runs")
        .iter()
        .map(|r| r.pk)
        .collect();
    assert_eq!(newest, vec![third, second], "the limit keeps the newest");
    let others = store.list_runs(other.pk, 10).await.expect("list_runs");
    assert_eq!(
        others.iter().map(|r| r.pk).collect::<Vec<_>>(),
        vec![elsewhere]
    );
}

/// Enough rows to need the bulk paths (batched statements, several apply batches), few
/// enough to stay quick.
const BULK: usize = 20_000;

pub async fn bulk_round_trip(store: &impl Store) {
    let source = file_source(store, "cloud").await;
    // User i: every 10th has no account (no_match), every 100th+1 is linked by the file.
    let users: Vec<NewUser> = (0..BULK)
        .map(|i| {
            let email = if i % 3 == 0 {
                format!("User{i}@Example.COM")
            } else {
                format!("user{i}@example.com")
            };
            let row = user(&format!("user-{i:05}"), Some(&email));
            if i % 100 == 1 {
                NewUser {
                    external_id: Some(format!("acc-{i}")),
                    ..row
                }
            } else {
                row
            }
        })
        .collect();
    let accounts: Vec<NewAccount> = (0..BULK)
        .filter(|i| i % 10 != 0)
        .map(|i| account(&format!("acc-{i}"), Some(&format!("user{i}@example.com"))))
        .collect();
    let (no_match, preset) = (BULK / 10, BULK / 100);
    let new_links = BULK - no_match - preset;

    let imported = store
        .import_users(&users, &import_options(false, T0))
        .await
        .expect("import_users");
    assert_eq!(
        imported,
        ImportSummary {
            inserted: BULK as u64,
            updated: 0,
            unchanged: 0,
            external_ids_set: preset as u64
        }
    );
    let imported = store
        .import_accounts(source.pk, &accounts, T0)
        .await
        .expect("import_accounts");
    assert_eq!(
        imported,
        ImportSummary {
            inserted: accounts.len() as u64,
            ..ImportSummary::default()
        }
    );
    assert_eq!(store.count_users().await.expect("count_users"), BULK as u64);

    let report = run(store, &source, T1, 1000).await;
    let planned = report.plan.summary();
    assert_eq!(planned.get(&Situation::NewLink), Some(&(new_links as u64)));
    assert_eq!(planned.get(&Situation::Linked), Some(&(preset as u64)));
    assert_eq!(planned.get(&Situation::NoMatch), Some(&(no_match as u64)));
    assert_eq!(report.results.len(), new_links);
    assert!(
        report.results.iter().all(|r| *r == ChangeResult::Applied),
        "every change applies"
    );

    let (input, again) = plan(store, &source).await;
    assert_eq!(input.users.len(), BULK);
    assert_eq!(input.accounts.len(), accounts.len());
    assert!(again.changes.is_empty());
    assert!(
        new_outcomes(&input, &again).is_empty(),
        "the stored outcomes are the plan's"
    );
    let counts = situation_counts(&input);
    let expected: BTreeMap<Situation, u64> = [
        (Situation::Linked, (BULK - no_match) as u64),
        (Situation::NoMatch, no_match as u64),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, expected);

    let audit = store
        .list_audit(None, (BULK + 10) as u32)
        .await
        .expect("list_audit");
    assert_eq!(
        audit.len(),
        preset + new_links,
        "one audit entry per External ID written"
    );

    let reimported = store
        .import_users(&users, &import_options(false, T2))
        .await
        .expect("re-import users");
    assert_eq!(
        reimported,
        ImportSummary {
            unchanged: BULK as u64,
            ..ImportSummary::default()
        }
    );
    let reimported = store
        .import_accounts(source.pk, &accounts, T2)
        .await
        .expect("re-import accounts");
    assert_eq!(
        reimported,
        ImportSummary {
            unchanged: accounts.len() as u64,
            ..ImportSummary::default()
        }
    );
    let user_7 = user_by_id(store, "user-00007").await;
    assert_eq!(user_7.external_id.as_deref(), Some("acc-7"));
}
