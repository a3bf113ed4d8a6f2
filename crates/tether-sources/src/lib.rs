//! tether-sources: reads accounts from an identity platform's directory.
//!
//! Four kinds: Jira Cloud REST, Jira Data Center REST, any SCIM 2.0 server, and a CSV/JSON
//! Lines file. Each turns the remote records into [`NewAccount`]s (with match keys from
//! `tether-core`) and hands them over page by page. A source knows HTTP and the remote
//! formats; it knows nothing of the store's SQL, of jobs or of linking, and never reads the
//! wall clock: timeouts, back-off and the pause after a `429` use tokio's monotonic timer,
//! and a `Retry-After` date is measured against the answer's own `Date` header.
//!
//! Entry point: [`connect`] (settings checked up front, errors name the field), then
//! [`Source::fetch`]. A job counts progress in its sink ([`ProgressCounter`]). The
//! [`simulator`] module (and the `jira-sim` binary) play Jira Cloud and Data Center for
//! tests, demos and benchmarks.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
pub use tether_store::NewAccount;

mod connect;
mod fetch;
pub mod file;
mod http;
pub mod jira_cloud;
pub mod jira_dc;
pub mod scim;
pub mod simulator;

pub use connect::{
    connect, Defaults, DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT_SECONDS, MAX_CONCURRENCY,
};
pub use file::FileSource;
pub use jira_cloud::JiraCloud;
pub use jira_dc::JiraDataCenter;
pub use scim::ScimSource;

/// The kinds of source, as stored in `sources.kind`.
pub const KINDS: &[&str] = &["jira_cloud", "jira_dc", "scim", "file"];

/// A source's connection settings: everything but the secret. Stored as JSON on the source,
/// shown in the UI and the API. Fields a kind does not use are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    /// Jira site or SCIM base URL, e.g. `https://example.atlassian.net` or
    /// `https://idp.example.com/scim/v2`.
    pub base_url: Option<String>,
    /// Jira Cloud: the e-mail address the API token belongs to (basic auth user).
    pub user: Option<String>,
    /// Which attribute of a remote record is the account ID. SCIM: `id` (default) or
    /// `externalId`. Jira Data Center: `key` (default: DC's immutable user key, e.g.
    /// `JIRAUSER10100`) or `name` (the username, which an admin can rename). Jira Cloud always
    /// uses `accountId` and refuses any other value.
    pub account_id_attribute: Option<String>,
    /// File: the path of a CSV or JSON Lines accounts file (DESIGN §5 header).
    pub path: Option<String>,
    /// Records per page requested (bounded by what the API allows).
    pub page_size: Option<u32>,
    /// Pages fetched at once where the API allows it.
    pub concurrency: Option<u32>,
    /// Per-request timeout, seconds.
    pub timeout_seconds: Option<u32>,
}

/// A credential: a Jira API token, a Data Center personal access token, a SCIM bearer token.
/// Never printed: `Debug` shows `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A page of accounts as fetched.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub accounts: Vec<NewAccount>,
}

/// Progress of a fetch, reported after every page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FetchProgress {
    pub pages: u64,
    pub accounts: u64,
}

/// What a whole fetch saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchReport {
    pub pages: u64,
    pub accounts: u64,
    /// False when part of the directory could not be read (e.g. a Data Center search cap
    /// that could not be worked around): accounts not seen must then not be marked unseen.
    pub complete: bool,
    /// Plain sentences for the job report: records skipped and why, caps hit, retries.
    pub warnings: Vec<String>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The settings are unusable; names the field.
    #[error("{field}: {message}")]
    Settings {
        field: &'static str,
        message: String,
    },
    /// The remote refused our credentials (401/403).
    #[error("the source refused the credentials: {0}")]
    Unauthorized(String),
    /// Network errors or 5xx after all retries, or an answer that does not parse.
    #[error("{0}")]
    Remote(String),
    /// A local file could not be read or has bad rows (line and column named).
    #[error("{0}")]
    File(String),
    #[error("cancelled")]
    Cancelled,
}

/// Receives pages as they arrive, in any order. Returning an error stops the fetch.
pub type PageSink<'a> = &'a (dyn Fn(Page) -> Result<(), SourceError> + Send + Sync);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A directory to read accounts from.
pub trait Source: Send + Sync {
    /// Fetches every account, calling `sink` once per page, and checks `cancel` between
    /// pages (answering [`SourceError::Cancelled`] once it is set).
    fn fetch<'a>(
        &'a self,
        sink: PageSink<'a>,
        cancel: &'a AtomicBool,
    ) -> BoxFuture<'a, Result<FetchReport, SourceError>>;
}

/// Counts pages and accounts as a sink sees them, for a job's live progress: call
/// [`ProgressCounter::record`] in the sink and [`ProgressCounter::get`] from anywhere.
#[derive(Debug, Default)]
pub struct ProgressCounter {
    pages: AtomicU64,
    accounts: AtomicU64,
}

impl ProgressCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one page; returns the progress including it.
    pub fn record(&self, page: &Page) -> FetchProgress {
        let pages = self.pages.fetch_add(1, Ordering::Relaxed) + 1;
        let accounts = self
            .accounts
            .fetch_add(page.accounts.len() as u64, Ordering::Relaxed)
            + page.accounts.len() as u64;
        FetchProgress { pages, accounts }
    }

    pub fn get(&self) -> FetchProgress {
        FetchProgress {
            pages: self.pages.load(Ordering::Relaxed),
            accounts: self.accounts.load(Ordering::Relaxed),
        }
    }
}
