//! The response timeout of a client connection: one timer, re-armed per request.
//!
//! `tokio::time::timeout` files a timer entry in the runtime's wheel for every request
//! and takes it out again when the response arrives. A `Sleep` that lives as long as
//! the connection and is moved to a later deadline costs an atomic update instead:
//! tokio leaves the entry where it is and, should the old deadline come first, files it
//! again for the new one. Deadlines only grow while one pool's timeout is used, so
//! re-filing is rare.
//!
//! The timer is part of a request's lent working set (`spare`), not of the connection:
//! an idle connection holds none. It is made on first use; a timer back on a free list
//! may still sit in the wheel with its last deadline (firing then wakes nobody useful).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A reusable deadline for waiting on a backend (none until first used).
#[derive(Default)]
pub(super) struct ResponseTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ResponseTimer {
    /// Runs `work` for at most `limit`; `None` when the time ran out first.
    pub(super) async fn within<F: Future>(
        &mut self,
        limit: Duration,
        work: F,
    ) -> Option<F::Output> {
        let deadline = Instant::now() + limit;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        tokio::select! {
            biased;
            done = work => Some(done),
            _ = sleep.as_mut() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rearmed_timer_bounds_each_wait_anew() {
        let mut timer = ResponseTimer::default();
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
