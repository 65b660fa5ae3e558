//! `[[vip]]` (several VIPs spread over the nodes, issue 18): parsing, `file:line:column`
//! errors, and the node keeping its own list when a replicated config comes in.

mod common;
use common::{assert_at, assert_one, errors, BASE};
use fulcrum_config::{parse, VipTable};

const NODE: &str = "[node]\nid = 1\nadmin = \"127.0.0.1:9901\"\n\n[cluster]\nraft = \"127.0.0.1:7001\"\nsecret_file = \"/tmp/s\"\npeers = [\"1@127.0.0.1:7001\", \"2@127.0.0.1:7002\"]\n\n";

fn vips(entries: &str) -> String {
    format!("{NODE}{entries}\n{BASE}")
}

const TWO: &str = "[[vip]]\nname = \"v1\"\naddress = \"10.0.0.101/24\"\ninterface = \"eth0\"\npreferred = [2]\n\n[[vip]]\naddress = \"10.0.0.102/24\"\ninterface = \"eth0\"\n";

#[test]
fn a_list_of_vips_parses_and_the_single_vip_still_does() {
    let c = parse(&vips(TWO), "t").expect("valid");
    assert!(c.leader_vip().is_none());
    let v = c.spread_vips();
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[0].label(), v[0].preferred.as_slice()),
        ("v1", &[2u64][..])
    );
    assert_eq!(
        (v[1].label(), v[1].ip_text().as_str()),
        ("10.0.0.102/24", "10.0.0.102")
    );
    let one = parse(&vips("[vip]\naddress = \"10.0.0.100/24\"\n"), "t").expect("valid");
    assert!(matches!(one.vip, Some(VipTable::One(_))));
    assert!(one.spread_vips().is_empty());
    // Rendered and parsed back, the list stays a list.
    let again = parse(&c.to_toml().expect("render"), "t").expect("round trip");
    assert_eq!(again.vip, c.vip);
}

#[test]
fn bad_entries_are_refused_where_they_are() {
    let text =
        vips("[[vip]]\naddress = \"10.0.0.101/24\"\n\n[[vip]]\naddress = \"10.0.0.300/24\"\n");
    assert_one(&text, "\"10.0.0.300/24\"", 0, "vip address");
    let text =
        vips("[[vip]]\naddress = \"10.0.0.101/24\"\n\n[[vip]]\naddress = \"10.0.0.101/24\"\n");
    assert_one(&text, "\"10.0.0.101/24\"", 1, "listed twice");
    let text = vips("[[vip]]\naddress = \"10.0.0.101/24\"\npreferred = [1, 7]\n");
    assert_one(&text, "7]", 0, "preferred node 7 is not in cluster.peers");
    let text = vips("[[vip]]\naddress = \"10.0.0.101/24\"\ninterface = \"a/b\"\n");
    assert_one(&text, "\"a/b\"", 0, "not a valid interface name");
    let text = vips("[[vip]]\naddress = \"10.0.0.101/24\"\nlifetime = \"500ms\"\n");
    assert_one(&text, "\"500ms\"", 0, "at least 1s");
    let text = vips("[[vip]]\naddress = \"10.0.0.101/24\"\nfencing = \"strict\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_at(&errs[0], &text, "fencing", 0, "unknown field");
}

#[test]
fn a_node_keeps_its_own_list_over_the_replicated_one() {
    let own = parse(&vips(TWO), "own").expect("valid");
    let other = parse(&vips(&TWO.replace("eth0", "eth9")), "other")
        .expect("valid")
        .without_local()
        .expect("split");
    let merged = other.with_local_from(&own).expect("merge");
    assert_eq!(merged.vip, own.vip, "[[vip]] stays the node's own");
    let mut bare = own.clone();
    bare.vip = None;
    assert_eq!(other.with_local_from(&bare).expect("merge").vip, None);
}
