//! The wall clock: the one place the server reads the time for token logic. Library crates
//! take the time as a parameter, so their tests can move it; the server passes [`now`].

/// The current time in seconds since the Unix epoch (0 for a clock before 1970, `i64::MAX`
/// for one past the year 292 billion).
pub fn now() -> i64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "the server is where the clock is read"
    )]
    let t = std::time::SystemTime::now();
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
