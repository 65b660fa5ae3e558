//! The test bed's own parts against the real thing: processes stopped by PID, the HTTP
//! backend's modes and sessions through the bed's HTTP client, redis-server, and a bridged
//! network that is deleted on drop, and redis-server inside a namespace (those two need root
//! and iproute2).

use fulcrum_testbed::backend::{Mode, Options, TestBackend};
use fulcrum_testbed::bridge::{self, BridgeSpec, Bridged, Leftovers};
use fulcrum_testbed::httpc;
use fulcrum_testbed::netns::{self, Namespace};
use fulcrum_testbed::process::{Launched, Output, Poll, Proc};
use fulcrum_testbed::redis::{RedisServer, TestRedis};
use nix::sys::signal::Signal;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_secs(2);

fn wait_exit(p: &mut Proc) -> Poll {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let poll = p.poll();
        if poll != Poll::Running || Instant::now() >= deadline {
            return poll;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_process_is_signalled_reaped_and_killed_on_drop_by_its_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sh.log");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo started; exec sleep 30"]);
    let mut p = Proc::spawn(cmd, Output::Log(&log), true).expect("spawn sh");
    assert_eq!(p.poll(), Poll::Running);
    // Its output reaches the log (wait for it: a signal sent before the shell ran its
    // first command would end it with nothing written).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let started = || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("started"));
    while !started() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started(), "the process's output did not reach its log");
    p.signal(Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(wait_exit(&mut p), Poll::Exited(None), "a signal ended it");
    assert_eq!(p.poll(), Poll::Gone);
    assert!(
        p.signal(Signal::SIGTERM).is_err(),
        "nothing held, nothing signalled"
    );

    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exit 7"]);
    let mut p = Proc::spawn(cmd, Output::Null, false).expect("spawn sh");
    assert_eq!(wait_exit(&mut p), Poll::Exited(Some(7)));

    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let p = Proc::spawn(cmd, Output::Null, false).expect("sleep");
    let pid = p.pid().expect("pid");
    drop(p);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "dropping a Proc kills and reaps its process"
    );
}

#[tokio::test]
async fn the_backend_switches_modes_and_hands_out_sessions() {
    let options = Options {
        mode: Mode::Ok,
        hand_out_sessions: true,
        line_body: true,
    };
    let b = TestBackend::serve("127.0.0.1:0".parse().expect("addr"), "b1", options)
        .await
        .expect("backend");
    let addr = b.addr.to_string();
    let get = |headers: Vec<(&'static str, String)>, path: &'static str| {
        let addr = addr.clone();
        async move { httpc::request(&addr, "GET", path, &headers, None, BUDGET).await }
    };
    let first = get(vec![], "/").await.expect("GET /");
    assert_eq!(first.status, 200);
    assert_eq!(first.backend.as_deref(), Some("b1"));
    assert_eq!(&first.body[..], b"b1\n");
    assert!(
        first
            .set_cookies
            .iter()
            .any(|c| c.starts_with("JSESSIONID=")),
        "{:?}",
        first.set_cookies
    );
    let again = get(vec![("cookie", "JSESSIONID=abc".into())], "/")
        .await
        .expect("GET / with a session");
    assert!(again.set_cookies.is_empty(), "{:?}", again.set_cookies);
    let health = get(vec![], "/healthz").await.expect("GET /healthz");
    assert!(
        health.set_cookies.is_empty(),
        "no session for a health check"
    );

    let switch = get(vec![], "/__chaos/mode?m=500").await.expect("mode 500");
    assert_eq!(switch.status, 200);
    assert_eq!(get(vec![], "/").await.expect("GET /").status, 500);
    assert_eq!(get(vec![], "/healthz").await.expect("healthz").status, 500);
    b.set_mode(Mode::Hang);
    let hung = get(vec![], "/").await;
    assert!(
        hung.as_ref()
            .is_err_and(|e| e.to_string().starts_with("timeout")),
        "{:?}",
        hung.map(|r| r.status)
    );
    assert_eq!(
        get(vec![], "/__chaos/mode?m=nope")
            .await
            .expect("bad mode")
            .status,
        400
    );
    b.set_mode(Mode::Ok);
    assert_eq!(b.health_checks(), 2);
    assert_eq!(
        b.requests(),
        4,
        "GET / x4 (the mode switches are not requests)"
    );
}

#[tokio::test]
async fn the_plain_backend_answers_its_paths_without_sessions() {
    let b = TestBackend::start("plain").await;
    let addr = b.addr.to_string();
    let r = httpc::request(&addr, "GET", "/", &[], None, BUDGET)
        .await
        .expect("GET /");
    assert_eq!((r.status, &r.body[..]), (200, &b"plain"[..]));
    assert!(r.set_cookies.is_empty());
    b.set_healthy(false);
    let r = httpc::request(&addr, "GET", "/healthz", &[], None, BUDGET)
        .await
        .expect("GET /healthz");
    assert_eq!(r.status, 503);
    let r = httpc::request(&addr, "GET", "/status?code=418", &[], None, BUDGET)
        .await
        .expect("GET /status");
    assert_eq!(r.status, 418);
    b.kill();
    let gone = httpc::request(&addr, "GET", "/", &[], None, BUDGET).await;
    assert!(gone.is_err(), "a killed backend does not answer");
}

#[tokio::test]
async fn redis_starts_answers_and_stops_by_pid() {
    let mut r = TestRedis::start().await;
    assert!(r.ping().await);
    r.kill();
    assert!(!r.ping().await, "killed");
    r.restart().await;
    assert!(r.ping().await, "restarted on the same port");
}

#[test]
fn addresses_outside_10_77_are_refused_before_anything_is_made() {
    assert!(bridge::allowed(Ipv4Addr::new(10, 77, 3, 4)));
    assert!(!bridge::allowed(Ipv4Addr::new(10, 78, 3, 4)));
    assert!(!bridge::allowed(Ipv4Addr::new(192, 168, 1, 1)));
    let prefix = format!("fbt{}o", std::process::id() % 100_000);
    let spec = BridgeSpec {
        switch_ns: format!("{prefix}-sw"),
        bridge: "br0".into(),
        hosts: vec![(format!("{prefix}-a"), Ipv4Addr::new(192, 168, 7, 1))],
        leftovers: Leftovers::Replace,
        quiet_bridge_netfilter: false,
        ipv6_prefix: None,
    };
    let err = Bridged::build(&spec).err().expect("refused");
    assert!(err.to_string().contains("outside 10.77.0.0/16"), "{err}");
    assert!(netns::list(&prefix).is_empty(), "nothing was made");
    // The same for an IPv6 prefix outside fd77::/16 (global unicast here).
    let spec = BridgeSpec {
        hosts: vec![(format!("{prefix}-a"), Ipv4Addr::new(10, 77, 7, 1))],
        ipv6_prefix: Some("2001:db8::".parse().expect("v6")),
        ..spec
    };
    let err = Bridged::build(&spec).err().expect("refused");
    assert!(err.to_string().contains("outside fd77::/16"), "{err}");
    assert!(netns::list(&prefix).is_empty(), "nothing was made");
}

#[test]
fn a_hosts_ipv6_address_ends_in_its_ipv4_last_octet() {
    let prefix: Ipv6Addr = "fd77:50::ff".parse().expect("v6");
    assert_eq!(
        bridge::ipv6_of(prefix, Ipv4Addr::new(10, 77, 50, 2)),
        "fd77:50::2".parse::<Ipv6Addr>().expect("v6")
    );
    assert_eq!(
        bridge::ipv6_of(prefix, Ipv4Addr::new(10, 77, 50, 200)),
        "fd77:50::c8".parse::<Ipv6Addr>().expect("v6")
    );
}

#[test]
fn a_bridged_bed_connects_its_hosts_and_is_gone_after_drop() {
    if !netns::can_run("a_bridged_bed_connects_its_hosts_and_is_gone_after_drop") {
        return;
    }
    let prefix = format!("fbt{}b", std::process::id() % 100_000);
    let spec = BridgeSpec {
        switch_ns: format!("{prefix}-sw"),
        bridge: "br0".into(),
        hosts: vec![
            (format!("{prefix}-a"), Ipv4Addr::new(10, 77, 71, 1)),
            (format!("{prefix}-b"), Ipv4Addr::new(10, 77, 71, 2)),
        ],
        leftovers: Leftovers::Refuse {
            prefix: "fbt-never-",
            hint: "nothing",
        },
        quiet_bridge_netfilter: false,
        ipv6_prefix: Some("fd77:71::".parse().expect("v6")),
    };
    let bed = Bridged::build(&spec).expect("bed");
    let a = format!("{prefix}-a");
    let b = format!("{prefix}-b");
    assert!(bridge::has_addr(&a, "10.77.71.1"));
    assert!(bridge::has_addr(&b, "fd77:71::2"), "b has its IPv6 address");
    assert!(bridge::mac_of(&b).is_ok());
    let listener = netns::spawn_in(&b, || std::net::TcpListener::bind("10.77.71.2:7000"))
        .join()
        .expect("thread in b")
        .expect("listen in b");
    let reached = netns::spawn_in(&a, || {
        let to = std::net::SocketAddr::from(([10, 77, 71, 2], 7000));
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).map(|_| ())
    })
    .join()
    .expect("thread in a");
    assert!(reached.is_ok(), "a reaches b over the bridge: {reached:?}");
    drop(listener);
    let (routes_ok, routes) = netns::exec(&a, &["ip", "route", "show", "default"]);
    assert!(
        routes_ok && routes.trim().is_empty(),
        "no route out: {routes}"
    );
    // A process left running in a host namespace is killed with the bed.
    let sleeper = netns::command_in(&b, "sleep")
        .arg("30")
        .spawn()
        .expect("sleep in b");
    let pid = sleeper.id();
    // Wait until it is in the namespace (`ip netns exec` enters it, then execs `sleep`):
    // before that, nothing in the namespace could be killed.
    let in_b = || {
        std::process::Command::new("ip")
            .args(["netns", "pids", &b])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .any(|p| p == pid.to_string())
            })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !in_b() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(in_b(), "pid {pid} never showed up in {b}");
    assert_eq!(netns::list(&prefix).len(), 3);
    drop(bed);
    assert!(netns::list(&prefix).is_empty(), "every namespace deleted");
    let mut sleeper = sleeper;
    let status = sleeper.wait().expect("reap");
    assert!(!status.success(), "pid {pid} was killed, not left running");
}

/// PING on `port` of 127.0.0.1 inside namespace `ns`, retried for up to `within`.
fn redis_answers_in(ns: &str, port: u16, within: Duration) -> bool {
    netns::spawn_in(ns, move || {
        use std::io::{Read, Write};
        let deadline = Instant::now() + within;
        loop {
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let pong = std::net::TcpStream::connect_timeout(&to, BUDGET).is_ok_and(|mut s| {
                let mut buf = [0u8; 16];
                s.set_read_timeout(Some(BUDGET)).is_ok()
                    && s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
            });
            if pong || Instant::now() >= deadline {
                return pong;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .unwrap_or(false)
}

/// The one redis-server starter inside a namespace (as the chaos suite and the BGP bed run
/// it): it answers there, SIGKILL by its PID silences it, a start brings it back on the
/// same address; the namespace goes on drop and takes a still running server with it.
#[test]
fn redis_in_a_namespace_is_killed_and_restarted_by_pid_and_goes_with_it() {
    if !netns::can_run("redis_in_a_namespace_is_killed_and_restarted_by_pid_and_goes_with_it") {
        return;
    }
    let name = format!("fbt{}r", std::process::id() % 100_000);
    let ns = Namespace::add(&name, true).expect("namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("redis.log");
    let redis = RedisServer::new("127.0.0.1", 6379, dir.path())
        .in_namespace(ns.name())
        .log_to(&log);
    redis.start().expect("start redis-server");
    assert!(
        redis_answers_in(&name, 6379, Duration::from_secs(10)),
        "answers in {name}"
    );
    redis.signal(Signal::SIGKILL).expect("kill by pid");
    assert!(
        redis.signal(Signal::SIGTERM).is_err(),
        "nothing held after SIGKILL"
    );
    assert!(
        !redis_answers_in(&name, 6379, Duration::ZERO),
        "silent once killed"
    );
    redis.start().expect("start again");
    assert!(
        redis_answers_in(&name, 6379, Duration::from_secs(10)),
        "answers again"
    );
    drop(ns);
    assert!(netns::list(&name).is_empty(), "namespace {name} deleted");
    redis.kill();
}
