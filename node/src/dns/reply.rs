//! One DNS request in, one response out, through hickory-proto's message codec: the
//! authoritative answer for A/AAAA (and ANY: both), SOA and NS at the apex, NXDOMAIN with
//! the SOA for unknown names of the zone, REFUSED outside it, NOTIMP for other opcodes,
//! FORMERR for a request with other than one question. Bytes that do not decode as a DNS
//! request get no answer at all (nothing to echo an id to; no amplification).
//!
//! A UDP answer larger than the client can take (512 bytes, or its EDNS size up to 1232)
//! goes out truncated (TC set, no records) so the client retries over TCP.

use super::answer::{lookup, ns_name, Facts, Lookup};
use fulcrum_config::DnsSection;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::IpAddr;

/// The largest UDP answer sent to an EDNS client (the DNS flag day 2020 size).
pub const EDNS_UDP_MAX: u16 = 1232;
/// Without EDNS a UDP answer fits 512 bytes.
const PLAIN_UDP_MAX: usize = 512;

/// How the request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The response to `request`, or `None` when it is not a request worth answering.
pub fn reply(
    request: &[u8],
    transport: Transport,
    dns: &DnsSection,
    facts: &Facts,
) -> Option<Vec<u8>> {
    let req = Message::from_vec(request).ok()?;
    if req.message_type() != MessageType::Query {
        return None;
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired());
    resp.add_queries(req.queries().iter().cloned());
    if let Some(asked) = req.extensions() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_MAX).set_version(0);
        resp.set_edns(edns);
        if asked.version() != 0 {
            resp.set_response_code(ResponseCode::BADVERS);
            return encode(resp, limit(&req, transport));
        }
    }
    match (req.op_code(), req.queries()) {
        (OpCode::Query, [q]) => answer(&mut resp, q, dns, facts),
        (OpCode::Query, _) => {
            resp.set_response_code(ResponseCode::FormErr);
        }
        _ => {
            resp.set_response_code(ResponseCode::NotImp);
        }
    }
    encode(resp, limit(&req, transport))
}

/// Fills `resp` for the one question `q`.
fn answer(resp: &mut Message, q: &Query, dns: &DnsSection, facts: &Facts) {
    if q.query_class() != DNSClass::IN {
        resp.set_response_code(ResponseCode::Refused);
        return;
    }
    let outcome = lookup(dns, facts, &q.name().to_ascii());
    let (Some(zone), Lookup::Found { .. } | Lookup::NxDomain) = (zone_name(dns), &outcome) else {
        resp.set_response_code(ResponseCode::Refused);
        return;
    };
    resp.set_authoritative(true);
    let ttl = u32::try_from(dns.ttl.as_secs()).unwrap_or(u32::MAX);
    let (apex, addresses) = match outcome {
        Lookup::Found { apex, addresses } => (apex, addresses),
        _ => {
            resp.set_response_code(ResponseCode::NXDomain);
            resp.add_name_server(soa(&zone, ttl, facts.serial));
            return;
        }
    };
    let name = q.name().clone();
    let wanted = q.query_type();
    for ip in addresses {
        let rdata = match ip {
            IpAddr::V4(v4) if matches!(wanted, RecordType::A | RecordType::ANY) => RData::A(A(v4)),
            IpAddr::V6(v6) if matches!(wanted, RecordType::AAAA | RecordType::ANY) => {
                RData::AAAA(AAAA(v6))
            }
            _ => continue,
        };
        resp.add_answer(Record::from_rdata(name.clone(), ttl, rdata));
    }
    if apex && matches!(wanted, RecordType::SOA | RecordType::ANY) {
        resp.add_answer(soa(&zone, ttl, facts.serial));
    }
    if apex && matches!(wanted, RecordType::NS | RecordType::ANY) {
        if let Ok(ns) = Name::from_ascii(ns_name(&zone.to_ascii())) {
            resp.add_answer(Record::from_rdata(zone.clone(), ttl, RData::NS(NS(ns))));
        }
    }
    if resp.answers().is_empty() {
        resp.add_name_server(soa(&zone, ttl, facts.serial));
    }
}

/// The zone as an absolute name.
fn zone_name(dns: &DnsSection) -> Option<Name> {
    let mut zone = Name::from_ascii(dns.zone.as_deref()?).ok()?;
    zone.set_fqdn(true);
    Some(zone.to_lowercase())
}

/// The zone's SOA: `ns.<zone>`, `hostmaster.<zone>`, minimum (negative TTL) = `ttl`.
fn soa(zone: &Name, ttl: u32, serial: u32) -> Record {
    let label = |l: &str| {
        Name::from_ascii(l)
            .and_then(|n| n.append_domain(zone))
            .unwrap_or_else(|_| zone.clone())
    };
    let rdata = SOA::new(label("ns"), label("hostmaster"), serial, 60, 10, 600, ttl);
    Record::from_rdata(zone.clone(), ttl, RData::SOA(rdata))
}

/// The most bytes the client takes over `transport`.
fn limit(req: &Message, transport: Transport) -> usize {
    match (transport, req.extensions()) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => usize::from(e.max_payload().clamp(512, EDNS_UDP_MAX)),
        (Transport::Udp, None) => PLAIN_UDP_MAX,
    }
}

/// Encodes `resp`; over `limit` bytes, again without records and with TC set.
fn encode(mut resp: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    resp.take_answers();
    resp.take_name_servers();
    resp.set_truncated(true);
    resp.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::answer::VipFact;

    fn section() -> DnsSection {
        let text = "[dns]\nzone = \"lb.example\"\nttl = \"7s\"\n\
                    [[dns.name]]\nname = \"www\"\nanswer = \"vips\"\n";
        fulcrum_config::parse(text, "t")
            .expect("valid")
            .dns
            .expect("dns")
    }

    fn facts(n: u8) -> Facts {
        Facts {
            vips: (1..=n)
                .map(|i| VipFact {
                    name: None,
                    ip: IpAddr::from([10, 77, 70, i]),
                    up: true,
                })
                .collect(),
            serving_nodes: Default::default(),
            serial: 9,
        }
    }

    fn ask(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
        m.to_vec().expect("encode")
    }

    fn ask_and_read(name: &str, t: RecordType, f: &Facts, via: Transport) -> Message {
        let bytes = reply(&ask(name, t), via, &section(), f).expect("an answer");
        Message::from_vec(&bytes).expect("decodes")
    }

    #[test]
    fn a_records_with_the_ttl_and_the_id_and_aa() {
        let m = ask_and_read("WWW.lb.example.", RecordType::A, &facts(2), Transport::Udp);
        assert_eq!((m.id(), m.authoritative()), (4242, true));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(m.answers().len(), 2);
        assert!(m.answers().iter().all(|r| r.ttl() == 7));
        let m = ask_and_read(
            "www.lb.example.",
            RecordType::AAAA,
            &facts(2),
            Transport::Udp,
        );
        assert!(m.answers().is_empty(), "no IPv6 VIP");
        assert_eq!(m.name_servers().len(), 1, "NODATA carries the SOA");
    }

    #[test]
    fn nxdomain_refused_and_the_apex() {
        let f = facts(1);
        let m = ask_and_read("nope.lb.example.", RecordType::A, &f, Transport::Udp);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);
        let m = ask_and_read("www.example.org.", RecordType::A, &f, Transport::Udp);
        assert_eq!(m.response_code(), ResponseCode::Refused);
        assert!(!m.authoritative());
        let m = ask_and_read("lb.example.", RecordType::SOA, &f, Transport::Udp);
        assert_eq!(m.answers()[0].record_type(), RecordType::SOA);
        let m = ask_and_read("lb.example.", RecordType::NS, &f, Transport::Udp);
        assert_eq!(m.answers()[0].record_type(), RecordType::NS);
    }

    #[test]
    fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
        let many = facts(60);
        let m = ask_and_read("www.lb.example.", RecordType::A, &many, Transport::Udp);
        assert!(m.truncated() && m.answers().is_empty());
        let m = ask_and_read("www.lb.example.", RecordType::A, &many, Transport::Tcp);
        assert!(!m.truncated());
        assert_eq!(m.answers().len(), 60);
    }

    #[test]
    fn garbage_and_responses_get_no_answer() {
        let (d, f) = (section(), facts(1));
        assert_eq!(reply(&[], Transport::Udp, &d, &f), None);
        assert_eq!(reply(&[0xff; 11], Transport::Udp, &d, &f), None);
        let mut resp = Message::from_vec(&ask("www.lb.example.", RecordType::A)).expect("m");
        resp.set_message_type(MessageType::Response);
        let bytes = resp.to_vec().expect("encode");
        assert_eq!(reply(&bytes, Transport::Udp, &d, &f), None);
    }
}
