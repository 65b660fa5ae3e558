//! The node's link to Raft: one config everywhere, shared health, drains, members.
//!
//! Two directions:
//! - **Out**: operator changes (`PUT /config`, `ctl apply`, SIGHUP, drain) become Raft
//!   proposals (`propose_*`); they return once the change is committed, or fail with a
//!   clear "no quorum" error within seconds. This node's own health verdicts go to its
//!   `HealthReporter`, which commits them until the replicated state matches.
//! - **In**: `follow` watches the replicated `ClusterState` and makes the data plane match
//!   it: a newer config version is applied (Raft's version wins over the local file),
//!   effective backend health is recomputed with the configured policy, drain flags copied.
//!
//! A committed config this node cannot apply (a port still busy, a certificate not yet
//! deployed) is not forgotten: the node keeps running the last version that applied,
//! records the failure (`apply_failure`, shown in `/status`, `ctl status` and
//! `fulcrum_config_apply_failures_total`) and retries with backoff until it applies or
//! a newer version is committed. Only a text the node refuses as invalid is not retried.
//!
//! The data plane never waits on any of this: without quorum it keeps serving with the
//! last config and its own passive view.

use crate::app::{ApplyError, Node};
use crate::control::reporter::HealthReporter;
use fulcrum_config::{ClusterSection, Config, ConfigErrors, HealthPolicy, NodeSection};
use fulcrum_raft::{
    ClusterState, Command, NodeId, PeerTlsContext, Policy, ProposeError, RaftHandle, RaftOptions,
    RaftStatus,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

/// First pause before retrying a config version that failed to apply.
const APPLY_RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest pause between two attempts: a freed port is used within about this long.
const APPLY_RETRY_MAX: Duration = Duration::from_secs(2);

/// File in the node's data dir holding the health reporter's sequence counter.
const REPORT_SEQ_FILE: &str = "health_report_seq";

/// Why the cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read cluster secret {path}: {source}")]
    Secret {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster secret file {0} is empty")]
    EmptySecret(String),
    #[error("cannot render the balancer config for Raft: {0}")]
    Render(String),
    #[error(transparent)]
    Raft(#[from] fulcrum_raft::RaftError),
    #[error("the control thread stopped while Raft started: {0}")]
    ControlThread(String),
}

/// A running Raft member inside this node.
pub struct Cluster {
    pub raft: RaftHandle,
    policy: Policy,
    reporter: Arc<HealthReporter>,
    apply_failure: Mutex<Option<ApplyFailure>>,
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

/// When to try a failed version again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    version: u64,
    at: Instant,
    pause: Duration,
}

fn policy(p: HealthPolicy) -> Policy {
    match p {
        HealthPolicy::Majority => Policy::Majority,
        HealthPolicy::Any => Policy::Any,
        HealthPolicy::All => Policy::All,
    }
}

/// The cluster-wide part of a config as stored in Raft: local sections removed.
pub fn replicated_text(config: &Config) -> Result<String, ClusterError> {
    config
        .without_local()
        .map_err(|e| ClusterError::Render(e.to_string()))?
        .to_toml()
        .map_err(|e| ClusterError::Render(e.to_string()))
}

/// Checks the peer TLS files of `[cluster] tls` the way Raft will load them (readable
/// PEM, key matching the certificate, certificate signed by the CA, valid now and for
/// this node's peer IP). An error points at `cluster.tls.ca|cert|key` in `text`.
/// `fulcrum check` and `fulcrum run` call this before anything is bound.
pub fn check_peer_tls(config: &Config, text: &str, origin: &str) -> Result<(), ConfigErrors> {
    let Some(section) = &config.cluster else {
        return Ok(());
    };
    let Some(files) = &section.tls else {
        return Ok(());
    };
    let id = config.node.as_ref().map_or(0, |n| n.id);
    let own_ip = fulcrum_raft::own_peer_ip(id, section.raft, &section.peer_list());
    PeerTlsContext::load(files, own_ip)
        .map(|_| ())
        .map_err(|e| {
            let keys = ["cluster", "tls", e.file().key()];
            ConfigErrors::single(fulcrum_config::error_at(
                text,
                origin,
                &keys,
                format!("peer tls: {e}"),
            ))
        })
}

impl Cluster {
    /// Starts Raft for this node (bootstraps the cluster when nobody has state yet).
    pub async fn start(
        local: &NodeSection,
        section: &ClusterSection,
        config: &Config,
        step_down_hook: Option<fulcrum_raft::HookSlot>,
    ) -> Result<Cluster, ClusterError> {
        let secret_path = section.secret_file.display().to_string();
        let secret =
            std::fs::read(&section.secret_file).map_err(|source| ClusterError::Secret {
                path: secret_path.clone(),
                source,
            })?;
        let secret = trim_ascii(&secret).to_vec();
        if secret.is_empty() {
            return Err(ClusterError::EmptySecret(secret_path));
        }
        let mut opts =
            RaftOptions::new(local.id, section.raft, local.data_dir.join("raft"), secret);
        opts.admin_addr = local.admin.to_string();
        opts.peers = section.peer_list();
        opts.tls = section.tls.clone();
        opts.heartbeat = section.heartbeat;
        opts.election_timeout_min = section.election_timeout_min;
        opts.election_timeout_max = section.election_timeout_max;
        opts.lease = section.lease;
        opts.seed_config_toml = replicated_text(config)?;
        opts.step_down_hook = step_down_hook;
        // Raft and its lease run on the control thread, apart from the data plane.
        let raft = match crate::control::thread::control_handle() {
            Some(control) => control
                .spawn(fulcrum_raft::start(opts))
                .await
                .map_err(|e| ClusterError::ControlThread(e.to_string()))??,
            None => fulcrum_raft::start(opts).await?,
        };
        tracing::info!(node = local.id, raft = %section.raft, "raft started");
        let reporter = HealthReporter::new(local.id, local.data_dir.join(REPORT_SEQ_FILE));
        Ok(Cluster {
            raft,
            policy: policy(section.health_policy),
            reporter: Arc::new(reporter),
            apply_failure: Mutex::new(None),
        })
    }

    pub fn status(&self) -> RaftStatus {
        self.raft.status().borrow().clone()
    }

    /// Proposes a new balancer config; returns the committed version.
    pub async fn propose_config(&self, config: &Config) -> Result<u64, ProposeError> {
        let toml = replicated_text(config).map_err(|e| ProposeError::Rejected(e.to_string()))?;
        let resp = self.raft.propose(Command::SetConfig { toml }).await?;
        Ok(resp.config_version)
    }

    pub async fn propose_drain(
        &self,
        pool: &str,
        backend: &str,
        drained: bool,
    ) -> Result<(), ProposeError> {
        let cmd = Command::SetDrain {
            pool: pool.to_string(),
            backend: backend.to_string(),
            drained,
        };
        self.raft.propose(cmd).await.map(|_| ())
    }

    /// Records this node's own verdict on a backend (a checker's first verdict or a
    /// flip); the health reporter commits it.
    pub fn report_health(&self, pool: &str, backend: &str, healthy: bool) {
        self.reporter.observe(pool, backend, healthy);
    }

    /// The config version committed in Raft (the one every node should run).
    pub fn committed_version(&self) -> u64 {
        self.raft.cluster_state().borrow().config_version
    }

    /// The committed version this node failed to apply, while it still runs an older one.
    pub fn apply_failure(&self) -> Option<ApplyFailure> {
        self.apply_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every observer's latest report on one backend: node id -> healthy.
    pub fn observations(&self, pool: &str, backend: &str) -> BTreeMap<NodeId, bool> {
        let state = self.raft.cluster_state().borrow().clone();
        state
            .observations(pool, backend)
            .map(|obs| obs.iter().map(|(id, o)| (*id, o.healthy)).collect())
            .unwrap_or_default()
    }

    /// Keeps the data plane in line with the replicated state until the node stops,
    /// and runs the health reporter alongside.
    pub async fn follow(self: Arc<Self>, node: Arc<Node>) {
        let dp = node.dp.clone();
        let known = move |pool: &str, backend: &str| dp.registry.find(pool, backend).is_some();
        tokio::spawn(
            self.reporter
                .clone()
                .run(self.raft.clone(), known, node.stop.clone()),
        );
        let mut states: watch::Receiver<Arc<ClusterState>> = self.raft.cluster_state();
        let mut retry: Option<Retry> = None;
        loop {
            let state = states.borrow_and_update().clone();
            retry = self.converge_config(&node, &state, retry).await;
            self.sync_backends(&node, &state);
            let retry_at = retry.map(|r| r.at);
            tokio::select! {
                _ = node.stop.cancelled() => return,
                changed = states.changed() => if changed.is_err() { return },
                _ = sleep_until(retry_at) => {}
            }
        }
    }

    /// Applies the committed config when this node runs an older one; returns when to
    /// try again after a failure that may go away.
    async fn converge_config(
        &self,
        node: &Node,
        state: &ClusterState,
        retry: Option<Retry>,
    ) -> Option<Retry> {
        let version = state.config_version;
        if version <= node.version() || state.config_toml.is_empty() {
            self.clear_failure(node.version());
            return None;
        }
        let failed_before = self.apply_failure().filter(|f| f.version == version);
        match (&failed_before, retry) {
            // A newer version, or a retry that is due: try now.
            (None, _) => {}
            (Some(_), Some(r)) if r.version == version && Instant::now() >= r.at => {}
            // Waiting for the retry, or refused for good: nothing to do yet.
            (Some(_), _) => return retry,
        }
        let applied = node.apply_replicated(&state.config_toml, version).await;
        match applied {
            Ok(()) => {
                self.clear_failure(version);
                None
            }
            Err(e) => self.note_failure(node, version, &e, retry),
        }
    }

    fn note_failure(
        &self,
        node: &Node,
        version: u64,
        error: &ApplyError,
        retry: Option<Retry>,
    ) -> Option<Retry> {
        node.dp.metrics.config.apply_failures.inc();
        let retrying = retry_may_help(error);
        let reason = error.to_string();
        let mut slot = self.apply_failure.lock().unwrap_or_else(|p| p.into_inner());
        let failure = match slot.take().filter(|f| f.version == version) {
            Some(f) => ApplyFailure {
                attempts: f.attempts + 1,
                reason,
                retrying,
                ..f
            },
            None => {
                tracing::error!(version, running = node.version(), error = %error, retrying, "replicated config could not be applied; keeping the previous one");
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
        *slot = Some(failure);
        if !retrying {
            return None;
        }
        let pause = match retry {
            Some(r) if r.version == version => (r.pause * 2).min(APPLY_RETRY_MAX),
            _ => APPLY_RETRY_FIRST,
        };
        Some(Retry {
            version,
            at: Instant::now() + pause,
            pause,
        })
    }

    /// Forgets a failure once version `running` (or a newer one) runs.
    fn clear_failure(&self, running: u64) {
        let mut slot = self.apply_failure.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = slot.as_ref().filter(|f| f.version <= running) {
            tracing::info!(
                version = running,
                failed_attempts = f.attempts,
                "replicated config applied after failed attempts"
            );
            *slot = None;
        }
    }

    /// Effective health and drain flags from the replicated state.
    fn sync_backends(&self, node: &Node, state: &ClusterState) {
        let voters: BTreeSet<u64> = self.raft.voter_ids();
        for (pool, addr, backend) in node.dp.registry.all() {
            backend.set_cluster_healthy(state.backend_healthy(&pool, &addr, &voters, self.policy));
            backend.set_drained(state.is_drained(&pool, &addr));
        }
    }
}

/// Whether trying the same text again may succeed: a bind or a certificate file depends
/// on the machine and may change; a text this node refuses as invalid will not.
fn retry_may_help(error: &ApplyError) -> bool {
    !matches!(error, ApplyError::Invalid(_))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod peer_tls_tests {
    //! `check_peer_tls` with certificates generated on the spot: what `fulcrum check`
    //! and `fulcrum run` print for broken `[cluster] tls` files.
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use std::path::Path;

    struct Files {
        ca: String,
        cert: String,
        key: String,
    }

    /// A CA and a node certificate for 127.0.0.1 in `dir`; a second, unrelated key too.
    fn generate(dir: &Path) -> (Files, String) {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("cert");
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write");
            p.display().to_string()
        };
        let other = KeyPair::generate().expect("other key");
        let files = Files {
            ca: write("ca.pem", ca.pem()),
            cert: write("node.pem", cert.pem()),
            key: write("node.key", key.serialize_pem()),
        };
        (files, write("other.key", other.serialize_pem()))
    }

    fn text(f: &Files) -> String {
        format!(
            "[node]\nid = 1\nadmin = \"127.0.0.1:9901\"\n\n[cluster]\nraft = \"127.0.0.1:7001\"\npeers = [\"1@127.0.0.1:7001\"]\nsecret_file = \"/tmp/s\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            f.ca, f.cert, f.key
        )
    }

    /// `t.toml:LINE:COL: ` of the first occurrence of `needle` in `text`.
    fn at(text: &str, needle: &str) -> String {
        let offset = text.find(needle).expect("needle in text");
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("t.toml:{line}:{col}: ")
    }

    fn check(text: &str) -> Result<(), String> {
        let config = fulcrum_config::parse(text, "t.toml").expect("valid config");
        check_peer_tls(&config, text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn good_files_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = generate(dir.path());
        check(&text(&files)).expect("accepted");
    }

    #[test]
    fn missing_certificate_is_located_at_cert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut files, _) = generate(dir.path());
        files.cert = dir.path().join("missing.pem").display().to_string();
        let t = text(&files);
        let err = check(&t).expect_err("refused");
        let want = at(&t, &format!("\"{}\"", files.cert));
        assert!(err.starts_with(&want), "{err} (want {want})");
        assert!(err.contains("peer tls: cannot read"), "{err}");
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn mismatched_key_is_located_at_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut files, other) = generate(dir.path());
        files.key = other;
        let t = text(&files);
        let err = check(&t).expect_err("refused");
        let want = at(&t, &format!("\"{}\"", files.key));
        assert!(err.starts_with(&want), "{err} (want {want})");
        assert!(err.contains("does not match certificate"), "{err}");
    }

    #[test]
    fn certificate_without_the_peer_ip_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = generate(dir.path());
        // Same files, but this node is 127.0.0.2 in the peer list.
        let t = text(&files).replace("127.0.0.1:7001", "127.0.0.2:7001");
        let err = check(&t).expect_err("refused");
        assert!(
            err.contains("not valid for this node's peer address 127.0.0.2"),
            "{err}"
        );
    }
}
