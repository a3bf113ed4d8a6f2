//! Shared by the data-driven tests: the `.case` format (documented in `situations.rs`),
//! its parser, the conversion of a case into engine rows, and a small line diff.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tether_core::{
    match_key, AccountRow, AccountType, Evidence, ExternalIdField, Plan, Rules, Situation, UserRow,
};

/// One account line.
#[derive(Clone, Debug)]
pub struct AccountSpec {
    pub pk: i64,
    pub account_id: String,
    pub username: Option<String>,
    pub key: Option<String>,
    pub email: Option<String>,
    pub active: bool,
    pub account_type: AccountType,
}

/// One user line.
#[derive(Clone, Debug)]
pub struct UserSpec {
    pub pk: i64,
    pub username: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub excluded: bool,
}

/// One `expect user` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectUser {
    pub pk: i64,
    pub situation: Situation,
    pub evidence: Evidence,
}

/// One `expect change` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectChange {
    pub user_pk: i64,
    pub account_pk: i64,
    pub new: String,
}

/// One `explain user` / `fix user` line.
#[derive(Clone, Debug)]
pub struct ExpectText {
    pub line: usize,
    pub user_pk: i64,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub rules: Rules,
    pub source: String,
    pub accounts: Vec<AccountSpec>,
    pub users: Vec<UserSpec>,
    pub expects: Vec<ExpectUser>,
    pub changes: Vec<ExpectChange>,
    pub explains: Vec<ExpectText>,
    pub fixes: Vec<ExpectText>,
}

impl Case {
    fn new(file: &str, line: usize, name: &str) -> Self {
        Case {
            file: file.to_owned(),
            line,
            name: name.to_owned(),
            rules: Rules::default(),
            source: "jira".to_owned(),
            accounts: Vec::new(),
            users: Vec::new(),
            expects: Vec::new(),
            changes: Vec::new(),
            explains: Vec::new(),
            fixes: Vec::new(),
        }
    }

    /// `file:line: name`, for messages.
    pub fn title(&self) -> String {
        format!("{}:{}: === {}", self.file, self.line, self.name)
    }

    pub fn user_rows(&self) -> Vec<UserRow> {
        self.users.iter().map(user_row).collect()
    }

    pub fn account_rows(&self) -> Vec<AccountRow> {
        self.accounts.iter().map(account_row).collect()
    }

    pub fn plan(&self) -> Plan {
        tether_core::plan_links(&self.user_rows(), &self.account_rows(), &self.rules)
    }

    /// The expectations in the canonical text form that [`render_plan`] also produces.
    pub fn render_expected(&self) -> String {
        let mut expects = self.expects.clone();
        expects.sort_by_key(|e| e.pk);
        let mut text = String::new();
        for e in &expects {
            render_outcome(&mut text, e.pk, e.situation, &e.evidence);
        }
        for c in &self.changes {
            render_change(&mut text, c.user_pk, c.account_pk, None, &c.new);
        }
        text
    }

    pub fn user(&self, pk: i64) -> Option<&UserSpec> {
        self.users.iter().find(|u| u.pk == pk)
    }

    pub fn account(&self, pk: i64) -> Option<&AccountSpec> {
        self.accounts.iter().find(|a| a.pk == pk)
    }
}

/// A user row as a store would build it: the match key from the raw address.
pub fn user_row(u: &UserSpec) -> UserRow {
    let has_email = u.email.as_deref().is_some_and(|e| !e.trim().is_empty());
    UserRow {
        pk: u.pk,
        external_id: u.external_id.clone(),
        has_email,
        email_key: match_key(u.email.as_deref()).key().map(str::to_owned),
        excluded: u.excluded,
    }
}

pub fn account_row(a: &AccountSpec) -> AccountRow {
    AccountRow {
        pk: a.pk,
        account_id: a.account_id.clone(),
        username: a.username.clone(),
        key: a.key.clone(),
        email: a.email.clone(),
        email_key: match_key(a.email.as_deref()).key().map(str::to_owned),
        active: a.active,
        account_type: a.account_type,
    }
}

fn join(pks: &[i64]) -> String {
    pks.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn render_outcome(text: &mut String, pk: i64, situation: Situation, evidence: &Evidence) {
    let _ = write!(text, "expect user {pk} {situation}");
    if !evidence.accounts.is_empty() {
        let _ = write!(text, " accounts={}", join(&evidence.accounts));
    }
    if !evidence.users.is_empty() {
        let _ = write!(text, " users={}", join(&evidence.users));
    }
    let listed = evidence.accounts.len().max(evidence.users.len()) as u32;
    if evidence.total != listed {
        let _ = write!(text, " total={}", evidence.total);
    }
    text.push('\n');
}

fn render_change(text: &mut String, user: i64, account: i64, old: Option<&str>, new: &str) {
    let _ = write!(
        text,
        "expect change user={user} account={account} new={}",
        quote(new)
    );
    if let Some(old) = old {
        // plan_links never writes over a value; show it so a mismatch is visible.
        let _ = write!(text, " old={}", quote(old));
    }
    text.push('\n');
}

/// The plan in the same text form as the expectations, ready to paste into a case file.
pub fn render_plan(plan: &Plan) -> String {
    let mut text = String::new();
    for o in &plan.outcomes {
        render_outcome(&mut text, o.user_pk, o.situation, &o.evidence);
    }
    for c in &plan.changes {
        render_change(&mut text, c.user_pk, c.account_pk, c.old.as_deref(), &c.new);
    }
    text
}

/// Quotes a value when it would not survive the tokenizer bare.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if plain {
        return value.to_owned();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' ' => out.push(' '),
            c if c.is_ascii_graphic() => out.push(c),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// A parse error in a case file.
#[derive(Debug)]
pub struct ParseError(pub String);

fn err<T>(file: &str, line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(format!("{file}:{line}: {}", message.into())))
}

/// Splits a line into tokens. A token is a run of non-blank characters; double quotes group
/// blanks into a token and are removed; inside quotes `\"`, `\\`, `\t`, `\n` and `\u{HEX}`
/// are escapes. Outside quotes `\u{HEX}` is also an escape (to write NFD or invisible
/// characters visibly).
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut token = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if !quoted && c.is_ascii_whitespace() {
                break;
            }
            chars.next();
            match c {
                '"' => quoted = !quoted,
                '\\' => match chars.next() {
                    Some('"') => token.push('"'),
                    Some('\\') => token.push('\\'),
                    Some('t') => token.push('\t'),
                    Some('n') => token.push('\n'),
                    Some('u') => {
                        if chars.next() != Some('{') {
                            return Err("expected { after \\u".into());
                        }
                        let mut hex = String::new();
                        loop {
                            match chars.next() {
                                Some('}') => break,
                                Some(h) => hex.push(h),
                                None => return Err("unterminated \\u{".into()),
                            }
                        }
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("bad escape \\u{{{hex}}}"))?;
                        token.push(ch);
                    }
                    other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
                },
                c => token.push(c),
            }
        }
        if quoted {
            return Err("unterminated quote".into());
        }
        tokens.push(token);
    }
    Ok(tokens)
}

fn yes_no(value: &str) -> Option<bool> {
    match value {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

fn pk_list(value: &str) -> Option<Vec<i64>> {
    if value.is_empty() {
        return Some(Vec::new());
    }
    value.split(',').map(|p| p.parse().ok()).collect()
}

/// Parses one case file.
pub fn parse(file: &str, text: &str) -> Result<Vec<Case>, ParseError> {
    let mut cases: Vec<Case> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("===") {
            let name = name.trim();
            if name.is_empty() {
                return err(file, line, "a case needs a name after ===");
            }
            if cases.iter().any(|c| c.name == name) {
                return err(file, line, format!("duplicate case name '{name}'"));
            }
            cases.push(Case::new(file, line, name));
            continue;
        }
        let Some(case) = cases.last_mut() else {
            return err(file, line, "a line before the first === case");
        };
        // Explanations take the rest of the line verbatim.
        for (prefix, is_fix) in [("explain user ", false), ("fix user ", true)] {
            if let Some(rest) = trimmed.strip_prefix(prefix) {
                let Some((pk, text)) = rest.split_once(": ") else {
                    return err(file, line, format!("expected '{prefix}PK: text'"));
                };
                let Ok(user_pk) = pk.trim().parse() else {
                    return err(file, line, format!("bad user pk '{pk}'"));
                };
                let entry = ExpectText {
                    line,
                    user_pk,
                    text: text.to_owned(),
                };
                if is_fix {
                    case.fixes.push(entry);
                } else {
                    case.explains.push(entry);
                }
            }
        }
        if trimmed.starts_with("explain user ") || trimmed.starts_with("fix user ") {
            continue;
        }
        let tokens = match tokenize(trimmed) {
            Ok(tokens) => tokens,
            Err(message) => return err(file, line, message),
        };
        let words: Vec<&str> = tokens.iter().map(String::as_str).collect();
        // Splits `name=value` attributes, rejecting unknown names and repeats.
        let attrs =
            |items: &[&str], allowed: &[&str]| -> Result<Vec<(String, String)>, ParseError> {
                let mut out: Vec<(String, String)> = Vec::new();
                for item in items {
                    let Some((name, value)) = item.split_once('=') else {
                        return err(file, line, format!("expected name=value, got '{item}'"));
                    };
                    if !allowed.contains(&name) {
                        return err(
                            file,
                            line,
                            format!(
                                "unknown attribute '{name}' (expected one of {})",
                                allowed.join(", ")
                            ),
                        );
                    }
                    if out.iter().any(|(n, _)| n == name) {
                        return err(file, line, format!("attribute '{name}' given twice"));
                    }
                    out.push((name.to_owned(), value.to_owned()));
                }
                Ok(out)
            };
        let pk_of = |word: Option<&&str>| -> Result<i64, ParseError> {
            match word.and_then(|w| w.parse().ok()) {
                Some(pk) => Ok(pk),
                None => err(file, line, "expected a numeric pk"),
            }
        };
        match words.as_slice() {
            ["rules", rest @ ..] => {
                for (name, value) in attrs(rest, &["field", "link_inactive", "source"])? {
                    match name.as_str() {
                        "field" => match value.parse::<ExternalIdField>() {
                            Ok(field) => case.rules.field = field,
                            Err(e) => return err(file, line, e.to_string()),
                        },
                        "link_inactive" => match yes_no(&value) {
                            Some(b) => case.rules.link_inactive = b,
                            None => return err(file, line, "link_inactive is yes or no"),
                        },
                        _ => case.source = value,
                    }
                }
            }
            ["account", pk, rest @ ..] => {
                let pk = pk_of(Some(pk))?;
                if case.account(pk).is_some() {
                    return err(file, line, format!("account {pk} given twice"));
                }
                let mut account = AccountSpec {
                    pk,
                    account_id: format!("aaid-{pk}"),
                    username: None,
                    key: None,
                    email: None,
                    active: true,
                    account_type: AccountType::Atlassian,
                };
                for (name, value) in
                    attrs(rest, &["id", "username", "key", "email", "active", "type"])?
                {
                    match name.as_str() {
                        "id" => account.account_id = value,
                        "username" => account.username = Some(value),
                        "key" => account.key = Some(value),
                        "email" => account.email = Some(value),
                        "active" => match yes_no(&value) {
                            Some(b) => account.active = b,
                            None => return err(file, line, "active is yes or no"),
                        },
                        _ => match value.parse::<AccountType>() {
                            Ok(t) => account.account_type = t,
                            Err(e) => return err(file, line, e.to_string()),
                        },
                    }
                }
                case.accounts.push(account);
            }
            ["user", pk, rest @ ..] => {
                let pk = pk_of(Some(pk))?;
                if case.user(pk).is_some() {
                    return err(file, line, format!("user {pk} given twice"));
                }
                let mut user = UserSpec {
                    pk,
                    username: String::new(),
                    email: None,
                    external_id: None,
                    excluded: false,
                };
                for (name, value) in attrs(rest, &["username", "email", "ext", "excluded"])? {
                    match name.as_str() {
                        "username" => user.username = value,
                        "email" => user.email = Some(value),
                        "ext" => user.external_id = Some(value),
                        _ => match yes_no(&value) {
                            Some(b) => user.excluded = b,
                            None => return err(file, line, "excluded is yes or no"),
                        },
                    }
                }
                case.users.push(user);
            }
            ["expect", "user", pk, situation, rest @ ..] => {
                let pk = pk_of(Some(pk))?;
                let situation = match situation.parse::<Situation>() {
                    Ok(s) => s,
                    Err(e) => return err(file, line, e.to_string()),
                };
                if case.expects.iter().any(|e| e.pk == pk) {
                    return err(file, line, format!("user {pk} expected twice"));
                }
                let mut evidence = Evidence::default();
                let mut total = None;
                for (name, value) in attrs(rest, &["accounts", "users", "total"])? {
                    match name.as_str() {
                        "accounts" | "users" => {
                            let Some(list) = pk_list(&value) else {
                                return err(file, line, format!("bad pk list '{value}'"));
                            };
                            if name == "accounts" {
                                evidence.accounts = list;
                            } else {
                                evidence.users = list;
                            }
                        }
                        _ => match value.parse() {
                            Ok(n) => total = Some(n),
                            Err(_) => return err(file, line, format!("bad total '{value}'")),
                        },
                    }
                }
                evidence.total =
                    total.unwrap_or(evidence.accounts.len().max(evidence.users.len()) as u32);
                case.expects.push(ExpectUser {
                    pk,
                    situation,
                    evidence,
                });
            }
            ["expect", "change", rest @ ..] => {
                let mut user_pk = None;
                let mut account_pk = None;
                let mut new = None;
                for (name, value) in attrs(rest, &["user", "account", "new"])? {
                    match name.as_str() {
                        "user" => user_pk = value.parse().ok(),
                        "account" => account_pk = value.parse().ok(),
                        _ => new = Some(value),
                    }
                }
                let (Some(user_pk), Some(account_pk), Some(new)) = (user_pk, account_pk, new)
                else {
                    return err(
                        file,
                        line,
                        "expect change needs user=PK account=PK new=VALUE",
                    );
                };
                case.changes.push(ExpectChange {
                    user_pk,
                    account_pk,
                    new,
                });
            }
            _ => return err(file, line, format!("cannot read line: {trimmed}")),
        }
    }
    // Every user needs an expectation, and every expectation a user.
    for case in &cases {
        for user in &case.users {
            if !case.expects.iter().any(|e| e.pk == user.pk) {
                return err(
                    file,
                    case.line,
                    format!("case '{}': no expect line for user {}", case.name, user.pk),
                );
            }
        }
        for e in &case.expects {
            if case.user(e.pk).is_none() {
                return err(
                    file,
                    case.line,
                    format!("case '{}': expect for unknown user {}", case.name, e.pk),
                );
            }
        }
        for t in case.explains.iter().chain(&case.fixes) {
            if case.user(t.user_pk).is_none() {
                return err(
                    file,
                    t.line,
                    format!("explanation for unknown user {}", t.user_pk),
                );
            }
        }
    }
    Ok(cases)
}

pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/engine")
}

/// Every case of every `*.case` file, in file-name order.
pub fn load_all() -> Vec<Case> {
    let dir = testdata_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "case"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .case files in {}", dir.display());
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match parse(&name, &text) {
            Ok(mut parsed) => {
                assert!(!parsed.is_empty(), "{name} holds no cases");
                cases.append(&mut parsed);
            }
            Err(ParseError(message)) => panic!("{message}"),
        }
    }
    cases
}

/// A line diff (longest common subsequence): ` ` same, `-` expected only, `+` actual only.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}
