//! Errors at the crate's edge. Only construction can fail: once an
//! [`AffinityStore`](crate::AffinityStore) exists, every Redis problem is reported as
//! "unavailable" to the caller, never as an error.

use thiserror::Error;

/// Why an [`AffinityStore`](crate::AffinityStore) could not be built.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The Redis or Sentinel URL could not be parsed.
    #[error("invalid redis url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// An option is out of range or options contradict each other.
    #[error("invalid session options: {0}")]
    InvalidOptions(String),
    /// Redis is configured but `new` was called outside a tokio runtime, so the
    /// background connector and monitor cannot be spawned.
    #[error("the session store needs a tokio runtime (call AffinityStore::new inside one)")]
    NoRuntime,
    /// The redis client rejected its configuration.
    #[error("redis client setup failed: {0}")]
    Client(#[from] redis::RedisError),
}
