//! Choosing and connecting to a backend for one L4 connection, with one retry.
//!
//! The pool's own algorithm picks (round-robin, weighted, least-connections, random, or
//! consistent-hash on the client IP: the hash key is the client address, as for HTTP's
//! `hash_key = "source-ip"`). A connect that fails or exceeds the pool's
//! `connect_timeout` marks the backend failed for passive ejection (`note_failure`, so
//! the next connections avoid it at once, before any health check notices) and the
//! connection is tried once more on another backend. Nothing was sent yet, so a retry
//! can never duplicate client data.

use crate::balance::PickContext;
use crate::metrics::Metrics;
use crate::pool::PoolRuntime;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Connect attempts per client connection: the first pick and one retry elsewhere.
const ATTEMPTS: usize = 2;

/// A connected backend.
#[derive(Debug)]
pub struct Upstream {
    pub stream: TcpStream,
    /// Index into `pool.backends`.
    pub backend: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("pool `{0}` has no eligible backend")]
    NoBackend(String),
    #[error("pool `{pool}`: backend {addr}: {reason}")]
    Failed {
        pool: String,
        addr: SocketAddr,
        reason: String,
    },
}

/// Picks a backend for `client` and connects, retrying once on another backend.
pub async fn connect(
    pool: &PoolRuntime,
    connect_timeout: Duration,
    client: SocketAddr,
    metrics: &Metrics,
) -> Result<Upstream, ConnectError> {
    let key = client.ip().to_canonical().to_string().into_bytes();
    let ctx = PickContext {
        hash_key: Some(&key),
        client_ip: Some(client.ip()),
    };
    let mut exclude = None;
    let mut last_error = ConnectError::NoBackend(pool.name.clone());
    for attempt in 0..ATTEMPTS {
        let Some(index) = pool.pick(&ctx, exclude) else {
            break;
        };
        let backend = &pool.backends[index];
        let reason =
            match tokio::time::timeout(connect_timeout, TcpStream::connect(backend.addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    backend.state.note_success();
                    return Ok(Upstream {
                        stream,
                        backend: index,
                    });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("connect timed out after {connect_timeout:?}"),
            };
        let ejected_for = backend.state.note_failure();
        tracing::warn!(pool = %pool.name, backend = %backend.addr, error = %reason, ?ejected_for, "L4 connect failed");
        if attempt + 1 < ATTEMPTS {
            metrics.retries.inc();
        }
        exclude = Some(index);
        last_error = ConnectError::Failed {
            pool: pool.name.clone(),
            addr: backend.addr,
            reason,
        };
    }
    Err(last_error)
}
