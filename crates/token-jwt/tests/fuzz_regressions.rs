//! Inputs the `cargo fuzz` targets of `fuzz/` once failed on, kept as regression tests
//! (`cargo xtask fuzz` prints these steps for every new failing input). Each input is also a
//! seed of its target's corpus in `fuzz/corpus/`.

use token_jwt::Jwk;

/// `{"kty":"RSA","n":"","e":"",...}`: the modulus bit count of an empty `n` underflowed.
#[test]
fn fuzz_jwk_thumbprint_683d0dc2() {
    let input = include_bytes!("data/fuzz/jwk_thumbprint-683d0dc2");
    token_jwt::fuzzing::jwk_thumbprint(input);
    token_jwt::fuzzing::parse_jwk(input);
    assert!(Jwk::from_json(br#"{"kty":"RSA","n":"","e":"AQAB"}"#).is_err());
}
