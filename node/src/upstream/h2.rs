//! HTTP/2 to the backends of a pool with `protocol = "h2"`: one shared connection per
//! backend, every request a stream on it.
//!
//! The connection is opened by the first request that finds none (or only a closed
//! one); requests arriving meanwhile wait for that connect instead of opening their
//! own, so a burst shares one connection. With `max_pending`, every request waiting for
//! a backend's connection counts as a pending connect (`Upstream::send_h2`): beyond the
//! cap it gets 503 at once instead of queueing behind a connect that may hang. Prior knowledge (h2c) on plain connections;
//! over `tls` the handshake must have chosen `h2` by ALPN. A stream never goes back
//! to a stack: when its response ends the stream is done, the connection stays.

use super::connect::{self, ConnectSettings};
use super::{ProxyBody, UpstreamError};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The sending half of one backend's HTTP/2 connection (cheap to clone: a handle).
pub(super) type H2Sender = http2::SendRequest<ProxyBody>;

/// The shared connection of one backend, if one is open.
#[derive(Default)]
pub(super) struct H2Slot {
    /// The open connection, read without waiting (the lock is never held across an
    /// await).
    open: std::sync::Mutex<Option<H2Sender>>,
    /// Held across a connect, so concurrent requests wait for it rather than race.
    connecting: tokio::sync::Mutex<()>,
}

/// How often an idle backend connection is pinged, and how long a ping may take.
const KEEPALIVE: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

impl H2Slot {
    /// The open connection, if there is one and it is not closed.
    pub(super) fn current(&self) -> Option<H2Sender> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// The connection once one is open: the one a concurrent request opened meanwhile
    /// (`reused`), or a new one.
    pub(super) async fn connect(
        &self,
        settings: &ConnectSettings,
        addr: SocketAddr,
    ) -> Result<(H2Sender, bool), UpstreamError> {
        let _turn = self.connecting.lock().await;
        if let Some(sender) = self.current() {
            return Ok((sender, true));
        }
        let sender = open(settings, addr).await?;
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
        Ok((sender, false))
    }
}

/// TCP, TLS with ALPN `h2` for pools with `tls`, then the HTTP/2 handshake.
async fn open(settings: &ConnectSettings, addr: SocketAddr) -> Result<H2Sender, UpstreamError> {
    let tcp = connect::tcp(addr, settings.connect_timeout).await?;
    let Some(tls) = &settings.tls else {
        return handshake(tcp, addr).await;
    };
    let stream = connect::tls_over(settings.connect_timeout, tls, tcp, addr).await?;
    if stream.get_ref().1.alpn_protocol() != Some(&b"h2"[..]) {
        return Err(UpstreamError::Tls {
            addr,
            source: std::io::Error::other("the backend did not choose h2 by ALPN"),
        });
    }
    handshake(stream, addr).await
}

async fn handshake<S>(stream: S, addr: SocketAddr) -> Result<H2Sender, UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .handshake::<_, ProxyBody>(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(backend = %addr, error = %e, "backend HTTP/2 connection ended");
        }
    });
    tracing::debug!(backend = %addr, "backend HTTP/2 connection open");
    Ok(sender)
}
