//! The client side: [`ProofBuilder`] makes DPoP proofs (RFC 9449 section 4.2) with a local
//! key, so Rust clients can use this crate too.

use std::sync::Arc;

use serde::Serialize;
use token_jwt::{Algorithm, CryptoProvider, Jwk, JwsSigner, PrivateKey};

use crate::error::{Error, Result};
use crate::htu;
use crate::proof::{DPOP_TYP, access_token_hash};

/// Makes DPoP proofs with one key. The header (`typ`, `alg`, and the public `jwk` without
/// `kid`, `alg` or `use`) is serialized once, here.
#[derive(Debug)]
pub struct ProofBuilder {
    signer: Arc<dyn JwsSigner>,
    jwk: Jwk,
    header_b64: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl ProofBuilder {
    /// A builder signing with `key` through `provider`.
    ///
    /// # Errors
    /// [`Error::Signing`] when the provider cannot sign with this key.
    pub fn new(key: &PrivateKey, provider: &dyn CryptoProvider) -> Result<Self> {
        Ok(ProofBuilder::from_signer(
            provider.signer(key).map_err(Error::Signing)?,
        ))
    }

    /// A builder over any local signer (a RustCrypto key through
    /// `token_jwt::RustCryptoSigner`, a provider's signer, ...).
    pub fn from_signer(signer: Arc<dyn JwsSigner>) -> Self {
        let jwk = Jwk::new(signer.public_jwk().params.clone());
        let header = serde_json::json!({
            "typ": DPOP_TYP,
            "alg": signer.algorithm().as_str(),
            "jwk": jwk.to_json_value(),
        });
        ProofBuilder {
            header_b64: token_jwt::base64url::encode(header.to_string()),
            signer,
            jwk,
        }
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.signer.algorithm()
    }

    /// The public key put in every proof.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The key's RFC 7638 thumbprint: the `jkt` tokens get bound to (and the `dpop_jkt`
    /// authorization request parameter).
    pub fn jkt(&self) -> String {
        self.jwk.thumbprint()
    }

    /// A proof for `method` and `uri` (query and fragment are left out of `htu`) at time `now`
    /// (Unix seconds), with a random `jti`, an `ath` for `access_token` and the server's
    /// `nonce` when given.
    ///
    /// # Errors
    /// [`Error::InvalidHtu`] when `uri` is not an absolute `http(s)` URI, [`Error::Signing`].
    pub fn proof(
        &self,
        method: &str,
        uri: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<String> {
        let jti = token_jwt::random_id().map_err(Error::Signing)?;
        self.proof_with_jti(method, uri, access_token, nonce, &jti, now)
    }

    /// [`ProofBuilder::proof`] with a chosen `jti` (it must be unique per proof).
    ///
    /// # Errors
    /// As [`ProofBuilder::proof`].
    pub fn proof_with_jti(
        &self,
        method: &str,
        uri: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        jti: &str,
        now: i64,
    ) -> Result<String> {
        if htu::normalize(uri).is_none() {
            return Err(Error::InvalidHtu);
        }
        let end = uri.find(['?', '#']).unwrap_or(uri.len());
        let claims = Claims {
            jti,
            htm: method,
            htu: uri.get(..end).unwrap_or(uri),
            iat: now,
            ath: access_token.map(access_token_hash),
            nonce,
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|_| Error::Signing(token_jwt::Error::Serialize))?;
        let mut out = String::with_capacity(self.header_b64.len() + payload.len() * 2 + 100);
        out.push_str(&self.header_b64);
        out.push('.');
        token_jwt::base64url::encode_into(&payload, &mut out);
        let signature = self.signer.sign(out.as_bytes()).map_err(Error::Signing)?;
        out.push('.');
        token_jwt::base64url::encode_into(&signature, &mut out);
        Ok(out)
    }
}
