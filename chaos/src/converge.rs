//! Convergence after the heal: the replicated state must come back to the truth.
//!
//! From the scenario's last event (its heal or repair) the watcher asks every node's
//! `/status` every [`POLL`] and every backend's `/healthz` directly (the backend's real
//! state, as the harness sees it: a 2xx within [`BACKEND_TIMEOUT`]), until, for
//! [`STABLE_ROUNDS`] rounds in a row:
//! - every node answers, runs one config version (at least the scenario's minimum), the
//!   version Raft committed, with no apply error, and accepts connections on every
//!   listener of the config it runs (`GET /config`; a node that recorded a version as
//!   applied without binding its listener fails here);
//! - every node's effective verdict (`healthy`) for every backend of every pool equals the
//!   backend's real state, and so does every observer's report on it as that node has
//!   it replicated (`observers`: a stale report can hide behind a majority);
//! - exactly one node says it holds the VIP, it says it leads, and the netlink holder
//!   poller (when there is one) sees the VIP on that node and no other.
//!
//! The convergence time is measured from the last event to the first of those rounds;
//! it must be within [`BOUND`]. What failed last is kept for the report.

use crate::checks::HolderSample;
use crate::httpc;
use crate::ops::Ops;
use crate::poller::Poller;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long after the last event every node must agree with the truth. Health needs
/// `rise` (2) checks at 500 ms after a repair plus a commit; a failed config apply is
/// retried at most every 2 s; a restarted node catches up from the leader.
pub const BOUND: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
const STABLE_ROUNDS: usize = 3;
const ADMIN_TIMEOUT: Duration = Duration::from_millis(500);
const BACKEND_TIMEOUT: Duration = Duration::from_millis(300);

/// What the watcher saw.
#[derive(Debug, Clone)]
pub struct Convergence {
    /// The event it was measured from (ms since the scenario's epoch).
    pub from_ms: f64,
    /// Time from `from_ms` to the first round of the stable run; None when it never
    /// converged within the bound.
    pub after_ms: Option<f64>,
    pub bound_ms: f64,
    /// Rounds it made, and why the last round that failed did.
    pub rounds: usize,
    pub last_miss: String,
}

/// Watches from `from_ms` (on `epoch`) until converged or `BOUND` has passed.
pub async fn watch(
    ops: &dyn Ops,
    holders: Option<&Poller<HolderSample>>,
    epoch: Instant,
    from_ms: f64,
    min_version: Option<u64>,
) -> Convergence {
    let deadline = epoch + Duration::from_secs_f64(from_ms / 1000.0) + BOUND;
    let mut stable_since: Option<f64> = None;
    let mut stable = 0;
    let mut rounds = 0;
    let mut last_miss = String::from("never checked");
    loop {
        let round_ms = epoch.elapsed().as_secs_f64() * 1000.0;
        rounds += 1;
        match round(ops, holders, min_version).await {
            Ok(()) => {
                stable += 1;
                let since = *stable_since.get_or_insert(round_ms);
                if stable >= STABLE_ROUNDS {
                    return Convergence {
                        from_ms,
                        after_ms: Some((since - from_ms).max(0.0)),
                        bound_ms: BOUND.as_secs_f64() * 1000.0,
                        rounds,
                        last_miss,
                    };
                }
            }
            Err(miss) => {
                stable = 0;
                stable_since = None;
                last_miss = miss;
            }
        }
        if Instant::now() >= deadline {
            return Convergence {
                from_ms,
                after_ms: None,
                bound_ms: BOUND.as_secs_f64() * 1000.0,
                rounds,
                last_miss,
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One look at every node and backend; `Err` says the first thing that is not converged.
async fn round(
    ops: &dyn Ops,
    holders: Option<&Poller<HolderSample>>,
    min_version: Option<u64>,
) -> Result<(), String> {
    let mut statuses = Vec::new();
    for i in 0..ops.nodes() {
        let s = httpc::status(&ops.admin(i), ADMIN_TIMEOUT)
            .await
            .map_err(|e| format!("{} does not answer /status: {e:#}", ops.node_name(i)))?;
        statuses.push(s);
    }
    config(ops, &statuses, min_version)?;
    listening(ops).await?;
    health(ops, &statuses).await?;
    vip(ops, &statuses, holders)
}

fn config(ops: &dyn Ops, statuses: &[Value], min: Option<u64>) -> Result<(), String> {
    let versions: Vec<Option<u64>> = statuses
        .iter()
        .map(|s| s["config_version"].as_u64())
        .collect();
    let first = versions[0].ok_or("no config_version")?;
    if versions.iter().any(|v| *v != Some(first)) {
        return Err(format!("config versions differ: {versions:?}"));
    }
    if min.is_some_and(|m| first < m) {
        return Err(format!("config version {first} below {min:?}"));
    }
    for (i, s) in statuses.iter().enumerate() {
        if !s["config_apply_error"].is_null() {
            return Err(format!(
                "{} has an apply error: {}",
                ops.node_name(i),
                s["config_apply_error"]
            ));
        }
        let committed = s["config_version_committed"].as_u64();
        if committed != Some(first) {
            return Err(format!(
                "{} runs {first}, committed {committed:?}",
                ops.node_name(i)
            ));
        }
    }
    Ok(())
}

/// Every node accepts a TCP connection on each listener of the config it runs (a
/// wildcard bind is tried on the node's admin address).
async fn listening(ops: &dyn Ops) -> Result<(), String> {
    for i in 0..ops.nodes() {
        let admin = ops.admin(i);
        let name = ops.node_name(i);
        let reply = httpc::request(&admin, "GET", "/config", &[], None, ADMIN_TIMEOUT)
            .await
            .map_err(|e| format!("{name} does not answer GET /config: {e:#}"))?;
        let text = String::from_utf8_lossy(&reply.body);
        let doc: toml::Value = text
            .parse()
            .map_err(|e| format!("{name}'s GET /config is not TOML: {e}"))?;
        let host: std::net::IpAddr = admin
            .rsplit_once(':')
            .and_then(|(h, _)| h.parse().ok())
            .ok_or_else(|| format!("{name}'s admin address {admin} has no IP"))?;
        let listeners = doc.get("listener").and_then(|l| l.as_array());
        for l in listeners.into_iter().flatten() {
            let lname = l.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            let bind: std::net::SocketAddr = l
                .get("bind")
                .and_then(|b| b.as_str())
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| format!("{name}: listener {lname} has no bind address"))?;
            let ip = if bind.ip().is_unspecified() {
                host
            } else {
                bind.ip()
            };
            let to = std::net::SocketAddr::new(ip, bind.port());
            let connect = tokio::net::TcpStream::connect(to);
            match tokio::time::timeout(BACKEND_TIMEOUT, connect).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(format!(
                        "{name} does not accept on {to} (listener {lname}): {e}"
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "{name} does not accept on {to} (listener {lname}): timed out"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Every node's verdict on every backend against the backend's real state.
async fn health(ops: &dyn Ops, statuses: &[Value]) -> Result<(), String> {
    let mut truth: BTreeMap<String, bool> = BTreeMap::new();
    let ids = statuses
        .iter()
        .map(|s| s["node_id"].as_u64().ok_or("a /status without node_id"))
        .collect::<Result<Vec<u64>, _>>()?;
    for (i, s) in statuses.iter().enumerate() {
        for pool in s["pools"].as_array().into_iter().flatten() {
            for b in pool["backends"].as_array().into_iter().flatten() {
                let addr = b["addr"].as_str().ok_or("backend without addr")?;
                let real = match truth.get(addr) {
                    Some(r) => *r,
                    None => {
                        let r = backend_up(addr).await;
                        truth.insert(addr.to_string(), r);
                        r
                    }
                };
                let verdict = b["healthy"].as_bool();
                if verdict != Some(real) {
                    return Err(format!(
                        "{} says {addr} healthy={verdict:?}, the backend is {}",
                        ops.node_name(i),
                        if real { "up" } else { "down" }
                    ));
                }
                observers(ops, i, &ids, addr, &b["observers"], real)?;
            }
        }
    }
    if truth.is_empty() {
        return Err("no backend in any /status".into());
    }
    Ok(())
}

/// Every observer's report on a backend, as node `i` has it replicated, equals the
/// backend's real state: one observer's stale report (an old "down" committed after a
/// newer "up") can hide behind the others' majority in the effective verdict, but not
/// here. An observer that never reported counts as "healthy" (a reporter only proposes
/// where its view differs from the replicated one, and nothing replicated is healthy).
fn observers(
    ops: &dyn Ops,
    i: usize,
    ids: &[u64],
    addr: &str,
    map: &Value,
    real: bool,
) -> Result<(), String> {
    let map = map
        .as_object()
        .ok_or_else(|| format!("{} reports no observers for {addr}", ops.node_name(i)))?;
    for id in ids {
        let said = map.get(&id.to_string()).map_or(Some(true), |v| v.as_bool());
        if said != Some(real) {
            return Err(format!(
                "{} has observer {id}'s report on {addr} as {said:?}, the backend is {}",
                ops.node_name(i),
                if real { "up" } else { "down" }
            ));
        }
    }
    Ok(())
}

/// The backend's real state: its health path answers 2xx in time.
async fn backend_up(addr: &str) -> bool {
    httpc::request(addr, "GET", "/healthz", &[], None, BACKEND_TIMEOUT)
        .await
        .is_ok_and(|r| (200..300).contains(&r.status))
}

fn vip(
    ops: &dyn Ops,
    statuses: &[Value],
    holders: Option<&Poller<HolderSample>>,
) -> Result<(), String> {
    let said: Vec<usize> = (0..statuses.len())
        .filter(|i| statuses[*i]["vip_held"] == true)
        .collect();
    let [holder] = said[..] else {
        return Err(format!("nodes saying they hold the VIP: {said:?}"));
    };
    if statuses[holder]["role"] != "leader" {
        return Err(format!(
            "{} holds the VIP but does not lead",
            ops.node_name(holder)
        ));
    }
    if let Some(sample) = holders.and_then(|p| p.latest()) {
        let seen: Vec<usize> = (0..sample.holders.len())
            .filter(|i| sample.holders[*i] == Some(true))
            .collect();
        if seen != [holder] {
            return Err(format!(
                "netlink sees the VIP on {seen:?}, {} says it holds it",
                ops.node_name(holder)
            ));
        }
    }
    Ok(())
}
