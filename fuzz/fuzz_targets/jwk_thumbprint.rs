//! Fuzz target: `token_jwt::fuzzing::jwk_thumbprint` must never panic: every parsed JWK's RFC 7638
//! thumbprint matches an independent computation and survives a round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_jwt::fuzzing::jwk_thumbprint(data));
