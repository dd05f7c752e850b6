//! Envelope mode: a signing key generated locally whose PKCS#8 is encrypted under a KMS
//! symmetric key. The blob at rest is useless without `kms:Decrypt` on that key; at start-up
//! one `Decrypt` call turns it back into a local key, and signing then runs at local speed with
//! no KMS request per token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use token_jwt::strict_json::{Limits, parse_object};
use token_jwt::{Algorithm, CryptoProvider, Jwk, JwsSigner, Part, PrivateKey};
use zeroize::Zeroizing;

use super::{KmsClient, classify};
use crate::error::{Error, Result};

/// The `format` member of every blob.
const FORMAT: &str = "token-kms/wrapped-key";
/// The blob version this crate writes and reads.
const VERSION: u64 = 1;
/// Largest blob accepted.
const MAX_BLOB_BYTES: usize = 16 * 1024;

/// Encryption context keys. KMS binds the context to the ciphertext (as AEAD associated data):
/// `Decrypt` fails unless the same context is given, so the blob's `alg` and `kid` cannot be
/// changed without KMS noticing.
const CONTEXT_PURPOSE: (&str, &str) = ("token-kms:purpose", "jws-signing-key");
const CONTEXT_ALG: &str = "token-kms:alg";
const CONTEXT_KID: &str = "token-kms:kid";

fn encryption_context(alg: Algorithm, kid: &str) -> HashMap<String, String> {
    HashMap::from([
        (CONTEXT_PURPOSE.0.to_owned(), CONTEXT_PURPOSE.1.to_owned()),
        (CONTEXT_ALG.to_owned(), alg.as_str().to_owned()),
        (CONTEXT_KID.to_owned(), kid.to_owned()),
    ])
}

/// A wrapped signing key as stored at rest: a small versioned JSON document
///
/// ```json
/// {"format":"token-kms/wrapped-key","version":1,"kms_key_id":"arn:aws:kms:…:key/…",
///  "alg":"ES256","kid":"<RFC 7638 thumbprint>","ciphertext":"<base64 KMS ciphertext>"}
/// ```
///
/// The ciphertext is KMS `Encrypt` output of the key's PKCS#8 DER under the encryption context
/// `{"token-kms:purpose":"jws-signing-key","token-kms:alg":…,"token-kms:kid":…}`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKeyBlob {
    kms_key_id: String,
    alg: Algorithm,
    kid: String,
    ciphertext: Vec<u8>,
}

impl fmt::Debug for WrappedKeyBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKeyBlob")
            .field("kms_key_id", &self.kms_key_id)
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl WrappedKeyBlob {
    /// Parses a blob (strict JSON: no duplicate or unknown members).
    ///
    /// # Errors
    /// [`Error::InvalidBlob`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BLOB_BYTES {
            return Err(Error::InvalidBlob("larger than 16 KiB"));
        }
        let map = parse_object(bytes, Part::Jwk, Limits::new(2, 16))
            .map_err(|_| Error::InvalidBlob("not a strict JSON object"))?;
        let text = |name: &'static str| match map.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(Error::InvalidBlob("a member is missing or not a string")),
        };
        if text("format")? != FORMAT {
            return Err(Error::InvalidBlob("not a token-kms wrapped key"));
        }
        match map.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(_) => return Err(Error::InvalidBlob("unsupported version")),
            None => return Err(Error::InvalidBlob("missing version")),
        }
        if map.len() != 6 {
            return Err(Error::InvalidBlob("unknown members"));
        }
        let alg =
            Algorithm::parse(text("alg")?).map_err(|_| Error::InvalidBlob("unknown algorithm"))?;
        let ciphertext = BASE64
            .decode(text("ciphertext")?)
            .map_err(|_| Error::InvalidBlob("ciphertext is not base64"))?;
        if ciphertext.is_empty() {
            return Err(Error::InvalidBlob("empty ciphertext"));
        }
        Ok(WrappedKeyBlob {
            kms_key_id: text("kms_key_id")?.to_owned(),
            alg,
            kid: text("kid")?.to_owned(),
            ciphertext,
        })
    }

    /// The blob as JSON text (one line, ending with a newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::json!({
            "format": FORMAT,
            "version": VERSION,
            "kms_key_id": self.kms_key_id,
            "alg": self.alg.as_str(),
            "kid": self.kid,
            "ciphertext": BASE64.encode(&self.ciphertext),
        })
        .to_string();
        s.push('\n');
        s
    }

    /// The KMS key the ciphertext was made with (as KMS reported it: a key ARN).
    pub fn kms_key_id(&self) -> &str {
        &self.kms_key_id
    }

    /// The JWS algorithm of the wrapped key.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` (RFC 7638 thumbprint) of the wrapped key.
    pub fn key_id(&self) -> &str {
        &self.kid
    }
}

/// Generates a signing key (`ES256`, `ES384` or `EdDSA`) with the OS CSPRNG and wraps it under
/// the KMS symmetric key `kms_key_id` (id, ARN or alias). The plaintext key exists only in this
/// process's memory (zeroized when dropped; the AWS SDK's own request buffer is not).
///
/// The server binary exposes this as `token-service keys wrap`.
///
/// ```no_run
/// # async fn demo() -> Result<(), token_kms::Error> {
/// use token_kms::{KmsClient, KmsConfig, wrap_new_key};
/// use token_jwt::Algorithm;
///
/// let client = KmsClient::connect(&KmsConfig::builder().region("eu-west-1").build()).await?;
/// let blob = wrap_new_key(&client, "alias/token-service-wrapping", Algorithm::ES256).await?;
/// std::fs::write("signing-key.wrapped.json", blob.to_json()).expect("write the blob");
/// println!("new key {} wrapped", blob.key_id());
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Jwt`] for an algorithm without local key generation (RS256, PS256), or any KMS
/// error of `Encrypt` ([`Error::KeyNotFound`], [`Error::AccessDenied`], …).
pub async fn wrap_new_key(
    client: &KmsClient,
    kms_key_id: &str,
    alg: Algorithm,
) -> Result<WrappedKeyBlob> {
    let key = PrivateKey::generate(alg)?;
    let kid = key.key_id().to_owned();
    let out = client
        .sdk()
        .encrypt()
        .key_id(kms_key_id)
        .plaintext(Blob::new(key.pkcs8_der().to_vec()))
        .set_encryption_context(Some(encryption_context(alg, &kid)))
        .send()
        .await
        .map_err(|e| classify("Encrypt", kms_key_id, e))?;
    let ciphertext = out
        .ciphertext_blob()
        .ok_or(Error::InvalidBlob("Encrypt returned no ciphertext"))?
        .as_ref()
        .to_vec();
    Ok(WrappedKeyBlob {
        kms_key_id: out.key_id().unwrap_or(kms_key_id).to_owned(),
        alg,
        kid,
        ciphertext,
    })
}

/// A local signing key unwrapped from a [`WrappedKeyBlob`] with KMS `Decrypt`. It is a
/// [`JwsSigner`] (and so an [`token_jwt::AsyncJwsSigner`]): signing makes no KMS call.
pub struct WrappedKey {
    signer: Arc<dyn JwsSigner>,
    kms_key_id: String,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kms_key_id", &self.kms_key_id)
            .field("alg", &self.signer.algorithm())
            .field("kid", &self.signer.key_id())
            .finish_non_exhaustive()
    }
}

impl WrappedKey {
    /// Decrypts `blob` with the KMS key `kms_key_id` (the key it must have been wrapped with:
    /// KMS refuses a ciphertext of any other key) and loads the key into `provider`.
    ///
    /// # Errors
    /// - [`Error::WrongWrappingKey`]: the blob was wrapped under another KMS key, or the caller
    ///   may not decrypt with it;
    /// - [`Error::TamperedBlob`]: the ciphertext, `alg` or `kid` was altered;
    /// - any other KMS error ([`Error::KeyNotFound`], [`Error::Unreachable`], …);
    /// - [`Error::Jwt`] when the provider cannot load the key.
    pub async fn unwrap(
        client: &KmsClient,
        blob: &WrappedKeyBlob,
        kms_key_id: &str,
        provider: &dyn CryptoProvider,
    ) -> Result<Self> {
        let out = client
            .sdk()
            .decrypt()
            .key_id(kms_key_id)
            .ciphertext_blob(Blob::new(blob.ciphertext.clone()))
            .set_encryption_context(Some(encryption_context(blob.alg, &blob.kid)))
            .send()
            .await
            .map_err(|e| {
                let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                let message = e
                    .as_service_error()
                    .and_then(|s| s.message())
                    .unwrap_or("")
                    .to_owned();
                match code {
                    "IncorrectKeyException" | "AccessDeniedException" => Error::WrongWrappingKey {
                        key_id: kms_key_id.to_owned(),
                        message,
                    },
                    "InvalidCiphertextException" => Error::TamperedBlob(
                        "KMS refused the ciphertext or its encryption context (alg, kid)",
                    ),
                    _ => classify("Decrypt", kms_key_id, e),
                }
            })?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or(Error::InvalidBlob("Decrypt returned no plaintext"))?
                .into_inner(),
        );
        let key = PrivateKey::from_pkcs8_der(&plaintext)
            .map_err(|_| Error::TamperedBlob("the decrypted key is not a PKCS#8 private key"))?;
        if key.algorithm() != blob.alg || key.key_id() != blob.kid {
            return Err(Error::TamperedBlob(
                "the decrypted key does not match the blob's alg and kid",
            ));
        }
        Ok(WrappedKey {
            signer: provider.signer(&key)?,
            kms_key_id: out.key_id.unwrap_or_else(|| kms_key_id.to_owned()),
        })
    }

    /// The KMS key that unwrapped this key.
    pub fn kms_key_id(&self) -> &str {
        &self.kms_key_id
    }
}

impl JwsSigner for WrappedKey {
    fn algorithm(&self) -> Algorithm {
        self.signer.algorithm()
    }

    fn key_id(&self) -> &str {
        self.signer.key_id()
    }

    fn public_jwk(&self) -> &Jwk {
        self.signer.public_jwk()
    }

    fn sign(&self, signing_input: &[u8]) -> token_jwt::Result<Vec<u8>> {
        self.signer.sign(signing_input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> WrappedKeyBlob {
        WrappedKeyBlob {
            kms_key_id: "arn:aws:kms:eu-west-1:111122223333:key/abc".to_owned(),
            alg: Algorithm::ES256,
            kid: "kid-1".to_owned(),
            ciphertext: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn blob_round_trips() {
        let b = blob();
        let json = b.to_json();
        assert_eq!(WrappedKeyBlob::from_json(json.as_bytes()).unwrap(), b);
        assert!(!format!("{b:?}").contains("AQIDBA"));
    }

    #[test]
    fn blob_parsing_is_strict() {
        let json = blob().to_json();
        let cases = [
            json.replace("\"version\":1", "\"version\":2"),
            json.replace("token-kms/wrapped-key", "other"),
            json.replace("\"ES256\"", "\"HS256\""),
            json.replace("AQIDBA==", "not base64!"),
            json.replace("AQIDBA==", ""),
            json.replace('{', "{\"extra\":\"x\","),
            json.replace('{', "{\"alg\":\"ES256\","),
            "[]".to_owned(),
            String::new(),
        ];
        for case in cases {
            assert!(
                matches!(
                    WrappedKeyBlob::from_json(case.as_bytes()),
                    Err(Error::InvalidBlob(_))
                ),
                "{case}"
            );
        }
        assert!(WrappedKeyBlob::from_json(&vec![b' '; MAX_BLOB_BYTES + 1]).is_err());
    }

    #[test]
    fn context_binds_alg_and_kid() {
        let c = encryption_context(Algorithm::ES384, "k");
        assert_eq!(c.get("token-kms:alg").map(String::as_str), Some("ES384"));
        assert_eq!(c.get("token-kms:kid").map(String::as_str), Some("k"));
        assert_eq!(c.len(), 3);
    }
}
