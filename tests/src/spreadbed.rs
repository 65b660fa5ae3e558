//! The three-address `[[vip]]` bed (issue 18): the VIP test bed's single `[vip]` turned
//! into three spread addresses, and who holds each as the nodes themselves report it.

use crate::vipbed::{Probe, Prober, VipCluster};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The three spread addresses, in `[[vip]]` order.
pub const SPREAD: [&str; 3] = ["10.77.70.101", "10.77.70.102", "10.77.70.103"];

/// The test bed's `[vip]` block becomes three `[[vip]]` entries.
pub fn spread(text: String) -> String {
    crate::vipbed::as_spread(text, &SPREAD)
}

/// Which node each address is held by, from the nodes' own `/status` (`vips[].held_here`)
/// and the address in their namespace; `None` for an address held by none or several.
pub fn holders(c: &VipCluster, alive: &[usize]) -> [Vec<usize>; 3] {
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
pub fn wait_for(
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

pub fn one_each(h: &[Vec<usize>; 3], nodes: usize) -> bool {
    let owners: BTreeSet<usize> = h.iter().flatten().copied().collect();
    h.iter().all(|v| v.len() == 1) && owners.len() == nodes.min(3)
}

/// The node that reports itself leader, waiting up to `within`.
pub fn leader(c: &VipCluster, alive: &[usize], within: Duration) -> Option<usize> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let found = alive
            .iter()
            .copied()
            .find(|&i| c.status(i).is_some_and(|s| s["role"] == "leader"));
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Polls `ok` every 50 ms until it holds (true) or `within` passed (false).
pub fn wait_until(within: Duration, ok: impl Fn() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Three nodes with the three addresses (namespaces tagged `tag`), once each holds one:
/// the cluster, who holds which address, and the leader.
pub fn start_one_each(tag: &str) -> (VipCluster, [Vec<usize>; 3], usize) {
    let c = VipCluster::start_with(tag, "fast", "2s", spread);
    let all = [0, 1, 2];
    let h = wait_for(&c, &all, Duration::from_secs(30), "one VIP per node", |h| {
        one_each(h, 3)
    });
    let first = leader(&c, &all, Duration::from_secs(5)).expect("a leader");
    (c, h, first)
}

/// One prober per address: `GET /` on a new connection every 20 ms (300 ms budget), for
/// at most `limit`.
pub fn probe_every_address(c: &VipCluster, limit: Duration) -> Vec<Prober> {
    SPREAD
        .iter()
        .map(|a| {
            let vip = a.parse().expect("address");
            Prober::start_to(&c.bed, vip, limit, Duration::from_millis(20))
        })
        .collect()
}

/// Asserts that every address got more than `least` probes and that none failed; `when`
/// names the events for the message.
pub fn assert_none_failed(results: &[Vec<Probe>], least: usize, when: &str) {
    for (j, probes) in results.iter().enumerate() {
        assert!(
            probes.len() > least,
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
            "{}: {} of {} requests failed ({when}): {:?}",
            SPREAD[j],
            failed.len(),
            probes.len(),
            &failed[..failed.len().min(5)]
        );
    }
}

/// The index of the one address `node` holds in `h`.
pub fn address_of(h: &[Vec<usize>; 3], node: usize) -> usize {
    h.iter()
        .position(|v| v == &vec![node])
        .unwrap_or_else(|| panic!("node {} holds no address alone: {h:?}", node + 1))
}
