//! Hostile requests through a real fulcrum process (issue 22, request side): each
//! test sends the attack bytes and checks both what the client got and what the
//! backend received, on the hand-written HTTP/1.1 path and on the hyper path (reached
//! with a chunked request body or HTTP/1.0, which the fast path hands over).
//!
//! Classes: a Host that is not ASCII with a wildcard route (used to panic the
//! connection task), invalid or missing Host, `Connection: host`, absolute-form and
//! HTTP/2 authorities that disagree with Host, `Upgrade: h2c` and upgrade tokens a
//! route does not allow, forwarding headers from untrusted and trusted peers, and
//! paths that only match a route before normalisation.

use fulcrum_tests::config::Ports;
use fulcrum_tests::hostile::{metric, send_raw};
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::raw_backend::{Action, RawBackend, Seen};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(1500);

/// A one-node config: listener `web` (with `listener_extra` lines), then `rest`
/// (routes and pools, as TOML).
fn config(ports: &Ports, listener_extra: &str, rest: &str) -> String {
    format!(
        "[node]\nid = 1\nadmin = \"{}\"\ndata_dir = \"/tmp\"\naccess_log = \"off\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"{}\"\nheader_read_timeout = \"2s\"\n{listener_extra}\n\n{rest}",
        ports.admin, ports.web
    )
}

/// `[[pool]]` NAME with the one backend `b`.
fn pool(name: &str, b: &RawBackend) -> String {
    format!(
        "[[pool]]\nname = \"{name}\"\nbackends = {}\n",
        b.backend_list()
    )
}

fn route(extra: &str, pool: &str) -> String {
    format!("[[route]]\nlistener = \"web\"\n{extra}\npool = \"{pool}\"\n")
}

/// A backend answering `200` with body `NAME path=TARGET`.
async fn named(name: &'static str) -> RawBackend {
    RawBackend::start(move |s| Action::ok(format!("{name} path={}", s.path()))).await
}

/// A GET to `path` as the fast path serves it, and the same through hyper (a
/// chunked body makes the fast path hand the request over).
fn both_paths(path: &str, host_lines: &str) -> [(&'static str, String); 2] {
    [
        ("fast", format!("GET {path} HTTP/1.1\r\n{host_lines}\r\n")),
        (
            "hyper",
            format!(
                "POST {path} HTTP/1.1\r\n{host_lines}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
        ),
    ]
}

fn paths(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(|s| s.path().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_host_with_a_wildcard_route_is_a_400_not_a_panic() {
    let (wild, other) = (named("wild").await, named("other").await);
    let ports = Ports::new();
    let rest = format!(
        "{}{}{}{}",
        route("host = \"*.example.com\"", "wild"),
        route("", "other"),
        pool("wild", &wild),
        pool("other", &other)
    );
    let node = Fulcrum::start(&config(&ports, "", &rest), &ports.admin).await;
    for host in [
        "é.example.com",
        "üüüüüüüa",
        "ab.exampleé.com",
        "a b",
        "user@x.example.com",
        "x:1:2",
    ] {
        for (path_kind, req) in both_paths("/c/host", &format!("Host: {host}\r\n")) {
            let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
            assert_eq!(
                out.status(),
                Some(400),
                "{path_kind} Host {host:?}: {:?}",
                out.text()
            );
        }
    }
    assert!(
        wild.seen().is_empty() && other.seen().is_empty(),
        "an invalid Host was forwarded"
    );
    // The node is alive, serves the wildcard route, and counted every connection out.
    let ok = send_raw(
        &ports.web,
        b"GET /fine HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert!(ok.text().ends_with("wild path=/fine"), "{}", ok.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&ports.admin, "fulcrum_client_connections", "").await,
        0.0
    );
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_needs_exactly_one_valid_host_and_connection_cannot_strip_it() {
    let b = named("b").await;
    let ports = Ports::new();
    let rest = format!("{}{}", route("", "app"), pool("app", &b));
    let _node = Fulcrum::start(&config(&ports, "", &rest), &ports.admin).await;
    for (what, hosts) in [("no Host", ""), ("two Hosts", "Host: a\r\nHost: b\r\n")] {
        for (path_kind, req) in both_paths("/c/refused", hosts) {
            let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
            assert_eq!(
                out.status(),
                Some(400),
                "{what} ({path_kind}): {:?}",
                out.text()
            );
        }
    }
    assert!(b.seen().is_empty(), "forwarded: {:?}", paths(&b.seen()));
    // HTTP/1.0 may omit Host; the backend then gets one.
    let ten = send_raw(&ports.web, b"GET /ten HTTP/1.0\r\n\r\n", QUIET).await;
    assert_eq!(ten.status(), Some(200), "{}", ten.text());
    // `Connection: host` must not take away the Host that routing used.
    for (path_kind, req) in both_paths(
        "/c/conn-host",
        "Host: shop.example\r\nConnection: host, x-a\r\nX-A: 1\r\n",
    ) {
        let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
        assert_eq!(out.status(), Some(200), "{path_kind}: {}", out.text());
        let seen = b.seen();
        let last = seen.last().expect("forwarded");
        assert_eq!(
            last.head.get_all("host"),
            ["shop.example"],
            "{path_kind}: {:?}",
            last.head
        );
        assert!(!last.head.has("x-a"), "{path_kind}: listed header kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_authority_wins_over_host() {
    let (public, admin) = (named("public").await, named("admin").await);
    let ports = Ports::new();
    let rest = format!(
        "{}{}{}{}",
        route("host = \"public.example\"", "public"),
        route("host = \"admin.example\"", "admin"),
        pool("public", &public),
        pool("admin", &admin)
    );
    let _node = Fulcrum::start(&config(&ports, "", &rest), &ports.admin).await;
    // RFC 9112 §3.2.2: the absolute-form target's authority replaces Host.
    let req = b"GET http://admin.example/c/abs HTTP/1.1\r\nHost: public.example\r\n\r\n";
    let out = send_raw(&ports.web, req, QUIET).await;
    assert_eq!(out.status(), Some(200), "{}", out.text());
    assert!(out.text().ends_with("admin path=/c/abs"), "{}", out.text());
    let seen = admin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].head.get_all("host"), ["admin.example"]);
    assert!(public.seen().is_empty());

    // RFC 9113 §8.3.1: a Host that differs from :authority makes the request malformed.
    let (status, _) = h2_get(
        &ports.web,
        "http://public.example/c/h2",
        Some("admin.example"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = h2_get(
        &ports.web,
        "http://public.example/c/h2-ok",
        Some("Public.Example"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "public path=/c/h2-ok"));
    let (status, body) = h2_get(&ports.web, "http://admin.example/c/h2-only", None).await;
    assert_eq!((status, body.as_str()), (200, "admin path=/c/h2-only"));
    assert_eq!(admin.seen().len(), 2, "{:?}", paths(&admin.seen()));
    assert_eq!(paths(&public.seen()), ["/c/h2-ok"]);
    assert_eq!(public.seen()[0].head.get_all("host"), ["public.example"]);
}

/// An h2c (prior knowledge) GET of `uri` with an optional `host` header, spoken
/// with the `h2` crate so the request can carry what a browser would not.
async fn h2_get(addr: &str, uri: &str, host: Option<&str>) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut client = client.ready().await.expect("ready");
    let mut req = http::Request::get(uri).version(http::Version::HTTP_2);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    let (resp, _) = client
        .send_request(req.body(()).expect("request"), true)
        .expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("in time")
        .expect("response");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&text).into_owned())
}

/// A backend that switches to whatever protocol it is asked for (as an h2c server
/// would), else answers 200 `plain`.
async fn switching_backend() -> RawBackend {
    RawBackend::start(|s| match s.head.get("upgrade") {
        Some(protocol) => Action::raw(format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
        )),
        None => Action::ok("plain"),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_unlisted_upgrades_never_tunnel() {
    let (b, closed) = (switching_backend().await, switching_backend().await);
    let ports = Ports::new();
    let rest = format!(
        "{}{}{}{}",
        route("path_prefix = \"/public\"", "app"),
        route("path_prefix = \"/closed\"\nupgrades = []", "closed"),
        pool("app", &b),
        pool("closed", &closed)
    );
    let _node = Fulcrum::start(&config(&ports, "", &rest), &ports.admin).await;
    let h2c = "GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
               Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";
    let ws_closed =
        "GET /closed/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    for req in [h2c, ws_closed] {
        let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
        assert_eq!(out.statuses(), [200], "{req:?}: {}", out.text());
        assert!(out.text().ends_with("plain"), "{}", out.text());
    }
    for s in b.seen().iter().chain(closed.seen().iter()) {
        for name in ["upgrade", "http2-settings"] {
            assert!(!s.head.has(name), "backend got {name}: {:?}", s.head);
        }
        assert!(!s.head.has_token("connection", "upgrade"), "{:?}", s.head);
    }
    // An allowed protocol still switches; h2c offered next to it is dropped.
    let both = "GET /public/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n";
    let out = send_raw(&ports.web, both.as_bytes(), QUIET).await;
    assert_eq!(out.status(), Some(101), "{}", out.text());
    let last = b.seen().last().cloned().expect("seen");
    assert_eq!(last.head.get("upgrade"), Some("websocket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_nobody_asked_for_is_a_502_not_a_tunnel() {
    let rogue = RawBackend::start(|_| {
        Action::raw(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        )
    })
    .await;
    let ports = Ports::new();
    let rest = format!("{}{}", route("", "app"), pool("app", &rogue));
    let _node = Fulcrum::start(&config(&ports, "", &rest), &ports.admin).await;
    let h2c = "GET /c/rogue HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    let ws =
        "GET /c/rogue-ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    for (req, want) in [
        (h2c, 502),
        (ws, 502),
        ("GET /c/plain HTTP/1.1\r\nHost: a\r\n\r\n", 502),
    ] {
        let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
        assert_eq!(out.status(), Some(want), "{req:?}: {}", out.text());
    }
}

/// What the backend saw of the forwarding headers of its last request.
fn forwarding_seen(b: &RawBackend) -> (String, String, String) {
    let seen = b.seen();
    let h = &seen.last().expect("forwarded").head;
    let all = |name| h.get_all(name).join(" | ");
    (all("x-forwarded-for"), all("forwarded"), all("x-real-ip"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_replaced_at_the_edge_and_appended_for_trusted_proxies() {
    let spoof = "Host: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n\
                 Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n";
    for (trusted, want) in [
        ("", ("127.0.0.1", "for=127.0.0.1;proto=http", "127.0.0.1")),
        (
            "trusted_proxies = [\"127.0.0.0/8\"]",
            (
                "6.6.6.6, 7.7.7.7, 127.0.0.1",
                "for=6.6.6.6, for=127.0.0.1;proto=http",
                "6.6.6.6",
            ),
        ),
    ] {
        let b = named("b").await;
        let ports = Ports::new();
        let rest = format!("{}{}", route("", "app"), pool("app", &b));
        let _node = Fulcrum::start(&config(&ports, trusted, &rest), &ports.admin).await;
        for (path_kind, req) in both_paths("/c/fwd", spoof) {
            let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
            assert_eq!(out.status(), Some(200), "{}", out.text());
            let (xff, fwd, real) = forwarding_seen(&b);
            assert_eq!(
                (xff.as_str(), fwd.as_str(), real.as_str()),
                want,
                "{path_kind} path, listener {trusted:?}"
            );
        }
        // A client that sends none gets X-Forwarded-For only.
        for (path_kind, req) in both_paths("/c/plain", "Host: a\r\n") {
            send_raw(&ports.web, req.as_bytes(), QUIET).await;
            let (xff, fwd, real) = forwarding_seen(&b);
            assert_eq!(
                (xff.as_str(), fwd.as_str(), real.as_str()),
                ("127.0.0.1", "", ""),
                "{path_kind}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_routed_and_forwarded_normalised() {
    let (public, admin) = (named("public").await, named("admin").await);
    let rest = format!(
        "{}{}{}{}",
        route("path_prefix = \"/public\"", "public"),
        route("path_prefix = \"/admin\"", "admin"),
        pool("public", &public),
        pool("admin", &admin)
    );
    let ports = Ports::new();
    let _node = Fulcrum::start(&config(&ports, "", &rest), &ports.admin).await;
    for sneaky in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/./%2E%2e/admin/x",
        "/%61dmin/x",
    ] {
        for (path_kind, req) in both_paths(sneaky, "Host: a\r\n") {
            let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
            assert_eq!(
                out.status(),
                Some(200),
                "{sneaky} ({path_kind}): {}",
                out.text()
            );
            assert!(
                out.text().ends_with("admin path=/admin/x"),
                "{sneaky} ({path_kind}): {}",
                out.text()
            );
        }
    }
    assert!(
        public.seen().is_empty(),
        "routed on the raw path: {:?}",
        paths(&public.seen())
    );
    // Without merge_slashes, `//admin` is not `/admin` (and no route matches it).
    let out = send_raw(
        &ports.web,
        b"GET //admin/x HTTP/1.1\r\nHost: a\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(out.status(), Some(404), "{}", out.text());
    for (path_kind, req) in both_paths("/admin/%zz", "Host: a\r\n") {
        let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
        assert_eq!(
            out.status(),
            Some(400),
            "bad escape ({path_kind}): {}",
            out.text()
        );
    }
    assert_eq!(admin.seen().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_slashes_and_as_received_forwarding_are_per_listener() {
    let (public, admin) = (named("public").await, named("admin").await);
    let rest = format!(
        "{}{}{}{}",
        route("path_prefix = \"/public\"", "public"),
        route("path_prefix = \"/admin\"", "admin"),
        pool("public", &public),
        pool("admin", &admin)
    );
    let ports = Ports::new();
    let listener = "merge_slashes = true\nforward_path = \"as-received\"";
    let _node = Fulcrum::start(&config(&ports, listener, &rest), &ports.admin).await;
    for (path_kind, req) in both_paths("//admin//x?q=1", "Host: a\r\n") {
        let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
        assert_eq!(out.status(), Some(200), "{path_kind}: {}", out.text());
        assert!(
            out.text().ends_with("admin path=//admin//x?q=1"),
            "{path_kind}: {}",
            out.text()
        );
    }
    assert!(public.seen().is_empty());
}
