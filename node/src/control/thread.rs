//! The control thread: Raft, the lease and the VIP guard run on their own runtime, on
//! their own OS threads, apart from the data plane.
//!
//! A data plane saturated by clients (or a machine saturated by other processes) must
//! not delay a lease ping by more than the fence lasts, or the cluster fails over for
//! nothing. So the control work gets:
//! - its own small multi-thread tokio runtime (two workers: the lease pinger and the
//!   Raft core never wait behind each other's fsync or netlink call);
//! - `SCHED_FIFO` real-time priority for those threads when the process may set it
//!   (root or `CAP_SYS_NICE`), so a busy loop at normal priority cannot starve them.
//!   The runtime's blocking pool (redb commits and fsyncs, coding of multi-MiB frames)
//!   runs one real-time level below the workers. At the workers' own level, as before, its
//!   CPU work kept the workers of every node on the host off the CPU (a real-time thread
//!   is never preempted by one of equal priority): on the test bed (2 cores, debug build,
//!   compile load) the control workers waited up to 19 ms runnable, and a wait over
//!   `lease - heartbeat` (15 ms) on a leader lapses its lease with no fault at all. At
//!   normal priority instead, the election's vote and log writes waited behind the load
//!   (a hand-off took 20-25 ms instead of 5-10);
//! - memory locked (`mlockall`, faulted pages only) when the process may lock it
//!   (`CAP_IPC_LOCK` or a large enough `RLIMIT_MEMLOCK`), so a page-in cannot stall them.
//!
//! What it got is logged at start and shown by `/status` (`control` field).

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::runtime::{Handle, Runtime};

/// Real-time priority of the control threads: above every normal thread, below the
/// kernel's own real-time threads (which use 50 and up).
const FIFO_PRIORITY: i32 = 10;
/// Real-time priority of the runtime's blocking pool (redb commits and fsyncs on the
/// election's path, coding of multi-MiB frames): ahead of normal work, and always
/// preempted by the workers.
const BLOCKING_PRIORITY: i32 = 5;
const WORKERS: usize = 2;

/// What the control thread obtained from the kernel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ControlReport {
    /// Scheduling policy of the control threads: `fifo:10` or `normal`.
    pub scheduling: String,
    /// Whether the process's memory is locked.
    pub memory_locked: bool,
    /// Why something was not obtained (empty when everything was).
    pub notes: Vec<String>,
}

/// The control runtime. Dropping it shuts the runtime down in the background.
pub struct ControlThread {
    runtime: Option<Runtime>,
}

static CONTROL: OnceLock<Handle> = OnceLock::new();
static REPORT: OnceLock<ControlReport> = OnceLock::new();

impl ControlThread {
    /// Builds the runtime, asks for real-time priority on each of its threads and
    /// locks memory. Never fails for lack of privilege: it reports instead.
    pub fn start() -> std::io::Result<ControlThread> {
        let fifo_ok = Arc::new(AtomicBool::new(true));
        let fifo_flag = fifo_ok.clone();
        let started = AtomicUsize::new(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("fulcrum-control")
            .on_thread_start(move || {
                // tokio starts the workers first, at build time; every later thread of this
                // runtime is a blocking-pool thread, one real-time level below them.
                let priority = if started.fetch_add(1, Ordering::Relaxed) < WORKERS {
                    FIFO_PRIORITY
                } else {
                    BLOCKING_PRIORITY
                };
                if let Err(e) = set_fifo(priority) {
                    fifo_flag.store(false, Ordering::Relaxed);
                    tracing::debug!(error = %e, "control thread stays at normal priority");
                }
            })
            .enable_all()
            .build()?;
        // Make sure the workers exist (and ran on_thread_start) before reporting.
        runtime.block_on(async {
            for _ in 0..WORKERS {
                tokio::task::spawn(async {}).await.ok();
            }
        });
        let mut notes = Vec::new();
        let scheduling = if fifo_ok.load(Ordering::Relaxed) {
            format!("fifo:{FIFO_PRIORITY}")
        } else {
            notes.push("SCHED_FIFO refused (needs root or CAP_SYS_NICE)".to_string());
            "normal".to_string()
        };
        let memory_locked = match lock_memory() {
            Ok(()) => true,
            Err(e) => {
                notes.push(format!(
                    "memory not locked: {e} (needs CAP_IPC_LOCK or LimitMEMLOCK=infinity)"
                ));
                false
            }
        };
        let report = ControlReport {
            scheduling,
            memory_locked,
            notes,
        };
        if report.notes.is_empty() {
            tracing::info!(scheduling = %report.scheduling, memory_locked, "control thread started");
        } else {
            tracing::warn!(scheduling = %report.scheduling, memory_locked, notes = ?report.notes,
                "control thread started without everything it asked for; failover may slow under CPU load");
        }
        spawn_ticker(fifo_ok.load(Ordering::Relaxed));
        let _ = CONTROL.set(runtime.handle().clone());
        let _ = REPORT.set(report.clone());
        Ok(ControlThread {
            runtime: Some(runtime),
        })
    }
}

impl Drop for ControlThread {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// What the control thread got, once started (for `/debug/failover`).
pub fn control_report() -> Option<&'static ControlReport> {
    REPORT.get()
}

/// The control runtime's handle, once started (for work that must run there).
pub fn control_handle() -> Option<Handle> {
    CONTROL.get().cloned()
}

/// How often the ticker wakes the lease pingers.
const TICK: std::time::Duration = std::time::Duration::from_millis(2);

/// The lease pingers' second clock (`fulcrum_raft::lease::pinger::clock_tick`): a plain
/// thread at the workers' priority that sleeps `TICK` and wakes them, so a ping never
/// waits for a late tokio timer.
fn spawn_ticker(fifo: bool) {
    let spawned = std::thread::Builder::new()
        .name("fulcrum-tick".into())
        .spawn(move || {
            if fifo {
                let _ = set_fifo(FIFO_PRIORITY);
            }
            loop {
                std::thread::sleep(TICK);
                fulcrum_raft::lease::pinger::clock_tick();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "lease ticker thread not started; pings follow tokio's timer only");
    }
}

/// `SCHED_FIFO` at `priority` for the calling thread. Neither nix nor rustix (the crates
/// in the tree) wraps `sched_setscheduler` (rustix lists it as not implemented), so this
/// stays a raw call: one of the workspace's documented unsafe blocks.
#[allow(unsafe_code)] // one of the workspace's documented unsafe blocks (see the root Cargo.toml)
fn set_fifo(priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter struct.
    // SCHED_RESET_ON_FORK: threads this one creates start at normal priority and set
    // their own level.
    let policy = libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK;
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Locks current and future pages as they are faulted in (`MCL_ONFAULT`), so thread
/// stacks and reserved arenas are not pre-faulted. nix's safe `mlockall`; its flag type
/// has no `MCL_ONFAULT` (Linux-only) yet, so that bit is added as libc defines it.
fn lock_memory() -> std::io::Result<()> {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    let on_fault = MlockAllFlags::from_bits_retain(libc::MCL_ONFAULT);
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE | on_fault)
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's policy and priority; no safe wrapper exists for these two
    /// calls either (see [`set_fifo`]).
    #[allow(unsafe_code)] // one of the workspace's documented unsafe blocks (see the root Cargo.toml)
    fn policy() -> (i32, i32) {
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscalls on the calling thread (pid 0); `param` is a valid struct.
        let (p, rc) = unsafe {
            (
                libc::sched_getscheduler(0),
                libc::sched_getparam(0, &mut param),
            )
        };
        assert_eq!(rc, 0, "sched_getparam");
        (p & !libc::SCHED_RESET_ON_FORK, param.sched_priority)
    }

    /// The workers run above the blocking pool: a blocking-pool thread at the workers'
    /// level doing CPU work starves every worker on its core.
    #[test]
    fn the_blocking_pool_runs_below_the_workers() {
        let control = ControlThread::start().expect("control runtime");
        let report = control_report().expect("report");
        if !report.scheduling.starts_with("fifo") {
            eprintln!(
                "skipped: SCHED_FIFO not permitted here ({:?})",
                report.notes
            );
            return;
        }
        let handle = control_handle().expect("handle");
        let (workers, blocking) = handle.block_on(async {
            let mut workers = Vec::new();
            for _ in 0..8 {
                workers.push(tokio::spawn(async { policy() }).await.expect("task"));
            }
            let mut blocking = Vec::new();
            for _ in 0..4 {
                blocking.push(
                    tokio::task::spawn_blocking(policy)
                        .await
                        .expect("blocking task"),
                );
            }
            (workers, blocking)
        });
        assert!(
            workers
                .iter()
                .all(|p| *p == (libc::SCHED_FIFO, FIFO_PRIORITY)),
            "workers: {workers:?}"
        );
        assert!(
            blocking.iter().all(|p| p.1 < FIFO_PRIORITY),
            "blocking pool: {blocking:?}"
        );
        drop(control);
    }
}
