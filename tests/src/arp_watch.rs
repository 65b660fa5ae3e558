//! A wire check for the `[[vip]]` tests: from the client's namespace, asks "who has" each
//! spread address every ~20 ms with its own ARP frames and records which MACs answered, so
//! a test can tell when an address moved, how long it went unanswered and whether two
//! nodes ever answered for it at once.

use crate::spreadbed::SPREAD;
use crate::vipbed::VipCluster;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeSet;
use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 70, 2);
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_ARP: u16 = 0x0806;

/// One ARP request: when, for which address, the MACs that answered.
pub type Answer = (Duration, usize, BTreeSet<String>);

/// Asks "who has" each address from the client's `eth0` every ~20 ms and records the MACs
/// that answer each request.
pub struct ArpWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Answer>>>,
    started: Instant,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ArpWatch {
    pub fn start(c: &VipCluster, mac: [u8; 6]) -> ArpWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let (s, out) = (stop.clone(), seen.clone());
        let handle = c.bed.in_ns("cl", move || {
            let sock = open_packet_socket();
            while !s.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                for (k, vip) in SPREAD.iter().enumerate() {
                    let vip: Ipv4Addr = vip.parse().expect("vip");
                    let at = started.elapsed();
                    let macs = who_has(&sock, mac, vip);
                    if let Ok(mut v) = out.lock() {
                        v.push((at, k, macs));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ArpWatch {
            stop,
            seen,
            started,
            handle: Some(handle),
        }
    }

    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Most MACs that answered one request for address `k` (0: never answered).
    pub fn most_answering(&self) -> [usize; 3] {
        let mut most = [0; 3];
        for (_, k, macs) in self.seen.lock().map(|v| v.clone()).unwrap_or_default() {
            most[k] = most[k].max(macs.len());
        }
        most
    }

    /// Requests for `k` answered by two MACs, as (time, MACs).
    pub fn doubles(&self) -> Vec<Answer> {
        self.seen
            .lock()
            .map(|v| v.iter().filter(|(_, _, m)| m.len() > 1).cloned().collect())
            .unwrap_or_default()
    }

    /// Requests for `k` after `from` that no MAC answered (within the 10 ms each waits).
    pub fn unanswered(&self, k: usize, from: Duration) -> Vec<Duration> {
        self.seen
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(at, kk, m)| *kk == k && *at >= from && m.is_empty())
                    .map(|(at, _, _)| *at)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Requests for `k` after `from`.
    pub fn asked(&self, k: usize, from: Duration) -> usize {
        self.seen
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(at, kk, _)| *kk == k && *at >= from)
                    .count()
            })
            .unwrap_or_default()
    }

    /// First time after `from` that `k` was answered by `mac` only.
    pub fn first_answer_by(&self, k: usize, mac: &str, from: Duration) -> Option<Duration> {
        self.seen.lock().ok()?.iter().find_map(|(at, kk, m)| {
            (*kk == k && *at >= from && m.len() == 1 && m.contains(mac)).then_some(*at)
        })
    }

    /// Last time in `[from, to)` that `k` was answered by `mac`.
    pub fn last_answer_by(
        &self,
        k: usize,
        mac: &str,
        from: Duration,
        to: Duration,
    ) -> Option<Duration> {
        self.seen.lock().ok()?.iter().rev().find_map(|(at, kk, m)| {
            (*kk == k && *at >= from && *at < to && m.contains(mac)).then_some(*at)
        })
    }

    /// Stops, then asserts that no request was answered from two MACs and that every
    /// address was answered at some point.
    pub fn finish_and_check(self) {
        let watch = self.finish();
        let doubles = watch.doubles();
        assert!(
            doubles.is_empty(),
            "an address answered from two MACs: {:?}",
            &doubles[..doubles.len().min(5)]
        );
        assert_eq!(
            watch.most_answering(),
            [1, 1, 1],
            "every address answered ARP"
        );
    }

    pub fn finish(mut self) -> Self {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self
    }
}

fn open_packet_socket() -> (Socket, u32) {
    let ifindex = nix::net::if_::if_nametoindex("eth0").expect("client eth0");
    let proto = Protocol::from(i32::from(ETH_P_ALL.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(proto)).expect("packet socket");
    let addr = fulcrum_vip::link_address(ifindex, ETH_P_ALL, [0; 6]).expect("link address");
    socket.bind(&addr).expect("bind packet socket");
    (socket, ifindex)
}

/// One broadcast ARP request for `vip`; the sender MACs of the replies within 10 ms.
fn who_has(sock: &(Socket, u32), mac: [u8; 6], vip: Ipv4Addr) -> BTreeSet<String> {
    let (socket, ifindex) = sock;
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&CLIENT_IP.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&vip.octets());
    let mut seen = BTreeSet::new();
    let Ok(dst) = fulcrum_vip::link_address(*ifindex, ETH_P_ARP, [0xff; 6]) else {
        return seen;
    };
    if socket.send_to(&f, &dst).is_err() {
        return seen;
    }
    let end = Instant::now() + Duration::from_millis(10);
    let mut buf = [0u8; 2048];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return seen;
        }
        let _ = socket.set_read_timeout(Some(left));
        let Ok(n) = (&*socket).read(&mut buf) else {
            return seen;
        };
        let r = &buf[..n];
        // ARP reply (op 2) whose sender protocol address is the VIP.
        if n >= 42 && r[12..14] == [0x08, 0x06] && r[20..22] == [0, 2] && r[28..32] == vip.octets()
        {
            let m: Vec<String> = r[22..28].iter().map(|b| format!("{b:02x}")).collect();
            seen.insert(m.join(":"));
        }
    }
}

pub fn mac_bytes(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, p) in text.split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(p, 16).expect("mac");
    }
    mac
}

/// The longest stretch after `from` in which address `k` got no ARP answer at all.
pub fn longest_silence(watch: &ArpWatch, k: usize, from: Duration) -> Duration {
    let seen = watch.seen.lock().map(|v| v.clone()).unwrap_or_default();
    let mut last_answer = from;
    let mut longest = Duration::ZERO;
    for (at, _, macs) in seen.iter().filter(|(at, kk, _)| *kk == k && *at >= from) {
        if !macs.is_empty() {
            longest = longest.max(at.saturating_sub(last_answer));
            last_answer = *at;
        }
    }
    longest
}
