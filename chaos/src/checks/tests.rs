//! The checks' own tests: for every scenario, a synthetic run where all went well must
//! pass, the same timeline with a fault that did nothing must fail on a premise, and the
//! good run judged against a wrong expectation must fail. Plus the "not measured" paths.

use super::synth::{good, Story, NODES};
use super::*;
use crate::scenarios::plan::plan;
use crate::scenarios::{ALL, HEAL};

/// Every scenario: the thirteen of `all` and the four convergence ones.
fn every() -> impl Iterator<Item = &'static str> {
    ALL.iter().chain(HEAL).copied()
}

fn judge(rec: &Recording, plan: &Plan) -> Vec<Check> {
    evaluate(&Inputs {
        rec,
        plan,
        poll_ms: 20.0,
        timeout_ms: 1000.0,
    })
}

/// The check `name` of `rec` judged as a run of `scenario`.
fn judged(rec: &Recording, scenario: &str, name: &str) -> Check {
    judge(rec, &plan(scenario, false))
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{scenario} has no check {name:?}"))
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
    for name in every() {
        let checks = judge(&good(name).render(), &plan(name, false));
        assert!(failed(&checks).is_empty(), "{name}: {:#?}", failed(&checks));
    }
}

#[test]
fn a_noop_fault_fails_every_scenario_on_a_premise() {
    for name in every() {
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
    for name in every() {
        let rec = good(name).render();
        for other in every().filter(|o| *o != name) {
            // The three backend scenarios share one plan: they cannot tell each other apart.
            // A node death (link down + kill -9) includes a process kill: it may pass as
            // kill-leader (not the other way round: kill-leader's node answers on the wire).
            // A heal scenario contains a simpler one (not the other way round): large-configs
            // kills a follower, port-busy changes the config through a follower,
            // partition-flap faults a backend.
            let twins = (name.starts_with("backend-") && other.starts_with("backend-"))
                || (name == "crash-node-leader" && other == "kill-leader")
                || (name == "large-configs" && other == "kill-follower")
                || (name == "port-busy" && other == "config-change")
                || (name == "partition-flap" && other.starts_with("backend-"));
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
    fn leads(fault: Fault) -> Vec<Premise> {
        vec![Premise::Leads {
            fault,
            which: Which::Every,
        }]
    }
    let cases: [Tightening; 10] = [
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
        // Two of three nodes down: the outage lasts until both are back.
        (
            "restart-two-recover",
            |p| p.expect.max_failover_ms = 1000.0,
            "VIP failover",
        ),
        (
            "partition-flap",
            |p| p.premises = leads(Fault::Partition),
            "premise: partition hits the leader and VIP holder",
        ),
        (
            "port-busy",
            |p| p.premises = leads(Fault::PortBusy),
            "premise: port taken hits the leader and VIP holder",
        ),
        (
            "large-configs",
            |p| p.premises = leads(Fault::Kill),
            "premise: kill hits the leader and VIP holder",
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

/// A partition of a follower cannot be proven from its role ("not leader" holds either
/// way): a follower that stayed in step (rules that matched nothing) fails the premise.
#[test]
fn a_partitioned_follower_does_not_prove_that_the_partition_bit() {
    let story = Story::new(13_000.0)
        .event(3000.0, Fault::Partition, Some(1), 2000.0, false)
        .event(8000.0, Fault::Heal, Some(1), 1000.0, false);
    let premise = judged(
        &story.render(),
        "partition-leader",
        "premise: partition takes effect",
    );
    assert!(!premise.pass, "{}", premise.figure);
    assert!(
        premise.figure.contains("no other node committed past"),
        "{}",
        premise.figure
    );
}

fn partition_effect(story: Story) -> Check {
    judged(
        &story.render(),
        "partition-flap",
        "premise: partition takes effect",
    )
}

/// partition-flap: the cut-off follower's commit index must stand still while the others
/// commit; one that keeps up heard the leader, so the partition did not bite.
#[test]
fn a_partitioned_follower_must_fall_behind() {
    let c = partition_effect(good("partition-flap"));
    assert!(c.pass, "{}", c.figure);
    assert!(c.figure.contains("stayed at 10"), "{}", c.figure);
    // n2 keeps up with every commit: the rules matched nothing.
    let mut story = good("partition-flap");
    for at in [3950.0, 4950.0, 5950.0, 6950.0, 7950.0] {
        story = story.at(at, |w| w.commit[1] = w.commit[0]);
    }
    let c = partition_effect(story);
    assert!(
        !c.pass && c.figure.contains("it still heard the leader"),
        "{}",
        c.figure
    );
    // Nothing committed during the partition: its stillness proves nothing.
    let c = partition_effect(
        Story::new(13_000.0)
            .event(3000.0, Fault::Partition, Some(1), 0.0, false)
            .event(9000.0, Fault::Heal, Some(1), 0.0, false),
    );
    assert!(
        !c.pass && c.figure.contains("nothing shows the partition bit"),
        "{}",
        c.figure
    );
    // The target did not answer /status during the partition: no evidence.
    let mut rec = good("partition-flap").render();
    for s in rec.statuses.iter_mut().filter(|s| s.t_ms > 3000.0) {
        s.nodes[1] = None;
    }
    let c = judged(&rec, "partition-flap", "premise: partition takes effect");
    assert!(!c.pass && c.figure.contains("need 5"), "{}", c.figure);
}

fn port_effect(story: Story) -> Check {
    judged(
        &story.render(),
        "port-busy",
        "premise: port taken takes effect",
    )
}

/// port-busy: the busy node must report an apply error for an address in use; a config
/// that every node applied at once (the port was free) or an error of another kind
/// proves nothing about the port.
#[test]
fn a_taken_port_must_show_as_the_nodes_apply_error() {
    let c = port_effect(good("port-busy"));
    assert!(c.pass && c.figure.contains("in use"), "{}", c.figure);
    let free = good("port-busy").at(3100.0, |w| {
        w.version = [2; NODES];
        w.apply_error = [None; NODES];
    });
    let rec = free.render();
    let checks = judge(&rec, &plan("port-busy", false));
    let get = |n: &str| checks.iter().find(|c| c.name == n).expect(n).clone();
    let c = get("premise: port taken takes effect");
    assert!(
        !c.pass && c.figure.contains("never reported"),
        "{}",
        c.figure
    );
    // The config itself went through: only the port premise catches the free port.
    assert!(get("premise: config change takes effect").pass);
    // An apply error for the version it already runs is not the new config failing.
    let stale = good("port-busy").at(3100.0, |w| w.version = [2; NODES]);
    assert!(!port_effect(stale).pass);
    // An error of another kind (a certificate not deployed) is not a taken port.
    let mut rec = good("port-busy").render();
    for s in &mut rec.statuses {
        if let Some(Some(n)) = s.nodes.get_mut(1) {
            if let Some(e) = &mut n.apply_error {
                e.reason = "tls: reading /etc/fulcrum/new.pem: No such file".into();
            }
        }
    }
    let c = judged(&rec, "port-busy", "premise: port taken takes effect");
    assert!(!c.pass, "{}", c.figure);
}

fn dual_check(rec: &Recording) -> Check {
    judged(rec, "kill-leader", "dual VIP holders")
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
    let c = judged(&rec, "freeze-leader", "dual VIP holders");
    assert!(!c.pass, "{}", c.figure);
    assert!(
        c.figure.contains("netlink:") && c.figure.contains("wire:"),
        "{}",
        c.figure
    );
}

#[test]
fn a_dual_wire_sample_is_described_answer_by_answer() {
    use super::{AnswerKind, WireAnswer};
    let mut rec = good("kill-leader").render();
    let Probed::Samples(w) = &mut rec.wire else {
        panic!("the synthetic recording has wire samples");
    };
    // The first sample in which two nodes answer (the killed one's zombie address).
    let s = w
        .iter_mut()
        .find(|s| s.tcp.iter().filter(|t| **t).count() >= 2)
        .expect("a dual sample");
    s.syn_sent_us = vec![20, 35, 50];
    s.answers = vec![
        WireAnswer {
            node: 0,
            kind: AnswerKind::SynAck,
            after_us: 310,
        },
        WireAnswer {
            node: 1,
            kind: AnswerKind::Rst,
            after_us: 2900,
        },
    ];
    let c = dual_check(&rec);
    assert!(
        c.figure
            .contains(": n1 syn-ack +0.31 ms, n2 rst +2.90 ms (SYNs sent n1 +0.02, n2 +0.04"),
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
    let c = judged(&rec, "kill-leader", "affinity breaks");
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
    let c = judged(
        &rec,
        "kill-leader",
        "premise: load through the fault window",
    );
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

/// Requests lost right after a stall in which the host took a CPU away are that
/// stall's doing; after a stall of the guest's own (no steal) or far from any stall they
/// are lost.
#[test]
fn only_a_host_stall_excuses_requests_lost_near_it() {
    let lost_with = |stall: Option<HostStall>| {
        let mut rec = good("kill-leader").render();
        for s in rec.samples.iter_mut().filter(|s| s.t_ms == 11_000.0) {
            s.status = None;
            s.error = Some("timeout after 1000 ms".into());
        }
        rec.host_stalls = stall.into_iter().collect();
        judged(&rec, "kill-leader", "requests lost")
    };
    let stall = |t_ms, steal_ms| HostStall {
        t_ms,
        cpu: 1,
        late_ms: 100.0,
        steal_ms,
    };
    let c = lost_with(Some(stall(10_950.0, 100.0)));
    assert!(c.pass, "{}", c.figure);
    assert!(
        c.figure.contains("1 more in host stalls' windows"),
        "{}",
        c.figure
    );
    for other in [
        None,
        Some(stall(10_950.0, 0.0)),
        Some(stall(5_000.0, 100.0)),
    ] {
        let c = lost_with(other);
        assert!(!c.pass, "{}", c.figure);
        assert_eq!(c.value, Some(1.0));
    }
}

/// A `/status` round that started while n1 was frozen but got n1's answer only after
/// the resume says nothing about the freeze; one that finished before it does.
#[test]
fn an_answer_after_the_resume_does_not_disprove_the_freeze() {
    let effect = |rec: &Recording| judged(rec, "freeze-leader", "premise: freeze takes effect");
    let mut rec = good("freeze-leader").render();
    let late = rec
        .statuses
        .iter_mut()
        .rev()
        .find(|s| s.t_ms < 6000.0)
        .expect("a round before the resume");
    late.done_ms = 6100.0;
    late.nodes[0] = late.nodes[1].clone();
    let c = effect(&rec);
    assert!(c.pass, "{}", c.figure);
    let late = rec
        .statuses
        .iter_mut()
        .rev()
        .find(|s| s.t_ms < 6000.0)
        .expect("a round before the resume");
    late.done_ms = 5990.0;
    let c = effect(&rec);
    assert!(
        !c.pass && c.figure.contains("still answered"),
        "{}",
        c.figure
    );
}

/// crash-node-leader: a node whose link stayed up (it answered on the wire) did not die
/// in silence.
#[test]
fn a_node_death_without_silence_fails() {
    let mut rec = good("crash-node-leader").render();
    if let Probed::Samples(w) = &mut rec.wire {
        for s in w.iter_mut().filter(|s| s.t_ms > 3000.0 && s.t_ms < 5000.0) {
            s.tcp[0] = true;
        }
    }
    let c = judged(&rec, "crash-node-leader", "premise: link down takes effect");
    assert!(
        !c.pass && c.figure.contains("still answered"),
        "{}",
        c.figure
    );
}

fn steady_check(story: Story) -> Check {
    judged(&story.render(), "cpu-hog", "steady leadership and VIP")
}

#[test]
fn cpu_hog_fails_on_a_leader_change_or_a_vip_flap() {
    let c = steady_check(super::synth::cpu_hog());
    assert!(c.pass, "{}", c.figure);
    // A new election that n1 wins again: same leader, new term.
    let c = steady_check(super::synth::cpu_hog().at(20_000.0, |w| w.term = 2));
    assert!(
        !c.pass && c.figure.contains("1 term changes"),
        "{}",
        c.figure
    );
    // The lease lapses for 40 ms: the VIP is dropped and retaken, no leader change.
    let c = steady_check(
        super::synth::cpu_hog()
            .at(30_000.0, |w| w.holds[0] = false)
            .at(30_040.0, |w| w.holds[0] = true),
    );
    assert!(!c.pass && c.figure.contains("2 VIP moves"), "{}", c.figure);
    // Leadership moves to n2.
    let c = steady_check(super::synth::cpu_hog().at(40_000.0, |w| {
        w.leader = [false, true, false];
        w.holds = [false, true, false];
    }));
    assert!(
        !c.pass && c.figure.contains("1 leader changes"),
        "{}",
        c.figure
    );
}

#[test]
fn cpu_hog_needs_more_processes_than_cores_and_a_busy_machine() {
    let premise = |cpu: CpuUse| {
        let mut rec = super::synth::cpu_hog().render();
        if let Some(e) = rec.events.iter_mut().find(|e| e.fault == Fault::HogOn) {
            e.cpu = Some(cpu);
        }
        judged(&rec, "cpu-hog", "premise: cpu hog takes effect")
    };
    let good = CpuUse {
        procs: 6,
        cores: 2,
        hog_pct: 80.0,
        idle_pct: 0.5,
    };
    assert!(premise(good).pass);
    for bad in [
        CpuUse { procs: 2, ..good },
        CpuUse {
            hog_pct: 5.0,
            ..good
        },
        CpuUse {
            idle_pct: 40.0,
            ..good
        },
    ] {
        let c = premise(bad);
        assert!(
            !c.pass && c.figure.starts_with("premise not met"),
            "{}",
            c.figure
        );
    }
}

#[test]
fn a_stopping_holder_may_keep_its_fenced_address_only_while_the_wire_proves_it_silent() {
    let rolling = |rec: &Recording| judged(rec, "rolling-restart", "dual VIP holders");
    // The old holder (n1) keeps its address for 60 ms after n2 claimed (8050 ms), for
    // the connections it accepted; it answers nothing new (the wire sees only n2).
    let mut kept = good("rolling-restart").render();
    if let Probed::Samples(s) = &mut kept.holders {
        for sample in s.iter_mut().filter(|s| s.t_ms > 8050.0 && s.t_ms < 8110.0) {
            sample.holders[0] = Some(true);
        }
    }
    let c = rolling(&kept);
    assert!(c.pass, "{}", c.figure);
    assert!(c.figure.contains("netlink: 60 ms overlap"), "{}", c.figure);

    // The same, but the old holder also answered on the wire: two holders.
    let mut answered = kept.clone();
    if let Probed::Samples(w) = &mut answered.wire {
        for s in w.iter_mut().filter(|s| s.t_ms > 8050.0 && s.t_ms < 8110.0) {
            s.tcp[0] = true;
        }
    }
    let c = rolling(&answered);
    assert!(!c.pass, "{}", c.figure);

    // Without the wire view nothing proves the kept address silent: held to 0 ms.
    let mut unseen = kept.clone();
    unseen.wire = Probed::Unavailable("no wire probe".into());
    let c = rolling(&unseen);
    assert!(!c.pass, "{}", c.figure);
}
