//! `LeaseState`: everything one node knows about leases, as plain data behind one lock.
//!
//! Two sides live here because they share one ordering: the *voter* side (which leader it
//! follows, the bounds it promised, the highest term it granted a vote in) and the *leader*
//! side (acknowledged ping send instants, the fence reports of its granted votes). Holding
//! both under one lock makes "record a grant, then build its report" and "accept a ping"
//! linearizable: a ping is either rejected or its bound is in every report built after it.
//!
//! The decisions themselves are the pure functions of `rules.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::rules::{self, Bounds, Micros, NodeId, Suspicion, VoteReport};
use super::wire::FenceReport;

/// The leader this voter follows, as last confirmed by an accepted ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Following {
    pub term: u64,
    pub leader: NodeId,
    pub last_ping_at: Micros,
}

/// What the VIP guard needs: publish on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    /// The term this node leads (0 when it does not).
    pub term: u64,
    /// While leading: the instant until which a majority has acknowledged this node. The
    /// fence may be open until then, never later. `None`: no lease (not leading, revoked,
    /// or no majority yet).
    pub lease_until_us: Option<Micros>,
    /// Earliest instant this node may open its fence in `term`: every fence its voters
    /// know of has lapsed by then.
    pub claim_after_us: Micros,
}

impl Leadership {
    /// Whether the fence may be open at `now`.
    pub fn may_hold(&self, now: Micros) -> bool {
        self.lease_until_us.is_some_and(|u| now < u) && now >= self.claim_after_us
    }
}

/// Stands for "some node this one may have acknowledged before it restarted" (node ids
/// start at 1).
pub const UNKNOWN_HOLDER: NodeId = 0;

/// The lease knowledge of one node.
#[derive(Debug)]
pub struct LeaseState {
    me: NodeId,
    fence_us: Micros,
    // voter side
    granted_term: u64,
    last_grant_at: Option<Micros>,

    bounds: Bounds,
    following: Option<Following>,
    successor: Option<NodeId>,
    since: Micros,
    crash_confirmed: Option<(NodeId, Micros)>,
    // leader side
    voters: BTreeSet<NodeId>,
    leading: Option<u64>,
    revoked_upto: u64,
    campaign_term: u64,
    acks: BTreeMap<NodeId, Micros>,
    reports: Vec<VoteReport>,
    claimed: Option<(u64, Micros)>,
}

impl LeaseState {
    pub fn new(me: NodeId, fence_us: Micros, now: Micros) -> LeaseState {
        // Promises are not stored on disk: before a restart this node may have acknowledged
        // a leader whose fence is still open. Until one fence length has passed it reports
        // that bound for an unknown holder (`UNKNOWN_HOLDER`), so no candidate it votes for
        // claims before that fence has surely lapsed.
        let mut bounds = Bounds::new();
        bounds.insert(UNKNOWN_HOLDER, now + fence_us);
        LeaseState {
            me,
            fence_us,
            granted_term: 0,
            last_grant_at: None,

            bounds,
            following: None,
            successor: None,
            since: now,
            crash_confirmed: None,
            voters: BTreeSet::new(),
            leading: None,
            revoked_upto: 0,
            campaign_term: 0,
            acks: BTreeMap::new(),
            reports: Vec::new(),
            claimed: None,
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn fence_us(&self) -> Micros {
        self.fence_us
    }

    // ---- voter side ----

    /// A lease ping of `leader` in `term`; returns whether it is acknowledged.
    pub fn on_ping(
        &mut self,
        term: u64,
        leader: NodeId,
        successor: Option<NodeId>,
        raft_view: Option<(u64, NodeId)>,
        now: Micros,
    ) -> bool {
        if !rules::accept_ping(term, leader, raft_view, self.granted_term) {
            return false;
        }
        rules::extend(&mut self.bounds, leader, now + self.fence_us);
        let changed = self
            .following
            .is_none_or(|f| (f.term, f.leader) != (term, leader));
        if changed {
            self.since = now;
            self.crash_confirmed = None;
        }
        self.following = Some(Following {
            term,
            leader,
            last_ping_at: now,
        });
        self.successor = successor;
        true
    }

    /// Raft on this node granted `candidate` a vote in `term` (called before the answer
    /// leaves): no ping below `term` is acknowledged from now on, and the candidate may
    /// count this vote as a lease acknowledgement.
    pub fn on_vote_granted(&mut self, term: u64, candidate: NodeId, now: Micros) {
        self.granted_term = self.granted_term.max(term);
        self.last_grant_at = Some(now);
        // Voting in a higher term ends this node's own leadership of a lower one.
        if let Some(t) = self.leading.filter(|t| *t < term) {
            self.revoked_upto = self.revoked_upto.max(t);
        }
        if candidate != self.me {
            rules::extend(&mut self.bounds, candidate, now + self.fence_us);
        }
    }

    /// The fence report of a granted vote: `own_clear_in_us` is what remains of this
    /// node's own fence after it closed it.
    pub fn report(&self, own_clear_in_us: Micros, now: Micros) -> FenceReport {
        FenceReport {
            own_clear_in_us,
            acked: self
                .bounds
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(node, until)| (*node, until - now))
                .collect(),
        }
    }

    pub fn following(&self) -> Option<Following> {
        self.following
    }

    /// The successor the leader designated in its latest ping.
    pub fn successor(&self) -> Option<NodeId> {
        self.successor
    }

    pub fn last_grant_at(&self) -> Option<Micros> {
        self.last_grant_at
    }

    /// The leader `leader`'s process was confirmed dead at `now`.
    pub fn confirm_crash(&mut self, leader: NodeId, now: Micros) {
        if self.following.is_some_and(|f| f.leader == leader) {
            self.crash_confirmed = Some((leader, now));
        }
    }

    /// Whether this voter suspects its leader now (see `rules::suspect`).
    pub fn suspicion(&self, now: Micros, silence_after: Micros) -> Option<Suspicion> {
        let confirmed = match (self.crash_confirmed, self.following) {
            (Some((l, at)), Some(f)) if l == f.leader => Some(at),
            _ => None,
        };
        rules::suspect(
            now,
            self.following.map(|f| f.last_ping_at),
            self.since,
            confirmed,
            silence_after,
        )
    }

    /// Raft's view changed to a leader this node has not confirmed by ping yet (or to no
    /// leader): silence is counted from now, not from the old leader's last ping.
    pub fn on_raft_leader_changed(&mut self, now: Micros) {
        self.since = now;
    }

    // ---- leader side ----

    /// Raft's voter set (membership changes).
    pub fn set_voters(&mut self, voters: BTreeSet<NodeId>) {
        self.voters = voters;
    }

    /// Raft says this node leads `term` (or nothing).
    pub fn set_leading(&mut self, term: Option<u64>) {
        if self.leading != term {
            self.claimed = None;
        }
        self.leading = term;
    }

    pub fn leading(&self) -> Option<u64> {
        self.leading
    }

    /// Whether a quorum of voters (with this node) granted this node's votes in `term`,
    /// which was not given up since.
    pub fn won(&self, term: u64) -> bool {
        term == self.campaign_term
            && term > self.revoked_upto
            && rules::quorum_ack(&self.voters, self.me, &self.acks, 0).is_some()
    }

    fn campaign(&mut self, term: u64) -> bool {
        if term < self.campaign_term || term <= self.revoked_upto {
            return false;
        }
        if term > self.campaign_term {
            self.campaign_term = term;
            self.acks.clear();
            self.reports.clear();
        }
        true
    }

    /// A vote this node requested at `sent` in `term` was granted by `voter`, which
    /// reported `report` (received at `received`).
    pub fn on_vote_reply(
        &mut self,
        term: u64,
        voter: NodeId,
        sent: Micros,
        report: &FenceReport,
        received: Micros,
    ) {
        if !self.campaign(term) {
            return;
        }
        self.acks.insert(voter, sent);
        // A quorum granted this campaign: this node leads `term` (Raft allows one leader a
        // term), whether or not Raft's metrics say so yet (they wait for the first entry's
        // fsync, 10+ ms on a busy disk, and a planned hand-over's old fence does not wait).
        if self.leading.is_none() && self.won(term) {
            self.leading = Some(term);
        }
        self.reports.retain(|r| r.from != voter);
        self.reports.push(VoteReport {
            from: voter,
            own_clear_at: received + report.own_clear_in_us,
            bounds: report
                .acked
                .iter()
                .map(|(node, left)| (*node, received + left))
                .collect(),
        });
    }

    /// The earliest instant every fence but `old`'s that this node's claim in its campaign
    /// term waits for has lapsed (see `rules::claim_after_except`).
    pub fn claim_after_except(&self, old: NodeId) -> Micros {
        rules::claim_after_except(self.me, Some(old), &self.bounds, &self.reports)
    }

    /// `voter`, whose vote elected this node in `term`, confirmed at `now` that its fence
    /// is closed (a planned hand-over): its own word, exact, replaces what its vote said.
    pub fn on_released(&mut self, voter: NodeId, term: u64, now: Micros) {
        if term != self.campaign_term {
            return;
        }
        match self.reports.iter_mut().find(|r| r.from == voter) {
            Some(r) => r.own_clear_at = r.own_clear_at.min(now),
            // Elected without its vote (the stopping leader stepped down on a voter's newer
            // term, not on our vote request): its word is just as exact, and without this
            // the claim would wait for its lease while its kernel already forwards to us.
            None => self.reports.push(VoteReport {
                from: voter,
                own_clear_at: now,
                bounds: Bounds::new(),
            }),
        }
    }

    /// `voter` acknowledged a ping this node sent at `sent` in `term`.
    pub fn on_ping_acked(&mut self, term: u64, voter: NodeId, sent: Micros) {
        if !self.campaign(term) {
            return;
        }
        let newest = self.acks.entry(voter).or_insert(sent);
        if *newest < sent {
            *newest = sent;
        }
    }

    /// A higher term was seen: leadership of every term up to `term - 1` is over.
    /// Returns true when this node was leading a lower term (its fence must close now).
    pub fn observe_term(&mut self, term: u64) -> bool {
        match self.leading {
            Some(t) if t < term => {
                self.revoked_upto = self.revoked_upto.max(t);
                true
            }
            _ => false,
        }
    }

    /// What the VIP guard may do at `now`.
    pub fn leadership(&self, now: Micros) -> Leadership {
        let Some(term) = self.leading.filter(|t| *t > self.revoked_upto) else {
            return Leadership::default();
        };
        let acks = if term == self.campaign_term {
            &self.acks
        } else {
            &BTreeMap::new()
        };
        let start = rules::quorum_ack(&self.voters, self.me, acks, now);
        // Once claimed in a term, later reports can no longer move the claim instant.
        let claim_after_us = match self.claimed {
            Some((t, at)) if t == term => at,
            _ => {
                let reports: &[VoteReport] = if term == self.campaign_term {
                    &self.reports
                } else {
                    &[]
                };
                rules::claim_after(self.me, &self.bounds, reports)
            }
        };
        Leadership {
            term,
            lease_until_us: start.map(|s| s + self.fence_us),
            claim_after_us,
        }
    }

    /// Age at `now` of each voter's newest acknowledged ping (its send instant), for the
    /// log line of a lapse.
    pub fn ack_ages(&self, now: Micros) -> Vec<(NodeId, Micros)> {
        self.acks
            .iter()
            .map(|(v, at)| (*v, now.saturating_sub(*at)))
            .collect()
    }

    /// The guard opened the fence in `term` at `claim_after_us`.
    pub fn mark_claimed(&mut self, term: u64, claim_after_us: Micros) {
        if self.leading == Some(term) {
            self.claimed.get_or_insert((term, claim_after_us));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Micros = 20_000;

    /// A node that has run for longer than one fence (no restart bound left).
    fn settled(me: NodeId) -> LeaseState {
        let mut s = LeaseState::new(me, F, 0);
        s.bounds.remove(&UNKNOWN_HOLDER);
        s
    }

    fn voters() -> BTreeSet<NodeId> {
        [1, 2, 3].into()
    }

    #[test]
    fn a_restarted_voter_reports_an_unknown_holder_for_one_fence() {
        let s = LeaseState::new(2, F, 1_000);
        let r = s.report(0, 1_500);
        assert_eq!(r.acked, vec![(UNKNOWN_HOLDER, F - 500)]);
        assert!(s.report(0, 1_000 + F).acked.is_empty());
    }

    #[test]
    fn a_grant_makes_older_pings_rejected_and_is_in_the_report() {
        let mut s = LeaseState::new(3, F, 0);
        assert!(s.on_ping(5, 1, Some(2), Some((5, 1)), 1_000));
        s.on_vote_granted(6, 2, 2_000);
        // Raft's view still says (5, 1) for a moment: the ping is refused anyway.
        assert!(!s.on_ping(5, 1, Some(2), Some((5, 1)), 2_500));
        let r = s.report(0, 3_000);
        let acked: BTreeMap<NodeId, Micros> = r.acked.into_iter().collect();
        assert_eq!(acked.get(&1), Some(&(1_000 + F - 3_000)));
        assert_eq!(acked.get(&2), Some(&(2_000 + F - 3_000)));
    }

    /// Node 1, elected in `term` by node 2's vote (sent at 1,000, answered at 1,200) with
    /// `report`.
    fn elected(term: u64, report: &FenceReport) -> LeaseState {
        let mut s = settled(1);
        s.set_voters(voters());
        s.on_vote_reply(term, 2, 1_000, report, 1_200);
        s.set_leading(Some(term));
        s
    }

    #[test]
    fn leader_lease_from_votes_then_pings_and_revocation() {
        let report = FenceReport {
            own_clear_in_us: 0,
            acked: vec![(3, 4_000)],
        };
        let mut s = elected(7, &report);
        let l = s.leadership(1_500);
        assert_eq!(l.lease_until_us, Some(1_000 + F));
        assert_eq!(l.claim_after_us, 1_200 + 4_000, "waits for node 3's fence");
        s.on_ping_acked(7, 3, 10_000);
        assert_eq!(s.leadership(10_100).lease_until_us, Some(10_000 + F));
        // An ack of an older term is ignored.
        s.on_ping_acked(6, 2, 15_000);
        assert_eq!(s.leadership(15_100).lease_until_us, Some(10_000 + F));
        assert!(s.observe_term(8));
        assert_eq!(s.leadership(15_200).lease_until_us, None);
        s.on_ping_acked(7, 3, 16_000);
        assert_eq!(s.leadership(16_100), Leadership::default());
    }

    /// A planned hand-off: the old holder (2) granted with its fence still open for 15 ms;
    /// its later word that the fence is closed lets the claim go at once, but never
    /// earlier than another voter's bound, and never for another term.
    #[test]
    fn a_hand_over_confirmation_ends_the_wait_for_that_fence_only() {
        let bridged = FenceReport {
            own_clear_in_us: 15_000,
            acked: vec![(3, 2_000)],
        };
        let mut s = elected(4, &bridged);
        assert_eq!(s.leadership(1_300).claim_after_us, 1_200 + 15_000);
        s.on_released(2, 3, 5_000);
        assert_eq!(
            s.leadership(5_100).claim_after_us,
            1_200 + 15_000,
            "a confirmation for another term counts for nothing"
        );
        s.on_released(2, 4, 5_000);
        assert_eq!(s.leadership(5_100).claim_after_us, 5_000);
        s.on_released(2, 4, 9_000);
        assert_eq!(
            s.leadership(9_100).claim_after_us,
            5_000,
            "never later again"
        );
        let mut t = elected(4, &bridged);
        t.on_released(2, 4, 1_500);
        assert_eq!(
            t.leadership(1_600).claim_after_us,
            1_200 + 2_000,
            "node 3's fence, as node 2 knows it, is still waited for"
        );
    }

    #[test]
    fn a_hand_over_confirmation_counts_without_the_old_holders_vote() {
        // Node 1 follows node 3 and is elected in term 4 by node 2 alone (node 3 stepped
        // down on node 2's newer term and never voted): node 3's fence, as node 1 and
        // node 2 acknowledged it, is waited for until node 3 says it is closed.
        let mut s = settled(1);
        s.set_voters(voters());
        assert!(s.on_ping(3, 3, Some(1), Some((3, 3)), 500));
        let report = FenceReport {
            own_clear_in_us: 0,
            acked: vec![(3, 18_000)],
        };
        s.on_vote_reply(4, 2, 1_000, &report, 1_200);
        s.set_leading(Some(4));
        assert_eq!(
            s.leadership(1_300).claim_after_us,
            500 + F,
            "its own ack is later"
        );
        s.on_released(3, 4, 3_000);
        assert_eq!(s.leadership(3_100).claim_after_us, 3_000);
    }

    #[test]
    fn a_successor_may_accept_forwarded_frames_once_the_other_fences_lapsed() {
        // Node 1 follows node 2 (the stopping holder); node 3 led before and its fence, as
        // node 2 reports it, runs 5 ms more.
        let mut s = settled(1);
        s.set_voters(voters());
        assert!(s.on_ping(3, 2, Some(1), Some((3, 2)), 500));
        let report = FenceReport {
            own_clear_in_us: 15_000,
            acked: vec![(3, 5_000)],
        };
        s.on_vote_reply(4, 2, 1_000, &report, 1_200);
        s.set_leading(Some(4));
        assert_eq!(s.leadership(1_300).claim_after_us, 1_200 + 15_000);
        assert_eq!(
            s.claim_after_except(2),
            1_200 + 5_000,
            "node 3's fence still counts"
        );
        assert_eq!(settled(1).claim_after_except(2), 0);
    }

    #[test]
    fn a_quorum_of_grants_leads_before_raft_says_so() {
        let mut s = settled(1);
        s.set_voters(voters());
        let r = FenceReport::default();
        s.on_vote_reply(5, 2, 1_000, &r, 1_100);
        assert_eq!(s.leading(), Some(5), "two of three (with itself) granted");
        assert_eq!(s.leadership(1_200).lease_until_us, Some(1_000 + F));
        // Raft's metrics still say candidate of term 5: it stays leading.
        let won = s.won(5);
        s.set_leading(won.then_some(5));
        assert_eq!(s.leading(), Some(5));
        // A newer term seen: given up, and a later grant of term 5 does not revive it.
        assert!(s.observe_term(6));
        assert!(!s.won(5));
        assert_eq!(s.leadership(1_300), Leadership::default());
        let mut t = settled(1);
        t.set_voters([1, 2, 3, 4, 5].into());
        t.on_vote_reply(5, 2, 1_000, &r, 1_100);
        assert_eq!(t.leading(), None, "two of five is no quorum");
    }

    #[test]
    fn claim_instant_freezes_once_claimed() {
        let mut s = settled(1);
        s.set_voters(voters());
        let r = FenceReport {
            own_clear_in_us: 0,
            acked: vec![],
        };
        s.on_vote_reply(2, 2, 100, &r, 150);
        s.set_leading(Some(2));
        let l = s.leadership(200);
        assert_eq!(
            l.claim_after_us, 150,
            "voter 2's own fence closed when it answered"
        );
        s.mark_claimed(2, l.claim_after_us);
        let late = FenceReport {
            own_clear_in_us: 0,
            acked: vec![(3, 50_000)],
        };
        s.on_vote_reply(2, 3, 100, &late, 300);
        assert_eq!(s.leadership(400).claim_after_us, 150);
    }

    #[test]
    fn silence_counts_from_the_last_accepted_ping() {
        let mut s = LeaseState::new(2, F, 0);
        assert!(s.on_ping(1, 1, Some(2), Some((1, 1)), 10_000));
        assert_eq!(s.suspicion(30_000, 25_000), None);
        assert_eq!(s.suspicion(36_000, 25_000), Some(Suspicion::Silence));
        s.confirm_crash(1, 12_000);
        assert_eq!(s.suspicion(12_500, 25_000), Some(Suspicion::Crash));
        assert_eq!(s.successor(), Some(2));
    }
}
