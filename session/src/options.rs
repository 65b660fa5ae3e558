//! Store options ([`StoreOptions`]) and where they point: no Redis, one Redis URL, a set
//! of Sentinels that name the current master, or a Redis Cluster.
//!
//! Sentinel can be given two ways, both resolved by the redis crate's `SentinelClient`:
//! * `redis = "redis+sentinel://[:password@]host:port,host:port/master_name[/db]"`, or
//! * `sentinels = ["host:port", ...]` plus `master_name = "..."` (and no `redis`).
//!
//! The password in a sentinel URL is the Redis master's password (sentinels themselves are
//! reached without auth). A sentinel port defaults to 26379.
//!
//! A Redis Cluster is `redis+cluster://[user:password@]host:port,host:port[/]`: a few seed
//! nodes (any of them, masters or replicas); the redis crate's cluster client learns the
//! rest of the topology from them. A cluster node's port defaults to 6379 and the database is
//! always 0 (Redis Cluster has no other).

use std::time::Duration;

use fulcrum_config::SessionSection;

use crate::error::SessionError;

/// Everything the store needs; build it from the config with [`StoreOptions::from_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// `redis://host:port/db`, `rediss://...`, `redis+sentinel://...` or `redis+cluster://...`.
    pub redis_url: Option<String>,
    /// Sentinel addresses (`host:port` or `redis://host:port`), used with `master_name`.
    pub sentinels: Vec<String>,
    /// Sentinel service name of the master.
    pub master_name: Option<String>,
    /// Lifetime of a pin in Redis; refreshed while the session is used.
    pub ttl: Duration,
    /// Bound on every Redis command (and the whole lookup that waits on it).
    pub timeout: Duration,
    /// Most entries kept in the local cache; 0 turns the cache off.
    pub cache_capacity: usize,
    /// How long a cached pin is trusted before Redis is asked again, i.e. how late a re-pin
    /// made by another node can be noticed.
    pub cache_ttl: Duration,
    /// Most pins held locally while Redis cannot take them (see `AffinityStore::hold`).
    pub held_capacity: usize,
}

/// Default number of cached pins (about 100 bytes each).
pub const DEFAULT_CACHE_CAPACITY: usize = 50_000;
/// Default trust window of a cached pin.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);
/// Default bound of the held-pin queue (about 150 bytes a pin).
pub const DEFAULT_HELD_CAPACITY: usize = 100_000;
const DEFAULT_SENTINEL_PORT: u16 = 26379;
const DEFAULT_REDIS_PORT: u16 = 6379;
const SENTINEL_SCHEME: &str = "redis+sentinel://";
const CLUSTER_SCHEME: &str = "redis+cluster://";

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            redis_url: None,
            sentinels: Vec::new(),
            master_name: None,
            ttl: Duration::from_secs(30 * 60),
            timeout: Duration::from_millis(50),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_ttl: DEFAULT_CACHE_TTL,
            held_capacity: DEFAULT_HELD_CAPACITY,
        }
    }
}

impl StoreOptions {
    /// Options from the `[session]` section; cache settings take their defaults.
    pub fn from_config(s: &SessionSection) -> Self {
        Self {
            redis_url: s.redis.clone(),
            sentinels: s.sentinels.clone(),
            master_name: s.master_name.clone(),
            ttl: s.ttl,
            timeout: s.timeout,
            ..Self::default()
        }
    }

    /// Checks ranges and works out the [`Target`]; `None` means no Redis is configured.
    pub(crate) fn target(&self) -> Result<Option<Target>, SessionError> {
        self.check_ranges()?;
        match (&self.redis_url, self.sentinels.is_empty()) {
            (None, true) => Ok(None),
            (Some(url), _) if url.starts_with(SENTINEL_SCHEME) => {
                parse_sentinel_url(url, self.master_name.as_deref()).map(Some)
            }
            (Some(url), true) if url.starts_with(CLUSTER_SCHEME) => {
                parse_cluster_url(url).map(Some)
            }
            (Some(url), true) => Ok(Some(Target::Direct(url.clone()))),
            (Some(_), false) => Err(SessionError::InvalidOptions(
                "set either a redis:// url or sentinels, not both".into(),
            )),
            (None, false) => self.sentinel_list_target().map(Some),
        }
    }

    fn check_ranges(&self) -> Result<(), SessionError> {
        if self.ttl < Duration::from_secs(1) {
            return Err(SessionError::InvalidOptions(
                "ttl must be at least 1s".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(SessionError::InvalidOptions(
                "timeout must be above 0".into(),
            ));
        }
        Ok(())
    }

    fn sentinel_list_target(&self) -> Result<Target, SessionError> {
        let master = self
            .master_name
            .clone()
            .ok_or_else(|| SessionError::InvalidOptions("sentinels need master_name".into()))?;
        let sentinels = self
            .sentinels
            .iter()
            .map(|s| parse_host_port(strip_scheme(s), s, DEFAULT_SENTINEL_PORT))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target::Sentinel(SentinelTarget {
            sentinels,
            master,
            db: 0,
            password: None,
        }))
    }
}

/// Where the store's Redis lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One fixed server; `ConnectionManager` reconnects to it by itself.
    Direct(String),
    /// The master named by Sentinels; re-resolved after failover.
    Sentinel(SentinelTarget),
    /// A Redis Cluster, reached through these seed nodes.
    Cluster(ClusterTarget),
}

impl Target {
    /// True for a Redis Cluster: pin keys then carry a hash tag.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelTarget {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterTarget {
    /// Seed nodes as `redis://host:port` URLs.
    pub nodes: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

fn strip_scheme(s: &str) -> &str {
    s.split_once("://").map_or(s, |(_, rest)| rest)
}

fn invalid(url: &str, reason: &str) -> SessionError {
    SessionError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// `user:password@rest` split into (user, password, rest); empty parts are `None`.
fn split_userinfo(rest: &str) -> (Option<String>, Option<String>, &str) {
    let Some((userinfo, rest)) = rest.rsplit_once('@') else {
        return (None, None, rest);
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, p),
        None => ("", userinfo),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    (some(user), some(password), rest)
}

/// `h1:p1,h2:p2` (empty items skipped), each with `default_port` when it has none.
fn parse_host_list(
    hosts: &str,
    url: &str,
    default_port: u16,
) -> Result<Vec<(String, u16)>, SessionError> {
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| parse_host_port(h, url, default_port))
        .collect()
}

/// `redis+cluster://[user:password@]h1:p1,h2:p2[/]`.
fn parse_cluster_url(url: &str) -> Result<Target, SessionError> {
    let rest = &url[CLUSTER_SCHEME.len()..];
    let (username, password, rest) = split_userinfo(rest);
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() && path != "0" {
        return Err(invalid(url, "a Redis Cluster has only database 0"));
    }
    let nodes = parse_host_list(hosts, url, DEFAULT_REDIS_PORT)?;
    if nodes.is_empty() {
        return Err(invalid(url, "no cluster node address"));
    }
    let nodes = nodes
        .into_iter()
        .map(|(h, p)| match h.contains(':') {
            true => format!("redis://[{h}]:{p}"),
            false => format!("redis://{h}:{p}"),
        })
        .collect();
    Ok(Target::Cluster(ClusterTarget {
        nodes,
        username,
        password,
    }))
}

/// `redis+sentinel://[user:password@]h1:p1,h2:p2/master[/db]`.
fn parse_sentinel_url(url: &str, master_opt: Option<&str>) -> Result<Target, SessionError> {
    let rest = &url[SENTINEL_SCHEME.len()..];
    let (_user, password, rest) = split_userinfo(rest);
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let sentinels = parse_host_list(hosts, url, DEFAULT_SENTINEL_PORT)?;
    if sentinels.is_empty() {
        return Err(invalid(url, "no sentinel address"));
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let master = segments
        .next()
        .or(master_opt)
        .ok_or_else(|| invalid(url, "no master name (path or master_name)"))?
        .to_string();
    let db = match segments.next() {
        Some(d) => d.parse().map_err(|_| invalid(url, "db is not a number"))?,
        None => 0,
    };
    Ok(Target::Sentinel(SentinelTarget {
        sentinels,
        master,
        db,
        password,
    }))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn parse_host_port(s: &str, url: &str, default_port: u16) -> Result<(String, u16), SessionError> {
    let s = s.trim_end_matches('/');
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid(url, "unclosed ["))?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(url, "empty host"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| invalid(url, "bad port"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: Option<&str>) -> StoreOptions {
        StoreOptions {
            redis_url: url.map(str::to_string),
            ..StoreOptions::default()
        }
    }

    #[test]
    fn no_redis_means_disabled() {
        assert_eq!(opts(None).target().unwrap(), None);
    }

    #[test]
    fn plain_url_is_direct() {
        let t = opts(Some("redis://127.0.0.1:6379/0")).target().unwrap();
        assert_eq!(t, Some(Target::Direct("redis://127.0.0.1:6379/0".into())));
    }

    #[test]
    fn sentinel_url_is_parsed() {
        let t = opts(Some(
            "redis+sentinel://:pw@10.0.0.1:26380,[::1],h3/mymaster/2",
        ))
        .target()
        .unwrap();
        let Some(Target::Sentinel(s)) = t else {
            panic!("not sentinel: {t:?}")
        };
        assert_eq!(
            s.sentinels,
            vec![
                ("10.0.0.1".into(), 26380),
                ("::1".into(), 26379),
                ("h3".into(), 26379)
            ]
        );
        assert_eq!(
            (s.master.as_str(), s.db, s.password.as_deref()),
            ("mymaster", 2, Some("pw"))
        );
    }

    #[test]
    fn sentinel_list_needs_master_name() {
        let mut o = opts(None);
        o.sentinels = vec!["redis://127.0.0.1:26379".into()];
        assert!(matches!(o.target(), Err(SessionError::InvalidOptions(_))));
        o.master_name = Some("m".into());
        let Some(Target::Sentinel(s)) = o.target().unwrap() else {
            panic!()
        };
        assert_eq!(s.sentinels, vec![("127.0.0.1".into(), 26379)]);
    }

    #[test]
    fn cluster_url_is_parsed() {
        let t = opts(Some("redis+cluster://:pw@127.0.0.1:7000,[::1]:7001,h3/"))
            .target()
            .unwrap();
        let Some(Target::Cluster(c)) = t else {
            panic!("not a cluster: {t:?}")
        };
        assert_eq!(
            c.nodes,
            vec![
                "redis://127.0.0.1:7000",
                "redis://[::1]:7001",
                "redis://h3:6379"
            ]
        );
        assert_eq!((c.username, c.password.as_deref()), (None, Some("pw")));
        let t = opts(Some("redis+cluster://app:pw@10.0.0.1:7000"))
            .target()
            .unwrap();
        let Some(Target::Cluster(c)) = t else {
            panic!("not a cluster: {t:?}")
        };
        assert_eq!(c.username.as_deref(), Some("app"));
        assert!(opts(Some("redis+cluster://h:1/3")).target().is_err());
        assert!(opts(Some("redis+cluster:///")).target().is_err());
        assert!(opts(Some("redis+cluster://h:port")).target().is_err());
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(opts(Some("redis+sentinel://h:notaport/m"))
            .target()
            .is_err());
        assert!(opts(Some("redis+sentinel:///m")).target().is_err());
        assert!(opts(Some("redis+sentinel://h:1")).target().is_err());
        let mut o = opts(Some("redis://h"));
        o.ttl = Duration::from_millis(10);
        assert!(o.target().is_err());
    }
}
