//! Verification-only public keys read from files: a public JWK (JSON) or a PEM `PUBLIC KEY`
//! (SubjectPublicKeyInfo, RFC 5280 section 4.1.2.7, in the strict RFC 7468 encoding that
//! `openssl pkey -pubout` writes).
//!
//! Supported key types: P-256 (ES256), P-384 (ES384), Ed25519 (EdDSA) and RSA with a 2048 to
//! 8192-bit modulus (RS256 or PS256). Anything else (P-521, X25519, Ed448, DSA, RSASSA-PSS
//! keys, certificates) is [`Error::UnsupportedKey`] or [`Error::InvalidPem`].
//!
//! Private material is never accepted: a PEM that is or contains a private key (any `... PRIVATE
//! KEY` label, or private-key DER under a `PUBLIC KEY` label) is [`Error::PrivateKeyInPem`], a
//! JWK with private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`) is
//! [`Error::PrivateKeyInJwk`]. A key that is returned has been checked as a verifying key
//! (point on its curve, Ed25519 not of small order, RSA exponent in range), so a file that loads
//! can verify tokens.

use p256::elliptic_curve::ALGORITHM_OID as EC_PUBLIC_KEY_OID;
use p256::pkcs8::der::asn1::AnyRef;
use p256::pkcs8::der::{self, Decode as _, Reader as _, Tag, Tagged as _};
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{AssociatedOid as _, ObjectIdentifier};
use rsa::pkcs1::ALGORITHM_OID as RSA_ENCRYPTION_OID;

use crate::alg::Algorithm;
use crate::error::{Error, Part, Result};
use crate::json::{self, Limits};
use crate::jwk::{Jwk, KeyParams};
use crate::provider::{CryptoProvider as _, RustCryptoProvider};
use crate::signer::JwsPublicKey as _;

/// Largest public-key text accepted by [`Jwk::from_public_pem`] and
/// [`Jwk::from_public_key_text`]: 16 KiB, far above a PEM of an 8192-bit RSA key (about
/// 1.5 KiB) or a JWK with an `x5c` certificate chain, and small enough that a wrong file (a
/// log, a binary) is refused before it is parsed.
pub const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;

const P256_OID: ObjectIdentifier = p256::NistP256::OID;
const P384_OID: ObjectIdentifier = p384::NistP384::OID;
const ED25519_OID: ObjectIdentifier = ed25519_dalek::pkcs8::ALGORITHM_OID;

impl Jwk {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of a P-256, P-384, Ed25519 or RSA key, at
    /// most [`MAX_PUBLIC_KEY_BYTES`]. Surrounding whitespace and a byte order mark are ignored;
    /// the PEM itself must follow RFC 7468's strict grammar (64-column base64, as OpenSSL writes
    /// it).
    ///
    /// The JWK's `kid` is its RFC 7638 thumbprint, as for the keys this crate loads or
    /// generates ([`crate::PrivateKey::key_id`]), so a signer and the published PEM of its
    /// public key agree on it; [`Jwk::with_kid`] replaces it. EC and Ed25519 keys get their one
    /// algorithm (`alg`, and `use: sig`), so the result equals the signer's
    /// [`crate::PrivateKey::public_jwk`]. An RSA key gets no `alg`: a PEM cannot tell RS256 from
    /// PS256, and a [`crate::KeySet`] refuses an RSA key without one, so set it with
    /// [`Jwk::with_alg`].
    ///
    /// # Errors
    /// [`Error::TooLarge`]; [`Error::PrivateKeyInPem`] for any private key;
    /// [`Error::InvalidPem`] when the text is not a PEM `PUBLIC KEY` holding a
    /// SubjectPublicKeyInfo; [`Error::UnsupportedKey`] for other key types and curves;
    /// [`Error::InvalidPublicKey`] when the key itself is not valid (point off the curve,
    /// small-order Ed25519 key, RSA modulus outside 2048..=8192 bits).
    pub fn from_public_pem(pem: &str) -> Result<Self> {
        check_size(pem)?;
        let pem = trim(pem);
        // Before any decoding: whatever the rest of the text holds, a private key is refused
        // with its own error (a file that holds a public and a private key, too).
        if pem.contains("PRIVATE KEY-----") {
            return Err(Error::PrivateKeyInPem);
        }
        let (label, der) = der::pem::decode_vec(pem.as_bytes()).map_err(|_| {
            Error::InvalidPem("not a PEM document (RFC 7468 BEGIN/END lines, 64-column base64)")
        })?;
        match label {
            "PUBLIC KEY" => {}
            "RSA PUBLIC KEY" => {
                return Err(Error::InvalidPem(
                    "an RSA PUBLIC KEY (PKCS#1); give a PUBLIC KEY (SubjectPublicKeyInfo, \
                     `openssl rsa -RSAPublicKey_in -pubout`)",
                ));
            }
            "CERTIFICATE" => {
                return Err(Error::InvalidPem(
                    "a certificate; give its PUBLIC KEY (`openssl x509 -pubkey -noout`)",
                ));
            }
            _ => return Err(Error::InvalidPem("the PEM label is not PUBLIC KEY")),
        }
        let mut jwk = from_spki_der(&der)?;
        check_usable(&jwk)?;
        if let Some(alg) = jwk.algorithm() {
            jwk = jwk.with_alg(alg);
        }
        let kid = jwk.thumbprint();
        Ok(jwk.with_kid(kid))
    }

    /// Reads a published verification key from the text of a file (at most
    /// [`MAX_PUBLIC_KEY_BYTES`]): a JSON public JWK when the first character that is not
    /// whitespace (or a byte order mark) is `{`, else a PEM `PUBLIC KEY` as in
    /// [`Jwk::from_public_pem`].
    ///
    /// A JWK keeps its members: its `kid` when it has one (an empty `kid` is refused), else its
    /// RFC 7638 thumbprint; its `alg`, which must fit the key; its `use`, which must be `sig`.
    /// Members this crate does not use (`key_ops`, `x5c`, ...) are ignored, and the JSON rules
    /// of [`Jwk::from_json`] apply (duplicate members refused, nesting and member limits); only
    /// the size limit is the larger [`MAX_PUBLIC_KEY_BYTES`].
    ///
    /// # Errors
    /// As [`Jwk::from_public_pem`] for PEM. For a JWK: [`Error::TooLarge`], JSON errors,
    /// [`Error::PrivateKeyInJwk`] for private members, [`Error::SymmetricKey`],
    /// [`Error::UnsupportedKey`] (P-521 included: no verification here),
    /// [`Error::AlgorithmKeyMismatch`], [`Error::InvalidJwk`] (a JWK Set, an empty `kid`, a
    /// malformed member) or [`Error::InvalidPublicKey`].
    pub fn from_public_key_text(text: &str) -> Result<Self> {
        check_size(text)?;
        let text = trim(text);
        if !text.starts_with('{') {
            return Jwk::from_public_pem(text);
        }
        let map = json::parse_object(text.as_bytes(), Part::Jwk, Limits::new(4, 64))?;
        if map.contains_key("keys") && !map.contains_key("kty") {
            return Err(Error::InvalidJwk("a JWK Set; give one JWK per file"));
        }
        let mut jwk = Jwk::from_map(&map)?;
        check_usable(&jwk)?;
        match jwk.kid.as_deref() {
            Some("") => return Err(Error::InvalidJwk("empty kid")),
            Some(_) => {}
            None => jwk.kid = Some(jwk.thumbprint()),
        }
        Ok(jwk)
    }
}

fn check_size(text: &str) -> Result<()> {
    if text.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(Error::TooLarge {
            limit: MAX_PUBLIC_KEY_BYTES,
            actual: text.len(),
        });
    }
    Ok(())
}

/// The text without a leading byte order mark and surrounding whitespace.
fn trim(text: &str) -> &str {
    text.trim_start_matches('\u{feff}').trim()
}

/// The public JWK (no `kid`, `alg` or `use`) of a DER SubjectPublicKeyInfo.
fn from_spki_der(der: &[u8]) -> Result<Jwk> {
    let spki = match SubjectPublicKeyInfoRef::from_der(der) {
        Ok(spki) => spki,
        Err(_) if is_private_key_der(der) => return Err(Error::PrivateKeyInPem),
        Err(_) => return Err(Error::InvalidPem("not a SubjectPublicKeyInfo")),
    };
    let key = spki.subject_public_key.as_bytes().ok_or(Error::InvalidPem(
        "the public key BIT STRING has unused bits",
    ))?;
    let algorithm = spki.algorithm;
    let off_curve = |_| Error::InvalidPublicKey("point is not on the curve");
    if algorithm.oid == EC_PUBLIC_KEY_OID {
        let curve = algorithm
            .parameters_oid()
            .map_err(|_| Error::InvalidPem("EC key without a named curve"))?;
        if curve == P256_OID {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                .map_err(off_curve)?
                .to_jwk()
        } else if curve == P384_OID {
            p384::ecdsa::VerifyingKey::from_sec1_bytes(key)
                .map_err(off_curve)?
                .to_jwk()
        } else {
            Err(Error::UnsupportedKey)
        }
    } else if algorithm.oid == ED25519_OID {
        // RFC 8410 section 3: the parameters are absent.
        if algorithm.parameters.is_some() {
            return Err(Error::InvalidPem("Ed25519 key with algorithm parameters"));
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| Error::InvalidPublicKey("Ed25519 key is not 32 bytes"))?;
        Ok(Jwk::ed25519(key))
    } else if algorithm.oid == RSA_ENCRYPTION_OID {
        // RFC 3279 section 2.3.1: the parameters are NULL (absent is tolerated).
        if algorithm.parameters.is_some_and(|p| !p.is_null()) {
            return Err(Error::InvalidPem("RSA key parameters are not NULL"));
        }
        let pk = rsa::pkcs1::RsaPublicKey::from_der(key)
            .map_err(|_| Error::InvalidPem("not a PKCS#1 RSAPublicKey"))?;
        Jwk::rsa(pk.modulus.as_bytes(), pk.public_exponent.as_bytes()).map_err(|_| {
            Error::InvalidPublicKey("RSA modulus outside 2048..=8192 bits or exponent too long")
        })
    } else {
        Err(Error::UnsupportedKey)
    }
}

/// Whether DER that is not a SubjectPublicKeyInfo has the shape of a private key: PKCS#8
/// `PrivateKeyInfo` (INTEGER, SEQUENCE, OCTET STRING, ...), SEC1 `ECPrivateKey` (INTEGER,
/// OCTET STRING, ...), PKCS#8 `EncryptedPrivateKeyInfo` (SEQUENCE, OCTET STRING), or PKCS#1
/// `RSAPrivateKey` / DSA (three INTEGERs or more; a PKCS#1 `RSAPublicKey` has two).
fn is_private_key_der(der: &[u8]) -> bool {
    let Ok(outer) = AnyRef::from_der(der) else {
        return false;
    };
    if outer.tag() != Tag::Sequence {
        return false;
    }
    let Ok(mut reader) = der::SliceReader::new(outer.value()) else {
        return false;
    };
    let mut tags = Vec::new();
    while tags.len() < 3 && !reader.is_finished() {
        match AnyRef::decode(&mut reader) {
            Ok(child) => tags.push(child.tag()),
            Err(_) => return false,
        }
    }
    matches!(
        tags.as_slice(),
        [Tag::Integer, Tag::Sequence, Tag::OctetString]
            | [Tag::Integer, Tag::OctetString, ..]
            | [Tag::Sequence, Tag::OctetString]
            | [Tag::Integer, Tag::Integer, Tag::Integer]
    )
}

/// Checks that the key can verify: the checks a provider makes when it builds a verifying key
/// (point on the curve, Ed25519 not of small order, RSA modulus and exponent in range).
fn check_usable(jwk: &Jwk) -> Result<()> {
    let alg = match (jwk.algorithm(), &jwk.params) {
        (Some(alg), _) => alg,
        // RS256 and PS256 accept the same RSA keys: either checks one without `alg`.
        (None, KeyParams::Rsa { .. }) => Algorithm::RS256,
        // P-521: thumbprints only, no verification in this crate.
        (None, _) => return Err(Error::UnsupportedKey),
    };
    RustCryptoProvider::new().verifying_key(jwk, alg).map(drop)
}

#[cfg(test)]
mod tests {
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    use super::*;
    use crate::PrivateKey;
    use crate::b64;

    /// RFC 8410 section 10.1: an Ed25519 SubjectPublicKeyInfo.
    const RFC8410_ED25519: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PUBLIC KEY-----
";

    /// The PEM `PUBLIC KEY` of a generated key, written by the RustCrypto crates.
    fn public_pem(key: &PrivateKey) -> String {
        let der = key.pkcs8_der();
        match key.algorithm() {
            Algorithm::ES256 => {
                use p256::pkcs8::DecodePrivateKey as _;
                p256::SecretKey::from_pkcs8_der(der)
                    .unwrap()
                    .public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap()
            }
            Algorithm::ES384 => {
                use p384::pkcs8::DecodePrivateKey as _;
                p384::SecretKey::from_pkcs8_der(der)
                    .unwrap()
                    .public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap()
            }
            Algorithm::EdDSA => {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .unwrap()
                    .verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap()
            }
            alg => panic!("no local key for {alg}"),
        }
    }

    /// The PEM `PUBLIC KEY` of a 2048-bit RSA modulus, written by the rsa crate (a fixed odd
    /// modulus: generating a real key would slow the tests and parsing does not need one).
    fn rsa_pem() -> String {
        let n = [0xc5u8; 256];
        let e = [0x01u8, 0x00, 0x01];
        let key = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&n),
            rsa::BigUint::from_bytes_be(&e),
        )
        .unwrap();
        rsa::pkcs8::EncodePublicKey::to_public_key_pem(&key, LineEnding::LF).unwrap()
    }

    #[test]
    fn reads_the_pem_of_each_generated_key_as_the_signers_jwk() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let key = PrivateKey::generate(alg).unwrap();
            let pem = public_pem(&key);
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
            let jwk = Jwk::from_public_pem(&pem).unwrap();
            assert_eq!(&jwk, key.public_jwk(), "{alg}");
            assert_eq!(jwk.kid.as_deref(), Some(key.key_id()));
            assert_eq!(jwk.algorithm(), Some(alg));
            // The same through the file reader, with CRLF line ends, a byte order mark and
            // surrounding blank lines.
            let file = format!("\u{feff}\n\n{}\n\n", pem.replace('\n', "\r\n"));
            assert_eq!(Jwk::from_public_key_text(&file).unwrap(), jwk);
            // Its JWK text gives the same key.
            assert_eq!(Jwk::from_public_key_text(&jwk.to_json()).unwrap(), jwk);
        }
    }

    #[test]
    fn reads_the_rfc8410_ed25519_vector() {
        let jwk = Jwk::from_public_pem(RFC8410_ED25519).unwrap();
        let KeyParams::Ed25519 { x } = &jwk.params else {
            panic!("not Ed25519: {jwk:?}");
        };
        assert_eq!(
            b64::decode(x).unwrap(),
            [
                0x19, 0xbf, 0x44, 0x09, 0x69, 0x84, 0xcd, 0xfe, 0x85, 0x41, 0xba, 0xc1, 0x67, 0xdc,
                0x3b, 0x96, 0xc8, 0x50, 0x86, 0xaa, 0x30, 0xb6, 0xb6, 0xcb, 0x0c, 0x5c, 0x38, 0xad,
                0x70, 0x31, 0x66, 0xe1
            ]
        );
        assert_eq!(jwk.kid, Some(jwk.thumbprint()));
        assert_eq!(jwk.alg, Some(Algorithm::EdDSA));
    }

    /// Written by `openssl pkey -pubout` (OpenSSL 3); the coordinates and modulus below are
    /// from `openssl pkey -text` and `openssl rsa -modulus`, not from this crate.
    const OPENSSL_P384: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE143TPbvRbh0Xb/vOZz1LsKiiEe4DJ3qf
vZhp/ESnIYWrvES1KRXm3/Quw2oQYI14BYWBc26a8ROgESUHz+WfCLD6Cp8FHFAi
eh0IhdkSPu+62X9+Zi8tEw1AHnEmXUK/
-----END PUBLIC KEY-----
";
    const OPENSSL_P384_X: &str = "143TPbvRbh0Xb_vOZz1LsKiiEe4DJ3qfvZhp_ESnIYWrvES1KRXm3_Quw2oQYI14";
    const OPENSSL_P384_Y: &str = "BYWBc26a8ROgESUHz-WfCLD6Cp8FHFAieh0IhdkSPu-62X9-Zi8tEw1AHnEmXUK_";
    const OPENSSL_RSA: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtoWl+qNKi3xdQGvLEtY1
jFCuGdfmRXCLNGLS4obzhqSXU8h7uOwx6A77xpSMYozy49zt/S2+yvR+J/VB2Pyq
FhG9hNd19kC1GlhWFudubwVyoJYTsSnSxZE/2fe8HlIuQ8bjXvdLejyK8qr71TC8
DJTL7XqyZVvHc/1nZWOVJjO+1Q/oTU/BNV82PYDwOA7u/RBwbi1sUv0wLnH1dtjf
WUXGZg0mrVAPQuwEJejOhZHIkLMgjV684RhegCqZ50k8t4RTmuFGMwWU2xoU+iAD
D8Wef3zC4caQQ3oNlrSHSM63gplEPZQZqslTfNGryT9v7UFmHZiCUWuDhizsLO8t
1QIDAQAB
-----END PUBLIC KEY-----
";
    const OPENSSL_RSA_N: &str = "toWl-qNKi3xdQGvLEtY1jFCuGdfmRXCLNGLS4obzhqSXU8h7uOwx6A77xpSMYozy49zt_S2-yvR-J_VB2PyqFhG9hNd19kC1GlhWFudubwVyoJYTsSnSxZE_2fe8HlIuQ8bjXvdLejyK8qr71TC8DJTL7XqyZVvHc_1nZWOVJjO-1Q_oTU_BNV82PYDwOA7u_RBwbi1sUv0wLnH1dtjfWUXGZg0mrVAPQuwEJejOhZHIkLMgjV684RhegCqZ50k8t4RTmuFGMwWU2xoU-iADD8Wef3zC4caQQ3oNlrSHSM63gplEPZQZqslTfNGryT9v7UFmHZiCUWuDhizsLO8t1Q";

    #[test]
    fn reads_openssl_pems() {
        let jwk = Jwk::from_public_pem(OPENSSL_P384).unwrap();
        assert_eq!(
            jwk.params,
            KeyParams::Ec {
                crv: crate::EcCurve::P384,
                x: OPENSSL_P384_X.to_owned(),
                y: OPENSSL_P384_Y.to_owned(),
            }
        );
        assert_eq!(jwk.alg, Some(Algorithm::ES384));
        assert_eq!(jwk.key_use.as_deref(), Some("sig"));
        let jwk = Jwk::from_public_key_text(OPENSSL_RSA).unwrap();
        assert_eq!(
            jwk.params,
            KeyParams::Rsa {
                n: OPENSSL_RSA_N.to_owned(),
                e: "AQAB".to_owned(),
            }
        );
        assert_eq!(jwk.kid, Some(jwk.thumbprint()));
    }

    #[test]
    fn reads_rsa_without_an_algorithm() {
        let pem = rsa_pem();
        let jwk = Jwk::from_public_pem(&pem).unwrap();
        assert!(matches!(jwk.params, KeyParams::Rsa { .. }));
        assert_eq!(jwk.alg, None, "RS256 or PS256 is the caller's choice");
        assert_eq!(jwk.kid, Some(jwk.thumbprint()));
        let KeyParams::Rsa { e, .. } = &jwk.params else {
            unreachable!()
        };
        assert_eq!(e, "AQAB");
        let with_alg = jwk.clone().with_alg(Algorithm::PS256);
        assert!(
            RustCryptoProvider::new()
                .verifying_key(&with_alg, Algorithm::PS256)
                .is_ok()
        );
    }

    #[test]
    fn refuses_private_key_pem() {
        let key = PrivateKey::generate(Algorithm::ES256).unwrap();
        let private = key.to_pkcs8_pem().unwrap();
        for text in [
            private.as_str(),
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        ] {
            assert!(
                matches!(Jwk::from_public_pem(text), Err(Error::PrivateKeyInPem)),
                "{text}"
            );
            assert!(matches!(
                Jwk::from_public_key_text(text),
                Err(Error::PrivateKeyInPem)
            ));
        }
        // A public key followed by a private key in one file.
        let both = format!("{}{}", public_pem(&key), &*private);
        assert!(matches!(
            Jwk::from_public_key_text(&both),
            Err(Error::PrivateKeyInPem)
        ));
        // Private-key DER under a PUBLIC KEY label.
        let relabelled = private.replace("PRIVATE KEY", "PUBLIC KEY");
        assert!(matches!(
            Jwk::from_public_pem(&relabelled),
            Err(Error::PrivateKeyInPem)
        ));
        assert_eq!(
            Error::PrivateKeyInPem.to_string(),
            "the PEM is a private key; give the public key"
        );
    }

    #[test]
    fn refuses_private_jwk() {
        // RFC 8037 A.1
        let private = r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert!(matches!(
            Jwk::from_public_key_text(private),
            Err(Error::PrivateKeyInJwk)
        ));
        let public = private.replace(r#""d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","#, "");
        let jwk = Jwk::from_public_key_text(&public).unwrap();
        assert_eq!(
            jwk.kid.as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"),
            "no kid: the RFC 7638 thumbprint"
        );
        assert_eq!(jwk.alg, None, "kept as written");
        for member in [
            r#""p":"AQAB""#,
            r#""q":"AQAB""#,
            r#""dp":"AQAB""#,
            r#""oth":[]"#,
        ] {
            let text = public.replace(r#""kty""#, &format!(r#"{member},"kty""#));
            assert!(
                matches!(
                    Jwk::from_public_key_text(&text),
                    Err(Error::PrivateKeyInJwk)
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn keeps_the_kid_and_checks_the_alg_of_a_jwk() {
        let p256 = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let named = p256.replace(r#""kty""#, r#""kid":"2024-key","alg":"ES256","kty""#);
        let jwk = Jwk::from_public_key_text(&format!("  \n{named}\n")).unwrap();
        assert_eq!(jwk.kid.as_deref(), Some("2024-key"));
        assert_eq!(jwk.alg, Some(Algorithm::ES256));
        let wrong_alg = p256.replace(r#""kty""#, r#""alg":"ES384","kty""#);
        assert!(matches!(
            Jwk::from_public_key_text(&wrong_alg),
            Err(Error::AlgorithmKeyMismatch(Algorithm::ES384))
        ));
        let hs = p256.replace(r#""kty""#, r#""alg":"HS256","kty""#);
        assert!(matches!(
            Jwk::from_public_key_text(&hs),
            Err(Error::SymmetricAlgorithm)
        ));
        let empty_kid = p256.replace(r#""kty""#, r#""kid":"","kty""#);
        assert!(matches!(
            Jwk::from_public_key_text(&empty_kid),
            Err(Error::InvalidJwk("empty kid"))
        ));
        let set = format!(r#"{{"keys":[{p256}]}}"#);
        assert!(matches!(
            Jwk::from_public_key_text(&set),
            Err(Error::InvalidJwk(_))
        ));
        // A point that is not on the curve is refused at load, not at first use.
        let off_curve = p256.replace(
            "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "y_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        );
        assert!(matches!(
            Jwk::from_public_key_text(&off_curve),
            Err(Error::InvalidPublicKey(_))
        ));
        // P-521 parses as a JWK but cannot verify here.
        let p521 = format!(
            r#"{{"kty":"EC","crv":"P-521","x":"{}","y":"{}"}}"#,
            b64::encode([1; 66]),
            b64::encode([2; 66])
        );
        assert!(Jwk::from_json(p521.as_bytes()).is_ok());
        assert!(matches!(
            Jwk::from_public_key_text(&p521),
            Err(Error::UnsupportedKey)
        ));
        assert!(matches!(
            Jwk::from_public_key_text(r#"{"kty":"oct","k":"AAAA"}"#),
            Err(Error::SymmetricKey)
        ));
    }

    #[test]
    fn refuses_garbage_other_labels_and_oversized_input() {
        for text in [
            "",
            "   ",
            "not a key",
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n",
        ] {
            assert!(
                matches!(Jwk::from_public_key_text(text), Err(Error::InvalidPem(_))),
                "{text:?}"
            );
        }
        assert!(matches!(
            Jwk::from_public_key_text("{"),
            Err(Error::Json { .. })
        ));
        let certificate = RFC8410_ED25519.replace("PUBLIC KEY", "CERTIFICATE");
        assert!(matches!(
            Jwk::from_public_pem(&certificate),
            Err(Error::InvalidPem(_))
        ));
        let pkcs1 = RFC8410_ED25519.replace("PUBLIC KEY", "RSA PUBLIC KEY");
        assert!(matches!(
            Jwk::from_public_pem(&pkcs1),
            Err(Error::InvalidPem(_))
        ));
        // RFC 8410 10.1 with the X25519 OID (1.3.101.110): a key type with no JWS algorithm.
        let x25519 = RFC8410_ED25519.replace("MCowBQYDK2Vw", "MCowBQYDK2Vu");
        assert!(matches!(
            Jwk::from_public_pem(&x25519),
            Err(Error::UnsupportedKey)
        ));
        // The Ed25519 identity point: small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak_pem = ed25519_spki_pem(&weak);
        assert!(matches!(
            Jwk::from_public_pem(&weak_pem),
            Err(Error::InvalidPublicKey(_))
        ));
        // One key per file: a second PEM block is refused, not ignored.
        let two = format!("{RFC8410_ED25519}{RFC8410_ED25519}");
        assert!(matches!(
            Jwk::from_public_key_text(&two),
            Err(Error::InvalidPem(_))
        ));
        // The strict RFC 7468 grammar: base64 in 64-column lines.
        let rsa = rsa_pem();
        assert!(Jwk::from_public_pem(&rsa).is_ok());
        let body: String = rsa.lines().filter(|l| !l.starts_with("-----")).collect();
        let one_line = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
        assert!(matches!(
            Jwk::from_public_pem(&one_line),
            Err(Error::InvalidPem(_))
        ));
        // Oversized, even when it starts as a valid key.
        let big = format!("{RFC8410_ED25519}{}", " ".repeat(MAX_PUBLIC_KEY_BYTES));
        for result in [Jwk::from_public_pem(&big), Jwk::from_public_key_text(&big)] {
            assert!(matches!(
                result,
                Err(Error::TooLarge {
                    limit: MAX_PUBLIC_KEY_BYTES,
                    ..
                })
            ));
        }
        let big_json = format!(r#"{{"kty":"{}"}}"#, "A".repeat(MAX_PUBLIC_KEY_BYTES));
        assert!(matches!(
            Jwk::from_public_key_text(&big_json),
            Err(Error::TooLarge { .. })
        ));
    }

    fn ed25519_spki_pem(key: &[u8; 32]) -> String {
        let mut der = b64::decode("MCowBQYDK2VwAyEA").unwrap();
        der.extend_from_slice(key);
        let doc = p256::pkcs8::Document::try_from(der.as_slice()).unwrap();
        doc.to_pem("PUBLIC KEY", LineEnding::LF).unwrap()
    }
}
