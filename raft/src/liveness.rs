//! Which members are live, as the leader judges them, for the replicated record
//! (`Command::SetLiveNodes`, `ClusterState::live_nodes`) that health-aware DNS answers
//! read (issue 25 item 2), so every node answers alike.
//!
//! The leader pings every voter every `heartbeat` (the lease, `lease/`); a voter whose
//! newest acknowledged ping of this term is younger than [`LIVE_WITHIN`] is live, and so
//! is the leader. A new leader judges nothing until it has led for `LIVE_WITHIN` (every
//! live voter has acknowledged by then); until it commits, the previous record stands.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::types::NodeId;

/// A voter silent this long is no longer live (pings go out every 5 ms by default).
pub const LIVE_WITHIN: Duration = Duration::from_millis(200);

/// The leader's judge: remembers since when it leads its term.
#[derive(Debug, Default)]
pub struct LiveJudge {
    term: u64,
    since_us: u64,
}

impl LiveJudge {
    /// The live members at `now_us`, as leader of `term` (0: not leading, no judgement).
    /// `ack_ages` holds, per voter, the age of its newest acknowledged ping in `term`.
    pub fn judge(
        &mut self,
        me: NodeId,
        term: u64,
        voters: &BTreeSet<NodeId>,
        ack_ages: &[(NodeId, u64)],
        now_us: u64,
    ) -> Option<BTreeSet<NodeId>> {
        if term == 0 {
            self.term = 0;
            return None;
        }
        if term != self.term {
            self.term = term;
            self.since_us = now_us;
        }
        let within = LIVE_WITHIN.as_micros() as u64;
        if now_us.saturating_sub(self.since_us) < within {
            return None;
        }
        let mut live: BTreeSet<NodeId> = ack_ages
            .iter()
            .filter(|(n, age)| voters.contains(n) && *age < within)
            .map(|(n, _)| *n)
            .collect();
        live.insert(me);
        Some(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_waits_then_counts_voters_that_acknowledged_recently() {
        let mut j = LiveJudge::default();
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        assert_eq!(j.judge(1, 0, &voters, &[], 1_000_000), None, "not leading");
        assert_eq!(
            j.judge(1, 4, &voters, &[(2, 0)], 1_000_000),
            None,
            "just elected"
        );
        let ages = [(2, 5_000), (3, 250_000), (9, 0)];
        let live = j.judge(1, 4, &voters, &ages, 1_200_000).expect("judged");
        assert_eq!(live, [1, 2].into(), "3 is silent, 9 is no voter");
        // A newer term starts the wait again.
        assert_eq!(j.judge(1, 5, &voters, &ages, 1_300_000), None);
    }
}
