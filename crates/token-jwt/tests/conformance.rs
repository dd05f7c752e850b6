//! Conformance of token-jwt against published vectors, for every provider compiled in:
//! RFC 7515 A.3 (ES256), RFC 8037 A.1-A.4 (Ed25519), RFC 7638 3.1 (thumbprint), Wycheproof
//! signature edge cases, and cross-checks with josekit (an independent JOSE implementation)
//! in both directions.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::Arc;

use serde_json::Value;
use token_jwt::{
    AccessTokenBuilder, Algorithm, CryptoProvider, Jwk, JwkSet, JwsEncoder, KeySet, Policy,
    PrivateKey, UnverifiedJws, all_providers,
};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/rfc-vectors.json")).unwrap()
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn rfc7515_a3_es256_verifies_with_every_provider() {
    let v = &vectors()["rfc7515_a3_es256"];
    let token = v["jws_compact"].as_str().unwrap();
    let mut public = v["jwk_private"].clone();
    public.as_object_mut().unwrap().remove("d");
    let jwk = Jwk::from_json(&json_bytes(&public)).unwrap();
    for provider in all_providers() {
        let key = provider.verifying_key(&jwk, Algorithm::ES256).unwrap();
        let jws = UnverifiedJws::parse(token).unwrap();
        let verified = jws.verify_signature(key.as_ref()).unwrap();
        assert_eq!(
            verified.payload(),
            v["payload_utf8_exact"].as_str().unwrap().as_bytes(),
            "{}",
            provider.name()
        );
        // One bit of the signature changed: refused.
        let mut bad = token.to_owned();
        let last = bad.pop().unwrap();
        bad.push(if last == 'Q' { 'R' } else { 'Q' });
        let jws = UnverifiedJws::parse(&bad);
        assert!(
            jws.map(|j| j.verify_signature(key.as_ref())).is_err()
                || UnverifiedJws::parse(&bad)
                    .unwrap()
                    .verify_signature(key.as_ref())
                    .is_err()
        );
    }
    // The private JWK loads and its kid is the thumbprint.
    let key = PrivateKey::from_jwk(&json_bytes(&v["jwk_private"])).unwrap();
    assert_eq!(
        key.key_id(),
        v["computed_thumbprint_not_in_rfc"].as_str().unwrap()
    );
}

#[test]
fn rfc8037_ed25519_signing_reproduces_the_published_jws() {
    let v = &vectors()["rfc8037_ed25519"];
    let key = PrivateKey::from_jwk(&json_bytes(&v["private_jwk"])).unwrap();
    assert_eq!(
        key.key_id(),
        v["expected_thumbprint_sha256_b64url"].as_str().unwrap()
    );
    let expected = v["jws_compact"].as_str().unwrap();
    let payload = v["jws_payload_utf8"].as_str().unwrap();
    let signing_input = format!(
        "{}.{}",
        token_jwt::base64url::encode(r#"{"alg":"EdDSA"}"#),
        token_jwt::base64url::encode(payload)
    );
    for provider in all_providers() {
        let signer = provider.signer(&key).unwrap();
        let sig = signer.sign(signing_input.as_bytes()).unwrap();
        let token = format!("{signing_input}.{}", token_jwt::base64url::encode(&sig));
        assert_eq!(
            token,
            expected,
            "{} must reproduce RFC 8037 A.4",
            provider.name()
        );
        let public = Jwk::from_json(&json_bytes(&v["public_jwk"])).unwrap();
        let verifier = provider.verifying_key(&public, Algorithm::EdDSA).unwrap();
        UnverifiedJws::parse(expected)
            .unwrap()
            .verify_signature(verifier.as_ref())
            .unwrap();
    }
}

#[test]
fn rfc7638_thumbprints() {
    let all = vectors();
    let v = &all["rfc7638_3_1_rsa_thumbprint"];
    let jwk = Jwk::from_json(&json_bytes(&v["jwk"])).unwrap();
    assert_eq!(
        jwk.thumbprint(),
        v["expected_thumbprint_sha256_b64url"].as_str().unwrap()
    );
    // Member order and optional members do not matter.
    let reordered = format!(
        r#"{{"e":"AQAB","n":"{}","kty":"RSA"}}"#,
        v["jwk"]["n"].as_str().unwrap()
    );
    assert_eq!(
        Jwk::from_json(reordered.as_bytes()).unwrap().thumbprint(),
        jwk.thumbprint()
    );
    let ed = &all["rfc8037_ed25519"];
    assert_eq!(
        Jwk::from_json(&json_bytes(&ed["public_jwk"]))
            .unwrap()
            .thumbprint(),
        ed["expected_thumbprint_sha256_b64url"].as_str().unwrap()
    );
    let d = &all["rfc9449_dpop_public_key_and_jkt"];
    if let (Some(jwk), Some(jkt)) = (d.get("jwk"), d.get("jkt").and_then(Value::as_str)) {
        assert_eq!(Jwk::from_json(&json_bytes(jwk)).unwrap().thumbprint(), jkt);
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A JWK from Wycheproof's raw key fields, for the groups that carry no JWK.
fn jwk_from_raw(key: &Value) -> Value {
    if let Some(point) = key["uncompressed"].as_str() {
        let point = hex(point);
        let n = (point.len() - 1) / 2;
        let crv = if n == 32 { "P-256" } else { "P-384" };
        serde_json::json!({
            "kty": "EC", "crv": crv,
            "x": token_jwt::base64url::encode(&point[1..=n]),
            "y": token_jwt::base64url::encode(&point[n + 1..]),
        })
    } else {
        let strip = |s: &str| {
            let b = hex(s);
            let skip = b.iter().take_while(|x| **x == 0).count();
            token_jwt::base64url::encode(&b[skip..])
        };
        serde_json::json!({
            "kty": "RSA",
            "n": strip(key["modulus"].as_str().unwrap()),
            "e": strip(key["publicExponent"].as_str().unwrap()),
        })
    }
}

/// Runs one Wycheproof file: every `valid` case verifies, every `invalid` one is refused;
/// `acceptable` cases may go either way. A key the provider refuses must have no valid case.
fn wycheproof(file: &str, alg: Algorithm) {
    let data: Value = serde_json::from_str(file).unwrap();
    for provider in all_providers() {
        let (mut valid, mut invalid) = (0, 0);
        for group in data["testGroups"].as_array().unwrap() {
            let mut jwk = group
                .get("publicKeyJwk")
                .or_else(|| group.get("keyJwk"))
                .cloned()
                .unwrap_or_else(|| jwk_from_raw(&group["publicKey"]));
            let obj = jwk.as_object_mut().unwrap();
            obj.remove("kid");
            obj.insert("alg".into(), alg.as_str().into());
            let key =
                Jwk::from_json(&json_bytes(&jwk)).and_then(|jwk| provider.verifying_key(&jwk, alg));
            for case in group["tests"].as_array().unwrap() {
                let result = case["result"].as_str().unwrap();
                let ok = key.as_ref().is_ok_and(|k| {
                    k.verify(
                        &hex(case["msg"].as_str().unwrap()),
                        &hex(case["sig"].as_str().unwrap()),
                    )
                    .is_ok()
                });
                match result {
                    "valid" => {
                        valid += 1;
                        assert!(
                            ok,
                            "{} {alg} tcId {} ({}) must verify",
                            provider.name(),
                            case["tcId"],
                            case["comment"]
                        );
                    }
                    "invalid" => {
                        invalid += 1;
                        assert!(
                            !ok,
                            "{} {alg} tcId {} ({}) must be refused",
                            provider.name(),
                            case["tcId"],
                            case["comment"]
                        );
                    }
                    _ => {}
                }
            }
        }
        assert!(valid > 0 && invalid > 0, "the file exercised both outcomes");
    }
}

#[test]
fn wycheproof_ecdsa_p256_p1363() {
    wycheproof(
        include_str!("data/wycheproof/ecdsa_secp256r1_sha256_p1363_test.json"),
        Algorithm::ES256,
    );
}

#[test]
fn wycheproof_ecdsa_p384_p1363() {
    wycheproof(
        include_str!("data/wycheproof/ecdsa_secp384r1_sha384_p1363_test.json"),
        Algorithm::ES384,
    );
}

#[test]
fn wycheproof_ed25519() {
    wycheproof(
        include_str!("data/wycheproof/ed25519_test.json"),
        Algorithm::EdDSA,
    );
}

#[test]
fn wycheproof_rsa_pkcs1_2048_sha256() {
    wycheproof(
        include_str!("data/wycheproof/rsa_signature_2048_sha256_test.json"),
        Algorithm::RS256,
    );
}

#[test]
fn wycheproof_rsa_pss_2048_sha256_salt32() {
    wycheproof(
        include_str!("data/wycheproof/rsa_pss_2048_sha256_mgf1_32_test.json"),
        Algorithm::PS256,
    );
}

// ---- josekit cross-checks -----------------------------------------------------------------

const NOW: i64 = 1_700_000_000;

fn josekit_now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW as u64)
}

#[test]
fn tokens_we_sign_verify_in_josekit() {
    for provider in all_providers() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let key = PrivateKey::generate(alg).unwrap();
            let signer = provider.signer(&key).unwrap();
            let claims = AccessTokenBuilder::new("https://issuer.example", 300)
                .subject("alice")
                .audience(["api"])
                .build(NOW)
                .unwrap();
            let token = JwsEncoder::for_signer(&*signer, "at+jwt")
                .encode(&claims, &*signer)
                .unwrap();
            let jwk = josekit::jwk::Jwk::from_bytes(signer.public_jwk().to_json()).unwrap();
            let (payload, header) = match alg {
                Algorithm::ES256 => {
                    let v = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
                    josekit::jwt::decode_with_verifier(&token, &v).unwrap()
                }
                _ => {
                    let v = josekit::jws::EdDSA.verifier_from_jwk(&jwk).unwrap();
                    josekit::jwt::decode_with_verifier(&token, &v).unwrap()
                }
            };
            assert_eq!(header.token_type(), Some("at+jwt"));
            assert_eq!(payload.subject(), Some("alice"));
            assert_eq!(
                payload.expires_at(),
                Some(josekit_now() + std::time::Duration::from_secs(300))
            );
        }
    }
}

#[test]
fn josekit_tokens_verify_here() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        // Keys generated by josekit (OpenSSL) load here from their PKCS#8 PEM.
        let pem = match alg {
            Algorithm::ES256 => josekit::jws::ES256
                .generate_key_pair()
                .unwrap()
                .to_pem_private_key(),
            _ => josekit::jws::EdDSA
                .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
                .unwrap()
                .to_pem_private_key(),
        };
        let ours = PrivateKey::from_pkcs8_pem(std::str::from_utf8(&pem).unwrap()).unwrap();
        let mut header = josekit::jws::JwsHeader::new();
        header.set_token_type("at+jwt");
        header.set_key_id(ours.key_id());
        let mut payload = josekit::jwt::JwtPayload::new();
        payload.set_subject("bob");
        payload.set_issuer("https://issuer.example");
        payload.set_issued_at(&josekit_now());
        payload.set_expires_at(&(josekit_now() + std::time::Duration::from_secs(60)));
        let token = match alg {
            Algorithm::ES256 => {
                let s = josekit::jws::ES256.signer_from_pem(&pem).unwrap();
                josekit::jwt::encode_with_signer(&payload, &header, &s).unwrap()
            }
            _ => {
                let s = josekit::jws::EdDSA.signer_from_pem(&pem).unwrap();
                josekit::jwt::encode_with_signer(&payload, &header, &s).unwrap()
            }
        };
        for provider in all_providers() {
            let keys = KeySet::from_jwks(&JwkSet::new(vec![ours.public_jwk().clone()]), &provider)
                .unwrap();
            let policy = Policy::builder().issuer("https://issuer.example").build();
            let v = policy.verify(&token, &Arc::new(keys), NOW + 10).unwrap();
            assert_eq!(
                v.claims().sub.as_deref(),
                Some("bob"),
                "{}",
                provider.name()
            );
            assert!(matches!(
                policy.verify(&token, &KeySet::new(), NOW + 10),
                Err(token_jwt::Error::UnknownKeyId)
            ));
        }
    }
}
