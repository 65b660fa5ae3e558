//! Rejections in the singleton sections: `[node]`, `[cluster]`, `[vip]`, `[session]`.

mod common;
use common::{assert_at, assert_one, errors, BASE};
use fulcrum_config::parse;

const NODE: &str = "[node]\nid = 1\nadmin = \"127.0.0.1:9901\"\n\n";

fn cluster(body: &str) -> String {
    format!("{NODE}[cluster]\nraft = \"127.0.0.1:7001\"\nsecret_file = \"/tmp/s\"\n{body}\n{BASE}")
}

const PEERS: &str = "peers = [\"1@127.0.0.1:7001\", \"2@127.0.0.1:7002\", \"3@127.0.0.1:7003\"]";

#[test]
fn valid_cluster_and_typed_peers() {
    let config = parse(&cluster(PEERS), "t").unwrap();
    let peers = config.cluster.unwrap().peer_list();
    assert_eq!(peers.len(), 3);
    assert_eq!(peers[1], (2, "127.0.0.1:7002".parse().unwrap()));
}

#[test]
fn peer_syntax() {
    let text = cluster("peers = [\"1@127.0.0.1:7001\", \"127.0.0.1:7002\"]");
    assert_one(&text, "\"127.0.0.1:7002\"", 0, "must be ID@HOST:PORT");
    let text = cluster("peers = [\"1@127.0.0.1:7001\", \"two@127.0.0.1:7002\"]");
    assert_one(&text, "\"two@", 0, "not an unsigned integer");
    let text = cluster("peers = [\"1@127.0.0.1:7001\", \"2@node2:7002\"]");
    assert_one(&text, "\"2@node2", 0, "IP:PORT");
}

#[test]
fn peer_ids_unique() {
    let text = cluster("peers = [\"1@127.0.0.1:7001\", \"1@127.0.0.1:7002\"]");
    assert_one(
        &text,
        "\"1@127.0.0.1:7002\"",
        0,
        "peer id 1 is listed twice",
    );
}

#[test]
fn peer_ids_start_at_one() {
    let text = cluster("peers = [\"1@127.0.0.1:7001\", \"0@127.0.0.1:7000\"]");
    assert_one(&text, "\"0@", 0, "peer ids start at 1");
}

#[test]
fn peers_must_include_this_node() {
    let text = cluster("peers = [\"2@127.0.0.1:7002\", \"3@127.0.0.1:7003\"]");
    assert_one(&text, "[\"2@", 0, "must include this node (node.id = 1)");
}

#[test]
fn raft_address_must_match_own_peer_entry() {
    let text = cluster("peers = [\"1@127.0.0.1:7009\"]");
    assert_one(
        &text,
        "\"127.0.0.1:7001\"",
        0,
        "differs from this node's peer entry",
    );
}

#[test]
fn heartbeat_below_election_timeout() {
    let text = cluster(&format!("{PEERS}\nheartbeat = \"150ms\""));
    assert_one(
        &text,
        "\"150ms\"",
        0,
        "heartbeat 150ms must be shorter than election_timeout_min",
    );
}

#[test]
fn election_min_below_max() {
    let text = cluster(&format!("{PEERS}\nelection_timeout_min = \"300ms\"\nelection_timeout_max = \"300ms\"\nlease = \"200ms\""));
    assert_one(
        &text,
        "\"300ms\"",
        1,
        "must be longer than election_timeout_min",
    );
}

#[test]
fn lease_below_election_timeout() {
    let text = cluster(&format!("{PEERS}\nlease = \"150ms\""));
    assert_one(
        &text,
        "\"150ms\"",
        0,
        "or two nodes could both hold the VIP",
    );
}

#[test]
fn vip_lifetime_is_whole_seconds() {
    let text = format!("[vip]\naddress = \"10.0.0.100/24\"\nlifetime = \"1100ms\"\n{BASE}");
    assert_one(
        &text,
        "\"1100ms\"",
        0,
        "lifetime 1s 100ms must be a whole number of seconds",
    );
    let text = format!("[vip]\naddress = \"10.0.0.100/24\"\nlifetime = \"3s\"\n{BASE}");
    assert!(parse(&text, "t").is_ok());
}

#[test]
fn vip_address_needs_valid_prefix() {
    let text = format!("[vip]\naddress = \"10.0.0.100/33\"\n{BASE}");
    assert_one(&text, "\"10.0.0.100/33\"", 0, "prefix length");
    let text = format!("[vip]\naddress = \"10.0.0.100\"\n{BASE}");
    assert_one(&text, "\"10.0.0.100\"", 0, "needs a prefix length");
    let text = format!("[vip]\naddress = \"fd00::100/64\"\n{BASE}");
    let config = parse(&text, "t").unwrap();
    assert_eq!(
        config.leader_vip().unwrap().addr_prefix(),
        Some(("fd00::100".parse().unwrap(), 64))
    );
}

#[test]
fn sentinels_need_master_name() {
    let text = format!("[session]\nsentinels = [\"127.0.0.1:26379\"]\n{BASE}");
    assert_one(&text, "[\"127", 0, "master_name");
}

#[test]
fn redis_url_scheme() {
    let text = format!("[session]\nredis = \"127.0.0.1:6379\"\n{BASE}");
    assert_one(&text, "\"127.0.0.1:6379\"", 0, "or redis+cluster:// URL");
}

#[test]
fn redis_cluster_url_and_fallback_cookie() {
    let text = format!(
        "[session]\nredis = \"redis+cluster://127.0.0.1:7000,127.0.0.1:7001\"\n\
         fallback_keys = [\"/etc/fulcrum/pin.key\", \"/etc/fulcrum/pin.old\"]\n{BASE}"
    );
    let s = parse(&text, "t").unwrap().session.unwrap();
    assert_eq!(s.fallback_cookie, "fulcrum_pin");
    assert_eq!(s.fallback_keys.len(), 2);
    let off = format!("[session]\nredis = \"redis://h:1\"\nfallback_cookie = \"\"\n{BASE}");
    assert_eq!(
        parse(&off, "t").unwrap().session.unwrap().fallback_cookie,
        ""
    );
}

#[test]
fn fallback_cookie_name_and_keys_are_checked() {
    let text = format!("[session]\nredis = \"redis://h:1\"\nfallback_cookie = \"pin;x\"\n{BASE}");
    assert_one(&text, "\"pin;x\"", 0, "cookie name");
    let text =
        format!("[session]\nredis = \"redis://h:1\"\nfallback_keys = [\"/k\", \"\"]\n{BASE}");
    assert_one(&text, "\"\"]", 0, "empty file path");
}

#[test]
fn several_cluster_errors_all_reported_in_file_order() {
    let text = cluster(
        "lease = \"200ms\"\npeers = [\"1@127.0.0.1:7001\", \"x\"]\nelection_timeout_min = \"150ms\"\nelection_timeout_max = \"100ms\"",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_at(
        &errs[0],
        &text,
        "\"200ms\"",
        0,
        "lease 200ms must be shorter than election_timeout_min 150ms",
    );
    assert_at(&errs[1], &text, "\"x\"", 0, "must be ID@HOST:PORT");
    assert_at(
        &errs[2],
        &text,
        "\"100ms\"",
        0,
        "election_timeout_max 100ms",
    );
}

#[test]
fn missing_lease_error_points_at_cluster_header() {
    // `lease` left out (default 20ms) but heartbeat raised to it.
    let text = cluster(&format!("{PEERS}\nheartbeat = \"20ms\""));
    assert_one(
        &text,
        "[cluster]",
        0,
        "lease 20ms must be longer than heartbeat 20ms",
    );
}

#[test]
fn peer_addresses_unique() {
    let text = cluster("peers = [\"1@127.0.0.1:7001\", \"2@127.0.0.1:7001\"]");
    assert_one(&text, "\"2@127.0.0.1:7001\"", 0, "already used by node 1");
}

#[test]
fn vip_lifetime_and_interface() {
    let text = format!("[vip]\naddress = \"10.0.0.1/24\"\ninterface = \"a very long name\"\nlifetime = \"500ms\"\n{BASE}");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_at(&errs[0], &text, "\"a very", 0, "not a valid interface name");
    assert_at(&errs[1], &text, "\"500ms\"", 0, "at least 1s");
}

#[test]
fn peer_tls_needs_ca_cert_and_key_and_errors_can_be_located_there() {
    let ok = cluster(&format!(
        "{PEERS}\ntls = {{ ca = \"/etc/ca.pem\", cert = \"/etc/n1.pem\", key = \"/etc/n1.key\" }}"
    ));
    let config = parse(&ok, "t").unwrap();
    let tls = config.cluster.unwrap().tls.unwrap();
    assert_eq!(tls.key, std::path::PathBuf::from("/etc/n1.key"));
    // A problem found later (the node reading the files) points at the key's value.
    let err = fulcrum_config::error_at(&ok, "t", &["cluster", "tls", "key"], "bad key");
    let (line, column) = common::locate(&ok, "\"/etc/n1.key\"", 0);
    assert_eq!((err.line, err.column), (line, column), "{err}");

    let text = cluster(&format!(
        "{PEERS}\ntls = {{ ca = \"/etc/ca.pem\", cert = \"/etc/n1.pem\" }}"
    ));
    assert_one(&text, "{ ca", 0, "missing field `key`");
}
