//! Failure detection on the voters: notice a lost leader within milliseconds, agree on it
//! (pre-vote), and let one designated successor campaign first.
//!
//! Two signals, fastest first:
//! - **Crash**: the leader's lease stream closed (its kernel closes a dead process's
//!   sockets at once) and a connect to its Raft port is refused: the process is gone.
//! - **Silence**: no ping accepted for `silence` (node death, link down, freeze, partition).
//!
//! A suspecting voter first asks the others whether they would vote (`PreVote`); only when
//! a majority agrees does it ask openraft to elect. openraft's own election timer is off:
//! without the pre-vote, one voter with a bad cable could raise the term and depose a
//! healthy leader. The leader names its successor in every ping (the most up-to-date
//! voter); any other voter waits `stagger` longer, so votes do not split.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::lease::rules::{self, Suspicion};
use crate::lease::time::now_us;
use crate::lease::wire::PreVote;
use crate::lease::Lease;
use crate::log_store::LastLog;
use crate::network::{Channel, PeerPool};
use crate::rpc::{AppError, PeerRequest, PeerResponse};
use crate::types::{NodeId, Raft, Response};

/// Budget of the connect that tells a dead process from a live one.
const PROBE_BUDGET: Duration = Duration::from_millis(20);
/// After a lease stream closed: budget of each probe, and the pause between probes.
///
/// A killed process's kernel closes its file descriptors one by one, and the lease stream
/// can close before the Raft listener: a probe sent at once is then accepted by the dying
/// listener, or its SYN is lost when the listener goes. (Not ascending fd order: on the
/// test bed the listener is fd 20 and the leader's lease streams fds 21-24; why the
/// streams go first was not verified.) Measured on the test bed (debug build, 6 kills of the leader, 2 voters
/// each): the stream closed 1.4-3.3 ms after the kill, and a single probe answered
/// "accepted" for 9 and nothing for 1 of the 12 closed streams. So the detector probes
/// again, briefly, until the port refuses or half the silence threshold has passed
/// (silence catches the rest).
const RETRY_BUDGET: Duration = Duration::from_millis(3);
const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// How often idle connections to the other voters are re-opened if they dropped.
const WARM_EVERY: Duration = Duration::from_millis(500);

/// What the detector needs.
pub struct Detector {
    pub lease: Arc<Lease>,
    pub raft: Raft,
    pub pool: PeerPool,
    pub me: NodeId,
    pub shutdown: watch::Receiver<bool>,
    /// openraft's vote lease: after an AppendEntries a follower refuses every vote for
    /// this long (its `election_timeout_max`).
    pub raft_vote_lease: Duration,
    /// This node's last log entry, sent with its pre-votes.
    pub last_log: LastLog,
}

/// Longest a take-over waits for openraft's vote lease to run out.
const TAKE_OVER_LEASE_WAIT_US: u64 = 200_000;

/// Slack on openraft's vote lease: the other voters handled the same AppendEntries a
/// little later than this one.
const VOTE_LEASE_SLACK_US: u64 = 2_000;

/// Is the process behind `addr` gone? `Some(true)`: refused (dead), `Some(false)`: it
/// accepted (alive, maybe frozen), `None`: no answer in time.
pub async fn probe(addr: &str) -> Option<bool> {
    probe_within(addr, PROBE_BUDGET).await
}

async fn probe_within(addr: &str, budget: Duration) -> Option<bool> {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return None;
    };
    match tokio::time::timeout(budget, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Some(false),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(true),
        _ => None,
    }
}

pub(crate) fn raft_addr(raft: &Raft, id: NodeId) -> Option<String> {
    let m = raft.metrics();
    let m = m.borrow();
    m.membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.raft_addr.clone())
}

/// One failover episode as the detector tracks it.
#[derive(Default)]
struct Episode {
    suspected_at: Option<u64>,
    next_attempt: u64,
}

/// Runs until shutdown.
pub async fn run(d: Detector) {
    let t = d.lease.timing;
    let mut shutdown = d.shutdown.clone();
    let mut tick = tokio::time::interval((t.heartbeat / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut episode = Episode::default();
    let mut raft_leader: Option<(u64, NodeId)> = None;
    let mut last_warm = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
            _ = d.lease.wake.notified() => {}
        }
        if let Some((leader, closed_at)) = d.lease.take_closed_stream() {
            confirm_crash(&d, leader, closed_at).await;
        }
        let m = d.raft.metrics().borrow().clone();
        let view = m.current_leader.map(|l| (m.current_term, l));
        if view != raft_leader {
            raft_leader = view;
            d.lease.with(|s| s.on_raft_leader_changed(now_us()));
        }
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        if m.state == ServerState::Leader || !voters.contains(&d.me) || d.lease.handing_off() {
            episode = Episode::default();
            continue;
        }
        if last_warm.elapsed() >= WARM_EVERY {
            last_warm = std::time::Instant::now();
            warm(&d, &voters).await;
        }
        step(&d, &mut episode, &voters, m.current_term).await;
    }
}

/// The leader's lease stream closed: is its process gone?
async fn confirm_crash(d: &Detector, leader: NodeId, closed_at: u64) {
    let Some(addr) = raft_addr(&d.raft, leader) else {
        return;
    };
    let give_up = closed_at + (d.lease.timing.silence.as_micros() as u64) / 2;
    let still_following = || d.lease.read(|s| s.following().map(|f| f.leader)) == Some(leader);
    let (verdict, tries) = probe_until_refused(&addr, give_up, still_following).await;
    d.lease.events.record_at(
        closed_at,
        "stream_closed",
        0,
        format!(
            "leader {leader}; probe {} after {tries} tries",
            describe_probe(verdict)
        ),
    );
    if verdict == Some(true) {
        let now = now_us();
        d.lease.with(|s| s.confirm_crash(leader, now));
        d.lease.events.record(
            "crash_confirmed",
            0,
            format!("leader {leader}: connect refused"),
        );
    }
}

/// Probes `addr` until it refuses, `give_up` (µs) passes or `go_on` says stop; returns
/// the last verdict and the number of probes.
async fn probe_until_refused(
    addr: &str,
    give_up: u64,
    go_on: impl Fn() -> bool,
) -> (Option<bool>, u32) {
    let mut tries = 0u32;
    loop {
        tries += 1;
        let verdict = probe_within(addr, RETRY_BUDGET).await;
        if verdict == Some(true) || now_us() >= give_up || !go_on() {
            return (verdict, tries);
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn describe_probe(verdict: Option<bool>) -> &'static str {
    match verdict {
        Some(true) => "refused",
        Some(false) => "accepted",
        None => "no answer",
    }
}

async fn warm(d: &Detector, voters: &BTreeSet<NodeId>) {
    for id in voters.iter().filter(|id| **id != d.me) {
        if let Some(addr) = raft_addr(&d.raft, *id) {
            d.pool.get(*id, &addr, Channel::Control).warm().await;
            d.pool.get(*id, &addr, Channel::Raft).warm().await;
        }
    }
}

/// One detector tick on a voter that does not lead.
async fn step(d: &Detector, ep: &mut Episode, voters: &BTreeSet<NodeId>, term: u64) {
    let t = d.lease.timing;
    let now = now_us();
    let silence = t.silence.as_micros() as u64;
    let stagger = t.stagger.as_micros() as u64;
    let (suspicion, following, successor, last_grant) = d.lease.read(|s| {
        (
            s.suspicion(now, silence),
            s.following(),
            s.successor(),
            s.last_grant_at(),
        )
    });
    let Some(reason) = suspicion else {
        ep.suspected_at = None;
        return;
    };
    let suspected_at = *ep.suspected_at.get_or_insert_with(|| {
        let last = following.map_or(0, |f| f.last_ping_at);
        d.lease.events.record_at(last, "last_ping", term, "");
        d.lease
            .events
            .record_at(now, "suspect", term, format!("{reason:?}"));
        now
    });
    // Someone else's campaign is under way: give it time before starting one.
    if last_grant.is_some_and(|g| now < g + silence + stagger) || now < ep.next_attempt {
        return;
    }
    let leader = following.map(|f| f.leader);
    let designated = match successor {
        Some(s) => s == d.me,
        None => voters.iter().copied().find(|v| Some(*v) != leader) == Some(d.me),
    };
    if now < rules::campaign_at(suspected_at, designated, stagger) {
        return;
    }
    // openraft refuses votes for its own vote lease after an AppendEntries, even from a
    // candidate whose leader is confirmed dead. A campaign started inside it fails and
    // the retry comes a silence later (seen on the test bed: a kill -9 8 ms after an
    // append; the vote was refused and the other voter won after its stagger, +33 ms).
    // The voters handled the leader's last append at about the instant this one did.
    let vote_lease_end = raft_vote_lease_end(d.lease.last_append_us(), d.raft_vote_lease);
    if now < vote_lease_end {
        return;
    }
    let request = PreVote {
        candidate: d.me,
        term,
        leader,
        reason: reason.into(),
        last_log: d.last_log.get(),
    };
    if prevote(d, voters, request).await {
        d.lease
            .events
            .record("prevote_won", term, format!("{reason:?}"));
        if d.raft.trigger().elect().await.is_ok() {
            d.lease.events.record("elect", term + 1, "");
            tracing::info!(why = describe(reason), lost = ?leader, term, "leader lost; campaigning");
        }
        ep.next_attempt = now + silence + jitter(stagger.max(1));
    } else {
        ep.next_attempt = now + (t.heartbeat.as_micros() as u64) * 2;
    }
}

/// Until when the other voters' openraft refuses votes after the append this node
/// handled at `last_append` (0: none).
fn raft_vote_lease_end(last_append: u64, lease: Duration) -> u64 {
    if last_append == 0 {
        return 0;
    }
    last_append + lease.as_micros() as u64 + VOTE_LEASE_SLACK_US
}

fn jitter(max: u64) -> u64 {
    rand::random::<u64>() % max
}

/// Asks every other voter; true once a majority (this node included) would vote.
async fn prevote(d: &Detector, voters: &BTreeSet<NodeId>, req: PreVote) -> bool {
    let majority = voters.len() / 2 + 1;
    let mut granted = 1usize;
    if granted >= majority {
        return true;
    }
    let budget =
        (d.lease.timing.silence / 2).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let mut asks: FuturesUnordered<_> = voters
        .iter()
        .filter(|id| **id != d.me)
        .filter_map(|id| raft_addr(&d.raft, *id).map(|a| (*id, a)))
        .map(|(id, addr)| {
            let client = d.pool.get(id, &addr, Channel::Control);
            async move { client.call(&PeerRequest::PreVote(req), budget).await }
        })
        .collect();
    while let Some(answer) = asks.next().await {
        if let Ok(PeerResponse::PreVote(true)) = answer {
            granted += 1;
            if granted >= majority {
                return true;
            }
        }
    }
    false
}

/// The answer to another voter's pre-vote.
pub async fn answer_prevote(lease: &Lease, raft: &Raft, last_log: &LastLog, req: PreVote) -> bool {
    let (state, term) = {
        let m = raft.metrics();
        let m = m.borrow();
        (m.state, m.current_term)
    };
    if state == ServerState::Leader {
        return false;
    }
    if req.last_log < last_log.get() {
        lease.events.record(
            "prevote_refused",
            term,
            format!("candidate {}'s log is behind", req.candidate),
        );
        return false;
    }
    let now = now_us();
    // A little more lenient than our own trigger: pings reach voters at slightly
    // different instants.
    let silence = (lease.timing.silence.as_micros() as u64) * 3 / 4;
    let (suspicion, following) = lease.read(|s| (s.suspicion(now, silence), s.following()));
    if suspicion.is_some() {
        return true;
    }
    let same_leader = following.is_some_and(|f| Some(f.leader) == req.leader);
    if req.reason != crate::lease::wire::WireSuspicion::Crash || !same_leader {
        return false;
    }
    let Some(leader) = req.leader else {
        return false;
    };
    let Some(addr) = raft_addr(raft, leader) else {
        return false;
    };
    if probe(&addr).await == Some(true) {
        lease.with(|s| s.confirm_crash(leader, now_us()));
        lease.events.record(
            "crash_confirmed",
            term,
            format!("leader {leader}: asked by {}", req.candidate),
        );
        return true;
    }
    false
}

/// A leader of `term` that is about to stop asks this node to take over.
///
/// The campaign waits out openraft's vote lease first (`raft_vote_lease`): the leader's
/// last AppendEntries reached the other voters about when it reached this node, and a
/// vote request inside their lease is refused, which leaves the cluster without a leader
/// until a detector notices the silence.
///
/// Meanwhile it gets ready to ask the stopping leader for the VIP's traffic once
/// elected (`handover`).
pub async fn take_over(
    lease: &Arc<Lease>,
    raft: &Raft,
    pool: &PeerPool,
    term: u64,
    raft_vote_lease: Duration,
) -> PeerResponse {
    let (state, current, old) = {
        let m = raft.metrics();
        let m = m.borrow();
        (m.state, m.current_term, m.current_leader)
    };
    if state == ServerState::Leader || current != term {
        return PeerResponse::App(Err(AppError::Rejected(format!(
            "not a follower in term {term} (state {state:?}, term {current})"
        ))));
    }
    lease
        .events
        .record("takeover", term, "asked by the stopping leader");
    if let Some(old) = old {
        let (lease, raft, pool) = (lease.clone(), raft.clone(), pool.clone());
        tokio::spawn(async move {
            crate::handover::claim_from(&lease, &raft, &pool, old, term).await;
        });
    }
    // An append that arrives meanwhile (a write still in flight) extends the lease: wait
    // again, within a bound, since a leader that keeps writing would keep it fresh.
    let give_up = now_us() + TAKE_OVER_LEASE_WAIT_US;
    loop {
        let lease_end = raft_vote_lease_end(lease.last_append_us(), raft_vote_lease);
        let now = now_us();
        if now >= lease_end || now >= give_up {
            break;
        }
        tokio::time::sleep(Duration::from_micros(lease_end.min(give_up) - now)).await;
    }
    match raft.trigger().elect().await {
        Ok(()) => PeerResponse::App(Ok(Response::default())),
        Err(_) => PeerResponse::App(Err(AppError::Shutdown)),
    }
}

/// `reason` in words, for the log.
pub fn describe(reason: Suspicion) -> &'static str {
    match reason {
        Suspicion::Crash => "the leader's process is gone",
        Suspicion::Silence => "the leader went silent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dying process's Raft listener outlives its lease stream by a moment: the probe
    /// must keep asking until the port refuses.
    #[tokio::test]
    async fn a_listener_that_closes_a_moment_later_is_confirmed_dead() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        let addr = listener.local_addr().expect("local address").to_string();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            drop(listener);
        });
        assert_eq!(
            probe_within(&addr, RETRY_BUDGET).await,
            Some(false),
            "still listening"
        );
        let (verdict, tries) = probe_until_refused(&addr, now_us() + 50_000, || true).await;
        assert_eq!(verdict, Some(true));
        assert!(tries >= 2, "{tries}");
        closer.join().expect("closer thread");
    }

    #[test]
    fn campaigns_wait_out_openraft_s_vote_lease_after_an_append() {
        let lease = Duration::from_millis(16);
        assert_eq!(raft_vote_lease_end(0, lease), 0, "no append: no wait");
        assert_eq!(
            raft_vote_lease_end(1_000_000, lease),
            1_000_000 + 16_000 + VOTE_LEASE_SLACK_US
        );
    }

    #[tokio::test]
    async fn a_live_listener_is_never_confirmed_dead() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        let addr = listener.local_addr().expect("local address").to_string();
        let start = now_us();
        let (verdict, tries) = probe_until_refused(&addr, start + 12_500, || true).await;
        assert_eq!(verdict, Some(false));
        assert!(tries >= 2, "{tries}");
        assert!(now_us() - start < 40_000, "gave up late");
        let (_, tries) = probe_until_refused(&addr, start + 1_000_000, || false).await;
        assert_eq!(tries, 1, "stops when the leader changed");
        drop(listener);
    }
}
