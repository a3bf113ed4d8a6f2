//! OpenID Connect configuration: where it comes from (a JSON file named by
//! `TETHER_OIDC_CONFIG`, then `TETHER_OIDC_*` environment variables, which win), and its
//! validation. The client secret is write-only: it is never printed, logged or serialized.

use serde::Deserialize;
use std::fmt;

/// The relying party's configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    /// Write-only: never shown.
    pub client_secret: Option<String>,
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// Which claim's value is the account ID written into External ID.
    pub account_id_claim: String,
    pub admin: AdminRule,
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<set>"),
            )
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("account_id_claim", &self.account_id_claim)
            .field("admin", &self.admin)
            .finish()
    }
}

/// Who gets the admin UI after signing in (any rule that matches).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminRule {
    /// A claim name and the value it must be or contain (e.g. `groups` contains `tether-admins`).
    pub claim: Option<(String, String)>,
    /// Account IDs.
    pub subjects: Vec<String>,
    /// E-mail match keys (only a verified e-mail counts).
    pub emails: Vec<String>,
}

/// A configuration that cannot be used, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OpenID Connect setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

fn error(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

/// The JSON file's shape (every key optional; the environment fills or overrides).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_url: Option<String>,
    scopes: Option<Vec<String>>,
    account_id_claim: Option<String>,
    admin_claim: Option<String>,
    admin_subjects: Option<Vec<String>>,
    admin_emails: Option<Vec<String>>,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl OidcConfig {
    /// Reads the configuration from `lookup` (the environment, in production); the redirect
    /// URL defaults to `default_redirect` (the server's public URL + `/auth/callback`).
    /// `Ok(None)` when no issuer is configured: sign-in through OpenID Connect is off.
    pub fn load(
        lookup: impl Fn(&str) -> Option<String>,
        default_redirect: Option<&str>,
    ) -> Result<Option<OidcConfig>, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let file = match get("TETHER_OIDC_CONFIG") {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| error("TETHER_OIDC_CONFIG", format!("{path}: {e}")))?;
                serde_json::from_str(&text)
                    .map_err(|e| error("TETHER_OIDC_CONFIG", format!("{path}: {e}")))?
            }
        };
        let Some(issuer) = get("TETHER_OIDC_ISSUER").or(file.issuer) else {
            return Ok(None);
        };
        let admin_claim = get("TETHER_OIDC_ADMIN_CLAIM").or(file.admin_claim);
        let claim = match admin_claim {
            None => None,
            Some(text) => match text.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
                    Some((name.trim().to_owned(), value.trim().to_owned()))
                }
                _ => {
                    return Err(error(
                        "TETHER_OIDC_ADMIN_CLAIM",
                        format!("'{text}' is not NAME=VALUE (e.g. groups=tether-admins)"),
                    ))
                }
            },
        };
        let mut emails = Vec::new();
        for email in get("TETHER_OIDC_ADMIN_EMAILS")
            .map(|v| list(&v))
            .or(file.admin_emails)
            .unwrap_or_default()
        {
            match tether_core::match_key(Some(&email)) {
                tether_core::EmailKey::Valid(key) => emails.push(key),
                _ => {
                    return Err(error(
                        "TETHER_OIDC_ADMIN_EMAILS",
                        format!("'{email}' is not a valid e-mail address"),
                    ))
                }
            }
        }
        let config = OidcConfig {
            issuer: issuer.trim().to_owned(),
            client_id: get("TETHER_OIDC_CLIENT_ID")
                .or(file.client_id)
                .unwrap_or_default(),
            client_secret: get("TETHER_OIDC_CLIENT_SECRET").or(file.client_secret),
            redirect_url: get("TETHER_OIDC_REDIRECT_URL")
                .or(file.redirect_url)
                .or(default_redirect.map(str::to_owned))
                .unwrap_or_default(),
            scopes: get("TETHER_OIDC_SCOPES")
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .or(file.scopes)
                .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
            account_id_claim: get("TETHER_OIDC_ACCOUNT_ID_CLAIM")
                .or(file.account_id_claim)
                .unwrap_or_else(|| "sub".to_owned()),
            admin: AdminRule {
                claim,
                subjects: get("TETHER_OIDC_ADMIN_SUBJECTS")
                    .map(|v| list(&v))
                    .or(file.admin_subjects)
                    .unwrap_or_default(),
                emails,
            },
        };
        config.validate()?;
        Ok(Some(config))
    }

    /// Checks every setting; the first problem is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = |setting, text: &str| -> Result<openidconnect::url::Url, ConfigError> {
            let parsed = openidconnect::url::Url::parse(text)
                .map_err(|e| error(setting, format!("'{text}' is not a URL: {e}")))?;
            let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            match parsed.scheme() {
                "https" => Ok(parsed),
                "http" if local => Ok(parsed),
                _ => Err(error(
                    setting,
                    format!("'{text}' must use https (http only for localhost)"),
                )),
            }
        };
        let issuer = url("TETHER_OIDC_ISSUER", &self.issuer)?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(error(
                "TETHER_OIDC_ISSUER",
                "an issuer URL has no query or fragment",
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(error("TETHER_OIDC_CLIENT_ID", "must be set"));
        }
        if self.redirect_url.is_empty() {
            return Err(error(
                "TETHER_OIDC_REDIRECT_URL",
                "must be set to this server's /auth/callback URL",
            ));
        }
        let redirect = url("TETHER_OIDC_REDIRECT_URL", &self.redirect_url)?;
        if redirect.path() != "/auth/callback" {
            return Err(error(
                "TETHER_OIDC_REDIRECT_URL",
                format!("'{}' must end in /auth/callback", self.redirect_url),
            ));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(error("TETHER_OIDC_SCOPES", "must include openid"));
        }
        if self.account_id_claim.trim().is_empty() {
            return Err(error("TETHER_OIDC_ACCOUNT_ID_CLAIM", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Option<OidcConfig>, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OidcConfig::load(|name| map.get(name).cloned(), None)
    }

    const BASE: &[(&str, &str)] = &[
        ("TETHER_OIDC_ISSUER", "https://idp.example.com"),
        ("TETHER_OIDC_CLIENT_ID", "tether"),
        ("TETHER_OIDC_CLIENT_SECRET", "s3cret"),
        (
            "TETHER_OIDC_REDIRECT_URL",
            "https://tether.example.com/auth/callback",
        ),
    ];

    #[test]
    fn off_without_issuer_and_defaults_otherwise() {
        assert_eq!(load(&[]), Ok(None));
        let config = load(BASE).unwrap().unwrap();
        assert_eq!(config.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(config.account_id_claim, "sub");
        assert_eq!(config.admin, AdminRule::default());
        // The redirect URL defaults to the public URL's callback.
        let vars: Vec<(&str, &str)> = BASE
            .iter()
            .filter(|(k, _)| *k != "TETHER_OIDC_REDIRECT_URL")
            .copied()
            .collect();
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let config = OidcConfig::load(
            |name| map.get(name).cloned(),
            Some("http://127.0.0.1:8080/auth/callback"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.redirect_url, "http://127.0.0.1:8080/auth/callback");
        // The secret never shows in Debug output.
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn admin_rules_and_claim_are_read() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("TETHER_OIDC_ADMIN_CLAIM", "groups=tether-admins"),
            ("TETHER_OIDC_ADMIN_SUBJECTS", "acc-1, acc-2"),
            ("TETHER_OIDC_ADMIN_EMAILS", "Admin@Example.COM"),
            ("TETHER_OIDC_ACCOUNT_ID_CLAIM", "aaid"),
        ]);
        let config = load(&vars).unwrap().unwrap();
        assert_eq!(
            config.admin,
            AdminRule {
                claim: Some(("groups".into(), "tether-admins".into())),
                subjects: vec!["acc-1".into(), "acc-2".into()],
                emails: vec!["admin@example.com".into()],
            }
        );
        assert_eq!(config.account_id_claim, "aaid");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "TETHER_OIDC_ISSUER",
                "http://idp.example.com",
                "TETHER_OIDC_ISSUER",
            ),
            ("TETHER_OIDC_ISSUER", "not a url", "TETHER_OIDC_ISSUER"),
            ("TETHER_OIDC_CLIENT_ID", " ", "TETHER_OIDC_CLIENT_ID"),
            (
                "TETHER_OIDC_REDIRECT_URL",
                "https://tether.example.com/cb",
                "TETHER_OIDC_REDIRECT_URL",
            ),
            ("TETHER_OIDC_SCOPES", "email profile", "TETHER_OIDC_SCOPES"),
            (
                "TETHER_OIDC_ADMIN_CLAIM",
                "groups",
                "TETHER_OIDC_ADMIN_CLAIM",
            ),
            (
                "TETHER_OIDC_ADMIN_EMAILS",
                "nobody",
                "TETHER_OIDC_ADMIN_EMAILS",
            ),
        ];
        for (name, value, setting) in cases {
            let mut vars: Vec<(&str, &str)> =
                BASE.iter().filter(|(k, _)| k != name).copied().collect();
            vars.push((name, value));
            // A blank client id counts as unset.
            let result = load(&vars);
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name}={value} accepted"));
            assert_eq!(err.setting, *setting, "{name}={value}: {err}");
        }
        // http is fine for a provider on this machine.
        let mut vars = BASE.to_vec();
        vars.push(("TETHER_OIDC_ISSUER", "http://127.0.0.1:9400"));
        vars.retain(|(k, v)| *k != "TETHER_OIDC_ISSUER" || v.starts_with("http://"));
        assert!(load(&vars).unwrap().is_some());
    }

    #[test]
    fn a_json_file_is_read_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oidc.json");
        std::fs::write(
            &path,
            r#"{"issuer": "https://idp.example.com", "client_id": "from-file",
                "redirect_url": "https://t.example.com/auth/callback", "admin_subjects": ["a1"]}"#,
        )
        .unwrap();
        let path_text = path.display().to_string();
        let config = load(&[
            ("TETHER_OIDC_CONFIG", &path_text),
            ("TETHER_OIDC_CLIENT_ID", "from-env"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.client_id, "from-env");
        assert_eq!(config.admin.subjects, vec!["a1"]);
        assert_eq!(config.client_secret, None);

        std::fs::write(
            &path,
            r#"{"issuer": "https://idp.example.com", "bogus": 1}"#,
        )
        .unwrap();
        let err = load(&[("TETHER_OIDC_CONFIG", &path_text)]).unwrap_err();
        assert_eq!(err.setting, "TETHER_OIDC_CONFIG");
        assert!(err.message.contains("bogus"), "{err}");
    }
}
