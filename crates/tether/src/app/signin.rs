//! Sign-in use cases (DESIGN §4.4): resolve who signed in, linking by e-mail when the rules
//! allow, and record every decision. Shared by the OpenID Connect callback and the sign-in
//! decision API (`POST /api/v1/sign-in/resolve`), so both follow the same rules.
//!
//! The order of work: read the settings and the facts (one read each), decide (pure, in
//! `tether_core::signin`), write the link if there is one (guarded: only where External ID is
//! still empty and the value free), settle a lost race, record the decision. Time comes in as
//! a parameter.

use super::*;
use tether_core::signin::{
    decide_sign_in, SignInClaims, SignInFacts, SignInSettings, SignInSituation,
};
use tether_store::admin::AdminStore;
use tether_store::signin::{SignInEvent, SignInRecord, SigninStore};

/// A sign-in to resolve: who the platform says signed in.
#[derive(Clone, Debug)]
pub struct SignInRequest {
    pub issuer: String,
    pub claims: SignInClaims,
}

/// The result of a sign-in, as the API returns it and the pages show it.
#[derive(Clone, Debug, Serialize)]
pub struct SignInResolution {
    /// The profile signed in (or the one a refusal concerns), by its application id.
    pub user_id: Option<String>,
    #[serde(skip)]
    pub user_pk: Option<i64>,
    /// Whether the person may sign in.
    pub signed_in: bool,
    /// Whether this sign-in wrote the External ID.
    pub linked_now: bool,
    pub situation: SignInSituation,
    pub explanation: String,
    pub fix: String,
    /// The recorded decision (the sign-in trail).
    pub event: i64,
}

/// A profile's own view: its link and its recent sign-ins.
#[derive(Clone, Debug, Serialize)]
pub struct MyAccount {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub external_id_origin: Option<Origin>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub external_id_set_at: Option<Timestamp>,
    pub sign_ins: Vec<SignInEvent>,
}

impl App {
    /// The settings that change the decision. The one place they are read, so the source can
    /// change without touching the rules.
    pub async fn sign_in_settings(&self) -> AppResult<SignInSettings> {
        let settings = self.store.get_settings().await?;
        Ok(SignInSettings {
            auto_populate: settings.auto_populate,
            require_verified_email: settings.require_verified_email,
        })
    }

    /// Resolves one sign-in under the current settings: decides, links if allowed, records.
    /// `actor` names who asks (`oidc:<issuer>`, `api:<token>`), for the trail.
    pub async fn resolve_sign_in(
        &self,
        request: &SignInRequest,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<SignInResolution> {
        check_sign_in_request(request)?;
        let key = match_key(request.claims.email.as_deref());
        // Two independent reads at the same time (on PostgreSQL, on two pooled connections).
        let (settings, facts) = tokio::try_join!(self.sign_in_settings(), async {
            Ok::<_, AppError>(
                self.store
                    .load_sign_in_facts(&request.claims.account_id, key.key())
                    .await?,
            )
        })?;
        self.decide_and_record(request, &settings, facts, actor, at)
            .await
    }

    /// Decides on the facts read, then writes and records the decision.
    async fn decide_and_record(
        &self,
        request: &SignInRequest,
        settings: &SignInSettings,
        facts: SignInFacts,
        actor: &str,
        at: Timestamp,
    ) -> AppResult<SignInResolution> {
        let claims = &request.claims;
        let decision = decide_sign_in(claims, &facts, settings);
        let reason = format!(
            "new_link at sign-in: verified e-mail {} (issuer {})",
            claims.email.as_deref().unwrap_or_default().trim(),
            request.issuer
        );
        // The write (if any), the settling of a lost race and the trail entry: one transaction.
        let recorded = self
            .store
            .record_sign_in(&SignInRecord {
                decision: &decision,
                actor,
                issuer: &request.issuer,
                account_id: &claims.account_id,
                email: claims.email.as_deref(),
                email_verified: claims.email_verified,
                reason: &reason,
                at,
            })
            .await?;
        let decision = recorded.decision;
        // The profile's id is among the facts (a lost race keeps the same profile).
        let known = facts.holder.iter().chain(&facts.by_email);
        let user_id = match decision.user_pk {
            None => None,
            Some(pk) => match known.clone().find(|p| p.pk == pk) {
                Some(profile) => Some(profile.id.clone()),
                None => self
                    .store
                    .get_users_by_pk(&[pk])
                    .await?
                    .into_iter()
                    .next()
                    .map(|u| u.id),
            },
        };
        Ok(SignInResolution {
            user_id,
            user_pk: decision.user_pk,
            signed_in: decision.signs_in(),
            linked_now: recorded.linked_now,
            situation: decision.situation,
            explanation: decision.explanation.explanation,
            fix: decision.explanation.fix,
            event: recorded.event_pk,
        })
    }

    /// The "My account" view of one profile.
    pub async fn my_account(&self, user_pk: i64) -> AppResult<MyAccount> {
        let user = self
            .store
            .get_users_by_pk(&[user_pk])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AppError::NotFound(format!("no user with key {user_pk}")))?;
        let sign_ins = self.store.list_sign_in_events(Some(user_pk), 10).await?;
        Ok(MyAccount {
            user_id: user.id,
            username: user.username,
            display_name: user.display_name,
            email: user.email,
            external_id: user.external_id,
            external_id_origin: user.external_id_origin,
            external_id_set_at: user.external_id_set_at,
            sign_ins,
        })
    }
}

/// What the browser sends back to `/auth/callback`.
#[derive(Clone, Debug, Default)]
pub struct OidcCallback {
    /// The random handle of the short-lived cookie set by `/auth/login`.
    pub handle: Option<String>,
    pub code: Option<String>,
    pub state: Option<String>,
    /// An error the provider reported instead of a code.
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The provider's issuer identifier, when it sends one (RFC 9207).
    pub iss: Option<String>,
}

/// The end of a sign-in through the provider.
#[derive(Clone, Debug)]
pub enum OidcOutcome {
    /// Let in: start a session for `principal`.
    Admitted {
        principal: String,
        is_admin: bool,
        user_pk: Option<i64>,
        /// The decision (an administrator is let in even when no profile matched).
        resolution: SignInResolution,
        return_to: Option<String>,
    },
    /// The decision refused the sign-in; recorded, nothing linked.
    Refused(SignInResolution),
    /// The sign-in failed before any decision (state, provider, token): what happened and what to do.
    Failed { what: String, fix: String },
}

/// How long an authorization request may take (the cookie's and the row's lifetime).
pub const OIDC_LOGIN_MINUTES: i64 = 10;

fn failed(what: impl Into<String>, fix: impl Into<String>) -> OidcOutcome {
    OidcOutcome::Failed {
        what: what.into(),
        fix: fix.into(),
    }
}

/// A local path to return to after signing in, or nothing (never another site).
pub fn local_path(next: Option<&str>) -> Option<String> {
    next.filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .map(str::to_owned)
}

impl App {
    /// Starts a sign-in: an authorization request whose state, nonce and PKCE verifier are kept
    /// under `handle` (the cookie's random value; only its hash is stored). Returns the URL to
    /// send the browser to.
    pub async fn start_oidc_sign_in(
        &self,
        provider: &crate::oidc::Provider,
        handle: &str,
        return_to: Option<&str>,
        at: Timestamp,
    ) -> AppResult<String> {
        let start = provider
            .start()
            .map_err(|e| AppError::Input(e.to_string()))?;
        self.store
            .insert_oidc_login(&tether_store::signin::OidcLogin {
                handle_hash: token_hash(handle),
                state: start.state,
                nonce: start.nonce,
                pkce_verifier: start.pkce_verifier,
                return_to: local_path(return_to),
                created_at: at,
                expires_at: at + time::Duration::minutes(OIDC_LOGIN_MINUTES),
                issuer: provider.config().issuer.clone(),
                client_id: provider.config().client_id.clone(),
            })
            .await?;
        Ok(start.url)
    }

    /// Finishes a sign-in: takes the request (once: a replayed state finds nothing), checks
    /// the state, exchanges the code, validates the ID token, and resolves the sign-in.
    pub async fn finish_oidc_sign_in(
        &self,
        provider: &crate::oidc::Provider,
        callback: &OidcCallback,
        at: Timestamp,
    ) -> AppResult<OidcOutcome> {
        let try_again = "Go back to the application and sign in again.";
        let Some(handle) = callback.handle.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(failed(
                "This sign-in did not start here, or its cookie is gone (missing state), so it was refused.",
                "Sign in again from this site; allow cookies for it.",
            ));
        };
        let Some(login) = self.store.take_oidc_login(&token_hash(handle)).await? else {
            return Ok(failed(
                "This sign-in response was already used or has expired (replayed state), so it was refused.",
                try_again,
            ));
        };
        if login.expires_at <= at {
            return Ok(failed(
                format!("This sign-in took longer than {OIDC_LOGIN_MINUTES} minutes and expired."),
                try_again,
            ));
        }
        let state_matches = callback.state.as_deref().is_some_and(|s| {
            s.len() == login.state.len()
                && s.bytes()
                    .zip(login.state.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        });
        if !state_matches {
            return Ok(failed(
                "The sign-in response does not belong to the sign-in this browser started (state mismatch), so it was refused.",
                try_again,
            ));
        }
        // Finish only with the provider the sign-in started with (the settings may have
        // changed meanwhile): its code and verifier go to no one else.
        let config = provider.config();
        if login.issuer != config.issuer || login.client_id != config.client_id {
            return Ok(failed(
                "The sign-in settings changed while you were signing in, so this sign-in was not finished.",
                try_again,
            ));
        }
        // RFC 9207: a provider that names itself in the response must be the one asked.
        if let Some(iss) = callback.iss.as_deref() {
            if iss != config.issuer {
                return Ok(failed(
                    format!("The sign-in response comes from another identity provider ({iss}), so it was refused."),
                    try_again,
                ));
            }
        }
        if let Some(error) = &callback.error {
            return Ok(failed(
                format!(
                    "The identity provider did not sign you in: {error}{}.",
                    callback
                        .error_description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                try_again,
            ));
        }
        let Some(code) = callback.code.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(failed(
                "The identity provider sent no authorization code.",
                try_again,
            ));
        };
        let identity = match provider
            .finish(code, &login.pkce_verifier, &login.nonce, at)
            .await
        {
            Ok(identity) => identity,
            Err(e) => {
                return Ok(failed(
                    format!("Sign-in failed: {e}."),
                    "If this keeps happening, an administrator should check the OpenID Connect settings and the server log.",
                ))
            }
        };
        let request = SignInRequest {
            issuer: identity.issuer.clone(),
            claims: SignInClaims {
                account_id: identity.account_id.clone(),
                email: identity.email.clone(),
                email_verified: identity.email_verified,
            },
        };
        let actor = format!("oidc:{}", identity.issuer);
        let resolution = self.resolve_sign_in(&request, &actor, at).await?;
        if resolution.signed_in || identity.is_admin {
            let user_pk = resolution.signed_in.then_some(resolution.user_pk).flatten();
            let principal = match (&resolution.user_id, resolution.signed_in) {
                (Some(id), true) => format!("user:{id}"),
                _ => format!("oidc:{}", identity.account_id),
            };
            return Ok(OidcOutcome::Admitted {
                principal,
                is_admin: identity.is_admin,
                user_pk,
                resolution,
                return_to: login.return_to,
            });
        }
        Ok(OidcOutcome::Refused(resolution))
    }
}

/// A sign-in request needs an account ID and an issuer.
fn check_sign_in_request(request: &SignInRequest) -> AppResult<()> {
    for (field, value) in [
        ("subject", &request.claims.account_id),
        ("issuer", &request.issuer),
    ] {
        if value.trim().is_empty() {
            return Err(AppError::Field {
                field: field.to_owned(),
                message: "must not be empty".to_owned(),
            });
        }
    }
    Ok(())
}
