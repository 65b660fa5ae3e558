//! Slow start (`pool.slow_start = "30s"`): a backend that joined the pool or came back
//! (healthy again, or its local ejection over) gets a share of its normal traffic that
//! ramps linearly from `MIN_SHARE` to all of it over the window, so a cold cache or a
//! JIT that is still warming is not flooded at once (Envoy's slow start, aggression 1).
//!
//! It works on every algorithm that spreads requests by weight or load (round-robin,
//! weighted round-robin, least-connections, least-request, peak-EWMA, random): when a
//! pick lands on a warming backend, a draw against its share decides whether it takes
//! the request or the pick moves on to the others — the same as scaling its weight by
//! the share. Consistent hashing is left alone: moving keys off a backend while it warms
//! would move them twice. When every eligible backend is warming and all draws fail,
//! the pool's fallback pick takes one anyway, so slow start never refuses a request.

use rand::Rng;
use std::time::Duration;

/// The share a backend gets the moment it comes back.
pub const MIN_SHARE: f64 = 0.1;

/// A pool's slow-start window.
#[derive(Debug, Clone, Copy)]
pub struct SlowStart {
    window_ms: u64,
}

impl SlowStart {
    pub fn new(window: Duration) -> Self {
        SlowStart {
            window_ms: (window.as_millis() as u64).max(1),
        }
    }

    /// The share of its traffic a backend gets `age_ms` after it came back.
    pub fn share(&self, age_ms: u64) -> f64 {
        if age_ms >= self.window_ms {
            return 1.0;
        }
        (age_ms as f64 / self.window_ms as f64).max(MIN_SHARE)
    }

    /// Whether a backend `age_ms` after its return takes the request it was picked for.
    pub fn admits(&self, age_ms: u64) -> bool {
        age_ms >= self.window_ms || rand::rng().random_bool(self.share(age_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_ramps_from_the_minimum_to_all() {
        let s = SlowStart::new(Duration::from_secs(10));
        assert_eq!(s.share(0), MIN_SHARE);
        assert_eq!(s.share(500), MIN_SHARE);
        assert!((s.share(5_000) - 0.5).abs() < 1e-9);
        assert_eq!(s.share(10_000), 1.0);
        assert_eq!(s.share(60_000), 1.0);
    }

    #[test]
    fn admissions_follow_the_share() {
        let s = SlowStart::new(Duration::from_secs(10));
        let taken = (0..10_000).filter(|_| s.admits(2_500)).count();
        assert!((2_000..3_000).contains(&taken), "{taken} of 10000 at 25%");
        assert!((0..100).all(|_| s.admits(10_000)));
    }
}
