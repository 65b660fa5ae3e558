//! The node file every cluster bed writes: the node-local part (`[node]`, `[cluster]`:
//! who this node is, where its admin API, Raft port, data and secret are) followed by the
//! cluster-wide part (listeners, routes, pools, `[vip]`, `[session]`...), which the caller
//! composes because each bed balances something different.

use std::fmt::Write as _;

/// The node-local part of one node's file.
#[derive(Debug, Clone, Default)]
pub struct NodeFile {
    pub id: u64,
    /// `[node].admin`, `IP:PORT`.
    pub admin: String,
    pub data_dir: String,
    /// `[node].shutdown_grace`, e.g. `"3s"`.
    pub shutdown_grace: String,
    /// `[node].listen_ip`, when the node binds its listeners to its own address.
    pub listen_ip: Option<String>,
    /// More lines for `[node]`.
    pub node_extra: String,
    /// `[cluster].raft`, `IP:PORT`.
    pub raft: String,
    /// `[cluster].peers`, as [`peers_line`] writes it.
    pub peers: String,
    pub secret_file: String,
    /// More lines for `[cluster]` (e.g. its peer `tls`).
    pub cluster_extra: String,
}

impl NodeFile {
    /// The whole file: the local part, then `cluster_wide` unchanged.
    pub fn render(&self, cluster_wide: &str) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = write!(
            s,
            "[node]\nid = {}\nadmin = \"{}\"\ndata_dir = \"{}\"\naccess_log = \"off\"\nshutdown_grace = \"{}\"\n",
            self.id, self.admin, self.data_dir, self.shutdown_grace
        );
        if let Some(ip) = &self.listen_ip {
            let _ = writeln!(s, "listen_ip = \"{ip}\"");
        }
        let _ = write!(
            s,
            "{}\n\n[cluster]\nraft = \"{}\"\npeers = {}\nsecret_file = \"{}\"\n{}\n\n{cluster_wide}\n",
            self.node_extra, self.raft, self.peers, self.secret_file, self.cluster_extra
        );
        s
    }
}

/// The `[cluster].peers` value for `(id, raft address)` members: `["1@IP:PORT", ...]`.
pub fn peers_line<'a>(members: impl IntoIterator<Item = (u64, &'a str)>) -> String {
    let items: Vec<String> = members
        .into_iter()
        .map(|(id, raft)| format!("\"{id}@{raft}\""))
        .collect();
    format!("[{}]", items.join(", "))
}

/// The balancing part every bed starts from: listener `web` on `bind` (plus
/// `listener_lines`), one route from it to pool `app`, and that pool's `pool_lines`
/// (`backends = ...`, `algorithm`, `health`...).
pub fn web_to_app(bind: &str, listener_lines: &str, pool_lines: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"{bind}\"\n{listener_lines}\n\n[[route]]\nlistener = \"web\"\npool = \"app\"\n\n[[pool]]\nname = \"app\"\n{pool_lines}\n"
    )
}
