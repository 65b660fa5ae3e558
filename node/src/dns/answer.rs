//! What a name of the zone resolves to now: pure rules over the facts the node gathered
//! (`facts.rs`), with no wire format. `reply.rs` turns the outcome into a DNS message.
//!
//! - A name outside the zone (or no zone at all): refused, the cluster is not its authority.
//! - The apex, a `[[dns.name]]`, or `ns.<zone>` (the name server the SOA and NS records
//!   name, answered with the serving nodes unless a `[[dns.name]]` says otherwise): found.
//! - Any other name of the zone: NXDOMAIN.

use fulcrum_config::{normalize_dns_name, DnsAnswer, DnsSection};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// One VIP and whether a live node holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipFact {
    /// `[[vip]]` name, when it has one.
    pub name: Option<String>,
    pub ip: IpAddr,
    pub up: bool,
}

/// The replicated view a reply is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub vips: Vec<VipFact>,
    /// Nodes live and not drained now.
    pub serving_nodes: BTreeSet<u64>,
    /// The SOA serial: the committed config version.
    pub serial: u32,
}

/// The outcome for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not in the zone this cluster is authoritative for.
    Refused,
    /// In the zone, but no such name.
    NxDomain,
    /// The name exists; `addresses` may be empty (then: no data of that type).
    Found { apex: bool, addresses: Vec<IpAddr> },
}

/// The name server's name: `ns.<zone>`.
pub fn ns_name(zone: &str) -> String {
    format!("ns.{}", normalize_dns_name(zone))
}

/// What `qname` (any case, final dot or not) resolves to in `dns` given `facts`.
pub fn lookup(dns: &DnsSection, facts: &Facts, qname: &str) -> Lookup {
    let Some(zone) = dns.zone.as_deref().map(normalize_dns_name) else {
        return Lookup::Refused;
    };
    let qname = normalize_dns_name(qname);
    let in_zone = qname == zone
        || qname
            .strip_suffix(zone.as_str())
            .is_some_and(|head| head.ends_with('.'));
    if !in_zone {
        return Lookup::Refused;
    }
    let apex = qname == zone;
    let configured = dns
        .name
        .iter()
        .find(|n| dns.full_name(&n.name).as_deref() == Some(qname.as_str()));
    let addresses = match configured {
        Some(n) if n.answer == DnsAnswer::Vips => vip_addresses(facts, &n.vips),
        Some(_) => node_addresses(dns, facts),
        None if qname == ns_name(&zone) => node_addresses(dns, facts),
        None if apex => Vec::new(),
        None => return Lookup::NxDomain,
    };
    Lookup::Found { apex, addresses }
}

/// The VIPs up now, limited to `only` (names or addresses) when it is not empty.
fn vip_addresses(facts: &Facts, only: &[String]) -> Vec<IpAddr> {
    facts
        .vips
        .iter()
        .filter(|v| v.up)
        .filter(|v| {
            only.is_empty()
                || only
                    .iter()
                    .any(|o| v.name.as_deref() == Some(o.as_str()) || *o == v.ip.to_string())
        })
        .map(|v| v.ip)
        .collect()
}

/// The addresses of the serving nodes, in node order.
fn node_addresses(dns: &DnsSection, facts: &Facts) -> Vec<IpAddr> {
    dns.node_addresses()
        .into_iter()
        .filter(|(id, _)| facts.serving_nodes.contains(id))
        .flat_map(|(_, ips)| ips.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> DnsSection {
        let text = "[dns]\nzone = \"LB.example.\"\n\
                    [dns.node_addresses]\n1 = [\"10.77.0.11\", \"fd77::11\"]\n2 = [\"10.77.0.12\"]\n\
                    [[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n\
                    [[dns.name]]\nname = \"one\"\nanswer = \"vips\"\nvips = [\"v1\"]\n\
                    [[dns.name]]\nname = \"nodes\"\nanswer = \"nodes\"\n";
        fulcrum_config::parse(text, "t")
            .expect("valid")
            .dns
            .expect("dns")
    }

    fn facts() -> Facts {
        let vip = |name: &str, ip: &str, up| VipFact {
            name: Some(name.into()),
            ip: ip.parse().expect("ip"),
            up,
        };
        Facts {
            vips: vec![
                vip("v1", "10.77.70.101", true),
                vip("v2", "10.77.70.102", false),
            ],
            serving_nodes: [1].into(),
            serial: 3,
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("ip")).collect()
    }

    #[test]
    fn vips_held_now_and_serving_nodes_only() {
        let (d, f) = (section(), facts());
        let found = |addresses| Lookup::Found {
            apex: false,
            addresses,
        };
        assert_eq!(
            lookup(&d, &f, "WWW.lb.example."),
            found(ips(&["10.77.70.101"]))
        );
        assert_eq!(
            lookup(&d, &f, "one.lb.example"),
            found(ips(&["10.77.70.101"]))
        );
        let nodes = ips(&["10.77.0.11", "fd77::11"]);
        assert_eq!(lookup(&d, &f, "nodes.lb.example"), found(nodes.clone()));
        assert_eq!(lookup(&d, &f, "ns.lb.example"), found(nodes));
    }

    #[test]
    fn unknown_names_outside_names_and_the_apex() {
        let (d, f) = (section(), facts());
        assert_eq!(lookup(&d, &f, "nope.lb.example"), Lookup::NxDomain);
        assert_eq!(lookup(&d, &f, "a.www.lb.example"), Lookup::NxDomain);
        assert_eq!(lookup(&d, &f, "example"), Lookup::Refused);
        assert_eq!(lookup(&d, &f, "xlb.example"), Lookup::Refused);
        assert_eq!(lookup(&d, &f, "www.other.org"), Lookup::Refused);
        let apex = Lookup::Found {
            apex: true,
            addresses: Vec::new(),
        };
        assert_eq!(lookup(&d, &f, "lb.example."), apex);
        let mut no_zone = d.clone();
        no_zone.zone = None;
        assert_eq!(lookup(&no_zone, &f, "www.lb.example"), Lookup::Refused);
    }
}
