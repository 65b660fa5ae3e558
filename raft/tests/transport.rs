//! The peer transport against hostile or broken clients on real sockets: wrong secret,
//! oversized and garbage frames, silent clients, and a node with the wrong secret.

mod common;

use std::time::Duration;

use common::{assert_closed, free_addr, options, single_node, Cluster, SECRET};
use fulcrum_raft::auth::client_handshake;
use fulcrum_raft::frame::{self, write_frame};
use fulcrum_raft::network::PeerClient;
use fulcrum_raft::rpc::{PeerRequest, PeerResponse};
use fulcrum_raft::{start, Command, ProposeError};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Same wire shapes as the private handshake messages, to play a cheating client.
#[derive(Serialize, Deserialize)]
struct Hello {
    version: u32,
    client_nonce: [u8; 32],
}
#[derive(Serialize, Deserialize)]
struct Challenge {
    server_nonce: [u8; 32],
    server_proof: Vec<u8>,
}
#[derive(Serialize, Deserialize)]
struct Proof {
    client_proof: Vec<u8>,
}

fn write_cmd(s: &str) -> PeerRequest {
    PeerRequest::ForwardWrite(Command::SetConfig { toml: s.into() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_cut_off_and_server_keeps_serving() {
    let (_dir, addr, h) = single_node().await;

    // 1. A client with the wrong secret: it cannot verify the server, and a forged
    //    proof gets the connection closed without a Welcome.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(client_handshake(&mut s, b"not-the-secret").await.is_err());
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = Hello {
        version: 2,
        client_nonce: [7; 32],
    };
    frame::send(&mut s, &hello).await.unwrap();
    let _ch: Challenge = frame::recv(&mut s, 1024).await.unwrap();
    let forged = Proof {
        client_proof: vec![0; 32],
    };
    frame::send(&mut s, &forged).await.unwrap();
    // Whatever it sends next must never reach Raft.
    let _ = frame::send(&mut s, &write_cmd("evil")).await;
    assert_closed(&mut s).await;

    // 2. Garbage instead of a handshake.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_closed(&mut s).await;

    // 3. Authenticated, then an oversized frame header (1 GiB).
    let mut s = TcpStream::connect(addr).await.unwrap();
    client_handshake(&mut s, SECRET).await.unwrap();
    s.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    assert_closed(&mut s).await;

    // 4. Authenticated, then a frame that is not a valid request.
    let mut s = TcpStream::connect(addr).await.unwrap();
    client_handshake(&mut s, SECRET).await.unwrap();
    write_frame(&mut s, &[0xff; 40]).await.unwrap();
    assert_closed(&mut s).await;

    // 5. A silent client is dropped after the handshake timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_closed(&mut s).await;

    // Nothing above changed the state...
    assert_eq!(h.cluster_state().borrow().config_version, 1);
    assert_ne!(h.cluster_state().borrow().config_toml, "evil");

    // ...and a proper peer is still served, over one reused connection.
    let client = PeerClient::new(addr.to_string(), SECRET.into());
    for i in 0..3 {
        let r = client
            .call(&write_cmd(&format!("ok{i}")), Duration::from_secs(3))
            .await
            .unwrap();
        match r {
            PeerResponse::App(Ok(resp)) => assert_eq!(resp.config_version, 2 + i),
            other => panic!("unexpected {other:?}"),
        }
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_wrong_secret_never_joins() {
    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    assert!(common::wait_version(&c.live(), 1, Duration::from_secs(3)).await);
    let term = c.node(leader).status().borrow().term;
    let changes = c.node(leader).status().borrow().leader_changes;

    // Rogue node 0 lists the real peers, is the lowest id, so it initializes its own
    // {0,1,2,3} cluster and campaigns against the real nodes, with the wrong secret.
    let mut peers = c.peers.clone();
    peers.push((0, free_addr()));
    let o = options(0, &peers, c.dir.path().join("rogue"), b"wrong-secret");
    let rogue = start(o).await.unwrap();
    assert!(rogue.bootstrapped());
    let r = rogue
        .propose(Command::SetConfig {
            toml: "rogue".into(),
        })
        .await;
    assert_eq!(r, Err(ProposeError::NoQuorum));

    // The real cluster never heard it: same leader and term, no trace of node 0.
    assert_eq!(c.wait_leader(Duration::from_secs(1)).await, Some(leader));
    for h in c.live() {
        let st = h.status().borrow().clone();
        assert_eq!(st.term, term, "rogue votes must not bump the term");
        assert_eq!(h.members().await.len(), 3);
        let cs = h.cluster_state().borrow().clone();
        assert!(!cs.nodes.contains_key(&0));
        assert_ne!(cs.config_toml, "rogue");
    }
    assert_eq!(c.node(leader).status().borrow().leader_changes, changes);
    assert_eq!(rogue.status().borrow().leader_id, None);
    rogue.shutdown().await;
    c.shutdown_all().await;
}
