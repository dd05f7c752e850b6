//! Adversarial suite: attacks on the real gRPC API of an in-process server (in-memory store;
//! Redis and a Redis Cluster where the grant's storage is the point).
//! Every case asserts the exact gRPC status code, the exact `oauth-error` trailing metadata and
//! the exact message (for `ValidateDPoP`, which answers OK with `valid: false`, the exact
//! `error` and `error_description`), and then that nothing was issued or changed: no family
//! exists for the subject of a refused `GenerateTokens` (revoking the subject revokes none),
//! and a family that was attacked is intact (its access token is active, its refresh token
//! rotates exactly once and a second use is reuse).
//!
//! | group | what is attacked |
//! |---|---|
//! | caller authentication | no, wrong, empty, Basic, misplaced or retired caller tokens; a public path prefix leading to a protected RPC |
//! | RFC 9449 11.1 replay | the same proof twice, a reused `jti`, a proof reused across RPCs, a high-S twin of a proof |
//! | RFC 9449 11.2 pre-generation | `iat` in the future, too old, of the wrong type, missing |
//! | RFC 9449 11.3 nonce downgrade | no, stale, foreign or garbage nonce where nonces are required |
//! | RFC 9449 11.5 JWT swapping | an access token as a proof, other `typ`s, a swapped `jwk` |
//! | RFC 9449 11.6 / RFC 8725 algorithms | `none`, HS256 keyed with the public key, RS256 on an EC key, weak RSA, curve mismatch, private and symmetric `jwk`s, points off the curve, `crit` |
//! | RFC 9449 11.7 request integrity | `htm`, `htu` host, path, scheme, port, userinfo; query and fragment (ignored, as the RFC says); a request URI that is not http(s) |
//! | RFC 9449 11.8 / 11.10 binding and hash agility | `ath` missing, of another token, of another hash or length; keys not matching `cnf.jkt` or `expected_jkt`; bearer and revoked tokens |
//! | RFC 8725 on access tokens | `alg: none`, HS256 keyed with the server's public key, embedded `jwk`, `jku`, `x5u`, `x5c`, `crit`, `kid` traversal and injection, header `alg` mismatch, zero signatures, wrong `typ` or issuer |
//! | signature encodings | CVE-2022-21449 (r = s = 0, r = s = n), DER, ECDSA high-S, Ed25519 non-canonical `S`, small-order Ed25519 keys |
//! | sizes and nesting | oversized proofs, claims and messages; 10 000-deep JSON in claims and proofs; long fields and lists |
//! | control characters | NUL and other control characters in every string field of every RPC |
//! | refresh-token forgery | wrong checksum, spliced family, unknown family, truncated, other prefix, oversized, an access token; forged revocation; scope escalation |
//! | DPoP-bound refresh | no proof, another key's proof, a replayed proof, a rotated token without the key |
//! | `additional_claims_json` | registered and reserved claims, escaped names, non-objects, duplicates; scope smuggling; TTL stretching |
//! | grant integrity | a refresh mints the whole grant (audience, custom claims, lifetime) in memory, on Redis and on a Redis Cluster, across instances and whatever their defaults; narrowing for one token, never widening; another client's refresh, grace retry or revocation; one answer for every refused refresh token, and for every unusable token revoked; no audience; proofs not spent by early refusals; access tokens outliving their family; how long revocations stay listed |

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};
use token_dpop::{NonceIssuer, NonceKey, ProofBuilder, access_token_hash};
use token_jwt::{Algorithm, CryptoProvider, JwsSigner, PrivateKey, RustCryptoProvider, random_id};
use token_proto::{
    DPoPProof, GenerateTokensRequest, IntrospectTokenRequest, RefreshTokensRequest,
    RevokeTokenRequest, TokenResponse, ValidateDPoPRequest, ValidateDPoPResponse,
    revoke_token_request::Target,
};
use token_testkit::{RedisCluster, RedisServer};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Request, Response, Status};

mod common;
use common::{
    CALLER, Calls, Harness, ISSUER, URI, answer, audiences, authed, caller_digest, generate,
    harness, http_get, invalid_grant, now, oauth_error, on_redis, post, refresh_as, refusal,
    revocation, signing_key_file, temp_file,
};

/// The resource a proof presenting an access token is made for.
const API: &str = "https://api.example/orders";
/// `DPOP_NONCE_KEY` of the servers that require nonces, and the key it decodes to.
const NONCE_KEY_HEX: &str = "7777777777777777777777777777777777777777777777777777777777777777";
const NONCE_KEY: [u8; 32] = [0x77; 32];
/// The order n of P-256, big-endian.
const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
/// The order L of the Ed25519 base point, little-endian (as `S` is encoded).
const ED25519_ORDER: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

// ---- encoding ---------------------------------------------------------------------------------

fn b64(bytes: impl AsRef<[u8]>) -> String {
    token_jwt::base64url::encode(bytes)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `base64url(header) '.' base64url(claims)`.
fn signing_input(header: &str, claims: &str) -> String {
    format!("{}.{}", b64(header), b64(claims))
}

/// A compact JWS of `header` and `claims` signed by `signer`.
fn sign(header: &str, claims: &str, signer: &dyn JwsSigner) -> String {
    let input = signing_input(header, claims);
    let signature = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature))
}

/// `jws` with its signature replaced by `signature`.
fn resign(jws: &str, signature: &[u8]) -> String {
    format!("{}.{}", jws.rsplit_once('.').unwrap().0, b64(signature))
}

fn signature_of(jws: &str) -> Vec<u8> {
    token_jwt::base64url::decode(jws.rsplit_once('.').unwrap().1).unwrap()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// `depth` nested JSON arrays, as text (a `Value` that deep is recursive to print and drop).
fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

// ---- DPoP key holders -------------------------------------------------------------------------

/// A DPoP key: honest proofs, and proofs with whatever header and claims an attacker chooses.
struct Holder {
    signer: Arc<dyn JwsSigner>,
    builder: ProofBuilder,
}

impl Holder {
    fn new(alg: Algorithm) -> Self {
        let key = PrivateKey::generate(alg).unwrap();
        let signer = RustCryptoProvider::new().signer(&key).unwrap();
        Holder {
            builder: ProofBuilder::from_signer(signer.clone()),
            signer,
        }
    }

    fn es256() -> Self {
        Holder::new(Algorithm::ES256)
    }

    fn jkt(&self) -> String {
        self.builder.jkt()
    }

    fn jwk(&self) -> Value {
        self.builder.public_jwk().to_json_value()
    }

    /// The header and claims of an honest proof for `POST` [`URI`], now.
    fn parts(&self) -> (Value, Value) {
        let header =
            json!({"typ": "dpop+jwt", "alg": self.signer.algorithm().as_str(), "jwk": self.jwk()});
        let claims = json!({"jti": random_id().unwrap(), "htm": "POST", "htu": URI, "iat": now()});
        (header, claims)
    }

    /// A proof whose header and claims `edit` changed, signed with this key.
    fn forge(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut header, mut claims) = self.parts();
        edit(&mut header, &mut claims);
        self.sign(&header.to_string(), &claims.to_string())
    }

    /// A proof of these raw header and claims texts, signed with this key.
    fn sign(&self, header: &str, claims: &str) -> String {
        sign(header, claims, &*self.signer)
    }

    /// An honest proof for `POST` [`URI`].
    fn honest(&self) -> String {
        self.forge(|_, _| {})
    }

    /// A proof for `GET` [`API`] presenting `access_token` (`ath`), then edited.
    fn forge_for(&self, access_token: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        self.forge(|h, c| {
            c["htm"] = json!("GET");
            c["htu"] = json!(API);
            c["ath"] = json!(access_token_hash(access_token));
            edit(h, c);
        })
    }
}

/// A proof with a chosen `alg`, `jwk` and signature, over honest claims.
fn proof_with_key(alg: &str, jwk: Value, signature: &[u8]) -> String {
    let (mut header, claims) = Holder::es256().parts();
    header["alg"] = json!(alg);
    header["jwk"] = jwk;
    format!(
        "{}.{}",
        signing_input(&header.to_string(), &claims.to_string()),
        b64(signature)
    )
}

// ---- requests -----------------------------------------------------------------------------------

fn generate_with(subject: &str, proof: String) -> GenerateTokensRequest {
    GenerateTokensRequest {
        dpop: Some(post(proof)),
        ..generate(subject)
    }
}

/// A RefreshTokens request by client `web`, with `proof` when there is one.
fn refresh(token: &str, proof: Option<String>) -> RefreshTokensRequest {
    RefreshTokensRequest {
        dpop: proof.map(post),
        ..refresh_as(token, "web")
    }
}

/// A ValidateDPoP request for `GET` [`API`] presenting `access_token`.
fn at_api(proof: String, access_token: &str) -> ValidateDPoPRequest {
    ValidateDPoPRequest {
        proof,
        http_method: "GET".into(),
        http_uri: API.into(),
        access_token: access_token.into(),
        ..Default::default()
    }
}

fn fresh_subject() -> String {
    format!("victim-{}", random_id().unwrap())
}

/// `msg` with this exact `authorization` value.
fn with_authorization<T>(value: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", value.parse().unwrap());
    r
}

// ---- what the server answers, and what it still holds ---------------------------------------

/// What a refused request is answered: status code, `oauth-error` and message.
struct Refusal(Code, &'static str, String);

impl Refusal {
    /// `INVALID_ARGUMENT`, `invalid_request`, for a field too long or with control characters.
    fn text(field: &str) -> Self {
        Refusal::request(format!(
            "{field} is too long or contains control characters"
        ))
    }

    /// `INVALID_ARGUMENT`, `invalid_request`.
    fn request(message: impl Into<String>) -> Self {
        Refusal(Code::InvalidArgument, "invalid_request", message.into())
    }

    /// `UNAUTHENTICATED`, `invalid_dpop_proof`.
    fn proof(description: impl Into<String>) -> Self {
        Refusal(
            Code::Unauthenticated,
            "invalid_dpop_proof",
            description.into(),
        )
    }

    /// `UNAUTHENTICATED`, `invalid_grant`, refused because `why`. The wire does not tell
    /// why: every `invalid_grant` carries the one description
    /// [`token_server::status::INVALID_GRANT`], so a front end forwarding it is no oracle.
    fn grant(why: &str) -> Self {
        assert!(!why.is_empty(), "say why the grant is refused");
        Refusal(
            Code::Unauthenticated,
            "invalid_grant",
            token_server::status::INVALID_GRANT.to_owned(),
        )
    }

    /// `UNAUTHENTICATED`, `invalid_dpop_proof`, for a proof that is not a JWS.
    fn malformed_proof() -> Self {
        Refusal::proof("DPoP proof is not a well-formed JWS")
    }

    /// `UNAUTHENTICATED`, `invalid_grant`, for a refresh token of the wrong length.
    fn wrong_length() -> Self {
        Refusal::grant("malformed refresh token: wrong length")
    }

    /// `UNAUTHENTICATED`, `invalid_client`: the caller is not authenticated.
    fn caller() -> Self {
        let message = "missing or invalid caller credentials";
        Refusal(Code::Unauthenticated, "invalid_client", message.into())
    }

    /// The request was refused with exactly this code, `oauth-error` and message.
    #[track_caller]
    fn assert<T: std::fmt::Debug>(&self, result: Result<Response<T>, Status>) {
        let e = result.expect_err("the request must be refused");
        assert_eq!(
            (e.code(), oauth_error(&e), e.message()),
            (self.0, self.1, self.2.as_str()),
            "{e:?}"
        );
    }
}

/// ValidateDPoP answered `valid: false` with exactly this error, and nothing of the proof.
#[track_caller]
fn assert_invalid(r: &ValidateDPoPResponse, error: &str, description: &str) {
    assert_eq!(
        (r.valid, r.error.as_str(), r.error_description.as_str()),
        (false, error, description),
        "{r:?}"
    );
    assert!(r.jkt.is_empty() && r.jti.is_empty() && r.iat == 0, "{r:?}");
}

async fn issue(h: &mut Harness, holder: Option<&Holder>) -> TokenResponse {
    let mut req = generate(&fresh_subject());
    req.dpop = holder.map(|k| post(k.honest()));
    h.generate(req).await.unwrap().into_inner()
}

/// A server, a DPoP key and a family bound to it.
async fn bound_family() -> (Harness, Holder, TokenResponse) {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let tokens = issue(&mut h, Some(&holder)).await;
    assert_eq!(tokens.token_type, "DPoP");
    (h, holder, tokens)
}

impl Harness {
    async fn generate(
        &mut self,
        req: GenerateTokensRequest,
    ) -> Result<Response<TokenResponse>, Status> {
        self.client.generate_tokens(authed(req)).await
    }

    async fn refresh(
        &mut self,
        token: &str,
        proof: Option<String>,
    ) -> Result<Response<TokenResponse>, Status> {
        self.client
            .refresh_tokens(authed(refresh(token, proof)))
            .await
    }
}

async fn validate(h: &mut Harness, req: ValidateDPoPRequest) -> ValidateDPoPResponse {
    h.client.validate(req).await.unwrap()
}

/// IntrospectToken's answer: the verified claims of an active token, `None` otherwise.
async fn introspect(h: &mut Harness, token: &str) -> Option<Value> {
    let r = h.client.introspect(token).await.unwrap();
    assert_eq!(r.active, !r.claims_json.is_empty(), "{r:?}");
    r.active
        .then(|| serde_json::from_str(&r.claims_json).unwrap())
}

async fn active(h: &mut Harness, token: &str) -> bool {
    introspect(h, token).await.is_some()
}

/// RevokeToken of `target` presented by `client_id`: how many families it revoked.
async fn revoke_by(
    h: &mut Harness,
    client_id: &str,
    target: Target,
) -> Result<Response<u32>, Status> {
    let req = revocation(client_id, target, "test");
    let r = h.client.revoke_token(authed(req)).await?;
    Ok(r.map(|r| r.families_revoked))
}

/// RevokeToken of `target` presented by `web`.
async fn revoke(h: &mut Harness, target: Target) -> Result<Response<u32>, Status> {
    revoke_by(h, "web", target).await
}

/// Revokes every family of `subject` and returns how many there were.
async fn families_of(h: &mut Harness, subject: &str) -> u32 {
    revoke(h, Target::Subject(subject.into()))
        .await
        .unwrap()
        .into_inner()
}

/// Nothing was issued to `subject`.
async fn assert_no_family(h: &mut Harness, subject: &str) {
    assert_eq!(families_of(h, subject).await, 0, "a family was created");
}

/// The family of `tokens` is untouched: its access token is active, its refresh token rotates
/// (with a proof by `holder` when bound) exactly once, and a second use is reuse.
async fn assert_intact(h: &mut Harness, tokens: &TokenResponse, holder: Option<&Holder>) {
    assert!(
        active(h, &tokens.access_token).await,
        "the family was revoked"
    );
    let proof = || holder.map(Holder::honest);
    let rotated = h
        .refresh(&tokens.refresh_token, proof())
        .await
        .expect("the original refresh token still rotates")
        .into_inner();
    assert_eq!(rotated.family_id, tokens.family_id);
    let reuse = "refresh token reuse detected; the family has been revoked";
    assert_grant_refused(h, refresh(&tokens.refresh_token, proof()), reuse).await;
}

/// The rotation metric's count of each outcome: the one place a refused refresh's reason
/// shows (the wire does not tell it). Tests of this process run at once and count too, so
/// a refusal is checked as at least one more of its outcome.
struct Rotations(Vec<(&'static str, f64)>);

/// The `outcome`s of refused refreshes that are `invalid_grant`.
const GRANT_OUTCOMES: [&str; 8] = [
    "unknown",
    "forged",
    "malformed",
    "reuse",
    "revoked",
    "expired",
    "client_mismatch",
    "dpop_mismatch",
];

/// The `outcome` label of a refusal for `why` (token-refresh's text for the reason).
fn outcome_of(why: &str) -> &'static str {
    let has = |part: &str| why.contains(part);
    if has("reuse") {
        "reuse"
    } else if has("another client") {
        "client_mismatch"
    } else if has("DPoP") {
        "dpop_mismatch"
    } else if has("matches no token") {
        "forged"
    } else if has("unknown") {
        "unknown"
    } else if has("malformed") || has("checksum") || has("exceeds the limit") {
        "malformed"
    } else if has("revoked") {
        "revoked"
    } else if has("expired") {
        "expired"
    } else {
        panic!("no rotation outcome for {why:?}")
    }
}

impl Rotations {
    async fn read(h: &Harness) -> Self {
        let mut counts = Vec::new();
        for outcome in GRANT_OUTCOMES {
            counts.push((
                outcome,
                counter(h, token_server::metrics::ROTATIONS, outcome).await,
            ));
        }
        Rotations(counts)
    }

    /// Between `self` and `now`, refreshes were refused as `outcome` at least `n` times.
    #[track_caller]
    fn assert_counted(&self, now: &Rotations, outcome: &str, n: usize) {
        let count = |r: &Rotations| r.0.iter().find(|(o, _)| *o == outcome).unwrap().1;
        let (was, is) = (count(self), count(now));
        assert!(
            is >= was + n as f64,
            "{outcome}: {was} -> {is}, expected at least {n} more"
        );
    }
}

/// RefreshTokens with `req` is refused as `invalid_grant`, with the one description every
/// such refusal has, and counted in the rotation metric as refused for `why`.
async fn assert_grant_refused(h: &mut Harness, req: RefreshTokensRequest, why: &str) {
    let before = Rotations::read(h).await;
    let r = h.client.refresh_tokens(authed(req)).await;
    Refusal::grant(why).assert(r);
    before.assert_counted(&Rotations::read(h).await, outcome_of(why), 1);
}

/// GenerateTokens with this proof is refused as `invalid_dpop_proof` with `description`, and
/// nothing is issued.
async fn assert_proof_refused(h: &mut Harness, proof: String, description: &str) {
    let subject = fresh_subject();
    let r = h.generate(generate_with(&subject, proof)).await;
    Refusal::proof(description).assert(r);
    assert_no_family(h, &subject).await;
}

/// GenerateTokens for a new subject, with the request changed by `edit`, is refused as
/// `invalid_request` with `message`, and nothing is issued to the subject.
async fn assert_generate_invalid(
    h: &mut Harness,
    edit: impl FnOnce(&mut GenerateTokensRequest),
    message: &str,
) {
    let subject = fresh_subject();
    let mut req = generate(&subject);
    edit(&mut req);
    let r = h.generate(req).await;
    Refusal::request(message).assert(r);
    assert_no_family(h, &subject).await;
}

/// Proofs whose claim `name` is each of `values` are refused with `description`.
async fn assert_claim_refused<V: Into<Value>>(
    h: &mut Harness,
    name: &str,
    values: impl IntoIterator<Item = V>,
    description: &str,
) {
    let holder = Holder::es256();
    for value in values {
        let value = value.into();
        assert_proof_refused(h, holder.forge(|_, c| c[name] = value), description).await;
    }
}

/// A proof without the claim `name` is refused with `description`.
async fn assert_claim_required(h: &mut Harness, name: &str, description: &str) {
    let proof = Holder::es256().forge(|_, c| {
        c.as_object_mut().unwrap().remove(name);
    });
    assert_proof_refused(h, proof, description).await;
}

/// ValidateDPoP answers `req` with `valid: false`, `error` and `description`.
async fn assert_validate_invalid(
    h: &mut Harness,
    req: ValidateDPoPRequest,
    error: &str,
    description: &str,
) {
    assert_invalid(&validate(h, req).await, error, description);
}

// ---- caller authentication ----------------------------------------------------------------------

/// GenerateTokens with this `authorization` value (or none) is refused and issues nothing.
async fn assert_caller_refused(h: &mut Harness, authorization: Option<&str>) {
    let subject = fresh_subject();
    let req = match authorization {
        Some(value) => with_authorization(value, generate(&subject)),
        None => Request::new(generate(&subject)),
    };
    let r = h.client.generate_tokens(req).await;
    Refusal::caller().assert(r);
    assert_no_family(h, &subject).await;
}

#[tokio::test]
async fn caller_without_credentials_is_refused_and_nothing_is_issued() {
    let mut h = harness(&[]).await;
    assert_caller_refused(&mut h, None).await;
}

#[tokio::test]
async fn caller_with_a_wrong_bearer_token_is_refused() {
    let mut h = harness(&[]).await;
    assert_caller_refused(&mut h, Some("Bearer not-the-caller-token")).await;
    // A prefix or an extension of the real token is another token.
    assert_caller_refused(
        &mut h,
        Some(&format!("Bearer {}", &CALLER[..CALLER.len() - 1])),
    )
    .await;
    assert_caller_refused(&mut h, Some(&format!("Bearer {CALLER}x"))).await;
}

#[tokio::test]
async fn bearer_scheme_with_an_empty_token_is_refused() {
    let mut h = harness(&[]).await;
    for value in ["Bearer ", "Bearer", "Bearer    "] {
        assert_caller_refused(&mut h, Some(value)).await;
    }
}

#[tokio::test]
async fn basic_scheme_carrying_the_caller_token_is_refused() {
    let mut h = harness(&[]).await;
    assert_caller_refused(
        &mut h,
        Some(&format!("Basic {}", b64(format!("{CALLER}:")))),
    )
    .await;
    assert_caller_refused(&mut h, Some(&format!("Basic {CALLER}"))).await;
    assert_caller_refused(&mut h, Some(CALLER)).await;
}

#[tokio::test]
async fn configured_digest_is_not_itself_a_caller_token() {
    let mut h = harness(&[]).await;
    assert_caller_refused(&mut h, Some(&format!("Bearer {}", caller_digest(CALLER)))).await;
}

#[tokio::test]
async fn caller_token_in_another_metadata_key_is_refused() {
    let mut h = harness(&[]).await;
    let subject = fresh_subject();
    let mut req = Request::new(generate(&subject));
    for key in ["x-authorization", "proxy-authorization", "x-caller-token"] {
        req.metadata_mut()
            .insert(key, format!("Bearer {CALLER}").parse().unwrap());
    }
    let r = h.client.generate_tokens(req).await;
    Refusal::caller().assert(r);
    assert_no_family(&mut h, &subject).await;
}

#[tokio::test]
async fn caller_whose_digest_was_removed_is_refused_after_a_restart() {
    // Caller tokens are revoked by removing their digest from CALLER_TOKEN_SHA256 and
    // restarting: there is no revocation RPC for them.
    let retired = "retired-caller-token";
    let both = format!("{},{}", caller_digest(CALLER), caller_digest(retired));
    let mut h = harness(&[("CALLER_TOKEN_SHA256", &both)]).await;
    let before = h
        .client
        .generate_tokens(with_authorization(
            &format!("Bearer {retired}"),
            generate(&fresh_subject()),
        ))
        .await;
    assert!(before.is_ok(), "{before:?}");
    h.server.shutdown().await.unwrap();

    let mut h = harness(&[]).await;
    assert_caller_refused(&mut h, Some(&format!("Bearer {retired}"))).await;
}

#[tokio::test]
async fn public_path_prefixes_do_not_lead_to_protected_rpcs() {
    let mut h = harness(&[]).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let cases = [
        // Public paths are exact: one that only starts like the health service's is
        // authenticated like any other.
        (
            "/grpc.health.v1.Health/../token.v1.TokenService/GenerateTokens",
            Code::Unauthenticated,
            "invalid_client",
        ),
        (
            "/grpc.health.v1.Health/%2e%2e/token.v1.TokenService/GenerateTokens",
            Code::Unauthenticated,
            "invalid_client",
        ),
        // Not the public path exactly: authentication is required.
        (
            "/token.v1.TokenService/GetJWKS/../GenerateTokens",
            Code::Unauthenticated,
            "invalid_client",
        ),
    ];
    for (path, code, oauth) in cases {
        let subject = fresh_subject();
        grpc.ready().await.unwrap();
        let r: Result<Response<TokenResponse>, Status> = grpc
            .unary(
                Request::new(generate(&subject)),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        let e = r.expect_err(path);
        assert_eq!(refusal(&e), (code, oauth), "{path}: {e:?}");
        assert_no_family(&mut h, &subject).await;
    }
}

// ---- RFC 9449 11.1: replay ---------------------------------------------------------------------

#[tokio::test]
async fn replayed_proof_is_refused_and_nothing_is_issued() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.honest();
    let subject = fresh_subject();
    let first = h.generate(generate_with(&subject, proof.clone())).await;
    assert!(first.is_ok(), "{first:?}");
    assert_proof_refused(&mut h, proof, "DPoP proof replayed").await;
    assert_eq!(families_of(&mut h, &subject).await, 1);
}

#[tokio::test]
async fn fresh_proof_reusing_a_jti_is_a_replay() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let first = holder.forge(|_, c| c["jti"] = json!("the-one-jti"));
    let second = holder.forge(|_, c| {
        c["jti"] = json!("the-one-jti");
        c["iat"] = json!(now() - 1);
    });
    assert_ne!(first, second);
    let r = h.generate(generate_with(&fresh_subject(), first)).await;
    assert!(r.is_ok(), "{r:?}");
    assert_proof_refused(&mut h, second, "DPoP proof replayed").await;
}

#[tokio::test]
async fn proof_checked_by_validate_dpop_cannot_then_mint_tokens() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.honest();
    let checked = validate(
        &mut h,
        ValidateDPoPRequest {
            proof: proof.clone(),
            http_method: "POST".into(),
            http_uri: URI.into(),
            ..Default::default()
        },
    )
    .await;
    assert!(checked.valid, "{checked:?}");
    assert_proof_refused(&mut h, proof, "DPoP proof replayed").await;
}

#[tokio::test]
async fn proof_used_to_generate_cannot_be_replayed_on_refresh() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.honest();
    let tokens = h
        .generate(generate_with(&fresh_subject(), proof.clone()))
        .await
        .unwrap()
        .into_inner();
    let r = h.refresh(&tokens.refresh_token, Some(proof)).await;
    Refusal::proof("DPoP proof replayed").assert(r);
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn high_s_twin_of_a_proof_cannot_be_used_as_a_second_proof() {
    // ECDSA malleability: (r, n - s) verifies whenever (r, s) does, unless the verifier insists
    // on low S. AWS-LC (the server's provider) does not, as plain ECDSA (FIPS 186) has no such
    // rule: the high-S twin is a valid signature over the same claims. What stops it from
    // being a second proof is the replay cache, keyed by (jkt, jti), never by the signature
    // bytes. So: the high-S form is accepted once, and the low-S form with the same jti is a
    // replay.
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.honest();
    let sig = p256::ecdsa::Signature::from_slice(&signature_of(&proof)).unwrap();
    let low = sig.normalize_s().unwrap_or(sig);
    let (r, s) = low.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, -s).unwrap();
    assert_ne!(low, high);
    let high_proof = resign(&proof, &high.to_bytes());
    let accepted = h
        .generate(generate_with(&fresh_subject(), high_proof))
        .await;
    assert!(accepted.is_ok(), "{accepted:?}");
    let low_proof = resign(&proof, &low.to_bytes());
    assert_proof_refused(&mut h, low_proof, "DPoP proof replayed").await;
}

// ---- RFC 9449 11.2: pre-generated proofs --------------------------------------------------------

#[tokio::test]
async fn proof_issued_in_the_future_is_refused() {
    let mut h = harness(&[]).await;
    let iats = [now() + 60, now() + 86_400, i64::MAX];
    assert_claim_refused(&mut h, "iat", iats, "DPoP proof issued in the future").await;
}

#[tokio::test]
async fn proof_older_than_the_window_is_refused() {
    let mut h = harness(&[]).await;
    let iats = [now() - 120, now() - 86_400, 0, i64::MIN];
    assert_claim_refused(&mut h, "iat", iats, "DPoP proof too old").await;
}

#[tokio::test]
async fn proof_with_iat_of_the_wrong_type_is_refused() {
    let mut h = harness(&[]).await;
    let fractional = now() as f64 + 0.5;
    let iats = [
        json!(now().to_string()),
        json!(fractional),
        json!(1e30),
        json!(null),
    ];
    assert_claim_refused(&mut h, "iat", iats, "DPoP proof claim has the wrong type").await;
}

#[tokio::test]
async fn proof_without_iat_is_refused() {
    let mut h = harness(&[]).await;
    assert_claim_required(&mut h, "iat", "DPoP proof iat missing").await;
}

// ---- RFC 9449 11.3: nonce downgrade ---------------------------------------------------------------

/// `nonce` is a current nonce of the configured key.
#[track_caller]
fn assert_current_nonce(nonce: &str) {
    let issuer = NonceIssuer::new(NonceKey::from_bytes(&NONCE_KEY));
    issuer.check(nonce, now()).unwrap();
}

async fn nonce_harness() -> Harness {
    harness(&[
        ("DPOP_NONCE_REQUIRED", "true"),
        ("DPOP_NONCE_KEY", NONCE_KEY_HEX),
    ])
    .await
}

/// GenerateTokens with this proof is refused as `use_dpop_nonce` with a fresh nonce, and
/// nothing is issued.
async fn assert_nonce_refused(h: &mut Harness, proof: String, description: &str) {
    let subject = fresh_subject();
    let e = h
        .generate(generate_with(&subject, proof))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), oauth_error(&e), e.message()),
        (Code::Unauthenticated, "use_dpop_nonce", description),
        "{e:?}"
    );
    let fresh = e.metadata().get("dpop-nonce").unwrap().to_str().unwrap();
    assert_current_nonce(fresh);
    assert_no_family(h, &subject).await;
}

#[tokio::test]
async fn proof_without_nonce_gets_a_challenge_and_nothing_is_issued() {
    let mut h = nonce_harness().await;
    assert_nonce_refused(&mut h, Holder::es256().honest(), "DPoP nonce required").await;
}

#[tokio::test]
async fn stale_nonce_is_refused_with_a_fresh_one() {
    let mut h = nonce_harness().await;
    let stale = NonceIssuer::new(NonceKey::from_bytes(&NONCE_KEY)).issue(now() - 3600);
    let proof = Holder::es256().forge(|_, c| c["nonce"] = json!(stale));
    assert_nonce_refused(&mut h, proof, "DPoP nonce stale").await;
}

#[tokio::test]
async fn nonce_made_with_another_key_is_refused() {
    let mut h = nonce_harness().await;
    let forged = NonceIssuer::new(NonceKey::from_bytes(&[0x78; 32])).issue(now());
    let proof = Holder::es256().forge(|_, c| c["nonce"] = json!(forged));
    assert_nonce_refused(&mut h, proof, "DPoP nonce invalid").await;
}

#[tokio::test]
async fn garbage_nonce_is_refused() {
    let mut h = nonce_harness().await;
    let holder = Holder::es256();
    for nonce in [
        "",
        "x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &"A".repeat(5000),
    ] {
        let proof = holder.forge(|_, c| c["nonce"] = json!(nonce));
        assert_nonce_refused(&mut h, proof, "DPoP nonce invalid").await;
    }
    // A nonce that is not a string is a malformed claim, not a missing one.
    let proof = holder.forge(|_, c| c["nonce"] = json!(12345));
    assert_proof_refused(&mut h, proof, "DPoP proof claim has the wrong type").await;
}

#[tokio::test]
async fn validate_dpop_without_nonce_answers_use_dpop_nonce() {
    let mut h = nonce_harness().await;
    let holder = Holder::es256();
    let r = validate(
        &mut h,
        at_api(
            holder.builder.proof("GET", API, None, None, now()).unwrap(),
            "",
        ),
    )
    .await;
    assert_invalid(&r, "use_dpop_nonce", "DPoP nonce required");
    assert_current_nonce(&r.dpop_nonce);
}

#[tokio::test]
async fn valid_nonce_does_not_lift_replay_protection() {
    let mut h = nonce_harness().await;
    let nonce = NonceIssuer::new(NonceKey::from_bytes(&NONCE_KEY)).issue(now());
    let proof = Holder::es256().forge(|_, c| c["nonce"] = json!(nonce));
    let first = h
        .generate(generate_with(&fresh_subject(), proof.clone()))
        .await;
    assert!(first.is_ok(), "{first:?}");
    assert_proof_refused(&mut h, proof, "DPoP proof replayed").await;
}

// ---- RFC 9449 11.5: signed JWT swapping --------------------------------------------------------

#[tokio::test]
async fn access_token_presented_as_a_proof_is_refused() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    assert_proof_refused(
        &mut h,
        tokens.access_token.clone(),
        "DPoP proof typ is not dpop+jwt",
    )
    .await;
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn proof_with_another_typ_is_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    for typ in [
        json!("JWT"),
        json!("at+jwt"),
        json!("dpop"),
        json!("dpop+jwt+x"),
    ] {
        let proof = holder.forge(|hd, _| hd["typ"] = typ);
        assert_proof_refused(&mut h, proof, "DPoP proof typ is not dpop+jwt").await;
    }
    let proof = holder.forge(|hd, _| {
        hd.as_object_mut().unwrap().remove("typ");
    });
    assert_proof_refused(&mut h, proof, "DPoP proof typ is not dpop+jwt").await;
    let proof = holder.forge(|hd, _| hd["typ"] = json!(["dpop+jwt"]));
    assert_proof_refused(&mut h, proof, "DPoP proof is not a well-formed JWS").await;
}

#[tokio::test]
async fn proof_whose_jwk_was_swapped_for_another_key_is_refused() {
    let mut h = harness(&[]).await;
    let (victim, attacker) = (Holder::es256(), Holder::es256());
    // The attacker's key in the header, the victim's signature: it verifies under neither.
    let proof = victim.forge(|hd, _| hd["jwk"] = attacker.jwk());
    assert_proof_refused(&mut h, proof, "DPoP proof signature invalid").await;
}

// ---- RFC 9449 11.6 and RFC 8725: algorithms and keys -----------------------------------------

#[tokio::test]
async fn proof_with_alg_none_is_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    for alg in ["none", "None", "NONE"] {
        let proof = holder.forge(|hd, _| hd["alg"] = json!(alg));
        let unsecured = format!("{}.", proof.rsplit_once('.').unwrap().0);
        assert_proof_refused(&mut h, unsecured, "DPoP proof alg not allowed").await;
        assert_proof_refused(&mut h, proof, "DPoP proof alg not allowed").await;
    }
}

#[tokio::test]
async fn proof_hmac_signed_with_its_own_public_key_is_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.forge(|hd, _| hd["alg"] = json!("HS256"));
    let input = proof.rsplit_once('.').unwrap().0;
    let key = holder.jwk().to_string();
    let forged = resign(&proof, &hmac_sha256(key.as_bytes(), input.as_bytes()));
    assert_proof_refused(&mut h, forged, "DPoP proof alg not allowed").await;
}

#[tokio::test]
async fn proof_with_rs256_over_an_ec_key_is_refused() {
    let mut h = harness(&[]).await;
    let proof = Holder::es256().forge(|hd, _| hd["alg"] = json!("RS256"));
    assert_proof_refused(&mut h, proof, "DPoP proof alg does not fit the jwk").await;
}

#[tokio::test]
async fn proof_with_alg_unfit_for_its_key_is_refused() {
    let mut h = harness(&[]).await;
    let (ec, ed) = (Holder::es256(), Holder::new(Algorithm::EdDSA));
    let ec384 = Holder::new(Algorithm::ES384);
    let cases = [
        ec.forge(|hd, _| hd["alg"] = json!("EdDSA")),
        ec.forge(|hd, _| hd["alg"] = json!("ES384")),
        ec.forge(|hd, _| hd["alg"] = json!("PS256")),
        ed.forge(|hd, _| hd["alg"] = json!("ES256")),
        ec384.forge(|hd, _| hd["alg"] = json!("ES256")),
    ];
    for proof in cases {
        assert_proof_refused(&mut h, proof, "DPoP proof alg does not fit the jwk").await;
    }
    // The jwk's own alg contradicting its curve makes the key itself invalid.
    let proof = ec.forge(|hd, _| hd["jwk"]["alg"] = json!("ES384"));
    assert_proof_refused(&mut h, proof, "DPoP proof jwk is not a valid public key").await;
}

#[tokio::test]
async fn proof_with_a_weak_rsa_key_is_refused() {
    let mut h = harness(&[]).await;
    let mut modulus = vec![0xc5; 64];
    modulus[63] |= 1;
    let jwk = json!({"kty": "RSA", "n": b64(&modulus), "e": "AQAB"});
    let proof = proof_with_key("RS256", jwk, &[0x42; 64]);
    assert_proof_refused(&mut h, proof, "DPoP proof jwk is not a valid public key").await;
}

#[tokio::test]
async fn proof_jwk_with_private_or_symmetric_material_is_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.forge(|hd, _| hd["jwk"]["d"] = json!(b64([7u8; 32])));
    assert_proof_refused(&mut h, proof, "DPoP proof jwk contains a private key").await;
    let oct = json!({"kty": "oct", "k": b64(b"shared secret")});
    let proof = proof_with_key("HS256", oct.clone(), &[0; 32]);
    assert_proof_refused(&mut h, proof, "DPoP proof alg not allowed").await;
    let proof = holder.forge(|hd, _| hd["jwk"] = oct);
    assert_proof_refused(&mut h, proof, "DPoP proof jwk is a symmetric key").await;
}

#[tokio::test]
async fn proof_jwk_point_off_the_curve_is_refused() {
    // Invalid-curve attack: a point that is not on P-256 (here (1, 1) and (0, 0)).
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let mut one = [0u8; 32];
    one[31] = 1;
    for (x, y) in [(one, one), ([0; 32], [0; 32])] {
        let proof = holder.forge(|hd, _| {
            hd["jwk"]["x"] = json!(b64(x));
            hd["jwk"]["y"] = json!(b64(y));
        });
        assert_proof_refused(&mut h, proof, "DPoP proof jwk is not a valid public key").await;
    }
}

#[tokio::test]
async fn proof_without_a_jwk_is_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.forge(|hd, _| {
        hd.as_object_mut().unwrap().remove("jwk");
        hd["kid"] = json!(holder.jkt());
    });
    assert_proof_refused(&mut h, proof, "DPoP proof has no jwk").await;
}

#[tokio::test]
async fn proof_with_crit_or_unencoded_payload_header_is_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.forge(|hd, _| {
        hd["crit"] = json!(["exp"]);
        hd["exp"] = json!(now() + 60);
    });
    assert_proof_refused(&mut h, proof, "DPoP proof is not a well-formed JWS").await;
    let proof = holder.forge(|hd, _| hd["b64"] = json!(false));
    assert_proof_refused(&mut h, proof, "DPoP proof is not a well-formed JWS").await;
}

// ---- RFC 9449 11.7: request integrity --------------------------------------------------------

#[tokio::test]
async fn proof_for_another_method_is_refused() {
    let mut h = harness(&[]).await;
    let methods = ["GET", "post", "POST ", "PUT"];
    let description = "DPoP proof htm does not match the request method";
    assert_claim_refused(&mut h, "htm", methods, description).await;
    assert_claim_required(&mut h, "htm", "DPoP proof htm missing").await;
}

const HTU_MISMATCH: &str = "DPoP proof htu does not match the request URI";

#[tokio::test]
async fn proof_for_another_host_or_path_is_refused() {
    let mut h = harness(&[]).await;
    let uris = [
        "https://evil.example/token",
        "https://as.example.evil.example/token",
        "https://as.example/token2",
        "https://as.example/token/",
        "https://as.example/Token",
        "https://as.example/",
        "https://as.example/other/../token/x",
    ];
    assert_claim_refused(&mut h, "htu", uris, HTU_MISMATCH).await;
}

#[tokio::test]
async fn proof_for_another_scheme_or_port_is_refused() {
    let mut h = harness(&[]).await;
    let uris = [
        "http://as.example/token",
        "https://as.example:8443/token",
        "http://as.example:443/token",
    ];
    assert_claim_refused(&mut h, "htu", uris, HTU_MISMATCH).await;
}

#[tokio::test]
async fn proof_htu_that_is_not_a_plain_http_uri_is_refused() {
    let mut h = harness(&[]).await;
    let uris = [
        "https://as.example@evil.example/token",
        "https://evil.example\\@as.example/token",
        "ftp://as.example/token",
        "//as.example/token",
        "/token",
        "https://as.example/to ken",
    ];
    let description = "DPoP proof htu is not a valid http(s) URI";
    assert_claim_refused(&mut h, "htu", uris, description).await;
    assert_claim_required(&mut h, "htu", "DPoP proof htu missing").await;
}

#[tokio::test]
async fn proof_htu_differing_only_in_query_or_fragment_is_accepted_once() {
    // RFC 9449 4.3 step 9: htu is compared "ignoring any query and fragment parts", so these
    // proofs are valid for the token endpoint. Not a way around replay protection though: the
    // replay cache keys on (jkt, jti) whatever the URI.
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.forge(|_, c| {
        c["htu"] = json!("https://as.example/token?admin=true#frag");
        c["jti"] = json!("query-jti");
    });
    let r = h.generate(generate_with(&fresh_subject(), proof)).await;
    assert!(r.is_ok(), "{r:?}");
    let twin = holder.forge(|_, c| {
        c["htu"] = json!("https://as.example/token?admin=false");
        c["jti"] = json!("query-jti");
    });
    assert_proof_refused(&mut h, twin, "DPoP proof replayed").await;
}

#[tokio::test]
async fn request_uri_that_is_not_http_is_an_invalid_argument() {
    // The caller's `http_uri` is an argument: a value that is not an absolute http(s) URI is
    // INVALID_ARGUMENT, not UNAVAILABLE (the server used to answer "replay cache unavailable").
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let subject = fresh_subject();
    let mut req = generate_with(&subject, holder.honest());
    req.dpop.as_mut().unwrap().http_uri = "urn:example:token".into();
    let r = h.generate(req).await;
    Refusal::request("dpop.http_uri is not an absolute http(s) URI").assert(r);
    assert_no_family(&mut h, &subject).await;
    let mut req = at_api(
        holder.builder.proof("GET", API, None, None, now()).unwrap(),
        "",
    );
    req.http_uri = "ftp://api.example/orders".into();
    let r = h.client.validate_d_po_p(authed(req)).await;
    Refusal::request("http_uri is not an absolute http(s) URI").assert(r);
}

// ---- RFC 9449 11.8 and 11.10: token and key binding, hash agility ---------------------------

/// ValidateDPoP of a proof by `holder` for `tokens` whose `ath` is each of `values` answers
/// `invalid_dpop_proof` with `description`.
async fn assert_ath_refused(
    h: &mut Harness,
    holder: &Holder,
    tokens: &TokenResponse,
    values: impl IntoIterator<Item = Value>,
    description: &str,
) {
    let token = &tokens.access_token;
    for ath in values {
        let proof = holder.forge_for(token, |_, c| c["ath"] = ath);
        assert_validate_invalid(h, at_api(proof, token), "invalid_dpop_proof", description).await;
    }
}

const ATH_MISMATCH: &str = "DPoP proof ath does not match the access token";

#[tokio::test]
async fn proof_without_ath_for_an_access_token_is_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let proof = holder.forge_for(&tokens.access_token, |_, c| {
        c.as_object_mut().unwrap().remove("ath");
    });
    let req = at_api(proof, &tokens.access_token);
    assert_validate_invalid(&mut h, req, "invalid_dpop_proof", "DPoP proof ath missing").await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn proof_with_ath_of_another_token_is_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let other = issue(&mut h, Some(&holder)).await;
    let ath = json!(access_token_hash(&other.access_token));
    assert_ath_refused(&mut h, &holder, &tokens, [ath], ATH_MISMATCH).await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn ath_computed_with_another_hash_or_encoding_is_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let at = tokens.access_token.as_bytes();
    let sha256 = Sha256::digest(at);
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    let standard_padded = b64(sha256).replace('-', "+").replace('_', "/") + "=";
    let athy = [
        b64(Sha384::digest(at)),
        b64(Sha512::digest(at)),
        b64(&Sha512::digest(at)[..32]),
        hex,
        standard_padded,
        b64(Sha256::digest(format!("Bearer {}", tokens.access_token))),
    ];
    let athy = athy.map(Value::from);
    assert_ath_refused(&mut h, &holder, &tokens, athy, ATH_MISMATCH).await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn ath_of_the_wrong_length_or_type_is_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let right = access_token_hash(&tokens.access_token);
    let athy = [
        &right[..42],
        &format!("{right}A"),
        "",
        &right.to_uppercase(),
    ]
    .map(Value::from);
    assert_ath_refused(&mut h, &holder, &tokens, athy, ATH_MISMATCH).await;
    let wrong_type = [json!([right]), json!(null), json!(1)];
    let description = "DPoP proof claim has the wrong type";
    assert_ath_refused(&mut h, &holder, &tokens, wrong_type, description).await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

const JKT_MISMATCH: &str = "DPoP key does not match the bound key";

#[tokio::test]
async fn proof_key_not_matching_cnf_jkt_is_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let thief = Holder::es256();
    let proof = thief.forge_for(&tokens.access_token, |_, _| {});
    let req = at_api(proof, &tokens.access_token);
    assert_validate_invalid(&mut h, req, "invalid_dpop_proof", JKT_MISMATCH).await;
    // Without an access token, against an expected_jkt.
    let proof = thief.builder.proof("GET", API, None, None, now()).unwrap();
    let req = ValidateDPoPRequest {
        expected_jkt: holder.jkt(),
        ..at_api(proof, "")
    };
    assert_validate_invalid(&mut h, req, "invalid_dpop_proof", JKT_MISMATCH).await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn expected_jkt_contradicting_the_token_is_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let proof = holder.forge_for(&tokens.access_token, |_, _| {});
    let req = ValidateDPoPRequest {
        expected_jkt: Holder::es256().jkt(),
        ..at_api(proof, &tokens.access_token)
    };
    let description = "expected_jkt differs from the token's cnf.jkt";
    assert_validate_invalid(&mut h, req, "invalid_token", description).await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn bearer_access_token_cannot_pass_dpop_validation() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    let holder = Holder::es256();
    let proof = holder.forge_for(&tokens.access_token, |_, _| {});
    let r = validate(&mut h, at_api(proof, &tokens.access_token)).await;
    assert_invalid(&r, "invalid_token", "the access token is not DPoP-bound");
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn access_token_of_a_revoked_family_is_refused_by_validate_dpop() {
    let (mut h, holder, tokens) = bound_family().await;
    let revoked = revoke(&mut h, Target::FamilyId(tokens.family_id.clone())).await;
    assert_eq!(revoked.unwrap().into_inner(), 1);
    let proof = holder.forge_for(&tokens.access_token, |_, _| {});
    let r = validate(&mut h, at_api(proof, &tokens.access_token)).await;
    assert_invalid(&r, "invalid_token", "the access token's grant was revoked");
}

// ---- RFC 8725 on access tokens ------------------------------------------------------------------

/// A server signing with a key the test holds, so that tokens can be made with exactly the
/// header an attacker would need the server key for.
async fn keyed_harness() -> (Harness, Arc<dyn JwsSigner>) {
    let key = PrivateKey::generate(Algorithm::ES256).unwrap();
    let file = temp_file(key.to_pkcs8_pem().unwrap().as_bytes());
    let h = harness(&[("SIGNING_KEY_FILE", file.path().to_str().unwrap())]).await;
    (h, RustCryptoProvider::new().signer(&key).unwrap())
}

/// The header and claims the server itself would put in a token (the claims bound to `jkt`).
fn token_parts(kid: &str, jkt: &str) -> (Value, Value) {
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
    let claims = json!({
        "iss": ISSUER, "sub": "mallory", "aud": "https://api.example", "client_id": "web",
        "scope": "read write admin", "iat": now(), "exp": now() + 600,
        "jti": random_id().unwrap(), "cnf": {"jkt": jkt},
    });
    (header, claims)
}

/// A token of [`token_parts`] edited by `edit`, signed by `signer`.
fn token_by(
    signer: &dyn JwsSigner,
    jkt: &str,
    edit: impl FnOnce(&mut Value, &mut Value),
) -> String {
    let (mut header, mut claims) = token_parts(signer.key_id(), jkt);
    edit(&mut header, &mut claims);
    sign(&header.to_string(), &claims.to_string(), signer)
}

/// IntrospectToken finds `token` inactive, and ValidateDPoP with an honest proof of `holder`
/// for it refuses it as `invalid_token`.
async fn assert_token_refused(h: &mut Harness, token: &str, holder: &Holder) {
    assert!(!active(h, token).await, "{token}");
    let r = validate(h, at_api(holder.forge_for(token, |_, _| {}), token)).await;
    assert_invalid(
        &r,
        "invalid_token",
        "the access token is invalid or expired",
    );
}

#[tokio::test]
async fn token_with_the_servers_own_header_and_key_is_active() {
    // The control for the forgeries below: the same construction, unaltered, is accepted.
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let token = token_by(&*server_key, &holder.jkt(), |_, _| {});
    assert!(active(&mut h, &token).await);
    let r = validate(&mut h, at_api(holder.forge_for(&token, |_, _| {}), &token)).await;
    assert!(r.valid, "{r:?}");
}

#[tokio::test]
async fn access_token_with_alg_none_is_refused() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let token = token_by(&*server_key, &holder.jkt(), |hd, _| {
        hd["alg"] = json!("none")
    });
    let unsecured = format!("{}.", token.rsplit_once('.').unwrap().0);
    assert_token_refused(&mut h, &unsecured, &holder).await;
    assert_token_refused(&mut h, &token, &holder).await;
}

#[tokio::test]
async fn access_token_hmac_signed_with_the_servers_public_key_is_refused() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let public = server_key.public_jwk();
    let token = token_by(&*server_key, &holder.jkt(), |hd, _| {
        hd["alg"] = json!("HS256")
    });
    let input = token.rsplit_once('.').unwrap().0;
    let mut sec1 = vec![4u8];
    for member in ["x", "y"] {
        let text = public.to_json_value()[member].as_str().unwrap().to_owned();
        sec1.extend(token_jwt::base64url::decode(&text).unwrap());
    }
    for key in [public.to_json().into_bytes(), sec1] {
        let forged = resign(&token, &hmac_sha256(&key, input.as_bytes()));
        assert_token_refused(&mut h, &forged, &holder).await;
    }
}

#[tokio::test]
async fn access_token_with_an_embedded_jwk_is_refused_even_when_the_server_key_signed_it() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let attacker = Holder::es256();
    // Self-signed by the attacker's key, which the header carries.
    let self_signed = token_by(&*attacker.signer, &holder.jkt(), |hd, _| {
        hd["jwk"] = attacker.jwk();
        hd["kid"] = json!(server_key.key_id());
    });
    assert_token_refused(&mut h, &self_signed, &holder).await;
    // Signed by the server key: refused for the header alone.
    let embedded = token_by(&*server_key, &holder.jkt(), |hd, _| {
        hd["jwk"] = server_key.public_jwk().to_json_value();
    });
    assert_token_refused(&mut h, &embedded, &holder).await;
}

#[tokio::test]
async fn access_token_with_jku_x5u_or_x5c_is_refused_even_when_the_server_key_signed_it() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let references = [
        ("jku", json!("https://evil.example/jwks.json")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!([b64(b"not a certificate")])),
        ("x5t", json!(b64([1u8; 20]))),
        ("x5t#S256", json!(b64([1u8; 32]))),
    ];
    for (name, value) in references {
        let token = token_by(&*server_key, &holder.jkt(), |hd, _| hd[name] = value);
        assert_token_refused(&mut h, &token, &holder).await;
    }
}

/// Tokens signed by the server key with each of these `kid`s are refused.
async fn assert_kids_refused(h: &mut Harness, server_key: &dyn JwsSigner, kids: &[Value]) {
    let holder = Holder::es256();
    for kid in kids {
        let token = token_by(server_key, &holder.jkt(), |hd, _| hd["kid"] = kid.clone());
        assert_token_refused(h, &token, &holder).await;
    }
}

#[tokio::test]
async fn kid_path_traversal_is_an_unknown_key() {
    let (mut h, server_key) = keyed_harness().await;
    let kid = server_key.key_id().to_owned();
    let kids = [
        "../../etc/passwd".to_owned(),
        format!("../{kid}"),
        format!("{kid}/../{kid}"),
        "/dev/zero".to_owned(),
        "file:///etc/passwd".to_owned(),
    ];
    assert_kids_refused(&mut h, &*server_key, &kids.map(Value::from)).await;
}

#[tokio::test]
async fn kid_injection_and_oversized_kids_are_unknown_keys() {
    let (mut h, server_key) = keyed_harness().await;
    let kid = server_key.key_id().to_owned();
    let kids = [
        json!("' OR 1=1 --"),
        json!(format!("{kid}' OR '1'='1")),
        json!(format!("{kid}\u{0}")),
        json!(format!("{kid} ")),
        json!(kid.to_uppercase()),
        json!("$(reboot)"),
        json!("K".repeat(8 * 1024)),
        json!(1),
        json!([kid]),
    ];
    assert_kids_refused(&mut h, &*server_key, &kids).await;
}

#[tokio::test]
async fn access_token_with_a_crit_header_is_refused() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let token = token_by(&*server_key, &holder.jkt(), |hd, _| {
        hd["crit"] = json!(["urn:example:ignore-revocation"]);
        hd["urn:example:ignore-revocation"] = json!(true);
    });
    assert_token_refused(&mut h, &token, &holder).await;
}

#[tokio::test]
async fn access_token_whose_header_alg_differs_from_the_key_is_refused() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    for alg in ["ES384", "EdDSA", "RS256", "PS256"] {
        let token = token_by(&*server_key, &holder.jkt(), |hd, _| hd["alg"] = json!(alg));
        assert_token_refused(&mut h, &token, &holder).await;
    }
}

#[tokio::test]
async fn access_token_with_a_zero_or_order_signature_is_refused() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let token = token_by(&*server_key, &holder.jkt(), |_, _| {});
    let order = hex(P256_ORDER);
    for signature in [vec![0u8; 64], [order.clone(), order].concat()] {
        assert_token_refused(&mut h, &resign(&token, &signature), &holder).await;
    }
}

#[tokio::test]
async fn access_token_with_another_typ_issuer_or_expiry_is_refused() {
    let (mut h, server_key) = keyed_harness().await;
    let holder = Holder::es256();
    let cases = [
        token_by(&*server_key, &holder.jkt(), |hd, _| {
            hd["typ"] = json!("dpop+jwt")
        }),
        token_by(&*server_key, &holder.jkt(), |hd, _| {
            hd["typ"] = json!("JWT")
        }),
        token_by(&*server_key, &holder.jkt(), |_, c| {
            c["iss"] = json!("https://evil.example")
        }),
        token_by(&*server_key, &holder.jkt(), |_, c| {
            c["exp"] = json!(now() - 3600)
        }),
        // A proof is not an access token, whoever signed it.
        holder.honest(),
    ];
    for token in cases {
        assert_token_refused(&mut h, &token, &holder).await;
    }
}

// ---- signature encodings ------------------------------------------------------------------------

#[tokio::test]
async fn es256_proof_with_a_zero_signature_is_refused() {
    // CVE-2022-21449 ("psychic signatures"): r = s = 0 passed Java's ECDSA check.
    let mut h = harness(&[]).await;
    let proof = resign(&Holder::es256().honest(), &[0; 64]);
    assert_proof_refused(&mut h, proof, "DPoP proof signature invalid").await;
}

#[tokio::test]
async fn es256_proof_with_r_and_s_equal_to_the_order_is_refused_even_for_a_known_key() {
    // r = s = n is r = s = 0 modulo n. The key first signs a good proof, so that it sits in
    // the validator's key cache: the cache must skip no signature check.
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let ok = h
        .generate(generate_with(&fresh_subject(), holder.honest()))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let order = hex(P256_ORDER);
    let proof = resign(&holder.honest(), &[order.clone(), order].concat());
    assert_proof_refused(&mut h, proof, "DPoP proof signature invalid").await;
}

#[tokio::test]
async fn es256_proof_with_a_der_or_truncated_signature_is_refused() {
    let mut h = harness(&[]).await;
    let proof = Holder::es256().honest();
    let sig = p256::ecdsa::Signature::from_slice(&signature_of(&proof)).unwrap();
    let raw = sig.to_bytes();
    let der = sig.to_der();
    for signature in [der.as_bytes(), &raw[..63], &[&raw[..], &[0]].concat()] {
        let forged = resign(&proof, signature);
        assert_proof_refused(&mut h, forged, "DPoP proof signature invalid").await;
    }
}

#[tokio::test]
async fn ed25519_proof_with_a_non_canonical_s_is_refused() {
    // S + L is the same scalar modulo L: lax verifiers accept it (malleability); RFC 8032
    // requires S < L.
    let mut h = harness(&[]).await;
    let holder = Holder::new(Algorithm::EdDSA);
    let proof = holder.honest();
    let mut sig = signature_of(&proof);
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(hex(ED25519_ORDER)) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert_proof_refused(&mut h, resign(&proof, &sig), "DPoP proof signature invalid").await;
    // The canonical original was not spent by the refusal.
    let ok = h.generate(generate_with(&fresh_subject(), proof)).await;
    assert!(ok.is_ok(), "{ok:?}");
}

/// An Ed25519 `jwk` with this public key encoding.
fn ed25519_jwk(encoding: &[u8]) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(encoding)})
}

#[tokio::test]
async fn ed25519_identity_key_with_a_trivial_signature_is_refused() {
    // With A = identity, R = identity and S = 0 satisfy [S]B = R + [k]A for every message:
    // a cofactorless verifier that accepts the key accepts this signature for anything.
    let mut h = harness(&[]).await;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let signature = [identity.as_slice(), &[0; 32]].concat();
    let proof = proof_with_key("EdDSA", ed25519_jwk(&identity), &signature);
    assert_proof_refused(&mut h, proof, "DPoP proof jwk is not a valid public key").await;
}

#[tokio::test]
async fn ed25519_small_order_keys_are_refused() {
    let mut h = harness(&[]).await;
    let small_order = [
        // order 4: y = 0, both signs of x
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        // order 2: y = -1
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        // order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        // non-canonical encodings of 0 and 1 (y = p, y = p + 1)
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    for encoding in small_order {
        let key = hex(encoding);
        let signature = [key.as_slice(), &[0; 32]].concat();
        let proof = proof_with_key("EdDSA", ed25519_jwk(&key), &signature);
        assert_proof_refused(&mut h, proof, "DPoP proof jwk is not a valid public key").await;
    }
}

// ---- sizes and nesting ----------------------------------------------------------------------------

#[tokio::test]
async fn oversized_proof_is_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let proof = holder.forge(|_, c| c["pad"] = json!("x".repeat(9000)));
    assert_proof_refused(&mut h, proof, "DPoP proof too large").await;
    let proof = holder.forge(|_, c| c["jti"] = json!("j".repeat(300)));
    assert_proof_refused(&mut h, proof, "DPoP proof jti too long").await;
    let proof = holder.forge(|_, c| {
        for i in 0..40 {
            c[format!("c{i}")] = json!(i);
        }
    });
    assert_proof_refused(&mut h, proof, "DPoP proof is not a well-formed JWS").await;
}

/// The JSON object `object` with one more member, `name`, whose value is the raw text `raw`.
fn with_member(object: &Value, name: &str, raw: &str) -> String {
    let text = object.to_string();
    format!("{},{name:?}:{raw}}}", text.strip_suffix('}').unwrap())
}

#[tokio::test]
async fn deeply_nested_proof_header_and_payload_are_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let (header, claims) = holder.parts();
    let (header_text, claims_text) = (header.to_string(), claims.to_string());
    let deep_header = with_member(&header, "x", &nested(2500));
    let deep_claims = with_member(&claims, "x", &nested(2500));
    for (hd, c) in [(&deep_header, &claims_text), (&header_text, &deep_claims)] {
        let proof = holder.sign(hd, c);
        assert_proof_refused(&mut h, proof, "DPoP proof is not a well-formed JWS").await;
    }
    // 10 000 levels do not even fit the size limit.
    let deeper_header = with_member(&header, "x", &nested(10_000));
    let deeper_claims = with_member(&claims, "x", &nested(10_000));
    for (hd, c) in [
        (&deeper_header, &claims_text),
        (&header_text, &deeper_claims),
    ] {
        assert_proof_refused(&mut h, holder.sign(hd, c), "DPoP proof too large").await;
    }
}

#[tokio::test]
async fn oversized_or_deeply_nested_additional_claims_are_refused() {
    let mut h = harness(&[]).await;
    let cases = [
        (
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(9000)),
            "additional_claims_json is too large",
        ),
        (
            format!(r#"{{"a":{}}}"#, nested(10_000)),
            "additional_claims_json is too large",
        ),
        (format!(r#"{{"a":{}}}"#, nested(4000)), NOT_AN_OBJECT),
        (format!(r#"{{"a":{}}}"#, nested(8)), NOT_AN_OBJECT),
    ];
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn message_over_the_request_limit_is_resource_exhausted() {
    let mut h = harness(&[]).await;
    let subject = fresh_subject();
    let mut req = generate(&subject);
    req.additional_claims_json = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000));
    let e = h.generate(req).await.unwrap_err();
    // tonic refuses the message before the service sees it: no oauth-error; the code is
    // gRPC's for a message over the receiver's limit (tonic's own OUT_OF_RANGE is rewritten).
    assert_eq!(refusal(&e), (Code::ResourceExhausted, ""), "{e:?}");
    assert_no_family(&mut h, &subject).await;
}

#[tokio::test]
async fn oversized_fields_and_lists_are_refused() {
    let mut h = harness(&[]).await;
    let long = || "x".repeat(1025);
    type Edit = Box<dyn FnOnce(&mut GenerateTokensRequest)>;
    let cases: [(Edit, &str); 6] = [
        (
            Box::new(move |r| r.subject.push_str(&long())),
            "subject is too long or contains control characters",
        ),
        (
            Box::new(move |r| r.client_id = long()),
            "client_id is too long or contains control characters",
        ),
        (
            Box::new(move |r| r.audience = vec![long()]),
            "audience is too long or contains control characters",
        ),
        (
            Box::new(|r| r.audience = vec!["a".into(); 65]),
            "too many audience",
        ),
        (
            Box::new(|r| r.scopes = vec!["s".into(); 65]),
            "too many scopes",
        ),
        (
            Box::new(move |r| r.scopes = vec![long()]),
            "scopes is too long or contains control characters",
        ),
    ];
    for (edit, message) in cases {
        assert_generate_invalid(&mut h, edit, message).await;
    }
}

const UNUSABLE: &str = "the access token would exceed the size or JSON limits of its verifiers";

#[tokio::test]
async fn grant_whose_access_token_would_be_too_large_to_verify_is_refused() {
    // Each field is within its limit, but together they used to make a 54 KB access token
    // that IntrospectToken and ValidateDPoP refuse (16 KiB limit), after storing its family.
    let mut h = harness(&[]).await;
    let audiences = |n: usize| (0..n).map(|i| format!("{i}{}", "a".repeat(1000))).collect();
    assert_generate_invalid(&mut h, |r| r.audience = audiences(40), UNUSABLE).await;
    // Within the limit, the same kind of grant is issued and its token verifies.
    let mut req = generate(&fresh_subject());
    req.audience = audiences(10);
    let tokens = h.generate(req).await.unwrap().into_inner();
    assert!(tokens.access_token.len() > 12_000);
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn grant_whose_access_token_would_have_too_many_json_members_is_refused() {
    // 200 custom claims and 64 audiences: each list is acceptable, the token's payload (more
    // than 256 members) is beyond what the verifier parses.
    let mut h = harness(&[]).await;
    let members: Vec<String> = (0..200).map(|i| format!("\"c{i}\":0")).collect();
    let claims = format!("{{{}}}", members.join(","));
    let audiences: Vec<String> = (0..64).map(|i| format!("a{i}")).collect();
    assert_generate_invalid(
        &mut h,
        |r| {
            r.additional_claims_json = claims.clone();
            r.audience = audiences;
        },
        UNUSABLE,
    )
    .await;
    let mut req = generate(&fresh_subject());
    req.additional_claims_json = claims;
    let tokens = h.generate(req).await.unwrap().into_inner();
    assert_intact(&mut h, &tokens, None).await;
}

// ---- control characters ----------------------------------------------------------------------

/// NUL and other control characters (C0, DEL, C1).
const CONTROLS: [&str; 6] = ["\0", "\n", "\r", "\u{1b}", "\u{7f}", "\u{85}"];

/// Puts a control character into one field of a request.
type Poison<R> = Box<dyn Fn(&mut R, &str)>;

/// A request that carries a DPoP proof.
trait WithProof {
    fn proof_mut(&mut self) -> &mut DPoPProof;
}

impl WithProof for GenerateTokensRequest {
    fn proof_mut(&mut self) -> &mut DPoPProof {
        self.dpop.as_mut().unwrap()
    }
}

impl WithProof for RefreshTokensRequest {
    fn proof_mut(&mut self) -> &mut DPoPProof {
        self.dpop.as_mut().unwrap()
    }
}

/// Control characters in each field of a request's DPoP proof, and the answer to each.
fn proof_poisons<R: WithProof>() -> [(Poison<R>, Refusal); 4] {
    [
        (
            Box::new(|r, c| r.proof_mut().http_method.push_str(c)),
            Refusal::text("dpop.http_method"),
        ),
        (
            Box::new(|r, c| r.proof_mut().http_uri.push_str(c)),
            Refusal::text("dpop.http_uri"),
        ),
        (
            Box::new(|r, c| r.proof_mut().proof.push_str(c)),
            Refusal::malformed_proof(),
        ),
        (
            Box::new(|r, c| r.proof_mut().proof.insert_str(0, c)),
            Refusal::malformed_proof(),
        ),
    ]
}

#[tokio::test]
async fn control_characters_in_generate_fields_are_refused() {
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let cases: [(Poison<GenerateTokensRequest>, Refusal); 4] = [
        (
            Box::new(|r, c| r.subject.push_str(c)),
            Refusal::text("subject"),
        ),
        (
            Box::new(|r, c| r.client_id.push_str(c)),
            Refusal::text("client_id"),
        ),
        (
            Box::new(|r, c| r.audience.push(format!("aud{c}"))),
            Refusal::text("audience"),
        ),
        (
            Box::new(|r, c| r.scopes.push(format!("admin{c}"))),
            Refusal::text("scopes"),
        ),
    ];
    for (poison, refusal) in cases.into_iter().chain(proof_poisons()) {
        for c in CONTROLS {
            let subject = fresh_subject();
            let mut req = generate_with(&subject, holder.honest());
            poison(&mut req, c);
            refusal.assert(h.generate(req).await);
            assert_no_family(&mut h, &subject).await;
        }
    }
    // JSON forbids raw C0 characters in strings; escaped ones are ordinary claim values.
    let cases = ["\0", "\n", "\u{1b}"].map(|c| (format!(r#"{{"tenant":"a{c}b"}}"#), NOT_AN_OBJECT));
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn control_characters_in_refresh_fields_are_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let cases: [(Poison<RefreshTokensRequest>, Refusal); 2] = [
        (
            Box::new(|r, c| r.refresh_token.push_str(c)),
            Refusal::wrong_length(),
        ),
        (
            Box::new(|r, c| r.scopes.push(format!("read{c}"))),
            Refusal::text("scopes"),
        ),
    ];
    for (poison, refusal) in cases.into_iter().chain(proof_poisons()) {
        for c in CONTROLS {
            let mut req = refresh(&tokens.refresh_token, Some(holder.honest()));
            poison(&mut req, c);
            refusal.assert(h.client.refresh_tokens(authed(req)).await);
        }
    }
    // A NUL in place of a character of the token (same length).
    let mut nul = tokens.refresh_token.clone();
    nul.replace_range(40..41, "\0");
    let why = "malformed refresh token: secret is not base64url";
    assert_grant_refused(&mut h, refresh(&nul, Some(holder.honest())), why).await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn control_characters_in_revoke_fields_are_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let subject = "victim";
    let victim = h.generate(generate(subject)).await.unwrap().into_inner();
    for c in CONTROLS {
        let family_id = format!("{}{c}", tokens.family_id);
        // RFC 7009 section 2.1: an unusable refresh token is answered like any other, with
        // nothing revoked (the family is checked intact below).
        let answer = revoke(
            &mut h,
            Target::RefreshToken(format!("{}{c}", tokens.refresh_token)),
        )
        .await
        .expect("a malformed refresh token is answered OK");
        assert_eq!(answer.into_inner(), 0);
        let cases = [
            (
                Target::Subject(format!("{subject}{c}")),
                Refusal::text("subject"),
            ),
            (
                Target::FamilyId(family_id),
                Refusal(
                    Code::InvalidArgument,
                    "invalid_request",
                    "family_id is malformed".into(),
                ),
            ),
        ];
        for (target, refusal) in cases {
            refusal.assert(revoke(&mut h, target).await);
        }
        let r = h
            .client
            .revoke_token(authed(RevokeTokenRequest {
                client_id: "web".into(),
                target: Some(Target::FamilyId(tokens.family_id.clone())),
                reason: format!("logout{c}"),
            }))
            .await;
        Refusal::text("reason").assert(r);
    }
    assert_intact(&mut h, &tokens, Some(&holder)).await;
    assert_intact(&mut h, &victim, None).await;
}

#[tokio::test]
async fn control_characters_in_validate_dpop_fields_are_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let honest = || {
        at_api(
            holder.forge_for(&tokens.access_token, |_, _| {}),
            &tokens.access_token,
        )
    };
    for c in CONTROLS {
        type Poison = fn(&mut ValidateDPoPRequest, &str);
        let errors: [(Poison, &str); 3] = [
            (|r, c| r.http_method.push_str(c), "http_method"),
            (|r, c| r.http_uri.push_str(c), "http_uri"),
            (|r, c| r.expected_jkt = format!("jkt{c}"), "expected_jkt"),
        ];
        for (poison, field) in errors {
            let mut req = honest();
            poison(&mut req, c);
            Refusal::text(field).assert(h.client.validate_d_po_p(authed(req)).await);
        }
        let answers: [(Poison, &str, &str); 2] = [
            (
                |r, c| r.proof.push_str(c),
                "invalid_dpop_proof",
                "DPoP proof is not a well-formed JWS",
            ),
            (
                |r, c| r.access_token.push_str(c),
                "invalid_token",
                "the access token is invalid or expired",
            ),
        ];
        for (poison, error, description) in answers {
            let mut req = honest();
            poison(&mut req, c);
            assert_invalid(&validate(&mut h, req).await, error, description);
        }
    }
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn control_characters_in_an_introspected_token_make_it_inactive() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    for c in CONTROLS {
        let poisoned = [
            format!("{}{c}", tokens.access_token),
            format!("{c}{}", tokens.access_token),
            tokens.access_token.replacen('.', &format!(".{c}"), 1),
        ];
        for token in poisoned {
            assert!(!active(&mut h, &token).await);
        }
    }
    let r = h
        .client
        .introspect_token(authed(IntrospectTokenRequest::default()))
        .await;
    Refusal::request("token is required").assert(r);
    assert_intact(&mut h, &tokens, None).await;
}

// ---- refresh-token forgery ------------------------------------------------------------------------

/// A refresh token with this family id and secret (base64url segments), with a correct
/// checksum: the shape is `rt1_<family 22>_<secret 43>_<checksum 6>`.
fn refresh_token(family: &str, secret: &str) -> String {
    let body = format!("rt1_{family}_{secret}");
    let digest = Sha256::digest(body.as_bytes());
    format!("{body}_{}", b64(&digest[..4]))
}

/// The family id and secret segments of a refresh token.
fn segments(token: &str) -> (&str, &str) {
    (&token[4..26], &token[27..70])
}

/// RefreshTokens with `token` is refused as `invalid_grant`, for the reason `why`.
async fn assert_refresh_refused(h: &mut Harness, token: &str, why: &str) {
    assert_grant_refused(h, refresh(token, None), why).await;
}

#[tokio::test]
async fn refresh_token_with_a_wrong_checksum_is_refused_and_the_family_is_intact() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    let t = &tokens.refresh_token;
    let (family, secret) = segments(t);
    // The last character carries 2 bits: A and Q are both canonical.
    let flipped = if t.ends_with('A') { "Q" } else { "A" };
    for forged in [
        format!("{}{flipped}", &t[..76]),
        // A changed secret keeps its old checksum.
        format!(
            "rt1_{family}_{}{}",
            &secret[..42],
            if secret.ends_with('A') { "E" } else { "A" }
        ) + &t[70..],
    ] {
        assert_refresh_refused(&mut h, &forged, "refresh token checksum mismatch").await;
    }
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn refresh_token_spliced_into_another_family_is_refused_and_both_families_are_intact() {
    let mut h = harness(&[]).await;
    let (a, b) = (issue(&mut h, None).await, issue(&mut h, None).await);
    let (_, secret_a) = segments(&a.refresh_token);
    let (family_b, _) = segments(&b.refresh_token);
    let spliced = refresh_token(family_b, secret_a);
    assert_refresh_refused(
        &mut h,
        &spliced,
        "refresh token matches no token of its family",
    )
    .await;
    // RFC 7009 section 2.1: answered like any token, and nothing is revoked.
    let answer = revoke(&mut h, Target::RefreshToken(spliced))
        .await
        .expect("a forged refresh token is answered OK");
    assert_eq!(answer.into_inner(), 0);
    assert_intact(&mut h, &a, None).await;
    assert_intact(&mut h, &b, None).await;
}

#[tokio::test]
async fn refresh_token_of_an_unknown_family_is_refused() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    let (_, secret) = segments(&tokens.refresh_token);
    let foreign = refresh_token(&b64([0x5a; 16]), secret);
    assert_refresh_refused(&mut h, &foreign, "unknown refresh-token family").await;
    let r = revoke(&mut h, Target::FamilyId(b64([0x5a; 16]))).await;
    assert_eq!(
        r.unwrap().into_inner(),
        0,
        "an unknown family revokes nothing"
    );
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn truncated_refresh_token_is_refused() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    let t = &tokens.refresh_token;
    for len in [76, 70, 27, 4, 1] {
        assert_refresh_refused(
            &mut h,
            &t[..len],
            if len == 1 {
                "malformed refresh token: missing rt1_ prefix"
            } else {
                "malformed refresh token: wrong length"
            },
        )
        .await;
    }
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn refresh_token_with_another_prefix_is_refused() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    let rest = &tokens.refresh_token[4..];
    for prefix in ["rt2_", "RT1_", "rt0_", "xx1_"] {
        assert_refresh_refused(
            &mut h,
            &format!("{prefix}{rest}"),
            "malformed refresh token: missing rt1_ prefix",
        )
        .await;
    }
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn oversized_refresh_token_and_access_token_as_refresh_token_are_refused() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    let long = tokens.refresh_token.repeat(4);
    assert_refresh_refused(
        &mut h,
        &long,
        "refresh token of 308 bytes exceeds the limit of 256 bytes",
    )
    .await;
    let too_large = format!(
        "refresh token of {} bytes exceeds the limit of 256 bytes",
        tokens.access_token.len()
    );
    assert_refresh_refused(&mut h, &tokens.access_token, &too_large).await;
    assert_intact(&mut h, &tokens, None).await;
}

#[tokio::test]
async fn refresh_asking_for_an_ungranted_scope_is_refused_and_the_family_is_intact() {
    let mut h = harness(&[]).await;
    let tokens = issue(&mut h, None).await;
    for scopes in [
        vec!["admin"],
        vec!["read", "admin"],
        vec!["read write"],
        vec!["READ"],
    ] {
        let mut req = refresh(&tokens.refresh_token, None);
        req.scopes = scopes.into_iter().map(str::to_owned).collect();
        let r = h.client.refresh_tokens(authed(req)).await;
        let message = "requested scope exceeds the granted scope".to_owned();
        Refusal(Code::InvalidArgument, "invalid_scope", message).assert(r);
    }
    assert_intact(&mut h, &tokens, None).await;
}

// ---- DPoP-bound refresh ---------------------------------------------------------------------------

#[tokio::test]
async fn dpop_bound_refresh_without_a_proof_is_refused_and_the_family_is_intact() {
    let (mut h, holder, tokens) = bound_family().await;
    assert_refresh_refused(
        &mut h,
        &tokens.refresh_token,
        "the refresh token is DPoP-bound and no DPoP proof was presented",
    )
    .await;
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn dpop_bound_refresh_with_another_keys_proof_is_refused_and_the_family_is_intact() {
    let (mut h, holder, tokens) = bound_family().await;
    for thief in [
        Holder::es256(),
        Holder::new(Algorithm::EdDSA),
        Holder::new(Algorithm::ES384),
    ] {
        let req = refresh(&tokens.refresh_token, Some(thief.honest()));
        let why = "the DPoP key does not match the key the refresh token is bound to";
        assert_grant_refused(&mut h, req, why).await;
    }
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn dpop_bound_refresh_with_a_bad_proof_of_the_right_key_is_refused() {
    let (mut h, holder, tokens) = bound_family().await;
    let proofs = [
        (
            holder.forge(|_, c| c["htu"] = json!(API)),
            "DPoP proof htu does not match the request URI",
        ),
        (
            holder.forge(|_, c| c["iat"] = json!(now() - 3600)),
            "DPoP proof too old",
        ),
        (
            resign(&holder.honest(), &[0; 64]),
            "DPoP proof signature invalid",
        ),
    ];
    for (proof, description) in proofs {
        let r = h.refresh(&tokens.refresh_token, Some(proof)).await;
        Refusal::proof(description).assert(r);
    }
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

#[tokio::test]
async fn rotated_token_of_a_bound_family_cannot_revoke_it_without_the_key() {
    // Reuse of a rotated token revokes a family, but only for whoever holds the DPoP key: a
    // thief with an old token and no key must not be able to sign the owner out.
    let (mut h, holder, tokens) = bound_family().await;
    let current = h
        .refresh(&tokens.refresh_token, Some(holder.honest()))
        .await
        .unwrap()
        .into_inner();
    assert_refresh_refused(
        &mut h,
        &tokens.refresh_token,
        "the refresh token is DPoP-bound and no DPoP proof was presented",
    )
    .await;
    let req = refresh(&tokens.refresh_token, Some(Holder::es256().honest()));
    let why = "the DPoP key does not match the key the refresh token is bound to";
    assert_grant_refused(&mut h, req, why).await;
    assert_intact(&mut h, &current, Some(&holder)).await;
}

// ---- additional_claims_json ------------------------------------------------------------------------

/// Each of these `additional_claims_json` values is refused with its message.
async fn assert_claims_refused(h: &mut Harness, cases: &[(impl AsRef<str>, impl AsRef<str>)]) {
    for (json, message) in cases {
        let json = json.as_ref().to_owned();
        assert_generate_invalid(h, |r| r.additional_claims_json = json, message.as_ref()).await;
    }
}

/// The answer to `additional_claims_json` that does not parse as an object without duplicates.
const NOT_AN_OBJECT: &str =
    "additional_claims_json must be a JSON object without duplicate members";

fn registered(name: &str) -> String {
    format!("additional_claims_json may not set the registered claim {name:?}")
}

#[tokio::test]
async fn additional_claims_cannot_override_identity_claims() {
    let mut h = harness(&[]).await;
    let cases = [
        (r#"{"iss":"https://evil.example"}"#, registered("iss")),
        (r#"{"sub":"admin"}"#, registered("sub")),
        (r#"{"aud":"https://bank.example"}"#, registered("aud")),
        (r#"{"client_id":"admin-console"}"#, registered("client_id")),
        (r#"{"scope":"admin"}"#, registered("scope")),
        (r#"{"sid":"AAAAAAAAAAAAAAAAAAAAAA"}"#, registered("sid")),
        (r#"{"cnf":{"jkt":"attacker"}}"#, registered("cnf")),
        (r#"{"acr":"urn:mace:incommon:iap:gold"}"#, registered("acr")),
    ];
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn additional_claims_cannot_override_time_or_id_claims() {
    let mut h = harness(&[]).await;
    let cases = [
        (r#"{"exp":99999999999}"#, registered("exp")),
        (r#"{"iat":0}"#, registered("iat")),
        (r#"{"nbf":0}"#, registered("nbf")),
        (r#"{"jti":"fixed"}"#, registered("jti")),
        (r#"{"auth_time":0}"#, registered("auth_time")),
    ];
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn additional_claims_cannot_set_header_names() {
    let mut h = harness(&[]).await;
    let reserved =
        |name: &str| format!("additional_claims_json may not set the reserved claim {name:?}");
    let cases = [
        (r#"{"typ":"dpop+jwt"}"#, reserved("typ")),
        (r#"{"kid":"../../etc/passwd"}"#, reserved("kid")),
        (r#"{"alg":"none"}"#, reserved("alg")),
        (r#"{"jwk":{"kty":"oct"}}"#, reserved("jwk")),
    ];
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn escaped_registered_claim_names_are_refused() {
    let mut h = harness(&[]).await;
    let cases = [
        (r#"{"\u0069ss":"https://evil.example"}"#, registered("iss")),
        (r#"{"s\u0075b":"admin"}"#, registered("sub")),
        (r#"{"\u0063nf":{"jkt":"x"}}"#, registered("cnf")),
    ];
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn additional_claims_that_are_not_an_object_are_refused() {
    let mut h = harness(&[]).await;
    let cases = [
        "[]", "1", "null", "\"iss\"", "true", "{", "{}{}", "{} x", "{'a':1}",
    ]
    .map(|json| (json, NOT_AN_OBJECT));
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn additional_claims_with_duplicate_members_are_refused() {
    let mut h = harness(&[]).await;
    let cases = [
        r#"{"tenant":"a","tenant":"b"}"#,
        r#"{"tenant":"a","\u0074enant":"b"}"#,
        r#"{"roles":{"admin":false,"admin":true}}"#,
    ]
    .map(|json| (json, NOT_AN_OBJECT));
    assert_claims_refused(&mut h, &cases).await;
}

#[tokio::test]
async fn scope_with_a_space_cannot_smuggle_a_second_scope() {
    let mut h = harness(&[]).await;
    for scope in ["read admin", "read\tadmin", "read\"admin", "read\\admin"] {
        let message = if scope.contains('\t') {
            "scopes is too long or contains control characters"
        } else {
            "invalid argument: a scope is not an RFC 6749 scope token"
        };
        assert_generate_invalid(&mut h, |r| r.scopes = vec![scope.into()], message).await;
    }
}

#[tokio::test]
async fn requested_ttl_beyond_the_cap_is_capped() {
    let mut h = harness(&[]).await;
    let mut req = generate(&fresh_subject());
    req.access_token_ttl_seconds = u32::MAX;
    let tokens = h.generate(req).await.unwrap().into_inner();
    assert_eq!(tokens.expires_in, 900);
    let claims = introspect(&mut h, &tokens.access_token).await.unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
}

// ---- grant integrity ---------------------------------------------------------------------------

/// The audiences of the grants below.
const PAYMENTS: &str = "https://payments.example";
const LEDGER: &str = "https://ledger.example";
/// The custom claims of [`grant`]: `tenant`, and values that a store decoding the text as JSON
/// would rewrite (a number beyond a double's precision, an empty array, an escaped `/`).
const GRANT_CLAIMS: &str = r#"{"tenant":"t-42","n":12345678901234567890,"e":[],"p":"a\/b"}"#;

/// A grant of `read write` to client `web` for [`PAYMENTS`], with [`GRANT_CLAIMS`] and a
/// 120 s access-token lifetime.
fn grant(subject: &str) -> GenerateTokensRequest {
    GenerateTokensRequest {
        audience: vec![PAYMENTS.into()],
        additional_claims_json: GRANT_CLAIMS.into(),
        access_token_ttl_seconds: 120,
        ..generate(subject)
    }
}

/// The payload of a compact JWS, decoded (base64url, JSON) without verifying it.
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a compact JWS has a payload");
    serde_json::from_slice(&token_jwt::base64url::decode(part).unwrap()).unwrap()
}

/// `exp - iat` of decoded claims.
fn lifetime(claims: &Value) -> i64 {
    claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap()
}

/// The metadata names of a status (their values, such as `date`, may differ).
fn metadata_names(e: &Status) -> Vec<String> {
    let mut names: Vec<String> = e
        .metadata()
        .keys()
        .map(|k| match k {
            tonic::metadata::KeyRef::Ascii(k) => k.as_str().to_owned(),
            tonic::metadata::KeyRef::Binary(k) => k.as_str().to_owned(),
        })
        .collect();
    names.sort();
    names
}

/// `INVALID_ARGUMENT`, `invalid_scope`: a refresh asked for more scopes than granted.
fn scope_exceeded() -> Refusal {
    let message = "requested scope exceeds the granted scope";
    Refusal(Code::InvalidArgument, "invalid_scope", message.into())
}

/// `INVALID_ARGUMENT`, `invalid_target`: a refresh asked for more audiences than granted.
fn audience_exceeded() -> Refusal {
    let message = "requested audience exceeds the granted audience";
    Refusal(Code::InvalidArgument, "invalid_target", message.into())
}

impl Harness {
    async fn refresh_with(
        &mut self,
        req: RefreshTokensRequest,
    ) -> Result<Response<TokenResponse>, Status> {
        self.client.refresh_tokens(authed(req)).await
    }

    /// RefreshTokens as `web`, which must succeed.
    async fn rotate(&mut self, token: &str) -> TokenResponse {
        self.refresh_with(refresh_as(token, "web"))
            .await
            .expect("the rightful client rotates its token")
            .into_inner()
    }

    /// RevokeToken by refresh token, presented by `client_id`.
    async fn revoke_as(&mut self, token: &str, client_id: &str) -> Result<Response<u32>, Status> {
        revoke_by(self, client_id, Target::RefreshToken(token.into())).await
    }
}

/// The access token of `tokens` is one of [`grant`]'s family (client `web`, [`GRANT_CLAIMS`],
/// `sid` the family), narrowed to `audience` and `scope`, living `ttl` seconds as
/// `expires_in` says; it is active, and the server verifies exactly the claims decoded here.
async fn assert_minted_from_grant(
    h: &mut Harness,
    tokens: &TokenResponse,
    audience: &[&str],
    scope: &str,
    ttl: i64,
) -> Value {
    let c = payload(&tokens.access_token);
    assert_eq!(audiences(&c), audience, "{c}");
    assert_eq!(c["tenant"], "t-42", "{c}");
    assert_eq!(c["n"], json!(12_345_678_901_234_567_890_u64), "{c}");
    assert_eq!(c["e"], json!([]), "{c}");
    assert_eq!(c["p"], "a/b", "{c}");
    assert_eq!(c["scope"], scope, "{c}");
    assert_eq!(c["client_id"], "web", "{c}");
    assert_eq!(c["sid"], tokens.family_id.as_str(), "{c}");
    assert_eq!(c["iss"], ISSUER, "{c}");
    assert_eq!(lifetime(&c), ttl, "{c}");
    assert_eq!(tokens.expires_in, ttl);
    let verified = introspect(h, &tokens.access_token).await;
    assert_eq!(
        verified.as_ref(),
        Some(&c),
        "the server verifies what was decoded"
    );
    c
}

/// Issues [`grant`] at the first instance and refreshes it twice, each time at the next
/// instance: every access token carries the whole grant, for the same subject, client and
/// family; the last refresh token is then the family's only usable one.
async fn assert_grant_round_trip(instances: &mut [Harness]) {
    let subject = fresh_subject();
    let n = instances.len();
    let first = instances[0]
        .generate(grant(&subject))
        .await
        .unwrap()
        .into_inner();
    let c0 =
        assert_minted_from_grant(&mut instances[0], &first, &[PAYMENTS], "read write", 120).await;
    assert_eq!(c0["sub"], subject.as_str());
    let mut current = first.clone();
    for i in 1..=2 {
        let h = &mut instances[i % n];
        let next = h.rotate(&current.refresh_token).await;
        assert_eq!(next.family_id, first.family_id);
        assert_eq!(next.scopes, ["read", "write"]);
        assert_eq!(next.token_type, "Bearer");
        let c = assert_minted_from_grant(h, &next, &[PAYMENTS], "read write", 120).await;
        for name in ["sub", "client_id", "sid", "aud", "tenant"] {
            assert_eq!(c[name], c0[name], "{name}");
        }
        assert_ne!(c["jti"], c0["jti"]);
        current = next;
    }
    assert_intact(&mut instances[0], &current, None).await;
}

#[tokio::test]
async fn refresh_mints_the_whole_grant_in_memory() {
    let mut h = harness(&[]).await;
    assert_grant_round_trip(std::slice::from_mut(&mut h)).await;
    h.server.shutdown().await.unwrap();
}

/// Two instances sharing `url`'s store and a signing key (so each verifies the other's
/// tokens).
async fn two_instances(url: &str) -> [Harness; 2] {
    let key = signing_key_file();
    let key_path = key.path().to_string_lossy().into_owned();
    let vars = on_redis(url, &[("SIGNING_KEY_FILE", key_path.as_str())]);
    let a = harness(&vars).await;
    let b = harness(&vars).await;
    [a, b]
}

/// [`assert_grant_round_trip`] across [`two_instances`] on the store at `url`.
async fn assert_grant_round_trip_across_instances(url: &str) {
    let mut instances = two_instances(url).await;
    assert_grant_round_trip(&mut instances).await;
    for h in instances {
        h.server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn refresh_mints_the_whole_grant_on_redis_across_instances() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    assert_grant_round_trip_across_instances(&redis.url()).await;
}

#[tokio::test]
async fn refresh_mints_the_whole_grant_on_a_redis_cluster_across_instances() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.url();
    assert!(url.starts_with("redis-cluster://"), "{url}");
    assert_grant_round_trip_across_instances(&url).await;
}

#[tokio::test]
async fn the_grant_is_fixed_at_issue_whatever_the_defaults_of_the_instance_that_refreshes() {
    // The family keeps the audience the server defaulted to at issue and the lifetime the
    // request asked for; an instance with other defaults refreshes it as it was granted, the
    // cap in force there (ACCESS_TOKEN_TTL) applying to the lifetime.
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let with = |extra: &[(&'static str, &'static str)]| on_redis(&url, extra);
    let mut old = harness(&with(&[("DEFAULT_AUDIENCE", "https://old.example")])).await;
    let defaulted = old
        .generate(GenerateTokensRequest {
            audience: vec![],
            access_token_ttl_seconds: 0,
            ..grant(&fresh_subject())
        })
        .await
        .unwrap()
        .into_inner();
    let asked = old
        .generate(grant(&fresh_subject()))
        .await
        .unwrap()
        .into_inner();
    let c = payload(&defaulted.access_token);
    assert_eq!(
        (audiences(&c), lifetime(&c)),
        (vec!["https://old.example".to_owned()], 900)
    );
    old.server.shutdown().await.unwrap();

    let mut new = harness(&with(&[
        ("DEFAULT_AUDIENCE", "https://new.example"),
        ("ACCESS_TOKEN_TTL", "60"),
    ]))
    .await;
    let d1 = new.rotate(&defaulted.refresh_token).await;
    let c = payload(&d1.access_token);
    assert_eq!(audiences(&c), ["https://old.example"], "{c}");
    assert_eq!((lifetime(&c), d1.expires_in), (60, 60), "{c}");
    assert_eq!(c["tenant"], "t-42");
    let a1 = new.rotate(&asked.refresh_token).await;
    let c = payload(&a1.access_token);
    assert_eq!(audiences(&c), [PAYMENTS], "{c}");
    assert_eq!((lifetime(&c), a1.expires_in), (60, 60), "capped: {c}");
    // The new default is no audience of the old family.
    let r = new
        .refresh_with(RefreshTokensRequest {
            audience: vec!["https://new.example".into()],
            ..refresh_as(&d1.refresh_token, "web")
        })
        .await;
    audience_exceeded().assert(r);
    new.server.shutdown().await.unwrap();

    // Under a higher cap, the lifetime asked for at issue is back (it was kept, not the
    // capped one).
    let mut h = harness(&with(&[("ACCESS_TOKEN_TTL", "900")])).await;
    let a2 = h.rotate(&a1.refresh_token).await;
    assert_minted_from_grant(&mut h, &a2, &[PAYMENTS], "read write", 120).await;
    let d2 = h.rotate(&d1.refresh_token).await;
    let c = payload(&d2.access_token);
    assert_eq!(audiences(&c), ["https://old.example"], "{c}");
    assert_eq!((lifetime(&c), d2.expires_in), (900, 900), "{c}");
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_without_an_audience_gets_the_default_one_and_keeps_it() {
    let mut h = harness(&[]).await;
    let tokens = h
        .generate(GenerateTokensRequest {
            audience: vec![],
            ..generate(&fresh_subject())
        })
        .await
        .unwrap()
        .into_inner();
    let next = h.rotate(&tokens.refresh_token).await;
    for t in [&tokens, &next] {
        let c = payload(&t.access_token);
        assert_eq!(audiences(&c), ["https://api.example"], "{c}");
        assert_eq!(c.get("tenant"), None, "{c}");
        assert_eq!(lifetime(&c), 900, "{c}");
    }
    assert_intact(&mut h, &next, None).await;
}

/// A refresh narrows scopes and audience for one token, never widens them, and a refused
/// narrowing leaves the family untouched.
async fn assert_narrowing_only(mut h: Harness) {
    let both = [PAYMENTS, LEDGER];
    let first = h
        .generate(GenerateTokensRequest {
            audience: vec![PAYMENTS.into(), LEDGER.into()],
            ..grant(&fresh_subject())
        })
        .await
        .unwrap()
        .into_inner();
    assert_minted_from_grant(&mut h, &first, &both, "read write", 120).await;
    let narrowed = |token: &str, scopes: &[&str], audience: &[&str]| RefreshTokensRequest {
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        audience: audience.iter().map(|a| (*a).to_owned()).collect(),
        ..refresh_as(token, "web")
    };

    // Scopes narrowed for this token; the next refresh without any gets the whole grant.
    let read = h
        .refresh_with(narrowed(&first.refresh_token, &["read"], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.scopes, ["read"]);
    assert_minted_from_grant(&mut h, &read, &both, "read", 120).await;
    let whole = h.rotate(&read.refresh_token).await;
    assert_eq!(whole.scopes, ["read", "write"]);
    assert_minted_from_grant(&mut h, &whole, &both, "read write", 120).await;

    // The audience likewise, alone or with the scopes (a repeated scope counts once).
    let ledger = h
        .refresh_with(narrowed(&whole.refresh_token, &[], &[LEDGER]))
        .await
        .unwrap()
        .into_inner();
    assert_minted_from_grant(&mut h, &ledger, &[LEDGER], "read write", 120).await;
    let narrow = h
        .refresh_with(narrowed(
            &ledger.refresh_token,
            &["write", "write"],
            &[PAYMENTS],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(narrow.scopes, ["write"]);
    assert_minted_from_grant(&mut h, &narrow, &[PAYMENTS], "write", 120).await;
    let current = h.rotate(&narrow.refresh_token).await;
    assert_minted_from_grant(&mut h, &current, &both, "read write", 120).await;

    // Wider than the grant, in any way: refused, and the family is untouched.
    let cases = [
        (vec!["admin"], vec![], scope_exceeded()),
        (vec!["read", "admin"], vec![], scope_exceeded()),
        (vec!["READ"], vec![], scope_exceeded()),
        (vec!["admin"], vec![LEDGER], scope_exceeded()),
        (vec![], vec!["https://evil.example"], audience_exceeded()),
        (
            vec![],
            vec![PAYMENTS, "https://evil.example"],
            audience_exceeded(),
        ),
        (
            vec![],
            vec!["https://payments.example/"],
            audience_exceeded(),
        ),
        (
            vec![],
            vec!["HTTPS://PAYMENTS.EXAMPLE"],
            audience_exceeded(),
        ),
        // The server's default audience is no part of a grant that named its own.
        (vec![], vec!["https://api.example"], audience_exceeded()),
        (
            vec!["read"],
            vec!["https://evil.example"],
            audience_exceeded(),
        ),
    ];
    for (scopes, audience, refusal) in cases {
        let r = h
            .refresh_with(narrowed(&current.refresh_token, &scopes, &audience))
            .await;
        refusal.assert(r);
    }
    let after = h.rotate(&current.refresh_token).await;
    assert_minted_from_grant(&mut h, &after, &both, "read write", 120).await;
    assert_intact(&mut h, &after, None).await;
}

#[tokio::test]
async fn a_repeated_audience_counts_once_in_the_token_as_at_issue() {
    // GenerateTokens keeps a repeated audience once (the family's list is deduplicated), and
    // a narrowing refresh deduplicates repeated scopes: a repeated audience in a narrowing
    // refresh must not make `aud` list one audience twice either.
    let mut h = harness(&[]).await;
    let tokens = h
        .generate(GenerateTokensRequest {
            audience: vec![PAYMENTS.into(), LEDGER.into(), PAYMENTS.into()],
            ..grant(&fresh_subject())
        })
        .await
        .unwrap()
        .into_inner();
    assert_minted_from_grant(&mut h, &tokens, &[PAYMENTS, LEDGER], "read write", 120).await;
    let narrow = h
        .refresh_with(RefreshTokensRequest {
            audience: vec![LEDGER.into(), LEDGER.into()],
            ..refresh_as(&tokens.refresh_token, "web")
        })
        .await
        .unwrap()
        .into_inner();
    assert_minted_from_grant(&mut h, &narrow, &[LEDGER], "read write", 120).await;
}

/// Client ids that are not `web`, some only barely.
const IMPOSTORS: [&str; 8] = [
    "evil",
    "WEB",
    "Web",
    "we",
    "webx",
    "web ",
    " web",
    "web\u{200b}",
];

/// A refresh token presented by another client is refused and changes nothing: not used
/// up, not reuse, not revoked (by refresh or by RevokeToken); its own client carries on.
async fn assert_client_binding(mut h: Harness) {
    let first = h
        .generate(grant(&fresh_subject()))
        .await
        .unwrap()
        .into_inner();

    // The current token: refused, and neither used up nor the family revoked.
    for client in IMPOSTORS {
        let req = refresh_as(&first.refresh_token, client);
        assert_grant_refused(
            &mut h,
            req,
            "the refresh token was issued to another client",
        )
        .await;
    }
    assert!(active(&mut h, &first.access_token).await);
    let second = h.rotate(&first.refresh_token).await;
    assert_minted_from_grant(&mut h, &second, &[PAYMENTS], "read write", 120).await;

    // A rotated token, by another client: no reuse, the family is not revoked.
    for client in IMPOSTORS {
        let req = refresh_as(&first.refresh_token, client);
        assert_grant_refused(
            &mut h,
            req,
            "the refresh token was issued to another client",
        )
        .await;
    }
    assert!(active(&mut h, &second.access_token).await, "revoked");
    let third = h.rotate(&second.refresh_token).await;

    // RevokeToken of any of its tokens by another client: answered OK, nothing revoked.
    for token in [&first, &second, &third] {
        for client in IMPOSTORS {
            let r = h.revoke_as(&token.refresh_token, client).await;
            assert_eq!(r.unwrap().into_inner(), 0, "{client}");
        }
    }
    assert!(active(&mut h, &third.access_token).await, "revoked");

    // No client at all: not even asked.
    let r = h.refresh_with(refresh_as(&third.refresh_token, "")).await;
    Refusal::request("client_id is required").assert(r);
    let r = h.revoke_as(&third.refresh_token, "").await;
    Refusal::request("client_id is required").assert(r);
    let r = h
        .refresh_with(refresh_as(&third.refresh_token, "web\u{0}"))
        .await;
    Refusal::text("client_id").assert(r);
    let fourth = h.rotate(&third.refresh_token).await;
    assert_minted_from_grant(&mut h, &fourth, &[PAYMENTS], "read write", 120).await;

    // The control: the same rotated token presented by its own client is reuse.
    let req = refresh_as(&first.refresh_token, "web");
    assert_grant_refused(&mut h, req, "refresh token reuse detected").await;
    assert!(!active(&mut h, &fourth.access_token).await);
    let req = refresh_as(&fourth.refresh_token, "web");
    assert_grant_refused(&mut h, req, "the refresh-token family has been revoked").await;
}

#[tokio::test]
async fn another_client_holding_the_dpop_key_cannot_refresh_a_bound_family() {
    // The client binding holds on its own: a proof of the family's key does not lift it.
    let (mut h, holder, tokens) = bound_family().await;
    for client in IMPOSTORS {
        let req = RefreshTokensRequest {
            client_id: client.into(),
            ..refresh(&tokens.refresh_token, Some(holder.honest()))
        };
        assert_grant_refused(
            &mut h,
            req,
            "the refresh token was issued to another client",
        )
        .await;
    }
    assert_intact(&mut h, &tokens, Some(&holder)).await;
}

/// On a server with a 30 s grace window allowing one retry: a retry by another client is
/// refused and uses up nothing.
async fn assert_grace_retry_binding(mut h: Harness) {
    let first = h
        .generate(grant(&fresh_subject()))
        .await
        .unwrap()
        .into_inner();
    let second = h.rotate(&first.refresh_token).await;
    for client in IMPOSTORS {
        let req = refresh_as(&first.refresh_token, client);
        assert_grant_refused(
            &mut h,
            req,
            "the refresh token was issued to another client",
        )
        .await;
    }
    // The one retry the window allows is still the rightful client's, minted from the grant.
    let retry = h.rotate(&first.refresh_token).await;
    assert_eq!(retry.refresh_token, second.refresh_token);
    assert_minted_from_grant(&mut h, &retry, &[PAYMENTS], "read write", 120).await;
    // And it was the only one: another retry is reuse.
    let req = refresh_as(&first.refresh_token, "web");
    assert_grant_refused(&mut h, req, "refresh token reuse detected").await;
    assert!(!active(&mut h, &retry.access_token).await);
}

/// `name{outcome="outcome"}` in the server's Prometheus text (0 when absent).
async fn counter(h: &Harness, name: &str, outcome: &str) -> f64 {
    let text = http_get(h.server.admin_addr, "/metrics", "").await;
    let series = format!("{name}{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn every_refused_refresh_token_reads_alike() {
    // Unknown, forged, malformed, reused, revoked, expired, another client's and DPoP-mismatched
    // tokens get the same code, oauth-error, message and metadata: a front end forwarding the
    // answer is no oracle. Only the rotation metric tells them apart.
    let mut h = harness(&[]).await;
    let holder = Holder::es256();
    let victim = issue(&mut h, None).await;
    let bound = issue(&mut h, Some(&holder)).await;
    let t = victim.refresh_token.clone();
    let (family, secret) = segments(&t);
    let other_secret = format!(
        "{}{}",
        if secret.starts_with('A') { "B" } else { "A" },
        &secret[1..]
    );
    let not_base64 = format!("!{}", &secret[1..]);
    let reused = issue(&mut h, None).await;
    h.rotate(&reused.refresh_token).await;
    let revoked = issue(&mut h, None).await;
    let r = revoke(&mut h, Target::FamilyId(revoked.family_id.clone())).await;
    assert_eq!(r.unwrap().into_inner(), 1);
    let checksum = if t.ends_with('A') { "Q" } else { "A" };

    let cases = [
        (
            "unknown",
            "unknown family",
            refresh_token(&b64([0x5a; 16]), secret),
            "web",
            None,
        ),
        (
            "forged",
            "forged secret",
            refresh_token(family, &other_secret),
            "web",
            None,
        ),
        (
            "malformed",
            "not base64url",
            refresh_token(family, &not_base64),
            "web",
            None,
        ),
        (
            "malformed",
            "wrong checksum",
            format!("{}{checksum}", &t[..76]),
            "web",
            None,
        ),
        ("malformed", "truncated", t[..70].to_owned(), "web", None),
        (
            "malformed",
            "other prefix",
            format!("rt2_{}", &t[4..]),
            "web",
            None,
        ),
        ("malformed", "oversized", t.repeat(4), "web", None),
        (
            "malformed",
            "an access token",
            victim.access_token.clone(),
            "web",
            None,
        ),
        ("reuse", "reused", reused.refresh_token.clone(), "web", None),
        (
            "revoked",
            "revoked",
            revoked.refresh_token.clone(),
            "web",
            None,
        ),
        ("client_mismatch", "another client", t.clone(), "evil", None),
        (
            "dpop_mismatch",
            "bound, no proof",
            bound.refresh_token.clone(),
            "web",
            None,
        ),
        (
            "dpop_mismatch",
            "bound, another key",
            bound.refresh_token.clone(),
            "web",
            Some(Holder::es256().honest()),
        ),
    ];
    let before = Rotations::read(&h).await;
    let mut answers = Vec::new();
    for (_, what, token, client, proof) in &cases {
        let req = RefreshTokensRequest {
            client_id: (*client).into(),
            ..refresh(token, proof.clone())
        };
        let e = h.refresh_with(req).await.expect_err(what);
        answers.push((*what, answer(&e), metadata_names(&e)));
    }
    // Expired: a server whose refresh tokens idle out after a second.
    let mut short = harness(&[("REFRESH_TOKEN_TTL", "1")]).await;
    let expiring = issue(&mut short, None).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let expired_before = Rotations::read(&short).await;
    let e = short
        .refresh(&expiring.refresh_token, None)
        .await
        .expect_err("expired");
    answers.push(("expired", answer(&e), metadata_names(&e)));
    expired_before.assert_counted(&Rotations::read(&short).await, "expired", 1);

    for (what, got, names) in &answers {
        assert_eq!(got, &invalid_grant(), "{what}");
        assert_eq!(names, &answers[0].2, "{what}: other metadata");
    }
    // Each kind is told apart in the metric only.
    let after = Rotations::read(&h).await;
    for outcome in GRANT_OUTCOMES {
        let n = cases.iter().filter(|c| c.0 == outcome).count();
        before.assert_counted(&after, outcome, n);
    }
    assert_intact(&mut h, &victim, None).await;
    assert_intact(&mut h, &bound, Some(&holder)).await;
}

/// RevokeToken answers malformed, forged, unknown and other clients' tokens alike.
async fn assert_revocations_by_token_read_alike(mut h: Harness) {
    // RFC 7009 section 2.1: OK, nothing revoked, whatever the token; the victims are intact.
    let victim = issue(&mut h, None).await;
    let rotated = issue(&mut h, None).await;
    let current = h.rotate(&rotated.refresh_token).await;
    let t = victim.refresh_token.clone();
    let (family, secret) = segments(&t);
    let other_secret = format!(
        "{}{}",
        if secret.starts_with('A') { "B" } else { "A" },
        &secret[1..]
    );
    let checksum = if t.ends_with('A') { "Q" } else { "A" };
    let cases = [
        ("garbage", "rt_garbage".to_owned(), "web"),
        ("truncated", t[..70].to_owned(), "web"),
        ("oversized", t.repeat(4), "web"),
        ("wrong checksum", format!("{}{checksum}", &t[..76]), "web"),
        ("an access token", victim.access_token.clone(), "web"),
        ("forged secret", refresh_token(family, &other_secret), "web"),
        (
            "unknown family",
            refresh_token(&b64([0x5a; 16]), secret),
            "web",
        ),
        ("another client's current token", t.clone(), "evil"),
        (
            "another client's rotated token",
            rotated.refresh_token.clone(),
            "evil",
        ),
    ];
    for (what, token, client) in &cases {
        let r = h.revoke_as(token, client).await;
        let r = r.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(r.into_inner(), 0, "{what}");
    }
    assert_intact(&mut h, &victim, None).await;
    assert!(active(&mut h, &current.access_token).await);

    // The rightful client revokes with any token of the family, once.
    assert_eq!(
        h.revoke_as(&rotated.refresh_token, "web")
            .await
            .unwrap()
            .into_inner(),
        1
    );
    assert_eq!(
        h.revoke_as(&current.refresh_token, "web")
            .await
            .unwrap()
            .into_inner(),
        0
    );
    assert!(!active(&mut h, &current.access_token).await);
    let req = refresh_as(&current.refresh_token, "web");
    assert_grant_refused(&mut h, req, "the refresh-token family has been revoked").await;
}

#[tokio::test]
async fn a_grant_without_any_audience_is_refused_and_nothing_is_issued() {
    // RFC 9068 section 2.2: every access token names its audience. With no DEFAULT_AUDIENCE,
    // a request naming none is refused, before its proof is checked (the proof still works).
    let mut h = harness(&[("DEFAULT_AUDIENCE", "")]).await;
    let holder = Holder::es256();
    let proof = holder.honest();
    let subject = fresh_subject();
    let no_audience = || GenerateTokensRequest {
        audience: vec![],
        ..grant(&subject)
    };
    let message = "audience is required: the request names none and DEFAULT_AUDIENCE is unset";
    let refused = Refusal(Code::InvalidArgument, "invalid_target", message.into());
    refused.assert(h.generate(no_audience()).await);
    refused.assert(
        h.generate(GenerateTokensRequest {
            dpop: Some(post(proof.clone())),
            ..no_audience()
        })
        .await,
    );
    assert_no_family(&mut h, &subject).await;

    // With an audience, the same server issues, with the same proof.
    let tokens = h
        .generate(GenerateTokensRequest {
            dpop: Some(post(proof)),
            ..grant(&subject)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tokens.token_type, "DPoP");
    assert_eq!(audiences(&payload(&tokens.access_token)), [PAYMENTS]);
    let next = h
        .refresh_with(RefreshTokensRequest {
            client_id: "web".into(),
            ..refresh(&tokens.refresh_token, Some(holder.honest()))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audiences(&payload(&next.access_token)), [PAYMENTS]);
    assert_intact(&mut h, &next, Some(&holder)).await;
}

#[tokio::test]
async fn a_refresh_refused_before_its_token_is_checked_does_not_spend_the_proof() {
    let (mut h, holder, tokens) = bound_family().await;
    let proof = holder.honest();
    let with_proof = |edit: &dyn Fn(&mut RefreshTokensRequest)| {
        let mut req = refresh(&tokens.refresh_token, Some(proof.clone()));
        edit(&mut req);
        req
    };
    type Edit = Box<dyn Fn(&mut RefreshTokensRequest)>;
    let t = tokens.refresh_token.clone();
    let cases: Vec<(Edit, Refusal)> = vec![
        (
            Box::new(|r| r.client_id.clear()),
            Refusal::request("client_id is required"),
        ),
        (
            Box::new(|r| r.client_id.push('\n')),
            Refusal::text("client_id"),
        ),
        (
            Box::new(|r| r.refresh_token.clear()),
            Refusal::request("refresh_token is required"),
        ),
        (
            Box::new(|r| r.scopes = vec!["s".into(); 65]),
            Refusal::request("too many scopes"),
        ),
        (
            Box::new(|r| r.audience = vec!["a".into(); 65]),
            Refusal::request("too many audience"),
        ),
        (
            Box::new(|r| r.audience = vec!["a".repeat(1025)]),
            Refusal::text("audience"),
        ),
        (
            Box::new(move |r| r.refresh_token = t[..70].to_owned()),
            Refusal::wrong_length(),
        ),
        (
            Box::new(|r| r.refresh_token = "rt_garbage".into()),
            Refusal::grant("malformed refresh token"),
        ),
    ];
    for (edit, refusal) in &cases {
        refusal.assert(h.refresh_with(with_proof(&**edit)).await);
    }
    // The same proof, in a correct request: accepted; and now it is spent.
    let next = h
        .refresh_with(with_proof(&|_| {}))
        .await
        .expect("the proof was not spent by the refusals")
        .into_inner();
    assert_eq!(next.token_type, "DPoP");
    let r = h.refresh(&next.refresh_token, Some(proof.clone())).await;
    Refusal::proof("DPoP proof replayed").assert(r);
    assert_intact(&mut h, &next, Some(&holder)).await;
}

#[tokio::test]
async fn access_tokens_never_outlive_their_family() {
    // REFRESH_FAMILY_LIFETIME below ACCESS_TOKEN_TTL (REFRESH_TOKEN_TTL may not exceed it).
    let mut h = harness(&[
        ("ACCESS_TOKEN_TTL", "900"),
        ("REFRESH_TOKEN_TTL", "60"),
        ("REFRESH_FAMILY_LIFETIME", "100"),
    ])
    .await;
    let default_ttl = GenerateTokensRequest {
        access_token_ttl_seconds: 0,
        ..grant(&fresh_subject())
    };
    let longer = GenerateTokensRequest {
        access_token_ttl_seconds: 600,
        ..grant(&fresh_subject())
    };
    let shorter = GenerateTokensRequest {
        access_token_ttl_seconds: 30,
        ..grant(&fresh_subject())
    };
    let mut families = Vec::new();
    for (req, ttl) in [(default_ttl, 100), (longer, 100), (shorter, 30)] {
        let tokens = h.generate(req).await.unwrap().into_inner();
        let c = payload(&tokens.access_token);
        // The family was created at `iat`: it ends 100 s later.
        let end = c["iat"].as_i64().unwrap() + 100;
        assert_eq!((tokens.expires_in, lifetime(&c)), (ttl, ttl), "{c}");
        assert!(c["exp"].as_i64().unwrap() <= end);
        families.push((tokens, end, ttl));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for (tokens, end, ttl) in families {
        let next = h.rotate(&tokens.refresh_token).await;
        let c = payload(&next.access_token);
        let iat = c["iat"].as_i64().unwrap();
        let left = end - iat;
        assert!(left < 100, "a second went by");
        assert_eq!(next.expires_in, lifetime(&c), "{c}");
        assert_eq!(next.expires_in, ttl.min(left), "{c}");
        assert!(c["exp"].as_i64().unwrap() <= end, "{c}");
        assert!(next.refresh_expires_in <= left);
        assert!(active(&mut h, &next.access_token).await);
    }
}

#[tokio::test]
async fn revocations_stay_listed_for_the_access_token_ttl_the_leeway_and_the_skew_margin() {
    // An access token minted just before a revocation lives ACCESS_TOKEN_TTL more, and its
    // verifiers accept it up to their leeway past `exp` on clocks that may run behind ours:
    // the revocation is listed (and its Redis entry kept) that long, whatever revoked it.
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let mut h = harness(&on_redis(&url, &[("ACCESS_TOKEN_TTL", "300")])).await;
    let leeway = token_jwt::Policy::builder().issuer(ISSUER).build().leeway;
    let listed_for =
        i64::try_from(300 + leeway + token_server::state::CLOCK_SKEW_MARGIN_SECS).unwrap();
    assert_eq!(listed_for, 300 + 30 + 60);
    let subject = fresh_subject();
    let by_family = h.generate(generate(&subject)).await.unwrap().into_inner();
    let by_token = issue(&mut h, None).await;
    let by_reuse = issue(&mut h, None).await;
    let by_subject = h.generate(generate(&subject)).await.unwrap().into_inner();
    let r = revoke(&mut h, Target::FamilyId(by_family.family_id.clone())).await;
    assert_eq!(r.unwrap().into_inner(), 1);
    let r = h.revoke_as(&by_token.refresh_token, "web").await;
    assert_eq!(r.unwrap().into_inner(), 1);
    h.rotate(&by_reuse.refresh_token).await;
    let req = refresh(&by_reuse.refresh_token, None);
    assert_grant_refused(&mut h, req, "refresh token reuse detected").await;
    assert_eq!(families_of(&mut h, &subject).await, 1);

    for (what, tokens) in [
        ("family", &by_family),
        ("token", &by_token),
        ("reuse", &by_reuse),
        ("subject", &by_subject),
    ] {
        assert!(!active(&mut h, &tokens.access_token).await, "{what}");
        let pattern = format!("*r:{{{}}}", tokens.family_id);
        let keys = redis.command(&["KEYS", &pattern]).unwrap();
        let token_testkit::Reply::Array(Some(keys)) = keys else {
            panic!("{what}: KEYS answered {keys:?}")
        };
        assert_eq!(keys.len(), 1, "{what}: {keys:?}");
        let key = keys[0].text().unwrap();
        let entry = redis.command(&["GET", &key]).unwrap().text().unwrap();
        let event: Value = serde_json::from_str(&entry).unwrap();
        let listed =
            event["listed_until"].as_i64().unwrap() - event["revoked_at"].as_i64().unwrap();
        assert_eq!(listed, listed_for, "{what}: {event}");
        let pttl = redis.command(&["PTTL", &key]).unwrap().int().unwrap();
        assert!(
            pttl > (listed_for - 5) * 1000,
            "{what}: the entry expires in {pttl} ms"
        );
    }
    h.server.shutdown().await.unwrap();
}

// The attacks on the client binding and on narrowing, on each store: Redis runs its own
// (Lua) mirror of the rotation and revocation decisions.

/// Where a server keeps its families.
enum Store {
    Memory,
    /// A new standalone Redis.
    Redis,
}

/// Runs `check` against a new server on `store`, with `extra` on top.
async fn on<F: Future<Output = ()>>(
    store: Store,
    extra: &[(&str, &str)],
    check: impl FnOnce(Harness) -> F,
) {
    match store {
        Store::Memory => check(harness(extra).await).await,
        Store::Redis => {
            let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
            check(harness(&on_redis(&redis.url(), extra)).await).await;
        }
    }
}

/// A 30 s grace window allowing one retry.
const GRACE: [(&str, &str); 2] = [
    ("REFRESH_GRACE_SECONDS", "30"),
    ("REFRESH_GRACE_MAX_USES", "1"),
];

#[tokio::test]
async fn a_refresh_narrows_scopes_and_audience_for_one_token_and_never_widens_them() {
    on(Store::Memory, &[], assert_narrowing_only).await;
}

#[tokio::test]
async fn a_refresh_narrows_scopes_and_audience_for_one_token_and_never_widens_them_on_redis() {
    on(Store::Redis, &[], assert_narrowing_only).await;
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_is_refused_and_changes_nothing() {
    on(Store::Memory, &[], assert_client_binding).await;
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_is_refused_and_changes_nothing_on_redis() {
    on(Store::Redis, &[], assert_client_binding).await;
}

#[tokio::test]
async fn a_grace_retry_by_another_client_is_refused_and_uses_up_nothing() {
    on(Store::Memory, &GRACE, assert_grace_retry_binding).await;
}

#[tokio::test]
async fn a_grace_retry_by_another_client_is_refused_and_uses_up_nothing_on_redis() {
    on(Store::Redis, &GRACE, assert_grace_retry_binding).await;
}

#[tokio::test]
async fn revoke_token_answers_malformed_forged_unknown_and_other_clients_tokens_alike() {
    on(Store::Memory, &[], assert_revocations_by_token_read_alike).await;
}

#[tokio::test]
async fn revoke_token_answers_malformed_forged_unknown_and_other_clients_tokens_alike_on_redis() {
    on(Store::Redis, &[], assert_revocations_by_token_read_alike).await;
}

/// The family document of `family_id` in `redis`: its key and JSON.
fn stored_family(redis: &RedisServer, family_id: &str) -> (String, Value) {
    let pattern = format!("*f:{{{family_id}}}");
    let keys = redis.command(&["KEYS", &pattern]).unwrap();
    let token_testkit::Reply::Array(Some(keys)) = keys else {
        panic!("KEYS answered {keys:?}")
    };
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = keys[0].text().unwrap();
    let json = redis.command(&["GET", &key]).unwrap().text().unwrap();
    (key, serde_json::from_str(&json).unwrap())
}

#[tokio::test]
async fn a_family_stored_before_grants_were_kept_still_mints_tokens_with_an_audience() {
    // A family written by the previous version has no audience, claims or lifetime: its
    // refreshes get DEFAULT_AUDIENCE, and without one no token without `aud` is minted.
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let mut h = harness(&on_redis(&url, &[])).await;
    let mut legacy = Vec::new();
    for _ in 0..2 {
        let tokens = h
            .generate(grant(&fresh_subject()))
            .await
            .unwrap()
            .into_inner();
        let (key, mut family) = stored_family(&redis, &tokens.family_id);
        let doc = family.as_object_mut().unwrap();
        for field in ["audience", "claims_json", "access_ttl"] {
            assert!(doc.remove(field).is_some(), "{field} is stored: {family}");
        }
        let text = family.to_string();
        let r = redis.command(&["SET", &key, &text, "KEEPTTL"]).unwrap();
        assert_eq!(r.text().as_deref(), Some("OK"));
        legacy.push(tokens);
    }
    let next = h.rotate(&legacy[0].refresh_token).await;
    let c = payload(&next.access_token);
    assert_eq!(audiences(&c), ["https://api.example"], "{c}");
    assert_eq!((lifetime(&c), c.get("tenant")), (900, None), "{c}");
    h.server.shutdown().await.unwrap();

    let mut h = harness(&on_redis(&url, &[("DEFAULT_AUDIENCE", "")])).await;
    let (_, before) = stored_family(&redis, &legacy[1].family_id);
    let e = h
        .refresh_with(refresh_as(&legacy[1].refresh_token, "web"))
        .await
        .expect_err("a token without an audience would have been minted");
    assert_eq!(
        refusal(&e),
        (Code::InvalidArgument, "invalid_target"),
        "{e:?}"
    );
    assert_eq!(
        e.message(),
        "audience is required: the grant names none and DEFAULT_AUDIENCE is unset"
    );
    // Refused by the rotation itself: nothing rotated.
    let (_, after) = stored_family(&redis, &legacy[1].family_id);
    assert_eq!(before, after, "the refusal changed the family");
    let named = h
        .refresh_with(RefreshTokensRequest {
            audience: vec!["https://api.example".into()],
            ..refresh_as(&legacy[1].refresh_token, "web")
        })
        .await;
    // The legacy grant has no audience, so naming one is beyond it: refused the same way,
    // and still nothing rotated.
    assert_eq!(
        refusal(&named.expect_err("an audience beyond the grant")),
        (Code::InvalidArgument, "invalid_target")
    );
    assert_eq!(stored_family(&redis, &legacy[1].family_id).1, before);
    h.server.shutdown().await.unwrap();

    // With DEFAULT_AUDIENCE back, the same token refreshes: the grant was never lost.
    let mut h = harness(&on_redis(&url, &[])).await;
    let next = h.rotate(&legacy[1].refresh_token).await;
    assert_eq!(
        audiences(&payload(&next.access_token)),
        ["https://api.example"]
    );
    h.server.shutdown().await.unwrap();
}
