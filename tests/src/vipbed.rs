//! A three-node fulcrum cluster with a VIP in network namespaces, a client and a backend,
//! plus the two observers the VIP tests need: a prober that sends a request to the VIP
//! every 20 ms, and a poller that records which node namespaces hold the VIP.

use fulcrum_testbed::cluster::{web_to_app, Cluster};
use fulcrum_testbed::netns::exec;
use fulcrum_testbed::nsbackend::NsBackend;
use fulcrum_testbed::periodic::Periodic;
use fulcrum_testbed::process::Poll;
use fulcrum_testbed::testbed::Testbed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const VIP: &str = "10.77.70.100";
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// The three nodes (a test-bed [`Cluster`], files in `dir`) on their bed.
pub struct VipCluster {
    pub nodes: Cluster,
    _backend: NsBackend,
    pub bed: Testbed,
    pub dir: tempfile::TempDir,
}

impl VipCluster {
    /// Builds the testbed and starts three nodes with `fencing` and VIP `lifetime`.
    pub fn start(tag: &str, fencing: &str, lifetime: &str) -> VipCluster {
        VipCluster::start_with(tag, fencing, lifetime, |text| text)
    }

    /// [`VipCluster::start`] with each node's config text passed through `edit` first
    /// (e.g. `[vip]` replaced by `[[vip]]` entries).
    pub fn start_with(
        tag: &str,
        fencing: &str,
        lifetime: &str,
        edit: impl Fn(String) -> String,
    ) -> VipCluster {
        let bed = Testbed::new(
            tag,
            &[("n1", 11), ("n2", 12), ("n3", 13), ("cl", 2), ("b1", 21)],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes =
            Cluster::on_testbed(&bed, &NODES, dir.path(), "3s", "vip-test-secret-0123456789")
                .expect("cluster files");
        let addr = "10.77.70.21:8080".parse().expect("addr");
        let backend = NsBackend::start(&bed.ns("b1"), addr, "b1").expect("backend b1");
        let mut c = VipCluster {
            nodes,
            _backend: backend,
            bed,
            dir,
        };
        for i in 0..3 {
            let cfg = edit(c.node_config(i, fencing, lifetime));
            c.nodes.write_config(i, &cfg).expect("config");
            c.start_node(i);
        }
        c
    }

    /// Rewrites node `i`'s file with another `fencing` / `lifetime` / VIP `address`
    /// (takes effect at its next start, or through `ctl apply`); returns the path.
    pub fn write_config(
        &self,
        i: usize,
        fencing: &str,
        lifetime: &str,
        address: &str,
    ) -> std::path::PathBuf {
        let text = self.node_config(i, fencing, lifetime).replace(
            &format!("address = \"{VIP}/24\""),
            &format!("address = \"{address}\""),
        );
        self.nodes.write_config(i, &text).expect("config")
    }

    /// `fulcrum ctl --admin <node i> ARGS...` from the client namespace: (success, output).
    pub fn ctl(&self, i: usize, args: &[&str]) -> (bool, String) {
        self.nodes.ctl(&self.bed.ns("cl"), i, args)
    }

    pub fn node_config(&self, i: usize, fencing: &str, lifetime: &str) -> String {
        let vip = format!(
            "[vip]\naddress = \"{VIP}/24\"\ninterface = \"eth0\"\nfencing = \"{fencing}\"\nlifetime = \"{lifetime}\"\n\n"
        );
        let pool = "backends = [{ addr = \"10.77.70.21:8080\" }]";
        self.nodes
            .node_file(i)
            .render(&(vip + &web_to_app("0.0.0.0:80", "", pool)))
    }

    /// Starts (or restarts) node `i` with its data dir.
    pub fn start_node(&mut self, i: usize) {
        self.nodes.start(i).expect("start fulcrum");
    }

    pub fn pid(&self, i: usize) -> i32 {
        self.nodes.node(i).pid().map(|p| p as i32).unwrap_or(0)
    }

    /// Sends `sig` to node `i` if it runs.
    pub fn signal(&self, i: usize, sig: nix::sys::signal::Signal) {
        let _ = self.nodes.node(i).signal(sig);
    }

    pub fn kill9(&mut self, i: usize) {
        self.nodes.node(i).kill();
    }

    /// Waits for node `i` to exit by itself (after SIGTERM).
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> bool {
        matches!(self.nodes.node(i).wait_exit(within), Poll::Exited(_))
    }

    /// `/status` of node `i`, fetched from inside the client namespace.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        self.nodes.status(&self.bed.ns("cl"), i)
    }

    /// `/debug/failover` of every running node (events, lease, fence), for failure messages.
    pub fn failover_debug(&self) -> String {
        (0..3)
            .filter(|&i| self.nodes.node(i).pid().is_some())
            .map(|i| {
                let (_, out) = self
                    .nodes
                    .admin_get(&self.bed.ns("cl"), i, "/debug/failover");
                format!("node {}: {out}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Index of the node that holds the VIP and is leader, waiting up to `within`.
    pub fn wait_holder(&self, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for (i, name) in NODES.iter().enumerate() {
                if self.nodes.node(i).pid().is_some() && self.bed.has_addr(name, VIP) {
                    if let Some(s) = self.status(i) {
                        if s["role"] == "leader" && s["vip_held"] == true {
                            return Some(i);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn holders_now(&self) -> Vec<usize> {
        (0..3)
            .filter(|&i| self.bed.has_addr(NODES[i], VIP))
            .collect()
    }

    pub fn log(&self, i: usize) -> String {
        self.nodes.node(i).log()
    }

    /// The MAC the client's neighbour table has for the VIP.
    pub fn client_arp_mac(&self) -> String {
        let (_, out) = exec(&self.bed.ns("cl"), &["ip", "neigh", "show", VIP]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    pub fn node_mac(&self, i: usize) -> String {
        self.bed.mac(NODES[i])
    }

    /// Adds nftables rules in node `i` that drop its Raft traffic (client traffic passes).
    pub fn partition(&self, i: usize) {
        let ns = self.bed.ns(NODES[i]);
        let script = "table inet fnt { chain in { type filter hook input priority 0; tcp dport 7946 drop; tcp sport 7946 drop; }; chain out { type filter hook output priority 0; tcp dport 7946 drop; tcp sport 7946 drop; }; }";
        let (ok, out) = exec(&ns, &["nft", script]);
        assert!(ok, "nft failed: {out}");
    }

    pub fn heal(&self, i: usize) {
        let (ok, out) = exec(&self.bed.ns(NODES[i]), &["nft", "delete table inet fnt"]);
        assert!(ok, "nft delete failed: {out}");
    }
}

/// Node file `text` with the bed's `[vip]` block replaced by one `[[vip]]` per address
/// (named `v1`, `v2`, ...; `/24` on the bed's `eth0`).
pub fn as_spread(text: String, addresses: &[&str]) -> String {
    let single = format!(
        "[vip]\naddress = \"{VIP}/24\"\ninterface = \"eth0\"\nfencing = \"fast\"\nlifetime = \"2s\"\n"
    );
    assert!(
        text.contains(&single),
        "the bed's [vip] block changed:\n{text}"
    );
    let many: String = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "[[vip]]\nname = \"v{}\"\naddress = \"{a}/24\"\ninterface = \"eth0\"\n\n",
                i + 1
            )
        })
        .collect();
    text.replace(&single, &many)
}

/// One probe result: time since the prober started, and whether the VIP answered 200.
#[derive(Debug, Clone)]
pub struct Probe {
    /// When the probe's connect started (since [`Prober::started`]).
    pub at: Duration,
    /// When its answer (or its failure) came back: a probe in flight at a kill can fail
    /// because of the kill even though it started before it.
    pub done: Duration,
    pub ok: bool,
    /// Why it failed (which step, and the error), for the assertion messages.
    pub failure: Option<String>,
}

/// Sends `GET /` to the VIP every 20 ms from the client namespace until stopped (or
/// `limit`), each on a new connection with a 300 ms budget (a test-bed [`Periodic`]).
pub struct Prober {
    pub started: Instant,
    probes: Periodic<Result<(), String>>,
}

impl Prober {
    pub fn start(bed: &Testbed, limit: Duration) -> Prober {
        Prober::start_every(bed, limit, Duration::from_millis(20))
    }

    /// [`Prober::start`] with probes `every` apart (a new connection each, one at a time).
    pub fn start_every(bed: &Testbed, limit: Duration, every: Duration) -> Prober {
        let vip = VIP.parse().expect("vip");
        Prober::start_to(bed, vip, limit, every)
    }

    /// [`Prober::start_every`] to another address (a `[[vip]]` one).
    pub fn start_to(
        bed: &Testbed,
        vip: std::net::Ipv4Addr,
        limit: Duration,
        every: Duration,
    ) -> Prober {
        let probes = Periodic::start(&bed.ns("cl"), limit, every, move || probe_once(vip));
        Prober {
            started: probes.started,
            probes,
        }
    }

    /// Stops and returns every probe.
    pub fn finish(self) -> Vec<Probe> {
        self.probes
            .finish()
            .into_iter()
            .map(|s| Probe {
                at: s.at,
                done: s.done,
                ok: s.value.is_ok(),
                failure: s.value.err(),
            })
            .collect()
    }
}

/// One `GET /` to `vip` on a new connection; the error names the step that failed.
fn probe_once(vip: std::net::Ipv4Addr) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from((vip, 80));
    let vip_mac = || mac_of(vip);
    let mac = vip_mac();
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).map_err(|e| {
            format!(
                "connect: {e} (VIP's MAC before: {mac}, after: {})",
                vip_mac()
            )
        })?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    s.write_all(b"GET / HTTP/1.1\r\nhost: vip\r\nconnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1.1 200") => Ok(()),
        Ok(n) => Err(format!(
            "answer: {:?}",
            String::from_utf8_lossy(&buf[..n.min(buf.len())])
        )),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// The client's ARP entry for `vip` (this thread's namespace), or "none".
fn mac_of(vip: std::net::Ipv4Addr) -> String {
    let arp = std::fs::read_to_string("/proc/thread-self/net/arp").unwrap_or_default();
    let vip = vip.to_string();
    arp.lines()
        .find(|l| l.split_whitespace().next() == Some(vip.as_str()))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("none")
        .to_string()
}

/// Longest run of failed probes after `from` (the outage window), in milliseconds.
pub fn outage_after(probes: &[Probe], from: Duration) -> u128 {
    let mut first_fail: Option<Duration> = None;
    let mut longest = 0u128;
    for p in probes.iter().filter(|p| p.at >= from) {
        match (p.ok, first_fail) {
            (false, None) => first_fail = Some(p.at),
            (true, Some(f)) => {
                longest = longest.max((p.at - f).as_millis());
                first_fail = None;
            }
            _ => {}
        }
    }
    if let (Some(f), Some(last)) = (first_fail, probes.last()) {
        longest = longest.max((last.at - f).as_millis());
    }
    longest
}

/// Samples VIP holders in every node namespace every 20 ms.
pub struct HolderPoller {
    stop: Arc<AtomicBool>,
    max_holders: Arc<Mutex<(usize, Duration)>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl HolderPoller {
    pub fn start(bed_names: [String; 3], limit: Duration) -> HolderPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(Mutex::new((0usize, Duration::ZERO)));
        let (s, m) = (stop.clone(), max.clone());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut dual_since: Option<Instant> = None;
            while !s.load(Ordering::SeqCst) && started.elapsed() < limit {
                let holders = holders_at_one_instant(&bed_names);
                if let Ok(mut g) = m.lock() {
                    g.0 = g.0.max(holders);
                    if holders > 1 {
                        let since = *dual_since.get_or_insert_with(Instant::now);
                        g.1 = g.1.max(since.elapsed());
                    } else {
                        dual_since = None;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        HolderPoller {
            stop,
            max_holders: max,
            handle: Some(handle),
        }
    }

    /// (most holders seen at once, longest dual-holder overlap).
    pub fn finish(mut self) -> (usize, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.max_holders
            .lock()
            .map(|g| *g)
            .unwrap_or((0, Duration::ZERO))
    }
}

/// How many namespaces held the VIP at one common instant. One `ip` call takes
/// milliseconds, so a pass over three namespaces is not an instant: a hand-over that
/// happens between two checks would show the old and the new holder both. When a pass
/// sees several holders, they are checked again in reverse order; a node that held at its
/// first and its second check held throughout (an address is not released and re-added
/// within milliseconds), so nodes that pass both checks held at the same instant.
fn holders_at_one_instant(bed_names: &[String; 3]) -> usize {
    let seen: Vec<&String> = bed_names.iter().filter(|ns| has_vip(ns)).collect();
    if seen.len() < 2 {
        return seen.len();
    }
    seen.iter().rev().filter(|ns| has_vip(ns)).count()
}

fn has_vip(ns: &str) -> bool {
    fulcrum_testbed::bridge::has_addr(ns, VIP)
}

/// The namespace names of the three nodes.
pub fn node_namespaces(bed: &Testbed) -> [String; 3] {
    [bed.ns("n1"), bed.ns("n2"), bed.ns("n3")]
}

/// Watches the client's segment for ARP frames whose sender is the VIP (gratuitous ARP,
/// ARP replies for the VIP), for `limit`. Sees what a 20 ms address poller cannot: a
/// re-announce that lasts a millisecond.
pub struct AnnounceWatcher {
    handle: Option<std::thread::JoinHandle<Vec<(Duration, String)>>>,
}

impl AnnounceWatcher {
    pub fn start(bed: &Testbed, limit: Duration) -> AnnounceWatcher {
        let vip: std::net::Ipv4Addr = VIP.parse().expect("vip");
        let handle = bed.in_ns("cl", move || watch_announcements(vip, limit));
        AnnounceWatcher {
            handle: Some(handle),
        }
    }

    /// Waits for the watch to end; returns each announcement: when, and the sender's MAC
    /// (as `ip link` prints it).
    pub fn finish(mut self) -> Vec<(Duration, String)> {
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

fn watch_announcements(vip: std::net::Ipv4Addr, limit: Duration) -> Vec<(Duration, String)> {
    use nix::sys::socket::{
        recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::EthAll,
    )
    .expect("packet socket (needs root)");
    let timeout = nix::sys::time::TimeVal::new(0, 50_000);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).expect("receive timeout");
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while started.elapsed() < limit {
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        let f = &buf[..n];
        // Ethernet type ARP, sender MAC at 22..28, sender IP at 28..32.
        if n >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == vip.octets() {
            let mac: Vec<String> = f[22..28].iter().map(|b| format!("{b:02x}")).collect();
            seen.push((started.elapsed(), mac.join(":")));
        }
    }
    seen
}
