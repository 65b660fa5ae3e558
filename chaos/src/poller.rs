//! A probe run on its own thread at a fixed period, timestamped against the scenario's
//! epoch. The period is shared ([`Sampling`]) so a fault script can sample densely around
//! an instant that matters (a resume) and go back to the normal period afterwards.

use anyhow::{anyhow, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Something sampled at every tick; `period` is the current sampling period (a probe
/// that waits for answers must finish well within it).
pub trait Probe: Send + 'static {
    type Sample: Clone + Send + 'static;
    fn probe(&mut self, t_ms: f64, period: Duration) -> Self::Sample;
}

/// The sampling period every poller of a run follows.
#[derive(Debug)]
pub struct Sampling {
    normal: Duration,
    dense: Duration,
    is_dense: AtomicBool,
}

impl Sampling {
    pub fn new(normal: Duration, dense: Duration) -> Arc<Sampling> {
        Arc::new(Sampling {
            normal,
            dense: dense.min(normal),
            is_dense: AtomicBool::new(false),
        })
    }
    pub fn set_dense(&self, on: bool) {
        self.is_dense.store(on, Ordering::SeqCst);
    }
    pub fn period(&self) -> Duration {
        if self.is_dense.load(Ordering::SeqCst) {
            self.dense
        } else {
            self.normal
        }
    }
    pub fn normal_ms(&self) -> f64 {
        self.normal.as_secs_f64() * 1000.0
    }
}

/// A running poller thread.
pub struct Poller<S: Clone + Send + 'static> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<S>>>,
    latest: Arc<Mutex<Option<S>>>,
}

impl<S: Clone + Send + 'static> Poller<S> {
    /// Samples at `sampling`'s period until [`Poller::finish`] (bounded to `limit` anyway).
    pub fn start<P: Probe<Sample = S>>(
        name: &str,
        mut probe: P,
        sampling: Arc<Sampling>,
        epoch: Instant,
        limit: Duration,
    ) -> Result<Poller<S>> {
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(Mutex::new(None));
        let (stop2, latest2) = (stop.clone(), latest.clone());
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // A sample's frames go out back to back only if the thread keeps the CPU.
                fulcrum_testbed::periodic::keep_pace_under_load();
                let mut samples = Vec::new();
                let mut next = Instant::now();
                while !stop2.load(Ordering::SeqCst) && epoch.elapsed() < limit {
                    let period = sampling.period();
                    let sample = probe.probe(epoch.elapsed().as_secs_f64() * 1000.0, period);
                    if let Ok(mut l) = latest2.lock() {
                        *l = Some(sample.clone());
                    }
                    samples.push(sample);
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                samples
            })
            .with_context(|| format!("spawning the {name} thread"))?;
        Ok(Poller {
            stop,
            handle: Some(handle),
            latest,
        })
    }

    /// Stops the poller and returns every sample; an error if its thread panicked.
    pub fn finish(mut self) -> Result<Vec<S>> {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self
            .handle
            .take()
            .ok_or_else(|| anyhow!("poller already finished"))?;
        handle
            .join()
            .map_err(|_| anyhow!("the poller thread panicked"))
    }

    /// The latest sample, if any.
    pub fn latest(&self) -> Option<S> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }
}

impl<S: Clone + Send + 'static> Drop for Poller<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
