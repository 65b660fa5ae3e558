//! `ExchangeFailure`: why one attempt of a raw HTTP/1.1 exchange with a backend failed,
//! the same for both codecs that speak raw HTTP/1.1 to backends (`h1`, `http2`), and
//! what it means: an answer fulcrum makes now (the client's fault, a timeout, a
//! malformed response) or a failed attempt the retry rule judges (`request::retry`).

use crate::pool::PoolRuntime;
use crate::request::local::{Cap, Local};
use crate::request::retry::AttemptFailure;
use crate::request::timeouts::Expiry;

/// Why a backend attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeFailure {
    /// No connection could be opened (`timed_out`: no answer to the SYN in time, maybe
    /// one lost SYN; see `UpstreamError::is_connect_timeout`).
    Connect { timed_out: bool },
    /// The connection broke before a response byte arrived.
    Broken { reused: bool },
    /// The backend stopped taking the request body and closed without answering:
    /// 502, but no sign of an unhealthy backend (nothing to eject).
    Aborted,
    /// The client's request body ended early or broke: the client's fault (400 if it
    /// still listens).
    ClientGone,
    /// No response head within the try's limit (`request::timeouts`), and which it was.
    Timeout(Expiry),
    /// A response head that is malformed or too large.
    BadResponse,
    /// No connect was started: the backend is at the pool's `max_pending` (503).
    Overloaded,
}

impl ExchangeFailure {
    /// A connect to a backend of `pool` that failed (or was not started).
    pub(crate) fn connect(pool: &PoolRuntime, e: &crate::upstream::UpstreamError) -> Self {
        if matches!(e, crate::upstream::UpstreamError::Pending { .. }) {
            return ExchangeFailure::Overloaded;
        }
        tracing::warn!(pool = %pool.name, error = %e, "backend connect failed");
        ExchangeFailure::Connect {
            timed_out: e.is_connect_timeout(),
        }
    }

    /// The local answer this failure calls for at once, or the failed attempt for the
    /// retry rule. `body_sent`: a request body was (at least partly) consumed and cannot
    /// be sent again, so a broken connection is judged as broken during the body.
    pub(crate) fn judge(
        self,
        pool: &PoolRuntime,
        index: usize,
        body_sent: bool,
    ) -> Result<AttemptFailure, Local> {
        let backend = &pool.backends[index];
        if matches!(self, ExchangeFailure::Timeout(_)) {
            crate::request::outlier::observe_timeout(pool, index);
        }
        match self {
            ExchangeFailure::ClientGone => {
                tracing::debug!(pool = %pool.name, "request body broken by the client");
                Err(Local::ClientError)
            }
            ExchangeFailure::Timeout(Expiry::PerTry) => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, "backend try timeout");
                Ok(AttemptFailure::TryTimeout)
            }
            ExchangeFailure::Timeout(expiry) => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, ?expiry, "backend response timeout");
                Err(Local::GatewayTimeout)
            }
            ExchangeFailure::BadResponse => Err(Local::BadGateway),
            ExchangeFailure::Overloaded => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, "backend at max_pending: 503");
                Err(Local::Overloaded(Cap::Pending))
            }
            ExchangeFailure::Aborted => {
                tracing::info!(pool = %pool.name, backend = %backend.id, "backend closed during the request body without answering");
                Ok(AttemptFailure::Broken {
                    reused: false,
                    during_body: true,
                })
            }
            ExchangeFailure::Broken { reused } => Ok(AttemptFailure::Broken {
                reused,
                during_body: body_sent,
            }),
            ExchangeFailure::Connect { timed_out } => Ok(AttemptFailure::Connect { timed_out }),
        }
    }
}
