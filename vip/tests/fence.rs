//! The kernel-enforced VIP fence, on the wire: a `node` namespace holds the VIP and the fence,
//! a `peer` namespace asks for the VIP with raw ARP requests / neighbour solicitations and TCP
//! connects. Closed = nobody answers; open = the node answers; a lapsed lease element closes
//! it in the node's kernel. A frozen or killed holder process: `fence_holder.rs`; cost and
//! expiry precision: `fence_timing.rs`. Measured figures are printed (`--nocapture`).

mod common;
mod fence_bed;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{in_netns, IFACE};
use fence_bed::{install_in, ready, try_realtime, Asker, Bed, PEER6, PORT, VIP4, VIP4_B, VIP6};
use fulcrum_vip::{fence_installed, remove_fence, Fence, RefreshMethod, VipError};
use wire::{tcp_answered, Resolver};

/// How long a probe waits for an answer. An answered probe takes well under a millisecond;
/// a dropped one is not retried within this time.
const WAIT: Duration = Duration::from_millis(20);

fn v4() -> IpAddr {
    IpAddr::V4(VIP4)
}

fn v6() -> IpAddr {
    IpAddr::V6(VIP6)
}

#[test]
fn closed_fence_answers_neither_arp_nor_tcp() {
    let Some(_serial) = ready("closed_fence_answers_neither_arp_nor_tcp") else {
        return;
    };
    let bed = Bed::new("closed", &[v4()]);
    let Some(mut fence) = install_in(&bed.node, &[v4()]) else {
        return;
    };
    assert!(!fence.is_open(v4()).unwrap());
    in_netns(&bed.peer, || {
        let mut ask = Asker::new(&bed);
        let wait = Duration::from_millis(100);
        assert!(!ask.arp(VIP4, wait), "ARP answered through a closed fence");
        assert!(!ask.tcp(VIP4, wait), "TCP answered through a closed fence");
        fence.uninstall().unwrap();
        assert!(
            ask.arp(VIP4, wait),
            "no ARP answer without the fence: the bed is broken"
        );
        assert!(
            ask.tcp(VIP4, wait),
            "no TCP answer without the fence: the bed is broken"
        );
    });
}

/// Samples ARP and TCP until both have stopped answering; returns, per probe, when the last
/// answered and the first unanswered probe were sent.
struct Stop {
    last_answered: Option<Instant>,
    first_silent: Option<Instant>,
}

fn sample_until_silent(ask: &mut Asker, limit: Duration) -> (Stop, Stop) {
    let new = || Stop {
        last_answered: None,
        first_silent: None,
    };
    let (mut arp, mut tcp) = (new(), new());
    let start = Instant::now();
    while (arp.first_silent.is_none() || tcp.first_silent.is_none()) && start.elapsed() < limit {
        for (stop, is_arp) in [(&mut arp, true), (&mut tcp, false)] {
            if stop.first_silent.is_some() {
                continue;
            }
            let sent = Instant::now();
            let answered = if is_arp {
                ask.arp(VIP4, WAIT)
            } else {
                ask.tcp(VIP4, WAIT)
            };
            if answered {
                stop.last_answered = Some(sent);
            } else {
                stop.first_silent = Some(sent);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (arp, tcp)
}

fn ms_after(t: Option<Instant>, deadline: Instant) -> f64 {
    let t = t.expect("probe time");
    if t >= deadline {
        (t - deadline).as_secs_f64() * 1e3
    } else {
        -((deadline - t).as_secs_f64() * 1e3)
    }
}

#[test]
fn open_fence_answers_until_the_kernel_expires_it() {
    let Some(_serial) = ready("open_fence_answers_until_the_kernel_expires_it") else {
        return;
    };
    let bed = Bed::new("expire", &[v4()]);
    let Some(mut fence) = install_in(&bed.node, &[v4()]) else {
        return;
    };
    let tick_ms = fence.kernel_tick().as_secs_f64() * 1e3;
    in_netns(&bed.peer, || {
        let mut ask = Asker::new(&bed);
        let deadline = Instant::now() + Duration::from_millis(80);
        let granted = fence.open_until(v4(), deadline).unwrap();
        assert!(granted >= Duration::from_millis(75), "granted {granted:?}");
        assert!(ask.arp(VIP4, WAIT), "no ARP answer through an open fence");
        assert!(ask.tcp(VIP4, WAIT), "no TCP answer through an open fence");
        // Nothing refreshes the element from here on.
        let (arp, tcp) = sample_until_silent(&mut ask, Duration::from_millis(400));
        for (name, stop) in [("ARP", &arp), ("TCP", &tcp)] {
            let last = ms_after(stop.last_answered, deadline);
            let first = ms_after(stop.first_silent, deadline);
            eprintln!("{name}: last answered {last:+.1} ms, first unanswered {first:+.1} ms from the deadline (tick {tick_ms} ms)");
            // No answer later than 25 ms after the deadline. (The first unanswered probe
            // can come later than that without any late answer: the probes are
            // sequential, and a silent ARP probe waits out its timeout before the TCP
            // probe goes; CI saw TCP last answered at -4.6 ms, first unanswered +27.9 ms.)
            assert!(
                last <= 25.0,
                "{name} still answered {last:.1} ms after the lease deadline"
            );
            // The kernel rounds the timeout down to jiffies and starts it at the current
            // jiffy: up to two ticks (and the millisecond rounding) early, never late.
            assert!(
                first >= -(2.0 * tick_ms + 2.0),
                "{name} stopped {first:.1} ms before the deadline: the fence closed early"
            );
        }
        for _ in 0..5 {
            assert!(!ask.arp(VIP4, WAIT), "ARP answered again after expiry");
            assert!(!ask.tcp(VIP4, WAIT), "TCP answered again after expiry");
        }
        assert!(!fence.is_open(v4()).unwrap());
    });
}

/// Refreshes every 5 ms with a 20 ms timeout for `for_how_long`, on a real-time thread when
/// allowed; returns the longest gap between two refreshes.
fn refresh_loop(fence: &mut Fence, stop: &AtomicBool, for_how_long: Duration) -> Duration {
    let realtime = try_realtime();
    let start = Instant::now();
    let (mut last, mut worst) = (Instant::now(), Duration::ZERO);
    while !stop.load(Ordering::Relaxed) && start.elapsed() < for_how_long {
        fence
            .open_until(v4(), Instant::now() + Duration::from_millis(20))
            .unwrap();
        worst = worst.max(last.elapsed());
        last = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("refresher: real-time {realtime}, longest gap between refreshes {worst:?}");
    worst
}

fn refreshing_keeps_it_open(method: RefreshMethod, tag: &str) {
    let bed = Bed::new(tag, &[v4()]);
    let Some(mut fence) = install_in(&bed.node, &[v4()]) else {
        return;
    };
    fence.set_refresh_method(method);
    let stop = AtomicBool::new(false);
    let (lost_arp, lost_tcp, samples) = std::thread::scope(|s| {
        let refresher = s.spawn(|| refresh_loop(&mut fence, &stop, Duration::from_secs(3)));
        std::thread::sleep(Duration::from_millis(10));
        let counts = in_netns(&bed.peer, || {
            let mut ask = Asker::new(&bed);
            let (mut lost_arp, mut lost_tcp, mut samples) = (0, 0, 0);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(1) {
                lost_arp += u32::from(!ask.arp(VIP4, Duration::from_millis(30)));
                lost_tcp += u32::from(!ask.tcp(VIP4, Duration::from_millis(30)));
                samples += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (lost_arp, lost_tcp, samples)
        });
        stop.store(true, Ordering::Relaxed);
        refresher.join().unwrap();
        counts
    });
    eprintln!("{method:?}: {samples} samples, lost ARP {lost_arp}, lost TCP {lost_tcp}");
    assert!(samples >= 50, "only {samples} samples in a second");
    assert_eq!((lost_arp, lost_tcp), (0, 0), "the refreshed fence closed");
    // And once the refreshing stops, the kernel closes it.
    std::thread::sleep(Duration::from_millis(40));
    assert!(!fence.is_open(v4()).unwrap());
}

#[test]
fn refreshing_in_place_keeps_the_fence_open() {
    let Some(_serial) = ready("refreshing_in_place_keeps_the_fence_open") else {
        return;
    };
    refreshing_keeps_it_open(RefreshMethod::InPlace, "inplace");
}

#[test]
fn refreshing_by_replacement_keeps_the_fence_open() {
    let Some(_serial) = ready("refreshing_by_replacement_keeps_the_fence_open") else {
        return;
    };
    refreshing_keeps_it_open(RefreshMethod::Replace, "replace");
}

#[test]
fn install_replaces_an_existing_table() {
    let Some(_serial) = ready("install_replaces_an_existing_table") else {
        return;
    };
    let (a, b) = (IpAddr::V4(VIP4), IpAddr::V4(VIP4_B));
    let bed = Bed::new("replace", &[a, b]);
    let Some(mut first) = install_in(&bed.node, &[a, b]) else {
        return;
    };
    first
        .open_until(a, Instant::now() + Duration::from_secs(10))
        .unwrap();
    in_netns(&bed.peer, || {
        let mut ask = Asker::new(&bed);
        let wait = Duration::from_millis(50);
        assert!(ask.arp(VIP4, wait) && !ask.arp(VIP4_B, wait));

        // A second install guarding only B: A's rules are gone with the old table, B's
        // fence starts closed.
        let _second = install_in(&bed.node, &[b]).unwrap();
        assert!(ask.arp(VIP4, wait), "A is still fenced: old rules survived");
        assert!(!ask.arp(VIP4_B, wait), "B answered through a fresh fence");
        assert!(!first.is_open(a).unwrap(), "A's lease element survived");

        // A third guarding A again: closed, although the first install opened A for 10 s.
        let _third = install_in(&bed.node, &[a]).unwrap();
        assert!(
            !ask.arp(VIP4, wait),
            "A answered: its old element came back"
        );
        assert!(
            !ask.tcp(VIP4, wait),
            "TCP to A answered: its old element came back"
        );
        assert!(
            ask.arp(VIP4_B, wait),
            "B is still fenced: old rules survived"
        );
    });
    let a = VIP4.to_string();
    let expected = [
        format!("arp operation request arp daddr ip {a} arp daddr ip != @lease4 drop"),
        format!("ip daddr {a} ip daddr != @lease4 drop"),
    ];
    check_nft_listing(&bed.node, &expected, &[VIP4_B.to_string()]);
}

/// What the `nft` tool shows of the table (it must parse what the fence installed): one fence
/// chain holding each of `present` and naming none of `absent`. Skipped without `nft`, except
/// under CI.
fn check_nft_listing(ns: &str, present: &[String], absent: &[String]) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "table", "netdev", "fulcrum",
        ])
        .output();
    let out = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        other => {
            assert!(!fence_bed::ci(), "CI=true: nft list failed: {other:?}");
            eprintln!("SKIPPED nft listing check: {other:?}");
            return;
        }
    };
    eprintln!("{out}");
    assert_eq!(out.matches("chain vip_fence").count(), 1, "{out}");
    assert!(
        out.contains(&format!("hook ingress device \"{IFACE}\"")),
        "{out}"
    );
    for rule in present {
        assert!(out.contains(rule.as_str()), "no {rule:?} in {out}");
    }
    for addr in absent {
        assert!(!out.contains(addr.as_str()), "{out}");
    }
}

#[test]
fn ipv6_vip_is_fenced_for_solicitations_and_packets() {
    let Some(_serial) = ready("ipv6_vip_is_fenced_for_solicitations_and_packets") else {
        return;
    };
    let bed = Bed::new("v6", &[v6()]);
    let Some(mut fence) = install_in(&bed.node, &[v6()]) else {
        return;
    };
    let target = SocketAddr::new(v6(), PORT);
    in_netns(&bed.peer, || {
        let mut ndp = Resolver::ndp(IFACE, bed.peer_mac);
        let wait = Duration::from_millis(100);
        assert!(
            !ndp.ndp_answered(PEER6, VIP6, wait),
            "NA through a closed fence"
        );
        assert!(
            !tcp_answered(target, wait),
            "TCP/IPv6 through a closed fence"
        );

        let deadline = Instant::now() + Duration::from_millis(80);
        fence.open_until(v6(), deadline).unwrap();
        assert!(
            ndp.ndp_answered(PEER6, VIP6, WAIT),
            "no NA through an open fence"
        );
        assert!(
            tcp_answered(target, WAIT),
            "no TCP/IPv6 through an open fence"
        );

        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            !ndp.ndp_answered(PEER6, VIP6, wait),
            "NA after the lease lapsed"
        );
        assert!(
            !tcp_answered(target, wait),
            "TCP/IPv6 after the lease lapsed"
        );
    });
    let expected = [
        format!("ip6 daddr {VIP6} ip6 daddr != @lease6 drop"),
        "icmpv6 type nd-neighbor-solicit".to_string(),
    ];
    check_nft_listing(&bed.node, &expected, &[]);
}

#[test]
fn bad_requests_get_typed_errors() {
    let Some(_serial) = ready("bad_requests_get_typed_errors") else {
        return;
    };
    let bed = Bed::new("errors", &[v4()]);
    let missing = in_netns(&bed.node, || Fence::install("nosuch0", &[v4()]));
    assert!(matches!(missing, Err(VipError::NoSuchInterface { .. })));
    let none = in_netns(&bed.node, || Fence::install(IFACE, &[]));
    assert!(matches!(none, Err(VipError::InvalidOptions(_))));
    let Some(mut fence) = install_in(&bed.node, &[v4()]) else {
        return;
    };
    let other = fence.open_until(v6(), Instant::now() + Duration::from_secs(1));
    assert!(matches!(other, Err(VipError::FenceUnknownAddress { .. })));
    // Less than one kernel tick left: the fence closes instead of opening.
    let soon = Instant::now() + fence.kernel_tick() / 2;
    assert_eq!(fence.open_until(v4(), soon).unwrap(), Duration::ZERO);
    assert!(!fence.is_open(v4()).unwrap());
    fence
        .open_until(v4(), Instant::now() + Duration::from_secs(1))
        .unwrap();
    fence.close(v4()).unwrap();
    assert!(!fence.is_open(v4()).unwrap());
    fence.close(v4()).unwrap(); // absent is fine
}

/// Each refresh with the same lease length must restart the kernel's clock (a kernel that
/// updates in place does so only for a changed timeout or an explicit expiration).
fn every_refresh_restarts_the_clock(method: RefreshMethod, tag: &str) {
    let bed = Bed::new(tag, &[v4()]);
    let Some(mut fence) = install_in(&bed.node, &[v4()]) else {
        return;
    };
    fence.set_refresh_method(method);
    let lease = Duration::from_millis(40);
    // What the kernel may shave off a fresh lease: the millisecond and jiffy rounding and
    // the jiffy already begun when it commits.
    let rounding = fence.kernel_tick() * 2 + Duration::from_millis(1);
    for round in 0..20 {
        let called = Instant::now();
        fence.open_until(v4(), called + lease).unwrap();
        let left = fence
            .expires_in(v4())
            .unwrap()
            .expect("open after a refresh");
        // Time spent since the call (a preempted test thread) is excused; without the
        // refresh restarting the clock, `left` would shrink by the 5 ms pause every round.
        let floor = lease.saturating_sub(rounding + called.elapsed());
        assert!(
            left >= floor,
            "{method:?} round {round}: {left:?} left of a {lease:?} lease, expected at least {floor:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_in_place_refresh_restarts_the_clock() {
    let Some(_serial) = ready("every_in_place_refresh_restarts_the_clock") else {
        return;
    };
    every_refresh_restarts_the_clock(RefreshMethod::InPlace, "clock1");
}

#[test]
fn every_replacing_refresh_restarts_the_clock() {
    let Some(_serial) = ready("every_replacing_refresh_restarts_the_clock") else {
        return;
    };
    every_refresh_restarts_the_clock(RefreshMethod::Replace, "clock2");
}

const UNPRIVILEGED_OK: &str = "FENCE-UNAVAILABLE-AS-EXPECTED";

/// Not a test on its own: started without any capability by
/// `install_without_cap_net_admin_reports_nftables_unavailable`.
#[test]
#[ignore = "helper process for install_without_cap_net_admin_reports_nftables_unavailable"]
fn unprivileged_install() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let capeff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(
        capeff.ends_with("0000000000000000"),
        "still privileged: {capeff}"
    );
    match Fence::install(IFACE, &[v4()]) {
        Err(e @ VipError::NftablesUnavailable { .. }) => {
            assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
            println!("{UNPRIVILEGED_OK}: {e}");
        }
        Err(e) => panic!("wrong error without CAP_NET_ADMIN: {e}"),
        Ok(_) => panic!("installed a fence without CAP_NET_ADMIN"),
    }
}

#[test]
fn install_without_cap_net_admin_reports_nftables_unavailable() {
    let test = "install_without_cap_net_admin_reports_nftables_unavailable";
    let Some(_serial) = ready(test) else {
        return;
    };
    let bed = Bed::new("nocap", &[v4()]);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &bed.node, "setpriv"])
        .args([
            "--bounding-set",
            "-all",
            "--inh-caps",
            "-all",
            "--ambient-caps",
            "-all",
        ])
        .arg(exe)
        .args([
            "--exact",
            "unprivileged_install",
            "--ignored",
            "--nocapture",
        ])
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            assert!(!fence_bed::ci(), "CI=true: cannot run setpriv: {e}");
            eprintln!("SKIPPED {test}: cannot run setpriv: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(UNPRIVILEGED_OK),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{}",
        stdout
            .lines()
            .find(|l| l.contains(UNPRIVILEGED_OK))
            .unwrap_or("")
    );
}

#[test]
fn uninstall_and_remove_fence_leave_no_table() {
    let Some(_serial) = ready("uninstall_and_remove_fence_leave_no_table") else {
        return;
    };
    let bed = Bed::new("teardown", &[v4(), v6()]);
    let Some(mut fence) = install_in(&bed.node, &[v4(), v6()]) else {
        return;
    };
    fence
        .open_all_until(Instant::now() + Duration::from_secs(10))
        .unwrap();
    assert!(in_netns(&bed.node, fence_installed).unwrap());
    fence.uninstall().unwrap();
    assert!(
        !in_netns(&bed.node, fence_installed).unwrap(),
        "uninstall left the table behind"
    );
    assert!(
        !in_netns(&bed.node, remove_fence).unwrap(),
        "remove_fence found a table after uninstall"
    );

    // A fence dropped without uninstalling stays (it must outlive its process); a later
    // cleanup removes it.
    let dropped = install_in(&bed.node, &[v4()]).unwrap();
    drop(dropped);
    assert!(in_netns(&bed.node, fence_installed).unwrap());
    in_netns(&bed.peer, || {
        let mut ask = Asker::new(&bed);
        let wait = Duration::from_millis(50);
        assert!(!ask.arp(VIP4, wait), "the dropped fence stopped fencing");
        assert!(in_netns(&bed.node, remove_fence).unwrap());
        assert!(ask.arp(VIP4, wait), "ARP still dropped after remove_fence");
        assert!(ask.tcp(VIP4, wait), "TCP still dropped after remove_fence");
    });
    assert!(!in_netns(&bed.node, fence_installed).unwrap());
    assert!(!in_netns(&bed.node, remove_fence).unwrap());
}
