//! Fuzz target: `token_guard::fuzzing::parse_forwarded` (the `Forwarded` and
//! `X-Forwarded-*` parsers behind the guard's request URI) must never panic, and the URI it
//! builds must stay an `http(s)` URI.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| token_guard::fuzzing::parse_forwarded(data));
