//! Several VIPs (`[[vip]]`, issue 18): `fulcrum ctl drain-node` is committed through Raft,
//! so it survives a restart. Three real fulcrum nodes in network namespaces, one address
//! each. A follower is drained (its address moves to another node), then stopped with
//! SIGTERM and started again: it comes back drained (`/status` `node_drained`), and through
//! several rebalancing hold-downs it is given no address while the other two hold all three.
//! `undrain-node` gives it one again. Before the drain was replicated, the restarted node
//! came back undrained and took an address after one hold-down (3 s). An ARP prober asks
//! "who has" every address every ~20 ms throughout: never two answers. Needs root.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::arp_watch::{mac_bytes, ArpWatch};
use fulcrum_tests::spreadbed::{holders, one_each, start_one_each, wait_for, wait_until};
use std::time::{Duration, Instant};

/// How long the restarted node is watched: two hold-downs (3 s each) and a margin, time
/// enough for the leader to give it an address if it counted it undrained.
const WATCH_DRAINED: Duration = Duration::from_secs(8);

#[test]
fn a_drained_node_stays_drained_across_a_restart_until_undrained() {
    if !can_run("a_drained_node_stays_drained_across_a_restart_until_undrained") {
        return;
    }
    let (mut c, _, first) = start_one_each("spr");
    let all = [0, 1, 2];
    let drained = (first + 1) % 3;
    let watch = ArpWatch::start(&c, mac_bytes(&c.bed.mac("cl")));

    let (ok, out) = c.ctl(drained, &["drain-node"]);
    assert!(ok, "drain-node failed: {out}");
    let holds_none = |h: &[Vec<usize>; 3]| h.iter().all(|v| v.len() == 1 && v[0] != drained);
    wait_for(
        &c,
        &all,
        Duration::from_secs(5),
        "the drained node's address moves",
        holds_none,
    );

    c.signal(drained, nix::sys::signal::Signal::SIGTERM);
    assert!(
        c.wait_exit(drained, Duration::from_secs(20)),
        "node {} did not exit after SIGTERM",
        drained + 1
    );
    let restarted_at = Instant::now();
    c.start_node(drained);
    let back = wait_until(Duration::from_secs(20), || {
        c.status(drained)
            .is_some_and(|s| s["role"] == "follower" && s["leader_id"].is_u64())
    });
    assert!(back, "restarted node {} never followed", drained + 1);
    let following = restarted_at.elapsed();
    let s = c.status(drained).expect("status");
    assert_eq!(s["node_drained"], true, "restarted node forgot its drain");

    // Every sample: the restarted node holds nothing, the others hold all three.
    let end = Instant::now() + WATCH_DRAINED;
    let mut samples = 0;
    while Instant::now() < end {
        let h = holders(&c, &all);
        assert!(
            holds_none(&h),
            "restarted drained node {} was given an address {} ms after its start: {h:?}",
            drained + 1,
            restarted_at.elapsed().as_millis()
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }

    let undrain_at = Instant::now();
    let (ok, out) = c.ctl(drained, &["undrain-node"]);
    assert!(ok, "undrain-node failed: {out}");
    wait_for(
        &c,
        &all,
        Duration::from_secs(20),
        "one each again after the undrain",
        |h| one_each(h, 3),
    );
    let rebalanced = undrain_at.elapsed();
    assert_eq!(c.status(drained).expect("status")["node_drained"], false);
    watch.finish_and_check();
    eprintln!(
        "node {} drained, SIGTERM + start: following {} ms after the start, no address in \
         {samples} samples over {} ms; undrain: one each again {} ms later",
        drained + 1,
        following.as_millis(),
        WATCH_DRAINED.as_millis(),
        rebalanced.as_millis()
    );
}
