//! Backends from DNS (issue 25 item 1), end to end: a real PowerDNS server (bind backend)
//! serves `_http._tcp.app.test` SRV records naming real backends; three real fulcrum
//! nodes whose pool says `discover = { dns, type = "srv", resolvers }`. The test edits
//! the zone and reloads it, and checks through every node's `/status` and real requests:
//! - a backend in DNS but failing its health check is listed and gets no request; once
//!   healthy it does;
//! - how long a new healthy backend takes from its record to its first request (printed);
//! - a backend whose record goes away is drained on every node (its slow requests in
//!   flight finish with 200) and leaves after `drain`;
//! - with the DNS server stopped, the last set stays, the failure shows in `/status` and
//!   `/metrics`, and requests keep being served.

use fulcrum_testbed::pdns::TestPowerDns;
use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{fresh_client, get, get_status, keepalive_client};
use fulcrum_tests::cluster::LocalCluster;
use fulcrum_tests::free_port;
use std::time::{Duration, Instant};

const ZONE: &str = "app.test";

/// SRV records (TTL 1 s) for `backends`, each behind its own host name.
fn records(backends: &[&TestBackend]) -> String {
    backends
        .iter()
        .map(|b| {
            let host = b.name();
            format!(
                "_http._tcp 1 IN SRV 0 10 {} {host}.{ZONE}.\n{host} 1 IN A 127.0.0.1\n",
                b.addr.port()
            )
        })
        .collect()
}

fn pool_lines(resolver: &str) -> String {
    format!(
        "health = {{ kind = \"http\", path = \"/healthz\", interval = \"300ms\", timeout = \"250ms\", rise = 2, fall = 2 }}\n\
         discover = {{ dns = \"_http._tcp.{ZONE}\", type = \"srv\", resolvers = [\"{resolver}\"], min_ttl = \"500ms\", max_ttl = \"2s\", timeout = \"500ms\", drain = \"4s\" }}\n"
    )
}

/// The backend `addr` of pool `app` in one node's `/status`, if listed.
async fn listed(admin: &str, addr: &str) -> Option<serde_json::Value> {
    let status = get_status(admin).await?;
    let backends = status["pools"][0]["backends"].as_array()?.clone();
    backends.into_iter().find(|b| b["addr"] == addr)
}

/// Waits (up to `within`) until `check` holds for backend `addr` on every node.
async fn on_every_node(
    cluster: &LocalCluster,
    addr: &str,
    within: Duration,
    check: impl Fn(Option<&serde_json::Value>) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut all = true;
        for m in &cluster.members {
            all &= check(listed(&m.admin, addr).await.as_ref());
        }
        if all {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits (up to `within`) until backend `addr` has `key` = `value` on every node.
async fn everywhere(
    cluster: &LocalCluster,
    addr: &str,
    key: &str,
    value: bool,
    within: Duration,
) -> bool {
    on_every_node(cluster, addr, within, |b| {
        b.is_some_and(|b| b[key] == value)
    })
    .await
}

/// `n` requests through node 1, one every 20 ms: the backends that answered (200 only).
async fn spread(cluster: &LocalCluster, n: usize) -> Vec<String> {
    let client = keepalive_client();
    let mut seen = Vec::new();
    for _ in 0..n {
        let reply = get(&client, &cluster.members[0].url("/"), &[]).await;
        match reply {
            Ok(r) if r.status == 200 => seen.push(r.backend.unwrap_or_default()),
            Ok(r) => panic!("status {} from the pool: {}", r.status, r.body),
            Err(e) => panic!("request failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_follow_their_dns_records() {
    let a = TestBackend::start("a").await;
    let mut dns = TestPowerDns::start(ZONE, &records(&[&a])).await;
    let cluster = LocalCluster::start_pool(3, free_port(), &pool_lines(&dns.addr())).await;
    cluster.wait_settled().await;
    let a_addr = a.addr.to_string();
    assert!(
        everywhere(&cluster, &a_addr, "healthy", true, Duration::from_secs(15)).await,
        "a, found in DNS and passing its checks, is healthy on every node\n{}",
        cluster.log(0)
    );
    assert!(spread(&cluster, 5).await.iter().all(|b| b == "a"));

    // b enters DNS failing its check: listed everywhere, no request for it.
    let b = TestBackend::start("b").await;
    b.set_healthy(false);
    dns.set_records(&records(&[&a, &b]));
    let b_addr = b.addr.to_string();
    assert!(
        everywhere(&cluster, &b_addr, "healthy", false, Duration::from_secs(10)).await,
        "b is discovered by every node, not healthy"
    );
    let checked_before = b.health_checks();
    let seen = spread(&cluster, 50).await;
    assert!(seen.iter().all(|s| s == "a"), "only a serves: {seen:?}");
    assert_eq!(b.requests(), 0, "an unchecked backend got a request");
    assert!(b.health_checks() > checked_before, "b is being checked");

    // Healthy: it joins.
    b.set_healthy(true);
    assert!(
        everywhere(&cluster, &b_addr, "healthy", true, Duration::from_secs(10)).await,
        "b turns healthy once its checks pass"
    );
    let seen = spread(&cluster, 20).await;
    assert!(
        seen.iter().any(|s| s == "b") && seen.iter().any(|s| s == "a"),
        "{seen:?}"
    );

    // From a new record to the first request: c is healthy from the start.
    let c = TestBackend::start("c").await;
    let client = keepalive_client();
    let published = Instant::now();
    dns.set_records(&records(&[&a, &b, &c]));
    let deadline = published + Duration::from_secs(15);
    while c.requests() == 0 && Instant::now() < deadline {
        let _ = get(&client, &cluster.members[0].url("/"), &[]).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = published.elapsed();
    assert!(c.requests() > 0, "c never got a request");
    println!("DNS record to first request: {} ms", took.as_millis());

    // a's record goes: drained on every node, its slow requests in flight finish.
    let slow: Vec<_> = (0..6)
        .map(|_| {
            let url = cluster.members[0].url("/slow?ms=2500");
            tokio::spawn(async move { get(&fresh_client(), &url, &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_busy = a.requests();
    dns.set_records(&records(&[&b, &c]));
    assert!(
        everywhere(&cluster, &a_addr, "drained", true, Duration::from_secs(5)).await,
        "a is drained on every node once its record is gone"
    );
    let seen = spread(&cluster, 20).await;
    assert!(
        seen.iter().all(|s| s != "a"),
        "a drained gets no new request: {seen:?}"
    );
    let mut finished_on_a = 0;
    for task in slow {
        let reply = task.await.expect("join").expect("slow request");
        assert_eq!(reply.status, 200, "a request in flight was cut");
        finished_on_a += usize::from(reply.backend.as_deref() == Some("a"));
    }
    assert!(
        finished_on_a > 0 && a.requests() == a_busy,
        "slow requests on a: {finished_on_a}"
    );
    assert!(
        on_every_node(&cluster, &a_addr, Duration::from_secs(8), |b| b.is_none()).await,
        "a leaves the pool after its drain"
    );

    // The DNS server stops: the set stays, the failure shows, requests are served.
    dns.stop();
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(5))
        .await
        .expect("leader");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut error = String::new();
    while error.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = get_status(&cluster.members[leader].admin)
            .await
            .unwrap_or_default();
        error = status["pools"][0]["discovery"]["error"]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    assert!(!error.is_empty(), "the failing resolver shows in /status");
    println!("resolver down: {error}");
    let metrics = get(
        &fresh_client(),
        &format!("http://{}/metrics", cluster.members[0].admin),
        &[],
    )
    .await
    .expect("metrics");
    assert!(
        metrics
            .body
            .contains("fulcrum_discovery_failing{pool=\"app\"} 1"),
        "fulcrum_discovery_failing on every node"
    );
    // Longer than max_ttl: several failed lookups, the set unchanged.
    let seen = spread(&cluster, 150).await;
    assert!(
        seen.iter().any(|s| s == "b") && seen.iter().any(|s| s == "c"),
        "{seen:?}"
    );
    for addr in [&b_addr, &c.addr.to_string()] {
        assert!(
            on_every_node(&cluster, addr, Duration::from_secs(1), |b| {
                b.is_some_and(|b| b["healthy"] == true && b["drained"] == false)
            })
            .await,
            "{addr} stays in rotation while DNS is down"
        );
    }
}
