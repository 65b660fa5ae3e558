//! After a failed attempt: take the backend out of this node's picks (passive health) and
//! find another one for the request, moving a Redis-pinned session with it so that every
//! node follows.

use crate::affinity::shared;
use crate::balance::PickContext;
use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::request::choice::Choice;
use crate::request::conn::ConnInfo;
use crate::request::retry::{AttemptFailure, NextAttempt, Retries};

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
/// `None` when the request must give up with a 502.
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
) -> Option<Retry> {
    let backend = &pool.backends[index];
    let decision = retries.after(failure, retryable);
    if decision.eject {
        eject_locally(dp, pool, index);
    }
    let next = match decision.next {
        NextAttempt::GiveUp => {
            tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "backend request failed");
            return None;
        }
        NextAttempt::SameBackend => Retry::SameBackend,
        NextAttempt::OtherBackend => {
            tracing::warn!(pool = %pool.name, backend = %backend.id, ?failure, "backend request failed; trying another backend");
            Retry::Other(retry_target(pool, choice, conn, index).await?)
        }
    };
    dp.metrics.retries.inc();
    Some(next)
}

/// Ejects a backend from new picks on this node after a failed connection.
pub(crate) fn eject_locally(dp: &DataPlane, pool: &PoolRuntime, index: usize) {
    let backend = &pool.backends[index];
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
