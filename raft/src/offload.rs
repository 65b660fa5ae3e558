//! Heavy per-frame work (coding, sealing and checking a multi-MiB frame) off the control
//! runtime's workers.
//!
//! The control runtime has two workers, and the lease lives on them: a leader that is late
//! to send a ping or read an acknowledgement by more than `lease - heartbeat` (15 ms) lets its
//! lease lapse and shuts its own fence. Catching a follower up on large configs once held a
//! worker long enough for that (chaos `large-configs`). Frames above `OFFLOAD_AT` are
//! therefore coded and sealed on tokio's blocking pool; small ones (every lease ping, vote
//! and empty AppendEntries) stay inline, where a thread hop would cost more than the work.

use crate::frame::FrameError;

/// Frames at least this large are worked on the blocking pool.
pub const OFFLOAD_AT: usize = 64 * 1024;

/// Runs `work` inline when `len` is small, else on the blocking pool.
pub async fn cpu<T: Send + 'static>(
    len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FrameError> {
    if len < OFFLOAD_AT {
        return Ok(work());
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(FrameError::Io(std::io::Error::other(
            "runtime shutting down",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn large_work_leaves_the_worker_free() {
        let worker = std::thread::current().id();
        let small = cpu(10, move || std::thread::current().id()).await.unwrap();
        assert_eq!(small, worker, "small work runs inline");
        let large = cpu(OFFLOAD_AT, move || std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(large, worker, "large work runs on the blocking pool");
    }
}
