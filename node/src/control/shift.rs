//! Blue-green and canary shifts (issue 25 item 3): the operator's start and abort, and the
//! shifter that takes the steps.
//!
//! Everything a shift is lives in Raft (`ClusterState::splits`: the weights, the plan, the
//! steps taken, how it ended), so every node runs the same weights and any node can
//! answer `/status`. The steps are taken by the **Raft leader**: once a step's weights are
//! committed it reads the shifted pool's figures on every member (its own data plane,
//! the others' `/status`), waits `every`, reads them again, and commits either the next
//! step, the end, or the rollback to the starting weights (`shift_plan::after_step`).
//! Each write names the generation it read, so a step never overwrites an abort that
//! committed first.
//!
//! **Leader change**: the new leader finds the shift running in the replicated state and
//! takes it over: the current step's window starts again on it (its baseline is taken
//! when it first sees the step), so that step runs up to `every` longer; no step is
//! skipped or repeated. Without a leader (no quorum) nothing moves: the weights stay
//! where the last committed step put them.

use crate::control::cluster::Cluster;
use crate::control::shift_plan;
use crate::dataplane::DataPlane;
use crate::pool_figures::PoolFigures;
use fulcrum_raft::{
    ClusterState, Command, NodeId, Phase, ProposeError, ShiftPlan, SplitState, Weights, Window,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the shifter looks at running shifts.
const TICK: Duration = Duration::from_millis(100);
/// How long a start or abort waits to see its own write in this node's state.
const SEE_WRITE: Duration = Duration::from_secs(3);

/// Why a start or an abort was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShiftError {
    #[error("shifts need [cluster]: the weights are replicated through Raft")]
    NotClustered,
    #[error("no split route named `{0}` (ctl shift addresses a route by its `name`)")]
    UnknownRoute(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Cluster(#[from] ProposeError),
    #[error("another change to route `{0}` committed first; look at ctl status and try again")]
    Raced(String),
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The cluster, and the split route `route` as it runs now: its replicated state, if
/// any, and its weights (the replicated ones when they name the file's pools, else the
/// file's).
fn running_split<'c>(
    cluster: Option<&'c Arc<Cluster>>,
    dp: &DataPlane,
    route: &str,
) -> Result<Current<'c>, ShiftError> {
    let cluster = cluster.ok_or(ShiftError::NotClustered)?;
    let state = cluster.raft.cluster_state().borrow().clone();
    let snapshot = dp.snapshot();
    let split = (snapshot.routes.values())
        .flat_map(|table| table.splits())
        .find(|s| s.name == route)
        .ok_or_else(|| ShiftError::UnknownRoute(route.to_string()))?;
    let replicated = state.splits.get(route).cloned().unwrap_or_default();
    let weights = match dp.splits.replicated(split) {
        Some(_) => replicated.weights.clone(),
        None => split.file_weights(),
    };
    Ok(Current {
        cluster,
        state: replicated,
        weights,
    })
}

/// A split route as `running_split` found it.
struct Current<'c> {
    cluster: &'c Arc<Cluster>,
    state: SplitState,
    weights: Weights,
}

/// `ctl shift ROUTE POOL --to ...`: commits the start (and first step) of a shift.
pub async fn start(
    cluster: Option<&Arc<Cluster>>,
    dp: &DataPlane,
    route: &str,
    req: &ShiftPlan,
) -> Result<SplitState, ShiftError> {
    let current = running_split(cluster, dp, route)?;
    let running = (current.state.shift.as_ref()).is_some_and(|s| s.phase == Phase::Running);
    let next =
        shift_plan::start(&current.weights, req, running, now_ms()).map_err(ShiftError::Refused)?;
    write(current.cluster, route, current.state.generation, next).await
}

/// `ctl shift ROUTE --abort`: back to the starting weights now.
pub async fn abort(
    cluster: Option<&Arc<Cluster>>,
    dp: &DataPlane,
    route: &str,
) -> Result<SplitState, ShiftError> {
    let current = running_split(cluster, dp, route)?;
    let next = shift_plan::abort(&current.state, now_ms()).map_err(ShiftError::Refused)?;
    write(current.cluster, route, current.state.generation, next).await
}

/// Commits `next` over generation `expect` and waits until this node applied it;
/// `Raced` when another write to the route committed first.
async fn write(
    cluster: &Cluster,
    route: &str,
    expect: u64,
    next: SplitState,
) -> Result<SplitState, ShiftError> {
    let cmd = Command::SetSplit {
        route: route.to_string(),
        expect,
        state: next.clone(),
    };
    cluster.raft.propose(cmd).await?;
    let mut states = cluster.raft.cluster_state();
    let seen = states.wait_for(|s| s.splits.get(route).is_some_and(|r| r.generation > expect));
    let state = match tokio::time::timeout(SEE_WRITE, seen).await {
        Ok(Ok(state)) => state.splits.get(route).cloned().unwrap_or_default(),
        _ => return Err(ShiftError::Raced(route.to_string())),
    };
    if state.generation == expect + 1 && state.shift == next.shift {
        Ok(state)
    } else {
        Err(ShiftError::Raced(route.to_string()))
    }
}

/// One running step as the leader watches it.
struct Watch {
    generation: u64,
    since: Instant,
    baseline: BTreeMap<NodeId, PoolFigures>,
}

/// The shifter: on the leader, judges each running step after its `every` and commits
/// what follows. Runs until `stop`.
pub async fn run(cluster: Arc<Cluster>, dp: Arc<DataPlane>, stop: CancellationToken) {
    let mut watches: HashMap<String, Watch> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        if cluster.status().role != fulcrum_raft::Role::Leader {
            watches.clear();
            continue;
        }
        let state = cluster.raft.cluster_state().borrow().clone();
        watches.retain(|route, _| running(&state, route).is_some());
        for (route, split) in &state.splits {
            if running(&state, route).is_some() {
                let span = tracing::info_span!("shift", route = %route);
                let _ = tracing::Instrument::instrument(
                    tend(&cluster, &dp, &state, route, split, &mut watches),
                    span,
                )
                .await;
            }
        }
    }
}

fn running<'s>(state: &'s ClusterState, route: &str) -> Option<&'s fulcrum_raft::Shift> {
    (state.splits.get(route)?.shift.as_ref()).filter(|s| s.phase == Phase::Running)
}

/// Starts watching a newly committed step, or judges one whose time is up.
async fn tend(
    cluster: &Cluster,
    dp: &DataPlane,
    state: &ClusterState,
    route: &str,
    split: &SplitState,
    watches: &mut HashMap<String, Watch>,
) -> Option<()> {
    let shift = running(state, route)?;
    let watch = watches
        .get(route)
        .filter(|w| w.generation == split.generation);
    let Some(watch) = watch else {
        let baseline = figures(cluster, dp, state, &shift.plan.pool).await;
        tracing::info!(step = shift.steps, weights = ?split.weights, "watching a step");
        let watch = Watch {
            generation: split.generation,
            since: Instant::now(),
            baseline,
        };
        watches.insert(route.to_string(), watch);
        return Some(());
    };
    if watch.since.elapsed() < Duration::from_millis(shift.plan.every_ms) {
        return Some(());
    }
    let now = figures(cluster, dp, state, &shift.plan.pool).await;
    let window = window(&watch.baseline, &now);
    let fault = unhealthy(dp, &shift.plan.pool);
    let next = shift_plan::after_step(split, window.clone(), fault, now_ms())?;
    let phase = next.shift.as_ref().map(|s| s.phase.clone());
    tracing::info!(?window, ?phase, weights = ?next.weights, "step judged");
    let cmd = Command::SetSplit {
        route: route.to_string(),
        expect: split.generation,
        state: next,
    };
    if let Err(e) = cluster.raft.propose(cmd).await {
        // The next tick judges again, over a longer window.
        tracing::warn!(error = %e, "could not commit the shift's next step");
    }
    Some(())
}

/// A reason to roll back whatever the figures say: no backend of the pool is healthy
/// (the cluster's verdict), so its share goes to the other pools unseen.
fn unhealthy(dp: &DataPlane, pool: &str) -> Option<String> {
    let snapshot = dp.snapshot();
    let pool = snapshot.pools.get(pool)?;
    let healthy = pool.backends.iter().any(|b| b.state.healthy());
    (!healthy).then(|| format!("no backend of pool `{}` is healthy", pool.name))
}

/// The pool's figures on every member that answers: this node's from its data plane,
/// the others' from their `/status`.
async fn figures(
    cluster: &Cluster,
    dp: &DataPlane,
    state: &ClusterState,
    pool: &str,
) -> BTreeMap<NodeId, PoolFigures> {
    let me = cluster.raft.node_id();
    let mut out = BTreeMap::new();
    if let Some(runtime) = dp.snapshot().pools.get(pool) {
        out.insert(me, PoolFigures::of(runtime));
    }
    let mut asks = tokio::task::JoinSet::new();
    for (&id, node) in state.nodes.iter().filter(|(&id, _)| id != me) {
        let admin = node.admin_addr.clone();
        asks.spawn(async move { (id, crate::control::gather::ask(&admin).await) });
    }
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((id, Ok(status))) => {
                if let Some(f) = PoolFigures::from_status(&status, pool) {
                    out.insert(id, f);
                }
            }
            Ok((id, Err(e))) => tracing::debug!(node = id, error = %e, "no figures from a member"),
            Err(_) => {}
        }
    }
    out
}

/// One step's window over the members read both times.
fn window(before: &BTreeMap<NodeId, PoolFigures>, after: &BTreeMap<NodeId, PoolFigures>) -> Window {
    let mut sum = PoolFigures::default();
    for (id, now) in after {
        if let Some(then) = before.get(id) {
            sum.add(&now.since(then));
        }
    }
    Window {
        requests: sum.responses,
        errors: sum.errors,
        p99_us: shift_plan::quantile(&sum.buckets, 0.99).map(|s| (s * 1e6) as u64),
    }
}

/// The split routes of the running config with the weights they run, for `/status`:
/// `[{route, weights, replicated, shift}]`.
pub fn view(dp: &DataPlane, state: Option<&ClusterState>) -> serde_json::Value {
    let snapshot = dp.snapshot();
    let mut routes: Vec<_> = (snapshot.routes.values())
        .flat_map(|t| t.splits())
        .collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    routes.dedup_by(|a, b| a.name == b.name);
    let rows: Vec<serde_json::Value> = routes
        .into_iter()
        .map(|split| {
            let replicated = dp.splits.replicated(split).is_some();
            let weights: BTreeMap<&String, u32> =
                split.pools.iter().zip(dp.splits.current(split)).collect();
            let shift = state
                .and_then(|s| s.splits.get(&split.name))
                .and_then(|s| s.shift.as_ref());
            serde_json::json!({
                "route": split.name,
                "weights": weights,
                "replicated": replicated,
                "shift": shift,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}
