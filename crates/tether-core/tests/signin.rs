//! Data-driven tests for the sign-in decision (`tether_core::signin`, DESIGN §4.4).
//!
//! Every `testdata/signin/*.case` file holds cases in this format (blank lines and lines
//! starting with `#` are ignored; values may be quoted, and `\u{301}` escapes a code point):
//!
//! ```text
//! === name                                  <- starts a case
//! settings auto_populate=yes require_verified_email=yes     (optional; these are the defaults)
//! claims account=ACCOUNT-ID email=ADDRESS verified=yes|no   (email optional)
//! profile PK id=ID username=NAME email=ADDRESS ext=EXTERNAL-ID active=yes excluded=no
//!     (id defaults to uPK, username to the id; email and ext absent unless given)
//! expect SITUATION user=PK related=PK,PK change=VALUE      (user, related, change optional)
//! explain: the exact explanation                           (optional)
//! fix: the exact fix                                       (optional)
//! ```
//!
//! The facts are built as the store reads them: the holder is the profile whose External ID
//! equals the account ID exactly; the e-mail profiles are those sharing the claim's match key,
//! ordered by pk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use tether_core::signin::{
    decide_sign_in, settle_sign_in, Profile, SignInClaims, SignInDecision, SignInFacts,
    SignInSettings, SignInSituation,
};
use tether_core::{match_key, ChangeResult};

struct Case {
    title: String,
    settings: SignInSettings,
    claims: Option<SignInClaims>,
    profiles: Vec<Profile>,
    expect: Option<String>,
    explain: Option<String>,
    fix: Option<String>,
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 3..];
        let end = tail.find('}').expect("a closing } in a \\u{…} escape");
        let code = u32::from_str_radix(&tail[..end], 16).expect("hex in \\u{…}");
        out.push(char::from_u32(code).expect("a code point"));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `word key=value key="quoted value"` → the words and pairs.
fn fields(line: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut words = Vec::new();
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut token = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
                chars.next();
                continue;
            }
            if c.is_whitespace() && !quoted {
                break;
            }
            token.push(c);
            chars.next();
        }
        match token.split_once('=') {
            Some((key, value)) => pairs.push((key.to_owned(), unescape(value))),
            None => words.push(token),
        }
    }
    (words, pairs)
}

fn yes(value: &str) -> bool {
    match value {
        "yes" => true,
        "no" => false,
        other => panic!("expected yes or no, got {other}"),
    }
}

fn load() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/signin");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "case"))
        .collect();
    files.sort();
    let mut cases: Vec<Case> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name}:{}", number + 1);
            if let Some(title) = line.strip_prefix("=== ") {
                cases.push(Case {
                    title: format!("{at} {title}"),
                    settings: SignInSettings::default(),
                    claims: None,
                    profiles: Vec::new(),
                    expect: None,
                    explain: None,
                    fix: None,
                });
                continue;
            }
            let case = cases
                .last_mut()
                .unwrap_or_else(|| panic!("{at}: a line before the first ==="));
            if let Some(text) = line.strip_prefix("explain: ") {
                case.explain = Some(text.to_owned());
                continue;
            }
            if let Some(text) = line.strip_prefix("fix: ") {
                case.fix = Some(text.to_owned());
                continue;
            }
            let (words, pairs) = fields(line);
            let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            match words.first().map(String::as_str) {
                Some("settings") => {
                    for (key, value) in &pairs {
                        match key.as_str() {
                            "auto_populate" => case.settings.auto_populate = yes(value),
                            "require_verified_email" => {
                                case.settings.require_verified_email = yes(value)
                            }
                            other => panic!("{at}: unknown setting {other}"),
                        }
                    }
                }
                Some("claims") => {
                    case.claims = Some(SignInClaims {
                        account_id: get("account").unwrap_or_else(|| panic!("{at}: account=")),
                        email: get("email"),
                        email_verified: get("verified").is_some_and(|v| yes(&v)),
                    })
                }
                Some("profile") => {
                    let pk: i64 = words[1].parse().unwrap();
                    let id = get("id").unwrap_or_else(|| format!("u{pk}"));
                    case.profiles.push(Profile {
                        pk,
                        username: get("username").unwrap_or_else(|| id.clone()),
                        id,
                        email: get("email"),
                        external_id: get("ext"),
                        active: get("active").is_none_or(|v| yes(&v)),
                        excluded: get("excluded").is_some_and(|v| yes(&v)),
                    })
                }
                Some("expect") => case.expect = Some(line.to_owned()),
                _ => panic!("{at}: cannot read '{line}'"),
            }
        }
    }
    cases
}

fn facts(claims: &SignInClaims, profiles: &[Profile]) -> SignInFacts {
    let key = match_key(claims.email.as_deref());
    let mut by_email: Vec<Profile> = profiles
        .iter()
        .filter(|p| key.key().is_some() && match_key(p.email.as_deref()).key() == key.key())
        .cloned()
        .collect();
    by_email.sort_by_key(|p| p.pk);
    SignInFacts {
        holder: profiles
            .iter()
            .find(|p| p.external_id.as_deref() == Some(claims.account_id.as_str()))
            .cloned(),
        by_email,
    }
}

/// The decision in the `expect` line's form.
fn render(decision: &SignInDecision) -> String {
    let mut line = format!("expect {}", decision.situation);
    if let Some(user) = decision.user_pk {
        line.push_str(&format!(" user={user}"));
    }
    if !decision.related.is_empty() {
        let related: Vec<String> = decision.related.iter().map(i64::to_string).collect();
        line.push_str(&format!(" related={}", related.join(",")));
    }
    if let Some(change) = &decision.change {
        line.push_str(&format!(" change={}", change.new));
    }
    line
}

#[test]
fn every_case_decides_as_expected() {
    let cases = load();
    assert!(cases.len() >= 15, "only {} cases", cases.len());
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for case in &cases {
        let claims = case.claims.as_ref().expect("every case has claims");
        let decision = decide_sign_in(claims, &facts(claims, &case.profiles), &case.settings);
        seen.insert(decision.situation);
        let expected = case
            .expect
            .as_deref()
            .expect("every case has an expect line");
        let actual = render(&decision);
        if expected != actual {
            failures.push(format!("{}\n  - {expected}\n  + {actual}", case.title));
        }
        for (want, got, what) in [
            (&case.explain, &decision.explanation.explanation, "explain"),
            (&case.fix, &decision.explanation.fix, "fix"),
        ] {
            if let Some(want) = want {
                if want != got {
                    failures.push(format!(
                        "{}\n  - {what}: {want}\n  + {what}: {got}",
                        case.title
                    ));
                }
            }
        }
        // A refusal never links; a link only ever goes from no External ID.
        assert_eq!(
            decision.change.is_some(),
            decision.situation == SignInSituation::NewLink,
            "{}",
            case.title
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every outcome except the race-only account_taken is covered by a case.
    for situation in SignInSituation::ALL {
        if *situation != SignInSituation::AccountTaken {
            assert!(seen.contains(situation), "no case decides {situation}");
        }
    }
}

#[test]
fn case_differences_never_change_the_decision() {
    let profiles = vec![Profile {
        pk: 1,
        id: "u1".into(),
        username: "u1".into(),
        email: Some("Élodie.Martin@Example.COM".into()),
        external_id: None,
        active: true,
        excluded: false,
    }];
    for email in [
        "élodie.martin@example.com",
        "ÉLODIE.MARTIN@EXAMPLE.COM",
        " Élodie.Martin@example.com ",
    ] {
        let claims = SignInClaims {
            account_id: "acc".into(),
            email: Some(email.into()),
            email_verified: true,
        };
        let decision = decide_sign_in(
            &claims,
            &facts(&claims, &profiles),
            &SignInSettings::default(),
        );
        assert_eq!(decision.situation, SignInSituation::NewLink, "{email}");
        assert_eq!(decision.user_pk, Some(1));
    }
}

#[test]
fn lost_races_refuse_and_never_overwrite() {
    let alice = Profile {
        pk: 7,
        id: "u7".into(),
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        external_id: None,
        active: true,
        excluded: false,
    };
    let claims = SignInClaims {
        account_id: "acc-1".into(),
        email: Some("alice@example.com".into()),
        email_verified: true,
    };
    let facts = SignInFacts {
        holder: None,
        by_email: vec![alice],
    };
    let decision = decide_sign_in(&claims, &facts, &SignInSettings::default());
    assert_eq!(decision.situation, SignInSituation::NewLink);

    let applied = settle_sign_in(&decision, &ChangeResult::Applied, None);
    assert_eq!(applied, decision);

    // A pull wrote the same value first: the person is that profile, signed in, not linked now.
    let same = settle_sign_in(&decision, &ChangeResult::AlreadySet, None);
    assert_eq!(same.situation, SignInSituation::Linked);
    assert_eq!(same.user_pk, Some(7));
    assert!(same.change.is_none());

    let changed = settle_sign_in(
        &decision,
        &ChangeResult::Changed {
            current: "other".into(),
        },
        None,
    );
    assert_eq!(changed.situation, SignInSituation::Conflict);
    assert!(changed.change.is_none());

    let holder = Profile {
        pk: 9,
        id: "u9".into(),
        username: "bob".into(),
        email: None,
        external_id: Some("acc-1".into()),
        active: true,
        excluded: false,
    };
    let taken = settle_sign_in(
        &decision,
        &ChangeResult::Taken { holder_pk: 9 },
        Some(&holder),
    );
    assert_eq!(taken.situation, SignInSituation::AccountTaken);
    assert_eq!(taken.related, vec![9]);
    assert_eq!(
        taken.explanation.explanation,
        "Account acc-1 became the External ID of u9 (bob) while this sign-in was linking another profile, so nothing was linked."
    );

    let excluded = settle_sign_in(&decision, &ChangeResult::Excluded, None);
    assert_eq!(excluded.situation, SignInSituation::Excluded);
    let gone = settle_sign_in(&decision, &ChangeResult::Gone, None);
    assert_eq!(gone.situation, SignInSituation::NoMatch);
    assert!(!gone.signs_in());
}
