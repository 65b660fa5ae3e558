//! Which keys of a config file belong to one node and which to the whole cluster.
//!
//! `SCOPES` is the one list: every key of the model is covered by exactly one entry (a
//! test walks the model to keep it so). Both directions of the split use it:
//! - [`Config::without_local`]: what goes into Raft (every `Local` key dropped);
//! - [`Config::with_local_from`]: what a node runs from a replicated config (its own
//!   `Local` and `Fixed` keys put back).

use crate::Config;
use toml::Value;

/// Who a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This node's own: read from its file, never replicated.
    Local,
    /// Replicated and applied at run time.
    Cluster,
    /// Replicated (so nodes can compare), but each node keeps what it started with:
    /// changing it needs a restart of every node (`[vip]`, see the node's `vip_agree`).
    Fixed,
}

/// Every key of the model, by dotted path from the top of the file; an entry covers the
/// whole table below it.
pub const SCOPES: &[(&str, Scope)] = &[
    ("node", Scope::Local),
    ("cluster", Scope::Local),
    ("vip.interface", Scope::Local),
    ("vip.address", Scope::Fixed),
    ("vip.fencing", Scope::Fixed),
    ("vip.lifetime", Scope::Fixed),
    ("bgp", Scope::Local),
    ("dns.bind", Scope::Local),
    ("dns.zone", Scope::Cluster),
    ("dns.ttl", Scope::Cluster),
    ("dns.node_addresses", Scope::Cluster),
    ("dns.name", Scope::Cluster),
    ("session", Scope::Cluster),
    ("listener", Scope::Cluster),
    ("route", Scope::Cluster),
    ("pool", Scope::Cluster),
];

/// Why a config could not be taken apart or put back together by scope.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("cannot render the config: {0}")]
    Render(#[from] toml::ser::Error),
    #[error("the merged config is not a valid model: {0}")]
    Merge(#[from] toml::de::Error),
}

/// The entry covering `path` (a dotted key path), if any.
pub fn scope_of(path: &str) -> Option<Scope> {
    SCOPES
        .iter()
        .find(|(key, _)| covers(key, path))
        .map(|(_, s)| *s)
}

/// Whether the entry `key` covers the dotted `path` (the key itself or below it).
pub fn covers(key: &str, path: &str) -> bool {
    path == key
        || path
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
}

impl Config {
    /// The cluster-wide part only (what Raft stores): every `Local` key dropped.
    pub fn without_local(&self) -> Result<Config, ScopeError> {
        let mut table = as_table(self)?;
        for (key, _) in SCOPES.iter().filter(|(_, s)| *s == Scope::Local) {
            remove(&mut table, &key.split('.').collect::<Vec<_>>());
        }
        Ok(Value::Table(table).try_into()?)
    }

    /// What this node runs from a replicated config: `self`'s `Cluster` keys, with the
    /// `Local` and `Fixed` keys taken from `own` (the node's running config).
    pub fn with_local_from(&self, own: &Config) -> Result<Config, ScopeError> {
        let mut merged = as_table(self)?;
        let own = as_table(own)?;
        for (key, scope) in SCOPES {
            if *scope == Scope::Cluster {
                continue;
            }
            let path: Vec<&str> = key.split('.').collect();
            // `[[vip]]` is a list of tables: every key of it is local or fixed, so the
            // node keeps its own list whole.
            if let Some(first) = path.first().filter(|_| path.len() > 1) {
                let list = |t: &toml::Table| matches!(t.get(*first), Some(Value::Array(_)));
                if list(&own) || list(&merged) {
                    match own.get(*first) {
                        Some(v) => merged.insert(first.to_string(), v.clone()),
                        None => merged.remove(*first),
                    };
                    continue;
                }
            }
            match lookup(&own, &path) {
                Some(v) => insert(&mut merged, &path, v.clone()),
                None => remove(&mut merged, &path),
            }
        }
        Ok(Value::Table(merged).try_into()?)
    }
}

fn as_table(c: &Config) -> Result<toml::Table, ScopeError> {
    Ok(toml::Table::try_from(c)?)
}

fn lookup<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = table.get(*first)?;
    match (rest.is_empty(), v) {
        (true, v) => Some(v),
        (false, Value::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

fn insert(table: &mut toml::Table, path: &[&str], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.insert(first.to_string(), value);
        return;
    }
    let entry = table
        .entry(first.to_string())
        .or_insert_with(|| Value::Table(toml::Table::new()));
    if let Value::Table(t) = entry {
        insert(t, rest, value);
    }
}

/// Removes `path`, and a table left empty by it.
fn remove(table: &mut toml::Table, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.remove(*first);
        return;
    }
    let now_empty = match table.get_mut(*first) {
        Some(Value::Table(t)) => {
            remove(t, rest);
            t.is_empty()
        }
        _ => false,
    };
    if now_empty {
        table.remove(*first);
    }
}
