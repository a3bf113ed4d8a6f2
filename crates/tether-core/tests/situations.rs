//! Data-driven situation tests for `tether_core::plan_links` (DESIGN §3).
//!
//! Every `testdata/engine/*.case` file holds cases in this format (one record a line;
//! blank lines and lines starting with `#` are ignored):
//!
//! ```text
//! === case-different e-mail links                  <- starts a case; the name is unique per file
//! rules field=username link_inactive=yes source=jira
//!     (optional; defaults: field=account_id link_inactive=no source=jira)
//! account 1 id=5b10a2844c20165700ede21g username=alice key=ALICE email=Alice@Example.COM active=yes type=atlassian
//!     (id defaults to aaid-PK; username, key and email are absent unless given;
//!      active defaults to yes, type to atlassian)
//! user 1 username=alice email=alice@example.com ext=5b10... excluded=no
//!     (email and ext are absent unless given; excluded defaults to no)
//! expect user 1 new_link accounts=1 users=2,3 total=3
//!     (one per user: the situation and the exact evidence; lists default to empty,
//!      total to the length of the longer list)
//! expect change user=1 account=1 new=5b10a2844c20165700ede21g
//!     (the plan's changes, in plan order; no change line means no change is expected)
//! explain user 1: <the exact explanation sentence>   (checked by explanations.rs)
//! fix user 1: <the exact fix sentence>               (checked by explanations.rs)
//! ```
//!
//! Values may be quoted to hold blanks (`email="  alice@example.com "`, `email=""`).
//! Escapes, quoted or not: `\u{301}` (any code point, e.g. to write NFD visibly), `\t`, `\n`,
//! `\"`, `\\`. A user's row is built as a store would: `has_email` when the address is not
//! blank, `email_key` = `match_key(email)`; an account's `email_key` likewise.
//!
//! On a mismatch the test prints, per failing case, its file, line and name and a line diff
//! of the expectations against the plan rendered in the same form (`-` expected only,
//! `+` actual only), so a wrong expectation can be fixed by pasting the `+` lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{diff, load_all, render_plan};
use std::collections::BTreeSet;
use tether_core::Situation;

#[test]
fn every_case_matches_its_expectations() {
    let cases = load_all();
    let mut failures = Vec::new();
    for case in &cases {
        let expected = case.render_expected();
        let actual = render_plan(&case.plan());
        if expected != actual {
            failures.push(format!("{}\n{}", case.title(), diff(&expected, &actual)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The suite must keep covering the whole contract: every situation occurs, and enough cases.
#[test]
fn cases_cover_every_situation() {
    let cases = load_all();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let seen: BTreeSet<Situation> = cases
        .iter()
        .flat_map(|c| c.expects.iter().map(|e| e.situation))
        .collect();
    let missing: Vec<&str> = Situation::ALL
        .iter()
        .filter(|s| !seen.contains(s))
        .map(|s| s.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "no case expects: {}",
        missing.join(", ")
    );
    // Changes are expected somewhere, and with every External ID field.
    for field in tether_core::ExternalIdField::ALL {
        assert!(
            cases
                .iter()
                .any(|c| c.rules.field == *field && !c.changes.is_empty()),
            "no case expects a change with field {field}"
        );
    }
}

/// The plan is independent of the order of the rows: every case, reversed, plans the same.
#[test]
fn every_case_plans_the_same_in_reverse_order() {
    for case in load_all() {
        let mut users = case.user_rows();
        let mut accounts = case.account_rows();
        let forward = tether_core::plan_links(&users, &accounts, &case.rules);
        users.reverse();
        accounts.reverse();
        let backward = tether_core::plan_links(&users, &accounts, &case.rules);
        assert_eq!(forward, backward, "{}", case.title());
    }
}

/// The format itself: a bad line is refused with its file and line.
#[test]
fn the_case_format_refuses_bad_lines() {
    let bad = [
        ("account 1 id=x\n", "before the first === case"),
        (
            "=== a\nuser 1 email=a@example.com\n",
            "no expect line for user 1",
        ),
        (
            "=== a\nuser 1 colour=red\nexpect user 1 no_email\n",
            "unknown attribute 'colour'",
        ),
        (
            "=== a\nuser 1\nexpect user 1 linkd\n",
            "unknown situation 'linkd'",
        ),
        ("=== a\nrules field=usernme\n", "unknown External ID field"),
        (
            "=== a\nuser 1 email=\"a@example.com\n",
            "unterminated quote",
        ),
        ("=== a\n=== a\n", "duplicate case name"),
    ];
    for (text, message) in bad {
        match common::parse("bad.case", text) {
            Ok(_) => panic!("accepted: {text:?}"),
            Err(common::ParseError(got)) => {
                assert!(got.starts_with("bad.case:"), "{got}");
                assert!(got.contains(message), "{got} does not contain {message}");
            }
        }
    }
    let good =
        "=== a\naccount 1 email=\"J\\u{301}o @x\" \nuser 2 email=\"\"\nexpect user 2 no_email\n";
    let cases = common::parse("good.case", good).map_err(|e| e.0).unwrap();
    assert_eq!(cases[0].accounts[0].email.as_deref(), Some("J\u{301}o @x"));
    assert_eq!(cases[0].accounts[0].account_id, "aaid-1");
    assert_eq!(cases[0].users[0].email.as_deref(), Some(""));
    assert_eq!(common::quote("J\u{301}o @x"), "\"J\\u{301}o @x\"");
}
