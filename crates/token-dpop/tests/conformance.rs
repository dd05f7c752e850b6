//! RFC 9449 conformance: the RFC vectors, negative vectors derived from them, and one
//! adversarial test per check, each run against every crypto provider.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::Arc;

use serde_json::{Value, json};
use token_dpop::token_jwt::{self, CryptoProvider, JwsSigner, all_providers};
use token_dpop::{
    Algorithm, CheckedProof, Error, Jwk, MemoryReplayCache, NonceIssuer, NonceKey, PrivateKey,
    ProofBuilder, ReplayCache, ReplayError, ReplayFuture, ReplayKey, Request, Validator,
    ValidatorConfig, access_token_hash,
};

const NOW: i64 = 1_700_000_000;
const URI: &str = "https://server.example.com/token";

// ---- helpers ---------------------------------------------------------------------------

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/rfc-vectors.json")).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    token_jwt::base64url::encode(bytes)
}

fn validator(provider: &Arc<dyn CryptoProvider>) -> Validator {
    Validator::new(
        ValidatorConfig::new(provider.clone()),
        Arc::new(MemoryReplayCache::new()),
    )
}

fn post() -> Request<'static> {
    Request::new("POST", URI)
}

/// `request`, presenting `token` as its access token when there is one.
fn presenting<'a>(request: Request<'a>, token: Option<&'a str>) -> Request<'a> {
    match token {
        Some(token) => request.with_access_token(token),
        None => request,
    }
}

/// Validates one proof as `POST URI` at `NOW` with a fresh validator.
fn run(
    provider: &Arc<dyn CryptoProvider>,
    proof: &str,
) -> Result<token_dpop::ValidatedProof, Error> {
    validator(provider).validate_sync(&[proof], &post(), NOW)
}

/// A client key that can sign arbitrary header and payload JSON.
struct Client {
    signer: Arc<dyn JwsSigner>,
    jwk: Value,
}

impl Client {
    fn new(alg: Algorithm, provider: &Arc<dyn CryptoProvider>) -> Self {
        let key = PrivateKey::generate(alg).unwrap();
        let signer = provider.signer(&key).unwrap();
        let jwk = Jwk::new(signer.public_jwk().params.clone()).to_json_value();
        Client { signer, jwk }
    }

    fn alg(&self) -> &'static str {
        self.signer.algorithm().as_str()
    }

    fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk })
    }

    fn claims(&self) -> Value {
        json!({ "jti": token_jwt::random_id().unwrap(), "htm": "POST", "htu": URI, "iat": NOW })
    }

    fn jkt(&self) -> String {
        Jwk::from_json(self.jwk.to_string().as_bytes())
            .unwrap()
            .thumbprint()
    }

    fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = self.signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig))
    }

    /// A proof with the usual header and the raw text `payload` (JSON that `serde_json` would
    /// not write, or no JSON at all).
    fn with_raw_payload(&self, payload: &str) -> String {
        self.sign_raw(self.header().to_string().as_bytes(), payload.as_bytes())
    }

    /// A proof with the usual claims and a header of this client's `typ`, `alg` and `jwk`
    /// followed by the raw members `extra` (`,"name":value…`).
    fn with_raw_header(&self, extra: &str) -> String {
        let header = format!(
            r#"{{"typ":"dpop+jwt","alg":"{}","jwk":{}{extra}}}"#,
            self.alg(),
            self.jwk
        );
        self.sign_raw(header.as_bytes(), self.claims().to_string().as_bytes())
    }

    fn sign(&self, header: &Value, payload: &Value) -> String {
        self.sign_raw(
            header.to_string().as_bytes(),
            payload.to_string().as_bytes(),
        )
    }

    fn proof(&self) -> String {
        self.sign(&self.header(), &self.claims())
    }

    fn with_claims(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut claims = self.claims();
        edit(claims.as_object_mut().unwrap());
        self.sign(&self.header(), &claims)
    }

    fn with_header(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut header = self.header();
        edit(header.as_object_mut().unwrap());
        self.sign(&header, &self.claims())
    }
}

fn each_provider(mut f: impl FnMut(&Arc<dyn CryptoProvider>)) {
    let providers = all_providers();
    assert_eq!(
        providers.len(),
        2,
        "tests must cover rustcrypto and aws-lc-rs"
    );
    for p in &providers {
        f(p);
    }
}

fn each_client(mut f: impl FnMut(&Arc<dyn CryptoProvider>, &Client)) {
    each_provider(|p| {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            f(p, &Client::new(alg, p));
        }
    });
}

fn replace_signature(proof: &str, sig: &[u8]) -> String {
    let (input, _) = proof.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(sig))
}

fn signature(proof: &str) -> Vec<u8> {
    token_jwt::base64url::decode(proof.rsplit_once('.').unwrap().1).unwrap()
}

// ---- RFC vectors -----------------------------------------------------------------------

#[test]
fn rfc_thumbprints() {
    let v = vectors();
    for (name, expected) in [
        (
            "rfc7638_3_1_rsa_thumbprint",
            "expected_thumbprint_sha256_b64url",
        ),
        ("rfc8037_ed25519", "expected_thumbprint_sha256_b64url"),
        ("rfc9449_dpop_public_key_and_jkt", "expected_jkt"),
    ] {
        let entry = &v[name];
        let jwk_json = entry
            .get("public_jwk")
            .or_else(|| entry.get("jwk"))
            .unwrap();
        let jwk = Jwk::from_json(jwk_json.to_string().as_bytes()).unwrap();
        assert_eq!(
            jwk.thumbprint(),
            entry[expected].as_str().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn rfc9449_ath_example() {
    let v = &vectors()["rfc9449_ath"];
    assert_eq!(
        access_token_hash(v["access_token"].as_str().unwrap()),
        v["expected_ath"].as_str().unwrap()
    );
}

struct RfcProof {
    proof: String,
    method: String,
    url: String,
    iat: i64,
    access_token: Option<String>,
}

fn rfc_proof(name: &str) -> RfcProof {
    let v = &vectors()[name];
    let access_token = v["request"]["authorization"]
        .as_str()
        .map(|a| a.strip_prefix("DPoP ").unwrap().to_owned());
    RfcProof {
        proof: v["dpop_header"].as_str().unwrap().to_owned(),
        method: v["request"]["method"].as_str().unwrap().to_owned(),
        url: v["request"]["url"].as_str().unwrap().to_owned(),
        iat: v["decoded_payload"]["iat"].as_i64().unwrap(),
        access_token,
    }
}

const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
const RFC_PROOFS: [&str; 3] = [
    "rfc9449_proof_token_request_authorization_code",
    "rfc9449_proof_token_request_refresh",
    "rfc9449_proof_protected_resource_with_ath",
];

#[test]
fn rfc9449_proofs_validate_at_their_iat() {
    each_provider(|p| {
        for name in RFC_PROOFS {
            let v = rfc_proof(name);
            let ok = validator(p)
                .validate_sync(
                    &[&v.proof],
                    &presenting(Request::new(&v.method, &v.url), v.access_token.as_deref())
                        .with_expected_jkt(RFC_JKT),
                    v.iat,
                )
                .unwrap_or_else(|e| panic!("{name} with {}: {e:?}", p.name()));
            assert_eq!(ok.jkt, RFC_JKT);
            assert_eq!(ok.iat, v.iat);
            assert_eq!(ok.htm, v.method);
            assert_eq!(ok.alg, Algorithm::ES256);
        }
    });
}

#[test]
fn rfc9449_refresh_proof_reuses_jti_after_the_window() {
    // Both token-endpoint proofs carry the same jti, 2680 s apart: outside each other's
    // acceptance window, so one cache accepts both.
    each_provider(|p| {
        let v = validator(p);
        for name in &RFC_PROOFS[..2] {
            let r = rfc_proof(name);
            v.validate_sync(&[&r.proof], &post(), r.iat).unwrap();
        }
    });
}

#[test]
fn derived_negative_vectors() {
    let vectors = vectors();
    let neg = &vectors["derived_negative_vectors"];
    let code = rfc_proof(RFC_PROOFS[0]);
    let at = |p: &Arc<dyn CryptoProvider>, proof: &str, req: Request<'_>, now: i64| {
        validator(p).validate_sync(&[proof], &req, now)
    };
    each_provider(|p| {
        let none = neg["alg_none_unsigned"]["dpop"].as_str().unwrap();
        assert!(matches!(
            at(p, none, post(), code.iat),
            Err(Error::AlgNotAllowed)
        ));
        let zero = neg["psychic_zero_signature"]["dpop"].as_str().unwrap();
        assert!(matches!(
            at(p, zero, post(), code.iat),
            Err(Error::BadSignature)
        ));

        let ctx = neg["context_mismatches_using_valid_rfc_proofs"]
            .as_array()
            .unwrap();
        assert_eq!(ctx.len(), 8);
        // [0] htm mismatch
        let r = at(p, &code.proof, Request::new("GET", URI), code.iat);
        assert!(matches!(r, Err(Error::HtmMismatch)), "{r:?}");
        // [1] htu mismatch
        let r = at(
            p,
            &code.proof,
            Request::new("POST", "https://server.example.com/par"),
            code.iat,
        );
        assert!(matches!(r, Err(Error::HtuMismatch)), "{r:?}");
        // [2] query and fragment ignored
        at(
            p,
            &code.proof,
            Request::new("POST", "https://server.example.com/token?x=1#f"),
            code.iat,
        )
        .unwrap();
        // [3] the same request twice: replay
        let v = validator(p);
        v.validate_sync(&[&code.proof], &post(), code.iat).unwrap();
        let r = v.validate_sync(&[&code.proof], &post(), code.iat);
        assert!(matches!(r, Err(Error::Replay)), "{r:?}");
        // [4] clock at iat + 301: too old; with nonces: use_dpop_nonce with a nonce
        let r = at(p, &code.proof, post(), code.iat + 301);
        assert!(matches!(r, Err(Error::IatTooOld)), "{r:?}");
        let with_nonces = Validator::new(
            ValidatorConfig::builder(p.clone())
                .require_nonce(Arc::new(NonceIssuer::new(NonceKey::generate().unwrap())))
                .build(),
            Arc::new(MemoryReplayCache::new()),
        );
        let e = with_nonces
            .validate_sync(&[&code.proof], &post(), code.iat + 301)
            .unwrap_err();
        assert!(matches!(e, Error::NonceRequired { .. }), "{e:?}");
        assert_eq!(e.oauth_error(), "use_dpop_nonce");
        assert!(e.fresh_nonce().is_some());
        // [5] ath mismatch with a different access token
        let rs = rfc_proof(RFC_PROOFS[2]);
        let r = validator(p).validate_sync(
            &[&rs.proof],
            &Request::new(&rs.method, &rs.url).with_access_token("a-different-access-token"),
            rs.iat,
        );
        assert!(matches!(r, Err(Error::AthMismatch)), "{r:?}");
        // [6] a Bearer scheme downgrade is decided where the Authorization header is read
        // (token-server: invalid_token), not by proof validation.
        // [7] access token bound to another key
        let r = validator(p).validate_sync(
            &[&rs.proof],
            &presenting(
                Request::new(&rs.method, &rs.url),
                rs.access_token.as_deref(),
            )
            .with_expected_jkt("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"),
            rs.iat,
        );
        assert!(matches!(r, Err(Error::JktMismatch)), "{r:?}");
    });
}

// ---- builder round trips ---------------------------------------------------------------

#[test]
fn built_proofs_validate_for_every_algorithm_and_provider() {
    each_provider(|p| {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let key = PrivateKey::generate(alg).unwrap();
            let b = ProofBuilder::new(&key, &**p).unwrap();
            assert_eq!(b.algorithm(), alg);
            assert_eq!(b.jkt(), key.public_jwk().thumbprint());
            let proof = b
                .proof(
                    "GET",
                    "https://rs.example/a?b=c#d",
                    Some("tok"),
                    Some("n0nce"),
                    NOW,
                )
                .unwrap();
            let ok = validator(p)
                .validate_sync(
                    &[&proof],
                    &Request::new("GET", "https://rs.example/a")
                        .with_access_token("tok")
                        .with_expected_jkt(&b.jkt()),
                    NOW,
                )
                .unwrap();
            assert_eq!(ok.htu, "https://rs.example/a");
            assert_eq!(ok.nonce.as_deref(), Some("n0nce"));
            assert_eq!(ok.alg, alg);
            assert_eq!(ok.jkt, b.jkt());
            // the header jwk carries no kid, alg or use
            let header: Value = serde_json::from_slice(
                &token_jwt::base64url::decode(proof.split('.').next().unwrap()).unwrap(),
            )
            .unwrap();
            let jwk = header["jwk"].as_object().unwrap();
            assert!(
                !jwk.contains_key("kid") && !jwk.contains_key("alg") && !jwk.contains_key("use")
            );
            assert_eq!(header["typ"], "dpop+jwt");
        }
    });
}

#[test]
fn builder_refuses_non_http_uris() {
    let p: Arc<dyn CryptoProvider> = Arc::new(token_jwt::RustCryptoProvider::new());
    let b = ProofBuilder::new(&PrivateKey::generate(Algorithm::EdDSA).unwrap(), &*p).unwrap();
    for uri in ["/token", "ftp://x/", "https://user@x/"] {
        assert!(matches!(
            b.proof("GET", uri, None, None, NOW),
            Err(Error::InvalidHtu)
        ));
    }
}

#[test]
fn check_then_record_is_validate() {
    each_provider(|p| {
        let v = validator(p);
        let c = Client::new(Algorithm::ES256, p);
        let proof = c.proof();
        let checked: CheckedProof = v.check(&[&proof], &post(), NOW).unwrap();
        assert_eq!(checked.expires_at(), NOW + 60 + 5 + 1);
        let again = v.check(&[&proof], &post(), NOW).unwrap();
        assert_eq!(checked.replay_key(), again.replay_key());
        let cache = MemoryReplayCache::new();
        let ok = token_dpop_block_on(checked.record(&cache, NOW)).unwrap();
        assert_eq!(ok.jkt, c.jkt());
        assert!(matches!(
            token_dpop_block_on(again.record(&cache, NOW)),
            Err(Error::Replay)
        ));
    });
}

/// Drives a future whose every await is ready (the in-memory cache).
fn token_dpop_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the in-memory cache never waits"),
    }
}

#[test]
fn key_cache_keeps_every_check() {
    each_client(|p, c| {
        for capacity in [0, 1, 1024] {
            let v = Validator::new(
                ValidatorConfig::builder(p.clone())
                    .key_cache_capacity(capacity)
                    .build(),
                Arc::new(MemoryReplayCache::new()),
            );
            // a forged proof first: its key must not be cached as good
            let forged = replace_signature(
                &c.proof(),
                &signature(&Client::new(c.signer.algorithm(), p).proof()),
            );
            assert!(matches!(
                v.validate_sync(&[&forged], &post(), NOW),
                Err(Error::BadSignature)
            ));
            for _ in 0..3 {
                v.validate_sync(&[&c.proof()], &post(), NOW).unwrap();
                // with the key prepared, a bad signature is still refused
                let forged = replace_signature(
                    &c.proof(),
                    &signature(&Client::new(c.signer.algorithm(), p).proof()),
                );
                assert!(matches!(
                    v.validate_sync(&[&forged], &post(), NOW),
                    Err(Error::BadSignature)
                ));
                // and another key of the same type is prepared on its own
                let other = Client::new(c.signer.algorithm(), p);
                v.validate_sync(&[&other.proof()], &post(), NOW).unwrap();
            }
        }
    });
}

#[test]
fn shared_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let p: Arc<dyn CryptoProvider> = Arc::new(token_jwt::RustCryptoProvider::new());
    let v = validator(&p);
    send_sync(&v);
    send_sync(&MemoryReplayCache::new());
    send_sync(&NonceIssuer::new(NonceKey::from_bytes(&[1; 32])));
    // the async validation can run on a multi-threaded runtime
    let request = post();
    let fut = v.validate(&["x"], &request, NOW);
    send(&fut);
    drop(fut);
}

// ---- framing ---------------------------------------------------------------------------

#[test]
fn no_proof() {
    each_provider(|p| {
        let r = validator(p).validate_sync(&[], &post(), NOW);
        assert!(matches!(r, Err(Error::MissingProof)));
    });
}

#[test]
fn two_proofs() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        let (a, b) = (c.proof(), c.proof());
        let v = validator(p);
        let r = v.validate_sync(&[&a, &b], &post(), NOW);
        assert!(matches!(r, Err(Error::MultipleProofs)));
        // even two copies of the same proof
        let r = v.validate_sync(&[&a, &a], &post(), NOW);
        assert!(matches!(r, Err(Error::MultipleProofs)));
        // and neither was recorded
        v.validate_sync(&[&a], &post(), NOW).unwrap();
    });
}

#[test]
fn oversize_proof() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        let big = c.with_claims(|m| {
            m.insert("pad".into(), json!("x".repeat(8 * 1024)));
        });
        assert!(matches!(
            run(p, &big),
            Err(Error::ProofTooLarge { limit: 8192 })
        ));
        // a raised limit accepts it
        let v = Validator::new(
            ValidatorConfig::builder(p.clone())
                .max_proof_bytes(16 * 1024)
                .build(),
            Arc::new(MemoryReplayCache::new()),
        );
        v.validate_sync(&[&big], &post(), NOW).unwrap();
    });
}

#[test]
fn malformed_framing_and_encoding() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        let good = c.proof();
        let parts: Vec<&str> = good.split('.').collect();
        for bad in [
            String::new(),
            "garbage".to_owned(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}.{}", parts[2]),
            format!("{}..{}", parts[0], parts[2]),
            format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1].replace(|_: char| true, "+"),
                parts[2]
            ),
            format!(" {good}"),
        ] {
            assert!(matches!(run(p, &bad), Err(Error::Malformed(_))), "{bad:?}");
        }
        let not_json = c.with_raw_payload("not json");
        assert!(matches!(
            run(p, &not_json),
            Err(Error::Malformed(token_jwt::Error::Json { .. }))
        ));
        let array = c.with_raw_payload("[]");
        assert!(matches!(run(p, &array), Err(Error::Malformed(_))));
    });
}

#[test]
fn duplicate_members() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        let payload =
            format!(r#"{{"jti":"a","htm":"POST","htu":"{URI}","iat":{NOW},"htm":"GET"}}"#);
        for proof in [
            c.with_raw_payload(&payload),
            c.with_raw_header(r#","alg":"ES256""#),
        ] {
            assert!(matches!(
                run(p, &proof),
                Err(Error::Malformed(token_jwt::Error::DuplicateMember(_)))
            ));
        }
    });
}

#[test]
fn deep_json() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        let deep = c.with_claims(|m| {
            m.insert(
                "x".into(),
                serde_json::from_str("[[[[[[[[1]]]]]]]]").unwrap(),
            );
        });
        let wide = c.with_claims(|m| {
            for i in 0..40 {
                m.insert(format!("k{i}"), json!(i));
            }
        });
        let deep_header = c.with_raw_header(r#","x":[[[[[[1]]]]]]"#);
        for (what, proof) in [("deep", deep), ("wide", wide), ("deep header", deep_header)] {
            assert!(
                matches!(
                    run(p, &proof),
                    Err(Error::Malformed(token_jwt::Error::JsonLimits(_)))
                ),
                "{what}"
            );
        }
    });
}

#[test]
fn crit_header() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        let proof = c.with_header(|h| {
            h.insert("crit".into(), json!(["exp"]));
        });
        assert!(matches!(
            run(p, &proof),
            Err(Error::Malformed(token_jwt::Error::UnsupportedCritical))
        ));
    });
}

// ---- header ----------------------------------------------------------------------------

#[test]
fn wrong_typ() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        for typ in [json!("jwt"), json!("at+jwt"), json!("dpop"), json!("")] {
            let proof = c.with_header(|h| {
                h.insert("typ".into(), typ.clone());
            });
            assert!(matches!(run(p, &proof), Err(Error::WrongTyp)), "{typ}");
        }
        let proof = c.with_header(|h| {
            h.remove("typ");
        });
        assert!(matches!(run(p, &proof), Err(Error::WrongTyp)));
        let proof = c.with_header(|h| {
            h.insert("typ".into(), json!(1));
        });
        assert!(matches!(run(p, &proof), Err(Error::Malformed(_))));
        // RFC 7515 4.1.9: media types compare without case, `application/` may be written
        let proof = c.with_header(|h| {
            h.insert("typ".into(), json!("application/DPoP+JWT"));
        });
        run(p, &proof).unwrap();
    });
}

#[test]
fn alg_none_and_symmetric() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        for alg in [
            "none", "None", "HS256", "HS512", "ES256K", "RS512", "", "es256",
        ] {
            let proof = c.with_header(|h| {
                h.insert("alg".into(), json!(alg));
            });
            assert!(matches!(run(p, &proof), Err(Error::AlgNotAllowed)), "{alg}");
            // also as an unsecured JWS (empty signature)
            let (input, _) = proof.rsplit_once('.').unwrap();
            let unsecured = format!("{input}.");
            assert!(
                matches!(run(p, &unsecured), Err(Error::AlgNotAllowed)),
                "{alg}"
            );
        }
        let proof = c.with_header(|h| {
            h.remove("alg");
        });
        assert!(matches!(run(p, &proof), Err(Error::Malformed(_))));
    });
}

#[test]
fn alg_not_on_allow_list() {
    each_provider(|p| {
        let v = Validator::new(
            ValidatorConfig::builder(p.clone())
                .allowed_algs([Algorithm::ES256])
                .build(),
            Arc::new(MemoryReplayCache::new()),
        );
        for alg in [Algorithm::ES384, Algorithm::EdDSA] {
            let proof = Client::new(alg, p).proof();
            let r = v.validate_sync(&[&proof], &post(), NOW);
            assert!(matches!(r, Err(Error::AlgNotAllowed)), "{alg}");
        }
        let proof = Client::new(Algorithm::ES256, p).proof();
        v.validate_sync(&[&proof], &post(), NOW).unwrap();
    });
}

#[test]
fn alg_not_fitting_key() {
    each_provider(|p| {
        let ec = Client::new(Algorithm::ES256, p);
        for alg in ["EdDSA", "ES384", "RS256", "PS256"] {
            let proof = ec.with_header(|h| {
                h.insert("alg".into(), json!(alg));
            });
            assert!(
                matches!(run(p, &proof), Err(Error::AlgKeyMismatch)),
                "{alg}"
            );
        }
        let ed = Client::new(Algorithm::EdDSA, p);
        let proof = ed.with_header(|h| {
            h.insert("alg".into(), json!("ES256"));
        });
        assert!(matches!(run(p, &proof), Err(Error::AlgKeyMismatch)));
        // the jwk's own alg names another algorithm of the same key type
        let rsa_like = ec.with_header(|h| {
            h["jwk"]["alg"] = json!("ES384");
        });
        assert!(matches!(run(p, &rsa_like), Err(Error::InvalidKey(_))));
    });
}

#[test]
fn missing_jwk() {
    each_client(|p, c| {
        let proof = c.with_header(|h| {
            h.remove("jwk");
        });
        assert!(matches!(run(p, &proof), Err(Error::MissingJwk)));
        let proof = c.with_header(|h| {
            h.insert("jwk".into(), json!("not an object"));
        });
        assert!(matches!(run(p, &proof), Err(Error::Malformed(_))));
    });
}

#[test]
fn private_key_in_jwk() {
    each_client(|p, c| {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
            let proof = c.with_header(|h| {
                h["jwk"][member] = json!("AAAA");
            });
            let r = run(p, &proof);
            assert!(matches!(r, Err(Error::PrivateKey)), "{member}: {r:?}");
        }
    });
}

#[test]
fn oct_key() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        for jwk in [json!({"kty":"oct","k":"c2VjcmV0"}), json!({"kty":"oct"})] {
            let proof = c.with_header(|h| {
                h.insert("jwk".into(), jwk.clone());
            });
            assert!(matches!(run(p, &proof), Err(Error::SymmetricKey)), "{jwk}");
        }
    });
}

#[test]
fn invalid_jwk_members() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        for edit in [
            json!({"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}),
            json!({"kty":"EC","crv":"P-256","x":"AA","y":"AA"}),
            json!({"kty":"XYZ"}),
            json!({}),
        ] {
            let proof = c.with_header(|h| {
                h.insert("jwk".into(), edit.clone());
            });
            assert!(
                matches!(run(p, &proof), Err(Error::InvalidKey(_))),
                "{edit}"
            );
        }
    });
}

#[test]
fn point_off_the_curve() {
    each_provider(|p| {
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            let c = Client::new(alg, p);
            let mut y = token_jwt::base64url::decode(c.jwk["y"].as_str().unwrap()).unwrap();
            *y.last_mut().unwrap() ^= 1;
            let proof = c.with_header(|h| {
                h["jwk"]["y"] = json!(b64(&y));
            });
            let r = run(p, &proof);
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidKey(token_jwt::Error::InvalidPublicKey(_)))
                ),
                "{} {alg}: {r:?}",
                p.name()
            );
        }
    });
}

#[test]
fn small_order_ed25519_key() {
    each_provider(|p| {
        let c = Client::new(Algorithm::EdDSA, p);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let proof = c.with_header(|h| {
            h["jwk"]["x"] = json!(b64(identity));
        });
        assert!(matches!(run(p, &proof), Err(Error::InvalidKey(_))));
    });
}

// ---- signature -------------------------------------------------------------------------

#[test]
fn signature_by_another_key() {
    each_client(|p, c| {
        let other = Client::new(c.signer.algorithm(), p);
        // the other key signs, but the header carries c's key
        let proof = other.sign(&c.header(), &c.claims());
        assert!(matches!(run(p, &proof), Err(Error::BadSignature)));
    });
}

#[test]
fn ecdsa_r_s_zero() {
    each_provider(|p| {
        for (alg, len) in [(Algorithm::ES256, 64), (Algorithm::ES384, 96)] {
            let proof = replace_signature(&Client::new(alg, p).proof(), &vec![0u8; len]);
            assert!(matches!(run(p, &proof), Err(Error::BadSignature)), "{alg}");
        }
    });
}

#[test]
fn ecdsa_r_or_s_not_below_n() {
    // P-256 group order n.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    each_provider(|p| {
        let proof = Client::new(Algorithm::ES256, p).proof();
        let sig = signature(&proof);
        for (r, s) in [
            (N.to_vec(), sig[32..].to_vec()),
            (sig[..32].to_vec(), N.to_vec()),
        ] {
            let bad = replace_signature(&proof, &[r, s].concat());
            assert!(matches!(run(p, &bad), Err(Error::BadSignature)));
        }
        let ones = replace_signature(&proof, &[0xffu8; 64]);
        assert!(matches!(run(p, &ones), Err(Error::BadSignature)));
    });
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    let mut out = vec![0x02, u8::try_from(v.len()).unwrap()];
    out.extend(v);
    out
}

#[test]
fn der_signature() {
    each_provider(|p| {
        for alg in [Algorithm::ES256, Algorithm::ES384] {
            let proof = Client::new(alg, p).proof();
            let sig = signature(&proof);
            let (r, s) = sig.split_at(sig.len() / 2);
            let body = [der_integer(r), der_integer(s)].concat();
            let mut der = vec![0x30, u8::try_from(body.len()).unwrap()];
            der.extend(body);
            let bad = replace_signature(&proof, &der);
            assert!(matches!(run(p, &bad), Err(Error::BadSignature)), "{alg}");
            // and the original verifies
            run(p, &proof).unwrap();
        }
    });
}

#[test]
fn ed25519_s_not_below_l() {
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x10,
    ];
    each_provider(|p| {
        let proof = Client::new(Algorithm::EdDSA, p).proof();
        run(p, &proof).unwrap();
        let mut sig = signature(&proof);
        // s + L: the same value mod L, but not canonical.
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let sum = u16::from(sig[32 + i]) + u16::from(*l) + carry;
            sig[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let bad = replace_signature(&proof, &sig);
        assert!(matches!(run(p, &bad), Err(Error::BadSignature)));
    });
}

#[test]
fn truncated_and_extended_signatures() {
    each_client(|p, c| {
        let proof = c.proof();
        let sig = signature(&proof);
        for bad in [&sig[..sig.len() - 1], &[sig.clone(), vec![0]].concat()[..]] {
            let bad = replace_signature(&proof, bad);
            assert!(matches!(run(p, &bad), Err(Error::BadSignature)));
        }
    });
}

// ---- claims ----------------------------------------------------------------------------

#[test]
fn jti_checks() {
    each_client(|p, c| {
        let proof = c.with_claims(|m| {
            m.remove("jti");
        });
        assert!(matches!(run(p, &proof), Err(Error::MissingJti)));
        let proof = c.with_claims(|m| {
            m.insert("jti".into(), json!(""));
        });
        assert!(matches!(run(p, &proof), Err(Error::MissingJti)));
        let proof = c.with_claims(|m| {
            m.insert("jti".into(), json!(42));
        });
        assert!(matches!(run(p, &proof), Err(Error::InvalidClaim("jti"))));
        let proof = c.with_claims(|m| {
            m.insert("jti".into(), json!("j".repeat(257)));
        });
        assert!(matches!(
            run(p, &proof),
            Err(Error::JtiTooLong { limit: 256 })
        ));
        let proof = c.with_claims(|m| {
            m.insert("jti".into(), json!("j".repeat(256)));
        });
        run(p, &proof).unwrap();
    });
}

#[test]
fn wrong_htm() {
    each_client(|p, c| {
        let proof = c.proof();
        for method in ["GET", "post", "PUT", ""] {
            let r = validator(p).validate_sync(&[&proof], &Request::new(method, URI), NOW);
            assert!(matches!(r, Err(Error::HtmMismatch)), "{method}");
        }
        let proof = c.with_claims(|m| {
            m.remove("htm");
        });
        assert!(matches!(run(p, &proof), Err(Error::MissingHtm)));
        let proof = c.with_claims(|m| {
            m.insert("htm".into(), json!(["POST"]));
        });
        assert!(matches!(run(p, &proof), Err(Error::InvalidClaim("htm"))));
    });
}

#[test]
fn wrong_htu() {
    each_client(|p, c| {
        let proof = c.proof();
        for uri in [
            "https://server.example.com/token2",
            "https://server.example.com/Token",
            "https://server.example.com/token/",
            "http://server.example.com/token",
            "https://server.example.com:8443/token",
            "https://other.example.com/token",
            "https://server.example.com/par",
        ] {
            let r = validator(p).validate_sync(&[&proof], &Request::new("POST", uri), NOW);
            assert!(matches!(r, Err(Error::HtuMismatch)), "{uri}");
        }
        for uri in [
            "HTTPS://SERVER.example.com:443/token",
            "https://server.example.com/%74oken?x#y",
            "https://server.example.com/a/../token",
        ] {
            validator(p)
                .validate_sync(&[&proof], &Request::new("POST", uri), NOW)
                .unwrap();
        }
        // the proof's htu with a query and fragment is compared without them
        let proof = c.with_claims(|m| {
            m.insert("htu".into(), json!(format!("{URI}?a=b#c")));
        });
        run(p, &proof).unwrap();
        for bad in [
            "/token",
            "ftp://server.example.com/token",
            "https://user@server.example.com/token",
            "https://server.example.com/to ken",
        ] {
            let proof = c.with_claims(|m| {
                m.insert("htu".into(), json!(bad));
            });
            assert!(matches!(run(p, &proof), Err(Error::InvalidHtu)), "{bad}");
        }
        let proof = c.with_claims(|m| {
            m.remove("htu");
        });
        assert!(matches!(run(p, &proof), Err(Error::MissingHtu)));
        let r = validator(p).validate_sync(&[&c.proof()], &Request::new("POST", "/token"), NOW);
        let e = r.unwrap_err();
        assert!(matches!(e, Error::InvalidRequestUri));
        assert!(e.is_server_error());
    });
}

#[test]
fn iat_too_old_and_in_future() {
    each_client(|p, c| {
        let at = |iat: Value| {
            c.with_claims(|m| {
                m.insert("iat".into(), iat);
            })
        };
        // defaults: max age 60 s plus 5 s leeway in the past, 5 s leeway in the future
        run(p, &at(json!(NOW - 65))).unwrap();
        assert!(matches!(
            run(p, &at(json!(NOW - 66))),
            Err(Error::IatTooOld)
        ));
        assert!(matches!(
            run(p, &at(json!(NOW - 100_000))),
            Err(Error::IatTooOld)
        ));
        run(p, &at(json!(NOW + 5))).unwrap();
        assert!(matches!(
            run(p, &at(json!(NOW + 6))),
            Err(Error::IatInFuture)
        ));
        assert!(matches!(
            run(p, &at(json!(i64::MAX))),
            Err(Error::IatInFuture)
        ));
        assert!(matches!(
            run(p, &at(json!(i64::MIN))),
            Err(Error::IatTooOld)
        ));
        for bad in [
            json!("1700000000"),
            json!(1.7e9),
            json!(u64::MAX),
            json!(null),
        ] {
            assert!(
                matches!(run(p, &at(bad.clone())), Err(Error::InvalidClaim("iat"))),
                "{bad}"
            );
        }
        let proof = c.with_claims(|m| {
            m.remove("iat");
        });
        assert!(matches!(run(p, &proof), Err(Error::MissingIat)));
    });
    // a configured window
    each_provider(|p| {
        let c = Client::new(Algorithm::EdDSA, p);
        let v = |max_age, leeway| {
            Validator::new(
                ValidatorConfig::builder(p.clone())
                    .max_age(max_age)
                    .leeway(leeway)
                    .build(),
                Arc::new(MemoryReplayCache::new()),
            )
        };
        let proof = c.with_claims(|m| {
            m.insert("iat".into(), json!(NOW - 10));
        });
        assert!(matches!(
            v(9, 0).validate_sync(&[&proof], &post(), NOW),
            Err(Error::IatTooOld)
        ));
        v(10, 0).validate_sync(&[&proof], &post(), NOW).unwrap();
        assert!(matches!(
            v(300, 0).validate_sync(&[&proof], &post(), NOW - 11),
            Err(Error::IatInFuture)
        ));
    });
}

#[test]
fn wrong_ath() {
    each_client(|p, c| {
        let token = "access-token-1";
        let proof = c.with_claims(|m| {
            m.insert("ath".into(), json!(access_token_hash(token)));
        });
        let v = |proof: &str, token: Option<&str>| {
            validator(p).validate_sync(&[proof], &presenting(post(), token), NOW)
        };
        v(&proof, Some(token)).unwrap();
        assert!(matches!(
            v(&proof, Some("access-token-2")),
            Err(Error::AthMismatch)
        ));
        // a proof with ath but no token presented (token endpoint): ath is not checked
        v(&proof, None).unwrap();
        let no_ath = c.proof();
        assert!(matches!(v(&no_ath, Some(token)), Err(Error::MissingAth)));
        for bad in [
            json!(access_token_hash("x")),
            json!(""),
            json!(access_token_hash(token).to_uppercase()),
        ] {
            let proof = c.with_claims(|m| {
                m.insert("ath".into(), bad.clone());
            });
            assert!(
                matches!(v(&proof, Some(token)), Err(Error::AthMismatch)),
                "{bad}"
            );
        }
        let proof = c.with_claims(|m| {
            m.insert("ath".into(), json!(1));
        });
        assert!(matches!(
            v(&proof, Some(token)),
            Err(Error::InvalidClaim("ath"))
        ));
    });
}

#[test]
fn wrong_jkt() {
    each_client(|p, c| {
        let proof = c.proof();
        let v =
            |jkt: &str| validator(p).validate_sync(&[&proof], &post().with_expected_jkt(jkt), NOW);
        v(&c.jkt()).unwrap();
        let other = Client::new(Algorithm::ES256, p).jkt();
        assert!(matches!(v(&other), Err(Error::JktMismatch)));
        assert!(matches!(v(""), Err(Error::JktMismatch)));
    });
}

// ---- nonces ----------------------------------------------------------------------------

fn nonce_validator(p: &Arc<dyn CryptoProvider>, issuer: &Arc<NonceIssuer>) -> Validator {
    Validator::new(
        ValidatorConfig::builder(p.clone())
            .require_nonce(issuer.clone())
            .build(),
        Arc::new(MemoryReplayCache::new()),
    )
}

#[test]
fn nonce_required_then_accepted() {
    each_client(|p, c| {
        let issuer = Arc::new(NonceIssuer::new(NonceKey::generate().unwrap()));
        let v = nonce_validator(p, &issuer);
        let e = v.validate_sync(&[&c.proof()], &post(), NOW).unwrap_err();
        assert!(matches!(e, Error::NonceRequired { .. }));
        let nonce = e.fresh_nonce().unwrap().to_owned();
        let proof = c.with_claims(|m| {
            m.insert("nonce".into(), json!(nonce));
        });
        let ok = v.validate_sync(&[&proof], &post(), NOW).unwrap();
        assert_eq!(ok.nonce.as_deref(), Some(nonce.as_str()));
        assert!(v.fresh_nonce(NOW).is_some());
        assert!(validator(p).fresh_nonce(NOW).is_none());
        let proof = c.with_claims(|m| {
            m.insert("nonce".into(), json!(7));
        });
        assert!(matches!(
            v.validate_sync(&[&proof], &post(), NOW),
            Err(Error::InvalidClaim("nonce"))
        ));
    });
}

#[test]
fn stale_nonce() {
    each_client(|p, c| {
        let issuer = Arc::new(NonceIssuer::new(NonceKey::generate().unwrap()));
        let v = nonce_validator(p, &issuer);
        let old = NOW - 600;
        let nonce = issuer.issue(old);
        let proof = c.with_claims(|m| {
            m.insert("nonce".into(), json!(nonce));
        });
        let e = v.validate_sync(&[&proof], &post(), NOW).unwrap_err();
        assert!(matches!(e, Error::NonceStale { .. }), "{e:?}");
        assert_eq!(e.oauth_error(), "use_dpop_nonce");
        let fresh = e.fresh_nonce().unwrap();
        assert_ne!(fresh, nonce);
        issuer.check(fresh, NOW).unwrap();
    });
}

#[test]
fn nonce_from_rotated_out_key() {
    each_client(|p, c| {
        let issuer = Arc::new(NonceIssuer::new(NonceKey::generate().unwrap()));
        let v = nonce_validator(p, &issuer);
        let nonce = issuer.issue(NOW);
        let proof_with = |n: &str| {
            c.with_claims(|m| {
                m.insert("nonce".into(), json!(n));
            })
        };
        issuer.rotate(NonceKey::generate().unwrap());
        // still accepted by the previous key
        v.validate_sync(&[&proof_with(&nonce)], &post(), NOW)
            .unwrap();
        issuer.rotate(NonceKey::generate().unwrap());
        let e = v
            .validate_sync(&[&proof_with(&nonce)], &post(), NOW)
            .unwrap_err();
        assert!(matches!(e, Error::NonceInvalid { .. }), "{e:?}");
        let fresh = e.fresh_nonce().unwrap().to_owned();
        v.validate_sync(&[&proof_with(&fresh)], &post(), NOW)
            .unwrap();
        // garbage and the RFC's example nonce are invalid too
        for bad in ["", "eyJ7S_zG.eyJH0-Z.HX4w-7v", "x"] {
            let e = v
                .validate_sync(&[&proof_with(bad)], &post(), NOW)
                .unwrap_err();
            assert!(matches!(e, Error::NonceInvalid { .. }), "{bad}");
        }
    });
}

#[test]
fn nonces_shared_between_instances() {
    each_client(|p, c| {
        let secret = [9u8; 32];
        let a = Arc::new(NonceIssuer::new(NonceKey::from_bytes(&secret)));
        let b = Arc::new(NonceIssuer::new(NonceKey::from_bytes(&secret)));
        let (va, vb) = (nonce_validator(p, &a), nonce_validator(p, &b));
        let proof = c.with_claims(|m| {
            m.insert("nonce".into(), json!(a.issue(NOW)));
        });
        vb.validate_sync(&[&proof], &post(), NOW + 30).unwrap();
        let proof = c.with_claims(|m| {
            m.insert("nonce".into(), json!(vb.fresh_nonce(NOW).unwrap()));
        });
        va.validate_sync(&[&proof], &post(), NOW).unwrap();
        // another key does not accept them
        let other = Arc::new(NonceIssuer::new(NonceKey::generate().unwrap()));
        let e = nonce_validator(p, &other)
            .validate_sync(&[&proof], &post(), NOW)
            .unwrap_err();
        assert!(matches!(e, Error::NonceInvalid { .. }));
    });
}

// ---- replay ----------------------------------------------------------------------------

#[test]
fn replayed_jti() {
    each_client(|p, c| {
        let v = validator(p);
        let proof = c.proof();
        v.validate_sync(&[&proof], &post(), NOW).unwrap();
        for later in [NOW, NOW + 30, NOW + 65] {
            let r = v.validate_sync(&[&proof], &post(), later);
            assert!(matches!(r, Err(Error::Replay)), "{later}");
        }
        // a new proof with the same jti and key is also a replay
        let jti = c.claims()["jti"].as_str().unwrap().to_owned();
        let a = c.with_claims(|m| {
            m.insert("jti".into(), json!(jti));
        });
        let b = c.with_claims(|m| {
            m.insert("jti".into(), json!(jti));
            m.insert("iat".into(), json!(NOW + 1));
        });
        v.validate_sync(&[&a], &post(), NOW).unwrap();
        assert!(matches!(
            v.validate_sync(&[&b], &post(), NOW),
            Err(Error::Replay)
        ));
        // the same jti under another key is not
        let other = Client::new(c.signer.algorithm(), p);
        let d = other.with_claims(|m| {
            m.insert("jti".into(), json!(jti));
        });
        v.validate_sync(&[&d], &post(), NOW).unwrap();
    });
}

#[test]
fn replay_across_instances_sharing_a_cache() {
    each_provider(|p| {
        let cache: Arc<dyn ReplayCache> = Arc::new(MemoryReplayCache::new());
        let a = Validator::new(ValidatorConfig::new(p.clone()), cache.clone());
        let b = Validator::new(ValidatorConfig::new(p.clone()), cache);
        let proof = Client::new(Algorithm::ES256, p).proof();
        a.validate_sync(&[&proof], &post(), NOW).unwrap();
        assert!(matches!(
            b.validate_sync(&[&proof], &post(), NOW),
            Err(Error::Replay)
        ));
    });
}

#[test]
fn concurrent_copies_exactly_one_passes() {
    each_client(|p, c| {
        let v = Arc::new(validator(p));
        let proof = Arc::new(c.proof());
        let barrier = Arc::new(std::sync::Barrier::new(64));
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let (v, proof, barrier) = (v.clone(), proof.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    v.validate_sync(&[&proof], &post(), NOW)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            results
                .iter()
                .filter(|r| r.is_err())
                .all(|r| matches!(r, Err(Error::Replay)))
        );
    });
}

#[test]
fn concurrent_copies_async_exactly_one_passes() {
    // The async API: 64 validate futures for copies of one proof, all created before any
    // is driven.
    each_provider(|p| {
        let v = validator(p);
        let proof = Client::new(Algorithm::EdDSA, p).proof();
        let proofs = [proof.as_str()];
        let request = post();
        let futures: Vec<_> = (0..64)
            .map(|_| Box::pin(v.validate(&proofs, &request, NOW)))
            .collect();
        let results: Vec<_> = futures.into_iter().map(token_dpop_block_on).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    });
}

#[test]
fn forged_proofs_never_reach_the_cache() {
    each_provider(|p| {
        let cache = Arc::new(MemoryReplayCache::with_capacity(16));
        let v = Validator::new(ValidatorConfig::new(p.clone()), cache.clone());
        let c = Client::new(Algorithm::ES256, p);
        for _ in 0..100 {
            let forged = replace_signature(&c.proof(), &[1u8; 64]);
            assert!(matches!(
                v.validate_sync(&[&forged], &post(), NOW),
                Err(Error::BadSignature)
            ));
        }
        assert!(cache.is_empty());
    });
}

#[test]
fn replay_cache_full_refuses() {
    each_provider(|p| {
        let cache = Arc::new(MemoryReplayCache::with_capacity(16));
        let v = Validator::new(ValidatorConfig::new(p.clone()), cache.clone());
        let c = Client::new(Algorithm::EdDSA, p);
        let mut full = 0;
        for _ in 0..400 {
            match v.validate_sync(&[&c.proof()], &post(), NOW) {
                Ok(_) => {}
                Err(e @ Error::ReplayCacheFull) => {
                    assert!(e.is_server_error());
                    assert_eq!(e.oauth_error(), "server_error");
                    full += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
            assert!(cache.len() <= 16);
        }
        assert_eq!(full, 400 - 16);
        // after the window, room again
        let proof = c.with_claims(|m| {
            m.insert("iat".into(), json!(NOW + 70));
        });
        v.validate_sync(&[&proof], &post(), NOW + 70).unwrap();
    });
}

#[derive(Debug)]
struct DownCache;

impl ReplayCache for DownCache {
    fn insert_if_absent<'a>(&'a self, _: &'a ReplayKey, _: i64, _: i64) -> ReplayFuture<'a> {
        Box::pin(async {
            Err(ReplayError::Unavailable(Box::new(std::io::Error::other(
                "connection refused",
            ))))
        })
    }
}

#[test]
fn replay_cache_unavailable() {
    each_provider(|p| {
        let v = Validator::new(ValidatorConfig::new(p.clone()), Arc::new(DownCache));
        let proof = Client::new(Algorithm::ES256, p).proof();
        let e = token_dpop_block_on(v.validate(&[&proof], &post(), NOW)).unwrap_err();
        assert!(matches!(e, Error::ReplayCacheUnavailable(_)));
        assert!(e.is_server_error());
        assert!(std::error::Error::source(&e).is_some());
        // no synchronous path: `validate_sync` refuses instead of waiting
        let e = v.validate_sync(&[&proof], &post(), NOW).unwrap_err();
        assert!(matches!(e, Error::ReplayCacheNotSynchronous), "{e:?}");
        assert!(e.is_server_error());
    });
}

// ---- errors ----------------------------------------------------------------------------

#[test]
fn errors_never_echo_the_proof() {
    each_provider(|p| {
        let c = Client::new(Algorithm::ES256, p);
        let marker = "SECRET-MARKER-123";
        let proofs = [
            c.with_claims(|m| {
                m.insert("htu".into(), json!(format!("https://{marker}/")));
            }),
            c.with_claims(|m| {
                m.insert("jti".into(), json!(marker.repeat(30)));
            }),
            c.with_claims(|m| {
                m.insert("htm".into(), json!(marker));
            }),
            c.sign_raw(
                c.header().to_string().as_bytes(),
                format!("{{\"{marker}\"").as_bytes(),
            ),
        ];
        for proof in &proofs {
            let e = run(p, proof).unwrap_err();
            let mut text = format!("{e} {e:?} {}", e.description());
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&s.to_string());
                source = s.source();
            }
            assert!(!text.contains(marker), "{text}");
            assert_eq!(e.oauth_error(), "invalid_dpop_proof");
        }
    });
}
