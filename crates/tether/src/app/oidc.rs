//! The OpenID Connect settings saved on Settings › Security: one JSON document in the
//! settings table (key `oidc`), the client secret sealed with the server's key beside the
//! other fields. The environment and the `TETHER_OIDC_CONFIG` file win over it, field by
//! field ([`crate::oidc::config::FixedLayers`]); every replica reads the document when a
//! sign-in starts, so a save takes effect everywhere at once.

use super::*;
use crate::oidc::config::{FieldOrigin, FixedLayers, OidcFields, FIELDS};
use crate::oidc::OidcConfig;
use serde::Deserialize;
use sha2::Digest;
use tether_store::admin::{AdminStore, NewEvent};

/// The settings key of the document.
const KEY: &str = "oidc";

/// The stored document. Unknown keys are ignored: a newer replica may have written them.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Document {
    /// Every field but the secret.
    settings: OidcFields,
    /// Hex of the sealed client secret.
    sealed_client_secret: Option<String>,
}

/// What a save does with the stored client secret.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretChange {
    Keep,
    Set(String),
    Remove,
}

impl std::fmt::Debug for SecretChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretChange::Keep => "Keep",
            SecretChange::Set(_) => "Set(***)",
            SecretChange::Remove => "Remove",
        })
    }
}

/// The version of the stored document an administrator read: a save names it, so that it
/// cannot silently undo a save made since.
pub fn version(raw: Option<&str>) -> String {
    match raw {
        None => "none".to_owned(),
        Some(text) => hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8]),
    }
}

fn parse_document(raw: Option<&str>) -> AppResult<Document> {
    match raw {
        None => Ok(Document::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| AppError::Io(format!("the stored sign-in settings cannot be read: {e}"))),
    }
}

/// The sign-in settings as the Settings page and the API show them.
#[derive(Debug)]
pub struct OidcSettings {
    /// What Settings › Security saved (no secret).
    pub page: OidcFields,
    /// Whether a client secret is saved on the page.
    pub page_secret_set: bool,
    /// Where each field of [`FIELDS`] comes from.
    pub origins: Vec<(&'static str, FieldOrigin)>,
    /// The fields in effect (environment, file, page), secret removed.
    pub effective: OidcFields,
    /// Whether any layer sets a client secret.
    pub secret_set: bool,
    /// The configuration in effect, or why there is none that works.
    pub config: Result<Option<OidcConfig>, AppError>,
    /// The version of the saved document, for the next save.
    pub version: String,
}

fn config_error(e: crate::oidc::config::ConfigError) -> AppError {
    AppError::Field {
        field: e.field(),
        message: e.message,
    }
}

impl App {
    /// The stored document as read (to save against) and its fields with the secret opened.
    async fn oidc_document(&self) -> AppResult<(Option<String>, OidcFields)> {
        let raw = self.store.find_setting_document(KEY).await?;
        let fields = self.opened(&parse_document(raw.as_deref())?)?;
        Ok((raw, fields))
    }

    /// A document's fields with its secret opened.
    fn opened(&self, document: &Document) -> AppResult<OidcFields> {
        let mut fields = document.settings.clone();
        fields.client_secret = document
            .sealed_client_secret
            .as_deref()
            .map(|sealed| self.open_client_secret(sealed))
            .transpose()?;
        Ok(fields)
    }

    fn open_client_secret(&self, sealed: &str) -> AppResult<String> {
        let refused = |message: String| AppError::Field {
            field: "client_secret".to_owned(),
            message,
        };
        let key = self.secret_key.as_ref().ok_or_else(|| {
            refused(
                "a client secret is saved but this server has no secret key to open it: set \
                 TETHER_SECRET_KEY (the key it was saved with), or enter the secret again"
                    .to_owned(),
            )
        })?;
        let bytes = hex::decode(sealed)
            .map_err(|_| refused("the saved secret is damaged: enter it again".to_owned()))?;
        key.open(&bytes).map_err(|e| refused(e.to_string()))
    }

    /// The configuration in effect: `fixed` (environment and file) over the saved page.
    /// `Ok(None)`: sign-in through OpenID Connect is off.
    pub async fn oidc_config(
        &self,
        fixed: &FixedLayers,
        default_redirect: &str,
    ) -> AppResult<Option<OidcConfig>> {
        let (_, page) = self.oidc_document().await?;
        fixed
            .resolve(&page, Some(default_redirect))
            .map_err(config_error)
    }

    /// The sign-in settings for Settings › Security and `GET /api/v1/settings/oidc`.
    pub async fn oidc_settings(
        &self,
        fixed: &FixedLayers,
        default_redirect: &str,
    ) -> AppResult<OidcSettings> {
        let raw = self.store.find_setting_document(KEY).await?;
        let version = version(raw.as_deref());
        // An unreadable document is shown as the error in `config`; the page can save over it.
        let (document, unreadable) = match parse_document(raw.as_deref()) {
            Ok(document) => (document, None),
            Err(e) => (Document::default(), Some(e)),
        };
        let config = match unreadable {
            Some(e) => Err(e),
            None => self.opened(&document).and_then(|opened| {
                fixed
                    .resolve(&opened, Some(default_redirect))
                    .map_err(config_error)
            }),
        };
        let page_secret_set = document.sealed_client_secret.is_some();
        let mut page = document.settings;
        // The page's secret stands in as a mark: its origin counts, its value is never shown.
        page.client_secret = page_secret_set.then(String::new);
        let origins = FIELDS
            .iter()
            .map(|field| (*field, fixed.origin(&page, field)))
            .collect::<Vec<_>>();
        let mut effective = fixed.merged(&page);
        let secret_set = effective.client_secret.is_some();
        effective.client_secret = None;
        page.client_secret = None;
        Ok(OidcSettings {
            page,
            page_secret_set,
            origins,
            effective,
            secret_set,
            config,
            version,
        })
    }

    /// Saves the sign-in settings of Settings › Security. Refused, with the field named and
    /// nothing written, when the result would not work (with the environment and the file
    /// over it), when it sets a field the environment or the file fixes, when it moves a
    /// saved client secret to another issuer, or when the document changed since the
    /// administrator read `expected_version` (or, without one, since this call read it).
    /// Recorded in the event log without the secret. A document or a secret that can no
    /// longer be read does not block a save that replaces it.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_oidc_settings(
        &self,
        fixed: &FixedLayers,
        default_redirect: &str,
        fields: OidcFields,
        secret: SecretChange,
        expected_version: Option<&str>,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<()> {
        let mut fields = fields.normalized();
        fields.client_secret = None;
        let raw = self.store.find_setting_document(KEY).await?;
        if let Some(expected) = expected_version {
            if expected != version(raw.as_deref()) {
                return Err(AppError::Conflict(
                    "another administrator saved the sign-in settings after you opened them: \
                     nothing was written; reload the page and make your change again"
                        .to_owned(),
                ));
            }
        }
        let parsed = parse_document(raw.as_deref());
        let unreadable = parsed.is_err();
        let stored = parsed.unwrap_or_default();
        for field in FIELDS {
            if field == "client_secret" {
                continue;
            }
            let origin = fixed.origin(&OidcFields::default(), field);
            if fields.sets(field) && origin != FieldOrigin::Default {
                return Err(AppError::Field {
                    field: field.to_owned(),
                    message: format!(
                        "is set by {}: change it there, or leave it blank here",
                        match origin {
                            FieldOrigin::Environment => crate::oidc::config::variable(field),
                            _ => "the TETHER_OIDC_CONFIG file".to_owned(),
                        }
                    ),
                });
            }
        }
        let effective_issuer = |page: &OidcFields| fixed.merged(page).issuer.unwrap_or_default();
        let (plain_secret, sealed) = match &secret {
            SecretChange::Keep => match &stored.sealed_client_secret {
                None => (None, None),
                Some(sealed) => {
                    if effective_issuer(&stored.settings) != effective_issuer(&fields) {
                        return Err(AppError::Field {
                            field: "client_secret".to_owned(),
                            message: "the issuer changes: enter the client secret for the new \
                                      issuer (or remove the saved one); a saved secret is never \
                                      sent to another issuer"
                                .to_owned(),
                        });
                    }
                    (Some(self.open_client_secret(sealed)?), Some(sealed.clone()))
                }
            },
            SecretChange::Remove => (None, None),
            SecretChange::Set(value) if value.trim().is_empty() => {
                return Err(AppError::Field {
                    field: "client_secret".to_owned(),
                    message: "is blank: leave the field empty to keep the saved secret".to_owned(),
                })
            }
            SecretChange::Set(value) => {
                if fixed.origin(&OidcFields::default(), "client_secret") != FieldOrigin::Default {
                    return Err(AppError::Field {
                        field: "client_secret".to_owned(),
                        message: "is set by TETHER_OIDC_CLIENT_SECRET or the TETHER_OIDC_CONFIG \
                                  file: change it there"
                            .to_owned(),
                    });
                }
                let key = self.secret_key.as_ref().ok_or_else(|| AppError::Field {
                    field: "client_secret".to_owned(),
                    message: "this server has no secret key to seal it with: set \
                              TETHER_SECRET_KEY (64 hex digits, the same on every replica)"
                        .to_owned(),
                })?;
                (Some(value.clone()), Some(hex::encode(key.seal(value)?)))
            }
        };
        // The result must work, with the environment and the file over it.
        let mut candidate = fields.clone();
        candidate.client_secret = plain_secret;
        fixed
            .resolve(&candidate, Some(default_redirect))
            .map_err(config_error)?;

        let mut changed: Vec<String> = Vec::new();
        let show = |fields: &OidcFields, field: &str| -> String {
            let value = serde_json::to_value(fields).unwrap_or_default();
            match value.get(field) {
                Some(serde_json::Value::Null) | None => "(blank)".to_owned(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(other) => other.to_string(),
            }
        };
        for field in FIELDS {
            if field == "client_secret" {
                continue;
            }
            let (old, new) = (show(&stored.settings, field), show(&fields, field));
            if old != new {
                changed.push(format!("{field}={new}"));
            }
        }
        match secret {
            SecretChange::Keep => {}
            SecretChange::Remove if stored.sealed_client_secret.is_some() => {
                changed.push("client_secret removed".to_owned())
            }
            SecretChange::Remove => {}
            SecretChange::Set(_) => changed.push("client_secret set".to_owned()),
        }
        if unreadable {
            changed.push("an unreadable saved document replaced".to_owned());
        }
        if changed.is_empty() {
            return Ok(());
        }
        let document = Document {
            settings: fields,
            sealed_client_secret: sealed,
        };
        let text = serde_json::to_string(&document)
            .map_err(|e| AppError::Io(format!("sign-in settings: {e}")))?;
        let detail = changed.join(", ");
        let written = self
            .store
            .put_setting_document(
                KEY,
                raw.as_deref(),
                &text,
                &NewEvent {
                    at,
                    actor,
                    kind: "settings_changed",
                    subject: "oidc",
                    detail: &detail,
                },
            )
            .await?;
        if !written {
            return Err(AppError::Conflict(
                "another administrator saved the sign-in settings meanwhile: nothing was \
                 written; reload the page and try again"
                    .to_owned(),
            ));
        }
        // Who is let in, and as what, may have changed: those who signed in through the
        // platform sign in again under the new settings (local administrators stay).
        let identity_changed = [
            "issuer",
            "client_id",
            "account_id_claim",
            "admin_claim",
            "admin_subjects",
            "admin_emails",
        ]
        .iter()
        .any(|field| changed.iter().any(|c| c.starts_with(&format!("{field}="))));
        let ended = if identity_changed {
            self.store.end_platform_sessions().await?
        } else {
            0
        };
        tracing::info!(actor, changed = %detail, sessions_ended = ended, "sign-in settings saved");
        Ok(())
    }
}
