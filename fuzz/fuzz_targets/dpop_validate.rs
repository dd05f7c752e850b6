//! Fuzz target: `token_dpop::fuzzing::validate_proof` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_dpop::fuzzing::validate_proof(data));
