//! One `[vip]` in a cluster: the VIP settings are fixed for the life of a process and
//! the same on every node.
//!
//! The VIP guard (`vip_guard`) is built once, at start, from the node's own file: its
//! kernel fence is installed for the address, and the fencing mode and address lifetime
//! decide how it claims. Changing them under a running guard would need a release,
//! a new fence and a re-claim on every node, in step with the lease; fulcrum does not
//! do that. Instead, like keepalived's per-node configuration:
//! - `ctl apply`, `PUT /config` and SIGHUP refuse a file whose `[vip]` (`address`,
//!   `fencing`, `lifetime`) differs from the one this node runs ([`check_change`]), with
//!   an error that names the section; a file without `[vip]`, or with the same one,
//!   applies as before (operators apply the file they deploy);
//! - a node that starts into a cluster asks every member whose admin address it knows
//!   for its `[vip]` (`GET /status`, field `vip`) and refuses to run when one that has
//!   been up longer (`uptime_ms`) differs ([`check_peers`]), so all running nodes hold one
//!   address with one fencing mode. A peer that started after it with another `[vip]` is
//!   only logged: that peer's own check refuses it, and the running node stays.

use crate::control::cluster::Cluster;
use fulcrum_config::{Config, ConfigErrors, Fencing};
use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// How long a starting node keeps asking peers it cannot reach yet, or whose admin
/// address it does not know yet (it learns them from the log as it catches up). The
/// check runs beside the node, so a long window delays nothing.
const PEER_CHECK_WINDOW: Duration = Duration::from_secs(30);
/// One peer's `/status` call.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(1);
const PEER_RETRY: Duration = Duration::from_millis(250);

/// When this process started (first touched by `mark_started` at start-up).
static STARTED: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

/// Records the process start; call once, early.
pub fn mark_started() {
    std::sync::LazyLock::force(&STARTED);
}

/// Milliseconds since start (the `uptime_ms` field of `/status`).
pub fn uptime_ms() -> u64 {
    STARTED.elapsed().as_millis() as u64
}

/// The cluster-wide part of `[vip]`: what every node must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSetting {
    pub address: String,
    pub fencing: Fencing,
    pub lifetime: Duration,
}

impl VipSetting {
    pub fn of(config: &Config) -> Option<VipSetting> {
        config.leader_vip().map(|v| VipSetting {
            address: v.address.clone(),
            fencing: v.fencing,
            lifetime: v.lifetime,
        })
    }

    /// The `vip` field of `/status`.
    pub fn to_json(setting: Option<&VipSetting>) -> Value {
        match setting {
            None => Value::Null,
            Some(s) => json!({
                "address": s.address,
                "fencing": fencing_name(s.fencing),
                "lifetime_ms": s.lifetime.as_millis() as u64,
            }),
        }
    }

    /// Reads the `vip` field of a peer's `/status`; `Err` when the field is missing or
    /// malformed (a peer too old to report it).
    pub fn from_json(v: &Value) -> Result<Option<VipSetting>, String> {
        let Some(field) = v.get("vip") else {
            return Err("its /status has no vip field".into());
        };
        if field.is_null() {
            return Ok(None);
        }
        let address = field["address"].as_str().ok_or("vip.address missing")?;
        let fencing = match field["fencing"].as_str() {
            Some("fast") => Fencing::Fast,
            Some("strict") => Fencing::Strict,
            _ => return Err("vip.fencing missing".into()),
        };
        let lifetime = field["lifetime_ms"]
            .as_u64()
            .ok_or("vip.lifetime_ms missing")?;
        Ok(Some(VipSetting {
            address: address.to_string(),
            fencing,
            lifetime: Duration::from_millis(lifetime),
        }))
    }
}

fn fencing_name(f: Fencing) -> &'static str {
    match f {
        Fencing::Fast => "fast",
        Fencing::Strict => "strict",
    }
}

impl fmt::Display for VipSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "address {}, fencing {}, lifetime {}",
            self.address,
            fencing_name(self.fencing),
            humantime::format_duration(self.lifetime)
        )
    }
}

fn describe(setting: Option<&VipSetting>) -> String {
    setting.map_or_else(|| "no [vip]".to_string(), |s| format!("[vip] {s}"))
}

/// Refuses a config change whose `[vip]` differs from the one this node runs. `new` is
/// the parsed `text`; the error points at `[vip]` in it.
pub fn check_change(
    running: &Config,
    new: &Config,
    text: &str,
    origin: &str,
) -> Result<(), ConfigErrors> {
    let (Some(wanted), have) = (VipSetting::of(new), VipSetting::of(running)) else {
        return Ok(());
    };
    if have.as_ref() == Some(&wanted) {
        return Ok(());
    }
    let message = format!(
        "[vip] cannot be changed at run time (this node runs {}; the file asks for [vip] {wanted}): \
         every node must run the same [vip], so change it in every node's file and restart the \
         whole cluster; the rest of the file was not applied",
        describe(have.as_ref()),
    );
    Err(ConfigErrors::single(fulcrum_config::error_at(
        text,
        origin,
        &["vip"],
        message,
    )))
}

/// Why a starting node refuses to run.
#[derive(Debug, thiserror::Error)]
#[error(
    "[vip] differs from node {peer} ({admin}), which runs {theirs}; this node's file has {ours}: \
     every node of a cluster must run the same [vip] (address, fencing, lifetime); \
     change it in every node's file and restart the whole cluster"
)]
pub struct VipDisagreement {
    pub peer: u64,
    pub admin: String,
    pub theirs: String,
    pub ours: String,
}

/// Asks every other member whose admin address is known for its `[vip]`, for up to
/// [`PEER_CHECK_WINDOW`] while some are unreachable or unknown; the first one that
/// differs and has been up longer than this node is an error. Members that never answer
/// are not checked (logged).
/// `config` is the node's running config, `me` its id.
pub async fn check_peers(
    cluster: Option<&Cluster>,
    config: &Config,
    me: u64,
) -> Result<(), VipDisagreement> {
    let Some(cluster) = cluster else {
        return Ok(());
    };
    let ours = VipSetting::of(config);
    // Peers named in the file: a node alone in its cluster has nobody to compare with.
    let has_static_peers = config.cluster.as_ref().is_some_and(|c| c.peers.len() > 1);
    let deadline = Instant::now() + PEER_CHECK_WINDOW;
    let mut checked = std::collections::BTreeSet::new();
    loop {
        let all = cluster.raft.members().await;
        // A node whose store knows no other member yet (it restarted before it had caught
        // up once) learns them from the log: until then nobody has been compared.
        let unknown_membership = has_static_peers && !all.iter().any(|m| m.id != me);
        let members: Vec<_> = (all.into_iter())
            .filter(|m| m.id != me && !checked.contains(&m.id))
            .collect();
        let mut pending = usize::from(unknown_membership);
        for m in &members {
            if m.admin_addr.is_empty() {
                pending += 1;
                continue;
            }
            match peer_setting(&m.admin_addr).await {
                Ok((theirs, _)) if theirs == ours => {
                    checked.insert(m.id);
                }
                // A peer that started after this node: its own check refuses it.
                Ok((theirs, Some(up))) if up < uptime_ms() => {
                    tracing::warn!(peer = m.id, admin = %m.admin_addr, theirs = %describe(theirs.as_ref()), ours = %describe(ours.as_ref()),
                        "a peer that started after this node runs another [vip]; it should refuse to run");
                    checked.insert(m.id);
                }
                Ok((theirs, _)) => {
                    return Err(VipDisagreement {
                        peer: m.id,
                        admin: m.admin_addr.clone(),
                        theirs: describe(theirs.as_ref()),
                        ours: describe(ours.as_ref()),
                    })
                }
                Err(e) => {
                    tracing::debug!(peer = m.id, admin = %m.admin_addr, error = %e, "[vip] check: peer not answering yet");
                    pending += 1;
                }
            }
        }
        if pending == 0 || Instant::now() >= deadline {
            if pending > 0 {
                tracing::warn!(
                    checked = ?checked,
                    unchecked = pending,
                    "[vip] compared with the peers that answered; the others were not reachable"
                );
            } else {
                tracing::info!(checked = ?checked, "[vip] is the same on every member that answered");
            }
            return Ok(());
        }
        tokio::time::sleep(PEER_RETRY).await;
    }
}

/// A peer's `[vip]` and how long it has been up (None: it does not say).
async fn peer_setting(admin: &str) -> Result<(Option<VipSetting>, Option<u64>), String> {
    let call = crate::ctl::call(admin, http::Method::GET, "/status", None, None);
    let (status, body) = tokio::time::timeout(PEER_CALL_TIMEOUT, call)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("/status answered {status}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok((VipSetting::from_json(&v)?, v["uptime_ms"].as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vip: &str) -> (Config, String) {
        let text = format!(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n\n[[route]]\nlistener = \"web\"\npool = \"app\"\n\n[[pool]]\nname = \"app\"\nbackends = [{{ addr = \"127.0.0.1:9000\" }}]\n{vip}"
        );
        let c = fulcrum_config::parse(&text, "t.toml").expect("valid");
        (c, text)
    }

    const VIP: &str = "\n[vip]\naddress = \"10.0.0.100/24\"\ninterface = \"eth0\"\n";

    #[test]
    fn same_or_absent_vip_applies() {
        let (running, _) = config(VIP);
        let (same, text) = config(&VIP.replace("eth0", "eth1"));
        check_change(&running, &same, &text, "t.toml").expect("same [vip], other interface");
        let (none, text) = config("");
        check_change(&running, &none, &text, "t.toml").expect("no [vip] in the file");
    }

    #[test]
    fn changed_or_added_vip_is_refused_at_the_section() {
        let (running, _) = config(VIP);
        let (strict, text) = config(&format!("{VIP}fencing = \"strict\"\n"));
        let err = check_change(&running, &strict, &text, "t.toml")
            .expect_err("fencing change refused")
            .to_string();
        let line = text.lines().position(|l| l == "[vip]").expect("[vip]") + 1;
        assert!(err.starts_with(&format!("t.toml:{line}:")), "{err}");
        assert!(err.contains("[vip] cannot be changed at run time"), "{err}");
        assert!(err.contains("fencing strict"), "{err}");
        let (plain, _) = config("");
        let err = check_change(&plain, &strict, &text, "t.toml")
            .expect_err("added [vip] refused")
            .to_string();
        assert!(err.contains("this node runs no [vip]"), "{err}");
    }

    #[test]
    fn status_field_round_trips() {
        let s = VipSetting {
            address: "10.0.0.100/24".into(),
            fencing: Fencing::Strict,
            lifetime: Duration::from_secs(3),
        };
        let v = json!({ "vip": VipSetting::to_json(Some(&s)) });
        assert_eq!(VipSetting::from_json(&v), Ok(Some(s)));
        assert_eq!(VipSetting::from_json(&json!({ "vip": null })), Ok(None));
        assert!(VipSetting::from_json(&json!({})).is_err());
    }
}
