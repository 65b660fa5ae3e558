//! Probes on the wire, run from a peer namespace: does anybody answer an ARP request or a
//! neighbour solicitation for an address, does a TCP connect to it complete; and a listener
//! that accepts (and drops) connections. The probe sockets belong to the namespace of the
//! thread that opens them.
#![allow(dead_code)]

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fulcrum_vip::frames::{icmpv6_checksum, Mac};
use fulcrum_vip::link_address;
use socket2::{Domain, Protocol, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Mac {
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("hex MAC byte");
    }
    mac
}

/// A raw packet socket on one interface that asks who has an address and waits for the
/// answer: ARP for IPv4, a neighbour solicitation for IPv6.
pub struct Resolver {
    socket: Socket,
    ifindex: u32,
    mac: Mac,
    rx: Vec<u8>,
}

impl Resolver {
    /// Opens the socket for `ethertype` frames on `iface` (whose MAC is `mac`) in the calling
    /// thread's namespace.
    fn open(iface: &str, mac: Mac, ethertype: u16) -> Resolver {
        let proto = Protocol::from(i32::from(ethertype.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(proto)).expect("packet socket");
        let ifindex = nix::net::if_::if_nametoindex(iface).expect("ifindex");
        Resolver {
            socket,
            ifindex,
            mac,
            rx: vec![0; 2048],
        }
    }

    pub fn arp(iface: &str, mac: Mac) -> Resolver {
        Resolver::open(iface, mac, ETH_P_ARP)
    }

    pub fn ndp(iface: &str, mac: Mac) -> Resolver {
        Resolver::open(iface, mac, ETH_P_IPV6)
    }

    /// Sends one ARP request for `target` from `sender` and waits up to `wait` for a reply
    /// from `target` to `sender` (a late reply to a request from another sender address is
    /// not taken for this one's).
    pub fn arp_answered(&mut self, sender: Ipv4Addr, target: Ipv4Addr, wait: Duration) -> bool {
        self.drain();
        let frame = arp_request(self.mac, sender, target);
        self.send(ETH_P_ARP, [0xff; 6], &frame);
        self.await_frame(wait, |f| is_arp_reply(f, target, sender))
    }

    /// Sends one neighbour solicitation for `target` from `sender` (to the solicited-node
    /// group) and waits up to `wait` for an advertisement of `target`.
    pub fn ndp_answered(&mut self, sender: Ipv6Addr, target: Ipv6Addr, wait: Duration) -> bool {
        self.drain();
        let (dst_mac, frame) = neighbour_solicitation(self.mac, sender, target);
        self.send(ETH_P_IPV6, dst_mac, &frame);
        self.await_frame(wait, |f| is_advert_of(f, target))
    }

    fn send(&self, ethertype: u16, dst: Mac, frame: &[u8]) {
        let addr = link_address(self.ifindex, ethertype, dst).expect("link address");
        let sent = self.socket.send_to(frame, &addr).expect("send frame");
        assert_eq!(sent, frame.len());
    }

    /// Throws away frames queued before the probe.
    fn drain(&mut self) {
        self.socket.set_nonblocking(true).expect("nonblocking");
        while (&self.socket).read(&mut self.rx).is_ok() {}
        self.socket.set_nonblocking(false).expect("blocking");
    }

    fn await_frame(&mut self, wait: Duration, wanted: impl Fn(&[u8]) -> bool) -> bool {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match (&self.socket).read(&mut self.rx) {
                Ok(len) if wanted(&self.rx[..len]) => return true,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return false,
                Err(e) => panic!("reading frames: {e}"),
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An Ethernet broadcast ARP request: who has `target`? tell `sender` (at `mac`).
fn arp_request(mac: Mac, sender: Ipv4Addr, target: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&sender.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// An ARP reply saying where `target` is, addressed to the asker at `sender`.
fn is_arp_reply(f: &[u8], target: Ipv4Addr, sender: Ipv4Addr) -> bool {
    f.len() >= 42
        && f[12..14] == ETH_P_ARP.to_be_bytes()
        && f[20..22] == 2u16.to_be_bytes()
        && f[28..32] == target.octets()
        && f[38..42] == sender.octets()
}

/// A neighbour solicitation for `target` to its solicited-node group, with our link-layer
/// address option; returns the destination MAC and the frame.
fn neighbour_solicitation(mac: Mac, sender: Ipv6Addr, target: Ipv6Addr) -> (Mac, [u8; 86]) {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let dst_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let mut icmp = [0u8; 32];
    icmp[0] = 135; // neighbour solicitation
    icmp[8..24].copy_from_slice(&t);
    icmp[24] = 1; // source link-layer address option, 8 bytes
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(sender, group, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&sender.octets());
    ip[24..40].copy_from_slice(&group.octets());
    f[54..].copy_from_slice(&icmp);
    (dst_mac, f)
}

fn is_advert_of(f: &[u8], target: Ipv6Addr) -> bool {
    f.len() >= 78
        && f[12..14] == ETH_P_IPV6.to_be_bytes()
        && f[20] == 58
        && f[54] == 136
        && f[62..78] == target.octets()
}

/// Whether a TCP connect to `addr` completes within `wait` (a dropped SYN is retransmitted
/// only after a second, so a short wait tells "dropped" from "answered" cleanly).
pub fn tcp_answered(addr: SocketAddr, wait: Duration) -> bool {
    TcpStream::connect_timeout(&addr, wait).is_ok()
}

/// A listener that accepts and drops connections until dropped, so its backlog never fills.
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Starts accepting on `listener` (created in the node's namespace).
    pub fn start(listener: TcpListener) -> Acceptor {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Acceptor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
