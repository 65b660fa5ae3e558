//! The sockets of the DNS listener: one UDP socket and one TCP listener on `[dns] bind`.
//! Each request is answered from the facts of that instant (`reply::reply` over a fresh
//! `Facts`); nothing is cached, so an answer never lags the replicated view.
//!
//! TCP carries each message behind its two-byte length (RFC 1035 4.2.2): at most
//! `TCP_CONNS` connections at once, each closed after `TCP_IDLE` without a request or after
//! `TCP_REQUESTS` requests.

use super::reply::{reply, Transport};
use super::Source;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const TCP_CONNS: usize = 256;
const TCP_IDLE: Duration = Duration::from_secs(10);
const TCP_REQUESTS: usize = 100;
/// Largest UDP request read (longer datagrams are cut and then fail to decode).
const UDP_READ: usize = 4096;

/// The bound sockets.
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// Binds UDP and TCP on `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<Sockets> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    Ok(Sockets { udp, tcp })
}

/// Serves both sockets until `stop`.
pub async fn serve(sockets: Sockets, source: Arc<dyn Source>, stop: CancellationToken) {
    let udp = serve_udp(sockets.udp, source.clone(), stop.clone());
    let tcp = serve_tcp(sockets.tcp, source, stop);
    tokio::join!(udp, tcp);
}

async fn serve_udp(socket: UdpSocket, source: Arc<dyn Source>, stop: CancellationToken) {
    let mut buf = vec![0u8; UDP_READ];
    loop {
        let (len, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            got = socket.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: udp receive failed");
                    continue;
                }
            },
        };
        let Some(out) = answer(&buf[..len], Transport::Udp, source.as_ref()) else {
            continue;
        };
        if let Err(e) = socket.send_to(&out, peer).await {
            tracing::debug!(%peer, error = %e, "dns: udp send failed");
        }
    }
}

async fn serve_tcp(listener: TcpListener, source: Arc<dyn Source>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(TCP_CONNS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            got = listener.accept() => match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "dns: too many tcp connections; closing");
            continue;
        };
        let (source, stop) = (source.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve_conn(stream, source.as_ref()) => {}
            }
            drop(slot);
        });
    }
}

/// Answers up to `TCP_REQUESTS` length-prefixed requests on one connection.
async fn serve_conn(mut stream: TcpStream, source: &dyn Source) {
    for _ in 0..TCP_REQUESTS {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(out) = answer(&msg, Transport::Tcp, source) else {
            return;
        };
        let Ok(out_len) = u16::try_from(out.len()) else {
            return;
        };
        let mut frame = Vec::with_capacity(out.len() + 2);
        frame.extend_from_slice(&out_len.to_be_bytes());
        frame.extend_from_slice(&out);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

fn answer(request: &[u8], transport: Transport, source: &dyn Source) -> Option<Vec<u8>> {
    let (dns, facts) = source.now()?;
    reply(request, transport, &dns, &facts)
}
