//! The connection to Redis: one auto-reconnecting `ConnectionManager` (a multiplexed
//! connection shared by all callers), and for Sentinel setups the `SentinelClient` that says
//! which server is the master.
//!
//! * Direct URL: the manager is created lazily in `Link::new` (no network I/O); it connects on
//!   first use and reconnects by itself after a Redis restart.
//! * Sentinel: the manager is created by `resolve` (called by the background monitor, never on
//!   a request's path). Because a manager keeps reconnecting to the address it was built with,
//!   errors that suggest a failover (I/O, timeout, `READONLY` from a demoted master) mark the
//!   link for re-resolution; the monitor then asks the sentinels again and swaps in a manager
//!   for the new master if the address changed.
//!
//! `exec` bounds every command by a deadline (the store's `timeout`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, RedisError};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::error::SessionError;
use crate::options::{SentinelTarget, Target};

/// Why a command produced no answer.
#[derive(Debug)]
pub enum CallError {
    /// No manager yet (sentinel not resolved).
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

pub struct Link {
    /// The manager in use and the address it was built for.
    manager: RwLock<Option<(ConnectionManager, ConnectionAddr)>>,
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    needs_resolve: AtomicBool,
    timeout: Duration,
}

impl Link {
    /// Builds the link without any network I/O. Must run inside a tokio runtime.
    pub fn new(target: &Target, timeout: Duration) -> Result<Self, SessionError> {
        let (manager, sentinel) = match target {
            Target::Direct(url) => {
                let client =
                    redis::Client::open(url.as_str()).map_err(|e| SessionError::InvalidUrl {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?;
                let addr = client.get_connection_info().addr().clone();
                let cm = ConnectionManager::new_lazy_with_config(client, manager_config(timeout))?;
                (Some((cm, addr)), None)
            }
            Target::Sentinel(s) => (None, Some(tokio::sync::Mutex::new(sentinel_client(s)?))),
        };
        Ok(Self {
            needs_resolve: AtomicBool::new(sentinel.is_some()),
            manager: RwLock::new(manager),
            sentinel,
            timeout,
        })
    }

    fn current(&self) -> Option<ConnectionManager> {
        // The guarded value is only ever replaced whole, so a poisoned lock is still valid.
        let guard = self.manager.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|(cm, _)| cm.clone())
    }

    pub fn is_sentinel(&self) -> bool {
        self.sentinel.is_some()
    }

    /// True when the sentinels should be asked for the master again.
    pub fn needs_resolve(&self) -> bool {
        self.sentinel.is_some() && self.needs_resolve.load(Relaxed)
    }

    /// Asks the sentinels for the master and swaps in a manager for it when it moved.
    /// Bounded by a few call timeouts; only the background monitor calls this.
    pub async fn resolve(&self) -> Result<(), CallError> {
        let Some(sentinel) = &self.sentinel else {
            return Ok(());
        };
        let budget = (self.timeout * 4).max(Duration::from_millis(200));
        let client = tokio::time::timeout(budget, async {
            sentinel.lock().await.async_get_client().await
        })
        .await
        .map_err(|_| CallError::Timeout)?
        .map_err(CallError::Redis)?;
        let addr = client.get_connection_info().addr().clone();
        let same = self.current_addr().is_some_and(|a| a == addr);
        if !same {
            info!(master = %addr, "sentinel: using redis master");
            let cm = ConnectionManager::new_lazy_with_config(client, manager_config(self.timeout))
                .map_err(CallError::Redis)?;
            *self.manager.write().unwrap_or_else(|p| p.into_inner()) = Some((cm, addr));
        }
        // `needs_resolve` stays set until a command succeeds: while the master is failing,
        // the sentinels are asked again (rate-limited by the monitor) until they name a new one.
        Ok(())
    }

    fn current_addr(&self) -> Option<ConnectionAddr> {
        let guard = self.manager.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|(_, addr)| addr.clone())
    }

    /// Runs `op` on the connection, bounded by the call timeout. A failure that arrives at once
    /// because the connection was found dead is retried once within the same deadline: the
    /// manager has just started reconnecting, and the retry waits for that new connection
    /// instead of failing a request that could have succeeded.
    pub async fn exec<T, F, Fut>(&self, op: F) -> Result<T, CallError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = Instant::now() + self.timeout;
        let cm = self.current().ok_or(CallError::NotConnected)?;
        let result = match tokio::time::timeout_at(deadline, op(cm.clone())).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) if is_dead_connection(&e) && Instant::now() < deadline => {
                debug!(error = %e, "redis connection dead, retrying once on the new one");
                match tokio::time::timeout_at(deadline, op(cm)).await {
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
        if self.sentinel.is_some() && suggests_failover {
            self.needs_resolve.store(true, Relaxed);
        }
    }
}

fn is_dead_connection(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error()
}

/// Reconnect quickly and give up quickly: a request never waits longer than the call timeout
/// anyway, and the breaker takes over when Redis stays away.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    let connect = (timeout * 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
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
