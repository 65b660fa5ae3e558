//! Both ends of a make-before-break move of one `[[vip]]` address between two live nodes
//! (`ctl drain-node`, SIGTERM, rebalancing), as the leader's grant table orders them
//! (`fulcrum_raft::vip_grant`):
//!
//! - the new owner, told to *stage*, accepts the frames the old holder will forward for
//!   that address (by the old holder's MAC, until its ask's send instant plus one grant)
//!   and puts the address in place without announcing it (`Fence::take_over_some`);
//! - the old holder, told to *hand over* once the new owner is staged, closes its fence for
//!   the address and in the same transaction forwards its packets to the new owner's MAC,
//!   keeping the connections it already has (`Fence::hand_over_some`); it keeps the
//!   address, unannounced, until those are done;
//! - the new owner is granted as soon as the old holder says it let go, and claims.
//!
//! A SYN sent to the old holder's MAC in between is forwarded and answered by the new
//! owner; no instant has two nodes answering the address.

use std::net::IpAddr;
use std::time::Instant;

use fulcrum_raft::vip_grant::Mac;
use fulcrum_vip::{Fence, Forward};

use super::super::vip_guard::handover::{
    keep_until_done, Kept, FORWARD_AFTER_HAND_OVER, KEEP_AFTER_HAND_OVER,
};
use super::{lock, Spread};

/// The old holder's side: hand `v` over to the node whose MAC is `to`. Returns whether the
/// fence switched (if not, the caller closes it the ordinary way).
pub(super) fn hand_over(fence: &mut Fence, v: &Spread, to: Mac) -> bool {
    let IpAddr::V4(v4) = v.ip else {
        return false;
    };
    let keep_ms = KEEP_AFTER_HAND_OVER.as_millis() as u64;
    let noted = fence.keep_outgoing(keep_ms).unwrap_or_else(|e| {
        tracing::warn!(vip = %v.ip, error = %e, "cannot keep the connections answered from now on");
        false
    });
    let listed = fulcrum_vip::tcp_peers_of(v4).unwrap_or_else(|e| {
        tracing::warn!(vip = %v.ip, error = %e, "cannot list the address's connections");
        Vec::new()
    });
    if listed.len() > Fence::KEEP_IN_SWITCH {
        if let Err(e) = fence.keep(&listed, keep_ms) {
            tracing::warn!(vip = %v.ip, error = %e, "keeping the connections failed; some will be cut");
        }
    }
    let forward = Forward {
        to,
        from: v.controller.link_mac(),
        for_ms: FORWARD_AFTER_HAND_OVER.as_millis() as u64,
        keep: listed.clone(),
        keep_ms,
    };
    if let Err(e) = fence.hand_over_some(&[v.ip], forward) {
        tracing::error!(vip = %v.ip, error = %e, "handing the address over failed; closing its fence");
        return false;
    }
    let kept = if noted {
        Kept::All
    } else {
        Kept::Listed(listed.clone())
    };
    keep_until_done(&v.controller, v.ip, kept);
    *lock(&v.staged_until) = None;
    if v.held.swap(false, std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(vip = %v.ip, listed = listed.len(), "handed a spread VIP over; finishing its connections");
    }
    true
}

/// The new owner's side: accept what the node with MAC `from` forwards for `v` until
/// `until`, with the address in place but unannounced.
pub(super) fn stage(fence: &mut Fence, v: &Spread, from: Mac, until: Instant) {
    let return_ms = KEEP_AFTER_HAND_OVER.as_millis() as u64;
    match fence.take_over_some(&[v.ip], from, v.controller.link_mac(), until, return_ms) {
        Ok(true) => {
            v.controller.stage_until(until);
            let first = lock(&v.staged_until).replace(until).is_none();
            if first {
                tracing::info!(vip = %v.ip, "staged for a spread VIP; accepting what its holder forwards");
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(vip = %v.ip, error = %e, "cannot stage; the move will drop what arrives before the claim");
        }
    }
}
