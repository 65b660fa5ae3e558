//! The voter's side of a lease stream: answer every ping of the leader, in order.
//!
//! The stream is a connection the leader opened for pings only, so a slow AppendEntries on
//! the Raft channel never delays an acknowledgement. When the stream ends while this voter
//! still follows the pinging leader, the detector is told at once: a killed process's
//! kernel closes its sockets, so this is how a crash is noticed in microseconds.

use std::sync::Arc;

use crate::frame::MAX_HANDSHAKE_FRAME;
use crate::sealed::SealedConn;
use crate::tls::PeerStream;
use crate::types::Raft;

use super::time::now_us;
use super::wire::{LeaseAck, LeasePing};
use super::Lease;

/// Raft's current (term, leader) on this node, if it knows a leader.
pub fn raft_view(raft: &Raft) -> (u64, Option<(u64, u64)>) {
    let m = raft.metrics();
    let m = m.borrow();
    (
        m.current_term,
        m.current_leader.map(|l| (m.current_term, l)),
    )
}

/// Serves pings until the leader closes the stream or a write fails.
pub async fn serve(mut stream: SealedConn<PeerStream>, lease: Arc<Lease>, raft: Raft) {
    let mut pinger: Option<u64> = None;
    loop {
        let ping: LeasePing = match stream.recv(MAX_HANDSHAKE_FRAME).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(leader = ?pinger, error = %e, "lease stream ended");
                break;
            }
        };
        pinger = Some(ping.leader);
        // A leader of a lower term that hears of a higher one stops holding at once.
        lease.observe_term(ping.term, "lease ping of a newer term");
        let (term, view) = raft_view(&raft);
        let now = now_us();
        let accepted = lease.with(|s| s.on_ping(ping.term, ping.leader, ping.successor, view, now));
        let ack = LeaseAck {
            seq: ping.seq,
            accepted,
            term,
        };
        if let Err(e) = stream.send(&ack).await {
            tracing::debug!(leader = ping.leader, error = %e, "lease ack not sent");
            break;
        }
    }
    if let Some(leader) = pinger {
        let followed = lease.read(|s| s.following().map(|f| f.leader));
        if followed == Some(leader) {
            lease.stream_closed(leader);
        }
    }
}
