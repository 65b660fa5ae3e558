//! The running node: data plane, listeners, health checks and config changes wired together.
//!
//! `Node` owns what lives for the whole process. `apply_text` is the single way a new
//! balancer config becomes active (file at start, SIGHUP, `PUT /config`): it validates
//! first and changes nothing on error, binds any new listener before swapping so a bad
//! bind also changes nothing, then swaps the snapshot and restarts the health checkers.

use crate::cluster::Cluster;
use crate::conn_limit::ConnLimits;
use crate::control::vip_agree::{self, VipSetting};
use crate::control::vip_guard::VipGuard;
use crate::dataplane::DataPlane;
use crate::health;
use crate::listener::{self, HttpListenerSpec};
use crate::metrics::RefusedLabels;
use crate::metrics::{Metrics, ResultLabels};
use fulcrum_config::{Config, ConfigErrors, NodeSection, Protocol};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a config could not be applied. Nothing changed in every case.
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
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Cluster(#[from] fulcrum_raft::ProposeError),
    #[error("{0}")]
    ClusterStart(#[from] crate::cluster::ClusterError),
    #[error("VIP: {0}")]
    Vip(#[from] fulcrum_vip::VipError),
    #[error("the control runtime stopped: {0}")]
    ControlRuntime(#[from] tokio::task::JoinError),
}

/// The control runtime when it runs (`fulcrum run` with `[cluster]`), else this one.
fn control_runtime() -> tokio::runtime::Handle {
    crate::control::thread::control_handle().unwrap_or_else(tokio::runtime::Handle::current)
}

/// Identity of a bound listener: a changed bind or protocol means a new socket.
type ListenerKey = (String, String, &'static str);

pub struct Node {
    pub dp: Arc<DataPlane>,
    pub local: NodeSection,
    pub config_path: PathBuf,
    pub admin_token: Option<String>,
    version: AtomicU64,
    listeners: Mutex<HashMap<ListenerKey, CancellationToken>>,
    health_stop: Mutex<CancellationToken>,
    /// Fires once on shutdown: listeners stop, connections finish gracefully.
    pub stop: CancellationToken,
    /// Stops the VIP's leadership follower (fired before leadership is handed off).
    pub vip_stop: CancellationToken,
    pub connections: TaskTracker,
    /// Serialises config changes so two reloads cannot interleave.
    apply_lock: tokio::sync::Mutex<()>,
    /// Set when `[cluster]` is configured: changes then go through Raft.
    pub cluster: Arc<OnceLock<Arc<Cluster>>>,
    /// The floating address, when `[vip]` is configured.
    pub vip: OnceLock<Arc<VipGuard>>,
    /// Recent transitions for operators (`/status` `events`, the dashboard).
    pub events: crate::control::events::Events,
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

impl Node {
    /// Starts a node from an already validated config.
    pub async fn start(
        config: Config,
        source: String,
        config_path: PathBuf,
    ) -> Result<Arc<Node>, ApplyError> {
        let local = config.node.clone().ok_or_else(|| {
            ConfigErrors::single(fulcrum_config::ConfigError::whole_file(
                config_path.display().to_string(),
                "[node] section is required to run a node".to_string(),
            ))
        })?;
        let admin_token = read_token(&local)?;
        let config = Arc::new(config);
        let bound = bind_new(&config, &HashMap::new())?;
        // In a cluster the file is only the seed: version 0 until Raft's version arrives.
        let version = if config.cluster.is_some() { 0 } else { 1 };
        let dp = DataPlane::new(config.clone(), Arc::from(source), version, Metrics::new());
        let node = Arc::new(Node {
            dp,
            local,
            config_path,
            admin_token,
            version: AtomicU64::new(version),
            listeners: Mutex::new(HashMap::new()),
            health_stop: Mutex::new(CancellationToken::new()),
            stop: CancellationToken::new(),
            vip_stop: CancellationToken::new(),
            connections: TaskTracker::new(),
            apply_lock: tokio::sync::Mutex::new(()),
            cluster: Arc::new(OnceLock::new()),
            vip: OnceLock::new(),
            events: Default::default(),
        });
        node.start_listeners(&config, bound);
        // The guard exists before Raft so that Raft's first vote already shuts its fence.
        // Started on the control runtime: the address task it spawns then runs on the control
        // thread (real-time priority when allowed), not behind data-plane work; a claim on a
        // busy machine waited 4-7 ms for the data-plane runtime to run that task.
        let vip = {
            let (config, clustered) = (config.clone(), config.cluster.is_some());
            control_runtime()
                .spawn(async move { VipGuard::start(&config, clustered).await })
                .await??
        };
        if let Some(section) = &config.cluster {
            let hook = vip.as_ref().map(VipGuard::hook);
            let cluster = Arc::new(Cluster::start(&node.local, section, &config, hook).await?);
            node.dp.registry.set_clustered(true);
            let _ = node.cluster.set(cluster.clone());
            tokio::spawn(cluster.follow(node.clone()));
        }
        if let Some(vip) = vip {
            let _ = node.vip.set(vip.clone());
            match node.cluster() {
                Some(cluster) => {
                    vip.attach_lease(cluster.raft.lease());
                    let follow = vip.follow_leadership(cluster.clone(), node.vip_stop.clone());
                    control_runtime().spawn(follow);
                }
                None => vip.hold_alone(),
            }
        }
        node.restart_health();
        tokio::spawn(crate::control::events::watch(node.clone()));
        Ok(node)
    }

    /// The Raft member, when this node is part of a cluster.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// The operator's way to change the config (admin API, `ctl apply`, SIGHUP):
    /// validated here, then through Raft in a cluster, or applied locally when alone.
    pub async fn change_config(&self, text: &str, origin: &str) -> Result<u64, ApplyError> {
        let Some(cluster) = self.cluster() else {
            return self.apply_text(text, origin).await;
        };
        let config = fulcrum_config::parse(text, origin).map_err(|e| {
            tracing::warn!(error = %e, "config refused; the running config stays");
            ApplyError::Invalid(e)
        })?;
        crate::tls::check_config(&config)?;
        vip_agree::check_change(&self.dp.snapshot().config, &config, text, origin).inspect_err(
            |e| tracing::warn!(error = %e, "config refused; the running config stays"),
        )?;
        let version = cluster.propose_config(&config).await?;
        tracing::info!(version, origin, "config committed through raft");
        Ok(version)
    }

    /// Drain or undrain a backend: through Raft in a cluster, locally when alone.
    pub async fn change_drain(
        &self,
        pool: &str,
        addr: &str,
        drained: bool,
    ) -> Result<bool, ApplyError> {
        if self.dp.registry.find(pool, addr).is_none() {
            return Ok(false);
        }
        match self.cluster() {
            Some(cluster) => cluster
                .propose_drain(pool, addr, drained)
                .await
                .map(|_| true)
                .map_err(Into::into),
            None => Ok(self.set_drain(pool, addr, drained)),
        }
    }

    /// Applies a config version committed through Raft (skips versions already running).
    pub async fn apply_replicated(&self, text: &str, version: u64) -> Result<(), ApplyError> {
        let _serialised = self.apply_lock.lock().await;
        if version <= self.version() && self.version() != 0 {
            return Ok(());
        }
        if self.version() == 0 && self.dp.snapshot().source.trim() != text.trim() {
            tracing::info!(
                version,
                "the cluster's config differs from the local file; Raft's version wins"
            );
        }
        self.apply_with_version(text, "raft", Some(version))
            .map(|_| ())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Validates and applies a new balancer config; returns the new version.
    /// The node-local sections of `text` are ignored: this node keeps its own.
    pub async fn apply_text(&self, text: &str, origin: &str) -> Result<u64, ApplyError> {
        let _serialised = self.apply_lock.lock().await;
        let result = self
            .check_vip(text, origin)
            .and_then(|()| self.apply_with_version(text, origin, None));
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

    /// An operator's file may not change `[vip]` (see `control::vip_agree`).
    fn check_vip(&self, text: &str, origin: &str) -> Result<(), ApplyError> {
        let config = fulcrum_config::parse(text, origin)?;
        vip_agree::check_change(&self.dp.snapshot().config, &config, text, origin)?;
        Ok(())
    }

    fn apply_with_version(
        &self,
        text: &str,
        origin: &str,
        version: Option<u64>,
    ) -> Result<u64, ApplyError> {
        let mut config = fulcrum_config::parse(text, origin)?;
        let current = self.dp.snapshot();
        // Local sections always come from this node's own file.
        config.node = current.config.node.clone();
        config.cluster = current.config.cluster.clone();
        // So does `[vip]`: the guard was built from it at start and does not change at
        // run time; a replicated text that says otherwise (a log from before `ctl apply`
        // refused such changes) is noted and not followed.
        if VipSetting::of(&config).is_some_and(|v| VipSetting::of(&current.config) != Some(v)) {
            tracing::warn!(
                "the replicated config has another [vip] than this node runs; [vip] is not \
                 changed at run time and this node keeps its own"
            );
        }
        config.vip = current.config.vip.clone();
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

    fn start_listeners(&self, config: &Config, bound: Vec<(ListenerKey, TcpListener)>) {
        let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for (key, socket) in bound {
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

    fn restart_health(&self) {
        let token = self.stop.child_token();
        let old = std::mem::replace(
            &mut *self.health_stop.lock().unwrap_or_else(|p| p.into_inner()),
            token.clone(),
        );
        old.cancel();
        let cluster = self.cluster.clone();
        let hook: health::VerdictHook = Arc::new(move |pool, backend, healthy| {
            if let Some(c) = cluster.get() {
                c.report_health(pool, backend, healthy);
            }
        });
        health::spawn_all(&self.dp, &token, hook);
    }

    /// Marks a backend drained (no new sessions) or back in service.
    pub fn set_drain(&self, pool: &str, addr: &str, drained: bool) -> bool {
        match self.dp.registry.find(pool, addr) {
            Some(state) => {
                state.set_drained(drained);
                tracing::info!(pool, backend = addr, drained, "drain flag changed");
                true
            }
            None => false,
        }
    }
}

/// Binds the listeners of `config` that are not already running.
fn bind_new(
    config: &Config,
    running: &HashMap<ListenerKey, CancellationToken>,
) -> Result<Vec<(ListenerKey, TcpListener)>, ApplyError> {
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
    Ok(bound)
}

fn read_token(local: &NodeSection) -> Result<Option<String>, ApplyError> {
    let Some(path) = &local.admin_token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(fulcrum_config::ConfigError::whole_file(
            path.display().to_string(),
            format!("cannot read admin token file: {e}"),
        ))
    })?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(
            ConfigErrors::single(fulcrum_config::ConfigError::whole_file(
                path.display().to_string(),
                "admin token file is empty".to_string(),
            ))
            .into(),
        );
    }
    Ok(Some(token))
}
