//! Several VIPs (`[[vip]]`, issue 18): `fulcrum ctl drain-node` is make before break. Three
//! real fulcrum nodes in network namespaces, one address each, a client sending `GET /` to
//! every address on a new connection every 20 ms (300 ms budget each, so a SYN dropped once
//! and retried after the kernel's 1 s fails). Draining a follower moves its address to
//! another node with zero failed requests: the new owner stages, the drained node hands over
//! (forwarding what still reaches it), then the new owner claims. `undrain-node` and the
//! rebalancing move back after the hold-down lose nothing either. The client also asks "who
//! has" every address every ~20 ms: never two answers. Needs root; skipped otherwise.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::arp_watch::{mac_bytes, ArpWatch};
use fulcrum_tests::spreadbed::{
    address_of, assert_none_failed, one_each, probe_every_address, start_one_each, wait_for, SPREAD,
};
use fulcrum_tests::vipbed::Prober;
use std::time::Duration;

#[test]
fn drain_and_undrain_move_addresses_with_zero_failed_requests() {
    if !can_run("drain_and_undrain_move_addresses_with_zero_failed_requests") {
        return;
    }
    let (c, h, first) = start_one_each("spd");
    let all = [0, 1, 2];
    let drained = (first + 1) % 3;
    let k = address_of(&h, drained);
    let watch = ArpWatch::start(&c, mac_bytes(&c.bed.mac("cl")));
    let probers = probe_every_address(&c, Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(500));

    let drain_at = watch.now();
    let (ok, out) = c.ctl(drained, &["drain-node"]);
    assert!(ok, "drain-node failed: {out}");
    let after = wait_for(
        &c,
        &all,
        Duration::from_secs(5),
        "the drained node's address moves",
        |h| h.iter().all(|v| v.len() == 1 && v[0] != drained),
    );
    let new = after[k][0];
    std::thread::sleep(Duration::from_millis(500));
    let moved = watch
        .first_answer_by(k, &c.node_mac(new), drain_at)
        .expect("the new holder answers ARP");

    let undrain_at = watch.now();
    let (ok, out) = c.ctl(drained, &["undrain-node"]);
    assert!(ok, "undrain-node failed: {out}");
    let back = wait_for(
        &c,
        &all,
        Duration::from_secs(20),
        "one each again after the undrain",
        |h| one_each(h, 3),
    );
    let back_at = watch.now();
    std::thread::sleep(Duration::from_millis(500));

    let results: Vec<_> = probers.into_iter().map(Prober::finish).collect();
    watch.finish_and_check();
    eprintln!(
        "drain-node of node {}: {} answered by node {} {} ms after the command; undrain: one \
         each again ({back:?}) {} ms after it; probes per address: {:?}",
        drained + 1,
        SPREAD[k],
        new + 1,
        (moved - drain_at).as_millis(),
        (back_at - undrain_at).as_millis(),
        results.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let when = format!(
        "drain at {} ms, undrain at {} ms",
        drain_at.as_millis(),
        undrain_at.as_millis()
    );
    assert_none_failed(&results, 100, &when);
}
