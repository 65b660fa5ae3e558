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

/// Raft's current term on this node, and the (term, leader) it recognizes in it.
pub fn raft_view(raft: &Raft) -> (u64, Option<(u64, u64)>) {
    let m = raft.metrics();
    let m = m.borrow();
    let vote = m.vote.leader_id();
    (
        m.current_term,
        recognized(
            m.current_term,
            m.current_leader,
            vote.term,
            vote.voted_for(),
        ),
    )
}

/// The leader Raft on this node recognizes in `term`: the one it heard from, else the
/// candidate it voted for in that term.
///
/// A node votes once per term, and a node pings only once a quorum granted it their votes
/// (Raft says it leads, or its lease counted the quorum first): a ping of the candidate
/// this node voted for in the current term can only come from that term's leader. Before, a voter waited for the new leader's first AppendEntries before it
/// acknowledged any ping, so a leader whose AppendEntries were slow (openraft backs off
/// 500 ms after a peer was unreachable, as at cluster start) held the VIP on the lease its
/// votes gave (`lease`, 20 ms) and lost it when that ran out.
pub fn recognized(
    term: u64,
    leader: Option<u64>,
    vote_term: u64,
    voted_for: Option<u64>,
) -> Option<(u64, u64)> {
    match leader {
        Some(l) => Some((term, l)),
        None => voted_for
            .filter(|_| vote_term == term)
            .map(|candidate| (term, candidate)),
    }
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

#[cfg(test)]
mod tests {
    use super::super::rules::accept_ping;
    use super::*;

    #[test]
    fn the_candidate_this_voter_elected_is_acknowledged_before_its_first_append() {
        // Voted for node 2 in term 5; no AppendEntries from it yet.
        let view = recognized(5, None, 5, Some(2));
        assert_eq!(view, Some((5, 2)));
        assert!(accept_ping(5, 2, view, 5));
        // Another node claiming term 5 is not this voter's choice.
        assert!(!accept_ping(5, 3, view, 5));
        // A vote of an older term names nobody in this one.
        assert_eq!(recognized(6, None, 5, Some(2)), None);
        // The leader Raft heard from wins over the vote.
        assert_eq!(recognized(5, Some(3), 5, Some(2)), Some((5, 3)));
        // A vote granted in a newer term refuses the older leader's pings.
        assert!(!accept_ping(5, 2, view, 6));
    }
}
