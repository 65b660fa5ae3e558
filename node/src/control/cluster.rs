//! The node's link to Raft: starting the member, and operator changes out to it.
//!
//! Operator changes (`PUT /config`, `ctl apply`, SIGHUP, drain) become Raft proposals
//! (`propose_*`); they return once the change is committed, or fail with a clear "no
//! quorum" error within seconds. This node's own health verdicts go to its
//! `HealthReporter`, which commits them until the replicated state matches. The way
//! back, committed state -> this node, is `control::follow`; nothing here knows the node.

use crate::control::reporter::HealthReporter;
use fulcrum_config::{ClusterSection, Config, ConfigErrors, HealthPolicy, NodeSection};
use fulcrum_raft::{
    Command, NodeId, PeerTlsContext, Policy, ProposeError, RaftHandle, RaftOptions, RaftStatus,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    /// How observers' verdicts combine (`[cluster] health_policy`).
    pub policy: Policy,
    reporter: Arc<HealthReporter>,
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
        write_check: fulcrum_raft::WriteCheck,
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
        opts.write_check = Some(write_check);
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

    /// Every observer's latest report on one backend: node id -> healthy.
    pub fn observations(&self, pool: &str, backend: &str) -> BTreeMap<NodeId, bool> {
        let state = self.raft.cluster_state().borrow().clone();
        state
            .observations(pool, backend)
            .map(|obs| obs.iter().map(|(id, o)| (*id, o.healthy)).collect())
            .unwrap_or_default()
    }

    /// Commits this node's health verdicts until `stop` (see `HealthReporter::run`).
    pub fn run_reporter(
        &self,
        known: impl Fn(&str, &str) -> bool + Send + 'static,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.reporter.clone().run(self.raft.clone(), known, stop)
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
