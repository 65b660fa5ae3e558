//! Loopback helpers: picking free ports and waiting until an endpoint answers 200 (plain
//! HTTP here; HTTPS targets pass their TLS probe to `wait_until`).

use super::process::ChildGuard;
use anyhow::{bail, Context, Result};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released; a tiny race is accepted).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(listener.local_addr().context("probe port address")?.port())
}

/// `count` distinct free ports.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    // Hold every probe listener until all are picked so the ports differ.
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("binding a probe port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("probe port address")?.port()))
        .collect()
}

/// One `GET /` with `Connection: close`; true when the status line says 200.
fn get_ok(addr: SocketAddr) -> bool {
    let timeout = Duration::from_millis(500);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    head[..got].starts_with(b"HTTP/1.1 200") || head[..got].starts_with(b"HTTP/1.0 200")
}

/// Waits until `port` answers `GET /` with 200, failing early if `child` exits.
pub async fn wait_ready(port: u16, child: &mut ChildGuard, limit: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(addr, child, limit, || std::future::ready(get_ok(addr))).await
}

/// Waits until `probe` of `addr` succeeds, failing early if `child` exits.
pub async fn wait_until<F, Fut>(
    addr: SocketAddr,
    child: &mut ChildGuard,
    limit: Duration,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        child.ensure_running()?;
        if probe().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "no 200 from {addr} within {limit:?}; log:\n{}",
                child.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
