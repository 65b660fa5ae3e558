//! An HTTP/2 client over TLS (ALPN h2) for end-to-end tests, on the `h2` crate: one
//! connection, any number of concurrent streams; a stream may send its body as DATA
//! frames without a length, end with trailer fields, and wait for `100 Continue`
//! before its body; the reply keeps the informational heads and trailer fields
//! that came with it. `H2Bed` is the node such tests run against: one HTTPS listener
//! in front of one pool.

use crate::config::Ports;
use crate::process::Fulcrum;
use crate::tls::{alpn, connect, verifying_config, TestCa};
use bytes::Bytes;
use fulcrum_testbed::cluster::web_to_app;
use http::{HeaderMap, Request, StatusCode};
use std::path::Path;
use std::time::Duration;

/// How long a stream may take from its request to the end of its response.
const STREAM_DEADLINE: Duration = Duration::from_secs(20);
/// How long a stream that expects `100 Continue` waits for it.
const CONTINUE_DEADLINE: Duration = Duration::from_secs(5);

/// One connection; clones share it.
#[derive(Clone)]
pub struct H2Client {
    pub sender: h2::client::SendRequest<Bytes>,
}

/// What one stream sends.
#[derive(Default)]
pub struct Outgoing {
    /// Sent as DATA frames of 1,000 bytes.
    pub body: Vec<u8>,
    /// Keep the stream open after the HEADERS frame even without a body.
    pub stream_body: bool,
    /// Ends the stream with a HEADERS frame of these fields.
    pub trailers: Option<HeaderMap>,
    /// Wait for a `100 Continue` before sending the body (panics if none comes in
    /// 5 s); a final response that comes first means the body is never sent.
    pub wait_continue: bool,
}

/// What one stream received.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// The informational (1xx) heads, in order.
    pub interim: Vec<(StatusCode, HeaderMap)>,
}

impl H2Client {
    /// Connects to `addr`, verifying `a.test` against `ca`, and asserts ALPN chose h2.
    pub async fn connect(addr: &str, ca: &TestCa) -> H2Client {
        let tls = verifying_config(&ca.pem(), &[b"h2"]);
        let stream = connect(addr, "a.test", tls).await.expect("TLS connect");
        assert_eq!(alpn(&stream).as_deref(), Some(b"h2".as_slice()));
        let (sender, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
        tokio::spawn(conn);
        H2Client { sender }
    }

    /// Sends `req` with `out`; panics if the reply takes longer than 20 s.
    pub async fn exchange(&self, req: Request<()>, out: Outgoing) -> Reply {
        tokio::time::timeout(STREAM_DEADLINE, self.exchange_unbounded(req, out))
            .await
            .expect("answered in time")
    }

    async fn exchange_unbounded(&self, req: Request<()>, out: Outgoing) -> Reply {
        let mut sender = self.sender.clone().ready().await.expect("ready");
        let end = out.body.is_empty() && !out.stream_body && out.trailers.is_none();
        let (mut resp, mut tx) = sender.send_request(req, end).expect("send");
        let mut interim = Vec::new();
        let mut refused = false;
        if out.wait_continue {
            let first = std::future::poll_fn(|cx| resp.poll_informational(cx));
            let first = tokio::time::timeout(CONTINUE_DEADLINE, first)
                .await
                .expect("a 100 Continue or a final response before the body is sent");
            match first {
                Some(head) => {
                    let (parts, ()) = head.expect("h2").into_parts();
                    interim.push((parts.status, parts.headers));
                }
                None => refused = true,
            }
        }
        if !end && !refused {
            for piece in out.body.chunks(1000) {
                tx.send_data(Bytes::copy_from_slice(piece), false)
                    .expect("data");
            }
            match out.trailers {
                Some(trailers) => tx.send_trailers(trailers).expect("trailers"),
                None => tx.send_data(Bytes::new(), true).expect("end"),
            }
        }
        while let Some(head) = std::future::poll_fn(|cx| resp.poll_informational(cx)).await {
            let (parts, ()) = head.expect("informational head").into_parts();
            interim.push((parts.status, parts.headers));
        }
        let (parts, mut rx) = resp.await.expect("response").into_parts();
        let mut body = Vec::new();
        while let Some(chunk) = rx.data().await {
            let chunk = chunk.expect("body");
            let _ = rx.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        let trailers = rx.trailers().await.expect("trailers");
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            trailers,
            interim,
        }
    }

    /// Sends `req` with `body` (none when empty and `stream_body` is false; sent as
    /// DATA frames without a length otherwise); returns status, headers and body.
    pub async fn send(
        &self,
        req: Request<()>,
        body: &[u8],
        stream_body: bool,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let out = Outgoing {
            body: body.to_vec(),
            stream_body,
            ..Outgoing::default()
        };
        let reply = self.exchange(req, out).await;
        (reply.status, reply.headers, reply.body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let req = Request::get(format!("https://a.test{path}"))
            .body(())
            .expect("request");
        self.send(req, &[], false).await
    }
}

/// A one-node config: HTTPS listener `web` with `cert`/`key`, one round-robin pool
/// `app` of `backends` (a TOML array), with `pool_extra` lines appended to the pool.
pub fn one_pool_config(
    ports: &Ports,
    cert: &Path,
    key: &Path,
    backends: &str,
    pool_extra: &str,
) -> String {
    let listener = format!(
        "protocol = \"https\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]",
        cert.display(),
        key.display()
    );
    let pool = format!("algorithm = \"round-robin\"\nbackends = {backends}\n{pool_extra}");
    crate::config::one_node(
        &ports.admin,
        "5s",
        "",
        &web_to_app(&ports.web, &listener, &pool),
    )
}

/// A running node with an HTTPS listener (certificate for `a.test` from `ca`).
pub struct H2Bed {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub ports: Ports,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub node: Fulcrum,
}

impl H2Bed {
    /// Starts a node whose pool `app` holds `backends`.
    pub async fn start(backends: &str) -> H2Bed {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
        let ports = Ports::new();
        let config = one_pool_config(&ports, &cert, &key, backends, "");
        let node = Fulcrum::start(&config, &ports.admin).await;
        H2Bed {
            dir,
            ca,
            ports,
            cert,
            key,
            node,
        }
    }

    /// A new HTTP/2 connection to the listener.
    pub async fn client(&self) -> H2Client {
        H2Client::connect(&self.ports.web, &self.ca).await
    }
}
