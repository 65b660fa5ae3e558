//! cpu-hog: more busy processes than cores for a bounded time while the load runs
//! through the data plane; nothing may move (no leader change, no VIP move) and nothing
//! may fail.

use super::Ctx;
use crate::checks::Fault;
use crate::scenarios::plan::HOG_MARGIN_MS;
use anyhow::Result;

/// Busy processes from 3 s on, for `--hog-secs`; their CPU share is the evidence.
pub async fn cpu_hog(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(HOG_MARGIN_MS).await;
    let what = format!("cpu hog for {:.0} s", cx.hog.as_secs_f64());
    cx.tl.mark(Fault::HogOn, None, what, 0.0, false);
    let on = cx.tl.events.len() - 1;
    cx.ops.hog_start(cx.hog_procs, cx.hog)?;
    let end = HOG_MARGIN_MS + u64::try_from(cx.hog.as_millis()).unwrap_or(u64::MAX / 2);
    cx.tl.until(end).await;
    let used = cx.ops.hog_stop();
    cx.tl
        .mark(Fault::HogOff, None, "cpu hog ends".into(), 0.0, false);
    let used = used?;
    if let Some(e) = cx.tl.events.get_mut(on) {
        e.what = format!(
            "{} ({} processes on {} cores: {:.0}% CPU, machine idle {:.1}%)",
            e.what, used.procs, used.cores, used.hog_pct, used.idle_pct
        );
        e.cpu = Some(used);
    }
    Ok(())
}
