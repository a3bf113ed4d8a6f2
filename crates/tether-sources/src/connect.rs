//! Turning a source's stored settings and secret into a [`Source`], with every setting checked
//! up front: a bad setting is an error naming the field, before any request is made.

use crate::{
    FileSource, JiraCloud, JiraDataCenter, ScimSource, Secret, Source, SourceError, SourceSettings,
    KINDS,
};
use std::time::Duration;

/// The effective knobs of a remote source after defaults and bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub page_size: u32,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// Default per-request timeout, seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 30;
/// Default number of requests in flight.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// At most this many requests in flight, whatever the settings say.
pub const MAX_CONCURRENCY: u32 = 32;

/// Builds the source of `kind` from its settings and secret.
///
/// Errors name the setting that is missing or invalid (`base_url`, `user`, `secret`, `path`,
/// `page_size`, `concurrency`, `timeout_seconds`, `account_id_attribute`, or `kind`).
pub fn connect(
    kind: &str,
    settings: &SourceSettings,
    secret: Option<Secret>,
) -> Result<Box<dyn Source>, SourceError> {
    Ok(match kind {
        "jira_cloud" => Box::new(JiraCloud::new(settings, secret)?),
        "jira_dc" => Box::new(JiraDataCenter::new(settings, secret)?),
        "scim" => Box::new(ScimSource::new(settings, secret)?),
        "file" => Box::new(FileSource::new(settings)?),
        other => {
            return Err(SourceError::Settings {
                field: "kind",
                message: format!(
                    "unknown source kind '{other}': expected one of {}",
                    KINDS.join(", ")
                ),
            })
        }
    })
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> SourceError {
    SourceError::Settings {
        field,
        message: message.into(),
    }
}

/// Page size, concurrency and timeout with defaults applied and bounds checked.
pub(crate) fn defaults(
    settings: &SourceSettings,
    default_page_size: u32,
    max_page_size: u32,
) -> Result<Defaults, SourceError> {
    let page_size = settings.page_size.unwrap_or(default_page_size);
    if page_size == 0 || page_size > max_page_size {
        return Err(invalid(
            "page_size",
            format!("{page_size} is out of range: use 1 to {max_page_size}"),
        ));
    }
    let concurrency = settings.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(invalid(
            "concurrency",
            format!("{concurrency} is out of range: use 1 to {MAX_CONCURRENCY}"),
        ));
    }
    let timeout = settings.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if timeout == 0 || timeout > 600 {
        return Err(invalid(
            "timeout_seconds",
            format!("{timeout} is out of range: use 1 to 600 seconds"),
        ));
    }
    Ok(Defaults {
        page_size,
        concurrency: concurrency as usize,
        timeout: Duration::from_secs(u64::from(timeout)),
    })
}

/// The base URL: required, http or https, no credentials in it, no query; returned without a
/// trailing slash.
pub(crate) fn base_url(settings: &SourceSettings) -> Result<String, SourceError> {
    let raw = settings
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("base_url", "is required"))?;
    let url = reqwest::Url::parse(raw)
        .map_err(|e| invalid("base_url", format!("'{raw}' is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("base_url", "must start with https:// (or http://)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL here: it holds a credential.
        return Err(invalid(
            "base_url",
            "must not contain a user name or password; put the token in the secret",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("base_url", "must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The secret: required and non-blank.
pub(crate) fn secret(secret: Option<Secret>, what: &str) -> Result<Secret, SourceError> {
    match secret {
        Some(secret) if !secret.0.trim().is_empty() => Ok(Secret(secret.0.trim().to_owned())),
        _ => Err(invalid("secret", format!("{what} is required"))),
    }
}
