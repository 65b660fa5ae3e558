//! One HTTP/1.1 request at a time on a keep-alive connection the test holds, with the
//! answer read by its `Content-Length` (the responses fulcrum and the test backends give),
//! the same for a GET on a held HTTP/2 connection, and a node config with a plain and an
//! HTTPS listener for tests that cover every codec.

use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a keep-alive connection.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The head's text (status line and fields).
    pub head: String,
    pub body: Vec<u8>,
    /// From writing the request to the last body byte.
    pub took: Duration,
}

impl Answer {
    /// A header field's value (first of that name, trimmed).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Writes `request` on `s` and reads one response framed by `Content-Length`; panics
/// when none comes within 10 s or the connection closes first.
pub async fn exchange(s: &mut TcpStream, request: &[u8]) -> Answer {
    let started = Instant::now();
    s.write_all(request).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answered within 10 s")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_string();
        let mut answer = Answer {
            status: head
                .get(9..12)
                .and_then(|c| c.parse().ok())
                .expect("status"),
            head,
            body: Vec::new(),
            took: Duration::ZERO,
        };
        let length: usize = (answer.header("content-length"))
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length");
        if got.len() >= end + 4 + length {
            answer.body = got[end + 4..end + 4 + length].to_vec();
            answer.took = started.elapsed();
            return answer;
        }
    }
}

/// A GET on a held HTTP/2 connection (`sender`), read whole; the head lists the
/// response's fields as `name: value` lines after a status line.
pub async fn h2_get(sender: &h2::client::SendRequest<bytes::Bytes>, uri: &str) -> Answer {
    let started = Instant::now();
    let req = http::Request::get(uri).body(()).expect("request");
    let mut ready = sender.clone().ready().await.expect("ready");
    let (resp, _) = ready.send_request(req, true).expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("answered within 10 s")
        .expect("response");
    let status = resp.status().as_u16();
    let mut head = format!("HTTP/2 {status}");
    for (name, value) in resp.headers() {
        head.push_str(&format!(
            "\r\n{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        bytes.extend_from_slice(&chunk.expect("body"));
    }
    Answer {
        status,
        head,
        body: bytes,
        took: started.elapsed(),
    }
}

/// A one-node config with listener `web` (plain, `web`) and listener `tls` (HTTPS with
/// `cert`/`key`, `tls`); routes and pools follow in `rest`.
pub fn web_and_tls_node(
    admin: &str,
    web: &str,
    tls: &str,
    cert: &Path,
    key: &Path,
    rest: &str,
) -> String {
    let listeners = format!(
        r#"[[listener]]
name = "web"
bind = "{web}"
header_read_timeout = "2s"

[[listener]]
name = "tls"
bind = "{tls}"
protocol = "https"
tls = [{{ cert = "{cert}", key = "{key}" }}]

{rest}"#,
        cert = cert.display(),
        key = key.display(),
    );
    crate::config::one_node(admin, "10s", "", &listeners)
}
