//! Redis Cluster: a real six-process cluster on loopback (three masters, one replica each).
//! Pins spread over every master (the client routes by slot and follows redirections), and
//! when a master is killed under load no session is forgotten: pins made before stay, a
//! session begun while its slot had no master is held and written once the replica is
//! promoted, and writes reach the promoted replica soon after the cluster names it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{config_set_all, key_slot, keys_on, slots_of, Cluster};
use common::{opts, stored, wait_until};
use fulcrum_session::{AffinityStore, Lookup, Pinned, StoreOptions};

const BEFORE: usize = 300;
/// Ceiling on the load loop, whatever happens.
const MAX_DURING: usize = 2_000;

fn cluster_opts(url: &str) -> StoreOptions {
    StoreOptions {
        // Two shared cores and a debug build: a generous bound per command.
        timeout: Duration::from_millis(200),
        ..opts(url)
    }
}

fn backend(i: usize) -> String {
    format!("10.0.0.{}:8080", i % 3 + 1)
}

/// The session name a pin key ends in (`fulcrum:aff:{tag}:web:NAME`).
fn session_of(rkey: &str) -> Option<&str> {
    rkey.split_once("}:web:").map(|(_, s)| s)
}

/// One new session a request began during the run: its name, its backend, when it was pinned
/// and whether Redis took the pin at once.
struct Begun {
    name: String,
    backend: String,
    at: Instant,
    stored: bool,
}

/// New sessions every few ms, each pinned and then looked up again at once (the "second
/// request through the same node"), until `stop`.
async fn load(store: AffinityStore, stop: Arc<AtomicBool>) -> (Vec<Begun>, usize) {
    let mut begun = Vec::new();
    let mut moved_at_once = 0;
    for i in 0..MAX_DURING {
        if stop.load(Relaxed) {
            break;
        }
        let name = format!("during-{i}");
        let want = backend(i);
        let at = Instant::now();
        let pinned = store.pin("web", &name, &want).await;
        let stored = matches!(pinned, Some(Pinned::Stored(_)));
        assert!(pinned.is_some(), "{name}: neither stored nor held");
        if store.lookup("web", &name).await != Lookup::Pinned(want.clone()) {
            moved_at_once += 1;
        }
        begun.push(Begun {
            name,
            backend: want,
            at,
            stored,
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (begun, moved_at_once)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_every_session_through_a_master_kill() {
    common::init_log();
    let mut cluster = Cluster::start(3).await;
    let url = cluster.url();
    let store = AffinityStore::new(cluster_opts(&url)).unwrap();
    wait_until(Duration::from_secs(10), || async {
        stored(store.pin("web", "warm", "b").await).is_some()
    })
    .await
    .expect("never wrote to the cluster");

    for i in 0..BEFORE {
        let name = format!("before-{i}");
        assert_eq!(
            stored(store.pin("web", &name, &backend(i)).await),
            Some(backend(i)),
            "{name}"
        );
    }
    // The pins are spread over every master, so the client routed them by slot.
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    let mut per_master = Vec::new();
    for &port in &masters {
        let keys = keys_on(port).await;
        assert!(
            keys.len() > BEFORE / 6,
            "master {port} holds {}",
            keys.len()
        );
        assert!(
            keys.iter().all(|k| k.starts_with("fulcrum:aff:{")),
            "untagged key"
        );
        per_master.push((port, keys));
    }
    // A store that was only given one seed finds every pin (MOVED followed).
    let one_seed = format!("redis+cluster://127.0.0.1:{}", masters[0]);
    let narrow = AffinityStore::new(cluster_opts(&one_seed)).unwrap();
    for i in (0..BEFORE).step_by(7) {
        let name = format!("before-{i}");
        let got = wait_until(Duration::from_secs(5), || async {
            narrow.lookup("web", &name).await == Lookup::Pinned(backend(i))
        })
        .await;
        assert!(got.is_some(), "{name} not found through one seed");
    }
    // Its seed is the master about to be killed; it has done its part.
    drop(narrow);
    // Let the replicas catch up before their master dies.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let runner = tokio::spawn(load(store.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (victim, victim_keys) = per_master.remove(0);
    cluster.node_mut(victim).kill();
    let killed = Instant::now();
    let promoted = wait_until(Duration::from_secs(20), || async {
        let now = cluster.masters().await;
        now.len() == 3 && !now.contains(&victim)
    })
    .await
    .expect("the cluster never promoted a replica");
    let promoted_at = killed + promoted;
    let new_master = *cluster
        .masters()
        .await
        .iter()
        .find(|p| !masters.contains(p))
        .expect("no new master");
    // Load for a while after the promotion too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Relaxed);
    let (begun, moved_at_once) = runner.await.expect("load task");

    // Every held pin is written once the slot has a master again.
    assert_held_pins_written(&store, Duration::from_secs(10)).await;
    let m = store.metrics();
    assert!(
        m.held_pins > 0,
        "no pin was held: the kill was not felt ({m:?})"
    );

    // A node that never saw these sessions (no cache, no held pins) finds every one.
    let fresh = AffinityStore::new(cluster_opts(&url)).unwrap();
    let mut lost = Vec::new();
    for i in 0..BEFORE {
        let name = format!("before-{i}");
        if fresh.lookup("web", &name).await != Lookup::Pinned(backend(i)) {
            lost.push(name);
        }
    }
    let held: Vec<&Begun> = begun.iter().filter(|b| !b.stored).collect();
    for b in &begun {
        if fresh.lookup("web", &b.name).await != Lookup::Pinned(b.backend.clone()) {
            lost.push(b.name.clone());
        }
    }
    // The first pin the promoted replica took, against the time the cluster named it.
    let on_new: Vec<String> = keys_on(new_master)
        .await
        .iter()
        .filter_map(|k| session_of(k).map(str::to_string))
        .collect();
    let first_write = begun
        .iter()
        .filter(|b| b.stored && b.at > killed && on_new.contains(&b.name))
        .map(|b| b.at)
        .min()
        .expect("no write reached the promoted replica");
    let lag = first_write.saturating_duration_since(promoted_at);
    eprintln!(
        "cluster: killed master {victim} ({} pins); promoted after {promoted:?}; first write \
         to {new_master} {lag:?} after that; {} sessions begun under load, {} held, \
         {moved_at_once} moved on their second request, {} lost; {m:?}",
        victim_keys.len(),
        begun.len(),
        held.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "sessions forgotten: {lost:?}");
    assert_eq!(moved_at_once, 0, "a session moved on its second request");
    assert!(!held.is_empty(), "no session began while its slot was down");
    assert!(
        lag < Duration::from_secs(1),
        "first write {lag:?} after promotion"
    );
}

/// A frozen master (SIGSTOP: no refusal, every command to it waits out the timeout) holds back
/// only the sessions whose slots it owns: the others are written at once, without waiting on
/// it, because each master has its own breaker. With one breaker for the cluster, its
/// failures turned away the healthy masters' keys too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_holds_back_only_its_own_sessions() {
    common::init_log();
    let mut cluster = Cluster::start(3).await;
    // Keep the healthy masters' slots writable while one master is unreachable.
    config_set_all(&cluster, "cluster-require-full-coverage", "no").await;
    let url = cluster.url();
    let store = AffinityStore::new(cluster_opts(&url)).unwrap();
    wait_until(Duration::from_secs(10), || async {
        stored(store.pin("web", "warm", "b").await).is_some()
    })
    .await
    .expect("never wrote to the cluster");
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    let victim = masters[0];
    let healthy = masters[1];
    let victim_slots = slots_of(healthy, victim).await;
    assert!(!victim_slots.is_empty(), "no slots for {victim}");

    cluster.node_mut(victim).freeze();
    let frozen_at = Instant::now();
    let mut outcomes = Vec::new();
    for i in 0..150 {
        let name = format!("f-{i}");
        let t = Instant::now();
        let pinned = store.pin("web", &name, &backend(i)).await;
        outcomes.push((name, pinned, t.elapsed()));
    }
    let frozen_for = frozen_at.elapsed();
    cluster.node_mut(victim).thaw();

    // Every held pin is written once the master answers again.
    assert_held_pins_written(&store, Duration::from_secs(15)).await;
    // Where each session's pin lives, by its Redis key's slot.
    let mut keys = Vec::new();
    for port in cluster.masters().await {
        for key in keys_on(port).await {
            let slot = key_slot(port, &key).await;
            keys.push((key, slot));
        }
    }
    let on_victim = |name: &str| -> Option<bool> {
        let (_, slot) = keys.iter().find(|(k, _)| session_of(k) == Some(name))?;
        Some(victim_slots.iter().any(|&(a, b)| (a..=b).contains(slot)))
    };
    let (mut held_on_victim, mut slow_elsewhere, mut held_elsewhere) = (0, 0, Vec::new());
    for (name, pinned, took) in &outcomes {
        let victims = on_victim(name).unwrap_or_else(|| panic!("{name} is in no master"));
        match (victims, pinned) {
            (true, Some(Pinned::Held(_))) => held_on_victim += 1,
            (false, Some(Pinned::Held(_)) | None) => held_elsewhere.push(name.clone()),
            (false, Some(Pinned::Stored(_))) if *took > Duration::from_millis(100) => {
                slow_elsewhere += 1
            }
            _ => {}
        }
    }
    let elsewhere = outcomes
        .iter()
        .filter(|(n, ..)| on_victim(n) == Some(false))
        .count();
    eprintln!(
        "frozen master {victim} for {frozen_for:?}: {held_on_victim} of its sessions held, \
         {elsewhere} sessions on the other masters, {} of them held, {slow_elsewhere} slower \
         than 100 ms; {:?}",
        held_elsewhere.len(),
        store.metrics()
    );
    assert!(held_on_victim > 0, "the freeze was not felt");
    assert!(
        elsewhere > 50,
        "too few sessions on the healthy masters: {elsewhere}"
    );
    assert!(
        held_elsewhere.is_empty(),
        "held on healthy masters: {held_elsewhere:?}"
    );
    assert_eq!(
        slow_elsewhere, 0,
        "pins on healthy masters waited on the frozen one"
    );
}

/// Waits up to `within` until the store holds no pin back from Redis any more.
async fn assert_held_pins_written(store: &AffinityStore, within: Duration) {
    let flushed = wait_until(within, || async { store.metrics().held_now == 0 }).await;
    assert!(
        flushed.is_some(),
        "held pins never written: {:?}",
        store.metrics()
    );
}
