//! Caller authentication and per-caller concurrency, as a tower layer in front of every gRPC
//! service.
//!
//! Minting tokens is the crown jewel: every RPC but `GetJWKS` (and the health and reflection
//! services) needs an authenticated caller. A caller is authenticated by a verified mutual-TLS
//! client certificate, or by `authorization: Bearer <token>` whose SHA-256 digest is one of the
//! configured digests. Digests are compared in constant time, against every configured digest
//! (no early exit). Each caller may have at most `max_concurrent` requests in flight; beyond
//! that the request is refused with `RESOURCE_EXHAUSTED` rather than queued.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tonic::Status;

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

/// Who the caller is, for the concurrency limit and for logs (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallerId {
    /// The index of the matching configured token digest.
    Token(usize),
    /// The SHA-256 of the verified client certificate.
    Certificate([u8; 32]),
}

impl std::fmt::Display for CallerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallerId::Token(i) => write!(f, "token#{i}"),
            CallerId::Certificate(d) => {
                write!(f, "cert:")?;
                d.iter().take(8).try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// The authentication policy shared by every connection.
#[derive(Debug)]
pub struct CallerAuth {
    digests: Vec<[u8; 32]>,
    max_concurrent: usize,
    limits: Mutex<HashMap<CallerId, Arc<Semaphore>>>,
}

impl CallerAuth {
    /// Accepts tokens with these SHA-256 digests (and any verified client certificate).
    pub fn new(digests: Vec<[u8; 32]>, max_concurrent: usize) -> Self {
        CallerAuth {
            digests,
            max_concurrent,
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// The SHA-256 digest of a caller token, as configured in `CALLER_TOKEN_SHA256`.
    pub fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Identifies the caller of a request.
    fn authenticate<B>(&self, req: &http::Request<B>) -> Option<CallerId> {
        if let Some(cert) = peer_certificate_digest(req) {
            return Some(CallerId::Certificate(cert));
        }
        let value = req
            .headers()
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let presented = CallerAuth::digest(token.trim());
        let mut found = None;
        for (i, d) in self.digests.iter().enumerate() {
            // Every digest is compared, whatever matched before.
            if bool::from(d.ct_eq(&presented)) {
                found = Some(i);
            }
        }
        found.map(CallerId::Token)
    }

    fn semaphore(&self, caller: &CallerId) -> Arc<Semaphore> {
        let mut map = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(caller.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_concurrent)))
            .clone()
    }
}

fn peer_certificate_digest<B>(req: &http::Request<B>) -> Option<[u8; 32]> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let first = certs.first()?;
    Some(Sha256::digest(first.as_ref()).into())
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
        let Some(caller) = self.auth.authenticate(&req) else {
            metrics::counter!(crate::metrics::CALLER_REJECTED, "reason" => "unauthenticated")
                .increment(1);
            let status = with_oauth_error(
                Status::unauthenticated("missing or invalid caller credentials"),
                "invalid_client",
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let Ok(permit) = self.auth.semaphore(&caller).try_acquire_owned() else {
            metrics::counter!(crate::metrics::CALLER_REJECTED, "reason" => "concurrency")
                .increment(1);
            let status = Status::resource_exhausted("too many requests in flight for this caller");
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let mut req = req;
        req.extensions_mut().insert(caller);
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(permit);
            response.map(oversize_is_resource_exhausted)
        })
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

    #[test]
    fn bearer_tokens_are_matched_by_digest() {
        let auth = CallerAuth::new(
            vec![CallerAuth::digest("one"), CallerAuth::digest("two")],
            4,
        );
        assert_eq!(
            auth.authenticate(&request(Some("Bearer two"), "/x")),
            Some(CallerId::Token(1))
        );
        assert_eq!(
            auth.authenticate(&request(Some("bearer one"), "/x")),
            Some(CallerId::Token(0))
        );
        assert_eq!(
            auth.authenticate(&request(Some("Bearer three"), "/x")),
            None
        );
        assert_eq!(
            auth.authenticate(&request(Some("Basic b25lOg=="), "/x")),
            None
        );
        assert_eq!(auth.authenticate(&request(Some("Bearer"), "/x")), None);
        assert_eq!(auth.authenticate(&request(None, "/x")), None);
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
