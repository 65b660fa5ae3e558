//! An exhaustive model of the leader lease, the VIP fence and the hand-off, checked with
//! `stateright`: three nodes, discrete time, every interleaving of the actions below within a
//! budget of faults and terms. The property: **never two nodes whose kernels answer a new
//! connection to the VIP at the same instant** (a node's kernel answers only while its fence
//! is open, or, as a planned hand-over's successor, for the frames the old holder forwards
//! to it; see `vip/src/fence/`). A second test checks that mutated protocols (claiming without waiting,
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
//! - Planned hand-off, as `raft/src/handover.rs` and `vip/src/fence/{handoff,takeover}.rs`
//!   do it: the leader sends `TimeoutNow` to a successor and keeps leading (and its fence)
//!   until it learns of the new term; it then steps down *without* closing its fence (the
//!   bridge: it lapses by itself, and a vote it grants reports it exactly). The successor
//!   campaigns at once and voters grant a transfer vote *despite* their promise (as Raft's
//!   leadership transfer does), so there the claim wait is what keeps the fences apart.
//!   Once the successor leads with a lease it accepts the frames the old holder will forward
//!   (for what remains of its lease) and asks for the traffic (`HandOver`); the old holder
//!   closes its fence and starts forwarding in one transaction, and its answer ends the
//!   successor's wait for *that* fence only. A node answers a new connection when its fence
//!   is open, or when it accepts frames from a node that forwards to it with its own fence
//!   closed.
//! - Faults: a leader's crash (the kernel keeps the fence until its element lapses) and
//!   restart (the table is reinstalled closed; the promise is not persisted, so a restarted
//!   node waits one lease before voting or campaigning); a leader's freeze and resume (the
//!   clock and the kernel's timeouts run while frozen, the process does nothing, the
//!   acknowledgements wait in its socket buffer and are taken, stale, on resume). Any
//!   message may be late or never arrive, and any election may not happen: that includes
//!   every partition (a partition is message loss plus elections that cannot happen across
//!   it). Budget: 3 freezes, crashes and hand-offs per run (4 with `LEASE_MODEL_EVENTS=4`),
//!   terms up to `MAX_TERM`.
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
//! - Address presence, gratuitous ARP, the address lifetime: only the fence (and a
//!   successor's acceptance of forwarded frames) counts as "answering", which is the
//!   conservative view. The connections a handed-over node keeps finishing (`keep4`) and
//!   the packets a successor sends back to it for them are not new connections and are
//!   not modelled; neither is the hand-over forward's own timeout (it outlasts the run).
//! - Bounds are kept per node, as the real fence reports are: a `HandOver` answer ends the
//!   wait for the old holder's fence, not for a third node's.
//! - States that differ only in the nodes' names are explored once (symmetry reduction).

use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Property};

#[path = "lease_model/model.rs"]
mod model;
use model::{Action, Msg, Node, Proc, Role, State, LEASE, MARGIN, MAX_TERM, N, NODES};

/// A run that has not finished by then fails (`never_two_answering_kernels` checks it finished).
const LIMIT_S: u64 = 90;

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
    /// The old holder starts forwarding before it closes its fence (two transactions).
    ForwardBeforeClosing,
    /// The successor accepts forwarded frames for a whole lease, not what is left of its own.
    AcceptBeyondLease,
    /// The successor accepts forwarded frames while it still waits for a third node's fence.
    AcceptBeforeOthersLapse,
}

struct LeaseModel {
    variant: Variant,
    /// Freezes, crashes and hand-offs in one run (resume and restart are free).
    max_events: u8,
}

/// The fault budget: 3 by default (every run of the test suite, debug build: about
/// 2 minutes); `LEASE_MODEL_EVENTS=4` explores 4 (17.3 million unique states, 65 s in a
/// release build: `cargo test --release -p fulcrum-raft --test lease_model`).
fn max_events() -> u8 {
    std::env::var("LEASE_MODEL_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

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
            net: Default::default(),
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
                        if s.nodes[other as usize].handing_off && node.lease > 0 {
                            actions.push(Action::HandOver { new: n, old: other });
                        }
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
            // (A successor's faults while it waits for the hand-over are a leader's.)
            if s.events < self.max_events && node.role == Role::Leader {
                if node.running() && !node.handing_off {
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
                    n.tick();
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
                if c.promised() || w.promised() {
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
                let l = &mut s.nodes[leader as usize];
                l.handing_off = true;
                let term = l.term;
                s.send(Msg::TimeoutNow {
                    from: leader,
                    to: successor,
                    term,
                });
                s.events += 1;
            }
            Action::HandOver { new, old } => self.hand_over(&mut s, new, old)?,
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
                // Term (and vote) are on disk; the fence table is reinstalled closed (no
                // forward, no accepted forwarder); the promise is not persisted, so the node
                // reports an unknown holder for one lease and waits that long before voting.
                let mut promise = [LEASE; N];
                promise[n as usize] = 0;
                *node = Node {
                    term: node.term,
                    promise,
                    ..Node::new(Role::Follower)
                };
            }
        }
        s.forget_spent();
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("never two answering kernels", |_, s: &State| {
                s.answering() <= 1
            }),
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
                            && new.waiting()
                            && s.nodes
                                .iter()
                                .any(|old| old.term < new.term && old.fence > 0)
                    })
                },
            ),
            Property::sometimes(
                "a successor answers what the old holder forwards before its claim",
                |_, s: &State| {
                    (0..N).any(|x| s.answers(x) && s.nodes[x].fence == 0 && s.nodes[x].waiting())
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
            // A leader of an older term learns of the new one; one that hands off bridges.
            let bridge = v.handing_off;
            v.step_down(!bridge);
        }
        v.term = term;
        let p = &mut v.promise[leader as usize];
        *p = (*p).max(LEASE);
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
        l.lease = l.lease.max(left);
        // While its claim wait runs the leader does not open its fence (it pings again
        // after): a ping sent, taken and acknowledged at the instant the wait ends opens the
        // fence at least as long, so no behaviour of the real leader is lost.
        if !l.waiting() || self.variant == Variant::ClaimWithoutWaiting {
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
        let mut reported = if w.role == Role::Leader {
            let keeps = self.variant == Variant::OldLeaderKeepsFence;
            let bridge = w.handing_off;
            let before = w.report(voter);
            w.step_down(!keeps && !bridge);
            let mut r = w.report(voter);
            if keeps {
                // The mutation: the fence stays open and the report leaves it out.
                r = before;
                r[voter as usize] = 0;
            }
            r
        } else {
            w.report(voter)
        };
        w.term = term;
        let c = &mut s.nodes[candidate as usize];
        // The voter's word about its own fence is exact; for the others, the latest anyone
        // in the quorum knows of.
        for (i, r) in reported.iter_mut().enumerate() {
            if i != voter as usize {
                *r = (*r).max(c.promise[i]).max(c.claim_wait[i]);
            }
        }
        reported[candidate as usize] = 0;
        c.claim_wait = match self.variant {
            Variant::ClaimWithoutWaiting => [0; N],
            _ => reported,
        };
        c.term = term;
        c.role = Role::Leader;
        c.lease = 0;
        Some(())
    }

    /// The successor `new` (leading with a lease) and the old holder `old` of a hand-over.
    fn hand_over(&self, s: &mut State, new: u8, old: u8) -> Option<()> {
        let (n, o) = (&s.nodes[new as usize], &s.nodes[old as usize]);
        if !(o.handing_off && o.running() && n.running() && n.lease > 0)
            || n.role != Role::Leader
            || o.term > n.term
            || (o.role == Role::Leader && o.term == n.term)
        {
            return None;
        }
        let accept = match self.variant {
            Variant::AcceptBeyondLease => LEASE,
            _ => n.lease,
        };
        // Only once every other fence it waits for has lapsed (`claim_after_except`): the
        // old holder's is the only one its forward makes safe.
        let others_clear = (0..N).all(|i| i == old as usize || n.claim_wait[i] == 0);
        let term = n.term;
        if others_clear || self.variant == Variant::AcceptBeforeOthersLapse {
            s.nodes[new as usize].accept = Some((old, accept));
        }
        let o = &mut s.nodes[old as usize];
        if o.role == Role::Leader {
            o.step_down(true); // it leads an older term: revoked, its fence closed
        }
        o.term = o.term.max(term);
        o.handing_off = false;
        if self.variant != Variant::ForwardBeforeClosing {
            // One transaction: the lease element and any accepted forwarder go.
            o.fence = 0;
            o.accept = None;
        }
        o.forward_to = Some(new);
        // The answer: the wait for `old`'s own fence ends (only if it is closed for real).
        let closed = s.nodes[old as usize].fence == 0;
        if closed {
            s.nodes[new as usize].claim_wait[old as usize] = 0;
        }
        Some(())
    }
}

fn builder(variant: Variant) -> stateright::CheckerBuilder<LeaseModel> {
    LeaseModel {
        variant,
        max_events: max_events(),
    }
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
fn never_two_answering_kernels() {
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
fn broken_protocols_make_two_kernels_answer() {
    for variant in [
        Variant::ClaimWithoutWaiting,
        Variant::OldLeaderKeepsFence,
        Variant::LeaseFromReceipt,
        Variant::OpenNotAtomic,
        Variant::ForwardBeforeClosing,
        Variant::AcceptBeyondLease,
        Variant::AcceptBeforeOthersLapse,
    ] {
        // Breadth first: the shortest counterexample.
        let start = Instant::now();
        let checker = builder(variant)
            .finish_when(HasDiscoveries::AnyFailures)
            .spawn_bfs()
            .join();
        report(variant, &checker, start);
        let path = checker
            .discovery("never two answering kernels")
            .unwrap_or_else(|| {
                panic!("{variant:?} never made two kernels answer: the model is vacuous")
            });
        let actions = path.into_actions();
        eprintln!(
            "{variant:?}: two answering kernels after {} steps: {actions:?}",
            actions.len()
        );
    }
}
