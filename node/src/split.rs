//! Split routes in the data plane (blue-green and canary): a route's pools, the weights
//! it runs, and the weighted draw of a pool for a new request.
//!
//! The file's weights are the start; the replicated ones (`ctl shift`, committed through
//! Raft and published here by `control::follow`) take their place while they name the
//! same pools. They live beside the snapshots (`SplitWeights` in the `DataPlane`), so a
//! step of a shift changes no config version and recompiles nothing: a request reads
//! them with one atomic load.

use arc_swap::ArcSwap;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A split route as compiled: its name, its pools in file order and the file's weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSplit {
    pub name: String,
    pub pools: Vec<String>,
    file_weights: Vec<u32>,
}

impl RouteSplit {
    pub fn new(route: &fulcrum_config::Route) -> Option<RouteSplit> {
        let name = route.name.clone()?;
        (!route.split.is_empty()).then(|| RouteSplit {
            name,
            pools: route.split.iter().map(|s| s.pool.clone()).collect(),
            file_weights: route.split.iter().map(|s| s.weight).collect(),
        })
    }

    /// The file's weights, by pool.
    pub fn file_weights(&self) -> BTreeMap<String, u32> {
        self.pools
            .iter()
            .cloned()
            .zip(self.file_weights.iter().copied())
            .collect()
    }

    /// `weights` (by pool) in this split's pool order, if they name exactly its pools.
    fn ordered(&self, weights: &BTreeMap<String, u32>) -> Option<Vec<u32>> {
        if weights.len() != self.pools.len() {
            return None;
        }
        self.pools.iter().map(|p| weights.get(p).copied()).collect()
    }
}

/// The index of a pool drawn with probability weight / total (`None`: all zero).
pub fn draw(weights: &[u32], roll: impl FnOnce(u64) -> u64) -> Option<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    let mut left = roll(total);
    for (i, &w) in weights.iter().enumerate() {
        let w = u64::from(w);
        if left < w {
            return Some(i);
        }
        left -= w;
    }
    None
}

/// A uniform number in `0..total` (`total` > 0).
pub fn roll(total: u64) -> u64 {
    rand::rng().random_range(0..total)
}

/// The replicated weights of every split route, by route name then pool.
#[derive(Debug, Default)]
pub struct SplitWeights(ArcSwap<BTreeMap<String, BTreeMap<String, u32>>>);

impl SplitWeights {
    /// Replaces the replicated weights (control side, on every committed change).
    pub fn publish(&self, weights: BTreeMap<String, BTreeMap<String, u32>>) {
        self.0.store(Arc::new(weights));
    }

    /// The weights `split` runs, in its pool order: the replicated ones when they name
    /// exactly its pools, else the file's.
    pub fn current(&self, split: &RouteSplit) -> Vec<u32> {
        self.replicated(split)
            .unwrap_or_else(|| split.file_weights.clone())
    }

    /// The replicated weights of `split`, if there are some for its very pools.
    pub fn replicated(&self, split: &RouteSplit) -> Option<Vec<u32>> {
        self.0
            .load()
            .get(&split.name)
            .and_then(|w| split.ordered(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split() -> RouteSplit {
        RouteSplit {
            name: "front".into(),
            pools: vec!["blue".into(), "green".into()],
            file_weights: vec![90, 10],
        }
    }

    #[test]
    fn the_draw_follows_the_weights() {
        let w = [90, 10];
        assert_eq!(draw(&w, |_| 0), Some(0));
        assert_eq!(draw(&w, |_| 89), Some(0));
        assert_eq!(draw(&w, |_| 90), Some(1));
        assert_eq!(draw(&w, |t| t - 1), Some(1));
        assert_eq!(
            draw(&[0, 5], |_| 0),
            Some(1),
            "a zero weight is never drawn"
        );
        assert_eq!(draw(&[0, 0], |_| 0), None);
        let greens = (0..10_000).filter(|_| draw(&w, roll) == Some(1)).count();
        assert!(
            (700..1300).contains(&greens),
            "{greens} of 10000 drawn green"
        );
    }

    #[test]
    fn replicated_weights_win_only_for_the_same_pools() {
        let weights = SplitWeights::default();
        let s = split();
        assert_eq!(
            weights.current(&s),
            [90, 10],
            "nothing replicated: the file's"
        );
        let shifted: BTreeMap<String, u32> = [("green".into(), 60), ("blue".into(), 40)].into();
        weights.publish([("front".to_string(), shifted)].into());
        assert_eq!(weights.current(&s), [40, 60], "in the split's pool order");
        let other: BTreeMap<String, u32> = [("blue".into(), 40), ("teal".into(), 60)].into();
        weights.publish([("front".to_string(), other)].into());
        assert_eq!(weights.current(&s), [90, 10], "other pools: the file's");
    }
}
