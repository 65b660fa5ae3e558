//! Where each VIP of `[[vip]]` should live (issue 18, several VIPs): the pure placement
//! rule the leader applies (the node's `control/vip_spread.rs`) and commits as
//! `Command::AssignVips`.
//!
//! - A VIP whose owner is gone (dead, drained, frozen, cut off: not in `live`) or that has
//!   no owner is placed at once, on the live node holding the fewest VIPs (a node in the
//!   VIP's `preferred` list first, then the lowest id): failover is never held down.
//! - Otherwise, while the most loaded eligible node holds two or more VIPs more than the
//!   least loaded one, **one** VIP moves from the former to the latter, and only once
//!   `hold_down` has passed since the last move and since the target became live, so a
//!   flapping node does not bounce addresses. A VIP that prefers the target goes first.
//! - When nothing is orphaned and the loads differ by at most one, every node holds
//!   ⌊N/M⌋ or ⌈N/M⌉ of N VIPs over M live nodes, and nothing moves.

use crate::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// One `[[vip]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSpec {
    pub address: String,
    /// Nodes this VIP should rather live on, in order (may be empty).
    pub preferred: Vec<NodeId>,
}

/// What placement knows.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub vips: &'a [VipSpec],
    /// Nodes that may hold a VIP: alive, in contact with the quorum, not drained; with the
    /// instant (ms) each became so.
    pub live: &'a BTreeMap<NodeId, u64>,
    /// The committed assignment: address -> owner.
    pub current: &'a BTreeMap<String, NodeId>,
    pub now_ms: u64,
    /// When the last rebalancing move was made.
    pub last_move_ms: Option<u64>,
    pub hold_down_ms: u64,
}

/// One change of owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub address: String,
    pub from: Option<NodeId>,
    pub to: NodeId,
    /// False for a failover (orphaned VIP), true for a rebalancing move.
    pub rebalance: bool,
}

/// The moves to make now: every orphan's placement, or at most one rebalancing move.
pub fn plan(input: &PlanInput<'_>) -> Vec<Move> {
    if input.live.is_empty() {
        return Vec::new();
    }
    let mut owner: BTreeMap<&str, NodeId> = BTreeMap::new();
    let mut load: BTreeMap<NodeId, usize> = input.live.keys().map(|&n| (n, 0)).collect();
    for v in input.vips {
        if let Some(&o) = input.current.get(&v.address) {
            if let Some(l) = load.get_mut(&o) {
                *l += 1;
                owner.insert(&v.address, o);
            }
        }
    }
    let mut moves = Vec::new();
    for v in input.vips {
        if owner.contains_key(v.address.as_str()) {
            continue;
        }
        let to = least_loaded(&load, &v.preferred, &BTreeSet::new());
        if let Some(l) = load.get_mut(&to) {
            *l += 1;
        }
        owner.insert(&v.address, to);
        moves.push(Move {
            address: v.address.clone(),
            from: input.current.get(&v.address).copied(),
            to,
            rebalance: false,
        });
    }
    if !moves.is_empty() {
        return moves;
    }
    rebalance(input, &owner, &load).into_iter().collect()
}

/// The node with the fewest VIPs among `load` (minus `exclude`), a preferred one first
/// among equals, then the lowest id.
fn least_loaded(
    load: &BTreeMap<NodeId, usize>,
    preferred: &[NodeId],
    exclude: &BTreeSet<NodeId>,
) -> NodeId {
    let rank = |n: &NodeId| preferred.iter().position(|p| p == n).unwrap_or(usize::MAX);
    load.iter()
        .filter(|(n, _)| !exclude.contains(n))
        .min_by_key(|(n, l)| (**l, rank(n), **n))
        .map(|(n, _)| *n)
        .unwrap_or_default()
}

fn rebalance(
    input: &PlanInput<'_>,
    owner: &BTreeMap<&str, NodeId>,
    load: &BTreeMap<NodeId, usize>,
) -> Option<Move> {
    if input
        .last_move_ms
        .is_some_and(|t| input.now_ms.saturating_sub(t) < input.hold_down_ms)
    {
        return None;
    }
    // A node that came (back) recently takes nothing yet.
    let young: BTreeSet<NodeId> = input
        .live
        .iter()
        .filter(|(_, &since)| input.now_ms.saturating_sub(since) < input.hold_down_ms)
        .map(|(n, _)| *n)
        .collect();
    let (&from, &max) = load
        .iter()
        .max_by_key(|(n, l)| (**l, std::cmp::Reverse(**n)))?;
    let eligible: BTreeMap<NodeId, usize> = load
        .iter()
        .filter(|(n, _)| !young.contains(n))
        .map(|(n, l)| (*n, *l))
        .collect();
    let (&to, &min) = eligible.iter().min_by_key(|(n, l)| (**l, **n))?;
    if max < min + 2 {
        return None;
    }
    // Of `from`'s VIPs, one that prefers `to` goes first, then the first listed.
    let candidates: Vec<&VipSpec> = input
        .vips
        .iter()
        .filter(|v| owner.get(v.address.as_str()) == Some(&from))
        .collect();
    let vip = candidates
        .iter()
        .find(|v| v.preferred.contains(&to))
        .or_else(|| candidates.first())?;
    Some(Move {
        address: vip.address.clone(),
        from: Some(from),
        to,
        rebalance: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vips(n: usize) -> Vec<VipSpec> {
        (0..n)
            .map(|i| VipSpec {
                address: format!("10.77.80.{}", i + 1),
                preferred: Vec::new(),
            })
            .collect()
    }

    fn apply(current: &mut BTreeMap<String, NodeId>, moves: &[Move]) {
        for m in moves {
            current.insert(m.address.clone(), m.to);
        }
    }

    fn loads(current: &BTreeMap<String, NodeId>, live: &BTreeMap<NodeId, u64>) -> Vec<usize> {
        live.keys()
            .map(|n| current.values().filter(|o| *o == n).count())
            .collect()
    }

    fn input<'a>(
        vips: &'a [VipSpec],
        live: &'a BTreeMap<NodeId, u64>,
        current: &'a BTreeMap<String, NodeId>,
        now_ms: u64,
        last_move_ms: Option<u64>,
    ) -> PlanInput<'a> {
        PlanInput {
            vips,
            live,
            current,
            now_ms,
            last_move_ms,
            hold_down_ms: 5_000,
        }
    }

    #[test]
    fn three_vips_on_three_nodes_one_each_then_a_death_then_a_return() {
        let v = vips(3);
        let mut live: BTreeMap<NodeId, u64> = [(1, 0), (2, 0), (3, 0)].into();
        let mut current = BTreeMap::new();
        let first = plan(&input(&v, &live, &current, 10_000, None));
        assert_eq!(first.len(), 3);
        apply(&mut current, &first);
        assert_eq!(loads(&current, &live), vec![1, 1, 1]);
        assert!(plan(&input(&v, &live, &current, 10_001, None)).is_empty());

        // Node 2 dies: its VIP moves at once, whatever the hold-down.
        live.remove(&2);
        let failover = plan(&input(&v, &live, &current, 10_002, Some(10_001)));
        assert_eq!(failover.len(), 1);
        assert!(!failover[0].rebalance);
        assert_eq!(failover[0].from, Some(2));
        apply(&mut current, &failover);
        assert_eq!(loads(&current, &live), vec![2, 1]);

        // Node 2 returns at 20 s: nothing moves within the hold-down, then exactly one.
        live.insert(2, 20_000);
        assert!(plan(&input(&v, &live, &current, 21_000, None)).is_empty());
        let back = plan(&input(&v, &live, &current, 25_000, None));
        assert_eq!(back.len(), 1);
        assert!(back[0].rebalance);
        assert_eq!(back[0].to, 2);
        apply(&mut current, &back);
        assert_eq!(loads(&current, &live), vec![1, 1, 1]);
        assert!(plan(&input(&v, &live, &current, 40_000, Some(25_000))).is_empty());
    }

    #[test]
    fn preferred_nodes_first_among_equals() {
        let mut v = vips(2);
        v[0].preferred = vec![3];
        v[1].preferred = vec![3, 2];
        let live: BTreeMap<NodeId, u64> = [(1, 0), (2, 0), (3, 0)].into();
        let current = BTreeMap::new();
        let moves = plan(&PlanInput {
            vips: &v,
            live: &live,
            current: &current,
            now_ms: 0,
            last_move_ms: None,
            hold_down_ms: 0,
        });
        assert_eq!(moves[0].to, 3);
        assert_eq!(moves[1].to, 2, "3 already has one: the next preferred");
    }

    /// Random sequences of deaths and returns: orphans are always placed at once, at most
    /// one rebalancing move per step, and once quiet every node holds floor or ceil of N/M.
    #[test]
    fn random_churn_converges_to_an_even_spread() {
        let mut seed: u64 = 0x005e_ed18;
        let mut rnd = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _case in 0..200 {
            let n_vips = 1 + rnd(7) as usize;
            let v = vips(n_vips);
            let mut live: BTreeMap<NodeId, u64> = (1..=5).map(|n| (n, 0)).collect();
            let mut current = BTreeMap::new();
            let mut last = None;
            let mut now = 0;
            for _step in 0..30 {
                now += 1_000;
                let node = 1 + rnd(5);
                if live.len() > 1 && live.contains_key(&node) {
                    live.remove(&node);
                } else {
                    live.insert(node, now);
                }
                let input = PlanInput {
                    vips: &v,
                    live: &live,
                    current: &current,
                    now_ms: now,
                    last_move_ms: last,
                    hold_down_ms: 3_000,
                };
                let moves = plan(&input);
                let rebalances = moves.iter().filter(|m| m.rebalance).count();
                assert!(rebalances <= 1 && (rebalances == 0 || moves.len() == 1));
                if rebalances == 1 {
                    last = Some(now);
                }
                apply(&mut current, &moves);
                assert!(
                    current.values().all(|o| live.contains_key(o)),
                    "every VIP on a live node"
                );
            }
            // Quiet: keep planning until nothing moves.
            for _ in 0..50 {
                now += 3_000;
                let moves = plan(&PlanInput {
                    vips: &v,
                    live: &live,
                    current: &current,
                    now_ms: now,
                    last_move_ms: last,
                    hold_down_ms: 3_000,
                });
                if moves.is_empty() {
                    break;
                }
                last = Some(now);
                apply(&mut current, &moves);
            }
            let m = live.len();
            let (lo, hi) = (n_vips / m, n_vips.div_ceil(m));
            let l = loads(&current, &live);
            assert!(
                l.iter().all(|&x| x >= lo && x <= hi),
                "{n_vips} VIPs over {m}: {l:?}"
            );
        }
    }
}
