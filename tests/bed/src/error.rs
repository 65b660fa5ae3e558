//! The test bed's error type: what failed, with the command or path it was about.

/// Why a test-bed step failed.
#[derive(Debug, thiserror::Error)]
pub enum BedError {
    /// A program could not be started at all.
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed; `stderr` is what it said.
    #[error("{command}: {stderr}")]
    Command { command: String, stderr: String },
    /// A file or directory of the bed could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Entering a namespace, or signalling a process, failed.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    /// An HTTP exchange failed (a short text for a report: "connect: ConnectionRefused",
    /// "timeout after 300 ms", "incomplete message").
    #[error("{0}")]
    Http(String),
    /// The bed cannot be built as asked (leftovers, an address outside 10.77.0.0/16...).
    #[error("{0}")]
    Refused(String),
}

impl BedError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> BedError {
        BedError::Io {
            path: path.to_string(),
            source,
        }
    }
}
