//! The SCIM units of work: users are the application's users (External ID is `externalId`,
//! audited with origin `scim`), userName is unique regardless of case for SCIM writes, DELETE
//! hides without deleting, and groups hold users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use serde_json::json;
use tether_core::Origin;
use tether_store::scim::{
    name_key, ScimContext, ScimGroupOrder, ScimGroupWrite, ScimLookup, ScimPage, ScimStore,
    ScimUserOrder, ScimUserWrite, GROUP_NAME_CONSTRAINT, USERNAME_CONSTRAINT,
};
use tether_store::{Store, StoreError};

const SCIM: ScimContext<'static> = ScimContext {
    actor: "scim:test",
    at: T1,
};

fn scim_user(username: &str, email: Option<&str>, external_id: Option<&str>) -> ScimUserWrite {
    ScimUserWrite {
        username: username.to_owned(),
        username_key: name_key(username),
        email: email.map(str::to_owned),
        email_key: tether_core::match_key(email).key().map(str::to_owned),
        display_name: format!("SCIM {username}"),
        active: true,
        external_id: external_id.map(str::to_owned),
        attributes: json!({"name": {"givenName": username}}),
    }
}

fn conflict_of<T: std::fmt::Debug>(result: Result<T, StoreError>) -> (&'static str, String) {
    match result {
        Err(StoreError::Conflict {
            constraint,
            message,
        }) => (constraint, message),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn scim_user_round_trip_and_audit(store: &(impl Store + ScimStore)) {
    let created = store
        .insert_scim_user(
            "s1",
            &scim_user(
                "Ann.Lee@Example.com",
                Some("Ann.Lee@Example.com"),
                Some("aaid-1"),
            ),
            SCIM,
        )
        .await
        .expect("insert");
    assert_eq!(created.id, "s1");
    assert_eq!(created.username, "Ann.Lee@Example.com");
    assert_eq!(created.external_id.as_deref(), Some("aaid-1"));
    assert_eq!(
        created.attributes,
        json!({"name": {"givenName": "Ann.Lee@Example.com"}})
    );
    assert_eq!(created.created_at, Some(T1));
    assert_eq!(
        store.find_scim_user("s1").await.unwrap(),
        Some(created.clone())
    );

    // The application sees the same user, linked by SCIM.
    let user = user_by_id(store, "s1").await;
    assert_eq!(user.external_id.as_deref(), Some("aaid-1"));
    assert_eq!(user.external_id_origin, Some(Origin::Scim));
    assert_eq!(user.email_key.as_deref(), Some("ann.lee@example.com"));
    let audit = store.list_audit(Some(user.pk), 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].origin, Origin::Scim);
    assert_eq!(audit[0].actor, "scim:test");
    assert_eq!(audit[0].old_value, None);
    assert_eq!(audit[0].new_value.as_deref(), Some("aaid-1"));

    // Lookups by each index, userName in another case.
    for lookup in [
        ScimLookup::Id("s1".into()),
        ScimLookup::UserNameKey(name_key("ANN.LEE@EXAMPLE.COM")),
        ScimLookup::ExternalId("aaid-1".into()),
        ScimLookup::EmailKey("ann.lee@example.com".into()),
    ] {
        let found = store
            .find_scim_users(std::slice::from_ref(&lookup), 10)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{lookup:?}");
    }
    // externalId compares exactly.
    let none = store
        .find_scim_users(&[ScimLookup::ExternalId("AAID-1".into())], 10)
        .await
        .unwrap();
    assert!(none.is_empty());

    // A change of External ID is audited with both values.
    let updated = store
        .update_scim_user(
            "s1",
            ScimContext {
                actor: "scim:test",
                at: T2,
            },
            |current| {
                let mut next =
                    scim_user(&current.username, current.email.as_deref(), Some("aaid-2"));
                next.active = false;
                Ok::<_, ()>(next)
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.external_id.as_deref(), Some("aaid-2"));
    assert!(!updated.active);
    assert_eq!(updated.modified_at, Some(T2));
    let audit = store.list_audit(Some(user.pk), 10).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].old_value.as_deref(), Some("aaid-1"));
    assert_eq!(audit[0].new_value.as_deref(), Some("aaid-2"));

    // A write that changes nothing of the External ID adds no audit entry.
    store
        .update_scim_user("s1", SCIM, |current| {
            Ok::<_, ()>(scim_user(
                &current.username,
                None,
                current.external_id.as_deref(),
            ))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.list_audit(Some(user.pk), 10).await.unwrap().len(), 2);
    assert_eq!(user_by_id(store, "s1").await.email, None);
}

pub async fn scim_refusals_write_nothing(store: &(impl Store + ScimStore)) {
    store
        .insert_scim_user("s1", &scim_user("ann", None, Some("aaid-1")), SCIM)
        .await
        .unwrap();
    let before = store.find_scim_user("s1").await.unwrap();
    let refused = store
        .update_scim_user("s1", SCIM, |_| Err::<ScimUserWrite, _>("precondition"))
        .await
        .unwrap();
    assert_eq!(refused, Err("precondition"));
    assert_eq!(store.find_scim_user("s1").await.unwrap(), before);
    let refused = store
        .delete_scim_user("s1", SCIM, |_| Err::<(), _>("precondition"))
        .await
        .unwrap();
    assert_eq!(refused, Err("precondition"));
    assert_eq!(store.find_scim_user("s1").await.unwrap(), before);
    let missing = store
        .update_scim_user("nobody", SCIM, |_| Ok::<_, ()>(scim_user("x", None, None)))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(store.list_audit(None, 10).await.unwrap().len(), 1);
}

pub async fn scim_username_is_unique_regardless_of_case(store: &(impl Store + ScimStore)) {
    store
        .insert_scim_user("s1", &scim_user("Ann", None, None), SCIM)
        .await
        .unwrap();
    let (constraint, message) = conflict_of(
        store
            .insert_scim_user("s2", &scim_user("aNN", None, None), SCIM)
            .await,
    );
    assert_eq!(constraint, USERNAME_CONSTRAINT);
    assert!(message.contains("'s1'"), "names the holder: {message}");
    assert_eq!(
        store.count_scim_users().await.unwrap(),
        1,
        "nothing written"
    );
    // Non-ASCII case too (SQL's lower() would miss these).
    store
        .insert_scim_user("s3", &scim_user("ÉLODIE", None, None), SCIM)
        .await
        .unwrap();
    let (constraint, _) = conflict_of(
        store
            .insert_scim_user("s4", &scim_user("élodie", None, None), SCIM)
            .await,
    );
    assert_eq!(constraint, USERNAME_CONSTRAINT);

    // Imported users may already be case-duplicates: they stay, both are found, and a SCIM
    // write that keeps a username is not refused; one that takes another's is.
    import_users(store, &[user("bob", None), user("BOB", None)]).await;
    let found = store
        .find_scim_users(&[ScimLookup::UserNameKey(name_key("Bob"))], 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    store
        .update_scim_user("BOB", SCIM, |current| {
            Ok::<_, ()>(scim_user(&current.username, None, None))
        })
        .await
        .unwrap()
        .unwrap();
    let taken = store
        .update_scim_user("s1", SCIM, |_| Ok::<_, ()>(scim_user("Bob", None, None)))
        .await;
    assert_eq!(conflict_of(taken).0, USERNAME_CONSTRAINT);
    assert_eq!(
        store.find_scim_user("s1").await.unwrap().unwrap().username,
        "Ann"
    );
}

pub async fn scim_external_id_clash_names_the_holder(store: &(impl Store + ScimStore)) {
    import_users(
        store,
        &[linked_user("u1", Some("u1@example.com"), "aaid-1")],
    )
    .await;
    let audit_before = store.list_audit(None, 10).await.unwrap().len();
    let (constraint, message) = conflict_of(
        store
            .insert_scim_user("s1", &scim_user("carol", None, Some("aaid-1")), SCIM)
            .await,
    );
    assert_eq!(constraint, "users_external_id");
    assert!(message.contains("'u1'"), "names the holder: {message}");
    store
        .insert_scim_user("s1", &scim_user("carol", None, None), SCIM)
        .await
        .unwrap();
    let clash = store
        .update_scim_user("s1", SCIM, |_| {
            Ok::<_, ()>(scim_user("carol", None, Some("aaid-1")))
        })
        .await;
    assert!(conflict_of(clash).1.contains("'u1'"));
    assert_eq!(
        store.list_audit(None, 10).await.unwrap().len(),
        audit_before
    );
    assert_eq!(user_by_id(store, "s1").await.external_id, None);
}

pub async fn scim_username_keys_follow_imports(store: &(impl Store + ScimStore)) {
    let mut carol = user("u1", None);
    carol.username = "Carol".into();
    import_users(store, &[carol.clone()]).await;
    let by_key = |key: &'static str| async move {
        store
            .find_scim_users(&[ScimLookup::UserNameKey(key.into())], 10)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(by_key("carol").await, 1);
    carol.username = "Dave".into();
    import_users(store, &[carol]).await;
    assert_eq!(by_key("carol").await, 0, "a renamed user's old key is gone");
    assert_eq!(by_key("dave").await, 1);
    let page = store
        .list_scim_users(&ScimPage {
            order: ScimUserOrder::UserName,
            descending: false,
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
}

pub async fn scim_delete_hides_and_keeps_the_record(store: &(impl Store + ScimStore)) {
    store
        .insert_scim_user("s1", &scim_user("ann", None, Some("aaid-1")), SCIM)
        .await
        .unwrap();
    store.insert_group_for_test("g1", "Admins", &["s1"]).await;
    store
        .delete_scim_user("s1", SCIM, |_| Ok::<_, ()>(()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.find_scim_user("s1").await.unwrap(), None);
    assert_eq!(store.count_scim_users().await.unwrap(), 0);
    let again = store
        .delete_scim_user("s1", SCIM, |_| Ok::<_, ()>(()))
        .await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    // The application keeps the user (deactivated), its External ID and its audit trail.
    let user = user_by_id(store, "s1").await;
    assert!(!user.active);
    assert_eq!(user.external_id.as_deref(), Some("aaid-1"));
    assert_eq!(store.list_audit(Some(user.pk), 10).await.unwrap().len(), 1);
    assert!(store
        .find_scim_group("g1")
        .await
        .unwrap()
        .unwrap()
        .members
        .is_empty());
    // Its userName is free again for SCIM; its External ID is not.
    store
        .insert_scim_user("s2", &scim_user("ANN", None, None), SCIM)
        .await
        .unwrap();
    let (constraint, _) = conflict_of(
        store
            .insert_scim_user("s3", &scim_user("zed", None, Some("aaid-1")), SCIM)
            .await,
    );
    assert_eq!(constraint, "users_external_id");
}

pub async fn scim_groups_hold_users(store: &(impl Store + ScimStore)) {
    for (id, name) in [("s1", "ann"), ("s2", "bob")] {
        store
            .insert_scim_user(id, &scim_user(name, None, None), SCIM)
            .await
            .unwrap();
    }
    let group = |name: &str, members: &[&str]| ScimGroupWrite {
        display_name: name.to_owned(),
        display_name_key: name_key(name),
        external_id: None,
        attributes: json!({}),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
    };
    let created = store
        .insert_scim_group("g1", &group("Admins", &["s2", "s1", "s1"]), SCIM)
        .await
        .unwrap();
    let members: Vec<&str> = created.members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(members, ["s1", "s2"]);
    assert_eq!(created.members[0].display, "SCIM ann");
    let (constraint, message) = conflict_of(
        store
            .insert_scim_group("g2", &group("ADMINS", &[]), SCIM)
            .await,
    );
    assert_eq!(constraint, GROUP_NAME_CONSTRAINT);
    assert!(message.contains("'g1'"));
    let unknown = store
        .insert_scim_group("g2", &group("Ops", &["nobody"]), SCIM)
        .await;
    assert!(
        matches!(&unknown, Err(StoreError::Invalid(m)) if m.contains("nobody")),
        "{unknown:?}"
    );
    assert_eq!(
        store.count_scim_groups().await.unwrap(),
        1,
        "nothing written"
    );

    let updated = store
        .update_scim_group("g1", SCIM, |_| Ok::<_, ()>(group("admins", &["s2"])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.display_name, "admins");
    assert_eq!(updated.members.len(), 1);
    assert_eq!(
        store
            .find_scim_groups_by_name("admins")
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .insert_scim_group("g2", &group("Ops", &[]), SCIM)
        .await
        .unwrap();
    let page = store
        .list_scim_groups(&ScimPage {
            order: ScimGroupOrder::DisplayName,
            descending: true,
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    let names: Vec<&str> = page.iter().map(|g| g.display_name.as_str()).collect();
    assert_eq!(names, ["Ops", "admins"]);
    store
        .delete_scim_group("g1", |_| Ok::<_, ()>(()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.find_scim_group("g1").await.unwrap(), None);
    assert!(
        store.find_scim_user("s2").await.unwrap().is_some(),
        "members stay"
    );
}

pub async fn scim_users_page_in_order(store: &(impl Store + ScimStore)) {
    for (id, name) in [("s3", "carol"), ("s1", "Bob"), ("s2", "ann")] {
        store
            .insert_scim_user(id, &scim_user(name, None, None), SCIM)
            .await
            .unwrap();
    }
    let names = |page: Vec<tether_store::scim::ScimUser>| {
        page.into_iter().map(|u| u.username).collect::<Vec<_>>()
    };
    let page = |order, descending, offset, limit| ScimPage {
        order,
        descending,
        offset,
        limit,
    };
    let by_name = store
        .list_scim_users(&page(ScimUserOrder::UserName, false, 0, 10))
        .await
        .unwrap();
    assert_eq!(
        names(by_name),
        ["ann", "Bob", "carol"],
        "case-insensitive order"
    );
    let second = store
        .list_scim_users(&page(ScimUserOrder::Id, true, 1, 1))
        .await
        .unwrap();
    assert_eq!(names(second), ["ann"], "ids s3, s2, s1: the second is s2");
    let by_pk = store
        .list_scim_users(&page(ScimUserOrder::Pk, false, 0, 2))
        .await
        .unwrap();
    assert_eq!(names(by_pk), ["carol", "Bob"]);
    assert_eq!(store.count_scim_users().await.unwrap(), 3);
}

/// A tiny helper so cases can make a group in one line.
trait GroupFixture {
    async fn insert_group_for_test(&self, id: &str, name: &str, members: &[&str]);
}

impl<S: ScimStore> GroupFixture for S {
    async fn insert_group_for_test(&self, id: &str, name: &str, members: &[&str]) {
        self.insert_scim_group(
            id,
            &ScimGroupWrite {
                display_name: name.to_owned(),
                display_name_key: name_key(name),
                external_id: None,
                attributes: json!({}),
                members: members.iter().map(|m| (*m).to_owned()).collect(),
            },
            SCIM,
        )
        .await
        .expect("insert group");
    }
}
