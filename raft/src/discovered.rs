//! Backends found by service discovery, as the cluster agrees on them (issue 25 item 1).
//!
//! The leader resolves each pool's `discover` source and proposes the pool's whole member
//! set (`Command::SetDiscovered`); every node runs that set, so all nodes balance over the
//! same backends whichever of them asked DNS. This file owns the replicated shape and the
//! pure rules that turn one resolution into the next set:
//! - an address found for the first time joins (its health is unknown: it counts as down
//!   until the voters' checks say otherwise, `ClusterState::backend_healthy`);
//! - an address no longer found is kept, drained, since the leader's clock said so
//!   (`gone_since_ms`), and leaves after the pool's drain time;
//! - a failed resolution changes no member, only the recorded `error`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One backend of a discovered set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredMember {
    pub weight: u32,
    /// When (leader's wall clock, ms since the Unix epoch) its record was first missing;
    /// 0 while it is found. A member with it set is drained.
    pub gone_since_ms: u64,
}

impl DiscoveredMember {
    pub fn draining(&self) -> bool {
        self.gone_since_ms != 0
    }
}

/// A pool's discovered backends and the state of its source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredSet {
    /// `IP:PORT` -> member.
    pub members: BTreeMap<String, DiscoveredMember>,
    /// Why the last resolution failed ("" when it worked): the set is the last good one.
    pub error: String,
}

impl DiscoveredSet {
    /// The set after a resolution that found `found` at `now_ms`: new addresses join with
    /// `weight`, missing ones start draining, drained ones found again come back, and
    /// the error is cleared. An empty `found` is the caller's to refuse (it keeps the set).
    pub fn after_found(&self, found: &BTreeSet<String>, weight: u32, now_ms: u64) -> DiscoveredSet {
        let mut members = BTreeMap::new();
        for addr in found {
            members.insert(
                addr.clone(),
                DiscoveredMember {
                    weight,
                    gone_since_ms: 0,
                },
            );
        }
        for (addr, m) in &self.members {
            if !found.contains(addr) {
                let since = if m.draining() {
                    m.gone_since_ms
                } else {
                    now_ms.max(1)
                };
                members.insert(
                    addr.clone(),
                    DiscoveredMember {
                        gone_since_ms: since,
                        ..*m
                    },
                );
            }
        }
        DiscoveredSet {
            members,
            error: String::new(),
        }
    }

    /// The set after a failed resolution: the same members, with `error` recorded.
    pub fn after_failure(&self, error: &str) -> DiscoveredSet {
        DiscoveredSet {
            members: self.members.clone(),
            error: error.to_string(),
        }
    }

    /// Drops members that have drained for `drain_ms` by `now_ms`.
    pub fn expire(&self, now_ms: u64, drain_ms: u64) -> DiscoveredSet {
        let mut next = self.clone();
        next.members
            .retain(|_, m| !m.draining() || now_ms.saturating_sub(m.gone_since_ms) < drain_ms);
        next
    }

    /// When the next member's drain ends (ms since the epoch), if any drains.
    pub fn next_expiry(&self, drain_ms: u64) -> Option<u64> {
        (self.members.values())
            .filter(|m| m.draining())
            .map(|m| m.gone_since_ms.saturating_add(drain_ms))
            .min()
    }

    /// Addresses this set has that `next` no longer has.
    pub fn removed_in<'a>(&'a self, next: &'a DiscoveredSet) -> impl Iterator<Item = &'a String> {
        self.members
            .keys()
            .filter(|a| !next.members.contains_key(*a))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.error.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(addrs: &[&str]) -> BTreeSet<String> {
        addrs.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_missing_address_drains_then_leaves_and_a_returning_one_is_back() {
        let s0 = DiscoveredSet::default().after_found(&found(&["a:1", "b:1"]), 1, 1_000);
        assert!(s0.members.values().all(|m| !m.draining()));
        let s1 = s0.after_found(&found(&["a:1"]), 1, 2_000);
        assert_eq!(s1.members["b:1"].gone_since_ms, 2_000);
        // Still missing later: the drain keeps its start.
        let s2 = s1.after_found(&found(&["a:1"]), 1, 5_000);
        assert_eq!(s2.members["b:1"].gone_since_ms, 2_000);
        assert_eq!(s2.next_expiry(10_000), Some(12_000));
        assert!(s2.expire(11_999, 10_000).members.contains_key("b:1"));
        let s3 = s2.expire(12_000, 10_000);
        assert!(!s3.members.contains_key("b:1"));
        assert_eq!(s2.removed_in(&s3).collect::<Vec<_>>(), vec!["b:1"]);
        // Found again while draining: back in service.
        let back = s2.after_found(&found(&["a:1", "b:1"]), 1, 6_000);
        assert!(!back.members["b:1"].draining());
    }

    #[test]
    fn a_failure_keeps_the_members_and_records_why() {
        let s0 = DiscoveredSet::default().after_found(&found(&["a:1"]), 3, 1);
        let failed = s0.after_failure("timed out");
        assert_eq!(failed.members, s0.members);
        assert_eq!(failed.error, "timed out");
        assert_eq!(failed.after_found(&found(&["a:1"]), 3, 2), s0);
    }
}
