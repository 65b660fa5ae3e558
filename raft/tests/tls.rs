//! Peer traffic over mutual TLS on real loopback sockets: file checks, a TLS cluster
//! that replicates, and refusal of a foreign-CA node, plain TCP, a certificate-less TLS
//! client, a silent peer, and a server whose certificate lacks the dialled IP.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::certs::Ca;
use common::{free_addr, options, wait_until, wait_version, SECRET};
use fulcrum_config::PeerTls;
use fulcrum_raft::auth::client_handshake;
use fulcrum_raft::network::{CallError, PeerClient};
use fulcrum_raft::rpc::{PeerRequest, PeerResponse};
use fulcrum_raft::{start, Command, PeerTlsContext, PeerTlsError, RaftHandle, TlsFile};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const LOCALHOST: &str = "127.0.0.1";

fn ip() -> Option<IpAddr> {
    LOCALHOST.parse().ok()
}

fn load(files: &PeerTls) -> Result<PeerTlsContext, PeerTlsError> {
    PeerTlsContext::load(files, ip())
}

#[test]
fn files_are_checked_at_load_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let good = ca.node(dir.path(), "good", &[LOCALHOST], false);
    load(&good).expect("a CA-signed certificate for 127.0.0.1 loads");

    let missing = PeerTls {
        cert: dir.path().join("nope.pem"),
        ..good.clone()
    };
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, PeerTlsError::Read { .. }), "{e}");
    assert_eq!(e.file(), TlsFile::Cert);
    assert!(e.to_string().contains("nope.pem"), "{e}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let e = load(&PeerTls {
        ca: junk.clone(),
        ..good.clone()
    })
    .unwrap_err();
    assert_eq!(e.file(), TlsFile::Ca);
    assert!(e.to_string().contains("BEGIN CERTIFICATE"), "{e}");

    // A key file holding a certificate only.
    let e = load(&PeerTls {
        key: good.cert.clone(),
        ..good.clone()
    })
    .unwrap_err();
    assert_eq!(e.file(), TlsFile::Key);
    assert!(e.to_string().contains("no private key"), "{e}");

    // The key of another certificate.
    let other = ca.node(dir.path(), "other", &[LOCALHOST], false);
    let e = load(&PeerTls {
        key: other.key.clone(),
        ..good.clone()
    })
    .unwrap_err();
    assert!(matches!(e, PeerTlsError::Mismatch { .. }), "{e}");
    assert_eq!(e.file(), TlsFile::Key);

    // A certificate from another CA: peers would refuse it, so loading does.
    let foreign = Ca::new("foreign CA").node(dir.path(), "foreign", &[LOCALHOST], false);
    let e = load(&PeerTls {
        ca: good.ca.clone(),
        ..foreign.clone()
    })
    .unwrap_err();
    assert!(matches!(e, PeerTlsError::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    let old = ca.node(dir.path(), "old", &[LOCALHOST], true);
    let e = load(&old).unwrap_err();
    assert!(matches!(e, PeerTlsError::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");

    // Valid, but not for the IP peers dial; without a known IP that is not checked.
    let elsewhere = ca.node(dir.path(), "elsewhere", &["127.0.0.2", "node1.test"], false);
    let e = load(&elsewhere).unwrap_err();
    assert!(matches!(e, PeerTlsError::WrongAddress { .. }), "{e}");
    assert_eq!(e.file(), TlsFile::Cert);
    PeerTlsContext::load(&elsewhere, None).expect("no own IP, no name check");
}

/// Start node `id` of `peers` with peer TLS `files`.
async fn tls_node(
    id: u64,
    peers: &[(u64, SocketAddr)],
    dir: &std::path::Path,
    files: &PeerTls,
) -> RaftHandle {
    let mut o = options(id, peers, dir.join(format!("n{id}")), SECRET);
    o.tls = Some(files.clone());
    start(o).await.expect("start TLS node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_replicates_and_a_foreign_ca_node_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let foreign = Ca::new("foreign CA");
    let peers: Vec<(u64, SocketAddr)> = (1..=3).map(|i| (i, free_addr())).collect();
    let mut nodes = Vec::new();
    for id in 1..=2 {
        let files = ca.node(dir.path(), &format!("n{id}"), &[LOCALHOST], false);
        nodes.push(tls_node(id, &peers, dir.path(), &files).await);
    }
    // Node 3 knows the secret and the peer list, but its certificate (and the CA it
    // trusts) belong to another CA.
    let bad_files = foreign.node(dir.path(), "n3", &[LOCALHOST], false);
    let bad = tls_node(3, &peers, dir.path(), &bad_files).await;

    let good: Vec<&RaftHandle> = nodes.iter().collect();
    assert!(
        wait_version(&good, 1, Duration::from_secs(10)).await,
        "two good nodes form a quorum over TLS"
    );
    let r = nodes[1]
        .propose(Command::SetConfig {
            toml: "# v2\n".into(),
        })
        .await
        .expect("committed through the TLS cluster");
    assert_eq!(r.config_version, 2);
    assert!(wait_version(&good, 2, Duration::from_secs(3)).await);

    // Give the foreign node ample time: it must never see the committed state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bad.cluster_state().borrow().config_version, 0);
    assert_eq!(bad.status().borrow().leader_id, None);
    for h in &nodes {
        assert_ne!(h.status().borrow().leader_id, Some(3));
    }

    bad.shutdown().await;
    for h in nodes {
        h.shutdown().await;
    }
}

/// The server closed the connection: a read sees EOF (or a reset) within 4 s.
async fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(4), s.read(&mut buf)).await;
    match r {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("server sent {n} bytes instead of closing"),
        Err(_) => panic!("server kept the connection open"),
    }
}

fn write_cmd(s: &str) -> PeerRequest {
    PeerRequest::ForwardWrite(Command::SetConfig { toml: s.into() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_port_refuses_plain_certless_and_silent_peers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let files = ca.node(dir.path(), "n1", &[LOCALHOST], false);
    let addr = free_addr();
    let h = tls_node(1, &[(1, addr)], dir.path(), &files).await;
    assert!(
        wait_until(
            || h.cluster_state().borrow().config_version == 1,
            Duration::from_secs(5)
        )
        .await
    );

    // 1. Plain TCP with the right secret: the TLS layer refuses it before the secret
    //    handshake, so the client never gets a challenge.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(4), client_handshake(&mut s, SECRET)).await;
    assert!(matches!(r, Ok(Err(_))), "plain TCP must not authenticate");

    // 2. A plain-TCP client of the transport gets `Unreachable`, not an answer.
    let plain = PeerClient::new(addr.to_string(), SECRET.into());
    let r = plain
        .call(&write_cmd("plain"), Duration::from_secs(3))
        .await;
    assert!(matches!(r, Err(CallError::Unreachable { .. })), "{r:?}");

    // 3. A TLS client without a client certificate.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        let pem = std::fs::read(&files.ca).unwrap();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            r.add(c.unwrap()).unwrap();
        }
        r
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certless = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = fulcrum_raft::tls::server_name(&addr.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(certless))
        .connect(name, tcp)
        .await;
    // TLS 1.3: the client may finish before the server's refusal arrives; then the
    // secret handshake inside must fail.
    if let Ok(mut stream) = tls {
        let r = tokio::time::timeout(
            Duration::from_secs(4),
            client_handshake(&mut stream, SECRET),
        )
        .await;
        assert!(
            matches!(r, Ok(Err(_))),
            "certless TLS client must be refused"
        );
    }

    // 4. A silent client is dropped after the handshake timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_closed(&mut s).await;

    // Nothing above reached Raft, and a proper TLS peer is still served.
    assert_eq!(h.cluster_state().borrow().config_version, 1);
    let ctx = Arc::new(PeerTlsContext::load(&files, ip()).unwrap());
    let client = PeerClient::with_tls(addr.to_string(), SECRET.into(), Some(ctx.clone()));
    match client.call(&write_cmd("ok"), Duration::from_secs(3)).await {
        Ok(PeerResponse::App(Ok(resp))) => assert_eq!(resp.config_version, 2),
        other => panic!("unexpected {other:?}"),
    }
    h.shutdown().await;

    // A TLS client against a plain node fails too (misconfigured pairs never talk).
    let plain_addr = free_addr();
    let o = options(1, &[(1, plain_addr)], dir.path().join("plain"), SECRET);
    let plain_node = start(o).await.unwrap();
    let client = PeerClient::with_tls(plain_addr.to_string(), SECRET.into(), Some(ctx));
    let r = client.call(&write_cmd("x"), Duration::from_secs(3)).await;
    assert!(r.is_err(), "{r:?}");
    plain_node.shutdown().await;
}

#[tokio::test]
async fn client_verifies_the_dialled_ip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    // The server's certificate names 127.0.0.2 only; we dial it at 127.0.0.1.
    let server_files = ca.node(dir.path(), "srv", &["127.0.0.2"], false);
    let client_files = ca.node(dir.path(), "cli", &[LOCALHOST], false);
    let server = Arc::new(PeerTlsContext::load(&server_files, None).unwrap());
    let client = PeerTlsContext::load(&client_files, ip()).unwrap();
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = server.clone();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        srv.accept(tcp).await.is_ok()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = client
        .connect(&addr.to_string(), tcp)
        .await
        .err()
        .expect("a certificate without the dialled IP is refused");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert!(!accept.await.unwrap());

    // The same server, dialled at an IP its certificate carries, is accepted.
    let listener = TcpListener::bind(("127.0.0.2", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await.is_ok()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    client
        .connect(&addr.to_string(), tcp)
        .await
        .expect("dialled IP matches");
    assert!(accept.await.unwrap());
}
