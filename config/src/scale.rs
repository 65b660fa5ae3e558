//! The signal to scale of a pool: `capacity = 200` and
//! `scale_hook = { url = "http://...", above = 0.8, below = 0.3, for = "60s", cooldown = "5m" }`.
//!
//! Saturation is the pool's requests in flight over its capacity (`capacity`, or the sum
//! of its backends' `max_requests`). The hook is called when saturation stays past a
//! bound for `for`; at most once per `cooldown`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `scale_hook = { ... }` on a pool: a webhook told when the pool stays saturated (or idle).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleHook {
    /// `http://host:port/path` the JSON body is POSTed to (plain HTTP).
    pub url: String,
    /// Saturation above this for `for`: a call with `direction = "up"`.
    #[serde(default = "default_above")]
    pub above: f64,
    /// Saturation below this for `for`: a call with `direction = "down"`.
    #[serde(default = "default_below")]
    pub below: f64,
    /// How long saturation must stay past a bound before the call.
    #[serde(rename = "for", default = "default_for", with = "humantime_serde")]
    pub hold: Duration,
    /// At most one call per this long.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
    /// How long a call may take before it is given up (and counted as failed).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_above() -> f64 {
    0.8
}
fn default_below() -> f64 {
    0.3
}
fn default_for() -> Duration {
    Duration::from_secs(60)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl ScaleHook {
    /// The receiver's address and request path, from `http://IP:PORT[/path]`.
    pub fn target(&self) -> Result<(std::net::SocketAddr, String), String> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| format!("url `{}` must start with http://", self.url))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let addr = crate::net::parse_socket_addr(authority)?;
        Ok((addr, path.to_string()))
    }
}
