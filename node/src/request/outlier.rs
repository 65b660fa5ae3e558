//! Outlier detection (`pool.outlier`): a backend whose requests keep failing — N
//! consecutive 5xx responses, or N consecutive gateway errors (a 502, 503 or 504 answer,
//! or a try that timed out) — is ejected from this node's picks, through the same local
//! ejection that connect failures use (`BackendState::eject_for`, the
//! `fulcrum_backend_ejections_total` counter, the pool's panic mode when everything is
//! ejected). Each ejection lasts `base_ejection` times the backend's recent ejections (a
//! count that drops by one per `base_ejection` the backend stays back), at most
//! `max_ejection`; and no more than `max_ejection_percent` of the pool's backends (at
//! least one) are ejected at once, so a pool-wide problem cannot empty the pool. The cap
//! holds for the ejections after connect failures too (`may_eject`), in a pool with `outlier`.
//!
//! A pool without `outlier` has no policy: one `Option` test per finished request.

use crate::metrics::BackendLabels;
use crate::pool::PoolRuntime;
use crate::request::outlier_state::{streak, OutlierPolicy};
use std::sync::atomic::Ordering::Relaxed;

/// A response with `status` came from backend `index` of `pool`.
pub(crate) fn observe_status(pool: &PoolRuntime, index: usize, status: u16) {
    let Some(policy) = &pool.outlier else {
        return;
    };
    let Some(backend) = pool.backends.get(index) else {
        return;
    };
    let c = &backend.state.outlier;
    let five = streak(&c.five_xx, (500..600).contains(&status));
    let gateway = streak(&c.gateway, matches!(status, 502..=504));
    if policy.five_xx > 0 && five >= policy.five_xx {
        eject(policy, pool, index, "consecutive 5xx");
    } else if policy.gateway > 0 && gateway >= policy.gateway {
        eject(policy, pool, index, "consecutive gateway errors");
    }
}

/// A try on backend `index` of `pool` timed out (a gateway error without a status).
pub(crate) fn observe_timeout(pool: &PoolRuntime, index: usize) {
    let Some(policy) = &pool.outlier else {
        return;
    };
    let Some(backend) = pool.backends.get(index) else {
        return;
    };
    let gateway = streak(&backend.state.outlier.gateway, true);
    if policy.gateway > 0 && gateway >= policy.gateway {
        eject(policy, pool, index, "consecutive gateway errors");
    }
}

/// The backends ejected now, when they are already `max_ejection_percent` of the pool
/// (at least one): no other may be ejected.
fn at_cap(policy: &OutlierPolicy, pool: &PoolRuntime) -> Option<u64> {
    let n = pool.backends.len() as u64;
    let allowed = (n * u64::from(policy.max_percent) / 100).max(1);
    let ejected = pool.backends.iter().filter(|b| b.state.ejected()).count() as u64;
    (ejected >= allowed).then_some(ejected)
}

/// Whether a connect failure may eject backend `index`: always, unless the pool has
/// `outlier` and its `max_ejection_percent` is reached by others.
pub(crate) fn may_eject(pool: &PoolRuntime, index: usize) -> bool {
    let Some(policy) = &pool.outlier else {
        return true;
    };
    let already = pool.backends.get(index).is_some_and(|b| b.state.ejected());
    already || at_cap(policy, pool).is_none()
}

fn eject(policy: &OutlierPolicy, pool: &PoolRuntime, index: usize, why: &'static str) {
    let backend = &pool.backends[index];
    let state = &backend.state;
    let c = &state.outlier;
    c.five_xx.store(0, Relaxed);
    c.gateway.store(0, Relaxed);
    if state.ejected() {
        return;
    }
    if let Some(ejected) = at_cap(policy, pool) {
        tracing::warn!(pool = %pool.name, backend = %backend.id, why, ejected, "outlier not ejected: max_ejection_percent reached");
        return;
    }
    let now = state.now_ms();
    let base_ms = (policy.base.as_millis() as u64).max(1);
    let decayed = now.saturating_sub(c.back_ms.load(Relaxed)) / base_ms;
    let times = (u64::from(c.times.load(Relaxed)).saturating_sub(decayed) + 1).min(1000);
    c.times.store(times as u32, Relaxed);
    let duration = policy.base.saturating_mul(times as u32).min(policy.max);
    let until = state.eject_for(duration);
    c.back_ms.store(until, Relaxed);
    policy
        .ejections
        .get_or_create(&BackendLabels {
            pool: pool.name.clone(),
            backend: backend.id.clone(),
        })
        .inc();
    tracing::info!(pool = %pool.name, backend = %backend.id, why, times, ?duration, "outlier ejected locally");
}
