//! The leader's side of the lease: one lease stream per voter, a ping every heartbeat.
//!
//! `drive` watches Raft: while this node leads a term it keeps one `ping_voter` task per
//! other voter and republishes the lease every heartbeat (a one-voter cluster leases from
//! itself); it also nudges openraft's replication now and then (openraft's own heartbeats
//! are off: leases and failure detection are ours).
//!
//! A ping carries its sequence number; the voter's acknowledgement echoes it and the
//! pinger maps it back to the instant it was sent: a lease always starts at a *send*
//! instant, never at a receive instant.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{RaftMetrics, ServerState};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::frame::MAX_HANDSHAKE_FRAME;
use crate::network::{Channel, PeerPool};
use crate::rpc::{PeerRequest, PeerResponse};
use crate::sealed::{SealedConn, SealedReader, SealedWriter};
use crate::tls::PeerStream;
use crate::types::{NodeId, PeerNode, Raft};

use super::time::now_us;
use super::wire::{LeaseAck, LeasePing};
use super::Lease;

/// How often openraft's replication is nudged while leading (catch-up of lagging
/// followers, commit propagation when idle).
const REPLICATION_NUDGE: Duration = Duration::from_millis(250);
/// Pings whose send instants are remembered for matching acknowledgements.
const IN_FLIGHT: usize = 64;
/// Budget to open a lease stream (connect, authenticate, switch mode).
const OPEN_BUDGET: Duration = Duration::from_millis(500);

/// A second clock for the pingers, beside tokio's timer: the node's real-time ticker
/// thread calls [`clock_tick`] every couple of milliseconds.
///
/// On the test bed (2 cores under compile load, debug build) the control runtime was seen
/// with both workers asleep (one in `epoll_wait`, one parked) while a 1 ms timer was 13-15
/// ms overdue; a leader whose ping timer is that late loses its lease (`lease -
/// heartbeat` = 15 ms of slack) with no fault anywhere. A wake-up from another thread does
/// not depend on the runtime's timer wheel.
static CLOCK: Notify = Notify::const_new();

/// Wakes every pinger (see [`CLOCK`]); cheap, callable from any thread.
pub fn clock_tick() {
    CLOCK.notify_waiters();
}

/// A ping is due when this much of the heartbeat has passed (the two clocks tick at
/// different phases).
const DUE_SLACK_US: u64 = 1_000;

/// A ping more than this many heartbeats after the previous one is logged as late.
const LATE_PING_HEARTBEATS: u64 = 3;

/// The voter that should campaign first when this leader goes away; 0 = none.
#[derive(Debug, Default)]
pub struct SuccessorHint(AtomicU64);

impl SuccessorHint {
    fn set(&self, id: Option<NodeId>) {
        self.0.store(id.unwrap_or(0), Ordering::Relaxed);
    }
    fn get(&self) -> Option<NodeId> {
        Some(self.0.load(Ordering::Relaxed)).filter(|id| *id != 0)
    }
}

/// What `drive` needs.
pub struct Driver {
    pub lease: Arc<Lease>,
    pub raft: Raft,
    pub pool: PeerPool,
    pub me: NodeId,
    pub shutdown: watch::Receiver<bool>,
}

/// Keeps a pinger per voter while this node leads; stops with `shutdown`.
pub async fn drive(d: Driver) {
    let mut shutdown = d.shutdown.clone();
    let hint = Arc::new(SuccessorHint::default());
    let mut tick = tokio::time::interval(d.lease.timing.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pingers: BTreeMap<(NodeId, u64), JoinHandle<()>> = BTreeMap::new();
    let mut last_nudge = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
            () = d.lease.leads.notified() => {}
        }
        let m = d.raft.metrics().borrow().clone();
        let leading = leading_term(&d.lease, &m);
        let membership = m.membership_config.membership();
        let targets: Vec<(NodeId, String)> = match leading {
            Some(_) => membership
                .voter_ids()
                .filter(|id| *id != d.me)
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.raft_addr.clone())))
                .collect(),
            None => Vec::new(),
        };
        pingers.retain(|(id, term), task| {
            let keep = leading == Some(*term)
                && targets.iter().any(|(t, _)| t == id)
                && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        if let Some(term) = leading {
            hint.set(crate::successor::best_successor(&d.raft, d.me).map(|(id, _)| id));
            for (id, addr) in targets {
                pingers.entry((id, term)).or_insert_with(|| {
                    tokio::spawn(ping_voter(PingTarget {
                        lease: d.lease.clone(),
                        raft: d.raft.clone(),
                        pool: d.pool.clone(),
                        me: d.me,
                        id,
                        addr,
                        term,
                        hint: hint.clone(),
                    }))
                });
            }
            if last_nudge.elapsed() >= REPLICATION_NUDGE {
                last_nudge = std::time::Instant::now();
                let _ = d.raft.trigger().heartbeat().await;
            }
        }
        // Republish: the lease moves with the clock (and a lone voter leases from itself).
        d.lease.with(|_| ());
    }
    for (_, task) in pingers {
        task.abort();
    }
}

struct PingTarget {
    lease: Arc<Lease>,
    raft: Raft,
    pool: PeerPool,
    me: NodeId,
    id: NodeId,
    addr: String,
    term: u64,
    hint: Arc<SuccessorHint>,
}

impl PingTarget {
    fn still_leading(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        leading_term(&self.lease, &m) == Some(self.term)
    }
}

/// The term this node leads: Raft's, or already the lease's once a quorum granted its
/// votes, while Raft's metrics still say candidate (they catch up once its first entry
/// is on disk, 5-10 ms later on a loaded host). The VIP may be claimed from the votes'
/// lease, so the pings that extend it start then too: waiting for Raft let that first
/// lease (what remains of the fence after the votes, about 15 ms) run out before the
/// first acknowledgement came, and the kernel fence shut for a few milliseconds under
/// the new holder (a SYN lost in CI, its client waiting a second to retry).
fn leading_term(lease: &Lease, m: &RaftMetrics<NodeId, PeerNode>) -> Option<u64> {
    if m.state == ServerState::Leader {
        return Some(m.current_term);
    }
    let term = lease.leading_term();
    (m.state == ServerState::Candidate && term != 0 && term == m.current_term).then_some(term)
}

/// Pings one voter for as long as this node leads `term`; re-opens the stream after any
/// failure or when acknowledgements stall for longer than the fence.
async fn ping_voter(t: PingTarget) {
    let hb = t.lease.timing.heartbeat;
    while t.still_leading() {
        match open(&t).await {
            Some(stream) => run_stream(&t, stream).await,
            None => tokio::time::sleep(hb).await,
        }
    }
}

async fn open(t: &PingTarget) -> Option<SealedConn<PeerStream>> {
    let client = t.pool.get(t.id, &t.addr, Channel::Lease);
    let opened = tokio::time::timeout(OPEN_BUDGET, async {
        let mut s = client.open_stream().await.ok()?;
        s.send(&PeerRequest::OpenLease).await.ok()?;
        match s.recv::<PeerResponse>(MAX_HANDSHAKE_FRAME).await {
            Ok(PeerResponse::LeaseOpened) => Some(s),
            _ => None,
        }
    })
    .await;
    match opened {
        Ok(Some(s)) => Some(s),
        _ => {
            tracing::debug!(voter = t.id, addr = %t.addr, "lease stream not opened; retrying");
            None
        }
    }
}

type Sent = Arc<Mutex<VecDeque<(u64, u64)>>>;

async fn run_stream(t: &PingTarget, stream: SealedConn<PeerStream>) {
    let (rd, wr) = stream.into_split();
    let sent: Sent = Arc::new(Mutex::new(VecDeque::with_capacity(IN_FLIGHT)));
    let last_ack = Arc::new(AtomicU64::new(now_us()));
    tokio::select! {
        _ = read_acks(t, rd, sent.clone(), last_ack.clone()) => {}
        _ = write_pings(t, wr, sent, last_ack) => {}
    }
}

async fn write_pings(
    t: &PingTarget,
    mut wr: SealedWriter<WriteHalf<PeerStream>>,
    sent: Sent,
    last_ack: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(t.lease.timing.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stall = t.lease.timing.fence.as_micros() as u64;
    let due_after = (t.lease.timing.heartbeat.as_micros() as u64).saturating_sub(DUE_SLACK_US);
    let mut seq = 0u64;
    let mut last_sent = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = CLOCK.notified() => {}
        }
        if now_us().saturating_sub(last_sent) < due_after {
            continue;
        }
        if !t.still_leading() {
            return;
        }
        if now_us().saturating_sub(last_ack.load(Ordering::Relaxed)) > stall {
            tracing::debug!(
                voter = t.id,
                "lease acknowledgements stalled; re-opening the stream"
            );
            return;
        }
        let gap = now_us().saturating_sub(last_sent);
        if last_sent != 0
            && gap > LATE_PING_HEARTBEATS * t.lease.timing.heartbeat.as_micros() as u64
        {
            // Tells a stalled leader (its control thread did not run) from pings delayed
            // on their way (the voter's "leader went silent" with no such line here).
            tracing::warn!(
                voter = t.id,
                gap_us = gap,
                "lease ping sent late: this node's control thread did not run in time"
            );
        }
        seq += 1;
        let ping = LeasePing {
            term: t.term,
            leader: t.me,
            seq,
            successor: t.hint.get(),
        };
        {
            let mut s = sent.lock().unwrap_or_else(|p| p.into_inner());
            if s.len() == IN_FLIGHT {
                s.pop_front();
            }
            last_sent = now_us();
            s.push_back((seq, last_sent));
        }
        if wr.send(&ping).await.is_err() {
            return;
        }
    }
}

async fn read_acks(
    t: &PingTarget,
    mut rd: SealedReader<ReadHalf<PeerStream>>,
    sent: Sent,
    last_ack: Arc<AtomicU64>,
) {
    loop {
        let ack: LeaseAck = match rd.recv(MAX_HANDSHAKE_FRAME).await {
            Ok(a) => a,
            Err(_) => return,
        };
        last_ack.store(now_us(), Ordering::Relaxed);
        if ack.term > t.term {
            t.lease.observe_term(ack.term, "a voter knows a newer term");
            return;
        }
        let sent_at = {
            let s = sent.lock().unwrap_or_else(|p| p.into_inner());
            s.iter().find(|(seq, _)| *seq == ack.seq).map(|(_, at)| *at)
        };
        if let (true, Some(at)) = (ack.accepted, sent_at) {
            t.lease.with(|s| s.on_ping_acked(t.term, t.id, at));
        }
    }
}
