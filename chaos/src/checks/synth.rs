//! Synthetic recordings for the checks' own tests: a small story per scenario (the fault
//! timeline and how the cluster's state changes), rendered into what the observers would
//! have recorded: load samples every 10 ms, holder and wire samples every 20 ms, `/status`
//! rounds every 100 ms. The no-op variant keeps the timeline and drops every change.

use super::{
    CpuUse, Event, Fault, HolderSample, NodeEnd, Probed, Recording, StatusSample, WireSample,
};
use crate::faults::{ApplyError, NodeStatus};
use crate::host_stalls::HostStall;
use fulcrum_testbed::load::Sample;

pub const NODES: usize = 3;
const USERS: usize = 50;
/// What a node with a taken port reports as its apply error (as a real run printed it).
pub const PORT_IN_USE: &str =
    "listener web2: cannot bind 0.0.0.0:8081: Address already in use (os error 98)";

/// The cluster as the observers see it during one phase.
#[derive(Debug, Clone)]
pub struct World {
    pub answering: [bool; NODES],
    pub leader: [bool; NODES],
    pub lease: [bool; NODES],
    pub holds: [bool; NODES],
    pub session: &'static str,
    pub unhealthy: usize,
    /// The config version each node runs.
    pub version: [u64; NODES],
    /// The config version each node could not apply (an address in use), if any.
    pub apply_error: [Option<u64>; NODES],
    /// The commit index each node reports.
    pub commit: [u64; NODES],
    /// Requests fail (the VIP does not answer).
    pub outage: bool,
    /// Every tenth request is slow (a lossy link).
    pub slow: bool,
    /// Users pinned to b1 are served by b2 (b1 is down).
    pub b1_down: bool,
    /// The node's link is down: it answers nothing on the wire.
    pub link_down: [bool; NODES],
    /// The term every node reports.
    pub term: u64,
}

impl World {
    fn start() -> World {
        World {
            answering: [true; NODES],
            leader: [true, false, false],
            lease: [true, false, false],
            holds: [true, false, false],
            session: "connected",
            unhealthy: 0,
            version: [1; NODES],
            apply_error: [None; NODES],
            commit: [10; NODES],
            outage: false,
            slow: false,
            b1_down: false,
            link_down: [false; NODES],
            term: 1,
        }
    }
}

/// A scenario's story: its timeline and the world from each change on.
pub struct Story {
    pub events: Vec<Event>,
    phases: Vec<(f64, World)>,
    pub load_ms: f64,
    pub min_config_version: Option<u64>,
    pub host_stalls: Vec<HostStall>,
}

impl Story {
    pub fn new(load_ms: f64) -> Story {
        Story {
            events: Vec::new(),
            phases: vec![(0.0, World::start())],
            load_ms,
            min_config_version: None,
            host_stalls: Vec::new(),
        }
    }

    /// Adds an event to the timeline.
    pub fn event(
        mut self,
        t_ms: f64,
        fault: Fault,
        target: Option<usize>,
        allow_ms: f64,
        failover: bool,
    ) -> Story {
        self.events.push(Event {
            t_ms,
            what: format!("{} at {t_ms}", fault.label()),
            fault,
            target,
            allow_ms,
            failover,
            backend_down: None,
            no_dual_after: false,
            cpu: None,
        });
        self
    }

    /// Marks the last event.
    pub fn tag(mut self, f: impl FnOnce(&mut Event)) -> Story {
        if let Some(e) = self.events.last_mut() {
            f(e);
        }
        self
    }

    /// From `t_ms` on, the world is the previous one changed by `f`.
    pub fn at(mut self, t_ms: f64, f: impl FnOnce(&mut World)) -> Story {
        let mut w = self.world(t_ms);
        f(&mut w);
        self.phases.push((t_ms, w));
        self.phases.sort_by(|a, b| a.0.total_cmp(&b.0));
        self
    }

    fn world(&self, t: f64) -> World {
        self.phases
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map(|(_, w)| w.clone())
            .unwrap_or_else(World::start)
    }

    /// The same timeline with faults that did nothing (so the harness also saw no
    /// process exit, and a hog measured an idle machine without processes).
    pub fn noop(mut self) -> Story {
        self.phases.truncate(1);
        self.events.retain(|e| e.fault != Fault::Exited);
        for e in &mut self.events {
            if e.cpu.is_some() {
                e.cpu = Some(CpuUse {
                    procs: 0,
                    cores: 2,
                    hog_pct: 0.0,
                    idle_pct: 60.0,
                });
            }
        }
        self
    }

    pub fn render(&self) -> Recording {
        Recording {
            samples: self.load(),
            holders: Probed::Samples(self.holders()),
            wire: Probed::Samples(self.wire()),
            statuses: self.statuses(),
            events: self.events.clone(),
            nodes_end: self.end(),
            min_config_version: self.min_config_version,
            host_stalls: self.host_stalls.clone(),
        }
    }

    fn ticks(&self, every: f64) -> impl Iterator<Item = f64> + '_ {
        let n = (self.load_ms / every) as usize;
        (0..n).map(move |k| k as f64 * every)
    }

    fn load(&self) -> Vec<Sample> {
        let mut pinned = [false; USERS];
        self.ticks(10.0)
            .enumerate()
            .map(|(k, t)| {
                let w = self.world(t);
                let user = k % USERS;
                let new_session = !pinned[user];
                let home = if user.is_multiple_of(2) { "b1" } else { "b2" };
                let backend = if w.b1_down { "b2" } else { home };
                let ok = !w.outage;
                if ok {
                    pinned[user] = true;
                }
                Sample {
                    t_ms: t,
                    user,
                    status: ok.then_some(200),
                    error: (!ok).then(|| "connect: timed out".to_string()),
                    latency_ms: if w.slow && k % 10 == 0 { 250.0 } else { 2.0 },
                    backend: ok.then(|| backend.to_string()),
                    had_cookie: !new_session,
                    new_session: ok && new_session,
                }
            })
            .collect()
    }

    fn holders(&self) -> Vec<HolderSample> {
        self.ticks(20.0)
            .map(|t| HolderSample {
                t_ms: t,
                holders: self.world(t).holds.iter().map(|h| Some(*h)).collect(),
            })
            .collect()
    }

    fn wire(&self) -> Vec<WireSample> {
        self.ticks(20.0)
            .map(|t| {
                let w = self.world(t);
                let answers: Vec<bool> =
                    (0..NODES).map(|i| w.holds[i] && !w.link_down[i]).collect();
                WireSample {
                    t_ms: t + 1.0,
                    arp: answers.clone(),
                    tcp: answers,
                    strangers: 0,
                    failed: false,
                    answers: Vec::new(),
                    syn_sent_us: Vec::new(),
                }
            })
            .collect()
    }

    fn statuses(&self) -> Vec<StatusSample> {
        self.ticks(100.0)
            .map(|t| {
                let w = self.world(t);
                let nodes = (0..NODES)
                    .map(|i| {
                        w.answering[i].then(|| NodeStatus {
                            node_id: Some(i as u64 + 1),
                            role: Some(if w.leader[i] { "leader" } else { "follower" }.into()),
                            leader_id: None,
                            term: Some(w.term),
                            config_version: Some(w.version[i]),
                            vip_held: Some(w.holds[i]),
                            lease_fresh: Some(w.lease[i]),
                            session_store: Some(w.session.into()),
                            unhealthy: Some(w.unhealthy),
                            commit_index: Some(w.commit[i]),
                            apply_error: w.apply_error[i].map(|version| ApplyError {
                                version,
                                reason: PORT_IN_USE.into(),
                            }),
                        })
                    })
                    .collect();
                StatusSample {
                    t_ms: t,
                    done_ms: t + 2.0,
                    nodes,
                }
            })
            .collect()
    }

    fn end(&self) -> Vec<NodeEnd> {
        let w = self.world(self.load_ms);
        (0..NODES)
            .map(|i| NodeEnd {
                name: format!("n{}", i + 1),
                running: Some(true),
                config_version: Some(w.version[i]),
                role: Some(if w.leader[i] { "leader" } else { "follower" }.into()),
            })
            .collect()
    }
}

/// n1 leads, n2 takes over at `moved` (fast fencing: the old holder's kernel keeps the
/// address until `zombie_until`).
fn move_to_n2(s: Story, moved: f64, zombie_until: f64) -> Story {
    s.at(moved, |w| {
        w.leader = [false, true, false];
        w.lease = [false, true, false];
        w.holds[1] = true;
        w.outage = false;
    })
    .at(zombie_until, |w| w.holds[0] = false)
}

/// n1 (the leader) stops answering and requests fail until another node holds.
fn n1_silent(w: &mut World) {
    w.answering[0] = false;
    w.outage = true;
}

/// A run of `scenario` where everything went as it should.
pub fn good(scenario: &str) -> Story {
    let n1 = Some(0);
    match scenario {
        "kill-leader" => move_to_n2(
            Story::new(12_000.0)
                .event(3000.0, Fault::Kill, n1, 2000.0, true)
                .event(7000.0, Fault::Start, n1, 0.0, false)
                .at(3000.0, n1_silent),
            3450.0,
            5000.0,
        )
        .at(7000.0, |w| w.answering[0] = true),
        "crash-node-leader" => move_to_n2(
            Story::new(12_000.0)
                .event(3000.0, Fault::LinkDown, n1, 2000.0, true)
                .event(3001.0, Fault::Kill, n1, 2000.0, false)
                .event(7000.0, Fault::LinkUp, n1, 0.0, false)
                .event(7000.0, Fault::Start, n1, 0.0, false)
                .at(3000.0, |w| {
                    n1_silent(w);
                    w.link_down[0] = true;
                }),
            3450.0,
            5000.0,
        )
        .at(7000.0, |w| {
            w.answering[0] = true;
            w.link_down[0] = false;
        }),
        "cpu-hog" => cpu_hog(),
        "kill-follower" => Story::new(12_000.0)
            .event(3000.0, Fault::Kill, Some(1), 0.0, false)
            .event(7000.0, Fault::Start, Some(1), 0.0, false)
            .at(3000.0, |w| w.answering[1] = false)
            .at(7000.0, |w| w.answering[1] = true),
        "freeze-leader" => move_to_n2(
            Story::new(11_000.0)
                .event(3000.0, Fault::Freeze, n1, 2500.0, true)
                .event(6000.0, Fault::Resume, n1, 0.0, false)
                .tag(|e| e.no_dual_after = true)
                .at(3000.0, n1_silent),
            3500.0,
            5000.0,
        )
        .at(6000.0, |w| w.answering[0] = true),
        "partition-leader" => move_to_n2(
            Story::new(13_000.0)
                .event(3000.0, Fault::Partition, n1, 2000.0, true)
                .event(8000.0, Fault::Heal, n1, 1000.0, true)
                .at(3000.0, |w| w.lease[0] = false)
                .at(3150.0, |w| {
                    w.holds[0] = false;
                    w.outage = true;
                }),
            3500.0,
            3500.0,
        ),
        "netem" => Story::new(12_000.0)
            .event(3000.0, Fault::NetemOn, n1, 7000.0, false)
            .event(9000.0, Fault::NetemOff, n1, 1000.0, false)
            .at(3000.0, |w| w.slow = true)
            .at(9000.0, |w| w.slow = false),
        "redis-down" => Story::new(11_000.0)
            .event(3000.0, Fault::RedisDown, None, 0.0, false)
            .event(8000.0, Fault::RedisUp, None, 0.0, false)
            .at(3200.0, |w| w.session = "degraded")
            .at(8200.0, |w| w.session = "connected"),
        "backend-kill" | "backend-hang" | "backend-500" => Story::new(12_000.0)
            .event(3000.0, Fault::BackendDown, None, 2500.0, false)
            .tag(|e| e.backend_down = Some(("b1".into(), true)))
            .event(8000.0, Fault::BackendUp, None, 0.0, false)
            .tag(|e| e.backend_down = Some(("b1".into(), false)))
            .at(3000.0, |w| w.b1_down = true)
            .at(3600.0, |w| w.unhealthy = 1)
            .at(8600.0, |w| w.unhealthy = 0),
        "rolling-restart" => rolling_restart(),
        "config-change" => {
            let mut s = Story::new(8_000.0)
                .event(3000.0, Fault::ConfigPut, Some(1), 0.0, false)
                .at(3100.0, |w| w.version = [2; NODES]);
            s.min_config_version = Some(2);
            s
        }
        other => super::synth_heal::good(other),
    }
}

/// Six busy processes on two cores for the default hog length; nothing moves.
pub fn cpu_hog() -> Story {
    let hog_ms = crate::scenarios::plan::DEFAULT_HOG_MS as f64;
    let margin = crate::scenarios::plan::HOG_MARGIN_MS as f64;
    Story::new(hog_ms + 2.0 * margin)
        .event(margin, Fault::HogOn, None, 0.0, false)
        .tag(|e| {
            e.cpu = Some(CpuUse {
                procs: 6,
                cores: 2,
                hog_pct: 80.0,
                idle_pct: 0.5,
            })
        })
        .event(margin + hog_ms, Fault::HogOff, None, 0.0, false)
}

/// n2 and n3 stopped and restarted in turn, then n1 (the leader) hands over to n2.
fn rolling_restart() -> Story {
    let mut s = Story::new(18_000.0);
    for (i, at) in [(1usize, 3000.0), (2, 5500.0)] {
        s = s
            .event(at, Fault::Stop, Some(i), 0.0, false)
            .event(at + 100.0, Fault::Exited, Some(i), 0.0, false)
            .event(at + 100.0, Fault::Start, Some(i), 0.0, false)
            .at(at, |w| w.answering[i] = false)
            .at(at + 400.0, |w| w.answering[i] = true);
    }
    let s = s
        .event(8000.0, Fault::Stop, Some(0), 1000.0, true)
        .event(8400.0, Fault::Exited, Some(0), 0.0, false)
        .event(8400.0, Fault::Start, Some(0), 0.0, false)
        .at(8000.0, |w| {
            w.holds[0] = false;
            w.answering[0] = false;
        });
    move_to_n2(s, 8050.0, 8050.0).at(8800.0, |w| w.answering[0] = true)
}
