//! Several VIPs (`[[vip]]`, issue 18): SIGTERM of a node holding one of three addresses is
//! make before break, like the planned stop of the single `[vip]`. Three real fulcrum nodes
//! in network namespaces, one address each; a client sends `GET /` to every address on a
//! new connection every 20 ms (300 ms budget each, so a SYN dropped once and retried after
//! the kernel's 1 s fails) and asks "who has" every address by ARP every ~20 ms. A follower
//! is stopped with SIGTERM: before it stops serving it drains, the leader stages its
//! address on another node, it hands over (forwarding what still reaches it) and the new
//! owner claims. Zero requests fail on any address, and no ARP request for any address is
//! answered by two nodes, nor by none. Needs root; skipped otherwise.

use fulcrum_testbed::netns::can_run;
use fulcrum_tests::arp_watch::{mac_bytes, ArpWatch};
use fulcrum_tests::spreadbed::{
    address_of, assert_none_failed, probe_every_address, start_one_each, wait_for, SPREAD,
};
use fulcrum_tests::vipbed::Prober;
use std::time::Duration;

#[test]
fn sigterm_of_a_holder_moves_its_address_with_zero_failed_requests() {
    if !can_run("sigterm_of_a_holder_moves_its_address_with_zero_failed_requests") {
        return;
    }
    let (mut c, h, first) = start_one_each("sps");
    let all = [0, 1, 2];
    let stopped = (first + 1) % 3;
    let k = address_of(&h, stopped);
    let watch = ArpWatch::start(&c, mac_bytes(&c.bed.mac("cl")));
    let probers = probe_every_address(&c, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1000));

    let term_at = watch.now();
    c.signal(stopped, nix::sys::signal::Signal::SIGTERM);
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != stopped).collect();
    let after = wait_for(
        &c,
        &survivors,
        Duration::from_secs(5),
        "the stopped node's address moves",
        |h| h.iter().all(|v| v.len() == 1),
    );
    let new = after[k][0];
    assert!(
        c.wait_exit(stopped, Duration::from_secs(20)),
        "node {} did not exit after SIGTERM",
        stopped + 1
    );
    let exited_at = watch.now();
    std::thread::sleep(Duration::from_millis(1000));

    let results: Vec<_> = probers.into_iter().map(Prober::finish).collect();
    let watch = watch.finish();
    let moved = watch
        .first_answer_by(k, &c.node_mac(new), term_at)
        .expect("the new holder answers ARP");
    let doubles = watch.doubles();
    let silent: Vec<Vec<Duration>> = (0..3).map(|j| watch.unanswered(j, term_at)).collect();
    let asked: Vec<usize> = (0..3).map(|j| watch.asked(j, term_at)).collect();
    eprintln!(
        "SIGTERM of node {} (follower): {} answered by node {} {} ms after the signal, node \
         exited {} ms after it; ARP requests after the signal per address {asked:?}, \
         unanswered {:?}; probes per address: {:?}",
        stopped + 1,
        SPREAD[k],
        new + 1,
        (moved - term_at).as_millis(),
        (exited_at - term_at).as_millis(),
        silent.iter().map(Vec::len).collect::<Vec<_>>(),
        results.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        doubles.is_empty(),
        "an address answered from two MACs: {:?}",
        &doubles[..doubles.len().min(5)]
    );
    for (j, silent) in silent.iter().enumerate() {
        assert!(
            silent.is_empty(),
            "{}: {} ARP requests unanswered after the signal, at {:?}",
            SPREAD[j],
            silent.len(),
            &silent[..silent.len().min(5)]
        );
    }
    let when = format!("SIGTERM at {} ms", term_at.as_millis());
    assert_none_failed(&results, 60, &when);
}
