//! What the two sides of a proof share: the `typ` a proof carries and the `ath` hash that binds
//! it to an access token. [`crate::ProofBuilder`] writes them, [`crate::Validator`] checks them.

use sha2::{Digest, Sha256};

/// The `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";

/// `ath`: base64url(SHA-256(ASCII access token)), as RFC 9449 section 4.2 defines it.
pub fn access_token_hash(access_token: &str) -> String {
    token_jwt::base64url::encode(Sha256::digest(access_token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ath_is_the_rfc_9449_example() {
        // RFC 9449 section 7.1: the access token and the ath of its proof.
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}
