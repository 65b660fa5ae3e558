//! Checks of `[[route]]` entries: the listener exists (pools: `splits.rs`), matchers are well formed,
//! rate limits are sane, and no two routes of a listener match exactly the same requests.

use super::Report;
use crate::hash_key::{is_token, HashKey};
use crate::model::{Config, Protocol, Route};
use crate::span::Seg::{I, K};
use std::collections::{BTreeMap, HashMap};

/// What a route matches on; two routes with equal keys on one listener are ambiguous.
type MatchKey = (String, Option<String>, String, BTreeMap<String, String>);

pub(super) fn check(config: &Config, r: &mut Report<'_>) {
    let listeners: HashMap<&str, Protocol> = config
        .listener
        .iter()
        .map(|l| (l.name.as_str(), l.protocol))
        .collect();
    let mut seen: HashMap<MatchKey, usize> = HashMap::new();
    let redis =
        (config.session.as_ref()).is_some_and(|s| s.redis.is_some() || !s.sentinels.is_empty());
    for (i, route) in config.route.iter().enumerate() {
        check_refs(i, route, &listeners, r);
        check_matchers(i, route, r);
        check_rate_limit(i, route, redis, r);
        check_timeouts(i, route, r);
        if let Some(first) = seen.insert(match_key(route), i) {
            r.error(
                &[K("route"), I(i)],
                format!(
                    "route matches the same requests as route #{} on listener `{}` (same host, path_prefix and headers)",
                    first + 1,
                    route.listener
                ),
            );
        }
    }
}

fn check_refs(i: usize, route: &Route, listeners: &HashMap<&str, Protocol>, r: &mut Report<'_>) {
    let at = |key| [K("route"), I(i), K(key)];
    match listeners.get(route.listener.as_str()) {
        None => r.error(
            &at("listener"),
            format!(
                "route names listener `{}`, which does not exist",
                route.listener
            ),
        ),
        Some(Protocol::Tcp) => r.error(
            &at("listener"),
            format!(
                "listener `{}` is tcp and cannot have routes; set `pool` on the listener instead",
                route.listener
            ),
        ),
        Some(_) => {}
    }
}

/// Most requests per second a limit may name (above it a limit is no limit).
const MAX_RATE: f64 = 1_000_000.0;

fn check_rate_limit(i: usize, route: &Route, redis: bool, r: &mut Report<'_>) {
    let Some(limit) = &route.rate_limit else {
        return;
    };
    let at = |key| [K("route"), I(i), K("rate_limit"), K(key)];
    let rate = limit.requests_per_second;
    if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
        r.error(
            &at("requests_per_second"),
            format!("requests_per_second must be above 0 and at most {MAX_RATE}, got {rate}"),
        );
    }
    if limit.burst == Some(0) {
        r.error(&at("burst"), "burst must be at least 1");
    }
    if let Err(e) = HashKey::parse(&limit.key) {
        r.error(&at("key"), format!("rate_limit {e}"));
    }
    if limit.scope == crate::traffic::RateScope::Cluster && !redis {
        r.error(
            &at("scope"),
            "scope = \"cluster\" counts in Redis: it needs `[session] redis` (or sentinels)",
        );
    }
}

fn check_timeouts(i: usize, route: &Route, r: &mut Report<'_>) {
    let at = |key| [K("route"), I(i), K(key)];
    if let Some(t) = route.timeout {
        r.positive(&at("timeout"), "timeout", t);
    }
    if let Some(t) = route.per_try_timeout {
        r.positive(&at("per_try_timeout"), "per_try_timeout", t);
        if route.timeout.is_some_and(|overall| t > overall) {
            r.error(
                &at("per_try_timeout"),
                "per_try_timeout must not exceed the route's timeout",
            );
        }
    }
}

fn check_matchers(i: usize, route: &Route, r: &mut Report<'_>) {
    let at = |key| [K("route"), I(i), K(key)];
    if let Some(host) = &route.host {
        if let Err(e) = check_host(host) {
            r.error(&at("host"), e);
        }
    }
    if let Some(prefix) = &route.path_prefix {
        if !prefix.starts_with('/') {
            r.error(
                &at("path_prefix"),
                format!("path_prefix `{prefix}` must start with '/'"),
            );
        }
    }
    for (j, token) in route.upgrades.iter().enumerate() {
        let at = [K("route"), I(i), K("upgrades"), I(j)];
        if token.eq_ignore_ascii_case("h2c") {
            r.error(
                &at,
                "`h2c` is never tunnelled: the h2c upgrade is deprecated (RFC 9113 §3.1) and would carry requests past routing; clients can speak h2c with prior knowledge instead",
            );
        } else if !is_protocol(token) {
            r.error(
                &at,
                format!("`{token}` is not a valid upgrade protocol name"),
            );
        }
    }
    for name in route.headers.keys() {
        if !is_token(name) {
            r.error(
                &[K("route"), I(i), K("headers"), K(name)],
                format!("`{name}` is not a valid header name"),
            );
        }
    }
}

/// A host is a name (letters, digits, `-`, `.`), optionally starting with `*.`.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host must not be empty; leave it out to match every host".into());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok {
        return Err(format!(
            "host `{host}` must be a DNS name, optionally starting with `*.` (no port, no spaces)"
        ));
    }
    Ok(())
}

/// `protocol-name ["/" protocol-version]` (RFC 9110 §7.8).
fn is_protocol(text: &str) -> bool {
    match text.split_once('/') {
        Some((name, version)) => is_token(name) && is_token(version),
        None => is_token(text),
    }
}

fn match_key(route: &Route) -> MatchKey {
    let headers = route
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    (
        route.listener.clone(),
        route.host.as_ref().map(|h| h.to_ascii_lowercase()),
        // No prefix matches every path, exactly like "/".
        route.path_prefix.clone().unwrap_or_else(|| "/".to_string()),
        headers,
    )
}
