//! One-call request verification at a protected resource (RFC 6750, RFC 9449 section 7):
//! real access tokens from token-jwt, real proofs from `ProofBuilder`, and the challenges
//! asserted byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code, helpers included: a panic is a test failure"
)]

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use token_dpop::token_jwt::{
    AccessTokenBuilder, CryptoProvider, JwkSet, JwsEncoder, JwsSigner, KeySet, Policy,
    RustCryptoProvider,
};
use token_dpop::{
    Algorithm, Authorized, Error, MemoryReplayCache, NonceIssuer, NonceKey, PrivateKey,
    ProofBuilder, Rejection, ReplayCache, ReplayFuture, ReplayKey, RequestVerifier,
    RequestVerifierBuilder, ResourceRequest, Scheme, Validator, ValidatorConfig,
};

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://as.example";
const AUD: &str = "https://rs.example";
const URI: &str = "https://rs.example/items?page=2";
const ALGS: &str = r#"algs="ES256 EdDSA""#;

// ---- helpers ---------------------------------------------------------------------------

/// An authorization server's key, a client's DPoP key, and a resource server's view of both.
struct World {
    provider: Arc<dyn CryptoProvider>,
    issuer: Arc<dyn JwsSigner>,
    keys: Arc<KeySet>,
    client: ProofBuilder,
}

impl World {
    fn new() -> Self {
        let provider: Arc<dyn CryptoProvider> = Arc::new(RustCryptoProvider::new());
        let issuer = provider
            .signer(&PrivateKey::generate(Algorithm::ES256).unwrap())
            .unwrap();
        let jwks = JwkSet::new(vec![issuer.public_jwk().clone()]);
        let keys = Arc::new(KeySet::from_jwks(&jwks, &*provider).unwrap());
        let client = client(&provider);
        World {
            provider,
            issuer,
            keys,
            client,
        }
    }

    /// An access token for `AUD` with scope `read`, custom claims, bound to `jkt` when given.
    fn token(&self, jkt: Option<&str>) -> String {
        self.token_with(jkt, NOW, |b| b)
    }

    fn token_with(
        &self,
        jkt: Option<&str>,
        iat: i64,
        more: impl FnOnce(AccessTokenBuilder) -> AccessTokenBuilder,
    ) -> String {
        let mut builder = AccessTokenBuilder::new(ISS, 300)
            .subject("user-42")
            .client_id("web-app")
            .audience([AUD])
            .scopes(["read"])
            .claim("tenant", "t1")
            .unwrap()
            .claim("roles", json!(["admin", "auditor"]))
            .unwrap();
        if let Some(jkt) = jkt {
            builder = builder.dpop_jkt(jkt);
        }
        let claims = more(builder).build(iat).unwrap();
        JwsEncoder::for_signer(&*self.issuer, "at+jwt")
            .encode(&claims, &*self.issuer)
            .unwrap()
    }

    /// A token bound to the client's key.
    fn bound_token(&self) -> String {
        self.token(Some(&self.client.jkt()))
    }

    fn validator_config(&self) -> ValidatorConfig {
        ValidatorConfig::builder(self.provider.clone())
            .allowed_algs([Algorithm::ES256, Algorithm::EdDSA])
            .build()
    }

    fn builder_with(&self, config: ValidatorConfig) -> RequestVerifierBuilder {
        let policy = Policy::builder().issuer(ISS).audience(AUD).build();
        let validator = Validator::new(config, Arc::new(MemoryReplayCache::new()));
        RequestVerifier::builder(policy, self.keys.clone(), Arc::new(validator))
    }

    fn builder(&self) -> RequestVerifierBuilder {
        self.builder_with(self.validator_config())
    }

    fn verifier(&self) -> RequestVerifier {
        self.builder().build()
    }

    /// The client's proof for `GET URI` presenting `token`.
    fn proof(&self, token: &str) -> String {
        self.client
            .proof("GET", URI, Some(token), None, NOW)
            .unwrap()
    }
}

fn client(provider: &Arc<dyn CryptoProvider>) -> ProofBuilder {
    ProofBuilder::new(
        &PrivateKey::generate(Algorithm::EdDSA).unwrap(),
        &**provider,
    )
    .unwrap()
}

fn dpop(token: &str) -> String {
    format!("DPoP {token}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET URI` with these header values.
fn get<'a>(authorization: &'a [&'a str], proofs: &'a [&'a str]) -> ResourceRequest<'a> {
    ResourceRequest::new(
        authorization.iter().map(|v| v.as_bytes()),
        proofs.iter().map(|v| v.as_bytes()),
        "GET",
        URI,
    )
}

fn refuse(verifier: &RequestVerifier, request: &ResourceRequest<'_>) -> Rejection {
    match verifier.verify_sync(request, NOW) {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(r) => r,
    }
}

/// Drives a future whose every await is ready (a `KeySet`, the in-memory cache).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("nothing here waits"),
    }
}

fn assert_send<T: Send>(_: &T) {}

/// The challenges, the one-value form, and that nothing of `secret` leaks into them.
fn assert_challenges(rejection: &Rejection, expected: &[&str], secret: &str) {
    assert_eq!(rejection.challenges(), expected, "{:?}", rejection.error());
    assert_eq!(rejection.www_authenticate(), expected.join(", "));
    let rendered = format!(
        "{} {} {rejection}",
        rejection.www_authenticate(),
        rejection.error_description().unwrap_or_default()
    );
    for part in secret.split('.').filter(|p| p.len() > 8) {
        assert!(!rendered.contains(part), "{rendered}");
    }
}

// ---- accepted --------------------------------------------------------------------------

#[test]
fn a_dpop_bound_token_with_a_valid_proof_is_authorized() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();

    // synchronous
    let (authorization, proof) = (dpop(&token), w.proof(&token));
    let ok = verifier
        .verify_sync(&get(&[&authorization], &[&proof]), NOW)
        .unwrap();
    assert_eq!(ok.scheme, Scheme::Dpop);
    assert_eq!(ok.jkt.as_deref(), Some(w.client.jkt().as_str()));
    assert_eq!(ok.claims.sub.as_deref(), Some("user-42"));
    assert_eq!(ok.claims.custom.get("tenant"), Some(&json!("t1")));
    let validated = ok.proof.unwrap();
    assert_eq!(
        (validated.htm.as_str(), validated.jkt),
        ("GET", w.client.jkt())
    );

    // asynchronous, with a fresh proof; the future is Send
    let proof = w.proof(&token);
    let (a, p) = ([authorization.as_str()], [proof.as_str()]);
    let request = get(&a, &p);
    let future = verifier.verify(&request, NOW);
    assert_send(&future);
    let ok = block_on(future).unwrap();
    assert_eq!(ok.scheme, Scheme::Dpop);
}

#[test]
fn scheme_names_are_case_insensitive_and_spaces_around_values_are_tolerated() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();
    let authorization = format!(" dpop   {token}\t");
    let proof = format!("{} ", w.proof(&token));
    let ok = verifier
        .verify_sync(&get(&[&authorization], &[&proof]), NOW)
        .unwrap();
    assert_eq!(ok.scheme, Scheme::Dpop);

    let token = w.token(None);
    let authorization = format!("BEARER {token}");
    assert!(
        verifier
            .verify_sync(&get(&[&authorization], &[]), NOW)
            .is_ok()
    );
}

#[test]
fn a_bearer_token_without_cnf_is_authorized() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.token(None);
    let authorization = bearer(&token);
    let ok = verifier
        .verify_sync(&get(&[&authorization], &[]), NOW)
        .unwrap();
    assert_eq!(ok.scheme, Scheme::Bearer);
    assert_eq!((ok.jkt, ok.proof), (None, None));
    assert_eq!(ok.claims.scopes().collect::<Vec<_>>(), ["read"]);

    // one DPoP header alongside a Bearer token is not looked at: the token is not bound
    let ok = block_on(verifier.verify(&get(&[&authorization], &["not a proof"]), NOW)).unwrap();
    assert_eq!(ok.scheme, Scheme::Bearer);
}

#[derive(Debug, Deserialize, PartialEq)]
struct MyClaims {
    sub: String,
    client_id: String,
    scope: String,
    exp: i64,
    tenant: String,
    roles: Vec<String>,
}

#[test]
fn claims_deserialize_into_the_callers_type() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();
    let authorization = dpop(&token);

    let proof = w.proof(&token);
    let ok: Authorized<MyClaims> = verifier
        .verify_as_sync(&get(&[&authorization], &[&proof]), NOW)
        .unwrap();
    assert_eq!(
        ok.claims,
        MyClaims {
            sub: "user-42".into(),
            client_id: "web-app".into(),
            scope: "read".into(),
            exp: NOW + 300,
            tenant: "t1".into(),
            roles: vec!["admin".into(), "auditor".into()],
        }
    );
    assert_eq!(ok.jkt, Some(w.client.jkt()));

    let proof = w.proof(&token);
    let ok = block_on(verifier.verify_as::<MyClaims>(&get(&[&authorization], &[&proof]), NOW));
    assert_eq!(ok.unwrap().claims.tenant, "t1");

    // a type the claims do not fit: invalid_token, and serde's message (which would quote
    // the claim) is not kept
    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "only deserialized")]
    struct Strict {
        tenant: u32,
    }
    let proof = w.proof(&token);
    let rejection = verifier
        .verify_as_sync::<Strict>(&get(&[&authorization], &[&proof]), NOW)
        .unwrap_err();
    assert!(matches!(rejection.error(), Error::UnexpectedClaims));
    assert!(std::error::Error::source(&rejection).is_none());
    assert_challenges(
        &rejection,
        &[
            "Bearer",
            &format!(
                r#"DPoP {ALGS}, error="invalid_token", error_description="access token claims do not have the expected form""#
            ),
        ],
        &token,
    );
}

// ---- the binding (RFC 9449 sections 7.1, 7.2) -------------------------------------------

#[test]
fn a_dpop_bound_token_presented_as_bearer_is_refused() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();
    let authorization = bearer(&token);
    let proof = w.proof(&token);
    // with or without the proof that would make it valid under DPoP
    for proofs in [&[][..], &[proof.as_str()][..]] {
        let rejection = refuse(&verifier, &get(&[&authorization], proofs));
        assert!(matches!(rejection.error(), Error::BoundTokenAsBearer));
        assert_eq!(rejection.status(), 401);
        assert_eq!(rejection.scheme(), Some(Scheme::Bearer));
        assert_challenges(
            &rejection,
            &[
                r#"Bearer error="invalid_token", error_description="key-bound access token presented as a Bearer token""#,
                &format!("DPoP {ALGS}"),
            ],
            &token,
        );
    }
}

#[test]
fn the_dpop_scheme_needs_a_bound_token() {
    let w = World::new();
    let token = w.token(None);
    let authorization = dpop(&token);
    let proof = w.proof(&token);
    let rejection = refuse(&w.verifier(), &get(&[&authorization], &[&proof]));
    assert!(matches!(rejection.error(), Error::TokenNotBound));
    assert_challenges(
        &rejection,
        &[
            "Bearer",
            &format!(
                r#"DPoP {ALGS}, error="invalid_token", error_description="access token is not DPoP-bound""#
            ),
        ],
        &token,
    );
}

#[test]
fn the_dpop_scheme_needs_a_proof() {
    let w = World::new();
    let token = w.bound_token();
    let authorization = dpop(&token);
    let rejection = refuse(&w.verifier(), &get(&[&authorization], &[]));
    assert!(matches!(rejection.error(), Error::MissingProof));
    assert_eq!(rejection.status(), 401);
    assert_challenges(
        &rejection,
        &[
            "Bearer",
            &format!(
                r#"DPoP {ALGS}, error="invalid_dpop_proof", error_description="DPoP proof missing""#
            ),
        ],
        &token,
    );
}

#[test]
fn the_proof_must_carry_the_tokens_ath() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();
    let authorization = dpop(&token);

    let without = w.client.proof("GET", URI, None, None, NOW).unwrap();
    let rejection = refuse(&verifier, &get(&[&authorization], &[&without]));
    assert!(matches!(rejection.error(), Error::MissingAth));
    assert_challenges(
        &rejection,
        &[
            "Bearer",
            &format!(
                r#"DPoP {ALGS}, error="invalid_dpop_proof", error_description="DPoP proof ath missing""#
            ),
        ],
        &token,
    );

    let other_token = w.bound_token();
    let wrong = w.proof(&other_token);
    let rejection = refuse(&verifier, &get(&[&authorization], &[&wrong]));
    assert!(matches!(rejection.error(), Error::AthMismatch));
    assert_challenges(
        &rejection,
        &[
            "Bearer",
            &format!(
                r#"DPoP {ALGS}, error="invalid_dpop_proof", error_description="DPoP proof ath does not match the access token""#
            ),
        ],
        &token,
    );
}

#[test]
fn a_proof_from_another_key_is_refused() {
    let w = World::new();
    let token = w.bound_token();
    let authorization = dpop(&token);
    let thief = client(&w.provider);
    let proof = thief.proof("GET", URI, Some(&token), None, NOW).unwrap();
    let rejection = refuse(&w.verifier(), &get(&[&authorization], &[&proof]));
    assert!(matches!(rejection.error(), Error::JktMismatch));
    // invalid_token, as in the RFC 9449 section 7.1 example ("Invalid DPoP key binding")
    assert_eq!(rejection.oauth_error(), Some("invalid_token"));
    assert_eq!(rejection.status(), 401);
    assert_challenges(
        &rejection,
        &[
            "Bearer",
            &format!(
                r#"DPoP {ALGS}, error="invalid_token", error_description="DPoP key does not match the bound key""#
            ),
        ],
        &token,
    );
}

#[test]
fn the_proof_is_checked_against_the_method_the_uri_and_the_replay_cache() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();
    let authorization = dpop(&token);
    let proof = w.proof(&token);

    let post = ResourceRequest::new([authorization.as_bytes()], [proof.as_bytes()], "POST", URI);
    assert!(matches!(
        refuse(&verifier, &post).error(),
        Error::HtmMismatch
    ));
    let elsewhere = ResourceRequest::new(
        [authorization.as_bytes()],
        [proof.as_bytes()],
        "GET",
        "https://rs.example/other",
    );
    assert!(matches!(
        refuse(&verifier, &elsewhere).error(),
        Error::HtuMismatch
    ));

    let (a, p) = ([authorization.as_str()], [proof.as_str()]);
    let request = get(&a, &p);
    verifier.verify_sync(&request, NOW).unwrap();
    let rejection = refuse(&verifier, &request);
    assert!(matches!(rejection.error(), Error::Replay));
    assert_eq!(rejection.status(), 401);
}

// ---- exactly one header of each -------------------------------------------------------

#[test]
fn two_authorization_headers_are_refused() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();
    let authorization = dpop(&token);
    let proof = w.proof(&token);
    let expected = [
        r#"Bearer error="invalid_request", error_description="more than one Authorization header""#
            .to_owned(),
        format!(
            r#"DPoP {ALGS}, error="invalid_request", error_description="more than one Authorization header""#
        ),
    ];
    let expected = expected.each_ref().map(String::as_str);

    // the same value twice, and a second value that is not even UTF-8
    let second: [&[u8]; 2] = [authorization.as_bytes(), &[0xff, 0xfe, b' ', 0x80]];
    for second in second {
        let request = ResourceRequest::new(
            [authorization.as_bytes(), second],
            [proof.as_bytes()],
            "GET",
            URI,
        );
        let rejection = refuse(&verifier, &request);
        assert!(matches!(rejection.error(), Error::MultipleAuthorizations));
        assert_eq!(rejection.status(), 400);
        assert_eq!(rejection.scheme(), None);
        assert_challenges(&rejection, &expected, &token);
    }
    // the proof was not consumed: the request with one header passes
    verifier
        .verify_sync(&get(&[&authorization], &[&proof]), NOW)
        .unwrap();
}

#[test]
fn two_proofs_are_refused_even_when_the_second_is_not_ascii() {
    let w = World::new();
    let verifier = w.verifier();
    let token = w.bound_token();
    let proof = w.proof(&token);
    let not_ascii: &[u8] = &[0xc3, 0xa9, 0xff];
    for authorization in [dpop(&token), bearer(&w.token(None))] {
        for second in [not_ascii, proof.as_bytes()] {
            let request = ResourceRequest::new(
                [authorization.as_bytes()],
                [proof.as_bytes(), second],
                "GET",
                URI,
            );
            let rejection = refuse(&verifier, &request);
            assert!(matches!(rejection.error(), Error::MultipleProofs));
            assert_eq!(rejection.status(), 401);
            assert_challenges(
                &rejection,
                &[
                    "Bearer",
                    &format!(
                        r#"DPoP {ALGS}, error="invalid_dpop_proof", error_description="more than one DPoP proof""#
                    ),
                ],
                &token,
            );
        }
    }
}

#[test]
fn a_proof_that_is_not_utf8_is_malformed() {
    let w = World::new();
    let token = w.bound_token();
    let authorization = dpop(&token);
    let request = ResourceRequest::new(
        [authorization.as_bytes()],
        [&[0xff, b'.', b'.'][..]],
        "GET",
        URI,
    );
    let rejection = refuse(&w.verifier(), &request);
    assert!(matches!(rejection.error(), Error::Malformed(_)));
    assert_eq!(rejection.oauth_error(), Some("invalid_dpop_proof"));
}

// ---- challenges ------------------------------------------------------------------------

#[test]
fn requests_without_usable_credentials_get_bare_challenges() {
    let w = World::new();
    let verifier = w.builder().realm(r#"api "v1" \ é"#).build();
    let realm = r#"realm="api \"v1\" \\ ""#;
    let expected = [format!("Bearer {realm}"), format!("DPoP {realm}, {ALGS}")];
    let expected = expected.each_ref().map(String::as_str);
    for authorization in [&[][..], &["Basic dXNlcjpwYXNz"][..], &["Negotiate"][..]] {
        let rejection = refuse(&verifier, &get(authorization, &[]));
        assert!(
            matches!(
                rejection.error(),
                Error::MissingAuthorization | Error::UnsupportedScheme
            ),
            "{:?}",
            rejection.error()
        );
        assert_eq!(rejection.status(), 401);
        assert_eq!(rejection.oauth_error(), None);
        assert_eq!(rejection.error_description(), None);
        assert_eq!(rejection.dpop_nonce(), None);
        assert_challenges(&rejection, &expected, "");
    }
    assert_eq!(
        verifier
            .reject(Error::MissingAuthorization, None)
            .www_authenticate(),
        format!("Bearer {realm}, DPoP {realm}, {ALGS}")
    );
}

#[test]
fn a_dpop_only_verifier_refuses_bearer_and_challenges_only_dpop() {
    let w = World::new();
    let verifier = w.builder().accept_bearer(false).build();
    let token = w.token(None);
    let authorization = bearer(&token);
    let rejection = refuse(&verifier, &get(&[&authorization], &[]));
    assert!(matches!(rejection.error(), Error::UnsupportedScheme));
    assert_eq!(rejection.scheme(), Some(Scheme::Bearer));
    assert_eq!(rejection.status(), 401);
    assert_challenges(&rejection, &[&format!("DPoP {ALGS}")], &token);

    // DPoP still works
    let token = w.bound_token();
    let (authorization, proof) = (dpop(&token), w.proof(&token));
    assert!(
        verifier
            .verify_sync(&get(&[&authorization], &[&proof]), NOW)
            .is_ok()
    );
}

#[test]
fn a_malformed_authorization_header_is_invalid_request() {
    let w = World::new();
    let verifier = w.verifier();
    let expected = [
        r#"Bearer error="invalid_request", error_description="Authorization header malformed""#
            .to_owned(),
        format!(
            r#"DPoP {ALGS}, error="invalid_request", error_description="Authorization header malformed""#
        ),
    ];
    let bad: [&[u8]; 7] = [
        b"DPoP",
        b"DPoP ",
        b"Bearer a b",
        b"Bearer a=b, c=d",
        "Bearer é".as_bytes(),
        b"Bea(rer x",
        &[0xff, b' ', b'x'],
    ];
    for value in bad {
        let request = ResourceRequest::new([value], [], "GET", URI);
        let rejection = refuse(&verifier, &request);
        assert!(
            matches!(rejection.error(), Error::MalformedAuthorization),
            "{value:?}: {:?}",
            rejection.error()
        );
        assert_eq!(rejection.status(), 400);
        // the error goes on the challenge of the scheme used, or on both when unknown
        match rejection.scheme() {
            Some(Scheme::Bearer) => assert_eq!(
                rejection.challenges(),
                [expected[0].clone(), format!("DPoP {ALGS}")]
            ),
            Some(_) => assert_eq!(rejection.challenges(), ["Bearer", expected[1].as_str()]),
            None => assert_eq!(rejection.challenges(), expected),
        }
    }

    // an oversized header is refused before it is looked at
    let huge = format!("DPoP {}", "a".repeat(verifier.policy().max_token_bytes + 1));
    let rejection = refuse(&verifier, &get(&[&huge], &[]));
    assert!(matches!(
        rejection.error(),
        Error::AccessTokenTooLarge { .. }
    ));
    assert_eq!(rejection.status(), 401);
}

#[test]
fn token_errors_name_the_check_and_never_the_token() {
    let w = World::new();
    let verifier = w.verifier();
    let expired = w.token_with(None, NOW - 3600, |b| b);
    let foreign = w.token_with(None, NOW, |b| b.audience(["https://elsewhere.example"]));
    let cases = [
        (expired, "access token expired"),
        (foreign, "access token audience not accepted"),
        (
            "e30.e30.c2ln".to_owned(),
            "access token malformed or not accepted",
        ),
    ];
    for (token, description) in cases {
        let authorization = bearer(&token);
        let rejection = refuse(&verifier, &get(&[&authorization], &[]));
        assert!(matches!(rejection.error(), Error::InvalidAccessToken(_)));
        assert!(std::error::Error::source(&rejection).is_some());
        assert_eq!(rejection.status(), 401);
        assert_challenges(
            &rejection,
            &[
                &format!(r#"Bearer error="invalid_token", error_description="{description}""#),
                &format!("DPoP {ALGS}"),
            ],
            &token,
        );
    }
}

#[test]
fn insufficient_scope_is_403_with_the_required_scope() {
    let w = World::new();
    let verifier = w
        .builder()
        .require_scope("read")
        .require_scope(" write  admin")
        .build();
    let token = w.token(None);
    let authorization = bearer(&token);
    let rejection = refuse(&verifier, &get(&[&authorization], &[]));
    assert!(matches!(rejection.error(), Error::InsufficientScope));
    assert_eq!(rejection.status(), 403);
    assert_challenges(
        &rejection,
        &[
            r#"Bearer error="insufficient_scope", error_description="access token lacks a required scope", scope="read write admin""#,
            &format!("DPoP {ALGS}"),
        ],
        &token,
    );

    let token = w.token_with(None, NOW, |b| b.scopes(["write", "read", "admin"]));
    let authorization = bearer(&token);
    assert!(
        verifier
            .verify_sync(&get(&[&authorization], &[]), NOW)
            .is_ok()
    );
}

#[test]
fn a_required_nonce_is_answered_with_use_dpop_nonce_and_a_dpop_nonce_header() {
    let w = World::new();
    let issuer = Arc::new(NonceIssuer::new(NonceKey::from_bytes(&[9; 32])));
    let config = ValidatorConfig::builder(w.provider.clone())
        .allowed_algs([Algorithm::ES256, Algorithm::EdDSA])
        .require_nonce(issuer)
        .build();
    let verifier = w.builder_with(config).build();
    let token = w.bound_token();
    let authorization = dpop(&token);

    let proof = w.proof(&token);
    let rejection = refuse(&verifier, &get(&[&authorization], &[&proof]));
    assert!(matches!(rejection.error(), Error::NonceRequired { .. }));
    assert_eq!(rejection.status(), 401);
    assert_challenges(
        &rejection,
        &[
            "Bearer",
            &format!(
                r#"DPoP {ALGS}, error="use_dpop_nonce", error_description="DPoP nonce required""#
            ),
        ],
        &token,
    );
    let nonce = rejection.dpop_nonce().unwrap().to_owned();

    let proof = w
        .client
        .proof("GET", URI, Some(&token), Some(&nonce), NOW)
        .unwrap();
    let ok = verifier
        .verify_sync(&get(&[&authorization], &[&proof]), NOW)
        .unwrap();
    assert_eq!(ok.proof.unwrap().nonce, Some(nonce));
}

/// A cache with only the async path (like a networked one).
#[derive(Debug, Default)]
struct AsyncOnly(MemoryReplayCache);

impl ReplayCache for AsyncOnly {
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> ReplayFuture<'a> {
        self.0.insert_if_absent(key, expires_at, now)
    }
}

#[test]
fn server_side_failures_are_500_without_error_information() {
    let w = World::new();
    let policy = Policy::builder().issuer(ISS).audience(AUD).build();
    let validator = Validator::new(w.validator_config(), Arc::new(AsyncOnly::default()));
    let verifier = RequestVerifier::new(policy, w.keys.clone(), Arc::new(validator));
    let token = w.bound_token();
    let (authorization, proof) = (dpop(&token), w.proof(&token));
    let (a, p) = ([authorization.as_str()], [proof.as_str()]);
    let request = get(&a, &p);

    let rejection = refuse(&verifier, &request);
    assert!(matches!(
        rejection.error(),
        Error::ReplayCacheNotSynchronous
    ));
    assert_eq!(rejection.status(), 500);
    assert_eq!(rejection.oauth_error(), None);
    assert_challenges(&rejection, &["Bearer", &format!("DPoP {ALGS}")], &token);
    // the async path works with it
    assert!(block_on(verifier.verify(&request, NOW)).is_ok());

    // a request URI the proof cannot be compared with is the server's mistake
    let proof = w.proof(&token);
    let request = ResourceRequest::new(
        [authorization.as_bytes()],
        [proof.as_bytes()],
        "GET",
        "/items",
    );
    let rejection = block_on(verifier.verify(&request, NOW)).unwrap_err();
    assert!(matches!(rejection.error(), Error::InvalidRequestUri));
    assert_eq!(rejection.status(), 500);
}

#[test]
fn a_rejection_is_an_error_and_converts_back() {
    let w = World::new();
    let rejection = refuse(&w.verifier(), &get(&[], &[]));
    assert_eq!(rejection.to_string(), "no Authorization header");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(rejection);
    assert_eq!(boxed.to_string(), "no Authorization header");
    let rejection = w
        .verifier()
        .reject(Error::InsufficientScope, Some(Scheme::Dpop));
    assert!(matches!(Error::from(rejection), Error::InsufficientScope));
    let debug = format!("{:?}", get(&["DPoP secret-token"], &["secret-proof"]));
    assert!(!debug.contains("secret"), "{debug}");
}

// ---- the `http` types ------------------------------------------------------------------

#[cfg(feature = "http")]
mod http_types {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method, Request, header};

    fn headers(authorization: &[&[u8]], proofs: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in authorization {
            map.append(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        for value in proofs {
            // mixed case: header names are case-insensitive
            let name = http::HeaderName::from_bytes(b"DPoP").unwrap();
            map.append(name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn a_header_map_is_verified() {
        let w = World::new();
        let verifier = w.verifier();
        let token = w.bound_token();
        let (authorization, proof) = (dpop(&token), w.proof(&token));
        let map = headers(&[authorization.as_bytes()], &[proof.as_bytes()]);
        let request = ResourceRequest::from_headers(&map, &Method::GET, URI);
        let ok = block_on(verifier.verify(&request, NOW)).unwrap();
        assert_eq!(ok.jkt, Some(w.client.jkt()));
    }

    #[test]
    fn request_parts_are_verified_against_the_external_origin() {
        let w = World::new();
        let verifier = w.verifier();
        let token = w.bound_token();
        let (authorization, proof) = (dpop(&token), w.proof(&token));
        // the server sees the origin-form target; the proxy in front serves rs.example
        let (parts, ()) = Request::get("/items?page=2")
            .header(header::AUTHORIZATION, &authorization)
            .header("dpop", &proof)
            .body(())
            .unwrap()
            .into_parts();
        for origin in ["https://rs.example", "https://rs.example/"] {
            let request = ResourceRequest::from_parts(&parts, origin);
            assert_eq!(request.uri(), "https://rs.example/items");
            assert_eq!(request.method(), "GET");
        }
        let ok = verifier
            .verify_sync(
                &ResourceRequest::from_parts(&parts, "https://rs.example"),
                NOW,
            )
            .unwrap();
        assert_eq!(ok.scheme, Scheme::Dpop);

        // another origin: the proof was made for rs.example
        let proof = w.proof(&token);
        let (parts, ()) = Request::get("/items")
            .header(header::AUTHORIZATION, &authorization)
            .header("dpop", &proof)
            .body(())
            .unwrap()
            .into_parts();
        let request = ResourceRequest::from_parts(&parts, "https://internal:8080");
        assert!(matches!(
            refuse(&verifier, &request).error(),
            Error::HtuMismatch
        ));
    }

    #[test]
    fn a_second_proof_that_is_not_ascii_still_counts() {
        let w = World::new();
        let verifier = w.verifier();
        let token = w.bound_token();
        let (authorization, proof) = (dpop(&token), w.proof(&token));
        // obs-text: valid in a header value, not UTF-8; `to_str()` fails on it
        let second: &[u8] = &[0xff, 0xfe, 0x80];
        assert!(HeaderValue::from_bytes(second).unwrap().to_str().is_err());
        let map = headers(&[authorization.as_bytes()], &[proof.as_bytes(), second]);
        let rejection = refuse(
            &verifier,
            &ResourceRequest::from_headers(&map, &Method::GET, URI),
        );
        assert!(matches!(rejection.error(), Error::MultipleProofs));
        // and first
        let map = headers(&[authorization.as_bytes()], &[second, proof.as_bytes()]);
        let rejection = refuse(
            &verifier,
            &ResourceRequest::from_headers(&map, &Method::GET, URI),
        );
        assert!(matches!(rejection.error(), Error::MultipleProofs));
        // one non-ASCII proof alone is malformed, not missing
        let map = headers(&[authorization.as_bytes()], &[second]);
        let rejection = refuse(
            &verifier,
            &ResourceRequest::from_headers(&map, &Method::GET, URI),
        );
        assert!(matches!(rejection.error(), Error::Malformed(_)));
        // the proof was never consumed
        let map = headers(&[authorization.as_bytes()], &[proof.as_bytes()]);
        assert!(
            verifier
                .verify_sync(&ResourceRequest::from_headers(&map, &Method::GET, URI), NOW)
                .is_ok()
        );
    }

    #[test]
    fn a_second_authorization_that_is_not_ascii_still_counts() {
        let w = World::new();
        let verifier = w.verifier();
        let token = w.token(None);
        let authorization = bearer(&token);
        let map = headers(&[authorization.as_bytes(), &[b'B', 0xe9]], &[]);
        let rejection = refuse(
            &verifier,
            &ResourceRequest::from_headers(&map, &Method::GET, URI),
        );
        assert!(matches!(rejection.error(), Error::MultipleAuthorizations));
        assert_eq!(rejection.status(), 400);
    }

    #[test]
    fn a_rejection_renders_into_an_http_response() {
        let w = World::new();
        let issuer = Arc::new(NonceIssuer::new(NonceKey::from_bytes(&[3; 32])));
        let config = ValidatorConfig::builder(w.provider.clone())
            .allowed_algs([Algorithm::ES256, Algorithm::EdDSA])
            .require_nonce(issuer)
            .build();
        let verifier = w.builder_with(config).build();
        let token = w.bound_token();
        let (authorization, proof) = (dpop(&token), w.proof(&token));
        let map = headers(&[authorization.as_bytes()], &[proof.as_bytes()]);
        let rejection = refuse(
            &verifier,
            &ResourceRequest::from_headers(&map, &Method::GET, URI),
        );

        let mut response = http::Response::builder().status(rejection.status());
        for challenge in rejection.challenges() {
            response = response.header(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(nonce) = rejection.dpop_nonce() {
            response = response.header("DPoP-Nonce", nonce);
        }
        let response = response.body(()).unwrap();
        assert_eq!(response.status(), 401);
        let challenges: Vec<_> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            challenges,
            [
                "Bearer".to_owned(),
                format!(
                    r#"DPoP {ALGS}, error="use_dpop_nonce", error_description="DPoP nonce required""#
                )
            ]
        );
        assert!(response.headers().contains_key("dpop-nonce"));
    }
}
