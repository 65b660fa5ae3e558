//! How long one try waits for its response head: the pool's `response_timeout`, a
//! route's `per_try_timeout`, and what is left of a route's overall `timeout` (counted
//! from when the request was routed, so connects, uploads and earlier tries use it up),
//! whichever ends first. The same on every HTTP path.
//!
//! The overall `timeout` bounds the whole exchange: the request body's upload and the
//! response body's relay too (`bounded`, `RequestClock::deadline`). A response cut off
//! by it after its head went out ends as a truncated response (the connection closed,
//! or the HTTP/2 stream reset), never as a complete one.
//!
//! When a wait runs out, which limit it was decides the answer: the per-try limit is a
//! failed attempt the retry rule may retry elsewhere (`AttemptFailure::TryTimeout`);
//! the overall limit or the pool's response timeout is a 504 at once.
//!
//! A route without either limit costs nothing here: no clock is read beyond the
//! request's start, which every path takes anyway.

use std::time::{Duration, Instant};

/// A route's `timeout` and `per_try_timeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub overall: Option<Duration>,
    pub per_try: Option<Duration>,
}

/// Which limit bounds a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The pool's `response_timeout`.
    Response,
    /// The route's `per_try_timeout`: the try failed, the request may go elsewhere.
    PerTry,
    /// The route's `timeout`: the request is over.
    Overall,
}

/// The limits of one request, from its start.
#[derive(Debug, Clone, Copy)]
pub struct RequestClock {
    deadline: Option<Instant>,
    per_try: Option<Duration>,
    response: Duration,
}

/// One try's limit, fixed when the try starts.
#[derive(Debug, Clone, Copy)]
pub struct TryClock {
    per_try_deadline: Option<Instant>,
    clock: RequestClock,
}

impl RequestClock {
    /// The limits of a request routed at `started` to a pool with `response` timeout.
    pub fn new(limits: RouteTimeouts, started: Instant, response: Duration) -> Self {
        RequestClock {
            deadline: limits.overall.map(|t| started + t),
            per_try: limits.per_try,
            response,
        }
    }

    /// A try starting now.
    pub fn start_try(&self) -> TryClock {
        TryClock {
            per_try_deadline: self.per_try.map(|t| Instant::now() + t),
            clock: *self,
        }
    }

    /// When the route's overall limit ends the exchange, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the overall limit is already over (no further try may start).
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Runs `work` until `deadline`, if there is one; `None` when the deadline came first.
/// Without a deadline no timer is armed.
pub async fn bounded<F: std::future::Future>(
    deadline: Option<Instant>,
    work: F,
) -> Option<F::Output> {
    match deadline {
        None => Some(work.await),
        Some(at) => tokio::time::timeout_at(at.into(), work).await.ok(),
    }
}

impl TryClock {
    /// When the route's overall limit ends the exchange, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.clock.deadline
    }

    /// How long the wait that starts now may take, and which limit that is. Without
    /// route limits, the pool's response timeout and no clock read.
    pub fn wait(&self) -> (Duration, Expiry) {
        let mut limit = (self.clock.response, Expiry::Response);
        if self.per_try_deadline.is_none() && self.clock.deadline.is_none() {
            return limit;
        }
        let now = Instant::now();
        for (deadline, expiry) in [
            (self.per_try_deadline, Expiry::PerTry),
            (self.clock.deadline, Expiry::Overall),
        ] {
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(now);
                // On a tie the overall limit wins: the request is over either way.
                if left < limit.0 || (left == limit.0 && expiry == Expiry::Overall) {
                    limit = (left, expiry);
                }
            }
        }
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: Duration = Duration::from_secs(30);

    fn clock(overall: Option<u64>, per_try: Option<u64>) -> RequestClock {
        let limits = RouteTimeouts {
            overall: overall.map(Duration::from_millis),
            per_try: per_try.map(Duration::from_millis),
        };
        RequestClock::new(limits, Instant::now(), RESPONSE)
    }

    #[test]
    fn without_route_limits_the_pool_response_timeout_bounds_each_try() {
        let c = clock(None, None);
        assert_eq!(c.start_try().wait(), (RESPONSE, Expiry::Response));
        assert!(!c.expired());
    }

    #[test]
    fn the_per_try_limit_bounds_a_try_when_it_is_the_shortest() {
        let (limit, expiry) = clock(Some(10_000), Some(200)).start_try().wait();
        assert_eq!(expiry, Expiry::PerTry);
        assert!(limit <= Duration::from_millis(200) && limit > Duration::from_millis(100));
    }

    #[test]
    fn what_is_left_of_the_overall_limit_bounds_a_late_try() {
        let c = clock(Some(300), Some(250));
        std::thread::sleep(Duration::from_millis(120));
        let (limit, expiry) = c.start_try().wait();
        assert_eq!(expiry, Expiry::Overall);
        assert!(limit <= Duration::from_millis(180), "{limit:?}");
        std::thread::sleep(Duration::from_millis(200));
        assert!(c.expired());
        assert_eq!(c.start_try().wait(), (Duration::ZERO, Expiry::Overall));
    }

    #[test]
    fn a_response_timeout_shorter_than_the_route_limits_still_applies() {
        let limits = RouteTimeouts {
            overall: Some(Duration::from_secs(60)),
            per_try: Some(Duration::from_secs(40)),
        };
        let c = RequestClock::new(limits, Instant::now(), Duration::from_secs(1));
        assert_eq!(
            c.start_try().wait(),
            (Duration::from_secs(1), Expiry::Response)
        );
    }
}
