//! Several VIPs (`[[vip]]`, issue 18) under a partition: three real fulcrum nodes in network
//! namespaces, one address each. A node cut off from the other two (nftables drops its Raft
//! and VIP-lease traffic; clients still reach it) must stop answering for its address within
//! one grant, and the majority must take the address over; after the heal the address comes
//! back without a second holder. Done for a follower, then for the leader. Throughout, the
//! client asks "who has" every address every ~20 ms and no address may ever be answered by
//! two nodes. Needs root; skipped (with a message) otherwise.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::arp_watch::{mac_bytes, ArpWatch};
use fulcrum_tests::spreadbed::{leader, one_each, spread, wait_for, SPREAD};
use fulcrum_tests::vipbed::VipCluster;
use std::time::Duration;

/// Longest a cut-off node may keep answering: one grant (300 ms) plus a renewal and the
/// ARP prober's period, with room for a loaded CI host.
const RELEASE_BOUND: Duration = Duration::from_millis(1000);

/// Partitions `victim`, checks its address moves, heals, waits for one each again.
/// Returns (released after, taken over after) in ms since the partition.
fn partition_and_heal(c: &VipCluster, watch: &ArpWatch, victim: usize) -> (u128, u128) {
    let all = [0, 1, 2];
    let h = wait_for(c, &all, Duration::from_secs(30), "one VIP per node", |h| {
        one_each(h, 3)
    });
    let k = h
        .iter()
        .position(|v| v == &vec![victim])
        .expect("the victim holds an address");
    let victim_mac = c.node_mac(victim);
    std::thread::sleep(Duration::from_millis(300));
    let cut_at = watch.now();
    c.partition(victim);
    let majority: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let after = wait_for(
        c,
        &majority,
        Duration::from_secs(5),
        "the majority takes the cut-off node's address",
        |h| h.iter().all(|v| v.len() == 1),
    );
    let new = after[k][0];
    std::thread::sleep(Duration::from_millis(300));
    let taken = watch
        .first_answer_by(k, &c.node_mac(new), cut_at)
        .expect("the new holder answers ARP");
    let released = watch
        .last_answer_by(k, &victim_mac, cut_at, watch.now())
        .map_or(Duration::ZERO, |t| t - cut_at);
    assert!(
        released < RELEASE_BOUND,
        "the cut-off node {} answered for {} until {} ms after the partition",
        victim + 1,
        SPREAD[k],
        released.as_millis()
    );
    // Still cut off, it must stay silent for every address.
    for (j, address) in SPREAD.iter().enumerate() {
        assert!(
            watch
                .last_answer_by(j, &victim_mac, cut_at + RELEASE_BOUND, watch.now())
                .is_none(),
            "the cut-off node answered for {address} after the release bound"
        );
    }
    c.heal(victim);
    let healed = watch.now();
    let back = wait_for(
        c,
        &all,
        Duration::from_secs(30),
        "one each again after the heal",
        |h| one_each(h, 3),
    );
    eprintln!(
        "partition of node {}: {} last answered by it {} ms after the cut, by node {} {} ms \
         after; heal: one each again ({back:?}) {} ms after it",
        victim + 1,
        SPREAD[k],
        released.as_millis(),
        new + 1,
        (taken - cut_at).as_millis(),
        (watch.now() - healed).as_millis()
    );
    (released.as_millis(), (taken - cut_at).as_millis())
}

#[test]
fn a_cut_off_node_releases_its_vip_the_majority_takes_it_and_nobody_shares_it() {
    if !can_run("a_cut_off_node_releases_its_vip_the_majority_takes_it_and_nobody_shares_it") {
        return;
    }
    let c = VipCluster::start_with("spp", "fast", "2s", spread);
    let all = [0, 1, 2];
    wait_for(&c, &all, Duration::from_secs(30), "one VIP per node", |h| {
        one_each(h, 3)
    });
    let watch = ArpWatch::start(&c, mac_bytes(&c.bed.mac("cl")));
    let first = leader(&c, &all, Duration::from_secs(5)).expect("a leader");
    let follower = (first + 1) % 3;
    partition_and_heal(&c, &watch, follower);
    let now_leading = leader(&c, &all, Duration::from_secs(5)).expect("a leader");
    partition_and_heal(&c, &watch, now_leading);
    std::thread::sleep(Duration::from_millis(300));
    watch.finish_and_check();
}
