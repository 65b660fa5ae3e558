//! Which pool a routed request goes to: the route's pool, or for a split route a pool
//! drawn by the weights it runs (`split::SplitWeights`), where a session pinned in one
//! of the split's pools stays, whatever the draw, until its backend leaves (dead,
//! drained in the shared modes, gone from the pool). A drawn pool without a backend that
//! may take a new request gives way to the next pool of the split with a weight.
//!
//! The pin check costs nothing for pools without affinity, a cookie check in `cookie`
//! mode, and in the shared modes one store lookup per pool until a pin is found (the
//! local cache first; a new session asks Redis once per pool of the split).

use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::request::choice::ChoiceKeys;
use crate::request::conn::ConnInfo;
use crate::request::lookup::HeaderLookup;
use crate::router::{CompiledRoute, RouteTarget};
use crate::snapshot::Snapshot;
use std::sync::Arc;

/// The pools a request may go to, the drawn one first, with what backend choice reads
/// from the request for each; read before anything is awaited.
pub(crate) struct Candidates {
    /// (pool, its keys, its weight now).
    pools: Vec<(Arc<PoolRuntime>, ChoiceKeys, u32)>,
}

/// Reads the candidates of `route` for a request (no waiting).
pub(crate) fn candidates(
    dp: &DataPlane,
    snapshot: &Snapshot,
    route: &CompiledRoute,
    conn: &ConnInfo,
    headers: &impl HeaderLookup,
    path: &[u8],
) -> Candidates {
    let keyed = |name: &str, weight: u32| {
        let pool = snapshot.pools.get(name)?.clone();
        let keys = ChoiceKeys::read(&pool, conn, headers, path);
        Some((pool, keys, weight))
    };
    let pools = match &route.target {
        RouteTarget::Pool(name) => keyed(name, 1).into_iter().collect(),
        RouteTarget::Split(split) => {
            let weights = dp.splits.current(split);
            let drawn = crate::split::draw(&weights, crate::split::roll).unwrap_or(0);
            let order = std::iter::once(drawn).chain((0..weights.len()).filter(|&i| i != drawn));
            order
                .filter_map(|i| keyed(&split.pools[i], weights[i]))
                .collect()
        }
    };
    Candidates { pools }
}

impl Candidates {
    /// The pool the request goes to and its keys; `None` when the route leads nowhere.
    pub(crate) async fn settle(mut self) -> Option<(Arc<PoolRuntime>, ChoiceKeys)> {
        if self.pools.len() > 1 {
            for i in 0..self.pools.len() {
                let (pool, keys, _) = &self.pools[i];
                if keys.pinned(pool).await {
                    let (pool, keys, _) = self.pools.swap_remove(i);
                    return Some((pool, keys));
                }
            }
        }
        let open = |(pool, _, weight): &(Arc<PoolRuntime>, ChoiceKeys, u32)| {
            *weight > 0 && pool.backends.iter().any(|b| b.state.eligible())
        };
        let at = self.pools.iter().position(open).unwrap_or(0);
        if at >= self.pools.len() {
            return None;
        }
        let (pool, keys, _) = self.pools.swap_remove(at);
        Some((pool, keys))
    }
}
