//! The error every fixture returns.

use std::fmt;

/// Why a fixture could not start, stop or answer: a message for the test's failure output
/// (it names the process, the port, and the end of the process's log where there is one).
///
/// `Debug` prints the message as it is, so `fixture().unwrap()` fails with a readable text.
pub struct FixtureError(String);

impl FixtureError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        FixtureError(message.into())
    }

    /// The error with `context` in front (`"<context>: <message>"`).
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        FixtureError(format!("{context}: {}", self.0))
    }
}

impl fmt::Debug for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixtureError {}

impl From<std::io::Error> for FixtureError {
    fn from(e: std::io::Error) -> Self {
        FixtureError(e.to_string())
    }
}
