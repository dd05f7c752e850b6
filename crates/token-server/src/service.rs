//! The `token.v1.TokenService` gRPC service: request checks, then calls into the libraries.
//!
//! Logic lives in the libraries: `token-dpop` validates proofs, `token-refresh` owns families
//! and rotation, `token-jwt` builds, signs and verifies access tokens. This file checks
//! requests, wires those calls in the order of the request flow (see ARCHITECTURE), records
//! metrics and maps errors through [`crate::status`].

use std::sync::Arc;
use std::time::Instant;

use token_jwt::{AccessTokenBuilder, Algorithm, AsyncJwsSigner, Claims, CustomClaims, JwsEncoder};
use token_proto::token_service_server::TokenService;
use token_proto::{
    DPoPProof, GenerateTokensRequest, GetJwksRequest, GetJwksResponse, IntrospectTokenRequest,
    IntrospectTokenResponse, RefreshTokensRequest, RevokeTokenRequest, RevokeTokenResponse,
    TokenResponse, ValidateDPoPRequest, ValidateDPoPResponse, WatchRevocationsRequest,
    revoke_token_request,
};
use token_refresh::{Family, FamilyId, GrantDetails, RefreshToken};
use tonic::{Request, Response, Status};

use crate::auth::require;
use crate::callers::{Allow, Caller, Right};
use crate::clock::now;
use crate::metrics as m;
use crate::state::AppState;
use crate::status::{self, invalid_request};

/// The target of the audit lines: one per issuance, refresh and revocation, naming the caller
/// (never its credential). `RUST_LOG=info,audit=off` silences them.
const AUDIT: &str = "audit";

/// Longest subject, client id, audience or scope accepted.
const MAX_FIELD_BYTES: usize = 1024;
/// Most audiences or scopes in one request.
const MAX_LIST: usize = 64;
/// Largest `additional_claims_json`.
const MAX_ADDITIONAL_CLAIMS_BYTES: usize = 8 * 1024;
/// The `sid` of [`TokenServiceImpl::check_mintable`]'s dry run: as long as a family id.
const SID_PLACEHOLDER: &str = "AAAAAAAAAAAAAAAAAAAAAA";
/// RSA signatures have no fixed length: the dry run counts the largest modulus (8192 bits).
const MAX_SIGNATURE_BYTES: usize = 1024;

/// The service implementation.
#[derive(Debug, Clone)]
pub struct TokenServiceImpl {
    state: Arc<AppState>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl TokenServiceImpl {
    /// A service over the shared state; its streams end when `shutdown` turns true (or its
    /// sender is dropped).
    pub fn new(state: Arc<AppState>, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        TokenServiceImpl { state, shutdown }
    }
}

/// The authenticated caller that [`crate::auth`] put in the request. Absent only when the
/// service is served without the auth layer, which then serves nobody.
fn caller_of<T>(request: &Request<T>) -> Result<Arc<Caller>, Status> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

/// Runs a store operation, recording its latency in `latency` (`STORE_SECONDS` by `op`).
async fn store_op<T, F: std::future::Future<Output = T>>(latency: &metrics::Histogram, f: F) -> T {
    let start = Instant::now();
    let out = f.await;
    latency.record(start.elapsed());
    out
}

/// Members of the `cnf` object at most (`jkt` today; a margin for other confirmation methods).
const CNF_MEMBERS_BOUND: usize = 4;

/// Whether `claims`, serialized, is within the verifier's JSON `limits` by its shape alone:
/// without custom claims a payload is at most two deep (the `aud` and `amr` arrays, the `cnf`
/// object) and has one member per registered claim plus those arrays' elements and `cnf`'s
/// members. [`TokenServiceImpl::check_mintable`] then skips parsing the dry run's payload (a
/// few µs per `GenerateTokens`); with custom claims it parses it.
fn within_json_limits_by_shape(claims: &Claims, limits: token_jwt::JsonLimits) -> bool {
    let aud = match &claims.aud {
        Some(token_jwt::Audience::Many(list)) => list.len(),
        Some(token_jwt::Audience::One(_)) | None => 0,
    };
    let amr = claims.amr.as_ref().map_or(0, Vec::len);
    claims.custom.is_empty()
        && limits.max_depth >= 2
        && token_jwt::REGISTERED_CLAIMS.len() + aud + amr + CNF_MEMBERS_BOUND <= limits.max_members
}

/// gRPC status codes: `Ok` (0) to `Unauthenticated` (16).
const GRPC_CODES: usize = 17;

/// Records an RPC's latency by its status code (`REQUEST_SECONDS` by `rpc` and `code`), through
/// handles kept per call site.
macro_rules! observe {
    ($rpc:literal, $start:expr, $result:expr) => {{
        static BY_CODE: m::ByLabel<metrics::Histogram, GRPC_CODES> = m::ByLabel::new();
        observe(&BY_CODE, $rpc, $start, $result)
    }};
}

/// [`observe!`]'s body.
fn observe<T>(
    by_code: &m::ByLabel<metrics::Histogram, GRPC_CODES>,
    rpc: &'static str,
    start: Instant,
    result: &Result<T, Status>,
) {
    let code = match result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    let label = code_label(code);
    by_code.record(
        code as usize,
        || metrics::histogram!(m::REQUEST_SECONDS, "rpc" => rpc, "code" => label),
        |h| h.record(start.elapsed()),
    );
}

/// The gRPC status as a static metric label (no allocation per request).
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn check_text(name: &'static str, value: &str, required: bool) -> Result<(), Status> {
    if value.is_empty() {
        return if required {
            Err(invalid_request(format!("{name} is required")))
        } else {
            Ok(())
        };
    }
    if value.len() > MAX_FIELD_BYTES || value.chars().any(char::is_control) {
        return Err(invalid_request(format!(
            "{name} is too long or contains control characters"
        )));
    }
    Ok(())
}

/// A request URI a DPoP proof is compared with. It is the caller's argument: a value that is
/// not an absolute http(s) URI is refused here as `invalid_request`, rather than reaching the
/// validator, whose `InvalidRequestUri` is a server-side error (`UNAVAILABLE`).
fn check_uri(name: &'static str, value: &str) -> Result<(), Status> {
    check_text(name, value, true)?;
    if token_dpop::htu::normalize(value).is_none() {
        return Err(invalid_request(format!(
            "{name} is not an absolute http(s) URI"
        )));
    }
    Ok(())
}

fn check_list(name: &'static str, values: &[String]) -> Result<(), Status> {
    if values.len() > MAX_LIST {
        return Err(invalid_request(format!("too many {name}")));
    }
    values.iter().try_for_each(|v| check_text(name, v, true))
}

fn parse_additional_claims(json: &str) -> Result<CustomClaims, Status> {
    if json.is_empty() {
        return Ok(CustomClaims::new());
    }
    if json.len() > MAX_ADDITIONAL_CLAIMS_BYTES {
        return Err(invalid_request("additional_claims_json is too large"));
    }
    let map = token_jwt::strict_json::parse_object(
        json.as_bytes(),
        token_jwt::Part::Payload,
        token_jwt::JsonLimits::new(8, 256),
    )
    .map_err(|_| {
        invalid_request("additional_claims_json must be a JSON object without duplicate members")
    })?;
    // Names this service sets itself, beyond the registered ones CustomClaims refuses.
    const RESERVED: [&str; 4] = ["typ", "kid", "alg", "jwk"];
    if let Some(name) = map.keys().find(|k| RESERVED.contains(&k.as_str())) {
        return Err(invalid_request(format!(
            "additional_claims_json may not set the reserved claim {name:?}"
        )));
    }
    CustomClaims::from_map(map).map_err(|e| match e {
        token_jwt::Error::ReservedClaim(name) => invalid_request(format!(
            "additional_claims_json may not set the registered claim {name:?}"
        )),
        _ => invalid_request("invalid additional_claims_json"),
    })
}

fn proof_parts(p: &DPoPProof) -> Result<(&str, &str, &str), Status> {
    if p.proof.is_empty() {
        return Err(invalid_request("dpop.proof is empty"));
    }
    check_text("dpop.http_method", &p.http_method, true)?;
    check_uri("dpop.http_uri", &p.http_uri)?;
    Ok((&p.proof, &p.http_method, &p.http_uri))
}

impl TokenServiceImpl {
    /// Validates a proof on Generate/Refresh; failures are `UNAUTHENTICATED`.
    async fn dpop_jkt(
        &self,
        proof: Option<&DPoPProof>,
        now: i64,
    ) -> Result<Option<String>, Status> {
        let Some(p) = proof else {
            return Ok(None);
        };
        let (proof, method, uri) = proof_parts(p)?;
        let request = token_dpop::Request::new(method, uri);
        match self.state.dpop.validate(&[proof], &request, now).await {
            Ok(v) => {
                m::cached!(counter!(m::DPOP_VALIDATIONS, "outcome" => "valid", "reason" => ""))
                    .increment(1);
                #[allow(clippy::cast_precision_loss, reason = "seconds of clock skew")]
                m::cached!(histogram!(m::DPOP_IAT_OFFSET)).record((v.iat - now) as f64);
                Ok(Some(v.jkt))
            }
            Err(e) => {
                metrics::counter!(m::DPOP_VALIDATIONS, "outcome" => "invalid", "reason" => e.description())
                    .increment(1);
                Err(status::dpop(&e))
            }
        }
    }

    /// Builds and signs an access token.
    async fn mint(&self, builder: AccessTokenBuilder, now: i64) -> Result<String, Status> {
        let claims = builder
            .build(now)
            .map_err(|_| Status::internal("could not build the token claims"))?;
        let start = Instant::now();
        let (signer, encoder) = self.active_key()?;
        let token = encoder
            .encode_async(&claims, &*signer)
            .await
            .map_err(|e| status::signing(&e))?;
        // Handles by algorithm, kept (see `metrics::cached`).
        static SIGN: m::ByLabel<(metrics::Histogram, metrics::Counter), 5> = m::ByLabel::new();
        let alg = signer.algorithm();
        let register = || {
            (
                metrics::histogram!(m::SIGN_SECONDS, "alg" => alg.as_str()),
                metrics::counter!(m::TOKENS_ISSUED, "type" => "access", "alg" => alg.as_str()),
            )
        };
        let index = match alg {
            Algorithm::ES256 => 0,
            Algorithm::ES384 => 1,
            Algorithm::EdDSA => 2,
            Algorithm::RS256 => 3,
            Algorithm::PS256 => 4,
            // A later algorithm (the enum is non-exhaustive) records through the registry.
            _ => usize::MAX,
        };
        SIGN.record(index, register, |(latency, issued)| {
            latency.record(start.elapsed());
            issued.increment(1);
        });
        Ok(token)
    }

    fn active_key(&self) -> Result<(Arc<dyn AsyncJwsSigner>, Arc<JwsEncoder>), Status> {
        self.state.keys.active().map_err(|e| {
            tracing::error!(error = %e, "no active signing key");
            Status::unavailable("no active signing key")
        })
    }

    /// Refuses, before anything is stored, a grant whose access token this service's own
    /// verifier would refuse (IntrospectToken, ValidateDPoP): larger than the policy's
    /// `max_token_bytes`, or a payload beyond its JSON limits (custom claims and audiences
    /// together can have more members than either alone). A dry run of [`Self::mint`] with a
    /// placeholder `sid` of the same length.
    fn check_mintable(&self, probe: AccessTokenBuilder, now: i64) -> Result<(), Status> {
        let claims = probe
            .session_id(SID_PLACEHOLDER)
            .build(now)
            .map_err(|_| Status::internal("could not build the token claims"))?;
        let payload = claims
            .to_json()
            .map_err(|_| Status::internal("could not serialize the token claims"))?;
        let (signer, encoder) = self.active_key()?;
        let signature = signer
            .algorithm()
            .fixed_signature_len()
            .unwrap_or(MAX_SIGNATURE_BYTES);
        let size = encoder.signing_input_raw(&payload).len() + 1 + (signature * 4).div_ceil(3);
        let policy = &self.state.policy;
        let limits = policy.payload_limits;
        if size > policy.max_token_bytes
            || (!within_json_limits_by_shape(&claims, limits)
                && token_jwt::strict_json::parse_object(&payload, token_jwt::Part::Payload, limits)
                    .is_err())
        {
            return Err(invalid_request(
                "the access token would exceed the size or JSON limits of its verifiers",
            ));
        }
        Ok(())
    }

    /// The access token of a family: its subject, client, `sid` and DPoP binding.
    fn access_builder(
        &self,
        family: &Family,
        audience: &[String],
        scopes: &[String],
        ttl: u64,
    ) -> AccessTokenBuilder {
        let jkt = family.dpop_jkt.as_deref();
        self.grant_builder(
            &family.subject,
            &family.client_id,
            jkt,
            audience,
            scopes,
            ttl,
        )
        .session_id(family.id.to_string())
    }

    /// The access token of a grant to `subject` and `client_id`, without `sid`.
    fn grant_builder(
        &self,
        subject: &str,
        client_id: &str,
        jkt: Option<&str>,
        audience: &[String],
        scopes: &[String],
        ttl: u64,
    ) -> AccessTokenBuilder {
        let audience = if audience.is_empty() {
            &self.state.config.default_audience
        } else {
            audience
        };
        let b = AccessTokenBuilder::new(self.state.config.issuer.clone(), ttl)
            .subject(subject)
            .client_id(client_id)
            .audience(audience.iter().cloned())
            .scopes(scopes);
        match jkt {
            Some(jkt) => b.dpop_jkt(jkt),
            None => b,
        }
    }

    fn ttl(&self, requested: u32) -> u64 {
        let max = self.state.config.access_token_ttl;
        match u64::from(requested) {
            0 => max,
            t => t.min(max),
        }
    }

    /// Verifies one of our access tokens and checks its family is not revoked.
    async fn verify_access_token(&self, token: &str, now: i64) -> Result<Claims, &'static str> {
        let verified = self
            .state
            .policy
            .verify_async(token, &*self.state.keys, now)
            .await
            .map_err(|_| "the access token is invalid or expired")?;
        let claims = verified.into_claims();
        if let Some(sid) = &claims.sid {
            let id = FamilyId::parse(sid).map_err(|_| "the access token has an invalid sid")?;
            match self.state.revocations.is_revoked(&id, now).await {
                Ok(false) => {}
                Ok(true) => return Err("the access token's grant was revoked"),
                Err(_) => return Err("revocation status unavailable"),
            }
        }
        Ok(claims)
    }
}

#[tonic::async_trait]
impl TokenService for TokenServiceImpl {
    type WatchRevocationsStream = crate::revocation_watch::EventStream;

    #[tracing::instrument(skip_all, fields(rpc = "WatchRevocations"))]
    async fn watch_revocations(
        &self,
        request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let start = Instant::now();
        let result = async {
            // The `WatchRevocations` right was checked with the caller, by the auth layer.
            let caller = caller_of(&request)?;
            let since = crate::revocation_watch::parse_cursor(&request.get_ref().cursor)?;
            let stream = crate::revocation_watch::stream(
                self.state.revocations.clone(),
                since,
                self.shutdown.clone(),
            )
            .await?;
            tracing::info!(target: AUDIT, caller = %caller.name, "revocations watched");
            Ok(Response::new(stream))
        }
        .await;
        observe!("WatchRevocations", start, &result);
        result
    }

    #[tracing::instrument(skip_all, fields(rpc = "GenerateTokens", family_id))]
    async fn generate_tokens(
        &self,
        request: Request<GenerateTokensRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let start = Instant::now();
        let result = async {
            let now = now();
            let caller = caller_of(&request)?;
            let r = request.into_inner();
            check_text("subject", &r.subject, true)?;
            check_text("client_id", &r.client_id, true)?;
            check_list("audience", &r.audience)?;
            check_list("scopes", &r.scopes)?;
            require(&caller, &Right::ClientId(&r.client_id))?;
            // RFC 9068 section 2.2: every access token names its audience.
            let audience = if r.audience.is_empty() {
                self.state.config.default_audience.clone()
            } else {
                r.audience.clone()
            };
            if audience.is_empty() {
                return Err(status::with_oauth_error(
                    Status::invalid_argument(
                        "audience is required: the request names none and DEFAULT_AUDIENCE is unset",
                    ),
                    "invalid_target",
                ));
            }
            for aud in &audience {
                require(&caller, &Right::Audience(aud))?;
            }
            let custom = parse_additional_claims(&r.additional_claims_json)?;
            let ttl = self.ttl(r.access_token_ttl_seconds);
            let jkt = self.dpop_jkt(r.dpop.as_ref(), now).await?;
            let probe = self
                .grant_builder(
                    &r.subject,
                    &r.client_id,
                    jkt.as_deref(),
                    &audience,
                    &r.scopes,
                    ttl,
                )
                .custom_claims(custom.clone());
            self.check_mintable(probe, now)?;

            // The family keeps the whole grant: every refresh mints from it.
            let details = GrantDetails {
                audience,
                claims_json: (!r.additional_claims_json.is_empty())
                    .then(|| r.additional_claims_json.clone()),
                access_ttl: (r.access_token_ttl_seconds != 0).then_some(r.access_token_ttl_seconds),
            };
            let (refresh, family) = store_op(
                m::cached!(histogram!(m::STORE_SECONDS, "op" => "issue")),
                self.state.rotator.issue_with(
                    &r.subject,
                    &r.client_id,
                    &r.scopes,
                    jkt.as_deref(),
                    &details,
                    now,
                ),
            )
            .await
            .map_err(|e| status::refresh(&e))?;
            let ttl = capped_ttl(ttl, &family, now);
            tracing::Span::current().record("family_id", tracing::field::display(&family.id));
            tracing::info!(
                target: AUDIT,
                caller = %caller.name,
                client_id = %family.client_id,
                subject = %family.subject,
                family_id = %family.id,
                bound = family.dpop_jkt.is_some(),
                "tokens issued"
            );
            m::cached!(counter!(m::TOKENS_ISSUED, "type" => "refresh", "alg" => "opaque"))
                .increment(1);

            let builder = self
                .access_builder(&family, &family.audience, &family.scopes, ttl)
                .custom_claims(custom);
            let access_token = self.mint(builder, now).await?;
            Ok(Response::new(TokenResponse {
                access_token,
                token_type: if jkt.is_some() { "DPoP" } else { "Bearer" }.to_owned(),
                expires_in: i64::try_from(ttl).unwrap_or(i64::MAX),
                refresh_token: refresh.as_str().to_owned(),
                refresh_expires_in: family.expires_at() - now,
                family_id: family.id.to_string(),
                scopes: family.scopes.clone(),
            }))
        }
        .await;
        observe!("GenerateTokens", start, &result);
        result
    }

    #[tracing::instrument(skip_all, fields(rpc = "RefreshTokens", family_id))]
    async fn refresh_tokens(
        &self,
        request: Request<RefreshTokensRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let start = Instant::now();
        let result = async {
            let now = now();
            let caller = caller_of(&request)?;
            let r = request.into_inner();
            if r.refresh_token.is_empty() {
                return Err(invalid_request("refresh_token is required"));
            }
            check_text("client_id", &r.client_id, true)?;
            check_list("scopes", &r.scopes)?;
            check_list("audience", &r.audience)?;
            require(&caller, &Right::ClientId(&r.client_id))?;
            for aud in &r.audience {
                require(&caller, &Right::Audience(aud))?;
            }
            // A token that cannot be one of ours is refused before the DPoP proof is checked,
            // so such a request does not spend the proof's `jti`.
            let presented = match RefreshToken::parse(&r.refresh_token) {
                Ok(token) => token,
                Err(e) => {
                    metrics::counter!(m::ROTATIONS, "outcome" => rotation_outcome(&e)).increment(1);
                    return Err(status::refresh(&e));
                }
            };
            if r.audience.is_empty() && caller.rights.audiences != Allow::Any {
                // A caller limited to some audiences refreshes only grants it could mint: the
                // stored audience is read first (a grant's audience never changes), only for
                // such callers, before anything rotates or a proof is spent.
                let family = store_op(
                    m::cached!(histogram!(m::STORE_SECONDS, "op" => "get")),
                    self.state.rotator.family(&presented.family_id()),
                )
                .await
                .map_err(|e| status::refresh(&e))?;
                if let Some(family) = family {
                    for aud in &family.audience {
                        require(&caller, &Right::Audience(aud))?;
                    }
                }
            }
            // A family stored before grants kept their audience has none; without
            // DEFAULT_AUDIENCE its next token would have no `aud`. The rotation refuses that
            // itself, family untouched (the rotator's `require_audience`): no read first.
            let jkt = self.dpop_jkt(r.dpop.as_ref(), now).await?;
            let requested = (!r.scopes.is_empty()).then_some(r.scopes.as_slice());
            let requested_audience = (!r.audience.is_empty()).then_some(r.audience.as_slice());
            let outcome = match store_op(
                m::cached!(histogram!(m::STORE_SECONDS, "op" => "rotate")),
                self.state.rotator.refresh(
                    &r.refresh_token,
                    &r.client_id,
                    jkt.as_deref(),
                    requested,
                    requested_audience,
                    now,
                ),
            )
            .await
            {
                Ok(o) => o,
                Err(e) => {
                    metrics::counter!(m::ROTATIONS, "outcome" => rotation_outcome(&e)).increment(1);
                    if matches!(e, token_refresh::Error::ReuseDetected) {
                        metrics::counter!(m::FAMILIES_REVOKED, "reason" => "reuse").increment(1);
                        tracing::warn!("refresh token reuse: the family was revoked");
                    }
                    if matches!(e, token_refresh::Error::AudienceExceeded)
                        && requested_audience.is_none()
                    {
                        // Only a grant without any audience, with no DEFAULT_AUDIENCE, is
                        // refused for an audience it was not asked for.
                        return Err(status::with_oauth_error(
                            Status::invalid_argument(
                                "audience is required: the grant names none and DEFAULT_AUDIENCE is unset",
                            ),
                            "invalid_target",
                        ));
                    }
                    return Err(status::refresh(&e));
                }
            };
            let family = &outcome.family;
            tracing::Span::current().record("family_id", tracing::field::display(&family.id));
            tracing::info!(
                target: AUDIT,
                caller = %caller.name,
                client_id = %family.client_id,
                subject = %family.subject,
                family_id = %family.id,
                grace_retry = outcome.is_grace_retry,
                "tokens refreshed"
            );
            if outcome.is_grace_retry {
                m::cached!(counter!(m::ROTATIONS, "outcome" => "grace")).increment(1);
            } else {
                m::cached!(counter!(m::ROTATIONS, "outcome" => "rotated")).increment(1);
            }
            // Minted from the stored grant, narrowed as the request asked.
            let ttl = capped_ttl(self.ttl(family.access_ttl.unwrap_or(0)), family, now);
            let custom = parse_additional_claims(family.claims_json.as_deref().unwrap_or(""))
                .map_err(|_| Status::internal("the stored grant's claims do not decode"))?;
            // A requested audience counts each entry once, as at issue.
            let audience = match requested_audience {
                Some(requested) => {
                    let mut unique: Vec<String> = Vec::with_capacity(requested.len());
                    for a in requested {
                        if !unique.contains(a) {
                            unique.push(a.clone());
                        }
                    }
                    unique
                }
                None => family.audience.clone(),
            };
            let builder = self
                .access_builder(family, &audience, &outcome.scopes, ttl)
                .custom_claims(custom);
            let access_token = self.mint(builder, now).await?;
            Ok(Response::new(TokenResponse {
                access_token,
                token_type: if family.dpop_jkt.is_some() { "DPoP" } else { "Bearer" }.to_owned(),
                expires_in: i64::try_from(ttl).unwrap_or(i64::MAX),
                refresh_token: outcome.token.as_str().to_owned(),
                refresh_expires_in: family.expires_at() - now,
                family_id: family.id.to_string(),
                scopes: outcome.scopes.clone(),
            }))
        }
        .await;
        observe!("RefreshTokens", start, &result);
        result
    }

    #[tracing::instrument(skip_all, fields(rpc = "RevokeToken"))]
    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let start = Instant::now();
        let result = async {
            let now = now();
            let caller = caller_of(&request)?;
            let r = request.into_inner();
            check_text("reason", &r.reason, false)?;
            let rotator = &self.state.rotator;
            let (count, reason) = match r.target {
                Some(revoke_token_request::Target::RefreshToken(t)) if !t.is_empty() => {
                    check_text("client_id", &r.client_id, true)?;
                    require(&caller, &Right::ClientId(&r.client_id))?;
                    // RFC 7009 section 2.1: a malformed, unknown or forged token, and one of
                    // another client's family, are answered alike and revoke nothing.
                    let count = match rotator.revoke_token(&t, &r.client_id, now).await {
                        Ok(outcome) => revoked_count(&outcome),
                        Err(e) if e.is_format_error() => 0,
                        Err(e) => return Err(status::refresh(&e)),
                    };
                    (count, "token")
                }
                Some(revoke_token_request::Target::FamilyId(id)) if !id.is_empty() => {
                    require(&caller, &Right::RevokeByFamily)?;
                    let id = FamilyId::parse(&id)
                        .map_err(|_| invalid_request("family_id is malformed"))?;
                    let outcome = rotator
                        .revoke_family(&id, now)
                        .await
                        .map_err(|e| status::refresh(&e))?;
                    (revoked_count(&outcome), "family")
                }
                Some(revoke_token_request::Target::Subject(s)) if !s.is_empty() => {
                    require(&caller, &Right::RevokeBySubject)?;
                    check_text("subject", &s, true)?;
                    let n = rotator
                        .revoke_subject(&s, now)
                        .await
                        .map_err(|e| status::refresh(&e))?;
                    (u32::try_from(n).unwrap_or(u32::MAX), "subject")
                }
                _ => {
                    return Err(invalid_request(
                        "one of refresh_token, family_id or subject is required",
                    ));
                }
            };
            metrics::counter!(m::FAMILIES_REVOKED, "reason" => reason).increment(u64::from(count));
            tracing::info!(
                target: AUDIT,
                caller = %caller.name,
                families = count,
                by = reason,
                "revoked"
            );
            Ok(Response::new(RevokeTokenResponse {
                families_revoked: count,
            }))
        }
        .await;
        observe!("RevokeToken", start, &result);
        result
    }

    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            jwks_json: String::from_utf8_lossy(self.state.keys.jwks().body()).into_owned(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ValidateDPoP"))]
    async fn validate_d_po_p(
        &self,
        request: Request<ValidateDPoPRequest>,
    ) -> Result<Response<ValidateDPoPResponse>, Status> {
        let start = Instant::now();
        let result = async {
            let now = now();
            let r = request.into_inner();
            if r.proof.is_empty() {
                return Err(invalid_request("proof is required"));
            }
            check_text("http_method", &r.http_method, true)?;
            check_uri("http_uri", &r.http_uri)?;
            check_text("expected_jkt", &r.expected_jkt, false)?;
            let invalid = |error: &str, description: &str, nonce: Option<String>| {
                Response::new(ValidateDPoPResponse {
                    valid: false,
                    error: error.to_owned(),
                    error_description: description.to_owned(),
                    dpop_nonce: nonce.unwrap_or_default(),
                    ..ValidateDPoPResponse::default()
                })
            };
            let mut expected = (!r.expected_jkt.is_empty()).then(|| r.expected_jkt.clone());
            let access_token = (!r.access_token.is_empty()).then_some(r.access_token.as_str());
            if let Some(token) = access_token {
                let claims = match self.verify_access_token(token, now).await {
                    Ok(c) => c,
                    Err(why) => return Ok(invalid("invalid_token", why, None)),
                };
                let Some(jkt) = claims.cnf.and_then(|c| c.jkt) else {
                    return Ok(invalid("invalid_token", "the access token is not DPoP-bound", None));
                };
                if expected.as_ref().is_some_and(|e| *e != jkt) {
                    return Ok(invalid("invalid_token", "expected_jkt differs from the token's cnf.jkt", None));
                }
                expected = Some(jkt);
            }
            let mut request = token_dpop::Request::new(&r.http_method, &r.http_uri);
            if let Some(token) = access_token {
                request = request.with_access_token(token);
            }
            if let Some(jkt) = expected.as_deref() {
                request = request.with_expected_jkt(jkt);
            }
            match self
                .state
                .dpop
                .validate(&[r.proof.as_str()], &request, now)
                .await
            {
                Ok(v) => {
                    m::cached!(counter!(m::DPOP_VALIDATIONS, "outcome" => "valid", "reason" => ""))
                        .increment(1);
                    #[allow(clippy::cast_precision_loss, reason = "seconds of clock skew")]
                    m::cached!(histogram!(m::DPOP_IAT_OFFSET)).record((v.iat - now) as f64);
                    Ok(Response::new(ValidateDPoPResponse {
                        valid: true,
                        jkt: v.jkt,
                        jti: v.jti,
                        iat: v.iat,
                        ..ValidateDPoPResponse::default()
                    }))
                }
                Err(e) if e.is_server_error() => Err(status::dpop(&e)),
                Err(e) => {
                    metrics::counter!(m::DPOP_VALIDATIONS, "outcome" => "invalid", "reason" => e.description())
                        .increment(1);
                    Ok(invalid(e.oauth_error(), e.description(), e.fresh_nonce().map(str::to_owned)))
                }
            }
        }
        .await;
        observe!("ValidateDPoP", start, &result);
        result
    }

    #[tracing::instrument(skip_all, fields(rpc = "IntrospectToken"))]
    async fn introspect_token(
        &self,
        request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        let start = Instant::now();
        let result = async {
            let now = now();
            let r = request.into_inner();
            if r.token.is_empty() {
                return Err(invalid_request("token is required"));
            }
            let response = match self.verify_access_token(&r.token, now).await {
                Ok(claims) => IntrospectTokenResponse {
                    active: true,
                    claims_json: serde_json::to_string(&claims)
                        .map_err(|_| Status::internal("claims could not be serialized"))?,
                },
                Err(_) => IntrospectTokenResponse::default(),
            };
            Ok(Response::new(response))
        }
        .await;
        observe!("IntrospectToken", start, &result);
        result
    }
}

/// How many families a revocation revoked: 1 or 0, whatever the reason for 0 (already
/// revoked, unknown, forged, another client's, or a tombstone), so the answer tells nothing
/// more. A tombstone (an operator revoked a family the store had forgotten: its id is listed
/// for the access tokens that outlive it) revokes no family but is logged.
fn revoked_count(outcome: &token_refresh::RevokeOutcome) -> u32 {
    match outcome {
        token_refresh::RevokeOutcome::Revoked(_) => 1,
        token_refresh::RevokeOutcome::Tombstoned(entry) => {
            tracing::info!(
                family_id = %entry.family_id,
                listed_until = entry.listed_until,
                "no record of the family (expired and forgotten, or never issued); its id is \
                 listed anyway for its access tokens (a tombstone)"
            );
            0
        }
        _ => 0,
    }
}

/// The access-token lifetime `ttl`, capped so the token never outlives its family.
fn capped_ttl(ttl: u64, family: &Family, now: i64) -> u64 {
    let left = u64::try_from(family.absolute_expires_at.saturating_sub(now)).unwrap_or(0);
    ttl.min(left)
}

/// The `outcome` label of a refused rotation: the reason the wire does not tell.
fn rotation_outcome(e: &token_refresh::Error) -> &'static str {
    use token_refresh::Error as E;
    match e {
        E::ReuseDetected => "reuse",
        E::Revoked => "revoked",
        E::Expired => "expired",
        E::DpopKeyMismatch | E::DpopProofRequired => "dpop_mismatch",
        E::ClientMismatch => "client_mismatch",
        E::ForgedToken => "forged",
        E::UnknownFamily => "unknown",
        E::ScopeExceeded | E::AudienceExceeded => "narrowing_exceeded",
        e if e.is_format_error() => "malformed",
        E::Store { .. } => "error",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::{code_label, within_json_limits_by_shape};
    use token_jwt::{AccessTokenBuilder, JsonLimits};

    /// Members (object members plus array elements) and depth of a JSON value, counted as
    /// token-jwt's strict parser counts them.
    fn shape(v: &serde_json::Value) -> (usize, usize) {
        match v {
            serde_json::Value::Object(m) => m.values().fold((m.len(), 1), |(n, d), v| {
                let (vn, vd) = shape(v);
                (n + vn, d.max(vd + 1))
            }),
            serde_json::Value::Array(a) => a.iter().fold((a.len(), 1), |(n, d), v| {
                let (vn, vd) = shape(v);
                (n + vn, d.max(vd + 1))
            }),
            _ => (0, 0),
        }
    }

    #[test]
    fn the_shape_bound_covers_every_registered_claim_set() {
        // Every registered claim set, with arrays of the longest lists the API takes.
        let claims = AccessTokenBuilder::new("https://issuer.example", 300)
            .subject("alice")
            .audience((0..64).map(|i| format!("aud-{i}")))
            .client_id("client")
            .scopes(["read", "write"])
            .auth_time(1)
            .acr("urn:acr")
            .amr((0..64).map(|i| format!("amr-{i}")))
            .dpop_jkt("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
            .session_id(super::SID_PLACEHOLDER)
            .not_before(1)
            .build(1)
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&claims.to_json().unwrap()).unwrap();
        let (members, depth) = shape(&json);
        assert_eq!(depth, 2);
        // Exactly at the bound the shape check says yes; one member short it says no, so the
        // bound is never below the real count.
        let bound = token_jwt::REGISTERED_CLAIMS.len() + 64 + 64 + super::CNF_MEMBERS_BOUND;
        assert!(members <= bound, "{members} members, bound {bound}");
        assert!(within_json_limits_by_shape(
            &claims,
            JsonLimits::new(2, bound)
        ));
        assert!(!within_json_limits_by_shape(
            &claims,
            JsonLimits::new(2, bound - 1)
        ));
        assert!(!within_json_limits_by_shape(
            &claims,
            JsonLimits::new(1, 1000)
        ));
    }

    #[test]
    fn custom_claims_are_always_parsed() {
        let claims = AccessTokenBuilder::new("https://issuer.example", 300)
            .claim("tenant", serde_json::json!({"a": {"b": [1, 2, 3]}}))
            .unwrap()
            .build(1)
            .unwrap();
        assert!(!within_json_limits_by_shape(&claims, JsonLimits::default()));
    }

    #[test]
    fn code_labels_are_the_codes_debug_names() {
        // Success is labelled "OK", as before this function existed; errors by their names.
        assert_eq!(code_label(tonic::Code::Ok), "OK");
        for n in 1..=16 {
            let code = tonic::Code::from_i32(n);
            assert_eq!(code_label(code), format!("{code:?}"));
        }
    }
}
