//! Administration use cases: administrators and their passwords, settings, tokens, sources
//! with their connection settings and sealed secrets, hand edits of External IDs,
//! exclusions, a user's page, search, the audit log and the dashboard.

use super::*;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use tether_core::ChangeResult;
use tether_sources::{Secret, SourceSettings};
use tether_store::admin::{
    AdminStore, AuditFilter, ExternalIdEdit, NewEvent, Settings, SourceUpdate, TokenRecord,
    UserSearch,
};
use tether_store::{AuditEntry, Run};

/// The server's key for sealing source credentials at rest (ChaCha20-Poly1305). From
/// `TETHER_SECRET_KEY` (64 hex digits; every replica needs the same), else from the file
/// `TETHER_SECRET_KEY_FILE`, else `PATH.key` beside a SQLite database, created on first use
/// with mode 0600.
#[derive(Clone)]
pub struct SecretKey {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    pub fn from_hex(text: &str) -> AppResult<Self> {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            AppError::Input("TETHER_SECRET_KEY must be 64 hex digits (32 bytes)".to_owned())
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            AppError::Input("TETHER_SECRET_KEY must be 64 hex digits (32 bytes)".to_owned())
        })?;
        Ok(SecretKey { key })
    }

    /// Finds the key as documented above; `None` when there is nowhere to keep one
    /// (PostgreSQL without `TETHER_SECRET_KEY`): storing a credential then fails clearly.
    pub fn locate(database_url: &str) -> AppResult<Option<Self>> {
        if let Ok(text) = std::env::var("TETHER_SECRET_KEY") {
            return Self::from_hex(&text).map(Some);
        }
        let path = match std::env::var("TETHER_SECRET_KEY_FILE") {
            Ok(path) => path,
            Err(_) => match database_url.strip_prefix("sqlite:") {
                Some(db) if db != ":memory:" => format!("{db}.key"),
                _ => return Ok(None),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_hex(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| AppError::Io(format!("randomness: {e}")))?;
                write_private(&path, &hex::encode(key))?;
                Ok(Some(SecretKey { key }))
            }
            Err(e) => Err(AppError::Io(format!("{path}: {e}"))),
        }
    }

    fn sealer(&self) -> AppResult<LessSafeKey> {
        UnboundKey::new(&CHACHA20_POLY1305, &self.key)
            .map(LessSafeKey::new)
            .map_err(|_| AppError::Io("secret key rejected".to_owned()))
    }

    /// Nonce (12 random bytes) followed by the ciphertext and tag.
    pub fn seal(&self, plain: &str) -> AppResult<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| AppError::Io(format!("randomness: {e}")))?;
        let mut data = plain.as_bytes().to_vec();
        self.sealer()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| AppError::Io("could not seal a secret".to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> AppResult<String> {
        let refused = || {
            AppError::Input(
                "a stored credential cannot be opened with this server's secret key (was \
                 TETHER_SECRET_KEY changed?): enter the credential again"
                    .to_owned(),
            )
        };
        if sealed.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut data = data.to_vec();
        let plain = self
            .sealer()?
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| refused())?;
        String::from_utf8(plain.to_vec()).map_err(|_| refused())
    }
}

#[cfg(unix)]
fn write_private(path: &str, text: &str) -> AppResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AppError::Io(format!("{path}: {e}")))?;
    file.write_all(text.as_bytes())
        .map_err(|e| AppError::Io(format!("{path}: {e}")))
}

#[cfg(not(unix))]
fn write_private(path: &str, text: &str) -> AppResult<()> {
    std::fs::write(path, text).map_err(|e| AppError::Io(format!("{path}: {e}")))
}

/// Passwords: at least this many characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// An Argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> AppResult<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AppError::Io(format!("randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Io(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Io(format!("password hashing: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .map(|hash| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A user's page: the record, the diagnosis stored by the last run (if any) and the audit.
#[derive(Debug, Serialize)]
pub struct UserDetail {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    pub external_id_origin: Option<Origin>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub external_id_set_at: Option<Timestamp>,
    pub excluded: bool,
    /// `None` when no run has planned this user since its last change.
    pub diagnosis: Option<Diagnosis>,
    pub audit: Vec<AuditEntry>,
}

/// One point of the dashboard's chart.
#[derive(Debug, Serialize)]
pub struct SharePoint {
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    pub linked: u64,
    pub total: u64,
    pub run_kind: String,
}

/// The dashboard of one source.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    pub source: Option<Source>,
    pub users: u64,
    /// Situation counts of the newest applied run.
    pub situations: BTreeMap<String, u64>,
    pub history: Vec<SharePoint>,
    pub last_run: Option<Run>,
}

/// Linked users after a run: `linked` plus the `new_link`s it wrote.
fn linked_after(run: &Run) -> (u64, u64) {
    let counts = run.summary.get("summary").unwrap_or(&run.summary);
    let get = |name: &str| counts.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
    let total: u64 = counts
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    (get("linked") + get("new_link"), total)
}

/// Checks an External ID typed by hand.
pub fn valid_external_id(value: &str) -> AppResult<&str> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::Input(
            "external_id must not be empty (use clear to remove it)".to_owned(),
        ));
    }
    if value.len() > 255 || value.chars().any(char::is_control) {
        return Err(AppError::Input(
            "external_id must be at most 255 characters without control characters".to_owned(),
        ));
    }
    Ok(value)
}

impl App {
    /// Creates a local administrator (`tether admin create`, `--demo`).
    pub async fn create_admin(
        &self,
        username: &str,
        password: &str,
        at: Timestamp,
    ) -> AppResult<()> {
        let username = username.trim();
        if username.is_empty() || username.len() > 64 || username.chars().any(char::is_whitespace) {
            return Err(AppError::Input(
                "username must be 1 to 64 characters without spaces".to_owned(),
            ));
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AppError::Input(format!(
                "password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        let hash = hash_password(password)?;
        self.store.insert_admin(username, &hash, at).await?;
        self.store
            .insert_event(&NewEvent {
                at,
                actor: &self.actor,
                kind: "admin_created",
                subject: username,
                detail: "",
            })
            .await?;
        Ok(())
    }

    pub async fn set_admin_password(&self, username: &str, password: &str) -> AppResult<()> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AppError::Input(format!(
                "password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        let hash = hash_password(password)?;
        self.store.update_admin_password(username, &hash).await?;
        Ok(())
    }

    /// Whether `password` is the administrator's. Unknown names cost as much as known ones.
    pub async fn verify_admin(&self, username: &str, password: &str) -> AppResult<bool> {
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2PPh0zbOTOnIiWKp6sRfJAoK2U9dWJEgqAUwRiWyHYo";
        match self.store.find_admin(username).await? {
            Some(admin) => Ok(verify_password(password, &admin.password_hash)),
            None => {
                let _ = verify_password(password, DUMMY);
                Ok(false)
            }
        }
    }

    pub async fn settings(&self) -> AppResult<Settings> {
        Ok(self.store.get_settings().await?)
    }

    pub async fn update_settings(
        &self,
        settings: &Settings,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<Settings> {
        if !(1..=100).contains(&settings.mass_change_threshold_percent) {
            return Err(AppError::Input(
                "mass_change_threshold_percent must be between 1 and 100".to_owned(),
            ));
        }
        self.store.update_settings(settings, actor, at).await?;
        self.settings().await
    }

    pub async fn list_tokens(&self) -> AppResult<Vec<TokenRecord>> {
        Ok(self.store.list_tokens().await?)
    }

    pub async fn revoke_token(&self, pk: i64, actor: &str, at: Timestamp) -> AppResult<()> {
        self.store.revoke_token(pk, at).await?;
        self.store
            .insert_event(&NewEvent {
                at,
                actor,
                kind: "token_revoked",
                subject: &pk.to_string(),
                detail: "",
            })
            .await?;
        Ok(())
    }

    /// A source's connection settings and its opened secret, for a pull.
    pub async fn source_connection(
        &self,
        source: &Source,
    ) -> AppResult<(SourceSettings, Option<Secret>)> {
        let connection = self.store.get_source_connection(source.pk).await?;
        let settings: SourceSettings = serde_json::from_str(&connection.settings)
            .map_err(|e| AppError::Input(format!("source '{}': settings: {e}", source.name)))?;
        let secret = match connection.sealed_secret {
            None => None,
            Some(sealed) => {
                let key = self.secret_key.as_ref().ok_or_else(|| {
                    AppError::Input(
                        "this source has a stored credential but the server has no secret key: \
                         set TETHER_SECRET_KEY"
                            .to_owned(),
                    )
                })?;
                Some(Secret(key.open(&sealed)?))
            }
        };
        Ok((settings, secret))
    }

    /// A source's connection settings as shown (never the secret: only whether one is stored).
    pub async fn source_settings(&self, source: &Source) -> AppResult<(SourceSettings, bool)> {
        let connection = self.store.get_source_connection(source.pk).await?;
        let settings: SourceSettings = serde_json::from_str(&connection.settings)
            .map_err(|e| AppError::Input(format!("source '{}': settings: {e}", source.name)))?;
        Ok((settings, connection.sealed_secret.is_some()))
    }

    /// The newest runs of a source.
    pub async fn list_runs(&self, source: &Source, limit: u32) -> AppResult<Vec<Run>> {
        Ok(self.store.list_runs(source.pk, limit).await?)
    }

    /// Saves a source's connection settings and (when given) its credential, sealed.
    #[allow(clippy::too_many_arguments)] // each is one optional change, named at the call
    pub async fn configure_source(
        &self,
        source: &Source,
        field: Option<ExternalIdField>,
        link_inactive: Option<bool>,
        settings: Option<&SourceSettings>,
        secret: Option<&str>,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<()> {
        let sealed_secret = match secret.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(secret) => {
                let key = self.secret_key.as_ref().ok_or_else(|| {
                    AppError::Input(
                        "cannot store a credential: set TETHER_SECRET_KEY (64 hex digits) so \
                         that it can be sealed"
                            .to_owned(),
                    )
                })?;
                Some(Some(key.seal(secret)?))
            }
        };
        let settings = settings
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| AppError::Input(format!("settings: {e}")))?;
        let changed: Vec<&str> = [
            field.map(|_| "external_id_field"),
            link_inactive.map(|_| "link_inactive"),
            settings.as_ref().map(|_| "settings"),
            sealed_secret.as_ref().map(|_| "credential"),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.store
            .update_source(
                source.pk,
                &SourceUpdate {
                    external_id_field: field,
                    link_inactive,
                    settings,
                    sealed_secret,
                },
            )
            .await?;
        if !changed.is_empty() {
            self.store
                .insert_event(&NewEvent {
                    at,
                    actor,
                    kind: "source_changed",
                    subject: &source.name,
                    detail: &changed.join(", "),
                })
                .await?;
        }
        Ok(())
    }

    /// A user's page, with the diagnosis stored by the last run of `source`.
    pub async fn user_detail(&self, id: &str, source: Option<&Source>) -> AppResult<UserDetail> {
        let user = self.store.get_user(id).await?;
        let diagnosis = match source {
            Some(source) => self.stored_diagnosis(&user, source).await?,
            None => None,
        };
        let audit = self.store.list_audit(Some(user.pk), 100).await?;
        Ok(UserDetail {
            id: user.id,
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            active: user.active,
            external_id: user.external_id,
            external_id_origin: user.external_id_origin,
            external_id_set_at: user.external_id_set_at,
            excluded: user.excluded,
            diagnosis,
            audit,
        })
    }

    async fn stored_diagnosis(
        &self,
        user: &UserRecord,
        source: &Source,
    ) -> AppResult<Option<Diagnosis>> {
        let Some(stored) = self.store.find_outcome(source.pk, user.pk).await? else {
            return Ok(None);
        };
        let evidence = Evidence::decode(&stored.evidence).unwrap_or_default();
        let accounts: Vec<AccountRow> = self
            .store
            .get_accounts_by_pk(&evidence.accounts)
            .await?
            .into_iter()
            .map(account_row)
            .collect();
        let account_map: BTreeMap<i64, &AccountRow> = accounts.iter().map(|a| (a.pk, a)).collect();
        let related = self.store.get_users_by_pk(&evidence.users).await?;
        let outcome = Outcome {
            user_pk: user.pk,
            situation: stored.situation,
            evidence,
        };
        Ok(Some(render(user, &outcome, &account_map, &related, source)))
    }

    /// Sets (`new = Some`) or clears a user's External ID by hand, under the engine's rules.
    pub async fn edit_external_id(
        &self,
        id: &str,
        expected: Option<&str>,
        new: Option<&str>,
        reason: &str,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<UserRecord> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AppError::Input(
                "reason must say why the External ID is changed by hand".to_owned(),
            ));
        }
        let new = new.map(valid_external_id).transpose()?;
        let user = self.store.get_user(id).await?;
        let result = self
            .store
            .set_external_id(&ExternalIdEdit {
                user_pk: user.pk,
                expected,
                new,
                origin: Origin::Manual,
                actor,
                reason,
                at,
            })
            .await?;
        match result {
            ChangeResult::Applied | ChangeResult::AlreadySet => Ok(self.store.get_user(id).await?),
            ChangeResult::Taken { holder_pk } => {
                let holder = self
                    .store
                    .get_users_by_pk(&[holder_pk])
                    .await?
                    .into_iter()
                    .next()
                    .map(|u| u.id)
                    .unwrap_or_else(|| holder_pk.to_string());
                Err(AppError::Conflict(format!(
                    "External ID '{}' is already held by user '{holder}': clear it there first",
                    new.unwrap_or_default()
                )))
            }
            ChangeResult::Changed { current } => Err(AppError::Conflict(format!(
                "user '{id}' changed meanwhile: External ID is now '{current}'; reload and try again"
            ))),
            ChangeResult::Excluded => Err(AppError::Conflict(format!(
                "user '{id}' is excluded: include the user before changing External ID"
            ))),
            ChangeResult::Gone => Err(AppError::NotFound(format!("user '{id}'"))),
        }
    }

    pub async fn set_excluded(
        &self,
        id: &str,
        excluded: bool,
        reason: &str,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<UserRecord> {
        let user = self.store.get_user(id).await?;
        self.store
            .set_excluded(user.pk, excluded, actor, reason.trim(), at)
            .await?;
        Ok(self.store.get_user(id).await?)
    }

    pub async fn search_users(&self, search: &UserSearch) -> AppResult<Vec<UserRecord>> {
        Ok(self.store.search_users(search).await?)
    }

    /// One page of the audit log, newest first, each entry with its user's id.
    pub async fn audit_page(&self, filter: &AuditFilter) -> AppResult<Vec<(AuditEntry, String)>> {
        let entries = self.store.list_audit_page(filter).await?;
        let pks: Vec<i64> = entries.iter().map(|e| e.user_pk).collect();
        let ids: BTreeMap<i64, String> = self
            .store
            .get_users_by_pk(&pks)
            .await?
            .into_iter()
            .map(|u| (u.pk, u.id))
            .collect();
        Ok(entries
            .into_iter()
            .map(|e| {
                let id = ids.get(&e.user_pk).cloned().unwrap_or_default();
                (e, id)
            })
            .collect())
    }

    /// The dashboard: counts per situation of the newest applied run, and the linked share
    /// after each applied run (oldest first).
    pub async fn dashboard(&self, source: Option<&Source>) -> AppResult<Dashboard> {
        let users = self.store.count_users().await?;
        let Some(source) = source else {
            return Ok(Dashboard {
                source: None,
                users,
                situations: BTreeMap::new(),
                history: Vec::new(),
                last_run: None,
            });
        };
        let runs = self.store.list_runs(source.pk, 200).await?;
        let applied: Vec<&Run> = runs
            .iter()
            .filter(|r| !r.dry_run && r.state == "succeeded")
            .collect();
        let mut situations: BTreeMap<String, u64> = applied
            .first()
            .and_then(|run| {
                let counts = run.summary.get("summary").unwrap_or(&run.summary);
                counts.as_object().map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
                        .collect()
                })
            })
            .unwrap_or_default();
        // After an applied run its new links are simply linked (and stored as such).
        if let Some(new) = situations.remove(Situation::NewLink.as_str()) {
            *situations
                .entry(Situation::Linked.as_str().to_owned())
                .or_default() += new;
        }
        let mut history: Vec<SharePoint> = applied
            .iter()
            .map(|run| {
                let (linked, total) = linked_after(run);
                SharePoint {
                    at: run.finished_at.unwrap_or(run.started_at),
                    linked,
                    total,
                    run_kind: run.kind.clone(),
                }
            })
            .collect();
        history.reverse();
        Ok(Dashboard {
            source: Some(source.clone()),
            users,
            situations,
            history,
            last_run: runs.into_iter().next(),
        })
    }

    // --- Added for the REST API (crates/tether/src/web/api) ---

    /// [`App::edit_external_id`] for callers that may leave out what they saw:
    /// `expected: None` takes the user's current value (no stale-page check);
    /// `Some(None)` means the user must have no External ID.
    pub async fn edit_external_id_unless_stale(
        &self,
        id: &str,
        expected: Option<Option<&str>>,
        new: Option<&str>,
        reason: &str,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<UserRecord> {
        let current;
        let expected = match expected {
            Some(expected) => expected,
            None => {
                current = self.store.get_user(id).await?.external_id;
                current.as_deref()
            }
        };
        self.edit_external_id(id, expected, new, reason, actor, at)
            .await
    }

    /// The key of the user with this id (API filters name users by id).
    pub async fn user_pk(&self, id: &str) -> AppResult<i64> {
        Ok(self.store.get_user(id).await?.pk)
    }

    /// Administrative events, newest first, older than `before_pk`.
    pub async fn list_events(
        &self,
        before_pk: Option<i64>,
        limit: u32,
    ) -> AppResult<Vec<tether_store::admin::Event>> {
        Ok(self.store.list_events(before_pk, limit).await?)
    }

    /// Every source, by name.
    pub async fn list_sources(&self) -> AppResult<Vec<Source>> {
        Ok(self.store.list_sources().await?)
    }
}
