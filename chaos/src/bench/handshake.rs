//! The new-handshake load: `connections` concurrent clients, each opening a TCP
//! connection, doing a full TLS 1.3 handshake, sending one `GET /` with
//! `Connection: close`, reading the response until the proxy closes, and starting over.
//!
//! Why not `wrk -H "Connection: close"`: wrk keeps one OpenSSL `SSL` object per
//! connection slot and `SSL_clear`s it on reconnect, which keeps the last session, so
//! every reconnect after the first resumes it (HAProxy's `show info` reported
//! `SslFrontendSessionReuse_pct: 100`). That measures resumption, and only where the
//! proxy issues tickets. This client disables resumption instead (see `tls.rs`), so every
//! proxy pays a full handshake per request, whatever its ticket settings.
//!
//! It runs on its own thread, pinned like wrk, with a current-thread runtime, and
//! reports in wrk's terms (`WrkResult`) so the rest of the bench treats it like wrk.
//! Latency here is from connect to the proxy's close: handshake included.

use super::process::Pin;
use super::wrk::{SocketErrors, WrkResult};
use anyhow::{anyhow, Context, Result};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A request that has not completed within this counts as a timeout (wrk's default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Responses are a few hundred bytes; anything past this is not read.
const MAX_RESPONSE: usize = 16 * 1024;
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// How to run the load.
#[derive(Clone)]
pub struct HandshakeRun {
    pub addr: SocketAddr,
    pub tls: Arc<ClientConfig>,
    pub connections: u32,
    pub duration: Duration,
    pub pin: Pin,
}

impl HandshakeRun {
    /// Runs the load on a pinned thread for `duration` and returns wrk-style figures.
    pub async fn run(&self) -> Result<WrkResult> {
        let run = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("bench-handshake".to_string())
            .spawn(move || {
                let _ = tx.send(run.run_on_this_thread());
            })
            .context("starting the handshake load thread")?;
        rx.await
            .map_err(|_| anyhow!("the handshake load thread ended without a result"))?
    }

    fn run_on_this_thread(&self) -> Result<WrkResult> {
        if let Some(cpu) = self.pin.0 {
            let mut set = CpuSet::new();
            set.set(cpu).context("CPU set")?;
            sched_setaffinity(Pid::from_raw(0), &set)
                .with_context(|| format!("pinning the handshake load to CPU {cpu}"))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("handshake load runtime")?;
        Ok(runtime.block_on(self.load()))
    }

    async fn load(&self) -> WrkResult {
        let connector = TlsConnector::from(self.tls.clone());
        let name = ServerName::from(self.addr.ip());
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + self.duration;
        let tasks: Vec<_> = (0..self.connections.max(1))
            .map(|_| {
                let (connector, name, addr) = (connector.clone(), name.clone(), self.addr);
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    // The request in flight at the deadline is dropped uncounted, as in wrk.
                    while let Ok(outcome) =
                        tokio::time::timeout_at(deadline, request(&connector, &name, addr)).await
                    {
                        tally.record(outcome);
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            // A panicked task only loses its own counts.
            if let Ok(tally) = task.await {
                total.merge(tally);
            }
        }
        total.into_result(start.elapsed())
    }
}

/// One request's outcome, classified the way wrk counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx/3xx response, with the time from connect to close.
    Ok(Duration),
    /// Any other status (wrk counts it as a request and as non-2xx/3xx).
    BadStatus(Duration),
    /// TCP connect or TLS handshake failed (wrk counts both as connect errors).
    Connect,
    Write,
    Read,
    Timeout,
}

/// Counts and latencies of one client, then of all of them.
#[derive(Debug, Default)]
pub struct Tally {
    latencies_us: Vec<u64>,
    non_2xx_3xx: u64,
    errors: SocketErrors,
}

impl Tally {
    pub fn record(&mut self, outcome: Outcome) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match outcome {
            Outcome::Ok(d) => self.latencies_us.push(micros(d)),
            Outcome::BadStatus(d) => {
                self.latencies_us.push(micros(d));
                self.non_2xx_3xx += 1;
            }
            Outcome::Connect => self.errors.connect += 1,
            Outcome::Write => self.errors.write += 1,
            Outcome::Read => self.errors.read += 1,
            Outcome::Timeout => self.errors.timeout += 1,
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.non_2xx_3xx += other.non_2xx_3xx;
        self.errors.connect += other.errors.connect;
        self.errors.write += other.errors.write;
        self.errors.read += other.errors.read;
        self.errors.timeout += other.errors.timeout;
    }

    /// The figures over a window of `elapsed`.
    pub fn into_result(mut self, elapsed: Duration) -> WrkResult {
        self.latencies_us.sort_unstable();
        let requests = self.latencies_us.len() as u64;
        let secs = elapsed.as_secs_f64();
        WrkResult {
            requests,
            requests_per_sec: if secs > 0.0 {
                requests as f64 / secs
            } else {
                f64::NAN
            },
            p50: Duration::from_micros(percentile(&self.latencies_us, 0.50)),
            p99: Duration::from_micros(percentile(&self.latencies_us, 0.99)),
            socket_errors: self.errors,
            non_2xx_3xx: self.non_2xx_3xx,
        }
    }
}

/// The value at quantile `q` of sorted values (nearest rank; 0 when empty).
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Whether the response starts with an `HTTP/1.x` status line of 2xx or 3xx;
/// `None` while no complete header block was read.
pub fn status_ok(response: &[u8]) -> Option<bool> {
    response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let line = response.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let version = words.next().unwrap_or_default();
    let status = words.next().unwrap_or_default();
    Some(version.starts_with(b"HTTP/1.") && matches!(status.first(), Some(b'2' | b'3')))
}

/// One new connection, full handshake, one request; bounded by `REQUEST_TIMEOUT`.
pub async fn request(
    connector: &TlsConnector,
    name: &ServerName<'static>,
    addr: SocketAddr,
) -> Outcome {
    let start = Instant::now();
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange(connector, name, addr)).await {
        Ok(Ok(true)) => Outcome::Ok(start.elapsed()),
        Ok(Ok(false)) => Outcome::BadStatus(start.elapsed()),
        Ok(Err(failed)) => failed,
        Err(_) => Outcome::Timeout,
    }
}

/// `Ok(status is 2xx/3xx)` once the proxy closed, or the failed step.
async fn exchange(
    connector: &TlsConnector,
    name: &ServerName<'static>,
    addr: SocketAddr,
) -> Result<bool, Outcome> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|_| Outcome::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|_| Outcome::Connect)?;
    tls.write_all(REQUEST).await.map_err(|_| Outcome::Write)?;
    let mut response = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) if response.len() < MAX_RESPONSE => response.extend_from_slice(&chunk[..n]),
            Ok(_) => {}
            // A close without close_notify, or a reset after the response, still ends a
            // complete exchange; without a response it is a read error.
            Err(_) => break,
        }
    }
    status_ok(&response).ok_or(Outcome::Read)
}

/// True once one HTTPS request to `addr` succeeds (the readiness probe of a target).
pub async fn probe(tls: &Arc<ClientConfig>, addr: SocketAddr) -> bool {
    let connector = TlsConnector::from(tls.clone());
    let name = ServerName::from(addr.ip());
    matches!(request(&connector, &name, addr).await, Outcome::Ok(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_ok(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nok\n"),
            Some(true)
        );
        assert_eq!(status_ok(b"HTTP/1.0 302 Found\r\n\r\n"), Some(true));
        assert_eq!(status_ok(b"HTTP/1.1 503 Busy\r\n\r\n"), Some(false));
        assert_eq!(status_ok(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(status_ok(b""), None);
    }

    #[test]
    fn tally_counts_like_wrk() {
        let mut a = Tally::default();
        a.record(Outcome::Ok(Duration::from_millis(2)));
        a.record(Outcome::BadStatus(Duration::from_millis(4)));
        a.record(Outcome::Connect);
        let mut b = Tally::default();
        b.record(Outcome::Ok(Duration::from_millis(1)));
        b.record(Outcome::Timeout);
        b.record(Outcome::Read);
        a.merge(b);
        let r = a.into_result(Duration::from_secs(2));
        assert_eq!(r.requests, 3);
        assert!((r.requests_per_sec - 1.5).abs() < 1e-9);
        assert_eq!(r.p50, Duration::from_millis(2));
        assert_eq!(r.p99, Duration::from_millis(4));
        assert_eq!(r.non_2xx_3xx, 1);
        assert_eq!(r.socket_errors.total(), 3);
        assert_eq!(r.errors(), 4);
    }
}
