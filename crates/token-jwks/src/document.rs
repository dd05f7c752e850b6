//! Publishing: a JWK Set rendered once to bytes with a strong `ETag` and cache headers, and
//! answered with `200` or `304 Not Modified` without any HTTP framework type.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use token_jwt::{Jwk, JwkSet, KeyParams};

use crate::error::{Error, Result};

/// The media type of a JWK Set (RFC 7517 section 8.5).
pub const CONTENT_TYPE: &str = "application/jwk-set+json";

/// A rendered JWK Set: the body bytes, their `ETag`, the `Cache-Control` value, and the keys
/// by `kid`. Immutable; cheap to share (`Arc`).
///
/// Keys are written sorted by `kid`, each with `kty`, the public members, `kid`, `use: sig` and
/// `alg`, so every instance that publishes the same keys serves byte-identical bodies with the
/// same `ETag`.
pub struct JwksDocument {
    version: u64,
    body: Arc<[u8]>,
    etag: String,
    cache_control: String,
    keys: Vec<Jwk>,
    by_kid: HashMap<String, usize>,
}

impl fmt::Debug for JwksDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksDocument")
            .field("version", &self.version)
            .field("etag", &self.etag)
            .field("cache_control", &self.cache_control)
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An HTTP answer to a JWKS request, for any framework to send as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksResponse {
    /// `200` or `304`.
    pub status: u16,
    /// Header names (lowercase) and values: `content-type` (200 only), `cache-control`,
    /// `etag`.
    pub headers: Vec<(&'static str, String)>,
    /// The body for `200`; `None` for `304`.
    pub body: Option<Arc<[u8]>>,
}

impl JwksDocument {
    /// Renders `keys` with `Cache-Control: public, max-age=<max_age>`.
    ///
    /// Choose `max_age` no longer than the key ring's `jwks_cache_ttl`: the ring publishes a
    /// new key that long before it signs, which is only safe if no verifier caches longer.
    ///
    /// # Errors
    /// [`Error::Unpublishable`] for an RSA key without `alg`.
    pub fn render(keys: &[Jwk], max_age: u64) -> Result<Self> {
        Self::render_version(0, keys, max_age)
    }

    fn render_version(version: u64, keys: &[Jwk], max_age: u64) -> Result<Self> {
        let mut keys: Vec<Jwk> = keys
            .iter()
            .map(|jwk| {
                let kid = jwk.kid.clone().unwrap_or_else(|| jwk.thumbprint());
                let alg = jwk.algorithm().ok_or_else(|| Error::Unpublishable {
                    kid: kid.clone(),
                    reason: match jwk.params {
                        KeyParams::Rsa { .. } => "an RSA key needs alg (RS256 or PS256)",
                        _ => "alg does not fit the key type",
                    },
                })?;
                Ok(jwk.clone().with_kid(kid).with_alg(alg))
            })
            .collect::<Result<_>>()?;
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        keys.dedup_by(|a, b| a.kid == b.kid);
        let body: Arc<[u8]> = JwkSet::new(keys.clone()).to_json().into_bytes().into();
        let digest = token_jwt::base64url::encode(Sha256::digest(&body));
        let etag = format!("\"{}\"", digest.get(..22).unwrap_or(&digest));
        let by_kid = keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| k.kid.clone().map(|kid| (kid, i)))
            .collect();
        Ok(JwksDocument {
            version,
            body,
            etag,
            cache_control: format!("public, max-age={max_age}"),
            keys,
            by_kid,
        })
    }

    /// The key-ring version this document was rendered from (0 for [`JwksDocument::render`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The JSON body.
    pub fn body(&self) -> &Arc<[u8]> {
        &self.body
    }

    /// The strong entity tag, quotes included (`"…"`).
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// The `Cache-Control` value.
    pub fn cache_control(&self) -> &str {
        &self.cache_control
    }

    /// The published keys, sorted by `kid`.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.by_kid.get(kid).and_then(|i| self.keys.get(*i))
    }

    /// Whether an `If-None-Match` header value matches this document (RFC 9110 13.1.2: `*`,
    /// or a comma-separated list of entity tags compared weakly).
    pub fn matches(&self, if_none_match: &str) -> bool {
        let ours = self.etag.as_str();
        if_none_match
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
    }

    /// The answer to a request with this `If-None-Match` header (if any): `304` with `etag`
    /// and `cache-control` when it matches, else `200` with the body and `content-type` too.
    pub fn respond(&self, if_none_match: Option<&str>) -> JwksResponse {
        let mut headers = vec![
            ("cache-control", self.cache_control.clone()),
            ("etag", self.etag.clone()),
        ];
        if if_none_match.is_some_and(|v| self.matches(v)) {
            return JwksResponse {
                status: 304,
                headers,
                body: None,
            };
        }
        headers.insert(0, ("content-type", CONTENT_TYPE.to_owned()));
        JwksResponse {
            status: 200,
            headers,
            body: Some(Arc::clone(&self.body)),
        }
    }
}

/// Keeps the current [`JwksDocument`] of a key ring and re-renders it only when the ring's
/// version changes.
///
/// ```
/// use token_jwks::JwksPublisher;
/// # let (version, keys) = (1, Vec::<token_jwt::Jwk>::new());
/// let publisher = JwksPublisher::new(300);
/// // On start-up and whenever the key ring reports a change:
/// // let (version, keys) = ring.published_with_version();
/// publisher.update(version, &keys)?;
/// let doc = publisher.current();
/// let response = doc.respond(Some("\"stale-etag\""));
/// assert_eq!(response.status, 200);
/// # Ok::<(), token_jwks::Error>(())
/// ```
pub struct JwksPublisher {
    max_age: u64,
    current: RwLock<Arc<JwksDocument>>,
}

impl fmt::Debug for JwksPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksPublisher")
            .field("max_age", &self.max_age)
            .field("current", &self.current())
            .finish()
    }
}

impl JwksPublisher {
    /// A publisher whose documents say `max-age=<max_age>`, starting with an empty set at
    /// version 0 (the version of an empty key ring).
    pub fn new(max_age: u64) -> Self {
        let empty = JwksDocument::render_version(0, &[], max_age);
        // Rendering no keys cannot fail; fall back to an empty body all the same.
        let doc = empty.unwrap_or_else(|_| JwksDocument {
            version: 0,
            body: Arc::from(&b"{\"keys\":[]}"[..]),
            etag: String::from("\"empty\""),
            cache_control: format!("public, max-age={max_age}"),
            keys: Vec::new(),
            by_kid: HashMap::new(),
        });
        JwksPublisher {
            max_age,
            current: RwLock::new(Arc::new(doc)),
        }
    }

    /// Renders `keys` as version `version` unless the current document already is that
    /// version. Returns whether it re-rendered.
    ///
    /// # Errors
    /// As [`JwksDocument::render`]; the current document stays.
    pub fn update(&self, version: u64, keys: &[Jwk]) -> Result<bool> {
        if self.current().version == version {
            return Ok(false);
        }
        let doc = Arc::new(JwksDocument::render_version(version, keys, self.max_age)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = doc;
        Ok(true)
    }

    /// The current document.
    pub fn current(&self) -> Arc<JwksDocument> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use token_jwt::{Algorithm, EcCurve};

    use super::*;

    fn ec(x: u8) -> Jwk {
        Jwk::ec(EcCurve::P256, &[x; 32], &[7; 32]).unwrap()
    }

    fn rsa() -> Jwk {
        let mut n = vec![0xc5; 256];
        n[255] = 1;
        Jwk::rsa(&n, &[1, 0, 1]).unwrap()
    }

    #[test]
    fn renders_every_member_sorted_with_a_strong_etag() {
        let a = ec(1).with_kid("b-key");
        let r = rsa().with_kid("a-key").with_alg(Algorithm::RS256);
        let doc = JwksDocument::render(&[a.clone(), r], 600).unwrap();
        let v: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kid"], "a-key");
        assert_eq!(keys[0]["kty"], "RSA");
        assert_eq!(keys[0]["alg"], "RS256");
        assert!(keys[0]["n"].is_string() && keys[0]["e"] == "AQAB");
        assert_eq!(keys[1]["kid"], "b-key");
        assert_eq!(keys[1]["crv"], "P-256");
        assert_eq!(keys[1]["alg"], "ES256");
        assert_eq!(keys[1]["use"], "sig");
        assert!(keys[1]["x"].is_string() && keys[1]["y"].is_string());
        assert_eq!(doc.cache_control(), "public, max-age=600");
        assert_eq!(doc.etag().len(), 24);
        assert!(doc.etag().starts_with('"') && doc.etag().ends_with('"'));
        assert_eq!(doc.get("b-key").unwrap().kid.as_deref(), Some("b-key"));
        assert!(doc.get("nope").is_none());
        // Order of input does not matter: same bytes, same ETag.
        let again = JwksDocument::render(
            &[rsa().with_kid("a-key").with_alg(Algorithm::RS256), a],
            600,
        )
        .unwrap();
        assert_eq!(again.body(), doc.body());
        assert_eq!(again.etag(), doc.etag());
        // A different key set, a different ETag.
        let other = JwksDocument::render(&[ec(2).with_kid("b-key")], 600).unwrap();
        assert_ne!(other.etag(), doc.etag());
    }

    #[test]
    fn keys_without_kid_get_their_thumbprint_and_rsa_needs_alg() {
        let k = ec(3);
        let doc = JwksDocument::render(std::slice::from_ref(&k), 60).unwrap();
        assert!(doc.get(&k.thumbprint()).is_some());
        assert!(matches!(
            JwksDocument::render(&[rsa()], 60),
            Err(Error::Unpublishable { .. })
        ));
    }

    #[test]
    fn conditional_requests() {
        let doc = JwksDocument::render(&[ec(1).with_kid("k")], 300).unwrap();
        let etag = doc.etag().to_owned();
        let ok = doc.respond(None);
        assert_eq!(ok.status, 200);
        assert_eq!(ok.body.as_deref(), Some(&doc.body()[..]));
        assert_eq!(
            ok.headers,
            vec![
                ("content-type", CONTENT_TYPE.to_owned()),
                ("cache-control", "public, max-age=300".to_owned()),
                ("etag", etag.clone()),
            ]
        );
        for matching in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"x\", {etag}"),
            "*".to_owned(),
        ] {
            let r = doc.respond(Some(&matching));
            assert_eq!(r.status, 304, "{matching}");
            assert!(r.body.is_none());
            assert!(r.headers.contains(&("etag", etag.clone())));
        }
        for other in ["\"x\"", "", "W/\"y\"", &etag[1..]] {
            assert_eq!(doc.respond(Some(other)).status, 200, "{other}");
        }
    }

    #[test]
    fn publisher_renders_once_per_version() {
        let p = JwksPublisher::new(120);
        assert_eq!(p.current().keys().len(), 0);
        assert_eq!(&p.current().body()[..], b"{\"keys\":[]}");
        assert!(!p.update(0, &[]).unwrap());
        let first = p.current();
        assert!(p.update(1, &[ec(1).with_kid("k1")]).unwrap());
        let doc = p.current();
        assert_ne!(doc.etag(), first.etag());
        assert!(
            !p.update(1, &[ec(2).with_kid("k2")]).unwrap(),
            "same version: no render"
        );
        assert!(Arc::ptr_eq(&doc, &p.current()));
        assert!(p.update(2, &[rsa()]).is_err());
        assert_eq!(
            p.current().version(),
            1,
            "a failed render keeps the document"
        );
        assert!(format!("{p:?}").contains("k1"));
    }
}
