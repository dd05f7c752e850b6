//! Fuzz target: `token_refresh::fuzzing::parse_revocation_event` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_refresh::fuzzing::parse_revocation_event(data));
