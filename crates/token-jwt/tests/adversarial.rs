//! Adversarial inputs against the verifier, one named test per attack (RFC 8725 and the
//! classic JWT library failures). Each test crafts the token by hand, signs it with a real key
//! where a signature matters, and asserts the exact error variant, for every provider.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::Arc;

use token_jwt::{
    AccessTokenBuilder, Algorithm, CryptoProvider, Error, JwkSet, JwsEncoder, JwsSigner, KeySet,
    Part, Policy, PrivateKey, all_providers, base64url as b64,
};

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "https://api.example";

struct Fixture {
    signer: Arc<dyn JwsSigner>,
    keys: KeySet,
    policy: Policy,
}

fn fixtures(alg: Algorithm) -> Vec<Fixture> {
    let key = PrivateKey::generate(alg).unwrap();
    all_providers()
        .into_iter()
        .map(|p| {
            let signer = p.signer(&key).unwrap();
            let keys =
                KeySet::from_jwks(&JwkSet::new(vec![signer.public_jwk().clone()]), &p).unwrap();
            let policy = Policy::builder().issuer(ISS).audience(AUD).build();
            Fixture {
                signer,
                keys,
                policy,
            }
        })
        .collect()
}

fn es256() -> Vec<Fixture> {
    fixtures(Algorithm::ES256)
}

fn good_claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "iat": NOW, "exp": NOW + 300, "jti": "j1"
    })
}

/// Signs arbitrary header and payload JSON text with the fixture's key.
fn forge(f: &Fixture, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = f.signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(sig))
}

fn header(f: &Fixture) -> String {
    format!(
        r#"{{"alg":"{}","typ":"at+jwt","kid":"{}"}}"#,
        f.signer.algorithm(),
        f.signer.key_id()
    )
}

fn good(f: &Fixture) -> String {
    forge(f, &header(f), &good_claims().to_string())
}

fn verify(f: &Fixture, token: &str) -> Result<(), Error> {
    f.policy.verify(token, &f.keys, NOW).map(|_| ())
}

/// Replaces the signature segment with raw bytes.
fn with_signature(token: &str, sig: &[u8]) -> String {
    let cut = token.rfind('.').unwrap();
    format!("{}.{}", &token[..cut], b64::encode(sig))
}

#[test]
fn baseline_token_verifies() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::ES384] {
        for f in fixtures(alg) {
            verify(&f, &good(&f)).unwrap();
        }
    }
}

#[test]
fn alg_none_is_refused() {
    for f in es256() {
        let h = format!(
            r#"{{"alg":"none","typ":"at+jwt","kid":"{}"}}"#,
            f.signer.key_id()
        );
        let unsigned = format!(
            "{}.{}.",
            b64::encode(&h),
            b64::encode(good_claims().to_string())
        );
        // With an empty signature segment the framing check fires first …
        assert!(matches!(verify(&f, &unsigned), Err(Error::Malformed(_))));
        // … and with any signature bytes, `none` itself is refused.
        let with_sig = format!("{unsigned}AAAA");
        assert!(matches!(verify(&f, &with_sig), Err(Error::AlgNone)));
        let upper = with_sig.replacen(&b64::encode(&h), &b64::encode(h.replace("none", "NoNe")), 1);
        assert!(matches!(verify(&f, &upper), Err(Error::AlgNone)));
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    use hmac_via_josekit::hs256;
    for f in es256() {
        let secret = f.signer.public_jwk().to_json();
        let h = format!(
            r#"{{"alg":"HS256","typ":"at+jwt","kid":"{}"}}"#,
            f.signer.key_id()
        );
        let input = format!(
            "{}.{}",
            b64::encode(&h),
            b64::encode(good_claims().to_string())
        );
        let token = format!(
            "{input}.{}",
            b64::encode(hs256(secret.as_bytes(), input.as_bytes()))
        );
        assert!(matches!(verify(&f, &token), Err(Error::SymmetricAlgorithm)));
    }
}

/// HMAC from josekit (an independent implementation), only to build the attack token.
mod hmac_via_josekit {
    pub(crate) fn hs256(key: &[u8], msg: &[u8]) -> Vec<u8> {
        use josekit::jws::{HS256, JwsSigner as _};
        HS256.signer_from_bytes(key).unwrap().sign(msg).unwrap()
    }
}

#[test]
fn header_alg_differing_from_the_key_is_refused() {
    for f in es256() {
        // Signed with the ES256 key but labelled ES384 / EdDSA / RS256.
        for claimed in ["ES384", "EdDSA", "RS256", "PS256"] {
            let h = header(&f).replace("ES256", claimed);
            let token = forge(&f, &h, &good_claims().to_string());
            assert!(
                matches!(verify(&f, &token), Err(Error::AlgorithmMismatch { .. })),
                "{claimed}"
            );
        }
    }
}

#[test]
fn unknown_kid_is_refused() {
    for f in es256() {
        for kid in ["other", "../../etc/passwd", "' OR 1=1 --", "", "\u{0000}"] {
            let h = serde_json::json!({"alg":"ES256","typ":"at+jwt","kid":kid}).to_string();
            let token = forge(&f, &h, &good_claims().to_string());
            assert!(
                matches!(verify(&f, &token), Err(Error::UnknownKeyId)),
                "{kid:?}"
            );
        }
    }
}

#[test]
fn missing_kid_is_refused() {
    for f in es256() {
        let token = forge(
            &f,
            r#"{"alg":"ES256","typ":"at+jwt"}"#,
            &good_claims().to_string(),
        );
        assert!(matches!(verify(&f, &token), Err(Error::MissingKeyId)));
    }
}

#[test]
fn embedded_jwk_is_refused() {
    for f in es256() {
        // The attacker signs with their own key and embeds it, reusing the victim's kid.
        let attacker = fixtures(Algorithm::ES256).remove(0);
        let h = format!(
            r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}","jwk":{}}}"#,
            f.signer.key_id(),
            serde_json::json!({
                "kty":"EC","crv":"P-256",
                "x": match &attacker.signer.public_jwk().params { token_jwt::KeyParams::Ec{x, ..} => x.clone(), _ => unreachable!() },
                "y": match &attacker.signer.public_jwk().params { token_jwt::KeyParams::Ec{y, ..} => y.clone(), _ => unreachable!() },
            })
        );
        let token = forge(&attacker, &h, &good_claims().to_string());
        assert!(matches!(verify(&f, &token), Err(Error::EmbeddedKey("jwk"))));
    }
}

#[test]
fn key_references_jku_x5u_x5c_are_refused() {
    for f in es256() {
        for (member, value) in [
            ("jku", r#""https://attacker.example/jwks""#),
            ("x5u", r#""https://attacker.example/cert""#),
            ("x5c", r#"["MIIB"]"#),
        ] {
            let h = header(&f).replace('}', &format!(r#","{member}":{value}}}"#));
            let token = forge(&f, &h, &good_claims().to_string());
            assert!(
                matches!(verify(&f, &token), Err(Error::EmbeddedKey(m)) if m == member),
                "{member}"
            );
        }
    }
}

#[test]
fn crit_is_refused() {
    for f in es256() {
        let h = header(&f).replace('}', r#","crit":["exp"],"exp":1}"#);
        let token = forge(&f, &h, &good_claims().to_string());
        assert!(matches!(
            verify(&f, &token),
            Err(Error::UnsupportedCritical)
        ));
    }
}

/// ECDSA signature with r = s = 0 (CVE-2022-21449, "psychic signatures").
#[test]
fn ecdsa_r_and_s_zero_is_refused() {
    for f in es256() {
        let token = with_signature(&good(&f), &[0u8; 64]);
        assert!(matches!(verify(&f, &token), Err(Error::InvalidSignature)));
    }
}

const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

#[test]
fn ecdsa_r_or_s_not_below_n_is_refused() {
    for f in es256() {
        let token = good(&f);
        let sig = b64::decode(&token[token.rfind('.').unwrap() + 1..]).unwrap();
        let (r, s) = sig.split_at(32);
        for (nr, ns) in [
            (P256_N.to_vec(), s.to_vec()),
            (r.to_vec(), P256_N.to_vec()),
            (vec![0xff; 32], s.to_vec()),
            (r.to_vec(), vec![0xff; 32]),
        ] {
            let bad = with_signature(&token, &[nr, ns].concat());
            assert!(matches!(verify(&f, &bad), Err(Error::InvalidSignature)));
        }
    }
}

#[test]
fn der_encoded_ecdsa_signature_is_refused() {
    for f in es256() {
        let token = good(&f);
        let raw = b64::decode(&token[token.rfind('.').unwrap() + 1..]).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
        let der = sig.to_der();
        let bad = with_signature(&token, der.as_bytes());
        assert!(matches!(verify(&f, &bad), Err(Error::InvalidSignature)));
    }
}

#[test]
fn wrong_signature_length_is_refused() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        for f in fixtures(alg) {
            let token = good(&f);
            let raw = b64::decode(&token[token.rfind('.').unwrap() + 1..]).unwrap();
            for sig in [&raw[..63], &[raw.as_slice(), &[0]].concat()[..], &raw[..1]] {
                let bad = with_signature(&token, sig);
                assert!(matches!(verify(&f, &bad), Err(Error::InvalidSignature)));
            }
        }
    }
}

#[test]
fn ed25519_non_canonical_s_is_refused() {
    // s + L has the same value mod L; strict verification must refuse it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    for f in fixtures(Algorithm::EdDSA) {
        let token = good(&f);
        let mut sig = b64::decode(&token[token.rfind('.').unwrap() + 1..]).unwrap();
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        let bad = with_signature(&token, &sig);
        assert!(matches!(verify(&f, &bad), Err(Error::InvalidSignature)));
    }
}

#[test]
fn truncated_token_is_refused() {
    for f in es256() {
        let token = good(&f);
        for cut in [
            token.len() - 1,
            token.len() - 10,
            token.rfind('.').unwrap(),
            10,
        ] {
            let r = verify(&f, &token[..cut]);
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidSignature | Error::Malformed(_) | Error::Base64(_))
                ),
                "{cut}: {r:?}"
            );
        }
    }
}

#[test]
fn extra_segment_is_refused() {
    for f in es256() {
        let token = format!("{}.e30", good(&f));
        assert!(matches!(verify(&f, &token), Err(Error::Malformed(_))));
    }
}

#[test]
fn base64_padding_is_refused() {
    for f in es256() {
        let token = good(&f);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1].push('=');
        assert!(matches!(
            verify(&f, &parts.join(".")),
            Err(Error::Base64(Part::Payload))
        ));
        let padded_sig = format!("{token}==");
        assert!(matches!(
            verify(&f, &padded_sig),
            Err(Error::Base64(Part::Signature))
        ));
    }
}

#[test]
fn non_base64url_characters_are_refused() {
    for f in es256() {
        let token = good(&f);
        for (from, to) in [("-", "+"), ("_", "/")] {
            if token.contains(from) {
                let bad = token.replacen(from, to, 1);
                assert!(matches!(verify(&f, &bad), Err(Error::Base64(_))));
            }
        }
        let bad = token.replacen('.', " .", 1);
        assert!(matches!(verify(&f, &bad), Err(Error::Base64(Part::Header))));
    }
}

#[test]
fn duplicate_header_member_is_refused() {
    for f in es256() {
        let h = format!(
            r#"{{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"{}"}}"#,
            f.signer.key_id()
        );
        let token = forge(&f, &h, &good_claims().to_string());
        assert!(matches!(
            verify(&f, &token),
            Err(Error::DuplicateMember(Part::Header))
        ));
    }
}

#[test]
fn duplicate_payload_member_is_refused() {
    for f in es256() {
        let payload = format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","iat":{NOW},"exp":{},"exp":{}}}"#,
            NOW + 300,
            NOW + 99999
        );
        let token = forge(&f, &header(&f), &payload);
        assert!(matches!(
            verify(&f, &token),
            Err(Error::DuplicateMember(Part::Payload))
        ));
    }
}

#[test]
fn exp_as_string_is_refused() {
    for f in es256() {
        let mut c = good_claims();
        c["exp"] = serde_json::json!((NOW + 300).to_string());
        let token = forge(&f, &header(&f), &c.to_string());
        assert!(matches!(
            verify(&f, &token),
            Err(Error::InvalidClaim("exp"))
        ));
    }
}

#[test]
fn missing_exp_is_refused() {
    for f in es256() {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("exp");
        let token = forge(&f, &header(&f), &c.to_string());
        assert!(matches!(
            verify(&f, &token),
            Err(Error::MissingClaim("exp"))
        ));
    }
}

#[test]
fn expired_token_is_refused() {
    for f in es256() {
        let token = good(&f);
        let leeway = 30;
        // Valid just before exp + leeway, refused from then on.
        assert!(
            f.policy
                .verify(&token, &f.keys, NOW + 300 + leeway - 1)
                .is_ok()
        );
        assert!(matches!(
            f.policy.verify(&token, &f.keys, NOW + 300 + leeway),
            Err(Error::Expired)
        ));
    }
}

#[test]
fn nbf_in_future_is_refused() {
    for f in es256() {
        let mut c = good_claims();
        c["nbf"] = serde_json::json!(NOW + 120);
        let token = forge(&f, &header(&f), &c.to_string());
        assert!(matches!(verify(&f, &token), Err(Error::NotYetValid)));
    }
}

#[test]
fn iat_in_future_is_refused() {
    for f in es256() {
        let mut c = good_claims();
        c["iat"] = serde_json::json!(NOW + 120);
        let token = forge(&f, &header(&f), &c.to_string());
        assert!(matches!(verify(&f, &token), Err(Error::IssuedInFuture)));
    }
}

#[test]
fn older_than_max_age_is_refused() {
    for f in es256() {
        let token = good(&f);
        let policy = Policy::builder().max_age(60).leeway(0).build();
        assert!(policy.verify(&token, &f.keys, NOW + 60).is_ok());
        assert!(matches!(
            policy.verify(&token, &f.keys, NOW + 61),
            Err(Error::TooOld)
        ));
    }
}

#[test]
fn wrong_issuer_is_refused() {
    for f in es256() {
        let mut c = good_claims();
        c["iss"] = serde_json::json!("https://evil.example");
        let token = forge(&f, &header(&f), &c.to_string());
        assert!(matches!(verify(&f, &token), Err(Error::WrongIssuer)));
    }
}

#[test]
fn wrong_audience_is_refused() {
    for f in es256() {
        for aud in [
            serde_json::json!("https://other.example"),
            serde_json::json!(["a", "b"]),
        ] {
            let mut c = good_claims();
            c["aud"] = aud;
            let token = forge(&f, &header(&f), &c.to_string());
            assert!(matches!(verify(&f, &token), Err(Error::WrongAudience)));
        }
        let mut c = good_claims();
        c["aud"] = serde_json::json!(["x", AUD]);
        assert!(verify(&f, &forge(&f, &header(&f), &c.to_string())).is_ok());
    }
}

#[test]
fn wrong_typ_is_refused() {
    for f in es256() {
        for typ in ["JWT", "dpop+jwt", "at+jwt2"] {
            let h = header(&f).replace("at+jwt", typ);
            let token = forge(&f, &h, &good_claims().to_string());
            assert!(matches!(verify(&f, &token), Err(Error::WrongType)), "{typ}");
        }
        let h = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, f.signer.key_id());
        let token = forge(&f, &h, &good_claims().to_string());
        assert!(matches!(verify(&f, &token), Err(Error::WrongType)));
        let h = header(&f).replace("at+jwt", "application/at+jwt");
        assert!(verify(&f, &forge(&f, &h, &good_claims().to_string())).is_ok());
    }
}

#[test]
fn oversize_input_is_refused() {
    for f in es256() {
        let mut c = good_claims();
        c["pad"] = serde_json::json!("x".repeat(20_000));
        let token = forge(&f, &header(&f), &c.to_string());
        assert!(matches!(
            verify(&f, &token),
            Err(Error::TooLarge { limit: 16384, .. })
        ));
    }
}

#[test]
fn deeply_nested_payload_is_refused() {
    for f in es256() {
        let payload = format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","iat":{NOW},"exp":{},"x":{}1{}}}"#,
            NOW + 300,
            "[".repeat(64),
            "]".repeat(64)
        );
        let token = forge(&f, &header(&f), &payload);
        assert!(matches!(
            verify(&f, &token),
            Err(Error::JsonLimits(Part::Payload))
        ));
    }
}

#[test]
fn tokens_signed_by_another_key_with_the_same_kid_are_refused() {
    for f in es256() {
        let other = fixtures(Algorithm::ES256).remove(0);
        let token = forge(&other, &header(&f), &good_claims().to_string());
        assert!(matches!(verify(&f, &token), Err(Error::InvalidSignature)));
    }
}

#[test]
fn minted_tokens_round_trip_through_the_builder() {
    for f in es256() {
        let claims = AccessTokenBuilder::new(ISS, 300)
            .audience([AUD])
            .subject("alice")
            .dpop_jkt("jkt-value")
            .session_id("fam")
            .claim("tenant", "t1")
            .unwrap()
            .build(NOW)
            .unwrap();
        let token = JwsEncoder::for_signer(&*f.signer, "at+jwt")
            .encode(&claims, &*f.signer)
            .unwrap();
        let v = f.policy.verify(&token, &f.keys, NOW).unwrap();
        assert_eq!(v.claims(), &claims);
        assert_eq!(
            v.claims().cnf.as_ref().unwrap().jkt.as_deref(),
            Some("jkt-value")
        );
    }
}

#[test]
fn custom_claims_cannot_override_registered_ones() {
    for name in ["iss", "exp", "cnf", "sid", "aud"] {
        assert!(matches!(
            AccessTokenBuilder::new(ISS, 1).claim(name, 1),
            Err(Error::ReservedClaim(_))
        ));
    }
}

#[test]
fn an_encoder_refuses_a_signer_it_was_not_made_for() {
    let a = es256().remove(0);
    let b = es256().remove(0);
    let claims = AccessTokenBuilder::new(ISS, 300).build(NOW).unwrap();
    let enc = JwsEncoder::for_signer(&*a.signer, "at+jwt");
    assert!(matches!(
        enc.encode(&claims, &*b.signer),
        Err(Error::Signing { .. })
    ));
}

#[test]
fn provider_refuses_points_off_the_curve_and_weak_ed25519_keys() {
    for p in all_providers() {
        let off = token_jwt::Jwk::from_json(
            br#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1"}"#,
        );
        // Changing y by one moves the point off the curve (or breaks the encoding).
        if let Ok(jwk) = off {
            assert!(matches!(
                p.verifying_key(&jwk, Algorithm::ES256),
                Err(Error::InvalidPublicKey(_))
            ));
        }
        // The identity point (order 1) as an Ed25519 key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = token_jwt::Jwk::ed25519(&identity);
        assert!(matches!(
            p.verifying_key(&weak, Algorithm::EdDSA),
            Err(Error::InvalidPublicKey(_))
        ));
    }
}

#[test]
fn debug_output_never_contains_key_material() {
    let key = PrivateKey::generate(Algorithm::ES256).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let secret_line: String = pem.lines().nth(1).unwrap().to_owned();
    for p in all_providers() {
        let signer = p.signer(&key).unwrap();
        let dbg = format!("{signer:?} {key:?} {p:?}");
        assert!(!dbg.contains(&secret_line[..20]));
    }
}
