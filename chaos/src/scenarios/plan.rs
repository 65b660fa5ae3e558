//! What each scenario is judged against, in one table: how long the load runs, the
//! bounds of its figures, how much data a verdict needs, and its premises (the evidence
//! that the fault hit the right node and took effect).

use crate::checks::{Enough, Expect, Fault, Plan, Premise, Which};

/// The leader lease of the generated configs (the config default, `cluster.lease`).
const LEASE_MS: f64 = 140.0;
/// The guard's tick and the netlink delete on top of the lease before the VIP is gone.
const RELEASE_SLACK_MS: f64 = 50.0;

/// Data a verdict needs by default (at the default 100 requests/s and 20 ms sampling).
const ENOUGH: Enough = Enough {
    load: [100, 100, 100],
    max_send_gap_ms: 500.0,
    pinned: 200,
    pinned_after_fault: 50,
    holder_share: 0.5,
    max_unknown_share: 0.05,
};

/// How long cpu-hog saturates the CPU in the checks' own tests (`--hog-secs` default).
#[cfg(test)]
pub const DEFAULT_HOG_MS: u64 = 60_000;
/// cpu-hog: the hog starts this long after the load, and the load runs this long after it.
pub const HOG_MARGIN_MS: u64 = 3_000;

/// The plan of scenario `name` (`strict`: `fencing = "strict"` in the configs), with the
/// default hog length (the checks' own tests).
#[cfg(test)]
pub fn plan(name: &str, strict: bool) -> Plan {
    plan_for(name, strict, DEFAULT_HOG_MS)
}

/// The plan of scenario `name`; cpu-hog saturates the CPU for `hog_ms`.
pub fn plan_for(name: &str, strict: bool, hog_ms: u64) -> Plan {
    let (mut load_ms, expect) = bounds(name, strict);
    if name == "cpu-hog" {
        load_ms = hog_ms + 2 * HOG_MARGIN_MS;
    }
    Plan {
        load_ms,
        expect,
        enough: ENOUGH,
        premises: premises(name, &expect),
        steady_during: (name == "cpu-hog").then_some(Fault::HogOn),
    }
}

/// The premises of each scenario.
fn premises(name: &str, expect: &Expect) -> Vec<Premise> {
    use Premise::*;
    let every = Which::Every;
    let leads = |fault: Fault, which: Which| Leads { fault, which };
    let follows = |fault: Fault, which: Which| Follows { fault, which };
    let moves = |after: Fault, which: Which| NewLeaderAndHolder {
        after,
        which,
        within_ms: expect.max_failover_ms,
    };
    match name {
        "kill-leader" => vec![
            leads(Fault::Kill, every),
            TakesEffect(Fault::Kill),
            moves(Fault::Kill, every),
        ],
        // Node death: the link goes down first (peers hear silence), then kill -9.
        "crash-node-leader" => vec![
            leads(Fault::LinkDown, every),
            TakesEffect(Fault::LinkDown),
            TakesEffect(Fault::Kill),
            moves(Fault::LinkDown, every),
        ],
        "cpu-hog" => vec![TakesEffect(Fault::HogOn)],
        "kill-follower" => vec![follows(Fault::Kill, every), TakesEffect(Fault::Kill)],
        "freeze-leader" => vec![
            leads(Fault::Freeze, every),
            TakesEffect(Fault::Freeze),
            moves(Fault::Freeze, every),
        ],
        "partition-leader" => vec![
            leads(Fault::Partition, every),
            TakesEffect(Fault::Partition),
            Releases {
                after: Fault::Partition,
                within_ms: LEASE_MS + RELEASE_SLACK_MS,
            },
            moves(Fault::Partition, every),
        ],
        "netem" => vec![leads(Fault::NetemOn, every), TakesEffect(Fault::NetemOn)],
        "redis-down" => vec![TakesEffect(Fault::RedisDown)],
        "backend-kill" | "backend-hang" | "backend-500" => vec![TakesEffect(Fault::BackendDown)],
        "rolling-restart" => vec![
            follows(Fault::Stop, Which::AllButLast),
            leads(Fault::Stop, Which::Last),
            TakesEffect(Fault::Stop),
            moves(Fault::Stop, Which::Last),
        ],
        "config-change" => vec![
            follows(Fault::ConfigPut, every),
            TakesEffect(Fault::ConfigPut),
        ],
        // Convergence scenarios (scenarios/heal.rs). restart-two-recover kills the
        // follower first; after both restart any node may lead again (the old leader
        // often does), so no "another node holds" premise: the VIP failover figure and the
        // convergence check judge the recovery.
        "restart-two-recover" => vec![
            follows(Fault::Kill, Which::AllButLast),
            leads(Fault::Kill, Which::Last),
            TakesEffect(Fault::Kill),
            TakesEffect(Fault::BackendDown),
        ],
        // The follower's partition shows as its commit index standing still while the
        // others commit the backend's flaps.
        "partition-flap" => vec![
            follows(Fault::Partition, every),
            TakesEffect(Fault::Partition),
            TakesEffect(Fault::BackendDown),
        ],
        // The taken port shows as the busy node's apply error; the config reaches every
        // node once the port is free.
        "port-busy" => vec![
            follows(Fault::PortBusy, every),
            TakesEffect(Fault::PortBusy),
            follows(Fault::ConfigPut, every),
            TakesEffect(Fault::ConfigPut),
        ],
        // The configs committed while the follower was down reach every node.
        "large-configs" => vec![
            follows(Fault::Kill, every),
            TakesEffect(Fault::Kill),
            TakesEffect(Fault::ConfigPut),
        ],
        _ => Vec::new(),
    }
}

/// The longest a holder's address can outlive its last renewal, in ms: the chaos configs'
/// VIP lifetime (the default, 2 s) plus the kernel's expiry slack.
const ADDRESS_OUTLIVES_MS: f64 = 2000.0 + fulcrum_vip::KERNEL_EXPIRY_SLACK.as_millis() as f64;

/// Load length and bounds of a scenario.
fn bounds(name: &str, strict: bool) -> (u64, Expect) {
    let base = Expect {
        min_availability_pct: 99.0,
        max_outage_ms: 1000.0,
        max_failover_ms: 2000.0,
        max_dual_ms: 0.0,
        kept_address_ms: 0.0,
    };
    // Strict fencing: a new leader first waits out the longest the old holder's address can
    // outlive its last renewal (lifetime 2 s + the kernel's expiry slack 1 s + 0.1 s), then
    // its announcements must reach the client (bursts at 0, 0.25 and 0.6 s).
    let failover = if strict {
        let wait = ADDRESS_OUTLIVES_MS + 100.0;
        Expect {
            min_availability_pct: 60.0,
            max_outage_ms: wait + 1400.0,
            max_failover_ms: wait + 1400.0,
            ..base
        }
    } else {
        Expect {
            min_availability_pct: 90.0,
            max_outage_ms: 2000.0,
            ..base
        }
    };
    let backend = Expect {
        min_availability_pct: 85.0,
        max_outage_ms: 2500.0,
        ..base
    };
    // Fast fencing: a new leader claims at once while a killed or frozen holder's kernel
    // keeps the address (fenced: it answers nothing) until its lifetime runs out and the
    // kernel's next lifetime check removes it; plus two holder polls. Strict: never two.
    let zombie_dual_ms = if strict {
        0.0
    } else {
        ADDRESS_OUTLIVES_MS + 40.0
    };
    match name {
        "kill-leader" | "crash-node-leader" => (
            12_000,
            Expect {
                max_dual_ms: zombie_dual_ms,
                ..failover
            },
        ),
        "freeze-leader" => (
            11_000,
            Expect {
                max_dual_ms: zombie_dual_ms,
                max_outage_ms: failover.max_outage_ms.max(3000.0),
                max_failover_ms: failover.max_failover_ms.max(3000.0),
                ..failover
            },
        ),
        "partition-leader" => (13_000, failover),
        "netem" => (
            12_000,
            Expect {
                min_availability_pct: 85.0,
                max_outage_ms: 2500.0,
                ..base
            },
        ),
        "backend-kill" | "backend-hang" | "backend-500" => (12_000, backend),
        // A planned stop hands leadership over first: the window must stay small. The
        // stopping holder keeps its fenced address (forwarding new packets to the
        // successor) until the connections it accepted are done: at most its
        // `shutdown_grace` (2 s in the chaos configs) plus two holder polls.
        "rolling-restart" => (
            18_000,
            Expect {
                max_failover_ms: 1000.0,
                min_availability_pct: 90.0,
                kept_address_ms: 2000.0 + 40.0,
                ..failover
            },
        ),
        "config-change" => (8_000, base),
        // Two of three nodes down: no quorum, no VIP until they are back (~3 s), on top
        // of a backend fault.
        "restart-two-recover" => (
            14_000,
            Expect {
                min_availability_pct: 60.0,
                max_outage_ms: 6000.0,
                max_failover_ms: 6000.0,
                max_dual_ms: zombie_dual_ms,
                kept_address_ms: 0.0,
            },
        ),
        "partition-flap" => (13_000, backend),
        "port-busy" => (11_000, base),
        "large-configs" => (16_000, base),
        _ => (11_000, base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::ALL;

    #[test]
    fn every_scenario_declares_premises() {
        for name in ALL.iter().chain(crate::scenarios::HEAL) {
            let p = plan(name, false);
            assert!(!p.premises.is_empty(), "{name} has no premise");
            assert!(
                p.premises
                    .iter()
                    .any(|p| matches!(p, Premise::TakesEffect(_))),
                "{name} never checks that its fault took effect"
            );
        }
    }
}
