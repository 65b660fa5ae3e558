//! Connection limits of one listener: how many client connections it holds at most,
//! and how many from one source address.
//!
//! The total is a semaphore the accept loop takes a permit from *before* accepting: at
//! the limit the listener simply stops accepting, so new clients wait in the kernel's
//! accept queue (as with HAProxy's `maxconn`) instead of being refused, and the node's
//! memory and file descriptors stay bounded whatever arrives. The per-address limit is
//! checked after the accept, since only then is the address known: a connection over it
//! is closed at once and counted (`fulcrum_connections_refused_total{reason="per_ip"}`),
//! so one client cannot take the whole listener. Both are released when the
//! connection's task ends, however it ends.

use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one listener, shared by its accept loop and its connections.
#[derive(Clone)]
pub(crate) struct ConnLimits {
    total: Arc<Semaphore>,
    /// The listener is (or was last seen) full: warn once per episode, not per accept.
    full: Arc<AtomicBool>,
    per_ip: Option<Arc<PerIp>>,
}

/// Open connections per source address.
struct PerIp {
    limit: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
    refused: Counter,
}

/// One admitted connection's share of the limits; dropping it gives the share back.
///
/// Every connection's task holds one for the connection's life, so it is two pointers
/// (16 bytes, not the 48 of a semaphore permit and an inline address): the permit
/// taken for the connection is forgotten and added back on drop, and the address is
/// boxed, only when a per-address limit is set.
pub(crate) struct Admitted {
    total: Arc<Semaphore>,
    ip: Option<Box<(Arc<PerIp>, IpAddr)>>,
}

impl ConnLimits {
    /// `max_connections` in all (at least 1), `per_ip` from one address (0: no limit);
    /// connections refused by the per-address limit are counted in `refused`.
    pub(crate) fn new(max_connections: usize, per_ip: usize, refused: Counter) -> Self {
        let total = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        ConnLimits {
            total: Arc::new(Semaphore::new(total)),
            full: Arc::new(AtomicBool::new(false)),
            per_ip: (per_ip > 0).then(|| {
                Arc::new(PerIp {
                    limit: u32::try_from(per_ip).unwrap_or(u32::MAX),
                    open: Mutex::new(HashMap::new()),
                    refused,
                })
            }),
        }
    }

    /// Waits for room for one more connection. `None` only if the limits were closed.
    pub(crate) async fn room(&self) -> Option<OwnedSemaphorePermit> {
        if self.total.available_permits() > 0 {
            self.full.store(false, Ordering::Relaxed);
        } else if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!("listener at max_connections; not accepting until a connection closes");
        }
        self.total.clone().acquire_owned().await.ok()
    }

    /// Admits a connection from `ip` with the room taken by `room`, or refuses it
    /// (`None`) when `ip` already holds its share.
    pub(crate) fn admit(&self, permit: OwnedSemaphorePermit, ip: IpAddr) -> Option<Admitted> {
        let Some(per_ip) = &self.per_ip else {
            return Some(self.admitted(permit, None));
        };
        let mut open = per_ip.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= per_ip.limit {
            drop(open);
            per_ip.refused.inc();
            return None;
        }
        *count += 1;
        drop(open);
        Some(self.admitted(permit, Some(Box::new((per_ip.clone(), ip)))))
    }

    fn admitted(
        &self,
        permit: OwnedSemaphorePermit,
        ip: Option<Box<(Arc<PerIp>, IpAddr)>>,
    ) -> Admitted {
        permit.forget();
        Admitted {
            total: self.total.clone(),
            ip,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.total.add_permits(1);
        let Some(held) = self.ip.take() else {
            return;
        };
        let (per_ip, ip) = *held;
        let mut open = per_ip.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_address_gets_its_share_and_gives_it_back() {
        let limits = ConnLimits::new(10, 2, Counter::default());
        let a: IpAddr = "10.77.0.1".parse().unwrap();
        let b: IpAddr = "10.77.0.2".parse().unwrap();
        let first = limits.admit(limits.room().await.unwrap(), a).unwrap();
        let _second = limits.admit(limits.room().await.unwrap(), a).unwrap();
        assert!(limits.admit(limits.room().await.unwrap(), a).is_none());
        assert!(limits.admit(limits.room().await.unwrap(), b).is_some());
        drop(first);
        assert!(limits.admit(limits.room().await.unwrap(), a).is_some());
    }

    #[tokio::test]
    async fn at_the_total_limit_room_waits_for_a_close() {
        let limits = ConnLimits::new(2, 0, Counter::default());
        let ip: IpAddr = "10.77.0.1".parse().unwrap();
        let one = limits.admit(limits.room().await.unwrap(), ip).unwrap();
        let _two = limits.admit(limits.room().await.unwrap(), ip).unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), limits.room());
        assert!(waiting.await.is_err(), "no room at the limit");
        drop(one);
        assert!(limits.room().await.is_some());
    }

    #[test]
    fn an_admission_is_two_pointers() {
        assert_eq!(std::mem::size_of::<Admitted>(), 16);
    }

    #[test]
    fn the_map_forgets_addresses_without_connections() {
        let limits = ConnLimits::new(10, 5, Counter::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ip: IpAddr = "10.77.0.9".parse().unwrap();
        let admitted = limits.admit(rt.block_on(limits.room()).unwrap(), ip);
        drop(admitted);
        let per_ip = limits.per_ip.as_ref().unwrap();
        assert!(per_ip.open.lock().unwrap().is_empty());
    }
}
