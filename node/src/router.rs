//! Route matching: which pool serves a request on a listener.
//!
//! A route matches on host (exact or `*.suffix` wildcard), path prefix and exact header
//! values. Among matching routes the most specific wins: an exact host beats a wildcard
//! beats no host, then the longest path prefix, then the route with more header
//! conditions. The table is sorted once when a config is compiled, so a lookup is a
//! linear scan that stops at the first match.

use crate::proxy::lookup::HeaderLookup;
#[cfg(test)]
use http::HeaderMap;

/// One compiled route.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    host: HostMatch,
    path_prefix: String,
    headers: Vec<(http::HeaderName, String)>,
    pub pool: String,
    pub redirect_https: bool,
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

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
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

/// The routes of one listener, most specific first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
}

impl RouteTable {
    pub fn build(routes: &[&fulcrum_config::Route]) -> Self {
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
                pool: r.pool.clone(),
                redirect_https: r.redirect_https,
            })
            .collect();
        compiled.sort_by(|a, b| {
            (b.host.rank(), b.path_prefix.len(), b.headers.len()).cmp(&(
                a.host.rank(),
                a.path_prefix.len(),
                a.headers.len(),
            ))
        });
        RouteTable { routes: compiled }
    }

    /// The most specific route for this request, if any.
    pub fn find(
        &self,
        host: Option<&str>,
        path: &str,
        headers: &impl HeaderLookup,
    ) -> Option<&CompiledRoute> {
        let host = host.map(strip_port).unwrap_or("");
        self.routes.iter().find(|r| {
            r.host.matches(host)
                && path.starts_with(r.path_prefix.as_str())
                && r.headers.iter().all(|(name, value)| {
                    headers
                        .first(name.as_str())
                        .is_some_and(|v| v == value.as_bytes())
                })
        })
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_config::Route;

    fn route(host: Option<&str>, prefix: Option<&str>, pool: &str) -> Route {
        Route {
            listener: "web".into(),
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            headers: Default::default(),
            pool: pool.into(),
            redirect_https: false,
        }
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
        let refs: Vec<&Route> = routes.iter().collect();
        let table = RouteTable::build(&refs);
        let h = HeaderMap::new();
        let pool =
            |host: Option<&str>, path: &str| table.find(host, path, &h).map(|r| r.pool.as_str());
        assert_eq!(pool(None, "/"), Some("default"));
        assert_eq!(pool(None, "/api/x"), Some("api"));
        assert_eq!(pool(None, "/api/v2/x"), Some("v2"));
        assert_eq!(pool(Some("shop.example:8080"), "/api"), Some("shop"));
        assert_eq!(pool(Some("a.example"), "/api"), Some("wild"));
        assert_eq!(pool(Some("a.example"), "/other"), Some("default"));
    }

    #[test]
    fn no_match_is_none() {
        let routes = [route(Some("a.test"), Some("/x"), "p")];
        let refs: Vec<&Route> = routes.iter().collect();
        let table = RouteTable::build(&refs);
        assert!(table
            .find(Some("b.test"), "/x", &HeaderMap::new())
            .is_none());
        assert!(table
            .find(Some("a.test"), "/y", &HeaderMap::new())
            .is_none());
    }

    #[test]
    fn header_conditions_must_all_match() {
        let mut r = route(None, None, "canary");
        r.headers.insert("x-canary".into(), "1".into());
        let routes = [route(None, None, "main"), r];
        let refs: Vec<&Route> = routes.iter().collect();
        let table = RouteTable::build(&refs);
        let mut h = HeaderMap::new();
        assert_eq!(
            table.find(None, "/", &h).map(|r| r.pool.as_str()),
            Some("main")
        );
        h.insert("x-canary", "1".parse().unwrap());
        assert_eq!(
            table.find(None, "/", &h).map(|r| r.pool.as_str()),
            Some("canary")
        );
    }
}
