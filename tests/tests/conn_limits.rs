//! Connection limits of a listener (issue 17 item 3), through a real fulcrum process:
//! connections are opened until the limit, and the node must still answer `/status`
//! and serve the clients it holds.
//!
//! - `max_connections_per_ip`: one source address gets its share and no more (the
//!   next connection is closed at once and counted); another address still gets in.
//! - `max_connections`: at the limit the listener stops accepting; a new client waits
//!   in the kernel's queue and is served as soon as a held connection closes.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::hostile::metric;
use fulcrum_tests::process::Fulcrum;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A node whose listener has the given limit lines.
async fn node(limits: &str) -> (Ports, Fulcrum, TestBackend) {
    let backend = TestBackend::start("b0").await;
    let ports = Ports::new();
    let cfg = single_node(&ports, &backend_list(&[&backend], &[]), "", "").replace(
        "header_read_timeout = \"2s\"\n",
        &format!("header_read_timeout = \"2s\"\nidle_timeout = \"60s\"\n{limits}\n"),
    );
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    (ports, node, backend)
}

/// A connection from source address `from` that made one keep-alive request.
async fn held(addr: &str, from: &str) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    let local: SocketAddr = format!("{from}:0").parse().ok()?;
    socket.bind(local).ok()?;
    let mut s = socket.connect(addr.parse().ok()?).await.ok()?;
    (request(&mut s).await == Some(200)).then_some(s)
}

/// One GET on `s`; the status, or `None` if the connection was closed or silent.
async fn request(s: &mut TcpStream) -> Option<u16> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            // The test backend's body is its name ("b0"): two bytes.
            if got.len() >= end + 4 + 2 {
                return text.get(9..12).and_then(|c| c.parse().ok());
            }
        }
    }
}

async fn status_answers(admin: &str) -> bool {
    fulcrum_tests::client::get_status(admin).await.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_and_no_more() {
    let (ports, _node, _b) = node("max_connections_per_ip = 20").await;
    let mut mine = Vec::new();
    for i in 0..20 {
        let s = held(&ports.web, "127.0.0.1").await;
        mine.push(s.unwrap_or_else(|| panic!("connection {i} within the share refused")));
    }
    // The 21st from the same address is closed without an answer.
    let over = held(&ports.web, "127.0.0.1").await;
    assert!(
        over.is_none(),
        "a connection over max_connections_per_ip was served"
    );
    let refused = metric(
        &ports.admin,
        "fulcrum_connections_refused_total",
        "reason=\"per_ip\"",
    )
    .await;
    assert!(refused >= 1.0, "refusal not counted ({refused})");
    // Another address still gets in, the held ones are still served, and so is /status.
    assert!(
        held(&ports.web, "127.0.0.2").await.is_some(),
        "another address refused"
    );
    for (i, s) in mine.iter_mut().enumerate() {
        assert_eq!(request(s).await, Some(200), "held connection {i}");
    }
    assert!(status_answers(&ports.admin).await);
    // Closing one of them gives the address its share back.
    drop(mine.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        held(&ports.web, "127.0.0.1").await.is_some(),
        "the share was not given back after a close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_new_clients_wait_until_one_closes() {
    let (ports, _node, _b) = node("max_connections = 30\nmax_connections_per_ip = 0").await;
    let mut all = Vec::new();
    for i in 0..30 {
        let from = format!("127.0.0.{}", 1 + i % 3);
        let s = held(&ports.web, &from).await;
        all.push(s.unwrap_or_else(|| panic!("connection {i} within the limit refused")));
    }
    // The 31st connects (the kernel queues it) but is not served while the listener
    // is full.
    let mut waiting = TcpStream::connect(&ports.web)
        .await
        .expect("kernel queues it");
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(800), waiting.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a client past max_connections was served: {early:?}"
    );
    assert!(status_answers(&ports.admin).await, "/status while full");
    for (i, s) in all.iter_mut().enumerate() {
        assert_eq!(
            request(s).await,
            Some(200),
            "held connection {i} while full"
        );
    }
    // One closes: the waiting client is accepted and answered.
    drop(all.pop());
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("b0") {
        let n = tokio::time::timeout_at(deadline, waiting.read(&mut buf))
            .await
            .expect("served after a close")
            .expect("read");
        assert!(n > 0, "closed instead of served");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}
