//! The node's link to Raft: one config everywhere, shared health, drains, members.
//!
//! Two directions:
//! - **Out**: operator changes (`PUT /config`, `ctl apply`, SIGHUP, drain) and this
//!   node's own health flips become Raft proposals (`propose_*`). They return once the
//!   change is committed, or fail with a clear "no quorum" error within seconds.
//! - **In**: `follow` watches the replicated `ClusterState` and makes the data plane match
//!   it: a newer config version is applied (Raft's version wins over the local file),
//!   effective backend health is recomputed with the configured policy, drain flags copied.
//!
//! The data plane never waits on any of this: without quorum it keeps serving with the
//! last config and its own passive view.

use crate::app::Node;
use fulcrum_config::{ClusterSection, Config, ConfigErrors, HealthPolicy, NodeSection};
use fulcrum_raft::{
    ClusterState, Command, PeerTlsContext, Policy, ProposeError, RaftHandle, RaftOptions,
    RaftStatus,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;

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
    pub node_id: u64,
    policy: Policy,
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
        Ok(Cluster {
            raft,
            node_id: local.id,
            policy: policy(section.health_policy),
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

    /// Reports this node's own view of a backend (only called when it flips).
    pub fn report_health(self: &Arc<Self>, pool: &str, backend: &str, healthy: bool) {
        let cluster = self.clone();
        let cmd = Command::ReportHealth {
            observer: self.node_id,
            pool: pool.to_string(),
            backend: backend.to_string(),
            healthy,
        };
        tokio::spawn(async move {
            // A flip that cannot be committed now is retried a few times; after that the
            // next flip (or the periodic re-report at start-up) carries the truth.
            for attempt in 0..5u32 {
                match cluster.raft.propose(cmd.clone()).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "health report not committed yet");
                        tokio::time::sleep(std::time::Duration::from_millis(500 << attempt.min(3)))
                            .await;
                    }
                }
            }
        });
    }

    /// Keeps the data plane in line with the replicated state until the node stops.
    pub async fn follow(self: Arc<Self>, node: Arc<Node>) {
        let mut states: watch::Receiver<Arc<ClusterState>> = self.raft.cluster_state();
        let mut applied_version = 0u64;
        loop {
            let state = states.borrow_and_update().clone();
            if state.config_version > applied_version && !state.config_toml.is_empty() {
                match node
                    .apply_replicated(&state.config_toml, state.config_version)
                    .await
                {
                    Ok(()) => applied_version = state.config_version,
                    Err(e) => {
                        tracing::error!(version = state.config_version, error = %e, "replicated config could not be applied; keeping the previous one");
                        applied_version = state.config_version;
                    }
                }
            }
            self.sync_backends(&node, &state);
            tokio::select! {
                _ = node.stop.cancelled() => return,
                changed = states.changed() => if changed.is_err() { return },
            }
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
