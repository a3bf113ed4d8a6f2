//! OpenID Connect configuration: where it comes from (a JSON file named by
//! `TETHER_OIDC_CONFIG`, then `TETHER_OIDC_*` environment variables, which win), and its
//! validation. The client secret is write-only: it is never printed, logged or serialized.

use serde::{Deserialize, Serialize};
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

impl ConfigError {
    /// The field as the Settings page, the API and the JSON file name it (`issuer`, …), or
    /// `config_file` for the file itself.
    pub fn field(&self) -> String {
        match self.setting.strip_prefix("TETHER_OIDC_") {
            Some("CONFIG") => "config_file".to_owned(),
            Some(rest) => rest.to_ascii_lowercase(),
            None => self.setting.to_owned(),
        }
    }
}

fn error(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

/// One layer of settings (the JSON file, the environment, or Settings › Security): every
/// field optional, the first layer that sets a field wins. Also the JSON file's shape (whose
/// unknown keys are refused when it is read; a stored document's are ignored, so that a newer
/// tether's settings do not stop an older replica).
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct OidcFields {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// Write-only: never shown. Not part of the stored Settings › Security document, which
    /// keeps it sealed beside.
    #[serde(skip_serializing)]
    pub client_secret: Option<String>,
    pub redirect_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub account_id_claim: Option<String>,
    /// `NAME=VALUE`, e.g. `groups=tether-admins`.
    pub admin_claim: Option<String>,
    pub admin_subjects: Option<Vec<String>>,
    pub admin_emails: Option<Vec<String>>,
}

impl fmt::Debug for OidcFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcFields")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<set>"),
            )
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("account_id_claim", &self.account_id_claim)
            .field("admin_claim", &self.admin_claim)
            .field("admin_subjects", &self.admin_subjects)
            .field("admin_emails", &self.admin_emails)
            .finish()
    }
}

/// The fields, by name, as the JSON file, the API and the Settings page spell them.
pub const FIELDS: [&str; 9] = [
    "issuer",
    "client_id",
    "client_secret",
    "redirect_url",
    "scopes",
    "account_id_claim",
    "admin_claim",
    "admin_subjects",
    "admin_emails",
];

impl OidcFields {
    /// Whether this layer sets `field` (one of [`FIELDS`]).
    pub fn sets(&self, field: &str) -> bool {
        match field {
            "issuer" => self.issuer.is_some(),
            "client_id" => self.client_id.is_some(),
            "client_secret" => self.client_secret.is_some(),
            "redirect_url" => self.redirect_url.is_some(),
            "scopes" => self.scopes.is_some(),
            "account_id_claim" => self.account_id_claim.is_some(),
            "admin_claim" => self.admin_claim.is_some(),
            "admin_subjects" => self.admin_subjects.is_some(),
            "admin_emails" => self.admin_emails.is_some(),
            _ => false,
        }
    }

    /// Each field from `self` if set, else from `below`.
    pub fn over(&self, below: &OidcFields) -> OidcFields {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let pick_list =
            |a: &Option<Vec<String>>, b: &Option<Vec<String>>| a.clone().or_else(|| b.clone());
        OidcFields {
            issuer: pick(&self.issuer, &below.issuer),
            client_id: pick(&self.client_id, &below.client_id),
            client_secret: pick(&self.client_secret, &below.client_secret),
            redirect_url: pick(&self.redirect_url, &below.redirect_url),
            scopes: pick_list(&self.scopes, &below.scopes),
            account_id_claim: pick(&self.account_id_claim, &below.account_id_claim),
            admin_claim: pick(&self.admin_claim, &below.admin_claim),
            admin_subjects: pick_list(&self.admin_subjects, &below.admin_subjects),
            admin_emails: pick_list(&self.admin_emails, &below.admin_emails),
        }
    }

    /// Blank values and empty lists count as unset; values are trimmed.
    pub fn normalized(self) -> OidcFields {
        let text = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let items = |v: Option<Vec<String>>| {
            v.map(|items| {
                items
                    .into_iter()
                    .map(|i| i.trim().to_owned())
                    .filter(|i| !i.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|items| !items.is_empty())
        };
        OidcFields {
            issuer: text(self.issuer),
            client_id: text(self.client_id),
            // A secret is taken as typed, only an empty one is unset.
            client_secret: self.client_secret.filter(|v| !v.is_empty()),
            redirect_url: text(self.redirect_url),
            scopes: items(self.scopes),
            account_id_claim: text(self.account_id_claim),
            admin_claim: text(self.admin_claim),
            admin_subjects: items(self.admin_subjects),
            admin_emails: items(self.admin_emails),
        }
    }
}

/// The `TETHER_OIDC_CONFIG` file: an object of [`FIELDS`], nothing else (a typo is an error).
fn parse_file(text: &str) -> Result<OidcFields, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(object) = value.as_object() else {
        return Err("expected a JSON object of settings".to_owned());
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown setting '{unknown}' (known: {})",
            FIELDS.join(", ")
        ));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The admin rule's fields: they come from one layer together, so that a lower layer cannot
/// widen the rule a higher one fixes.
pub const ADMIN_FIELDS: [&str; 3] = ["admin_claim", "admin_subjects", "admin_emails"];

/// A comma-separated list (admin subjects and e-mails).
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A space-separated list (scopes).
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// Where a field's value comes from, highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldOrigin {
    /// A `TETHER_OIDC_*` variable: the Settings page cannot change it.
    Environment,
    /// The file named by `TETHER_OIDC_CONFIG`: the Settings page cannot change it.
    File,
    /// Saved on Settings › Security.
    Page,
    /// Not set anywhere: the default applies.
    Default,
}

/// The settings this process was started with (the environment and the JSON file), which win
/// over those saved on Settings › Security.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixedLayers {
    pub environment: OidcFields,
    pub file: OidcFields,
}

/// The environment variable of a field.
pub fn variable(field: &str) -> String {
    format!("TETHER_OIDC_{}", field.to_ascii_uppercase())
}

impl FixedLayers {
    /// Reads `TETHER_OIDC_*` and the JSON file `TETHER_OIDC_CONFIG` through `lookup` (the
    /// environment, in production).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<FixedLayers, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let file: OidcFields = match get("TETHER_OIDC_CONFIG") {
            None => OidcFields::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| error("TETHER_OIDC_CONFIG", format!("{path}: {e}")))?;
                parse_file(&text)
                    .map_err(|e| error("TETHER_OIDC_CONFIG", format!("{path}: {e}")))?
            }
        };
        let environment = OidcFields {
            issuer: get("TETHER_OIDC_ISSUER"),
            client_id: get("TETHER_OIDC_CLIENT_ID"),
            client_secret: get("TETHER_OIDC_CLIENT_SECRET"),
            redirect_url: get("TETHER_OIDC_REDIRECT_URL"),
            scopes: get("TETHER_OIDC_SCOPES").map(|v| words(&v)),
            account_id_claim: get("TETHER_OIDC_ACCOUNT_ID_CLAIM"),
            admin_claim: get("TETHER_OIDC_ADMIN_CLAIM"),
            admin_subjects: get("TETHER_OIDC_ADMIN_SUBJECTS").map(|v| list(&v)),
            admin_emails: get("TETHER_OIDC_ADMIN_EMAILS").map(|v| list(&v)),
        };
        Ok(FixedLayers {
            environment: environment.normalized(),
            file: file.normalized(),
        })
    }

    /// Where `field` comes from when `page` holds what Settings › Security saved. The admin
    /// rule's fields come from the highest layer that sets any of them.
    pub fn origin(&self, page: &OidcFields, field: &str) -> FieldOrigin {
        if ADMIN_FIELDS.contains(&field) {
            let sets_admin = |layer: &OidcFields| ADMIN_FIELDS.iter().any(|f| layer.sets(f));
            return if sets_admin(&self.environment) {
                FieldOrigin::Environment
            } else if sets_admin(&self.file) {
                FieldOrigin::File
            } else if sets_admin(page) {
                FieldOrigin::Page
            } else {
                FieldOrigin::Default
            };
        }
        if self.environment.sets(field) {
            FieldOrigin::Environment
        } else if self.file.sets(field) {
            FieldOrigin::File
        } else if page.sets(field) {
            FieldOrigin::Page
        } else {
            FieldOrigin::Default
        }
    }

    /// The fields in effect, unchecked: the environment over the file over `page`, field by
    /// field, except the admin rule, which comes whole from the highest layer that sets it.
    pub fn merged(&self, page: &OidcFields) -> OidcFields {
        let mut merged = self.environment.over(&self.file.over(page));
        let admin_layer = match self.origin(page, "admin_claim") {
            FieldOrigin::Environment => &self.environment,
            FieldOrigin::File => &self.file,
            _ => page,
        };
        merged.admin_claim = admin_layer.admin_claim.clone();
        merged.admin_subjects = admin_layer.admin_subjects.clone();
        merged.admin_emails = admin_layer.admin_emails.clone();
        merged
    }

    /// The configuration in effect: the environment over the file over `page`, field by
    /// field (the admin rule as a whole). `Ok(None)` when no layer sets an issuer (sign-in
    /// through OpenID Connect is off). When the environment or the file sets the client
    /// secret or the admin rule, the issuer must come from there too: a page cannot send that
    /// secret, or grant that rule, to a provider of its own choosing.
    pub fn resolve(
        &self,
        page: &OidcFields,
        default_redirect: Option<&str>,
    ) -> Result<Option<OidcConfig>, ConfigError> {
        let merged = self.merged(page);
        let fixed = |field| {
            matches!(
                self.origin(page, field),
                FieldOrigin::Environment | FieldOrigin::File
            )
        };
        if self.origin(page, "issuer") == FieldOrigin::Page {
            if fixed("client_secret") {
                return Err(error(
                    "TETHER_OIDC_ISSUER",
                    "the client secret is set by the environment or the TETHER_OIDC_CONFIG file, \
                     so the issuer must be set there too, not on this page",
                ));
            }
            if fixed("admin_claim") {
                return Err(error(
                    "TETHER_OIDC_ISSUER",
                    "the admin rule is set by the environment or the TETHER_OIDC_CONFIG file, \
                     so the issuer must be set there too, not on this page",
                ));
            }
        }
        OidcConfig::from_fields(merged, default_redirect)
    }
}

impl OidcConfig {
    /// Reads the configuration from `lookup` (the environment, in production); the redirect
    /// URL defaults to `default_redirect` (the server's public URL + `/auth/callback`).
    /// `Ok(None)` when no issuer is configured: sign-in through OpenID Connect is off.
    #[cfg(test)]
    pub fn load(
        lookup: impl Fn(&str) -> Option<String>,
        default_redirect: Option<&str>,
    ) -> Result<Option<OidcConfig>, ConfigError> {
        FixedLayers::load(lookup)?.resolve(&OidcFields::default(), default_redirect)
    }

    /// The configuration from merged fields, with defaults, checked.
    pub fn from_fields(
        fields: OidcFields,
        default_redirect: Option<&str>,
    ) -> Result<Option<OidcConfig>, ConfigError> {
        let fields = fields.normalized();
        let claim = match fields.admin_claim {
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
        for email in fields.admin_emails.unwrap_or_default() {
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
        let Some(issuer) = fields.issuer else {
            // Off; what is set must still be well-formed, so it works once an issuer is.
            if let Some(scopes) = &fields.scopes {
                if !scopes.iter().any(|s| s == "openid") {
                    return Err(error("TETHER_OIDC_SCOPES", "must include openid"));
                }
            }
            if let Some(redirect) = &fields.redirect_url {
                check_redirect(redirect)?;
            }
            return Ok(None);
        };
        let config = OidcConfig {
            issuer,
            client_id: fields.client_id.unwrap_or_default(),
            client_secret: fields.client_secret,
            redirect_url: fields
                .redirect_url
                .or(default_redirect.map(str::to_owned))
                .unwrap_or_default(),
            scopes: fields
                .scopes
                .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
            account_id_claim: fields.account_id_claim.unwrap_or_else(|| "sub".to_owned()),
            admin: AdminRule {
                claim,
                subjects: fields.admin_subjects.unwrap_or_default(),
                emails,
            },
        };
        config.validate()?;
        Ok(Some(config))
    }

    /// Checks every setting; the first problem is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let issuer = web_url("TETHER_OIDC_ISSUER", &self.issuer)?;
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
        check_redirect(&self.redirect_url)?;
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(error("TETHER_OIDC_SCOPES", "must include openid"));
        }
        if self.account_id_claim.trim().is_empty() {
            return Err(error("TETHER_OIDC_ACCOUNT_ID_CLAIM", "must not be empty"));
        }
        Ok(())
    }
}

/// An https URL (http only for this machine).
fn web_url(setting: &'static str, text: &str) -> Result<openidconnect::url::Url, ConfigError> {
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
}

/// The redirect URL: a web URL ending in `/auth/callback`.
fn check_redirect(text: &str) -> Result<(), ConfigError> {
    let redirect = web_url("TETHER_OIDC_REDIRECT_URL", text)?;
    if redirect.path() != "/auth/callback" {
        return Err(error(
            "TETHER_OIDC_REDIRECT_URL",
            format!("'{text}' must end in /auth/callback"),
        ));
    }
    Ok(())
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

    #[test]
    fn the_environment_wins_over_the_file_over_the_page_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oidc.json");
        std::fs::write(
            &path,
            r#"{"issuer": "https://idp.example.com", "client_id": "from-file", "scopes": ["openid", "email"]}"#,
        )
        .unwrap();
        let path_text = path.display().to_string();
        let env = |extra: &[(&str, &str)]| {
            let mut map: HashMap<String, String> = [
                ("TETHER_OIDC_CONFIG", path_text.as_str()),
                ("TETHER_OIDC_ADMIN_SUBJECTS", "env-admin"),
                ("TETHER_OIDC_REDIRECT_URL", "  "),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            for (k, v) in extra {
                map.insert((*k).to_owned(), (*v).to_owned());
            }
            FixedLayers::load(|name| map.get(name).cloned()).unwrap()
        };
        let fixed = env(&[]);
        let page = OidcFields {
            issuer: Some("https://evil.example.com".into()),
            client_id: Some("from-page".into()),
            client_secret: Some("page-secret".into()),
            admin_emails: Some(vec!["page-admin@example.com".into()]),
            account_id_claim: Some(" ".into()),
            ..OidcFields::default()
        }
        .normalized();
        let config = fixed
            .resolve(&page, Some("https://t.example.com/auth/callback"))
            .unwrap()
            .unwrap();
        assert_eq!(config.issuer, "https://idp.example.com");
        assert_eq!(config.client_id, "from-file");
        assert_eq!(config.client_secret.as_deref(), Some("page-secret"));
        assert_eq!(config.scopes, vec!["openid", "email"]);
        // The admin rule comes from one layer: the page cannot add e-mails to it.
        assert_eq!(config.admin.subjects, vec!["env-admin"]);
        assert!(config.admin.emails.is_empty());
        // Blank values are unset: the defaults apply.
        assert_eq!(config.redirect_url, "https://t.example.com/auth/callback");
        assert_eq!(config.account_id_claim, "sub");
        let origins: Vec<FieldOrigin> = FIELDS.iter().map(|f| fixed.origin(&page, f)).collect();
        assert_eq!(
            origins,
            vec![
                FieldOrigin::File,        // issuer
                FieldOrigin::File,        // client_id
                FieldOrigin::Page,        // client_secret
                FieldOrigin::Default,     // redirect_url
                FieldOrigin::File,        // scopes
                FieldOrigin::Default,     // account_id_claim
                FieldOrigin::Environment, // admin_claim
                FieldOrigin::Environment, // admin_subjects
                FieldOrigin::Environment, // admin_emails
            ]
        );

        // Without the file's issuer, the page's may not take the environment's admin rule
        // or client secret to a provider of its choosing.
        std::fs::write(&path, r#"{"client_id": "from-file"}"#).unwrap();
        let err = env(&[]).resolve(&page, None).unwrap_err();
        assert_eq!(err.field(), "issuer", "{err}");
        assert!(err.message.contains("admin rule"), "{err}");
        let without_admin = env(&[("TETHER_OIDC_ADMIN_SUBJECTS", " ")]);
        let with_secret = env(&[
            ("TETHER_OIDC_ADMIN_SUBJECTS", " "),
            ("TETHER_OIDC_CLIENT_SECRET", "env-secret"),
        ]);
        let config = without_admin
            .resolve(&page, Some("https://t.example.com/auth/callback"))
            .unwrap()
            .unwrap();
        assert_eq!(config.issuer, "https://evil.example.com");
        assert_eq!(config.admin.emails, vec!["page-admin@example.com"]);
        let err = with_secret.resolve(&page, None).unwrap_err();
        assert!(err.message.contains("client secret"), "{err}");

        // Without an issuer anywhere, sign-in is off, but what is set must be well-formed.
        let no_issuer = OidcFields {
            issuer: None,
            ..page.clone()
        };
        assert_eq!(without_admin.resolve(&no_issuer, None), Ok(None));
        for (bad, field) in [
            (
                OidcFields {
                    admin_claim: Some("groups".into()),
                    ..no_issuer.clone()
                },
                "admin_claim",
            ),
            (
                OidcFields {
                    scopes: Some(vec!["email".into()]),
                    ..no_issuer.clone()
                },
                "scopes",
            ),
            (
                OidcFields {
                    redirect_url: Some("https://t.example.com/cb".into()),
                    ..no_issuer.clone()
                },
                "redirect_url",
            ),
        ] {
            let err = without_admin.resolve(&bad, None).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
        assert_eq!(
            ConfigError {
                setting: "TETHER_OIDC_CONFIG",
                message: String::new()
            }
            .field(),
            "config_file"
        );
        assert_eq!(variable("admin_emails"), "TETHER_OIDC_ADMIN_EMAILS");
    }
}
