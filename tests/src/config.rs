//! Generated node configs for tests.

use crate::backend::TestBackend;
use crate::free_port;

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
    format!(
        r#"[node]
id = 1
admin = "{admin}"
data_dir = "/tmp"
access_log = "off"
shutdown_grace = "10s"

{top_extra}

[[listener]]
name = "web"
bind = "{web}"
header_read_timeout = "2s"

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
backends = {backends}
{pool_extra}
"#,
        admin = ports.admin,
        web = ports.web,
    )
}
