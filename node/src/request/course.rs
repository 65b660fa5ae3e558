//! One request's course through its attempts, the same for every HTTP path: the backend
//! it is on, whether it moved off the one first chosen (the affinity cookie is then set
//! again), whether the next attempt needs a fresh connection, and, after a failed
//! attempt, where it goes next by the one retry rule (`retry::Retries`): the backend is
//! ejected locally when the failure is its own, then the same backend or another one
//! (`redispatch`), or the answer when the request must give up.

use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::request::choice::Choice;
use crate::request::conn::ConnInfo;
use crate::request::local::Local;
use crate::request::redispatch::{eject_locally, retry_target};
use crate::request::retry::{AttemptFailure, NextAttempt, Retries};
use crate::request::timeouts::RequestClock;

/// Where one request stands among its attempts, and what it needs to decide the next.
pub(crate) struct Course<'a> {
    dp: &'a DataPlane,
    pool: &'a PoolRuntime,
    choice: &'a Choice,
    conn: &'a ConnInfo,
    clock: &'a RequestClock,
    /// Whether the request may be sent again (idempotent, no body).
    retryable: bool,
    retries: Retries,
    index: usize,
    moved: bool,
    fresh: bool,
}

impl<'a> Course<'a> {
    /// A request about to be tried on the backend `choice` names.
    pub(crate) fn new(
        dp: &'a DataPlane,
        pool: &'a PoolRuntime,
        choice: &'a Choice,
        conn: &'a ConnInfo,
        clock: &'a RequestClock,
        retryable: bool,
    ) -> Course<'a> {
        Course {
            dp,
            pool,
            choice,
            conn,
            clock,
            retryable,
            retries: Retries::default(),
            index: choice.index,
            moved: false,
            fresh: false,
        }
    }

    /// The backend of the current attempt.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether the request left the backend first chosen (a pinned session moved).
    pub(crate) fn moved(&self) -> bool {
        self.moved
    }

    /// Whether attempts go over a new connection (after a retry on the same backend).
    pub(crate) fn fresh(&self) -> bool {
        self.fresh
    }

    /// After a failed attempt on the current backend: `Ok` when there is a next attempt
    /// (the course now names its backend), or the answer when the request gives up: 504
    /// after a try that timed out or when the route's overall timeout is over, 502
    /// otherwise (also when the pool's retry budget is spent, counted in
    /// `fulcrum_retry_budget_exhausted_total`). A next attempt is counted in
    /// `fulcrum_retries_total`.
    pub(crate) async fn after_failure(&mut self, failure: AttemptFailure) -> Result<(), Local> {
        let (dp, pool) = (self.dp, self.pool);
        let backend = &pool.backends[self.index];
        let decision = self.retries.after(failure, self.retryable);
        if decision.eject {
            eject_locally(dp, pool, self.index);
        }
        let give_up = match failure {
            AttemptFailure::TryTimeout => Local::GatewayTimeout,
            _ => Local::BadGateway,
        };
        if decision.next == NextAttempt::GiveUp {
            tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "backend request failed");
            return Err(give_up);
        }
        if self.clock.expired() {
            tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "route timeout over: no further try");
            return Err(Local::GatewayTimeout);
        }
        if let Some(gate) = &pool.retry_budget {
            if !gate.try_retry() {
                dp.metrics.retry_budget_exhausted(&pool.name);
                tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "retry budget spent: not retried");
                return Err(give_up);
            }
        }
        match decision.next {
            NextAttempt::SameBackend | NextAttempt::GiveUp => self.fresh = true,
            NextAttempt::OtherBackend => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "backend request failed; trying another backend");
                let other = retry_target(pool, self.choice, self.conn, self.index).await;
                self.index = other.ok_or(give_up)?;
                self.moved = true;
            }
        }
        dp.metrics.retries.inc();
        Ok(())
    }
}
