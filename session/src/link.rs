//! The connection to Redis: one [`Conn`] shared by all callers, and for Sentinel setups the
//! `SentinelClient` that says which server is the master.
//!
//! * Direct URL: an auto-reconnecting `ConnectionManager`, created lazily in `Link::new`
//!   (no network I/O); it connects on first use and reconnects after a Redis restart.
//! * Redis Cluster: the redis crate's cluster connection, created pending (it connects in the
//!   background); it learns the slot map, follows `MOVED` / `ASK` and refreshes the map when
//!   a master fails over. A cluster connection can wedge during a failover (redis 1.8: a slot
//!   refresh waits for a lock that a request it no longer polls holds, and every command on it
//!   times out from then on); `rebuild_cluster` replaces it, and the monitor calls it when the
//!   cluster stops answering (see `cluster_watch`).
//! * Sentinel: the manager is created by `resolve` (called by the background monitor, never on
//!   a request's path). Because a manager keeps reconnecting to the address it was built with,
//!   errors that suggest a failover (I/O, timeout, `READONLY` from a demoted master) mark the
//!   link for re-resolution, and so does a `+switch-master` announcement (see
//!   `sentinel_watch`); the monitor then asks the sentinels again and swaps in a manager for
//!   the new master if the address changed.
//!
//! `exec` bounds every command by a deadline (the store's `timeout`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, RedisError};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::conn::Conn;
use crate::error::SessionError;
use crate::options::{ClusterTarget, SentinelTarget, Target};

/// Why a command produced no answer.
#[derive(Debug)]
pub enum CallError {
    /// No connection yet (sentinel not resolved).
    NotConnected,
    /// The deadline passed.
    Timeout,
    Redis(RedisError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConnected => f.write_str("not connected"),
            Self::Timeout => f.write_str("timed out"),
            Self::Redis(e) => write!(f, "{e}"),
        }
    }
}

/// What `resolve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Not a Sentinel link, or the sentinels name the master already in use.
    Unchanged,
    /// The link now talks to this new master.
    Switched(String),
}

pub struct Link {
    /// The connection in use and the address it was built for.
    conn: RwLock<Option<(Conn, String)>>,
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    /// The cluster target, kept to build a new connection if this one wedges.
    cluster: Option<ClusterTarget>,
    needs_resolve: AtomicBool,
    timeout: Duration,
}

impl Link {
    /// Builds the link without any network I/O. Must run inside a tokio runtime.
    pub fn new(target: &Target, timeout: Duration) -> Result<Self, SessionError> {
        let (conn, sentinel) = match target {
            Target::Direct(url) => (Some(direct(url, timeout)?), None),
            Target::Cluster(c) => (Some(cluster(c, timeout)?), None),
            Target::Sentinel(s) => (None, Some(tokio::sync::Mutex::new(sentinel_client(s)?))),
        };
        Ok(Self {
            needs_resolve: AtomicBool::new(sentinel.is_some()),
            conn: RwLock::new(conn),
            sentinel,
            cluster: match target {
                Target::Cluster(c) => Some(c.clone()),
                _ => None,
            },
            timeout,
        })
    }

    fn current(&self) -> Option<Conn> {
        // The guarded value is only ever replaced whole, so a poisoned lock is still valid.
        let guard = self.conn.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|(c, _)| c.clone())
    }

    /// The address of the server (or the seed nodes of the cluster) in use.
    pub fn address(&self) -> Option<String> {
        let guard = self.conn.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|(_, addr)| addr.clone())
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Replaces the cluster connection with a new one (no network I/O here: it connects in the
    /// background). Commands in flight on the old one finish or time out on it.
    pub fn rebuild_cluster(&self) -> Result<(), SessionError> {
        let Some(target) = &self.cluster else {
            return Ok(());
        };
        let fresh = cluster(target, self.timeout)?;
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
        Ok(())
    }

    pub fn is_sentinel(&self) -> bool {
        self.sentinel.is_some()
    }

    /// True when the sentinels should be asked for the master again.
    pub fn needs_resolve(&self) -> bool {
        self.sentinel.is_some() && self.needs_resolve.load(Relaxed)
    }

    /// Marks the link for re-resolution (a sentinel announced a switch, or lost us).
    pub fn request_resolve(&self) {
        if self.sentinel.is_some() {
            self.needs_resolve.store(true, Relaxed);
        }
    }

    /// Asks the sentinels for the master and swaps in a manager for it when it moved.
    /// Bounded by a few call timeouts; only the background monitor calls this.
    pub async fn resolve(&self) -> Result<Resolved, CallError> {
        let Some(sentinel) = &self.sentinel else {
            return Ok(Resolved::Unchanged);
        };
        let budget = (self.timeout * 4).max(Duration::from_millis(200));
        let client = tokio::time::timeout(budget, async {
            sentinel.lock().await.async_get_client().await
        })
        .await
        .map_err(|_| CallError::Timeout)?
        .map_err(CallError::Redis)?;
        let addr = client.get_connection_info().addr().to_string();
        if self.address().as_deref() == Some(addr.as_str()) {
            // `needs_resolve` stays set until a command succeeds: while the master is
            // failing, the sentinels are asked again (rate-limited by the monitor) until they
            // name a new one.
            return Ok(Resolved::Unchanged);
        }
        info!(master = %addr, "sentinel: using redis master");
        let cm = ConnectionManager::new_lazy_with_config(client, manager_config(self.timeout))
            .map_err(CallError::Redis)?;
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Conn::Single(cm), addr.clone()));
        Ok(Resolved::Switched(addr))
    }

    /// Runs `op` on the connection, bounded by the call timeout. A failure that arrives at once
    /// because the connection was found dead is retried once within the same deadline: the
    /// manager has just started reconnecting, and the retry waits for that new connection
    /// instead of failing a request that could have succeeded.
    pub async fn exec<T, F, Fut>(&self, op: F) -> Result<T, CallError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.exec_within(self.timeout, op).await
    }

    /// `exec` with a deadline of its own, never longer than the call timeout.
    pub async fn exec_within<T, F, Fut>(&self, limit: Duration, op: F) -> Result<T, CallError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = Instant::now() + limit.min(self.timeout);
        let conn = self.current().ok_or(CallError::NotConnected)?;
        let result = match tokio::time::timeout_at(deadline, op(conn.clone())).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) if is_dead_connection(&e) && Instant::now() < deadline => {
                debug!(error = %e, "redis connection dead, retrying once on the new one");
                match tokio::time::timeout_at(deadline, op(conn)).await {
                    Err(_) => Err(CallError::Timeout),
                    Ok(r) => r.map_err(CallError::Redis),
                }
            }
            Ok(r) => r.map_err(CallError::Redis),
        };
        match &result {
            Ok(_) => self.needs_resolve.store(false, Relaxed),
            Err(e) => self.note_error(e),
        }
        result
    }

    fn note_error(&self, e: &CallError) {
        let suggests_failover = match e {
            CallError::NotConnected | CallError::Timeout => true,
            CallError::Redis(e) => e.is_io_error() || e.code() == Some("READONLY"),
        };
        if suggests_failover {
            self.request_resolve();
        }
    }
}

fn is_dead_connection(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error()
}

/// How long one connection attempt may take: a few call timeouts, within 100 ms .. 1 s.
fn connect_timeout(timeout: Duration) -> Duration {
    (timeout * 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Reconnect quickly and give up quickly: a request never waits longer than the call timeout
/// anyway, and the breaker takes over when Redis stays away.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout(timeout)))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

fn direct(url: &str, timeout: Duration) -> Result<(Conn, String), SessionError> {
    let client = redis::Client::open(url).map_err(|e| SessionError::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let addr = client.get_connection_info().addr().to_string();
    let cm = ConnectionManager::new_lazy_with_config(client, manager_config(timeout))?;
    Ok((Conn::Single(cm), addr))
}

/// The cluster connection retries a command a couple of times (after `MOVED`, `ASK`, a
/// refused connection or `CLUSTERDOWN` while a replica is being promoted); `exec`'s deadline
/// bounds the whole.
fn cluster(c: &ClusterTarget, timeout: Duration) -> Result<(Conn, String), SessionError> {
    let mut builder = ClusterClientBuilder::new(c.nodes.clone())
        .retries(3)
        .min_retry_wait(5)
        .max_retry_wait(50);
    if let Some(user) = &c.username {
        builder = builder.username(user);
    }
    if let Some(pw) = &c.password {
        builder = builder.password(pw);
    }
    let client = builder.build()?;
    let config = ClusterConfig::new()
        .set_connection_timeout(connect_timeout(timeout))
        .set_response_timeout(timeout);
    let conn = client.get_pending_async_connection_with_config(config);
    Ok((Conn::Cluster(conn), c.nodes.join(",")))
}

fn sentinel_client(s: &SentinelTarget) -> Result<SentinelClient, SessionError> {
    let addrs = s
        .sentinels
        .iter()
        .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
    let mut builder = SentinelClientBuilder::new(addrs, &s.master, SentinelServerType::Master)?
        .set_client_to_redis_db(s.db);
    if let Some(pw) = &s.password {
        builder = builder.set_client_to_redis_password(pw);
    }
    Ok(builder.build()?)
}
