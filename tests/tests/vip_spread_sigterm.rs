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
use fulcrum_tests::spreadbed::{leader, one_each, spread, wait_for, SPREAD};
use fulcrum_tests::vipbed::{Prober, VipCluster};
use std::time::Duration;

#[test]
fn sigterm_of_a_holder_moves_its_address_with_zero_failed_requests() {
    if !can_run("sigterm_of_a_holder_moves_its_address_with_zero_failed_requests") {
        return;
    }
    let mut c = VipCluster::start_with("sps", "fast", "2s", spread);
    let all = [0, 1, 2];
    let h = wait_for(&c, &all, Duration::from_secs(30), "one VIP per node", |h| {
        one_each(h, 3)
    });
    let first = leader(&c, &all, Duration::from_secs(5)).expect("a leader");
    let stopped = (first + 1) % 3;
    let k = h
        .iter()
        .position(|v| v == &vec![stopped])
        .expect("the stopped node's address");
    let watch = ArpWatch::start(&c, mac_bytes(&c.bed.mac("cl")));
    let probers: Vec<Prober> = SPREAD
        .iter()
        .map(|a| {
            let vip = a.parse().expect("address");
            Prober::start_to(
                &c.bed,
                vip,
                Duration::from_secs(30),
                Duration::from_millis(20),
            )
        })
        .collect();
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
    for (j, probes) in results.iter().enumerate() {
        assert!(
            silent[j].is_empty(),
            "{}: {} ARP requests unanswered after the signal, at {:?}",
            SPREAD[j],
            silent[j].len(),
            &silent[j][..silent[j].len().min(5)]
        );
        assert!(
            probes.len() > 60,
            "{}: only {} probes, the client did not keep up",
            SPREAD[j],
            probes.len()
        );
        let failed: Vec<String> = probes
            .iter()
            .filter(|p| !p.ok)
            .map(|p| format!("{} ms: {:?}", p.at.as_millis(), p.failure))
            .collect();
        assert!(
            failed.is_empty(),
            "{}: {} of {} requests failed (SIGTERM at {} ms): {:?}",
            SPREAD[j],
            failed.len(),
            probes.len(),
            term_at.as_millis(),
            &failed[..failed.len().min(5)]
        );
    }
}
