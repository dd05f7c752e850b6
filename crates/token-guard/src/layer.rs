//! The tower [`Layer`]: [`GuardLayer`] and its service [`GuardService`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use token_dpop::{Authorized, RequestVerifier};
use tower_layer::Layer;
use tower_service::Service;

use crate::guard::Guard;
use crate::rejection::Rejection;

impl Guard {
    /// The tower layer: requests that pass get the verified [`Authorized`] claims in their
    /// extensions; the others are answered with the [`Rejection`] (401 and its challenges, 400,
    /// 403, 500, or 503 while revocations are unavailable and the guard fails closed) without
    /// calling the inner service.
    pub fn layer(&self) -> GuardLayer {
        GuardLayer::new(self.clone())
    }
}

/// Marks a request whose [`Authorized`] extension this guard inserted, so an inner layer of
/// the same guard (a route's extra scopes) trusts it, and the extractor finds the guard.
#[derive(Clone)]
pub(crate) struct Stamp(pub(crate) Guard);

/// The guard as a tower [`Layer`]. Made by [`Guard::layer`]; add route-specific scopes with
/// [`GuardLayer::require_scope`].
///
/// Layers of one guard nest: under a layer that already verified the request, an inner layer
/// checks only its additional scopes (verifying again would spend the DPoP proof twice, and
/// the second time it would be a replay). So a router-wide layer and a stricter one on a few
/// routes work together:
///
/// ```
/// # #[cfg(feature = "axum")]
/// # fn app(guard: token_guard::Guard) -> axum::Router {
/// use axum::routing::{get, post};
///
/// # async fn list() {}
/// # async fn create() {}
/// axum::Router::new()
///     .route("/items", get(list))
///     .route("/items/new", post(create).route_layer(guard.layer().require_scope("items:write")))
///     .route_layer(guard.layer())
/// # }
/// ```
#[derive(Clone)]
pub struct GuardLayer {
    guard: Guard,
    /// The scopes this layer requires beyond the guard's.
    more: Arc<[String]>,
    /// The verifier with the guard's scopes and `more` (its challenges name them).
    verifier: RequestVerifier,
}

impl fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardLayer")
            .field("guard", &self.guard)
            .field("more_scopes", &self.more)
            .finish_non_exhaustive()
    }
}

impl GuardLayer {
    pub(crate) fn new(guard: Guard) -> Self {
        let verifier = guard.verifier().clone();
        GuardLayer {
            guard,
            more: Arc::from([]),
            verifier,
        }
    }

    /// Requires this scope too on the routes of this layer (several separated by spaces, or
    /// call again: all of them). A token without it gets 403 `insufficient_scope`, the
    /// challenge naming every scope this layer requires.
    #[must_use]
    pub fn require_scope(self, scope: impl AsRef<str>) -> Self {
        let mut more = self.more.to_vec();
        more.extend(
            scope
                .as_ref()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        let verifier = self.guard.verifier_with(&more);
        GuardLayer {
            guard: self.guard,
            more: more.into(),
            verifier,
        }
    }

    /// The guard.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of a [`GuardLayer`]: calls the inner service with requests that pass, the
/// verified [`Authorized`] claims in their extensions, and answers the others with the
/// [`Rejection`] itself.
///
/// For tonic, a refusal is an HTTP status without a gRPC status: clients map 401 to
/// `UNAUTHENTICATED`, 403 to `PERMISSION_DENIED`, 503 to `UNAVAILABLE`.
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    layer: GuardLayer,
}

impl<S: fmt::Debug> fmt::Debug for GuardService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The future of [`GuardService`].
pub type GuardFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GuardService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = GuardFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one to call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let scheme = match layer.check(&mut parts).await {
                Ok(scheme) => scheme,
                Err(rejection) => return Ok(rejection.to_response()),
            };
            let mut response = inner.call(http::Request::from_parts(parts, body)).await?;
            if let Some(scheme) = scheme
                && let Some(nonce) = layer.guard.success_nonce(scheme)
            {
                response.headers_mut().insert(crate::DPOP_NONCE, nonce);
            }
            Ok(response)
        })
    }
}

impl GuardLayer {
    /// Verifies the request (or, when an outer layer of this guard did, checks this layer's
    /// scopes) and stamps it. `Some(scheme)` when this layer verified it (and so answers with
    /// the next nonce), `None` when an outer layer did.
    async fn check(
        &self,
        parts: &mut http::request::Parts,
    ) -> Result<Option<token_dpop::Scheme>, Rejection> {
        let verified_outside = parts
            .extensions
            .get::<Stamp>()
            .is_some_and(|stamp| stamp.0.inner.id == self.guard.inner.id);
        if verified_outside && let Some(authorized) = parts.extensions.get::<Authorized>() {
            let claims = &authorized.claims;
            let granted = |required: &String| claims.scopes().any(|scope| scope == required);
            if self.more.iter().all(granted) {
                return Ok(None);
            }
            let refusal = self.verifier.reject(
                token_dpop::Error::InsufficientScope,
                Some(authorized.scheme),
            );
            return Err(self.guard.reject(refusal));
        }
        let authorized = self.guard.check(&self.verifier, parts).await?;
        let scheme = authorized.scheme;
        parts.extensions.insert(authorized);
        parts.extensions.insert(Stamp(self.guard.clone()));
        Ok(Some(scheme))
    }
}
