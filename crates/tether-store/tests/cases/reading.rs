//! Reading: keyset pages of users with the situation filter, lookups by id, username and
//! e-mail match key, records by key, and the audit trail newest first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use crate::support::*;
use tether_core::{match_key, Origin, Situation};
use tether_store::{NewUser, Store, UserFilter, UserRecord};

fn pks(users: &[UserRecord]) -> Vec<i64> {
    users.iter().map(|u| u.pk).collect()
}

pub async fn list_users_pages_and_filters(store: &impl Store) {
    let source = file_source(store, "cloud").await;
    let other = file_source(store, "other").await;
    let rows: Vec<NewUser> = (0..25)
        .map(|i| user(&format!("u{i:02}"), Some(&format!("u{i}@example.com"))))
        .collect();
    import_users(store, &rows).await;
    // Even users have an account, odd ones none.
    let accounts: Vec<_> = (0..25)
        .step_by(2)
        .map(|i| account(&format!("acc-{i}"), Some(&format!("u{i}@example.com"))))
        .collect();
    store
        .import_accounts(source.pk, &accounts, T0)
        .await
        .expect("import_accounts");

    let mut pages = Vec::new();
    let mut after_pk = None;
    loop {
        let page = store
            .list_users(&UserFilter {
                after_pk,
                limit: 10,
                situation: None,
            })
            .await
            .expect("list_users");
        if page.is_empty() {
            break;
        }
        after_pk = page.last().map(|u| u.pk);
        pages.push(page);
        assert!(pages.len() <= 3, "25 users are three pages of 10");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    let all: Vec<UserRecord> = pages.concat();
    let all_pks = pks(&all);
    assert!(
        all_pks.windows(2).all(|w| w[0] < w[1]),
        "ordered by pk, no repeats: {all_pks:?}"
    );
    let ids: BTreeSet<&str> = all.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, rows.iter().map(|r| r.id.as_str()).collect());

    let tail = store
        .list_users(&UserFilter {
            after_pk: Some(all_pks[12]),
            limit: 100,
            situation: None,
        })
        .await
        .expect("list_users");
    assert_eq!(pks(&tail), all_pks[13..].to_vec(), "after_pk is exclusive");
    let by_pk = store
        .get_users_by_pk(&all_pks)
        .await
        .expect("get_users_by_pk");
    let mut by_pk_sorted = by_pk.clone();
    by_pk_sorted.sort_by_key(|u| u.pk);
    assert_eq!(
        by_pk_sorted, all,
        "list_users and get_users_by_pk give the same records"
    );

    // Nothing is stored before a run, so a filter finds nobody.
    let linked = |after_pk, limit, source_pk| UserFilter {
        after_pk,
        limit,
        situation: Some((source_pk, Situation::Linked)),
    };
    assert!(store
        .list_users(&linked(None, 100, source.pk))
        .await
        .expect("list_users")
        .is_empty());

    let report = run(store, &source, T1, 1000).await;
    assert_eq!(report.applied(), 13);
    let number = |u: &UserRecord| u.id[1..].parse::<u32>().expect("ids are u00…u24");
    let expected_linked: Vec<i64> = all
        .iter()
        .filter(|u| number(u) % 2 == 0)
        .map(|u| u.pk)
        .collect();
    let expected_no_match: Vec<i64> = all
        .iter()
        .filter(|u| number(u) % 2 == 1)
        .map(|u| u.pk)
        .collect();
    assert_eq!(expected_linked.len(), 13);
    assert_eq!(expected_no_match.len(), 12);

    let no_match = store
        .list_users(&UserFilter {
            after_pk: None,
            limit: 100,
            situation: Some((source.pk, Situation::NoMatch)),
        })
        .await
        .expect("list_users");
    assert_eq!(pks(&no_match), expected_no_match);

    // The filter pages too.
    let mut linked_pks = Vec::new();
    let mut after_pk = None;
    loop {
        let page = store
            .list_users(&linked(after_pk, 5, source.pk))
            .await
            .expect("list_users");
        assert!(page.len() <= 5, "the limit holds with a filter");
        let Some(last) = page.last() else { break };
        assert!(
            after_pk.is_none_or(|after| page[0].pk > after),
            "a page starts after after_pk"
        );
        after_pk = Some(last.pk);
        linked_pks.extend(pks(&page));
        assert!(linked_pks.len() <= 13, "paging ends");
    }
    assert_eq!(linked_pks, expected_linked);

    let conflicts = UserFilter {
        after_pk: None,
        limit: 100,
        situation: Some((source.pk, Situation::Conflict)),
    };
    assert!(store
        .list_users(&conflicts)
        .await
        .expect("list_users")
        .is_empty());
    assert!(
        store
            .list_users(&linked(None, 100, other.pk))
            .await
            .expect("list_users")
            .is_empty(),
        "outcomes are per source"
    );
}

pub async fn find_users_by_id_username_email(store: &impl Store) {
    let named = |id: &str, username: &str, email: &str| NewUser {
        username: username.to_owned(),
        ..user(id, Some(email))
    };
    import_users(
        store,
        &[
            named("u-1", "alice", "Alice@Example.COM"),
            named("alice", "al", "al@example.com"),
            named("u-3", "carol", "team@example.com"),
            named("u-4", "dan", "Team@Example.com"),
            named("u-5", "shared@example.com", "five@example.com"),
            named("u-6", "fay", "shared@example.com"),
        ],
    )
    .await;
    let users = users_by_id(store).await;
    let find = |ident: &'static str| async move {
        let key = match_key(Some(ident)).key().map(str::to_owned);
        let mut found = store
            .find_users(ident, key.as_deref())
            .await
            .expect("find_users");
        found.sort_by_key(|u| u.pk);
        found
    };
    let expect = |ids: &[&str]| {
        let mut records: Vec<UserRecord> = ids.iter().map(|id| users[*id].clone()).collect();
        records.sort_by_key(|u| u.pk);
        records
    };

    assert_eq!(find("u-1").await, expect(&["u-1"]), "by id");
    assert_eq!(find("carol").await, expect(&["u-3"]), "by username");
    assert_eq!(
        find("alice").await,
        expect(&["alice"]),
        "an id match wins over a username match"
    );
    assert_eq!(
        find("ALICE@example.com").await,
        expect(&["u-1"]),
        "by match key, whatever the case"
    );
    assert_eq!(
        find("TEAM@example.COM").await,
        expect(&["u-3", "u-4"]),
        "every user with the address"
    );
    assert_eq!(
        find("shared@example.com").await,
        expect(&["u-5"]),
        "a username match wins over an e-mail match"
    );
    assert!(find("nobody").await.is_empty());
    assert!(find("nobody@example.com").await.is_empty());
}

pub async fn get_records_by_pk(store: &impl Store) {
    let rows = vec![
        user("u1", Some("ann@example.com")),
        linked_user("u2", Some("bo@example.com"), "ext-2"),
        user("u3", None),
    ];
    import_users(store, &rows).await;
    let users = users_by_id(store).await;
    for row in &rows {
        let record = &users[&row.id];
        assert_eq!(record, &super::import::record_of(row, record.pk, T0));
    }
    let two = store
        .get_users_by_pk(&[users["u3"].pk, users["u1"].pk])
        .await
        .expect("get_users_by_pk");
    assert_eq!(
        two,
        vec![users["u3"].clone(), users["u1"].clone()],
        "in the order asked for"
    );
    let unknown = users.values().map(|u| u.pk).max().unwrap_or(0) + 1000;
    let skipped = store
        .get_users_by_pk(&[unknown, users["u2"].pk])
        .await
        .expect("get_users_by_pk");
    assert_eq!(
        skipped,
        vec![users["u2"].clone()],
        "an unknown key is skipped"
    );
    assert!(store
        .get_users_by_pk(&[])
        .await
        .expect("get_users_by_pk")
        .is_empty());

    let source = file_source(store, "cloud").await;
    let accounts = vec![
        account("acc-1", Some("Ann@Example.com")),
        account("acc-2", None),
    ];
    store
        .import_accounts(source.pk, &accounts, T0)
        .await
        .expect("import_accounts");
    let loaded = store
        .load_link_input(source.pk)
        .await
        .expect("load_link_input")
        .accounts;
    let pk_of = |id: &str| {
        loaded
            .iter()
            .find(|a| a.account_id == id)
            .map(|a| a.pk)
            .expect("loaded")
    };
    let records = store
        .get_accounts_by_pk(&[pk_of("acc-2")])
        .await
        .expect("get_accounts_by_pk");
    assert_eq!(
        records,
        vec![tether_store::AccountRecord {
            pk: pk_of("acc-2"),
            source_pk: source.pk,
            account_id: "acc-2".to_owned(),
            username: Some("name-acc-2".to_owned()),
            key: Some("key-acc-2".to_owned()),
            email: None,
            email_key: None,
            display_name: "Account acc-2".to_owned(),
            active: true,
            account_type: tether_core::AccountType::Atlassian,
        }]
    );
    let both = store
        .get_accounts_by_pk(&[pk_of("acc-1"), pk_of("acc-2")])
        .await
        .expect("get_accounts_by_pk");
    let ids: BTreeSet<&str> = both.iter().map(|a| a.account_id.as_str()).collect();
    assert_eq!(ids, ["acc-1", "acc-2"].into_iter().collect());
    let acc1 = both
        .iter()
        .find(|a| a.account_id == "acc-1")
        .expect("acc-1");
    assert_eq!(
        (acc1.email.as_deref(), acc1.email_key.as_deref()),
        (Some("Ann@Example.com"), Some("ann@example.com"))
    );
    assert!(store
        .get_accounts_by_pk(&[])
        .await
        .expect("get_accounts_by_pk")
        .is_empty());
}

pub async fn list_audit_newest_first(store: &impl Store) {
    let options = import_options;
    store
        .import_users(
            &[linked_user("u1", Some("a@example.com"), "A")],
            &options(false, T0),
        )
        .await
        .expect("import");
    store
        .import_users(
            &[linked_user("u2", Some("b@example.com"), "B")],
            &options(false, T1),
        )
        .await
        .expect("import");
    store
        .import_users(
            &[linked_user("u1", Some("a@example.com"), "C")],
            &options(true, T2),
        )
        .await
        .expect("import");
    let users = users_by_id(store).await;

    let all = store.list_audit(None, 10).await.expect("list_audit");
    let view: Vec<_> = all
        .iter()
        .map(|e| {
            (
                e.at,
                e.user_pk,
                e.old_value.as_deref(),
                e.new_value.as_deref(),
                e.origin,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (T2, users["u1"].pk, Some("A"), Some("C"), Origin::Import),
            (T1, users["u2"].pk, None, Some("B"), Origin::Import),
            (T0, users["u1"].pk, None, Some("A"), Origin::Import),
        ],
        "newest first"
    );
    assert!(all.windows(2).all(|w| w[0].pk > w[1].pk));
    assert_eq!(
        store.list_audit(None, 2).await.expect("list_audit"),
        all[..2].to_vec(),
        "the limit keeps the newest"
    );
    assert_eq!(
        store
            .list_audit(Some(users["u1"].pk), 10)
            .await
            .expect("list_audit"),
        vec![all[0].clone(), all[2].clone()]
    );
    assert_eq!(
        store
            .list_audit(Some(users["u2"].pk), 10)
            .await
            .expect("list_audit"),
        vec![all[1].clone()]
    );
    let nobody = users.values().map(|u| u.pk).max().unwrap_or(0) + 1000;
    assert!(store
        .list_audit(Some(nobody), 10)
        .await
        .expect("list_audit")
        .is_empty());
}
