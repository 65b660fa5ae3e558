//! Raw TCP backends for L4 tests: a named echo server, and raw RESP commands to a real
//! `redis-server` (the test bed's `TestRedis`).
//!
//! `TcpEcho` greets each connection with `NAME\n` (so a test can tell which backend it
//! reached) and then echoes bytes. With `expect_proxy_v2`, it first reads a PROXY v2
//! header and keeps its raw bytes for the test to check.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A named TCP echo backend. Dropping it (or `kill`) closes its listener and connections.
pub struct TcpEcho {
    pub addr: SocketAddr,
    pub headers: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    pub async fn start(name: &str, expect_proxy_v2: bool) -> TcpEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("local addr");
        let headers = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(
            listener,
            name.to_string(),
            expect_proxy_v2,
            headers.clone(),
        ));
        TcpEcho {
            addr,
            headers,
            task,
        }
    }

    pub fn kill(self) {
        self.task.abort();
    }

    /// The PROXY headers received so far (raw bytes).
    pub fn received_headers(&self) -> Vec<Vec<u8>> {
        self.headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    name: String,
    expect_proxy_v2: bool,
    headers: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(serve(
            stream,
            name.clone(),
            expect_proxy_v2,
            headers.clone(),
        ));
        while connections.try_join_next().is_some() {}
    }
}

async fn serve(
    mut stream: TcpStream,
    name: String,
    expect_proxy_v2: bool,
    headers: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    if expect_proxy_v2 {
        let mut fixed = [0u8; 16];
        if stream.read_exact(&mut fixed).await.is_err() {
            return;
        }
        let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
        let mut rest = vec![0u8; len];
        if stream.read_exact(&mut rest).await.is_err() {
            return;
        }
        let mut whole = fixed.to_vec();
        whole.extend_from_slice(&rest);
        headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(whole);
    }
    if stream
        .write_all(format!("{name}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Decodes an IPv4 PROXY v2 header: (source, destination).
pub fn parse_v2_ipv4(h: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    const SIG: [u8; 12] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    if h.len() < 28 || h[..12] != SIG || h[12] != 0x21 || h[13] != 0x11 {
        return None;
    }
    let ip = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    Some((
        SocketAddr::from((ip(&h[16..20]), port(&h[24..26]))),
        SocketAddr::from((ip(&h[20..24]), port(&h[26..28]))),
    ))
}

/// Sends one RESP command and reads one reply line (plus a bulk body if any). 5 s bound.
pub async fn resp_command(stream: &mut TcpStream, args: &[&str]) -> Result<String, String> {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
    }
    let fut = async {
        stream
            .write_all(cmd.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        // A simple reply is one line; a bulk reply is `$N\r\n` + N bytes + CRLF.
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply).into_owned();
            let complete = match text.strip_prefix('$') {
                Some(rest) => match rest.split_once("\r\n") {
                    Some((len, body)) => match len.parse::<i64>() {
                        Ok(l) if l >= 0 => body.len() >= l as usize + 2,
                        _ => true,
                    },
                    None => false,
                },
                None => text.ends_with("\r\n"),
            };
            if complete {
                return Ok(text);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| "redis reply timed out".to_string())?
}
