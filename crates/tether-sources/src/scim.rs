//! A SCIM 2.0 client: `GET {base_url}/Users?startIndex=&count=` with a bearer token
//! (RFC 7644 §3.4.2.4: 1-based `startIndex`, `count`, a `ListResponse` with `totalResults`).
//!
//! The first page tells the total and how many records the server really returns per page
//! (servers may return fewer than `count`); the other pages are then fetched concurrently.
//! A page that comes back shorter than expected is continued from where it stopped, so a
//! server that returns fewer records than asked never leaves a gap. Without `totalResults`
//! we page one after another until an empty page.
//!
//! Mapping (RFC 7643 §4.1): account_id is `id` (default) or `externalId`
//! (`account_id_attribute`); `userName` → username; e-mail: the primary one, else the one of
//! type `work`, else the first; `displayName`, else `name.formatted`, else given and family
//! name; `active` (absent means active). SCIM has no account types: `unknown`.

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

pub const DEFAULT_PAGE_SIZE: u32 = 200;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimAccountId {
    Id,
    ExternalId,
}

#[derive(Debug)]
pub struct ScimSource {
    url: String,
    http: Http,
    limits: Defaults,
    account_id: ScimAccountId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    total_results: Option<u64>,
    #[serde(rename = "Resources", default)]
    resources: Vec<ScimUser>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimUser {
    id: Option<String>,
    external_id: Option<String>,
    user_name: Option<String>,
    display_name: Option<String>,
    name: Option<ScimName>,
    #[serde(default)]
    emails: Vec<ScimEmail>,
    active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimName {
    formatted: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
}

#[derive(Deserialize)]
struct ScimEmail {
    value: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    primary: Option<bool>,
}

impl ScimSource {
    pub fn new(
        settings: &SourceSettings,
        secret_value: Option<Secret>,
    ) -> Result<Self, SourceError> {
        let base = base_url(settings)?;
        let secret_value = secret(secret_value, "a SCIM bearer token")?;
        let account_id = match settings.account_id_attribute.as_deref() {
            None | Some("id") => ScimAccountId::Id,
            Some("externalId") => ScimAccountId::ExternalId,
            Some(other) => {
                return Err(invalid(
                    "account_id_attribute",
                    format!("'{other}' is not id or externalId"),
                ))
            }
        };
        let limits = defaults(settings, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let http = Http::new(Auth::Bearer(secret_value), limits.timeout)?;
        Ok(ScimSource {
            url: format!("{base}/Users"),
            http,
            limits,
            account_id,
        })
    }

    async fn page(
        &self,
        start_index: u64,
        expected: u64,
        fetch: &Fetch<'_>,
    ) -> Result<(u64, u64, ListResponse), SourceError> {
        fetch.check_cancel()?;
        let list: ListResponse = self
            .http
            .get_json(
                &self.url,
                &[
                    ("startIndex", start_index.to_string()),
                    ("count", expected.to_string()),
                ],
                fetch.cancel(),
            )
            .await?;
        Ok((start_index, expected, list))
    }

    async fn run(&self, fetch: &Fetch<'_>) -> Result<(), SourceError> {
        let size = u64::from(self.limits.page_size);
        let (_, _, first) = self.page(1, size, fetch).await?;
        let step = first.resources.len() as u64;
        let total = first.total_results;
        fetch.deliver(self.accounts(first.resources, 1, fetch))?;
        let Some(total) = total else {
            return self.run_without_total(1 + step, step, fetch).await;
        };
        if step == 0 {
            if total > 0 {
                fetch.incomplete(format!(
                    "The SCIM server announced {total} users but returned none."
                ));
            }
            return Ok(());
        }
        // Ranges still to read, as (startIndex, how many).
        let mut queue: Vec<(u64, u64)> = Vec::new();
        let mut start = 1 + step;
        while start <= total {
            queue.push((start, step.min(total - start + 1)));
            start += step;
        }
        queue.reverse();
        let mut in_flight = FuturesUnordered::new();
        let mut short = false;
        loop {
            while in_flight.len() < self.limits.concurrency {
                let Some((start, count)) = queue.pop() else {
                    break;
                };
                in_flight.push(self.page(start, count, fetch));
            }
            let Some(result) = in_flight.next().await else {
                break;
            };
            let (start, expected, list) = result?;
            let got = list.resources.len() as u64;
            fetch.deliver(self.accounts(list.resources, start, fetch))?;
            if got == 0 {
                short = true;
            } else if got < expected {
                queue.push((start + got, expected - got));
            }
        }
        if short {
            fetch.incomplete(format!(
                "The SCIM server announced {total} users but answered some pages with none \
                 (users removed during the pull?); accounts not seen are not marked as gone."
            ));
        }
        Ok(())
    }

    /// Pages one after another until an empty page (`totalResults` is required by RFC 7644
    /// §3.4.2, but a server without it must not make us stop early).
    async fn run_without_total(
        &self,
        mut start: u64,
        step: u64,
        fetch: &Fetch<'_>,
    ) -> Result<(), SourceError> {
        if step == 0 {
            return Ok(());
        }
        let size = u64::from(self.limits.page_size);
        loop {
            let (_, _, list) = self.page(start, size, fetch).await?;
            let got = list.resources.len() as u64;
            if got == 0 {
                return Ok(());
            }
            fetch.deliver(self.accounts(list.resources, start, fetch))?;
            start += got;
        }
    }

    fn accounts(&self, users: Vec<ScimUser>, start: u64, fetch: &Fetch<'_>) -> Vec<NewAccount> {
        let mut normalizer = EmailNormalizer::new();
        let mut accounts = Vec::with_capacity(users.len());
        for (index, user) in users.into_iter().enumerate() {
            let id = non_blank(user.id);
            let external_id = non_blank(user.external_id);
            let account_id = match self.account_id {
                ScimAccountId::Id => id.clone(),
                ScimAccountId::ExternalId => external_id,
            };
            let Some(account_id) = account_id else {
                let what = match self.account_id {
                    ScimAccountId::Id => "no id",
                    ScimAccountId::ExternalId => "no externalId",
                };
                let example = match (&id, &user.user_name) {
                    (Some(id), _) => format!("id {id}"),
                    (None, Some(name)) => format!("userName {name}"),
                    (None, None) => format!("record {}", start + index as u64),
                };
                fetch.skip(what, example);
                continue;
            };
            let email = pick_email(&user.emails);
            let email_key = normalizer.key(email.as_deref()).key().map(str::to_owned);
            let display_name = non_blank(user.display_name)
                .or_else(|| {
                    user.name
                        .as_ref()
                        .and_then(|n| non_blank(n.formatted.clone()))
                })
                .or_else(|| {
                    user.name.as_ref().and_then(|n| {
                        non_blank(Some(
                            [n.given_name.as_deref(), n.family_name.as_deref()]
                                .into_iter()
                                .flatten()
                                .collect::<Vec<_>>()
                                .join(" "),
                        ))
                    })
                })
                .unwrap_or_default();
            accounts.push(NewAccount {
                account_id,
                username: non_blank(user.user_name),
                key: None,
                email,
                email_key,
                display_name,
                active: user.active.unwrap_or(true),
                account_type: AccountType::Unknown,
            });
        }
        accounts
    }
}

/// The primary address, else the `work` one, else the first (RFC 7643 §4.1.2).
fn pick_email(emails: &[ScimEmail]) -> Option<String> {
    let with_value = || {
        emails
            .iter()
            .filter(|e| non_blank(e.value.clone()).is_some())
    };
    with_value()
        .find(|e| e.primary == Some(true))
        .or_else(|| with_value().find(|e| e.kind.as_deref() == Some("work")))
        .or_else(|| with_value().next())
        .and_then(|e| non_blank(e.value.clone()))
}

impl Source for ScimSource {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn email(value: &str, kind: Option<&str>, primary: Option<bool>) -> ScimEmail {
        ScimEmail {
            value: Some(value.into()),
            kind: kind.map(Into::into),
            primary,
        }
    }

    #[test]
    fn picks_primary_then_work_then_first() {
        let emails = [
            email("home@x.org", Some("home"), None),
            email("work@x.org", Some("work"), None),
            email("main@x.org", Some("other"), Some(true)),
        ];
        assert_eq!(pick_email(&emails).as_deref(), Some("main@x.org"));
        assert_eq!(pick_email(&emails[..2]).as_deref(), Some("work@x.org"));
        assert_eq!(pick_email(&emails[..1]).as_deref(), Some("home@x.org"));
        assert_eq!(pick_email(&[]), None);
        assert_eq!(
            pick_email(&[email(" ", None, Some(true)), email("b@x.org", None, None)]).as_deref(),
            Some("b@x.org")
        );
    }
}
