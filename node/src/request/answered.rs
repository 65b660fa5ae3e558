//! A backend answered with a final response head: what the codecs that relay the response
//! themselves (`h1`, `http2`) record then, written once.

use crate::affinity::shared;
use crate::balance;
use crate::pool::PoolRuntime;
use crate::request::finish::Pending;
use crate::request::lookup::HeaderLookup;
use fulcrum_config::AffinityMode;

/// Backend `index` answered with `status` and `headers`: it counts as a success; in learn
/// mode the sessions its answer starts are pinned to it; its status and latency go into
/// its metrics (and its latency into the balancer, when the pool weighs by it); `done`
/// takes the status for the access log. Returns whether the answer must carry the
/// affinity cookie (`set_cookie` already, or a learned session was pinned).
pub(crate) async fn answered(
    pool: &PoolRuntime,
    index: usize,
    headers: &impl HeaderLookup,
    status: u16,
    done: &mut Pending,
    set_cookie: bool,
) -> bool {
    let backend = &pool.backends[index];
    backend.state.note_success();
    let mut set_cookie = set_cookie;
    if pool.affinity_mode == AffinityMode::Learn {
        if let Some(store) = &pool.sessions {
            let learned = shared::learned_sessions(pool, headers);
            set_cookie |= shared::pin_learned(store, pool, index, learned).await;
        }
    }
    backend.metrics.record_status(status);
    let latency = done.started().elapsed();
    backend.metrics.duration.observe(latency.as_secs_f64());
    if pool.latency_aware {
        balance::observe_latency(&backend.state.load, latency);
    }
    done.set_status(status);
    set_cookie
}
