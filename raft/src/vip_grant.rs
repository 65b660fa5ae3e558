//! Leases for the `[[vip]]` addresses (issue 18, several VIPs): the leader's grant table.
//!
//! A node may hold a spread VIP only while the committed assignment names it **and** the
//! leader, holding its own lease, granted it a short `vip_lease` for that address. The
//! holder asks every renewal period (`PeerRequest::VipLease`); it counts its grant from the
//! instant it *sent* the request, so its hold ends no later than the leader's record of it.
//! The leader grants an address to a node only when no other node's grant on it is still
//! running. So at any instant each address has at most one holder, whatever node dies,
//! freezes or is cut off: the kernel fence of each holder is set to the same deadline.
//!
//! A new leader does not know the grants its predecessor gave, so it grants an address to a
//! node that does not hold it only once `vip_lease` has passed since it began leading (a
//! deposed leader granted only while its lease ran, which ended before this one began). A
//! node that says it holds an address under a grant still running when it asked is its one
//! holder (there is never a second): the new leader renews it at once when the assignment
//! names it, so a leader change leaves the survivors' addresses up.
//!
//! A move between two live nodes is make before break (`ctl drain-node`, rebalancing): the
//! old holder keeps its grant renewed (for at most `HAND_OVER_LIMIT`) while the leader
//! tells the new owner to *stage* (accept what the old holder will forward, see
//! `fulcrum_vip::Fence::take_over`); once the new owner says it is staged, the old holder
//! is told to *hand over* (close its fence and forward the address's packets to the new
//! owner's MAC); once it says it no longer holds the address, its grant is dropped and the
//! new owner is granted at its next ask. A node that reports no longer holding an address
//! always has its grant dropped: the next owner need not wait the grant out.
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

/// Longest an old holder keeps its grant renewed while the new owner gets ready; after
/// that it is no longer renewed (the move becomes break before make).
pub const HAND_OVER_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An Ethernet address (a node's MAC on the VIPs' link).
pub type Mac = [u8; 6];

/// A renewal request: "I am `from`; grant me my addresses" (`draining`: move them away).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipLeaseAsk {
    pub from: NodeId,
    pub draining: bool,
    /// The addresses `from` holds under a grant still running at the send instant.
    pub holding: Vec<String>,
    /// The addresses it is staged for (accepts what their old holder forwards).
    pub staged: Vec<String>,
    /// Its MAC on the VIPs' link (`None`: no kernel fence, no make-before-break moves).
    pub mac: Option<Mac>,
}

/// The answer: the addresses granted for `vip_lease` from the ask's send instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipLeaseGrant {
    pub granted: Vec<String>,
    /// Get ready to take these: accept what the old holder (this MAC) forwards, for
    /// `vip_lease` from the ask's send instant.
    pub stage: Vec<(String, Mac)>,
    /// Hand these over now: close the fence for each and forward to the new owner's MAC.
    pub hand_over: Vec<(String, Mac)>,
}

/// One node's standing as the leader sees it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    last_us: u64,
    since_us: u64,
    draining: bool,
    mac: Option<Mac>,
}

/// A running grant or staging on one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    node: NodeId,
    until_us: u64,
}

#[derive(Debug, Default)]
struct Table {
    /// The term this table's grants were given in, and when this node began leading it.
    term: u64,
    lead_since_us: u64,
    /// address -> its holder's grant.
    grants: BTreeMap<String, Hold>,
    /// address -> the new owner that said it is staged for it.
    staged: BTreeMap<String, Hold>,
    /// address -> when its holder's grant was first renewed while it belonged to another.
    handing_since: BTreeMap<String, u64>,
    seen: BTreeMap<NodeId, Seen>,
}

/// What one ask decides for one address it concerns.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Grant,
    Stage(Mac),
    HandOver(Mac),
    Nothing,
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
    /// leading: `None`, the asker's grants run out by themselves). `assignment` is the
    /// committed one (address -> owner).
    pub fn answer(
        &self,
        ask: &VipLeaseAsk,
        term: u64,
        assignment: &BTreeMap<String, NodeId>,
        now_us: u64,
    ) -> Option<VipLeaseGrant> {
        let mut t = self.lock();
        self.note_seen(&mut t, ask, now_us);
        if term == 0 {
            return None;
        }
        if t.term != term {
            // A new leadership: forget the old grants; wait out any a deposed leader gave
            // to a node that does not say it holds them.
            *t = Table {
                term,
                lead_since_us: now_us,
                seen: std::mem::take(&mut t.seen),
                ..Table::default()
            };
        }
        let mut out = VipLeaseGrant::default();
        for (address, owner) in assignment {
            match self.verdict(&mut t, ask, address, *owner, now_us) {
                Verdict::Grant => out.granted.push(address.clone()),
                Verdict::Stage(mac) => out.stage.push((address.clone(), mac)),
                Verdict::HandOver(mac) => out.hand_over.push((address.clone(), mac)),
                Verdict::Nothing => {}
            }
        }
        Some(out)
    }

    fn note_seen(&self, t: &mut Table, ask: &VipLeaseAsk, now_us: u64) {
        let since_us = match t.seen.get(&ask.from) {
            Some(s) if now_us.saturating_sub(s.last_us) < self.lease_us => s.since_us,
            _ => now_us,
        };
        t.seen.insert(
            ask.from,
            Seen {
                last_us: now_us,
                since_us,
                draining: ask.draining,
                mac: ask.mac,
            },
        );
    }

    /// What `ask` gets for `address`, owned by `owner` in the committed assignment.
    fn verdict(
        &self,
        t: &mut Table,
        ask: &VipLeaseAsk,
        address: &str,
        owner: NodeId,
        now_us: u64,
    ) -> Verdict {
        let me = ask.from;
        let holds = ask.holding.iter().any(|a| a == address);
        let running = |h: Option<&Hold>| h.copied().filter(|h| h.until_us > now_us);
        let grant = running(t.grants.get(address));
        if grant.is_some_and(|g| g.node == me) && !holds {
            // It let the address go (or its grant ran out): nobody needs to wait for it.
            t.grants.remove(address);
        }
        if ask.staged.iter().any(|a| a == address) && owner == me {
            let until_us = now_us + self.lease_us;
            t.staged
                .insert(address.to_string(), Hold { node: me, until_us });
        }
        let grant = running(t.grants.get(address));
        let staged = running(t.staged.get(address));
        if owner != me {
            return match grant {
                Some(g) if g.node == me => {
                    self.hand_over_verdict(t, address, owner, staged, now_us)
                }
                _ => Verdict::Nothing,
            };
        }
        let waiting = now_us < t.lead_since_us + self.lease_us;
        match grant {
            Some(g) if g.node != me => {
                let old = t.seen.get(&g.node).and_then(|s| s.mac);
                match (old, ask.mac) {
                    (Some(mac), Some(_)) => Verdict::Stage(mac),
                    _ => Verdict::Nothing,
                }
            }
            _ if staged.is_some_and(|s| s.node != me) => Verdict::Nothing,
            _ if waiting && !holds => Verdict::Nothing,
            _ => {
                let until_us = now_us + self.lease_us;
                t.grants
                    .insert(address.to_string(), Hold { node: me, until_us });
                t.handing_since.remove(address);
                Verdict::Grant
            }
        }
    }

    /// The old holder of `address`, which now belongs to `owner`: hand it over once the
    /// owner is staged; until then keep it renewed (make before break) while the owner is
    /// live, for at most `HAND_OVER_LIMIT`.
    fn hand_over_verdict(
        &self,
        t: &mut Table,
        address: &str,
        owner: NodeId,
        staged: Option<Hold>,
        now_us: u64,
    ) -> Verdict {
        let owner_seen = t
            .seen
            .get(&owner)
            .filter(|s| now_us.saturating_sub(s.last_us) < self.lease_us)
            .copied();
        let Some(owner_mac) = owner_seen.and_then(|s| s.mac) else {
            return Verdict::Nothing;
        };
        if staged.is_some_and(|s| s.node == owner) {
            t.handing_since.remove(address);
            return Verdict::HandOver(owner_mac);
        }
        let since = *t.handing_since.entry(address.to_string()).or_insert(now_us);
        if now_us.saturating_sub(since) >= HAND_OVER_LIMIT.as_micros() as u64 {
            return Verdict::Nothing;
        }
        if let Some(g) = t.grants.get_mut(address) {
            g.until_us = now_us + self.lease_us;
        }
        Verdict::Grant
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
            .filter(|(_, h)| h.until_us > now_us)
            .map(|(a, h)| (a.clone(), h.node))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The leader's answer to `ask` now: grants only while this node leads with a valid lease
/// (`None` otherwise).
pub fn answer_here(
    grants: &VipGrants,
    lease: &crate::lease::Lease,
    state: &crate::state::ClusterState,
    ask: &VipLeaseAsk,
) -> Option<VipLeaseGrant> {
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

    const A: &str = "10.77.80.1";

    fn ask(from: NodeId) -> VipLeaseAsk {
        VipLeaseAsk {
            from,
            mac: Some([2, 0, 0, 0, 0, from as u8]),
            ..VipLeaseAsk::default()
        }
    }

    fn holding(from: NodeId) -> VipLeaseAsk {
        VipLeaseAsk {
            holding: vec![A.to_string()],
            ..ask(from)
        }
    }

    fn staged(from: NodeId) -> VipLeaseAsk {
        VipLeaseAsk {
            staged: vec![A.to_string()],
            ..ask(from)
        }
    }

    fn grant(
        g: &VipGrants,
        a: &VipLeaseAsk,
        term: u64,
        to: &BTreeMap<String, NodeId>,
        at: u64,
    ) -> VipLeaseGrant {
        g.answer(a, term, to, at).expect("leading: an answer")
    }

    fn owned_by(n: NodeId) -> BTreeMap<String, NodeId> {
        [(A.to_string(), n)].into()
    }

    #[test]
    fn a_moved_address_is_granted_only_after_the_old_grant_ran_out() {
        let g = VipGrants::new(Duration::from_millis(300));
        let a = owned_by(1);
        // A new leader grants nothing for one grant length to a node not holding it.
        assert!(grant(&g, &ask(1), 5, &a, 1_000_000).granted.is_empty());
        let first = grant(&g, &ask(1), 5, &a, 1_300_000);
        assert_eq!(first.granted, vec![A.to_string()]);
        // Node 1 goes silent (no MAC known for a stage either way); node 2 now owns it.
        let a = owned_by(2);
        let no_mac = VipLeaseAsk {
            mac: None,
            ..ask(2)
        };
        assert!(grant(&g, &no_mac, 5, &a, 1_599_999).granted.is_empty());
        assert_eq!(grant(&g, &ask(2), 5, &a, 1_600_000).granted.len(), 1);
        // And node 1 no longer gets it.
        assert!(grant(&g, &holding(1), 5, &a, 1_600_001).granted.is_empty());
    }

    #[test]
    fn not_leading_answers_nothing_and_a_new_term_waits_for_those_not_holding() {
        let g = VipGrants::new(Duration::from_millis(300));
        let a = owned_by(1);
        assert!(g.answer(&ask(1), 0, &a, 5_000_000).is_none());
        assert!(grant(&g, &ask(1), 3, &a, 5_000_000).granted.is_empty());
        assert_eq!(grant(&g, &ask(1), 3, &a, 5_300_000).granted.len(), 1);
        assert!(grant(&g, &ask(1), 4, &a, 5_300_001).granted.is_empty());
    }

    #[test]
    fn a_new_leader_renews_at_once_the_owner_that_holds_its_address() {
        let g = VipGrants::new(Duration::from_millis(300));
        let a = owned_by(1);
        assert_eq!(
            grant(&g, &holding(1), 7, &a, 9_000_000).granted,
            vec![A.to_string()]
        );
        assert_eq!(grant(&g, &holding(1), 7, &a, 9_310_000).granted.len(), 1);
        // That grant runs: another node the assignment names next waits it out.
        let b = owned_by(2);
        let other = VipLeaseAsk {
            mac: None,
            ..ask(2)
        };
        assert!(grant(&g, &other, 7, &b, 9_400_000).granted.is_empty());
        assert_eq!(grant(&g, &other, 7, &b, 9_610_000).granted.len(), 1);
        // A holder the assignment does not name is not renewed.
        assert!(grant(&g, &holding(3), 8, &a, 9_500_000).granted.is_empty());
    }

    #[test]
    fn a_move_between_live_nodes_stages_then_hands_over_then_grants() {
        let g = VipGrants::new(Duration::from_millis(300));
        let a = owned_by(1);
        grant(&g, &ask(1), 2, &a, 0);
        assert_eq!(grant(&g, &ask(1), 2, &a, 300_000).granted.len(), 1);
        // Node 2 becomes the owner: it is told to stage from node 1's MAC, node 1 keeps
        // serving meanwhile.
        let b = owned_by(2);
        let s = grant(&g, &ask(2), 2, &b, 310_000);
        assert_eq!(
            (s.granted.len(), s.stage.clone()),
            (0, vec![(A.to_string(), [2, 0, 0, 0, 0, 1])])
        );
        let kept = grant(&g, &holding(1), 2, &b, 320_000);
        assert_eq!(
            (kept.granted.len(), kept.hand_over.len()),
            (1, 0),
            "renewed until the owner is staged"
        );
        // Staged: the old holder is told to hand over, and is not renewed.
        assert!(grant(&g, &staged(2), 2, &b, 330_000).granted.is_empty());
        let h = grant(&g, &holding(1), 2, &b, 340_000);
        assert_eq!(
            (h.granted.len(), h.hand_over.clone()),
            (0, vec![(A.to_string(), [2, 0, 0, 0, 0, 2])])
        );
        // Still holding (it did not act yet): the owner waits.
        assert!(grant(&g, &staged(2), 2, &b, 350_000).granted.is_empty());
        // It says it let go: the owner is granted at once.
        grant(&g, &ask(1), 2, &b, 360_000);
        assert_eq!(
            grant(&g, &staged(2), 2, &b, 361_000).granted,
            vec![A.to_string()]
        );
    }

    #[test]
    fn an_old_holder_is_renewed_for_at_most_the_hand_over_limit() {
        let g = VipGrants::new(Duration::from_millis(300));
        grant(&g, &ask(1), 2, &owned_by(1), 0);
        grant(&g, &holding(1), 2, &owned_by(1), 300_000);
        let b = owned_by(2);
        let limit = HAND_OVER_LIMIT.as_micros() as u64;
        let mut at = 300_000;
        while at < 300_000 + limit {
            grant(&g, &ask(2), 2, &b, at);
            assert_eq!(grant(&g, &holding(1), 2, &b, at + 1).granted.len(), 1);
            at += 100_000;
        }
        grant(&g, &ask(2), 2, &b, at);
        assert!(
            grant(&g, &holding(1), 2, &b, at + 1).granted.is_empty(),
            "no longer renewed"
        );
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
            draining: true,
            ..ask(3)
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
