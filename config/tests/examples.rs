//! The shipped example configs validate, carry the documented defaults, and round-trip.

use fulcrum_config::{load, parse, parse_balancer, AffinityMode, Algorithm, HashKey, Protocol};
use std::path::PathBuf;
use std::time::Duration;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn single_node_example_loads_with_defaults() {
    let c = load(&example("single-node.toml")).unwrap();
    let node = c.node.as_ref().unwrap();
    assert_eq!(node.id, 1);
    assert_eq!(node.admin, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(node.shutdown_grace, Duration::from_secs(30));
    assert!(c.cluster.is_none());
    let l = &c.listener[0];
    assert_eq!(
        (l.protocol, l.bind_addr()),
        (Protocol::Http, Some("127.0.0.1:8080".parse().unwrap()))
    );
    assert_eq!(l.max_header_bytes, 16 * 1024);
    assert_eq!(l.header_read_timeout, Duration::from_secs(10));
    let p = &c.pool[0];
    assert_eq!(p.algorithm, Algorithm::RoundRobin);
    assert_eq!(p.affinity.mode, AffinityMode::None);
    let h = p.health.as_ref().unwrap();
    assert_eq!(
        (h.interval, h.timeout, h.rise, h.fall),
        (Duration::from_secs(2), Duration::from_secs(1), 2, 3)
    );
    assert_eq!(h.status_range(), (200, 399));
    let addrs: Vec<_> = p
        .backends
        .iter()
        .map(|b| (b.socket_addr().unwrap().port(), b.weight))
        .collect();
    assert_eq!(addrs, vec![(9001, 1), (9002, 1)]);
}

#[test]
fn three_node_example_loads() {
    let c = load(&example("three-node-1.toml")).unwrap();
    let cluster = c.cluster.as_ref().unwrap();
    assert_eq!(cluster.peer_list().len(), 3);
    assert_eq!(cluster.heartbeat, Duration::from_millis(5));
    assert_eq!(cluster.lease, Duration::from_millis(20));
    let stat = c.pool.iter().find(|p| p.name == "static").unwrap();
    assert_eq!(stat.hash_key(), Some(HashKey::Path));
    assert_eq!(c.route.len(), 3);
}

#[test]
fn summary_names_the_effective_config() {
    let c = load(&example("three-node-1.toml")).unwrap();
    let s = c.summary();
    for needle in [
        "node 1: admin 127.0.0.1:9901",
        "heartbeat 5ms, election timeout 25ms..50ms, lease 20ms",
        "web http 127.0.0.1:8080",
        "route host shop.example path /api -> pool api",
        "route host * path / -> pool static",
        "api least-request, affinity learn (JSESSIONID)",
        "static consistent-hash on path",
        "backend 127.0.0.1:9101 weight 2",
        "health: http GET /healthz expect 200-399, every 1s, timeout 500ms, rise 2, fall 2",
        "health: tcp connect",
        "-> pool postgres",
    ] {
        assert!(s.contains(needle), "summary lacks `{needle}`:\n{s}");
    }
}

#[test]
fn without_local_keeps_only_cluster_wide_part() {
    let text = std::fs::read_to_string(example("three-node-1.toml")).unwrap();
    let full = parse(&text, "t").unwrap();
    let balancer = parse_balancer(&text, "t").unwrap();
    assert!(balancer.node.is_none() && balancer.cluster.is_none());
    assert_eq!(balancer, full.without_local().unwrap());
    assert_eq!(balancer.pool, full.pool);
    // A balancer-only file (no [node]) is accepted too.
    let rendered = balancer.to_toml().unwrap();
    assert_eq!(parse_balancer(&rendered, "rendered").unwrap(), balancer);
}

#[test]
fn vip_interface_is_local() {
    let text = "[vip]\naddress = \"10.0.0.100/24\"\ninterface = \"eth0\"\n";
    let c = parse(text, "t").unwrap().without_local().unwrap();
    let vip = c.leader_vip().unwrap();
    assert_eq!(vip.interface, None);
    assert_eq!(vip.address, "10.0.0.100/24");
}

#[test]
fn full_config_round_trips_through_toml() {
    let c = load(&example("three-node-1.toml")).unwrap();
    let again = parse(&c.to_toml().unwrap(), "rendered").unwrap();
    assert_eq!(again, c);
}
