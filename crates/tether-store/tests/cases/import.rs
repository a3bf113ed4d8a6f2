//! Bulk imports of users and accounts: inserts, updates, idempotence, and the External ID
//! rules (audited, never stolen from another user, replaced only when asked).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use crate::support::*;
use tether_core::{AccountType, Origin};
use tether_store::{
    AccountRecord, ImportSummary, NewAccount, NewUser, Store, StoreError, Timestamp, UserRecord,
};

fn summary(inserted: u64, updated: u64, unchanged: u64, external_ids_set: u64) -> ImportSummary {
    ImportSummary {
        inserted,
        updated,
        unchanged,
        external_ids_set,
    }
}

/// The record an imported row becomes (External ID set at `set_at` by an import).
pub fn record_of(row: &NewUser, pk: i64, set_at: Timestamp) -> UserRecord {
    UserRecord {
        pk,
        id: row.id.clone(),
        username: row.username.clone(),
        email: row.email.clone(),
        email_key: row.email_key.clone(),
        display_name: row.display_name.clone(),
        active: row.active,
        external_id: row.external_id.clone(),
        external_id_origin: row.external_id.as_ref().map(|_| Origin::Import),
        external_id_set_at: row.external_id.as_ref().map(|_| set_at),
        excluded: false,
    }
}

fn account_record_of(row: &NewAccount, pk: i64, source_pk: i64) -> AccountRecord {
    AccountRecord {
        pk,
        source_pk,
        account_id: row.account_id.clone(),
        username: row.username.clone(),
        key: row.key.clone(),
        email: row.email.clone(),
        email_key: row.email_key.clone(),
        display_name: row.display_name.clone(),
        active: row.active,
        account_type: row.account_type,
    }
}

/// Asserts the store holds exactly `rows` (External IDs set at `set_at`).
async fn assert_users(store: &impl Store, rows: &[NewUser], set_at: Timestamp) {
    let stored = users_by_id(store).await;
    assert_eq!(stored.len(), rows.len(), "user count");
    for row in rows {
        let record = stored
            .get(&row.id)
            .unwrap_or_else(|| panic!("user {} is stored", row.id));
        assert_eq!(
            record,
            &record_of(row, record.pk, set_at),
            "user {}",
            row.id
        );
    }
}

pub async fn import_users_then_reimport_is_unchanged(store: &impl Store) {
    let rows = vec![
        user("u1", Some("Ann@Example.COM")),
        linked_user("u2", Some("bo@example.com"), "acc-2"),
        user("u3", None),
        NewUser {
            active: false,
            display_name: "Ex Employee".to_owned(),
            ..user("u4", Some("not-an-address"))
        },
    ];
    assert_eq!(
        rows[3].email_key, None,
        "fixture: an invalid address has no key"
    );
    let first = store
        .import_users(&rows, &import_options(false, T0))
        .await
        .expect("import_users");
    assert_eq!(first, summary(4, 0, 0, 1));
    assert_users(store, &rows, T0).await;
    assert_eq!(store.count_users().await.expect("count_users"), 4);
    let pks: Vec<i64> = all_users(store).await.iter().map(|u| u.pk).collect();

    let again = store
        .import_users(&rows, &import_options(false, T1))
        .await
        .expect("re-import");
    assert_eq!(
        again,
        summary(0, 0, 4, 0),
        "re-importing the same rows writes nothing"
    );
    assert_users(store, &rows, T0).await;
    let pks_again: Vec<i64> = all_users(store).await.iter().map(|u| u.pk).collect();
    assert_eq!(pks_again, pks, "users keep their keys");
    assert_eq!(
        store.list_audit(None, 100).await.expect("list_audit").len(),
        1,
        "no audit for a re-import"
    );
    // Replace mode changes nothing when the values are the same.
    let replaced = store
        .import_users(&rows, &import_options(true, T2))
        .await
        .expect("re-import, replace");
    assert_eq!(replaced, summary(0, 0, 4, 0));
    assert_eq!(
        store.list_audit(None, 100).await.expect("list_audit").len(),
        1
    );
}

pub async fn import_users_counts_updates(store: &impl Store) {
    let mut rows = vec![
        user("u1", Some("ann@example.com")),
        user("u2", Some("bo@example.com")),
        user("u3", None),
        user("u4", Some("dee@example.com")),
    ];
    store
        .import_users(&rows, &import_options(false, T0))
        .await
        .expect("import_users");

    rows[0].display_name = "Ann Smith-Jones".to_owned();
    rows[2] = user("u3", Some("Cy@Example.com"));
    rows[3].active = false;
    rows.push(user("u5", Some("eve@example.com")));
    let result = store
        .import_users(&rows, &import_options(false, T1))
        .await
        .expect("import_users");
    assert_eq!(result, summary(1, 3, 1, 0));
    assert_users(store, &rows, T1).await;
    assert_eq!(
        user_by_id(store, "u3").await.email_key.as_deref(),
        Some("cy@example.com")
    );
    assert!(
        store
            .list_audit(None, 100)
            .await
            .expect("list_audit")
            .is_empty(),
        "no External ID was written"
    );
}

pub async fn import_users_audits_external_ids(store: &impl Store) {
    let first = vec![
        linked_user("u1", Some("ann@example.com"), "ext-1"),
        user("u2", Some("bo@example.com")),
    ];
    let result = store
        .import_users(&first, &import_options(false, T0))
        .await
        .expect("import_users");
    assert_eq!(result, summary(2, 0, 0, 1));
    let u1 = user_by_id(store, "u1").await;
    let audit = store.list_audit(None, 100).await.expect("list_audit");
    assert_eq!(
        audit.len(),
        1,
        "one External ID written, one audit entry: {audit:?}"
    );
    let entry = &audit[0];
    assert_eq!(
        (
            entry.at,
            entry.actor.as_str(),
            entry.origin,
            entry.user_pk,
            entry.old_value.as_deref(),
            entry.new_value.as_deref(),
            entry.run_pk
        ),
        (
            T0,
            "importer",
            Origin::Import,
            u1.pk,
            None,
            Some("ext-1"),
            None
        )
    );
    assert!(!entry.reason.trim().is_empty(), "an audit entry says why");
    assert_eq!(
        (u1.external_id_origin, u1.external_id_set_at),
        (Some(Origin::Import), Some(T0))
    );

    // A later import gives u2 an External ID: an update, audited.
    let second = vec![
        user("u1", Some("ann@example.com")),
        linked_user("u2", Some("bo@example.com"), "ext-2"),
    ];
    let result = store
        .import_users(&second, &import_options(false, T1))
        .await
        .expect("import_users");
    assert_eq!(
        result,
        summary(0, 1, 1, 1),
        "u1's blank External ID leaves the stored one alone"
    );
    let users = users_by_id(store).await;
    assert_eq!(
        users["u1"].external_id.as_deref(),
        Some("ext-1"),
        "a blank External ID keeps the stored one"
    );
    assert_eq!(
        (
            users["u1"].external_id_origin,
            users["u1"].external_id_set_at
        ),
        (Some(Origin::Import), Some(T0))
    );
    assert_eq!(users["u2"].external_id.as_deref(), Some("ext-2"));
    assert_eq!(
        (
            users["u2"].external_id_origin,
            users["u2"].external_id_set_at
        ),
        (Some(Origin::Import), Some(T1))
    );
    let audit = store
        .list_audit(Some(users["u2"].pk), 100)
        .await
        .expect("list_audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].at,
            audit[0].origin,
            audit[0].old_value.as_deref(),
            audit[0].new_value.as_deref()
        ),
        (T1, Origin::Import, None, Some("ext-2"))
    );
    assert_eq!(
        store.list_audit(None, 100).await.expect("list_audit").len(),
        2
    );
}

pub async fn import_users_refuses_a_taken_external_id(store: &impl Store) {
    let rows = vec![
        linked_user("u1", Some("ann@example.com"), "X"),
        user("u2", Some("bo@example.com")),
    ];
    store
        .import_users(&rows, &import_options(false, T0))
        .await
        .expect("import_users");
    let before = all_users(store).await;
    let audit_before = store.list_audit(None, 100).await.expect("list_audit");

    // A batch with new users, a new External ID and one External ID another user holds.
    let batch = vec![
        user("u3", Some("cy@example.com")),
        linked_user("u4", Some("dee@example.com"), "Y"),
        NewUser {
            display_name: "Bo Renamed".to_owned(),
            ..linked_user("u2", Some("bo@example.com"), "X")
        },
    ];
    for replace in [false, true] {
        match store.import_users(&batch, &import_options(replace, T1)).await {
            Err(StoreError::Conflict { constraint, .. }) => assert_eq!(constraint, "users_external_id"),
            other => panic!("another user's External ID (replace={replace}) must be Conflict{{users_external_id}}, got {other:?}"),
        }
        assert_eq!(
            store.count_users().await.expect("count_users"),
            2,
            "the whole batch is refused"
        );
        assert_eq!(
            all_users(store).await,
            before,
            "nothing written (replace={replace})"
        );
        assert_eq!(
            store.list_audit(None, 100).await.expect("list_audit"),
            audit_before
        );
        assert!(store
            .find_users("u3", None)
            .await
            .expect("find_users")
            .is_empty());
    }

    // External IDs compare exactly: "x" is not "X".
    let lower = vec![linked_user("u2", Some("bo@example.com"), "x")];
    let result = store
        .import_users(&lower, &import_options(false, T2))
        .await
        .expect("a case-different value is free");
    assert_eq!(result, summary(0, 1, 0, 1));
    assert_eq!(
        user_by_id(store, "u2").await.external_id.as_deref(),
        Some("x")
    );
    assert_eq!(
        user_by_id(store, "u1").await.external_id.as_deref(),
        Some("X")
    );
}

pub async fn import_users_replaces_only_when_asked(store: &impl Store) {
    store
        .import_users(
            &[linked_user("u1", Some("ann@example.com"), "A")],
            &import_options(false, T0),
        )
        .await
        .expect("import_users");
    let before = all_users(store).await;

    for value in ["B", "a"] {
        let batch = vec![
            user("u9", Some("new@example.com")),
            linked_user("u1", Some("ann@example.com"), value),
        ];
        match store.import_users(&batch, &import_options(false, T1)).await {
            Err(StoreError::Invalid(message)) => assert!(!message.is_empty()),
            other => panic!(
                "replacing External ID A by {value} without replace must be Invalid, got {other:?}"
            ),
        }
        assert_eq!(
            all_users(store).await,
            before,
            "nothing written, not even the new user u9"
        );
        assert_eq!(
            store.list_audit(None, 100).await.expect("list_audit").len(),
            1
        );
    }

    let result = store
        .import_users(
            &[linked_user("u1", Some("ann@example.com"), "B")],
            &import_options(true, T1),
        )
        .await
        .expect("replace when asked");
    assert_eq!(result, summary(0, 1, 0, 1));
    let u1 = user_by_id(store, "u1").await;
    assert_eq!(
        (
            u1.external_id.as_deref(),
            u1.external_id_origin,
            u1.external_id_set_at
        ),
        (Some("B"), Some(Origin::Import), Some(T1))
    );
    let audit = store
        .list_audit(Some(u1.pk), 100)
        .await
        .expect("list_audit");
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (
            audit[0].at,
            audit[0].origin,
            audit[0].actor.as_str(),
            audit[0].old_value.as_deref(),
            audit[0].new_value.as_deref()
        ),
        (T1, Origin::Import, "importer", Some("A"), Some("B")),
        "the newest entry records the replacement"
    );

    let again = store
        .import_users(
            &[linked_user("u1", Some("ann@example.com"), "B")],
            &import_options(true, T2),
        )
        .await
        .expect("re-import");
    assert_eq!(again, summary(0, 0, 1, 0));
    assert_eq!(
        store.list_audit(None, 100).await.expect("list_audit").len(),
        2
    );
}

pub async fn import_accounts_idempotent_per_source(store: &impl Store) {
    let cloud = file_source(store, "cloud").await;
    let server = file_source(store, "server").await;
    let original = vec![
        account("acc-1", Some("Ann@Example.com")),
        account("acc-2", None),
        NewAccount {
            username: None,
            key: None,
            active: false,
            account_type: AccountType::App,
            ..account("acc-3", Some("bot@example.com"))
        },
    ];
    let first = store
        .import_accounts(cloud.pk, &original, T0)
        .await
        .expect("import_accounts");
    assert_eq!(first, summary(3, 0, 0, 0));
    let again = store
        .import_accounts(cloud.pk, &original, T1)
        .await
        .expect("import_accounts");
    assert_eq!(
        again,
        summary(0, 0, 3, 0),
        "re-importing the same accounts writes nothing"
    );

    let mut changed = original.clone();
    changed[0].display_name = "Ann Renamed".to_owned();
    changed[1] = account("acc-2", Some("bo@example.com"));
    let result = store
        .import_accounts(cloud.pk, &changed, T1)
        .await
        .expect("import_accounts");
    assert_eq!(result, summary(0, 2, 1, 0));

    // The same account ids in another source are other accounts.
    let other = store
        .import_accounts(server.pk, &original, T1)
        .await
        .expect("same ids, other source");
    assert_eq!(other, summary(3, 0, 0, 0));

    let cloud_accounts = store
        .load_link_input(cloud.pk)
        .await
        .expect("load_link_input")
        .accounts;
    let server_accounts = store
        .load_link_input(server.pk)
        .await
        .expect("load_link_input")
        .accounts;
    assert_eq!(cloud_accounts.len(), 3);
    assert_eq!(server_accounts.len(), 3);
    let cloud_pks: Vec<i64> = cloud_accounts.iter().map(|a| a.pk).collect();
    let server_pks: Vec<i64> = server_accounts.iter().map(|a| a.pk).collect();
    assert!(
        cloud_pks.iter().all(|pk| !server_pks.contains(pk)),
        "two sources, two sets of accounts"
    );

    let by_id: BTreeMap<&str, i64> = cloud_accounts
        .iter()
        .map(|a| (a.account_id.as_str(), a.pk))
        .collect();
    let mut records = store
        .get_accounts_by_pk(&cloud_pks)
        .await
        .expect("get_accounts_by_pk");
    records.sort_by_key(|r| r.pk);
    let mut expected: Vec<AccountRecord> = changed
        .iter()
        .map(|row| account_record_of(row, by_id[row.account_id.as_str()], cloud.pk))
        .collect();
    expected.sort_by_key(|r| r.pk);
    assert_eq!(records, expected);

    let mut server_records = store
        .get_accounts_by_pk(&server_pks)
        .await
        .expect("get_accounts_by_pk");
    server_records.sort_by_key(|r| r.account_id.clone());
    let server_expected: Vec<AccountRecord> = original
        .iter()
        .zip(&server_records)
        .map(|(row, record)| account_record_of(row, record.pk, server.pk))
        .collect();
    assert_eq!(
        server_records, server_expected,
        "the other source kept the original rows"
    );
}

/// A file that moves an External ID from one user to another is read in order, as a
/// row-by-row import would: the value may move once its holder gave it up in an earlier row.
pub async fn import_users_moves_an_external_id_in_file_order(store: &impl Store) {
    import_users(
        store,
        &[
            linked_user("u1", Some("a@example.com"), "X"),
            user("u2", Some("b@example.com")),
        ],
    )
    .await;
    let before = all_users(store).await;

    // The taker comes first: X is still u1's when u2's row is read.
    let taker_first = vec![
        linked_user("u2", Some("b@example.com"), "X"),
        linked_user("u1", Some("a@example.com"), "Y"),
    ];
    match store.import_users(&taker_first, &import_options(true, T1)).await {
        Err(StoreError::Conflict { constraint, .. }) => assert_eq!(constraint, "users_external_id"),
        other => panic!("taking X before its holder gives it up must be Conflict{{users_external_id}}, got {other:?}"),
    }
    assert_eq!(all_users(store).await, before, "nothing written");

    // The holder gives X up first, then the other user takes it.
    let holder_first = vec![
        linked_user("u1", Some("a@example.com"), "Y"),
        linked_user("u2", Some("b@example.com"), "X"),
    ];
    let result = store
        .import_users(&holder_first, &import_options(true, T1))
        .await
        .expect("X moves from u1 to u2");
    assert_eq!(result, summary(0, 2, 0, 2));
    let users = users_by_id(store).await;
    assert_eq!(users["u1"].external_id.as_deref(), Some("Y"));
    assert_eq!(users["u2"].external_id.as_deref(), Some("X"));
    let audit = store.list_audit(None, 10).await.expect("list_audit");
    let moves: Vec<_> = audit
        .iter()
        .filter(|e| e.at == T1)
        .map(|e| (e.user_pk, e.old_value.as_deref(), e.new_value.as_deref()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut expected = vec![
        (users["u1"].pk, Some("X"), Some("Y")),
        (users["u2"].pk, None, Some("X")),
    ];
    expected.sort();
    assert_eq!(moves, expected);
}
