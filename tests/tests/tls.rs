//! HTTPS listeners end to end: SNI certificate choice, HTTP/2 by ALPN, certificate
//! rotation without dropping open connections, refusal of bad input, `fulcrum check`
//! on broken certificate files, and TLS from fulcrum to an HTTPS backend.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::raw_exchange;
use fulcrum_tests::config::Ports;
use fulcrum_tests::process::{check_config, Fulcrum};
use fulcrum_tests::tls::{
    alpn, connect, get, http_over, peer_cert, recording_config, tls_front, verifying_config,
    Recorder, TestCa,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-node config with an HTTPS listener `web` (certs `tls`) in front of `backend`.
fn https_config(
    ports: &Ports,
    backend: &TestBackend,
    tls: &[(&Path, &Path)],
    extra: &str,
) -> String {
    let pairs: Vec<String> = tls
        .iter()
        .map(|(c, k)| {
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                c.display(),
                k.display()
            )
        })
        .collect();
    format!(
        r#"[node]
id = 1
admin = "{admin}"
data_dir = "/tmp"
access_log = "off"
shutdown_grace = "5s"

[[listener]]
name = "web"
bind = "{web}"
protocol = "https"
header_read_timeout = "5s"
tls = [{pairs}]
{extra}

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
backends = [{{ addr = "{backend}" }}]
"#,
        admin = ports.admin,
        web = ports.web,
        pairs = pairs.join(", "),
        backend = backend.addr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_each_certificate_and_h2_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["*.b.test"]);
    let (ac, ak) = a.write(dir.path(), "a");
    let (bc, bk) = b.write(dir.path(), "b");
    let backend = TestBackend::start("one").await;
    let ports = Ports::new();
    let config = https_config(&ports, &backend, &[(&ac, &ak), (&bc, &bk)], "");
    let _node = Fulcrum::start(&config, &ports.admin).await;

    // Exact name and wildcard name: chain and name verified by webpki with the test CA.
    let verify = verifying_config(&ca.pem(), &[b"http/1.1"]);
    let s = connect(&ports.web, "a.test", verify.clone())
        .await
        .expect("a.test");
    assert_eq!(peer_cert(&s), Some(a.der.clone()));
    let s = connect(&ports.web, "x.b.test", verify.clone())
        .await
        .expect("x.b.test");
    assert_eq!(peer_cert(&s), Some(b.der.clone()));
    // A wildcard covers one label only, so deeper names get the default.
    assert!(connect(&ports.web, "y.x.b.test", verify.clone())
        .await
        .is_err());

    // Unknown SNI: the default (first) certificate.
    let recorder = Arc::new(Recorder::default());
    let s = connect(
        &ports.web,
        "unknown.test",
        recording_config(recorder.clone()),
    )
    .await
    .expect("unknown name still handshakes");
    drop(s);
    let seen = recorder.seen.lock().expect("lock").clone();
    assert_eq!(seen, Some(a.der.clone()));

    // HTTP/1.1 over TLS carries X-Forwarded-Proto: https.
    let s = connect(&ports.web, "a.test", verify).await.expect("h1");
    let mut h1 = http_over(s).await.expect("h1 handshake");
    let (status, body) = get(&mut h1, "a.test", "/headers")
        .await
        .expect("h1 request");
    assert_eq!(status, 200);
    assert!(body.contains("x-forwarded-proto: https"), "{body}");

    // HTTP/2 negotiated by ALPN.
    let h2 = verifying_config(&ca.pem(), &[b"h2", b"http/1.1"]);
    let s = connect(&ports.web, "a.test", h2).await.expect("h2 connect");
    assert_eq!(alpn(&s).as_deref(), Some(b"h2".as_slice()));
    let mut h2 = http_over(s).await.expect("h2 handshake");
    for _ in 0..3 {
        let (status, body) = get(&mut h2, "a.test", "/").await.expect("h2 request");
        assert_eq!(status, 200);
        assert_eq!(body, "one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_serves_new_cert_and_keeps_open_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let old = ca.leaf(&["a.test"]);
    let (c, k) = old.write(dir.path(), "a");
    let backend = TestBackend::start("one").await;
    let ports = Ports::new();
    let config = https_config(&ports, &backend, &[(&c, &k)], "");
    let node = Fulcrum::start(&config, &ports.admin).await;
    let verify = verifying_config(&ca.pem(), &[b"http/1.1"]);

    let s = connect(&ports.web, "a.test", verify.clone())
        .await
        .expect("connect");
    assert_eq!(peer_cert(&s), Some(old.der.clone()));
    let mut open = http_over(s).await.expect("handshake");
    assert_eq!(get(&mut open, "a.test", "/").await.expect("first").0, 200);

    // Rotate the files in place, then apply the (unchanged) config.
    let new = ca.leaf(&["a.test"]);
    new.write(dir.path(), "a");
    let reply = fulcrum_tests::client::admin_call(&ports.admin, "PUT", "/config", &config, None)
        .await
        .expect("PUT /config");
    assert_eq!(reply.status, 200, "{}", reply.body);

    // New handshakes see the new certificate (watcher: ≤ 250 ms after apply, ≤ 2 s
    // after a file change); bounded wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = connect(&ports.web, "a.test", verify.clone())
            .await
            .expect("reconnect");
        if peer_cert(&s) == Some(new.der.clone()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the rotation still works.
    let (status, body) = get(&mut open, "a.test", "/").await.expect("old connection");
    assert_eq!((status.as_u16(), body.as_str()), (200, "one"));

    // Rotating the files alone (no apply) is noticed by the 2 s file watcher.
    let newer = ca.leaf(&["a.test"]);
    newer.write(dir.path(), "a");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = connect(&ports.web, "a.test", verify.clone())
            .await
            .expect("reconnect");
        if peer_cert(&s) == Some(newer.der.clone()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "file change not picked up; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_without_disturbing_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (c, k) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let backend = TestBackend::start("one").await;
    let ports = Ports::new();
    let config = https_config(&ports, &backend, &[(&c, &k)], "");
    let _node = Fulcrum::start(&config, &ports.admin).await;
    let verify = verifying_config(&ca.pem(), &[b"http/1.1"]);
    let s = connect(&ports.web, "a.test", verify.clone())
        .await
        .expect("good");
    let mut good = http_over(s).await.expect("good handshake");
    assert_eq!(get(&mut good, "a.test", "/").await.expect("before").0, 200);

    // A client that opens and says nothing: dropped after the handshake timeout
    // (header_read_timeout, 5 s here). Watched in the background meanwhile.
    let mut silent = tokio::net::TcpStream::connect(&ports.web)
        .await
        .expect("silent");
    let silent_closed = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
        matches!(n, Ok(Ok(0)) | Ok(Err(_)))
    });

    // A TLS record header announcing a handshake, followed by garbage.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    garbage.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    let out = raw_exchange(&ports.web, &garbage, Duration::from_secs(3))
        .await
        .expect("garbage exchange");
    // At most a TLS alert (content type 21), never application data.
    assert!(out.is_empty() || out[0] == 0x15, "unexpected reply {out:?}");

    // Plain HTTP on the TLS port: no HTTP answer.
    let out = raw_exchange(
        &ports.web,
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(3),
    )
    .await
    .expect("plain exchange");
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1"),
        "{out:?}"
    );

    // The connection opened before all this still works.
    let (status, body) = get(&mut good, "a.test", "/").await.expect("after");
    assert_eq!((status.as_u16(), body.as_str()), (200, "one"));
    assert!(
        silent_closed.await.expect("join"),
        "silent client was not dropped"
    );
    // And new clients are served as usual.
    let s = connect(&ports.web, "a.test", verify)
        .await
        .expect("new good");
    let mut fresh = http_over(s).await.expect("new handshake");
    assert_eq!(get(&mut fresh, "a.test", "/").await.expect("new").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_only_from_trusted_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (c, k) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let backend = TestBackend::start("one").await;
    let verify = verifying_config(&ca.pem(), &[b"http/1.1"]);

    // Trusted: loopback may speak for 203.0.113.7, who shows up in X-Forwarded-For.
    let ports = Ports::new();
    let extra = "accept_proxy = true\nproxy_from = [\"127.0.0.0/8\"]";
    let _node = Fulcrum::start(
        &https_config(&ports, &backend, &[(&c, &k)], extra),
        &ports.admin,
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(&ports.web)
        .await
        .expect("connect");
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n")
        .await
        .expect("proxy header");
    let name = rustls::pki_types::ServerName::try_from("a.test").expect("name");
    let tls = tokio_rustls::TlsConnector::from(verify.clone())
        .connect(name, tcp)
        .await
        .expect("TLS after PROXY");
    let mut sender = http_over(tls).await.expect("handshake");
    let (status, body) = get(&mut sender, "a.test", "/headers")
        .await
        .expect("request");
    assert_eq!(status, 200);
    assert!(body.contains("x-forwarded-for: 203.0.113.7"), "{body}");

    // Untrusted: loopback is not in proxy_from, so the connection is closed even with
    // a well-formed header, while a concurrent good connection is unaffected.
    let ports2 = Ports::new();
    let extra = "accept_proxy = true\nproxy_from = [\"10.0.0.0/8\"]";
    let _node2 = Fulcrum::start(
        &https_config(&ports2, &backend, &[(&c, &k)], extra),
        &ports2.admin,
    )
    .await;
    let out = raw_exchange(
        &ports2.web,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n",
        Duration::from_secs(3),
    )
    .await
    .expect("untrusted exchange");
    assert!(out.is_empty(), "untrusted peer got {out:?}");
    let (status, _) = get(&mut sender, "a.test", "/").await.expect("still fine");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_broken_certificates_with_clear_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (ac, ak) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let (_bc, bk) = ca.leaf(&["b.test"]).write(dir.path(), "b");
    let (ec, ek) = ca
        .leaf_valid(&["old.test"], Some((2024, 1, 1)))
        .write(dir.path(), "expired");
    let backend = TestBackend::start("one").await;
    let ports = Ports::new();

    let (ok, err, _) = check_config(
        &https_config(&ports, &backend, &[(&ac, &ak)], ""),
        dir.path(),
    );
    assert!(ok, "good pair refused: {err}");

    let (ok, err, _) = check_config(
        &https_config(&ports, &backend, &[(&ac, &bk)], ""),
        dir.path(),
    );
    assert!(!ok);
    assert!(err.contains("does not match certificate"), "{err}");
    assert!(err.contains("b.key") && err.contains("a.pem"), "{err}");

    let (ok, err, _) = check_config(
        &https_config(&ports, &backend, &[(&ec, &ek)], ""),
        dir.path(),
    );
    assert!(!ok);
    assert!(err.contains("expired on 2024-01-01"), "{err}");

    let missing = dir.path().join("missing.pem");
    let (ok, err, _) = check_config(
        &https_config(&ports, &backend, &[(&missing, &ak)], ""),
        dir.path(),
    );
    assert!(!ok);
    assert!(err.contains("missing.pem"), "{err}");

    // Applying a broken pair to a running node is refused; the node keeps serving.
    let node = Fulcrum::start(
        &https_config(&ports, &backend, &[(&ac, &ak)], ""),
        &ports.admin,
    )
    .await;
    let bad = https_config(&ports, &backend, &[(&ac, &bk)], "");
    let reply = fulcrum_tests::client::admin_call(&ports.admin, "PUT", "/config", &bad, None)
        .await
        .expect("PUT /config");
    assert!(
        reply.status.is_client_error(),
        "{} {}",
        reply.status,
        reply.body
    );
    assert!(reply.body.contains("does not match"), "{}", reply.body);
    let verify = verifying_config(&ca.pem(), &[b"http/1.1"]);
    let s = connect(&ports.web, "a.test", verify)
        .await
        .expect("still serving");
    let mut h = http_over(s).await.expect("handshake");
    assert_eq!(
        get(&mut h, "a.test", "/").await.expect("request").0,
        200,
        "{}",
        node.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_tls_verifies_backend_with_given_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let ca_path = ca.write(dir.path());
    let inner = TestBackend::start("secure").await;
    let addr = tls_front(&ca, inner.addr).await;
    let ports = Ports::new();
    let config = |server_name: &str| {
        format!(
            r#"[node]
id = 1
admin = "{admin}"
data_dir = "/tmp"
access_log = "off"

[[listener]]
name = "web"
bind = "{web}"

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
backends = [{{ addr = "{addr}" }}]
tls = {{ ca = "{ca}", server_name = "{server_name}" }}
"#,
            admin = ports.admin,
            web = ports.web,
            ca = ca_path.display(),
        )
    };
    let node = Fulcrum::start(&config("backend.test"), &ports.admin).await;
    let client = fulcrum_tests::client::fresh_client();
    let reply = fulcrum_tests::client::get(&client, &ports.url("/"), &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}", node.log());
    assert_eq!(reply.body, "secure");

    // A name the backend's certificate does not carry fails verification: 502.
    let reply = fulcrum_tests::client::admin_call(
        &ports.admin,
        "PUT",
        "/config",
        &config("other.test"),
        None,
    )
    .await
    .expect("apply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = fulcrum_tests::client::get(&client, &ports.url("/"), &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_on_a_plain_http_listener() {
    let backend = TestBackend::start("one").await;
    let ports = Ports::new();
    let config = format!(
        r#"[node]
id = 1
admin = "{admin}"
data_dir = "/tmp"
access_log = "off"

[[listener]]
name = "web"
bind = "{web}"
accept_proxy = true
proxy_from = ["127.0.0.1"]

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
backends = [{{ addr = "{backend}" }}]
"#,
        admin = ports.admin,
        web = ports.web,
        backend = backend.addr,
    );
    let _node = Fulcrum::start(&config, &ports.admin).await;
    let request = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n\
GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let out = raw_exchange(&ports.web, request, Duration::from_secs(5))
        .await
        .expect("exchange");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("x-forwarded-for: 203.0.113.9"), "{text}");
    // Without the header a trusted peer is refused: it must speak PROXY.
    let out = raw_exchange(
        &ports.web,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .expect("exchange");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

/// Active HTTP checks of a TLS pool go over TLS, with the pool's CA and name: a backend
/// with a valid certificate stays healthy; with a name it does not carry it is marked down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_of_a_tls_pool_speak_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let ca_path = ca.write(dir.path());
    let inner = TestBackend::start("secure").await;
    let addr = tls_front(&ca, inner.addr).await;
    let ports = Ports::new();
    let config = |server_name: &str| {
        format!(
            r#"[node]
id = 1
admin = "{admin}"
data_dir = "/tmp"
access_log = "off"

[[listener]]
name = "web"
bind = "{web}"

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
backends = [{{ addr = "{addr}" }}]
tls = {{ ca = "{ca}", server_name = "{server_name}" }}
health = {{ path = "/healthz", interval = "200ms", timeout = "150ms", rise = 1, fall = 1 }}
"#,
            admin = ports.admin,
            web = ports.web,
            ca = ca_path.display(),
        )
    };
    let healthy = |want: bool| {
        let admin = ports.admin.clone();
        async move {
            for _ in 0..50 {
                let s = fulcrum_tests::client::get_status(&admin).await;
                if s.and_then(|s| s["pools"][0]["backends"][0]["healthy"].as_bool()) == Some(want) {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            false
        }
    };
    let node = Fulcrum::start(&config("backend.test"), &ports.admin).await;
    // Healthy, and still healthy after several more checks (interval 200 ms, fall 1): one
    // failed TLS check would have marked it down.
    assert!(
        healthy(true).await,
        "TLS backend checked over TLS must become healthy: {}",
        node.log()
    );
    let checks_before = inner.health_checks();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while inner.health_checks() < checks_before + 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no further health checks: {}",
            node.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        healthy(true).await,
        "TLS backend checked over TLS must stay healthy: {}",
        node.log()
    );
    let reply = fulcrum_tests::client::admin_call(
        &ports.admin,
        "PUT",
        "/config",
        &config("other.test"),
        None,
    )
    .await
    .expect("apply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        healthy(false).await,
        "a certificate without the name must fail the check"
    );
}
