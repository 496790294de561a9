//! What went wrong, which decides the exit code.

use std::fmt;

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// The definition or port is invalid; the text says why (exit 1).
    Invalid(String),
    /// The input could not be read or understood (exit 2).
    Input(anyhow::Error),
    /// The cluster could not be reached, or lacks the object (exit 3).
    Cluster(anyhow::Error),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 1,
            Failure::Input(_) => 2,
            Failure::Cluster(_) => 3,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Invalid(reasons) => write!(f, "{reasons}"),
            // `{:#}` prints the whole context chain: "reading x.xml: No such file".
            Failure::Input(err) => write!(f, "error: {err:#}"),
            Failure::Cluster(err) => write!(f, "error: {err:#}"),
        }
    }
}
