//! Consistent hashing: a ketama ring, so a key keeps its backend across rebuilds.
//!
//! Hashing a key modulo the number of backends moves almost every key when a backend
//! is added or removed. A hash ring moves only the keys of the backend that changed:
//! every backend owns many pseudo-random points on a circle of u64 values, and a key
//! belongs to the first point at or after its own hash (wrapping around). Removing a
//! backend removes only its points; keys that landed on other backends' points stay.
//! Many points per backend (160 per unit of weight, as in nginx's and Pingora's ketama)
//! keep the arcs small and the shares even: with three equal backends each one's share
//! stays within a few percent of a third.
//!
//! Determinism across nodes and restarts is the point of this algorithm (a pool's keys
//! must land on the same backend whichever node serves them), so everything derives
//! from the backend ids and [`hash_bytes`] (XXH3, no random seed): point `k` of backend
//! `id` is at `hash_bytes("{id}-{k}")`, and the order of backends in the config does not
//! matter. Two candidates with the same id would own the same points; validation
//! rejects duplicate addresses in a pool, and should one slip through, the first listed
//! wins them.
//!
//! The key is `ctx.hash_key` (a header, cookie or path, extracted by the caller), else
//! the client IP (IPv4-mapped IPv6 addresses are first turned back into IPv4, so a
//! dual-stack listener does not split one client in two). With neither, there is
//! nothing to be consistent about and we pick uniformly at random.
//!
//! An ineligible backend is skipped by walking forward on the ring to the next point
//! of an eligible one: only its own keys move, and they spread over the others in
//! proportion to their points (the next point after a random spot is owned by a random
//! backend), which is also where they would go if the backend were removed.

use std::net::IpAddr;

use super::{hash_bytes, sample, Candidate, PickContext, Selector};

/// Ring points per unit of weight (nginx's and Pingora's ketama use 160).
const POINTS_PER_WEIGHT: u64 = 160;
/// Upper bound on the ring size (12 bytes per point: 3 MiB). Beyond it, every
/// backend's point count is scaled down proportionally (each keeps at least one).
const MAX_POINTS: u64 = 1 << 18;

#[derive(Debug)]
pub(super) struct Ketama {
    /// Number of backends.
    len: usize,
    /// Ring positions, ascending.
    points: Vec<u64>,
    /// `owners[k]` is the backend index owning `points[k]`.
    owners: Vec<u32>,
}

impl Ketama {
    pub(super) fn new(candidates: &[Candidate]) -> Self {
        let wanted: Vec<u64> = candidates
            .iter()
            .map(|c| POINTS_PER_WEIGHT * u64::from(c.effective_weight()))
            .collect();
        let total: u64 = wanted.iter().sum();
        let mut ring: Vec<(u64, u32)> = Vec::with_capacity(total.min(MAX_POINTS) as usize);
        for (i, (candidate, &want)) in candidates.iter().zip(&wanted).enumerate() {
            let count = if total > MAX_POINTS {
                (want * MAX_POINTS / total).max(1)
            } else {
                want
            };
            for k in 0..count {
                let point = hash_bytes(format!("{}-{}", candidate.id, k).as_bytes());
                ring.push((point, i as u32));
            }
        }
        // Sorting by (point, owner) makes even a hash collision resolve the same way
        // everywhere.
        ring.sort_unstable();
        let (points, owners) = ring.into_iter().unzip();
        Ketama {
            len: candidates.len(),
            points,
            owners,
        }
    }

    /// The eligible backend owning `hash`: the first eligible point at or after it.
    fn lookup(&self, hash: u64, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let ring = self.points.len();
        if ring == 0 {
            return None;
        }
        let start = self.points.partition_point(|&p| p < hash);
        for step in 0..ring {
            // After as many misses as there are backends, check that the walk can end
            // well before walking a ring of tens of thousands of points for nothing.
            if step == self.len && !(0..self.len).any(eligible) {
                return None;
            }
            let owner = self.owners[(start + step) % ring] as usize;
            if eligible(owner) {
                return Some(owner);
            }
        }
        None
    }
}

/// The hash of a client address, stable across processes like every ring hash.
fn hash_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

impl Selector for Ketama {
    fn pick(&self, ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let hash = match (ctx.hash_key, ctx.client_ip) {
            (Some(key), _) => hash_bytes(key),
            (None, Some(ip)) => hash_ip(ip),
            (None, None) => return sample::one(&mut rand::rng(), self.len, eligible),
        };
        self.lookup(hash, eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::candidates;
    use super::*;
    use std::collections::HashMap;

    fn keys() -> Vec<String> {
        (0..1000).map(|k| format!("user-{k}")).collect()
    }

    /// Key -> backend id, for a ring over `cands`, with everything eligible.
    fn assign(cands: &[Candidate]) -> HashMap<String, String> {
        let ring = Ketama::new(cands);
        keys()
            .into_iter()
            .map(|k| {
                let i = ring
                    .lookup(hash_bytes(k.as_bytes()), &|_| true)
                    .expect("non-empty");
                (k, cands[i].id.clone())
            })
            .collect()
    }

    #[test]
    fn same_key_same_backend_across_rebuilds_and_processes() {
        let cands = candidates(&[1, 1, 1]);
        assert_eq!(assign(&cands), assign(&cands));
        // Order in the config does not matter: the mapping is by id.
        let mut reversed = cands.clone();
        reversed.reverse();
        assert_eq!(assign(&cands), assign(&reversed));
        // Pinned values: a change here means every sticky key of a running cluster
        // would move on upgrade (or that the ring is not deterministic).
        let got = assign(&cands);
        let pinned: Vec<&str> = ["user-0", "user-1", "user-2", "user-3", "user-4"]
            .iter()
            .map(|k| got[*k].as_str())
            .collect();
        assert_eq!(pinned, GOLDEN);
    }

    const GOLDEN: [&str; 5] = [
        "10.0.0.23:8080",
        "10.0.0.22:8080",
        "10.0.0.21:8080",
        "10.0.0.22:8080",
        "10.0.0.21:8080",
    ];

    #[test]
    fn removing_one_of_n_moves_only_its_keys() {
        for n in [3usize, 4, 5] {
            let all = candidates(&vec![1; n]);
            let before = assign(&all);
            for removed in 0..n {
                let mut rest = all.clone();
                let gone = rest.remove(removed).id;
                let after = assign(&rest);
                let mut moved = 0;
                for (key, was) in &before {
                    let now = &after[key];
                    if *was != gone {
                        assert_eq!(was, now, "{key} moved off a backend that stayed");
                    } else {
                        moved += 1;
                    }
                }
                let bound = 1000.0 * (1.0 / n as f64 + 0.05);
                assert!(
                    (moved as f64) <= bound,
                    "n={n}: {moved} keys moved, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn three_equal_backends_share_keys_evenly() {
        let cands = candidates(&[1, 1, 1]);
        let got = assign(&cands);
        for c in &cands {
            let share = got.values().filter(|id| **id == c.id).count();
            assert!((200..=470).contains(&share), "{}: {share} of 1000", c.id);
        }
    }

    #[test]
    fn weight_two_gets_about_twice_the_keys() {
        let cands = candidates(&[2, 1]);
        let got = assign(&cands);
        let heavy = got.values().filter(|id| **id == cands[0].id).count();
        assert!((600..=733).contains(&heavy), "{heavy} of 1000");
    }

    #[test]
    fn ineligible_backend_keys_go_elsewhere_and_others_stay() {
        let cands = candidates(&[1, 1, 1]);
        let ring = Ketama::new(&cands);
        let mut spread = [0u32; 3];
        for k in keys() {
            let h = hash_bytes(k.as_bytes());
            let all = ring.lookup(h, &|_| true).expect("eligible");
            let without_1 = ring.lookup(h, &|i| i != 1).expect("eligible");
            if all == 1 {
                spread[without_1] += 1;
            } else {
                assert_eq!(all, without_1, "{k} moved although its backend is up");
            }
        }
        assert_eq!(spread[1], 0);
        assert!(spread[0] > 50 && spread[2] > 50, "{spread:?}");
        assert_eq!(ring.lookup(7, &|_| false), None);
    }

    #[test]
    fn client_ip_is_the_key_when_there_is_no_hash_key() {
        let ring = Ketama::new(&candidates(&[1, 1, 1, 1]));
        let v4: IpAddr = "192.0.2.7".parse().expect("literal");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("literal");
        let ctx = |ip| PickContext {
            hash_key: None,
            client_ip: Some(ip),
        };
        let first = ring.pick(&ctx(v4), &|_| true);
        for _ in 0..20 {
            assert_eq!(ring.pick(&ctx(v4), &|_| true), first);
            assert_eq!(ring.pick(&ctx(mapped), &|_| true), first);
        }
        // A hash key, when present, wins over the address.
        let key = PickContext {
            hash_key: Some(b"user-1"),
            client_ip: Some(v4),
        };
        assert_eq!(
            ring.pick(&key, &|_| true),
            ring.lookup(hash_bytes(b"user-1"), &|_| true)
        );
    }

    #[test]
    fn no_key_at_all_spreads_at_random() {
        let ring = Ketama::new(&candidates(&[1, 1, 1]));
        let mut seen = [0u32; 3];
        for _ in 0..300 {
            seen[ring
                .pick(&PickContext::default(), &|i| i != 0)
                .expect("eligible")] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
    }

    #[test]
    fn huge_weights_are_capped() {
        let ring = Ketama::new(&candidates(&[u32::MAX, 1]));
        assert!(ring.points.len() as u64 <= MAX_POINTS + 1);
        assert!(ring.owners.contains(&1), "the light backend keeps a point");
    }
}
