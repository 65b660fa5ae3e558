//! Synthetic stories of the four convergence scenarios (`scenarios/heal.rs`), for the
//! checks' own tests: the timeline each script plays and what the observers would see
//! when everything goes as it should. `Story::noop` drops every change, as
//! `--noop-fault` does.

use super::synth::{Story, NODES};
use super::Fault;

const N1: Option<usize> = Some(0);
const N2: Option<usize> = Some(1);

/// A good run of a heal scenario.
pub fn good(scenario: &str) -> Story {
    match scenario {
        "restart-two-recover" => restart_two_recover(),
        "partition-flap" => partition_flap(),
        "port-busy" => port_busy(),
        "large-configs" => large_configs(),
        other => panic!("no story for {other}"),
    }
}

fn backend(s: Story, t_ms: f64, down: bool) -> Story {
    let (fault, allow) = if down {
        (Fault::BackendDown, 2500.0)
    } else {
        (Fault::BackendUp, 0.0)
    };
    s.event(t_ms, fault, None, allow, false)
        .tag(|e| e.backend_down = Some(("b1".into(), down)))
}

/// b1 goes down; n2 (a follower) then n1 (the leader) are killed, so n3 alone has no
/// quorum and nobody serves; b1 recovers while they are down; both restart, n1 wins the
/// election again, and the restarted observers readmit b1.
fn restart_two_recover() -> Story {
    let s = backend(Story::new(14_000.0), 1500.0, true)
        .event(3500.0, Fault::Kill, N2, 6000.0, false)
        .event(3501.0, Fault::Kill, N1, 6000.0, true);
    backend(s, 4500.0, false)
        .event(6000.0, Fault::Start, N2, 6000.0, false)
        .event(6001.0, Fault::Start, N1, 6000.0, false)
        .at(1500.0, |w| w.b1_down = true)
        .at(2100.0, |w| w.unhealthy = 1)
        .at(3500.0, |w| w.answering[1] = false)
        .at(3501.0, |w| {
            w.answering[0] = false;
            w.leader = [false; NODES];
            w.lease = [false; NODES];
            w.outage = true;
        })
        // The killed holder's kernel keeps the (fenced) address until its lifetime ends.
        .at(5500.0, |w| w.holds[0] = false)
        .at(6400.0, |w| {
            w.answering[0] = true;
            w.answering[1] = true;
        })
        .at(7000.0, |w| {
            w.leader[0] = true;
            w.lease[0] = true;
            w.holds[0] = true;
            w.outage = false;
            w.term = 2;
        })
        .at(7400.0, |w| w.unhealthy = 0)
}

/// n2 (a follower) is cut off from Raft while b1 flaps, ending down; n1 and n3 commit
/// each verdict and n2's commit index stands still until the heal.
fn partition_flap() -> Story {
    let mut s = Story::new(13_000.0).event(3000.0, Fault::Partition, N2, 0.0, false);
    for (k, at) in [3300.0, 4300.0, 5300.0, 6300.0, 7300.0]
        .into_iter()
        .enumerate()
    {
        s = backend(s, at, k % 2 == 0);
    }
    let mut s = s
        .event(9000.0, Fault::Heal, N2, 0.0, false)
        .at(3300.0, |w| w.b1_down = true);
    for (k, at) in [3900.0, 4900.0, 5900.0, 6900.0, 7900.0]
        .into_iter()
        .enumerate()
    {
        let commit = 12 + 2 * k as u64;
        s = s.at(at, |w| {
            w.unhealthy = usize::from(k % 2 == 0);
            w.commit[0] = commit;
            w.commit[2] = commit;
        });
    }
    s.at(9100.0, |w| w.commit[1] = w.commit[0])
}

/// Port 8081 is taken on n2; a config with a listener on it is committed through n2,
/// which reports it cannot apply version 2 until the port is freed.
fn port_busy() -> Story {
    let mut s = Story::new(11_000.0)
        .event(1500.0, Fault::PortBusy, N2, 0.0, false)
        .event(3000.0, Fault::ConfigPut, N2, 0.0, false)
        .event(6000.0, Fault::PortFree, N2, 0.0, false)
        .at(3100.0, |w| {
            w.version = [2, 1, 2];
            w.apply_error[1] = Some(2);
        })
        .at(6500.0, |w| {
            w.version = [2; NODES];
            w.apply_error[1] = None;
        });
    s.min_config_version = Some(2);
    s
}

/// n2 (a follower) is killed, six large configs are committed through n1, n2 restarts
/// and catches up.
fn large_configs() -> Story {
    let mut s = Story::new(16_000.0).event(3000.0, Fault::Kill, N2, 0.0, false);
    for k in 0..6 {
        s = s.event(3500.0 + 100.0 * k as f64, Fault::ConfigPut, N1, 0.0, false);
    }
    let mut s = s
        .event(8000.0, Fault::Start, N2, 0.0, false)
        .at(3000.0, |w| w.answering[1] = false)
        .at(4200.0, |w| w.version = [7, 1, 7])
        .at(8400.0, |w| w.answering[1] = true)
        .at(8800.0, |w| w.version = [7; NODES]);
    s.min_config_version = Some(7);
    s
}
