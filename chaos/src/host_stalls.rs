//! Host stalls: moments when a CPU of this machine did not run anything at all, watched
//! while a scenario runs.
//!
//! On a virtual machine the hypervisor may take a virtual CPU away (its "steal" time in
//! `/proc/stat`). On the test machine (a 2-vCPU VM) a saturated guest lost one vCPU for
//! 100 ms at a time: every thread on it, real-time or not, stopped. A leader frozen that
//! long is failed over, correctly (it is a freeze, however it came about), and the
//! requests it held are lost, so the scenario's "requests lost" check failed on the
//! machine's doing, with nothing in the nodes' logs but a lease found lapsed with
//! acknowledgements 104 ms old.
//!
//! The watch: one thread pinned to each CPU, real-time when it may be, sleeping 1 ms in a
//! loop. A wake-up later than [`LATE_MS`] is recorded with the steal time the kernel
//! counted on that CPU since a reading at most [`STEAL_READ_EVERY`] before it. A stall with steal is the host's; one without is the
//! guest's own (another real-time thread, interrupts off), reported but never excused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde::Serialize;

/// A wake-up this late (after a 1 ms sleep) is a stall.
const LATE_MS: f64 = 15.0;
/// The watcher's sleep between looks.
const NAP: Duration = Duration::from_millis(1);
/// `/proc/stat` counts in USER_HZ ticks of 10 ms.
const TICK_MS: f64 = 10.0;
/// How old the steal reading a stall is measured from may be: two ticks, so the watcher
/// reads `/proc/stat` 50 times a second rather than on every 1 ms look.
const STEAL_READ_EVERY: Duration = Duration::from_millis(20);

/// One stall of one CPU.
#[derive(Debug, Clone, Serialize)]
pub struct HostStall {
    /// When the watcher went to sleep, ms after the scenario's epoch.
    pub t_ms: f64,
    pub cpu: usize,
    /// How long past its 1 ms nap the watcher woke.
    pub late_ms: f64,
    /// Steal time the kernel counted on that CPU over the same interval (10 ms ticks).
    pub steal_ms: f64,
}

impl HostStall {
    /// Whether the hypervisor took the CPU for most of the stall: the host's doing.
    pub fn by_host(&self) -> bool {
        self.steal_ms >= self.late_ms / 2.0
    }
}

/// The running watch; [`StallWatch::finish`] stops it and returns what it saw.
pub struct StallWatch {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Seen>>>,
}

/// A stall as a watcher saw it, before the scenario's epoch is known.
struct Seen {
    at: Instant,
    cpu: usize,
    late_ms: f64,
    steal_ms: f64,
}

impl StallWatch {
    /// One watcher per CPU, each bounded by `limit` as well. Started before the cluster
    /// is waited for, so the watchers are pinned and real-time before the load begins.
    pub fn start(limit: Duration) -> StallWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..cpus)
            .filter_map(|cpu| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("stall-watch-{cpu}"))
                    .spawn(move || watch(cpu, limit, &stop))
                    .ok()
            })
            .collect();
        StallWatch { stop, threads }
    }

    /// Stops the watchers; every stall seen, in time order, timed from `epoch` (a stall
    /// before it has a negative time).
    pub fn finish(mut self, epoch: Instant) -> Vec<HostStall> {
        self.stop.store(true, Ordering::SeqCst);
        let ms_from_epoch = |at: Instant| match at.checked_duration_since(epoch) {
            Some(after) => after.as_secs_f64() * 1000.0,
            None => -(epoch.duration_since(at).as_secs_f64() * 1000.0),
        };
        let mut all: Vec<HostStall> = std::mem::take(&mut self.threads)
            .into_iter()
            .filter_map(|t| t.join().ok())
            .flatten()
            .map(|s| HostStall {
                t_ms: ms_from_epoch(s.at),
                cpu: s.cpu,
                late_ms: s.late_ms,
                steal_ms: s.steal_ms,
            })
            .collect();
        all.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        all
    }
}

/// A watch given up early (a scenario that never started) stops its watchers too.
impl Drop for StallWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn watch(cpu: usize, limit: Duration, stop: &AtomicBool) -> Vec<Seen> {
    let mut set = CpuSet::new();
    if set.set(cpu).is_err() || sched_setaffinity(Pid::from_raw(0), &set).is_err() {
        return Vec::new();
    }
    fulcrum_testbed::periodic::keep_pace_under_load();
    let mut stalls = Vec::new();
    let end = Instant::now() + limit;
    let mut steal_before = (steal_ticks(cpu), Instant::now());
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if steal_before.1.elapsed() >= STEAL_READ_EVERY {
            steal_before = (steal_ticks(cpu), Instant::now());
        }
        let slept = Instant::now();
        std::thread::sleep(NAP);
        let late_ms = (slept.elapsed().as_secs_f64() * 1000.0) - 1.0;
        if late_ms > LATE_MS {
            let steal = match (steal_before.0, steal_ticks(cpu)) {
                (Some(before), Some(after)) => after.saturating_sub(before),
                _ => 0,
            };
            // The stall's own steal is counted: the next one starts from a fresh reading.
            steal_before = (steal_ticks(cpu), Instant::now());
            stalls.push(Seen {
                at: slept,
                cpu,
                late_ms,
                steal_ms: steal as f64 * TICK_MS,
            });
        }
    }
    stalls
}

/// The steal ticks of `cpu` so far (None where `/proc/stat` cannot say).
fn steal_ticks(cpu: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_steal(&stat, cpu)
}

fn parse_steal(stat: &str, cpu: usize) -> Option<u64> {
    let label = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    // cpuN user nice system idle iowait irq softirq steal ...
    line.split_whitespace().nth(8)?.parse().ok()
}

/// One line per stall, e.g. `cpu1 stalled 100.4 ms at 913 ms (steal 100 ms: the host)`.
pub fn describe(stalls: &[HostStall]) -> Vec<String> {
    stalls
        .iter()
        .map(|s| {
            let whose = if s.by_host() {
                "the host"
            } else {
                "this guest"
            };
            format!(
                "cpu{} stalled {:.1} ms at {:.0} ms (steal {:.0} ms: {whose})",
                s.cpu, s.late_ms, s.t_ms, s.steal_ms
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 20 300 0 0 1 7 0 0\n\
                        cpu0 5 0 10 150 0 0 1 2 0 0\n\
                        cpu1 5 0 10 150 0 0 0 5 0 0\n\
                        intr 12345\n";

    #[test]
    fn steal_is_read_per_cpu() {
        assert_eq!(parse_steal(STAT, 0), Some(2));
        assert_eq!(parse_steal(STAT, 1), Some(5));
        assert_eq!(parse_steal(STAT, 2), None);
    }

    #[test]
    fn a_stall_is_the_hosts_only_when_steal_covers_most_of_it() {
        let stall = |late_ms, steal_ms| HostStall {
            t_ms: 0.0,
            cpu: 1,
            late_ms,
            steal_ms,
        };
        assert!(stall(100.4, 100.0).by_host());
        assert!(!stall(100.4, 10.0).by_host());
        assert!(!stall(30.0, 0.0).by_host());
    }
}
