//! `[bgp]`: announce the service addresses through a local BIRD 2 (ECMP / anycast).
//!
//! Node-local: each node names its own BIRD control socket and the fragment file its
//! `bird.conf` includes. The node writes the fragment (a static protocol per address
//! family, its routes pointing at the node's own link, see the node's `control::bgp`)
//! and runs `birdc configure`; the BGP sessions themselves are BIRD's, configured by
//! the operator.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[bgp]`: what this node announces, and how it drives BIRD.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSection {
    /// The service addresses, each a host route: `IPv4/32` or `IPv6/128`.
    pub prefixes: Vec<String>,
    /// The file this node writes and BIRD's config `include`s.
    pub fragment: PathBuf,
    /// BIRD's control socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The `birdc` program.
    #[serde(default = "default_birdc")]
    pub birdc: PathBuf,
    /// Name stem of the static protocols in the fragment (`<stem>4`, `<stem>6`) and of the
    /// node's link their routes point at (BIRD withdraws them when the link goes, e.g.
    /// when the process dies).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// A follower counts as in contact with the quorum while its leader's last ping is
    /// younger than this.
    #[serde(default = "default_quorum_grace", with = "humantime_serde")]
    pub quorum_grace: Duration,
    /// On SIGTERM: how long the node keeps serving after the withdrawal, for the routers
    /// to move the flows elsewhere, before it stops accepting.
    #[serde(default = "default_withdraw_wait", with = "humantime_serde")]
    pub withdraw_wait: Duration,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/bird/bird.ctl")
}

fn default_birdc() -> PathBuf {
    PathBuf::from("birdc")
}

fn default_protocol() -> String {
    "fulcrum".to_string()
}

fn default_quorum_grace() -> Duration {
    Duration::from_secs(1)
}

fn default_withdraw_wait() -> Duration {
    Duration::from_secs(2)
}
