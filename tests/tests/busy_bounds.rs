//! What a client that keeps fulcrum busy can make it hold (issue 16, item 3).
//!
//! A client may send a request head that is almost as large as the listener allows and
//! then stop before its end, or a head announcing a large body and then only part of
//! it (a slow body). Either way a real node must hold at most the configured maximum
//! head size plus one read buffer for it, however many such clients there are, and
//! keep serving everyone else. Measured as the node's resident-set growth per client
//! with a few hundred such clients open at once.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{fresh_client, get};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::wire::WireConn;
use std::time::Duration;
use tokio::task::JoinSet;

/// The listener's `max_header_bytes` (its default).
const MAX_HEAD: usize = 16 * 1024;
/// One lent read buffer (`node/src/bufpool.rs`).
const BUFFER: usize = 16 * 1024;
/// Allowance per client for its task, socket and per-request state, and for the
/// resident set moving by whole allocator pages.
const SLACK: usize = 8 * 1024;
/// Clients of each kind.
const CLIENTS: usize = 300;
/// The body a slow client announces, and the part of it it sends.
const ANNOUNCED: usize = 4 * 1024 * 1024;
const SENT: usize = 256 * 1024;

/// The one-node test config with a listener that gives heads 30 s, so the clients
/// are still there when the resident set is read.
fn config(ports: &Ports, backends: &str) -> String {
    let cfg = single_node(ports, backends, "", "");
    let listener = format!("header_read_timeout = \"30s\"\nmax_header_bytes = {MAX_HEAD}");
    assert!(cfg.contains("header_read_timeout = \"2s\""), "{cfg}");
    cfg.replace("header_read_timeout = \"2s\"", &listener)
}

/// Opens `CLIENTS` connections, each sending `bytes` and then nothing more.
async fn open_stalled(addr: &str, bytes: Vec<u8>) -> Vec<WireConn> {
    let mut set = JoinSet::new();
    for _ in 0..CLIENTS {
        let (addr, bytes) = (addr.to_string(), bytes.clone());
        set.spawn(async move {
            let mut conn = WireConn::connect(&addr).await?;
            conn.send(&bytes).await?;
            Ok::<_, std::io::Error>(conn)
        });
    }
    let mut conns = Vec::with_capacity(CLIENTS);
    while let Some(joined) = set.join_next().await {
        conns.push(joined.expect("client task").expect("client sent its bytes"));
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_heads_and_slow_bodies_hold_at_most_a_head_and_a_buffer_each() {
    let backend = TestBackend::start("b1").await;
    let ports = Ports::new();
    let cfg = config(&ports, &backend_list(&[&backend], &[]));
    let node = Fulcrum::start(&cfg, &ports.admin).await;

    // Warm the node's runtime, pools and buffers.
    let client = fresh_client();
    for _ in 0..50 {
        let warm = get(&client, &ports.url("/warm"), &[])
            .await
            .expect("warm-up");
        assert_eq!(warm.status, 200, "{warm:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = node.rss();

    // A head just under the limit, never finished.
    let mut head = b"GET /big HTTP/1.1\r\nHost: busy.test\r\nX-Filler: ".to_vec();
    head.resize(MAX_HEAD - 100, b'a');
    let heads = open_stalled(&ports.web, head).await;
    // A body announced large and sent in part: the node relays what came and waits.
    let mut body =
        format!("POST /upload HTTP/1.1\r\nHost: busy.test\r\nContent-Length: {ANNOUNCED}\r\n\r\n")
            .into_bytes();
    body.resize(body.len() + SENT, b'b');
    let bodies = open_stalled(&ports.web, body).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let grown = node.rss().saturating_sub(baseline);
    let clients = 2 * CLIENTS as u64;
    let per_client = grown / clients;
    let bound = (MAX_HEAD + BUFFER + SLACK) as u64;
    eprintln!(
        "{clients} stalled clients: RSS +{grown} B, {per_client} B per client (bound {bound})"
    );

    // Everyone else is still served.
    let fresh = get(&client, &ports.url("/fresh"), &[])
        .await
        .expect("a new client is answered while the stalled ones wait");
    assert_eq!(fresh.status, 200, "{fresh:?}");
    assert!(
        per_client <= bound,
        "{per_client} B of resident memory per stalled client (at most {bound}: \
         the maximum head, one buffer and {SLACK} B)"
    );
    drop((heads, bodies));
}
