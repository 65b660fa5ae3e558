//! fulcrum-config: the balancer's declarative model.
//!
//! Layout:
//! - `model`     — typed structs for every TOML table, with defaults.
//! - `bgp`       — `[bgp]`: the service prefixes a node announces through BIRD.
//! - `dns`       — `[dns]`: the authoritative listener answering with healthy addresses.
//! - `accessors` — typed views of string fields (`SocketAddr`, `HashKey`, networks, ...).
//! - `net`       — address syntaxes: `IP/PREFIX` networks, `ID@HOST:PORT` peers.
//! - `hash_key`  — what a consistent-hash pool hashes on.
//! - `error`     — `ConfigError` (one problem, with `file:line:column`) and `ConfigErrors`.
//! - `scope`     — which keys are node-local and which cluster-wide (the one list).
//! - `span`      — finds a TOML path in the source text, so errors point at the exact spot.
//! - `validate`  — whole-file checks (names exist, no duplicates, addresses parse, ranges).
//! - `summary`   — the human-readable effective config `fulcrum check` prints.
//! - `vips`      — the `vip` key: `[vip]` (the leader's) or `[[vip]]` (spread, issue 18).
//! - `traffic`   — retry budgets and other multi-value traffic settings of a pool.
//! - `split`     — a route's split between pools (blue-green, canary).
//!
//! Nothing here does I/O beyond reading the file it is asked to load; certificate and
//! secret files are named, not opened.
#![forbid(unsafe_code)]

mod accessors;
mod bgp;
mod discover;
mod dns;
mod error;
mod hash_key;
mod model;
mod net;
mod scale;
mod scope;
mod span;
mod split;
mod summary;
mod traffic;
mod validate;
mod vips;

pub use accessors::DEFAULT_AFFINITY_COOKIE;
pub use bgp::BgpSection;
pub use discover::{Discover, RecordKind};
pub use dns::{normalize as normalize_dns_name, DnsAnswer, DnsName, DnsSection, DNS_TTL_RANGE};
pub use error::{ConfigError, ConfigErrors};
pub use hash_key::HashKey;
pub use model::*;
pub use net::{parse_peer, IpNet};
pub use scale::ScaleHook;
pub use scope::{covers, scope_of, Scope, ScopeError, SCOPES};
pub use split::{SplitEntry, MAX_SPLIT_WEIGHT};
pub use traffic::{BackendProtocol, Outlier, RateScope, RetryBudget, MAX_BUDGET_WINDOW_SECS};
pub use vips::{Fencing, VipEntry, VipSection, VipTable};

use std::path::Path;

/// Reads and validates a config file. Every error names `file:line:column`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError::whole_file(
            path.display().to_string(),
            format!("cannot read: {e}"),
        ))
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let config: Config = toml::from_str(text)
        .map_err(|e| ConfigErrors::single(ConfigError::from_toml(origin, text, &e)))?;
    validate::validate(&config, text, origin)?;
    Ok(config)
}

/// Parses a config meant for `ctl apply` / `PUT /config`: `[node]` may be absent, and a
/// whole node file is accepted too. The file is validated as a whole (so a broken local
/// section is still reported), and the result keeps only the cluster-wide part
/// (see [`Config::without_local`]).
pub fn parse_balancer(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    parse(text, origin)?.without_local().map_err(|e| {
        ConfigErrors::single(ConfigError::whole_file(origin.to_string(), e.to_string()))
    })
}

/// An error found outside this crate (e.g. a certificate file the node could not use)
/// at the key `keys` names in `text` (`["cluster", "tls", "cert"]`), or at its closest
/// existing parent, so it reads `file:line:column: message` like every other error.
pub fn error_at(
    text: &str,
    origin: &str,
    keys: &[&str],
    message: impl Into<String>,
) -> ConfigError {
    let path: Vec<span::Seg<'_>> = keys.iter().map(|k| span::Seg::K(k)).collect();
    let offset = span::Locator::new(text).offset(&path);
    ConfigError::at_offset(origin, text, offset, message)
}

impl Config {
    /// Renders the config back to TOML (durations in humantime form); `parse` accepts it.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}
