//! [`Guard`]: the configuration and the per-request check that the layer, the extractor and
//! other frameworks share.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use token_dpop::token_jwt::{CryptoProvider, KeyResolver, Policy, RustCryptoProvider};
use token_dpop::{
    Algorithm, Authorized, MemoryReplayCache, NonceIssuer, ReplayCache, RequestVerifier,
    ResourceRequest, Scheme, Validator, ValidatorConfig,
};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::metadata::ProtectedResourceMetadata;
use crate::origin::{Origin, ProxyHeaders};
use crate::rejection::{Extra, Rejection};
use crate::revocation::RevocationCheck;

/// Tells guards apart, so a layer trusts only claims its own guard verified.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A resource server's guard: verifies a request's access token (DPoP-bound or Bearer) and
/// DPoP proof with token-dpop's [`RequestVerifier`], resolving keys from the issuer's JWK Set,
/// against the URI clients use, and refuses tokens of revoked grants. Cheap to clone (one
/// `Arc`); build one per resource server with [`Guard::builder`].
///
/// - [`Guard::layer`]: the tower layer (axum, tonic, hyper), with per-route scopes through
///   [`GuardLayer::require_scope`];
/// - [`Guard::verify`]: the same check on `http::request::Parts`, for other frameworks;
/// - [`Guard::metadata`]: the RFC 9728 protected-resource metadata.
#[derive(Clone)]
pub struct Guard {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) issuer: String,
    policy: Policy,
    keys: Arc<dyn KeyResolver>,
    validator: Arc<Validator>,
    accept_bearer: bool,
    realm: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// The verifier with the guard's own scopes.
    verifier: RequestVerifier,
    pub(crate) origin: Origin,
    clock: Arc<dyn Clock>,
    revocations: Option<Arc<dyn RevocationCheck>>,
    pub(crate) extra: Arc<Extra>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Guard")
            .field("issuer", &i.issuer)
            .field("audiences", &i.policy.audiences)
            .field("external_url", &i.origin)
            .field("scopes", &i.scopes)
            .field("accept_bearer", &i.accept_bearer)
            .field("keys", &i.keys)
            .field("validator", &i.validator)
            .field("revocations", &i.revocations)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A builder for a guard accepting access tokens issued by `issuer` (`iss`) for
    /// `audience` (one of `aud`).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> GuardBuilder {
        GuardBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: None,
            #[cfg(feature = "jwks")]
            jwks: None,
            external_url: None,
            proxy: None,
            scopes: Vec::new(),
            accept_bearer: true,
            realm: None,
            nonce: None,
            replay: None,
            provider: None,
            dpop_algs: None,
            proof_max_age: None,
            leeway: None,
            clock: Arc::new(SystemClock),
            revocations: None,
            advertise_metadata: false,
        }
    }

    /// Verifies a request's head as the layer does: every check of token-dpop's
    /// [`RequestVerifier`] against the URI the client used, at the guard's clock, then the
    /// revocation list. Use it to guard requests in a framework that is not tower-based.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    pub async fn verify(&self, parts: &http::request::Parts) -> Result<Authorized, Rejection> {
        self.check(&self.inner.verifier, parts).await
    }

    /// The RFC 9728 protected-resource metadata of this guard, to adjust and serve.
    pub fn metadata(&self) -> ProtectedResourceMetadata {
        let i = &self.inner;
        ProtectedResourceMetadata::new(
            &i.origin,
            &i.issuer,
            &i.scopes,
            &i.validator.config().allowed_algs,
            !i.accept_bearer,
        )
    }

    /// The external base URL (without a trailing `/`).
    pub fn external_url(&self) -> String {
        self.inner.origin.base()
    }

    /// The access-token verifier with the guard's own scopes.
    pub fn verifier(&self) -> &RequestVerifier {
        &self.inner.verifier
    }

    /// A fresh server nonce when the guard requires nonces, for a `DPoP-Nonce` header.
    pub fn fresh_nonce(&self) -> Option<String> {
        self.inner.validator.fresh_nonce(self.inner.clock.now())
    }

    /// A verifier with the guard's scopes and `more`, sharing its keys, proof validator and
    /// replay cache.
    pub(crate) fn verifier_with(&self, more: &[String]) -> RequestVerifier {
        let i = &self.inner;
        let mut builder = RequestVerifier::builder(
            i.policy.clone(),
            Arc::clone(&i.keys),
            Arc::clone(&i.validator),
        )
        .accept_bearer(i.accept_bearer);
        if let Some(realm) = &i.realm {
            builder = builder.realm(realm);
        }
        for scope in i.scopes.iter().chain(more) {
            builder = builder.require_scope(scope);
        }
        builder.build()
    }

    pub(crate) fn reject(&self, rejection: token_dpop::Rejection) -> Rejection {
        Rejection::request(rejection, Arc::clone(&self.inner.extra))
    }

    /// The check of [`Guard::verify`] with `verifier` (the guard's, or a layer's with more
    /// scopes).
    pub(crate) async fn check(
        &self,
        verifier: &RequestVerifier,
        parts: &http::request::Parts,
    ) -> Result<Authorized, Rejection> {
        let i = &self.inner;
        // Failing closed costs nothing more than this check: no crypto for a request that
        // would be refused anyway.
        if let Some(revocations) = &i.revocations
            && !revocations.available()
        {
            return Err(Rejection::revocations_unavailable(Arc::clone(&i.extra)));
        }
        let now = i.clock.now();
        let uri = i.origin.request_uri(&parts.headers, request_path(parts));
        let request = ResourceRequest::from_headers(&parts.headers, &parts.method, &uri);
        let authorized = verifier
            .verify(&request, now)
            .await
            .map_err(|r| self.reject(r))?;
        if let Some(revocations) = &i.revocations
            && let Some(sid) = authorized.claims.sid.as_deref()
            && revocations.is_revoked(sid, now)
        {
            // A rejection without an error code renders the plain challenges (realm, algs);
            // the revocation's error goes on the scheme the token came with.
            let base = verifier.reject(token_dpop::Error::MissingAuthorization, None);
            return Err(Rejection::revoked(
                base,
                authorized.scheme,
                Arc::clone(&i.extra),
            ));
        }
        Ok(authorized)
    }

    /// A DPoP-Nonce for a successful response to a DPoP request, when nonces are required (RFC
    /// 9449 section 8.2: the client uses it for its next proof before the one it has goes
    /// stale).
    pub(crate) fn success_nonce(&self, scheme: Scheme) -> Option<http::HeaderValue> {
        if scheme != Scheme::Dpop {
            return None;
        }
        let nonce = self.fresh_nonce()?;
        http::HeaderValue::try_from(nonce).ok()
    }
}

/// The path of the request as the client sent it: axum's `OriginalUri` when a nested router
/// stripped a prefix from the URI, the URI's path otherwise.
fn request_path(parts: &http::request::Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    parts.uri.path()
}

/// Builds a [`Guard`]. Required besides issuer and audience: a source of keys
/// ([`jwks_url`](GuardBuilder::jwks_url) or [`keys`](GuardBuilder::keys)) and the
/// [`external_url`](GuardBuilder::external_url).
#[must_use]
pub struct GuardBuilder {
    issuer: String,
    audience: String,
    keys: Option<Arc<dyn KeyResolver>>,
    #[cfg(feature = "jwks")]
    jwks: Option<(String, token_jwks::FetcherConfig)>,
    external_url: Option<String>,
    proxy: Option<(ProxyHeaders, usize)>,
    scopes: Vec<String>,
    accept_bearer: bool,
    realm: Option<String>,
    nonce: Option<Arc<NonceIssuer>>,
    replay: Option<Arc<dyn ReplayCache>>,
    provider: Option<Arc<dyn CryptoProvider>>,
    dpop_algs: Option<Vec<Algorithm>>,
    proof_max_age: Option<u64>,
    leeway: Option<u64>,
    clock: Arc<dyn Clock>,
    revocations: Option<Arc<dyn RevocationCheck>>,
    advertise_metadata: bool,
}

impl fmt::Debug for GuardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("external_url", &self.external_url)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl GuardBuilder {
    /// Keys from the issuer's JWK Set at `url`, through token-jwks's [`JwksFetcher`] with its
    /// default cache settings: cached by `max-age` (60 s to 24 h, 5 min without), refetched on
    /// an unknown `kid` at most every 30 s, the last good keys served for an hour while the
    /// issuer is unreachable. Fetching needs a tokio runtime.
    ///
    /// [`JwksFetcher`]: token_jwks::JwksFetcher
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn jwks_url(self, url: impl Into<String>) -> Self {
        self.jwks_url_with(url, token_jwks::FetcherConfig::default())
    }

    /// [`GuardBuilder::jwks_url`] with other cache settings.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn jwks_url_with(
        mut self,
        url: impl Into<String>,
        config: token_jwks::FetcherConfig,
    ) -> Self {
        self.jwks = Some((url.into(), config));
        self
    }

    /// Keys from any [`KeyResolver`] (a fixed `KeySet`, a fetcher you built); replaces
    /// [`GuardBuilder::jwks_url`].
    pub fn keys(mut self, keys: Arc<dyn KeyResolver>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The scheme, host and path prefix clients reach this server at, such as
    /// `https://api.example` (no query or fragment): a proof's `htu` must be this followed by
    /// the request's path. Behind a proxy that strips a prefix, include it
    /// (`https://example.com/api`).
    pub fn external_url(mut self, url: impl Into<String>) -> Self {
        self.external_url = Some(url.into());
        self
    }

    /// Takes the scheme and host clients used from proxy headers instead of the external URL
    /// (its path prefix stays): `which` names the headers your proxy writes, `hops` how many
    /// trusted proxies stand in front of the server (the value used is the `hops`-th from the
    /// right, the one the outermost trusted proxy wrote; values to its left come from the
    /// client). A missing or malformed value falls back to the external URL's. Off by default:
    /// enable it only behind a proxy that writes these headers.
    pub fn trust_proxy_headers(mut self, which: ProxyHeaders, hops: usize) -> Self {
        self.proxy = Some((which, hops));
        self
    }

    /// Requires this scope on every route (call again, or pass several separated by spaces,
    /// for several: all of them); routes can add their own with
    /// [`GuardLayer::require_scope`].
    pub fn require_scope(mut self, scope: impl AsRef<str>) -> Self {
        let scopes = scope.as_ref().split(' ').filter(|s| !s.is_empty());
        self.scopes.extend(scopes.map(str::to_owned));
        self
    }

    /// Whether unbound tokens under `Bearer` are accepted (default: yes). With `false`, only
    /// DPoP-bound tokens pass, challenges name only `DPoP`, and the metadata says
    /// `dpop_bound_access_tokens_required: true`. A key-bound token presented as `Bearer` is
    /// refused either way.
    pub fn accept_bearer(mut self, accept: bool) -> Self {
        self.accept_bearer = accept;
        self
    }

    /// The `realm` every challenge names.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Requires a server nonce in every proof (RFC 9449 section 9): a proof without a valid one
    /// gets 401 `use_dpop_nonce` with a fresh nonce in `DPoP-Nonce`, and successful responses
    /// to DPoP requests carry the next one. Instances sharing the issuer's key accept each
    /// other's nonces.
    pub fn require_nonce(mut self, issuer: Arc<NonceIssuer>) -> Self {
        self.nonce = Some(issuer);
        self
    }

    /// The replay cache proofs are recorded in (default: a [`MemoryReplayCache`] of one
    /// million entries). Several instances of one resource server should share one, such as
    /// token-store-redis's (feature `redis`: `redis::replay_cache`).
    pub fn replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.replay = Some(cache);
        self
    }

    /// The crypto provider that checks signatures and keys (default: token-jwt's pure-Rust
    /// `RustCryptoProvider`; with the `aws-lc-rs` feature, pass `AwsLcProvider` for ECDSA
    /// about four times faster).
    pub fn crypto_provider(mut self, provider: Arc<dyn CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The algorithms accepted for DPoP proofs, named in the challenges' `algs` and the
    /// metadata (default: ES256, ES384, EdDSA, RS256, PS256).
    pub fn dpop_algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.dpop_algs = Some(algs.into_iter().collect());
        self
    }

    /// How old a proof's `iat` may be, in seconds (default 60).
    pub fn proof_max_age(mut self, seconds: u64) -> Self {
        self.proof_max_age = Some(seconds);
        self
    }

    /// Clock skew tolerated on the token's times and the proof's `iat`, in seconds (defaults:
    /// 30 for tokens, 5 for proofs).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = Some(seconds);
        self
    }

    /// The clock (default: the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refuses tokens whose `sid` this check lists: a [`RevokedSids`](crate::RevokedSids), or
    /// a `RevocationWatcher` (feature `watch`) that keeps one filled from token-service.
    pub fn revocations(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocations = Some(check);
        self
    }

    /// Adds RFC 9728's `resource_metadata` parameter, the URL of the protected-resource
    /// metadata, to every challenge. Serve the metadata (see [`Guard::metadata`]) when you
    /// turn this on.
    pub fn advertise_metadata(mut self, on: bool) -> Self {
        self.advertise_metadata = on;
        self
    }

    /// The guard.
    ///
    /// # Errors
    /// [`Error::MissingKeys`], [`Error::MissingExternalUrl`], [`Error::InvalidExternalUrl`],
    /// and the JWKS fetcher's [`Error::Jwks`] (an invalid URL, no trusted root certificates).
    pub fn build(mut self) -> Result<Guard> {
        let provider: Arc<dyn CryptoProvider> = self
            .provider
            .take()
            .unwrap_or_else(|| Arc::new(RustCryptoProvider::new()));
        let keys = match self.keys.take() {
            Some(keys) => keys,
            None => self.jwks_fetcher(&provider)?,
        };
        let mut origin = Origin::parse(
            self.external_url
                .as_deref()
                .ok_or(Error::MissingExternalUrl)?,
        )?;
        if let Some((which, hops)) = self.proxy {
            origin = origin.trust(which, hops);
        }

        let mut policy = Policy::builder()
            .issuer(&self.issuer)
            .audience(&self.audience);
        if let Some(leeway) = self.leeway {
            policy = policy.leeway(leeway);
        }
        let mut config = ValidatorConfig::builder(Arc::clone(&provider));
        if let Some(algs) = self.dpop_algs {
            config = config.allowed_algs(algs);
        }
        if let Some(max_age) = self.proof_max_age {
            config = config.max_age(max_age);
        }
        if let Some(leeway) = self.leeway {
            config = config.leeway(leeway);
        }
        if let Some(issuer) = self.nonce {
            config = config.require_nonce(issuer);
        }
        let replay = self
            .replay
            .unwrap_or_else(|| Arc::new(MemoryReplayCache::new()));
        let validator = Arc::new(Validator::new(config.build(), replay));

        let extra = Extra {
            resource_metadata: self
                .advertise_metadata
                .then(|| crate::metadata::well_known_url(&origin)),
        };
        let mut verifier =
            RequestVerifier::builder(policy.build(), Arc::clone(&keys), Arc::clone(&validator))
                .accept_bearer(self.accept_bearer);
        if let Some(realm) = &self.realm {
            verifier = verifier.realm(realm);
        }
        for scope in &self.scopes {
            verifier = verifier.require_scope(scope);
        }
        let verifier = verifier.build();
        Ok(Guard {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                issuer: self.issuer,
                policy: verifier.policy().clone(),
                keys,
                validator,
                accept_bearer: self.accept_bearer,
                realm: self.realm,
                scopes: self.scopes,
                verifier,
                origin,
                clock: self.clock,
                revocations: self.revocations,
                extra: Arc::new(extra),
            }),
        })
    }

    #[cfg(feature = "jwks")]
    fn jwks_fetcher(&self, provider: &Arc<dyn CryptoProvider>) -> Result<Arc<dyn KeyResolver>> {
        let (url, config) = self.jwks.as_ref().ok_or(Error::MissingKeys)?;
        let source = token_jwks::HttpSource::new(url).map_err(Error::Jwks)?;
        Ok(Arc::new(token_jwks::JwksFetcher::new(
            Arc::new(source),
            Arc::clone(provider),
            Arc::new(token_jwks::SystemClock::new()),
            *config,
        )))
    }

    #[cfg(not(feature = "jwks"))]
    fn jwks_fetcher(&self, _: &Arc<dyn CryptoProvider>) -> Result<Arc<dyn KeyResolver>> {
        Err(Error::MissingKeys)
    }
}
