//! Property tests for token-jwt: sign → verify round trips for arbitrary claims with every
//! algorithm and provider; any single bit flipped anywhere in a token makes verification
//! fail; the parsers never panic on arbitrary input (the published-key reader included, on
//! arbitrary, PEM-shaped and mutated-key input).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use token_jwt::{
    Algorithm, Claims, CryptoProvider, Jwk, JwkSet, JwsEncoder, JwsSigner, KeySet, Policy,
    PrivateKey, UnverifiedJws, all_providers,
};

struct Setup {
    signer: Arc<dyn JwsSigner>,
    keys: KeySet,
}

/// One key per (algorithm, provider), generated once.
fn setups() -> &'static Vec<Setup> {
    static S: OnceLock<Vec<Setup>> = OnceLock::new();
    S.get_or_init(|| {
        let mut v = Vec::new();
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::ES384] {
            let key = PrivateKey::generate(alg).unwrap();
            for p in all_providers() {
                let signer = p.signer(&key).unwrap();
                let keys =
                    KeySet::from_jwks(&JwkSet::new(vec![signer.public_jwk().clone()]), &p).unwrap();
                v.push(Setup { signer, keys });
            }
        }
        v
    })
}

/// `der` as a PEM document with this label (base64 in 64-column lines, as RFC 7468 asks).
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// SubjectPublicKeyInfo DER of a generated P-256, P-384 and Ed25519 key and of a 2048-bit RSA
/// modulus.
fn spki_ders() -> &'static Vec<Vec<u8>> {
    use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let der = |alg| PrivateKey::generate(alg).unwrap().pkcs8_der().to_vec();
        let rsa = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&[0xc5; 256]),
            rsa::BigUint::from_bytes_be(&[1, 0, 1]),
        )
        .unwrap();
        [
            p256::SecretKey::from_pkcs8_der(&der(Algorithm::ES256))
                .unwrap()
                .public_key()
                .to_public_key_der(),
            p384::SecretKey::from_pkcs8_der(&der(Algorithm::ES384))
                .unwrap()
                .public_key()
                .to_public_key_der(),
            ed25519_dalek::SigningKey::from_pkcs8_der(&der(Algorithm::EdDSA))
                .unwrap()
                .verifying_key()
                .to_public_key_der(),
            rsa.to_public_key_der(),
        ]
        .into_iter()
        .map(|doc| {
            let doc = doc.unwrap();
            let bytes = doc.as_bytes().to_vec();
            // Unmutated, each one is accepted.
            assert!(Jwk::from_public_key_text(&pem("PUBLIC KEY", &bytes)).is_ok());
            bytes
        })
        .collect()
    })
}

fn policy() -> Policy {
    Policy::builder().leeway(0).build()
}

const NOW: i64 = 1_700_000_000;

prop_compose! {
    fn arb_claims()(
        sub in proptest::option::of("\\PC{0,40}"),
        aud in proptest::collection::vec("[a-z:/.]{1,20}", 0..4),
        scopes in proptest::collection::vec("[a-z:]{1,10}", 0..5),
        ttl in 1i64..100_000,
        jkt in proptest::option::of("[A-Za-z0-9_-]{43}"),
        custom in proptest::collection::btree_map("x_[a-z]{1,8}", any::<i32>(), 0..4),
        amr in proptest::option::of(proptest::collection::vec("[a-z]{1,6}", 0..3)),
    ) -> Claims {
        let mut b = token_jwt::AccessTokenBuilder::new("https://issuer.example", ttl as u64)
            .audience(aud)
            .scopes(scopes);
        if let Some(s) = sub { b = b.subject(s); }
        if let Some(j) = jkt { b = b.dpop_jkt(j); }
        if let Some(a) = amr { b = b.amr(a); }
        for (k, v) in custom { b = b.claim(k, v).unwrap(); }
        b.build(NOW).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_round_trips(claims in arb_claims(), which in 0usize..6) {
        let s = &setups()[which % setups().len()];
        let token = JwsEncoder::for_signer(&*s.signer, "at+jwt").encode(&claims, &*s.signer).unwrap();
        let v = policy().verify(&token, &s.keys, NOW).unwrap();
        prop_assert_eq!(v.claims(), &claims);
        prop_assert_eq!(v.algorithm(), s.signer.algorithm());
    }

    #[test]
    fn flipping_any_bit_breaks_verification(claims in arb_claims(), which in 0usize..6, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let s = &setups()[which % setups().len()];
        let token = JwsEncoder::for_signer(&*s.signer, "at+jwt").encode(&claims, &*s.signer).unwrap();
        let mut bytes = token.into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        // A flipped bit may make the text invalid UTF-8: that is refused before parsing.
        if let Ok(mutated) = String::from_utf8(bytes) {
            prop_assert!(policy().verify(&mutated, &s.keys, NOW).is_err());
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
        let _ = UnverifiedJws::parse(&s);
        let _ = policy().verify(&s, &setups()[0].keys, NOW);
    }

    #[test]
    fn parser_never_panics_on_token_shaped_input(
        h in proptest::collection::vec(any::<u8>(), 0..200),
        p in proptest::collection::vec(any::<u8>(), 0..200),
        sig in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let b = |x: &[u8]| token_jwt::base64url::encode(x);
        let token = format!("{}.{}.{}", b(&h), b(&p), b(&sig));
        let _ = policy().verify(&token, &setups()[0].keys, NOW);
    }

    #[test]
    fn json_headers_never_panic(json in "\\{(\"[a-z]{1,4}\":(\"[A-Za-z0-9]{0,8}\"|[0-9]{1,4}|\\{\\}|\\[\\]|null|true),?){0,6}\\}") {
        let b = |x: &[u8]| token_jwt::base64url::encode(x);
        let token = format!("{}.{}.AAAA", b(json.as_bytes()), b(b"{}"));
        let _ = UnverifiedJws::parse(&token);
        let _ = Jwk::from_json(json.as_bytes());
        let _ = JwkSet::from_json(json.as_bytes());
    }

    #[test]
    fn jwk_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(jwk) = Jwk::from_json(&bytes) {
            let _ = jwk.thumbprint();
            for p in all_providers() {
                for alg in Algorithm::ALL {
                    let _ = p.verifying_key(&jwk, alg);
                }
            }
        }
        let _ = JwkSet::from_json(&bytes);
        let _ = PrivateKey::from_jwk(&bytes);
        let _ = PrivateKey::from_pkcs8_der(&bytes);
    }

    #[test]
    fn public_key_reader_never_panics_on_arbitrary_text(s in "\\PC{0,600}") {
        // Also checks that whatever is accepted verifies and reads back from its JWK text.
        token_jwt::fuzzing::parse_public_key(s.as_bytes());
        let _ = Jwk::from_public_pem(&s);
    }

    #[test]
    fn public_key_reader_never_panics_on_pem_shaped_input(
        label in prop_oneof![
            Just("PUBLIC KEY".to_owned()),
            Just("PRIVATE KEY".to_owned()),
            Just("RSA PUBLIC KEY".to_owned()),
            Just("CERTIFICATE".to_owned()),
            "[A-Z ]{0,12}",
        ],
        der in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let pem = pem(&label, &der);
        token_jwt::fuzzing::parse_public_key(pem.as_bytes());
        prop_assert!(Jwk::from_public_key_text(&pem).is_err() || label == "PUBLIC KEY");
    }

    #[test]
    fn public_key_reader_never_panics_on_mutated_keys(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut der = spki_ders()[which % spki_ders().len()].clone();
        for (at, byte) in edits {
            let i = at.index(der.len());
            der[i] = byte;
        }
        if truncate {
            der.truncate(cut.index(der.len()));
        }
        token_jwt::fuzzing::parse_public_key(pem("PUBLIC KEY", &der).as_bytes());
    }

    #[test]
    fn verifiers_never_panic_on_arbitrary_signatures(msg in proptest::collection::vec(any::<u8>(), 0..64), sig in proptest::collection::vec(any::<u8>(), 0..130), which in 0usize..6) {
        let s = &setups()[which % setups().len()];
        for p in all_providers() {
            let v = p.verifying_key(s.signer.public_jwk(), s.signer.algorithm()).unwrap();
            prop_assert!(v.verify(&msg, &sig).is_err());
        }
    }
}
