//! Sign-in units of work (`SigninStore`): the facts a decision reads, the guarded link at
//! sign-in and its races with a run, the sign-in trail, and OpenID Connect requests in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use tether_core::signin::SignInSituation;
use tether_core::{Change, ChangeResult, Origin};
use tether_store::signin::{NewSignInEvent, OidcLogin, SignInLink, SigninStore};
use tether_store::{NewUser, Store};
use time::Duration;

fn link<'a>(user_pk: i64, value: &'a str) -> SignInLink<'a> {
    SignInLink {
        user_pk,
        value,
        actor: "oidc:https://idp.example.com",
        reason: "new_link at sign-in",
        at: T1,
    }
}

fn refusal(user_pk: Option<i64>, situation: SignInSituation) -> NewSignInEvent {
    NewSignInEvent {
        at: T2,
        actor: "oidc:https://idp.example.com".into(),
        issuer: "https://idp.example.com".into(),
        account_id: "acc-9".into(),
        email: Some("Bob@Example.com".into()),
        email_verified: true,
        situation,
        signed_in: false,
        linked_now: false,
        user_pk,
        related: vec![3, 4],
        explanation: "2 profiles share bob@example.com.".into(),
        fix: "Exclude the stale profile.".into(),
    }
}

pub async fn sign_in_facts_find_holder_and_email_profiles<S: Store + SigninStore>(store: &S) {
    import_users(
        store,
        &[
            linked_user("u1", Some("ann@example.com"), "acc-1"),
            user("u2", Some("Bob@Example.com")),
            linked_user("u3", Some("bob@EXAMPLE.com"), "acc-3"),
            user("u4", Some("carol@example.com")),
        ],
    )
    .await;
    let users = users_by_id(store).await;

    let facts = store
        .load_sign_in_facts("acc-1", Some("bob@example.com"))
        .await
        .expect("load_sign_in_facts");
    let holder = facts.holder.expect("u1 holds acc-1");
    assert_eq!((holder.pk, holder.id.as_str()), (users["u1"].pk, "u1"));
    assert_eq!(holder.external_id.as_deref(), Some("acc-1"));
    assert!(holder.active && !holder.excluded);
    let by_email: Vec<(&str, Option<&str>)> = facts
        .by_email
        .iter()
        .map(|p| (p.id.as_str(), p.external_id.as_deref()))
        .collect();
    assert_eq!(by_email, vec![("u2", None), ("u3", Some("acc-3"))]);
    assert_eq!(facts.by_email[0].email.as_deref(), Some("Bob@Example.com"));

    // External IDs compare exactly: a case-different account ID holds nothing.
    let facts = store
        .load_sign_in_facts("ACC-1", None)
        .await
        .expect("load_sign_in_facts");
    assert!(facts.holder.is_none());
    assert!(facts.by_email.is_empty(), "no key, no e-mail profiles");
}

pub async fn sign_in_link_writes_once_and_audits<S: Store + SigninStore>(store: &S) {
    import_users(
        store,
        &[
            user("u1", Some("ann@example.com")),
            user("u2", Some("bob@example.com")),
            linked_user("u3", Some("carol@example.com"), "acc-3"),
        ],
    )
    .await;
    let users = users_by_id(store).await;
    let (u1, u2, u3) = (users["u1"].pk, users["u2"].pk, users["u3"].pk);
    let before = store.list_audit(None, 100).await.expect("list_audit").len();

    let result = store
        .link_at_sign_in(&link(u1, "acc-1"))
        .await
        .expect("link");
    assert_eq!(result, ChangeResult::Applied);
    let now = user_by_id(store, "u1").await;
    assert_eq!(now.external_id.as_deref(), Some("acc-1"));
    assert_eq!(now.external_id_origin, Some(Origin::Login));
    assert_eq!(now.external_id_set_at, Some(T1));
    let audit = store.list_audit(Some(u1), 10).await.expect("list_audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].origin, Origin::Login);
    assert_eq!(audit[0].old_value, None);
    assert_eq!(audit[0].new_value.as_deref(), Some("acc-1"));
    assert_eq!(audit[0].actor, "oidc:https://idp.example.com");
    assert_eq!(audit[0].reason, "new_link at sign-in");
    assert_eq!(audit[0].run_pk, None);

    // The same link again writes nothing.
    assert_eq!(
        store
            .link_at_sign_in(&link(u1, "acc-1"))
            .await
            .expect("link"),
        ChangeResult::AlreadySet
    );
    // Another value never overwrites.
    assert_eq!(
        store
            .link_at_sign_in(&link(u1, "acc-x"))
            .await
            .expect("link"),
        ChangeResult::Changed {
            current: "acc-1".into()
        }
    );
    assert_eq!(
        store
            .link_at_sign_in(&link(u3, "acc-y"))
            .await
            .expect("link"),
        ChangeResult::Changed {
            current: "acc-3".into()
        }
    );
    // A value another profile holds is refused.
    assert_eq!(
        store
            .link_at_sign_in(&link(u2, "acc-3"))
            .await
            .expect("link"),
        ChangeResult::Taken { holder_pk: u3 }
    );
    assert_eq!(
        store
            .link_at_sign_in(&link(i64::MAX, "acc-z"))
            .await
            .expect("link"),
        ChangeResult::Gone
    );
    assert_eq!(user_by_id(store, "u2").await.external_id, None);
    assert_eq!(
        user_by_id(store, "u3").await.external_id.as_deref(),
        Some("acc-3")
    );
    let after = store.list_audit(None, 100).await.expect("list_audit").len();
    assert_eq!(after, before + 1, "only the one write is audited");
}

pub async fn sign_in_link_skips_excluded_users(db: &TestDb) {
    let store = &db.store;
    import_users(store, &[user("u1", Some("ann@example.com"))]).await;
    let pk = user_by_id(store, "u1").await.pk;
    let excluded = db
        .execute_raw("UPDATE users SET excluded = true WHERE id = 'u1'")
        .await
        .expect("exclude u1");
    assert_eq!(excluded, 1);
    assert_eq!(
        store
            .link_at_sign_in(&link(pk, "acc-1"))
            .await
            .expect("link"),
        ChangeResult::Excluded
    );
    assert_eq!(user_by_id(store, "u1").await.external_id, None);
    assert!(store
        .list_audit(Some(pk), 10)
        .await
        .expect("audit")
        .is_empty());
}

/// A sign-in and a pull run write the same users at the same time: each user gets exactly
/// one External ID and one audit entry, whichever writer wins, and the loser overwrites
/// nothing — with the same value (the usual case: both read the platform's account ID) and
/// with different values.
pub async fn sign_in_racing_a_run_links_once<S: Store + SigninStore>(store: &S) {
    const USERS: usize = 40;
    let source = file_source(store, "cloud").await;
    let rows: Vec<NewUser> = (0..USERS)
        .map(|i| user(&format!("u{i:02}"), Some(&format!("u{i}@example.com"))))
        .collect();
    import_users(store, &rows).await;
    let users = users_by_id(store).await;
    let pk = |i: usize| users[&format!("u{i:02}")].pk;
    // Even users: both writers bring the same value; odd users: different values.
    let pull_value = |i: usize| format!("acc-{i}");
    let login_value = |i: usize| {
        if i.is_multiple_of(2) {
            format!("acc-{i}")
        } else {
            format!("login-{i}")
        }
    };
    let changes: Vec<Change> = (0..USERS)
        .map(|i| Change {
            user_pk: pk(i),
            account_pk: 0,
            old: None,
            new: pull_value(i),
        })
        .collect();
    let run_pk = start_run(store, &source, T1).await;
    let batch = tether_store::ApplyBatch {
        source_pk: source.pk,
        run_pk,
        origin: Origin::Pull,
        actor: "puller",
        at: T1,
        changes: &changes,
        outcomes: &[],
    };
    let login_values: Vec<String> = (0..USERS).map(login_value).collect();
    let sign_ins = async {
        let mut results = Vec::new();
        for (i, value) in login_values.iter().enumerate() {
            results.push(store.link_at_sign_in(&link(pk(i), value)).await);
        }
        results
    };
    let (pull_results, login_results) = tokio::join!(store.apply_batch(&batch), sign_ins);
    let pull_results = pull_results.expect("apply_batch");

    let now = users_by_id(store).await;
    for i in 0..USERS {
        let login_result = login_results[i].as_ref().expect("link_at_sign_in");
        let user = &now[&format!("u{i:02}")];
        let audit = store.list_audit(Some(user.pk), 10).await.expect("audit");
        assert_eq!(
            audit.len(),
            1,
            "user {i}: exactly one audited write: {audit:?}"
        );
        let written = user.external_id.clone().expect("linked by one writer");
        assert_eq!(audit[0].new_value.as_deref(), Some(written.as_str()));
        match (&pull_results[i], login_result) {
            (ChangeResult::Applied, other) => {
                assert_eq!(written, pull_value(i), "user {i}");
                assert_eq!(user.external_id_origin, Some(Origin::Pull));
                let expected = if i.is_multiple_of(2) {
                    ChangeResult::AlreadySet
                } else {
                    ChangeResult::Changed {
                        current: pull_value(i),
                    }
                };
                assert_eq!(other, &expected, "user {i}");
            }
            (other, ChangeResult::Applied) => {
                assert_eq!(written, login_value(i), "user {i}");
                assert_eq!(user.external_id_origin, Some(Origin::Login));
                let expected = if i.is_multiple_of(2) {
                    ChangeResult::AlreadySet
                } else {
                    ChangeResult::Changed {
                        current: login_value(i),
                    }
                };
                assert_eq!(other, &expected, "user {i}");
            }
            other => panic!("user {i}: exactly one writer applies, got {other:?}"),
        }
    }
}

pub async fn sign_in_events_record_refusals(db: &TestDb) {
    let store = &db.store;
    import_users(
        store,
        &[linked_user("u1", Some("bob@example.com"), "acc-1")],
    )
    .await;
    let u1 = user_by_id(store, "u1").await.pk;

    let about_u1 = refusal(Some(u1), SignInSituation::Conflict);
    let pk1 = store
        .insert_sign_in_event(&about_u1)
        .await
        .expect("insert_sign_in_event");
    let nobody = NewSignInEvent {
        at: T3,
        email: None,
        related: Vec::new(),
        ..refusal(None, SignInSituation::NoMatch)
    };
    let pk2 = store
        .insert_sign_in_event(&nobody)
        .await
        .expect("insert_sign_in_event");
    assert!(pk2 > pk1);

    let events = store.list_sign_in_events(None, 10).await.expect("list");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].pk, pk2, "newest first");
    assert_eq!(events[0].situation, SignInSituation::NoMatch);
    assert_eq!(
        (events[0].user_pk, events[0].email.as_deref()),
        (None, None)
    );
    let first = &events[1];
    assert_eq!(first.at, T2);
    assert_eq!(first.situation, SignInSituation::Conflict);
    assert_eq!(first.user_pk, Some(u1));
    assert_eq!(first.related, vec![3, 4]);
    assert_eq!(first.account_id, "acc-9");
    assert_eq!(first.email.as_deref(), Some("Bob@Example.com"));
    assert!(first.email_verified && !first.signed_in && !first.linked_now);
    assert_eq!(first.explanation, "2 profiles share bob@example.com.");
    assert_eq!(first.fix, "Exclude the stale profile.");
    let mine = store.list_sign_in_events(Some(u1), 10).await.expect("list");
    assert_eq!(mine.len(), 1);

    // The refusal about u1 is on u1's audit trail, with its External ID unchanged.
    let audit = store.list_audit(Some(u1), 10).await.expect("audit");
    assert_eq!(audit.len(), 2, "the import and the refusal: {audit:?}");
    assert_eq!(audit[0].origin, Origin::Login);
    assert_eq!(audit[0].at, T2);
    assert_eq!(audit[0].old_value.as_deref(), Some("acc-1"));
    assert_eq!(audit[0].new_value.as_deref(), Some("acc-1"));
    assert_eq!(
        audit[0].reason,
        "sign_in_refused: conflict (account acc-9; nothing written)"
    );
    assert_eq!(
        user_by_id(store, "u1").await.external_id.as_deref(),
        Some("acc-1")
    );

    // Append-only, like the audit.
    assert!(db
        .execute_raw("UPDATE sign_in_events SET situation = 'linked'")
        .await
        .is_err());
    assert!(db.execute_raw("DELETE FROM sign_in_events").await.is_err());
    assert_eq!(db.count_raw("SELECT count(*) FROM sign_in_events").await, 2);
}

pub async fn oidc_logins_are_taken_once<S: Store + SigninStore>(store: &S) {
    let login = |handle: &str, created_at| OidcLogin {
        handle_hash: handle.to_owned(),
        state: format!("state-{handle}"),
        nonce: format!("nonce-{handle}"),
        pkce_verifier: format!("verifier-{handle}"),
        return_to: Some("/me".into()),
        created_at,
        expires_at: created_at + Duration::minutes(10),
        issuer: "https://idp.example.com".into(),
        client_id: format!("client-{handle}"),
    };
    store
        .insert_oidc_login(&login("h1", T0))
        .await
        .expect("insert");
    store
        .insert_oidc_login(&login("h2", T0))
        .await
        .expect("insert");
    assert_eq!(
        store.take_oidc_login("h1").await.expect("take"),
        Some(login("h1", T0))
    );
    assert_eq!(
        store.take_oidc_login("h1").await.expect("take"),
        None,
        "taken once"
    );
    assert_eq!(store.take_oidc_login("nope").await.expect("take"), None);
    // A later request forgets the ones that expired before it.
    store
        .insert_oidc_login(&login("h3", T1))
        .await
        .expect("insert");
    assert_eq!(store.take_oidc_login("h2").await.expect("take"), None);
    assert!(store.take_oidc_login("h3").await.expect("take").is_some());
}

/// `record_sign_in`: the decision's write, a lost race settled by the core, and the trail
/// entry, in one transaction.
pub async fn record_sign_in_writes_settles_and_records<
    S: Store + SigninStore + tether_store::admin::AdminStore,
>(
    store: &S,
) {
    use tether_core::signin::{decide_sign_in, SignInClaims, SignInSettings};
    use tether_store::signin::SignInRecord;
    import_users(
        store,
        &[
            user("u1", Some("ann@example.com")),
            user("u2", Some("bob@example.com")),
            linked_user("u3", Some("carol@example.com"), "acc-3"),
        ],
    )
    .await;
    let users = users_by_id(store).await;
    let decide = |account: &str, email: &str, facts| {
        decide_sign_in(
            &SignInClaims {
                account_id: account.into(),
                email: Some(email.into()),
                email_verified: true,
            },
            &facts,
            &SignInSettings::default(),
        )
    };
    let record = |decision| SignInRecord {
        decision,
        actor: "api:test",
        issuer: "https://idp.example.com",
        account_id: "acc",
        email: Some("x@example.com"),
        email_verified: true,
        reason: "new_link at sign-in",
        at: T1,
    };

    // A link that applies.
    let facts = store
        .load_sign_in_facts("acc-1", Some("ann@example.com"))
        .await
        .unwrap();
    let decision = decide("acc-1", "ann@example.com", facts);
    assert_eq!(decision.situation, SignInSituation::NewLink);
    let recorded = store.record_sign_in(&record(&decision)).await.unwrap();
    assert_eq!(recorded.result, Some(ChangeResult::Applied));
    assert!(recorded.linked_now);
    assert_eq!(recorded.decision, decision);
    assert_eq!(
        user_by_id(store, "u1").await.external_id.as_deref(),
        Some("acc-1")
    );

    // The same stale decision again: the value is there already; signs in, writes nothing.
    let again = store.record_sign_in(&record(&decision)).await.unwrap();
    assert_eq!(again.result, Some(ChangeResult::AlreadySet));
    assert_eq!(again.decision.situation, SignInSituation::Linked);
    assert!(!again.linked_now);

    // A stale decision for u2 with a value u3 took meanwhile: account_taken, u3 named.
    let facts = store
        .load_sign_in_facts("acc-3x", Some("bob@example.com"))
        .await
        .unwrap();
    let mut stale = decide("acc-3", "bob@example.com", facts);
    if let Some(change) = stale.change.as_mut() {
        change.new = "acc-3".into();
    }
    let taken = store.record_sign_in(&record(&stale)).await.unwrap();
    assert_eq!(
        taken.result,
        Some(ChangeResult::Taken {
            holder_pk: users["u3"].pk
        })
    );
    assert_eq!(taken.decision.situation, SignInSituation::AccountTaken);
    assert!(
        taken.decision.explanation.explanation.contains("u3"),
        "{}",
        taken.decision.explanation.explanation
    );
    assert_eq!(user_by_id(store, "u2").await.external_id, None);

    let events = store.list_sign_in_events(None, 10).await.unwrap();
    let situations: Vec<SignInSituation> = events.iter().rev().map(|e| e.situation).collect();
    assert_eq!(
        situations,
        vec![
            SignInSituation::NewLink,
            SignInSituation::Linked,
            SignInSituation::AccountTaken
        ]
    );
    assert!(events[2].linked_now && !events[1].linked_now && !events[0].signed_in);
    // The refusal is on u2's audit trail; the one link on u1's.
    let u2_audit = store.list_audit(Some(users["u2"].pk), 10).await.unwrap();
    assert_eq!(u2_audit.len(), 1);
    assert!(u2_audit[0]
        .reason
        .starts_with("sign_in_refused: account_taken"));
    // The link's audit entry says exactly what happened, on every store.
    let u1_audit = store.list_audit(Some(users["u1"].pk), 10).await.unwrap();
    assert_eq!(u1_audit.len(), 1);
    let entry = &u1_audit[0];
    assert_eq!(
        (
            entry.at,
            entry.actor.as_str(),
            entry.origin,
            entry.old_value.as_deref(),
            entry.new_value.as_deref(),
            entry.reason.as_str(),
            entry.run_pk,
        ),
        (
            T1,
            "api:test",
            Origin::Login,
            None,
            Some("acc-1"),
            "new_link at sign-in",
            None
        )
    );
    // The trail entry of the link names the profile and the account.
    let linked = &events[2];
    assert_eq!(
        (
            linked.user_pk,
            linked.account_id.as_str(),
            linked.actor.as_str(),
            linked.signed_in
        ),
        (Some(users["u1"].pk), "acc", "api:test", true)
    );

    // A decision for a profile excluded meanwhile: nothing written, refused, recorded.
    let facts = store
        .load_sign_in_facts("acc-2", Some("bob@example.com"))
        .await
        .unwrap();
    let for_bob = decide("acc-2", "bob@example.com", facts);
    assert_eq!(for_bob.situation, SignInSituation::NewLink);
    store
        .set_excluded(users["u2"].pk, true, "admin:test", "left the company", T1)
        .await
        .unwrap();
    let excluded = store.record_sign_in(&record(&for_bob)).await.unwrap();
    assert_eq!(excluded.result, Some(ChangeResult::Excluded));
    assert!(!excluded.linked_now && !excluded.decision.signs_in());
    assert_eq!(user_by_id(store, "u2").await.external_id, None);
    assert_eq!(store.list_sign_in_events(None, 10).await.unwrap().len(), 4);
}
