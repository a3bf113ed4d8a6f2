//! The `signin` units of work: trait, records, and the dispatch for [`crate::AnyStore`].
//!
//! A sign-in reads its facts in one read ([`SigninStore::load_sign_in_facts`]), the core
//! decides ([`tether_core::signin::decide_sign_in`]), and a link is written by
//! [`SigninStore::link_at_sign_in`] under the same guard as a run's changes: only where the
//! profile's External ID is still empty, the profile not excluded, and no other profile holds
//! the value; otherwise it reports why ([`ChangeResult`]) and writes nothing. Every decision
//! is recorded ([`SigninStore::insert_sign_in_event`]); refusals that concern a profile also
//! leave an audit entry on it. OpenID Connect requests in flight live in `oidc_logins`, taken
//! once by their callback.

use crate::{AnyStore, Result, Timestamp};
use serde::Serialize;
use std::future::Future;
use tether_core::signin::{SignInDecision, SignInFacts, SignInSituation};
use tether_core::ChangeResult;

/// One External ID to write at sign-in (origin `login`).
#[derive(Clone, Debug)]
pub struct SignInLink<'a> {
    pub user_pk: i64,
    /// The account ID.
    pub value: &'a str,
    /// Who signed in through what, e.g. `oidc:https://idp.example.com` or `api:portal`.
    pub actor: &'a str,
    /// The audit entry's reason.
    pub reason: &'a str,
    pub at: Timestamp,
}

/// A decision to record in one transaction with its write (see [`SigninStore::record_sign_in`]).
#[derive(Clone, Debug)]
pub struct SignInRecord<'a> {
    /// The core's decision; its `change`, if any, is written (guarded).
    pub decision: &'a SignInDecision,
    pub actor: &'a str,
    pub issuer: &'a str,
    pub account_id: &'a str,
    pub email: Option<&'a str>,
    pub email_verified: bool,
    /// The audit reason of the link, if one is written.
    pub reason: &'a str,
    pub at: Timestamp,
}

/// What [`SigninStore::record_sign_in`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedSignIn {
    /// The decision as settled against the store (a lost race refuses, see
    /// [`tether_core::signin::settle_sign_in`]).
    pub decision: SignInDecision,
    /// What the guarded write found, when the decision had a change.
    pub result: Option<ChangeResult>,
    pub linked_now: bool,
    pub event_pk: i64,
}

impl NewSignInEvent {
    /// The trail entry of a settled decision.
    pub fn from_record(
        record: &SignInRecord<'_>,
        decision: &SignInDecision,
        linked_now: bool,
    ) -> Self {
        NewSignInEvent {
            at: record.at,
            actor: record.actor.to_owned(),
            issuer: record.issuer.to_owned(),
            account_id: record.account_id.to_owned(),
            email: record.email.map(str::to_owned),
            email_verified: record.email_verified,
            situation: decision.situation,
            signed_in: decision.signs_in(),
            linked_now,
            user_pk: decision.user_pk,
            related: decision.related.clone(),
            explanation: decision.explanation.explanation.clone(),
            fix: decision.explanation.fix.clone(),
        }
    }
}

/// A sign-in decision to record.
#[derive(Clone, Debug)]
pub struct NewSignInEvent {
    pub at: Timestamp,
    pub actor: String,
    pub issuer: String,
    pub account_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub situation: SignInSituation,
    pub signed_in: bool,
    pub linked_now: bool,
    pub user_pk: Option<i64>,
    pub related: Vec<i64>,
    pub explanation: String,
    pub fix: String,
}

/// A recorded sign-in decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignInEvent {
    pub pk: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    pub actor: String,
    pub issuer: String,
    pub account_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub situation: SignInSituation,
    pub signed_in: bool,
    pub linked_now: bool,
    pub user_pk: Option<i64>,
    pub related: Vec<i64>,
    pub explanation: String,
    pub fix: String,
}

/// An OpenID Connect authorization request in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcLogin {
    /// Hex SHA-256 of the random handle the browser holds in a cookie.
    pub handle_hash: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where to go after signing in (a local path).
    pub return_to: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The provider's issuer and this client's ID at it, when the sign-in started.
    pub issuer: String,
    pub client_id: String,
}

/// The sign-in units of work.
pub trait SigninStore: Send + Sync {
    /// The profile whose External ID equals `account_id` exactly, and (when `email_key` is
    /// given) the profiles with that e-mail match key, ordered by pk, at most
    /// [`tether_core::signin::MAX_EMAIL_PROFILES`] + 1. One read.
    fn load_sign_in_facts(
        &self,
        account_id: &str,
        email_key: Option<&str>,
    ) -> impl Future<Output = Result<SignInFacts>> + Send;
    /// Writes `link.value` into the profile's External ID only where it is still empty, the
    /// profile not excluded and no other profile holds the value, with an audit entry (origin
    /// `login`); otherwise writes nothing and says why.
    fn link_at_sign_in(
        &self,
        link: &SignInLink<'_>,
    ) -> impl Future<Output = Result<ChangeResult>> + Send;
    /// Writes a decision's link (as [`SigninStore::link_at_sign_in`]), settles a lost race
    /// with [`tether_core::signin::settle_sign_in`], and records the settled decision (as
    /// [`SigninStore::insert_sign_in_event`]): one transaction.
    fn record_sign_in(
        &self,
        record: &SignInRecord<'_>,
    ) -> impl Future<Output = Result<RecordedSignIn>> + Send;
    /// Records a decision; a refusal naming a profile also appends an audit entry on it
    /// (origin `login`, old = new = its current External ID, reason `sign_in_refused: …`).
    fn insert_sign_in_event(
        &self,
        event: &NewSignInEvent,
    ) -> impl Future<Output = Result<i64>> + Send;
    /// Recorded decisions, newest first, for one profile or all.
    fn list_sign_in_events(
        &self,
        user_pk: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SignInEvent>>> + Send;
    /// Stores an authorization request, and forgets the ones that expired before `login.created_at`.
    fn insert_oidc_login(&self, login: &OidcLogin) -> impl Future<Output = Result<()>> + Send;
    /// Takes (removes and returns) the request whose handle hashes to `handle_hash`, if any:
    /// a second take of the same request finds nothing.
    fn take_oidc_login(
        &self,
        handle_hash: &str,
    ) -> impl Future<Output = Result<Option<OidcLogin>>> + Send;
}

/// `1,2,3` ↔ `[1, 2, 3]`, for the `related` column.
pub(crate) fn encode_pks(pks: &[i64]) -> String {
    pks.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

pub(crate) fn decode_pks(text: &str) -> std::result::Result<Vec<i64>, crate::StoreError> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<i64>()
                .map_err(|_| crate::StoreError::Corrupt(format!("related profiles '{text}'")))
        })
        .collect()
}

pub(crate) fn parse_situation(
    text: &str,
) -> std::result::Result<SignInSituation, crate::StoreError> {
    text.parse()
        .map_err(|e: tether_core::UnknownName| crate::StoreError::Corrupt(e.to_string()))
}

/// The audit reason of a refused sign-in.
pub(crate) fn refusal_reason(event: &NewSignInEvent) -> String {
    format!(
        "sign_in_refused: {} (account {}; nothing written)",
        event.situation, event.account_id
    )
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            AnyStore::Sqlite(store) => store.$method($($arg),*).await,
            AnyStore::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl SigninStore for AnyStore {
    async fn load_sign_in_facts(
        &self,
        account_id: &str,
        email_key: Option<&str>,
    ) -> Result<SignInFacts> {
        delegate!(self, load_sign_in_facts(account_id, email_key))
    }
    async fn link_at_sign_in(&self, link: &SignInLink<'_>) -> Result<ChangeResult> {
        delegate!(self, link_at_sign_in(link))
    }
    async fn record_sign_in(&self, record: &SignInRecord<'_>) -> Result<RecordedSignIn> {
        delegate!(self, record_sign_in(record))
    }
    async fn insert_sign_in_event(&self, event: &NewSignInEvent) -> Result<i64> {
        delegate!(self, insert_sign_in_event(event))
    }
    async fn list_sign_in_events(
        &self,
        user_pk: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SignInEvent>> {
        delegate!(self, list_sign_in_events(user_pk, limit))
    }
    async fn insert_oidc_login(&self, login: &OidcLogin) -> Result<()> {
        delegate!(self, insert_oidc_login(login))
    }
    async fn take_oidc_login(&self, handle_hash: &str) -> Result<Option<OidcLogin>> {
        delegate!(self, take_oidc_login(handle_hash))
    }
}
