//! The audit trail is append-only in the database itself, not only in the store's code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use tether_store::Store;

pub async fn audit_is_append_only(db: &TestDb) {
    let store = &db.store;
    import_users(
        store,
        &[linked_user("u1", Some("ann@example.com"), "ext-1")],
    )
    .await;
    let before = store.list_audit(None, 10).await.expect("list_audit");
    assert_eq!(before.len(), 1);
    // The raw connection sees the same table, so a refusal below is the database's.
    assert_eq!(db.count_raw("SELECT count(*) FROM audit").await, 1);

    let update = db
        .execute_raw("UPDATE audit SET actor = 'mallory', new_value = 'forged'")
        .await;
    assert!(
        update.is_err(),
        "an UPDATE of the audit must fail, got {update:?}"
    );
    let delete = db.execute_raw("DELETE FROM audit").await;
    assert!(
        delete.is_err(),
        "a DELETE from the audit must fail, got {delete:?}"
    );

    assert_eq!(
        store.list_audit(None, 10).await.expect("list_audit"),
        before,
        "the entry is untouched"
    );
    assert_eq!(db.count_raw("SELECT count(*) FROM audit").await, 1);
}
