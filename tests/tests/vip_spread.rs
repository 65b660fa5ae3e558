//! Several VIPs (`[[vip]]`, issue 18) across three real fulcrum nodes in network
//! namespaces: each node holds one of three addresses; kill -9 of a follower that holds one
//! moves it to a survivor within 2 s; `ctl drain-node` moves a node's address away; back
//! to one each after the restart and the undrain. Throughout, a client-side ARP prober asks
//! "who has" every address every ~20 ms and no address may ever be answered by two nodes.
//! A kill -9 of the leader moves its address too; the others, whose grants a new leader
//! cannot renew for one grant length, are measured for how long they go unanswered.
//! Needs root; skipped (with a message) otherwise.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::vipbed::{as_spread, VipCluster};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeSet;
use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SPREAD: [&str; 3] = ["10.77.70.101", "10.77.70.102", "10.77.70.103"];
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 70, 2);
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_ARP: u16 = 0x0806;

/// The test bed's `[vip]` block becomes three `[[vip]]` entries.
fn spread(text: String) -> String {
    as_spread(text, &SPREAD)
}

/// Which node each address is held by, from the nodes' own `/status` (`vips[].held_here`)
/// and the address in their namespace; `None` for an address held by none or several.
fn holders(c: &VipCluster, alive: &[usize]) -> [Vec<usize>; 3] {
    let mut out: [Vec<usize>; 3] = Default::default();
    for &i in alive {
        let Some(s) = c.status(i) else { continue };
        for v in s["vips"].as_array().into_iter().flatten() {
            let Some(k) = SPREAD.iter().position(|a| v["address"] == *a) else {
                continue;
            };
            if v["held_here"] == true && c.bed.has_addr(&format!("n{}", i + 1), SPREAD[k]) {
                out[k].push(i);
            }
        }
    }
    out
}

/// Waits until `ok(holders)`; returns the holders then, or panics with `what`.
fn wait_for(
    c: &VipCluster,
    alive: &[usize],
    within: Duration,
    what: &str,
    ok: impl Fn(&[Vec<usize>; 3]) -> bool,
) -> [Vec<usize>; 3] {
    let end = Instant::now() + within;
    loop {
        let h = holders(c, alive);
        if ok(&h) {
            return h;
        }
        if Instant::now() > end {
            let logs: Vec<String> = alive
                .iter()
                .map(|&i| {
                    let log = c.log(i);
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    format!(
                        "--- n{} ---\n{}",
                        i + 1,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )
                })
                .collect();
            panic!("{what}: holders {h:?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn one_each(h: &[Vec<usize>; 3], nodes: usize) -> bool {
    let owners: BTreeSet<usize> = h.iter().flatten().copied().collect();
    h.iter().all(|v| v.len() == 1) && owners.len() == nodes.min(3)
}

/// One ARP request: when, for which address, the MACs that answered.
type Answer = (Duration, usize, BTreeSet<String>);

/// Asks "who has" each address from the client's `eth0` every ~20 ms and records the MACs
/// that answer each request.
struct ArpWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Answer>>>,
    started: Instant,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ArpWatch {
    fn start(c: &VipCluster, mac: [u8; 6]) -> ArpWatch {
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

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Most MACs that answered one request for address `k` (0: never answered).
    fn most_answering(&self) -> [usize; 3] {
        let mut most = [0; 3];
        for (_, k, macs) in self.seen.lock().map(|v| v.clone()).unwrap_or_default() {
            most[k] = most[k].max(macs.len());
        }
        most
    }

    /// Requests for `k` answered by two MACs, as (time, MACs).
    fn doubles(&self) -> Vec<Answer> {
        self.seen
            .lock()
            .map(|v| v.iter().filter(|(_, _, m)| m.len() > 1).cloned().collect())
            .unwrap_or_default()
    }

    /// First time after `from` that `k` was answered by `mac` only.
    fn first_answer_by(&self, k: usize, mac: &str, from: Duration) -> Option<Duration> {
        self.seen.lock().ok()?.iter().find_map(|(at, kk, m)| {
            (*kk == k && *at >= from && m.len() == 1 && m.contains(mac)).then_some(*at)
        })
    }

    fn finish(mut self) -> Self {
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

fn mac_bytes(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, p) in text.split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(p, 16).expect("mac");
    }
    mac
}

#[test]
fn three_vips_spread_move_on_kill_and_drain_and_never_have_two_holders() {
    if !can_run("three_vips_spread_move_on_kill_and_drain_and_never_have_two_holders") {
        return;
    }
    let mut c = VipCluster::start_with("sp", "fast", "2s", spread);
    let all = [0, 1, 2];
    let h = wait_for(&c, &all, Duration::from_secs(30), "one VIP per node", |h| {
        one_each(h, 3)
    });
    eprintln!("placed: {h:?}");
    let watch = ArpWatch::start(&c, mac_bytes(&c.bed.mac("cl")));
    std::thread::sleep(Duration::from_millis(500));

    // kill -9 a follower holding an address.
    let leader = (0..3)
        .find(|&i| c.status(i).is_some_and(|s| s["role"] == "leader"))
        .expect("a leader");
    let victim = (0..3).find(|&i| i != leader).expect("a follower");
    let k = h
        .iter()
        .position(|v| v == &vec![victim])
        .expect("victim's VIP");
    let killed_at = watch.now();
    c.kill9(victim);
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let after = wait_for(
        &c,
        &alive,
        Duration::from_secs(5),
        "the killed node's VIP moves",
        |h| h.iter().all(|v| v.len() == 1),
    );
    let new = after[k][0];
    std::thread::sleep(Duration::from_millis(300));
    let answered = watch
        .first_answer_by(k, &c.node_mac(new), killed_at)
        .expect("the new holder answers ARP");
    let moved_ms = (answered - killed_at).as_millis();
    eprintln!(
        "kill -9 of node {} (follower): {} moved to node {} in {moved_ms} ms (first ARP answer)",
        victim + 1,
        SPREAD[k],
        new + 1
    );
    assert!(moved_ms < 2000, "VIP moved after {moved_ms} ms");

    // drain a survivor that is not the leader if possible.
    let drained = *alive.iter().find(|&&i| i != leader).unwrap_or(&leader);
    let (ok, out) = c.ctl(drained, &["drain-node"]);
    assert!(ok, "drain-node failed: {out}");
    let drain_at = Instant::now();
    wait_for(
        &c,
        &alive,
        Duration::from_secs(5),
        "drain moves the VIPs away",
        |h| {
            h.iter()
                .all(|v| v == &vec![alive.iter().copied().find(|&i| i != drained).unwrap_or(0)])
        },
    );
    eprintln!(
        "drain-node of node {}: its VIPs moved in {} ms",
        drained + 1,
        drain_at.elapsed().as_millis()
    );
    let (ok, out) = c.ctl(drained, &["undrain-node"]);
    assert!(ok, "undrain-node failed: {out}");

    // The killed node comes back: one each again (rebalanced one move per hold-down).
    c.start_node(victim);
    let back = Instant::now();
    wait_for(
        &c,
        &all,
        Duration::from_secs(30),
        "rebalanced to one each",
        |h| one_each(h, 3),
    );
    eprintln!(
        "rebalanced to one each {} ms after the restart",
        back.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_millis(300));

    let watch = watch.finish();
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

/// The longest stretch after `from` in which address `k` got no ARP answer at all.
fn longest_silence(watch: &ArpWatch, k: usize, from: Duration) -> Duration {
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

#[test]
fn a_leader_kill_moves_its_vip_and_never_two_answer() {
    if !can_run("a_leader_kill_moves_its_vip_and_never_two_answer") {
        return;
    }
    let mut c = VipCluster::start_with("sl", "fast", "2s", spread);
    let all = [0, 1, 2];
    let h = wait_for(&c, &all, Duration::from_secs(30), "one VIP per node", |h| {
        one_each(h, 3)
    });
    let watch = ArpWatch::start(&c, mac_bytes(&c.bed.mac("cl")));
    std::thread::sleep(Duration::from_millis(500));
    let leader = (0..3)
        .find(|&i| c.status(i).is_some_and(|s| s["role"] == "leader"))
        .expect("a leader");
    let k = h
        .iter()
        .position(|v| v == &vec![leader])
        .expect("leader's VIP");
    let killed_at = watch.now();
    c.kill9(leader);
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let after = wait_for(
        &c,
        &alive,
        Duration::from_secs(5),
        "the leader's VIP moves",
        |h| h.iter().all(|v| v.len() == 1),
    );
    std::thread::sleep(Duration::from_millis(500));
    let new = after[k][0];
    let answered = watch
        .first_answer_by(k, &c.node_mac(new), killed_at)
        .expect("the new holder answers ARP");
    let moved_ms = (answered - killed_at).as_millis();
    let silences: Vec<u128> = (0..3)
        .map(|j| longest_silence(&watch, j, killed_at).as_millis())
        .collect();
    eprintln!(
        "kill -9 of the leader (node {}): {} moved to node {} in {moved_ms} ms; longest ARP \
         silence per address after the kill: {silences:?} ms",
        leader + 1,
        SPREAD[k],
        new + 1
    );
    let watch = watch.finish();
    assert!(moved_ms < 2000, "VIP moved after {moved_ms} ms");
    assert!(
        silences.iter().all(|&s| s < 2000),
        "an address went unanswered for {silences:?} ms"
    );
    let doubles = watch.doubles();
    assert!(
        doubles.is_empty(),
        "an address answered from two MACs: {:?}",
        &doubles[..doubles.len().min(5)]
    );
}
