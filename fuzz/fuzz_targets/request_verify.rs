//! Fuzz target: `token_dpop::fuzzing::verify_request` (a resource server's one-call check of the
//! `Authorization` and `DPoP` header values) must never panic, and must render every rejection.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_dpop::fuzzing::verify_request(data));
