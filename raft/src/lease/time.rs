//! The lease clock: CLOCK_MONOTONIC in microseconds.
//!
//! Every lease decision is arithmetic on these numbers, so the rules in `rules.rs` are pure
//! functions a model checker can drive with its own clock. CLOCK_MONOTONIC is shared by all
//! processes of one machine, which lets the chaos suite line up the failover events of
//! three nodes on one host; across machines only durations are ever exchanged.

use nix::time::{clock_gettime, ClockId};

/// Microseconds on CLOCK_MONOTONIC (never goes back, does not count suspend).
pub fn now_us() -> u64 {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64) * 1_000_000 + (ts.tv_nsec() as u64) / 1_000,
        // CLOCK_MONOTONIC cannot fail on Linux; fall back to a process-local clock so
        // that the lease stays monotonic even then.
        Err(_) => fallback_us(),
    }
}

fn fallback_us() -> u64 {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// The `std::time::Instant` that corresponds to `at_us` (for timers and the kernel fence).
pub fn instant_at(at_us: u64) -> std::time::Instant {
    let now_us = now_us();
    let now = std::time::Instant::now();
    if at_us >= now_us {
        now + std::time::Duration::from_micros(at_us - now_us)
    } else {
        now.checked_sub(std::time::Duration::from_micros(now_us - at_us))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_convertible() {
        let a = now_us();
        let b = now_us();
        assert!(b >= a);
        let later = instant_at(a + 50_000);
        let d = later.saturating_duration_since(std::time::Instant::now());
        assert!(d <= std::time::Duration::from_millis(50), "{d:?}");
        assert!(d >= std::time::Duration::from_millis(40), "{d:?}");
    }
}
