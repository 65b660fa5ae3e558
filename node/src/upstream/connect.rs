//! Opening a new connection to a backend: TCP, then TLS for pools with `tls`, then
//! the HTTP/1.1 handshake. The connection itself runs as its own task; what comes
//! back is the `SendRequest` half that the proxy sends requests through. Connections
//! that never switch protocols sit on `StopSending`, so an early answer to an upload
//! is read rather than lost to the write error.

use super::stop_sending::StopSending;
use super::ProxyBody;
use super::{ProxySender, UpstreamError};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How a pool's connections are made.
pub(super) struct ConnectSettings {
    pub connect_timeout: Duration,
    /// Client config and the name to verify, for pools with `tls`.
    pub tls: Option<TlsSettings>,
}

pub(crate) struct TlsSettings {
    /// `None` when no client config could be built: every TLS connect then fails.
    pub connector: Option<tokio_rustls::TlsConnector>,
    /// `tls.server_name`, or `None` to verify the backend's IP address.
    pub server_name: Option<ServerName<'static>>,
}

impl TlsSettings {
    pub fn new(
        config: Option<Arc<rustls::ClientConfig>>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        TlsSettings {
            connector: config.map(tokio_rustls::TlsConnector::from),
            server_name,
        }
    }
}

/// Opens a connection to `addr`. With `upgrades`, the connection can switch protocols
/// after a 101 (WebSocket); such a connection is never pooled.
pub(super) async fn open(
    settings: &ConnectSettings,
    addr: SocketAddr,
    upgrades: bool,
) -> Result<ProxySender, UpstreamError> {
    let tcp = tcp(addr, settings.connect_timeout).await?;
    if upgrades {
        // A tunnel must see every write error; only request/response connections
        // stop sending quietly.
        return open_on(settings, tcp, addr, true).await;
    }
    open_on(settings, StopSending::new(tcp), addr, false).await
}

/// TLS (for pools with `tls`) and the HTTP/1.1 handshake on an open connection.
async fn open_on<S>(
    settings: &ConnectSettings,
    tcp: S,
    addr: SocketAddr,
    upgrades: bool,
) -> Result<ProxySender, UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(tls) = &settings.tls else {
        return handshake(tcp, addr, upgrades).await;
    };
    let stream = tls_over(settings.connect_timeout, tls, tcp, addr).await?;
    handshake(stream, addr, upgrades).await
}

/// The TLS handshake with backend `addr` over `tcp`, within `timeout`, with the
/// pool's client config and the name it verifies.
pub(super) async fn tls_over<S>(
    timeout: Duration,
    tls: &TlsSettings,
    tcp: S,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<S>, UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(connector) = &tls.connector else {
        return Err(UpstreamError::Tls {
            addr,
            source: std::io::Error::other("no usable TLS client config for this pool"),
        });
    };
    let name = crate::tls::backend::server_name_for(tls.server_name.as_ref(), addr);
    tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| UpstreamError::Tls {
            addr,
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| UpstreamError::Tls { addr, source })
}

/// A TCP connection to `addr` within `timeout`, tuned for proxying.
pub(super) async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| UpstreamError::Connect {
            addr,
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| UpstreamError::Connect { addr, source })?;
    tune(&tcp);
    Ok(tcp)
}

/// No Nagle delay (requests are written whole) and TCP keepalive for silent peers.
fn tune(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "set TCP_NODELAY failed");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(30));
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "set TCP keepalive failed");
    }
}

async fn handshake<S>(
    stream: S,
    addr: SocketAddr,
    upgrades: bool,
) -> Result<ProxySender, UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake::<_, ProxyBody>(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Handshake)?;
    if upgrades {
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(backend = %addr, error = %e, "backend connection ended");
            }
        });
    } else {
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(backend = %addr, error = %e, "backend connection ended");
            }
        });
    }
    Ok(sender)
}
