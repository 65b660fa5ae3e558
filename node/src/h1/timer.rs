//! The response timeout of a client connection: one timer, re-armed per request.
//!
//! `tokio::time::timeout` files a timer entry in the runtime's wheel for every request
//! and takes it out again when the response arrives. A `Sleep` that lives as long as
//! the connection and is moved to a later deadline costs an atomic update instead:
//! tokio leaves the entry where it is and, should the old deadline come first, files it
//! again for the new one. Deadlines only grow while one pool's timeout is used, so
//! re-filing is rare.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A reusable deadline for waiting on a backend.
pub(super) struct ResponseTimer {
    sleep: Pin<Box<Sleep>>,
}

impl ResponseTimer {
    pub(super) fn new() -> Self {
        ResponseTimer {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// Runs `work` for at most `limit`; `None` when the time ran out first.
    pub(super) async fn within<F: Future>(
        &mut self,
        limit: Duration,
        work: F,
    ) -> Option<F::Output> {
        self.sleep.as_mut().reset(Instant::now() + limit);
        tokio::select! {
            biased;
            done = work => Some(done),
            _ = self.sleep.as_mut() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rearmed_timer_bounds_each_wait_anew() {
        let mut timer = ResponseTimer::new();
        let quick = timer.within(Duration::from_secs(1), async { 7 }).await;
        assert_eq!(quick, Some(7));
        let slow = timer
            .within(
                Duration::from_secs(1),
                tokio::time::sleep(Duration::from_secs(5)),
            )
            .await;
        assert_eq!(slow, None);
        // The deadline moved on: a wait just under the limit completes.
        let again = timer
            .within(
                Duration::from_secs(2),
                tokio::time::sleep(Duration::from_millis(1900)),
            )
            .await;
        assert_eq!(again, Some(()));
    }
}
