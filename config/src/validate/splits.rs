//! Checks of a route's target: exactly one of `pool` and `split`; a split names at least
//! two distinct pools that exist, with weights in range and not all zero; a split route
//! has a name (for `ctl shift`), and route names are unique.

use super::Report;
use crate::model::{Config, Route};
use crate::span::Seg::{I, K};
use crate::split::MAX_SPLIT_WEIGHT;
use std::collections::{HashMap, HashSet};

pub(super) fn check(config: &Config, r: &mut Report<'_>) {
    let pools: HashSet<&str> = config.pool.iter().map(|p| p.name.as_str()).collect();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, route) in config.route.iter().enumerate() {
        if let Some(name) = &route.name {
            r.name(&[K("route"), I(i), K("name")], "route", name);
            if let Some(first) = names.insert(name, i) {
                r.error(
                    &[K("route"), I(i), K("name")],
                    format!(
                        "duplicate route name `{name}` (route #{} has it)",
                        first + 1
                    ),
                );
            }
        }
        check_target(i, route, &pools, r);
    }
}

fn check_target(i: usize, route: &Route, pools: &HashSet<&str>, r: &mut Report<'_>) {
    match (&route.pool, route.split.is_empty()) {
        (None, true) => r.error(
            &[K("route"), I(i)],
            "route needs `pool` or `split` (where its requests go)",
        ),
        (Some(_), false) => r.error(
            &[K("route"), I(i), K("split")],
            "route sets both `pool` and `split`: set one of them",
        ),
        (Some(pool), true) => {
            if !pools.contains(pool.as_str()) {
                r.error(
                    &[K("route"), I(i), K("pool")],
                    format!("route names pool `{pool}`, which does not exist"),
                );
            }
        }
        (None, false) => check_split(i, route, pools, r),
    }
}

fn check_split(i: usize, route: &Route, pools: &HashSet<&str>, r: &mut Report<'_>) {
    let at = [K("route"), I(i), K("split")];
    if route.name.is_none() {
        r.error(
            &at,
            "a route with `split` needs a `name` (ctl shift and /status address it by name)",
        );
    }
    if route.split.len() < 2 {
        r.error(&at, "a split needs at least two pools; use `pool` for one");
    }
    let mut seen = HashSet::new();
    for (j, entry) in route.split.iter().enumerate() {
        let entry_at = |key| [K("route"), I(i), K("split"), I(j), K(key)];
        if !pools.contains(entry.pool.as_str()) {
            r.error(
                &entry_at("pool"),
                format!("split names pool `{}`, which does not exist", entry.pool),
            );
        } else if !seen.insert(entry.pool.as_str()) {
            r.error(
                &entry_at("pool"),
                format!("pool `{}` appears twice in this split", entry.pool),
            );
        }
        if entry.weight > MAX_SPLIT_WEIGHT {
            r.error(
                &entry_at("weight"),
                format!(
                    "split weight must be 0..={MAX_SPLIT_WEIGHT}, got {}",
                    entry.weight
                ),
            );
        }
    }
    if route.split.iter().all(|e| e.weight == 0) {
        r.error(
            &at,
            "the split's weights add up to 0: at least one pool needs a weight above 0",
        );
    }
}
