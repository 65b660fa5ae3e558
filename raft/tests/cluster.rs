//! Three real nodes on 127.0.0.1 in one process: election, replication, failover,
//! restart from disk, membership changes, and loss of quorum.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, wait_version, Cluster};
use fulcrum_raft::{Command, PeerNode, ProposeError, Role};

fn set_config(s: &str) -> Command {
    Command::SetConfig {
        toml: s.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_replicate() {
    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let roles: Vec<Role> = c.live().iter().map(|h| h.status().borrow().role).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == Role::Leader).count(),
        1,
        "{roles:?}"
    );
    assert!(c.node(1).bootstrapped() && !c.node(2).bootstrapped() && !c.node(3).bootstrapped());

    // The seed config lands everywhere as version 1, and every node registers itself.
    assert!(wait_version(&c.live(), 1, Duration::from_secs(3)).await);
    let all_registered = wait_until(
        || {
            c.live()
                .iter()
                .all(|h| h.cluster_state().borrow().nodes.len() == 3)
        },
        Duration::from_secs(3),
    )
    .await;
    assert!(all_registered);
    let st = c.node(2).cluster_state().borrow().clone();
    assert_eq!(st.config_toml, "# seed\n");
    assert_eq!(st.nodes[&3].admin_addr, "127.0.0.1:9003");

    // Lease is fresh on the leader only.
    let fresh = wait_until(
        || c.node(leader).status().borrow().lease_fresh,
        Duration::from_secs(2),
    )
    .await;
    assert!(fresh, "leader lease should be fresh");
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    assert!(!c.node(follower).status().borrow().lease_fresh);

    // Propose on a follower: forwarded to the leader, visible on all within 1 s.
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let t0 = Instant::now();
        let r = c
            .node(follower)
            .propose(set_config(&format!("v{i}")))
            .await
            .unwrap();
        assert!(wait_version(&c.live(), r.config_version, Duration::from_secs(1)).await);
        worst = worst.max(t0.elapsed());
    }
    eprintln!("propose-on-follower -> visible on all 3 nodes: worst of 5 = {worst:?}");
    assert!(worst < Duration::from_secs(1));
    let tomls: Vec<String> = c
        .live()
        .iter()
        .map(|h| h.cluster_state().borrow().config_toml.clone())
        .collect();
    assert!(tomls.iter().all(|t| t == "v4"), "{tomls:?}");

    let members = c.node(follower).members().await;
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m.voter));
    assert_eq!(members.iter().filter(|m| m.is_leader).count(), 1);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_then_restart_from_disk() {
    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    assert!(wait_version(&c.live(), 1, Duration::from_secs(3)).await);
    let before = c.node(leader).propose(set_config("before")).await.unwrap();

    // "Crash" the leader: stop it and drop its handle.
    let t0 = Instant::now();
    c.kill(leader).await;
    let new_leader = c.wait_leader(Duration::from_secs(2)).await;
    let elect_time = t0.elapsed();
    eprintln!("leader {leader} stopped -> new leader {new_leader:?} after {elect_time:?}");
    let new_leader = new_leader.expect("new leader within 2 s");
    assert_ne!(new_leader, leader);

    let survivor = c.live()[0].clone();
    let after = survivor.propose(set_config("after")).await.unwrap();
    assert!(after.config_version > before.config_version);
    assert!(wait_version(&c.live(), after.config_version, Duration::from_secs(1)).await);

    // Restart the old leader from its data dir: no re-initialization, it catches up.
    let restarted = c.restart(leader).await;
    assert!(!restarted.bootstrapped(), "a restart must never initialize");
    assert!(wait_version(&[&restarted], after.config_version, Duration::from_secs(5)).await);
    assert_eq!(restarted.cluster_state().borrow().config_toml, "after");
    assert_eq!(
        c.wait_leader(Duration::from_secs(3)).await,
        Some(new_leader)
    );
    let members = restarted.members().await;
    assert_eq!(members.len(), 3, "membership unchanged: {members:?}");
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_promoted_and_removed() {
    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    c.node(leader).propose(set_config("x")).await.unwrap();

    // Node 4: a fresh store, not the lowest id, so it waits to be contacted.
    let addr4 = common::free_addr();
    let mut peers = c.peers.clone();
    peers.push((4, addr4));
    let o = common::options(4, &peers, c.dir.path().join("n4"), common::SECRET);
    let n4 = fulcrum_raft::start(o).await.unwrap();
    assert!(!n4.bootstrapped());

    let node = PeerNode {
        raft_addr: addr4.to_string(),
        admin_addr: "127.0.0.1:9004".into(),
    };
    // Issued on a follower: forwarded to the leader.
    c.node(follower).add_learner(4, node).await.unwrap();
    let m = c.node(leader).members().await;
    assert!(m.iter().any(|m| m.id == 4 && !m.voter), "{m:?}");
    let v = c.node(leader).cluster_state().borrow().config_version;
    assert!(
        wait_version(&[&n4], v, Duration::from_secs(3)).await,
        "learner caught up"
    );
    assert_eq!(n4.status().borrow().role, Role::Learner);

    c.node(follower).promote(4).await.unwrap();
    let m = c.node(leader).members().await;
    assert!(m.iter().any(|m| m.id == 4 && m.voter), "{m:?}");
    let voter_role = wait_until(
        || n4.status().borrow().role == Role::Follower,
        Duration::from_secs(2),
    );
    assert!(voter_role.await);
    let registered = wait_until(
        || {
            c.node(leader)
                .cluster_state()
                .borrow()
                .nodes
                .contains_key(&4)
        },
        Duration::from_secs(3),
    );
    assert!(registered.await, "node 4 registered its admin address");

    c.node(leader).remove(4).await.unwrap();
    let m = c.node(leader).members().await;
    assert!(m.iter().all(|m| m.id != 4), "{m:?}");
    // The 3-node cluster still commits.
    c.node(follower).propose(set_config("y")).await.unwrap();
    n4.shutdown().await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_node_reports_no_quorum_quickly() {
    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let lone = c.node(leader).clone();
    let fresh = wait_until(
        || lone.status().borrow().lease_fresh,
        Duration::from_secs(2),
    );
    assert!(fresh.await);
    // Keep the leader alone: it still believes it leads, but cannot commit.
    let t_kill = Instant::now();
    for id in (1..=3).filter(|i| *i != leader) {
        c.kill(id).await;
    }
    let lease_lost = wait_until(
        || !lone.status().borrow().lease_fresh,
        Duration::from_secs(1),
    );
    assert!(lease_lost.await, "lease must expire without a quorum");
    eprintln!(
        "lease_fresh false {:?} after the followers began stopping (lease 20 ms); role {:?}",
        t_kill.elapsed(),
        lone.status().borrow().role
    );
    let t0 = Instant::now();
    let r = lone.propose(set_config("lonely")).await;
    let took = t0.elapsed();
    eprintln!("propose on a lone leader -> {r:?} after {took:?}");
    assert_eq!(r, Err(ProposeError::NoQuorum));
    assert!(took < Duration::from_secs(5));
    c.shutdown_all().await;
    // After shutdown, propose fails fast with Shutdown.
    assert_eq!(
        lone.propose(set_config("z")).await,
        Err(ProposeError::Shutdown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_handoff_then_stop_is_fast() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut c = Cluster::start_default_timing(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    c.node(leader).propose(set_config("h")).await.unwrap();
    let t0 = Instant::now();
    let outcome = c.node(leader).hand_off().await;
    let handoff = t0.elapsed();
    assert_eq!(outcome, fulcrum_raft::HandOff::Done);
    let seen = c.node(leader).status().borrow().leader_id;
    eprintln!("hand-off: old leader {leader} sees leader {seen:?} after {handoff:?}");
    assert!(
        seen.is_some_and(|l| l != leader),
        "leadership moved before stopping"
    );
    c.kill(leader).await;
    let new_leader = c.wait_leader(Duration::from_secs(2)).await;
    let took = t0.elapsed();
    eprintln!("hand-off + stop of leader {leader} -> new leader {new_leader:?} after {took:?}");
    assert!(new_leader.is_some_and(|l| l != leader));
    // A take-over request and one vote round (a liveness bound, not a speed test).
    assert!(took < Duration::from_secs(1), "hand-off took {took:?}");
    let survivor = c.live()[0].clone();
    survivor.propose(set_config("after-handoff")).await.unwrap();
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_follower_reports_no_quorum_quickly() {
    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let lone = (1..=3).find(|i| *i != leader).unwrap();
    for id in (1..=3).filter(|i| *i != lone) {
        c.kill(id).await;
    }
    let t0 = Instant::now();
    let r = c.node(lone).propose(set_config("lonely")).await;
    let took = t0.elapsed();
    eprintln!("propose on a lone follower -> {r:?} after {took:?}");
    assert_eq!(r, Err(ProposeError::NoQuorum));
    assert!(took < Duration::from_secs(5));
    assert!(!c.node(lone).status().borrow().lease_fresh);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_from_a_snapshot() {
    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let lagger = (1..=3).find(|i| *i != leader).unwrap();
    c.kill(lagger).await;

    // Enough entries to trigger a snapshot (every 500) and purge the log behind it.
    let h = c.node(leader).clone();
    for batch in 0..15u64 {
        let futs = (0..50u64).map(|i| {
            let h = h.clone();
            async move {
                let cmd = Command::ReportHealth {
                    observer: leader,
                    pool: "p".into(),
                    backend: format!("b{}", batch * 50 + i),
                    healthy: i % 2 == 0,
                    seq: batch * 50 + i + 1,
                };
                h.propose(cmd).await
            }
        });
        for r in futures_util::future::join_all(futs).await {
            r.unwrap();
        }
    }
    let purged = wait_until(
        || h.raft().metrics().borrow().purged.is_some(),
        Duration::from_secs(5),
    );
    assert!(purged.await, "leader compacted its log");

    let t0 = Instant::now();
    let back = c.restart(lagger).await;
    // Compare with the leader's live state: the restarted node may still register itself.
    let caught_up = wait_until(
        || **back.cluster_state().borrow() == **h.cluster_state().borrow(),
        Duration::from_secs(10),
    );
    if !caught_up.await {
        let want = h.cluster_state().borrow().clone();
        let got = back.cluster_state().borrow().clone();
        let n = |s: &fulcrum_raft::ClusterState| s.health.get("p").map(|m| m.len());
        panic!(
            "not converged: want v{} {:?} got v{} {:?}; status {:?}; metrics {:?}",
            want.config_version,
            n(&want),
            got.config_version,
            n(&got),
            back.status().borrow(),
            back.raft().metrics().borrow()
        );
    }
    eprintln!(
        "lagging node converged after {:?} (snapshot + tail)",
        t0.elapsed()
    );
    assert!(back.raft().metrics().borrow().snapshot.is_some());
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_recovers_from_disk() {
    let mut c = Cluster::start(3).await;
    c.wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let r = c.node(2).propose(set_config("durable")).await.unwrap();
    assert!(wait_version(&c.live(), r.config_version, Duration::from_secs(1)).await);
    c.shutdown_all().await;

    for id in 1..=3 {
        let h = c.restart(id).await;
        assert!(!h.bootstrapped(), "node {id} re-initialized");
        let st = h.cluster_state().borrow().clone();
        assert_eq!(
            st.config_version, r.config_version,
            "state reloaded from disk"
        );
        assert_eq!(st.config_toml, "durable");
    }
    c.wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader after restart");
    let r2 = c.node(3).propose(set_config("again")).await.unwrap();
    assert_eq!(r2.config_version, r.config_version + 1);
    c.shutdown_all().await;
}

/// A rolling restart stops the leader last: by then every peer it knew has restarted, and
/// its pooled connections to them are dead. The take-over request must still get through
/// (chaos rolling-restart saw both fail at once with "early eof", and the hand-off fall
/// back to a crash-style failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_after_every_peer_restarted() {
    let mut c = Cluster::start(3).await;
    c.wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    // Let the followers' detectors open their connections to every voter (every 500 ms),
    // then make one of them leader: its pool now holds connections to both others.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    assert_eq!(c.node(first).hand_off().await, fulcrum_raft::HandOff::Done);
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a new leader");
    assert_ne!(leader, first);
    for id in (1..=3).filter(|id| *id != leader) {
        c.kill(id).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.restart(id).await;
    }
    let v = 2;
    c.node(leader)
        .propose(set_config("after-restarts"))
        .await
        .unwrap();
    assert!(
        wait_version(&c.live(), v, Duration::from_secs(10)).await,
        "restarted peers caught up"
    );
    let outcome = c.node(leader).hand_off().await;
    assert_eq!(outcome, fulcrum_raft::HandOff::Done);
    c.shutdown_all().await;
}

/// Hand-offs right behind a write: the successor's log and openraft's vote lease are at
/// their worst (the last entry is a moment old). A clean hand-off is one election: one
/// term per round. Before the fix (with the default timing) every round took two or more:
/// the successor campaigned inside the voters' vote lease or without the last entry, was
/// refused, and the leadership moved only after a detector noticed the silence (8 rounds
/// went from term 2 to 27), and about one run in three returned `Failed` when the old
/// leader won its own election back.
///
/// The timing is `common::relaxed` (with the default one a loaded CI counted 20
/// elections for 8 hand-offs: starved detectors, and late grants lost to a 15 ms vote
/// budget); a refused take-over still shows as a second term. With this timing
/// the code before the fix failed 2 of 3 runs of 8 rounds (one `Failed`, one with 14
/// elections), hence 12 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_right_after_writes_are_one_election_each() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    const ROUNDS: u64 = 12;
    let mut c = Cluster::start(3).await;
    let mut leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let first_term = c.node(leader).status().borrow().term;
    for round in 0..ROUNDS {
        let name = format!("round-{round}");
        c.node(leader).propose(set_config(&name)).await.unwrap();
        let outcome = c.node(leader).hand_off().await;
        assert_eq!(outcome, fulcrum_raft::HandOff::Done, "round {round}");
        let next = c
            .wait_leader(Duration::from_secs(2))
            .await
            .expect("a leader after the hand-off");
        assert_ne!(next, leader, "round {round}: the leadership stayed");
        let term = c.node(next).status().borrow().term;
        eprintln!("round {round}: {leader} -> {next} term {term}");
        leader = next;
    }
    let elections = c.node(leader).status().borrow().term - first_term;
    assert!(
        elections <= ROUNDS + 1,
        "{ROUNDS} hand-offs took {elections} elections"
    );
    c.shutdown_all().await;
}

/// A voter refuses the pre-vote of a candidate whose log is behind its own (Raft's
/// up-to-date rule, asked before the term is raised): a stale node cannot depose a
/// leader it could never replace. Seen before the rule: a successor missing the last
/// entry campaigned, lost, and kept campaigning on every silence with a stale log,
/// leaving the cluster leaderless for 300 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prevote_from_a_candidate_with_an_older_log_is_refused() {
    use fulcrum_raft::lease::wire::{PreVote, WireSuspicion};
    use fulcrum_raft::network::PeerClient;
    use fulcrum_raft::rpc::{PeerRequest, PeerResponse};

    let mut c = Cluster::start(3).await;
    let leader = c
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let written = c.node(leader).propose(set_config("written")).await.unwrap();
    let lone = (1..=3).find(|i| *i != leader).unwrap();
    let gone = (1..=3).find(|i| *i != leader && *i != lone).unwrap();
    assert!(
        wait_version(
            &[c.node(lone)],
            written.config_version,
            Duration::from_secs(5)
        )
        .await,
        "the lone node has the write"
    );
    c.kill(leader).await;
    c.kill(gone).await;
    // The lone node has lost its leader (after the relaxed timing's 250 ms of silence):
    // it would vote for anyone whose log is as new.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let addr = c.peers.iter().find(|(id, _)| *id == lone).unwrap().1;
    let client = PeerClient::new(addr.to_string(), common::SECRET.into());
    let term = c.node(lone).status().borrow().term;
    let ask = |last_log| {
        PeerRequest::PreVote(PreVote {
            candidate: gone,
            term,
            leader: Some(leader),
            reason: WireSuspicion::Silence,
            last_log,
        })
    };
    let newer = client
        .call(&ask(Some((u64::MAX, u64::MAX))), Duration::from_secs(2))
        .await
        .expect("an answer");
    assert!(
        matches!(newer, PeerResponse::PreVote(true)),
        "premise: a candidate with a newer log gets the pre-vote: {newer:?}"
    );
    let empty = client
        .call(&ask(None), Duration::from_secs(2))
        .await
        .expect("an answer");
    assert!(
        matches!(empty, PeerResponse::PreVote(false)),
        "a candidate with an empty log was granted: {empty:?}"
    );
    let older = client
        .call(&ask(Some((1, 1))), Duration::from_secs(2))
        .await
        .expect("an answer");
    assert!(
        matches!(older, PeerResponse::PreVote(false)),
        "a candidate with an older log was granted: {older:?}"
    );
    c.shutdown_all().await;
}
