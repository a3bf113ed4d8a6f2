//! Administration: administrators, sessions with expiry, settings with defaults and an
//! event per change, tokens (revoked ones never authenticate), source connections, hand
//! edits of External IDs under the engine's rules, exclusions, search and the audit filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use tether_core::{ChangeResult, Origin};
use tether_store::admin::*;
use tether_store::{AnyStore, NewToken, Store, StoreError};
use time::Duration;

pub async fn admins_and_sessions(store: &AnyStore) {
    assert_eq!(store.count_admins().await.unwrap(), 0);
    store
        .insert_admin("alice", "$argon2id$hash", T0)
        .await
        .unwrap();
    let err = store.insert_admin("alice", "other", T0).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "admins_username",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.count_admins().await.unwrap(), 1);
    let admin = store.find_admin("alice").await.unwrap().unwrap();
    assert_eq!(admin.password_hash, "$argon2id$hash");
    assert!(store.find_admin("Alice").await.unwrap().is_none());
    store.update_admin_password("alice", "new").await.unwrap();
    assert_eq!(
        store
            .find_admin("alice")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new"
    );
    assert!(matches!(
        store.update_admin_password("bob", "x").await,
        Err(StoreError::NotFound(_))
    ));

    let session = |id: &str, expires| NewSession {
        id_hash: id.to_owned(),
        principal: "admin:alice".to_owned(),
        is_admin: true,
        user_pk: None,
        csrf: format!("csrf-{id}"),
        created_at: T0,
        expires_at: expires,
    };
    store
        .insert_session(&session("s1", T0 + Duration::hours(1)))
        .await
        .unwrap();
    store
        .insert_session(&session("s2", T0 + Duration::minutes(5)))
        .await
        .unwrap();
    let found = store.find_session("s1", T0).await.unwrap().unwrap();
    assert_eq!(
        (
            found.principal.as_str(),
            found.is_admin,
            found.csrf.as_str()
        ),
        ("admin:alice", true, "csrf-s1")
    );
    // Expired sessions are not found, and ending any session sweeps them away.
    assert!(store
        .find_session("s2", T0 + Duration::minutes(6))
        .await
        .unwrap()
        .is_none());
    store
        .delete_session("s1", T0 + Duration::minutes(6))
        .await
        .unwrap();
    assert!(store.find_session("s1", T0).await.unwrap().is_none());
    assert!(store.find_session("s2", T0).await.unwrap().is_none());

    // A change of the sign-in settings ends the sessions of those who signed in through the
    // platform, and only theirs.
    for (id, principal) in [
        ("local", "admin:alice"),
        ("platform-user", "user:u1"),
        ("platform-admin", "oidc:acc-9"),
    ] {
        store
            .insert_session(&NewSession {
                principal: principal.to_owned(),
                ..session(id, T0 + Duration::hours(1))
            })
            .await
            .unwrap();
    }
    assert_eq!(store.end_platform_sessions().await.unwrap(), 2);
    assert!(store.find_session("local", T0).await.unwrap().is_some());
    assert!(store
        .find_session("platform-user", T0)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .find_session("platform-admin", T0)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.end_platform_sessions().await.unwrap(), 0);
}

pub async fn settings_default_and_change_with_an_event(store: &AnyStore) {
    let defaults = store.get_settings().await.unwrap();
    assert_eq!(defaults, Settings::default());
    assert!(!defaults.auto_populate && defaults.require_verified_email);
    assert_eq!(defaults.mass_change_threshold_percent, 20);
    let changed = Settings {
        auto_populate: true,
        mass_change_threshold_percent: 35,
        ..defaults.clone()
    };
    store
        .update_settings(&changed, "admin:alice", T1)
        .await
        .unwrap();
    assert_eq!(store.get_settings().await.unwrap(), changed);
    // Saving the same settings again records nothing new.
    store
        .update_settings(&changed, "admin:alice", T1)
        .await
        .unwrap();
    let events = store.list_events(None, 10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "settings_changed");
    assert!(
        events[0].detail.contains("auto_populate=true"),
        "{}",
        events[0].detail
    );
    assert!(events[0]
        .detail
        .contains("mass_change_threshold_percent=35"));
    assert!(!events[0].detail.contains("link_inactive"));
}

pub async fn tokens_list_use_and_revoke(store: &AnyStore) {
    let pk = store
        .insert_token(&NewToken {
            name: "ci".to_owned(),
            scope: "scim".to_owned(),
            hash: "h1".to_owned(),
            created_at: T0,
        })
        .await
        .unwrap();
    let used = store.find_token("h1", T1).await.unwrap().unwrap();
    assert_eq!((used.name.as_str(), used.scope.as_str()), ("ci", "scim"));
    assert_eq!(used.last_used_at, Some(T1));
    assert!(store.find_token("nope", T1).await.unwrap().is_none());
    store.revoke_token(pk, T1).await.unwrap();
    assert!(
        store.find_token("h1", T1).await.unwrap().is_none(),
        "a revoked token must not authenticate"
    );
    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(T1));
    assert!(matches!(
        store.revoke_token(pk + 100, T1).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn source_connection_round_trip(store: &AnyStore) {
    let source = file_source(store, "cloud").await;
    let empty = store.get_source_connection(source.pk).await.unwrap();
    assert_eq!(empty.settings, "{}");
    assert!(empty.sealed_secret.is_none());
    store
        .update_source(
            source.pk,
            &SourceUpdate {
                external_id_field: Some(tether_core::ExternalIdField::Email),
                link_inactive: Some(true),
                settings: Some(r#"{"base_url":"https://x.example"}"#.to_owned()),
                sealed_secret: Some(Some(vec![1, 2, 3])),
            },
        )
        .await
        .unwrap();
    let got = store.get_source_connection(source.pk).await.unwrap();
    assert_eq!(got.settings, r#"{"base_url":"https://x.example"}"#);
    assert_eq!(got.sealed_secret, Some(vec![1, 2, 3]));
    let source = store.find_source("cloud").await.unwrap().unwrap();
    assert_eq!(
        source.external_id_field,
        tether_core::ExternalIdField::Email
    );
    assert!(source.link_inactive);
    // Leaving the secret alone keeps it; Some(None) removes it.
    store
        .update_source(source.pk, &SourceUpdate::default())
        .await
        .unwrap();
    assert!(store
        .get_source_connection(source.pk)
        .await
        .unwrap()
        .sealed_secret
        .is_some());
    store
        .update_source(
            source.pk,
            &SourceUpdate {
                sealed_secret: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(store
        .get_source_connection(source.pk)
        .await
        .unwrap()
        .sealed_secret
        .is_none());
    assert!(matches!(
        store.get_source_connection(source.pk + 9).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn hand_edits_follow_the_rules(store: &AnyStore) {
    import_users(
        store,
        &[
            user("u1", Some("u1@example.com")),
            linked_user("u2", Some("u2@example.com"), "A-2"),
            user("u3", Some("u3@example.com")),
        ],
    )
    .await;
    let u1 = user_by_id(store, "u1").await;
    let edit = |user_pk, expected, new| ExternalIdEdit {
        user_pk,
        expected,
        new,
        origin: Origin::Manual,
        actor: "admin:alice",
        reason: "ticket 42",
        at: T1,
    };
    // Another user's value is refused and names the holder.
    let u2 = user_by_id(store, "u2").await;
    assert_eq!(
        store
            .set_external_id(&edit(u1.pk, None, Some("A-2")))
            .await
            .unwrap(),
        ChangeResult::Taken { holder_pk: u2.pk }
    );
    // A stale expectation is refused.
    assert!(matches!(
        store
            .set_external_id(&edit(u1.pk, Some("old"), Some("A-1")))
            .await
            .unwrap(),
        ChangeResult::Changed { .. }
    ));
    assert_eq!(
        store
            .set_external_id(&edit(u1.pk, None, Some("A-1")))
            .await
            .unwrap(),
        ChangeResult::Applied
    );
    let after = user_by_id(store, "u1").await;
    assert_eq!(after.external_id.as_deref(), Some("A-1"));
    assert_eq!(after.external_id_origin, Some(Origin::Manual));
    assert_eq!(
        store
            .set_external_id(&edit(u1.pk, Some("A-1"), Some("A-1")))
            .await
            .unwrap(),
        ChangeResult::AlreadySet
    );
    // Clearing, then the audit shows both with the reason.
    assert_eq!(
        store
            .set_external_id(&edit(u1.pk, Some("A-1"), None))
            .await
            .unwrap(),
        ChangeResult::Applied
    );
    let cleared = user_by_id(store, "u1").await;
    assert_eq!(
        (cleared.external_id, cleared.external_id_origin),
        (None, None)
    );
    let audit = store
        .list_audit_page(&AuditFilter {
            limit: 10,
            user_pk: Some(u1.pk),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (audit[0].old_value.as_deref(), audit[0].new_value.as_deref()),
        (Some("A-1"), None)
    );
    assert_eq!(
        (audit[1].old_value.as_deref(), audit[1].new_value.as_deref()),
        (None, Some("A-1"))
    );
    assert!(audit
        .iter()
        .all(|e| e.origin == Origin::Manual && e.reason == "ticket 42"));
    // Excluded users are never changed; the exclusion is an event; gone users are Gone.
    let u3 = user_by_id(store, "u3").await;
    store
        .set_excluded(u3.pk, true, "admin:alice", "service account", T1)
        .await
        .unwrap();
    assert!(user_by_id(store, "u3").await.excluded);
    assert_eq!(
        store
            .set_external_id(&edit(u3.pk, None, Some("A-3")))
            .await
            .unwrap(),
        ChangeResult::Excluded
    );
    store
        .set_excluded(u3.pk, false, "admin:alice", "", T1)
        .await
        .unwrap();
    let kinds: Vec<String> = store
        .list_events(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["user_included", "user_excluded"]);
    assert_eq!(
        store
            .set_external_id(&edit(99_999, None, Some("A-9")))
            .await
            .unwrap(),
        ChangeResult::Gone
    );
    assert!(matches!(
        store.set_excluded(99_999, true, "a", "", T1).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn search_users_without_case(store: &AnyStore) {
    let mut rows = vec![
        user("u1", Some("Alice.Smith@Example.com")),
        user("u2", Some("bob@example.com")),
        user("u3", Some("alicia@example.com")),
        linked_user("u4", Some("carol@example.com"), "557058:abc"),
    ];
    rows[1].display_name = "Alice Bobson".to_owned();
    rows[2].display_name = "ALICIA Doe".to_owned();
    import_users(store, &rows).await;
    let ids =
        |users: Vec<tether_store::UserRecord>| users.into_iter().map(|u| u.id).collect::<Vec<_>>();
    let search = |q: &str, after_pk, limit| UserSearch {
        query: q.to_owned(),
        after_pk,
        limit,
    };
    // E-mail key and display name prefixes, without case.
    assert_eq!(
        ids(store.search_users(&search("ALI", None, 10)).await.unwrap()),
        ["u1", "u2", "u3"]
    );
    assert_eq!(
        ids(store
            .search_users(&search("alice.smith@example", None, 10))
            .await
            .unwrap()),
        ["u1"]
    );
    // Exact id and External ID.
    assert_eq!(
        ids(store.search_users(&search("u4", None, 10)).await.unwrap()),
        ["u4"]
    );
    let mut u5 = user("u5", None);
    u5.username = "Mixed.Case".to_owned();
    import_users(store, &[u5]).await;
    assert_eq!(
        ids(store
            .search_users(&search("Mixed.Case", None, 10))
            .await
            .unwrap()),
        ["u5"]
    );
    assert_eq!(
        ids(store
            .search_users(&search("557058:abc", None, 10))
            .await
            .unwrap()),
        ["u4"]
    );
    // Wildcards are literal.
    assert!(store
        .search_users(&search("%", None, 10))
        .await
        .unwrap()
        .is_empty());
    // Keyset pages.
    let first = store.search_users(&search("ali", None, 2)).await.unwrap();
    let rest = store
        .search_users(&search("ali", Some(first[1].pk), 2))
        .await
        .unwrap();
    assert_eq!(ids(first), ["u1", "u2"]);
    assert_eq!(ids(rest), ["u3"]);
    assert!(matches!(
        store.get_user("nobody").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn audit_filters_by_origin_actor_and_page(store: &AnyStore) {
    import_users(
        store,
        &[
            user("u1", Some("u1@example.com")),
            user("u2", Some("u2@example.com")),
        ],
    )
    .await;
    let u1 = user_by_id(store, "u1").await;
    let u2 = user_by_id(store, "u2").await;
    for (pk, value, actor) in [(u1.pk, "A", "admin:alice"), (u2.pk, "B", "admin:bob")] {
        store
            .set_external_id(&ExternalIdEdit {
                user_pk: pk,
                expected: None,
                new: Some(value),
                origin: Origin::Manual,
                actor,
                reason: "r",
                at: T1,
            })
            .await
            .unwrap();
    }
    let page = |filter: AuditFilter| async move { store.list_audit_page(&filter).await.unwrap() };
    let all = page(AuditFilter {
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 2);
    assert!(all[0].pk > all[1].pk, "newest first");
    let bob = page(AuditFilter {
        limit: 10,
        actor: Some("admin:bob".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(bob.iter().map(|e| e.user_pk).collect::<Vec<_>>(), [u2.pk]);
    assert!(page(AuditFilter {
        limit: 10,
        origin: Some(Origin::Scim),
        ..Default::default()
    })
    .await
    .is_empty());
    let older = page(AuditFilter {
        limit: 10,
        before_pk: Some(all[0].pk),
        ..Default::default()
    })
    .await;
    assert_eq!(older.iter().map(|e| e.pk).collect::<Vec<_>>(), [all[1].pk]);
}

pub async fn search_users_broad_query_pages_like_a_narrow_one(store: &AnyStore) {
    // 2,600 users match "x" (a broad query, walked in key order); 111 match "x25" and 11
    // "y1" (narrow: index ranges, sorted). Both must page in key order without repeats.
    let rows: Vec<_> = (0..2_600)
        .map(|i| user(&format!("u{i:05}"), Some(&format!("x{i}@example.com"))))
        .chain((0..50).map(|i| user(&format!("v{i:05}"), Some(&format!("y{i}@example.com")))))
        .collect();
    import_users(store, &rows).await;
    for (query, expected) in [("X", 2_600usize), ("x25", 111), ("y1", 11)] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .search_users(&UserSearch {
                    query: query.to_owned(),
                    after_pk: after,
                    limit: 500,
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|u| u.pk);
            seen.extend(page);
        }
        assert_eq!(seen.len(), expected, "{query}");
        assert!(
            seen.windows(2).all(|w| w[0].pk < w[1].pk),
            "{query}: in key order, no repeats"
        );
        let prefix = query.to_lowercase();
        assert!(
            seen.iter()
                .all(|u| u.email_key.as_deref().unwrap_or("").starts_with(&prefix)),
            "{query}"
        );
    }
}

pub async fn setting_documents_compare_and_set_beside_the_settings(store: &AnyStore) {
    let event = |detail: &'static str| NewEvent {
        at: T1,
        actor: "admin:alice",
        kind: "oidc_settings_changed",
        subject: "oidc",
        detail,
    };
    assert_eq!(store.find_setting_document("oidc").await.unwrap(), None);
    // The first save expects no document.
    assert!(store
        .put_setting_document("oidc", None, r#"{"issuer":"a"}"#, &event("issuer"))
        .await
        .unwrap());
    assert_eq!(
        store
            .find_setting_document("oidc")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"issuer":"a"}"#)
    );
    // A save that read an older document (or none) writes nothing.
    for stale in [None, Some(r#"{"issuer":"old"}"#)] {
        assert!(!store
            .put_setting_document("oidc", stale, r#"{"issuer":"b"}"#, &event("lost"))
            .await
            .unwrap());
    }
    assert!(store
        .put_setting_document(
            "oidc",
            Some(r#"{"issuer":"a"}"#),
            r#"{"issuer":"c"}"#,
            &event("issuer again")
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .find_setting_document("oidc")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"issuer":"c"}"#)
    );
    // Exactly the two saves are in the event log.
    let events = store.list_events(None, 10).await.unwrap();
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, vec!["issuer again", "issuer"]);
    // The document is not a Security setting, and a Security key is not a document.
    assert_eq!(store.get_settings().await.unwrap(), Settings::default());
    for key in ["auto_populate", ""] {
        assert!(matches!(
            store.find_setting_document(key).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store
                .put_setting_document(key, None, "true", &event("x"))
                .await,
            Err(StoreError::Invalid(_))
        ));
    }
    let changed = Settings {
        auto_populate: true,
        ..Settings::default()
    };
    store
        .update_settings(&changed, "admin:alice", T1)
        .await
        .unwrap();
    assert_eq!(store.get_settings().await.unwrap(), changed);
    assert_eq!(
        store
            .find_setting_document("oidc")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"issuer":"c"}"#)
    );
}
