//! Leases for the `[[vip]]` addresses (issue 18, several VIPs): the leader's grant table.
//!
//! A node may hold a spread VIP only while the committed assignment names it **and** the
//! leader, holding its own lease, granted it a short `vip_lease` for that address. The
//! holder asks every renewal period (`PeerRequest::VipLease`); it counts its grant from the
//! instant it *sent* the request, so its hold ends no later than the leader's record of it.
//! The leader grants an address to a node only when no other node's grant on it is still
//! running, and a new leader grants nothing for `vip_lease` after it started leading (a
//! deposed leader granted only while its lease ran, which ended before this one began).
//! So at any instant each address has at most one holder, whatever node dies, freezes or
//! is cut off: the kernel fence of each holder is set to the same deadline.
//!
//! The table also tells the leader who is alive for placement: a node that asked within
//! `vip_lease` (and is not draining) is live, since the instant it started asking.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// How long one grant runs. A dead or cut-off holder's addresses move after about this
/// long plus a renewal and a commit.
pub const VIP_LEASE: std::time::Duration = std::time::Duration::from_millis(300);

/// A renewal request: "I am `from`; grant me my addresses" (`draining`: move them away).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipLeaseAsk {
    pub from: NodeId,
    pub draining: bool,
}

/// The answer: the addresses granted for `vip_lease` from the ask's send instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipLeaseGrant {
    pub granted: Vec<String>,
}

/// One node's standing as the leader sees it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    last_us: u64,
    since_us: u64,
    draining: bool,
}

#[derive(Debug, Default)]
struct Table {
    /// The term this table's grants were given in, and when this node began leading it.
    term: u64,
    lead_since_us: u64,
    /// address -> (holder, grant end).
    grants: BTreeMap<String, (NodeId, u64)>,
    seen: BTreeMap<NodeId, Seen>,
}

/// The leader's grant table (one per node; used only while it leads).
#[derive(Debug)]
pub struct VipGrants {
    lease_us: u64,
    table: Mutex<Table>,
}

impl VipGrants {
    pub fn new(vip_lease: std::time::Duration) -> VipGrants {
        VipGrants {
            lease_us: vip_lease.as_micros() as u64,
            table: Mutex::new(Table::default()),
        }
    }

    /// The length of one grant.
    pub fn lease_us(&self) -> u64 {
        self.lease_us
    }

    /// Answers `ask` at `now_us`, as leader of `term` with a valid lease (`term` 0: not
    /// leading, nothing granted). `assignment` is the committed one (address -> owner).
    pub fn answer(
        &self,
        ask: &VipLeaseAsk,
        term: u64,
        assignment: &BTreeMap<String, NodeId>,
        now_us: u64,
    ) -> VipLeaseGrant {
        let mut t = self.lock();
        let seen = t.seen.get(&ask.from).copied();
        let since_us = match seen {
            Some(s) if now_us.saturating_sub(s.last_us) < self.lease_us => s.since_us,
            _ => now_us,
        };
        t.seen.insert(
            ask.from,
            Seen {
                last_us: now_us,
                since_us,
                draining: ask.draining,
            },
        );
        if term == 0 {
            return VipLeaseGrant::default();
        }
        if t.term != term {
            // A new leadership: forget the old grants, and wait out any a deposed leader gave.
            t.term = term;
            t.lead_since_us = now_us;
            t.grants.clear();
        }
        if now_us < t.lead_since_us + self.lease_us {
            return VipLeaseGrant::default();
        }
        let mut granted = Vec::new();
        for (address, owner) in assignment {
            if *owner != ask.from {
                continue;
            }
            match t.grants.get(address) {
                Some((other, until)) if *other != ask.from && *until > now_us => continue,
                _ => {}
            }
            t.grants
                .insert(address.clone(), (ask.from, now_us + self.lease_us));
            granted.push(address.clone());
        }
        VipLeaseGrant { granted }
    }

    /// Nodes that asked within `vip_lease` and are not draining, with the instant each has
    /// been asking since: who placement may use. Empty until this node has led in `term`
    /// for two grant lengths (the others need that long to find the new leader).
    pub fn live(&self, term: u64, now_us: u64) -> Option<BTreeMap<NodeId, u64>> {
        let t = self.lock();
        if term == 0 || t.term != term || now_us < t.lead_since_us + 2 * self.lease_us {
            return None;
        }
        Some(
            t.seen
                .iter()
                .filter(|(_, s)| now_us.saturating_sub(s.last_us) < self.lease_us && !s.draining)
                .map(|(n, s)| (*n, s.since_us))
                .collect(),
        )
    }

    /// Who holds a grant on each address now (for status).
    pub fn holders(&self, now_us: u64) -> BTreeMap<String, NodeId> {
        self.lock()
            .grants
            .iter()
            .filter(|(_, (_, until))| *until > now_us)
            .map(|(a, (n, _))| (a.clone(), *n))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The leader's answer to `ask` now: grants only while this node leads with a valid lease.
pub fn answer_here(
    grants: &VipGrants,
    lease: &crate::lease::Lease,
    state: &crate::state::ClusterState,
    ask: &VipLeaseAsk,
) -> VipLeaseGrant {
    let now = crate::lease::time::now_us();
    let leadership = *lease.leadership().borrow();
    let term = if leadership.may_hold(now) {
        leadership.term
    } else {
        0
    };
    grants.answer(ask, term, &state.vip_assignment, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ask(from: NodeId) -> VipLeaseAsk {
        VipLeaseAsk {
            from,
            draining: false,
        }
    }

    #[test]
    fn a_moved_address_is_granted_only_after_the_old_grant_ran_out() {
        let g = VipGrants::new(Duration::from_millis(300));
        let mut a: BTreeMap<String, NodeId> = [("10.77.80.1".to_string(), 1)].into();
        // A new leader grants nothing for one grant length.
        assert!(g.answer(&ask(1), 5, &a, 1_000_000).granted.is_empty());
        let first = g.answer(&ask(1), 5, &a, 1_300_000);
        assert_eq!(first.granted, vec!["10.77.80.1".to_string()]);
        a.insert("10.77.80.1".into(), 2);
        assert!(g.answer(&ask(2), 5, &a, 1_599_999).granted.is_empty());
        assert_eq!(g.answer(&ask(2), 5, &a, 1_600_000).granted.len(), 1);
        // And node 1 no longer gets it.
        assert!(g.answer(&ask(1), 5, &a, 1_600_001).granted.is_empty());
    }

    #[test]
    fn a_new_term_waits_a_grant_length_and_not_leading_grants_nothing() {
        let g = VipGrants::new(Duration::from_millis(300));
        let a: BTreeMap<String, NodeId> = [("10.77.80.1".to_string(), 1)].into();
        assert!(g.answer(&ask(1), 0, &a, 5_000_000).granted.is_empty());
        assert!(g.answer(&ask(1), 3, &a, 5_000_000).granted.is_empty());
        assert_eq!(g.answer(&ask(1), 3, &a, 5_300_000).granted.len(), 1);
        assert!(g.answer(&ask(1), 4, &a, 5_300_001).granted.is_empty());
    }

    #[test]
    fn live_nodes_are_those_asking_and_not_draining() {
        let g = VipGrants::new(Duration::from_millis(300));
        let a = BTreeMap::new();
        g.answer(&ask(1), 2, &a, 0);
        assert!(g.live(2, 100_000).is_none(), "too early after taking over");
        g.answer(&ask(1), 2, &a, 600_000);
        g.answer(&ask(2), 2, &a, 600_000);
        let drain = VipLeaseAsk {
            from: 3,
            draining: true,
        };
        g.answer(&drain, 2, &a, 600_000);
        let live = g.live(2, 650_000).expect("live");
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert!(
            g.live(2, 1_000_000).expect("live").is_empty(),
            "all went silent"
        );
    }
}
