//! Who ANSWERS for the VIP, seen on the wire from the client's namespace (`fch-cl`).
//!
//! Each sample, over one AF_PACKET socket on the client's `eth0`:
//! - a broadcast ARP request "who has VIP", every reply collected within a short window
//!   (each replying MAC mapped to its node; an unknown MAC is a stranger);
//! - per node, a TCP SYN to VIP:80 in an Ethernet frame sent to that node's MAC; a node
//!   whose kernel accepts packets for the VIP answers SYN-ACK (listener) or RST. A SYN-ACK
//!   is torn down at once with a RST so no half-open connection piles up.
//!
//! The probe speaks from its own address and MAC (`Layout::probe_ip`, [`PROBE_MAC`], a
//! locally administered one): replies to it are "other host" frames to the client's
//! kernel, so the probe never touches the client's neighbour entry for the VIP (the load's
//! ARP state) nor opens sockets there. Every node has a permanent neighbour entry for the
//! probe address (the test bed sets it), so a node answers even without asking ARP first.
//! Traffic: one ARP request and three SYNs per sample, inside the test bed's bridge only.
//!
//! Every answer is matched to the sample that asked: a SYN-ACK or RST by its port (each
//! sample and node has its own source port), an ARP reply by the address it is sent to.
//! The request's sender hardware address is a MAC of that sample's own ([`round_mac`]), and
//! a kernel replies to the sender hardware address. Without that, an old holder's reply to
//! the previous sample's request, sent while it still held and delivered after the drain,
//! counted in the next sample beside its successor's (at 2 ms dense sampling the window is
//! 1.5 ms): two holders on the wire that never held at once.

use crate::checks::{AnswerKind, WireAnswer, WireSample};
use crate::poller::Probe;
use anyhow::{anyhow, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{ErrorKind, Read};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The probe's own MAC (locally administered; "fc" for fulcrum chaos).
pub const PROBE_MAC: [u8; 6] = [0x02, 0xfc, 0x00, 0x00, 0x00, 0x03];
const BROADCAST: [u8; 6] = [0xff; 6];
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// How long replies are collected per sample, at most (less when sampling densely).
const WINDOW: Duration = Duration::from_millis(5);
/// The port probed on the VIP (the test bed's listener).
const VIP_PORT: u16 = 80;
/// Source ports cycle through this range, one per node per sample.
const SPORT_BASE: u16 = 40_000;
const SPORT_SPAN: u16 = 20_000;

pub struct WireProbe {
    socket: Socket,
    ifindex: u32,
    probe_ip: Ipv4Addr,
    vip: Ipv4Addr,
    node_macs: Vec<[u8; 6]>,
    round: u16,
}

impl WireProbe {
    /// Opens the socket on `iface` of the calling thread's namespace.
    pub fn new(
        iface: &str,
        probe_ip: Ipv4Addr,
        vip: Ipv4Addr,
        node_macs: Vec<[u8; 6]>,
    ) -> Result<WireProbe> {
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .with_context(|| format!("no interface {iface} for the wire probe"))?;
        let proto = Protocol::from(i32::from(ETH_P_ALL.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(proto))
            .context("AF_PACKET socket for the wire probe (needs CAP_NET_RAW)")?;
        let addr =
            fulcrum_vip::link_address(ifindex, ETH_P_ALL, [0; 6]).context("wire probe address")?;
        socket.bind(&addr).context("binding the wire probe")?;
        Ok(WireProbe {
            socket,
            ifindex,
            probe_ip,
            vip,
            node_macs,
            round: 0,
        })
    }

    fn send(&self, dst: [u8; 6], ethertype: u16, frame: &[u8]) -> Result<()> {
        let addr = fulcrum_vip::link_address(self.ifindex, ethertype, dst)?;
        let sent = self.socket.send_to(frame, &addr)?;
        if sent != frame.len() {
            return Err(anyhow!("short send: {sent} of {} bytes", frame.len()));
        }
        Ok(())
    }

    /// Frames left over from earlier samples (and the load's traffic) are dropped.
    fn drain(&self) {
        let _ = self.socket.set_nonblocking(true);
        let mut buf = [0u8; 2048];
        while (&self.socket).read(&mut buf).is_ok() {}
        let _ = self.socket.set_nonblocking(false);
    }

    fn sport(&self, node: usize) -> u16 {
        let slot = (u32::from(self.round) * self.node_macs.len() as u32 + node as u32)
            % u32::from(SPORT_SPAN);
        SPORT_BASE + slot as u16
    }

    /// Sends the ARP request and each node's SYN; returns when each SYN left, µs after
    /// `sent`.
    fn send_all(&self, sent: Instant) -> Result<Vec<u32>> {
        let request = arp_request(self.probe_ip, self.vip, round_mac(self.round));
        self.send(BROADCAST, ETH_P_ARP, &request)?;
        let mut syn_sent = Vec::with_capacity(self.node_macs.len());
        for (i, mac) in self.node_macs.iter().enumerate() {
            let seg = Segment {
                src: self.probe_ip,
                dst: self.vip,
                sport: self.sport(i),
                dport: VIP_PORT,
                seq: u32::from(self.round) << 8,
                ack: 0,
                flags: TCP_SYN,
            };
            self.send(*mac, ETH_P_IP, &seg.frame(*mac))?;
            syn_sent.push(micros_since(sent));
        }
        Ok(syn_sent)
    }

    /// Collects replies until the window closes (`sent`: when the first frame went out).
    fn collect(&self, sample: &mut WireSample, period: Duration, sent: Instant) {
        let window = WINDOW.min(period.mul_f64(0.75));
        let deadline = sent + window;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let _ = self.socket.set_read_timeout(Some(left));
            match (&self.socket).read(&mut buf) {
                Ok(n) => self.record(&buf[..n], sample, micros_since(sent)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Timed out (or the socket failed): the window is over.
                Err(_) => return,
            }
        }
    }

    fn record(&self, frame: &[u8], sample: &mut WireSample, after_us: u32) {
        let mut answer = |node: usize, kind: AnswerKind| {
            sample.answers.push(WireAnswer {
                node,
                kind,
                after_us,
            })
        };
        match parse(frame, self.vip, self.probe_ip, round_mac(self.round)) {
            Some(Reply::Arp { from }) => match self.node_of(from) {
                Some(i) => {
                    answer(i, AnswerKind::Arp);
                    sample.arp[i] = true
                }
                None => {
                    answer(usize::MAX, AnswerKind::Arp);
                    sample.strangers += 1
                }
            },
            Some(Reply::Tcp { from, seg }) => {
                let Some(i) = self.node_of(from) else { return };
                if seg.dport != self.sport(i) {
                    return;
                }
                let synack = seg.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK;
                answer(
                    i,
                    if synack {
                        AnswerKind::SynAck
                    } else {
                        AnswerKind::Rst
                    },
                );
                sample.tcp[i] = true;
                if synack {
                    // Tear the half-open connection down on the node.
                    let rst = Segment {
                        src: self.probe_ip,
                        dst: self.vip,
                        sport: seg.dport,
                        dport: seg.sport,
                        seq: seg.ack,
                        ack: 0,
                        flags: TCP_RST,
                    };
                    let _ = self.send(from, ETH_P_IP, &rst.frame(from));
                }
            }
            None => {}
        }
    }

    fn node_of(&self, mac: [u8; 6]) -> Option<usize> {
        self.node_macs.iter().position(|m| *m == mac)
    }
}

impl Probe for WireProbe {
    type Sample = WireSample;
    fn probe(&mut self, t_ms: f64, period: Duration) -> WireSample {
        self.round = self.round.wrapping_add(1);
        let n = self.node_macs.len();
        let mut sample = WireSample {
            t_ms,
            arp: vec![false; n],
            tcp: vec![false; n],
            strangers: 0,
            failed: false,
            answers: Vec::new(),
            syn_sent_us: Vec::new(),
        };
        self.drain();
        let sent = Instant::now();
        match self.send_all(sent) {
            Ok(syn_sent) => sample.syn_sent_us = syn_sent,
            Err(_) => {
                sample.failed = true;
                return sample;
            }
        }
        self.collect(&mut sample, period, sent);
        sample
    }
}

/// Microseconds since `t`, saturating.
fn micros_since(t: Instant) -> u32 {
    t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// The sender hardware address of sample `round`'s ARP request: replies come to it
/// (locally administered, never a real host's; the bridge floods them to the probe).
fn round_mac(round: u16) -> [u8; 6] {
    let [hi, lo] = round.to_be_bytes();
    [0x02, 0xfc, 0x01, 0x00, hi, lo]
}

/// An ARP "who has `vip`, tell `probe_ip` at `reply_to`" from the probe's MAC, to
/// broadcast.
fn arp_request(probe_ip: Ipv4Addr, vip: Ipv4Addr, reply_to: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&PROBE_MAC);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, lengths, request
    f.extend_from_slice(&reply_to);
    f.extend_from_slice(&probe_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

/// The fields of a TCP segment the probe writes or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
}

impl Segment {
    /// The whole Ethernet frame from the probe's MAC to `dst_mac`.
    fn frame(&self, dst_mac: [u8; 6]) -> Vec<u8> {
        let mut tcp = Vec::with_capacity(20);
        tcp.extend_from_slice(&self.sport.to_be_bytes());
        tcp.extend_from_slice(&self.dport.to_be_bytes());
        tcp.extend_from_slice(&self.seq.to_be_bytes());
        tcp.extend_from_slice(&self.ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, self.flags]); // 5 words, flags
        tcp.extend_from_slice(&1024u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        let mut pseudo = Vec::with_capacity(32);
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&self.dst.octets());
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&tcp);
        let sum = checksum(&pseudo);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]; // DF, TTL 64, TCP
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut f = Vec::with_capacity(54);
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&PROBE_MAC);
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&tcp);
        f
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A frame that answers the probe.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Arp { from: [u8; 6] },
    Tcp { from: [u8; 6], seg: Segment },
}

fn mac_at(f: &[u8], off: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&f[off..off + 6]);
    m
}

fn ip_at(f: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[off], f[off + 1], f[off + 2], f[off + 3])
}

/// An ARP reply for the VIP to this sample's request (`arp_to`: its [`round_mac`]), or a
/// TCP segment from the VIP to the probe.
fn parse(f: &[u8], vip: Ipv4Addr, probe_ip: Ipv4Addr, arp_to: [u8; 6]) -> Option<Reply> {
    if f.len() < 14 {
        return None;
    }
    let from = mac_at(f, 6);
    match u16::from_be_bytes([f[12], f[13]]) {
        ETH_P_ARP if f.len() >= 42 && f[0..6] == arp_to => {
            let reply = f[20..22] == [0, 2];
            (reply && ip_at(f, 28) == vip && mac_at(f, 32) == arp_to && ip_at(f, 38) == probe_ip)
                .then_some(Reply::Arp { from })
        }
        ETH_P_IP if f.len() >= 34 && f[0..6] == PROBE_MAC => {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let t = 14 + ihl;
            if f[23] != 6 || f.len() < t + 20 || ip_at(f, 26) != vip || ip_at(f, 30) != probe_ip {
                return None;
            }
            let be16 = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
            let be32 = |o: usize| u32::from_be_bytes([f[o], f[o + 1], f[o + 2], f[o + 3]]);
            let seg = Segment {
                src: vip,
                dst: probe_ip,
                sport: be16(t),
                dport: be16(t + 2),
                seq: be32(t + 4),
                ack: be32(t + 8),
                flags: f[t + 13],
            };
            Some(Reply::Tcp { from, seg })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 60, 100);
    const PROBE: Ipv4Addr = Ipv4Addr::new(10, 77, 60, 3);
    const NODE: [u8; 6] = [2, 0, 0, 0, 0, 11];

    #[test]
    fn checksums_verify_to_zero() {
        let seg = Segment {
            src: PROBE,
            dst: VIP,
            sport: 40_001,
            dport: 80,
            seq: 7,
            ack: 0,
            flags: TCP_SYN,
        };
        let f = seg.frame(NODE);
        assert_eq!(checksum(&f[14..34]), 0, "IPv4 header checksum");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&f[34..54]);
        assert_eq!(checksum(&pseudo), 0, "TCP checksum");
    }

    /// A node's answer, as the kernel would send it back to the probe.
    fn answer(seg: &Segment, flags: u8) -> Vec<u8> {
        let back = Segment {
            src: VIP,
            dst: PROBE,
            sport: seg.dport,
            dport: seg.sport,
            seq: 99,
            ack: seg.seq + 1,
            flags,
        };
        let mut f = back.frame(PROBE_MAC);
        f[6..12].copy_from_slice(&NODE); // from the node
        f
    }

    #[test]
    fn parses_answers_to_the_probe_only() {
        let syn = Segment {
            src: PROBE,
            dst: VIP,
            sport: 40_002,
            dport: 80,
            seq: 5,
            ack: 0,
            flags: TCP_SYN,
        };
        let synack = answer(&syn, TCP_SYN | TCP_ACK);
        match parse(&synack, VIP, PROBE, round_mac(7)) {
            Some(Reply::Tcp { from, seg }) => {
                assert_eq!(from, NODE);
                assert_eq!(
                    (seg.dport, seg.ack, seg.flags),
                    (40_002, 6, TCP_SYN | TCP_ACK)
                );
            }
            other => panic!("{other:?}"),
        }
        // Our own SYN on its way out is not an answer.
        assert_eq!(parse(&syn.frame(NODE), VIP, PROBE, round_mac(7)), None);
        // An ARP reply from the node for the VIP, addressed to sample 7's request.
        let arp = arp_reply(round_mac(7), VIP);
        assert_eq!(
            parse(&arp, VIP, PROBE, round_mac(7)),
            Some(Reply::Arp { from: NODE })
        );
        // The same reply about another address says nothing about the VIP.
        assert_eq!(
            parse(
                &arp_reply(round_mac(7), Ipv4Addr::new(10, 77, 60, 11)),
                VIP,
                PROBE,
                round_mac(7)
            ),
            None
        );
    }

    /// The node's reply to the request of sample `to` (its round MAC) for `about`.
    fn arp_reply(to: [u8; 6], about: Ipv4Addr) -> Vec<u8> {
        let mut arp = arp_request(PROBE, VIP, to);
        arp[0..6].copy_from_slice(&to);
        arp[6..12].copy_from_slice(&NODE);
        arp[20..22].copy_from_slice(&[0, 2]);
        arp[22..28].copy_from_slice(&NODE);
        arp[28..32].copy_from_slice(&about.octets());
        arp[32..38].copy_from_slice(&to);
        arp[38..42].copy_from_slice(&PROBE.octets());
        arp
    }

    /// A reply to an earlier sample's request, late enough to arrive in this sample's
    /// window, is not this sample's answer: the node held then, not now.
    #[test]
    fn a_late_reply_to_an_earlier_request_is_not_an_answer() {
        let late = arp_reply(round_mac(6), VIP);
        assert_eq!(parse(&late, VIP, PROBE, round_mac(7)), None);
        assert_eq!(
            parse(&late, VIP, PROBE, round_mac(6)),
            Some(Reply::Arp { from: NODE })
        );
        // The request itself asks to be answered at its round's MAC.
        let request = arp_request(PROBE, VIP, round_mac(7));
        assert_eq!(mac_at(&request, 22), round_mac(7));
        assert_eq!(mac_at(&request, 6), PROBE_MAC);
    }
}
