//! An exhaustive model of the leader lease, the VIP fence and the hand-off, checked with
//! `stateright`: three nodes, discrete time, every interleaving of the actions below within a
//! budget of faults and terms. The property: **never two nodes whose fences are open at the
//! same instant** (a node's kernel answers for the VIP only while its fence is open, see
//! `vip/src/fence/`). A second test checks that mutated protocols (claiming without waiting,
//! an old leader that grants its vote without closing its fence, a lease counted from when
//! the acknowledgement arrived instead of when the ping left) *do* break the property, so the
//! model is not vacuous; and that `open_until` without the atomicity assumed here (a thread
//! stalled or frozen between reading the clock and the kernel's commit) breaks it too.
//!
//! The protocol, as modelled:
//! - The leader pings each voter whenever it likes (every heartbeat or any other schedule).
//!   A voter that takes the ping (its term is not newer) acknowledges it and promises not to
//!   vote for, or become, another candidate for `LEASE` from when it received it.
//! - An acknowledgement tells the leader its lease holds until the ping's *send* time +
//!   `LEASE` - `MARGIN`; the leader (leader + one voter is a quorum of three) opens its fence
//!   until then (`Fence::open_until`), once its claim wait is over.
//! - Election: a follower whose own promise has lapsed (it heard no leader for the lease)
//!   asks a voter; the voter grants the pre-vote and the vote only if its promise has lapsed
//!   too and the term is newer than its own. A voter that is the old leader closes its fence
//!   before granting. Each vote reports the voter's bound: the latest instant until which a
//!   fence it knows of may be open (its promise, its own claim wait, its fence). The new
//!   leader opens its fence only after `claim_after` = the latest bound of its quorum. A
//!   leader that steps down keeps its claim wait as a promise (one deadline per node).
//! - Planned hand-off: the leader sends `TimeoutNow` to a successor and keeps leading (and
//!   its fence) until it learns of the new term. The successor campaigns at once and voters
//!   grant a transfer vote *despite* their promise (as Raft's leadership transfer does), so
//!   there the claim wait is what keeps the fences apart.
//! - Faults: a leader's crash (the kernel keeps the fence until its element lapses) and
//!   restart (the table is reinstalled closed; the promise is not persisted, so a restarted
//!   node waits one lease before voting or campaigning); a leader's freeze and resume (the
//!   clock and the kernel's timeouts run while frozen, the process does nothing, the
//!   acknowledgements wait in its socket buffer and are taken, stale, on resume). Any
//!   message may be late or never arrive, and any election may not happen: that includes
//!   every partition (a partition is message loss plus elections that cannot happen across
//!   it). Budget: `MAX_EVENTS` freezes, crashes and hand-offs per run, terms up to `MAX_TERM`.
//!
//! What it abstracts away:
//! - Clocks are perfect and shared; `MARGIN` stands for the allowance for clock-rate error
//!   between nodes, and real durations are a few ticks. The fence's kernel rounding (it
//!   lapses up to two jiffies *early*, never late) is safe and not modelled.
//! - `open_until` is atomic: reading the clock and the kernel's commit happen at one instant.
//!   In the real call a stall or freeze between the two commits a stale timeout; the fence
//!   re-issues such a slow call at once with the time then left (closing it), which narrows
//!   that window to the re-issue's duration but does not close it (variant `OpenNotAtomic`
//!   finds it). Closing it needs a deadline the kernel checks in absolute time.
//! - Logs, commit indexes and the up-to-date check of votes: the fence's safety does not
//!   depend on them. A vote request and its answer are one step (the voter's decision is what
//!   matters; a delayed answer only delays the candidate). Pre-vote and vote happen together
//!   and need one voter (a quorum of three with the candidate itself).
//! - A ping is taken the instant it is sent (a late ping only makes the voter's promise
//!   outlast the leader's lease by more). At most one acknowledgement per direction and one
//!   `TimeoutNow` per direction are in flight (a newer one replaces the older, which is then
//!   lost); messages that can no longer change anything are forgotten.
//! - A follower's freeze or crash is not a separate event: a follower's fence is closed, and
//!   a frozen or dead follower looks to the others like one whose messages are late or lost.
//! - A leader ignores acknowledgements during its claim wait (it pings again after); a ping
//!   taken and acknowledged at the instant the wait ends opens the fence at least as long.
//! - Address presence, gratuitous ARP, the address lifetime: only the fence counts as
//!   "answering", which is the conservative view.
//! - States that differ only in the nodes' names are explored once (symmetry reduction).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Property};

const N: usize = 3;
/// Promise / lease length, in ticks.
const LEASE: u8 = 3;
/// Taken off the lease by the leader for clock-rate error.
const MARGIN: u8 = 1;
/// Highest term an election may reach (the first leader has term 1).
const MAX_TERM: u8 = 5;
/// Freezes, crashes and hand-offs in one run (resume and restart are free).
const MAX_EVENTS: u8 = 4;
/// A run that has not finished by then fails (`never_two_open_fences` checks it finished).
const LIMIT_S: u64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Proc {
    Running,
    Frozen,
    Crashed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Role {
    Follower,
    Leader,
}

/// One node. Every time is kept as ticks from now (0 = lapsed), so the state space is finite.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Node {
    process: Proc,
    role: Role,
    term: u8,
    /// Kernel: ticks until the VIP's lease element lapses; 0 = fence closed.
    fence: u8,
    /// Ticks until this node may vote for or become another candidate (except a transfer
    /// vote): the latest promise it made, and what it knew as a leader when it stepped down.
    promise: u8,
    /// Leader: ticks until it may open its fence (`claim_after`).
    claim_wait: u8,
    /// `OpenNotAtomic` only: the timeout `open_until` computed and has not yet committed.
    reading: Option<u8>,
}

impl Node {
    fn new(role: Role) -> Node {
        Node {
            process: Proc::Running,
            role,
            term: 1,
            fence: 0,
            promise: 0,
            claim_wait: 0,
            reading: None,
        }
    }

    fn running(&self) -> bool {
        self.process == Proc::Running
    }

    /// The bound it reports with a vote: the latest instant a fence it knows of may be open.
    fn report(&self) -> u8 {
        self.promise.max(self.claim_wait).max(self.fence)
    }

    /// Leaves leadership: closes its fence first (`Fence::close_all`), keeps what it knew.
    fn step_down(&mut self, close: bool) {
        if close {
            self.fence = 0;
        }
        self.promise = self.promise.max(self.claim_wait);
        self.claim_wait = 0;
        self.reading = None;
        self.role = Role::Follower;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Msg {
    /// A voter's acknowledgement of a ping; `left`: ticks until the ping's send time +
    /// LEASE - MARGIN.
    Ack {
        from: u8,
        to: u8,
        term: u8,
        left: u8,
    },
    /// The leader's hand-off to `to`.
    TimeoutNow { from: u8, to: u8, term: u8 },
}

impl Msg {
    /// Same kind, same direction: a newer one replaces (= the older one is lost).
    fn same_channel(&self, other: &Msg) -> bool {
        match (*self, *other) {
            (Msg::Ack { from, to, .. }, Msg::Ack { from: f, to: t, .. }) => (from, to) == (f, t),
            (Msg::TimeoutNow { from, to, .. }, Msg::TimeoutNow { from: f, to: t, .. }) => {
                (from, to) == (f, t)
            }
            _ => false,
        }
    }

    /// One tick later; `None` once it can no longer change anything (an expired ack).
    /// `ageless`: acknowledgements carry no time (the `LeaseFromReceipt` mutation).
    fn tick(self, ageless: bool) -> Option<Msg> {
        match self {
            Msg::Ack { .. } if ageless => Some(self),
            Msg::Ack { left: 0 | 1, .. } => None,
            Msg::Ack {
                from,
                to,
                term,
                left,
            } => Some(Msg::Ack {
                from,
                to,
                term,
                left: left - 1,
            }),
            other => Some(other),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct State {
    nodes: [Node; N],
    net: BTreeSet<Msg>,
    events: u8,
}

impl State {
    fn send(&mut self, msg: Msg) {
        self.net.retain(|m| !m.same_channel(&msg));
        self.net.insert(msg);
    }

    fn open_fences(&self) -> usize {
        self.nodes.iter().filter(|n| n.fence > 0).count()
    }

    /// Forgets messages that can no longer change anything: acknowledgements to a node that
    /// no longer leads in their term or whose fence already reaches as far, and `TimeoutNow`
    /// to a node that has left the term. (Keeps the state space small.)
    fn forget_spent(&mut self) {
        let nodes = &self.nodes;
        self.net.retain(|m| match *m {
            Msg::Ack { to, term, left, .. } => {
                let l = &nodes[to as usize];
                l.role == Role::Leader && l.term == term && (l.claim_wait > 0 || left > l.fence)
            }
            Msg::TimeoutNow { to, term, .. } => {
                let n = &nodes[to as usize];
                n.term == term && n.role == Role::Follower
            }
        });
    }

    /// The same state with the nodes renamed by `perm` (node i becomes perm[i]).
    fn renamed(&self, perm: [u8; N]) -> State {
        let mut nodes = self.nodes.clone();
        for (i, node) in self.nodes.iter().enumerate() {
            nodes[perm[i] as usize] = node.clone();
        }
        let r = |n: u8| perm[n as usize];
        let net = self
            .net
            .iter()
            .map(|m| match *m {
                Msg::Ack {
                    from,
                    to,
                    term,
                    left,
                } => Msg::Ack {
                    from: r(from),
                    to: r(to),
                    term,
                    left,
                },
                Msg::TimeoutNow { from, to, term } => Msg::TimeoutNow {
                    from: r(from),
                    to: r(to),
                    term,
                },
            })
            .collect();
        State {
            nodes,
            net,
            events: self.events,
        }
    }

    /// The least of the six renamings: states that differ only in node names are one.
    fn representative(&self) -> State {
        const PERMS: [[u8; N]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        PERMS
            .iter()
            .map(|&p| self.renamed(p))
            .min()
            .unwrap_or_else(|| self.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Tick,
    /// The leader's ping reaches the voter, which takes it and acknowledges.
    Ping {
        leader: u8,
        voter: u8,
    },
    Deliver(Msg),
    Lose(Msg),
    Campaign {
        candidate: u8,
        voter: u8,
    },
    /// The successor takes `TimeoutNow` and asks `voter` for a transfer vote.
    TransferCampaign {
        msg: Msg,
        voter: u8,
    },
    HandOff {
        leader: u8,
        successor: u8,
    },
    Freeze(u8),
    Resume(u8),
    Crash(u8),
    Restart(u8),
    /// `OpenNotAtomic` only: `open_until` reaches the kernel with the timeout it computed.
    Commit(u8),
}

/// The protocol, or one broken on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Correct,
    /// The new leader opens its fence as soon as it has a lease, ignoring `claim_after`.
    ClaimWithoutWaiting,
    /// A leader grants a higher-term vote without closing its fence, and reports no bound for it.
    OldLeaderKeepsFence,
    /// The leader counts its lease from when an acknowledgement arrives, not from the ping.
    LeaseFromReceipt,
    /// Not a protocol change but the real `open_until` without the model's atomicity: the
    /// thread can be frozen between reading the clock and the kernel's commit, and commits a
    /// stale timeout on resume. The re-issue of a slow call closes it only *after* that.
    OpenNotAtomic,
}

struct LeaseModel {
    variant: Variant,
}

const NODES: [u8; N] = [0, 1, 2];

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            nodes: [
                Node::new(Role::Leader),
                Node::new(Role::Follower),
                Node::new(Role::Follower),
            ],
            net: BTreeSet::new(),
            events: 0,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        actions.push(Action::Tick);
        for msg in &s.net {
            match *msg {
                Msg::TimeoutNow { .. } => {
                    actions.push(Action::Lose(*msg));
                    for voter in NODES {
                        actions.push(Action::TransferCampaign { msg: *msg, voter });
                    }
                }
                Msg::Ack { .. } => actions.push(Action::Deliver(*msg)),
            }
        }
        for n in NODES {
            let node = &s.nodes[n as usize];
            let others = NODES.into_iter().filter(move |&o| o != n);
            match (node.process, node.role) {
                (Proc::Running, Role::Leader) => {
                    if node.reading.is_some() {
                        actions.push(Action::Commit(n));
                    }
                    for other in others {
                        actions.push(Action::Ping {
                            leader: n,
                            voter: other,
                        });
                    }
                }
                (Proc::Running, Role::Follower) => {
                    for voter in others {
                        actions.push(Action::Campaign {
                            candidate: n,
                            voter,
                        });
                    }
                }
                (Proc::Frozen, _) => actions.push(Action::Resume(n)),
                (Proc::Crashed, _) => actions.push(Action::Restart(n)),
            }
            // Only a leader's faults matter: a follower's fence is closed, and a frozen or
            // dead follower is one whose messages are late or lost, which every run has.
            if s.events < MAX_EVENTS && node.role == Role::Leader {
                if node.running() {
                    for other in NODES.into_iter().filter(|&o| o != n) {
                        actions.push(Action::HandOff {
                            leader: n,
                            successor: other,
                        });
                    }
                }
                if node.process != Proc::Crashed {
                    actions.push(Action::Crash(n));
                }
                if node.running() {
                    actions.push(Action::Freeze(n));
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Tick => {
                for n in &mut s.nodes {
                    for t in [&mut n.fence, &mut n.promise, &mut n.claim_wait] {
                        *t = t.saturating_sub(1);
                    }
                }
                let ageless = self.variant == Variant::LeaseFromReceipt;
                s.net = s.net.iter().filter_map(|m| m.tick(ageless)).collect();
            }
            Action::Ping { leader, voter } => self.ping(&mut s, leader, voter)?,
            Action::Lose(msg) => {
                s.net.remove(&msg);
            }
            Action::Deliver(msg) => {
                let Msg::Ack { to, term, left, .. } = msg else {
                    return None;
                };
                if !s.nodes[to as usize].running() {
                    return None;
                }
                s.net.remove(&msg);
                self.take_ack(&mut s, to, term, left);
            }
            Action::Campaign { candidate, voter } => {
                let (c, w) = (&s.nodes[candidate as usize], &s.nodes[voter as usize]);
                // Pre-vote and vote: neither may still be bound by a promise.
                if c.promise > 0 || w.promise > 0 {
                    return None;
                }
                self.elect(&mut s, candidate, voter)?;
            }
            Action::TransferCampaign { msg, voter } => {
                let Msg::TimeoutNow { to, term, .. } = msg else {
                    return None;
                };
                let succ = &s.nodes[to as usize];
                if voter == to || !succ.running() {
                    return None;
                }
                let stale = succ.term != term || succ.role == Role::Leader;
                s.net.remove(&msg);
                if !stale {
                    self.elect(&mut s, to, voter)?;
                }
            }
            Action::HandOff { leader, successor } => {
                let term = s.nodes[leader as usize].term;
                s.send(Msg::TimeoutNow {
                    from: leader,
                    to: successor,
                    term,
                });
                s.events += 1;
            }
            Action::Freeze(n) => {
                s.nodes[n as usize].process = Proc::Frozen;
                s.events += 1;
            }
            Action::Resume(n) => s.nodes[n as usize].process = Proc::Running,
            Action::Crash(n) => {
                s.nodes[n as usize].process = Proc::Crashed;
                s.events += 1;
            }
            Action::Commit(n) => {
                let node = &mut s.nodes[n as usize];
                node.fence = node.fence.max(node.reading.take()?);
            }
            Action::Restart(n) => {
                let node = &mut s.nodes[n as usize];
                // Term (and vote) are on disk; the fence table is reinstalled closed; the
                // promise is not persisted, so the node waits one lease before voting.
                *node = Node {
                    term: node.term,
                    promise: LEASE,
                    ..Node::new(Role::Follower)
                };
            }
        }
        s.forget_spent();
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("never two open fences", |_, s: &State| s.open_fences() <= 1),
            Property::sometimes("a later leader opens its fence", |_, s: &State| {
                s.nodes
                    .iter()
                    .any(|n| n.role == Role::Leader && n.term > 1 && n.fence > 0)
            }),
            Property::sometimes(
                "a new leader waits out an old leader's open fence",
                |_, s: &State| {
                    s.nodes.iter().any(|new| {
                        new.role == Role::Leader
                            && new.claim_wait > 0
                            && s.nodes
                                .iter()
                                .any(|old| old.term < new.term && old.fence > 0)
                    })
                },
            ),
        ]
    }
}

impl LeaseModel {
    /// A ping from `leader` (sent now; a ping that takes longer only makes the voter's
    /// promise outlast the leader's lease by more) reaches `voter`.
    fn ping(&self, s: &mut State, leader: u8, voter: u8) -> Option<()> {
        let term = s.nodes[leader as usize].term;
        let v = &mut s.nodes[voter as usize];
        if !v.running() || term < v.term {
            return None; // lost, or a stale leader's ping: no acknowledgement
        }
        if v.role == Role::Leader {
            v.step_down(true); // a leader of an older term learns of the new one
        }
        v.term = term;
        v.promise = v.promise.max(LEASE);
        s.send(Msg::Ack {
            from: voter,
            to: leader,
            term,
            left: LEASE - MARGIN,
        });
        Some(())
    }

    fn take_ack(&self, s: &mut State, leader: u8, term: u8, left: u8) {
        let l = &mut s.nodes[leader as usize];
        if l.role != Role::Leader || l.term != term {
            return;
        }
        let left = match self.variant {
            Variant::LeaseFromReceipt => LEASE - MARGIN,
            _ => left,
        };
        // While its claim wait runs the leader ignores acknowledgements (it pings again
        // after): a ping sent, taken and acknowledged at the instant the wait ends opens the
        // fence at least as long, so no behaviour of the real leader is lost.
        if l.claim_wait == 0 || self.variant == Variant::ClaimWithoutWaiting {
            if self.variant == Variant::OpenNotAtomic {
                l.reading = Some(left);
            } else {
                l.fence = l.fence.max(left); // Fence::open_until(send time + LEASE - MARGIN)
            }
        }
    }

    /// `candidate` wins `voter`'s vote for the next term, or the step is not possible.
    fn elect(&self, s: &mut State, candidate: u8, voter: u8) -> Option<()> {
        let (c, w) = (&s.nodes[candidate as usize], &s.nodes[voter as usize]);
        let term = c.term + 1;
        let can = c.running()
            && c.role == Role::Follower
            && w.running()
            && candidate != voter
            && term <= MAX_TERM
            && term > w.term;
        if !can {
            return None;
        }
        let w = &mut s.nodes[voter as usize];
        let reported = if w.role == Role::Leader {
            let keeps = self.variant == Variant::OldLeaderKeepsFence;
            let before = w.promise.max(w.claim_wait);
            w.step_down(!keeps);
            if keeps {
                before
            } else {
                w.report()
            }
        } else {
            w.report()
        };
        w.term = term;
        let c = &mut s.nodes[candidate as usize];
        c.claim_wait = match self.variant {
            Variant::ClaimWithoutWaiting => 0,
            _ => c.report().max(reported),
        };
        c.term = term;
        c.role = Role::Leader;
        Some(())
    }
}

fn builder(variant: Variant) -> stateright::CheckerBuilder<LeaseModel> {
    LeaseModel { variant }
        .checker()
        .threads(2)
        .timeout(Duration::from_secs(LIMIT_S))
}

fn report<C: Checker<LeaseModel>>(variant: Variant, checker: &C, start: Instant) {
    eprintln!(
        "{variant:?}: {} states ({} unique), depth {}, in {:?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        start.elapsed()
    );
}

#[test]
fn never_two_open_fences() {
    // Depth first, so that states differing only in node names count once.
    let start = Instant::now();
    let checker = builder(Variant::Correct)
        .symmetry_fn(State::representative)
        .spawn_dfs()
        .join();
    report(Variant::Correct, &checker, start);
    assert!(
        start.elapsed() < Duration::from_secs(LIMIT_S),
        "the exploration did not finish in {LIMIT_S} s"
    );
    checker.assert_properties();
}

#[test]
fn broken_protocols_open_two_fences() {
    for variant in [
        Variant::ClaimWithoutWaiting,
        Variant::OldLeaderKeepsFence,
        Variant::LeaseFromReceipt,
        Variant::OpenNotAtomic,
    ] {
        // Breadth first: the shortest counterexample.
        let start = Instant::now();
        let checker = builder(variant)
            .finish_when(HasDiscoveries::AnyFailures)
            .spawn_bfs()
            .join();
        report(variant, &checker, start);
        let path = checker
            .discovery("never two open fences")
            .unwrap_or_else(|| panic!("{variant:?} never opened two fences: the model is vacuous"));
        let actions = path.into_actions();
        eprintln!(
            "{variant:?}: two open fences after {} steps: {actions:?}",
            actions.len()
        );
    }
}
