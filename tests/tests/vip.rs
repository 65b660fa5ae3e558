//! The floating VIP across three real fulcrum nodes in network namespaces: failover on
//! kill -9 and SIGTERM, partitions, frozen leaders, ARP, and never two holders where
//! DESIGN.md forbids it. Needs root; skipped (with a message) otherwise.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::vipbed::{
    node_namespaces, outage_after, AnnounceWatcher, HolderPoller, Prober, VipCluster,
};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(20);

#[test]
fn kill9_of_the_leader_moves_the_vip_within_two_seconds() {
    if !can_run("kill9_of_the_leader_moves_the_vip_within_two_seconds") {
        return;
    }
    let mut c = VipCluster::start("k", "fast", "2s");
    let mut windows = Vec::new();
    for run in 0..3 {
        let leader = c
            .wait_holder(SETTLE)
            .unwrap_or_else(|| panic!("no VIP holder (run {run}); log:\n{}", c.log(0)));
        let prober = Prober::start(&c.bed, Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(500));
        let killed_at = prober.started.elapsed();
        c.kill9(leader);
        let new = c.wait_holder(Duration::from_secs(5)).expect("a new holder");
        std::thread::sleep(Duration::from_millis(1500));
        let probes = prober.finish();
        let early: Vec<_> = probes
            .iter()
            .filter(|p| p.done < killed_at && !p.ok)
            .map(|p| p.at.as_millis())
            .collect();
        assert!(
            early.is_empty(),
            "requests failed before the kill (at {early:?} ms, kill at {} ms); nodes:\n{}",
            killed_at.as_millis(),
            c.failover_debug()
        );
        let window = outage_after(&probes, killed_at);
        eprintln!(
            "run {run}: kill -9 of node {} -> node {} holds the VIP; client outage {window} ms",
            leader + 1,
            new + 1
        );
        assert!(window < 2000, "outage {window} ms");
        assert!(
            probes.last().is_some_and(|p| p.ok),
            "VIP does not answer after the move; new holder's log:\n{}",
            c.log(new)
        );
        // The client's ARP entry follows the new holder (gratuitous ARP).
        assert_eq!(
            c.client_arp_mac(),
            c.node_mac(new),
            "client ARP entry still points elsewhere"
        );
        windows.push(window);
        c.start_node(leader);
        std::thread::sleep(Duration::from_secs(2));
    }
    windows.sort();
    eprintln!(
        "kill -9 failover windows (ms): {windows:?}, median {}",
        windows[1]
    );
}

#[test]
fn sigterm_of_the_leader_hands_the_vip_over_quickly() {
    if !can_run("sigterm_of_the_leader_hands_the_vip_over_quickly") {
        return;
    }
    let mut c = VipCluster::start("t", "fast", "2s");
    let leader = c.wait_holder(SETTLE).expect("holder");
    let poller = HolderPoller::start(node_namespaces(&c.bed), Duration::from_secs(15));
    let prober = Prober::start(&c.bed, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    let at = prober.started.elapsed();
    c.signal(leader, Signal::SIGTERM);
    assert!(
        c.wait_exit(leader, Duration::from_secs(10)),
        "node did not exit after SIGTERM"
    );
    let new = c.wait_holder(Duration::from_secs(5)).expect("new holder");
    std::thread::sleep(Duration::from_millis(1000));
    let probes = prober.finish();
    let (max_holders, _) = poller.finish();
    let window = outage_after(&probes, at);
    eprintln!(
        "SIGTERM of node {} -> node {}; client outage {window} ms (target < 300 ms)",
        leader + 1,
        new + 1
    );
    assert!(window < 1000, "planned hand-over took {window} ms");
    assert_eq!(
        max_holders, 1,
        "two nodes held the VIP during a planned hand-over"
    );
}

#[test]
fn a_partitioned_leader_drops_the_vip_and_nobody_shares_it() {
    if !can_run("a_partitioned_leader_drops_the_vip_and_nobody_shares_it") {
        return;
    }
    let c = VipCluster::start("p", "fast", "2s");
    let leader = c.wait_holder(SETTLE).expect("holder");
    let poller = HolderPoller::start(node_namespaces(&c.bed), Duration::from_secs(20));
    let prober = Prober::start(&c.bed, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let cut = Instant::now();
    c.partition(leader);
    // The old leader must let go within its lease (plus renew/netlink slack).
    while c.holders_now().contains(&leader) && cut.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let released = cut.elapsed();
    assert!(
        !c.holders_now().contains(&leader),
        "isolated leader still holds the VIP"
    );
    let new = c.wait_holder(Duration::from_secs(5)).expect("a new holder");
    assert_ne!(new, leader);
    eprintln!(
        "partition: old leader released after {released:?}, node {} took over after {:?}",
        new + 1,
        cut.elapsed()
    );
    // Heal: the client must be served within 1 s, whoever ends up leader.
    let healed = prober.started.elapsed();
    c.heal(leader);
    std::thread::sleep(Duration::from_secs(3));
    let probes = prober.finish();
    let (max_holders, overlap) = poller.finish();
    assert_eq!(max_holders, 1, "two holders at once (overlap {overlap:?})");
    let after_heal = outage_after(&probes, healed + Duration::from_millis(1000));
    assert_eq!(
        after_heal, 0,
        "client not served again within 1 s of the heal"
    );
}

fn freeze_leader(fencing: &str, lifetime: &str) -> (usize, Duration) {
    let c = VipCluster::start(
        if fencing == "strict" { "s" } else { "f" },
        fencing,
        lifetime,
    );
    let leader = c.wait_holder(SETTLE).expect("holder");
    let poller = HolderPoller::start(node_namespaces(&c.bed), Duration::from_secs(20));
    // Every announcement of the VIP on the client's segment, frame by frame.
    let watcher = AnnounceWatcher::start(&c.bed, Duration::from_millis(5500));
    let watch_started = Instant::now();
    c.signal(leader, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    let new = c.wait_holder(Duration::from_secs(5));
    let resumed_at = watch_started.elapsed();
    c.signal(leader, Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    let announced = watcher.finish();
    let old_mac = c.node_mac(leader);
    // The watcher works: the new holder's announcements were seen.
    assert!(
        announced.iter().any(|(_, mac)| *mac != old_mac),
        "no announcement of the new holder seen on the wire: {announced:?}"
    );
    // The resumed node must not re-announce without a fresh lease.
    let late: Vec<_> = announced
        .iter()
        .filter(|(at, mac)| *mac == old_mac && *at >= resumed_at)
        .collect();
    assert!(
        late.is_empty(),
        "the resumed old leader announced the VIP on the wire: {late:?} (resumed at {resumed_at:?})"
    );
    let holders = c.holders_now();
    let result = poller.finish();
    eprintln!(
        "{fencing}: SIGSTOP node {} for 3 s -> holder {:?}; max holders {}, longest overlap {:?}",
        leader + 1,
        new.map(|n| n + 1),
        result.0,
        result.1
    );
    assert!(
        new.is_some_and(|n| n != leader),
        "another node must take the VIP from a frozen leader"
    );
    assert_eq!(
        holders.len(),
        1,
        "after SIGCONT exactly one holder: {holders:?}"
    );
    assert!(
        !holders.contains(&leader),
        "the resumed old leader took the VIP back without a fresh lease"
    );
    result
}

#[test]
fn a_frozen_leader_never_shares_the_vip_in_strict_mode() {
    if !can_run("a_frozen_leader_never_shares_the_vip_in_strict_mode") {
        return;
    }
    let (max_holders, overlap) = freeze_leader("strict", "1s");
    assert_eq!(
        max_holders, 1,
        "strict fencing: two holders for {overlap:?}"
    );
}

#[test]
fn a_frozen_leader_overlaps_at_most_the_kernel_lifetime_in_fast_mode() {
    if !can_run("a_frozen_leader_overlaps_at_most_the_kernel_lifetime_in_fast_mode") {
        return;
    }
    let (_, overlap) = freeze_leader("fast", "1s");
    assert!(
        overlap <= Duration::from_millis(1500),
        "fast fencing overlap {overlap:?} exceeds the 1 s lifetime"
    );
}

/// Opens `per_node` unauthenticated connections to every node's Raft port from the client
/// namespace, again and again (a host on the LAN holding the peer port's slots), until
/// `stop` is set or `limit` passes. Returns how many connects were started.
fn flood_raft_ports(
    c: &VipCluster,
    per_node: usize,
    limit: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::OwnedFd;
    c.bed.in_ns("cl", move || {
        let started = Instant::now();
        let mut batches: std::collections::VecDeque<Vec<OwnedFd>> = Default::default();
        let mut opened = 0;
        while started.elapsed() < limit && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let mut batch = Vec::with_capacity(per_node * 3);
            for node in 0..3u8 {
                let addr = SockaddrIn::new(10, 77, 70, 11 + node, 7946);
                for _ in 0..per_node {
                    let Ok(fd) = socket(
                        AddressFamily::Inet,
                        SockType::Stream,
                        SockFlag::SOCK_NONBLOCK,
                        None,
                    ) else {
                        break;
                    };
                    // EINPROGRESS is the expected answer of a non-blocking connect.
                    let _ = connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr);
                    batch.push(fd);
                    opened += 1;
                }
            }
            batches.push_back(batch);
            // Hold two rounds of connections (about 400 ms) before letting the oldest go.
            if batches.len() > 2 {
                batches.pop_front();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        opened
    })
}

#[test]
fn a_connection_flood_on_the_raft_port_does_not_stop_a_failover() {
    if !can_run("a_connection_flood_on_the_raft_port_does_not_stop_a_failover") {
        return;
    }
    // Enough descriptors for the flood (3 nodes x 300 connections x 2 rounds held).
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let mut c = VipCluster::start("d", "fast", "2s");
    let leader = c.wait_holder(SETTLE).expect("holder");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = flood_raft_ports(&c, 300, Duration::from_secs(15), stop.clone());
    // Let the flood fill whatever slots it can before the leader dies.
    std::thread::sleep(Duration::from_millis(1500));
    let prober = Prober::start(&c.bed, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = prober.started.elapsed();
    c.kill9(leader);
    let new = c.wait_holder(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1000));
    let probes = prober.finish();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let opened = flood.join().unwrap_or(0);
    let window = outage_after(&probes, killed_at);
    eprintln!(
        "flood of {opened} connections to the Raft ports; kill -9 of node {} -> holder {:?}, outage {window} ms",
        leader + 1,
        new.map(|n| n + 1)
    );
    assert!(opened >= 900, "the flood did not run ({opened} connects)");
    assert!(
        new.is_some_and(|n| n != leader),
        "no new holder while the Raft ports were flooded; log:\n{}",
        c.log((leader + 1) % 3)
    );
    assert!(window < 2000, "outage {window} ms under the flood");
}

/// A planned stop loses nothing (issue 21): a client opening a new connection every
/// 2 ms through three SIGTERMs of the holder gets an answer every time. Before the
/// bridged hand-over the old holder closed its fence at the vote grant, several ms before
/// the successor claimed, and the SYNs sent in between were dropped (1 s until the retry,
/// beyond the probe's 300 ms budget): about three failed probes per hand-off.
///
/// Fails on the bridged hand-over of 2cb5eb7-d32c8e6 in about half its runs (a HandOver
/// answered after the old lease ran out, a forwarded SYN dropped before the successor's
/// claim, a connection accepted while the old holder listed its connections, or reset once
/// its client moved to the successor's MAC); 7 of 7 passed after those were fixed
/// (issue 21, session 8).
#[test]
fn sigterm_hand_overs_lose_no_request() {
    if !can_run("sigterm_hand_overs_lose_no_request") {
        return;
    }
    let mut c = VipCluster::start("z", "fast", "2s");
    for round in 0..3 {
        let leader = c
            .wait_holder(SETTLE)
            .unwrap_or_else(|| panic!("no VIP holder (round {round}); log:\n{}", c.log(0)));
        let prober = Prober::start_every(&c.bed, Duration::from_secs(15), Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(300));
        let at = prober.started.elapsed();
        c.signal(leader, Signal::SIGTERM);
        assert!(
            c.wait_exit(leader, Duration::from_secs(10)),
            "node {} did not exit after SIGTERM",
            leader + 1
        );
        let new = c.wait_holder(Duration::from_secs(5)).expect("a new holder");
        std::thread::sleep(Duration::from_millis(500));
        let probes = prober.finish();
        let failed: Vec<(i128, i128, String)> = probes
            .iter()
            .filter(|p| !p.ok)
            .map(|p| {
                let after = |d: Duration| d.as_micros() as i128 - at.as_micros() as i128;
                (
                    after(p.at),
                    after(p.done),
                    p.failure.clone().unwrap_or_default(),
                )
            })
            .collect();
        let sent = probes.len();
        eprintln!(
            "round {round}: SIGTERM of node {} ({}) -> node {} ({}); {sent} probes, failed (started, ended µs after the SIGTERM, why): {failed:?}",
            leader + 1,
            c.node_mac(leader),
            new + 1,
            c.node_mac(new)
        );
        assert!(sent > 200, "only {sent} probes: the client did not keep up");
        assert!(
            failed.is_empty(),
            "round {round}: {} of {sent} requests failed around the hand-over (started, ended µs \
             after the SIGTERM, why: {failed:?}); nodes:\n{}\nold holder's log:\n{}\nnew holder's log:\n{}",
            failed.len(),
            c.failover_debug(),
            c.log(leader),
            c.log(new)
        );
        c.start_node(leader);
        std::thread::sleep(Duration::from_secs(2));
    }
}
