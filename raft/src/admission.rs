//! Who may hold a connection to the Raft port before proving the cluster secret.
//!
//! A flood of idle connections from one host must not lock the peers out (after a leader
//! crash nobody could be elected while it lasts). Connections from the configured peers'
//! addresses draw from their own, larger pool; anyone else shares a small pool with a cap
//! per source address. A slot is held until the connection closes; authentication still
//! decides what reaches Raft.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

/// Connections from peer addresses, in all.
const PEER_SLOTS: usize = 256;
/// Connections from one peer address (each peer keeps a few channels).
const PER_PEER_ADDR: usize = 64;
/// Connections from other addresses, in all.
const OTHER_SLOTS: usize = 32;
/// Connections from one other address.
const PER_OTHER_ADDR: usize = 4;

#[derive(Default)]
struct Counts {
    peers: usize,
    others: usize,
    per_addr: HashMap<IpAddr, usize>,
}

/// Admission control of the Raft port.
#[derive(Default)]
pub struct Admission {
    peers: RwLock<BTreeSet<IpAddr>>,
    counts: Mutex<Counts>,
}

/// A held connection slot; released on drop.
pub struct Slot {
    admission: Arc<Admission>,
    addr: IpAddr,
    peer: bool,
}

impl Admission {
    /// The addresses of the configured peers (static peer list and membership).
    pub fn set_peers(&self, addrs: impl IntoIterator<Item = IpAddr>) {
        let addrs: BTreeSet<IpAddr> = addrs.into_iter().collect();
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        if *peers != addrs {
            *peers = addrs;
        }
    }

    /// A slot for a connection from `addr`, or `None` when its pool is full.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Slot> {
        let peer = {
            let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
            // Peers on loopback (a cluster on one host) dial from any 127.0.0.0/8 source
            // the kernel picks; a process on the same host can do worse than a flood.
            peers.contains(&addr) || (addr.is_loopback() && peers.iter().any(IpAddr::is_loopback))
        };
        let (total_cap, per_cap) = if peer {
            (PEER_SLOTS, PER_PEER_ADDR)
        } else {
            (OTHER_SLOTS, PER_OTHER_ADDR)
        };
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let total = if peer { c.peers } else { c.others };
        let mine = c.per_addr.get(&addr).copied().unwrap_or(0);
        if total >= total_cap || mine >= per_cap {
            return None;
        }
        if peer {
            c.peers += 1;
        } else {
            c.others += 1;
        }
        *c.per_addr.entry(addr).or_insert(0) += 1;
        Some(Slot {
            admission: self.clone(),
            addr,
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.peer {
            c.peers = c.peers.saturating_sub(1);
        } else {
            c.others = c.others.saturating_sub(1);
        }
        if let Some(n) = c.per_addr.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_addr.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_count_as_peers_of_a_loopback_cluster() {
        let a = Arc::new(Admission::default());
        a.set_peers(["127.0.0.21".parse().unwrap(), "127.0.0.22".parse().unwrap()]);
        let from: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<Slot> = (0..PER_OTHER_ADDR + 4)
            .filter_map(|_| a.admit(from))
            .collect();
        assert_eq!(held.len(), PER_OTHER_ADDR + 4);
        // A LAN cluster gives loopback no special treatment.
        let b = Arc::new(Admission::default());
        b.set_peers(["10.77.1.1".parse().unwrap()]);
        let held: Vec<Slot> = (0..PER_OTHER_ADDR + 4)
            .filter_map(|_| b.admit(from))
            .collect();
        assert_eq!(held.len(), PER_OTHER_ADDR);
    }

    #[test]
    fn a_flooding_stranger_cannot_take_the_peers_slots() {
        let a = Arc::new(Admission::default());
        let peer: IpAddr = "10.77.0.11".parse().unwrap();
        let stranger: IpAddr = "10.77.0.99".parse().unwrap();
        a.set_peers([peer]);
        let held: Vec<Slot> = (0..PER_OTHER_ADDR)
            .filter_map(|_| a.admit(stranger))
            .collect();
        assert_eq!(held.len(), PER_OTHER_ADDR);
        assert!(a.admit(stranger).is_none(), "per-address cap");
        let others: Vec<Slot> = (1..=20u8)
            .flat_map(|i| {
                let ip: IpAddr = format!("10.77.1.{i}").parse().unwrap();
                std::iter::repeat_n(ip, PER_OTHER_ADDR)
            })
            .filter_map(|ip| a.admit(ip))
            .collect();
        assert_eq!(
            held.len() + others.len(),
            OTHER_SLOTS,
            "shared pool is full"
        );
        assert!(a.admit(peer).is_some(), "a peer still gets in");
        drop(held);
        assert!(a.admit(stranger).is_some(), "slots come back on drop");
    }
}
