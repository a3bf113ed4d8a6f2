//! `settle`: the outcome recorded once a planned change was attempted (DESIGN §2: applying
//! re-checks each change and never overwrites a concurrent writer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tether_core::{settle, Change, ChangeResult, Evidence, Situation};

#[test]
fn every_result_settles_to_its_situation() {
    let change = Change {
        user_pk: 7,
        account_pk: 3,
        old: None,
        new: "5b10a2844c20165700ede21g".into(),
    };
    let account = Evidence {
        accounts: vec![3],
        users: vec![],
        total: 1,
    };
    let cases = [
        (
            ChangeResult::Applied,
            Some((Situation::Linked, account.clone())),
        ),
        (
            ChangeResult::AlreadySet,
            Some((Situation::Linked, account.clone())),
        ),
        (
            ChangeResult::Changed {
                current: "other".into(),
            },
            Some((Situation::Conflict, account.clone())),
        ),
        (
            ChangeResult::Taken { holder_pk: 9 },
            Some((
                Situation::AccountTaken,
                Evidence {
                    accounts: vec![3],
                    users: vec![9],
                    total: 1,
                },
            )),
        ),
        (
            ChangeResult::Excluded,
            Some((Situation::Excluded, Evidence::default())),
        ),
        (ChangeResult::Gone, None),
    ];
    for (result, expected) in cases {
        let settled = settle(&change, &result);
        assert_eq!(
            settled.as_ref().map(|o| o.user_pk),
            expected.as_ref().map(|_| 7),
            "{result:?}"
        );
        assert_eq!(
            settled.map(|o| (o.situation, o.evidence)),
            expected,
            "{result:?}"
        );
    }
}
