//! Sources: insert, find, list, the unique name, and the External ID field dropdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use tether_core::ExternalIdField;
use tether_store::{NewSource, Source, Store, StoreError, Timestamp};

/// A source's fields, comparable (`Source` has no `PartialEq`).
fn fields(source: &Source) -> (i64, String, String, ExternalIdField, bool, Timestamp) {
    (
        source.pk,
        source.name.clone(),
        source.kind.clone(),
        source.external_id_field,
        source.link_inactive,
        source.created_at,
    )
}

pub async fn sources_insert_find_list_update(store: &impl Store) {
    let jira_new = NewSource {
        name: "jira-cloud".to_owned(),
        kind: "jira_cloud".to_owned(),
        external_id_field: ExternalIdField::Username,
        link_inactive: true,
    };
    let jira = store
        .insert_source(&jira_new, T1)
        .await
        .expect("insert_source");
    assert_eq!(
        fields(&jira),
        (
            jira.pk,
            "jira-cloud".to_owned(),
            "jira_cloud".to_owned(),
            ExternalIdField::Username,
            true,
            T1
        )
    );
    let file = file_source(store, "hr-file").await;
    assert_eq!(
        fields(&file),
        (
            file.pk,
            "hr-file".to_owned(),
            "file".to_owned(),
            ExternalIdField::AccountId,
            false,
            T0
        )
    );
    assert_ne!(jira.pk, file.pk, "each source has its own key");

    let found = store
        .find_source("jira-cloud")
        .await
        .expect("find_source")
        .expect("jira-cloud is found");
    assert_eq!(fields(&found), fields(&jira));
    assert!(store
        .find_source("no-such-source")
        .await
        .expect("find_source")
        .is_none());

    let mut listed: Vec<_> = store
        .list_sources()
        .await
        .expect("list_sources")
        .iter()
        .map(fields)
        .collect();
    listed.sort();
    let mut expected = vec![fields(&jira), fields(&file)];
    expected.sort();
    assert_eq!(listed, expected);

    // A taken name is a conflict naming the constraint, and nothing is written.
    let again = NewSource {
        kind: "file".to_owned(),
        external_id_field: ExternalIdField::Email,
        ..jira_new
    };
    match store.insert_source(&again, T2).await {
        Err(StoreError::Conflict { constraint, .. }) => assert_eq!(constraint, "sources_name"),
        other => panic!("a duplicate source name must be Conflict{{sources_name}}, got {other:?}"),
    }
    assert_eq!(store.list_sources().await.expect("list_sources").len(), 2);
    let still = store
        .find_source("jira-cloud")
        .await
        .expect("find_source")
        .expect("still there");
    assert_eq!(
        fields(&still),
        fields(&jira),
        "the refused insert changed nothing"
    );

    // The Pull User Data dropdown changes one source only.
    store
        .update_source_field(file.pk, ExternalIdField::Email)
        .await
        .expect("update_source_field");
    let file_after = store
        .find_source("hr-file")
        .await
        .expect("find_source")
        .expect("hr-file");
    assert_eq!(file_after.external_id_field, ExternalIdField::Email);
    assert_eq!(
        (
            file_after.pk,
            file_after.link_inactive,
            file_after.created_at
        ),
        (file.pk, file.link_inactive, file.created_at)
    );
    let jira_after = store
        .find_source("jira-cloud")
        .await
        .expect("find_source")
        .expect("jira-cloud");
    assert_eq!(fields(&jira_after), fields(&jira));
    store
        .update_source_field(file.pk, ExternalIdField::Key)
        .await
        .expect("update_source_field");
    let file_after = store
        .find_source("hr-file")
        .await
        .expect("find_source")
        .expect("hr-file");
    assert_eq!(file_after.external_id_field, ExternalIdField::Key);
}
