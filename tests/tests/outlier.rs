//! Outlier detection (issue 19 item 4) through a real fulcrum process: two backends that
//! answer every request with 500 and one healthy backend in a round-robin pool with
//! `outlier = { consecutive_5xx = 3, base_ejection = "3s", max_ejection_percent = 34 }`.
//! The first sick backend to give 3 consecutive 500s is ejected (it gets nothing while
//! ejected); the second is not, because one ejected backend is already 34% of the pool;
//! once the ejection ends the backend gets requests again and is ejected again. Each
//! ejection is counted in `fulcrum_backend_ejections_total`. Connect failures eject
//! within the same share: of two dead backends beside a healthy one, one is ejected.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::{single_node, Ports};
use fulcrum_tests::hostile::metric;
use fulcrum_tests::keepalive::exchange;
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::raw_backend::{Action, RawBackend};
use std::time::Duration;
use tokio::net::TcpStream;

fn sick(name: &'static str) -> impl Fn(&fulcrum_tests::raw_backend::Seen) -> Action {
    move |_| {
        Action::raw(format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        ))
    }
}

/// One GET on the keep-alive connection `s`; the status.
async fn get(s: &mut TcpStream) -> u16 {
    exchange(s, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_eject_a_backend_within_the_pools_max_ejection_share() {
    let sick1 = RawBackend::start(sick("sick1")).await;
    let sick2 = RawBackend::start(sick("sick2")).await;
    let healthy = TestBackend::start("healthy").await;
    let ports = Ports::new();
    let backends = format!(
        "[{{ addr = \"{}\" }}, {{ addr = \"{}\" }}, {{ addr = \"{}\" }}]",
        sick1.addr, sick2.addr, healthy.addr
    );
    let cfg = single_node(
        &ports,
        &backends,
        "outlier = { consecutive_5xx = 3, base_ejection = \"3s\", max_ejection_percent = 34 }",
        "",
    );
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    let ejections = || {
        metric(
            &node.admin,
            "fulcrum_backend_ejections_total",
            "pool=\"app\"",
        )
    };
    let mut s = TcpStream::connect(&ports.web).await.expect("connect");

    for _ in 0..24 {
        let status = get(&mut s).await;
        assert!(status == 200 || status == 500, "{status}");
    }
    let (n1, n2) = (sick1.seen().len(), sick2.seen().len());
    assert_eq!(
        ejections().await,
        1.0,
        "one ejection: sick1 {n1}, sick2 {n2}"
    );
    // The ejected one got its 3 failures and nothing since; the other kept getting
    // requests (ejecting it too would go over 34% of the pool).
    let (ejected, other) = if n1 == 3 {
        (&sick1, &sick2)
    } else {
        (&sick2, &sick1)
    };
    assert_eq!(ejected.seen().len(), 3, "sick1 {n1}, sick2 {n2}");
    assert!(other.seen().len() >= 6, "sick1 {n1}, sick2 {n2}");
    assert!(healthy.requests() >= 6);

    // The ejection (3 s) ends: the backend is picked again, fails 3 times, and is
    // ejected again (this time for 6 s, as its second ejection).
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let before = ejected.seen().len();
    for _ in 0..24 {
        get(&mut s).await;
    }
    let again = ejected.seen().len() - before;
    assert!(again >= 1, "back in the rotation after its ejection");
    assert!(ejections().await >= 2.0, "ejected again: {again} requests");
}

/// A port nothing listens on (bound, then closed): connects to it are refused.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_eject_within_the_pools_max_ejection_share() {
    // Two dead backends and a healthy one; ejecting both dead ones would be 67% of
    // the pool, over `max_ejection_percent = 34`.
    let healthy = TestBackend::start("healthy").await;
    let ports = Ports::new();
    let backends = format!(
        "[{{ addr = \"{}\" }}, {{ addr = \"{}\" }}, {{ addr = \"{}\" }}]",
        dead_addr(),
        dead_addr(),
        healthy.addr
    );
    let cfg = single_node(
        &ports,
        &backends,
        "outlier = { max_ejection_percent = 34 }",
        "",
    );
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    let mut s = TcpStream::connect(&ports.web).await.expect("connect");
    // Well within the first ejection's second: only one dead backend is ejected. The
    // other stays in the rotation, so a request may meet it after the first dead one
    // (a refused connect is retried once on another backend): 502 then.
    for _ in 0..9 {
        let status = get(&mut s).await;
        assert!(status == 200 || status == 502, "{status}");
    }
    let ejections = metric(
        &node.admin,
        "fulcrum_backend_ejections_total",
        "pool=\"app\"",
    )
    .await;
    assert_eq!(ejections, 1.0, "one of the two dead backends ejected");
    let log = node.log();
    assert!(
        log.contains("max_ejection_percent reached"),
        "the second was kept in: {log}"
    );
}
