//! Scenarios on the network: the leader partitioned from its peers (clients still reach
//! it), and packet loss plus delay on the leader's link.

use super::Ctx;
use crate::checks::Fault;
use crate::faults;
use anyhow::Result;

/// Cut the leader's Raft traffic at 3 s; heal at 8 s. The old leader must drop the VIP
/// within its lease, no two nodes may hold it, and the client is served within 1 s of the
/// heal whoever leads then.
pub async fn partition_leader(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let name = cx.ops.node_name(leader);
    let t = Some(leader);
    let what = format!("partition {name}");
    let marked = cx.tl.mark(Fault::Partition, t, what, 2000.0, true);
    cx.ops.partition(leader)?;
    cx.tl.note_applied(marked);
    cx.tl.until(8000).await;
    let marked = cx
        .tl
        .mark(Fault::Heal, t, format!("heal {name}"), 1000.0, true);
    cx.ops.heal(leader)?;
    cx.tl.note_applied(marked);
    Ok(())
}

/// 5% loss and 30 ms delay on the leader's link from 3 s to 9 s. Failures are expected
/// while it lasts (a lost SYN costs a 1 s retransmission); availability must stay high.
pub async fn netem(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let name = cx.ops.node_name(leader);
    let t = Some(leader);
    cx.tl
        .mark(Fault::NetemOn, t, format!("netem on {name}"), 7000.0, false);
    let applied = cx.ops.netem(leader, true)?;
    if let Some(last) = cx.tl.events.last_mut() {
        last.what = format!("netem on {name} ({applied})");
    }
    cx.tl.until(9000).await;
    cx.tl.mark(
        Fault::NetemOff,
        t,
        format!("netem off {name}"),
        1000.0,
        false,
    );
    cx.ops.netem(leader, false).map(|_| ())
}
