//! `ExchangeFailure`: why one attempt of a raw HTTP/1.1 exchange with a backend failed,
//! the same for both codecs that speak raw HTTP/1.1 to backends (`h1`, `http2`), and
//! what it means: an answer fulcrum makes now (the client's fault, a timeout, a
//! malformed response) or a failed attempt the retry rule judges (`request::retry`).

use crate::pool::PoolRuntime;
use crate::request::local::Local;
use crate::request::retry::AttemptFailure;

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
    /// No response head within the pool's `response_timeout`.
    Timeout,
    /// A response head that is malformed or too large.
    BadResponse,
}

impl ExchangeFailure {
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
        match self {
            ExchangeFailure::ClientGone => {
                tracing::debug!(pool = %pool.name, "request body broken by the client");
                Err(Local::ClientError)
            }
            ExchangeFailure::Timeout => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, "backend response timeout");
                Err(Local::GatewayTimeout)
            }
            ExchangeFailure::BadResponse => Err(Local::BadGateway),
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
