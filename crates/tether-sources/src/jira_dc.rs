//! Jira Data Center: `GET /rest/api/2/user/search?username=…` with a personal access token
//! (bearer).
//!
//! The search matches the start of a username, an e-mail address or a word of the display
//! name, case-insensitively; `username=.` matches everyone. Jira 9 pages with
//! `startAt`/`maxResults` (up to 1000). Jira 10 caps every search at its first 100 results
//! (`startAt + maxResults` is cut at 100; JRASERVER-78520, JRASERVER-78660), so one search
//! cannot list a larger directory. We page each search until a short page; a search that
//! ends with exactly 100 results is taken as capped and split by prefix: `.` into `a`, `b`,
//! …, `0`, …; a capped `ab` into `aba`, `abb`, … (the alphabet plus every character seen at
//! that position in the answers), until every search is short. The results overlap (one
//! user matches by username, e-mail and display name), so accounts are kept once by key.
//! A search still capped at the longest prefix we try makes the fetch incomplete, with a
//! warning naming it.
//!
//! Mapping: `key` → key and, by default, account_id (DC's immutable user key, e.g.
//! `JIRAUSER10100`; the username can be renamed); `account_id_attribute = name` uses the
//! username instead. `name` → username; `emailAddress`; `displayName`; `active`. DC has no
//! account types: every account is `unknown` (linkable).

use crate::connect::{base_url, defaults, invalid, secret, Defaults};
use crate::fetch::{non_blank, Fetch};
use crate::http::{Auth, Http};
use crate::{
    BoxFuture, FetchReport, NewAccount, PageSink, Secret, Source, SourceError, SourceSettings,
};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use tether_core::{AccountType, EmailNormalizer};

/// The most users Jira 9 returns per page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Jira 10's cap on the results of one search.
pub const SEARCH_CAP: usize = 100;
/// The longest prefix we search before giving up on a capped search.
pub const MAX_PREFIX_LENGTH: usize = 12;
/// Characters every split tries, besides those seen in the answers. The search is
/// case-insensitive, so lower case only.
const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789._-@+'";

/// Which field is the account ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DcAccountId {
    Key,
    Name,
}

#[derive(Debug)]
pub struct JiraDataCenter {
    url: String,
    http: Http,
    limits: Defaults,
    account_id: DcAccountId,
    search_cap: usize,
    max_prefix_length: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DcUser {
    key: Option<String>,
    name: Option<String>,
    email_address: Option<String>,
    display_name: Option<String>,
    active: Option<bool>,
}

/// What one search found out.
struct Searched {
    capped: bool,
    /// Characters seen right after the prefix in usernames, e-mails and display-name words.
    next_chars: BTreeSet<char>,
}

impl JiraDataCenter {
    pub fn new(
        settings: &SourceSettings,
        secret_value: Option<Secret>,
    ) -> Result<Self, SourceError> {
        let base = base_url(settings)?;
        let secret_value = secret(secret_value, "a Jira personal access token")?;
        let account_id = match settings.account_id_attribute.as_deref() {
            None | Some("key") => DcAccountId::Key,
            Some("name") | Some("username") => DcAccountId::Name,
            Some(other) => {
                return Err(invalid(
                    "account_id_attribute",
                    format!("'{other}' is not key or name"),
                ))
            }
        };
        let limits = defaults(settings, MAX_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let http = Http::new(Auth::Bearer(secret_value), limits.timeout)?;
        Ok(JiraDataCenter {
            url: format!("{base}/rest/api/2/user/search"),
            http,
            limits,
            account_id,
            search_cap: SEARCH_CAP,
            max_prefix_length: MAX_PREFIX_LENGTH,
        })
    }

    /// Gives up on prefixes longer than `length` (default [`MAX_PREFIX_LENGTH`]).
    pub fn with_max_prefix_length(mut self, length: usize) -> Self {
        self.max_prefix_length = length;
        self
    }

    /// Takes a search that ends with exactly `cap` results as capped (default
    /// [`SEARCH_CAP`]).
    pub fn with_search_cap(mut self, cap: usize) -> Self {
        self.search_cap = cap;
        self
    }

    /// Pages through one search, delivering its accounts.
    async fn search(
        &self,
        prefix: String,
        fetch: &Fetch<'_>,
    ) -> Result<(String, Searched), SourceError> {
        let query = if prefix.is_empty() {
            "."
        } else {
            prefix.as_str()
        };
        let size = self.limits.page_size as usize;
        let mut start_at = 0usize;
        let mut next_chars = BTreeSet::new();
        loop {
            fetch.check_cancel()?;
            let users: Vec<DcUser> = self
                .http
                .get_json(
                    &self.url,
                    &[
                        ("username", query.to_owned()),
                        ("startAt", start_at.to_string()),
                        ("maxResults", size.to_string()),
                        ("includeActive", "true".to_owned()),
                        ("includeInactive", "true".to_owned()),
                    ],
                    fetch.cancel(),
                )
                .await?;
            let count = users.len();
            for user in &users {
                note_next_chars(&prefix, user, &mut next_chars);
            }
            fetch.deliver(self.accounts(users, query, start_at, fetch))?;
            start_at += count;
            if count < size || count == 0 {
                let capped = start_at == self.search_cap;
                return Ok((prefix, Searched { capped, next_chars }));
            }
        }
    }

    async fn run(&self, fetch: &Fetch<'_>) -> Result<(), SourceError> {
        let mut queue: Vec<String> = vec![String::new()];
        let mut unreadable: Vec<String> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let mut searches = 0u64;
        loop {
            while in_flight.len() < self.limits.concurrency {
                let Some(prefix) = queue.pop() else { break };
                searches += 1;
                in_flight.push(self.search(prefix, fetch));
            }
            let Some(result) = in_flight.next().await else {
                break;
            };
            let (prefix, searched) = result?;
            if !searched.capped {
                continue;
            }
            if prefix.chars().count() >= self.max_prefix_length {
                unreadable.push(prefix);
                continue;
            }
            let mut next: BTreeSet<char> = ALPHABET.chars().collect();
            next.extend(searched.next_chars);
            // Reversed so that `pop` takes them in alphabetical order.
            for c in next.into_iter().rev() {
                let mut child = prefix.clone();
                child.push(c);
                queue.push(child);
            }
        }
        if searches > 1 {
            fetch.warn(format!(
                "The user search is capped at {} results (Jira 10), so the directory was read \
                 with {searches} searches by prefix.",
                self.search_cap
            ));
        }
        if !unreadable.is_empty() {
            let shown: Vec<String> = unreadable
                .iter()
                .take(5)
                .map(|p| format!("'{p}'"))
                .collect();
            fetch.incomplete(format!(
                "The directory could not be read completely: {} search{} still returned the \
                 {}-result cap at the longest prefix tried ({} characters): {}{}. Accounts not \
                 seen in this pull are not marked as gone.",
                unreadable.len(),
                if unreadable.len() == 1 { "" } else { "es" },
                self.search_cap,
                self.max_prefix_length,
                shown.join(", "),
                if unreadable.len() > 5 { ", …" } else { "" }
            ));
        }
        Ok(())
    }

    fn accounts(
        &self,
        users: Vec<DcUser>,
        query: &str,
        start_at: usize,
        fetch: &Fetch<'_>,
    ) -> Vec<NewAccount> {
        let mut normalizer = EmailNormalizer::new();
        let mut accounts = Vec::with_capacity(users.len());
        for (index, user) in users.into_iter().enumerate() {
            let key = non_blank(user.key);
            let name = non_blank(user.name);
            let account_id = match self.account_id {
                DcAccountId::Key => key.clone(),
                DcAccountId::Name => name.clone(),
            };
            let Some(account_id) = account_id else {
                fetch.skip(
                    match self.account_id {
                        DcAccountId::Key => "no key",
                        DcAccountId::Name => "no name (username)",
                    },
                    format!(
                        "record {} of the search '{query}' at startAt={start_at}",
                        index + 1
                    ),
                );
                continue;
            };
            let email = non_blank(user.email_address);
            let email_key = normalizer.key(email.as_deref()).key().map(str::to_owned);
            accounts.push(NewAccount {
                account_id,
                username: name,
                key,
                email,
                email_key,
                display_name: user.display_name.unwrap_or_default(),
                active: user.active.unwrap_or(true),
                account_type: AccountType::Unknown,
            });
        }
        accounts
    }
}

/// Adds the character after `prefix` in each lower-cased value that starts with it.
fn note_next_chars(prefix: &str, user: &DcUser, next: &mut BTreeSet<char>) {
    let mut values: Vec<String> = Vec::new();
    values.extend(user.name.iter().map(|v| v.to_lowercase()));
    values.extend(user.email_address.iter().map(|v| v.to_lowercase()));
    if let Some(display) = &user.display_name {
        values.extend(display.split_whitespace().map(str::to_lowercase));
    }
    for value in values {
        if let Some(rest) = value.strip_prefix(prefix) {
            if let Some(c) = rest.chars().next() {
                if !c.is_whitespace() && !c.is_control() {
                    next.insert(c);
                }
            }
        }
    }
}

impl Source for JiraDataCenter {
    fn fetch<'a>(
        &'a self,
        sink: PageSink<'a>,
        cancel: &'a AtomicBool,
    ) -> BoxFuture<'a, Result<FetchReport, SourceError>> {
        Box::pin(async move {
            self.http.stats.reset();
            let fetch = Fetch::new(sink, cancel);
            self.run(&fetch).await?;
            Ok(fetch.report(Some(&self.http)))
        })
    }
}
