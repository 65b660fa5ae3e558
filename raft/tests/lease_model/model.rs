//! The state, messages and actions of the lease model (see `lease_model.rs` for what is
//! modelled and what is abstracted away).

use std::collections::BTreeSet;

pub const N: usize = 3;
/// Promise / lease length, in ticks.
pub const LEASE: u8 = 3;
/// Taken off the lease by the leader for clock-rate error.
pub const MARGIN: u8 = 1;
/// Highest term an election may reach (the first leader has term 1).
pub const MAX_TERM: u8 = 5;

pub const NODES: [u8; N] = [0, 1, 2];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proc {
    Running,
    Frozen,
    Crashed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Follower,
    Leader,
}

/// One node. Every time is kept as ticks from now (0 = lapsed), so the state space is finite.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub process: Proc,
    pub role: Role,
    pub term: u8,
    /// Kernel: ticks until the VIP's lease element lapses; 0 = fence closed.
    pub fence: u8,
    /// Per node: ticks until a fence of that node it knows of may still be open (the
    /// promises it made by acknowledging that leader's pings, and what it knew as a leader
    /// when it stepped down). While any is running it votes for no other candidate (except
    /// a transfer vote). Its own entry stays 0.
    pub promise: [u8; N],
    /// Leader: per node, ticks until that node's fence has surely lapsed (`claim_after`).
    pub claim_wait: [u8; N],
    /// Leader: ticks its quorum's acknowledgements hold (its lease), whether or not its
    /// claim wait is over.
    pub lease: u8,
    /// Leader that asked a successor to take over: stepping down leaves its fence open
    /// until it lapses (the bridge), and it answers the successor's `HandOver`.
    pub handing_off: bool,
    /// Kernel: a handed-over node forwards what reaches it for the VIP to this node while
    /// its own fence is closed (until the table is reinstalled at restart).
    pub forward_to: Option<u8>,
    /// Kernel: a successor accepts frames forwarded by this node for these ticks.
    pub accept: Option<(u8, u8)>,
    /// `OpenNotAtomic` only: the timeout `open_until` computed and has not yet committed.
    pub reading: Option<u8>,
}

impl Node {
    pub fn new(role: Role) -> Node {
        Node {
            process: Proc::Running,
            role,
            term: 1,
            fence: 0,
            promise: [0; N],
            claim_wait: [0; N],
            lease: 0,
            handing_off: false,
            forward_to: None,
            accept: None,
            reading: None,
        }
    }

    pub fn running(&self) -> bool {
        self.process == Proc::Running
    }

    pub fn promised(&self) -> bool {
        self.promise.iter().any(|&p| p > 0)
    }

    pub fn waiting(&self) -> bool {
        self.claim_wait.iter().any(|&w| w > 0)
    }

    /// The report it sends with a vote, `me` being its own index: for every other node the
    /// latest its fence may be open as far as this one knows; for itself, how long its own
    /// kernel may still answer (exact: the voter closed its fence first, or says how long the
    /// bridge keeps it open, or how long it still accepts forwarded frames).
    pub fn report(&self, me: u8) -> [u8; N] {
        let mut r = [0; N];
        for (i, slot) in r.iter_mut().enumerate() {
            *slot = if i == me as usize {
                self.fence.max(self.accept.map_or(0, |(_, t)| t))
            } else {
                self.promise[i].max(self.claim_wait[i])
            };
        }
        r
    }

    /// Leaves leadership: closes its fence (and stops accepting forwarded frames) unless it
    /// bridges (`close` false), keeps what it knew as promises.
    pub fn step_down(&mut self, close: bool) {
        if close {
            // `Fence::close_all`: the lease element and any accepted forwarder go together.
            self.fence = 0;
            self.accept = None;
        }
        for i in 0..N {
            self.promise[i] = self.promise[i].max(self.claim_wait[i]);
        }
        self.claim_wait = [0; N];
        self.lease = 0;
        self.reading = None;
        self.role = Role::Follower;
    }

    /// One tick later.
    pub fn tick(&mut self) {
        self.fence = self.fence.saturating_sub(1);
        self.lease = self.lease.saturating_sub(1);
        for t in self.promise.iter_mut().chain(self.claim_wait.iter_mut()) {
            *t = t.saturating_sub(1);
        }
        self.accept = match self.accept {
            Some((from, t)) if t > 1 => Some((from, t - 1)),
            _ => None,
        };
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
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
    pub fn same_channel(&self, other: &Msg) -> bool {
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
    pub fn tick(self, ageless: bool) -> Option<Msg> {
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

    fn renamed(self, r: impl Fn(u8) -> u8) -> Msg {
        match self {
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
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    pub nodes: [Node; N],
    pub net: BTreeSet<Msg>,
    pub events: u8,
}

impl State {
    pub fn send(&mut self, msg: Msg) {
        self.net.retain(|m| !m.same_channel(&msg));
        self.net.insert(msg);
    }

    /// Whether node `x`'s kernel answers a new connection to the VIP now: its fence is open,
    /// or it accepts frames a handed-over node forwards to it and that node forwards (its own
    /// fence closed). The connections a handed-over node finishes itself are not new ones.
    pub fn answers(&self, x: usize) -> bool {
        let n = &self.nodes[x];
        let forwarded = n.accept.is_some_and(|(from, _)| {
            let f = &self.nodes[from as usize];
            f.fence == 0 && f.forward_to == Some(x as u8)
        });
        n.fence > 0 || forwarded
    }

    pub fn answering(&self) -> usize {
        (0..N).filter(|&x| self.answers(x)).count()
    }

    /// Forgets messages that can no longer change anything: acknowledgements to a node that
    /// no longer leads in their term or whose lease and fence already reach as far, and
    /// `TimeoutNow` to a node that has left the term.
    /// (Keeps the state space small.)
    pub fn forget_spent(&mut self) {
        let nodes = &self.nodes;
        self.net.retain(|m| match *m {
            Msg::Ack { to, term, left, .. } => {
                let l = &nodes[to as usize];
                l.role == Role::Leader
                    && l.term == term
                    && (left > l.lease || (!l.waiting() && left > l.fence))
            }
            Msg::TimeoutNow { to, term, .. } => {
                let n = &nodes[to as usize];
                n.term == term && n.role == Role::Follower
            }
        });
    }

    /// The same state with the nodes renamed by `perm` (node i becomes perm[i]).
    fn renamed(&self, perm: [u8; N]) -> State {
        let r = |n: u8| perm[n as usize];
        let mut nodes = self.nodes.clone();
        for (i, node) in self.nodes.iter().enumerate() {
            let mut n = node.clone();
            for (j, &to) in perm.iter().enumerate() {
                n.promise[to as usize] = node.promise[j];
                n.claim_wait[to as usize] = node.claim_wait[j];
            }
            n.forward_to = node.forward_to.map(r);
            n.accept = node.accept.map(|(f, t)| (r(f), t));
            nodes[perm[i] as usize] = n;
        }
        State {
            nodes,
            net: self.net.iter().map(|m| m.renamed(r)).collect(),
            events: self.events,
        }
    }

    /// The least of the six renamings: states that differ only in node names are one.
    pub fn representative(&self) -> State {
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
pub enum Action {
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
    /// The successor `new`, leading with a lease, gets ready for `old`'s forward and asks it
    /// for the traffic; `old` closes its fence and forwards in one transaction, and its
    /// answer ends `new`'s wait for its fence (the request and answer are one step: a lost
    /// one is an action not taken).
    HandOver {
        new: u8,
        old: u8,
    },
    Freeze(u8),
    Resume(u8),
    Crash(u8),
    Restart(u8),
    /// `OpenNotAtomic` only: `open_until` reaches the kernel with the timeout it computed.
    Commit(u8),
}
