//! Circuit breaker in front of Redis.
//!
//! A frozen Redis costs every command its full timeout and the connection manager does not
//! notice (TECH_NOTES 4.2), so after [`FAILURE_THRESHOLD`] consecutive failures the breaker
//! opens: calls are refused at once, without touching the network, for an interval that starts
//! at [`BASE_BACKOFF`] and doubles up to [`MAX_BACKOFF`] while probes keep failing. When the
//! interval is over, exactly one call (a user call or the background PING, whichever comes
//! first) goes through as a probe; its success closes the breaker.
//!
//! The state sits behind a std `Mutex` held only for a few instructions, never across an
//! await. Callers report the outcome of admitted calls with `on_success` / `on_failure`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

/// Consecutive failures that open the breaker.
pub const FAILURE_THRESHOLD: u32 = 3;
/// First open interval.
pub const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// Longest open interval.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the breaker says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go ahead.
    Go,
    /// Half-open: this call is the single probe.
    Probe,
    /// Open (or a probe is in flight): do not call Redis.
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        backoff: Duration,
    },
    /// A probe was let through at `since`; `backoff` is the interval that preceded it.
    HalfOpen {
        since: Instant,
        backoff: Duration,
    },
}

#[derive(Debug)]
pub struct Breaker {
    mode: Mutex<Mode>,
    /// A probe that has not reported within this time is presumed lost (its caller was
    /// cancelled), so another probe may go.
    probe_grace: Duration,
    /// What it guards, for the log: empty for a single server, a master's address (or
    /// "unknown") for a cluster.
    name: String,
}

impl Breaker {
    pub fn new(call_timeout: Duration) -> Self {
        Self::named(call_timeout, "")
    }

    pub fn named(call_timeout: Duration, name: &str) -> Self {
        Self {
            mode: Mutex::new(Mode::Closed { failures: 0 }),
            probe_grace: call_timeout * 2,
            name: name.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mode> {
        // A panic while holding this lock cannot leave the small Copy state half-written,
        // so a poisoned lock is still safe to use.
        self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn admit(&self, now: Instant) -> Admit {
        let mut mode = self.lock();
        match *mode {
            Mode::Closed { .. } => Admit::Go,
            Mode::Open { until, backoff } if now >= until => {
                *mode = Mode::HalfOpen {
                    since: now,
                    backoff,
                };
                Admit::Probe
            }
            Mode::HalfOpen { since, backoff } if now.duration_since(since) > self.probe_grace => {
                *mode = Mode::HalfOpen {
                    since: now,
                    backoff,
                };
                Admit::Probe
            }
            Mode::Open { .. } | Mode::HalfOpen { .. } => Admit::Refuse,
        }
    }

    /// True when a call now would be turned away (open and not yet due for a probe, or a
    /// probe in flight). Does not change the state: lets a caller skip work it would waste.
    pub fn refusing(&self, now: Instant) -> bool {
        match *self.lock() {
            Mode::Closed { .. } => false,
            Mode::Open { until, .. } => now < until,
            Mode::HalfOpen { since, .. } => now.duration_since(since) <= self.probe_grace,
        }
    }

    /// True when the breaker is closed.
    pub fn is_closed(&self) -> bool {
        matches!(*self.lock(), Mode::Closed { .. })
    }

    pub fn on_success(&self) {
        let mut mode = self.lock();
        if !matches!(*mode, Mode::Closed { .. }) {
            info!(redis = %self.name, "redis reachable again: affinity circuit breaker closed");
        }
        *mode = Mode::Closed { failures: 0 };
    }

    /// Closes the breaker for a new server (a promoted master): the failures that opened it
    /// were the old server's. If the new one fails too, the breaker opens again after
    /// [`FAILURE_THRESHOLD`] failures.
    pub fn reset(&self) {
        let mut mode = self.lock();
        if !matches!(*mode, Mode::Closed { .. }) {
            info!(redis = %self.name, "new redis master: affinity circuit breaker closed");
        }
        *mode = Mode::Closed { failures: 0 };
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn on_failure(&self, now: Instant) -> bool {
        let mut mode = self.lock();
        match *mode {
            Mode::Closed { failures } if failures + 1 >= FAILURE_THRESHOLD => {
                *mode = Mode::Open {
                    until: now + BASE_BACKOFF,
                    backoff: BASE_BACKOFF,
                };
                warn!(redis = %self.name, backoff = ?BASE_BACKOFF, "redis failing: affinity circuit breaker open");
                true
            }
            Mode::Closed { failures } => {
                *mode = Mode::Closed {
                    failures: failures + 1,
                };
                false
            }
            Mode::HalfOpen { backoff, .. } => {
                let backoff = (backoff * 2).min(MAX_BACKOFF);
                *mode = Mode::Open {
                    until: now + backoff,
                    backoff,
                };
                // The opening was logged at warn; repeating it every probe would flood the log
                // during a long outage.
                debug!(
                    redis = %self.name,
                    ?backoff,
                    "redis probe failed: affinity circuit breaker stays open"
                );
                false
            }
            // A call admitted before the breaker opened finished late: nothing new learned.
            Mode::Open { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn opens_after_threshold_and_probes_with_growing_backoff() {
        let b = Breaker::new(ms(50));
        let t0 = Instant::now();
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert_eq!(b.admit(t0), Admit::Go);
        assert!(b.on_failure(t0));
        assert_eq!(b.admit(t0 + ms(249)), Admit::Refuse);
        assert_eq!(b.admit(t0 + ms(250)), Admit::Probe);
        // Only one probe at a time.
        assert_eq!(b.admit(t0 + ms(251)), Admit::Refuse);
        b.on_failure(t0 + ms(260));
        assert_eq!(b.admit(t0 + ms(700)), Admit::Refuse);
        assert_eq!(b.admit(t0 + ms(760)), Admit::Probe);
        b.on_success();
        assert!(b.is_closed());
        assert_eq!(b.admit(t0 + ms(761)), Admit::Go);
    }

    #[test]
    fn backoff_is_capped() {
        let b = Breaker::new(ms(50));
        let mut t = Instant::now();
        for _ in 0..FAILURE_THRESHOLD {
            b.on_failure(t);
        }
        for _ in 0..10 {
            t += MAX_BACKOFF;
            assert_eq!(b.admit(t), Admit::Probe);
            b.on_failure(t);
        }
        assert_eq!(b.admit(t + MAX_BACKOFF - ms(1)), Admit::Refuse);
        assert_eq!(b.admit(t + MAX_BACKOFF), Admit::Probe);
    }

    #[test]
    fn lost_probe_is_replaced() {
        let b = Breaker::new(ms(50));
        let t0 = Instant::now();
        for _ in 0..FAILURE_THRESHOLD {
            b.on_failure(t0);
        }
        assert_eq!(b.admit(t0 + ms(300)), Admit::Probe);
        assert_eq!(b.admit(t0 + ms(350)), Admit::Refuse);
        assert_eq!(b.admit(t0 + ms(401)), Admit::Probe);
    }

    #[test]
    fn reset_closes_an_open_breaker() {
        let b = Breaker::new(ms(50));
        let t0 = Instant::now();
        for _ in 0..FAILURE_THRESHOLD {
            b.on_failure(t0);
        }
        assert_eq!(b.admit(t0 + ms(1)), Admit::Refuse);
        b.reset();
        assert_eq!(b.admit(t0 + ms(2)), Admit::Go);
        assert!(b.is_closed());
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = Breaker::new(ms(50));
        let t0 = Instant::now();
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert!(b.is_closed());
    }
}
