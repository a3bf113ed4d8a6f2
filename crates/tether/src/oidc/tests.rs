//! ID token validation against tokens signed here with throwaway keys (`testdata/`), whose
//! public halves a small local JWKS endpoint serves. The real provider (oidc-provider-mock)
//! only signs correctly, so the forgeries of the negative suite are built here: tampered
//! signature, `alg: none`, HMAC with public key material, wrong audience / issuer / azp,
//! expired, from the future, wrong or missing nonce, and an unknown `kid` (key rotation).

use super::config::{AdminRule, OidcConfig};
use super::provider::{OidcError, Provider, TokenError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{
    CoreHmacKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-01-15 12:00:00 UTC);
const CLIENT_ID: &str = "tether-test";
const NONCE: &str = "n-0S6_WzA2Mj";

fn key(which: &str) -> CoreRsaPrivateSigningKey {
    let pem = match which {
        "a" => include_str!("testdata/rsa-test-key-a.pem"),
        _ => include_str!("testdata/rsa-test-key-b.pem"),
    };
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(format!("kid-{which}"))))
        .unwrap()
}

fn jwks_json(keys: &[&str]) -> String {
    let set = CoreJsonWebKeySet::new(keys.iter().map(|k| key(k).as_verification_key()).collect());
    serde_json::to_string(&set).unwrap()
}

/// A one-route HTTP server on a free port answering every request with `body` (which a test
/// may swap), counting requests.
struct JwksServer {
    base: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

fn jwks_server(initial: String) -> JwksServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = Arc::new(Mutex::new(initial));
    let hits = Arc::new(AtomicUsize::new(0));
    let (served, counter) = (body.clone(), hits.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let text = served.lock().unwrap().clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    JwksServer { base, body, hits }
}

fn config(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some("client-secret".to_owned()),
        redirect_url: "http://127.0.0.1:8080/auth/callback".to_owned(),
        scopes: vec!["openid".into(), "email".into()],
        account_id_claim: "sub".to_owned(),
        admin: AdminRule {
            claim: Some(("groups".into(), "tether-admins".into())),
            subjects: Vec::new(),
            emails: Vec::new(),
        },
    }
}

/// A provider whose JWKS (served by `server`) starts with `keys`.
fn provider(server: &JwksServer, keys: &[&str], config: OidcConfig) -> Provider {
    let metadata: CoreProviderMetadata = serde_json::from_value(json!({
        "issuer": server.base,
        "authorization_endpoint": format!("{}/authorize", server.base),
        "token_endpoint": format!("{}/token", server.base),
        "jwks_uri": format!("{}/jwks", server.base),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .unwrap();
    let jwks: CoreJsonWebKeySet = serde_json::from_str(&jwks_json(keys)).unwrap();
    Provider::from_metadata(
        config,
        metadata.set_jwks(jwks),
        super::provider::http_client().unwrap(),
        None,
    )
    .unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer,
        "sub": "557058:acc-alice",
        "aud": CLIENT_ID,
        "exp": (NOW + Duration::minutes(5)).unix_timestamp(),
        "iat": NOW.unix_timestamp(),
        "nonce": NONCE,
        "email": "Alice@Example.com",
        "email_verified": true,
        "groups": ["staff", "tether-admins"],
    })
}

fn sign_with(header: Value, payload: &Value, signer: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(&header), b64(payload));
    let signature = URL_SAFE_NO_PAD.encode(signer(input.as_bytes()));
    format!("{input}.{signature}")
}

/// RS256 with key `which`, its kid in the header.
fn rs256(which: &str, payload: &Value) -> String {
    let signing = key(which);
    sign_with(
        json!({"alg": "RS256", "typ": "JWT", "kid": format!("kid-{which}")}),
        payload,
        &|input| {
            signing
                .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input)
                .unwrap()
        },
    )
}

async fn validate(
    provider: &Provider,
    token: &str,
) -> Result<super::provider::VerifiedIdentity, OidcError> {
    provider.validate_compact(token, NONCE, NOW).await
}

fn refused(result: Result<super::provider::VerifiedIdentity, OidcError>) -> TokenError {
    match result {
        Err(OidcError::Token(error)) => error,
        other => panic!("expected a refused token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_correct_token_gives_the_identity() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let identity = validate(&provider, &rs256("a", &claims(&server.base)))
        .await
        .unwrap();
    assert_eq!(identity.account_id, "557058:acc-alice");
    assert_eq!(identity.subject, "557058:acc-alice");
    assert_eq!(identity.email.as_deref(), Some("Alice@Example.com"));
    assert!(identity.email_verified);
    assert!(identity.is_admin, "groups contains tether-admins");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0, "no fetch needed");

    // Without the group, no admin; email_verified absent counts as false.
    let mut payload = claims(&server.base);
    payload["groups"] = json!("staff");
    payload.as_object_mut().unwrap().remove("email_verified");
    let identity = validate(&provider, &rs256("a", &payload)).await.unwrap();
    assert!(!identity.is_admin);
    assert!(!identity.email_verified);
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let token = rs256("a", &claims(&server.base));
    // Same signature, another subject.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = claims(&server.base);
    payload["sub"] = json!("557058:acc-mallory");
    parts[1] = b64(&payload);
    let forged = parts.join(".");
    assert!(matches!(
        refused(validate(&provider, &forged).await),
        TokenError::Signature(_)
    ));
    // A flipped signature byte.
    let mut signature = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().unwrap())
        .unwrap();
    signature[10] ^= 0x01;
    let flipped = format!(
        "{}.{}",
        token.rsplit_once('.').unwrap().0,
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert!(matches!(
        refused(validate(&provider, &flipped).await),
        TokenError::Signature(_)
    ));
    // Signed by a key the provider does not publish, under the provider's kid.
    let other = key("b");
    let impostor = sign_with(
        json!({"alg": "RS256", "kid": "kid-a"}),
        &claims(&server.base),
        &|input| {
            other
                .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input)
                .unwrap()
        },
    );
    assert!(matches!(
        refused(validate(&provider, &impostor).await),
        TokenError::Signature(_)
    ));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let payload = claims(&server.base);
    for token in [
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&payload)
        ),
        format!("{}.{}", b64(&json!({"alg": "none"})), b64(&payload)),
        format!("{}.{}.", b64(&json!({"alg": "None"})), b64(&payload)),
    ] {
        let result = validate(&provider, &token).await;
        assert!(
            matches!(
                result,
                Err(OidcError::Token(
                    TokenError::Algorithm(_) | TokenError::Malformed(_)
                ))
            ),
            "{token}: {result:?}"
        );
    }
}

#[tokio::test]
async fn hmac_with_the_public_key_or_the_client_secret_is_refused() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let payload = claims(&server.base);
    // The classic confusion attack: HS256 keyed with the published public key.
    let public = jwks_json(&["a"]);
    let modulus = serde_json::from_str::<Value>(&public).unwrap()["keys"][0]["n"]
        .as_str()
        .unwrap()
        .to_owned();
    for secret in [
        public.into_bytes(),
        modulus.into_bytes(),
        b"client-secret".to_vec(),
    ] {
        let hmac = CoreHmacKey::new(secret);
        for (alg, name) in [
            (CoreJwsSigningAlgorithm::HmacSha256, "HS256"),
            (CoreJwsSigningAlgorithm::HmacSha512, "HS512"),
        ] {
            let token = sign_with(json!({"alg": name, "kid": "kid-a"}), &payload, &|input| {
                hmac.sign(&alg, input).unwrap()
            });
            assert!(
                matches!(
                    refused(validate(&provider, &token).await),
                    TokenError::Algorithm(_)
                ),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn wrong_audience_issuer_and_authorized_party_are_refused() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let base = claims(&server.base);
    let with = |key: &str, value: Value| {
        let mut payload = base.clone();
        payload[key] = value;
        rs256("a", &payload)
    };
    assert!(matches!(
        refused(validate(&provider, &with("aud", json!("another-client"))).await),
        TokenError::Audience(_)
    ));
    assert!(matches!(
        refused(validate(&provider, &with("aud", json!([CLIENT_ID, "untrusted"]))).await),
        TokenError::Audience(_)
    ));
    assert!(matches!(
        refused(validate(&provider, &with("azp", json!("another-client"))).await),
        TokenError::Audience(_)
    ));
    assert!(matches!(
        refused(validate(&provider, &with("iss", json!("https://evil.example.com"))).await),
        TokenError::Issuer(_)
    ));
    assert!(matches!(
        refused(validate(&provider, &with("iss", json!(format!("{}/", server.base)))).await),
        TokenError::Issuer(_)
    ));
    // azp naming this client is fine.
    assert!(validate(&provider, &with("azp", json!(CLIENT_ID)))
        .await
        .is_ok());
}

#[tokio::test]
async fn expiry_and_issue_time_have_a_small_leeway() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let at = |exp: OffsetDateTime, iat: OffsetDateTime| {
        let mut payload = claims(&server.base);
        payload["exp"] = json!(exp.unix_timestamp());
        payload["iat"] = json!(iat.unix_timestamp());
        rs256("a", &payload)
    };
    let expired = at(NOW - Duration::seconds(61), NOW - Duration::minutes(5));
    assert!(matches!(
        refused(validate(&provider, &expired).await),
        TokenError::Expired(_)
    ));
    let just_expired = at(NOW - Duration::seconds(30), NOW - Duration::minutes(5));
    assert!(
        validate(&provider, &just_expired).await.is_ok(),
        "within the leeway"
    );
    let from_the_future = at(NOW + Duration::minutes(10), NOW + Duration::seconds(120));
    assert!(matches!(
        refused(validate(&provider, &from_the_future).await),
        TokenError::Expired(_)
    ));
    let slightly_ahead = at(NOW + Duration::minutes(10), NOW + Duration::seconds(30));
    assert!(
        validate(&provider, &slightly_ahead).await.is_ok(),
        "within the leeway"
    );
    let stale = at(NOW + Duration::minutes(10), NOW - Duration::minutes(30));
    assert!(matches!(
        refused(validate(&provider, &stale).await),
        TokenError::Expired(_)
    ));
}

#[tokio::test]
async fn a_wrong_or_missing_nonce_is_refused() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let token = rs256("a", &claims(&server.base));
    assert!(matches!(
        refused(
            provider
                .validate_compact(&token, "another-nonce", NOW)
                .await
        ),
        TokenError::Nonce(_)
    ));
    let mut payload = claims(&server.base);
    payload.as_object_mut().unwrap().remove("nonce");
    assert!(matches!(
        refused(validate(&provider, &rs256("a", &payload)).await),
        TokenError::Nonce(_)
    ));
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_jwks_once_more() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    // The provider rotated to key b; its JWKS now has both.
    *server.body.lock().unwrap() = jwks_json(&["a", "b"]);
    let identity = validate(&provider, &rs256("b", &claims(&server.base)))
        .await
        .unwrap();
    assert_eq!(identity.account_id, "557058:acc-alice");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "one fetch");
    // Known now: no further fetch.
    validate(&provider, &rs256("b", &claims(&server.base)))
        .await
        .unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // A kid nobody publishes: refused, and a burst of them does not hammer the provider.
    let token = sign_with(
        json!({"alg": "RS256", "kid": "kid-unknown"}),
        &claims(&server.base),
        &|input| {
            key("b")
                .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input)
                .unwrap()
        },
    );
    for _ in 0..3 {
        assert_eq!(
            refused(validate(&provider, &token).await),
            TokenError::UnknownKey
        );
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "within the refresh interval"
    );
}

#[tokio::test]
async fn a_custom_account_id_claim_is_used_and_required() {
    let server = jwks_server(jwks_json(&["a"]));
    let mut config = config(&server.base);
    config.account_id_claim = "aaid".to_owned();
    config.admin = AdminRule {
        claim: None,
        subjects: vec!["557058:aaid-1".into()],
        emails: Vec::new(),
    };
    let provider = provider(&server, &["a"], config);
    let mut payload = claims(&server.base);
    payload["aaid"] = json!("557058:aaid-1");
    let identity = validate(&provider, &rs256("a", &payload)).await.unwrap();
    assert_eq!(identity.account_id, "557058:aaid-1");
    assert!(identity.is_admin, "listed account ID");
    let identity = validate(&provider, &rs256("a", &claims(&server.base))).await;
    assert_eq!(refused(identity), TokenError::MissingClaim("aaid".into()));
}

#[tokio::test]
async fn admin_by_email_needs_a_verified_email() {
    let server = jwks_server(jwks_json(&["a"]));
    let mut config = config(&server.base);
    config.admin = AdminRule {
        claim: None,
        subjects: Vec::new(),
        emails: vec!["alice@example.com".into()],
    };
    let provider = provider(&server, &["a"], config);
    let identity = validate(&provider, &rs256("a", &claims(&server.base)))
        .await
        .unwrap();
    assert!(identity.is_admin, "case-different verified e-mail");
    let mut payload = claims(&server.base);
    payload["email_verified"] = json!(false);
    let identity = validate(&provider, &rs256("a", &payload)).await.unwrap();
    assert!(!identity.is_admin);
}

#[test]
fn an_authorization_request_carries_pkce_state_and_nonce() {
    let server = jwks_server(jwks_json(&["a"]));
    let provider = provider(&server, &["a"], config(&server.base));
    let first = provider.start().unwrap();
    let second = provider.start().unwrap();
    let url = openidconnect::url::Url::parse(&first.url).unwrap();
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["state"], first.state);
    assert_eq!(query["nonce"], first.nonce);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], "http://127.0.0.1:8080/auth/callback");
    assert_eq!(query["scope"], "openid email");
    // S256: the challenge is the base64url SHA-256 of the verifier.
    use sha2::Digest;
    let expected = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(first.pkce_verifier.as_bytes()));
    assert_eq!(query["code_challenge"], expected);
    assert!(first.state.len() >= 16 && first.nonce.len() >= 16);
    assert_ne!(first.state, second.state);
    assert_ne!(first.nonce, second.nonce);
    assert_ne!(first.pkce_verifier, second.pkce_verifier);
}
