//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the JSON document that tells clients
//! which authorization server issues tokens for this resource, which scopes exist, and how to
//! present tokens, served at `/.well-known/oauth-protected-resource`.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Serialize;
use token_dpop::Algorithm;
use tower_service::Service;

use crate::origin::Origin;

/// The well-known path of the metadata (RFC 9728 section 3). For a resource identifier with a
/// path (`https://api.example/v1`), the path follows it
/// (`/.well-known/oauth-protected-resource/v1`).
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The metadata document of a protected resource (RFC 9728 section 2), as
/// [`Guard::metadata`](crate::Guard::metadata) fills it from the guard's configuration:
///
/// - `resource`: the external base URL (change it with [`resource`](Self::resource) if your
///   resource identifier differs);
/// - `authorization_servers`: the guard's issuer;
/// - `scopes_supported`: the guard's required scopes (set the full list with
///   [`scopes_supported`](Self::scopes_supported));
/// - `bearer_methods_supported`: `["header"]` (the guard reads tokens from `Authorization`
///   only);
/// - `dpop_signing_alg_values_supported`: the algorithms accepted for proofs;
/// - `dpop_bound_access_tokens_required`: whether Bearer tokens are refused.
///
/// `jwks_uri` is the resource server's *own* key set (for signed responses), not the
/// issuer's: absent unless you set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// The resource identifier: the URL clients use for this resource (`https`).
    pub resource: String,
    /// Issuer identifiers of the authorization servers whose tokens are accepted.
    pub authorization_servers: Vec<String>,
    /// The URL of the resource server's own JWK Set, if it signs responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Scope values clients may request for this resource (left out when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How tokens may be presented: `header` (`Authorization`).
    pub bearer_methods_supported: Vec<String>,
    /// A human-readable name of the resource, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// The `alg` values accepted for DPoP proofs.
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Whether every access token must be DPoP-bound.
    pub dpop_bound_access_tokens_required: bool,
}

impl ProtectedResourceMetadata {
    pub(crate) fn new(
        origin: &Origin,
        issuer: &str,
        scopes: &[String],
        algs: &[Algorithm],
        dpop_required: bool,
    ) -> Self {
        ProtectedResourceMetadata {
            resource: origin.base(),
            authorization_servers: vec![issuer.to_owned()],
            jwks_uri: None,
            scopes_supported: scopes.to_vec(),
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name: None,
            dpop_signing_alg_values_supported: algs.iter().map(|a| a.as_str().to_owned()).collect(),
            dpop_bound_access_tokens_required: dpop_required,
        }
    }

    /// Sets the resource identifier.
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = resource.into();
        self
    }

    /// Sets the scopes clients may request.
    #[must_use]
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the URL of the resource server's own JWK Set.
    #[must_use]
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// Sets a human-readable name of the resource.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        // Strings, booleans and lists of strings only: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The path to serve the document at: [`WELL_KNOWN_PATH`], then the resource identifier's
    /// path if it has one.
    pub fn path(&self) -> String {
        let (_, path) = split_url(&self.resource);
        format!("{WELL_KNOWN_PATH}{path}")
    }

    /// The absolute URL of the document (the `resource_metadata` of RFC 9728 section 5.1).
    pub fn url(&self) -> String {
        let (origin, path) = split_url(&self.resource);
        format!("{origin}{WELL_KNOWN_PATH}{path}")
    }

    /// A tower service answering `GET` and `HEAD` with the document (`application/json`,
    /// cacheable for five minutes) and any other method with 405. Route it at
    /// [`path`](Self::path).
    pub fn service(&self) -> MetadataService {
        MetadataService {
            body: Arc::from(self.to_json()),
        }
    }

    /// An axum router serving the document at [`path`](Self::path), to
    /// [`merge`](axum::Router::merge) into the application's (outside the guard's layer: the
    /// document is public).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new().route_service(&self.path(), self.service())
    }
}

/// The URL of the metadata for the guard's external base URL.
pub(crate) fn well_known_url(origin: &Origin) -> String {
    let base = origin.base();
    let (origin, path) = split_url(&base);
    format!("{origin}{WELL_KNOWN_PATH}{path}")
}

/// `scheme://authority` and the path (without a trailing `/`; query and fragment left out).
fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = url.get(after_scheme..).unwrap_or_default();
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = rest.get(..end).unwrap_or_default();
    match rest.find('/') {
        Some(slash) => {
            let split = after_scheme + slash;
            let path = url.get(split..after_scheme + end).unwrap_or_default();
            (url.get(..split).unwrap_or(url), path.trim_end_matches('/'))
        }
        None => (url.get(..after_scheme + end).unwrap_or(url), ""),
    }
}

/// The tower service of [`ProtectedResourceMetadata::service`].
#[derive(Clone)]
pub struct MetadataService {
    body: Arc<str>,
}

impl fmt::Debug for MetadataService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataService")
            .field("body", &self.body)
            .finish()
    }
}

impl<B> Service<http::Request<B>> for MetadataService {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method();
        let mut response = if method == http::Method::GET || method == http::Method::HEAD {
            let mut response = http::Response::new(if method == http::Method::GET {
                self.body.to_string()
            } else {
                String::new()
            });
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            headers.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("public, max-age=300"),
            );
            response
        } else {
            let mut response = http::Response::new(String::new());
            *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
            response.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            response
        };
        response.headers_mut().insert(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            http::HeaderValue::from_static("*"),
        );
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_path_goes_between_host_and_path() {
        assert_eq!(
            split_url("https://api.example"),
            ("https://api.example", "")
        );
        assert_eq!(
            split_url("https://api.example/"),
            ("https://api.example", "")
        );
        assert_eq!(
            split_url("https://api.example:8443/v1/?q#f"),
            ("https://api.example:8443", "/v1")
        );
        let origin = Origin::parse("https://api.example/v1").unwrap();
        assert_eq!(
            well_known_url(&origin),
            "https://api.example/.well-known/oauth-protected-resource/v1"
        );
    }
}
