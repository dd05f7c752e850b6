//! Fuzz target: `token_jwt::fuzzing::parse_jws` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_jwt::fuzzing::parse_jws(data));
