//! Data-driven tests of `tether_core::scim::matches`: `testdata/scim/matches.case`.
//!
//! ```text
//! === e-mail without case                  <- a case
//! resource @bjensen                        <- testdata/scim/resources/bjensen.json, or inline
//! resource {"userName": "x",               <- JSON; indented lines continue it
//!   "emails": []}
//! exact all                                <- optional: case_exact answers true for every path
//!                                             (`none`: false; default: core_case_exact)
//! yes emails.value eq "BJensen@Example.com"  <- the filter must match
//! no  userName eq "nobody"                   <- the filter must not match
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod scim_support;

use scim_support::{load, resource};
use tether_core::scim::{core_case_exact, matches, parse_filter, AttrPath};

#[test]
fn match_cases() {
    let cases = load("matches.case");
    let mut failures = Vec::new();
    let mut checks = 0;
    for case in &cases {
        let mut json = None;
        let mut exact: &dyn Fn(&AttrPath) -> bool = &core_case_exact;
        for (line, keyword, rest) in &case.lines {
            let expected = match keyword.as_str() {
                "resource" => {
                    json = Some(resource(rest));
                    continue;
                }
                "exact" => {
                    exact = match rest.as_str() {
                        "all" => &|_: &AttrPath| true,
                        "none" => &|_: &AttrPath| false,
                        other => panic!("{}: line {line}: exact {other:?}", case.title()),
                    };
                    continue;
                }
                "yes" => true,
                "no" => false,
                other => panic!("{}: line {line}: unknown keyword {other:?}", case.title()),
            };
            let json = json
                .as_ref()
                .unwrap_or_else(|| panic!("{}: no resource before line {line}", case.title()));
            let filter = rest.trim();
            checks += 1;
            match parse_filter(filter) {
                Err(e) => failures.push(format!("{} line {line}: {filter}: {e}", case.title())),
                Ok(parsed) => {
                    if matches(&parsed, json, exact) != expected {
                        failures.push(format!(
                            "{} line {line}: expected {keyword} for {filter}",
                            case.title()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checks} checks fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checks >= 120, "only {checks} checks");
}

#[test]
fn core_case_exact_follows_rfc_7643() {
    for exact in [
        "id",
        "externalId",
        "members.value",
        "members.$ref",
        "meta.version",
        "groups.value",
        "manager.value",
    ] {
        let path = AttrPath::parse(exact).unwrap();
        assert!(core_case_exact(&path), "{exact} is caseExact");
    }
    for inexact in [
        "userName",
        "emails.value",
        "emails.type",
        "name.givenName",
        "displayName",
        "title",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ] {
        let path = AttrPath::parse(inexact).unwrap();
        assert!(!core_case_exact(&path), "{inexact} is not caseExact");
    }
}
