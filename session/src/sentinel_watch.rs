//! Listens to every sentinel's `+switch-master` announcements so that a promoted master is
//! used the moment the sentinels name it, instead of when the next failing command or the
//! routine re-check gets round to asking.
//!
//! One task per sentinel holds a pub/sub connection to it. An announcement for our master
//! (`<name> <old-ip> <old-port> <new-ip> <new-port>`) marks the link for re-resolution and
//! wakes the monitor, which asks the sentinels at once. Any error on the subscription (the
//! sentinel died, the connection dropped) also marks the link (an announcement may have been
//! missed) and the task reconnects after a short backoff. The tasks end when the store is
//! dropped (the `closed` channel's sender lives in the store).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::inner::Inner;

/// The channel sentinels publish a completed failover on.
pub const SWITCH_CHANNEL: &str = "+switch-master";
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Spawns one watcher per sentinel.
pub fn spawn(
    inner: &Arc<Inner>,
    sentinels: &[(String, u16)],
    master: &str,
    closed: &watch::Receiver<()>,
) {
    for (host, port) in sentinels {
        let url = match host.contains(':') {
            true => format!("redis://[{host}]:{port}"),
            false => format!("redis://{host}:{port}"),
        };
        tokio::spawn(watch_one(
            Arc::downgrade(inner),
            url,
            master.to_string(),
            closed.clone(),
        ));
    }
}

async fn watch_one(
    inner: Weak<Inner>,
    url: String,
    master: String,
    mut closed: watch::Receiver<()>,
) {
    let mut backoff = FIRST_RETRY;
    loop {
        let subscribed = tokio::select! {
            r = follow(&inner, &url, &master) => r,
            _ = closed.changed() => return,
        };
        match subscribed {
            // We were subscribed for a while: start the backoff over.
            Ok(()) => backoff = FIRST_RETRY,
            Err(e) => debug!(sentinel = %url, error = %e, "sentinel subscription failed"),
        }
        // Whatever went wrong, an announcement may have been missed: ask again.
        let Some(strong) = inner.upgrade() else {
            return;
        };
        strong.master_may_have_moved();
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = closed.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_RETRY);
    }
}

/// Subscribes and handles announcements until the subscription ends.
async fn follow(inner: &Weak<Inner>, url: &str, master: &str) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(url)?;
    let connect = client.get_async_pubsub();
    let mut pubsub = tokio::time::timeout(Duration::from_secs(1), connect)
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })??;
    pubsub.subscribe(SWITCH_CHANNEL).await?;
    debug!(sentinel = %url, "subscribed to +switch-master");
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let payload: String = msg.get_payload().unwrap_or_default();
        if names_master(&payload, master) {
            info!(sentinel = %url, announcement = %payload, "sentinel: master switched");
            let Some(strong) = inner.upgrade() else {
                return Ok(());
            };
            strong.master_may_have_moved();
        }
    }
    Ok(())
}

/// True when a `+switch-master` payload is about `master`.
fn names_master(payload: &str, master: &str) -> bool {
    payload.split_ascii_whitespace().next() == Some(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_master_counts() {
        assert!(names_master(
            "mymaster 127.0.0.1 6379 127.0.0.1 6380",
            "mymaster"
        ));
        assert!(!names_master(
            "other 127.0.0.1 6379 127.0.0.1 6380",
            "mymaster"
        ));
        assert!(!names_master(
            "mymaster2 127.0.0.1 6379 127.0.0.1 6380",
            "mymaster"
        ));
        assert!(!names_master("", "mymaster"));
    }
}
