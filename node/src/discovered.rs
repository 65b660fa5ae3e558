//! Discovered sets -> the pools a snapshot runs (the plane's side of `control::discovery`): a pool with `discover` gets the members
//! of its replicated set (`fulcrum_raft::DiscoveredSet`) as its backends, the draining
//! ones included (they finish their work), and each member's drain flag follows its set.

use crate::backend_state::BackendRegistry;
use fulcrum_config::{Backend, Config};
use fulcrum_raft::DiscoveredSet;
use std::collections::{BTreeMap, BTreeSet};

/// Pool name -> its discovered set, as this node last learnt it.
pub type DiscoveredSets = BTreeMap<String, DiscoveredSet>;

/// `config` with every `discover` pool's backends taken from `sets` (none yet: none).
pub fn with_discovered(config: &Config, sets: &DiscoveredSets) -> Config {
    let mut config = config.clone();
    for pool in config.pool.iter_mut().filter(|p| p.discover.is_some()) {
        pool.backends = (sets
            .get(&pool.name)
            .map(|s| &s.members)
            .into_iter()
            .flatten())
        .map(|(addr, m)| Backend {
            addr: addr.clone(),
            weight: m.weight,
        })
        .collect();
    }
    config
}

/// Sets each discovered backend's drain flag from its member (gone from DNS: drained).
pub fn mark_draining(config: &Config, sets: &DiscoveredSets, registry: &BackendRegistry) {
    for pool in config.pool.iter().filter(|p| p.discover.is_some()) {
        let Some(set) = sets.get(&pool.name) else {
            continue;
        };
        for (addr, member) in &set.members {
            if let Some(state) = registry.find(&pool.name, addr) {
                state.set_discovery_draining(member.draining());
            }
        }
    }
}

/// `(pool, addr)` of every member, for telling whether two generations differ in who is
/// checked (drain flags and errors do not need new checkers).
pub fn addresses(sets: &DiscoveredSets) -> BTreeSet<(&str, &str)> {
    (sets.iter())
        .flat_map(|(pool, s)| s.members.keys().map(move |a| (pool.as_str(), a.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n\n\
        [[route]]\nlistener = \"web\"\npool = \"app\"\n\n\
        [[pool]]\nname = \"app\"\nhealth = { kind = \"tcp\" }\n\
        discover = { dns = \"_h._tcp.app\", type = \"srv\", resolvers = [\"127.0.0.1:53\"] }\n\n\
        [[pool]]\nname = \"fixed\"\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n";

    #[test]
    fn discover_pools_take_their_members_and_drain_the_gone() {
        let config = fulcrum_config::parse(TEXT, "t").expect("valid");
        let found: BTreeSet<String> = ["127.0.0.1:7001".into(), "127.0.0.1:7002".into()].into();
        let set = DiscoveredSet::default().after_found(&found, 5, 1);
        let set = set.after_found(&["127.0.0.1:7001".to_string()].into(), 5, 2);
        let sets: DiscoveredSets = [("app".to_string(), set)].into();
        let merged = with_discovered(&config, &sets);
        let addrs: Vec<(&str, u32)> = (merged.pool[0].backends.iter())
            .map(|b| (b.addr.as_str(), b.weight))
            .collect();
        assert_eq!(addrs, vec![("127.0.0.1:7001", 5), ("127.0.0.1:7002", 5)]);
        assert_eq!(merged.pool[1].backends, config.pool[1].backends);
        assert!(with_discovered(&config, &DiscoveredSets::new()).pool[0]
            .backends
            .is_empty());

        let registry = BackendRegistry::default();
        let (kept, gone) = (
            registry.get_discovered("app", "127.0.0.1:7001"),
            registry.get_discovered("app", "127.0.0.1:7002"),
        );
        assert!(!gone.healthy(), "a discovered backend starts unchecked");
        mark_draining(&merged, &sets, &registry);
        assert!(!kept.drained() && gone.drained());
        assert_eq!(addresses(&sets).len(), 2);
    }
}
