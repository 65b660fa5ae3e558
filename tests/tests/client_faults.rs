//! Client faults are the client's (issue 17 item 1): a request body the client breaks —
//! malformed chunked framing, fewer bytes than its `Content-Length` followed by a
//! close, a reset in the middle of an upload — is answered `400` (or the connection
//! is closed where no answer can be framed), counted as `result="client"`, never as a
//! backend's `502`; the backend is not ejected, and the backend connection that
//! carried the broken body is closed, never handed to the next request.
//!
//! Each case runs on the hand-written HTTP/1.1 path (a `Content-Length` body), on the
//! hyper path (a chunked body, which the fast path hands over), over TLS, and over
//! HTTP/2, through a real fulcrum process and a scripted raw backend.

use fulcrum_tests::config::Ports;
use fulcrum_tests::hostile::{metric, Outcome};
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::raw_backend::RawBackend;
use fulcrum_tests::tls::{connect, verifying_config, TestCa};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const QUIET: Duration = Duration::from_millis(1500);

/// A one-node config: listener `web`, one route to pool `app` with backend `b`.
fn config(ports: &Ports, b: &RawBackend, listener_extra: &str) -> String {
    format!(
        "[node]\nid = 1\nadmin = \"{}\"\ndata_dir = \"/tmp\"\naccess_log = \"off\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"{}\"\nheader_read_timeout = \"2s\"\n{listener_extra}\n\n\
         [[route]]\nlistener = \"web\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\nbackends = {}\n",
        ports.admin,
        ports.web,
        b.backend_list()
    )
}

/// How a broken upload ends on the client's side.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// The client keeps the connection open and waits for an answer.
    Wait,
    /// The client sends no more and half-closes (FIN), still reading.
    HalfClose,
    /// The client resets the connection (RST via `SO_LINGER` 0).
    Reset,
}

/// The counters a client fault must move, and those it must not.
#[derive(Debug, PartialEq)]
struct Counters {
    client: f64,
    bad_gateway: f64,
    ejections: f64,
}

async fn counters(admin: &str) -> Counters {
    Counters {
        client: metric(admin, "fulcrum_local_responses_total", "result=\"client\"").await,
        bad_gateway: metric(
            admin,
            "fulcrum_local_responses_total",
            "result=\"bad_gateway\"",
        )
        .await,
        ejections: metric(admin, "fulcrum_backend_ejections_total", "").await,
    }
}

/// How the test client reaches the listener.
#[derive(Clone)]
enum Transport {
    Plain,
    Tls(Arc<rustls::ClientConfig>),
}

/// A byte stream to the listener, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP socket underneath (to reset it).
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

async fn open(addr: &str, transport: &Transport) -> Box<dyn Stream> {
    match transport {
        Transport::Plain => Box::new(TcpStream::connect(addr).await.expect("connect")),
        Transport::Tls(config) => Box::new(
            connect(addr, "localhost", config.clone())
                .await
                .expect("tls connect"),
        ),
    }
}

/// Reads until the peer closes or stays silent for `QUIET` (10 s at most).
async fn read_quiet(s: &mut dyn Stream) -> Outcome {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let closed = loop {
        let wait = QUIET.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Outcome { bytes, closed }
}

/// The counters once a client fault was counted after `before` (they move a moment
/// after the client's side ends), or as they stand after 2 s.
async fn counters_after_fault(admin: &str, before: &Counters) -> Counters {
    let mut now = counters(admin).await;
    for _ in 0..40 {
        if now.client > before.client {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = counters(admin).await;
    }
    now
}

/// Sends `bytes` and ends the way `ending` says; returns what the client read (empty
/// after a reset).
async fn send_broken(addr: &str, transport: &Transport, bytes: &[u8], ending: Ending) -> Outcome {
    let mut s = open(addr, transport).await;
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    match ending {
        Ending::Wait => read_quiet(&mut *s).await,
        Ending::HalfClose => {
            let _ = s.shutdown().await;
            read_quiet(&mut *s).await
        }
        Ending::Reset => {
            // Let the proxy start the exchange with the backend first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = socket2::SockRef::from(s.tcp()).set_linger(Some(Duration::ZERO));
            drop(s);
            Outcome {
                bytes: Vec::new(),
                closed: true,
            }
        }
    }
}

/// A well-formed request after the fault.
async fn good_request(addr: &str, transport: &Transport) -> Outcome {
    let mut s = open(addr, transport).await;
    s.write_all(b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    read_quiet(&mut *s).await
}

/// The cases: (name, request bytes, how the client ends).
fn cases() -> Vec<(&'static str, Vec<u8>, Ending)> {
    let chunked = |body: &str| {
        format!("POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
            .into_bytes()
    };
    let sized = |len: usize, sent: usize| {
        let mut bytes =
            format!("POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n")
                .into_bytes();
        bytes.extend(std::iter::repeat_n(b'u', sent));
        bytes
    };
    vec![
        (
            "chunked: bad size",
            chunked("zz\r\nhello\r\n0\r\n\r\n"),
            Ending::Wait,
        ),
        (
            "chunked: size overflows 64 bits",
            chunked("fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
            Ending::Wait,
        ),
        (
            "chunked: data not followed by CRLF",
            chunked("3\r\nabcXY\r\n0\r\n\r\n"),
            Ending::Wait,
        ),
        (
            "chunked: cut short, then FIN",
            chunked("100\r\nonly a few bytes"),
            Ending::HalfClose,
        ),
        (
            "chunked: reset mid-upload",
            chunked("100\r\nonly a few bytes"),
            Ending::Reset,
        ),
        (
            "content-length: short, then FIN",
            sized(1000, 10),
            Ending::HalfClose,
        ),
        (
            "content-length: reset mid-upload",
            sized(100_000, 1000),
            Ending::Reset,
        ),
    ]
}

/// Checks one case against a fresh node: the answer, the counters, the backend's
/// connections.
async fn check_case(
    name: &str,
    transport: &Transport,
    listener_extra: &str,
    bytes: &[u8],
    ending: Ending,
) {
    let backend = RawBackend::echo_path().await;
    let ports = Ports::new();
    let _node = Fulcrum::start(&config(&ports, &backend, listener_extra), &ports.admin).await;
    // A pooled backend connection exists before the fault, so a proxy that handed a
    // connection with a half-sent body back to the pool would reuse it next.
    let warm = good_request(&ports.web, transport).await;
    assert_eq!(
        warm.status(),
        Some(200),
        "{name}: warm-up {:?}",
        warm.text()
    );
    let before = counters(&ports.admin).await;

    let out = send_broken(&ports.web, transport, bytes, ending).await;
    let statuses = out.statuses();
    match ending {
        Ending::Wait => assert_eq!(statuses, vec![400], "{name}: {:?}", out.text()),
        Ending::HalfClose => assert!(
            statuses.is_empty() || statuses == vec![400],
            "{name}: a 400 or a close, got {:?}",
            out.text()
        ),
        Ending::Reset => {}
    }
    if !matches!(ending, Ending::Reset) {
        assert!(
            out.closed,
            "{name}: the connection must be closed after a broken body"
        );
    }
    let after = counters_after_fault(&ports.admin, &before).await;
    assert_eq!(
        after,
        Counters {
            client: before.client + 1.0,
            ..before
        },
        "{name}: one client fault counted, no 502, nobody ejected"
    );

    // The backend connection that carried the broken body (if the proxy got as far
    // as sending its head) must be closed by the proxy, promptly, not left open with
    // half a body and not handed to the next request.
    let carried = backend
        .heads()
        .iter()
        .find(|(_, target)| target == "/up")
        .map(|(conn, _)| *conn);
    if let Some(conn) = carried {
        let mut ended = None;
        for _ in 0..60 {
            ended = backend
                .broken()
                .iter()
                .find(|b| b.conn == conn)
                .map(|b| b.ended);
            if ended.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            matches!(ended, Some(k) if k != std::io::ErrorKind::TimedOut),
            "{name}: backend connection {conn} with the broken body was not closed within 3 s ({ended:?})"
        );
    }
    let next = good_request(&ports.web, transport).await;
    assert_eq!(next.status(), Some(200), "{name}: {:?}", next.text());
    let seen = backend.seen();
    let last = seen.last().expect("the good request reached the backend");
    assert_eq!(last.path(), "/after", "{name}");
    assert!(
        seen.iter().all(|s| s.path() != "/up"),
        "{name}: a broken body reached the backend as a complete request"
    );
    assert_ne!(
        Some(last.conn),
        carried,
        "{name}: the next request reused the connection of the broken body"
    );
    let final_counters = counters(&ports.admin).await;
    assert_eq!(final_counters.ejections, 0.0, "{name}: backend ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_request_body_is_the_clients_fault_on_both_http1_paths() {
    for (name, bytes, ending) in cases() {
        check_case(name, &Transport::Plain, "", &bytes, ending).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_request_body_is_the_clients_fault_over_tls() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "web");
    let https = format!(
        "protocol = \"https\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]",
        cert.display(),
        key.display()
    );
    let tls = Transport::Tls(verifying_config(&ca.pem(), &[b"http/1.1"]));
    for (name, bytes, ending) in cases() {
        check_case(name, &tls, &https, &bytes, ending).await;
    }
}

/// How an HTTP/2 client breaks its upload.
#[derive(Debug, Clone, Copy, PartialEq)]
enum H2Fault {
    /// `content-length: 100`, ten bytes, then END_STREAM.
    ShortThenEnd,
    /// Ten bytes, then RST_STREAM(CANCEL).
    ResetStream,
}

/// One broken upload on an h2c connection, then a GET on the same connection.
/// Returns the broken stream's status (None when it was reset) and the GET's status.
async fn h2_broken_then_get<S>(io: S, fault: H2Fault) -> (Option<u16>, u16)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.expect("ready");
    let req = http::Request::post("http://localhost/up")
        .header("content-length", "100")
        .body(())
        .expect("request");
    let (resp, mut send) = client.send_request(req, false).expect("send");
    let ten = bytes::Bytes::from_static(b"0123456789");
    send.send_data(ten, fault == H2Fault::ShortThenEnd)
        .expect("data");
    if fault == H2Fault::ResetStream {
        tokio::time::sleep(Duration::from_millis(200)).await;
        send.send_reset(h2::Reason::CANCEL);
    }
    let broken = match tokio::time::timeout(Duration::from_secs(5), resp).await {
        Ok(Ok(resp)) => Some(resp.status().as_u16()),
        Ok(Err(_reset)) => None,
        Err(_) => panic!("{fault:?}: no answer and no reset within 5 s"),
    };
    let mut client = client.ready().await.expect("connection still usable");
    let get = http::Request::get("http://localhost/after")
        .body(())
        .expect("request");
    let (resp, _) = client.send_request(get, true).expect("send get");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("GET answered in time")
        .expect("GET answered");
    conn.abort();
    (broken, resp.status().as_u16())
}

/// How the HTTP/2 client reaches the listener: h2c (served by hyper) or TLS with
/// ALPN h2 (served by `node/src/http2`).
#[derive(Clone, Copy, Debug)]
enum H2Via {
    Cleartext,
    Tls,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_http2_upload_is_the_clients_fault_and_the_connection_lives_on() {
    check_h2(H2Via::Cleartext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_http2_upload_over_tls_is_the_clients_fault_and_the_connection_lives_on() {
    check_h2(H2Via::Tls).await;
}

async fn check_h2(via: H2Via) {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "web");
    let https = format!(
        "protocol = \"https\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]",
        cert.display(),
        key.display()
    );
    for fault in [H2Fault::ShortThenEnd, H2Fault::ResetStream] {
        let backend = RawBackend::echo_path().await;
        let ports = Ports::new();
        let extra = match via {
            H2Via::Cleartext => "",
            H2Via::Tls => https.as_str(),
        };
        let _node = Fulcrum::start(&config(&ports, &backend, extra), &ports.admin).await;
        let before = counters(&ports.admin).await;
        let (broken, after) = match via {
            H2Via::Cleartext => {
                let tcp = TcpStream::connect(&ports.web).await.expect("connect");
                h2_broken_then_get(tcp, fault).await
            }
            H2Via::Tls => {
                let tls = verifying_config(&ca.pem(), &[b"h2"]);
                let stream = connect(&ports.web, "localhost", tls)
                    .await
                    .expect("tls connect");
                h2_broken_then_get(stream, fault).await
            }
        };
        let fault = (via, fault);
        assert!(
            broken.is_none() || broken == Some(400),
            "{fault:?}: a 400 or a reset, got {broken:?}"
        );
        assert_eq!(after, 200, "{fault:?}: the next stream on the connection");
        let now = counters_after_fault(&ports.admin, &before).await;
        assert_eq!(
            now,
            Counters {
                client: before.client + 1.0,
                ..before
            },
            "{fault:?}: one client fault counted, no 502, nobody ejected"
        );
        assert!(
            backend.seen().iter().all(|s| s.path() != "/up"),
            "{fault:?}: a broken body reached the backend as a complete request"
        );
        // The abandoned attempt no longer occupies the backend (least-connections and
        // least-request would shun it forever otherwise).
        let in_flight = metric(&ports.admin, "fulcrum_backend_in_flight", "").await;
        assert_eq!(
            in_flight, 0.0,
            "{fault:?}: an abandoned request still in flight"
        );
        if let Some((conn, _)) = backend.heads().into_iter().find(|(_, t)| t == "/up") {
            let closed = backend
                .broken()
                .iter()
                .any(|b| b.conn == conn && b.ended != std::io::ErrorKind::TimedOut);
            assert!(closed, "{fault:?}: backend connection {conn} left open");
            let get = backend.seen().into_iter().find(|s| s.path() == "/after");
            assert_ne!(get.map(|s| s.conn), Some(conn), "{fault:?}: reused");
        }
    }
}
