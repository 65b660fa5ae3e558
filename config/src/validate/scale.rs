//! Checks of a pool's signal to scale: `capacity` and `scale_hook`.

use super::Report;
use crate::model::Pool;
use crate::span::Seg::{I, K};

pub(super) fn check(i: usize, pool: &Pool, r: &mut Report<'_>) {
    if pool.capacity == Some(0) {
        r.error(
            &[K("pool"), I(i), K("capacity")],
            "capacity must be at least 1",
        );
    }
    let Some(hook) = &pool.scale_hook else {
        return;
    };
    let at = |key| [K("pool"), I(i), K("scale_hook"), K(key)];
    if pool.capacity.is_none() && pool.max_requests.is_none() {
        r.error(
            &[K("pool"), I(i), K("scale_hook")],
            "scale_hook needs `capacity` (or `max_requests`) on the pool to measure saturation against",
        );
    }
    if let Err(why) = hook.target() {
        r.error(&at("url"), why);
    }
    for (key, v) in [("above", hook.above), ("below", hook.below)] {
        if !(v.is_finite() && v >= 0.0) {
            r.error(&at(key), format!("{key} must be a number >= 0, got {v}"));
        }
    }
    if hook.below >= hook.above {
        r.error(&at("below"), "below must be less than above");
    }
    r.positive(&at("for"), "for", hook.hold);
    r.positive(&at("timeout"), "timeout", hook.timeout);
}
