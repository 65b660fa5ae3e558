//! What a failed attempt may lead to (`request::course` decides when): the backend taken
//! out of this node's picks (passive health), and another one found for the request,
//! moving a Redis-pinned session with it so that every node follows.

use crate::affinity::shared;
use crate::balance::PickContext;
use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::request::choice::Choice;
use crate::request::conn::ConnInfo;

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
