//! Property tests for token-dpop: proofs from random keys, methods, URIs and times validate;
//! any single-byte mutation of a proof is refused; URIs equivalent under RFC 3986
//! normalization are accepted and others refused; arbitrary input never panics; a request's
//! arbitrary header values are refused with a renderable rejection, and an extra value of any
//! bytes is always counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code, helpers included: a panic is a test failure"
)]

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use token_dpop::token_jwt::{self, CryptoProvider, all_providers};
use token_dpop::{
    Algorithm, Error, MemoryReplayCache, PrivateKey, ProofBuilder, Rejection, Request,
    RequestVerifier, ResourceRequest, Validator, ValidatorConfig, htu,
};

fn providers() -> &'static [Arc<dyn CryptoProvider>] {
    static P: OnceLock<Vec<Arc<dyn CryptoProvider>>> = OnceLock::new();
    P.get_or_init(all_providers)
}

fn validator(provider: &Arc<dyn CryptoProvider>) -> Validator {
    Validator::new(
        ValidatorConfig::new(provider.clone()),
        Arc::new(MemoryReplayCache::with_capacity(64)),
    )
}

/// One key per (algorithm, provider), made once: the properties vary everything else.
fn builders() -> &'static [(Arc<dyn CryptoProvider>, ProofBuilder)] {
    static B: OnceLock<Vec<(Arc<dyn CryptoProvider>, ProofBuilder)>> = OnceLock::new();
    B.get_or_init(|| {
        let mut out = Vec::new();
        for p in providers() {
            for alg in [Algorithm::ES256, Algorithm::EdDSA] {
                let key = PrivateKey::generate(alg).unwrap();
                out.push((p.clone(), ProofBuilder::new(&key, &**p).unwrap()));
            }
        }
        out
    })
}

// ---- URI strategies ---------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Uri {
    https: bool,
    host: String,
    port: Option<u16>,
    segments: Vec<String>,
    query: Option<String>,
    fragment: Option<String>,
}

impl Uri {
    fn render(&self) -> String {
        let mut s = format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.host
        );
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        for seg in &self.segments {
            s.push('/');
            s.push_str(seg);
        }
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        if let Some(f) = &self.fragment {
            s.push('#');
            s.push_str(f);
        }
        s
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }
}

fn segment() -> impl Strategy<Value = String> {
    // pchar without '%' (percent-encodings are added by the variants); no dot segments.
    "[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@-]{0,7}"
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        any::<bool>(),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,6}){0,2}",
        prop::option::of(1u16..),
        prop::collection::vec(segment(), 0..4),
        prop::option::of("[A-Za-z0-9=&%/?]{0,10}"),
        prop::option::of("[A-Za-z0-9/?#]{0,10}"),
    )
        .prop_map(|(https, host, port, segments, query, fragment)| Uri {
            https,
            host,
            port,
            segments,
            query,
            fragment,
        })
}

/// A rendering of `u` that is equivalent under the normalization, driven by `seed`.
fn equivalent_variant(u: &Uri, seed: &[u8]) -> String {
    let mut bits = seed
        .iter()
        .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1))
        .cycle();
    let mut next = move || bits.next().unwrap_or(false);
    let mut s = String::new();
    let scheme = if u.https { "https" } else { "http" };
    for c in scheme.chars() {
        s.push(if next() { c.to_ascii_uppercase() } else { c });
    }
    s.push_str("://");
    for c in u.host.chars() {
        s.push(if next() { c.to_ascii_uppercase() } else { c });
    }
    match u.port {
        Some(p) if p != u.default_port() => {
            s.push(':');
            if next() {
                s.push('0');
            }
            s.push_str(&p.to_string());
        }
        _ => {
            if next() {
                s.push_str(&format!(":{}", u.default_port()));
            } else if next() {
                s.push(':');
            }
        }
    }
    if u.segments.is_empty() {
        if next() {
            s.push('/');
        }
    } else {
        if next() {
            // a dot segment that cancels out
            s.push_str("/x/..");
        }
        for seg in &u.segments {
            s.push('/');
            for c in seg.chars() {
                let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
                if unreserved && next() {
                    let hex = format!("%{:02X}", c as u32);
                    s.push_str(&if next() { hex.to_lowercase() } else { hex });
                } else {
                    s.push(c);
                }
            }
        }
    }
    if next() {
        s.push_str("?q=1");
    }
    if next() {
        s.push_str("#frag");
    }
    s
}

/// A URI that is not equivalent to `u`, chosen by `which`.
fn different(u: &Uri, which: u8) -> Uri {
    let mut d = u.clone();
    match which % 5 {
        0 => d.host.push('x'),
        1 => d.segments.push("extra".into()),
        2 => {
            d.https = !d.https;
            // keep the explicit port meaningful so the difference is the scheme
            if d.port.is_none() {
                d.port = Some(8080);
            }
        }
        3 => {
            let current = d.port.unwrap_or(d.default_port());
            d.port = Some(if current == 8081 { 8082 } else { 8081 });
        }
        _ => match d.segments.first_mut() {
            Some(seg) => seg.push('Z'),
            None => d.segments.push("Z".into()),
        },
    }
    d
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"
        ])
        .prop_map(str::to_owned),
        "[A-Z]{1,12}",
    ]
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn built_proofs_validate(
        which in 0usize..4,
        method in method(),
        u in uri(),
        now in 0i64..4_000_000_000,
        age in -5i64..=65,
        token in prop::option::of("[ -~]{1,40}"),
        nonce in prop::option::of("[!#-\\[\\]-~]{1,40}"),
    ) {
        let (provider, builder) = &builders()[which % builders().len()];
        let uri = u.render();
        let proof = builder
            .proof(&method, &uri, token.as_deref(), nonce.as_deref(), now - age)
            .unwrap();
        let jkt = builder.jkt();
        let mut request = Request::new(&method, &uri).with_expected_jkt(&jkt);
        if let Some(token) = token.as_deref() {
            request = request.with_access_token(token);
        }
        let ok = validator(provider).validate_sync(&[&proof], &request, now).unwrap();
        prop_assert_eq!(ok.iat, now - age);
        prop_assert_eq!(ok.htm, method);
        prop_assert_eq!(ok.nonce, nonce);
    }

    #[test]
    fn any_single_byte_mutation_is_refused(
        which in 0usize..4,
        position in any::<prop::sample::Index>(),
        replacement in 0u8..0x80,
    ) {
        let (provider, builder) = &builders()[which % builders().len()];
        let proof = builder.proof("POST", "https://server.example.com/token", Some("at"), None, 1_700_000_000).unwrap();
        let mut bytes = proof.clone().into_bytes();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let request = Request::new("POST", "https://server.example.com/token");
        let v = validator(provider);
        let mutated = String::from_utf8(bytes).unwrap();
        let r = v.validate_sync(&[&mutated], &request.with_access_token("at"), 1_700_000_000);
        prop_assert!(r.is_err(), "mutation at {} accepted", i);
        // the original still validates
        v.validate_sync(&[&proof], &request.with_access_token("at"), 1_700_000_000).unwrap();
    }

    #[test]
    fn equivalent_uris_are_accepted(
        which in 0usize..4,
        u in uri(),
        seed_a in prop::collection::vec(any::<u8>(), 8),
        seed_b in prop::collection::vec(any::<u8>(), 8),
    ) {
        let (provider, builder) = &builders()[which % builders().len()];
        let a = equivalent_variant(&u, &seed_a);
        let b = equivalent_variant(&u, &seed_b);
        prop_assert_eq!(htu::normalize(&a), htu::normalize(&u.render()));
        let proof = builder.proof("GET", &a, None, None, 1_700_000_000).unwrap();
        validator(provider)
            .validate_sync(&[&proof], &Request::new("GET", &b), 1_700_000_000)
            .unwrap();
    }

    #[test]
    fn non_equivalent_uris_are_refused(
        which in 0usize..4,
        u in uri(),
        how in any::<u8>(),
        seed in prop::collection::vec(any::<u8>(), 8),
    ) {
        let (provider, builder) = &builders()[which % builders().len()];
        let other = different(&u, how);
        prop_assert_ne!(htu::normalize(&u.render()), htu::normalize(&other.render()));
        let proof = builder.proof("GET", &equivalent_variant(&u, &seed), None, None, 1_700_000_000).unwrap();
        let r = validator(provider)
            .validate_sync(&[&proof], &Request::new("GET", &other.render()), 1_700_000_000);
        prop_assert!(matches!(r, Err(Error::HtuMismatch)), "{:?}", r);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn normalization_is_idempotent_and_total(s in "\\PC{0,60}") {
        if let Some(n) = htu::normalize(&s) {
            prop_assert_eq!(htu::normalize(&n), Some(n.clone()));
            prop_assert!(n.starts_with("http://") || n.starts_with("https://"));
            prop_assert!(!n.contains('?') && !n.contains('#'));
        }
    }

    #[test]
    fn normalized_variants_agree(u in uri(), seed in prop::collection::vec(any::<u8>(), 8)) {
        let n = htu::normalize(&u.render()).unwrap();
        prop_assert_eq!(htu::normalize(&equivalent_variant(&u, &seed)), Some(n));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        token_dpop::fuzzing::validate_proof(&data);
    }

    #[test]
    fn proof_shaped_garbage_never_panics(
        h in "[A-Za-z0-9_-]{0,120}",
        p in "[A-Za-z0-9_-]{0,120}",
        s in "[A-Za-z0-9_-]{0,100}",
    ) {
        token_dpop::fuzzing::validate_proof(format!("{h}.{p}.{s}").as_bytes());
    }

    #[test]
    fn json_shaped_garbage_never_panics(header in "\\PC{0,80}", payload in "\\PC{0,80}") {
        let proof = format!(
            "{}.{}.{}",
            token_jwt::base64url::encode(header),
            token_jwt::base64url::encode(payload),
            token_jwt::base64url::encode([7u8; 64])
        );
        token_dpop::fuzzing::validate_proof(proof.as_bytes());
    }
}

// ---- one-call request verification --------------------------------------------------------

const RS_URI: &str = "https://rs.example/items";

/// A resource server accepting both schemes, a DPoP-bound token and a valid proof for it.
struct Resource {
    verifier: RequestVerifier,
    authorization: String,
    proof: String,
}

fn resource() -> &'static Resource {
    static R: OnceLock<Resource> = OnceLock::new();
    R.get_or_init(|| {
        let provider: Arc<dyn CryptoProvider> = Arc::new(token_jwt::RustCryptoProvider::new());
        let issuer = provider
            .signer(&PrivateKey::generate(Algorithm::ES256).unwrap())
            .unwrap();
        let jwks = token_jwt::JwkSet::new(vec![issuer.public_jwk().clone()]);
        let keys = Arc::new(token_jwt::KeySet::from_jwks(&jwks, &*provider).unwrap());
        let client = &builders()[0].1;
        let claims = token_jwt::AccessTokenBuilder::new("https://as.example", 300)
            .dpop_jkt(client.jkt())
            .scopes(["read"])
            .build(1_700_000_000)
            .unwrap();
        let token = token_jwt::JwsEncoder::for_signer(&*issuer, "at+jwt")
            .encode(&claims, &*issuer)
            .unwrap();
        let proof = client
            .proof("GET", RS_URI, Some(&token), None, 1_700_000_000)
            .unwrap();
        Resource {
            verifier: RequestVerifier::new(
                token_jwt::Policy::default(),
                keys,
                Arc::new(validator(&provider)),
            ),
            authorization: format!("DPoP {token}"),
            proof,
        }
    })
}

/// Whatever the refusal, it renders a status and challenges that are valid header values.
fn rendered(rejection: &Rejection) -> Result<(), TestCaseError> {
    prop_assert!([400, 401, 403, 500].contains(&rejection.status()));
    let challenges = rejection.challenges();
    prop_assert!(!challenges.is_empty());
    for c in challenges {
        prop_assert!(c.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", c);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_request_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        token_dpop::fuzzing::verify_request(&data);
    }

    #[test]
    fn arbitrary_header_values_are_refused_and_rendered(
        authorization in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..3),
        proofs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..3),
    ) {
        let request = ResourceRequest::new(
            authorization.iter().map(Vec::as_slice),
            proofs.iter().map(Vec::as_slice),
            "GET",
            RS_URI,
        );
        let rejection = resource().verifier.verify_sync(&request, 1_700_000_000).unwrap_err();
        rendered(&rejection)?;
        match authorization.len() {
            0 => prop_assert!(matches!(rejection.error(), Error::MissingAuthorization)),
            1 => {}
            _ => prop_assert!(matches!(rejection.error(), Error::MultipleAuthorizations)),
        }
    }

    #[test]
    fn scheme_shaped_garbage_is_refused_and_rendered(
        scheme in "(Bearer|DPoP|bearer|dpop|Basic|)",
        space in "[ \t]{0,3}",
        token in "[A-Za-z0-9._~+/=-]{0,300}",
        proof in "[A-Za-z0-9._-]{0,300}",
    ) {
        let authorization = format!("{scheme}{space}{token}");
        let request = ResourceRequest::new(
            [authorization.as_bytes()],
            [proof.as_bytes()],
            "GET",
            RS_URI,
        );
        let rejection = resource().verifier.verify_sync(&request, 1_700_000_000).unwrap_err();
        rendered(&rejection)?;
    }

    #[test]
    fn an_extra_header_value_of_any_bytes_is_refused(
        extra in prop::collection::vec(any::<u8>(), 0..100),
        on_authorization in any::<bool>(),
        extra_first in any::<bool>(),
    ) {
        let r = resource();
        let mut authorization = vec![r.authorization.as_bytes()];
        let mut proofs = vec![r.proof.as_bytes()];
        let target = if on_authorization { &mut authorization } else { &mut proofs };
        if extra_first {
            target.insert(0, extra.as_slice());
        } else {
            target.push(extra.as_slice());
        }
        let request = ResourceRequest::new(
            authorization.iter().copied(),
            proofs.iter().copied(),
            "GET",
            RS_URI,
        );
        let rejection = r.verifier.verify_sync(&request, 1_700_000_000).unwrap_err();
        if on_authorization {
            prop_assert!(matches!(rejection.error(), Error::MultipleAuthorizations));
        } else {
            prop_assert!(matches!(rejection.error(), Error::MultipleProofs));
        }
        rendered(&rejection)?;
    }
}
