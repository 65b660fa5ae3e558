//! The running node: data plane, listeners, health checks, cluster and VIP wired together.
//!
//! `Node` owns what lives for the whole process and starts it. Control flows one way:
//! operator changes go out through `change_config` / `change_drain` (validated here, then
//! Raft, or applied locally when alone); committed state comes back through
//! `control::follow` into `control::apply`, the one place a config becomes the running
//! one. Nothing below imports this module.

use crate::control::apply::{self, Applier};
use crate::control::cluster::Cluster;
use crate::control::events::{self, Events};
use crate::control::vip_guard::VipGuard;
use crate::dataplane::DataPlane;
use crate::health;
use crate::metrics::Metrics;
use fulcrum_config::{Config, ConfigErrors, NodeSection};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::control::apply::ApplyError;

/// The control runtime when it runs (`fulcrum run` with `[cluster]`), else this one.
fn control_runtime() -> tokio::runtime::Handle {
    crate::control::thread::control_handle().unwrap_or_else(tokio::runtime::Handle::current)
}

pub struct Node {
    pub dp: Arc<DataPlane>,
    pub local: NodeSection,
    pub config_path: PathBuf,
    pub admin_token: Option<String>,
    /// Applies configs (the file, SIGHUP, committed versions) to this node.
    pub applier: Arc<Applier>,
    /// Fires once on shutdown: listeners stop, connections finish gracefully.
    pub stop: CancellationToken,
    /// Stops the VIP's leadership follower (fired before leadership is handed off).
    pub vip_stop: CancellationToken,
    pub connections: TaskTracker,
    /// Set when `[cluster]` is configured: changes then go through Raft.
    pub cluster: Arc<OnceLock<Arc<Cluster>>>,
    /// The floating address, when `[vip]` is configured.
    pub vip: OnceLock<Arc<VipGuard>>,
    /// Recent transitions for operators (`/status` `events`, the dashboard).
    pub events: Arc<Events>,
    /// BGP mode, when `[bgp]` is configured (set by `run` before the node serves).
    pub bgp: OnceLock<Arc<crate::control::bgp::Bgp>>,
    /// Several VIPs, when `[[vip]]` is configured.
    pub spread: OnceLock<Arc<crate::control::vip_spread::SpreadVips>>,
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
        let bound = apply::bind_all(&config)?;
        // In a cluster the file is only the seed: version 0 until Raft's version arrives.
        let version = if config.cluster.is_some() { 0 } else { 1 };
        let dp = DataPlane::new(config.clone(), Arc::from(source), version, Metrics::new());
        let cluster_slot: Arc<OnceLock<Arc<Cluster>>> = Arc::new(OnceLock::new());
        let verdicts: health::VerdictHook = {
            let cluster = cluster_slot.clone();
            Arc::new(move |pool, backend, healthy| {
                if let Some(c) = cluster.get() {
                    c.report_health(pool, backend, healthy);
                }
            })
        };
        let (stop, connections) = (CancellationToken::new(), TaskTracker::new());
        let applier = Arc::new(Applier::new(
            dp.clone(),
            version,
            stop.clone(),
            connections.clone(),
            verdicts,
        ));
        let node = Arc::new(Node {
            dp,
            local,
            config_path,
            admin_token,
            applier,
            stop,
            vip_stop: CancellationToken::new(),
            connections,
            cluster: cluster_slot,
            vip: OnceLock::new(),
            events: Default::default(),
            bgp: OnceLock::new(),
            spread: OnceLock::new(),
        });
        node.applier.listen(&config, bound);
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
            let check = apply::leader_check(node.local.id, node.dp.clone());
            let cluster =
                Arc::new(Cluster::start(&node.local, section, &config, hook, check).await?);
            node.dp.registry.set_clustered(true);
            let _ = node.cluster.set(cluster.clone());
            let follow = crate::control::follow::follow(
                cluster.clone(),
                node.applier.clone(),
                node.dp.clone(),
                node.stop.clone(),
            );
            tokio::spawn(follow);
            let shifter =
                crate::control::shift::run(cluster.clone(), node.dp.clone(), node.stop.clone());
            tokio::spawn(shifter);
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
        node.start_spread(&config).await?;
        node.applier.restart_health();
        let sink = match node.cluster() {
            Some(c) => crate::control::discovery::Sink::Raft(c.clone()),
            None => crate::control::discovery::Sink::Local(node.applier.clone()),
        };
        crate::control::discovery::spawn(node.dp.clone(), sink, node.stop.clone());
        let watched = node.clone();
        let sample = move || {
            events::sample(
                watched.cluster(),
                watched.local.id,
                &watched.dp,
                watched.vip.get().is_some_and(|v| v.held()),
                watched.applier.version(),
            )
        };
        tokio::spawn(events::watch(
            sample,
            node.events.clone(),
            node.stop.clone(),
        ));
        Ok(node)
    }

    /// `[[vip]]`: the controllers and fence, then the grant loop on the control runtime.
    async fn start_spread(&self, config: &Arc<Config>) -> Result<(), ApplyError> {
        use crate::control::vip_spread::SpreadVips;
        let spread = {
            let (config, clustered) = (config.clone(), config.cluster.is_some());
            control_runtime()
                .spawn(async move { SpreadVips::start(&config, clustered).await })
                .await??
        };
        let Some(spread) = spread else {
            return Ok(());
        };
        let _ = self.spread.set(spread.clone());
        match self.cluster() {
            Some(cluster) => {
                let run = spread.run(cluster.raft.clone(), self.vip_stop.clone());
                control_runtime().spawn(run);
            }
            None => spread.hold_alone(),
        }
        Ok(())
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
        let config = fulcrum_config::parse(text, origin)
            .map_err(ApplyError::from)
            .and_then(|c| {
                apply::check_proposal(&self.dp.snapshot().config, &c, text, origin)?;
                Ok(c)
            })
            .inspect_err(
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

    /// The config version this node runs.
    pub fn version(&self) -> u64 {
        self.applier.version()
    }

    /// Applies an operator's file on a node without a cluster; returns the new version.
    pub async fn apply_text(&self, text: &str, origin: &str) -> Result<u64, ApplyError> {
        self.applier.apply_file(text, origin).await
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
