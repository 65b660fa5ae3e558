//! HTTP proxy behaviour through a real fulcrum process: routing, headers, limits,
//! h2c, WebSocket, retries, affinity cookies.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::choked_backend::ChokedBackend;
use fulcrum_tests::client::{fresh_client, get, h2c_get, keepalive_client, raw_exchange};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_longest_prefix_and_404s_the_rest() {
    let (api, v2, shop) = (
        TestBackend::start("api").await,
        TestBackend::start("v2").await,
        TestBackend::start("shop").await,
    );
    let ports = Ports::new();
    let cfg = format!(
        r#"[node]
id = 1
admin = "{admin}"
access_log = "off"
[[listener]]
name = "web"
bind = "{web}"
[[route]]
listener = "web"
path_prefix = "/api"
pool = "api"
[[route]]
listener = "web"
path_prefix = "/api/v2"
pool = "v2"
[[route]]
listener = "web"
host = "shop.example"
pool = "shop"
[[pool]]
name = "api"
backends = [{{ addr = "{a}" }}]
[[pool]]
name = "v2"
backends = [{{ addr = "{b}" }}]
[[pool]]
name = "shop"
backends = [{{ addr = "{c}" }}]
"#,
        admin = ports.admin,
        web = ports.web,
        a = api.addr,
        b = v2.addr,
        c = shop.addr
    );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let c = keepalive_client();
    assert_eq!(
        get(&c, &ports.url("/api/x"), &[])
            .await
            .unwrap()
            .backend
            .as_deref(),
        Some("api")
    );
    assert_eq!(
        get(&c, &ports.url("/api/v2/x"), &[])
            .await
            .unwrap()
            .backend
            .as_deref(),
        Some("v2")
    );
    assert_eq!(
        get(&c, &ports.url("/"), &[("host", "shop.example")])
            .await
            .unwrap()
            .backend
            .as_deref(),
        Some("shop")
    );
    let none = get(&c, &ports.url("/nothing"), &[]).await.unwrap();
    assert_eq!(none.status, 404);
    assert!(none.body.contains("no route"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_hop_by_hop_stripped() {
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&b], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let r = get(
        &keepalive_client(),
        &ports.url("/headers"),
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("host", "site.example"),
        ],
    )
    .await
    .unwrap();
    let seen = r.body.to_lowercase();
    // An edge listener (no `trusted_proxies`) replaces the client's claim.
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(!seen.contains("203.0.113.7"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("x-forwarded-host: site.example"), "{seen}");
    assert!(seen.contains("via: 1.1 fulcrum"), "{seen}");
    assert!(
        !seen.contains("x-private"),
        "header listed in Connection must be stripped: {seen}"
    );
    assert!(r.headers.get("via").is_some(), "response carries Via");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_get_431_and_the_node_keeps_serving() {
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&b], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let big = "a".repeat(64 * 1024);
    let req = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let out = raw_exchange(&ports.web, req.as_bytes(), Duration::from_secs(3))
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&out[..out.len().min(64)]).to_string();
    assert!(head.starts_with("HTTP/1.1 431"), "got {head:?}");
    // Garbage and a bad request line do not crash it either.
    let out = raw_exchange(
        &ports.web,
        b"\x16\x03\x01garbage\r\n\r\n",
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    assert!(out.is_empty() || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"));
    assert_eq!(
        get(&keepalive_client(), &ports.url("/"), &[])
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_client_is_cut_off_after_header_read_timeout() {
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&b], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(&ports.web).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 1024];
    // Trickle a header byte every 500 ms: the 2 s header timeout must still close us.
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            tokio::select! {
                n = s.read(&mut buf) => return n.unwrap_or(0),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if s.write_all(b"x").await.is_err() { return 0; }
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "slowloris connection was never closed");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_proxied() {
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&b], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let (status, backend) = h2c_get(&ports.web, "/").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(backend.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_tunnels_bytes_both_ways() {
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&b], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(&ports.web).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(n == 1, "closed before the 101");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame", &[0u8, 1, 2, 255]] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_costs_get_clients_nothing() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&a, &b], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let client = fresh_client();
    for _ in 0..10 {
        assert_eq!(
            get(&client, &ports.url("/"), &[]).await.unwrap().status,
            200
        );
    }
    a.kill();
    let mut errors = 0;
    let mut served_by_b = 0;
    for _ in 0..100 {
        match get(&client, &ports.url("/"), &[]).await {
            Ok(r) if r.status == 200 => served_by_b += u32::from(r.backend.as_deref() == Some("b")),
            _ => errors += 1,
        }
    }
    assert_eq!(errors, 0, "GETs must be retried on the live backend");
    assert_eq!(served_by_b, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_cookie_sticks_and_forged_cookie_is_ignored() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let cfg = single_node(
        &ports,
        &backend_list(&[&a, &b], &[]),
        r#"affinity = { mode = "cookie" }"#,
        "[session]\ncookie_secret = \"test-secret-0123456789abcdef\"",
    );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let client = fresh_client();
    let first = get(&client, &ports.url("/"), &[]).await.unwrap();
    let set_cookie = first
        .headers
        .get("set-cookie")
        .expect("affinity cookie")
        .to_str()
        .unwrap()
        .to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("fulcrum_affinity="), "{cookie}");
    let pinned = first.backend.clone().unwrap();
    for _ in 0..20 {
        let r = get(&client, &ports.url("/"), &[("cookie", cookie.as_str())])
            .await
            .unwrap();
        assert_eq!(
            r.backend.as_deref(),
            Some(pinned.as_str()),
            "cookie must pin the backend"
        );
        assert!(
            r.headers.get("set-cookie").is_none(),
            "a valid cookie is not reissued"
        );
    }
    // A forged cookie (valid shape, wrong MAC) is ignored: round-robin resumes and a
    // fresh, valid cookie is issued.
    let forged = format!(
        "fulcrum_affinity={}.AAAAAAAAAAAAAAAAAAAAAA",
        cookie.split('=').nth(1).unwrap().split('.').next().unwrap()
    );
    let mut backends = std::collections::HashSet::new();
    for _ in 0..6 {
        let r = get(&client, &ports.url("/"), &[("cookie", forged.as_str())])
            .await
            .unwrap();
        assert!(
            r.headers.get("set-cookie").is_some(),
            "forged cookie must be replaced"
        );
        backends.insert(r.backend.unwrap());
    }
    assert_eq!(backends.len(), 2, "a forged cookie must not pin anything");
}

/// A lost SYN (a lossy link) must not move a pinned session: a connect that timed out is
/// tried once more on the same backend before the proxy gives up on it (HAProxy's
/// `retries` before `redispatch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_retries_the_pinned_backend_before_moving_the_session() {
    let a = TestBackend::start("a").await;
    let mut b = ChokedBackend::start("b").expect("choked backend");
    let ports = Ports::new();
    let backends = format!(
        r#"[{{ addr = "{}" }}, {{ addr = "{}" }}]"#,
        a.addr,
        b.addr()
    );
    let cfg = single_node(
        &ports,
        &backends,
        "affinity = { mode = \"cookie\" }\nconnect_timeout = \"400ms\"",
        "[session]\ncookie_secret = \"test-secret-0123456789abcdef\"",
    );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let client = fresh_client();
    // A session pinned to b.
    let mut cookie = None;
    for _ in 0..4 {
        let r = get(&client, &ports.url("/"), &[]).await.expect("request");
        if r.backend.as_deref() == Some("b") {
            let set = r.headers.get("set-cookie").expect("affinity cookie");
            let set = set.to_str().expect("ascii cookie");
            cookie = set.split(';').next().map(str::to_string);
            break;
        }
    }
    let cookie = cookie.expect("round robin reaches b within 4 requests");

    b.choke().expect("fill b's accept queue");
    assert!(
        !b.connect_gets_through(Duration::from_millis(100)),
        "premise: while choked, a connect to b must time out"
    );
    let served_before = b.served();
    b.unchoke_after(Duration::from_millis(150));
    let started = std::time::Instant::now();
    let r = get(&client, &ports.url("/"), &[("cookie", cookie.as_str())])
        .await
        .expect("pinned request");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350),
        "premise: the first connect must have timed out (answered in {took:?})"
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.backend.as_deref(),
        Some("b"),
        "one timed-out connect moved the session off its healthy backend"
    );
    assert_eq!(b.served(), served_before + 1);
    // And it stays pinned afterwards (b was not ejected).
    let r = get(&client, &ports.url("/"), &[("cookie", cookie.as_str())])
        .await
        .expect("next pinned request");
    assert_eq!(r.backend.as_deref(), Some("b"));
}
