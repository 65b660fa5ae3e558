//! Redis Cluster: which master owns a key's slot, and one circuit breaker per master.
//!
//! One breaker for the whole cluster let a single dead master open it for every key, so
//! sessions whose slots lived on healthy masters were held too, and the held pins waited out
//! the dead master's backoff before they were written. Here each master has its own
//! [`Breaker`]: a dead or frozen master turns away only the keys it owns. The slot map comes
//! from `CLUSTER SLOTS`, read by the monitor (every [`crate::monitor`] tick while anything is
//! failing, else every second). When a replica is promoted, its slots move to a new owner
//! whose breaker starts closed, so writes reach it as soon as the map shows it, whatever the
//! backoff of the dead master's breaker.
//!
//! Keys whose slot has no known owner (map not read yet, or a slot without a master) share one
//! breaker, as do key-less commands. The slot is computed as Redis does: CRC16 (XMODEM) of the
//! key's hash tag, modulo 16384.

use std::sync::{Arc, RwLock};

use redis::Value;
use tracing::info;

use crate::breaker::Breaker;

pub const SLOTS: usize = 16384;
const NO_OWNER: u16 = u16::MAX;

/// The slot of a key, as Redis Cluster computes it.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let len = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &bytes[open + 1..open + 1 + len])
    });
    let mut crc: u16 = 0;
    for &b in tagged.unwrap_or(bytes) {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

/// One master of the cluster.
#[derive(Debug)]
struct Owner {
    address: String,
    breaker: Arc<Breaker>,
    /// A key in one of its slots: the monitor reads it to probe an open breaker.
    probe_key: String,
}

#[derive(Debug)]
struct SlotMap {
    owners: Vec<Owner>,
    /// Index into `owners` for each slot, `NO_OWNER` when unknown.
    slot_owner: Box<[u16]>,
}

/// The per-master breakers of a cluster link.
#[derive(Debug)]
pub struct Owners {
    map: RwLock<Arc<SlotMap>>,
    /// Keys of unknown owner and key-less commands.
    unknown: Arc<Breaker>,
    call_timeout: std::time::Duration,
}

/// A slot range and the address of its master, as `CLUSTER SLOTS` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub start: u16,
    pub end: u16,
    pub master: String,
}

impl Owners {
    pub fn new(call_timeout: std::time::Duration) -> Self {
        Self {
            map: RwLock::new(Arc::new(SlotMap {
                owners: Vec::new(),
                slot_owner: vec![NO_OWNER; SLOTS].into_boxed_slice(),
            })),
            unknown: Arc::new(Breaker::named(call_timeout, "unknown")),
            call_timeout,
        }
    }

    fn current(&self) -> Arc<SlotMap> {
        // Replaced whole, never left half-written: a poisoned lock is still valid.
        Arc::clone(&self.map.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The breaker guarding `key` (or key-less commands).
    pub fn breaker(&self, key: Option<&str>) -> Arc<Breaker> {
        let Some(key) = key else {
            return Arc::clone(&self.unknown);
        };
        let map = self.current();
        match map.slot_owner[usize::from(slot(key))] {
            NO_OWNER => Arc::clone(&self.unknown),
            i => Arc::clone(&map.owners[usize::from(i)].breaker),
        }
    }

    /// The master that owns `key`'s slot, if known.
    #[cfg(test)]
    pub fn owner_of(&self, key: &str) -> Option<String> {
        let map = self.current();
        match map.slot_owner[usize::from(slot(key))] {
            NO_OWNER => None,
            i => Some(map.owners[usize::from(i)].address.clone()),
        }
    }

    /// Every breaker (masters and the shared one).
    pub fn all(&self) -> Vec<Arc<Breaker>> {
        let map = self.current();
        let mut all: Vec<Arc<Breaker>> = map.owners.iter().map(|o| o.breaker.clone()).collect();
        all.push(Arc::clone(&self.unknown));
        all
    }

    /// The masters whose breaker is closed (`host`, `port`): where the slot map is read from.
    pub fn healthy(&self) -> Vec<(String, u16)> {
        self.current()
            .owners
            .iter()
            .filter(|o| o.breaker.is_closed())
            .filter_map(|o| {
                let (host, port) = o.address.rsplit_once(':')?;
                Some((host.to_string(), port.parse().ok()?))
            })
            .collect()
    }

    /// The probe keys of the masters whose breaker is not closed.
    pub fn probes(&self) -> Vec<String> {
        self.current()
            .owners
            .iter()
            .filter(|o| !o.breaker.is_closed())
            .map(|o| o.probe_key.clone())
            .collect()
    }

    /// Installs a new slot map. A master already known keeps its breaker (its failures are
    /// still its own); a new master (a promoted replica) gets a closed one.
    pub fn update(&self, ranges: &[Range]) {
        let old = self.current();
        let mut owners: Vec<Owner> = Vec::new();
        let mut slot_owner = vec![NO_OWNER; SLOTS].into_boxed_slice();
        for r in ranges {
            let idx = match owners.iter().position(|o| o.address == r.master) {
                Some(i) => i,
                None => {
                    let breaker = match old.owners.iter().find(|o| o.address == r.master) {
                        Some(o) => Arc::clone(&o.breaker),
                        None => {
                            if !old.owners.is_empty() {
                                info!(master = %r.master, "redis cluster: new master in the slot map");
                            }
                            Arc::new(Breaker::named(self.call_timeout, &r.master))
                        }
                    };
                    owners.push(Owner {
                        address: r.master.clone(),
                        breaker,
                        probe_key: String::new(),
                    });
                    owners.len() - 1
                }
            };
            let (start, end) = (usize::from(r.start), usize::from(r.end).min(SLOTS - 1));
            if start <= end {
                slot_owner[start..=end].fill(idx as u16);
            }
        }
        for (i, o) in owners.iter_mut().enumerate() {
            o.probe_key = probe_key(&slot_owner, i as u16);
        }
        *self.map.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(SlotMap { owners, slot_owner });
    }
}

/// A key whose slot belongs to owner `idx` (empty if it owns none; then it is never probed).
fn probe_key(slot_owner: &[u16], idx: u16) -> String {
    (0..SLOTS * 8)
        .map(|n| format!("fulcrum:probe:{{{n}}}"))
        .find(|k| slot_owner[usize::from(slot(k))] == idx)
        .unwrap_or_default()
}

/// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, ...], replicas...], ...]`.
pub fn parse_slots(reply: &Value) -> Option<Vec<Range>> {
    let Value::Array(items) = reply else {
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(fields) = item else {
            return None;
        };
        let start = int(fields.first()?)?;
        let end = int(fields.get(1)?)?;
        let Value::Array(master) = fields.get(2)? else {
            return None;
        };
        let host = text(master.first()?)?;
        let port = int(master.get(1)?)?;
        out.push(Range {
            start,
            end,
            master: format!("{host}:{port}"),
        });
    }
    Some(out)
}

fn int(v: &Value) -> Option<u16> {
    match v {
        Value::Int(i) => u16::try_from(*i).ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn ranges() -> Vec<Range> {
        vec![
            Range {
                start: 0,
                end: 5460,
                master: "a:1".into(),
            },
            Range {
                start: 5461,
                end: 10922,
                master: "b:2".into(),
            },
            Range {
                start: 10923,
                end: 16383,
                master: "c:3".into(),
            },
        ]
    }

    #[test]
    fn slot_function_matches_redis() {
        // Known vectors from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
    }

    #[test]
    fn each_master_has_its_own_breaker() {
        let o = Owners::new(Duration::from_millis(50));
        o.update(&ranges());
        let t0 = Instant::now();
        // A key of each master, through its probe key.
        let probes = o
            .current()
            .owners
            .iter()
            .map(|w| w.probe_key.clone())
            .collect::<Vec<_>>();
        assert_eq!(probes.len(), 3);
        assert_eq!(o.owner_of(&probes[1]).as_deref(), Some("b:2"));
        for _ in 0..crate::breaker::FAILURE_THRESHOLD {
            o.breaker(Some(&probes[0])).on_failure(t0);
        }
        assert!(!o.breaker(Some(&probes[0])).is_closed());
        assert!(o.breaker(Some(&probes[1])).is_closed());
        assert!(o.breaker(None).is_closed());
        assert_eq!(o.probes(), vec![probes[0].clone()]);
        // The same master in a new map keeps its open breaker; a promoted replica taking
        // its slots starts closed.
        o.update(&ranges());
        assert!(!o.breaker(Some(&probes[0])).is_closed());
        let mut promoted = ranges();
        promoted[0].master = "d:4".into();
        o.update(&promoted);
        assert!(o.breaker(Some(&probes[0])).is_closed());
        assert_eq!(o.owner_of(&probes[0]).as_deref(), Some("d:4"));
    }

    #[test]
    fn parses_cluster_slots() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id")]),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("id2")]),
        ])]);
        assert_eq!(
            parse_slots(&reply),
            Some(vec![Range {
                start: 0,
                end: 5460,
                master: "127.0.0.1:7000".into()
            }])
        );
        assert_eq!(parse_slots(&Value::Nil), None);
    }
}
