//! Caller authentication, the `rpcs` right and per-caller concurrency, as a tower layer in
//! front of every gRPC service.
//!
//! Minting tokens is the crown jewel: every RPC but `GetJWKS` (and the health and reflection
//! services) needs an authenticated caller. A caller is authenticated by a verified mutual-TLS
//! client certificate (its SHA-256, or a URI/DNS subject alternative name, as the callers file
//! says; without a callers file any certificate `TLS_CLIENT_CA_FILE` verifies), or by
//! `authorization: Bearer <token>` whose SHA-256 digest is a configured one. Digests are
//! compared in constant time, against every configured digest (no early exit). The caller,
//! with its rights ([`crate::callers`]), goes into the request's extensions for the handlers;
//! an RPC its `rpcs` right does not name is refused here, `PERMISSION_DENIED`, before the
//! request is decoded. Each caller may have at most `max_concurrent` requests in flight;
//! beyond that the request is refused with `RESOURCE_EXHAUSTED` rather than queued.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tonic::Status;
use tracing::Instrument as _;

use crate::callers::{Caller, CallerSpec, Credential, Right, Rights, Rpc};
use crate::status::with_oauth_error;

/// The exact paths served without caller credentials: the public JWKS, liveness, and API
/// discovery. Exact matches, never prefixes, so no path that merely starts like one of them
/// (`/grpc.health.v1.Health/../token.v1.TokenService/…`) skips authentication, whatever a
/// proxy in front might normalise.
const PUBLIC_PATHS: [&str; 5] = [
    "/token.v1.TokenService/GetJWKS",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// How many client certificates' callers are remembered (a certificate is parsed for its
/// names once, not on every request); the memory is cleared when full.
const CERTIFICATE_CACHE: usize = 4096;

/// Why a request found no caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// No credential, or one that matches no caller.
    Unauthenticated,
    /// A verified client certificate that the callers file does not name.
    UnknownCertificate,
}

/// The authentication policy shared by every connection.
#[derive(Debug)]
pub struct CallerAuth {
    tokens: Vec<([u8; 32], Arc<Caller>)>,
    certificates: HashMap<[u8; 32], Arc<Caller>>,
    sans: HashMap<String, Arc<Caller>>,
    /// Without a callers file, any certificate the TLS layer verified is a caller with every
    /// right; with one, a certificate must match an entry.
    any_certificate: bool,
    certificate_cache: Mutex<HashMap<[u8; 32], Option<Arc<Caller>>>>,
    max_concurrent: usize,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl CallerAuth {
    /// Accepts the bearer tokens with these SHA-256 digests as callers with every right
    /// (`CALLER_TOKEN_SHA256`), and any verified client certificate likewise.
    pub fn new(digests: Vec<[u8; 32]>, max_concurrent: usize) -> Self {
        CallerAuth::with_callers(digests, None, max_concurrent)
    }

    /// As [`CallerAuth::new`], plus the callers of a callers file. With `callers`, a client
    /// certificate is accepted only when an entry names it (by digest or SAN).
    pub fn with_callers(
        digests: Vec<[u8; 32]>,
        callers: Option<Vec<CallerSpec>>,
        max_concurrent: usize,
    ) -> Self {
        let mut auth = CallerAuth {
            tokens: digests
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    let caller = Caller {
                        name: format!("token#{i}"),
                        rights: Rights::all(),
                    };
                    (d, Arc::new(caller))
                })
                .collect(),
            certificates: HashMap::new(),
            sans: HashMap::new(),
            any_certificate: callers.is_none(),
            certificate_cache: Mutex::new(HashMap::new()),
            max_concurrent,
            limits: Mutex::new(HashMap::new()),
        };
        for spec in callers.into_iter().flatten() {
            let caller = Arc::new(spec.caller);
            match spec.credential {
                Credential::TokenSha256(d) => auth.tokens.push((d, caller)),
                Credential::MtlsCertSha256(d) => {
                    auth.certificates.insert(d, caller);
                }
                Credential::MtlsSan(san) => {
                    auth.sans.insert(san, caller);
                }
            }
        }
        auth
    }

    /// The SHA-256 digest of a caller token, as configured in `CALLER_TOKEN_SHA256`.
    pub fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Identifies the caller of a request.
    fn authenticate<B>(&self, req: &http::Request<B>) -> Result<Arc<Caller>, Refusal> {
        if let Some(certs) = peer_certificates(req)
            && let Some(cert) = certs.first()
        {
            return self
                .certificate_caller(cert.as_ref())
                .ok_or(Refusal::UnknownCertificate);
        }
        let value = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::Unauthenticated)?;
        let (scheme, token) = value.split_once(' ').ok_or(Refusal::Unauthenticated)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Refusal::Unauthenticated);
        }
        let presented = CallerAuth::digest(token.trim());
        let mut found = None;
        for (d, caller) in &self.tokens {
            // Every digest is compared, whatever matched before.
            if bool::from(d.ct_eq(&presented)) {
                found = Some(caller);
            }
        }
        found.cloned().ok_or(Refusal::Unauthenticated)
    }

    /// The caller a verified client certificate (DER) stands for.
    fn certificate_caller(&self, der: &[u8]) -> Option<Arc<Caller>> {
        let digest: [u8; 32] = Sha256::digest(der).into();
        if self.any_certificate {
            let mut name = String::from("cert:");
            for b in digest.iter().take(8) {
                name.push_str(&format!("{b:02x}"));
            }
            return Some(Arc::new(Caller {
                name,
                rights: Rights::all(),
            }));
        }
        let mut cache = self
            .certificate_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = cache.get(&digest) {
            return known.clone();
        }
        let caller = self.certificates.get(&digest).cloned().or_else(|| {
            crate::callers::certificate_sans(der)
                .iter()
                .find_map(|san| self.sans.get(san).cloned())
        });
        if cache.len() >= CERTIFICATE_CACHE {
            cache.clear();
        }
        cache.insert(digest, caller.clone());
        caller
    }

    fn semaphore(&self, caller: &Caller) -> Arc<Semaphore> {
        let mut map = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = map.get(&caller.name) {
            return s.clone();
        }
        map.entry(caller.name.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_concurrent)))
            .clone()
    }
}

/// The `PERMISSION_DENIED` answer for a caller without `right`, counted by caller and right.
pub fn denied(caller: &Caller, right: &Right<'_>) -> Status {
    metrics::counter!(
        crate::metrics::CALLER_DENIED,
        "caller" => caller.name.clone(),
        "right" => right.key(),
    )
    .increment(1);
    tracing::warn!(caller = %caller.name, right = right.key(), "permission denied");
    Status::permission_denied(format!("caller {:?} lacks the right {right}", caller.name))
}

/// Checks that `caller` holds `right`: `PERMISSION_DENIED` naming it otherwise.
///
/// # Errors
/// [`denied`]'s status.
pub fn require(caller: &Caller, right: &Right<'_>) -> Result<(), Status> {
    if caller.holds(right) {
        Ok(())
    } else {
        Err(denied(caller, right))
    }
}

/// The verified client certificate chain of the request's connection, leaf first.
fn peer_certificates<B>(
    req: &http::Request<B>,
) -> Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()
}

fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path)
}

/// The tower layer.
#[derive(Clone, Debug)]
pub struct CallerAuthLayer {
    auth: Arc<CallerAuth>,
}

impl CallerAuthLayer {
    /// A layer enforcing `auth`.
    pub fn new(auth: Arc<CallerAuth>) -> Self {
        CallerAuthLayer { auth }
    }
}

impl<S> tower_layer::Layer<S> for CallerAuthLayer {
    type Service = CallerAuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallerAuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service the layer wraps around the gRPC router.
#[derive(Clone, Debug)]
pub struct CallerAuthService<S> {
    inner: S,
    auth: Arc<CallerAuth>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for CallerAuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The standard tower pattern: use the service that was polled ready, leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if is_public(req.uri().path()) {
            return Box::pin(
                async move { inner.call(req).await.map(oversize_is_resource_exhausted) },
            );
        }
        let caller = match self.auth.authenticate(&req) {
            Ok(caller) => caller,
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::Unauthenticated => "unauthenticated",
                    Refusal::UnknownCertificate => "unknown_certificate",
                };
                metrics::counter!(crate::metrics::CALLER_REJECTED, "reason" => reason).increment(1);
                let status = with_oauth_error(
                    Status::unauthenticated(match refusal {
                        Refusal::Unauthenticated => "missing or invalid caller credentials",
                        Refusal::UnknownCertificate => {
                            "the client certificate matches no caller of CALLERS_FILE"
                        }
                    }),
                    "invalid_client",
                );
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let rpc = Rpc::from_path(req.uri().path());
        if let Some(rpc) = rpc
            && let Err(status) = require(&caller, &Right::Rpc(rpc))
        {
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let Ok(permit) = self.auth.semaphore(&caller).try_acquire_owned() else {
            metrics::counter!(crate::metrics::CALLER_REJECTED, "reason" => "concurrency")
                .increment(1);
            let status = Status::resource_exhausted("too many requests in flight for this caller");
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        // The request's span names the caller (never its credential); the handlers' spans
        // are its children.
        let span = tracing::info_span!(
            "request",
            otel.kind = "server",
            caller = %caller.name,
            rpc = rpc.map_or("", Rpc::name),
        );
        // With trace export on, the span joins the caller's trace (W3C `traceparent` and
        // `tracestate`) and the sampler decides, here and once, whether the request's spans
        // are exported: an unsampled request's child spans are then never created.
        if crate::telemetry::exporting() {
            let parent = req.headers().contains_key("traceparent").then(|| {
                use opentelemetry::propagation::TextMapPropagator as _;
                opentelemetry_sdk::propagation::TraceContextPropagator::new()
                    .extract_with_context(&opentelemetry::Context::new(), &Headers(req.headers()))
            });
            crate::telemetry::head_sample(&span, parent);
        }
        let mut req = req;
        req.extensions_mut().insert(caller);
        Box::pin(
            async move {
                let response = inner.call(req).await;
                drop(permit);
                response.map(oversize_is_resource_exhausted)
            }
            .instrument(span),
        )
    }
}

/// A request's HTTP/2 headers (its gRPC metadata) as an OpenTelemetry carrier.
struct Headers<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// tonic answers a request message over `MAX_REQUEST_BYTES` with `OUT_OF_RANGE`; gRPC's
/// status-code table (and the Go, Java and C++ servers) say `RESOURCE_EXHAUSTED`, which is
/// what clients' retry and alerting rules expect. Its error is a trailers-only response, so
/// the status is in the headers.
fn oversize_is_resource_exhausted<R>(mut response: http::Response<R>) -> http::Response<R> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"11");
    let oversize = headers
        .get("grpc-message")
        .map(|message| message.as_bytes())
        .is_some_and(|message| {
            let text = String::from_utf8_lossy(message).replace("%20", " ");
            text.contains("message length too large")
        });
    if out_of_range && oversize {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static(RESOURCE_EXHAUSTED),
        );
    }
    response
}

/// `RESOURCE_EXHAUSTED`'s code on the wire.
const RESOURCE_EXHAUSTED: &str = "8";

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>, path: &str) -> http::Request<()> {
        let mut b = http::Request::builder().uri(path);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_tonics_oversize_answer_becomes_resource_exhausted() {
        let answer = |status: &str, message: &str| {
            let response = http::Response::builder()
                .header("grpc-status", status)
                .header("grpc-message", message)
                .body(())
                .unwrap();
            let response = oversize_is_resource_exhausted(response);
            response.headers()["grpc-status"]
                .to_str()
                .unwrap()
                .to_owned()
        };
        let oversize =
            "Error, decoded message length too large: found 70050 bytes, the limit is: 65536 bytes";
        assert_eq!(answer("11", oversize), "8");
        assert_eq!(answer("11", &oversize.replace(' ', "%20")), "8");
        // Any other OUT_OF_RANGE, and any other code, is left alone.
        assert_eq!(answer("11", "iat out of range"), "11");
        assert_eq!(answer("3", oversize), "3");
    }

    fn name(result: Result<Arc<Caller>, Refusal>) -> Result<String, Refusal> {
        result.map(|c| c.name.clone())
    }

    #[test]
    fn bearer_tokens_are_matched_by_digest() {
        let auth = CallerAuth::new(
            vec![CallerAuth::digest("one"), CallerAuth::digest("two")],
            4,
        );
        let who = |header: Option<&str>| name(auth.authenticate(&request(header, "/x")));
        assert_eq!(who(Some("Bearer two")), Ok("token#1".into()));
        assert_eq!(who(Some("bearer one")), Ok("token#0".into()));
        let refused = Err(Refusal::Unauthenticated);
        assert_eq!(who(Some("Bearer three")), refused);
        assert_eq!(who(Some("Basic b25lOg==")), refused);
        assert_eq!(who(Some("Bearer")), refused);
        assert_eq!(who(None), refused);
    }

    #[test]
    fn callers_file_tokens_carry_their_names_and_rights() {
        let text = format!(
            "[[caller]]\nname = \"web\"\ntoken_sha256 = \"{}\"\nrpcs = [\"RefreshTokens\"]\nclient_ids = [\"web\"]\n",
            CallerAuth::digest("web-token")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let specs = crate::callers::parse(&text).unwrap();
        let auth = CallerAuth::with_callers(vec![CallerAuth::digest("legacy")], Some(specs), 4);
        let web = auth
            .authenticate(&request(Some("Bearer web-token"), "/x"))
            .unwrap();
        assert_eq!(web.name, "web");
        assert!(web.holds(&Right::Rpc(Rpc::RefreshTokens)));
        assert!(!web.holds(&Right::Rpc(Rpc::GenerateTokens)));
        assert!(require(&web, &Right::ClientId("other")).is_err());
        let legacy = auth
            .authenticate(&request(Some("Bearer legacy"), "/x"))
            .unwrap();
        assert_eq!(legacy.rights, Rights::all());
    }

    #[test]
    fn without_a_callers_file_any_verified_certificate_has_every_right() {
        let open = CallerAuth::new(Vec::new(), 4);
        let caller = open.certificate_caller(b"any der").unwrap();
        assert!(caller.name.starts_with("cert:"));
        assert_eq!(caller.rights, Rights::all());
        let specs = crate::callers::parse(&format!(
            "[[caller]]\nname = \"a\"\nmtls_cert_sha256 = \"{}\"\n",
            "00".repeat(32)
        ))
        .unwrap();
        let closed = CallerAuth::with_callers(Vec::new(), Some(specs), 4);
        assert!(closed.certificate_caller(b"any der").is_none());
    }

    #[test]
    fn only_jwks_health_and_reflection_are_public() {
        assert!(is_public("/token.v1.TokenService/GetJWKS"));
        assert!(is_public("/grpc.health.v1.Health/Check"));
        assert!(!is_public("/token.v1.TokenService/GenerateTokens"));
        assert!(!is_public(
            "/token.v1.TokenService/GetJWKS/../GenerateTokens"
        ));
        assert!(!is_public(
            "/grpc.health.v1.Health/../token.v1.TokenService/GenerateTokens"
        ));
        assert!(!is_public("/grpc.health.v1.Health/Unknown"));
    }
}
