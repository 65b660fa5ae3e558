//! The last step of a planned hand-off, make before break: the stopping leader grants its
//! successor's vote with its fence still open (for at most one lease, reported in the
//! vote's fence report, so the successor's claim waits for it); once the successor leads
//! with a lease it asks the old holder for the traffic (`PeerRequest::HandOver`), the old
//! holder closes its fence and forwards what still reaches it to the successor's MAC, and
//! its answer lets the successor claim at once. Between the grant and the answer exactly
//! one kernel answers for the VIP, the old holder's; after it, only the successor's.
//!
//! Before it asks, the successor accepts the frames the old holder will forward (matched
//! by the old holder's MAC, learnt when the connection is opened, and only until its own
//! lease ends) and puts the address in place without announcing it: a SYN forwarded in the
//! instant between the old holder's switch and the successor's claim is answered, not
//! dropped. The old holder forwards only with its own fence closed, so a packet is still
//! answered by one kernel only.
//!
//! If the request is lost or refused, nothing is worse than without it: the old fence
//! lapses in the kernel when the bridge ends and the successor claims then.

use crate::detector::raft_addr;
use crate::lease::time::{instant_at, now_us};
use crate::lease::Lease;
use crate::network::{Channel, PeerPool};
use crate::rpc::{PeerRequest, PeerResponse};
use crate::types::{NodeId, Raft};

/// A successor that has been asked to take over by `old` in `asked_term`: waits (at most
/// three leases) until this node leads a later term with a lease, gets ready for the
/// frames `old` will forward (see [`crate::lease::StepDownHook::prepare_take_over`]), then
/// asks `old` for the traffic and, when it confirms, stops waiting for its fence.
pub(crate) async fn claim_from(
    lease: &Lease,
    raft: &Raft,
    pool: &PeerPool,
    old: NodeId,
    asked_term: u64,
) {
    let Some(addr) = raft_addr(raft, old) else {
        return;
    };
    let client = pool.get(old, &addr, Channel::Control);
    // Open the connection now, before the election, and learn the old holder's MAC (a
    // request for term 0 changes nothing): the hand-over request must not wait for a
    // handshake.
    let me = lease.read(|s| s.me());
    let warm = PeerRequest::HandOver {
        term: 0,
        from: me,
        mac: None,
    };
    let old_mac = match client.call(&warm, lease.timing.fence).await {
        Ok(PeerResponse::HandOver { mac, .. }) => mac,
        _ => None,
    };
    let mut leadership = lease.leadership();
    let within = lease.timing.fence * 3;
    let leading = leadership.wait_for(|l| l.term > asked_term && l.lease_until_us.is_some());
    let (term, lease_until) = match tokio::time::timeout(within, leading).await {
        Ok(Ok(l)) => (l.term, l.lease_until_us),
        _ => return,
    };
    // Only once every other fence this claim waits for has lapsed: the old holder's is the
    // only one its forward makes safe (the lease model found the case of a third node's).
    let others_lapsed = lease.read(|s| s.claim_after_except(old)) <= now_us();
    match (old_mac, lease_until) {
        (Some(from), Some(until)) if others_lapsed => {
            lease.prepare_take_over(from, instant_at(until));
        }
        _ => tracing::debug!(
            old,
            others_lapsed,
            "not accepting forwarded frames before the claim"
        ),
    }
    let ask = PeerRequest::HandOver {
        term,
        from: me,
        mac: lease.link_mac(),
    };
    lease
        .events
        .record("hand_over_asked", term, format!("of {old}"));
    match client.call(&ask, within).await {
        Ok(PeerResponse::HandOver { done: true, .. }) => {
            lease.released_by(old, term, now_us());
            lease
                .events
                .record("handed_over", term, format!("{old} closed its fence"));
        }
        other => {
            tracing::warn!(old, answer = ?other.map(|_| ()), "the old holder did not hand the VIP over; its fence lapses by itself");
        }
    }
}

/// The old holder's side of `PeerRequest::HandOver`.
pub(crate) fn answer(lease: &Lease, term: u64, from: NodeId, mac: Option<[u8; 6]>) -> PeerResponse {
    let started = std::time::Instant::now();
    let done = lease.hand_over(term, from, mac);
    tracing::info!(term, from, done, took = ?started.elapsed(), "hand-over asked by the successor");
    PeerResponse::HandOver {
        done,
        mac: lease.link_mac(),
    }
}
