//! Linking: what `load_link_input` gives the engine, a full run (load → plan → apply →
//! load → plan converges), and `apply_batch`'s re-checks that never overwrite another writer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use crate::support::*;
use tether_core::{
    settle, AccountType, Change, ChangeResult, Evidence, Origin, Outcome, Situation,
};
use tether_store::{situation_counts, NewAccount, NewUser, Source, Store};

pub async fn load_link_input_shapes(db: &TestDb) {
    let store = &db.store;
    let cloud = file_source(store, "cloud").await;
    let server = file_source(store, "server").await;
    let empty = file_source(store, "empty").await;
    import_users(
        store,
        &[
            user("valid", Some(" Ann@Example.COM")),
            user("no-email", None),
        ],
    )
    .await;
    import_users(
        store,
        &[
            user("invalid", Some("not-an-address")),
            linked_user("linked", Some("lin@example.com"), "acc-1"),
            user("excluded", Some("ex@example.com")),
        ],
    )
    .await;
    let excluded_pk = user_by_id(store, "excluded").await.pk;
    let touched = db
        .execute_raw(&format!(
            "UPDATE users SET excluded = TRUE WHERE pk = {excluded_pk}"
        ))
        .await
        .expect("marking a user excluded through a raw connection");
    assert_eq!(touched, 1);
    let cloud_rows = vec![
        account("acc-1", Some("lin@example.com")),
        account("acc-2", Some("ann@example.com")),
    ];
    store
        .import_accounts(cloud.pk, &cloud_rows, T0)
        .await
        .expect("import_accounts");
    store
        .import_accounts(server.pk, &[account("acc-9", Some("ann@example.com"))], T0)
        .await
        .expect("import_accounts");

    let input = store
        .load_link_input(cloud.pk)
        .await
        .expect("load_link_input");
    let records = all_users(store).await;
    let pks: Vec<i64> = input.users.iter().map(|u| u.pk).collect();
    assert_eq!(
        pks,
        records.iter().map(|u| u.pk).collect::<Vec<_>>(),
        "all users, ordered by pk"
    );
    assert!(
        pks.windows(2).all(|w| w[0] < w[1]),
        "ordered by pk: {pks:?}"
    );
    let by_id: BTreeMap<&str, &tether_core::UserRow> = records
        .iter()
        .map(|r| r.id.as_str())
        .zip(&input.users)
        .collect();
    let view = |id: &str| {
        let row = by_id[id];
        (
            row.has_email,
            row.email_key.as_deref(),
            row.external_id.as_deref(),
            row.excluded,
        )
    };
    assert_eq!(view("valid"), (true, Some("ann@example.com"), None, false));
    assert_eq!(view("no-email"), (false, None, None, false));
    assert_eq!(
        view("invalid"),
        (true, None, None, false),
        "an invalid address has an e-mail but no key"
    );
    assert_eq!(
        view("linked"),
        (true, Some("lin@example.com"), Some("acc-1"), false)
    );
    assert_eq!(view("excluded"), (true, Some("ex@example.com"), None, true));
    assert!(user_by_id(store, "excluded").await.excluded);
    assert_eq!(
        input.stored,
        vec![None; 5],
        "no run yet: nothing stored, aligned with users"
    );

    let mut accounts = input.accounts.clone();
    accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    let shapes: Vec<_> = accounts
        .iter()
        .map(|a| {
            (
                a.account_id.as_str(),
                a.username.as_deref(),
                a.key.as_deref(),
                a.email.as_deref(),
                a.email_key.as_deref(),
                a.active,
                a.account_type,
            )
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            (
                "acc-1",
                Some("name-acc-1"),
                Some("key-acc-1"),
                Some("lin@example.com"),
                Some("lin@example.com"),
                true,
                AccountType::Atlassian
            ),
            (
                "acc-2",
                Some("name-acc-2"),
                Some("key-acc-2"),
                Some("ann@example.com"),
                Some("ann@example.com"),
                true,
                AccountType::Atlassian
            ),
        ],
        "the source's own accounts only"
    );
    let server_input = store
        .load_link_input(server.pk)
        .await
        .expect("load_link_input");
    assert_eq!(
        server_input
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect::<Vec<_>>(),
        vec!["acc-9"]
    );
    let empty_input = store
        .load_link_input(empty.pk)
        .await
        .expect("load_link_input");
    assert!(empty_input.accounts.is_empty());
    assert_eq!(
        empty_input.users, input.users,
        "every source sees every user"
    );

    // A run stores an outcome for every user of that source, and for no other source.
    let report = run(store, &cloud, T1, 100).await;
    let after = store
        .load_link_input(cloud.pk)
        .await
        .expect("load_link_input");
    assert_eq!(after.users.len(), after.stored.len());
    let stored_now = stored_by_user(&after);
    for outcome in &report.plan.outcomes {
        let expected = match report
            .plan
            .changes
            .iter()
            .zip(&report.results)
            .find(|(c, _)| c.user_pk == outcome.user_pk)
        {
            Some((change, result)) => settle(change, result).expect("a settled outcome"),
            None => outcome.clone(),
        };
        assert_eq!(
            stored_now[&outcome.user_pk],
            Some(stored(&expected)),
            "user {}",
            outcome.user_pk
        );
    }
    let server_after = store
        .load_link_input(server.pk)
        .await
        .expect("load_link_input");
    assert_eq!(
        server_after.stored,
        vec![None; 5],
        "outcomes are kept per source"
    );
}

/// The users and accounts of a source that meets most situations.
async fn scenario(store: &impl Store) -> Source {
    let source = file_source(store, "cloud").await;
    let inactive = NewAccount {
        active: false,
        ..account("acc-ina", Some("ina@example.com"))
    };
    let bot = NewAccount {
        account_type: AccountType::App,
        ..account("acc-bot", Some("carol@example.com"))
    };
    let accounts = vec![
        account("acc-alice", Some("alice@example.com")),
        account("acc-bob", Some("bob@example.com")),
        account("acc-eve-1", Some("eve@example.com")),
        account("acc-eve-2", Some("EVE@example.com")),
        inactive,
        account("acc-frank", Some("frank@example.com")),
        account("acc-ivy", Some("ivy@example.com")),
        account("acc-jack", Some("jack@example.com")),
        account("acc-lena", Some("LENA@example.com")),
        bot,
    ];
    store
        .import_accounts(source.pk, &accounts, T0)
        .await
        .expect("import_accounts");
    let users: Vec<NewUser> = vec![
        user("alice", Some("Alice@Example.com")),
        linked_user("bob", Some("bob@example.com"), "acc-bob"),
        user("carol", Some("carol@example.com")),
        user("dave", None),
        user("eve", Some("eve@example.com")),
        user("ina", Some("ina@example.com")),
        user("frank-1", Some("frank@example.com")),
        user("frank-2", Some("Frank@example.com")),
        user("gina", Some("gina@")),
        linked_user("hank", Some("hank@example.com"), "acc-gone"),
        linked_user("ivy", Some("ivy@example.com"), "old-ivy"),
        user("jack", Some("jack@example.com")),
        linked_user("kim", Some("kim@example.com"), "acc-jack"),
        user("lena", Some("lena@example.com")),
    ];
    import_users(store, &users).await;
    source
}

pub async fn full_loop_converges(store: &impl Store) {
    let source = scenario(store).await;
    let users = users_by_id(store).await;
    let id_of: BTreeMap<i64, String> = users.values().map(|u| (u.pk, u.id.clone())).collect();
    let accounts: BTreeMap<String, i64> = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input")
        .accounts
        .iter()
        .map(|a| (a.account_id.clone(), a.pk))
        .collect();

    let report = run(store, &source, T1, 1000).await;
    let situations: BTreeMap<&str, Situation> = report
        .plan
        .outcomes
        .iter()
        .map(|o| (id_of[&o.user_pk].as_str(), o.situation))
        .collect();
    use Situation::*;
    let expected: BTreeMap<&str, Situation> = [
        ("alice", NewLink),
        ("bob", Linked),
        ("carol", NoMatch),
        ("dave", NoEmail),
        ("eve", DuplicateAccounts),
        ("ina", InactiveAccount),
        ("frank-1", DuplicateUsers),
        ("frank-2", DuplicateUsers),
        ("gina", InvalidEmail),
        ("hank", OrphanedLink),
        ("ivy", Conflict),
        ("jack", AccountTaken),
        ("kim", Linked),
        ("lena", NewLink),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        situations, expected,
        "the plan over what load_link_input gave"
    );
    let mut expected_changes = vec![
        Change {
            user_pk: users["alice"].pk,
            account_pk: accounts["acc-alice"],
            old: None,
            new: "acc-alice".to_owned(),
        },
        Change {
            user_pk: users["lena"].pk,
            account_pk: accounts["acc-lena"],
            old: None,
            new: "acc-lena".to_owned(),
        },
    ];
    expected_changes.sort_by_key(|c| c.user_pk);
    assert_eq!(report.plan.changes, expected_changes);
    assert_eq!(
        report.results,
        vec![ChangeResult::Applied, ChangeResult::Applied]
    );

    // The writes, with who and when.
    for (id, value) in [("alice", "acc-alice"), ("lena", "acc-lena")] {
        let record = user_by_id(store, id).await;
        assert_eq!(
            (
                record.external_id.as_deref(),
                record.external_id_origin,
                record.external_id_set_at
            ),
            (Some(value), Some(Origin::Pull), Some(T1)),
            "{id}"
        );
    }
    let audit = store.list_audit(None, 100).await.expect("list_audit");
    let run_entries: Vec<_> = audit
        .iter()
        .filter(|e| e.run_pk == Some(report.run_pk))
        .collect();
    assert_eq!(
        run_entries.len(),
        2,
        "one audit entry per applied change: {audit:?}"
    );
    for entry in &run_entries {
        let id = id_of[&entry.user_pk].as_str();
        let value = format!("acc-{id}");
        assert_eq!(
            (
                entry.at,
                entry.actor.as_str(),
                entry.origin,
                entry.old_value.as_deref(),
                entry.new_value.as_deref()
            ),
            (T1, "tester", Origin::Pull, None, Some(value.as_str())),
            "{id}"
        );
    }
    assert_eq!(
        audit.len(),
        2 + 4,
        "the run's entries and the import's (bob, hank, ivy, kim)"
    );
    assert!(audit
        .iter()
        .filter(|e| e.run_pk.is_none())
        .all(|e| e.origin == Origin::Import));

    // Stored outcomes are the situations after the apply: new links are linked now.
    let after_outcomes: Vec<Outcome> = report
        .plan
        .outcomes
        .iter()
        .map(
            |o| match report.plan.changes.iter().find(|c| c.user_pk == o.user_pk) {
                Some(change) => settle(change, &ChangeResult::Applied).expect("settled"),
                None => o.clone(),
            },
        )
        .collect();
    let (input, plan2) = plan(store, &source).await;
    let stored_now = stored_by_user(&input);
    for outcome in &after_outcomes {
        assert_eq!(
            stored_now[&outcome.user_pk],
            Some(stored(outcome)),
            "user {}",
            id_of[&outcome.user_pk]
        );
    }
    assert_eq!(
        stored_now[&users["alice"].pk].as_ref().map(|s| s.situation),
        Some(Linked)
    );
    assert_eq!(
        stored_now[&users["alice"].pk]
            .as_ref()
            .map(|s| s.evidence.clone()),
        Some(
            Evidence {
                accounts: vec![accounts["acc-alice"]],
                users: vec![],
                total: 1
            }
            .encode()
        )
    );

    // Planning again finds nothing to do and nothing new to store.
    assert!(
        plan2.changes.is_empty(),
        "a second plan has no changes: {:?}",
        plan2.changes
    );
    assert_eq!(plan2.outcomes, after_outcomes);
    assert!(new_outcomes(&input, &plan2).is_empty());
    let counts = situation_counts(&input);
    assert_eq!(counts.get(&Linked), Some(&4));
    assert_eq!(counts.get(&NewLink), None);
    assert_eq!(counts.values().sum::<u64>(), 14);

    let runs = store.list_runs(source.pk, 10).await.expect("list_runs");
    assert_eq!(runs.len(), 1);
    let recorded = &runs[0];
    assert_eq!(
        (
            recorded.pk,
            recorded.kind.as_str(),
            recorded.dry_run,
            recorded.actor.as_str(),
            recorded.state.as_str()
        ),
        (report.run_pk, "reconcile", false, "tester", "succeeded")
    );
    assert_eq!(
        (
            recorded.started_at,
            recorded.finished_at,
            recorded.applied,
            recorded.external_id_field
        ),
        (T1, Some(T1), 2, source.external_id_field)
    );
    assert_eq!(recorded.summary, serde_json::json!({ "changes": 2 }));

    // A new account for carol: the next run links her and replaces her stored outcome.
    store
        .import_accounts(
            source.pk,
            &[account("acc-carol", Some("carol@example.com"))],
            T2,
        )
        .await
        .expect("import_accounts");
    let second = run(store, &source, T2, 1000).await;
    assert_eq!(second.plan.changes.len(), 1);
    assert_eq!(second.plan.changes[0].user_pk, users["carol"].pk);
    assert_eq!(second.results, vec![ChangeResult::Applied]);
    let input = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    let stored_now = stored_by_user(&input);
    assert_eq!(
        stored_now[&users["carol"].pk].as_ref().map(|s| s.situation),
        Some(Linked)
    );
    assert_eq!(
        stored_now[&users["dave"].pk].as_ref().map(|s| s.situation),
        Some(NoEmail)
    );
    assert_eq!(situation_counts(&input).get(&Linked), Some(&5));

    let third = run(store, &source, T3, 1000).await;
    assert!(third.plan.changes.is_empty());
    assert_eq!(
        store
            .list_runs(source.pk, 10)
            .await
            .expect("list_runs")
            .len(),
        3
    );
    assert_eq!(
        store.list_audit(None, 100).await.expect("list_audit").len(),
        2 + 4 + 1
    );
}

/// Users `a` and `b` with accounts of their own: a plan with two new links.
async fn two_new_links(store: &impl Store) -> Source {
    let source = file_source(store, "cloud").await;
    store
        .import_accounts(
            source.pk,
            &[
                account("acc-a", Some("a@example.com")),
                account("acc-b", Some("b@example.com")),
            ],
            T0,
        )
        .await
        .expect("import_accounts");
    import_users(
        store,
        &[
            user("a", Some("a@example.com")),
            user("b", Some("b@example.com")),
            user("z", Some("z@example.com")),
        ],
    )
    .await;
    source
}

/// Applies the whole plan in one run at `at`, in one batch: the run and the results by user pk.
async fn apply_plan(
    store: &impl Store,
    source: &Source,
    input: &tether_store::LinkInput,
    plan: &tether_core::Plan,
    at: tether_store::Timestamp,
) -> (i64, BTreeMap<i64, ChangeResult>) {
    let run_pk = start_run(store, source, at).await;
    let results = apply(store, source, run_pk, at, input, plan, &plan.changes, 1000).await;
    (run_pk, by_user(&plan.changes, &results))
}

/// Each change's result by the user it was for.
fn by_user(changes: &[Change], results: &[ChangeResult]) -> BTreeMap<i64, ChangeResult> {
    assert_eq!(changes.len(), results.len(), "one result per change");
    changes
        .iter()
        .map(|c| c.user_pk)
        .zip(results.iter().cloned())
        .collect()
}

/// Applies `changes` alone, with no outcomes to store.
async fn apply_only(
    store: &impl Store,
    source: &Source,
    run_pk: i64,
    at: tether_store::Timestamp,
    changes: &[Change],
) -> Vec<ChangeResult> {
    let batch = tether_store::ApplyBatch {
        source_pk: source.pk,
        run_pk,
        origin: Origin::Pull,
        actor: "tester",
        at,
        changes,
        outcomes: &[],
    };
    store.apply_batch(&batch).await.expect("apply_batch")
}

fn change_for(plan: &tether_core::Plan, user_pk: i64) -> &Change {
    plan.changes
        .iter()
        .find(|c| c.user_pk == user_pk)
        .expect("a change for the user")
}

fn stored_situation(
    input: &tether_store::LinkInput,
    user_pk: i64,
) -> Option<tether_store::StoredOutcome> {
    stored_by_user(input)[&user_pk].clone()
}

pub async fn apply_refuses_a_changed_external_id(store: &impl Store) {
    let source = two_new_links(store).await;
    let (input, plan) = plan(store, &source).await;
    assert_eq!(plan.changes.len(), 2);
    let (a, b) = (user_by_id(store, "a").await, user_by_id(store, "b").await);

    // After the plan, someone else gives `a` another External ID.
    store
        .import_users(
            &[linked_user("a", Some("a@example.com"), "other-a")],
            &import_options(false, T1),
        )
        .await
        .expect("import_users");
    let (run_pk, results) = apply_plan(store, &source, &input, &plan, T2).await;
    assert_eq!(
        results[&a.pk],
        ChangeResult::Changed {
            current: "other-a".to_owned()
        }
    );
    assert_eq!(results[&b.pk], ChangeResult::Applied);

    let a_now = user_by_id(store, "a").await;
    assert_eq!(
        (
            a_now.external_id.as_deref(),
            a_now.external_id_origin,
            a_now.external_id_set_at
        ),
        (Some("other-a"), Some(Origin::Import), Some(T1)),
        "the other writer's value stands"
    );
    let a_audit = store.list_audit(Some(a.pk), 10).await.expect("list_audit");
    assert_eq!(a_audit.len(), 1, "only the import's entry: {a_audit:?}");
    assert_eq!(a_audit[0].origin, Origin::Import);
    let b_audit = store.list_audit(Some(b.pk), 10).await.expect("list_audit");
    assert_eq!(b_audit.len(), 1);
    assert_eq!(
        (b_audit[0].run_pk, b_audit[0].origin),
        (Some(run_pk), Origin::Pull)
    );

    let after = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    let conflict = settle(change_for(&plan, a.pk), &results[&a.pk]).expect("settled");
    assert_eq!(conflict.situation, Situation::Conflict);
    assert_eq!(
        stored_situation(&after, a.pk),
        Some(stored(&conflict)),
        "a lost race is stored as a conflict"
    );

    // Applying the same changes again: `a` still changed, `b` already holds the value.
    let again = apply_only(store, &source, run_pk, T3, &plan.changes).await;
    let again = by_user(&plan.changes, &again);
    assert_eq!(
        again[&a.pk],
        ChangeResult::Changed {
            current: "other-a".to_owned()
        }
    );
    assert_eq!(again[&b.pk], ChangeResult::AlreadySet);
    assert_eq!(
        store.list_audit(None, 100).await.expect("list_audit").len(),
        2,
        "no entry without a write"
    );
    let b_now = user_by_id(store, "b").await;
    assert_eq!(
        (b_now.external_id.as_deref(), b_now.external_id_set_at),
        (Some("acc-b"), Some(T2))
    );

    // A change from a value the user no longer holds.
    let stale = Change {
        user_pk: b.pk,
        account_pk: change_for(&plan, b.pk).account_pk,
        old: Some("stale".to_owned()),
        new: "acc-b2".to_owned(),
    };
    let results = apply_only(store, &source, run_pk, T3, std::slice::from_ref(&stale)).await;
    assert_eq!(
        results,
        vec![ChangeResult::Changed {
            current: "acc-b".to_owned()
        }]
    );
    assert_eq!(
        user_by_id(store, "b").await.external_id.as_deref(),
        Some("acc-b")
    );
    assert_eq!(
        store.list_audit(None, 100).await.expect("list_audit").len(),
        2
    );
}

pub async fn apply_reports_a_taken_value(store: &impl Store) {
    let source = two_new_links(store).await;
    let (input, plan) = plan(store, &source).await;
    let (a, z) = (user_by_id(store, "a").await, user_by_id(store, "z").await);

    // After the plan, `z` takes the value planned for `a`.
    store
        .import_users(
            &[linked_user("z", Some("z@example.com"), "acc-a")],
            &import_options(false, T1),
        )
        .await
        .expect("import_users");
    let (_, results) = apply_plan(store, &source, &input, &plan, T2).await;
    assert_eq!(results[&a.pk], ChangeResult::Taken { holder_pk: z.pk });
    assert_eq!(
        results
            .values()
            .filter(|r| **r == ChangeResult::Applied)
            .count(),
        1,
        "b is linked"
    );

    let a_now = user_by_id(store, "a").await;
    assert_eq!((a_now.external_id, a_now.external_id_origin), (None, None));
    assert!(store
        .list_audit(Some(a.pk), 10)
        .await
        .expect("list_audit")
        .is_empty());
    assert_eq!(
        user_by_id(store, "z").await.external_id.as_deref(),
        Some("acc-a")
    );

    let after = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    let taken = settle(change_for(&plan, a.pk), &results[&a.pk]).expect("settled");
    assert_eq!(taken.situation, Situation::AccountTaken);
    assert_eq!(stored_situation(&after, a.pk), Some(stored(&taken)));
}

pub async fn apply_reports_already_set(store: &impl Store) {
    let source = two_new_links(store).await;
    let (input, plan) = plan(store, &source).await;
    let a = user_by_id(store, "a").await;

    // After the plan, an import sets the same value for `a`.
    store
        .import_users(
            &[linked_user("a", Some("a@example.com"), "acc-a")],
            &import_options(false, T1),
        )
        .await
        .expect("import_users");
    let (_, results) = apply_plan(store, &source, &input, &plan, T2).await;
    assert_eq!(results[&a.pk], ChangeResult::AlreadySet);
    assert_eq!(
        results
            .values()
            .filter(|r| **r == ChangeResult::Applied)
            .count(),
        1,
        "b is linked"
    );

    let a_now = user_by_id(store, "a").await;
    assert_eq!(
        (
            a_now.external_id.as_deref(),
            a_now.external_id_origin,
            a_now.external_id_set_at
        ),
        (Some("acc-a"), Some(Origin::Import), Some(T1)),
        "an AlreadySet change rewrites nothing"
    );
    let a_audit = store.list_audit(Some(a.pk), 10).await.expect("list_audit");
    assert_eq!(a_audit.len(), 1, "{a_audit:?}");
    assert_eq!(a_audit[0].origin, Origin::Import);
    let after = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    assert_eq!(
        stored_situation(&after, a.pk).map(|s| s.situation),
        Some(Situation::Linked)
    );
}

pub async fn apply_skips_excluded_and_gone_users(db: &TestDb) {
    let store = &db.store;
    let source = two_new_links(store).await;
    let (input, plan) = plan(store, &source).await;
    let (a, b) = (user_by_id(store, "a").await, user_by_id(store, "b").await);

    // After the plan, `a` is excluded and `b` is deleted.
    let excluded = db
        .execute_raw(&format!(
            "UPDATE users SET excluded = TRUE WHERE pk = {}",
            a.pk
        ))
        .await;
    assert_eq!(excluded, Ok(1));
    let deleted = db
        .execute_raw(&format!("DELETE FROM users WHERE pk = {}", b.pk))
        .await;
    assert_eq!(deleted, Ok(1));

    let (_, results) = apply_plan(store, &source, &input, &plan, T2).await;
    assert_eq!(results[&a.pk], ChangeResult::Excluded);
    assert_eq!(results[&b.pk], ChangeResult::Gone);
    let a_now = user_by_id(store, "a").await;
    assert_eq!(a_now.external_id, None, "an excluded user is never changed");
    assert!(store
        .list_audit(None, 100)
        .await
        .expect("list_audit")
        .is_empty());
    let after = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    assert_eq!(
        stored_situation(&after, a.pk).map(|s| s.situation),
        Some(Situation::Excluded)
    );
    assert!(after.users.iter().all(|u| u.pk != b.pk));
}

/// Two runs racing for the same values (e.g. two replicas): each value ends with exactly one
/// user, the loser is told who holds it, and only the winner's write is audited.
pub async fn concurrent_applies_never_double_link(store: &impl Store) {
    const PAIRS: usize = 30;
    let source = file_source(store, "cloud").await;
    let rows: Vec<NewUser> = (0..PAIRS)
        .flat_map(|i| {
            [
                user(&format!("a{i:02}"), Some(&format!("a{i}@example.com"))),
                user(&format!("b{i:02}"), Some(&format!("b{i}@example.com"))),
            ]
        })
        .collect();
    import_users(store, &rows).await;
    let users = users_by_id(store).await;
    let changes = |side: &str| -> Vec<Change> {
        (0..PAIRS)
            .map(|i| Change {
                user_pk: users[&format!("{side}{i:02}")].pk,
                account_pk: 0,
                old: None,
                new: format!("value-{i}"),
            })
            .collect()
    };
    let (a_changes, b_changes) = (changes("a"), changes("b"));
    let a_run = start_run(store, &source, T1).await;
    let b_run = start_run(store, &source, T1).await;
    let batch = |run_pk, changes| tether_store::ApplyBatch {
        source_pk: source.pk,
        run_pk,
        origin: Origin::Pull,
        actor: "tester",
        at: T1,
        changes,
        outcomes: &[],
    };
    let (a_batch, b_batch) = (batch(a_run, &a_changes[..]), batch(b_run, &b_changes[..]));
    let (a_results, b_results) =
        tokio::join!(store.apply_batch(&a_batch), store.apply_batch(&b_batch));
    let (a_results, b_results) = (
        a_results.expect("apply_batch a"),
        b_results.expect("apply_batch b"),
    );
    assert_eq!((a_results.len(), b_results.len()), (PAIRS, PAIRS));

    let now = users_by_id(store).await;
    let audit = store.list_audit(None, 1000).await.expect("list_audit");
    assert_eq!(audit.len(), PAIRS, "one audit entry per value");
    for i in 0..PAIRS {
        let (a, b) = (&now[&format!("a{i:02}")], &now[&format!("b{i:02}")]);
        let value = format!("value-{i}");
        let (winner, loser, winner_result, loser_result) = match (&a_results[i], &b_results[i]) {
            (ChangeResult::Applied, other) => (a, b, &a_results[i], other),
            (other, ChangeResult::Applied) => (b, a, &b_results[i], other),
            other => panic!("value {i}: exactly one side applies, got {other:?}"),
        };
        assert_eq!(winner_result, &ChangeResult::Applied);
        assert_eq!(
            loser_result,
            &ChangeResult::Taken {
                holder_pk: winner.pk
            },
            "value {i}"
        );
        assert_eq!(winner.external_id.as_deref(), Some(value.as_str()));
        assert_eq!(loser.external_id, None);
        assert!(audit
            .iter()
            .any(|e| e.user_pk == winner.pk && e.new_value.as_deref() == Some(value.as_str())));
    }
}

/// `load_plan_input` leaves out the account columns a field does not read, and plans exactly
/// as `load_link_input` does for every field.
pub async fn plan_input_plans_like_link_input(store: &impl Store) {
    let source = scenario(store).await;
    let full = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input");
    for field in tether_core::ExternalIdField::ALL {
        let lean = store
            .load_plan_input(source.pk, *field)
            .await
            .expect("load_plan_input");
        let rules = tether_core::Rules {
            field: *field,
            link_inactive: source.link_inactive,
        };
        assert_eq!(
            tether_core::plan_links(&lean.users, &lean.accounts, &rules),
            tether_core::plan_links(&full.users, &full.accounts, &rules),
            "plans differ for field {field}"
        );
        assert_eq!(lean.users, full.users);
        assert_eq!(lean.stored, full.stored);
        for (lean, full) in lean.accounts.iter().zip(&full.accounts) {
            assert_eq!(lean.value(*field), full.value(*field));
            assert_eq!(
                (lean.pk, &lean.account_id, &lean.email_key),
                (full.pk, &full.account_id, &full.email_key)
            );
            let kept = [
                (
                    tether_core::ExternalIdField::Username,
                    lean.username.is_some(),
                ),
                (tether_core::ExternalIdField::Key, lean.key.is_some()),
                (tether_core::ExternalIdField::Email, lean.email.is_some()),
            ];
            for (column, present) in kept {
                assert!(
                    !present || column == *field,
                    "{column} loaded for field {field}"
                );
            }
        }
        assert!(
            full.accounts
                .iter()
                .any(|a| a.username.is_some() && a.email.is_some()),
            "the scenario has the columns"
        );
    }
}
