//! `[dns]`: defaults, the checks of zone, names, TTL and node ids (each error at its
//! `file:line:column`), and the split: `bind` node-local, the rest cluster-wide.

use fulcrum_config::{parse, scope_of, DnsAnswer, Scope};
use std::time::Duration;

mod common;
use common::{assert_one, BASE};

fn dns(body: &str) -> String {
    format!("[dns]\nbind = \"127.0.0.1:5353\"\nzone = \"lb.example.\"\n{body}\n{BASE}")
}

#[test]
fn names_of_both_kinds_with_the_default_ttl() {
    let text = dns(
        "[dns.node_addresses]\n1 = [\"10.77.0.11\", \"fd77::11\"]\n\n\
         [[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n\n\
         [[dns.name]]\nname = \"@\"\nanswer = \"nodes\"\n",
    );
    let d = parse(&text, "t").expect("valid").dns.expect("dns");
    assert_eq!(d.ttl, Duration::from_secs(5));
    assert_eq!(d.name[0].answer, DnsAnswer::Vips);
    assert_eq!(d.full_name("www").as_deref(), Some("www.lb.example"));
    assert_eq!(d.full_name("@").as_deref(), Some("lb.example"));
    assert_eq!(d.node_addresses().get(&1).map(|a| a.len()), Some(2));
}

#[test]
fn bad_names_ttls_and_ids_are_refused_where_they_are() {
    let text = dns("[[dns.name]]\nname = \"-bad\"\nanswer = \"vips\"\n");
    assert_one(&text, "\"-bad\"", 0, "label `-bad`");
    let text = dns("ttl = \"0s\"\n");
    assert_one(&text, "\"0s\"", 0, "ttl must be whole seconds");
    let text = dns("ttl = \"2h\"\n");
    assert_one(&text, "\"2h\"", 0, "from 1s to 1h");
    let text = dns("[dns.node_addresses]\none = [\"10.77.0.11\"]\n");
    assert_one(&text, "[\"10.77.0.11\"]", 0, "is not a node id");
    let twice = "[[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n\n\
                 [[dns.name]]\nname = \"WWW\"\nanswer = \"nodes\"\n";
    assert_one(&dns(twice), "\"WWW\"", 0, "listed twice");
    let text = dns("[[dns.name]]\nname = \"n\"\nanswer = \"nodes\"\nvips = [\"v1\"]\n");
    assert_one(&text, "[\"v1\"]", 0, "answer = \"vips\" only");
    let text = dns("[[dns.name]]\nname = \"n\"\nanswer = \"cname\"\n");
    assert!(parse(&text, "t").is_err(), "unknown answer kind accepted");
}

#[test]
fn a_name_without_a_zone_is_refused() {
    let text = format!("[dns]\n[[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n{BASE}");
    assert_one(&text, "[[dns.name]]", 0, "needs `zone`");
}

#[test]
fn a_vip_subset_names_a_vip_of_the_file() {
    let vips = "[[vip]]\nname = \"v1\"\naddress = \"10.77.70.101/24\"\ninterface = \"eth0\"\n\n";
    let ok = format!(
        "{vips}{}",
        dns("[[dns.name]]\nname = \"a\"\nanswer = \"vips\"\nvips = [\"v1\", \"10.77.70.101\"]\n")
    );
    assert!(parse(&ok, "t").is_ok());
    let bad = format!(
        "{vips}{}",
        dns("[[dns.name]]\nname = \"a\"\nanswer = \"vips\"\nvips = [\"v9\"]\n")
    );
    assert_one(&bad, "\"v9\"", 0, "neither the name nor the address");
}

#[test]
fn bind_is_the_nodes_own_and_the_rest_is_replicated() {
    assert_eq!(scope_of("dns.bind"), Some(Scope::Local));
    assert_eq!(scope_of("dns.name"), Some(Scope::Cluster));
    let text = dns("[[dns.name]]\nname = \"www\"\nanswer = \"nodes\"\n");
    let config = parse(&text, "t").expect("valid");
    let shared = config
        .without_local()
        .expect("split")
        .dns
        .expect("dns kept");
    assert_eq!(shared.bind, None, "bind must not be replicated");
    assert_eq!(shared.name.len(), 1);
    let own = parse(&dns(""), "own").expect("valid");
    let merged = config.without_local().expect("split");
    let back = merged
        .with_local_from(&own)
        .expect("merge")
        .dns
        .expect("dns");
    assert_eq!(back.bind, Some("127.0.0.1:5353".parse().expect("addr")));
    assert_eq!(back.name.len(), 1);
}

#[test]
fn summary_names_the_listener_and_its_names() {
    let text = dns("[[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n");
    let s = parse(&text, "t").expect("valid").summary();
    assert!(
        s.contains("dns: 127.0.0.1:5353 (udp+tcp), zone lb.example., ttl 5s"),
        "{s}"
    );
    assert!(s.contains("dns name www.lb.example: Vips"), "{s}");
}
