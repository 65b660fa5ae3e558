//! BGP mode (`[bgp]`): this node announces the service prefixes through its local BIRD
//! while it should receive traffic, and withdraws them otherwise.
//!
//! The announcer is a small loop: every `TICK` it asks what the node looks like
//! ([`Inputs`], gathered outside `control/`), [`decide`]s, and when the answer changed it
//! rewrites BIRD's fragment and reloads BIRD (`control::bird`). A failed reload is retried
//! on the next tick. The service link (`fulcrum_vip::ServiceLink`) is the dead man's
//! switch: the routes point at it, so they vanish from BIRD when the process dies.

use crate::control::bird::{Bird, Protocol};
use fulcrum_config::{BgpSection, IpNet};
use fulcrum_vip::ServiceLink;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the announcer re-evaluates (and BIRD's sessions are read).
const TICK: Duration = Duration::from_millis(100);
/// Sessions are read from BIRD this often.
const SESSIONS_EVERY: Duration = Duration::from_secs(1);

/// Why BGP mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    #[error("[bgp] prefix {prefix:?}: {reason}")]
    Prefix { prefix: String, reason: String },
    #[error("[bgp] cannot create the service link {link:?}: {source}")]
    Link {
        link: String,
        #[source]
        source: fulcrum_vip::VipError,
    },
}

/// What the node looks like to the announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// Raft: a fresh lease (leader) or a recent ping from the leader (follower); always
    /// true for a node without `[cluster]`.
    pub quorum: bool,
    /// The committed config runs here (no apply failure).
    pub data_plane_up: bool,
    /// At least one backend is healthy and not drained.
    pub backend_up: bool,
    /// The node's drain is committed (`ctl drain-node` in a cluster; survives restarts).
    pub drained: bool,
}

/// `None`: announce. `Some(reason)`: withdraw, because of `reason` (`drained`: the local
/// drain of a node without `[cluster]`; a committed one is `i.drained`).
pub fn decide(stopping: bool, drained: bool, i: Inputs) -> Option<&'static str> {
    if stopping {
        Some("stopping")
    } else if drained || i.drained {
        Some("drained")
    } else if !i.quorum {
        Some("no quorum")
    } else if !i.data_plane_up {
        Some("data plane not running the committed config")
    } else if !i.backend_up {
        Some("no healthy backend")
    } else {
        None
    }
}

/// What `/status` and `/metrics` show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BgpView {
    /// The state BIRD was last told (and took).
    pub announced: bool,
    /// Why the prefixes are withdrawn, when they are (what BIRD was last told).
    pub withdrawn_because: Option<String>,
    pub drained: bool,
    pub prefixes: Vec<String>,
    pub link: String,
    /// The last error talking to BIRD, if the last attempt failed.
    pub error: Option<String>,
    /// BIRD's protocols other than this node's static ones (the BGP sessions, BFD, ...).
    pub sessions: Vec<Protocol>,
    /// Changes of `announced` since start.
    pub transitions: u64,
}

/// The running BGP mode of this node.
pub struct Bgp {
    bird: Bird,
    _link: ServiceLink,
    drained: AtomicBool,
    stopping: AtomicBool,
    wake: Notify,
    applied: Notify,
    view: Mutex<BgpView>,
    pub withdraw_wait: Duration,
    pub quorum_grace: Duration,
}

/// The service addresses of `[bgp]`, parsed.
fn prefixes(section: &BgpSection) -> Result<Vec<(std::net::IpAddr, u8)>, BgpError> {
    section
        .prefixes
        .iter()
        .map(|p| {
            IpNet::parse(p)
                .map(|n| (n.addr, n.prefix))
                .map_err(|reason| BgpError::Prefix {
                    prefix: p.clone(),
                    reason,
                })
        })
        .collect()
}

impl Bgp {
    /// Creates the service link with the service addresses on it and tells BIRD the
    /// prefixes are withdrawn (the announcer announces once the node is ready).
    pub async fn start(section: &BgpSection) -> Result<Arc<Bgp>, BgpError> {
        let prefixes = prefixes(section)?;
        let link_name = format!("{}0", section.protocol);
        let link = ServiceLink::create(&link_name, &prefixes)
            .await
            .map_err(|source| BgpError::Link {
                link: link_name.clone(),
                source,
            })?;
        let bird = Bird {
            birdc: section.birdc.clone(),
            socket: section.socket.clone(),
            fragment: section.fragment.clone(),
            stem: section.protocol.clone(),
            link: link_name.clone(),
            prefixes,
        };
        // BIRD may start after this node: the announcer keeps trying, and until BIRD has
        // the fragment it announces nothing of ours.
        let error = match bird.apply(false).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "BGP mode: BIRD not reachable yet; will keep trying");
                Some(e.to_string())
            }
        };
        tracing::info!(link = %link_name, prefixes = ?section.prefixes, "BGP mode: service link up, prefixes withdrawn until the node is ready");
        Ok(Arc::new(Bgp {
            bird,
            _link: link,
            drained: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            applied: Notify::new(),
            view: Mutex::new(BgpView {
                announced: false,
                withdrawn_because: Some("starting".into()),
                drained: false,
                prefixes: section.prefixes.clone(),
                link: link_name,
                error,
                sessions: Vec::new(),
                transitions: 0,
            }),
            withdraw_wait: section.withdraw_wait,
            quorum_grace: section.quorum_grace,
        }))
    }

    pub fn view(&self) -> BgpView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Operator drain of a node without `[cluster]` (this process only): withdraw, and
    /// keep serving what still arrives. In a cluster the drain is committed and comes in
    /// through `Inputs::drained`.
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::SeqCst);
        self.wake();
    }

    /// Looks at the inputs again now rather than at the next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Planned stop: withdraws and returns once BIRD took the withdrawal (or `within`
    /// passed); the caller then waits `withdraw_wait` for the routers before it stops
    /// accepting.
    pub async fn withdraw_for_stop(&self, within: Duration) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + within;
        loop {
            let applied = self.applied.notified();
            self.wake.notify_one();
            {
                let v = self.view();
                if !v.announced && v.withdrawn_because.as_deref() == Some("stopping") {
                    return true;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, applied).await.is_err() {
                return false;
            }
        }
    }

    /// Runs the announcer until `stop`: `inputs` is asked every tick.
    pub async fn run(self: Arc<Self>, inputs: impl Fn() -> Inputs, stop: CancellationToken) {
        let mut told: Option<Option<&'static str>> = None;
        let mut sessions_at = Instant::now() - SESSIONS_EVERY;
        loop {
            let now = inputs();
            let drained = self.drained.load(Ordering::SeqCst);
            self.view.lock().unwrap_or_else(|p| p.into_inner()).drained = drained || now.drained;
            let want = decide(self.stopping.load(Ordering::SeqCst), drained, now);
            if told != Some(want) {
                let span = tracing::info_span!(
                    "bgp",
                    announce = want.is_none(),
                    reason = want.unwrap_or("")
                );
                let _g = span.enter();
                match self.bird.apply(want.is_none()).await {
                    Ok(()) => {
                        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
                        if v.announced != want.is_none() {
                            v.transitions += 1;
                        }
                        v.announced = want.is_none();
                        v.withdrawn_because = want.map(str::to_string);
                        v.error = None;
                        drop(v);
                        match want {
                            None => tracing::info!("BGP: prefixes announced"),
                            Some(reason) => tracing::warn!(reason, "BGP: prefixes withdrawn"),
                        }
                        told = Some(want);
                        self.applied.notify_waiters();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "BGP: BIRD did not take the change; retrying");
                        self.view.lock().unwrap_or_else(|p| p.into_inner()).error =
                            Some(e.to_string());
                    }
                }
            }
            if sessions_at.elapsed() >= SESSIONS_EVERY {
                sessions_at = Instant::now();
                self.refresh_sessions().await;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn refresh_sessions(&self) {
        let own = |name: &str| {
            name.strip_prefix(self.bird.stem.as_str())
                .is_some_and(|rest| rest == "4" || rest == "6")
        };
        match self.bird.protocols().await {
            Ok(all) => {
                let sessions = all
                    .into_iter()
                    .filter(|p| p.proto == "BGP" || p.proto == "BFD")
                    .filter(|p| !own(&p.name))
                    .collect();
                self.view.lock().unwrap_or_else(|p| p.into_inner()).sessions = sessions;
            }
            Err(e) => {
                tracing::debug!(error = %e, "BGP: cannot read BIRD's protocols");
                self.view.lock().unwrap_or_else(|p| p.into_inner()).sessions = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: Inputs = Inputs {
        quorum: true,
        data_plane_up: true,
        backend_up: true,
        drained: false,
    };

    #[test]
    fn announces_only_when_everything_is_fine() {
        assert_eq!(decide(false, false, READY), None);
        assert_eq!(decide(true, false, READY), Some("stopping"));
        assert_eq!(decide(false, true, READY), Some("drained"));
        let committed_drain = Inputs {
            drained: true,
            ..READY
        };
        assert_eq!(decide(false, false, committed_drain), Some("drained"));
        let no_quorum = Inputs {
            quorum: false,
            ..READY
        };
        assert_eq!(decide(false, false, no_quorum), Some("no quorum"));
        let broken = Inputs {
            data_plane_up: false,
            ..READY
        };
        assert!(decide(false, false, broken).is_some_and(|r| r.starts_with("data plane")));
        let no_backend = Inputs {
            backend_up: false,
            ..READY
        };
        assert_eq!(decide(false, false, no_backend), Some("no healthy backend"));
    }

    #[test]
    fn stopping_wins_over_every_other_reason() {
        let nothing = Inputs {
            quorum: false,
            data_plane_up: false,
            backend_up: false,
            drained: true,
        };
        assert_eq!(decide(true, true, nothing), Some("stopping"));
    }
}
