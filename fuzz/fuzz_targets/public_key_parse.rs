//! Fuzz target: `token_jwt::fuzzing::parse_public_key` (a published-key file: public JWK or PEM
//! `PUBLIC KEY`) must never panic, and what it accepts must verify and read back identically.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_jwt::fuzzing::parse_public_key(data));
