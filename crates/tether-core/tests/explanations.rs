//! Explanations rendered from real plans (DESIGN §3).
//!
//! Every case of `testdata/engine/*.case` is planned; each outcome's evidence is resolved to
//! views, as the service does, and `tether_core::explain` renders it. The `explain user N:`
//! and `fix user N:` lines of a case are exact expectations (snapshots); `60-explain.case`
//! holds one for every situation. Beyond the snapshots, every explanation of every case must
//! name the records of its evidence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{load_all, Case, UserSpec};
use std::collections::BTreeSet;
use tether_core::explain::short;
use tether_core::{
    explain, AccountView, Context, Explanation, ExternalIdField, Outcome, Situation, UserView,
};

fn user_view(user: &UserSpec) -> UserView {
    UserView {
        id: user.pk.to_string(),
        username: user.username.clone(),
        email: user.email.clone(),
        external_id: user.external_id.clone(),
    }
}

/// Resolves the outcome's evidence to views and renders its explanation.
fn render(case: &Case, outcome: &Outcome) -> Explanation {
    let user = user_view(case.user(outcome.user_pk).unwrap());
    let accounts: Vec<AccountView> = outcome
        .evidence
        .accounts
        .iter()
        .map(|&pk| {
            let spec = case.account(pk).unwrap();
            let row = common::account_row(spec);
            AccountView {
                account_id: spec.account_id.clone(),
                email: spec.email.clone(),
                active: spec.active,
                account_type: spec.account_type,
                value: row.value(case.rules.field).map(str::to_owned),
            }
        })
        .collect();
    let users: Vec<UserView> = outcome
        .evidence
        .users
        .iter()
        .map(|&pk| user_view(case.user(pk).unwrap()))
        .collect();
    explain(&Context {
        situation: outcome.situation,
        user: &user,
        accounts: &accounts,
        users: &users,
        total: outcome.evidence.total,
        field: case.rules.field,
        source: &case.source,
    })
}

#[test]
fn snapshots_match() {
    let mut failures = Vec::new();
    for case in load_all() {
        let plan = case.plan();
        for (lines, is_fix) in [(&case.explains, false), (&case.fixes, true)] {
            for expected in lines {
                let outcome = plan
                    .outcomes
                    .iter()
                    .find(|o| o.user_pk == expected.user_pk)
                    .unwrap();
                let rendered = render(&case, outcome);
                let actual = if is_fix {
                    &rendered.fix
                } else {
                    &rendered.explanation
                };
                if *actual != expected.text {
                    let kind = if is_fix { "fix" } else { "explain" };
                    failures.push(format!(
                        "{}:{}: ({})\n- {kind} user {}: {}\n+ {kind} user {}: {}\n",
                        case.file,
                        expected.line,
                        case.name,
                        expected.user_pk,
                        expected.text,
                        expected.user_pk,
                        actual
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} explanations differ:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every situation has an explanation snapshot and a fix snapshot somewhere.
#[test]
fn snapshots_cover_every_situation() {
    let mut explained = BTreeSet::new();
    let mut fixed = BTreeSet::new();
    for case in load_all() {
        let plan = case.plan();
        let situation_of = |pk: i64| {
            plan.outcomes
                .iter()
                .find(|o| o.user_pk == pk)
                .unwrap()
                .situation
        };
        explained.extend(case.explains.iter().map(|e| situation_of(e.user_pk)));
        fixed.extend(case.fixes.iter().map(|e| situation_of(e.user_pk)));
    }
    for situation in Situation::ALL {
        assert!(
            explained.contains(situation),
            "no explanation snapshot for {situation}"
        );
        assert!(fixed.contains(situation), "no fix snapshot for {situation}");
    }
}

/// For every user of every case, the explanation names the evidence: each account by its
/// (shortened) ID, each other user by its id, the count of records left out, and the user's
/// address where the situation is about it.
#[test]
fn every_explanation_names_its_records() {
    let mut failures = Vec::new();
    for case in load_all() {
        let plan = case.plan();
        for outcome in &plan.outcomes {
            let rendered = render(&case, outcome);
            let text = &rendered.explanation;
            let mut missing = Vec::new();
            for &pk in &outcome.evidence.accounts {
                let id = short(&case.account(pk).unwrap().account_id);
                if !text.contains(&id) {
                    missing.push(format!("account {id}"));
                }
            }
            for &pk in &outcome.evidence.users {
                let user = case.user(pk).unwrap();
                let name = if user.username.is_empty() || user.username == pk.to_string() {
                    pk.to_string()
                } else {
                    format!("{pk} ({})", user.username)
                };
                if !text.contains(&name) {
                    missing.push(format!("user {name}"));
                }
            }
            let listed = outcome
                .evidence
                .accounts
                .len()
                .max(outcome.evidence.users.len());
            if outcome.evidence.total as usize > listed {
                let more = format!("and {} more", outcome.evidence.total as usize - listed);
                if !text.contains(&more) {
                    missing.push(more);
                }
            }
            let names_address = matches!(
                outcome.situation,
                Situation::InvalidEmail
                    | Situation::InactiveAccount
                    | Situation::NoMatch
                    | Situation::DuplicateAccounts
                    | Situation::DuplicateUsers
                    | Situation::MissingField
                    | Situation::NewLink
            );
            let address = case
                .user(outcome.user_pk)
                .unwrap()
                .email
                .clone()
                .unwrap_or_default();
            if names_address && !text.contains(address.trim()) {
                missing.push(format!("address {}", address.trim()));
            }
            if matches!(
                outcome.situation,
                Situation::Linked | Situation::Conflict | Situation::OrphanedLink
            ) {
                let ext = short(
                    case.user(outcome.user_pk)
                        .unwrap()
                        .external_id
                        .as_deref()
                        .unwrap(),
                );
                if !text.contains(&ext) {
                    missing.push(format!("External ID {ext}"));
                }
            }
            let one_sentence = text.ends_with('.') && !text.contains('\n');
            let has_fix = !rendered.fix.is_empty() && rendered.fix.ends_with('.');
            if !missing.is_empty() || !one_sentence || !has_fix {
                failures.push(format!(
                    "{} user {} ({}): missing {:?}\n  explanation: {}\n  fix: {}",
                    case.title(),
                    outcome.user_pk,
                    outcome.situation,
                    missing,
                    text,
                    rendered.fix
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// DESIGN §3's examples, stated directly.
#[test]
fn design_examples() {
    let user = UserView {
        id: "101".into(),
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        external_id: None,
    };
    let account = |id: &str, value: Option<&str>| AccountView {
        account_id: id.into(),
        email: Some("alice@example.com".into()),
        active: true,
        account_type: tether_core::AccountType::Atlassian,
        value: value.map(str::to_owned),
    };
    let two = [
        account("5b10a2844c20165700ede21g", Some("5b10a2844c20165700ede21g")),
        account("5c22e1f9a8b3d4e5f6071829", Some("5c22e1f9a8b3d4e5f6071829")),
    ];
    let rendered = explain(&Context {
        situation: Situation::DuplicateAccounts,
        user: &user,
        accounts: &two,
        users: &[],
        total: 2,
        field: ExternalIdField::AccountId,
        source: "jira",
    });
    assert!(
        rendered
            .explanation
            .starts_with("2 accounts share alice@example.com"),
        "{rendered:?}"
    );
    assert!(
        rendered.explanation.ends_with(": 5b10a284…, 5c22e1f9…."),
        "{rendered:?}"
    );

    for field in [
        ExternalIdField::Username,
        ExternalIdField::Key,
        ExternalIdField::Email,
    ] {
        let one = [account("5b10a2844c20165700ede21g", None)];
        let rendered = explain(&Context {
            situation: Situation::MissingField,
            user: &user,
            accounts: &one,
            users: &[],
            total: 1,
            field,
            source: "jira-cloud",
        });
        assert!(
            rendered
                .fix
                .starts_with("Set External ID field to account_id: this source has no "),
            "{field}: {rendered:?}"
        );
        assert!(
            rendered.fix.contains(field.as_str()),
            "{field}: {rendered:?}"
        );
    }
    assert_eq!(short("5b10a2844c20165700ede21g"), "5b10a284…");
    assert_eq!(short("aaid-1"), "aaid-1");
    assert_eq!(short("123456789012"), "123456789012");
    assert_eq!(short("1234567890123"), "12345678…");
    assert_eq!(
        short("557058:1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718"),
        "557058:1f2e3d4c…"
    );
}
