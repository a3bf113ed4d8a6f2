//! The link engine: matches every user against one source's accounts and decides a
//! [`Situation`] for each (DESIGN §3), plus the External ID changes a run makes.
//!
//! Pure and deterministic: the plan depends only on the rows given, never on their order,
//! on hashing, on time or on storage. It never overwrites an External ID and never links
//! when in doubt: every rule that could pick the wrong person refuses and explains instead.

use crate::model::{AccountType, ExternalIdField, Situation};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// How many related records an outcome keeps as evidence; the true count is kept beside.
pub const MAX_EVIDENCE: usize = 10;

/// A user as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub pk: i64,
    pub external_id: Option<String>,
    /// Whether the profile has a non-blank e-mail at all.
    pub has_email: bool,
    /// The match key; `None` with `has_email` means the address is invalid.
    pub email_key: Option<String>,
    pub excluded: bool,
}

/// A directory account as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub pk: i64,
    pub account_id: String,
    pub username: Option<String>,
    pub key: Option<String>,
    pub email: Option<String>,
    pub email_key: Option<String>,
    pub active: bool,
    pub account_type: AccountType,
}

impl AccountRow {
    /// The value this account gives to the External ID field, if it has one.
    pub fn value(&self, field: ExternalIdField) -> Option<&str> {
        let value = match field {
            ExternalIdField::AccountId => Some(self.account_id.as_str()),
            ExternalIdField::Username => self.username.as_deref(),
            ExternalIdField::Key => self.key.as_deref(),
            ExternalIdField::Email => self.email.as_deref().map(str::trim),
        };
        value.filter(|v| !v.is_empty())
    }
}

/// The source settings that change matching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub field: ExternalIdField,
    pub link_inactive: bool,
}

/// The records behind a situation. Which lists are filled depends on the situation:
///
/// | situation | `accounts` | `users` |
/// |---|---|---|
/// | linked, new_link, missing_field, conflict | the account | — |
/// | duplicate_accounts, inactive_account | the candidates | — |
/// | no_match | accounts of types that are not linked, if any share the e-mail | — |
/// | duplicate_users | — | the other users sharing the e-mail |
/// | account_taken | the account (and the others sharing its value) | the user holding its value |
///
/// Lists hold at most [`MAX_EVIDENCE`] entries; `total` is the full length of the longest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    pub accounts: Vec<i64>,
    pub users: Vec<i64>,
    pub total: u32,
}

impl Evidence {
    fn accounts(pks: impl ExactSizeIterator<Item = i64>) -> Self {
        let total = pks.len() as u32;
        Evidence {
            accounts: pks.take(MAX_EVIDENCE).collect(),
            users: Vec::new(),
            total,
        }
    }

    fn account(pk: i64) -> Self {
        Evidence {
            accounts: vec![pk],
            users: Vec::new(),
            total: 1,
        }
    }

    /// A compact text form for storage: `a=1,2;u=3;n=4`, empty for no evidence.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        for (tag, list) in [("a", &self.accounts), ("u", &self.users)] {
            if list.is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push(';');
            }
            text.push_str(tag);
            text.push('=');
            let ids: Vec<String> = list.iter().map(i64::to_string).collect();
            text.push_str(&ids.join(","));
        }
        let listed = self.accounts.len().max(self.users.len()) as u32;
        if self.total != listed {
            text.push_str(&format!(";n={}", self.total));
        }
        text
    }

    /// Parses [`Evidence::encode`]'s form; `None` for text it did not write.
    pub fn decode(text: &str) -> Option<Self> {
        let mut evidence = Evidence::default();
        let mut total = None;
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let (tag, list) = part.split_once('=')?;
            let ids = || {
                list.split(',')
                    .map(|id| id.parse::<i64>().ok())
                    .collect::<Option<Vec<_>>>()
            };
            match tag {
                "a" => evidence.accounts = ids()?,
                "u" => evidence.users = ids()?,
                "n" => total = Some(list.parse().ok()?),
                _ => return None,
            }
        }
        evidence.total = total.unwrap_or(evidence.accounts.len().max(evidence.users.len()) as u32);
        Some(evidence)
    }
}

/// The engine's decision for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub user_pk: i64,
    pub situation: Situation,
    pub evidence: Evidence,
}

/// One External ID the plan writes: only ever from `old` (what the plan saw) to `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub user_pk: i64,
    pub account_pk: i64,
    pub old: Option<String>,
    pub new: String,
}

/// The result of matching all users against one source's accounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One per user, ordered by user pk.
    pub outcomes: Vec<Outcome>,
    /// The `new_link` outcomes' writes, ordered by user pk.
    pub changes: Vec<Change>,
}

impl Plan {
    /// How many users are in each situation that occurred.
    pub fn summary(&self) -> BTreeMap<Situation, u64> {
        let mut summary = BTreeMap::new();
        for outcome in &self.outcomes {
            *summary.entry(outcome.situation).or_insert(0) += 1;
        }
        summary
    }
}

/// A list of row indexes that is usually one long; avoids a heap allocation per key.
#[derive(Clone, Debug)]
enum Group {
    One([u32; 1]),
    Many(Vec<u32>),
}

impl Group {
    fn push(&mut self, index: u32) {
        match self {
            Group::One([first]) => *self = Group::Many(vec![*first, index]),
            Group::Many(list) => list.push(index),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Group::One(one) => one,
            Group::Many(list) => list,
        }
    }
}

fn group_insert<'a>(map: &mut FxHashMap<&'a str, Group>, key: &'a str, index: u32) {
    map.entry(key)
        .and_modify(|g| g.push(index))
        .or_insert(Group::One([index]));
}

fn sorted_indexes<T>(rows: &[T], pk: impl Fn(&T) -> i64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    order.sort_by_key(|&i| pk(&rows[i as usize]));
    order
}

/// Matches `users` against `accounts` under `rules` (DESIGN §3, rules in the order given).
pub fn plan_links(users: &[UserRow], accounts: &[AccountRow], rules: &Rules) -> Plan {
    let field = rules.field;
    let account_order = sorted_indexes(accounts, |a| a.pk);
    let user_order = sorted_indexes(users, |u| u.pk);

    // Accounts by External ID field value (the lowest pk wins a shared value) and by key.
    let mut by_value: FxHashMap<&str, Group> = FxHashMap::default();
    let mut by_key: FxHashMap<&str, Group> = FxHashMap::default();
    let mut unlinkable_by_key: FxHashMap<&str, Group> = FxHashMap::default();
    by_value.reserve(accounts.len());
    by_key.reserve(accounts.len());
    for &i in &account_order {
        let account = &accounts[i as usize];
        if let Some(value) = account.value(field) {
            group_insert(&mut by_value, value, i);
        }
        if let Some(key) = account.email_key.as_deref() {
            let map = if account.account_type.is_linkable() {
                &mut by_key
            } else {
                &mut unlinkable_by_key
            };
            group_insert(map, key, i);
        }
    }

    // Users holding each External ID, and users without one (not excluded) by key.
    let mut holders: FxHashMap<&str, u32> = FxHashMap::default();
    let mut unlinked_by_key: FxHashMap<&str, Group> = FxHashMap::default();
    holders.reserve(users.len() / 8);
    unlinked_by_key.reserve(users.len());
    for &i in &user_order {
        let user = &users[i as usize];
        match (&user.external_id, user.email_key.as_deref()) {
            (Some(external_id), _) => {
                holders.entry(external_id.as_str()).or_insert(i);
            }
            (None, Some(key)) if !user.excluded => group_insert(&mut unlinked_by_key, key, i),
            _ => {}
        }
    }

    let account_pks = |indexes: &[u32]| -> Evidence {
        Evidence::accounts(indexes.iter().map(|&i| accounts[i as usize].pk))
    };

    let mut outcomes = Vec::with_capacity(users.len());
    // (outcome index, account index, value) of each tentative new link.
    let mut proposals: Vec<(usize, u32, &str)> = Vec::new();
    for &i in &user_order {
        let user = &users[i as usize];
        let (situation, evidence) = if user.excluded {
            (Situation::Excluded, Evidence::default())
        } else if let Some(external_id) = &user.external_id {
            // Rule 1: the External ID is the anchor.
            if let Some(&account) = by_value
                .get(external_id.as_str())
                .and_then(|g| g.as_slice().first())
            {
                (
                    Situation::Linked,
                    Evidence::account(accounts[account as usize].pk),
                )
            } else {
                let others: Vec<u32> = user
                    .email_key
                    .as_deref()
                    .and_then(|key| by_key.get(key))
                    .map(|g| {
                        g.as_slice()
                            .iter()
                            .copied()
                            .filter(|&a| accounts[a as usize].value(field).is_some())
                            .collect()
                    })
                    .unwrap_or_default();
                match others.as_slice() {
                    [one] => (
                        Situation::Conflict,
                        Evidence::account(accounts[*one as usize].pk),
                    ),
                    _ => (Situation::OrphanedLink, Evidence::default()),
                }
            }
        } else if !user.has_email {
            (Situation::NoEmail, Evidence::default())
        } else if let Some(key) = user.email_key.as_deref() {
            decide_unlinked(
                i,
                key,
                rules,
                accounts,
                &by_key,
                &unlinkable_by_key,
                &unlinked_by_key,
                &holders,
                &by_value,
                users,
                &account_pks,
                |account, value| proposals.push((outcomes.len(), account, value)),
            )
        } else {
            (Situation::InvalidEmail, Evidence::default())
        };
        outcomes.push(Outcome {
            user_pk: user.pk,
            situation,
            evidence,
        });
    }

    // No value can be proposed for two users: one account is the sole candidate of one key
    // (two users sharing a key are duplicate_users), and a value two accounts share is
    // refused above. The property tests check it.
    let changes = proposals
        .into_iter()
        .map(|(outcome_index, account, value)| Change {
            user_pk: outcomes[outcome_index].user_pk,
            account_pk: accounts[account as usize].pk,
            old: None,
            new: value.to_owned(),
        })
        .collect();
    Plan { outcomes, changes }
}

/// Rule 2 for a user without External ID whose address is valid.
#[allow(clippy::too_many_arguments)]
fn decide_unlinked<'a>(
    user_index: u32,
    key: &str,
    rules: &Rules,
    accounts: &'a [AccountRow],
    by_key: &FxHashMap<&str, Group>,
    unlinkable_by_key: &FxHashMap<&str, Group>,
    unlinked_by_key: &FxHashMap<&str, Group>,
    holders: &FxHashMap<&str, u32>,
    by_value: &FxHashMap<&str, Group>,
    users: &[UserRow],
    account_pks: &dyn Fn(&[u32]) -> Evidence,
    mut propose: impl FnMut(u32, &'a str),
) -> (Situation, Evidence) {
    let all: &[u32] = by_key.get(key).map(Group::as_slice).unwrap_or_default();
    let candidates: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&a| rules.link_inactive || accounts[a as usize].active)
        .collect();
    match candidates.as_slice() {
        [] if !all.is_empty() => (Situation::InactiveAccount, account_pks(all)),
        [] => {
            let unlinkable = unlinkable_by_key
                .get(key)
                .map(Group::as_slice)
                .unwrap_or_default();
            (Situation::NoMatch, account_pks(unlinkable))
        }
        [_, _, ..] => (Situation::DuplicateAccounts, account_pks(&candidates)),
        [candidate] => {
            let sharing = unlinked_by_key
                .get(key)
                .map(Group::as_slice)
                .unwrap_or_default();
            if sharing.len() > 1 {
                let others: Vec<i64> = sharing
                    .iter()
                    .filter(|&&u| u != user_index)
                    .map(|&u| users[u as usize].pk)
                    .collect();
                return (
                    Situation::DuplicateUsers,
                    Evidence {
                        accounts: Vec::new(),
                        total: others.len() as u32,
                        users: others.into_iter().take(MAX_EVIDENCE).collect(),
                    },
                );
            }
            let account = &accounts[*candidate as usize];
            match account.value(rules.field) {
                None => (Situation::MissingField, Evidence::account(account.pk)),
                Some(value) => match holders.get(value) {
                    // The value names more than one account, so it cannot anchor one person.
                    None if by_value.get(value).is_some_and(|g| g.as_slice().len() > 1) => {
                        let sharing: Vec<u32> = by_value
                            .get(value)
                            .map(|g| g.as_slice().to_vec())
                            .unwrap_or_default();
                        let mut evidence = Evidence::accounts(
                            std::iter::once(account.pk)
                                .chain(
                                    sharing
                                        .iter()
                                        .map(|&a| accounts[a as usize].pk)
                                        .filter(|&pk| pk != account.pk),
                                )
                                .collect::<Vec<_>>()
                                .into_iter(),
                        );
                        evidence.users.clear();
                        (Situation::AccountTaken, evidence)
                    }
                    Some(&holder) => (
                        Situation::AccountTaken,
                        Evidence {
                            accounts: vec![account.pk],
                            users: vec![users[holder as usize].pk],
                            total: 1,
                        },
                    ),
                    None => {
                        propose(*candidate, value);
                        (Situation::NewLink, Evidence::account(account.pk))
                    }
                },
            }
        }
    }
}

/// What the store found when it wrote one planned [`Change`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeResult {
    /// Written: the user's External ID still held what the plan saw.
    Applied,
    /// Someone else already wrote the same value.
    AlreadySet,
    /// The user's External ID changed since the plan saw it; nothing was overwritten.
    Changed { current: String },
    /// Another user took the value since the plan was made.
    Taken { holder_pk: i64 },
    /// The user was excluded since the plan was made.
    Excluded,
    /// The user no longer exists.
    Gone,
}

/// The outcome to record for a user once its change was attempted. A lost race is reported
/// as a conflict (or, when another user took the value, as `account_taken`), never retried
/// over the other writer.
pub fn settle(change: &Change, result: &ChangeResult) -> Option<Outcome> {
    let (situation, evidence) = match result {
        ChangeResult::Applied | ChangeResult::AlreadySet => {
            (Situation::Linked, Evidence::account(change.account_pk))
        }
        ChangeResult::Changed { .. } => (Situation::Conflict, Evidence::account(change.account_pk)),
        ChangeResult::Taken { holder_pk } => (
            Situation::AccountTaken,
            Evidence {
                accounts: vec![change.account_pk],
                users: vec![*holder_pk],
                total: 1,
            },
        ),
        ChangeResult::Excluded => (Situation::Excluded, Evidence::default()),
        ChangeResult::Gone => return None,
    };
    Some(Outcome {
        user_pk: change.user_pk,
        situation,
        evidence,
    })
}
