//! `tether serve --demo`: fills an empty database with a demo organisation, so that every
//! screen has something to show with no outside system.
//!
//! "Acme Planning" has 3,000 users and one source, `demo-directory` (kind `file`: its
//! accounts file is written beside the database, so a pull job reads it like any file
//! source). The story is the one from the field (DESIGN §1): the first sync ran with the
//! External ID field set to `username`, which a Jira Cloud directory never fills, so nearly
//! everyone is `missing_field`. Switching Pull User Data to `account_id` and running it links
//! most users; the rest land in every other situation, each with its explanation.
//! Deterministic: the same database every time.

use crate::app::{App, ReconcileOptions};
use crate::error::{AppError, AppResult};
use tether_core::{match_key, AccountType, ExternalIdField};
use tether_store::admin::AdminStore;
use tether_store::{ImportOptions, NewAccount, NewSource, NewUser, Store, Timestamp};

pub const DEMO_SOURCE: &str = "demo-directory";
pub const DEMO_ADMIN: &str = "admin";
const USERS: usize = 3000;

const FIRST: &[&str] = &[
    "Alice", "Bob", "Chen", "Dana", "Emeka", "Fatima", "Giulia", "Hiro", "Ines", "Jonas", "Kwame",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor",
    "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Adams",
    "Becker",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quispe",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Usman",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmermann",
];

/// A small deterministic generator (SplitMix64), so the demo is the same every time.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn aaid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "557058:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

fn account(
    account_id: String,
    email: Option<&str>,
    name: &str,
    active: bool,
    kind: AccountType,
) -> NewAccount {
    NewAccount {
        account_id,
        username: None,
        key: None,
        email: email.map(str::to_owned),
        email_key: email.and_then(|e| match_key(Some(e)).key().map(str::to_owned)),
        display_name: name.to_owned(),
        active,
        account_type: kind,
    }
}

/// Seeds the demo into an empty database and returns how to sign in. A database that
/// already has users is left alone (and the hint says to use its own administrators).
pub async fn seed(app: &App, database_url: &str, at: Timestamp) -> AppResult<String> {
    if app.store.count_users().await? > 0 {
        return Ok(
            "an existing administrator (this database already has users, so --demo added nothing)"
                .to_owned(),
        );
    }
    let mut dice = Dice(0x7e7e_7e7e);
    let mut users = Vec::with_capacity(USERS);
    let mut accounts = Vec::with_capacity(USERS + 100);
    for i in 0..USERS {
        let first = FIRST[i % FIRST.len()];
        let last = LAST[(i / FIRST.len()) % LAST.len()];
        let n = i / (FIRST.len() * LAST.len());
        let local = if n == 0 {
            format!("{}.{}", first.to_lowercase(), ascii(last))
        } else {
            format!("{}.{}{n}", first.to_lowercase(), ascii(last))
        };
        let name = format!("{first} {last}");
        let email = format!("{local}@acme.example");
        let id = format!("u{:05}", i + 1);
        let mut user = NewUser {
            id: id.clone(),
            username: local.clone(),
            email: Some(email.clone()),
            email_key: match_key(Some(&email)).key().map(str::to_owned),
            display_name: name.clone(),
            active: true,
            external_id: None,
        };
        let aaid = dice.aaid();
        match i % 100 {
            // The profile was created with different case than the directory: links anyway.
            0..=9 => {
                user.email = Some(email.to_uppercase());
                accounts.push(account(
                    aaid,
                    Some(&email),
                    &name,
                    true,
                    AccountType::Atlassian,
                ));
            }
            // Already linked by an earlier import.
            10..=14 => {
                user.external_id = Some(aaid.clone());
                accounts.push(account(
                    aaid,
                    Some(&email),
                    &name,
                    true,
                    AccountType::Atlassian,
                ));
            }
            // Two directory accounts share the e-mail (a re-invited user).
            15 => {
                accounts.push(account(
                    aaid,
                    Some(&email),
                    &name,
                    true,
                    AccountType::Atlassian,
                ));
                accounts.push(account(
                    dice.aaid(),
                    Some(&email),
                    &name,
                    true,
                    AccountType::Atlassian,
                ));
            }
            // No account at all (never invited to the site).
            16 | 17 => {}
            // The account is deactivated.
            18 => accounts.push(account(
                aaid,
                Some(&email),
                &name,
                false,
                AccountType::Atlassian,
            )),
            // The directory hides the e-mail (privacy setting).
            19 => accounts.push(account(aaid, None, &name, true, AccountType::Atlassian)),
            // No e-mail on the profile.
            20 => {
                user.email = None;
                user.email_key = None;
                accounts.push(account(
                    aaid,
                    Some(&email),
                    &name,
                    true,
                    AccountType::Atlassian,
                ));
            }
            // A typo makes the address invalid.
            21 => {
                user.email = Some(email.replace('@', "@@"));
                user.email_key = None;
                accounts.push(account(
                    aaid,
                    Some(&email),
                    &name,
                    true,
                    AccountType::Atlassian,
                ));
            }
            // Linked by hand long ago to an ID the directory no longer has, while the
            // directory holds an account with the same e-mail: a conflict.
            22 => {
                user.external_id = Some(dice.aaid());
                accounts.push(account(
                    aaid,
                    Some(&email),
                    &name,
                    true,
                    AccountType::Atlassian,
                ));
            }
            // Linked to an ID the directory no longer has, and no account by e-mail.
            23 => user.external_id = Some(dice.aaid()),
            // A bot account of an app shares an address; only atlassian accounts link.
            24 => accounts.push(account(aaid, Some(&email), &name, true, AccountType::App)),
            _ => accounts.push(account(
                aaid,
                Some(&email),
                &name,
                true,
                AccountType::Atlassian,
            )),
        }
        users.push(user);
    }
    // Two profiles for one person (a duplicate created by hand): both are duplicate_users.
    for i in (30..USERS).step_by(250) {
        let twin = users[i].clone();
        users.push(NewUser {
            id: format!("{}-dup", twin.id),
            username: format!("{}.2", twin.username),
            display_name: format!("{} (old profile)", twin.display_name),
            ..twin
        });
    }
    // Account taken: the account of user A is already A's External ID, and a second profile
    // with A's e-mail but another name wants it too.
    for i in (40..USERS).step_by(500) {
        let owner = users[i].clone();
        if let Some(acc) = accounts.iter().find(|a| a.email_key == owner.email_key) {
            let taken = acc.account_id.clone();
            users[i].external_id = Some(taken);
            users.push(NewUser {
                id: format!("{}-contractor", owner.id),
                username: format!("{}.ext", owner.username),
                display_name: format!("{} (contractor)", owner.display_name),
                external_id: None,
                ..owner
            });
        }
    }
    // A few addresses from the field: an internationalized domain and a German ß, which
    // must not be folded to "ss".
    let specials = [
        (
            "Jürgen Groß",
            "juergen@bücher.example",
            "juergen@xn--bcher-kva.example",
        ),
        (
            "Anja Strauß",
            "anja.strauß@acme.example",
            "anja.strauß@acme.example",
        ),
        (
            "Anja Strauss",
            "anja.strauss@acme.example",
            "anja.strauss@acme.example",
        ),
    ];
    for (k, (name, user_email, account_email)) in specials.iter().enumerate() {
        let id = format!("s{:03}", k + 1);
        users.push(NewUser {
            id,
            username: user_email.split('@').next().unwrap_or("user").to_owned(),
            email: Some((*user_email).to_owned()),
            email_key: match_key(Some(user_email)).key().map(str::to_owned),
            display_name: (*name).to_owned(),
            active: true,
            external_id: None,
        });
        if k < 2 {
            accounts.push(account(
                dice.aaid(),
                Some(account_email),
                name,
                true,
                AccountType::Atlassian,
            ));
        }
    }

    app.store
        .import_users(
            &users,
            &ImportOptions {
                actor: "demo",
                at,
                replace_external_ids: false,
            },
        )
        .await?;
    let source = app
        .add_source(
            NewSource {
                name: DEMO_SOURCE.to_owned(),
                kind: "file".to_owned(),
                external_id_field: ExternalIdField::Username,
                link_inactive: false,
            },
            at,
        )
        .await?;
    app.store.import_accounts(source.pk, &accounts, at).await?;
    if let Some(path) = demo_accounts_path(database_url) {
        write_accounts_csv(&path, &accounts)?;
        let settings = tether_sources::SourceSettings {
            path: Some(path),
            ..Default::default()
        };
        app.configure_source(&source, None, None, Some(&settings), None, "demo", at)
            .await?;
    }
    // The first sync, run with the wrong field: everyone without a link is missing_field.
    app.reconcile(
        DEMO_SOURCE,
        ReconcileOptions::default(),
        at,
        &crate::app::NoProgress,
    )
    .await?;

    let mut password = [0u8; 9];
    getrandom::fill(&mut password).map_err(|e| AppError::Io(format!("randomness: {e}")))?;
    let password = format!("demo-{}", hex::encode(password));
    if app.store.find_admin(DEMO_ADMIN).await?.is_none() {
        app.create_admin(DEMO_ADMIN, &password, at).await?;
    }
    Ok(format!("user '{DEMO_ADMIN}' and password '{password}'"))
}

fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'á' | 'à' | 'ä' => 'a',
            'é' | 'è' => 'e',
            'í' => 'i',
            'ó' | 'ö' => 'o',
            'ú' | 'ü' => 'u',
            other => other,
        })
        .collect::<String>()
        .to_lowercase()
}

/// The demo source's accounts file: beside a SQLite database, or in the temp directory.
fn demo_accounts_path(database_url: &str) -> Option<String> {
    match database_url.strip_prefix("sqlite:") {
        Some(db) if db != ":memory:" => Some(format!("{db}.demo-accounts.csv")),
        _ => Some(
            std::env::temp_dir()
                .join("tether-demo-accounts.csv")
                .display()
                .to_string(),
        ),
    }
}

fn write_accounts_csv(path: &str, accounts: &[NewAccount]) -> AppResult<()> {
    let mut writer =
        csv::Writer::from_path(path).map_err(|e| AppError::Io(format!("{path}: {e}")))?;
    let io = |e: csv::Error| AppError::Io(format!("{path}: {e}"));
    writer
        .write_record([
            "account_id",
            "username",
            "key",
            "email",
            "display_name",
            "active",
            "account_type",
        ])
        .map_err(io)?;
    for a in accounts {
        writer
            .write_record([
                a.account_id.as_str(),
                "",
                "",
                a.email.as_deref().unwrap_or(""),
                a.display_name.as_str(),
                if a.active { "true" } else { "false" },
                a.account_type.as_str(),
            ])
            .map_err(io)?;
    }
    writer
        .flush()
        .map_err(|e| AppError::Io(format!("{path}: {e}")))
}
