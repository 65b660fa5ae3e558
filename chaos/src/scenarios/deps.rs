//! Scenarios on what fulcrum depends on: Redis (affinity store) and the backends.

use super::Ctx;
use crate::checks::Fault;
use crate::faults;
use crate::ops::BackendAction;
use anyhow::Result;

/// Health detection: interval 500 ms x fall 2 + timeout, with slack for a loaded machine.
const DETECT_MS: f64 = 2500.0;

/// kill -9 Redis at 3 s, start it at 8 s: nothing may fail and pins must hold.
pub async fn redis_down(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(3000).await;
    cx.tl
        .mark(Fault::RedisDown, None, "kill redis".into(), 0.0, false);
    cx.ops.redis(false)?;
    cx.tl.until(8000).await;
    cx.tl
        .mark(Fault::RedisUp, None, "start redis".into(), 0.0, false);
    cx.ops.redis(true)
}

/// A backend fault at 3 s and its repair at 8 s.
pub async fn backend(cx: &mut Ctx<'_>, fault: BackendAction, repair: BackendAction) -> Result<()> {
    cx.tl.until(3000).await;
    faults::backend(cx.ops, &mut cx.tl, 0, fault, DETECT_MS)?;
    cx.tl.until(8000).await;
    faults::backend(cx.ops, &mut cx.tl, 0, repair, 0.0)
}
