//! Which Redis the store writes to, since when, and when its first write there landed: the
//! figures that show how fast a failover was followed (`AffinityStore::master`).
//!
//! Times are wall-clock (milliseconds since the Unix epoch) so they can be set against a
//! sentinel's announcement or another process's log.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the store knows about the server it writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterInfo {
    /// `host:port` of the server in use (for a cluster: its seed nodes).
    pub address: String,
    /// When the store started using it (ms since the Unix epoch).
    pub since_unix_ms: u64,
    /// When the first write (pin, re-pin, held pin) to it succeeded, if one has.
    pub first_write_unix_ms: Option<u64>,
    /// How many times the store switched to another master (Sentinel failovers followed).
    pub switches: u64,
}

#[derive(Debug, Default)]
pub struct MasterRecord {
    current: Mutex<Option<(String, u64)>>,
    /// 0 = no write yet since the last switch.
    first_write_ms: AtomicU64,
    switches: AtomicU64,
}

pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl MasterRecord {
    /// The store now writes to `address` (the first address is not counted as a switch).
    pub fn using(&self, address: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_some() {
            self.switches.fetch_add(1, Relaxed);
        }
        *current = Some((address.to_string(), unix_ms_now()));
        self.first_write_ms.store(0, Relaxed);
    }

    /// A write sent to `address` succeeded; remembers the time if it is the first to the
    /// server in use (a late answer from the previous master does not count).
    pub fn wrote(&self, address: &str) {
        if self.first_write_ms.load(Relaxed) != 0 {
            return;
        }
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(a, _)| a == address) {
            let _ = self
                .first_write_ms
                .compare_exchange(0, unix_ms_now(), Relaxed, Relaxed);
        }
    }

    pub fn info(&self) -> Option<MasterInfo> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let (address, since) = current.as_ref()?;
        let first = self.first_write_ms.load(Relaxed);
        Some(MasterInfo {
            address: address.clone(),
            since_unix_ms: *since,
            first_write_unix_ms: (first != 0).then_some(first),
            switches: self.switches.load(Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_write_is_per_master() {
        let r = MasterRecord::default();
        assert_eq!(r.info(), None);
        r.using("a:1");
        assert_eq!(r.info().unwrap().first_write_unix_ms, None);
        r.wrote("old:0");
        assert_eq!(r.info().unwrap().first_write_unix_ms, None);
        r.wrote("a:1");
        let first = r.info().unwrap().first_write_unix_ms.unwrap();
        r.wrote("a:1");
        assert_eq!(r.info().unwrap().first_write_unix_ms, Some(first));
        assert_eq!(r.info().unwrap().switches, 0);
        r.using("b:2");
        let info = r.info().unwrap();
        assert_eq!((info.address.as_str(), info.switches), ("b:2", 1));
        assert_eq!(info.first_write_unix_ms, None);
    }
}
