//! A Jira simulator for tests, demos and benchmarks, written from Atlassian's documented
//! request and response shapes:
//!
//! - Cloud: `GET /rest/api/3/users/search?startAt=&maxResults=` ("Get all users"): a bare
//!   array, `maxResults` default 50 and at most 1000, no total; basic auth (e-mail + API
//!   token). A hidden e-mail (profile visibility) is an absent `emailAddress`.
//! - Data Center: `GET /rest/api/2/user/search?username=&startAt=&maxResults=&includeActive=
//!   &includeInactive=`: `username` is required and matches the start of a username, an
//!   e-mail address or a display-name word, case-insensitively; `.` matches everyone. With the
//!   Jira 10 cap (default) a search only ever reaches its first 100 results
//!   (`startAt + maxResults` is cut at 100); without it (Jira 9) pages go up to 1000. Bearer
//!   personal access token.
//!
//! Faults on demand: a `429` with `Retry-After` on every Nth request (the rate-limit window
//! then answers `429` to every request until it ends, and counts those that came too early),
//! a `5xx` on every Mth request, and a latency per request.
//!
//! Accounts are generated deterministically from a seed (`generate_accounts`) or given
//! (`accounts_from_emails`, an accounts file through [`crate::file`]). The simulator keeps
//! its own notion of time for `Date`/`Retry-After` dates (a fixed epoch plus the time since
//! it started), so it never reads the wall clock.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tether_core::AccountType;
use tokio::time::Instant;

use crate::http::splitmix64;

/// Which Jira the simulator plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Cloud,
    DataCenter,
}

impl std::str::FromStr for Flavor {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cloud" => Ok(Flavor::Cloud),
            "dc" | "datacenter" | "data-center" => Ok(Flavor::DataCenter),
            other => Err(format!("unknown flavor '{other}': expected cloud or dc")),
        }
    }
}

/// One directory account as the simulator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimAccount {
    /// Cloud `accountId` (an AAID-like `557058:…`).
    pub account_id: String,
    /// DC `key` (`JIRAUSER…`).
    pub key: String,
    /// DC `name` (username).
    pub name: String,
    pub email: Option<String>,
    /// Cloud hides the e-mail (profile visibility); DC always shows it.
    pub email_hidden: bool,
    pub display_name: String,
    pub active: bool,
    pub account_type: AccountType,
}

/// The quirks `generate_accounts` puts in, by index `i` (0-based), when `quirks` is on:
/// - `i % 50 == 13`: an `app` account (no e-mail, display name "Automation for Jira i");
/// - `i % 50 == 29`: a `customer` account (e-mail `customer{i}@customers.example.net`);
/// - `i % 20 == 7` (and a person): e-mail hidden on Cloud;
/// - `i % 25 == 3`: inactive;
/// - `i % 10 == 1`: e-mail in mixed case, `User{i}@Example.COM`.
///
/// Everyone else is an active `atlassian` account `user{i}@example.com`, username `user{i}`,
/// key `JIRAUSER{10000+i}`, display name from a list of names.
pub fn generate_accounts(count: usize, seed: u64, quirks: bool) -> Vec<SimAccount> {
    (0..count)
        .map(|i| {
            let mut account = plain_account(i, seed, format!("user{i}@example.com"));
            if quirks {
                apply_quirks(&mut account, i);
            }
            account
        })
        .collect()
}

/// One account per address, in order (index as in [`generate_accounts`]).
pub fn accounts_from_emails(emails: &[String], seed: u64, quirks: bool) -> Vec<SimAccount> {
    emails
        .iter()
        .enumerate()
        .map(|(i, email)| {
            let mut account = plain_account(i, seed, email.clone());
            if quirks {
                apply_quirks(&mut account, i);
                if account.email.is_some() && account.account_type != AccountType::Customer {
                    account.email = Some(email.clone());
                }
            }
            account
        })
        .collect()
}

/// Accounts from an accounts file (DESIGN §5 header). `username` and `key` default to
/// `user{i}` and `JIRAUSER{10000+i}` when empty.
pub fn accounts_from_file(path: &std::path::Path) -> Result<Vec<SimAccount>, crate::SourceError> {
    let rows = crate::file::read_accounts_file(path)?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| SimAccount {
            key: row.key.unwrap_or_else(|| format!("JIRAUSER{}", 10_000 + i)),
            name: row.username.unwrap_or_else(|| format!("user{i}")),
            account_id: row.account_id,
            email: row.email,
            email_hidden: false,
            display_name: row.display_name,
            active: row.active,
            account_type: row.account_type,
        })
        .collect())
}

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Niklaus",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Linus",
    "Sophie",
    "Dennis",
    "Anita",
    "Guido",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Backus",
    "Johnson",
    "Torvalds",
    "Wilson",
    "Ritchie",
    "Borg",
    "van Rossum",
];

fn plain_account(i: usize, seed: u64, email: String) -> SimAccount {
    let a = splitmix64(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let b = splitmix64(a);
    let account_id = format!(
        "557058:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    );
    let first = FIRST_NAMES[(b % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[((b >> 8) % LAST_NAMES.len() as u64) as usize];
    SimAccount {
        account_id,
        key: format!("JIRAUSER{}", 10_000 + i),
        name: format!("user{i}"),
        email: Some(email),
        email_hidden: false,
        display_name: format!("{first} {last}"),
        active: true,
        account_type: AccountType::Atlassian,
    }
}

fn apply_quirks(account: &mut SimAccount, i: usize) {
    if i % 50 == 13 {
        account.account_type = AccountType::App;
        account.email = None;
        account.display_name = format!("Automation for Jira {i}");
    } else if i % 50 == 29 {
        account.account_type = AccountType::Customer;
        account.email = Some(format!("customer{i}@customers.example.net"));
    } else if i % 20 == 7 {
        account.email_hidden = true;
    }
    if i % 25 == 3 {
        account.active = false;
    }
    if i % 10 == 1 && account.account_type == AccountType::Atlassian {
        account.email = Some(format!("User{i}@Example.COM"));
    }
}

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub flavor: Flavor,
    pub accounts: Vec<SimAccount>,
    /// Waited before answering each request.
    pub latency: Duration,
    /// Cloud basic-auth user.
    pub user: String,
    /// Cloud API token, DC personal access token.
    pub token: String,
    /// DC: the Jira 10 cap on one search's results; `None` plays Jira 9.
    pub search_cap: Option<usize>,
    /// Every Nth request is answered `429`.
    pub rate_limit_every: Option<u64>,
    /// The `Retry-After` of a `429`, seconds.
    pub retry_after_seconds: u64,
    /// Send `Retry-After` as an HTTP date (with a `Date` header) instead of seconds.
    pub retry_after_as_date: bool,
    /// Every Mth request is answered `503`.
    pub server_error_every: Option<u64>,
}

impl SimConfig {
    pub fn new(flavor: Flavor, accounts: Vec<SimAccount>) -> Self {
        SimConfig {
            flavor,
            accounts,
            latency: Duration::ZERO,
            user: "sim@example.com".to_owned(),
            token: "sim-token".to_owned(),
            search_cap: match flavor {
                Flavor::Cloud => None,
                Flavor::DataCenter => Some(100),
            },
            rate_limit_every: None,
            retry_after_seconds: 1,
            retry_after_as_date: false,
            server_error_every: None,
        }
    }
}

/// What the simulator has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    pub requests: u64,
    /// Answered with users.
    pub served: u64,
    pub unauthorized: u64,
    pub rate_limited: u64,
    /// Requests that came while a `Retry-After` window was still open.
    pub early_retries: u64,
    pub server_errors: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    served: AtomicU64,
    unauthorized: AtomicU64,
    rate_limited: AtomicU64,
    early_retries: AtomicU64,
    server_errors: AtomicU64,
}

struct Shared {
    config: SimConfig,
    counters: Counters,
    /// DC: the accounts sorted by username (the order searches answer in).
    by_name: Vec<usize>,
    /// DC: the position of each account in `by_name`.
    rank: Vec<usize>,
    /// DC: every searchable token (username, e-mail, display-name word), lower-cased and
    /// sorted, with its account, so that a prefix search is a range of this list.
    tokens: Vec<(String, usize)>,
    started: Instant,
    rate_limited_until: Mutex<Option<Instant>>,
    basic: String,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Simulator {
    /// Serves on `127.0.0.1:0`.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(config: SimConfig, listen: SocketAddr) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let mut by_name: Vec<usize> = (0..config.accounts.len()).collect();
        by_name.sort_by(|&a, &b| {
            config.accounts[a]
                .name
                .to_lowercase()
                .cmp(&config.accounts[b].name.to_lowercase())
        });
        let mut rank = vec![0; by_name.len()];
        for (position, &index) in by_name.iter().enumerate() {
            rank[index] = position;
        }
        let mut tokens: Vec<(String, usize)> = Vec::new();
        for (index, account) in config.accounts.iter().enumerate() {
            tokens.push((account.name.to_lowercase(), index));
            if let Some(email) = &account.email {
                tokens.push((email.to_lowercase(), index));
            }
            for word in account.display_name.split_whitespace() {
                tokens.push((word.to_lowercase(), index));
            }
        }
        tokens.sort_unstable();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", config.user, config.token))
        );
        let shared = Arc::new(Shared {
            config,
            counters: Counters::default(),
            rank,
            tokens,
            by_name,
            started: Instant::now(),
            rate_limited_until: Mutex::new(None),
            basic,
        });
        let app = Router::new()
            .route("/rest/api/3/users/search", get(cloud_users))
            .route("/rest/api/2/user/search", get(dc_users))
            .with_state(shared.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Simulator {
            url: format!("http://{address}"),
            shared,
            shutdown: Some(shutdown),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (the source's `base_url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> SimStats {
        let c = &self.shared.counters;
        SimStats {
            requests: c.requests.load(Ordering::Relaxed),
            served: c.served.load(Ordering::Relaxed),
            unauthorized: c.unauthorized.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            early_retries: c.early_retries.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

type Params = Query<HashMap<String, String>>;

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "errorMessages": [message], "errors": {} })),
    )
        .into_response()
}

/// Latency, authentication and faults, in the order a real gateway applies them. `Some` is
/// the answer to send instead of the users.
async fn gate(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let c = &shared.counters;
    let n = c.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authorized = match shared.config.flavor {
        Flavor::Cloud => authorization == shared.basic,
        Flavor::DataCenter => {
            authorization.strip_prefix("Bearer ") == Some(shared.config.token.as_str())
        }
    };
    if !authorized {
        c.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "You are not authenticated. Authentication required to perform this operation.",
        ));
    }
    let now = Instant::now();
    let open_window = shared
        .rate_limited_until
        .lock()
        .ok()
        .and_then(|until| *until)
        .filter(|until| *until > now);
    if let Some(until) = open_window {
        c.early_retries.fetch_add(1, Ordering::Relaxed);
        c.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Some(too_many(shared, until - now));
    }
    if shared
        .config
        .rate_limit_every
        .is_some_and(|every| every > 0 && n.is_multiple_of(every))
    {
        let wait = Duration::from_secs(shared.config.retry_after_seconds);
        if let Ok(mut until) = shared.rate_limited_until.lock() {
            *until = Some(now + wait);
        }
        c.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Some(too_many(shared, wait));
    }
    if shared
        .config
        .server_error_every
        .is_some_and(|every| every > 0 && n.is_multiple_of(every))
    {
        c.server_errors.fetch_add(1, Ordering::Relaxed);
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable (simulated).",
        ));
    }
    None
}

fn too_many(shared: &Shared, wait: Duration) -> Response {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded.");
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let headers = response.headers_mut();
    if shared.config.retry_after_as_date {
        // The simulator's clock: a fixed epoch plus the time since it started.
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let now = epoch + Duration::from_secs(shared.started.elapsed().as_secs());
        let at = now + Duration::from_secs(seconds + 1);
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
            headers.insert(header::DATE, value);
        }
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
            headers.insert(header::RETRY_AFTER, value);
        }
    } else {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// `startAt` and `maxResults`, or the `400` to answer.
fn paging(params: &Params, default_max: usize) -> Result<(usize, usize), Box<Response>> {
    let number = |name: &str, default: usize| match params.get(name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                &format!("The {name} parameter must be a non-negative number, not '{text}'."),
            ))
        }),
    };
    Ok((number("startAt", 0)?, number("maxResults", default_max)?))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudUser<'a> {
    #[serde(rename = "self")]
    self_url: String,
    account_id: &'a str,
    account_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_address: Option<&'a str>,
    display_name: &'a str,
    active: bool,
    locale: &'static str,
}

async fn cloud_users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    if shared.config.flavor != Flavor::Cloud {
        return error(
            StatusCode::NOT_FOUND,
            "Not found (this simulator plays Jira Data Center).",
        );
    }
    if let Some(refusal) = gate(&shared, &headers).await {
        return refusal;
    }
    let (start_at, max_results) = match paging(&params, 50) {
        Ok((s, m)) => (s, m.min(1000)),
        Err(e) => return *e,
    };
    let accounts = &shared.config.accounts;
    let end = start_at.saturating_add(max_results).min(accounts.len());
    let page: Vec<CloudUser<'_>> = accounts
        .get(start_at.min(end)..end)
        .unwrap_or(&[])
        .iter()
        .map(|a| CloudUser {
            self_url: format!("/rest/api/3/user?accountId={}", a.account_id),
            account_id: &a.account_id,
            account_type: a.account_type.as_str(),
            email_address: if a.email_hidden {
                None
            } else {
                a.email.as_deref()
            },
            display_name: &a.display_name,
            active: a.active,
            locale: "en_US",
        })
        .collect();
    shared.counters.served.fetch_add(1, Ordering::Relaxed);
    Json(page).into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DcUser<'a> {
    #[serde(rename = "self")]
    self_url: String,
    key: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_address: Option<&'a str>,
    display_name: &'a str,
    active: bool,
    deleted: bool,
    time_zone: &'static str,
    locale: &'static str,
}

impl Shared {
    /// DC: the accounts a `username` search matches, in username order: those with a
    /// username, e-mail or display-name word starting with `query` (lower case); `.` matches
    /// everyone.
    fn dc_search(&self, query: &str) -> Vec<usize> {
        if query == "." {
            return self.by_name.clone();
        }
        let start = self
            .tokens
            .partition_point(|(token, _)| token.as_str() < query);
        let mut hits: Vec<usize> = self.tokens[start..]
            .iter()
            .take_while(|(token, _)| token.starts_with(query))
            .map(|&(_, index)| index)
            .collect();
        hits.sort_unstable_by_key(|&index| self.rank[index]);
        hits.dedup();
        hits
    }
}

async fn dc_users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    if shared.config.flavor != Flavor::DataCenter {
        return error(
            StatusCode::NOT_FOUND,
            "Not found (this simulator plays Jira Cloud).",
        );
    }
    if let Some(refusal) = gate(&shared, &headers).await {
        return refusal;
    }
    let Some(query) = params.get("username").filter(|q| !q.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The username query parameter was not provided",
        );
    };
    let query = query.to_lowercase();
    let flag = |name: &str, default: bool| match params.get(name).map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        _ => default,
    };
    let include_active = flag("includeActive", true);
    let include_inactive = flag("includeInactive", false);
    let (start_at, max_results) = match paging(&params, 50) {
        Ok(paging) => paging,
        Err(e) => return *e,
    };
    let (max_results, reach) = match shared.config.search_cap {
        Some(cap) => (max_results.min(cap), cap),
        None => (max_results.min(1000), usize::MAX),
    };
    let end = start_at.saturating_add(max_results).min(reach);
    let accounts = &shared.config.accounts;
    let page: Vec<DcUser<'_>> = shared
        .dc_search(&query)
        .into_iter()
        .map(|i| &accounts[i])
        .filter(|a| {
            if a.active {
                include_active
            } else {
                include_inactive
            }
        })
        .take(end)
        .skip(start_at)
        .map(|a| DcUser {
            self_url: format!("/rest/api/2/user?username={}", a.name),
            key: &a.key,
            name: &a.name,
            email_address: a.email.as_deref(),
            display_name: &a.display_name,
            active: a.active,
            deleted: false,
            time_zone: "Europe/Berlin",
            locale: "en_US",
        })
        .collect();
    shared.counters.served.fetch_add(1, Ordering::Relaxed);
    Json(page).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_has_quirks() {
        let a = generate_accounts(100, 7, true);
        assert_eq!(a, generate_accounts(100, 7, true));
        assert_ne!(a[0].account_id, generate_accounts(1, 8, true)[0].account_id);
        assert!(a[0].account_id.starts_with("557058:"));
        assert_eq!(a[13].account_type, AccountType::App);
        assert_eq!(a[29].account_type, AccountType::Customer);
        assert!(a[7].email_hidden);
        assert!(!a[3].active);
        assert_eq!(a[11].email.as_deref(), Some("User11@Example.COM"));
        assert_eq!(a[0].email.as_deref(), Some("user0@example.com"));
    }

    #[tokio::test]
    async fn dc_search_matches_prefixes_of_name_email_and_words() {
        let mut accounts = generate_accounts(3, 1, false);
        accounts[1].display_name = "Zoë Example".to_owned();
        accounts[2].email = Some("Someone@Example.com".to_owned());
        let sim = Simulator::start(SimConfig::new(Flavor::DataCenter, accounts))
            .await
            .unwrap();
        let search = |q: &str| sim.shared.dc_search(q);
        assert_eq!(search("."), [0, 1, 2]);
        assert_eq!(search("user0"), [0]);
        assert_eq!(search("user"), [0, 1, 2]);
        assert_eq!(search("ser"), Vec::<usize>::new());
        assert_eq!(search("zoë"), [1]);
        assert_eq!(search("exa"), [1]);
        assert_eq!(search("someone@"), [2]);
    }
}
