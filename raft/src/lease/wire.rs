//! Lease messages on the peer channel. Durations travel as microseconds *remaining*,
//! never as instants, so the two clocks never need to agree.

use serde::{Deserialize, Serialize};

use super::rules::{NodeId, Suspicion};

/// What a voter that grants a vote knows of fences (sent with every vote answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceReport {
    /// What remains of the voter's own fence after it closed it (0: closed or never open).
    pub own_clear_in_us: u64,
    /// Other nodes' fences the voter acknowledged: (node, µs until surely lapsed).
    pub acked: Vec<(NodeId, u64)>,
}

/// Sent by the leader on a lease stream every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasePing {
    pub term: u64,
    pub leader: NodeId,
    /// Echoed in the acknowledgement; the leader maps it to its send instant.
    pub seq: u64,
    /// The voter that should campaign first if this leader goes away.
    pub successor: Option<NodeId>,
}

/// The voter's answer to one ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAck {
    pub seq: u64,
    pub accepted: bool,
    /// The highest term the voter knows of (a leader that sees a higher one steps down).
    pub term: u64,
}

/// "Would you vote if I campaigned?" — asked before any election, so that a voter that
/// alone lost its leader cannot start one (and raise the term of a healthy cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    pub candidate: NodeId,
    /// The candidate's current term.
    pub term: u64,
    /// The leader the candidate lost (`None`: it never had one).
    pub leader: Option<NodeId>,
    pub reason: WireSuspicion,
    /// The candidate's last log entry as (term, index) (`None`: an empty log). A voter
    /// whose log is newer refuses, as its real vote would (Raft's up-to-date rule): a
    /// candidate that cannot win must not raise the term and depose the leader.
    pub last_log: Option<(u64, u64)>,
}

/// `Suspicion` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireSuspicion {
    Crash,
    Silence,
}

impl From<Suspicion> for WireSuspicion {
    fn from(s: Suspicion) -> Self {
        match s {
            Suspicion::Crash => WireSuspicion::Crash,
            Suspicion::Silence => WireSuspicion::Silence,
        }
    }
}
