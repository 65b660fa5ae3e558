//! Backend selection: the load-balancing algorithms of a pool.
//!
//! A `Selector` is built once from an immutable list of backends (when a config is
//! applied) and then shared by every request of that config version. Per-backend
//! load figures live in `BackendLoad` (atomics), so picking never takes a lock.
//!
//! The caller decides which backends are eligible (healthy, not drained, not
//! locally ejected, not the one that just failed) and passes that as a predicate;
//! a selector only ever returns an index for which `eligible(index)` is true, and
//! returns `None` only when no index is eligible at all. Retrying elsewhere is
//! therefore just another `pick` with the failed index added to the predicate.
//!
//! This is Pingora's shape (`pingora-load-balancing/src/selection`): build an
//! immutable selector from a snapshot, keep the little mutable state there is in
//! atomics, and let the caller layer its own acceptance rule over health.
//!
//! One algorithm per file:
//!
//! | file                   | `algorithm =`            | looks at                      |
//! |------------------------|--------------------------|-------------------------------|
//! | `round_robin.rs`       | `round-robin`            | a counter                     |
//! | `weighted.rs`          | `weighted-round-robin`   | weights (smooth WRR sequence) |
//! | `least_connections.rs` | `least-connections`      | `connections` / weight        |
//! | `least_request.rs`     | `least-request`          | `in_flight` / weight, P2C     |
//! | `peak_ewma.rs`         | `peak-ewma`              | latency EWMA × load, P2C      |
//! | `random.rs`            | `random`                 | weights                       |
//! | `consistent_hash.rs`   | `consistent-hash`        | the request's hash key        |
//!
//! `slow_start.rs` ramps a returning backend's share up over `pool.slow_start` (for
//! every algorithm but consistent hashing; applied in `PoolRuntime::pick`).
//!
//! `sample.rs` holds the uniform sampling of eligible indices that the
//! power-of-two-choices algorithms and the hash fallback share.
//!
//! Weights: a weight of 0 is treated as 1 here (see [`Candidate::effective_weight`]):
//! rejecting 0 is the config validator's job, and a selector that starved an eligible
//! backend could return `None` while something is eligible, which callers must be
//! able to rule out.

mod consistent_hash;
mod least_connections;
mod least_request;
mod peak_ewma;
mod random;
mod round_robin;
mod sample;
pub mod slow_start;
mod weighted;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fulcrum_config::Algorithm;

pub use peak_ewma::observe_latency;

/// Live load figures of one backend, updated by the proxy, read by selectors.
#[derive(Debug, Default)]
pub struct BackendLoad {
    /// Requests currently waiting on or streaming from this backend.
    pub in_flight: AtomicU64,
    /// Client connections currently assigned to this backend (L4 and tunnels count too).
    pub connections: AtomicU64,
    /// Peak-EWMA of response latency in nanoseconds (0 = no sample yet).
    pub ewma_nanos: AtomicU64,
    /// Time of the last EWMA update, nanoseconds since an arbitrary process epoch.
    pub ewma_stamp_nanos: AtomicU64,
}

impl BackendLoad {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// A request starts occupying this backend (counts for least-request and
    /// least-connections alike).
    pub fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The request released the backend (answered, failed or abandoned).
    pub fn end_request(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// `begin_request`, ended when the returned guard is dropped (unless it is handed
    /// over): the count comes down however an attempt ends, also when its task is
    /// dropped mid-flight because the client went away.
    pub fn occupy(&self) -> Occupied<'_> {
        self.begin_request();
        Occupied(Some(self))
    }
}

/// A request occupying a backend while an attempt is in flight (see `occupy`).
#[must_use = "dropping it ends the request's occupancy at once"]
pub struct Occupied<'a>(Option<&'a BackendLoad>);

impl Occupied<'_> {
    /// The attempt succeeded: whoever finishes the response (`RequestDone`) ends the
    /// occupancy with `end_request`, so this guard must not.
    pub fn hand_over(mut self) {
        self.0 = None;
    }
}

impl Drop for Occupied<'_> {
    fn drop(&mut self) {
        if let Some(load) = self.0.take() {
            load.end_request();
        }
    }
}

/// What a selector may look at for one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext<'a> {
    /// The hash key for consistent-hash (already extracted per `hash_key`).
    pub hash_key: Option<&'a [u8]>,
    pub client_ip: Option<IpAddr>,
}

/// A backend as the selector sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Stable identity (the backend address as written, e.g. "10.0.0.21:8080").
    pub id: String,
    pub weight: u32,
}

impl Candidate {
    /// The weight the algorithms use: the configured one, but at least 1.
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }
}

/// Chooses a backend index among eligible ones.
pub trait Selector: Send + Sync {
    /// Returns an index `i` with `eligible(i) == true`, or `None` when nothing is eligible.
    fn pick(&self, ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize>;
}

/// Builds the selector of one pool for one config version.
///
/// `loads[i]` is the live load of `candidates[i]`; the two slices must line up. The
/// loads are shared with the proxy (and usually outlive this selector, so that a
/// config change does not reset in-flight counts).
pub fn build(
    algorithm: Algorithm,
    candidates: &[Candidate],
    loads: Arc<[Arc<BackendLoad>]>,
) -> Arc<dyn Selector> {
    debug_assert_eq!(
        candidates.len(),
        loads.len(),
        "one BackendLoad per candidate"
    );
    let weights: Vec<u32> = candidates.iter().map(Candidate::effective_weight).collect();
    match algorithm {
        Algorithm::RoundRobin => Arc::new(round_robin::RoundRobin::new(candidates.len())),
        Algorithm::WeightedRoundRobin => Arc::new(weighted::SmoothWeighted::new(&weights)),
        Algorithm::LeastConnections => {
            Arc::new(least_connections::LeastConnections::new(weights, loads))
        }
        Algorithm::LeastRequest => Arc::new(least_request::LeastRequest::new(weights, loads)),
        Algorithm::PeakEwma => Arc::new(peak_ewma::PeakEwma::new(weights, loads)),
        Algorithm::Random => Arc::new(random::WeightedRandom::new(&weights)),
        Algorithm::ConsistentHash => Arc::new(consistent_hash::Ketama::new(candidates)),
    }
}

/// The hash used for consistent hashing: XXH3-64 with the default (zero) seed.
///
/// It is a fixed function of the bytes, with no per-process random seed (unlike
/// `std`'s `RandomState`), so every node of the cluster, and the same node after a
/// restart, maps a key to the same place.
pub fn hash_bytes(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// Load of backend `i`, or an idle one when the slices do not line up (a bug the
/// `debug_assert` in [`build`] catches; in release we degrade instead of panicking).
fn load_of(loads: &[Arc<BackendLoad>], i: usize) -> (u64, u64) {
    match loads.get(i) {
        Some(l) => (l.in_flight(), l.connections()),
        None => (0, 0),
    }
}

/// `a_load / a_weight < b_load / b_weight`, exactly, without floats or division.
///
/// Loads are u64 and weights u32, so the cross products fit in u128.
fn lighter(a_load: u64, a_weight: u32, b_load: u64, b_weight: u32) -> bool {
    (a_load as u128) * (b_weight as u128) < (b_load as u128) * (a_weight as u128)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const ALL: [Algorithm; 7] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::LeastRequest,
        Algorithm::PeakEwma,
        Algorithm::Random,
        Algorithm::ConsistentHash,
    ];

    pub(crate) fn candidates(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                id: format!("10.0.0.{}:8080", 21 + i),
                weight,
            })
            .collect()
    }

    pub(crate) fn loads(n: usize) -> Arc<[Arc<BackendLoad>]> {
        (0..n).map(|_| Arc::new(BackendLoad::default())).collect()
    }

    fn build_for(algorithm: Algorithm, weights: &[u32]) -> Arc<dyn Selector> {
        build(algorithm, &candidates(weights), loads(weights.len()))
    }

    #[test]
    fn every_algorithm_returns_only_eligible_indices() {
        let weights = [3, 1, 2, 1, 5];
        // Every subset of 5 backends, as a bit mask, including the empty one.
        for algorithm in ALL {
            let selector = build_for(algorithm, &weights);
            for mask in 0u32..(1 << weights.len()) {
                let eligible = |i: usize| mask & (1 << i) != 0;
                for k in 0..50u32 {
                    let key = k.to_be_bytes();
                    let ctx = PickContext {
                        hash_key: (k % 2 == 0).then_some(&key[..]),
                        client_ip: None,
                    };
                    let picked = selector.pick(&ctx, &eligible);
                    match picked {
                        Some(i) => assert!(
                            eligible(i),
                            "{algorithm:?} picked ineligible {i} with mask {mask:05b}"
                        ),
                        None => assert_eq!(
                            mask, 0,
                            "{algorithm:?} returned None although {mask:05b} is eligible"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn every_algorithm_reaches_every_eligible_backend() {
        // Nobody is starved: with all eligible and no load, each backend gets picked.
        for algorithm in ALL {
            let selector = build_for(algorithm, &[1, 1, 1, 1]);
            let mut seen = [false; 4];
            for k in 0..2000u32 {
                let key = k.to_be_bytes();
                let ctx = PickContext {
                    hash_key: Some(&key),
                    client_ip: None,
                };
                if let Some(i) = selector.pick(&ctx, &|_| true) {
                    seen[i] = true;
                }
            }
            assert_eq!(seen, [true; 4], "{algorithm:?}");
        }
    }

    #[test]
    fn selectors_are_shared_across_threads_without_losing_picks() {
        // Round robin under contention: `fetch_add` hands out distinct numbers, so
        // 4 threads x 1000 picks over 2 backends still split exactly 2000/2000.
        let selector = build_for(Algorithm::RoundRobin, &[1, 1]);
        let counts: Vec<[u32; 2]> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let selector = Arc::clone(&selector);
                    s.spawn(move || {
                        let mut c = [0u32; 2];
                        for _ in 0..1000 {
                            c[selector
                                .pick(&PickContext::default(), &|_| true)
                                .expect("eligible")] += 1;
                        }
                        c
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("no panic"))
                .collect()
        });
        let total = counts
            .iter()
            .fold([0, 0], |acc, c| [acc[0] + c[0], acc[1] + c[1]]);
        assert_eq!(total, [2000, 2000]);
    }

    #[test]
    fn empty_pool_picks_nothing() {
        for algorithm in ALL {
            let selector = build_for(algorithm, &[]);
            assert_eq!(selector.pick(&PickContext::default(), &|_| true), None);
        }
    }

    #[test]
    fn zero_weight_is_still_pickable_when_alone() {
        for algorithm in ALL {
            let selector = build_for(algorithm, &[0, 4]);
            let picked = selector.pick(&PickContext::default(), &|i| i == 0);
            assert_eq!(picked, Some(0), "{algorithm:?}");
        }
    }

    #[test]
    fn hash_bytes_is_a_fixed_function() {
        // Pinned values: if these change, every sticky key in a running cluster moves.
        assert_eq!(hash_bytes(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(hash_bytes(b"user-42"), hash_bytes(b"user-42"));
        assert_ne!(hash_bytes(b"user-42"), hash_bytes(b"user-43"));
    }

    #[test]
    fn lighter_compares_ratios_exactly() {
        assert!(lighter(1, 3, 1, 1)); // 1/3 < 1
        assert!(!lighter(2, 2, 1, 1)); // 1 == 1
        assert!(lighter(u64::MAX - 1, u32::MAX, u64::MAX, u32::MAX));
    }
}
