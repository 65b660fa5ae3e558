//! Peer frames cannot be forged on path (issue 23 item 6), on real sockets without
//! peer TLS:
//! - a forwarding man-in-the-middle between a peer client and a node changes one byte
//!   of an authenticated `SetConfig` frame: the node refuses the frame, drops the
//!   connection, commits nothing forged; the next call (redialled, untouched) works;
//! - a raw-socket peer that completed the handshake sends an altered sealed frame, then
//!   an unsealed one: each connection is dropped and nothing reaches Raft.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_closed, single_node, wait_until, SECRET};
use fulcrum_raft::auth::client_handshake;
use fulcrum_raft::frame;
use fulcrum_raft::network::PeerClient;
use fulcrum_raft::rpc::{PeerRequest, PeerResponse};
use fulcrum_raft::sealed::SealedConn;
use fulcrum_raft::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn set_config(toml: &str) -> PeerRequest {
    PeerRequest::ForwardWrite(Command::SetConfig { toml: toml.into() })
}

/// What the man-in-the-middle saw and did.
#[derive(Default)]
struct MitmLog {
    /// Frames altered (one byte each).
    altered: AtomicUsize,
    /// Connections the server side closed after an alteration.
    closed_by_server: AtomicUsize,
}

/// A TCP forwarder to `upstream` that, while `armed`, changes the first occurrence of
/// `from` in the client-to-server bytes into `to` (same length, so framing stays
/// intact: only the content is forged), once per arming.
async fn mitm(
    upstream: SocketAddr,
    from: &'static [u8],
    to: &'static [u8],
    armed: Arc<AtomicBool>,
    log: Arc<MitmLog>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (armed, log) = (armed.clone(), log.clone());
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let tampered = Arc::new(AtomicBool::new(false));
                let seen = tampered.clone();
                let log2 = log.clone();
                // server -> client: plain copy; notes when the server hangs up.
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    if seen.load(Ordering::SeqCst) {
                        log2.closed_by_server.fetch_add(1, Ordering::SeqCst);
                    }
                });
                // client -> server: copy, forging one byte run when armed.
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &mut buf[..n];
                    if armed.load(Ordering::SeqCst) {
                        if let Some(at) = chunk.windows(from.len()).position(|w| w == from) {
                            chunk[at..at + to.len()].copy_from_slice(to);
                            armed.store(false, Ordering::SeqCst);
                            tampered.store(true, Ordering::SeqCst);
                            log.altered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if sw.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                let _ = down.await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_altered_by_a_man_in_the_middle_is_refused_and_the_connection_dropped() {
    let (_dir, node, h) = single_node().await;
    let armed = Arc::new(AtomicBool::new(false));
    let log = Arc::new(MitmLog::default());
    let proxy = mitm(node, b"pool-good", b"pool-evil", armed.clone(), log.clone()).await;
    let client = PeerClient::new(proxy.to_string(), SECRET.into());

    // The path works through the forwarder, over one authenticated connection.
    let r = client
        .call(&set_config("# pool-ok\n"), Duration::from_secs(3))
        .await
        .expect("untouched frames pass");
    assert!(matches!(r, PeerResponse::App(Ok(_))), "{r:?}");
    assert_eq!(h.cluster_state().borrow().config_version, 2);

    // On the same connection, the forwarder rewrites the next SetConfig's text.
    armed.store(true, Ordering::SeqCst);
    let r = client
        .call(&set_config("# pool-good\n"), Duration::from_secs(3))
        .await;
    assert_eq!(
        log.altered.load(Ordering::SeqCst),
        1,
        "the frame was altered"
    );
    assert!(r.is_err(), "no answer to a forged frame: {r:?}");
    let dropped = wait_until(
        || log.closed_by_server.load(Ordering::SeqCst) == 1,
        Duration::from_secs(3),
    );
    assert!(dropped.await, "the node dropped the connection");
    let st = h.cluster_state().borrow().clone();
    assert_eq!(
        st.config_version, 2,
        "nothing committed from the forged frame"
    );
    assert!(!st.config_toml.contains("pool-evil"), "{}", st.config_toml);

    // The next call redials (a new handshake, new keys) and goes through.
    let r = client
        .call(&set_config("# pool-good\n"), Duration::from_secs(3))
        .await
        .expect("a fresh connection works");
    assert!(matches!(r, PeerResponse::App(Ok(_))), "{r:?}");
    let st = h.cluster_state().borrow().clone();
    assert_eq!(
        (st.config_version, st.config_toml.as_str()),
        (3, "# pool-good\n")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_peer_sending_an_altered_or_unsealed_frame_after_the_handshake_is_cut_off() {
    let (_dir, node, h) = single_node().await;

    // A properly sealed frame is served (the raw peer knows the secret here, to show
    // the bytes it alters below would otherwise be accepted).
    let mut s = TcpStream::connect(node).await.unwrap();
    let keys = client_handshake(&mut s, SECRET).await.unwrap();
    let mut conn = SealedConn::new(s, keys);
    conn.send(&set_config("# sealed\n")).await.unwrap();
    let r: PeerResponse = conn.recv(frame::MAX_FRAME).await.unwrap();
    assert!(matches!(r, PeerResponse::App(Ok(_))), "{r:?}");
    assert_eq!(h.cluster_state().borrow().config_version, 2);

    // The same kind of frame, sealed with the connection's keys, then one byte changed.
    let mut s = TcpStream::connect(node).await.unwrap();
    let keys = client_handshake(&mut s, SECRET).await.unwrap();
    let (sink, mut wire) = tokio::io::duplex(1 << 16);
    let mut sealer = SealedConn::new(sink, keys);
    sealer.send(&set_config("# forged\n")).await.unwrap();
    drop(sealer);
    let mut bytes = Vec::new();
    wire.read_to_end(&mut bytes).await.unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"forged")
        .expect("payload in the frame");
    bytes[at] = b'F';
    s.write_all(&bytes).await.unwrap();
    assert_closed(&mut s).await;

    // An unsealed frame after a valid handshake (what the pre-seal wire accepted).
    let mut s = TcpStream::connect(node).await.unwrap();
    client_handshake(&mut s, SECRET).await.unwrap();
    frame::send(&mut s, &set_config("# unsealed\n"))
        .await
        .unwrap();
    assert_closed(&mut s).await;

    let st = h.cluster_state().borrow().clone();
    assert_eq!(
        (st.config_version, st.config_toml.as_str()),
        (2, "# sealed\n")
    );
    h.shutdown().await;
}
