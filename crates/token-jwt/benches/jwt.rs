//! Minting and verifying a typical access token, per algorithm and provider, next to the raw
//! signature primitive and to `jsonwebtoken` (aws-lc-rs backend) and `josekit` doing the same
//! job in the same run. Ratios are computed from these figures by `cargo xtask bench`.
//!
//! Run: `cargo bench -p token-jwt --all-features --bench jwt`

#![allow(clippy::unwrap_used, reason = "bench code: a failure should panic")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use criterion::{Criterion, criterion_group, criterion_main};
use token_jwt::{
    AccessTokenBuilder, Algorithm, AwsLcProvider, CryptoProvider, JwkSet, JwsEncoder, KeySet,
    Policy, PrivateKey, RustCryptoProvider,
};

const ISS: &str = "https://issuer.example";
const AUD: &str = "https://api.example";
const TTL: u64 = 900;

fn now() -> i64 {
    // Benchmarks may read the clock; jsonwebtoken reads it internally anyway.
    #[allow(clippy::disallowed_methods, reason = "benchmark, not library code")]
    let t = SystemTime::now();
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn typical(now: i64) -> AccessTokenBuilder {
    AccessTokenBuilder::new(ISS, TTL)
        .subject("user-1234567890")
        .client_id("web-app")
        .audience([AUD])
        .scopes(["openid", "profile", "orders:read", "orders:write"])
        .session_id("fam_3kTMd2vNfQ7a")
        .auth_time(now - 60)
}

fn bench_alg(c: &mut Criterion, alg: Algorithm) {
    let now = now();
    let key = PrivateKey::generate(alg).unwrap();
    let name = alg.as_str();
    let mut group = c.benchmark_group(format!("jwt/{name}"));

    // A token's signing input, for the raw primitives.
    let lc_provider = AwsLcProvider::new();
    let signer = lc_provider.signer(&key).unwrap();
    let enc = JwsEncoder::for_signer(&*signer, "at+jwt");
    let claims = typical(now).build(now).unwrap();
    let input = enc.signing_input(&claims).unwrap();
    let token = enc.encode(&claims, &*signer).unwrap();
    let sig = token_jwt::base64url::decode(&token[token.rfind('.').unwrap() + 1..]).unwrap();

    // ---- raw primitives ----------------------------------------------------------------
    let rng = SystemRandom::new();
    match alg {
        Algorithm::ES256 => {
            let kp =
                lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8_der())
                    .unwrap();
            group.bench_function("raw-sign/aws-lc-rs", |b| {
                b.iter(|| kp.sign(&rng, black_box(input.as_bytes())).unwrap())
            });
            let pk =
                lc::ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, kp.public_key().as_ref())
                    .unwrap();
            group.bench_function("raw-verify/aws-lc-rs", |b| {
                b.iter(|| pk.verify_sig(black_box(input.as_bytes()), &sig).unwrap())
            });
            use p256::pkcs8::DecodePrivateKey;
            use signature::{Signer, Verifier};
            let sk = p256::ecdsa::SigningKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
            group.bench_function("raw-sign/rustcrypto", |b| {
                b.iter(|| -> p256::ecdsa::Signature { sk.sign(black_box(input.as_bytes())) })
            });
            let vk = *sk.verifying_key();
            let s = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            group.bench_function("raw-verify/rustcrypto", |b| {
                b.iter(|| vk.verify(black_box(input.as_bytes()), &s).unwrap())
            });
        }
        _ => {
            let kp = lc::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.pkcs8_der()).unwrap();
            group.bench_function("raw-sign/aws-lc-rs", |b| {
                b.iter(|| kp.sign(black_box(input.as_bytes())))
            });
            let pk = lc::ParsedPublicKey::new(&lc::ED25519, kp.public_key().as_ref()).unwrap();
            group.bench_function("raw-verify/aws-lc-rs", |b| {
                b.iter(|| pk.verify_sig(black_box(input.as_bytes()), &sig).unwrap())
            });
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            use signature::Signer;
            let sk = ed25519_dalek::SigningKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
            group.bench_function("raw-sign/rustcrypto", |b| {
                b.iter(|| -> ed25519_dalek::Signature { sk.sign(black_box(input.as_bytes())) })
            });
            let vk = sk.verifying_key();
            let s = ed25519_dalek::Signature::from_slice(&sig).unwrap();
            group.bench_function("raw-verify/rustcrypto", |b| {
                b.iter(|| vk.verify_strict(black_box(input.as_bytes()), &s).unwrap())
            });
        }
    }

    // ---- token-jwt, per provider -------------------------------------------------------
    let providers: [Arc<dyn CryptoProvider>; 2] = [
        Arc::new(AwsLcProvider::new()),
        Arc::new(RustCryptoProvider::new()),
    ];
    for p in providers {
        let signer = p.signer(&key).unwrap();
        let enc = JwsEncoder::for_signer(&*signer, "at+jwt");
        group.bench_function(format!("mint/token-jwt/{}", p.name()), |b| {
            b.iter(|| {
                let claims = typical(now).build(black_box(now)).unwrap();
                enc.encode(&claims, &*signer).unwrap()
            })
        });
        let keys = KeySet::from_jwks(&JwkSet::new(vec![signer.public_jwk().clone()]), &p).unwrap();
        let policy = Policy::builder().issuer(ISS).audience(AUD).build();
        group.bench_function(format!("verify/token-jwt/{}", p.name()), |b| {
            b.iter(|| policy.verify(black_box(&token), &keys, now).unwrap())
        });
    }

    // ---- jsonwebtoken (aws-lc-rs backend) ----------------------------------------------
    {
        use jsonwebtoken as jwt;
        let (jalg, ek) = match alg {
            Algorithm::ES256 => (
                jwt::Algorithm::ES256,
                jwt::EncodingKey::from_ec_der(key.pkcs8_der()),
            ),
            _ => (
                jwt::Algorithm::EdDSA,
                jwt::EncodingKey::from_ed_der(key.pkcs8_der()),
            ),
        };
        let mut header = jwt::Header::new(jalg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.key_id().to_owned());
        group.bench_function("mint/jsonwebtoken", |b| {
            b.iter(|| {
                let claims = typical(now).build(black_box(now)).unwrap();
                jwt::encode(&header, &claims, &ek).unwrap()
            })
        });
        let jwk: jwt::jwk::Jwk = serde_json::from_str(&signer.public_jwk().to_json()).unwrap();
        let dk = jwt::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jwt::Validation::new(jalg);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        group.bench_function("verify/jsonwebtoken", |b| {
            b.iter(|| {
                jwt::decode::<serde_json::Value>(black_box(&token), &dk, &validation).unwrap()
            })
        });
    }

    // ---- josekit (OpenSSL) --------------------------------------------------------------
    {
        use josekit::jws::{ES256, EdDSA, JwsHeader};
        use josekit::jwt::{self, JwtPayload, JwtPayloadValidator};
        let pem = key.to_pkcs8_pem().unwrap();
        let mut header = JwsHeader::new();
        header.set_token_type("at+jwt");
        header.set_key_id(key.key_id());
        let jwk = josekit::jwk::Jwk::from_bytes(signer.public_jwk().to_json()).unwrap();
        let to_payload = |c: &token_jwt::Claims| {
            let serde_json::Value::Object(m) = serde_json::to_value(c).unwrap() else {
                unreachable!()
            };
            JwtPayload::from_map(m).unwrap()
        };
        let mut validator = JwtPayloadValidator::new();
        validator.set_issuer(ISS);
        validator.set_audience(AUD);
        validator.set_base_time(UNIX_EPOCH + Duration::from_secs(now as u64));
        match alg {
            Algorithm::ES256 => {
                let s = ES256.signer_from_pem(pem.as_bytes()).unwrap();
                group.bench_function("mint/josekit", |b| {
                    b.iter(|| {
                        let claims = typical(now).build(black_box(now)).unwrap();
                        jwt::encode_with_signer(&to_payload(&claims), &header, &s).unwrap()
                    })
                });
                let v = ES256.verifier_from_jwk(&jwk).unwrap();
                group.bench_function("verify/josekit", |b| {
                    b.iter(|| {
                        let (p, _) = jwt::decode_with_verifier(black_box(&token), &v).unwrap();
                        validator.validate(&p).unwrap()
                    })
                });
            }
            _ => {
                // josekit reads only PKCS#8 v1 Ed25519 keys (ed25519-dalek writes v2): it signs
                // and verifies with a key pair of its own, the same work as ours.
                let pair = EdDSA
                    .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
                    .unwrap();
                let s = EdDSA.signer_from_pem(pair.to_pem_private_key()).unwrap();
                group.bench_function("mint/josekit", |b| {
                    b.iter(|| {
                        let claims = typical(now).build(black_box(now)).unwrap();
                        jwt::encode_with_signer(&to_payload(&claims), &header, &s).unwrap()
                    })
                });
                let their_token =
                    jwt::encode_with_signer(&to_payload(&claims), &header, &s).unwrap();
                let v = EdDSA.verifier_from_jwk(&pair.to_jwk_public_key()).unwrap();
                group.bench_function("verify/josekit", |b| {
                    b.iter(|| {
                        let (p, _) =
                            jwt::decode_with_verifier(black_box(&their_token), &v).unwrap();
                        validator.validate(&p).unwrap()
                    })
                });
            }
        }
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_alg(c, Algorithm::ES256);
    bench_alg(c, Algorithm::EdDSA);
}

criterion_group! {
    name = jwt;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(jwt);
