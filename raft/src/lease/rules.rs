//! The lease protocol's decisions, as pure functions over microsecond timestamps.
//!
//! The protocol in five sentences:
//! 1. A leader may let its kernel answer for the VIP (its fence is open) only until `F`
//!    (the `lease`) after the send instant of the newest lease ping that a majority of the
//!    voters acknowledged; the leader counts as acknowledging at once.
//! 2. Every acknowledgement is a promise with a bound: a voter that acknowledged node Y at
//!    its own instant `a` knows that Y's fence lapses by `a + F`, because Y sent what was
//!    acknowledged before `a`. Granting a vote is such an acknowledgement too (the candidate
//!    counts its vote requests as lease pings).
//! 3. A voter acknowledges a ping only while Raft on the voter recognizes exactly that
//!    leader in exactly that term (it heard from it, or voted for it in that term:
//!    `stream::recognized`), and never for a term below one it granted a vote in.
//! 4. A node that grants a vote first closes its own fence, then answers; its answer carries
//!    its own fence state and every bound it knows (`VoteReport`).
//! 5. A new leader opens its fence only after every fence its voters know of has lapsed:
//!    `claim_after`. A node's own word about its own fence beats what others know of it.
//!
//! Quorum intersection makes (5) sufficient: the majority that acknowledged the old
//! leader's newest lease and the majority that elected the new one share a node, and that
//! node either is the old leader (whose own report is exact) or reports a bound at least as
//! late as the old lease.
//!
//! `control`'s model check (`node/tests/lease_model.rs`) drives these functions.

use std::collections::{BTreeMap, BTreeSet};

/// CLOCK_MONOTONIC microseconds (see `time.rs`).
pub type Micros = u64;
/// Raft node id.
pub type NodeId = u64;

/// What one node knows of other nodes' fences: node -> instant by which it has surely lapsed.
pub type Bounds = BTreeMap<NodeId, Micros>;

/// Raises `bounds[node]` to `until`; an older acknowledgement never lowers a bound.
pub fn extend(bounds: &mut Bounds, node: NodeId, until: Micros) {
    let b = bounds.entry(node).or_insert(until);
    if *b < until {
        *b = until;
    }
}

/// Whether a voter acknowledges a lease ping of `leader` in `term`.
///
/// `raft_view` is (term, leader) as Raft on this voter sees it now; `granted_term` the
/// highest term this voter granted a vote in (recorded before the grant left the node, so it
/// is never behind a lagging Raft view).
pub fn accept_ping(
    term: u64,
    leader: NodeId,
    raft_view: Option<(u64, NodeId)>,
    granted_term: u64,
) -> bool {
    raft_view == Some((term, leader)) && term >= granted_term
}

/// The leader's lease start: the newest send instant acknowledged by a majority of
/// `voters`. The leader (`me`, when it is a voter) acknowledges at `now`. `None` without a
/// majority.
pub fn quorum_ack(
    voters: &BTreeSet<NodeId>,
    me: NodeId,
    acks: &BTreeMap<NodeId, Micros>,
    now: Micros,
) -> Option<Micros> {
    if voters.is_empty() {
        return None;
    }
    let majority = voters.len() / 2 + 1;
    let mut seen: Vec<Micros> = voters
        .iter()
        .filter_map(|v| {
            if *v == me {
                Some(now)
            } else {
                acks.get(v).copied()
            }
        })
        .collect();
    if seen.len() < majority {
        return None;
    }
    seen.sort_unstable_by(|a, b| b.cmp(a));
    Some(seen[majority - 1])
}

/// The fence information of one granted vote, converted to the candidate's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteReport {
    /// The voter.
    pub from: NodeId,
    /// When the voter's own fence has surely lapsed (it closes it before granting).
    pub own_clear_at: Micros,
    /// The voter's bounds on other nodes' fences.
    pub bounds: Bounds,
}

/// Earliest instant candidate `me` may open its fence: after every other node's fence
/// that its own acknowledgements (`own`) or its granted votes (`reports`) know of.
pub fn claim_after(me: NodeId, own: &Bounds, reports: &[VoteReport]) -> Micros {
    claim_after_except(me, None, own, reports)
}

/// [`claim_after`] leaving out node `skip`'s fence: when a planned hand-over's successor
/// may accept what the old holder `skip` forwards (it forwards only with its own fence
/// closed, so only the others' fences matter).
pub fn claim_after_except(
    me: NodeId,
    skip: Option<NodeId>,
    own: &Bounds,
    reports: &[VoteReport],
) -> Micros {
    let mut nodes: BTreeSet<NodeId> = own.keys().copied().collect();
    for r in reports {
        nodes.insert(r.from);
        nodes.extend(r.bounds.keys().copied());
    }
    nodes.remove(&me);
    if let Some(skip) = skip {
        nodes.remove(&skip);
    }
    nodes
        .into_iter()
        .map(|y| bound_of(y, own, reports))
        .max()
        .unwrap_or(0)
}

fn bound_of(y: NodeId, own: &Bounds, reports: &[VoteReport]) -> Micros {
    // The node's own word about its own fence is exact: it closed it before granting.
    if let Some(r) = reports.iter().find(|r| r.from == y) {
        return r.own_clear_at;
    }
    let known = reports.iter().filter_map(|r| r.bounds.get(&y).copied());
    known.chain(own.get(&y).copied()).max().unwrap_or(0)
}

/// Why a voter believes its leader is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspicion {
    /// The leader's process is gone: its connection closed and its Raft port refuses.
    Crash,
    /// Nothing accepted from the leader for the silence threshold (node death, freeze,
    /// partition).
    Silence,
}

/// Whether a voter suspects its leader at `now`.
///
/// `last_heard`: when it last accepted a ping of its leader (`None`: never, then
/// `since` (start or the last leader change) counts). `crash_confirmed`: the leader's
/// death was confirmed after that last ping.
pub fn suspect(
    now: Micros,
    last_heard: Option<Micros>,
    since: Micros,
    crash_confirmed: Option<Micros>,
    silence_after: Micros,
) -> Option<Suspicion> {
    let heard = last_heard.unwrap_or(since).max(since);
    if crash_confirmed.is_some_and(|c| c >= heard) {
        return Some(Suspicion::Crash);
    }
    (now.saturating_sub(heard) >= silence_after).then_some(Suspicion::Silence)
}

/// When a suspecting voter may start an election: the designated successor at once, any
/// other voter only after `stagger` more, so that votes do not split.
pub fn campaign_at(suspected_at: Micros, designated: bool, stagger: Micros) -> Micros {
    if designated {
        suspected_at
    } else {
        suspected_at + stagger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn pings_are_accepted_only_for_the_followed_leader_and_never_below_a_grant() {
        assert!(accept_ping(3, 1, Some((3, 1)), 3));
        assert!(
            !accept_ping(3, 1, Some((3, 2)), 0),
            "another leader in that term"
        );
        assert!(!accept_ping(3, 1, Some((4, 2)), 0), "Raft moved on");
        assert!(!accept_ping(3, 1, None, 0), "no leader known");
        assert!(
            !accept_ping(3, 1, Some((3, 1)), 4),
            "granted a vote in term 4 while the Raft view still lags"
        );
    }

    #[test]
    fn quorum_ack_is_the_majority_th_newest() {
        let acks: BTreeMap<NodeId, Micros> = [(2, 100), (3, 90)].into();
        assert_eq!(quorum_ack(&set(&[1, 2, 3]), 1, &acks, 500), Some(100));
        let acks: BTreeMap<NodeId, Micros> = [(2, 100), (3, 90), (4, 80), (5, 70)].into();
        assert_eq!(quorum_ack(&set(&[1, 2, 3, 4, 5]), 1, &acks, 500), Some(90));
        let acks: BTreeMap<NodeId, Micros> = [(2, 100)].into();
        assert_eq!(quorum_ack(&set(&[1, 2, 3, 4, 5]), 1, &acks, 500), None);
        assert_eq!(quorum_ack(&set(&[1]), 1, &BTreeMap::new(), 500), Some(500));
        assert_eq!(
            quorum_ack(&set(&[2, 3, 4]), 1, &[(2, 7)].into(), 500),
            None,
            "a non-voter leader does not count itself"
        );
    }

    #[test]
    fn claim_waits_for_every_known_bound_but_trusts_a_node_about_itself() {
        let own: Bounds = [(1, 120)].into();
        // Voter 3 granted and acknowledged leader 1 later than we did.
        let r3 = VoteReport {
            from: 3,
            own_clear_at: 0,
            bounds: [(1, 150)].into(),
        };
        assert_eq!(claim_after(2, &own, std::slice::from_ref(&r3)), 150);
        // The old leader itself granted (planned hand-off): it closed its fence.
        let r1 = VoteReport {
            from: 1,
            own_clear_at: 10,
            bounds: Bounds::new(),
        };
        assert_eq!(claim_after(2, &own, &[r3, r1]), 10);
        // Our own bound on ourselves never delays us.
        let own: Bounds = [(2, 900)].into();
        assert_eq!(claim_after(2, &own, &[]), 0);
    }

    #[test]
    fn suspicion_and_stagger() {
        assert_eq!(suspect(100, Some(90), 0, None, 25), None);
        assert_eq!(
            suspect(120, Some(90), 0, None, 25),
            Some(Suspicion::Silence)
        );
        assert_eq!(
            suspect(95, Some(90), 0, Some(92), 25),
            Some(Suspicion::Crash)
        );
        assert_eq!(
            suspect(95, Some(90), 0, Some(80), 25),
            None,
            "a confirmation older than the last ping is stale"
        );
        assert_eq!(suspect(30, None, 0, None, 25), Some(Suspicion::Silence));
        assert_eq!(campaign_at(100, true, 25), 100);
        assert_eq!(campaign_at(100, false, 25), 125);
    }
}
