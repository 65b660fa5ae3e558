//! The checks' own tests: for every scenario, a synthetic run where all went well must
//! pass, the same timeline with a fault that did nothing must fail on a premise, and the
//! good run judged against a wrong expectation must fail. Plus the "not measured" paths.

use super::synth::{good, Story};
use super::*;
use crate::scenarios::plan::plan;
use crate::scenarios::ALL;

fn judge(rec: &Recording, plan: &Plan) -> Vec<Check> {
    evaluate(&Inputs {
        rec,
        plan,
        poll_ms: 20.0,
        timeout_ms: 1000.0,
    })
}

fn failed(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| format!("{}: {}", c.name, c.figure))
        .collect()
}

#[test]
fn a_good_run_of_every_scenario_passes() {
    for name in ALL {
        let checks = judge(&good(name).render(), &plan(name, false));
        assert!(failed(&checks).is_empty(), "{name}: {:#?}", failed(&checks));
    }
}

#[test]
fn a_noop_fault_fails_every_scenario_on_a_premise() {
    for name in ALL {
        let checks = judge(&good(name).noop().render(), &plan(name, false));
        let premise = checks
            .iter()
            .find(|c| !c.pass && c.name.starts_with("premise:"));
        let Some(premise) = premise else {
            panic!(
                "{name}: a no-op fault passed its premises: {:#?}",
                failed(&checks)
            );
        };
        assert!(
            premise.figure.starts_with("premise not met:"),
            "{name}: {}",
            premise.figure
        );
    }
}

#[test]
fn a_good_run_judged_against_another_scenario_fails() {
    for name in ALL {
        let rec = good(name).render();
        for other in ALL.iter().filter(|o| **o != *name) {
            // The three backend scenarios share one plan: they cannot tell each other apart.
            let twins = name.starts_with("backend-") && other.starts_with("backend-");
            if twins {
                continue;
            }
            let checks = judge(&rec, &plan(other, false));
            assert!(
                !failed(&checks).is_empty(),
                "a {name} run passed as {other}"
            );
        }
    }
}

/// A scenario, how to tighten its plan, and the check that must then fail.
type Tightening = (&'static str, fn(&mut Plan), &'static str);

/// A good run against bounds it does not meet: each must fail on the bound it breaks.
#[test]
fn a_good_run_against_a_tighter_bound_fails() {
    let cases: [Tightening; 6] = [
        (
            "kill-leader",
            |p| p.expect.max_failover_ms = 100.0,
            "VIP failover",
        ),
        (
            "kill-leader",
            |p| p.expect.max_dual_ms = 0.0,
            "dual VIP holders",
        ),
        (
            "freeze-leader",
            |p| p.expect.max_dual_ms = 0.0,
            "dual VIP holders",
        ),
        (
            "partition-leader",
            |p| {
                p.premises = vec![Premise::Releases {
                    after: Fault::Partition,
                    within_ms: 50.0,
                }]
            },
            "premise: the partition target drops the VIP within its lease",
        ),
        ("netem", |p| p.expect.max_outage_ms = -1.0, "longest outage"),
        (
            "rolling-restart",
            |p| p.enough.load = [10_000, 0, 0],
            "premise: load through the fault window",
        ),
    ];
    for (name, tighten, check) in cases {
        let mut p = plan(name, false);
        tighten(&mut p);
        let checks = judge(&good(name).render(), &p);
        let c = checks.iter().find(|c| c.name == check).expect(check);
        assert!(!c.pass, "{name}: {check} passed: {}", c.figure);
    }
}

/// kill-leader where the kill hit a follower: nothing moved, and the checks say why.
#[test]
fn killing_the_wrong_node_fails_kill_leader() {
    let story = Story::new(12_000.0)
        .event(3000.0, Fault::Kill, Some(1), 2000.0, true)
        .event(7000.0, Fault::Start, Some(1), 0.0, false)
        .at(3000.0, |w| w.answering[1] = false)
        .at(7000.0, |w| w.answering[1] = true);
    let checks = judge(&story.render(), &plan("kill-leader", false));
    let names: Vec<&str> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        names.contains(&"premise: kill hits the leader and VIP holder"),
        "{names:?}"
    );
    assert!(
        names.contains(&"premise: another node leads and holds after the kill"),
        "{names:?}"
    );
}

/// The old leader keeps the VIP through the partition (it never lost its lease): the
/// lease and release premises fail even though a new holder appears.
#[test]
fn a_partitioned_leader_that_keeps_the_vip_fails() {
    let story = Story::new(13_000.0)
        .event(3000.0, Fault::Partition, Some(0), 2000.0, true)
        .event(8000.0, Fault::Heal, Some(0), 1000.0, true)
        .at(3500.0, |w| {
            w.leader[1] = true;
            w.lease[1] = true;
            w.holds[1] = true;
        })
        .at(8000.0, |w| {
            w.leader[0] = false;
            w.holds[0] = false;
        });
    let checks = judge(&story.render(), &plan("partition-leader", false));
    let failing = failed(&checks);
    for want in [
        "premise: partition takes effect",
        "premise: the partition target drops the VIP within its lease",
        "dual VIP holders",
    ] {
        assert!(
            failing.iter().any(|f| f.starts_with(want)),
            "{want}: {failing:#?}"
        );
    }
}

fn dual_check(rec: &Recording) -> Check {
    let p = plan("kill-leader", false);
    judge(rec, &p)
        .into_iter()
        .find(|c| c.name == "dual VIP holders")
        .expect("dual check")
}

#[test]
fn the_dual_holder_check_needs_live_trustworthy_samples() {
    let mut rec = good("kill-leader").render();
    assert!(dual_check(&rec).pass);
    rec.holders = Probed::Died("the poller thread panicked".into());
    let c = dual_check(&rec);
    assert!(!c.pass && c.figure.contains("died"), "{}", c.figure);

    rec.holders = Probed::Samples(Vec::new());
    let c = dual_check(&rec);
    assert!(
        !c.pass && c.figure.starts_with("not measured"),
        "{}",
        c.figure
    );

    rec.holders = Probed::Unavailable("no vip_check".into());
    assert!(!dual_check(&rec).pass);

    // Failed probes are unknown, not "not holding": too many of them and nothing is said.
    let mut rec = good("kill-leader").render();
    if let Probed::Samples(s) = &mut rec.holders {
        for (k, sample) in s.iter_mut().enumerate() {
            if k % 4 == 0 {
                sample.holders[1] = None;
            }
        }
    }
    let c = dual_check(&rec);
    assert!(
        !c.pass && c.figure.contains("probes failed"),
        "{}",
        c.figure
    );

    // Nobody ever holding the VIP is no proof of "never two".
    let mut rec = good("kill-leader").render();
    if let Probed::Samples(s) = &mut rec.holders {
        s.iter_mut().for_each(|x| x.holders = vec![Some(false); 3]);
    }
    let c = dual_check(&rec);
    assert!(!c.pass && c.figure.contains("nobody held"), "{}", c.figure);
}

#[test]
fn the_wire_view_catches_what_netlink_misses() {
    // A resumed node that answers ARP for 10 ms after SIGCONT without the address in
    // the netlink view (e.g. a fence that lags): the wire sees two holders.
    let mut rec = good("freeze-leader").render();
    if let Probed::Samples(w) = &mut rec.wire {
        for s in w.iter_mut().filter(|s| s.t_ms > 6000.0 && s.t_ms < 6030.0) {
            s.arp[0] = true;
        }
    }
    let c = judge(&rec, &plan("freeze-leader", false))
        .into_iter()
        .find(|c| c.name == "dual VIP holders")
        .expect("dual check");
    assert!(!c.pass, "{}", c.figure);
    assert!(
        c.figure.contains("netlink:") && c.figure.contains("wire:"),
        "{}",
        c.figure
    );
}

#[test]
fn affinity_needs_pinned_requests() {
    let mut rec = good("kill-leader").render();
    for s in &mut rec.samples {
        s.had_cookie = false;
    }
    let c = judge(&rec, &plan("kill-leader", false))
        .into_iter()
        .find(|c| c.name == "affinity breaks")
        .expect("affinity");
    assert!(
        !c.pass && c.figure.starts_with("not measured"),
        "{}",
        c.figure
    );
}

#[test]
fn a_stalled_load_fails_coverage() {
    let mut rec = good("kill-leader").render();
    rec.samples.retain(|s| s.t_ms < 3500.0 || s.t_ms > 4500.0);
    let c = judge(&rec, &plan("kill-leader", false))
        .into_iter()
        .find(|c| c.name == "premise: load through the fault window")
        .expect("coverage");
    assert!(!c.pass && c.figure.contains("send gap"), "{}", c.figure);
}

#[test]
fn outage_failover_and_lost() {
    let mut rec = good("kill-leader").render();
    // A blip long after the fault window is a lost request.
    for s in rec.samples.iter_mut().filter(|s| s.t_ms == 11_000.0) {
        s.status = None;
        s.error = Some("connect: refused".into());
    }
    let checks = judge(&rec, &plan("kill-leader", false));
    let get = |n: &str| checks.iter().find(|c| c.name == n).expect(n).clone();
    assert_eq!(get("longest outage").value, Some(450.0));
    assert_eq!(get("VIP failover").value, Some(450.0));
    let lost = get("requests lost");
    assert_eq!(lost.value, Some(1.0));
    assert!(!lost.pass);
}
