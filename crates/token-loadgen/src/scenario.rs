//! The load scenarios and one virtual client's state: what each request sends, and what a
//! correct answer looks like. The driver ([`crate::run`]) decides when requests are sent.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use token_dpop::ProofBuilder;
use token_jwt::{Algorithm, AwsLcProvider, KeySet, Policy, PrivateKey};
use token_proto::token_service_client::TokenServiceClient;
use token_proto::{
    DPoPProof, GenerateTokensRequest, IntrospectTokenRequest, RefreshTokensRequest, TokenResponse,
    ValidateDPoPRequest,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Error;

/// The `client_id` the load generator mints and refreshes as.
const CLIENT_ID: &str = "token-loadgen";
/// The audience of the load generator's tokens (every grant names one).
const AUDIENCE: &str = "https://api.loadgen.example";

/// What the virtual clients do, one request at a time each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The gRPC health `Check` RPC: a no-op, the framework's own ceiling.
    Health,
    /// The gRPC health `Check` of `token.v1.TokenService`: readiness, one store round trip
    /// (a read of a family that cannot exist) and nothing else. Less `health`, what one store
    /// round trip costs the server in a request.
    Ready,
    /// `GenerateTokens` with Bearer tokens.
    Generate,
    /// `GenerateTokens` with a fresh DPoP proof per request.
    GenerateDpop,
    /// `RefreshTokens`: each virtual client rotates its own family.
    Refresh,
    /// `RefreshTokens` of a DPoP-bound family, a fresh proof per request.
    RefreshDpop,
    /// `ValidateDPoP` of a fresh proof with its DPoP-bound access token (`ath`, `cnf.jkt`).
    ValidateDpop,
    /// `IntrospectToken` of an access token.
    Introspect,
    /// 1 `generate` : 10 `refresh` : 50 `validate-dpop`.
    Mixed,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 9] = [
        Scenario::Health,
        Scenario::Ready,
        Scenario::Generate,
        Scenario::GenerateDpop,
        Scenario::Refresh,
        Scenario::RefreshDpop,
        Scenario::ValidateDpop,
        Scenario::Introspect,
        Scenario::Mixed,
    ];

    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Ready => "ready",
            Scenario::Generate => "generate",
            Scenario::GenerateDpop => "generate-dpop",
            Scenario::Refresh => "refresh",
            Scenario::RefreshDpop => "refresh-dpop",
            Scenario::ValidateDpop => "validate-dpop",
            Scenario::Introspect => "introspect",
            Scenario::Mixed => "mixed",
        }
    }

    /// The request a virtual client sends as its `n`-th one.
    fn op(self, n: u64) -> Op {
        match self {
            Scenario::Health => Op::Health { service: "" },
            Scenario::Ready => Op::Health {
                service: token_proto::token_service_server::SERVICE_NAME,
            },
            Scenario::Generate => Op::Generate { dpop: false },
            Scenario::GenerateDpop => Op::Generate { dpop: true },
            Scenario::Refresh => Op::Refresh { dpop: false },
            Scenario::RefreshDpop => Op::Refresh { dpop: true },
            Scenario::ValidateDpop => Op::Validate,
            Scenario::Introspect => Op::Introspect,
            Scenario::Mixed => match n % 61 {
                0 => Op::Generate { dpop: false },
                1..=10 => Op::Refresh { dpop: false },
                _ => Op::Validate,
            },
        }
    }

    /// The state a virtual client needs before its first timed request.
    fn needs(self) -> (bool, bool) {
        // (a Bearer or DPoP refresh family, a DPoP-bound access token)
        match self {
            Scenario::Refresh | Scenario::RefreshDpop => (true, false),
            Scenario::ValidateDpop | Scenario::Introspect => (false, true),
            Scenario::Mixed => (true, true),
            _ => (false, false),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| Error::Usage(format!("unknown scenario `{s}`")))
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// A health `Check` of this service name.
    Health {
        service: &'static str,
    },
    Generate {
        dpop: bool,
    },
    Refresh {
        dpop: bool,
    },
    Validate,
    Introspect,
}

/// Why one request counts as an error: its gRPC status (and `oauth-error`), or a wrong answer.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        let oauth = s
            .metadata()
            .get("oauth-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if oauth.is_empty() {
            Failure(format!("{:?}", s.code()))
        } else {
            Failure(format!("{:?} ({oauth})", s.code()))
        }
    }
}

/// Checks every issued access token against the server's JWKS (the `--verify` option), and
/// that it carries the load generator's grant (its audience and client), refreshed ones too.
#[derive(Debug)]
pub(crate) struct Verifier {
    keys: KeySet,
    policy: Policy,
}

impl Verifier {
    pub(crate) async fn fetch(channel: Channel) -> Result<Self, Error> {
        let jwks = TokenServiceClient::new(channel)
            .get_jwks(token_proto::GetJwksRequest {})
            .await
            .map_err(|s| Error::Setup(format!("GetJWKS: {s}")))?
            .into_inner()
            .jwks_json;
        let set = token_jwt::JwkSet::from_json(jwks.as_bytes())
            .map_err(|e| Error::Setup(format!("JWKS: {e}")))?;
        let keys = KeySet::from_jwks(&set, &AwsLcProvider::new())
            .map_err(|e| Error::Setup(format!("JWKS keys: {e}")))?;
        Ok(Verifier {
            keys,
            policy: Policy::builder().audience(AUDIENCE).build(),
        })
    }

    fn check(&self, token: &str, jkt: Option<&str>) -> Result<(), Failure> {
        let verified = self
            .policy
            .verify(token, &self.keys, crate::unix_now())
            .map_err(|e| Failure(format!("access token does not verify: {e}")))?;
        let client = verified.claims().client_id.as_deref();
        if client != Some(CLIENT_ID) {
            return Err(Failure(format!(
                "access token client_id {client:?}, expected {CLIENT_ID:?}"
            )));
        }
        let bound = verified
            .claims()
            .cnf
            .as_ref()
            .and_then(|c| c.jkt.as_deref());
        if bound != jkt {
            return Err(Failure(format!(
                "access token cnf.jkt {bound:?}, expected {jkt:?}"
            )));
        }
        Ok(())
    }
}

/// What all virtual clients share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) scenario: Scenario,
    pub(crate) caller: Option<MetadataValue<Ascii>>,
    pub(crate) htu: String,
    pub(crate) verifier: Option<Verifier>,
    /// Start a new family after this long (a client signing in again before its grant ends).
    pub(crate) family_lifetime: Option<std::time::Duration>,
}

/// One virtual client: its own DPoP key, its own families, one request in flight at a time.
pub(crate) struct VirtualClient {
    id: usize,
    shared: Arc<Shared>,
    grpc: TokenServiceClient<Channel>,
    health: HealthClient<Channel>,
    proofs: ProofBuilder,
    nonce: Option<String>,
    refresh_token: Option<String>,
    access_token: Option<String>,
    /// When the access token is renewed: half-way through its lifetime, so long runs (soak)
    /// never present an expired one.
    renew_access_at: Option<std::time::Instant>,
    /// When the current refresh-token family was created.
    family_started: std::time::Instant,
    sent: u64,
}

impl fmt::Debug for VirtualClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are secrets, even in a load generator's debug output.
        f.debug_struct("VirtualClient")
            .field("id", &self.id)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl VirtualClient {
    /// A client on `channel`, with the state its scenario needs (created with untimed requests).
    pub(crate) async fn prepare(
        id: usize,
        shared: Arc<Shared>,
        channel: Channel,
    ) -> Result<Self, Error> {
        let key = PrivateKey::generate(Algorithm::ES256)
            .map_err(|e| Error::Setup(format!("DPoP key: {e}")))?;
        let proofs = ProofBuilder::new(&key, &AwsLcProvider::new())
            .map_err(|e| Error::Setup(format!("DPoP key: {e}")))?;
        let mut client = VirtualClient {
            id,
            grpc: TokenServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            proofs,
            nonce: None,
            refresh_token: None,
            access_token: None,
            renew_access_at: None,
            family_started: std::time::Instant::now(),
            sent: 0,
            shared,
        };
        client
            .bootstrap()
            .await
            .map_err(|f| Error::Setup(format!("virtual client {id}: {}", f.0)))?;
        Ok(client)
    }

    /// Sends this client's next request and checks the answer.
    pub(crate) async fn send(&mut self) -> Result<(), Failure> {
        let op = self.shared.scenario.op(self.sent);
        self.sent += 1;
        match op {
            Op::Health { service } => self.health(service).await,
            Op::Generate { dpop } => self.generate(dpop).await.map(drop),
            Op::Refresh { dpop } => self.refresh(dpop).await,
            Op::Validate => self.validate().await,
            Op::Introspect => self.introspect().await,
        }
    }

    /// Creates the families and tokens the scenario works on (again after an error lost them).
    async fn bootstrap(&mut self) -> Result<(), Failure> {
        let (family, access) = self.shared.scenario.needs();
        let dpop = self.shared.scenario == Scenario::RefreshDpop;
        let family_ended = self
            .shared
            .family_lifetime
            .is_some_and(|lifetime| self.family_started.elapsed() >= lifetime);
        if family && (self.refresh_token.is_none() || family_ended) {
            let tokens = self.generate(dpop).await?;
            self.refresh_token = Some(tokens.refresh_token);
            self.family_started = std::time::Instant::now();
        }
        let renew = self
            .renew_access_at
            .is_some_and(|at| std::time::Instant::now() >= at);
        if access && (self.access_token.is_none() || renew) {
            let tokens = self.generate(true).await?;
            let half_life = u64::try_from(tokens.expires_in / 2).unwrap_or(0);
            self.renew_access_at =
                Some(std::time::Instant::now() + std::time::Duration::from_secs(half_life));
            self.access_token = Some(tokens.access_token);
        }
        Ok(())
    }

    fn authed<T>(&self, msg: T) -> Request<T> {
        let mut request = Request::new(msg);
        if let Some(caller) = &self.shared.caller {
            request
                .metadata_mut()
                .insert("authorization", caller.clone());
        }
        request
    }

    fn proof(&self, access_token: Option<&str>) -> Result<String, Failure> {
        self.proofs
            .proof(
                "POST",
                &self.shared.htu,
                access_token,
                self.nonce.as_deref(),
                crate::unix_now(),
            )
            .map_err(|e| Failure(format!("building a proof: {e}")))
    }

    fn dpop(&self) -> Result<DPoPProof, Failure> {
        Ok(DPoPProof {
            proof: self.proof(None)?,
            http_method: "POST".into(),
            http_uri: self.shared.htu.clone(),
        })
    }

    /// Remembers the server's nonce from a `use_dpop_nonce` challenge; true when one came.
    fn take_nonce(&mut self, status: &Status) -> bool {
        let nonce = status
            .metadata()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok());
        match nonce {
            Some(n) if !n.is_empty() => {
                self.nonce = Some(n.to_owned());
                true
            }
            _ => false,
        }
    }

    async fn health(&mut self, service: &str) -> Result<(), Failure> {
        let status = self
            .health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner()
            .status;
        if status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err(Failure(format!("health status {status}")))
        }
    }

    async fn generate(&mut self, dpop: bool) -> Result<TokenResponse, Failure> {
        for attempt in 0..2 {
            let request = GenerateTokensRequest {
                subject: format!("load-{}", self.id),
                client_id: CLIENT_ID.into(),
                audience: vec![AUDIENCE.into()],
                scopes: vec!["read".into(), "write".into()],
                dpop: if dpop { Some(self.dpop()?) } else { None },
                ..Default::default()
            };
            match self.grpc.generate_tokens(self.authed(request)).await {
                Ok(r) => return self.check_tokens(r.into_inner(), dpop, None),
                Err(s) if attempt == 0 && dpop && self.take_nonce(&s) => {}
                Err(s) => return Err(s.into()),
            }
        }
        Err(Failure("nonce challenge twice in a row".into()))
    }

    async fn refresh(&mut self, dpop: bool) -> Result<(), Failure> {
        self.bootstrap().await?;
        let Some(token) = self.refresh_token.take() else {
            return Err(Failure("no refresh token".into()));
        };
        for attempt in 0..2 {
            let request = RefreshTokensRequest {
                refresh_token: token.clone(),
                dpop: if dpop { Some(self.dpop()?) } else { None },
                client_id: CLIENT_ID.into(),
                ..Default::default()
            };
            match self.grpc.refresh_tokens(self.authed(request)).await {
                Ok(r) => {
                    let tokens = self.check_tokens(r.into_inner(), dpop, Some(&token))?;
                    self.refresh_token = Some(tokens.refresh_token);
                    return Ok(());
                }
                // A nonce challenge is answered before the token is looked at: retry with it.
                Err(s) if attempt == 0 && dpop && self.take_nonce(&s) => {}
                // Otherwise the token may or may not have rotated: start a new family next time.
                Err(s) => return Err(s.into()),
            }
        }
        Err(Failure("nonce challenge twice in a row".into()))
    }

    async fn validate(&mut self) -> Result<(), Failure> {
        self.bootstrap().await?;
        let access_token = self.access_token.clone().unwrap_or_default();
        for _ in 0..2 {
            let request = ValidateDPoPRequest {
                proof: self.proof(Some(&access_token))?,
                http_method: "POST".into(),
                http_uri: self.shared.htu.clone(),
                access_token: access_token.clone(),
                expected_jkt: String::new(),
            };
            let answer = self
                .grpc
                .validate_d_po_p(self.authed(request))
                .await?
                .into_inner();
            if answer.valid {
                return Ok(());
            }
            if answer.error == token_dpop::USE_DPOP_NONCE && !answer.dpop_nonce.is_empty() {
                self.nonce = Some(answer.dpop_nonce);
                continue;
            }
            return Err(Failure(format!("proof refused: {}", answer.error)));
        }
        Err(Failure("nonce challenge twice in a row".into()))
    }

    async fn introspect(&mut self) -> Result<(), Failure> {
        self.bootstrap().await?;
        let request = IntrospectTokenRequest {
            token: self.access_token.clone().unwrap_or_default(),
        };
        let answer = self
            .grpc
            .introspect_token(self.authed(request))
            .await?
            .into_inner();
        if answer.active {
            Ok(())
        } else {
            Err(Failure("introspection: token inactive".into()))
        }
    }

    /// The response's shape, and with `--verify` its access token's signature and binding.
    fn check_tokens(
        &self,
        tokens: TokenResponse,
        dpop: bool,
        previous: Option<&str>,
    ) -> Result<TokenResponse, Failure> {
        let expected_type = if dpop { "DPoP" } else { "Bearer" };
        if tokens.token_type != expected_type {
            return Err(Failure(format!(
                "token_type {:?}, expected {expected_type}",
                tokens.token_type
            )));
        }
        if tokens.access_token.is_empty() || tokens.refresh_token.is_empty() {
            return Err(Failure("empty token in the response".into()));
        }
        if previous == Some(tokens.refresh_token.as_str()) {
            return Err(Failure(
                "rotation returned the presented refresh token".into(),
            ));
        }
        if let Some(verifier) = &self.shared.verifier {
            let jkt = dpop.then(|| self.proofs.jkt());
            verifier.check(&tokens.access_token, jkt.as_deref())?;
        }
        Ok(tokens)
    }
}
