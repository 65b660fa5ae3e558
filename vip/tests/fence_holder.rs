//! The fence outlives its holder's attention: a child process installs the fence in the
//! `node` namespace and refreshes a 40 ms lease every 5 ms, then the test freezes it
//! (SIGSTOP) or kills it (SIGKILL). From the `peer` namespace, on the wire, ARP requests and
//! TCP connects to the VIP must go unanswered from the child's last lease deadline on: the
//! node's own kernel fences it, with the process unable to act. Figures are printed
//! (`--nocapture`).
//!
//! The child writes each deadline (CLOCK_MONOTONIC, the clock `Instant` reads) to a file
//! *before* the refresh that grants it, so the last value in the file is at or after the
//! deadline the kernel really holds: the check "nothing sent after it is answered" is never
//! looser than the truth by more than the few microseconds between writing and refreshing.

mod common;
mod fence_bed;
mod wire;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{in_netns, IFACE};
use fence_bed::{install_in, monotonic_ns, ready, Asker, Bed, VIP4};
use fulcrum_vip::{fence_installed, remove_fence, Fence};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Env vars that turn `holder_process` into the holder child.
const CHILD_NS: &str = "FULCRUM_FENCE_CHILD_NS";
const CHILD_DEADLINES: &str = "FULCRUM_FENCE_CHILD_DEADLINES";
const CHILD_OPEN: &str = "FENCE-CHILD-OPEN";
/// The child's lease: each refresh opens the fence until this long after it reads the clock.
const LEASE: Duration = Duration::from_millis(40);
const REFRESH_EVERY: Duration = Duration::from_millis(5);
/// How long the peer keeps probing after the signal.
const WATCH: Duration = Duration::from_millis(250);

fn v4() -> IpAddr {
    IpAddr::V4(VIP4)
}

/// Not a test on its own: the holder process the tests below start. It installs the fence in
/// the namespace named by `FULCRUM_FENCE_CHILD_NS`, then for at most 20 s writes a deadline
/// 40 ms ahead to the file named by `FULCRUM_FENCE_CHILD_DEADLINES` and opens the fence until
/// then, every 5 ms, saying on stdout once it is open.
#[test]
#[ignore = "helper process for fence_closes_when_its_holder_*"]
fn holder_process() {
    let (Ok(ns), Ok(path)) = (std::env::var(CHILD_NS), std::env::var(CHILD_DEADLINES)) else {
        return;
    };
    fulcrum_testbed::netns::enter(&ns).unwrap();
    let deadlines = std::fs::File::create(path).unwrap();
    let mut fence = Fence::install(IFACE, &[v4()]).unwrap();
    let start = Instant::now();
    let mut said = false;
    while start.elapsed() < Duration::from_secs(20) {
        // `Instant` first: the monotonic reading after it is no earlier, so the deadline
        // written is no earlier than the one granted.
        let now = Instant::now();
        let written = monotonic_ns() + LEASE.as_nanos() as u64;
        deadlines.write_at(&written.to_le_bytes(), 0).unwrap();
        fence.open_until(v4(), now + LEASE).unwrap();
        if !said {
            println!("{CHILD_OPEN}");
            said = true;
        }
        std::thread::sleep(REFRESH_EVERY);
    }
}

/// The holder child; killed by its pid when dropped.
struct Holder {
    child: Child,
    deadlines: PathBuf,
}

impl Holder {
    fn start(ns: &str, tag: &str) -> Holder {
        let deadlines =
            std::env::temp_dir().join(format!("fulcrum-fence-{}-{tag}", std::process::id()));
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args(["--exact", "holder_process", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_NS, ns)
            .env(CHILD_DEADLINES, &deadlines)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut holder = Holder { child, deadlines };
        let stdout = holder.child.stdout.take().unwrap();
        let open = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains(CHILD_OPEN)); // libtest prints "test … " before it
        assert!(open, "the holder child exited before opening the fence");
        holder
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// The last deadline the child wrote (read once it can no longer write).
    fn last_deadline_ns(&self) -> u64 {
        read_deadline(&self.deadlines)
    }
}

fn read_deadline(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.deadlines);
    }
}

/// One probe from the peer: which kind, when it was sent (CLOCK_MONOTONIC ns), answered?
struct Probe {
    arp: bool,
    sent_ns: u64,
    answered: bool,
}

/// Alternates ARP and TCP probes for `WATCH`. Each ARP request comes from its own sender
/// address (10.77.50.200–249), so a late reply is never counted for a later request; each
/// TCP connect uses a fresh port.
fn probe_for_a_while(ask: &mut Asker) -> Vec<Probe> {
    let mut probes = Vec::new();
    let start = Instant::now();
    let mut n = 0u8;
    while start.elapsed() < WATCH {
        let sender = Ipv4Addr::new(10, 77, 50, 200 + n % 50);
        n = n.wrapping_add(1);
        let sent_ns = monotonic_ns();
        let answered = ask.arp_from(sender, VIP4, Duration::from_millis(2));
        probes.push(Probe {
            arp: true,
            sent_ns,
            answered,
        });
        let sent_ns = monotonic_ns();
        let answered = ask.tcp(VIP4, Duration::from_millis(3));
        probes.push(Probe {
            arp: false,
            sent_ns,
            answered,
        });
    }
    probes
}

fn ms(from_ns: u64, to_ns: u64) -> f64 {
    (to_ns as f64 - from_ns as f64) / 1e6
}

/// The child holds the fence open; `signal` stops it refreshing. Every probe sent after the
/// child's last deadline must go unanswered, ARP and TCP alike; some sent after the signal
/// (and before the deadline) must be answered, so the fence was open when the holder
/// stopped and closed on its own. The table stays in place after the holder is gone.
fn fence_closes_when_holder_stops(signal: Signal, tag: &str) {
    let bed = Bed::new(tag, &[v4()]);
    if install_in(&bed.node, &[v4()]).is_none() {
        return;
    }
    let holder = Holder::start(&bed.node, tag);
    let (signalled_ns, probes) = in_netns(&bed.peer, || {
        let mut ask = Asker::new(&bed);
        let wait = Duration::from_millis(20);
        assert!(ask.arp(VIP4, wait), "no ARP answer while the holder runs");
        assert!(ask.tcp(VIP4, wait), "no TCP answer while the holder runs");
        let signalled_ns = monotonic_ns();
        holder.signal(signal);
        (signalled_ns, probe_for_a_while(&mut ask))
    });
    let deadline_ns = holder.last_deadline_ns();
    let after_signal = ms(signalled_ns, deadline_ns);
    eprintln!(
        "{signal}: the holder's last lease deadline {after_signal:+.1} ms from the signal (lease {LEASE:?}, refreshed every {REFRESH_EVERY:?})"
    );
    assert!(
        after_signal <= LEASE.as_secs_f64() * 1e3 + 1.0,
        "the child refreshed after the signal"
    );
    for (name, arp) in [("ARP", true), ("TCP", false)] {
        let mine: Vec<&Probe> = probes.iter().filter(|p| p.arp == arp).collect();
        let late: Vec<&Probe> = mine
            .iter()
            .copied()
            .filter(|p| p.sent_ns > deadline_ns)
            .collect();
        let answered_late = late.iter().filter(|p| p.answered).count();
        let last_answered = mine.iter().filter(|p| p.answered).map(|p| p.sent_ns).max();
        let first_silent = mine.iter().filter(|p| !p.answered).map(|p| p.sent_ns).min();
        let rel = |t: Option<u64>| t.map_or(f64::NAN, |t| ms(deadline_ns, t));
        eprintln!(
            "{signal} {name}: {} probes, {} after the deadline ({answered_late} answered); last answered sent {:+.2} ms, first unanswered sent {:+.2} ms from the deadline",
            mine.len(),
            late.len(),
            rel(last_answered),
            rel(first_silent),
        );
        assert!(
            late.len() >= 10,
            "{name}: only {} probes after the deadline",
            late.len()
        );
        assert_eq!(
            answered_late,
            0,
            "{name}: the node answered {answered_late} probes sent after its holder's lease deadline (last answered {:+.2} ms after it)",
            rel(last_answered)
        );
        assert!(
            last_answered.is_some_and(|t| t > signalled_ns),
            "{name}: nothing answered after the signal: the fence was not open when the holder stopped"
        );
    }
    assert!(
        in_netns(&bed.node, fence_installed).unwrap(),
        "the fence table went away with its holder"
    );
    drop(holder);
    assert!(
        in_netns(&bed.node, fence_installed).unwrap(),
        "the fence table went away with its dead holder"
    );
    in_netns(&bed.peer, || {
        let mut ask = Asker::new(&bed);
        let wait = Duration::from_millis(50);
        assert!(!ask.arp(VIP4, wait), "ARP answered after the holder died");
        assert!(!ask.tcp(VIP4, wait), "TCP answered after the holder died");
    });
    assert!(in_netns(&bed.node, remove_fence).unwrap());
    assert!(!in_netns(&bed.node, fence_installed).unwrap());
}

#[test]
fn fence_closes_when_its_holder_is_killed() {
    let Some(_serial) = ready("fence_closes_when_its_holder_is_killed") else {
        return;
    };
    fence_closes_when_holder_stops(Signal::SIGKILL, "killed");
}

#[test]
fn fence_closes_when_its_holder_is_frozen() {
    let Some(_serial) = ready("fence_closes_when_its_holder_is_frozen") else {
        return;
    };
    fence_closes_when_holder_stops(Signal::SIGSTOP, "frozen");
}
