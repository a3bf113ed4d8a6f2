//! Jira Cloud: `GET /rest/api/3/users/search` ("Get all users"), basic auth with the e-mail
//! address of an API token's owner and the token.
//!
//! The answer is a bare JSON array of users with no total, at most 1000 a page, so we page
//! with `startAt`/`maxResults` until a short page. To use the latency, pages are requested
//! speculatively: up to `concurrency` offsets ahead are in flight at once, and no offset past
//! the first short page is requested.
//!
//! Mapping: `accountId` → account_id (the AAID); `accountType` → account_type (`atlassian`,
//! `app`, `customer`, anything else `unknown`); `emailAddress` → email (absent when the
//! user's profile visibility hides it); `displayName`; `active`. Cloud has no usernames or
//! keys.

use crate::connect::{base_url, defaults, invalid, secret, Defaults};
use crate::fetch::{non_blank, Fetch};
use crate::http::{Auth, Http};
use crate::{
    BoxFuture, FetchReport, NewAccount, PageSink, Secret, Source, SourceError, SourceSettings,
};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Deserialize;
use std::sync::atomic::AtomicBool;
use tether_core::{AccountType, EmailNormalizer};

/// The most users Cloud returns per page.
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Debug)]
pub struct JiraCloud {
    url: String,
    http: Http,
    limits: Defaults,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudUser {
    account_id: Option<String>,
    account_type: Option<String>,
    email_address: Option<String>,
    display_name: Option<String>,
    active: Option<bool>,
}

impl JiraCloud {
    pub fn new(
        settings: &SourceSettings,
        secret_value: Option<Secret>,
    ) -> Result<Self, SourceError> {
        let base = base_url(settings)?;
        let user = settings
            .user
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                invalid(
                    "user",
                    "is required: the e-mail address of the Atlassian account the API token belongs to",
                )
            })?
            .to_owned();
        let secret_value = secret(secret_value, "an Atlassian API token")?;
        if let Some(attribute) = settings.account_id_attribute.as_deref() {
            if attribute != "accountId" && attribute != "account_id" {
                return Err(invalid(
                    "account_id_attribute",
                    format!("Jira Cloud accounts are identified by accountId; '{attribute}' is not available"),
                ));
            }
        }
        let limits = defaults(settings, MAX_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let http = Http::new(
            Auth::Basic {
                user,
                secret: secret_value,
            },
            limits.timeout,
        )?;
        Ok(JiraCloud {
            url: format!("{base}/rest/api/3/users/search"),
            http,
            limits,
        })
    }

    async fn page(
        &self,
        start_at: u64,
        cancel: &AtomicBool,
    ) -> Result<(u64, Vec<CloudUser>), SourceError> {
        let users: Vec<CloudUser> = self
            .http
            .get_json(
                &self.url,
                &[
                    ("startAt", start_at.to_string()),
                    ("maxResults", self.limits.page_size.to_string()),
                ],
                cancel,
            )
            .await?;
        Ok((start_at, users))
    }

    async fn run(&self, fetch: &Fetch<'_>) -> Result<(), SourceError> {
        let size = u64::from(self.limits.page_size);
        let mut next = 0u64;
        let mut end: Option<u64> = None;
        let mut in_flight = FuturesUnordered::new();
        loop {
            while end.is_none() && in_flight.len() < self.limits.concurrency {
                fetch.check_cancel()?;
                in_flight.push(self.page(next, fetch.cancel()));
                next += size;
            }
            let Some(result) = in_flight.next().await else {
                return Ok(());
            };
            let (start_at, users) = result?;
            if (users.len() as u64) < size {
                end = Some(end.map_or(start_at, |e| e.min(start_at)));
            }
            fetch.deliver(self.accounts(users, start_at, fetch))?;
        }
    }

    fn accounts(&self, users: Vec<CloudUser>, start_at: u64, fetch: &Fetch<'_>) -> Vec<NewAccount> {
        let mut normalizer = EmailNormalizer::new();
        let mut accounts = Vec::with_capacity(users.len());
        for (index, user) in users.into_iter().enumerate() {
            let Some(account_id) = non_blank(user.account_id) else {
                fetch.skip(
                    "no accountId",
                    format!("record {} of the page at startAt={start_at}", index + 1),
                );
                continue;
            };
            let email = non_blank(user.email_address);
            let email_key = normalizer.key(email.as_deref()).key().map(str::to_owned);
            let account_type = match user.account_type.as_deref() {
                Some("atlassian") => AccountType::Atlassian,
                Some("app") => AccountType::App,
                Some("customer") => AccountType::Customer,
                _ => AccountType::Unknown,
            };
            accounts.push(NewAccount {
                account_id,
                username: None,
                key: None,
                email,
                email_key,
                display_name: user.display_name.unwrap_or_default(),
                active: user.active.unwrap_or(true),
                account_type,
            });
        }
        accounts
    }
}

impl Source for JiraCloud {
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
