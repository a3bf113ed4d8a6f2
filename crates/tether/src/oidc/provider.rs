//! The relying party: discovery, the authorization request (code flow with PKCE S256, `state`
//! and `nonce`), the code exchange, and ID token validation (OpenID Connect Core §3.1.3.7),
//! built on the `openidconnect` crate.
//!
//! Validation refuses: a signature that does not verify against the provider's JWKS (fetched
//! again once when a token names an unknown `kid`); `alg: none` and every HMAC algorithm
//! (only asymmetric algorithms the provider advertises are allowed, so a token "signed" with
//! the public key as an HMAC secret is refused); a wrong `iss`; an `aud` without this client
//! or with an untrusted extra audience; an `azp` other than this client (required with
//! several audiences); `exp` in the past and `iat` in the future or too old, each with
//! [`LEEWAY`]; a `nonce` other than the one sent. "Now" is a parameter.

use super::config::OidcConfig;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken,
    IdTokenClaims, IdTokenFields, IdTokenVerifier, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;
use time::OffsetDateTime;

/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY: time::Duration = time::Duration::seconds(60);
/// How old an ID token may be when it arrives (its `iat`), beyond the leeway.
pub const MAX_TOKEN_AGE: time::Duration = time::Duration::minutes(10);
/// The JWKS is fetched again on an unknown `kid` at most this often.
pub const JWKS_REFRESH_INTERVAL: time::Duration = time::Duration::seconds(10);

/// The signing algorithms tether accepts, if the provider advertises them: asymmetric only.
const ASYMMETRIC: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Claims beyond the standard ones (groups, roles, a custom account ID claim).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub other: HashMap<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

/// An ID token with tether's claims.
pub type TetherIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type TetherIdTokenClaims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type TokenFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TetherTokenResponse = StandardTokenResponse<TokenFields, CoreTokenType>;
type RpClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TetherTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a sign-in through the provider failed before any decision.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot reach the identity provider's discovery document: {0}")]
    Discovery(String),
    #[error("cannot fetch the identity provider's signing keys: {0}")]
    Jwks(String),
    #[error("the identity provider refused the code exchange: {0}")]
    Exchange(String),
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    Token(#[from] TokenError),
    #[error("the identity provider is misconfigured: {0}")]
    Provider(String),
}

/// Why an ID token was refused (each maps to a test in the negative suite).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Only compact tokens from tests are parsed here; the provider's arrive parsed.
    #[cfg_attr(not(test), allow(dead_code))]
    #[error("it is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("its signing algorithm is not allowed: {0}")]
    Algorithm(String),
    #[error("its signature does not verify: {0}")]
    Signature(String),
    #[error("wrong issuer: {0}")]
    Issuer(String),
    #[error("wrong audience: {0}")]
    Audience(String),
    #[error("it has expired or is not yet valid: {0}")]
    Expired(String),
    #[error("wrong nonce: {0}")]
    Nonce(String),
    #[error("no key of the provider's JWKS matches its kid and algorithm")]
    UnknownKey,
    #[error("the claim {0} is missing or empty")]
    MissingClaim(String),
    #[error("{0}")]
    Other(String),
}

impl From<ClaimsVerificationError> for TokenError {
    fn from(error: ClaimsVerificationError) -> Self {
        match error {
            ClaimsVerificationError::Expired(m) => TokenError::Expired(m),
            ClaimsVerificationError::InvalidAudience(m) => TokenError::Audience(m),
            ClaimsVerificationError::InvalidIssuer(m) => TokenError::Issuer(m),
            ClaimsVerificationError::InvalidNonce(m) => TokenError::Nonce(m),
            ClaimsVerificationError::SignatureVerification(e) => match e {
                SignatureVerificationError::DisallowedAlg(m)
                | SignatureVerificationError::UnsupportedAlg(m) => TokenError::Algorithm(m),
                SignatureVerificationError::NoMatchingKey => TokenError::UnknownKey,
                SignatureVerificationError::NoSignature => {
                    TokenError::Algorithm("the token is unsigned (alg: none)".to_owned())
                }
                other => TokenError::Signature(other.to_string()),
            },
            other => TokenError::Other(other.to_string()),
        }
    }
}

/// What a validated ID token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    /// The account ID claim's value (the subject by default).
    pub account_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// Whether the configured admin rule matches.
    pub is_admin: bool,
}

/// An authorization request to send the browser to, and what the callback must check.
#[derive(Clone, Debug)]
pub struct AuthStart {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

struct Keys {
    jwks: CoreJsonWebKeySet,
    fetched_at: Option<OffsetDateTime>,
}

/// A discovered provider, with its signing keys cached.
pub struct Provider {
    config: OidcConfig,
    metadata: CoreProviderMetadata,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    keys: RwLock<Keys>,
    http: reqwest::Client,
}

/// The HTTP client for the provider: no redirects followed (SSRF), bounded time.
pub fn http_client() -> Result<reqwest::Client, OidcError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| OidcError::Provider(e.to_string()))
}

fn chrono_time(at: OffsetDateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond()).unwrap_or_default()
}

impl Provider {
    /// Fetches the discovery document and the JWKS of `config.issuer`.
    pub async fn discover(
        config: OidcConfig,
        http: reqwest::Client,
    ) -> Result<Provider, OidcError> {
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        Provider::from_metadata(config, metadata, http, None)
    }

    /// A provider from metadata already at hand (its `jwks` set), e.g. for tests.
    pub fn from_metadata(
        config: OidcConfig,
        metadata: CoreProviderMetadata,
        http: reqwest::Client,
        fetched_at: Option<OffsetDateTime>,
    ) -> Result<Provider, OidcError> {
        let allowed_algs: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| ASYMMETRIC.contains(alg))
            .cloned()
            .collect();
        if allowed_algs.is_empty() {
            return Err(OidcError::Provider(format!(
                "it signs ID tokens only with {:?}; tether accepts only asymmetric algorithms (RS256, ES256, …)",
                metadata.id_token_signing_alg_values_supported()
            )));
        }
        if metadata.token_endpoint().is_none() {
            return Err(OidcError::Provider(
                "its discovery document has no token_endpoint".to_owned(),
            ));
        }
        let jwks = metadata.jwks().clone();
        Ok(Provider {
            config,
            metadata,
            allowed_algs,
            keys: RwLock::new(Keys { jwks, fetched_at }),
            http,
        })
    }

    /// The configuration this provider was discovered for.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// How many signing keys the provider's JWKS holds now.
    pub fn key_count(&self) -> usize {
        self.keys.read().map(|k| k.jwks.keys().len()).unwrap_or(0)
    }

    fn client(&self) -> Result<RpClient, OidcError> {
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Provider(format!("redirect URL: {e}")))?;
        Ok(RpClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// A fresh authorization request: random `state`, `nonce` and PKCE (S256) verifier.
    pub fn start(&self) -> Result<AuthStart, OidcError> {
        let client = self.client()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(AuthStart {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges an authorization code (with its PKCE verifier) and validates the ID token.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdentity, OidcError> {
        let client = self.client()?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        self.validate(id_token, nonce, now).await
    }

    /// Validates a compact ID token (one a test signed).
    #[cfg(test)]
    pub async fn validate_compact(
        &self,
        compact: &str,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdentity, OidcError> {
        let token: TetherIdToken = compact
            .parse()
            .map_err(|e: serde_json::Error| TokenError::Malformed(e.to_string()))?;
        self.validate(&token, nonce, now).await
    }

    /// Validates an ID token; on a key the cached JWKS does not hold, fetches the JWKS again
    /// (at most every [`JWKS_REFRESH_INTERVAL`]) and tries once more.
    pub async fn validate(
        &self,
        token: &TetherIdToken,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdentity, OidcError> {
        match self.verify_with_cached_keys(token, nonce, now) {
            Err(TokenError::UnknownKey) => {
                if self.refresh_keys(now).await? {
                    Ok(self.verify_with_cached_keys(token, nonce, now)?)
                } else {
                    Err(TokenError::UnknownKey.into())
                }
            }
            other => Ok(other?),
        }
    }

    fn verify_with_cached_keys(
        &self,
        token: &TetherIdToken,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdentity, TokenError> {
        let jwks = self
            .keys
            .read()
            .map_err(|_| TokenError::Other("key cache poisoned".into()))?
            .jwks
            .clone();
        let client_id = ClientId::new(self.config.client_id.clone());
        let issuer = self.metadata.issuer().clone();
        // The client secret is deliberately not given: no HMAC algorithm is allowed.
        let verifier: IdTokenVerifier<'_, CoreJsonWebKey> =
            IdTokenVerifier::new_public_client(client_id, issuer, jwks)
                .set_allowed_algs(self.allowed_algs.clone())
                .set_time_fn(move || chrono_time(now - LEEWAY))
                .set_issue_time_verifier_fn(move |iat| {
                    let iat = iat.timestamp();
                    if iat > (now + LEEWAY).unix_timestamp() {
                        Err(format!("issued in the future (iat {iat})"))
                    } else if iat < (now - MAX_TOKEN_AGE - LEEWAY).unix_timestamp() {
                        Err(format!("issued too long ago (iat {iat})"))
                    } else {
                        Ok(())
                    }
                });
        let expected = Nonce::new(nonce.to_owned());
        let claims = token.claims(&verifier, &expected)?;
        // OpenID Connect Core §3.1.3.7 steps 4–5 (the crate leaves them to the client).
        match claims.authorized_party() {
            Some(azp) if **azp != self.config.client_id => {
                return Err(TokenError::Audience(format!(
                    "authorized party (azp) is `{}`, not this client",
                    **azp
                )))
            }
            None if claims.audiences().len() > 1 => {
                return Err(TokenError::Audience(
                    "several audiences but no authorized party (azp)".to_owned(),
                ))
            }
            _ => {}
        }
        self.identity(claims)
    }

    fn identity(&self, claims: &TetherIdTokenClaims) -> Result<VerifiedIdentity, TokenError> {
        let extra = &claims.additional_claims().other;
        let subject = claims.subject().to_string();
        let email = claims.email().map(|e| e.to_string());
        let email_verified = claims.email_verified().unwrap_or(false);
        let claim_name = self.config.account_id_claim.as_str();
        let account_id = match claim_name {
            "sub" => Some(subject.clone()),
            "email" => email.clone(),
            "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
            other => extra.get(other).and_then(|value| match value {
                serde_json::Value::String(text) => Some(text.clone()),
                serde_json::Value::Number(number) => Some(number.to_string()),
                _ => None,
            }),
        }
        .filter(|value| !value.trim().is_empty())
        .ok_or_else(|| TokenError::MissingClaim(claim_name.to_owned()))?;
        let rule = &self.config.admin;
        let by_claim = rule
            .claim
            .as_ref()
            .is_some_and(|(name, wanted)| match extra.get(name) {
                Some(serde_json::Value::String(text)) => text == wanted,
                Some(serde_json::Value::Array(items)) => {
                    items.iter().any(|item| item.as_str() == Some(wanted))
                }
                _ => false,
            });
        let by_subject = rule.subjects.contains(&account_id);
        let by_email = email_verified
            && tether_core::match_key(email.as_deref())
                .key()
                .is_some_and(|key| rule.emails.iter().any(|e| e == key));
        Ok(VerifiedIdentity {
            issuer: claims.issuer().to_string(),
            subject,
            account_id,
            email,
            email_verified,
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            is_admin: by_claim || by_subject || by_email,
        })
    }

    /// Fetches the JWKS again unless it was fetched within the interval; says whether it did.
    async fn refresh_keys(&self, now: OffsetDateTime) -> Result<bool, OidcError> {
        let recent = self
            .keys
            .read()
            .map_err(|_| OidcError::Jwks("key cache poisoned".into()))?
            .fetched_at
            .is_some_and(|at| now - at < JWKS_REFRESH_INTERVAL && now >= at);
        if recent {
            return Ok(false);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(self.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Jwks(error_chain(&e)))?;
        let mut keys = self
            .keys
            .write()
            .map_err(|_| OidcError::Jwks("key cache poisoned".into()))?;
        keys.jwks = jwks;
        keys.fetched_at = Some(now);
        Ok(true)
    }
}

/// An error with its sources, for messages that say what actually failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
