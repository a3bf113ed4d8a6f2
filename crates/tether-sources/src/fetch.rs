//! What every fetch shares: handing pages to the sink (each account once), counting, the
//! warnings for the report, and checking for cancellation between pages.

use crate::http::{check_cancel, Http};
use crate::{FetchReport, NewAccount, Page, PageSink, SourceError};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub(crate) struct Fetch<'a> {
    sink: PageSink<'a>,
    cancel: &'a AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: HashSet<String>,
    pages: u64,
    accounts: u64,
    duplicates: u64,
    /// Skipped records: reason → (count, first few examples).
    skipped: BTreeMap<String, (u64, Vec<String>)>,
    warnings: Vec<String>,
    complete: bool,
}

impl<'a> Fetch<'a> {
    pub fn new(sink: PageSink<'a>, cancel: &'a AtomicBool) -> Self {
        Fetch {
            sink,
            cancel,
            state: Mutex::new(State {
                complete: true,
                ..State::default()
            }),
        }
    }

    pub fn cancel(&self) -> &'a AtomicBool {
        self.cancel
    }

    pub fn check_cancel(&self) -> Result<(), SourceError> {
        check_cancel(self.cancel)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock is impossible (no user code runs under it), but a
        // poisoned lock still holds consistent counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a record that was not turned into an account. `example` names it (never a
    /// secret: remote records hold none).
    pub fn skip(&self, reason: &str, example: String) {
        let mut state = self.state();
        let entry = state.skipped.entry(reason.to_owned()).or_default();
        entry.0 += 1;
        if entry.1.len() < 3 {
            entry.1.push(example);
        }
    }

    pub fn warn(&self, sentence: String) {
        self.state().warnings.push(sentence);
    }

    /// The directory could not be read completely: accounts not seen must not be marked unseen.
    pub fn incomplete(&self, sentence: String) {
        let mut state = self.state();
        state.complete = false;
        state.warnings.push(sentence);
    }

    /// Hands the accounts not seen before to the sink as one page, then checks for
    /// cancellation. An empty page is not handed over.
    pub fn deliver(&self, accounts: Vec<NewAccount>) -> Result<(), SourceError> {
        let fresh: Vec<NewAccount> = {
            let mut state = self.state();
            let before = accounts.len();
            let fresh: Vec<NewAccount> = accounts
                .into_iter()
                .filter(|a| state.seen.insert(a.account_id.clone()))
                .collect();
            state.duplicates += (before - fresh.len()) as u64;
            if !fresh.is_empty() {
                state.pages += 1;
                state.accounts += fresh.len() as u64;
            }
            fresh
        };
        if !fresh.is_empty() {
            (self.sink)(Page { accounts: fresh })?;
        }
        self.check_cancel()
    }

    pub fn report(self, http: Option<&Http>) -> FetchReport {
        let state = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut warnings = Vec::new();
        for (reason, (count, examples)) in &state.skipped {
            warnings.push(format!(
                "{count} record{} skipped: {reason} (e.g. {}).",
                if *count == 1 { " was" } else { "s were" },
                examples.join("; ")
            ));
        }
        if state.duplicates > 0 {
            warnings.push(format!(
                "{} records came twice (the directory changed during the pull, or searches \
                 overlapped); each account was kept once.",
                state.duplicates
            ));
        }
        if let Some(http) = http {
            let retried = http.stats.retried.load(Ordering::Relaxed);
            let limited = http.stats.rate_limited.load(Ordering::Relaxed);
            if retried > 0 {
                warnings.push(format!(
                    "{retried} request{} retried after a server error or network error.",
                    if retried == 1 { " was" } else { "s were" }
                ));
            }
            if limited > 0 {
                warnings.push(format!(
                    "The directory asked us to slow down (429) {limited} time{}; we waited as \
                     asked.",
                    if limited == 1 { "" } else { "s" }
                ));
            }
        }
        warnings.extend(state.warnings);
        FetchReport {
            pages: state.pages,
            accounts: state.accounts,
            complete: state.complete,
            warnings,
        }
    }
}

/// A trimmed, non-empty string, or `None`.
pub(crate) fn non_blank(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}
