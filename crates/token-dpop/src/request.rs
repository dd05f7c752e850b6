//! One call for a protected resource (RFC 6750, RFC 9449 section 7): [`RequestVerifier`]
//! verifies a request's `Authorization` and `DPoP` header values, method and URI, and yields
//! the [`Authorized`] claims or a [`Rejection`] that renders the `WWW-Authenticate` challenge.
//!
//! Header values are taken as bytes, every one of them. A framework's "first value as text"
//! accessor, or a `filter_map` over values that decode, would hide a second `Authorization` or
//! `DPoP` header (or one that is not ASCII) and so defeat the exactly-one checks; bytes cannot
//! fail to convert, so nothing is dropped on the way in.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use token_jwt::{Claims, KeyResolver, Policy};

use crate::error::{
    Error, INSUFFICIENT_SCOPE, INVALID_DPOP_PROOF, INVALID_REQUEST, INVALID_TOKEN, USE_DPOP_NONCE,
};
use crate::validator::{Request, ValidatedProof, Validator};

/// Room for the scheme name and the spaces around the token in an `Authorization` value, on
/// top of the access-token size limit. The longest accepted scheme (`Bearer`) is 6 bytes; the
/// rest is generous slack for spaces.
const AUTHORIZATION_OVERHEAD: usize = 64;

/// The authentication scheme of an `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `Bearer` (RFC 6750): whoever holds the token may use it.
    Bearer,
    /// `DPoP` (RFC 9449 section 7.1): the token is bound to a key (`cnf.jkt`) and every
    /// request carries a fresh proof signed with that key.
    Dpop,
}

impl Scheme {
    /// The scheme's name as written in `Authorization` and `WWW-Authenticate` headers
    /// (`Bearer`, `DPoP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::Dpop => "DPoP",
        }
    }

    /// Scheme names are case-insensitive (RFC 9110 section 11.1).
    fn parse(name: &[u8]) -> Option<Self> {
        if name.eq_ignore_ascii_case(b"bearer") {
            Some(Scheme::Bearer)
        } else if name.eq_ignore_ascii_case(b"dpop") {
            Some(Scheme::Dpop)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values of one header field name: the first, and whether there is another. Counting
/// stops at two: that is all the exactly-one checks need, and it needs no allocation.
#[derive(Clone, Copy)]
struct Field<'a> {
    first: Option<&'a [u8]>,
    more: bool,
}

impl<'a> Field<'a> {
    fn new(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut values = values.into_iter();
        let first = values.next();
        let more = first.is_some() && values.next().is_some();
        Field { first, more }
    }

    fn count(&self) -> usize {
        usize::from(self.first.is_some()) + usize::from(self.more)
    }
}

/// A request to a protected resource as [`RequestVerifier`] needs it: every value of its
/// `Authorization` and `DPoP` header fields, as bytes, its method and its absolute URI.
///
/// `Debug` shows the method, the URI and how many header values there are, never the values
/// (they hold the access token).
#[derive(Clone)]
pub struct ResourceRequest<'a> {
    authorization: Field<'a>,
    dpop: Field<'a>,
    method: &'a str,
    uri: Cow<'a, str>,
}

impl fmt::Debug for ResourceRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceRequest")
            .field("authorization_values", &self.authorization.count())
            .field("dpop_values", &self.dpop.count())
            .field("method", &self.method)
            .field("uri", &self.uri)
            .finish()
    }
}

impl<'a> ResourceRequest<'a> {
    /// A request with these `Authorization` and `DPoP` header values: pass *every* value of
    /// each field, as the bytes received (a second value, decodable or not, is what the
    /// exactly-one checks refuse). `method` is the request method (`GET`), compared with the
    /// proof's `htm` as is; `uri` the absolute URI the client used (`https://host/path?query`,
    /// query and fragment ignored), compared with the proof's `htu`. Behind a proxy, pass the
    /// external URI, not the internal one.
    ///
    /// ```
    /// # use token_dpop::ResourceRequest;
    /// let authorization = "DPoP eyJ...";
    /// let dpop = "eyJ...";
    /// let request = ResourceRequest::new(
    ///     [authorization.as_bytes()],
    ///     [dpop.as_bytes()],
    ///     "GET",
    ///     "https://api.example/items",
    /// );
    /// assert_eq!(request.method(), "GET");
    /// ```
    pub fn new<A, D>(authorization: A, dpop: D, method: &'a str, uri: &'a str) -> Self
    where
        A: IntoIterator<Item = &'a [u8]>,
        D: IntoIterator<Item = &'a [u8]>,
    {
        ResourceRequest {
            authorization: Field::new(authorization),
            dpop: Field::new(dpop),
            method,
            uri: Cow::Borrowed(uri),
        }
    }

    /// The request's `Authorization` and `DPoP` values from its headers (all of them, through
    /// `get_all`, as bytes: a value that is not ASCII still counts), with its method and the
    /// absolute URI the client used.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn from_headers(
        headers: &'a http::HeaderMap,
        method: &'a http::Method,
        uri: &'a str,
    ) -> Self {
        ResourceRequest {
            authorization: Field::new(
                headers
                    .get_all(http::header::AUTHORIZATION)
                    .iter()
                    .map(http::HeaderValue::as_bytes),
            ),
            dpop: Field::new(
                headers
                    .get_all("dpop")
                    .iter()
                    .map(http::HeaderValue::as_bytes),
            ),
            method: method.as_str(),
            uri: Cow::Borrowed(uri),
        }
    }

    /// [`ResourceRequest::from_headers`] for a request's parts. A server sees the path, not
    /// the URI the client used, so `origin` supplies the rest: the scheme and authority (and a
    /// path prefix a proxy strips, if any) clients reach this server at, such as
    /// `https://api.example`. The URI is `origin` followed by the request's path; the
    /// request's own scheme and authority, if any, are not used (they come from the client).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn from_parts(parts: &'a http::request::Parts, origin: &str) -> Self {
        let mut request = ResourceRequest::from_headers(&parts.headers, &parts.method, "");
        let origin = origin.strip_suffix('/').unwrap_or(origin);
        request.uri = Cow::Owned(format!("{origin}{}", parts.uri.path()));
        request
    }

    /// The request method.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The absolute request URI the proof's `htu` is compared with.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

/// A request that passed every check: the verified access-token claims and how the token was
/// presented.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Authorized<C = Claims> {
    /// The verified access-token claims: token-jwt's [`Claims`], or the caller's own type with
    /// [`RequestVerifier::verify_as`].
    pub claims: C,
    /// The scheme the token was presented with.
    pub scheme: Scheme,
    /// For [`Scheme::Dpop`], the RFC 7638 thumbprint of the key the token is bound to
    /// (`cnf.jkt`), which the proof's key was checked to have; `None` for a Bearer token.
    pub jkt: Option<String>,
    /// For [`Scheme::Dpop`], the validated proof (already recorded in the replay cache).
    pub proof: Option<ValidatedProof>,
}

/// Verifies requests to a protected resource in one call: the `Authorization` header (exactly
/// one, `Bearer` or `DPoP`), the access token (token-jwt's [`Policy`] with keys from a
/// [`KeyResolver`]), its key binding, the `DPoP` proof (exactly one, through the
/// [`Validator`] and its replay cache), and the required scopes. Build one, share it.
///
/// The checks of RFC 9449 section 7, cheapest first:
///
/// 1. exactly one `Authorization` header, `scheme SP token68`, with an accepted scheme;
///    at most one `DPoP` header, whatever the scheme, and under `DPoP` exactly one;
/// 2. the access token, against the policy (signature, `typ`, issuer, audience, times);
/// 3. the binding: under `Bearer`, a token with a `cnf` claim is refused (a downgrade of a
///    key-bound token, section 7.2); under `DPoP`, the token must carry `cnf.jkt`;
/// 4. under `DPoP`, the proof (section 4.3): `htm`, `htu`, `ath` for this token, the key's
///    thumbprint equal to `cnf.jkt`, the nonce when required, then the replay cache;
/// 5. the required scopes.
///
/// A `Bearer` request's single `DPoP` header, if any, is not validated: the token is not bound
/// to a key.
#[derive(Clone, Debug)]
pub struct RequestVerifier {
    policy: Arc<Policy>,
    keys: Arc<dyn KeyResolver>,
    validator: Arc<Validator>,
    required_scopes: Arc<[String]>,
    challenge: Arc<Challenge>,
}

/// Builds a [`RequestVerifier`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RequestVerifierBuilder {
    policy: Policy,
    keys: Arc<dyn KeyResolver>,
    validator: Arc<Validator>,
    accept_bearer: bool,
    required_scopes: Vec<String>,
    realm: Option<String>,
}

impl RequestVerifierBuilder {
    /// Whether unbound tokens are accepted with the `Bearer` scheme (default: yes). With
    /// `false`, only DPoP-bound tokens under the `DPoP` scheme pass, and challenges name only
    /// `DPoP`.
    pub fn accept_bearer(mut self, accept: bool) -> Self {
        self.accept_bearer = accept;
        self
    }

    /// Requires this scope in the token's `scope` claim (call again, or pass several
    /// separated by spaces, to require several: all of them); a token without it is refused
    /// with `insufficient_scope` (403).
    pub fn require_scope(mut self, scope: impl AsRef<str>) -> Self {
        let scopes = scope.as_ref().split(' ').filter(|s| !s.is_empty());
        self.required_scopes.extend(scopes.map(str::to_owned));
        self
    }

    /// The `realm` every challenge names (RFC 6750 section 3). Visible ASCII: other
    /// characters are left out of the header.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The verifier.
    pub fn build(self) -> RequestVerifier {
        let algs = self
            .validator
            .config()
            .allowed_algs
            .iter()
            .map(|alg| alg.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let scope = (!self.required_scopes.is_empty()).then(|| self.required_scopes.join(" "));
        RequestVerifier {
            policy: Arc::new(self.policy),
            keys: self.keys,
            validator: self.validator,
            required_scopes: self.required_scopes.into(),
            challenge: Arc::new(Challenge {
                realm: self.realm,
                algs,
                bearer: self.accept_bearer,
                scope,
            }),
        }
    }
}

/// What a request presented, after the header checks.
struct Presented<'a> {
    scheme: Scheme,
    token: &'a str,
    /// The `DPoP` header value; `Some` exactly under [`Scheme::Dpop`].
    proof: Option<&'a str>,
}

impl RequestVerifier {
    /// A verifier checking access tokens against `policy` with the keys of `keys`, and DPoP
    /// proofs with `validator` (its allowed algorithms are the challenge's `algs`, its nonce
    /// policy applies). Accepts `Bearer` and `DPoP`, requires no scope, names no realm.
    pub fn new(policy: Policy, keys: Arc<dyn KeyResolver>, validator: Arc<Validator>) -> Self {
        RequestVerifier::builder(policy, keys, validator).build()
    }

    /// A builder with the defaults of [`RequestVerifier::new`].
    pub fn builder(
        policy: Policy,
        keys: Arc<dyn KeyResolver>,
        validator: Arc<Validator>,
    ) -> RequestVerifierBuilder {
        RequestVerifierBuilder {
            policy,
            keys,
            validator,
            accept_bearer: true,
            required_scopes: Vec::new(),
            realm: None,
        }
    }

    /// The access-token policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The proof validator.
    pub fn validator(&self) -> &Arc<Validator> {
        &self.validator
    }

    /// Verifies the request at time `now` (Unix seconds): every check of RFC 9449 section 7
    /// (see [`RequestVerifier`]), resolving keys with [`KeyResolver::resolve_async`] and
    /// recording the proof through the replay cache's async path. The future is `Send`.
    ///
    /// # Errors
    /// A [`Rejection`]: its [`Error`] names the failed check; it renders the status, the
    /// `WWW-Authenticate` challenges and the `DPoP-Nonce` to answer with.
    pub async fn verify(
        &self,
        request: &ResourceRequest<'_>,
        now: i64,
    ) -> Result<Authorized, Rejection> {
        let presented = self.present(request)?;
        let claims = self
            .policy
            .verify_async(presented.token, &*self.keys, now)
            .await
            .map_err(|e| self.reject(Error::InvalidAccessToken(e), Some(presented.scheme)))?
            .into_claims();
        let proof = match self.binding(&presented, &claims)? {
            None => None,
            Some((proof, jkt)) => {
                let binding = proof_request(request, presented.token, jkt);
                Some(
                    self.validator
                        .validate(&[proof], &binding, now)
                        .await
                        .map_err(|e| self.reject(e, Some(Scheme::Dpop)))?,
                )
            }
        };
        self.finish(presented.scheme, claims, proof)
    }

    /// [`RequestVerifier::verify`] for synchronous callers: keys through
    /// [`KeyResolver::resolve`], the proof through the replay cache's synchronous path
    /// ([`Validator::validate_sync`]; a networked cache has none and fails with
    /// [`Error::ReplayCacheNotSynchronous`], a 500).
    ///
    /// # Errors
    /// As [`RequestVerifier::verify`].
    pub fn verify_sync(
        &self,
        request: &ResourceRequest<'_>,
        now: i64,
    ) -> Result<Authorized, Rejection> {
        let presented = self.present(request)?;
        let claims = self
            .policy
            .verify(presented.token, &*self.keys, now)
            .map_err(|e| self.reject(Error::InvalidAccessToken(e), Some(presented.scheme)))?
            .into_claims();
        let proof = match self.binding(&presented, &claims)? {
            None => None,
            Some((proof, jkt)) => {
                let binding = proof_request(request, presented.token, jkt);
                Some(
                    self.validator
                        .validate_sync(&[proof], &binding, now)
                        .map_err(|e| self.reject(e, Some(Scheme::Dpop)))?,
                )
            }
        };
        self.finish(presented.scheme, claims, proof)
    }

    /// [`RequestVerifier::verify`], then the verified claims (registered and custom, as one
    /// JSON object) deserialized into the caller's type `C`.
    ///
    /// # Errors
    /// As [`RequestVerifier::verify`], and [`Error::UnexpectedClaims`] (`invalid_token`) when
    /// the claims do not deserialize into `C` (the proof, if any, is then already recorded).
    pub async fn verify_as<C: DeserializeOwned>(
        &self,
        request: &ResourceRequest<'_>,
        now: i64,
    ) -> Result<Authorized<C>, Rejection> {
        let authorized = self.verify(request, now).await?;
        self.typed(authorized)
    }

    /// [`RequestVerifier::verify_sync`] into the caller's claims type, as
    /// [`RequestVerifier::verify_as`].
    ///
    /// # Errors
    /// As [`RequestVerifier::verify_as`].
    pub fn verify_as_sync<C: DeserializeOwned>(
        &self,
        request: &ResourceRequest<'_>,
        now: i64,
    ) -> Result<Authorized<C>, Rejection> {
        let authorized = self.verify_sync(request, now)?;
        self.typed(authorized)
    }

    /// A rejection with this verifier's challenges, for a refusal the caller decides on (for
    /// example [`Error::MissingAuthorization`] to challenge a request before any token, or
    /// [`Error::InsufficientScope`] for a route-specific check). `scheme` is the scheme the
    /// request used, if known: a token error is reported on its challenge.
    pub fn reject(&self, error: Error, scheme: Option<Scheme>) -> Rejection {
        Rejection {
            error,
            scheme,
            challenge: Arc::clone(&self.challenge),
        }
    }

    /// The header checks: exactly one `Authorization` header with an accepted scheme and a
    /// token68 token; at most one `DPoP` header, exactly one under `DPoP`.
    fn present<'a>(&self, request: &ResourceRequest<'a>) -> Result<Presented<'a>, Rejection> {
        if request.authorization.more {
            return Err(self.reject(Error::MultipleAuthorizations, None));
        }
        let raw = request
            .authorization
            .first
            .ok_or_else(|| self.reject(Error::MissingAuthorization, None))?;
        let (scheme, token) = self.parse_authorization(raw)?;

        if request.dpop.more {
            return Err(self.reject(Error::MultipleProofs, Some(scheme)));
        }
        let proof = match scheme {
            Scheme::Bearer => None,
            Scheme::Dpop => {
                let raw = request
                    .dpop
                    .first
                    .ok_or_else(|| self.reject(Error::MissingProof, Some(scheme)))?;
                let limit = self.validator.config().max_proof_bytes;
                if raw.len() > limit {
                    return Err(self.reject(Error::ProofTooLarge { limit }, Some(scheme)));
                }
                let proof = std::str::from_utf8(trim_ows(raw)).map_err(|_| {
                    self.reject(
                        Error::Malformed(token_jwt::Error::Malformed("the proof is not ASCII")),
                        Some(scheme),
                    )
                })?;
                Some(proof)
            }
        };
        Ok(Presented {
            scheme,
            token,
            proof,
        })
    }

    /// `credentials = auth-scheme 1*SP token68` (RFC 9110 section 11.4), surrounding spaces
    /// and tabs allowed.
    fn parse_authorization<'a>(&self, raw: &'a [u8]) -> Result<(Scheme, &'a str), Rejection> {
        let limit = self.policy.max_token_bytes;
        if raw.len() > limit.saturating_add(AUTHORIZATION_OVERHEAD) {
            return Err(self.reject(Error::AccessTokenTooLarge { limit }, None));
        }
        let raw = trim_ows(raw);
        let (name, rest) = match raw.iter().position(|b| *b == b' ') {
            Some(i) => raw.split_at(i),
            None => (raw, &[][..]),
        };
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(self.reject(Error::MalformedAuthorization, None));
        }
        let scheme = match Scheme::parse(name) {
            Some(Scheme::Bearer) if !self.challenge.bearer => {
                return Err(self.reject(Error::UnsupportedScheme, Some(Scheme::Bearer)));
            }
            Some(scheme) => scheme,
            None => return Err(self.reject(Error::UnsupportedScheme, None)),
        };
        let token = trim_ows(rest);
        if token.len() > limit {
            return Err(self.reject(Error::AccessTokenTooLarge { limit }, Some(scheme)));
        }
        if !is_token68(token) {
            return Err(self.reject(Error::MalformedAuthorization, Some(scheme)));
        }
        let token = std::str::from_utf8(token)
            .map_err(|_| self.reject(Error::MalformedAuthorization, Some(scheme)))?;
        Ok((scheme, token))
    }

    /// The key binding (RFC 9449 sections 7.1, 7.2): `None` for a Bearer token (refused when it
    /// is bound to a key), the proof and `cnf.jkt` under `DPoP`.
    fn binding<'p, 'c>(
        &self,
        presented: &Presented<'p>,
        claims: &'c Claims,
    ) -> Result<Option<(&'p str, &'c str)>, Rejection> {
        match presented.scheme {
            // Any `cnf`, not only `jkt`: a token bound to a key in a way this verifier cannot
            // check is no bearer token either.
            Scheme::Bearer if claims.cnf.is_some() => {
                Err(self.reject(Error::BoundTokenAsBearer, Some(Scheme::Bearer)))
            }
            Scheme::Bearer => Ok(None),
            Scheme::Dpop => {
                let jkt = claims
                    .cnf
                    .as_ref()
                    .and_then(|cnf| cnf.jkt.as_deref())
                    .ok_or_else(|| self.reject(Error::TokenNotBound, Some(Scheme::Dpop)))?;
                let proof = presented
                    .proof
                    .ok_or_else(|| self.reject(Error::MissingProof, Some(Scheme::Dpop)))?;
                Ok(Some((proof, jkt)))
            }
        }
    }

    fn finish(
        &self,
        scheme: Scheme,
        claims: Claims,
        proof: Option<ValidatedProof>,
    ) -> Result<Authorized, Rejection> {
        let granted = |required: &String| claims.scopes().any(|scope| scope == required);
        if !self.required_scopes.iter().all(granted) {
            return Err(self.reject(Error::InsufficientScope, Some(scheme)));
        }
        Ok(Authorized {
            claims,
            scheme,
            jkt: proof.as_ref().map(|p| p.jkt.clone()),
            proof,
        })
    }

    /// The claims as one JSON object (token-jwt's serialization: registered claims, then the
    /// custom ones), deserialized into `C`. The serde error is dropped: its message can quote
    /// claim values.
    fn typed<C: DeserializeOwned>(&self, a: Authorized) -> Result<Authorized<C>, Rejection> {
        let scheme = a.scheme;
        let unexpected = || self.reject(Error::UnexpectedClaims, Some(scheme));
        let value = serde_json::to_value(&a.claims).map_err(|_| unexpected())?;
        let claims = serde_json::from_value(value).map_err(|_| unexpected())?;
        Ok(Authorized {
            claims,
            scheme: a.scheme,
            jkt: a.jkt,
            proof: a.proof,
        })
    }
}

/// What the proof must be bound to: this request, this token (`ath`), this key (`cnf.jkt`).
fn proof_request<'a>(
    request: &'a ResourceRequest<'_>,
    token: &'a str,
    jkt: &'a str,
) -> Request<'a> {
    Request::new(request.method, &request.uri)
        .with_access_token(token)
        .with_expected_jkt(jkt)
}

/// Without leading and trailing spaces and tabs (optional whitespace, RFC 9110 section 5.6.3).
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// `tchar` of RFC 9110 section 5.6.2: the characters of a scheme name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 9110
/// section 11.2), the form of an RFC 6750 `b64token` and of a compact JWS.
fn is_token68(bytes: &[u8]) -> bool {
    let mut body = bytes;
    while let [rest @ .., b'='] = body {
        body = rest;
    }
    !body.is_empty()
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
}

/// What every challenge of one verifier shares.
#[derive(Debug)]
struct Challenge {
    realm: Option<String>,
    /// The proof validator's allowed algorithms, space-separated.
    algs: String,
    /// Whether `Bearer` is accepted (and so challenged).
    bearer: bool,
    /// The required scopes, space-separated, for `insufficient_scope`.
    scope: Option<String>,
}

/// A refused request: the [`Error`] naming the failed check, and what to answer with — the
/// [status](Rejection::status), the [`WWW-Authenticate`
/// challenges](Rejection::www_authenticate) (RFC 6750 section 3, RFC 9449 section 7.1) and,
/// when a nonce is required, the [`DPoP-Nonce`](Rejection::dpop_nonce) header.
///
/// Nothing it renders comes from the request: codes and descriptions are fixed strings, and
/// `realm`, `algs` and `scope` come from the verifier's configuration.
#[derive(Debug)]
pub struct Rejection {
    error: Error,
    scheme: Option<Scheme>,
    challenge: Arc<Challenge>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Self {
        rejection.error
    }
}

impl Rejection {
    /// The failed check.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The failed check, by value.
    pub fn into_error(self) -> Error {
        self.error
    }

    /// The scheme the request used, when it got as far as naming an accepted one.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// The HTTP status to answer with: 500 for a server-side failure
    /// ([`Error::is_server_error`]: the replay cache, an unusable request URI), 400 for
    /// `invalid_request`, 403 for `insufficient_scope`, 401 otherwise.
    pub fn status(&self) -> u16 {
        if self.error.is_server_error() {
            return 500;
        }
        match self.oauth_error() {
            Some(INVALID_REQUEST) => 400,
            Some(INSUFFICIENT_SCOPE) => 403,
            _ => 401,
        }
    }

    /// The `error` code the challenge carries. `None` when the request has no usable
    /// credentials (no `Authorization` header, or a scheme not accepted: RFC 6750 section
    /// 3.1 asks for no error information then) and for server-side failures. A proof whose
    /// key is not the one the token is bound to is `invalid_token` here (the token is not
    /// this client's, as in the RFC 9449 section 7.1 example), not `invalid_dpop_proof`.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match &self.error {
            e if e.is_server_error() => None,
            Error::MissingAuthorization | Error::UnsupportedScheme => None,
            Error::JktMismatch => Some(INVALID_TOKEN),
            e => Some(e.oauth_error()),
        }
    }

    /// The `error_description` the challenge carries (with [`Rejection::oauth_error`]): a
    /// fixed text naming the check, never anything from the request.
    pub fn error_description(&self) -> Option<&'static str> {
        self.oauth_error().map(|_| self.error.description())
    }

    /// A nonce to send in a `DPoP-Nonce` header, when the error is `use_dpop_nonce`
    /// (RFC 9449 section 9).
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.error.fresh_nonce()
    }

    /// One `WWW-Authenticate` challenge per accepted scheme, `Bearer` first (as in RFC 9449
    /// section 7.2), each a header value of its own:
    ///
    /// - `Bearer [realm="..."]` (RFC 6750 section 3);
    /// - `DPoP [realm="...", ]algs="ES256 EdDSA"` (RFC 9449 section 7.1).
    ///
    /// The error (`error`, `error_description`, and `scope` for `insufficient_scope`) goes on
    /// the challenge of the scheme it concerns: proof errors on `DPoP`, token errors on the
    /// scheme the token came with, and on every challenge when the scheme is not known (a
    /// repeated or malformed `Authorization` header).
    pub fn challenges(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if self.challenge.bearer {
            out.push(self.render(Scheme::Bearer));
        }
        out.push(self.render(Scheme::Dpop));
        out
    }

    /// The [challenges](Rejection::challenges) as one `WWW-Authenticate` value, separated by
    /// `", "` (RFC 9110 section 11.6.1).
    pub fn www_authenticate(&self) -> String {
        self.challenges().join(", ")
    }

    /// Whether the error goes on this scheme's challenge.
    fn carries_error(&self, scheme: Scheme) -> bool {
        match self.oauth_error() {
            None => false,
            Some(INVALID_DPOP_PROOF | USE_DPOP_NONCE) => scheme == Scheme::Dpop,
            Some(_) => self.scheme.is_none_or(|s| s == scheme),
        }
    }

    fn render(&self, scheme: Scheme) -> String {
        let c = &self.challenge;
        let mut params = Params::new(scheme.as_str());
        if let Some(realm) = &c.realm {
            params.push("realm", realm);
        }
        if scheme == Scheme::Dpop {
            params.push("algs", &c.algs);
        }
        if self.carries_error(scheme)
            && let (Some(code), Some(description)) = (self.oauth_error(), self.error_description())
        {
            params.push("error", code);
            params.push("error_description", description);
            if code == INSUFFICIENT_SCOPE
                && let Some(scope) = &c.scope
            {
                params.push("scope", scope);
            }
        }
        params.out
    }
}

/// A challenge being written: `scheme`, then `name="value"` parameters separated by `", "`.
struct Params {
    out: String,
    empty: bool,
}

impl Params {
    fn new(scheme: &str) -> Self {
        Params {
            out: scheme.to_owned(),
            empty: true,
        }
    }

    /// Appends `name="value"`, the value as a quoted-string (RFC 9110 section 5.6.4): `"` and
    /// `\` escaped with a backslash; characters outside visible ASCII and space left out, so
    /// the header stays valid whatever the configuration holds.
    fn push(&mut self, name: &str, value: &str) {
        let out = &mut self.out;
        out.push_str(if self.empty { " " } else { ", " });
        self.empty = false;
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                ' '..='~' => out.push(c),
                _ => {}
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_and_whitespace() {
        assert!(is_token68(b"abc.DEF-_~+/=="));
        assert!(!is_token68(b""));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b"a=b"));
        assert!(!is_token68(b"a b"));
        assert!(!is_token68("é".as_bytes()));
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
    }

    #[test]
    fn quoted_strings_are_escaped() {
        let mut p = Params::new("Bearer");
        p.push("realm", "a \"b\" \\ c\u{7f}é\n");
        p.push("scope", "x");
        assert_eq!(p.out, r#"Bearer realm="a \"b\" \\ c", scope="x""#);
    }

    #[test]
    fn fields_count_to_two() {
        let none = Field::new(std::iter::empty());
        assert_eq!((none.first, none.more, none.count()), (None, false, 0));
        let two = Field::new([&b"a"[..], b"b", b"c"]);
        assert_eq!(
            (two.first, two.more, two.count()),
            (Some(&b"a"[..]), true, 2)
        );
    }
}
