//! One-sentence explanations and fixes for every situation (DESIGN §3).
//!
//! Rendering is separate from deciding: the engine stores compact [`Evidence`]
//! (row keys), and the caller resolves those keys to the views below before asking for text.
//! Explanations name the records involved; identifiers longer than twelve characters are
//! shortened to eight and an ellipsis, the full values stay in the evidence.

use crate::email::{match_key, EmailKey};
use crate::model::{AccountType, ExternalIdField, Situation};
use serde::Serialize;

/// A user named in an explanation.
#[derive(Clone, Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
}

/// An account named in an explanation, with the value it gives to the source's field.
#[derive(Clone, Debug, Serialize)]
pub struct AccountView {
    pub account_id: String,
    pub email: Option<String>,
    pub active: bool,
    pub account_type: AccountType,
    pub value: Option<String>,
}

/// What happened and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub explanation: String,
    pub fix: String,
}

/// Everything an explanation may name.
pub struct Context<'a> {
    pub situation: Situation,
    pub user: &'a UserView,
    /// Accounts from the evidence, in evidence order.
    pub accounts: &'a [AccountView],
    /// Other users from the evidence, in evidence order.
    pub users: &'a [UserView],
    /// The evidence's full count (lists may be cut).
    pub total: u32,
    pub field: ExternalIdField,
    pub source: &'a str,
}

/// Shortens a long identifier as in "5b10a284…"; a prefixed one such as an Atlassian
/// `557058:1f0b8c2e-…` keeps its prefix, so shortened ids stay distinct.
pub fn short(id: &str) -> String {
    if id.chars().count() <= 12 {
        return id.to_owned();
    }
    let (prefix, rest) = match id.split_once(':') {
        Some((prefix, rest)) if rest.chars().count() > 8 => (format!("{prefix}:"), rest),
        _ => (String::new(), id),
    };
    let head: String = rest.chars().take(8).collect();
    format!("{prefix}{head}…")
}

fn list_accounts(accounts: &[AccountView], total: u32) -> String {
    let mut names: Vec<String> = accounts.iter().map(|a| short(&a.account_id)).collect();
    if (total as usize) > names.len() {
        names.push(format!("and {} more", total as usize - names.len()));
    }
    names.join(", ")
}

fn list_users(users: &[UserView], total: u32) -> String {
    let mut names: Vec<String> = users.iter().map(name_user).collect();
    if (total as usize) > names.len() {
        names.push(format!("and {} more", total as usize - names.len()));
    }
    names.join(", ")
}

fn name_user(user: &UserView) -> String {
    if user.username.is_empty() || user.username == user.id {
        user.id.clone()
    } else {
        format!("{} ({})", user.id, user.username)
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Explains `context.situation` for `context.user`.
pub fn explain(context: &Context<'_>) -> Explanation {
    let Context {
        situation,
        user,
        accounts,
        users,
        total,
        field,
        source,
    } = *context;
    let email = user.email.as_deref().map(str::trim).unwrap_or("");
    let external_id = user.external_id.as_deref().unwrap_or("");
    let first_account = accounts.first();
    let account_name = first_account
        .map(|a| short(&a.account_id))
        .unwrap_or_else(|| "?".into());
    let (explanation, fix) = match situation {
        Situation::Linked => (
            format!(
                "External ID {} is the {field} of account {account_name} in source {source}.",
                short(external_id)
            ),
            "Nothing to do.".to_owned(),
        ),
        Situation::Conflict => (
            format!(
                "External ID {} matches no account in source {source}, but {email} belongs to account {account_name}, whose {field} is {}.",
                short(external_id),
                first_account.and_then(|a| a.value.as_deref()).map(short).unwrap_or_default()
            ),
            format!(
                "Check which is right: if account {account_name} is this person, clear the External ID and reconcile again; otherwise exclude this user or fix the e-mail."
            ),
        ),
        Situation::OrphanedLink => (
            format!(
                "External ID {} matches no account's {field} in source {source}, and no single account there has this user's e-mail.",
                short(external_id)
            ),
            "If the External ID was set from another field, set the source's External ID field to match it; if the account was removed from the directory, clear the External ID.".to_owned(),
        ),
        Situation::NoEmail => (
            "This profile has no e-mail address, so it cannot be matched to an account.".to_owned(),
            "Add the person's e-mail address to the profile, or set External ID by hand.".to_owned(),
        ),
        Situation::InvalidEmail => {
            let why = match match_key(user.email.as_deref()) {
                EmailKey::Invalid(why) => why.to_string(),
                _ => "it does not parse".to_owned(),
            };
            (
                format!("The e-mail address '{email}' is not valid: {why}."),
                "Correct the e-mail address on the profile; tether does not guess at addresses.".to_owned(),
            )
        }
        Situation::InactiveAccount => (
            format!(
                "The only {} with {email} in source {source} {}: {}.",
                if total == 1 { "account" } else { "accounts" },
                if total == 1 { "is inactive" } else { "are inactive" },
                list_accounts(accounts, total)
            ),
            "Reactivate the account in the directory, or let this source link inactive accounts.".to_owned(),
        ),
        Situation::NoMatch => {
            if accounts.is_empty() {
                (
                    format!("No account in source {source} has the e-mail {email}."),
                    "Check the address on both sides; if the directory hides this person's e-mail, set External ID by hand.".to_owned(),
                )
            } else {
                let kinds: Vec<&str> = accounts.iter().map(|a| a.account_type.as_str()).collect();
                (
                    format!(
                        "Only accounts that are not linked to people have {email} in source {source}: {} ({}).",
                        list_accounts(accounts, total),
                        kinds.join(", ")
                    ),
                    "Give the person an account of their own in the directory, or set External ID by hand.".to_owned(),
                )
            }
        }
        Situation::DuplicateAccounts => (
            format!(
                "{} share {email} in source {source}: {}.",
                plural(total, "account", "accounts"),
                list_accounts(accounts, total)
            ),
            "Deactivate or merge the duplicate account in the directory, or set External ID by hand to the right one.".to_owned(),
        ),
        Situation::DuplicateUsers => (
            format!(
                "{} share {email}: this one and {}.",
                plural(total + 1, "profile", "profiles"),
                list_users(users, total)
            ),
            "Exclude the stale profile or correct its e-mail; the remaining one then links.".to_owned(),
        ),
        Situation::MissingField => (
            format!("Account {account_name} has {email} but no {field} in source {source}."),
            match field {
                ExternalIdField::AccountId => "Check the source: every account should have an account ID.".to_owned(),
                _ => format!(
                    "Set External ID field to account_id: this source has no {field} for account {account_name}."
                ),
            },
        ),
        Situation::AccountTaken => {
            let value = first_account.and_then(|a| a.value.as_deref()).map(short).unwrap_or_default();
            if users.is_empty() && accounts.len() > 1 {
                (
                    format!(
                        "Account {account_name} has {email}, but its {field} {value} is also the {field} of {}, so it does not identify one person.",
                        list_accounts(&accounts[1..], total.saturating_sub(1))
                    ),
                    format!("Set External ID field to account_id: {field} is not unique in source {source}."),
                )
            } else {
                (
                    format!(
                        "Account {account_name} has {email}, but its {field} {value} is already the External ID of {}.",
                        list_users(users, total)
                    ),
                    "Find out which profile belongs to this person; clear the other profile's External ID or exclude one of them.".to_owned(),
                )
            }
        }
        Situation::NewLink => (
            format!(
                "Account {account_name} in source {source} has {email}; External ID becomes its {field} {}.",
                first_account.and_then(|a| a.value.as_deref()).map(short).unwrap_or_default()
            ),
            "Nothing to do: reconcile writes it.".to_owned(),
        ),
        Situation::Excluded => (
            "An administrator excluded this user from linking; tether never changes it.".to_owned(),
            "Include the user again to let tether link it.".to_owned(),
        ),
    };
    Explanation { explanation, fix }
}
