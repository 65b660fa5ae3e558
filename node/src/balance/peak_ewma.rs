//! Peak-EWMA: power of two choices over expected latency × load.
//!
//! `least_request.rs` treats every request as equal; a backend that answers in 200 ms
//! and one that answers in 2 ms look the same while both have 3 requests in flight.
//! Peak-EWMA (Finagle's `PeakEwma`, kept by linkerd through `tower::load::PeakEwma`)
//! estimates each backend's response time and picks by
//!
//! ```text
//! cost = latency_estimate * (in_flight + 1) / weight
//! ```
//!
//! between two random eligible backends (see `least_request.rs` for why two).
//!
//! The estimate is an exponentially weighted moving average with two twists:
//!
//! * **Peak**: a sample above the current estimate replaces it at once. A backend that
//!   turns slow (GC pause, overloaded host) is avoided from its first slow answer,
//!   while getting fast again only lowers the estimate gradually. Being pessimistic
//!   costs a little traffic shift; being optimistic costs user-visible latency.
//! * **Time-based decay**: a sample below the estimate is blended in with weight
//!   `1 - exp(-elapsed / 10 s)`, where `elapsed` is the time since the previous sample.
//!   Ten seconds is Finagle's and linkerd's default decay. Basing the weight on time
//!   rather than on a sample count makes the estimate forget at the same speed whether
//!   the backend serves 10 or 10 000 requests per second.
//!
//! When picking, the stored estimate is further decayed towards zero by the time since
//! its last sample, as tower's `PeakEwma::load` does. A backend that stopped getting
//! traffic because it was slow therefore looks cheaper and cheaper, is eventually
//! tried again, and its next sample tells whether it recovered.
//!
//! A backend without any sample yet is costed at [`DEFAULT_RTT`] (tower's `default_rtt`),
//! an optimistic 1 ms, so that a newly added backend receives traffic and gets measured.
//!
//! State is two atomics per backend (`ewma_nanos`, `ewma_stamp_nanos`). The update is a
//! compare-and-swap loop on the estimate, and the stamp only moves forward
//! (`fetch_max`); two racing updates may blend with a slightly off `elapsed`, which
//! nudges an estimate, never corrupts it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{load_of, sample, BackendLoad, PickContext, Selector};

/// Time constant of the decay (Finagle's and linkerd's default).
const DECAY: Duration = Duration::from_secs(10);
/// Latency assumed for a backend that has not answered yet.
const DEFAULT_RTT: Duration = Duration::from_millis(1);

/// Records one response latency of a backend (call it when the response head arrives,
/// or when a connection attempt fails after `latency`, so that failures count as slow).
pub fn observe_latency(load: &BackendLoad, latency: Duration) {
    observe_at(load, latency, now_nanos());
}

/// Nanoseconds since the first call in this process: the clock of `ewma_stamp_nanos`.
///
/// `Instant` is monotonic (immune to NTP steps), but opaque; atomics need a number,
/// hence a process-wide epoch.
fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    nanos(EPOCH.get_or_init(Instant::now).elapsed())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn observe_at(load: &BackendLoad, latency: Duration, now: u64) {
    // 0 means "no sample", so a (clock-granularity) zero latency is stored as 1 ns.
    let sample = nanos(latency).max(1);
    let elapsed = now.saturating_sub(load.ewma_stamp_nanos.load(Ordering::Relaxed));
    // The closure always returns `Some`, so this cannot fail; it only retries on races.
    let _ = load
        .ewma_nanos
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |prev| {
            Some(next_estimate(prev, sample, elapsed))
        });
    load.ewma_stamp_nanos.fetch_max(now, Ordering::Relaxed);
}

/// The estimate after `sample`, given the previous estimate and the time since it.
fn next_estimate(prev: u64, sample: u64, elapsed: u64) -> u64 {
    if prev == 0 || sample >= prev {
        return sample;
    }
    let keep = decay_factor(elapsed);
    let blended = prev as f64 * keep + sample as f64 * (1.0 - keep);
    (blended.round() as u64).max(1)
}

/// `exp(-elapsed / DECAY)`: 1 right after a sample, 0.37 after 10 s, 0.05 after 30 s.
fn decay_factor(elapsed_nanos: u64) -> f64 {
    (-(elapsed_nanos as f64) / DECAY.as_nanos() as f64).exp()
}

/// The latency estimate a pick at `now` sees, in nanoseconds.
fn estimate_at(load: &BackendLoad, now: u64) -> f64 {
    let ewma = load.ewma_nanos.load(Ordering::Relaxed);
    if ewma == 0 {
        return DEFAULT_RTT.as_nanos() as f64;
    }
    let stamp = load.ewma_stamp_nanos.load(Ordering::Relaxed);
    ewma as f64 * decay_factor(now.saturating_sub(stamp))
}

pub(super) struct PeakEwma {
    weights: Vec<u32>,
    loads: Arc<[Arc<BackendLoad>]>,
}

impl PeakEwma {
    /// `weights` are effective weights (all at least 1).
    pub(super) fn new(weights: Vec<u32>, loads: Arc<[Arc<BackendLoad>]>) -> Self {
        PeakEwma { weights, loads }
    }

    fn cost_at(&self, i: usize, now: u64) -> f64 {
        let estimate = match self.loads.get(i) {
            Some(load) => estimate_at(load, now),
            None => DEFAULT_RTT.as_nanos() as f64,
        };
        let in_flight = load_of(&self.loads, i).0;
        estimate * (in_flight as f64 + 1.0) / f64::from(self.weights[i])
    }

    fn pick_at(&self, now: u64, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let (a, b) = sample::two(&mut rand::rng(), self.weights.len(), eligible)?;
        let Some(b) = b else { return Some(a) };
        if self.cost_at(b, now) < self.cost_at(a, now) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

impl Selector for PeakEwma {
    fn pick(&self, _ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.pick_at(now_nanos(), eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::loads;
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_sample_sets_the_estimate() {
        let l = BackendLoad::default();
        observe_at(&l, ms(20), 5 * S);
        assert_eq!(l.ewma_nanos.load(Ordering::Relaxed), 20 * MS);
        assert_eq!(l.ewma_stamp_nanos.load(Ordering::Relaxed), 5 * S);
    }

    #[test]
    fn a_higher_sample_replaces_the_estimate_at_once() {
        let l = BackendLoad::default();
        observe_at(&l, ms(10), S);
        observe_at(&l, ms(100), S + 1);
        assert_eq!(l.ewma_nanos.load(Ordering::Relaxed), 100 * MS);
    }

    #[test]
    fn a_lower_sample_is_blended_by_elapsed_time() {
        let l = BackendLoad::default();
        observe_at(&l, ms(100), S);
        // 1 s later: keep exp(-0.1) = 0.905 of 100 ms, add 0.095 of 10 ms.
        observe_at(&l, ms(10), 2 * S);
        let got = l.ewma_nanos.load(Ordering::Relaxed) as f64 / MS as f64;
        assert!((got - 91.44).abs() < 0.01, "{got}");
        // Right away again: almost no weight for the new sample.
        observe_at(&l, ms(10), 2 * S);
        let again = l.ewma_nanos.load(Ordering::Relaxed) as f64 / MS as f64;
        assert!((again - got).abs() < 0.01, "{again}");
        // After a minute of 10 ms answers, the estimate is close to 10 ms.
        for k in 3..63 {
            observe_at(&l, ms(10), k * S);
        }
        let late = l.ewma_nanos.load(Ordering::Relaxed) as f64 / MS as f64;
        assert!(late < 10.5, "{late}");
    }

    #[test]
    fn the_estimate_decays_towards_zero_while_idle() {
        let l = BackendLoad::default();
        observe_at(&l, ms(100), S);
        assert_eq!(estimate_at(&l, S), (100 * MS) as f64);
        let after_30s = estimate_at(&l, 31 * S) / MS as f64;
        assert!((after_30s - 4.98).abs() < 0.01, "{after_30s}");
        // An unsampled backend is costed at the default.
        assert_eq!(estimate_at(&BackendLoad::default(), S), MS as f64);
    }

    #[test]
    fn prefers_the_faster_backend_after_observations() {
        let l = loads(3);
        for _ in 0..5 {
            observe_latency(&l[0], ms(50));
            observe_latency(&l[1], ms(5));
            observe_latency(&l[2], ms(20));
        }
        let sel = PeakEwma::new(vec![1, 1, 1], l);
        let mut c = [0u32; 3];
        for _ in 0..1000 {
            c[sel
                .pick(&PickContext::default(), &|_| true)
                .expect("eligible")] += 1;
        }
        // Pairs {0,1}, {1,2} -> 1 and {0,2} -> 2: shares 0, 2/3, 1/3.
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 550 && c[2] > 250, "{c:?}");
    }

    #[test]
    fn load_multiplies_latency() {
        // Same latency, 0 has 4 in flight: 5x the cost, so 1 wins.
        let l = loads(2);
        observe_at(&l[0], ms(10), S);
        observe_at(&l[1], ms(10), S);
        l[0].in_flight.store(4, Ordering::Relaxed);
        let sel = PeakEwma::new(vec![1, 1], l.clone());
        assert_eq!(sel.pick_at(S, &|_| true), Some(1));
        // But a 10x faster backend is worth queueing behind.
        l[0].ewma_nanos.store(MS, Ordering::Relaxed);
        assert_eq!(sel.pick_at(S, &|_| true), Some(0));
    }

    #[test]
    fn a_new_backend_gets_traffic() {
        let l = loads(2);
        observe_at(&l[0], ms(20), S);
        let sel = PeakEwma::new(vec![1, 1], l);
        assert_eq!(sel.pick_at(S, &|_| true), Some(1));
    }

    #[test]
    fn single_eligible_is_returned_and_none_when_nothing_is() {
        let l = loads(2);
        observe_at(&l[1], ms(900), S);
        let sel = PeakEwma::new(vec![1, 1], l);
        assert_eq!(sel.pick_at(S, &|i| i == 1), Some(1));
        assert_eq!(sel.pick_at(S, &|_| false), None);
    }
}
