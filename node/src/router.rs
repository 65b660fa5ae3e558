//! Route matching: which pool serves a request on a listener.
//!
//! A route matches on host (exact or `*.suffix` wildcard), path prefix and exact header
//! values. Among matching routes the most specific wins: an exact host beats a wildcard
//! beats no host, then the longest path prefix, then the route with more header
//! conditions. The table is sorted once when a config is compiled, so a lookup is a
//! linear scan that stops at the first match.
//!
//! The host given to `find` is the host part of a validated authority
//! (`proxy::authority`); it is compared as ASCII bytes, so no client input is ever
//! sliced as text. The path is the normalised one (`proxy::path`), with the listener's
//! `PathPolicy` carried here so both HTTP paths read it with the routes.

use crate::request::cluster_limit::ClusterLimits;
use crate::request::lookup::HeaderLookup;
use crate::request::path::PathPolicy;
use crate::request::rate_limit::RateLimiter;
use crate::request::timeouts::RouteTimeouts;
use crate::split::RouteSplit;
#[cfg(test)]
use http::HeaderMap;
use std::sync::Arc;

/// One compiled route.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    host: HostMatch,
    path_prefix: String,
    headers: Vec<(http::HeaderName, String)>,
    /// Where the route's requests go (`request::split` turns it into a pool).
    pub target: RouteTarget,
    pub redirect_https: bool,
    /// Protocols a client may upgrade to, lower case (`websocket`, `name/version`).
    pub upgrades: Vec<String>,
    /// The route's rate limit, with its buckets (see `request::rate_limit`).
    pub limiter: Option<Arc<RateLimiter>>,
    /// `timeout` and `per_try_timeout` (see `request::timeouts`).
    pub timeouts: RouteTimeouts,
}

/// A route's pool, or its split between pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Pool(String),
    Split(Arc<RouteSplit>),
}

impl RouteTarget {
    fn of(route: &fulcrum_config::Route) -> RouteTarget {
        match (&route.pool, RouteSplit::new(route)) {
            (_, Some(split)) => RouteTarget::Split(Arc::new(split)),
            (pool, None) => RouteTarget::Pool(pool.clone().unwrap_or_default()),
        }
    }

    /// The pools this target may lead to.
    pub fn pools(&self) -> &[String] {
        match self {
            RouteTarget::Pool(pool) => std::slice::from_ref(pool),
            RouteTarget::Split(split) => &split.pools,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// Lower-cased exact host, without port.
    Exact(String),
    /// Lower-cased suffix including the dot: `*.example.com` -> `.example.com`.
    Wildcard(String),
}

impl HostMatch {
    fn parse(host: Option<&str>) -> Self {
        match host {
            None => HostMatch::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => HostMatch::Wildcard(suffix.to_ascii_lowercase()),
                None => HostMatch::Exact(h.to_ascii_lowercase()),
            },
        }
    }

    /// Compares ASCII bytes: a host that is not ASCII simply matches no name.
    fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h.as_bytes().eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => host
                .len()
                .checked_sub(suffix.len())
                .filter(|&start| start > 0)
                .and_then(|start| host.get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes())),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            HostMatch::Exact(_) => 2,
            HostMatch::Wildcard(_) => 1,
            HostMatch::Any => 0,
        }
    }
}

/// The routes of one listener, most specific first, and how it treats paths.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    pub paths: PathPolicy,
}

/// The limiter of route `r`'s `limit`: counted in the cluster when it says so and
/// Redis is configured. The route is named in Redis by what it matches, the same on
/// every node of the cluster.
fn limiter(
    r: &fulcrum_config::Route,
    limit: &fulcrum_config::RateLimit,
    cluster: Option<&ClusterLimits>,
) -> RateLimiter {
    let local = RateLimiter::new(limit);
    match cluster {
        Some(cluster) if limit.scope == fulcrum_config::RateScope::Cluster => {
            let named = format!(
                "{}|{}|{}|{:?}",
                r.listener,
                r.host.as_deref().unwrap_or(""),
                r.path_prefix.as_deref().unwrap_or("/"),
                r.headers
            );
            let scope = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(named.as_bytes()));
            local.counted_in_cluster(limit, scope, cluster.clone())
        }
        _ => local,
    }
}

impl RouteTable {
    /// Compiles `routes`; a cluster-wide rate limit counts in `cluster`'s Redis (without
    /// one, such a limit counts on this node alone).
    pub fn build(
        routes: &[&fulcrum_config::Route],
        paths: PathPolicy,
        cluster: Option<&ClusterLimits>,
    ) -> Self {
        let mut compiled: Vec<CompiledRoute> = routes
            .iter()
            .map(|r| CompiledRoute {
                host: HostMatch::parse(r.host.as_deref()),
                path_prefix: r.path_prefix.clone().unwrap_or_else(|| "/".to_string()),
                headers: r
                    .headers
                    .iter()
                    .filter_map(|(k, v)| {
                        http::HeaderName::from_bytes(k.as_bytes())
                            .ok()
                            .map(|k| (k, v.clone()))
                    })
                    .collect(),
                target: RouteTarget::of(r),
                redirect_https: r.redirect_https,
                upgrades: r.upgrades.iter().map(|u| u.to_ascii_lowercase()).collect(),
                limiter: r
                    .rate_limit
                    .as_ref()
                    .map(|l| Arc::new(limiter(r, l, cluster))),
                timeouts: RouteTimeouts {
                    overall: r.timeout,
                    per_try: r.per_try_timeout,
                },
            })
            .collect();
        compiled.sort_by(|a, b| {
            (b.host.rank(), b.path_prefix.len(), b.headers.len()).cmp(&(
                a.host.rank(),
                a.path_prefix.len(),
                a.headers.len(),
            ))
        });
        RouteTable {
            routes: compiled,
            paths,
        }
    }

    /// The most specific route for a request to `host` (the host part of its
    /// authority, `proxy::authority::host_part`; empty when it has none) and the
    /// normalised `path`.
    pub fn find(
        &self,
        host: &[u8],
        path: &[u8],
        headers: &impl HeaderLookup,
    ) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| {
            r.host.matches(host)
                && path.starts_with(r.path_prefix.as_bytes())
                && r.headers.iter().all(|(name, value)| {
                    headers
                        .first(name.as_str())
                        .is_some_and(|v| v == value.as_bytes())
                })
        })
    }
}

impl RouteTable {
    /// The pools the routes lead to (a pool may repeat).
    pub fn pool_names(&self) -> impl Iterator<Item = &str> {
        (self.routes.iter())
            .flat_map(|r| r.target.pools())
            .map(String::as_str)
    }

    /// The split routes of this listener.
    pub fn splits(&self) -> impl Iterator<Item = &Arc<RouteSplit>> {
        self.routes.iter().filter_map(|r| match &r.target {
            RouteTarget::Split(split) => Some(split),
            RouteTarget::Pool(_) => None,
        })
    }
}

impl CompiledRoute {
    /// Whether a client may switch to `protocol` (an `Upgrade` token) on this route: a
    /// configured name matches any version of it, `name/version` only that version.
    pub fn allows_upgrade(&self, protocol: &[u8]) -> bool {
        let name = protocol.split(|&b| b == b'/').next().unwrap_or_default();
        self.upgrades.iter().any(|allowed| {
            let allowed = allowed.as_bytes();
            if allowed.contains(&b'/') {
                allowed.eq_ignore_ascii_case(protocol)
            } else {
                allowed.eq_ignore_ascii_case(name)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_config::Route;

    fn route(host: Option<&str>, prefix: Option<&str>, pool: &str) -> Route {
        Route {
            name: None,
            listener: "web".into(),
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            headers: Default::default(),
            pool: Some(pool.into()),
            split: Vec::new(),
            redirect_https: false,
            upgrades: vec!["websocket".into()],
            rate_limit: None,
            timeout: None,
            per_try_timeout: None,
        }
    }

    fn table(routes: &[Route]) -> RouteTable {
        let refs: Vec<&Route> = routes.iter().collect();
        RouteTable::build(&refs, PathPolicy::default(), None)
    }

    #[test]
    fn longest_prefix_and_exact_host_win() {
        let routes = [
            route(None, None, "default"),
            route(None, Some("/api"), "api"),
            route(None, Some("/api/v2"), "v2"),
            route(Some("shop.example"), None, "shop"),
            route(Some("*.example"), Some("/api"), "wild"),
        ];
        let table = table(&routes);
        let h = HeaderMap::new();
        let pool = |host: &str, path: &str| {
            let host = crate::request::authority::host_part(host.as_bytes());
            table
                .find(host, path.as_bytes(), &h)
                .map(|r| r.target.pools()[0].as_str())
        };
        assert_eq!(pool("", "/"), Some("default"));
        assert_eq!(pool("", "/api/x"), Some("api"));
        assert_eq!(pool("", "/api/v2/x"), Some("v2"));
        assert_eq!(pool("shop.example:8080", "/api"), Some("shop"));
        assert_eq!(pool("SHOP.example.", "/api"), Some("shop"));
        assert_eq!(pool("a.example", "/api"), Some("wild"));
        assert_eq!(pool("A.EXAMPLE:80", "/api"), Some("wild"));
        assert_eq!(pool(".example", "/api"), Some("api"));
        assert_eq!(pool("a.example", "/other"), Some("default"));
    }

    #[test]
    fn no_match_is_none() {
        let routes = [route(Some("a.test"), Some("/x"), "p")];
        let table = table(&routes);
        assert!(table.find(b"b.test", b"/x", &HeaderMap::new()).is_none());
        assert!(table.find(b"a.test", b"/y", &HeaderMap::new()).is_none());
    }

    #[test]
    fn header_conditions_must_all_match() {
        let mut r = route(None, None, "canary");
        r.headers.insert("x-canary".into(), "1".into());
        let routes = [route(None, None, "main"), r];
        let table = table(&routes);
        let mut h = HeaderMap::new();
        assert_eq!(
            table
                .find(b"", b"/", &h)
                .map(|r| r.target.pools()[0].as_str()),
            Some("main")
        );
        h.insert("x-canary", "1".parse().unwrap());
        assert_eq!(
            table
                .find(b"", b"/", &h)
                .map(|r| r.target.pools()[0].as_str()),
            Some("canary")
        );
    }

    #[test]
    fn hosts_that_are_not_ascii_match_no_name_and_never_panic() {
        let routes = [
            route(Some("*.example.com"), None, "wild"),
            route(Some("shop.example"), None, "shop"),
            route(None, None, "default"),
        ];
        let table = table(&routes);
        let h = HeaderMap::new();
        // Offset `len - suffix len` falls inside a multi-byte character: text slicing
        // there panicked.
        for host in ["üüüüüüüa", "ab.exampleé.com", "€€€€€€€€€€€€€", "ü"]
        {
            let found = table
                .find(host.as_bytes(), b"/", &h)
                .map(|r| r.target.pools()[0].as_str());
            assert_eq!(found, Some("default"), "{host}");
        }
        for host in ["é.example.com".as_bytes(), b"\xff\xfe.example.com"] {
            let found = table
                .find(host, b"/", &h)
                .map(|r| r.target.pools()[0].as_str());
            assert_eq!(found, Some("wild"), "{host:?}");
        }
    }

    #[test]
    fn upgrades_match_by_name_or_exact_version() {
        let mut r = route(None, None, "p");
        r.upgrades = vec!["WebSocket".into(), "foo/2".into()];
        let table = table(&[r]);
        let route = table.find(b"", b"/", &HeaderMap::new()).unwrap();
        assert!(route.allows_upgrade(b"websocket"));
        assert!(route.allows_upgrade(b"websocket/13"));
        assert!(route.allows_upgrade(b"FOO/2"));
        assert!(!route.allows_upgrade(b"foo/3"));
        assert!(!route.allows_upgrade(b"foo"));
        assert!(!route.allows_upgrade(b"h2c"));
    }
}
