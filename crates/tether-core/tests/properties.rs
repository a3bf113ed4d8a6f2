//! Property tests of the link engine and the e-mail match key.
//!
//! Worlds are small and collide on purpose: few distinct mailboxes, written in random case,
//! NFC or NFD, Unicode or punycode domains, with white space; random activity, account types,
//! usernames and keys drawn from tiny pools (so values are shared), some users pre-linked,
//! some excluded, some without or with invalid addresses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{account_row, user_row, AccountSpec, UserSpec};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use tether_core::{
    match_key, plan_links, AccountRow, AccountType, EmailKey, EmailNormalizer, Evidence,
    ExternalIdField, Plan, Rules, Situation, UserRow,
};
use unicode_normalization::UnicodeNormalization;

// ---------------------------------------------------------------------------------------
// Worlds

/// Local parts: two pairs that must never meet (straße/strasse) and a precomposed letter.
const LOCALS: &[&str] = &["alice", "jos\u{e9}", "stra\u{df}e", "strasse"];
/// (Unicode form, ASCII form) of each domain.
const DOMAINS: &[(&str, &str)] = &[
    ("example.com", "example.com"),
    ("b\u{fc}cher.example", "xn--bcher-kva.example"),
];
const BROKEN: &[&str] = &[
    "",
    "  ",
    "alice.example.com",
    "alice@@example.com",
    "@example.com",
];
/// External IDs users may hold that no account gives.
const HELD: &[&str] = &["aaid-20", "stale", "alice@example.com"];
const USERNAMES: &[Option<&str>] = &[None, Some(""), Some("u1"), Some("u1"), Some("u2")];
const KEYS: &[Option<&str>] = &[None, Some("K1"), Some("K1"), Some("K2")];

/// One spelling of a mailbox: `mask` upper-cases letters of the local part (bits 0..6) and
/// the whole domain (bit 7).
fn spell(
    local: &str,
    domain: (&str, &str),
    mask: u8,
    punycode: bool,
    nfd: bool,
    pad: bool,
) -> String {
    let mut text = String::new();
    for (i, c) in local.chars().enumerate() {
        // Upper-casing ß gives SS, another mailbox; keep it as written.
        if mask & (1 << (i % 7)) != 0 && c != '\u{df}' {
            text.extend(c.to_uppercase());
        } else {
            text.push(c);
        }
    }
    text.push('@');
    let domain = if punycode { domain.1 } else { domain.0 };
    if mask & 0x80 != 0 {
        text.push_str(&domain.to_uppercase());
    } else {
        text.push_str(domain);
    }
    if nfd {
        text = text.nfd().collect();
    }
    if pad {
        text = format!(" {text}\t");
    }
    text
}

fn email() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => prop::sample::select(BROKEN).prop_map(|s| Some(s.to_owned())),
        10 => (
            prop::sample::select(LOCALS),
            prop_oneof![3 => Just(DOMAINS[0]), 1 => Just(DOMAINS[1])],
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(l, d, mask, puny, nfd, pad)| Some(spell(l, d, mask, puny, nfd, pad))),
    ]
}

fn account_type() -> impl Strategy<Value = AccountType> {
    prop_oneof![
        6 => Just(AccountType::Atlassian),
        1 => Just(AccountType::Unknown),
        1 => Just(AccountType::App),
        1 => Just(AccountType::Customer),
    ]
}

fn account(pk: i64) -> impl Strategy<Value = AccountSpec> {
    (
        prop::bool::weighted(0.1),
        prop::sample::select(USERNAMES),
        prop::sample::select(KEYS),
        email(),
        prop::bool::weighted(0.8),
        account_type(),
    )
        .prop_map(
            move |(no_id, username, key, email, active, account_type)| AccountSpec {
                pk,
                account_id: if no_id {
                    String::new()
                } else {
                    format!("aaid-{pk}")
                },
                username: username.map(str::to_owned),
                key: key.map(str::to_owned),
                email,
                active,
                account_type,
            },
        )
}

/// A user; `held` are the External IDs it may already carry.
fn user(pk: i64, held: Vec<String>) -> impl Strategy<Value = UserSpec> {
    (
        email(),
        prop::option::weighted(0.3, prop::sample::select(held)),
        prop::bool::weighted(0.15),
    )
        .prop_map(move |(email, external_id, excluded)| UserSpec {
            pk,
            username: format!("user{pk}"),
            email,
            external_id,
            excluded,
        })
}

#[derive(Clone, Debug)]
struct World {
    users: Vec<UserRow>,
    accounts: Vec<AccountRow>,
    rules: Rules,
}

fn world() -> impl Strategy<Value = World> {
    let accounts = (0usize..12).prop_flat_map(|n| (1..=n as i64).map(account).collect::<Vec<_>>());
    let rules = (
        prop::sample::select(ExternalIdField::ALL),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(field, link_inactive)| Rules {
            field,
            link_inactive,
        });
    (accounts, rules)
        .prop_flat_map(|(accounts, rules)| {
            // Users hold values of this source's field (twice as likely), of other fields
            // (as after switching the field), or junk.
            let rows: Vec<AccountRow> = accounts.iter().map(account_row).collect();
            let mut held: Vec<String> = HELD.iter().map(|s| (*s).to_owned()).collect();
            for field in ExternalIdField::ALL {
                let times = if *field == rules.field { 2 } else { 1 };
                for row in &rows {
                    if let Some(value) = row.value(*field) {
                        held.extend(std::iter::repeat_n(value.to_owned(), times));
                    }
                }
            }
            let users = (0usize..10).prop_flat_map(move |n| {
                (1..=n as i64)
                    .map(|pk| user(pk, held.clone()))
                    .collect::<Vec<_>>()
            });
            (users, Just(rows), Just(rules))
        })
        .prop_map(|(mut users, accounts, rules)| {
            // External IDs are unique among users (DESIGN §2).
            let mut held = BTreeSet::new();
            for u in &mut users {
                if let Some(ext) = &u.external_id {
                    if !held.insert(ext.clone()) {
                        u.external_id = None;
                    }
                }
            }
            World {
                users: users.iter().map(user_row).collect(),
                accounts,
                rules,
            }
        })
}

fn shuffled<T: Clone>(rows: &[T], mut seed: u64) -> Vec<T> {
    let mut rows = rows.to_vec();
    for i in (1..rows.len()).rev() {
        // splitmix64
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        rows.swap(i, (z % (i as u64 + 1)) as usize);
    }
    rows
}

// ---------------------------------------------------------------------------------------
// A reference model: DESIGN §3 written out as plainly as possible, quadratic and obvious.

fn evidence(accounts: Vec<i64>, users: Vec<i64>) -> Evidence {
    let total = accounts.len().max(users.len()) as u32;
    Evidence {
        accounts,
        users,
        total,
    }
}

fn reference(users: &[UserRow], accounts: &[AccountRow], rules: &Rules) -> Plan {
    let field = rules.field;
    let mut users: Vec<&UserRow> = users.iter().collect();
    users.sort_by_key(|u| u.pk);
    let mut accounts: Vec<&AccountRow> = accounts.iter().collect();
    accounts.sort_by_key(|a| a.pk);
    let same_key = |a: &AccountRow, key: &str| a.email_key.as_deref() == Some(key);

    let mut outcomes = Vec::new();
    // (outcome index, account pk, value)
    let mut proposals: Vec<(usize, i64, String)> = Vec::new();
    for user in &users {
        let (situation, ev) = 'decide: {
            if user.excluded {
                break 'decide (Situation::Excluded, Evidence::default());
            }
            if let Some(ext) = &user.external_id {
                if let Some(a) = accounts
                    .iter()
                    .find(|a| a.value(field) == Some(ext.as_str()))
                {
                    break 'decide (Situation::Linked, evidence(vec![a.pk], vec![]));
                }
                let matching: Vec<i64> = match user.email_key.as_deref() {
                    Some(key) => accounts
                        .iter()
                        .filter(|a| a.account_type.is_linkable() && same_key(a, key))
                        .filter(|a| a.value(field).is_some())
                        .map(|a| a.pk)
                        .collect(),
                    None => vec![],
                };
                break 'decide match matching.as_slice() {
                    [one] => (Situation::Conflict, evidence(vec![*one], vec![])),
                    _ => (Situation::OrphanedLink, Evidence::default()),
                };
            }
            if !user.has_email {
                break 'decide (Situation::NoEmail, Evidence::default());
            }
            let Some(key) = user.email_key.as_deref() else {
                break 'decide (Situation::InvalidEmail, Evidence::default());
            };
            let all: Vec<&&AccountRow> = accounts
                .iter()
                .filter(|a| a.account_type.is_linkable() && same_key(a, key))
                .collect();
            let candidates: Vec<&&AccountRow> = all
                .iter()
                .copied()
                .filter(|a| rules.link_inactive || a.active)
                .collect();
            if candidates.is_empty() && !all.is_empty() {
                break 'decide (
                    Situation::InactiveAccount,
                    evidence(all.iter().map(|a| a.pk).collect(), vec![]),
                );
            }
            if all.is_empty() {
                let others: Vec<i64> = accounts
                    .iter()
                    .filter(|a| !a.account_type.is_linkable() && same_key(a, key))
                    .map(|a| a.pk)
                    .collect();
                break 'decide (Situation::NoMatch, evidence(others, vec![]));
            }
            if candidates.len() > 1 {
                break 'decide (
                    Situation::DuplicateAccounts,
                    evidence(candidates.iter().map(|a| a.pk).collect(), vec![]),
                );
            }
            let sharing: Vec<i64> = users
                .iter()
                .filter(|u| u.pk != user.pk && u.external_id.is_none() && !u.excluded)
                .filter(|u| u.email_key.as_deref() == Some(key))
                .map(|u| u.pk)
                .collect();
            if !sharing.is_empty() {
                break 'decide (Situation::DuplicateUsers, evidence(vec![], sharing));
            }
            let account = candidates[0];
            let Some(value) = account.value(field) else {
                break 'decide (Situation::MissingField, evidence(vec![account.pk], vec![]));
            };
            if let Some(holder) = users
                .iter()
                .find(|u| u.external_id.as_deref() == Some(value))
            {
                break 'decide (
                    Situation::AccountTaken,
                    evidence(vec![account.pk], vec![holder.pk]),
                );
            }
            let mut sharing: Vec<i64> = accounts
                .iter()
                .filter(|a| a.pk != account.pk && a.value(field) == Some(value))
                .map(|a| a.pk)
                .collect();
            if !sharing.is_empty() {
                sharing.sort_unstable();
                sharing.insert(0, account.pk);
                break 'decide (Situation::AccountTaken, evidence(sharing, vec![]));
            }
            proposals.push((outcomes.len(), account.pk, value.to_owned()));
            (Situation::NewLink, evidence(vec![account.pk], vec![]))
        };
        outcomes.push(tether_core::Outcome {
            user_pk: user.pk,
            situation,
            evidence: ev,
        });
    }
    let mut changes = Vec::new();
    for (index, account_pk, value) in &proposals {
        let others: Vec<i64> = proposals
            .iter()
            .filter(|(i, _, v)| v == value && i != index)
            .map(|(i, _, _)| outcomes[*i].user_pk)
            .collect();
        if others.is_empty() {
            changes.push(tether_core::Change {
                user_pk: outcomes[*index].user_pk,
                account_pk: *account_pk,
                old: None,
                new: value.clone(),
            });
        } else {
            outcomes[*index].situation = Situation::AccountTaken;
            outcomes[*index].evidence = evidence(vec![*account_pk], others);
        }
    }
    Plan { outcomes, changes }
}

fn apply(users: &[UserRow], plan: &Plan) -> Vec<UserRow> {
    let mut users = users.to_vec();
    for change in &plan.changes {
        let user = users.iter_mut().find(|u| u.pk == change.user_pk).unwrap();
        assert_eq!(user.external_id, change.old, "the plan saw another value");
        user.external_id = Some(change.new.clone());
    }
    users
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// The engine agrees, outcome by outcome and change by change, with the plain reading
    /// of DESIGN §3 above.
    #[test]
    fn engine_matches_the_reference_model(w in world()) {
        let plan = plan_links(&w.users, &w.accounts, &w.rules);
        prop_assert_eq!(plan, reference(&w.users, &w.accounts, &w.rules));
    }

    /// (a) No account and no value goes to two users, nor a value some user already holds;
    /// every change is a sound link.
    #[test]
    fn a_plan_never_gives_anything_twice(w in world()) {
        let plan = plan_links(&w.users, &w.accounts, &w.rules);
        let held: BTreeSet<&str> = w.users.iter().filter_map(|u| u.external_id.as_deref()).collect();
        let mut accounts = BTreeSet::new();
        let mut values = BTreeSet::new();
        for change in &plan.changes {
            prop_assert!(accounts.insert(change.account_pk), "account {} given twice", change.account_pk);
            prop_assert!(values.insert(change.new.as_str()), "value {} given twice", change.new);
            prop_assert!(!held.contains(change.new.as_str()), "value {} already held", change.new);
            prop_assert_eq!(&change.old, &None);
            let user = w.users.iter().find(|u| u.pk == change.user_pk).unwrap();
            let account = w.accounts.iter().find(|a| a.pk == change.account_pk).unwrap();
            prop_assert!(user.external_id.is_none() && !user.excluded);
            prop_assert_eq!(account.value(w.rules.field), Some(change.new.as_str()));
            prop_assert!(account.account_type.is_linkable());
            prop_assert!(account.active || w.rules.link_inactive);
            prop_assert!(user.email_key.is_some() && user.email_key == account.email_key);
        }
        // One outcome per user, in pk order; the changes are exactly the new_link outcomes.
        let mut pks: Vec<i64> = w.users.iter().map(|u| u.pk).collect();
        pks.sort_unstable();
        prop_assert_eq!(plan.outcomes.iter().map(|o| o.user_pk).collect::<Vec<_>>(), pks);
        let new_links: Vec<(i64, Vec<i64>)> = plan
            .outcomes
            .iter()
            .filter(|o| o.situation == Situation::NewLink)
            .map(|o| (o.user_pk, o.evidence.accounts.clone()))
            .collect();
        let changed: Vec<(i64, Vec<i64>)> =
            plan.changes.iter().map(|c| (c.user_pk, vec![c.account_pk])).collect();
        prop_assert_eq!(new_links, changed);
        prop_assert_eq!(plan.summary().values().sum::<u64>(), w.users.len() as u64);
    }

    /// (b) A user is never linked while another unlinked, non-excluded user shares its key.
    #[test]
    fn a_shared_key_never_links(w in world()) {
        let plan = plan_links(&w.users, &w.accounts, &w.rules);
        for change in &plan.changes {
            let user = w.users.iter().find(|u| u.pk == change.user_pk).unwrap();
            let twin = w.users.iter().find(|u| {
                u.pk != user.pk && u.external_id.is_none() && !u.excluded && u.email_key == user.email_key
            });
            prop_assert!(twin.is_none(), "user {} linked though user {:?} shares its key", user.pk, twin.map(|t| t.pk));
        }
    }

    /// (c) Applying the changes and planning again changes nothing more: every new_link user
    /// is linked to an account with the value written, and every other outcome stays.
    #[test]
    fn applying_a_plan_converges(w in world()) {
        let first = plan_links(&w.users, &w.accounts, &w.rules);
        let users = apply(&w.users, &first);
        let second = plan_links(&users, &w.accounts, &w.rules);
        prop_assert_eq!(&second.changes, &vec![]);
        for (before, after) in first.outcomes.iter().zip(&second.outcomes) {
            prop_assert_eq!(before.user_pk, after.user_pk);
            if before.situation == Situation::NewLink {
                prop_assert_eq!(after.situation, Situation::Linked, "user {}", after.user_pk);
                let change = first.changes.iter().find(|c| c.user_pk == before.user_pk).unwrap();
                let account = w.accounts.iter().find(|a| a.pk == after.evidence.accounts[0]).unwrap();
                prop_assert_eq!(account.value(w.rules.field), Some(change.new.as_str()));
            } else {
                prop_assert_eq!(before, after);
            }
        }
        // And a third run is the second.
        prop_assert_eq!(plan_links(&users, &w.accounts, &w.rules), second);
    }

    /// (d) The plan does not depend on the order of the rows.
    #[test]
    fn the_plan_ignores_input_order(w in world(), seed_u in any::<u64>(), seed_a in any::<u64>()) {
        let plan = plan_links(&w.users, &w.accounts, &w.rules);
        let users = shuffled(&w.users, seed_u);
        let accounts = shuffled(&w.accounts, seed_a);
        prop_assert_eq!(plan_links(&users, &accounts, &w.rules), plan);
    }
}

// ---------------------------------------------------------------------------------------
// (e) Match keys

/// Local-part letters: ASCII, and lower-case letters with a single upper-case form.
fn local_part() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            &[
                'a', 'b', 'k', 'z', '0', '7', '.', '_', '+', '-', '\u{e9}', '\u{fc}', '\u{f8}',
                '\u{f1}', '\u{436}', '\u{3bb}',
            ][..],
        ),
        1..10,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Known IDNs and their ASCII forms (independent of the IDNA library).
const IDN_PAIRS: &[(&str, &str)] = &[
    ("example.com", "example.com"),
    ("b\u{fc}cher.example", "xn--bcher-kva.example"),
    ("m\u{fc}nchen.de", "xn--mnchen-3ya.de"),
    ("\u{3c0}\u{3b1}\u{3c1}\u{3ac}\u{3b4}\u{3b5}\u{3b9}\u{3b3}\u{3bc}\u{3b1}.\u{3b4}\u{3bf}\u{3ba}\u{3b9}\u{3bc}\u{3ae}", "xn--hxajbheg2az3al.xn--jxalpdlp"),
    ("\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.\u{438}\u{441}\u{43f}\u{44b}\u{442}\u{430}\u{43d}\u{438}\u{435}", "xn--e1afmkfd.xn--80akhbyknj4f"),
    ("\u{4f8b}\u{3048}.jp", "xn--r8jz45g.jp"),
];

/// A random IDN label set from letters whose upper case maps back under IDNA.
fn random_domain() -> impl Strategy<Value = String> {
    let label = prop::collection::vec(
        prop::sample::select(
            &[
                'a', 'q', 'x', '\u{fc}', '\u{e9}', '\u{f6}', '\u{436}', '\u{3bb}',
            ][..],
        ),
        1..8,
    )
    .prop_map(|c| c.into_iter().collect::<String>());
    (
        prop::collection::vec(label, 1..3),
        prop::sample::select(&["com", "example", "de"][..]),
    )
        .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
}

fn flip_ascii_case(text: &str, mask: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask & (1 << (i % 64)) != 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn key(raw: &str) -> Option<String> {
    match_key(Some(raw)).key().map(str::to_owned)
}

proptest! {
    #![proptest_config(config(300))]

    /// ASCII case of the local part, NFC/NFD, Unicode case of the domain, the punycode form
    /// of the domain and surrounding white space never change the key.
    #[test]
    fn match_key_ignores_spelling(
        local in local_part(),
        (unicode, ascii) in prop::sample::select(IDN_PAIRS),
        mask in any::<u64>(),
        upper_domain in any::<bool>(),
        punycode in any::<bool>(),
        nfd in any::<bool>(),
        pad in prop::sample::select(&["", " ", "\t", "\u{a0}", " \n"][..]),
    ) {
        let plain = format!("{local}@{unicode}");
        let base = key(&plain);
        prop_assert!(base.is_some(), "{plain:?} is valid");
        let domain = if punycode { ascii.to_owned() } else { unicode.to_owned() };
        let domain = if upper_domain { domain.to_uppercase() } else { domain };
        let mut variant = format!("{}@{domain}", flip_ascii_case(&local, mask));
        if nfd {
            variant = variant.nfd().collect();
        }
        let variant = format!("{pad}{variant}{pad}");
        prop_assert_eq!(key(&variant), base.clone(), "{:?} vs {:?}", variant, plain);
        // The key is a fixed point, NFC, with an ASCII lower-case domain.
        let base = base.unwrap();
        prop_assert_eq!(key(&base), Some(base.clone()));
        prop_assert!(unicode_normalization::is_nfc(&base));
        let (_, domain) = base.split_once('@').unwrap();
        prop_assert_eq!(domain, ascii);
    }

    /// Random IDN domains: Unicode, upper-case and NFD spellings share the key of the ASCII
    /// form that IDNA gives.
    #[test]
    fn match_key_handles_random_idn_domains(local in local_part(), domain in random_domain(), nfd in any::<bool>()) {
        let ascii = idna::domain_to_ascii(&domain).unwrap();
        let base = key(&format!("{local}@{ascii}"));
        prop_assert!(base.is_some());
        prop_assert_eq!(key(&format!("{local}@{domain}")), base.clone());
        prop_assert_eq!(key(&format!("{local}@{}", domain.to_uppercase())), base.clone());
        if nfd {
            let spelled: String = format!("{local}@{domain}").nfd().collect();
            prop_assert_eq!(key(&spelled), base);
        }
    }

    /// ß is never folded to ss: not in the local part, not in the domain, in no case.
    #[test]
    fn sharp_s_never_matches_ss(
        before in local_part(),
        after in local_part(),
        mask in any::<u64>(),
        (unicode, _) in prop::sample::select(IDN_PAIRS),
        in_domain in any::<bool>(),
    ) {
        let (sharp, double) = if in_domain {
            (format!("{before}@stra\u{df}e.{unicode}"), format!("{before}@{}.{unicode}", flip_ascii_case("strasse", mask)))
        } else {
            (format!("{before}\u{df}{after}@{unicode}"), format!("{}@{unicode}", flip_ascii_case(&format!("{before}ss{after}"), mask)))
        };
        let (sharp_key, double_key) = (key(&sharp), key(&double));
        prop_assert!(sharp_key.is_some() && double_key.is_some(), "{sharp:?} {double:?}");
        prop_assert_ne!(sharp_key, double_key);
        // In the local part, capital sharp s (U+1E9E) lower-cases to ß: the same mailbox.
        if !in_domain {
            prop_assert_eq!(key(&sharp.replacen('\u{df}', "\u{1e9e}", 1)), key(&sharp));
        }
    }

    /// No input panics; an invalid or missing address never yields a key, a valid one always
    /// has exactly one @; the cached normalizer agrees with the one-off function.
    #[test]
    fn match_key_is_total_and_cache_free(raws in prop::collection::vec(".{0,24}|[a-zA-Z@. \u{e9}\u{df}-]{0,16}", 1..8)) {
        let mut normalizer = EmailNormalizer::new();
        for raw in raws.iter().chain(raws.iter()) {
            let once = match_key(Some(raw));
            prop_assert_eq!(normalizer.key(Some(raw)), once.clone());
            match once {
                EmailKey::Valid(key) => {
                    prop_assert_eq!(key.matches('@').count(), 1);
                    prop_assert!(!raw.trim().is_empty());
                }
                EmailKey::Missing => prop_assert!(raw.trim().is_empty()),
                EmailKey::Invalid(_) => prop_assert!(!raw.trim().is_empty()),
            }
        }
    }

    /// `Evidence::encode` and `decode` round-trip.
    #[test]
    fn evidence_round_trips(
        accounts in prop::collection::vec(any::<i64>(), 0..12),
        users in prop::collection::vec(any::<i64>(), 0..12),
        total in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
    ) {
        let listed = accounts.len().max(users.len()) as u32;
        let evidence = Evidence { accounts, users, total: total.unwrap_or(listed) };
        let text = evidence.encode();
        prop_assert_eq!(Evidence::decode(&text), Some(evidence.clone()), "{}", text);
        if total.is_none() {
            prop_assert!(!text.contains("n="), "{}", text);
        }
    }
}

#[test]
fn evidence_decode_refuses_what_encode_never_writes() {
    assert_eq!(Evidence::decode(""), Some(Evidence::default()));
    assert_eq!(
        Evidence::decode("a=1,2;u=3;n=4")
            .map(|e| e.encode())
            .as_deref(),
        Some("a=1,2;u=3;n=4")
    );
    for bad in ["x=1", "a=1,,2", "a=one", "n=-1", "a", "u=1;n="] {
        assert_eq!(Evidence::decode(bad), None, "{bad}");
    }
}

/// The reference model itself must notice a wrong plan: tamper with an engine plan and
/// compare (guards against a model that trivially agrees).
#[test]
fn the_reference_model_is_not_vacuous() {
    let world = common::parse(
        "inline",
        "=== t\naccount 1 email=a@example.com\nuser 1 email=A@example.com\nexpect user 1 new_link accounts=1\n",
    )
    .map_err(|e| e.0)
    .unwrap()
    .remove(0);
    let (users, accounts) = (world.user_rows(), world.account_rows());
    let mut plan = plan_links(&users, &accounts, &world.rules);
    assert_eq!(plan, reference(&users, &accounts, &world.rules));
    plan.outcomes[0].situation = Situation::DuplicateUsers;
    assert_ne!(plan, reference(&users, &accounts, &world.rules));
    let counts: BTreeMap<Situation, u64> = reference(&users, &accounts, &world.rules).summary();
    assert_eq!(counts.get(&Situation::NewLink), Some(&1));
}

/// The generators are not vacuous: over a fixed sample of worlds, every situation occurs,
/// changes are made, and values proposed twice are refused.
#[test]
fn the_worlds_reach_every_situation() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<Situation, u32> = BTreeMap::new();
    let (mut changes, mut collisions) = (0, 0);
    for _ in 0..400 {
        let w = world().new_tree(&mut runner).unwrap().current();
        let plan = plan_links(&w.users, &w.accounts, &w.rules);
        for o in &plan.outcomes {
            *seen.entry(o.situation).or_default() += 1;
            let proposal_collision = o.situation == Situation::AccountTaken
                && o.evidence.users.iter().all(|pk| {
                    w.users
                        .iter()
                        .any(|u| u.pk == *pk && u.external_id.is_none())
                });
            collisions += u32::from(proposal_collision);
        }
        changes += plan.changes.len();
    }
    for situation in Situation::ALL {
        assert!(
            seen.get(situation).copied().unwrap_or(0) >= 5,
            "{situation} is rare: {seen:?}"
        );
    }
    eprintln!("{seen:?} changes={changes} collisions={collisions}");
    assert!(changes >= 50, "only {changes} changes");
    assert!(collisions >= 5, "only {collisions} proposal collisions");
}
