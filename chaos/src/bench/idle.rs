//! Idle keep-alive clients for `bench --conns`: many connections that each make one
//! request and then stay open and silent (plain HTTP/1.1, over TLS, HTTP/2 over TLS,
//! or HTTP/1.1 through a TCP proxy), and the open-file limit that bounds them.

use super::protocol::ConnProtocol;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;

/// Connections opened at once.
const PARALLEL: usize = 128;
/// One request and its answer, at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A response head larger than this is refused.
const MAX_RESPONSE: usize = 64 * 1024;

/// Raises this process's soft open-file limit to the hard one (children inherit it);
/// returns the limit now in force.
pub fn raise_nofile() -> Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(NOFILE)")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(NOFILE)")?;
    }
    Ok(hard.max(soft))
}

/// The most idle connections one measurement holds with `nofile` descriptors: this
/// process holds one per connection and the proxy one (nginx and HAProxy reserve a
/// second for an upstream), with 1,000 to spare, in whole thousands.
pub fn max_idle(nofile: u64) -> u32 {
    let usable = nofile.saturating_sub(1000) / 2 / 1000 * 1000;
    u32::try_from(usable).unwrap_or(u32::MAX).max(1000)
}

/// One open idle client connection.
pub enum IdleConn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    H2(h2::client::SendRequest<Bytes>),
}

/// How to open idle connections to one target.
#[derive(Clone)]
pub struct Dialer {
    pub addr: SocketAddr,
    pub protocol: ConnProtocol,
    /// The run's client TLS settings (ALPN http/1.1; h2 for `H2`).
    pub tls: Arc<ClientConfig>,
}

impl Dialer {
    /// Connects and makes one request.
    async fn open_one(self) -> Result<IdleConn> {
        let mut tcp = TcpStream::connect(self.addr).await.context("connecting")?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        match self.protocol {
            ConnProtocol::Http | ConnProtocol::Tcp => {
                get(&mut tcp).await?;
                Ok(IdleConn::Plain(tcp))
            }
            ConnProtocol::Https => {
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let mut tls = tokio_rustls::TlsConnector::from(self.tls)
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?;
                get(&mut tls).await?;
                Ok(IdleConn::Tls(Box::new(tls)))
            }
            ConnProtocol::H2 => {
                drop(tcp);
                let mut client = super::h2conns::connect(self.addr, self.tls).await?;
                super::h2conns::get(&mut client).await?;
                Ok(IdleConn::H2(client))
            }
        }
    }
}

impl IdleConn {
    /// Another request on the open connection.
    async fn again(&mut self) -> Result<()> {
        match self {
            IdleConn::Plain(s) => get(s).await,
            IdleConn::Tls(s) => get(s.as_mut()).await,
            IdleConn::H2(c) => super::h2conns::get(c).await,
        }
    }
}

/// One `GET /` on a kept-alive connection; fails unless a whole 200 response comes back.
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<()> {
    let request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    let exchange = async {
        stream
            .write_all(request)
            .await
            .context("writing a request")?;
        read_response(stream).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .context("no response within 10 s")?
}

/// Reads one response with a `Content-Length` body and checks its status is 200.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE {
            bail!("response head too large");
        }
        let n = stream
            .read(&mut chunk)
            .await
            .context("reading a response")?;
        if n == 0 {
            bail!("connection closed before a response");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        let line = head.lines().next().unwrap_or_default();
        bail!("unexpected status line {line:?}");
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .context("response without Content-Length")?;
    while buf.len() < head_len + length {
        let n = stream.read(&mut chunk).await.context("reading a body")?;
        if n == 0 {
            bail!("connection closed inside a body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if buf.len() > head_len + length {
        bail!("bytes past the response");
    }
    Ok(())
}

/// Opens `count` more connections with `dialer`, each making one request, and adds
/// them to `conns`, where they stay open and idle.
pub async fn open(dialer: &Dialer, count: usize, conns: &mut Vec<IdleConn>) -> Result<()> {
    let mut left = count;
    while left > 0 {
        let batch = left.min(PARALLEL);
        let mut set = JoinSet::new();
        for _ in 0..batch {
            set.spawn(dialer.clone().open_one());
        }
        while let Some(joined) = set.join_next().await {
            let stream = joined.context("client task")??;
            conns.push(stream);
        }
        left -= batch;
    }
    Ok(())
}

/// Sends a second request on every connection (in batches); how many were answered.
pub async fn reuse_all(conns: Vec<IdleConn>) -> usize {
    let mut ok = 0;
    let mut conns = conns.into_iter();
    loop {
        let batch: Vec<IdleConn> = conns.by_ref().take(PARALLEL).collect();
        if batch.is_empty() {
            return ok;
        }
        let mut set = JoinSet::new();
        for mut conn in batch {
            set.spawn(async move { conn.again().await.is_ok() });
        }
        while let Some(joined) = set.join_next().await {
            ok += usize::from(joined.unwrap_or(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_count_fits_the_file_limit() {
        assert_eq!(max_idle(20_000), 9_000);
        assert_eq!(max_idle(1_048_576), 523_000);
        assert_eq!(max_idle(1024), 1000, "never below the first step");
    }

    #[tokio::test]
    async fn a_response_is_read_whole_and_checked() -> Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut buf = [0u8; 1024];
            for answer in [
                &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"[..],
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
            ] {
                let _ = s.read(&mut buf).await?;
                s.write_all(answer).await?;
            }
            anyhow::Ok(())
        });
        let mut stream = TcpStream::connect(addr).await?;
        get(&mut stream).await?;
        let second = get(&mut stream).await;
        assert!(second.is_err(), "a 502 is not an answer");
        server.await??;
        Ok(())
    }
}
