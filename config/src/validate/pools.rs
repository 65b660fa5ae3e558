//! Checks of `[[pool]]` entries: names, backends, hashing and session affinity.

use super::health;
use super::Report;
use crate::hash_key::{is_token, HashKey};
use crate::model::{AffinityMode, Algorithm, Config, Pool, Protocol};
use crate::net::parse_socket_addr;
use crate::span::Seg::{I, K};
use crate::traffic::MAX_BUDGET_WINDOW_SECS;
use std::collections::{HashMap, HashSet};

/// Allowed backend weights; the upper bound keeps weighted schedules small.
pub(crate) const WEIGHT_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

pub(super) fn check(config: &Config, r: &mut Report<'_>) {
    let has_redis = config
        .session
        .as_ref()
        .is_some_and(|s| s.redis.is_some() || !s.sentinels.is_empty());
    let has_secret = config
        .session
        .as_ref()
        .is_some_and(|s| s.cookie_secret.is_some());
    let tcp_users = tcp_users(config);
    let http_users: HashSet<&str> = config.route.iter().flat_map(|r| r.pools()).collect();
    let mut names = HashSet::new();
    for (i, pool) in config.pool.iter().enumerate() {
        r.name(&[K("pool"), I(i), K("name")], "pool", &pool.name);
        if !names.insert(pool.name.as_str()) {
            r.error(
                &[K("pool"), I(i), K("name")],
                format!("duplicate pool name `{}`", pool.name),
            );
        }
        check_backends(i, pool, r);
        check_hash_key(i, pool, r);
        check_affinity(i, pool, has_redis, has_secret, r);
        if let Some(listener) = tcp_users.get(pool.name.as_str()) {
            check_l4_only(i, pool, listener, r);
        }
        if let Some(h) = &pool.health {
            health::check(i, h, r);
        }
        if pool.send_proxy.is_some() && http_users.contains(pool.name.as_str()) {
            // HTTP pools reuse upstream connections across clients, so a per-connection
            // PROXY header cannot name the right client.
            r.error(
                &[K("pool"), I(i), K("send_proxy")],
                format!(
                    "pool `{}` is used by [[route]]s: send_proxy is only supported for pools behind tcp listeners",
                    pool.name
                ),
            );
        }
        check_upstream(i, pool, r);
        super::scale::check(i, pool, r);
        super::discover::check(i, pool, r);
    }
}

/// Pool name -> the first tcp listener that uses it.
fn tcp_users(config: &Config) -> HashMap<&str, &str> {
    let mut users = HashMap::new();
    for l in config
        .listener
        .iter()
        .filter(|l| l.protocol == Protocol::Tcp)
    {
        if let Some(pool) = &l.pool {
            users.entry(pool.as_str()).or_insert(l.name.as_str());
        }
    }
    users
}

fn check_backends(i: usize, pool: &Pool, r: &mut Report<'_>) {
    if pool.backends.is_empty() && pool.discover.is_none() {
        r.error(
            &[K("pool"), I(i), K("backends")],
            format!("pool `{}` has no backends (and no `discover`)", pool.name),
        );
    }
    let mut seen = HashSet::new();
    for (j, b) in pool.backends.iter().enumerate() {
        let at = |key| [K("pool"), I(i), K("backends"), I(j), K(key)];
        match parse_socket_addr(&b.addr) {
            Err(e) => r.error(&at("addr"), format!("backend addr: {e}")),
            Ok(a) if a.port() == 0 => r.error(&at("addr"), format!("backend {a} needs a port")),
            Ok(a) if !seen.insert(a) => r.error(
                &at("addr"),
                format!("backend {a} is listed twice in pool `{}`", pool.name),
            ),
            Ok(_) => {}
        }
        if !WEIGHT_RANGE.contains(&b.weight) {
            r.error(
                &at("weight"),
                format!(
                    "weight {} is out of range {}..={}",
                    b.weight,
                    WEIGHT_RANGE.start(),
                    WEIGHT_RANGE.end()
                ),
            );
        }
    }
}

fn check_hash_key(i: usize, pool: &Pool, r: &mut Report<'_>) {
    match &pool.hash_key {
        Some(key) => {
            if let Err(e) = HashKey::parse(key) {
                r.error(&[K("pool"), I(i), K("hash_key")], e);
            }
        }
        None if pool.algorithm == Algorithm::ConsistentHash => r.error(
            &[K("pool"), I(i), K("algorithm")],
            format!(
                "pool `{}` uses consistent-hash but has no `hash_key` (source-ip, path, header:NAME or cookie:NAME)",
                pool.name
            ),
        ),
        None => {}
    }
}

fn check_affinity(i: usize, pool: &Pool, has_redis: bool, has_secret: bool, r: &mut Report<'_>) {
    let a = &pool.affinity;
    let at = |key| [K("pool"), I(i), K("affinity"), K(key)];
    let mode = a.mode.as_str();
    match a.mode {
        AffinityMode::Cookie if !has_secret => r.error(
            &at("mode"),
            "affinity mode `cookie` needs `[session].cookie_secret` (at least 16 bytes, the same on every node)",
        ),
        AffinityMode::Learn if a.cookie.is_none() => r.error(
            &at("mode"),
            "affinity mode `learn` needs `cookie` (the application's session cookie name)",
        ),
        AffinityMode::Header if a.header.is_none() => {
            r.error(&at("mode"), "affinity mode `header` needs `header` (the header to pin by)")
        }
        _ => {}
    }
    let stateful = matches!(
        a.mode,
        AffinityMode::Learn | AffinityMode::Header | AffinityMode::SourceIp
    );
    if stateful && !has_redis {
        r.error(
            &at("mode"),
            format!(
                "affinity mode `{mode}` keeps pins in Redis: set `[session].redis` or `sentinels`"
            ),
        );
    }
    if let Some(c) = a.cookie.as_deref().filter(|c| !is_token(c)) {
        r.error(&at("cookie"), format!("`{c}` is not a valid cookie name"));
    }
    if let Some(h) = a.header.as_deref().filter(|h| !is_token(h)) {
        r.error(&at("header"), format!("`{h}` is not a valid header name"));
    }
}

/// A pool behind a tcp listener sees bytes, not requests: no cookies, headers or paths.
fn check_l4_only(i: usize, pool: &Pool, listener: &str, r: &mut Report<'_>) {
    let mode = pool.affinity.mode;
    if matches!(
        mode,
        AffinityMode::Cookie | AffinityMode::Learn | AffinityMode::Header
    ) {
        r.error(
            &[K("pool"), I(i), K("affinity"), K("mode")],
            format!(
                "pool `{}` serves tcp listener `{listener}`, where affinity mode `{}` cannot work; use `source-ip` or `none`",
                pool.name,
                mode.as_str()
            ),
        );
    }
    if pool.hash_key().is_some_and(|k| k.needs_http()) {
        r.error(
            &[K("pool"), I(i), K("hash_key")],
            format!(
                "pool `{}` serves tcp listener `{listener}`, which can only hash on `source-ip`",
                pool.name
            ),
        );
    }
}

fn check_upstream(i: usize, pool: &Pool, r: &mut Report<'_>) {
    let at = |key| [K("pool"), I(i), K(key)];
    r.positive(
        &at("connect_timeout"),
        "connect_timeout",
        pool.connect_timeout,
    );
    r.positive(
        &at("response_timeout"),
        "response_timeout",
        pool.response_timeout,
    );
    r.positive(
        &at("upstream_idle_timeout"),
        "upstream_idle_timeout",
        pool.upstream_idle_timeout,
    );
    for (key, cap) in [
        ("max_requests", pool.max_requests),
        ("max_pending", pool.max_pending),
    ] {
        if cap == Some(0) {
            r.error(&at(key), format!("{key} must be at least 1"));
        }
    }
    if let Some(window) = pool.slow_start {
        r.positive(&at("slow_start"), "slow_start", window);
    }
    if let Some(outlier) = &pool.outlier {
        let at = |key| [K("pool"), I(i), K("outlier"), K(key)];
        r.positive(&at("base_ejection"), "base_ejection", outlier.base_ejection);
        if outlier.max_ejection < outlier.base_ejection {
            r.error(
                &at("max_ejection"),
                "max_ejection must be at least base_ejection",
            );
        }
        if !(1..=100).contains(&outlier.max_ejection_percent) {
            r.error(
                &at("max_ejection_percent"),
                "max_ejection_percent must be from 1 to 100",
            );
        }
    }
    if let Some(budget) = &pool.retry_budget {
        let at = |key| [K("pool"), I(i), K("retry_budget"), K(key)];
        if !(budget.percent.is_finite() && (0.0..=100.0).contains(&budget.percent)) {
            r.error(
                &at("percent"),
                format!("percent must be between 0 and 100, got {}", budget.percent),
            );
        }
        let secs = budget.window.as_secs();
        if budget.window.subsec_nanos() != 0 || !(1..=MAX_BUDGET_WINDOW_SECS).contains(&secs) {
            r.error(
                &at("window"),
                format!("window must be whole seconds from 1s to {MAX_BUDGET_WINDOW_SECS}s"),
            );
        }
    }
    if let Some(tls) = &pool.tls {
        if tls.cert.is_some() != tls.key.is_some() {
            r.error(
                &at("tls"),
                "backend tls needs both `cert` and `key` for a client certificate, or neither",
            );
        }
    }
}
