//! Properties of the SCIM filter parser, evaluator and PATCH (a few thousand cases per run;
//! the long runs are the `cargo fuzz` targets in `fuzz/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{json, Value};
use tether_core::scim::{
    apply_patch, apply_patches, core_case_exact, matches, parse_filter, parse_patch_path, AttrPath,
    CompValue, CompareOp, Filter, PatchOp, MAX_FILTER_DEPTH, MAX_FILTER_LEN, PATCH_OP_SCHEMA,
};

/// Pieces of filters, so that random sequences are often (nearly) valid.
const TOKENS: &[&str] = &[
    "userName",
    "emails",
    "value",
    "type",
    "name.givenName",
    "meta.lastModified",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "not",
    "pr",
    "eq",
    "NE",
    "co",
    "sw",
    "ew",
    "gt",
    "ge",
    "lt",
    "le",
    "and",
    "OR",
    "(",
    ")",
    "[",
    "]",
    ".",
    " ",
    " ",
    " ",
    "  ",
    "\t",
    "\"x\"",
    "\"\"",
    "\"a\\\"b\"",
    "\"\\u00e9\"",
    "\"2011-05-13T04:42:34Z\"",
    "1",
    "-2.5e3",
    "0",
    "01",
    "true",
    "False",
    "null",
    "\"",
    "\\",
    "é",
    "$ref",
    ":",
    "-",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

/// Valid filters printed with random blanks and letter case, then sometimes damaged: an
/// insertion of a token, or a deletion, at a random place.
fn filter_like_text() -> impl Strategy<Value = String> {
    (
        filter_tree(),
        prop::sample::select(vec![" ", "  ", "\t", " \n "]),
        any::<bool>(),
        0..4u8,
        any::<prop::sample::Index>(),
        prop::sample::select(TOKENS),
    )
        .prop_map(|(filter, blank, upper, damage, at, token)| {
            let mut text = filter.to_string().replace(' ', blank);
            if upper {
                text = text
                    .replace(" and ", " AND ")
                    .replace(" eq ", " Eq ")
                    .replace("not (", "NOT(");
            }
            let chars: Vec<char> = text.chars().collect();
            let at = at.index(chars.len() + 1);
            let (before, after): (String, String) =
                (chars[..at].iter().collect(), chars[at..].iter().collect());
            match damage {
                0 => format!("{before}{token}{after}"),
                1 => format!(
                    "{before}{}",
                    after.chars().skip(1 + at % 3).collect::<String>()
                ),
                _ => text,
            }
        })
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    prop_oneof![
        Just(AttrPath::new("userName")),
        Just(AttrPath::new("title")),
        Just(AttrPath::new("id")),
        Just(AttrPath::new("age")),
        Just(AttrPath::new("active")),
        Just(AttrPath::new("emails")),
        Just(AttrPath::with_sub_attr("emails", "value")),
        Just(AttrPath::with_sub_attr("emails", "type")),
        Just(AttrPath::with_sub_attr("name", "givenName")),
        Just(AttrPath {
            uri: Some("urn:ietf:params:scim:schemas:core:2.0:User".to_string()),
            name: "userName".to_string(),
            sub_attr: None
        }),
        Just(AttrPath {
            uri: Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
            name: "department".to_string(),
            sub_attr: None
        }),
    ]
}

fn sub_attr_path() -> impl Strategy<Value = AttrPath> {
    prop::sample::select(vec!["value", "type", "primary", "display"]).prop_map(AttrPath::new)
}

fn comparison(path: impl Strategy<Value = AttrPath>) -> impl Strategy<Value = Filter> {
    let string = prop::sample::select(vec![
        "a",
        "A",
        "alice",
        "Alice@Example.com",
        "work",
        "",
        "é\"\\",
    ])
    .prop_map(|s| CompValue::String(s.to_string()));
    let op = prop::sample::select(CompareOp::ALL.to_vec());
    (
        path,
        op,
        prop_oneof![
            4 => string,
            1 => (-5i64..5).prop_map(|n| CompValue::Number(n.into())),
            1 => any::<bool>().prop_map(CompValue::Bool),
            1 => Just(CompValue::Null),
        ],
    )
        .prop_filter_map("operator and value must fit", |(path, op, value)| {
            let fits = match &value {
                CompValue::String(_) => true,
                CompValue::Number(_) => {
                    !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
                }
                CompValue::Bool(_) => matches!(op, CompareOp::Eq | CompareOp::Ne),
                CompValue::Null => matches!(op, CompareOp::Eq | CompareOp::Ne),
            };
            fits.then_some(Filter::Compare { path, op, value })
        })
}

fn logic(leaf: BoxedStrategy<Filter>) -> BoxedStrategy<Filter> {
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
    .boxed()
}

/// Filters built directly (not through the parser), with value paths.
fn filter_tree() -> BoxedStrategy<Filter> {
    let inner = logic(
        prop_oneof![
            comparison(sub_attr_path()),
            sub_attr_path().prop_map(Filter::Present)
        ]
        .boxed(),
    );
    let value_path = (
        prop::sample::select(vec!["emails", "members", "tags"]),
        inner,
    )
        .prop_map(|(name, filter)| Filter::ValuePath {
            path: AttrPath::new(name),
            filter: Box::new(filter),
        });
    logic(prop_oneof![3 => comparison(attr_path()), 1 => attr_path().prop_map(Filter::Present), 1 => value_path].boxed())
}

fn resource() -> impl Strategy<Value = Value> {
    let text = prop::sample::select(vec![
        "a",
        "A",
        "alice",
        "ALICE@example.com",
        "work",
        "home",
        "",
    ]);
    let email = (
        text.clone(),
        prop::sample::select(vec!["work", "home", "Work"]),
        any::<bool>(),
    )
        .prop_map(|(v, t, p)| json!({"value": v, "type": t, "primary": p}));
    (
        text.clone(),
        prop::option::of(text.clone()),
        -5i64..5,
        any::<bool>(),
        prop::collection::vec(email, 0..3),
        prop::collection::vec(text.clone(), 0..3),
        prop::option::of(text),
    )
        .prop_map(|(user, title, age, active, emails, tags, dept)| {
            let mut r = json!({
                "id": "u1", "userName": user, "age": age, "active": active,
                "emails": emails, "tags": tags, "name": {"givenName": user},
            });
            if let Some(t) = title {
                r["title"] = json!(t);
            }
            if let Some(d) = dept {
                r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] =
                    json!({"department": d});
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,80}") {
        let _ = parse_filter(&text);
        let _ = parse_patch_path(&text);
    }

    /// Every parse of filter-like text is bounded and round-trips through Display; errors point
    /// inside the text. (About a third of these inputs parse.)
    #[test]
    fn parsed_filters_are_bounded_and_round_trip(text in prop_oneof![token_soup(), filter_like_text()]) {
        if let Ok(filter) = parse_filter(&text) {
            prop_assert!(filter.height() <= MAX_FILTER_DEPTH);
            let shown = filter.to_string();
            if shown.len() <= MAX_FILTER_LEN {
                prop_assert_eq!(parse_filter(&shown), Ok(filter.clone()), "{}", shown);
            }
        }
        if let Ok(path) = parse_patch_path(&text) {
            prop_assert_eq!(parse_patch_path(&path.to_string()), Ok(path.clone()));
        }
        match parse_filter(&text) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.position >= 1 && e.position <= text.chars().count() + 1, "{e}"),
        }
    }

    /// A filter printed and parsed again means the same thing, and reaches a fixed point.
    #[test]
    fn display_preserves_meaning(filter in filter_tree(), resource in resource()) {
        let shown = filter.to_string();
        let parsed = parse_filter(&shown).map_err(|e| TestCaseError::fail(format!("{shown}: {e}")))?;
        prop_assert_eq!(parse_filter(&parsed.to_string()), Ok(parsed.clone()));
        prop_assert_eq!(
            matches(&parsed, &resource, &core_case_exact),
            matches(&filter, &resource, &core_case_exact),
            "{}", shown
        );
    }

    /// `ne` is `not eq`, `pr` is `ne null`, whatever the attribute's type or absence.
    #[test]
    fn ne_is_not_eq(eq in comparison(attr_path()), resource in resource()) {
        let Filter::Compare { path, op: CompareOp::Eq, value } = eq else {
            return Ok(());
        };
        let ne = Filter::Compare { path: path.clone(), op: CompareOp::Ne, value: value.clone() };
        let eq = Filter::Compare { path: path.clone(), op: CompareOp::Eq, value };
        prop_assert_ne!(
            matches(&ne, &resource, &core_case_exact),
            matches(&eq, &resource, &core_case_exact)
        );
        let present = Filter::Present(path.clone());
        let not_null = Filter::Compare { path, op: CompareOp::Ne, value: CompValue::Null };
        prop_assert_eq!(
            matches(&present, &resource, &core_case_exact),
            matches(&not_null, &resource, &core_case_exact)
        );
    }

    /// PATCH never panics, and a failed request changes nothing.
    #[test]
    fn patch_never_panics_and_failures_change_nothing(
        resource in resource(),
        ops in prop::collection::vec(
            (
                prop::sample::select(vec!["add", "Replace", "remove", "copy"]),
                prop::option::of(prop::sample::select(vec![
                    "title", "userName", "emails", "emails[type eq \"work\"]",
                    "emails[type eq \"work\"].value", "emails[value co \"a\"].primary",
                    "name.givenName", "name", "tags", "tags[value eq \"a\"]", "id", "meta.version",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                    "emails[", "",
                ])),
                prop::option::of(prop_oneof![
                    Just(json!("x")), Just(json!(null)), Just(json!(true)), Just(json!(7)),
                    Just(json!({"value": "v", "type": "work", "primary": true})),
                    Just(json!([{"value": "a"}, "b"])),
                    Just(json!({"title": "t", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d"}})),
                ]),
            ),
            1..5,
        ),
    ) {
        let operations: Vec<Value> = ops
            .iter()
            .map(|(op, path, value)| {
                let mut o = json!({"op": op});
                if let Some(p) = path { o["path"] = json!(p); }
                if let Some(v) = value { o["value"] = v.clone(); }
                o
            })
            .collect();
        let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations});
        if let Ok(parsed) = PatchOp::from_json(&body) {
            let mut patched = resource.clone();
            if apply_patches(&mut patched, &parsed).is_err() {
                prop_assert_eq!(&patched, &resource);
            }
            for op in &parsed {
                let mut one = resource.clone();
                if apply_patch(&mut one, op).is_err() {
                    prop_assert_eq!(&one, &resource);
                }
            }
        }
    }
}
