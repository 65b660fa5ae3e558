//! A periodic probe: a closure run every so often on a thread inside a network
//! namespace, one call at a time, until stopped or a time limit (so a failing test never
//! leaves it running); every call's start, end and result are kept.

use crate::netns::spawn_in;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One call: when it started and ended (since [`Periodic::started`]), what it returned.
#[derive(Debug, Clone)]
pub struct Sample<T> {
    pub at: Duration,
    pub done: Duration,
    pub value: T,
}

/// The running probe.
pub struct Periodic<T> {
    pub started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample<T>>>>,
    handle: Option<JoinHandle<()>>,
}

impl<T: Clone + Send + 'static> Periodic<T> {
    /// Calls `probe` in namespace `ns`, a call starting `every` after the one before (or
    /// at once when that one took longer), for at most `limit`.
    pub fn start(
        ns: &str,
        limit: Duration,
        every: Duration,
        mut probe: impl FnMut() -> T + Send + 'static,
    ) -> Periodic<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let (s, r) = (stop.clone(), samples.clone());
        let handle = spawn_in(ns, move || {
            keep_pace_under_load();
            while !s.load(Ordering::SeqCst) && started.elapsed() < limit {
                let at = started.elapsed();
                let value = probe();
                let done = started.elapsed();
                if let Ok(mut v) = r.lock() {
                    v.push(Sample { at, done, value });
                }
                if let Some(wait) = (at + every).checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Periodic {
            started,
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// Stops and returns every sample.
    pub fn finish(mut self) -> Vec<Sample<T>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Puts the calling (probe) thread in the real-time class, as the nodes' control threads
/// are, so that a probe keeps its pace on a loaded host (CI builds and other tests share
/// two cores): one every 2 ms fell to one every 6 ms. A probe waits on the network and
/// sleeps between calls, so it takes little CPU. Without root (or `chrt`) it stays where
/// it is.
pub fn keep_pace_under_load() {
    let tid = nix::unistd::gettid().to_string();
    let _ = std::process::Command::new("chrt")
        .args(["--fifo", "--pid", "5", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
