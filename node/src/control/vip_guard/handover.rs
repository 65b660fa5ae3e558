//! Both ends of a planned hand-over, make before break, as the VIP guard does them.
//!
//! The stopping holder, asked by its successor (`switch_to_successor`):
//! 1. makes its kernel note every connection it sends a packet on (`Fence::keep_outgoing`),
//!    so that a connection whose SYN arrives from now on is kept whatever the listing says;
//! 2. lists the VIP's connections (one `sock_diag` dump; a few ms on a busy host);
//! 3. in one transaction: closes its fence, keeps the listed connections, and forwards
//!    everything else for the VIP to the successor's MAC;
//! 4. keeps the address, unannounced, until its connections are done.
//!
//! The successor, before it asks (`stage_take_over`): accepts the frames the old holder
//! will forward (by its MAC, until its own lease ends) and puts the address in place
//! without announcing it, so that a SYN forwarded between the old holder's switch and the
//! successor's claim is answered instead of dropped; and sends the packets of connections
//! it does not know back to the old holder, whose clients move here with the gratuitous
//! ARP while it still finishes their connections (`fulcrum_vip::Fence::take_over`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fulcrum_vip::{Fence, Forward};

use super::VipGuard;

/// How long a handed-over node forwards the VIP's packets to its successor: clients that
/// have not taken in the successor's gratuitous ARP yet keep sending here meanwhile.
pub(in crate::control) const FORWARD_AFTER_HAND_OVER: Duration = Duration::from_secs(3);

/// How long a handed-over node keeps the address for the connections it accepted before
/// (the process normally exits sooner: once they are done, or at its shutdown grace).
pub(in crate::control) const KEEP_AFTER_HAND_OVER: Duration = Duration::from_secs(30);

/// How often a handed-over node looks whether its kept connections are done.
const KEPT_POLL: Duration = Duration::from_millis(10);

/// Which connections hold a handed-over node's address.
pub(in crate::control) enum Kept {
    /// Every connection to the VIP: the kernel kept each one it answered after the
    /// listing too (egress hook).
    All,
    /// Only those listed before the switch (a later one lost its client to the successor).
    Listed(Vec<(Ipv4Addr, u16)>),
}

impl VipGuard {
    /// The old holder's side: the successor leads and asks for the traffic.
    pub(super) fn switch_to_successor(&self, to: Option<[u8; 6]>) {
        let mut fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        *self.bridge.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut kept = Kept::Listed(Vec::new());
        let closed = match (fence.as_mut(), to) {
            (Some(f), Some(to)) => match self.switch(f, to) {
                Ok(k) => {
                    kept = k;
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(error = %e, "starting the hand-over forward failed; closing the fence");
                    f.close_all()
                }
            },
            (Some(f), None) => f.close_all(),
            (None, _) => Ok(()),
        };
        if let Err(e) = closed {
            tracing::error!(error = %e, "closing the VIP fence failed; it lapses with the bridge");
        }
        let keeps = !matches!(&kept, Kept::Listed(l) if l.is_empty());
        if keeps && self.held.swap(false, Ordering::Relaxed) {
            // The address stays, unannounced, until the connections accepted before are done.
            let _span = tracing::info_span!("vip", transition = "release").entered();
            let term = self.held_term.swap(0, Ordering::Relaxed);
            self.record("release", term, "handed over; finishing its connections");
            keep_until_done(&self.controller, self.address, kept);
        } else {
            self.let_go("handed over to the successor");
        }
        drop(fence);
        self.bridge_ended.notify_waiters();
    }

    /// Steps 1-3 of the module doc. Returns which connections keep the address.
    fn switch(&self, f: &mut Fence, to: [u8; 6]) -> Result<Kept, fulcrum_vip::VipError> {
        let keep_ms = KEEP_AFTER_HAND_OVER.as_millis() as u64;
        let noted = f.keep_outgoing(keep_ms).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot keep the connections answered from now on");
            false
        });
        // One dump (a few ms on a host with a big socket table): the switch waits for it.
        let mut keep = self.connections();
        let listed = keep.clone();
        if keep.len() > Fence::KEEP_IN_SWITCH {
            // Most of them first; the switch carries those accepted meanwhile.
            if let Err(e) = f.keep(&keep, keep_ms) {
                tracing::warn!(error = %e, "keeping the VIP's connections failed; some will be cut");
            }
            let before = keep;
            keep = self.connections();
            keep.retain(|c| !before.contains(c));
        }
        f.hand_over(Forward {
            to,
            from: self.controller.link_mac(),
            for_ms: FORWARD_AFTER_HAND_OVER.as_millis() as u64,
            keep,
            keep_ms,
        })?;
        tracing::info!(
            listed = listed.len(),
            noted,
            "fence closed; new connections go to the successor"
        );
        Ok(if noted {
            Kept::All
        } else {
            Kept::Listed(listed)
        })
    }

    /// The successor's side, before it asks `from` (the old holder's MAC) for the traffic,
    /// leading with a lease until `until`.
    pub(super) fn stage_take_over(&self, from: [u8; 6], until: Instant) {
        let mut fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        // Without a fence of our own the address would answer everything: stage nothing.
        let Some(f) = fence.as_mut() else { return };
        let return_ms = KEEP_AFTER_HAND_OVER.as_millis() as u64;
        match f.take_over(from, self.controller.link_mac(), until, return_ms) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare the take-over; forwarded frames are dropped until the claim");
                return;
            }
        }
        drop(fence);
        self.controller.stage_until(until);
        let left = until.saturating_duration_since(Instant::now());
        self.record(
            "stage",
            0,
            &format!("forwarded frames accepted for {} µs", left.as_micros()),
        );
    }

    /// The VIP's connections that still need packets from their clients (IPv4 only).
    fn connections(&self) -> Vec<(Ipv4Addr, u16)> {
        match self.address {
            IpAddr::V4(v4) => fulcrum_vip::tcp_peers_of(v4).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot list the VIP's connections");
                Vec::new()
            }),
            IpAddr::V6(_) => Vec::new(),
        }
    }
}

/// A handed-over node keeps its address, unannounced, for the connections it kept, and
/// deletes it once they are done (at the latest after `KEEP_AFTER_HAND_OVER`).
pub(in crate::control) fn keep_until_done(
    controller: &fulcrum_vip::VipController,
    address: IpAddr,
    kept: Kept,
) {
    let until = Instant::now() + KEEP_AFTER_HAND_OVER;
    controller.keep_quietly_until(until);
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(drop_address_when_done(
            controller.dropper(),
            address,
            kept,
            until,
        ));
    }
}

/// Deletes a handed-over node's address once the connections it kept are done, or at
/// `until`, when the controller lets go by itself.
async fn drop_address_when_done(
    dropper: fulcrum_vip::AddressDropper,
    address: IpAddr,
    kept: Kept,
    until: Instant,
) {
    let IpAddr::V4(v4) = address else { return };
    // The first look is at once: with no connection left, the address goes now.
    while Instant::now() < until {
        let Ok(open) = fulcrum_vip::tcp_peers_of(v4) else {
            tokio::time::sleep(KEPT_POLL).await;
            continue;
        };
        let done = match &kept {
            Kept::All => open.is_empty(),
            Kept::Listed(listed) => !open.iter().any(|p| listed.contains(p)),
        };
        if done {
            dropper.drop_address("the connections kept after the hand-over are done");
            return;
        }
        tokio::time::sleep(KEPT_POLL).await;
    }
}
