//! Fuzz target: `token_jwt::fuzzing::parse_jwk` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_jwt::fuzzing::parse_jwk(data));
