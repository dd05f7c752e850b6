//! The `token-service` binary.

fn main() {}
