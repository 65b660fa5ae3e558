//! The signal to scale (issue 25 item 4): a task on the node samples each pool that has
//! a `scale_hook` once a second and, when `scale_decide` says so, POSTs
//! `{pool, node, saturation, in_flight, queued, capacity, direction}` to the hook's URL.
//!
//! Nothing here touches the request path: the sample reads counters requests keep anyway
//! (`pool_load`), and each call runs in its own task with a timeout, so a slow or failing
//! receiver delays nothing but itself. Every call is logged and counted in
//! `fulcrum_scale_hook_calls_total{pool,direction,result}`.

use super::scale_decide::{Bounds, Decider, Direction};
use crate::app::Node;
use crate::pool_load::PoolLoad;
use fulcrum_config::ScaleHook;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

/// How often pools are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Why a call did not reach a 2xx answer.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("bad url: {0}")]
    Url(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0:?}")]
    Status(String),
}

/// Starts the sampling task; it ends when the node stops.
pub fn spawn(node: &Arc<Node>) {
    let node = node.clone();
    tokio::spawn(async move {
        let mut deciders: HashMap<String, Decider> = HashMap::new();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = node.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            sample(&node, &mut deciders);
        }
    });
}

/// One round: every pool with a hook is read, and called for when its rule says so.
fn sample(node: &Arc<Node>, deciders: &mut HashMap<String, Decider>) {
    let snapshot = node.dp.snapshot();
    let hooked = || {
        (snapshot.config.pool.iter())
            .filter_map(|p| Some((p.name.as_str(), p.scale_hook.as_ref()?)))
    };
    deciders.retain(|name, _| hooked().any(|(n, _)| n == name));
    for (name, hook) in hooked() {
        let Some(pool) = snapshot.pools.get(name) else {
            continue;
        };
        let load = PoolLoad::of(pool);
        let Some(saturation) = load.saturation() else {
            continue;
        };
        let bounds = Bounds {
            above: hook.above,
            below: hook.below,
            hold: hook.hold,
            cooldown: hook.cooldown,
        };
        let decider = deciders.entry(name.to_string()).or_default();
        if let Some(direction) = decider.sample(&bounds, saturation, Instant::now()) {
            let body = serde_json::json!({
                "pool": name,
                "node": node.local.id,
                "saturation": saturation,
                "in_flight": load.in_flight,
                "queued": load.queued,
                "capacity": load.capacity,
                "direction": direction.as_str(),
            });
            let span =
                tracing::info_span!("scale_hook", pool = %name, direction = direction.as_str());
            tracing::info!(parent: &span, %saturation, "saturation past a bound: calling the scale hook");
            let called = call(
                node.clone(),
                name.to_string(),
                hook.clone(),
                direction,
                body,
            );
            tokio::spawn(called.instrument(span));
        }
    }
}

/// Makes one call and records how it went.
async fn call(
    node: Arc<Node>,
    pool: String,
    hook: ScaleHook,
    direction: Direction,
    body: serde_json::Value,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(hook.timeout, post(&hook, &body))
        .await
        .unwrap_or(Err(HookError::Timeout(hook.timeout)));
    let label = match &result {
        Ok(()) => "ok",
        Err(HookError::Timeout(_)) => "timeout",
        Err(_) => "failed",
    };
    node.dp
        .metrics
        .pools
        .hook_call(&pool, direction.as_str(), label);
    match result {
        Ok(()) => {
            tracing::info!(url = %hook.url, %body, took = ?started.elapsed(), "scale hook called")
        }
        Err(e) => tracing::warn!(url = %hook.url, %body, error = %e, "scale hook call failed"),
    }
}

/// POSTs `body` as JSON; a 2xx status line is success.
async fn post(hook: &ScaleHook, body: &serde_json::Value) -> Result<(), HookError> {
    let (addr, path) = hook.target().map_err(HookError::Url)?;
    let payload = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("").to_string();
    let status = line.split(' ').nth(1).unwrap_or("");
    if status.len() == 3 && status.starts_with('2') {
        Ok(())
    } else {
        Err(HookError::Status(line))
    }
}
