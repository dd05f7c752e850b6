//! [`KmsSigner`]: JWS signatures made by an asymmetric AWS KMS key.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use token_jwt::{
    Algorithm, AsyncJwsSigner, CryptoProvider, EcCurve, Jwk, RustCryptoProvider, SignFuture,
};

use super::{KmsClient, classify, same_key};
use crate::breaker::{BreakerState, CircuitBreaker, Outcome};
use crate::error::{Error, Result};

/// The largest message KMS accepts with `MessageType=RAW`; longer signing inputs are sent as
/// their digest.
pub(crate) const MAX_RAW_MESSAGE: usize = 4096;

/// The key specs this crate signs with and the JWS algorithm each implies (RSA: RS256 unless
/// PS256 is asked for).
fn algorithm_for_spec(spec: &str, requested: Option<Algorithm>) -> Result<Algorithm> {
    let alg = match spec {
        "ECC_NIST_P256" => Algorithm::ES256,
        "ECC_NIST_P384" => Algorithm::ES384,
        "RSA_2048" | "RSA_3072" | "RSA_4096" => match requested {
            Some(Algorithm::PS256) => Algorithm::PS256,
            _ => Algorithm::RS256,
        },
        other => return Err(Error::UnsupportedKeySpec(other.to_owned())),
    };
    match requested {
        Some(r) if r != alg => Err(Error::UnsupportedKeySpec(format!(
            "{spec} (the configured algorithm is {r})"
        ))),
        _ => Ok(alg),
    }
}

fn kms_algorithm(alg: Algorithm) -> SigningAlgorithmSpec {
    match alg {
        Algorithm::ES384 => SigningAlgorithmSpec::EcdsaSha384,
        Algorithm::RS256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        Algorithm::PS256 => SigningAlgorithmSpec::RsassaPssSha256,
        // ES256; EdDSA never gets here (no KMS key spec maps to it).
        _ => SigningAlgorithmSpec::EcdsaSha256,
    }
}

/// A KMS `Sign` request for a JWS signing input (pure: no I/O, unit-tested against the KMS
/// specification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignRequest {
    pub(crate) message: Vec<u8>,
    pub(crate) message_type: MessageType,
    pub(crate) algorithm: SigningAlgorithmSpec,
}

/// Builds the `Sign` request: the signing input itself (`RAW`) when it is at most 4096 bytes,
/// else its digest with the algorithm's hash (`DIGEST`: SHA-384 for ES384, SHA-256 otherwise),
/// which KMS signs without hashing again, giving the same signature as `RAW`.
pub(crate) fn sign_request(alg: Algorithm, signing_input: &[u8]) -> SignRequest {
    let algorithm = kms_algorithm(alg);
    if signing_input.len() <= MAX_RAW_MESSAGE {
        return SignRequest {
            message: signing_input.to_vec(),
            message_type: MessageType::Raw,
            algorithm,
        };
    }
    let message = match alg {
        Algorithm::ES384 => sha2::Sha384::digest(signing_input).to_vec(),
        _ => sha2::Sha256::digest(signing_input).to_vec(),
    };
    SignRequest {
        message,
        message_type: MessageType::Digest,
        algorithm,
    }
}

/// Whether a KMS key reference is an alias (`alias/…` or an alias ARN).
fn is_alias(key_id: &str) -> bool {
    key_id.starts_with("alias/") || key_id.contains(":alias/")
}

/// Converts a KMS signature to its JWS form: DER ECDSA to fixed-size `r || s`; RSA signatures
/// are checked to be exactly the modulus length.
pub(crate) fn jws_signature(alg: Algorithm, modulus_len: usize, sig: &[u8]) -> Result<Vec<u8>> {
    match alg {
        Algorithm::ES256 => p256::ecdsa::Signature::from_der(sig)
            .map(|s| s.to_bytes().to_vec())
            .map_err(|_| Error::InvalidSignature("not a DER ECDSA P-256 signature")),
        Algorithm::ES384 => p384::ecdsa::Signature::from_der(sig)
            .map(|s| s.to_bytes().to_vec())
            .map_err(|_| Error::InvalidSignature("not a DER ECDSA P-384 signature")),
        _ if sig.len() == modulus_len => Ok(sig.to_vec()),
        _ => Err(Error::InvalidSignature(
            "RSA signature length differs from the modulus length",
        )),
    }
}

/// The public key of a KMS key (DER SubjectPublicKeyInfo) as a JWK, checked against the spec.
/// Returns the JWK and, for RSA, the modulus length in bytes.
pub(crate) fn spki_to_jwk(spec: &str, der: &[u8]) -> Result<(Jwk, usize)> {
    let bad = |_| Error::InvalidPublicKey("not a SubjectPublicKeyInfo of the key spec's type");
    match spec {
        "ECC_NIST_P256" => {
            let pk = p256::PublicKey::from_public_key_der(der).map_err(bad)?;
            let point = pk.to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(Error::InvalidPublicKey("P-256 point at infinity"));
            };
            Ok((Jwk::ec(EcCurve::P256, x, y)?, 0))
        }
        "ECC_NIST_P384" => {
            let pk = p384::PublicKey::from_public_key_der(der).map_err(bad)?;
            let point = pk.to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(Error::InvalidPublicKey("P-384 point at infinity"));
            };
            Ok((Jwk::ec(EcCurve::P384, x, y)?, 0))
        }
        "RSA_2048" | "RSA_3072" | "RSA_4096" => {
            let pk = rsa::RsaPublicKey::from_public_key_der(der).map_err(bad)?;
            let bits: usize = spec
                .strip_prefix("RSA_")
                .and_then(|b| b.parse().ok())
                .unwrap_or_default();
            if pk.size() * 8 != bits {
                return Err(Error::InvalidPublicKey(
                    "RSA modulus size differs from the key spec",
                ));
            }
            let jwk = Jwk::rsa(&pk.n().to_bytes_be(), &pk.e().to_bytes_be())?;
            Ok((jwk, pk.size()))
        }
        other => Err(Error::UnsupportedKeySpec(other.to_owned())),
    }
}

/// Signs JWS with an asymmetric AWS KMS key (`ECC_NIST_P256` → ES256, `ECC_NIST_P384` →
/// ES384, `RSA_2048`/`3072`/`4096` → RS256, or PS256 when asked for).
///
/// At start-up ([`KmsSigner::connect`]) it calls `GetPublicKey` once, checks the key spec,
/// `SIGN_VERIFY` usage and allowed signing algorithm, derives the JWK (`kid` = RFC 7638
/// thumbprint), and signs a random message that it verifies locally, so a key or endpoint that
/// does not produce valid JWS signatures fails start-up rather than every token.
///
/// Each signature is one KMS `Sign` call behind a circuit breaker (see
/// [`crate::BreakerConfig`]), with the client's timeouts and retries. Metrics (through the
/// `metrics` facade): histogram `token_kms_sign_seconds` (duration of calls that reached the
/// network) and counter `token_kms_sign_errors_total{reason}` (reasons from
/// [`Error::reason`]).
///
/// # Aliases
///
/// The key is resolved once, at start-up: every `Sign` call names the key ARN that
/// `GetPublicKey` reported then ([`KmsSigner::kms_key_arn`]), never the configured id
/// ([`KmsSigner::kms_key_id`], which may be an alias `alias/…`). Re-pointing the alias to
/// another KMS key therefore does not change what a running signer signs with: its signatures
/// keep matching its JWK and `kid`. (Signing through the alias would make them come from the
/// new key while the published JWK is the old one's: tokens no verifier accepts.) To follow
/// an alias, poll [`KmsClient::resolve_key`] with the configured id, and when the answer is
/// another key ([`KmsSigner::signs_with`] is false), connect a new signer and rotate it in
/// through the key ring.
///
/// Because `Sign` names the key ARN, an IAM or key policy that allows `kms:Sign` only through
/// the alias (condition key `kms:RequestAlias`) denies it; grant `kms:Sign` on the key itself,
/// or condition on `kms:ResourceAliases`. `GetPublicKey` at start-up is called with the
/// configured id.
///
/// Signing errors reach callers as [`token_jwt::Error::Signing`] whose source is this crate's
/// [`Error`].
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    key_arn: String,
    alg: Algorithm,
    jwk: Jwk,
    modulus_len: usize,
    breaker: CircuitBreaker,
}

impl fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsSigner")
            .field("key_id", &self.key_id)
            .field("key_arn", &self.key_arn)
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

/// Options for [`KmsSigner`]; start with [`KmsSigner::builder`].
#[derive(Debug)]
pub struct KmsSignerBuilder {
    client: KmsClient,
    key_id: String,
    alg: Option<Algorithm>,
    provider: Arc<dyn CryptoProvider>,
}

impl KmsSignerBuilder {
    /// Requires this JWS algorithm: start-up fails if the key cannot make it. For RSA keys,
    /// `PS256` selects RSASSA-PSS (default RS256).
    #[must_use]
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.alg = Some(alg);
        self
    }

    /// The provider that verifies the start-up signature (default: `RustCryptoProvider`).
    #[must_use]
    pub fn provider(mut self, provider: Arc<dyn CryptoProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// Loads the public key, checks the key, and verifies one signature; see [`KmsSigner`].
    ///
    /// # Errors
    /// Any KMS error ([`Error::KeyNotFound`], [`Error::AccessDenied`], [`Error::Unreachable`],
    /// …), [`Error::UnsupportedKeySpec`], [`Error::WrongKeyUsage`],
    /// [`Error::SigningAlgorithmNotAllowed`], [`Error::InvalidPublicKey`],
    /// [`Error::SelfTestFailed`].
    pub async fn connect(self) -> Result<KmsSigner> {
        let out = self
            .client
            .sdk()
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| classify("GetPublicKey", &self.key_id, e))?;
        // `KeySpec` replaced `CustomerMasterKeySpec`; KMS still returns both, some emulators
        // only the older one.
        #[allow(
            deprecated,
            reason = "fallback for endpoints that only send the older field"
        )]
        let spec = out
            .key_spec()
            .map(|s| s.as_str().to_owned())
            .or_else(|| {
                out.customer_master_key_spec()
                    .map(|s| s.as_str().to_owned())
            })
            .ok_or(Error::InvalidPublicKey("GetPublicKey returned no key spec"))?;
        let alg = algorithm_for_spec(&spec, self.alg)?;
        match out.key_usage().map(|u| u.as_str()) {
            Some("SIGN_VERIFY") => {}
            other => return Err(Error::WrongKeyUsage(other.unwrap_or("unknown").to_owned())),
        }
        let kms_alg = kms_algorithm(alg);
        if !out.signing_algorithms().contains(&kms_alg) {
            return Err(Error::SigningAlgorithmNotAllowed(
                kms_alg.as_str().to_owned(),
            ));
        }
        let der = out.public_key().ok_or(Error::InvalidPublicKey(
            "GetPublicKey returned no public key",
        ))?;
        let (jwk, modulus_len) = spki_to_jwk(&spec, der.as_ref())?;
        let kid = jwk.thumbprint();
        // The key every `Sign` will name. KMS always reports it; an endpoint that does not may
        // be given a key id or key ARN, never an alias (which could be re-pointed later).
        let key_arn = match out.key_id() {
            Some(arn) => arn.to_owned(),
            None if !is_alias(&self.key_id) => self.key_id.clone(),
            None => {
                return Err(Error::InvalidPublicKey(
                    "GetPublicKey returned no key id for an alias",
                ));
            }
        };
        let signer = KmsSigner {
            client: self.client.sdk().clone(),
            key_arn,
            key_id: self.key_id,
            alg,
            jwk: jwk.with_kid(kid).with_alg(alg),
            modulus_len,
            breaker: CircuitBreaker::new(self.client.breaker),
        };
        signer.self_test(self.provider.as_ref()).await?;
        Ok(signer)
    }
}

impl KmsSigner {
    /// A builder for the key `key_id` (key id, key ARN, alias name `alias/…` or alias ARN).
    pub fn builder(client: &KmsClient, key_id: impl Into<String>) -> KmsSignerBuilder {
        KmsSignerBuilder {
            client: client.clone(),
            key_id: key_id.into(),
            alg: None,
            provider: Arc::new(RustCryptoProvider::new()),
        }
    }

    /// [`KmsSigner::builder`] with the defaults, connected.
    ///
    /// # Errors
    /// As [`KmsSignerBuilder::connect`].
    pub async fn connect(client: &KmsClient, key_id: impl Into<String>) -> Result<Self> {
        Self::builder(client, key_id).connect().await
    }

    /// The key id as configured (possibly an alias).
    pub fn kms_key_id(&self) -> &str {
        &self.key_id
    }

    /// The key ARN `GetPublicKey` reported at start-up: the key every `Sign` call names, even
    /// when the configured id is an alias that was re-pointed since.
    pub fn kms_key_arn(&self) -> &str {
        &self.key_arn
    }

    /// Whether `key` (a key id or key ARN, as [`KmsClient::resolve_key`] returns) names the
    /// key this signer signs with. Compares key ids, so a bare key id and the key's ARN match
    /// (some endpoints report one where KMS reports the other).
    pub fn signs_with(&self, key: &str) -> bool {
        same_key(key, &self.key_arn)
    }

    /// The state of this signer's circuit breaker.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    async fn self_test(&self, provider: &dyn CryptoProvider) -> Result<()> {
        let message = format!("token-kms start-up self-test {}", token_jwt::random_id()?);
        let sig = self.sign_checked(message.as_bytes()).await?;
        let verifier = provider.verifying_key(&self.jwk, self.alg)?;
        verifier
            .verify(message.as_bytes(), &sig)
            .map_err(|_| Error::SelfTestFailed { alg: self.alg })
    }

    /// The key as errors name it: the configured id, and the key ARN signed with when the
    /// configured id is an alias.
    fn error_key_name(&self) -> String {
        if same_key(&self.key_id, &self.key_arn) {
            self.key_id.clone()
        } else {
            format!("{} ({})", self.key_id, self.key_arn)
        }
    }

    /// One `Sign` call behind the breaker, with metrics.
    async fn sign_checked(&self, signing_input: &[u8]) -> Result<Vec<u8>> {
        let result = match self.breaker.acquire(Instant::now()) {
            Err(open) => Err(open),
            Ok(permit) => {
                let start = Instant::now();
                // A span per KMS call, at DEBUG: disabled at this call site unless a subscriber
                // asks for it (the server's trace export does).
                let span = tracing::debug_span!(
                    "kms",
                    otel.name = "KMS.Sign",
                    otel.kind = "client",
                    rpc.system = "aws-api",
                    rpc.service = "KMS",
                    rpc.method = "Sign",
                    otel.status_code = tracing::field::Empty,
                );
                let result =
                    tracing::Instrument::instrument(self.call_sign(signing_input), span.clone())
                        .await;
                if result.is_err() {
                    span.record("otel.status_code", "error");
                }
                metrics::histogram!("token_kms_sign_seconds").record(start.elapsed().as_secs_f64());
                let outcome = match &result {
                    Err(e) if e.is_unavailability() => Outcome::Failed,
                    _ => Outcome::Answered,
                };
                permit.finish(outcome, Instant::now());
                result
            }
        };
        if let Err(e) = &result {
            metrics::counter!("token_kms_sign_errors_total", "reason" => e.reason()).increment(1);
        }
        result
    }

    /// One KMS `Sign` call with the key resolved at start-up (never the configured alias: see
    /// [`KmsSigner`]).
    async fn call_sign(&self, signing_input: &[u8]) -> Result<Vec<u8>> {
        let req = sign_request(self.alg, signing_input);
        let out = self
            .client
            .sign()
            .key_id(&self.key_arn)
            .message(Blob::new(req.message))
            .message_type(req.message_type)
            .signing_algorithm(req.algorithm)
            .send()
            .await
            .map_err(|e| classify("Sign", &self.error_key_name(), e))?;
        // Defence in depth: KMS signs with the key named, so this only fires on an endpoint
        // that answers with another key.
        if let Some(actual) = out.key_id()
            && !same_key(actual, &self.key_arn)
        {
            return Err(Error::KeyChanged {
                expected: self.key_arn.clone(),
                actual: actual.to_owned(),
            });
        }
        let sig = out
            .signature()
            .ok_or(Error::InvalidSignature("Sign returned no signature"))?;
        jws_signature(self.alg, self.modulus_len, sig.as_ref())
    }
}

impl AsyncJwsSigner for KmsSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    fn sign_async<'a>(&'a self, signing_input: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            self.sign_checked(signing_input)
                .await
                .map_err(Error::into_signing_error)
        })
    }
}

#[cfg(test)]
mod tests {
    //! The parts of the KMS protocol that the emulator used by the integration tests (moto)
    //! cannot check, tested here against the AWS KMS specification instead:
    //!
    //! - `MessageType=DIGEST`: KMS signs the given digest *without hashing it again*. moto
    //!   ignores `MessageType` and hashes the digest again, so a DIGEST signature from moto
    //!   never verifies as JWS. Here a local key signs the prehash, as KMS does.
    //! - `RSASSA_PSS_SHA_256`: KMS uses a salt as long as the hash (32 bytes), as JWS PS256
    //!   requires (RFC 7518 3.5). moto uses the maximum salt length, which a strict PS256
    //!   verifier refuses. Here a local key signs with the 32-byte salt, as KMS does.

    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::hazmat::PrehashSigner;
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    use token_jwt::JwsVerifier;

    use super::*;

    const RSA_PEM: &str = include_str!("../../tests/data/rsa2048-test-key.pem");

    fn verifier(jwk: &Jwk, alg: Algorithm) -> Arc<dyn JwsVerifier> {
        RustCryptoProvider::new().verifying_key(jwk, alg).unwrap()
    }

    #[test]
    fn short_inputs_are_sent_raw() {
        let input = vec![b'a'; MAX_RAW_MESSAGE];
        let req = sign_request(Algorithm::ES256, &input);
        assert_eq!(req.message_type, MessageType::Raw);
        assert_eq!(req.message, input);
        assert_eq!(req.algorithm, SigningAlgorithmSpec::EcdsaSha256);
    }

    #[test]
    fn long_inputs_are_sent_as_the_algorithms_digest() {
        let input = vec![b'a'; MAX_RAW_MESSAGE + 1];
        for (alg, kms, digest) in [
            (
                Algorithm::ES256,
                SigningAlgorithmSpec::EcdsaSha256,
                sha2::Sha256::digest(&input).to_vec(),
            ),
            (
                Algorithm::ES384,
                SigningAlgorithmSpec::EcdsaSha384,
                sha2::Sha384::digest(&input).to_vec(),
            ),
            (
                Algorithm::RS256,
                SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
                sha2::Sha256::digest(&input).to_vec(),
            ),
            (
                Algorithm::PS256,
                SigningAlgorithmSpec::RsassaPssSha256,
                sha2::Sha256::digest(&input).to_vec(),
            ),
        ] {
            let req = sign_request(alg, &input);
            assert_eq!(req.message_type, MessageType::Digest, "{alg}");
            assert_eq!(req.algorithm, kms, "{alg}");
            assert_eq!(req.message, digest, "{alg}");
        }
    }

    #[test]
    fn digest_mode_es256_signature_verifies_over_the_signing_input() {
        // What KMS does with DIGEST + ECDSA_SHA_256: ECDSA over the given 32 bytes, no second
        // hash, DER-encoded.
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let input = vec![b'x'; 10_000];
        let req = sign_request(Algorithm::ES256, &input);
        let sig: p256::ecdsa::Signature = key.sign_prehash(&req.message).unwrap();
        let der = sig.to_der();
        let jws = jws_signature(Algorithm::ES256, 0, der.as_bytes()).unwrap();
        assert_eq!(jws.len(), 64);
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = Jwk::ec(EcCurve::P256, point.x().unwrap(), point.y().unwrap()).unwrap();
        verifier(&jwk, Algorithm::ES256)
            .verify(&input, &jws)
            .unwrap();
        // moto's behaviour (hashing the digest again) does not verify: that is why the
        // emulator cannot test this mode.
        let rehashed: p256::ecdsa::Signature = rsa::signature::Signer::sign(&key, &req.message);
        assert!(
            verifier(&jwk, Algorithm::ES256)
                .verify(&input, &rehashed.to_bytes())
                .is_err()
        );
    }

    #[test]
    fn digest_mode_es384_signature_verifies_over_the_signing_input() {
        let key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let input = vec![b'y'; 5_000];
        let req = sign_request(Algorithm::ES384, &input);
        assert_eq!(req.message.len(), 48);
        let sig: p384::ecdsa::Signature = key.sign_prehash(&req.message).unwrap();
        let jws = jws_signature(Algorithm::ES384, 0, sig.to_der().as_bytes()).unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = Jwk::ec(EcCurve::P384, point.x().unwrap(), point.y().unwrap()).unwrap();
        verifier(&jwk, Algorithm::ES384)
            .verify(&input, &jws)
            .unwrap();
    }

    fn rsa_key() -> (rsa::RsaPrivateKey, Jwk) {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PEM).unwrap();
        let public = key.to_public_key();
        let jwk = Jwk::rsa(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
        (key, jwk)
    }

    #[test]
    fn digest_mode_rs256_signature_verifies_over_the_signing_input() {
        // DIGEST + RSASSA_PKCS1_V1_5_SHA_256: PKCS#1 v1.5 padding with the SHA-256
        // DigestInfo around the given digest.
        let (key, jwk) = rsa_key();
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
        let input = vec![b'z'; 4097];
        let req = sign_request(Algorithm::RS256, &input);
        let sig = signer.sign_prehash(&req.message).unwrap().to_vec();
        let jws = jws_signature(Algorithm::RS256, 256, &sig).unwrap();
        verifier(&jwk, Algorithm::RS256)
            .verify(&input, &jws)
            .unwrap();
        assert!(jws_signature(Algorithm::RS256, 256, &sig[1..]).is_err());
    }

    #[test]
    fn ps256_needs_the_kms_salt_length() {
        let (key, jwk) = rsa_key();
        let input = b"header.payload";
        // KMS RSASSA_PSS_SHA_256: MGF1-SHA-256 and a 32-byte salt, which is JWS PS256.
        let kms_like = rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(key.clone(), 32);
        let sig = kms_like
            .sign_with_rng(&mut rand_core::OsRng, input)
            .to_vec();
        verifier(&jwk, Algorithm::PS256)
            .verify(input, &sig)
            .unwrap();
        // moto's RSASSA_PSS_SHA_256: the maximum salt length (256 - 32 - 2 = 222 bytes).
        let moto_like = rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(key, 222);
        let sig = moto_like
            .sign_with_rng(&mut rand_core::OsRng, input)
            .to_vec();
        assert!(
            verifier(&jwk, Algorithm::PS256)
                .verify(input, &sig)
                .is_err()
        );
    }

    #[test]
    fn der_conversion_refuses_garbage() {
        assert!(jws_signature(Algorithm::ES256, 0, &[0x30, 0x02, 0x01]).is_err());
        assert!(jws_signature(Algorithm::ES384, 0, &[0u8; 96]).is_err());
    }

    #[test]
    fn alias_references() {
        assert!(is_alias("alias/token-signing"));
        assert!(is_alias(
            "arn:aws:kms:eu-west-1:111122223333:alias/token-signing"
        ));
        assert!(!is_alias("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!is_alias(
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
    }

    #[test]
    fn key_specs() {
        assert_eq!(
            algorithm_for_spec("ECC_NIST_P256", None).unwrap(),
            Algorithm::ES256
        );
        assert_eq!(
            algorithm_for_spec("RSA_3072", None).unwrap(),
            Algorithm::RS256
        );
        assert_eq!(
            algorithm_for_spec("RSA_3072", Some(Algorithm::PS256)).unwrap(),
            Algorithm::PS256
        );
        assert!(matches!(
            algorithm_for_spec("ECC_SECG_P256K1", None),
            Err(Error::UnsupportedKeySpec(_))
        ));
        assert!(matches!(
            algorithm_for_spec("ECC_NIST_P384", Some(Algorithm::ES256)),
            Err(Error::UnsupportedKeySpec(_))
        ));
    }

    #[test]
    fn spki_parsing_checks_the_spec() {
        let (key, jwk) = rsa_key();
        use rsa::pkcs8::EncodePublicKey;
        let der = key.to_public_key().to_public_key_der().unwrap();
        let (parsed, len) = spki_to_jwk("RSA_2048", der.as_bytes()).unwrap();
        assert_eq!(parsed, jwk);
        assert_eq!(len, 256);
        assert!(spki_to_jwk("RSA_4096", der.as_bytes()).is_err());
        assert!(spki_to_jwk("ECC_NIST_P256", der.as_bytes()).is_err());
    }
}
