//! Steal time: how long this machine's CPUs were ready to run while the hypervisor ran
//! something else, so that a lapsed lease can say whether the machine itself stopped.
//!
//! A leader whose virtual CPU is taken away for 100 ms cannot ping its voters, and they
//! fail it over after `election_timeout_min`, as they would a frozen process. Seen on a
//! saturated 2-vCPU test VM: the leader's lease lapsed with acknowledgements 104 ms old
//! and nothing in its log between. The kernel counts that time as steal (`/proc/stat`,
//! the eighth column, in 10 ms ticks); the lease-lapse warning reports the steal of the
//! last second or so, so an operator can tell a host that paused from a network fault.
//!
//! A sampler reads the total once a second; a lapse reads it again and compares. Cheap:
//! one read of `/proc/stat` per second, and one per lapse.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fulcrum_raft::lease::time::now_us;
use tokio_util::sync::CancellationToken;

/// `/proc/stat` counts in USER_HZ ticks of 10 ms.
const TICK_MS: u64 = 10;
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The last sample: steal ticks summed over the CPUs, and when (µs, the lease clock).
static LAST_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);
static LAST_AT_US: AtomicU64 = AtomicU64::new(0);

/// Samples the steal total every second until `stop` is cancelled.
pub async fn sample(stop: CancellationToken) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => record(),
            () = stop.cancelled() => return,
        }
    }
}

fn record() {
    if let Some(ticks) = total_steal_ticks() {
        LAST_TICKS.store(ticks, Ordering::Relaxed);
        LAST_AT_US.store(now_us(), Ordering::Relaxed);
    }
}

/// Steal since the last sample: `(steal ms, over ms)`, or None before the first sample
/// or where `/proc/stat` has no steal column.
pub fn since_last_sample() -> Option<(u64, u64)> {
    let before = LAST_TICKS.load(Ordering::Relaxed);
    if before == u64::MAX {
        return None;
    }
    let now = total_steal_ticks()?;
    let over_ms = now_us().saturating_sub(LAST_AT_US.load(Ordering::Relaxed)) / 1000;
    Some((now.saturating_sub(before) * TICK_MS, over_ms))
}

fn total_steal_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_total_steal(&stat)
}

/// The steal column of the `cpu` line (all CPUs together).
fn parse_total_steal(stat: &str) -> Option<u64> {
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_steal_of_all_cpus_together() {
        let stat = "cpu  10 0 20 300 0 0 1 17 0 0\ncpu0 5 0 10 150 0 0 1 12 0 0\n";
        assert_eq!(parse_total_steal(stat), Some(17));
        assert_eq!(parse_total_steal("cpu0 1 2 3\n"), None);
        assert_eq!(parse_total_steal("cpu  1 2 3 4\n"), None);
    }
}
