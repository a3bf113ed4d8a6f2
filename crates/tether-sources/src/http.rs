//! GET with JSON answers, shared by the remote sources: authentication, per-request timeout,
//! retries with exponential back-off and jitter on 5xx and network errors, `429` honoured
//! with `Retry-After` (seconds or an HTTP date, RFC 9110 §10.2.3), and a pause shared by all
//! requests of a source once the remote asked us to slow down.
//!
//! Credentials go only into the `Authorization` header (marked sensitive); error messages name
//! the URL (which never holds a credential: `connect` refuses one in `base_url`) and never the
//! header.

use crate::{Secret, SourceError};
use reqwest::header::{HeaderMap, DATE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How a request authenticates.
pub(crate) enum Auth {
    Basic { user: String, secret: Secret },
    Bearer(Secret),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// Bounds of the retry loop.
#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    /// Attempts per request for 5xx and network errors (first try included).
    pub attempts: u32,
    /// Waits for `429` per request.
    pub rate_limit_waits: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this fails the fetch instead of waiting.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            rate_limit_waits: 20,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// Counters for the fetch report.
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    pub retried: AtomicU64,
    pub rate_limited: AtomicU64,
    pub requests: AtomicU64,
}

impl HttpStats {
    /// Zeroes the counters at the start of a fetch.
    pub fn reset(&self) {
        self.retried.store(0, Ordering::Relaxed);
        self.rate_limited.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    auth: Auth,
    policy: RetryPolicy,
    /// Set after a `429`: no request of this source starts before it.
    paused_until: Mutex<Option<tokio::time::Instant>>,
    jitter: AtomicU64,
    pub stats: HttpStats,
}

impl Http {
    pub fn new(auth: Auth, timeout: Duration) -> Result<Http, SourceError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Remote(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http {
            client,
            auth,
            policy: RetryPolicy::default(),
            paused_until: Mutex::new(None),
            jitter: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            stats: HttpStats::default(),
        })
    }

    /// GETs `url` with `query` and parses the JSON answer, retrying as the module says.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        query: &[(&str, String)],
        cancel: &AtomicBool,
    ) -> Result<T, SourceError> {
        let mut failures = 0u32;
        let mut rate_limit_waits = 0u32;
        loop {
            check_cancel(cancel)?;
            self.wait_for_pause(cancel).await?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let request = self.client.get(url).query(query);
            let request = match &self.auth {
                Auth::Basic { user, secret } => request.basic_auth(user, Some(&secret.0)),
                Auth::Bearer(secret) => request.bearer_auth(&secret.0),
            };
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        match response.bytes().await {
                            Ok(body) => {
                                return serde_json::from_slice(&body).map_err(|e| {
                                    SourceError::Remote(format!(
                                        "GET {url} answered JSON we cannot read: {e}"
                                    ))
                                })
                            }
                            Err(e) => format!("reading the answer of GET {url} failed: {e}"),
                        }
                    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
                    {
                        return Err(SourceError::Unauthorized(format!(
                            "GET {url} answered {status}; check the user and the token, and \
                             that the account may browse users"
                        )));
                    } else if status == StatusCode::TOO_MANY_REQUESTS {
                        rate_limit_waits += 1;
                        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        let wait = retry_after(response.headers())
                            .unwrap_or_else(|| self.backoff(rate_limit_waits));
                        if wait > self.policy.max_retry_after {
                            return Err(SourceError::Remote(format!(
                                "GET {url} is rate limited and asks to wait {} s, longer than \
                                 the {} s we accept; run the pull later",
                                wait.as_secs(),
                                self.policy.max_retry_after.as_secs()
                            )));
                        }
                        if rate_limit_waits > self.policy.rate_limit_waits {
                            return Err(SourceError::Remote(format!(
                                "GET {url} was still rate limited (429) after {} waits",
                                self.policy.rate_limit_waits
                            )));
                        }
                        self.pause(wait);
                        continue;
                    } else if status.is_server_error() {
                        format!("GET {url} answered {status}")
                    } else {
                        let body = response.text().await.unwrap_or_default();
                        let body: String = body.chars().take(300).collect();
                        return Err(SourceError::Remote(format!(
                            "GET {url} answered {status}: {body}"
                        )));
                    }
                }
                Err(e) => format!("GET {url} failed: {}", error_chain(&e)),
            };
            failures += 1;
            if failures >= self.policy.attempts {
                return Err(SourceError::Remote(format!(
                    "{failure} (gave up after {failures} attempts)"
                )));
            }
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            sleep_cancellable(self.backoff(failures), cancel).await?;
        }
    }

    /// Exponential back-off with "equal jitter": half fixed, half random.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .policy
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.policy.max_delay);
        let half = exponential / 2;
        let random = self.next_random() % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(random)
    }

    fn next_random(&self) -> u64 {
        splitmix64(
            self.jitter
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
        )
    }

    fn pause(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        if let Ok(mut paused) = self.paused_until.lock() {
            if paused.is_none_or(|p| p < until) {
                *paused = Some(until);
            }
        }
    }

    async fn wait_for_pause(&self, cancel: &AtomicBool) -> Result<(), SourceError> {
        let until = self.paused_until.lock().ok().and_then(|p| *p);
        if let Some(until) = until {
            let now = tokio::time::Instant::now();
            if until > now {
                sleep_cancellable(until - now, cancel).await?;
            }
        }
        Ok(())
    }
}

/// The wait a `429` asks for: `Retry-After` in seconds, or as an HTTP date measured against
/// the answer's own `Date` header (so our clock is never read, and clock skew between us and
/// the remote does not matter). `None` when absent or unreadable.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at: SystemTime = httpdate::parse_http_date(value).ok()?;
    let now: SystemTime = httpdate::parse_http_date(headers.get(DATE)?.to_str().ok()?).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

pub(crate) fn check_cancel(cancel: &AtomicBool) -> Result<(), SourceError> {
    if cancel.load(Ordering::Relaxed) {
        Err(SourceError::Cancelled)
    } else {
        Ok(())
    }
}

/// Sleeps `wait`, waking every 100 ms to see whether the fetch was cancelled.
pub(crate) async fn sleep_cancellable(
    wait: Duration,
    cancel: &AtomicBool,
) -> Result<(), SourceError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        check_cancel(cancel)?;
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT"),
        );
        assert_eq!(retry_after(&headers), None, "a date needs the Date header");
        headers.insert(
            DATE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(30)));
        headers.insert(
            DATE,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:29:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let http = Http::new(Auth::Bearer(Secret("x".into())), Duration::from_secs(1)).unwrap();
        for attempt in 1..30 {
            let wait = http.backoff(attempt);
            let full = Duration::from_millis(200)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(10));
            assert!(wait >= full / 2 && wait <= full, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let auth = Auth::Basic {
            user: "a@example.com".into(),
            secret: Secret("hunter2".into()),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let http = Http::new(auth, Duration::from_secs(1)).unwrap();
        assert!(!format!("{http:?}").contains("hunter2"));
    }
}
