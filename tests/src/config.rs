//! Generated node configs for tests.

use crate::backend::TestBackend;
use crate::free_port;
use fulcrum_testbed::cluster::web_to_app;

/// Ports of a single-node setup.
#[derive(Debug, Clone)]
pub struct Ports {
    pub admin: String,
    pub web: String,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            admin: format!("127.0.0.1:{}", free_port()),
            web: format!("127.0.0.1:{}", free_port()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.web, path)
    }
}

impl Default for Ports {
    fn default() -> Self {
        Self::new()
    }
}

/// `backends = [...]` for a pool, with optional weights.
pub fn backend_list(backends: &[&TestBackend], weights: &[u32]) -> String {
    let items: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| match weights.get(i) {
            Some(w) => format!("{{ addr = \"{}\", weight = {} }}", b.addr, w),
            None => format!("{{ addr = \"{}\" }}", b.addr),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// A one-node config: one listener `web`, one route to pool `app`, and `pool_extra`
/// lines inside `[[pool]]` (algorithm, health, ...). `top_extra` goes before the
/// listener (e.g. a `[session]` table).
pub fn single_node(ports: &Ports, backends: &str, pool_extra: &str, top_extra: &str) -> String {
    let pool = format!("backends = {backends}\n{pool_extra}");
    one_node(
        &ports.admin,
        "10s",
        top_extra,
        &web_to_app(&ports.web, "header_read_timeout = \"2s\"", &pool),
    )
}

/// A one-node file: `[node]` (id 1, `admin`, `shutdown_grace`), then `top_extra` (e.g. a
/// `[session]` table), then the balancing part `balance`.
pub fn one_node(admin: &str, shutdown_grace: &str, top_extra: &str, balance: &str) -> String {
    format!(
        "[node]\nid = 1\nadmin = \"{admin}\"\ndata_dir = \"/tmp\"\naccess_log = \"off\"\nshutdown_grace = \"{shutdown_grace}\"\n\n{top_extra}\n\n{balance}"
    )
}
