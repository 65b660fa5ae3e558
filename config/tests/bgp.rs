//! `[bgp]`: host prefixes only, a usable protocol stem, the defaults, node-local scope.

use fulcrum_config::{parse, scope_of, Scope};

mod common;
use common::{assert_one, BASE};

fn bgp(body: &str) -> String {
    format!("[bgp]\nfragment = \"/tmp/f.conf\"\n{body}\n{BASE}")
}

#[test]
fn host_prefixes_of_both_families_with_defaults() {
    let text = bgp("prefixes = [\"10.77.9.1/32\", \"fd77::1/128\", \"10.77.9.2\"]");
    let config = parse(&text, "t").expect("valid");
    let b = config.bgp.expect("bgp");
    assert_eq!(b.prefixes.len(), 3);
    assert_eq!(b.protocol, "fulcrum");
    assert_eq!(b.socket.to_str(), Some("/run/bird/bird.ctl"));
    assert_eq!(b.quorum_grace, std::time::Duration::from_secs(1));
    assert_eq!(b.withdraw_wait, std::time::Duration::from_secs(2));
}

#[test]
fn only_host_routes_are_announced() {
    let text = bgp("prefixes = [\"10.77.9.1/32\", \"10.77.9.0/24\"]");
    assert_one(&text, "\"10.77.9.0/24\"", 0, "is not a host route");
    let text = bgp("prefixes = [\"fd77::/64\"]");
    assert_one(&text, "\"fd77::/64\"", 0, "is not a host route");
    let text = bgp("prefixes = [\"10.77.9.300/32\"]");
    assert_one(&text, "\"10.77.9.300/32\"", 0, "");
    let text = bgp("prefixes = []");
    assert_one(&text, "[]", 0, "at least one service address");
}

#[test]
fn protocol_stem_fits_bird_and_interface_names() {
    let text = bgp("prefixes = [\"10.77.9.1/32\"]\nprotocol = \"9lives\"");
    assert_one(&text, "\"9lives\"", 0, "protocol must be a letter");
    let text = bgp("prefixes = [\"10.77.9.1/32\"]\nprotocol = \"a_very_long_name\"");
    assert_one(&text, "\"a_very_long_name\"", 0, "at most 14");
    let text = bgp("prefixes = [\"10.77.9.1/32\"]\nprotocol = \"lb_01\"");
    assert!(parse(&text, "t").is_ok());
}

#[test]
fn bgp_is_node_local() {
    assert_eq!(scope_of("bgp.prefixes"), Some(Scope::Local));
    let text = bgp("prefixes = [\"10.77.9.1/32\"]");
    let config = parse(&text, "t").expect("valid");
    let shared = config.without_local().expect("split");
    assert!(shared.bgp.is_none(), "[bgp] must not be replicated");
}

#[test]
fn summary_names_what_is_announced() {
    let text = bgp("prefixes = [\"10.77.9.1/32\", \"fd77::1/128\"]");
    let s = parse(&text, "t").expect("valid").summary();
    assert!(
        s.contains("bgp: announce 10.77.9.1/32, fd77::1/128 through BIRD (/run/bird/bird.ctl, fragment /tmp/f.conf)"),
        "{s}"
    );
}
