//! The split between node-local and cluster-wide keys (`SCOPES`): every key of the model
//! is covered by exactly one entry, and both directions of the split follow it.

use fulcrum_config::{covers, parse, scope_of, Config, Scope, SCOPES};
use serde_json::Value;

mod common;

/// Every section present, `[vip]` with all its keys: the model's keys all show up when
/// walked (absent optional fields serialise as `null`, so a new field shows up too).
fn full() -> String {
    let local = r#"
[node]
id = 1
admin = "127.0.0.1:9901"

[cluster]
raft = "127.0.0.1:7001"
peers = ["1@127.0.0.1:7001"]
secret_file = "/tmp/s"

[vip]
address = "10.77.0.100/24"
interface = "eth0"
fencing = "strict"
lifetime = "3s"

[bgp]
prefixes = ["10.77.0.100/32"]
fragment = "/tmp/fulcrum-bird.conf"

[session]
redis = "redis://127.0.0.1:6379/0"

[dns]
bind = "127.0.0.1:5353"
zone = "lb.example"
[dns.node_addresses]
1 = ["10.77.0.11"]
[[dns.name]]
name = "www"
answer = "vips"
"#;
    format!("{local}{}", common::BASE)
}

/// Every dotted key path of `v` (objects walked, array elements walked under their
/// array's key, a `null` or scalar is a leaf).
fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                leaves(prefix, item, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn model_keys() -> Vec<String> {
    let config = parse(&full(), "full").expect("valid");
    let mut out = Vec::new();
    leaves("", &serde_json::to_value(&config).expect("json"), &mut out);
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_key_of_the_model_is_in_exactly_one_scope() {
    let keys = model_keys();
    assert!(keys.iter().any(|k| k == "vip.interface"), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("pool.")), "{keys:?}");
    for key in &keys {
        let entries: Vec<&str> = SCOPES
            .iter()
            .filter(|(entry, _)| covers(entry, key))
            .map(|(entry, _)| *entry)
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "`{key}` must be covered by exactly one entry of SCOPES, is by {entries:?}"
        );
    }
    for (entry, _) in SCOPES {
        assert!(
            keys.iter().any(|k| covers(entry, k)),
            "SCOPES entry `{entry}` names no key of the model"
        );
    }
}

#[test]
fn without_local_drops_exactly_the_local_keys() {
    let full = parse(&full(), "full").expect("valid");
    let replicated = full.without_local().expect("split");
    let mut kept = Vec::new();
    leaves(
        "",
        &serde_json::to_value(&replicated).expect("json"),
        &mut kept,
    );
    for key in model_keys() {
        let local = scope_of(&key) == Some(Scope::Local);
        let present =
            kept.contains(&key) && !matches!(lookup(&replicated, &key), Some(Value::Null));
        let was_set = !matches!(lookup(&full, &key), Some(Value::Null) | None);
        if local {
            assert!(!present || !was_set, "local `{key}` replicated");
        } else if was_set {
            assert!(present, "cluster-wide `{key}` not replicated");
        }
    }
}

fn lookup(c: &Config, key: &str) -> Option<Value> {
    let mut v = serde_json::to_value(c).expect("json");
    for part in key.split('.') {
        v = match v {
            Value::Object(mut m) => m.remove(part)?,
            Value::Array(mut items) if !items.is_empty() => match items.swap_remove(0) {
                Value::Object(mut m) => m.remove(part)?,
                _ => return None,
            },
            _ => return None,
        };
    }
    Some(v)
}

#[test]
fn with_local_from_keeps_the_nodes_own_local_and_fixed_keys() {
    let own = parse(&full(), "own").expect("valid");
    // Another node's file: its own [node], [cluster], interface; another [vip] (a log
    // from before changes were refused), other pools.
    let other_text = full()
        .replace("id = 1", "id = 2")
        .replace("peers = [\"1@", "peers = [\"2@")
        .replace("eth0", "eth9")
        .replace("10.77.0.100/24", "10.77.0.200/24")
        .replace("9001", "9002");
    let replicated = parse(&other_text, "other")
        .expect("valid")
        .without_local()
        .expect("split");
    let merged = replicated.with_local_from(&own).expect("merge");
    assert_eq!(merged.node, own.node);
    assert_eq!(merged.cluster, own.cluster);
    assert_eq!(merged.vip, own.vip, "[vip] stays the node's own");
    assert_eq!(
        merged.pool, replicated.pool,
        "cluster-wide keys come from Raft"
    );
    assert_eq!(merged.session, replicated.session);

    // A node without [vip] runs none, whatever the replicated text says.
    let mut bare = own.clone();
    bare.vip = None;
    assert_eq!(replicated.with_local_from(&bare).expect("merge").vip, None);
}
