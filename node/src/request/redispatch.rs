//! After a failed attempt: take the backend out of this node's picks (passive health) and
//! find another one for the request, moving a Redis-pinned session with it so that every
//! node follows — within the pool's retry budget (`request::budget`) and the route's
//! overall timeout (`request::timeouts`).

use crate::affinity::shared;
use crate::balance::PickContext;
use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::request::choice::Choice;
use crate::request::conn::ConnInfo;
use crate::request::local::Local;
use crate::request::retry::{AttemptFailure, NextAttempt, Retries};
use crate::request::timeouts::RequestClock;

/// Where a request goes after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Once more on the same backend, over a fresh connection.
    SameBackend,
    /// To this other backend (a pinned session moved with it).
    Other(usize),
}

/// After a failed attempt on backend `index`, by the one retry rule
/// (`Retries::after`) all HTTP paths share: the backend is ejected locally when the
/// failure is its own; then the next attempt (counted in `fulcrum_retries_total`), or
/// the answer when the request must give up: 504 after a try that timed out or when
/// the route's overall timeout is over, 502 otherwise (also when the pool's retry
/// budget is spent, counted in `fulcrum_retry_budget_exhausted_total`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn after_failure(
    dp: &DataPlane,
    pool: &PoolRuntime,
    choice: &Choice,
    conn: &ConnInfo,
    retries: &mut Retries,
    index: usize,
    failure: AttemptFailure,
    retryable: bool,
    clock: &RequestClock,
) -> Result<Retry, Local> {
    let backend = &pool.backends[index];
    let decision = retries.after(failure, retryable);
    if decision.eject {
        eject_locally(dp, pool, index);
    }
    let give_up = match failure {
        AttemptFailure::TryTimeout => Local::GatewayTimeout,
        _ => Local::BadGateway,
    };
    if decision.next == NextAttempt::GiveUp {
        tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "backend request failed");
        return Err(give_up);
    }
    if clock.expired() {
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
    let next = match decision.next {
        NextAttempt::SameBackend | NextAttempt::GiveUp => Retry::SameBackend,
        NextAttempt::OtherBackend => {
            tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "backend request failed; trying another backend");
            let other = retry_target(pool, choice, conn, index).await;
            Retry::Other(other.ok_or(give_up)?)
        }
    };
    dp.metrics.retries.inc();
    Ok(next)
}

/// Ejects a backend from new picks on this node after a failed connection.
/// With `outlier`, not beyond its `max_ejection_percent` of the pool.
pub(crate) fn eject_locally(dp: &DataPlane, pool: &PoolRuntime, index: usize) {
    let backend = &pool.backends[index];
    if !super::outlier::may_eject(pool, index) {
        tracing::warn!(pool = %pool.name, backend = %backend.id, "backend not ejected after connect failure: max_ejection_percent reached");
        return;
    }
    let backoff = backend.state.note_failure();
    dp.metrics
        .backend_ejections
        .get_or_create(&crate::metrics::BackendLabels {
            pool: pool.name.clone(),
            backend: backend.id.clone(),
        })
        .inc();
    tracing::info!(pool = %pool.name, backend = %backend.id, ?backoff, "backend ejected locally after connect failure");
}

/// Another backend for a request whose connection failed; a Redis-pinned session is
/// moved off the failed backend once, so every node follows.
pub(crate) async fn retry_target(
    pool: &PoolRuntime,
    choice: &Choice,
    conn: &ConnInfo,
    failed: usize,
) -> Option<usize> {
    let ctx = PickContext {
        hash_key: None,
        client_ip: Some(conn.client.ip()),
    };
    let pick = || pool.pick(&ctx, Some(failed));
    match (choice.session.as_deref(), &pool.sessions) {
        (Some(key), Some(store)) => {
            shared::repin(store, pool, key, &pool.backends[failed].id, pick).await
        }
        _ => pick(),
    }
    .filter(|&i| i != failed)
}
