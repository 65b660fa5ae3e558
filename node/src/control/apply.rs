//! Applying a balancer config to this node: the one place a parsed config becomes the
//! running one.
//!
//! Both ways in parse the text once and hand the `Config` on: an operator's file when the
//! node runs alone (`apply_file`: file at start, SIGHUP, `PUT /config`) and a version
//! committed through Raft (`apply_committed`, called by `control::follow`). The node keeps
//! its own node-local and fixed keys (`Config::with_local_from`, which follows
//! `fulcrum_config::SCOPES`). Nothing changes on error: any new listener is bound and
//! every certificate file read before the snapshot swaps; then the health checkers
//! restart. A committed version that failed is remembered (`failure`) for `/status`.

use crate::conn_limit::ConnLimits;
use crate::control::vip_agree::{self, VipSetting};
use crate::dataplane::DataPlane;
use crate::health;
use crate::listener::{self, HttpListenerSpec};
use crate::metrics::{RefusedLabels, ResultLabels};
use fulcrum_config::{Config, ConfigErrors, Protocol};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a config could not be applied (or proposed). Nothing changed in every case.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    #[error("listener {name}: cannot bind {bind}: {source}")]
    Bind {
        name: String,
        bind: String,
        source: std::io::Error,
    },
    #[error("listener {listener} would bind {addr}, this node's admin address")]
    AdminClash {
        listener: String,
        addr: std::net::SocketAddr,
    },
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Scope(#[from] fulcrum_config::ScopeError),
    #[error("{0}")]
    Cluster(#[from] fulcrum_raft::ProposeError),
    #[error("{0}")]
    ClusterStart(#[from] crate::control::cluster::ClusterError),
    #[error("VIP: {0}")]
    Vip(#[from] fulcrum_vip::VipError),
    #[error("the control runtime stopped: {0}")]
    ControlRuntime(#[from] tokio::task::JoinError),
}

impl ApplyError {
    /// Whether trying the same text again may succeed: a bind or a certificate file
    /// depends on the machine and may change; a text refused as invalid, or one that
    /// clashes with this node's own `[node]` settings, will not.
    pub fn may_pass_later(&self) -> bool {
        !matches!(self, ApplyError::Invalid(_) | ApplyError::AdminClash { .. })
    }
}

/// A committed config version this node could not apply (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyFailure {
    pub version: u64,
    /// The last attempt's error.
    pub reason: String,
    /// When the first attempt at this version failed.
    pub since: SystemTime,
    pub attempts: u64,
    /// False when retrying cannot help (the text is refused): waits for a newer version.
    pub retrying: bool,
}

/// Checks a config about to be proposed the way this node would check its own file:
/// the certificate files it names are readable here and `[vip]` is unchanged. What only
/// a node can know when it applies (a bind) is not checked.
pub fn check_proposal(
    running: &Config,
    config: &Config,
    text: &str,
    origin: &str,
) -> Result<(), ApplyError> {
    vip_agree::check_change(running, config, text, origin)?;
    crate::tls::check_config(&config.with_local_from(running)?)?;
    Ok(())
}

/// The leader's check of every config proposal, its own or a follower's
/// ([`check_proposal`] on the replicated text): a follower of another version, or with
/// files the leader lacks, cannot commit a config the leader would refuse.
pub fn leader_check(me: u64, dp: Arc<DataPlane>) -> fulcrum_raft::WriteCheck {
    fulcrum_raft::WriteCheck(Arc::new(move |cmd| {
        let fulcrum_raft::Command::SetConfig { toml } = cmd else {
            return Ok(());
        };
        let origin = "the proposed config";
        fulcrum_config::parse(toml, origin)
            .map_err(ApplyError::from)
            .and_then(|c| check_proposal(&dp.snapshot().config, &c, toml, origin))
            .map_err(|e| format!("node {me}: {e}"))
    }))
}

/// Identity of a bound listener: a changed bind or protocol means a new socket.
type ListenerKey = (String, String, &'static str);

/// Sockets bound for a config, not yet serving.
pub struct Bound(Vec<(ListenerKey, TcpListener)>);

/// What applies configs to this node's data plane, listeners and health checkers.
pub struct Applier {
    dp: Arc<DataPlane>,
    version: AtomicU64,
    listeners: Mutex<HashMap<ListenerKey, CancellationToken>>,
    health_stop: Mutex<CancellationToken>,
    /// The node's stop: listeners and checkers are its children.
    stop: CancellationToken,
    connections: TaskTracker,
    /// Where the health checkers' verdicts go (the cluster's reporter, when clustered).
    verdicts: health::VerdictHook,
    /// Serialises applies so two cannot interleave.
    lock: tokio::sync::Mutex<()>,
    failure: Mutex<Option<ApplyFailure>>,
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "http",
        Protocol::Https => "https",
        Protocol::Tcp => "tcp",
    }
}

fn key_of(l: &fulcrum_config::Listener) -> ListenerKey {
    (l.name.clone(), l.bind.clone(), protocol_name(l.protocol))
}

impl Applier {
    /// An applier for `dp`, which already runs `version` (not yet listening).
    pub fn new(
        dp: Arc<DataPlane>,
        version: u64,
        stop: CancellationToken,
        connections: TaskTracker,
        verdicts: health::VerdictHook,
    ) -> Applier {
        Applier {
            dp,
            version: AtomicU64::new(version),
            listeners: Mutex::new(HashMap::new()),
            health_stop: Mutex::new(CancellationToken::new()),
            stop,
            connections,
            verdicts,
            lock: tokio::sync::Mutex::new(()),
            failure: Mutex::new(None),
        }
    }

    /// The config version this node runs.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// The committed version this node failed to apply, while it still runs an older one.
    pub fn failure(&self) -> Option<ApplyFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves the sockets bound by [`bind_all`] at start.
    pub fn listen(&self, config: &Config, bound: Bound) {
        self.start_listeners(config, bound);
    }

    /// An operator's file on a node without a cluster: validated, `[vip]` unchanged,
    /// applied as the next version. The file's node-local sections are ignored.
    pub async fn apply_file(&self, text: &str, origin: &str) -> Result<u64, ApplyError> {
        let _serialised = self.lock.lock().await;
        let result = self.apply_file_locked(text, origin);
        let label = if result.is_ok() { "ok" } else { "refused" };
        self.dp
            .metrics
            .reloads
            .get_or_create(&ResultLabels {
                result: label.to_string(),
            })
            .inc();
        if let Err(e) = &result {
            tracing::warn!(error = %e, "config refused; the running config stays");
        }
        result
    }

    fn apply_file_locked(&self, text: &str, origin: &str) -> Result<u64, ApplyError> {
        let config = fulcrum_config::parse(text, origin)?;
        let running = self.dp.snapshot();
        vip_agree::check_change(&running.config, &config, text, origin)?;
        let config = config.with_local_from(&running.config)?;
        drop(running);
        self.swap(config, text, None)
    }

    /// A version committed through Raft (skipped when already running): parsed once,
    /// with this node's own local and fixed keys.
    #[tracing::instrument(level = "info", skip(self, text))]
    pub async fn apply_committed(&self, text: &str, version: u64) -> Result<(), ApplyError> {
        let _serialised = self.lock.lock().await;
        let running_version = self.version();
        if version <= running_version && running_version != 0 {
            return Ok(());
        }
        let replicated = fulcrum_config::parse(text, "raft")?;
        let running = self.dp.snapshot();
        if running_version == 0 && running.source.trim() != text.trim() {
            tracing::info!("the cluster's config differs from the local file; Raft's version wins");
        }
        // `[vip]` is fixed at run time (see `control::vip_agree`); a replicated text that
        // says otherwise (a log from before `ctl apply` refused such changes) is noted.
        let theirs = VipSetting::of(&replicated);
        if theirs.is_some_and(|v| VipSetting::of(&running.config) != Some(v)) {
            tracing::warn!(
                "the replicated config has another [vip] than this node runs; [vip] is not \
                 changed at run time and this node keeps its own"
            );
        }
        let config = replicated.with_local_from(&running.config)?;
        drop(running);
        self.swap(config, text, Some(version)).map(|_| ())
    }

    /// Binds what is new, then swaps the snapshot and the listeners.
    fn swap(&self, config: Config, text: &str, version: Option<u64>) -> Result<u64, ApplyError> {
        check_admin_clash(&config)?;
        let config = Arc::new(config);
        let running = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let bound = bind_new(&config, &running)?;
        let version = match version {
            Some(v) => {
                self.version.store(v, Ordering::Relaxed);
                v
            }
            None => self.version.fetch_add(1, Ordering::Relaxed) + 1,
        };
        self.dp.apply(config.clone(), Arc::from(text), version);
        self.stop_removed_listeners(&config);
        self.start_listeners(&config, bound);
        self.restart_health();
        Ok(version)
    }

    /// Records a failed attempt at committed `version`; returns the updated record.
    pub fn note_failure(&self, version: u64, error: &ApplyError) -> ApplyFailure {
        self.dp.metrics.config.apply_failures.inc();
        let retrying = error.may_pass_later();
        let reason = error.to_string();
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let failure = match slot.take().filter(|f| f.version == version) {
            Some(f) => ApplyFailure {
                attempts: f.attempts + 1,
                reason,
                retrying,
                ..f
            },
            None => {
                tracing::error!(version, running = self.version(), error = %error, retrying, "replicated config could not be applied; keeping the previous one");
                ApplyFailure {
                    version,
                    reason,
                    since: SystemTime::now(),
                    attempts: 1,
                    retrying,
                }
            }
        };
        tracing::debug!(version, attempts = failure.attempts, error = %error, "config apply attempt failed");
        *slot = Some(failure.clone());
        failure
    }

    /// Forgets a failure once version `running` (or a newer one) runs.
    pub fn clear_failure(&self, running: u64) {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = slot.as_ref().filter(|f| f.version <= running) {
            tracing::info!(
                version = running,
                failed_attempts = f.attempts,
                "replicated config applied after failed attempts"
            );
            *slot = None;
        }
    }

    fn start_listeners(&self, config: &Config, bound: Bound) {
        let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for (key, socket) in bound.0 {
            let Some(l) = config.listener.iter().find(|l| key_of(l) == key) else {
                continue;
            };
            let spec = HttpListenerSpec {
                name: Arc::from(l.name.as_str()),
                header_read_timeout: l.header_read_timeout,
                idle_timeout: l.idle_timeout,
                max_header_bytes: l.max_header_bytes,
            };
            let refused = self
                .dp
                .metrics
                .connections_refused
                .get_or_create(&RefusedLabels {
                    listener: l.name.clone(),
                    reason: "per_ip".into(),
                });
            let limits =
                ConnLimits::new(l.max_connections, l.max_connections_per_ip, refused.clone());
            let token = self.stop.child_token();
            let (dp, stop, tracker) = (self.dp.clone(), token.clone(), self.connections.clone());
            match l.protocol {
                Protocol::Http => {
                    tokio::spawn(listener::serve_http(
                        socket, spec, limits, dp, stop, tracker,
                    ));
                }
                Protocol::Https => match crate::tls::TlsServer::new(l) {
                    Ok(tls) => {
                        tokio::spawn(crate::tls::serve_https(
                            socket, spec, limits, tls, dp, stop, tracker,
                        ));
                    }
                    // Checked in `bind_new`; only a file broken in between lands here.
                    Err(e) => {
                        tracing::error!(listener = %l.name, error = %e, "not listening");
                        continue;
                    }
                },
                Protocol::Tcp => {
                    tokio::spawn(crate::l4::serve_tcp(
                        socket, spec.name, limits, dp, stop, tracker,
                    ));
                }
            }
            tracing::info!(listener = %l.name, bind = %l.bind, protocol = protocol_name(l.protocol), "listening");
            running.insert(key, token);
        }
    }

    fn stop_removed_listeners(&self, config: &Config) {
        let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|key, token| {
            let keep = config.listener.iter().any(|l| key_of(l) == *key);
            if !keep {
                tracing::info!(listener = %key.0, bind = %key.1, "listener removed by new config");
                token.cancel();
            }
            keep
        });
    }

    /// The discovered sets this node runs (`control::discovery`).
    pub fn discovered(&self) -> crate::discovered::DiscoveredSets {
        self.dp.discovered()
    }

    /// Runs `sets` as the discovered backends; checkers restart when addresses changed,
    /// so a new backend is checked (and gets traffic only once it passes).
    pub fn set_discovered(&self, sets: crate::discovered::DiscoveredSets) {
        if self.dp.set_discovered(sets) == Some(true) {
            self.restart_health();
        }
    }

    /// (Re)starts the health checkers of the running config.
    pub fn restart_health(&self) {
        let token = self.stop.child_token();
        let old = std::mem::replace(
            &mut *self.health_stop.lock().unwrap_or_else(|p| p.into_inner()),
            token.clone(),
        );
        old.cancel();
        health::spawn_all(&self.dp, &token, self.verdicts.clone());
    }
}

/// A listener whose bind lands on this node's admin address (`[node] listen_ip` can make
/// a replicated `bind` do so on one node only) is refused: the admin API holds it.
fn check_admin_clash(config: &Config) -> Result<(), ApplyError> {
    let Some(node) = &config.node else {
        return Ok(());
    };
    match (config.listener.iter()).find(|l| l.local_bind_addr(node.listen_ip) == Some(node.admin)) {
        Some(l) => Err(ApplyError::AdminClash {
            listener: l.name.clone(),
            addr: node.admin,
        }),
        None => Ok(()),
    }
}

/// Binds the listeners of `config` that are not already running.
fn bind_new(
    config: &Config,
    running: &HashMap<ListenerKey, CancellationToken>,
) -> Result<Bound, ApplyError> {
    // Certificate/key files of every HTTPS listener and TLS pool, running or new:
    // a broken file refuses the whole config (issue 7).
    crate::tls::check_config(config)?;
    let mut bound = Vec::new();
    for l in &config.listener {
        let key = key_of(l);
        if running.contains_key(&key) {
            continue;
        }
        let listen_ip = config.node.as_ref().and_then(|n| n.listen_ip);
        let addr = l
            .local_bind_addr(listen_ip)
            .ok_or_else(|| ApplyError::Bind {
                name: l.name.clone(),
                bind: l.bind.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an address"),
            })?;
        let socket = listener::bind(addr).map_err(|source| ApplyError::Bind {
            name: l.name.clone(),
            bind: l.bind.clone(),
            source,
        })?;
        bound.push((key, socket));
    }
    Ok(Bound(bound))
}

/// Binds every listener of `config` (a node starting).
pub fn bind_all(config: &Config) -> Result<Bound, ApplyError> {
    bind_new(config, &HashMap::new())
}
