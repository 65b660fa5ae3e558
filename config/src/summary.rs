//! The effective config in human form: what `fulcrum check` prints on success.
//!
//! Defaults are spelled out, so an operator sees what a left-out key means.

use crate::model::{
    ClusterSection, Config, HealthCheck, Listener, NodeSection, Pool, SessionSection,
};
use crate::vips::VipSection;
use std::fmt::Write;
use std::time::Duration;

impl Config {
    /// A multi-line summary of the effective config, defaults included.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        node(&mut out, self.node.as_ref());
        cluster(&mut out, self.cluster.as_ref());
        vip(&mut out, self.leader_vip());
        spread_vips(&mut out, self.spread_vips());
        bgp(&mut out, self.bgp.as_ref());
        dns(&mut out, self.dns.as_ref());
        session(&mut out, self.session.as_ref());
        listeners(&mut out, self);
        pools(&mut out, &self.pool);
        out
    }
}

fn h(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn node(out: &mut String, node: Option<&NodeSection>) {
    let Some(n) = node else {
        out.push_str("node: none (balancer-only config)\n");
        return;
    };
    let _ = writeln!(
        out,
        "node {}: admin {}, data_dir {}, access_log {}, shutdown_grace {}, admin token {}",
        n.id,
        n.admin,
        n.data_dir.display(),
        n.access_log,
        h(n.shutdown_grace),
        n.admin_token_file
            .as_ref()
            .map_or("none".to_string(), |p| p.display().to_string()),
    );
}

fn cluster(out: &mut String, cluster: Option<&ClusterSection>) {
    let Some(c) = cluster else {
        out.push_str("cluster: none (one-node cluster)\n");
        return;
    };
    let _ = writeln!(
        out,
        "cluster: raft {}, peers [{}], secret_file {}, peer tls {}",
        c.raft,
        c.peers.join(", "),
        c.secret_file.display(),
        c.tls.as_ref().map_or("off".to_string(), |t| format!(
            "on (ca {}, cert {}, key {})",
            t.ca.display(),
            t.cert.display(),
            t.key.display()
        )),
    );
    let _ = writeln!(
        out,
        "  heartbeat {}, election timeout {}..{}, lease {}, health policy {}",
        h(c.heartbeat),
        h(c.election_timeout_min),
        h(c.election_timeout_max),
        h(c.lease),
        format!("{:?}", c.health_policy).to_lowercase(),
    );
}

fn vip(out: &mut String, vip: Option<&VipSection>) {
    let Some(v) = vip else {
        out.push_str("vip: none\n");
        return;
    };
    let _ = writeln!(
        out,
        "vip: {} on {}, fencing {}, lifetime {}",
        v.address,
        v.interface.as_deref().unwrap_or("(interface not set)"),
        format!("{:?}", v.fencing).to_lowercase(),
        h(v.lifetime),
    );
}

fn spread_vips(out: &mut String, vips: &[crate::VipEntry]) {
    for v in vips {
        let _ = writeln!(
            out,
            "vip (spread): {} on {}, preferred {:?}, lifetime {}",
            v.address,
            v.interface.as_deref().unwrap_or("(interface not set)"),
            v.preferred,
            h(v.lifetime),
        );
    }
}

fn bgp(out: &mut String, bgp: Option<&crate::BgpSection>) {
    if let Some(b) = bgp {
        let _ = writeln!(
            out,
            "bgp: announce {} through BIRD ({}, fragment {}), withdraw_wait {}",
            b.prefixes.join(", "),
            b.socket.display(),
            b.fragment.display(),
            h(b.withdraw_wait),
        );
    }
}

fn dns(out: &mut String, dns: Option<&crate::DnsSection>) {
    let Some(d) = dns else { return };
    let bind = d
        .bind
        .map_or("not here".to_string(), |b| format!("{b} (udp+tcp)"));
    let zone = d.zone.as_deref().unwrap_or("(none: every query refused)");
    let _ = writeln!(out, "dns: {bind}, zone {zone}, ttl {}", h(d.ttl));
    for n in &d.name {
        let full = d.full_name(&n.name).unwrap_or_else(|| n.name.clone());
        let _ = writeln!(out, "dns name {full}: {:?}", n.answer);
    }
}

fn session(out: &mut String, session: Option<&SessionSection>) {
    let Some(s) = session else {
        out.push_str("session: none (affinity modes learn/header/source-ip unavailable)\n");
        return;
    };
    let store = match (&s.redis, s.sentinels.is_empty()) {
        (Some(url), _) => format!("redis {url}"),
        (None, false) => format!(
            "sentinels [{}] master {}",
            s.sentinels.join(", "),
            s.master_name.as_deref().unwrap_or("?")
        ),
        (None, true) => "no redis".to_string(),
    };
    let fallback = match (s.fallback_cookie.is_empty(), s.fallback_keys.len()) {
        (true, _) => "off".to_string(),
        (false, 0) => format!("{}_POOL, key from the cluster secret", s.fallback_cookie),
        (false, n) => format!("{}_POOL, {n} key file(s)", s.fallback_cookie),
    };
    let _ = writeln!(
        out,
        "session: {store}, ttl {}, timeout {}, cookie_secret {}, fallback cookie {fallback}",
        h(s.ttl),
        h(s.timeout),
        if s.cookie_secret.is_some() {
            "set"
        } else {
            "not set"
        },
    );
}

fn listeners(out: &mut String, config: &Config) {
    let _ = writeln!(out, "listeners ({}):", config.listener.len());
    for l in &config.listener {
        listener(out, l);
        if let Some(pool) = &l.pool {
            let _ = writeln!(out, "    -> pool {pool}");
        }
        for r in config.route.iter().filter(|r| r.listener == l.name) {
            let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(
                out,
                "    route host {} path {}{}{} -> {}",
                r.host.as_deref().unwrap_or("*"),
                r.path_prefix.as_deref().unwrap_or("/"),
                if headers.is_empty() {
                    String::new()
                } else {
                    format!(" headers [{}]", headers.join(", "))
                },
                if r.redirect_https {
                    " (redirect to https)"
                } else {
                    ""
                },
                target(r),
            );
        }
    }
}

fn listener(out: &mut String, l: &Listener) {
    let _ = write!(out, "  {} {} {}", l.name, l.protocol.as_str(), l.bind);
    if l.protocol == crate::Protocol::Tcp {
        let _ = writeln!(out, ": idle_timeout {}", h(l.idle_timeout));
    } else {
        let _ = writeln!(
            out,
            ": {} cert(s), header_read_timeout {}, idle_timeout {}, max_header_bytes {}",
            l.tls.len(),
            h(l.header_read_timeout),
            h(l.idle_timeout),
            l.max_header_bytes,
        );
    }
    if l.accept_proxy {
        let _ = writeln!(
            out,
            "    accepts PROXY protocol from [{}]",
            l.proxy_from.join(", ")
        );
    }
    if l.protocol != crate::Protocol::Tcp {
        let _ = writeln!(
            out,
            "    forwarding headers appended to from [{}], replaced from anyone else; forwards the {} path{}",
            l.trusted_proxies.join(", "),
            l.forward_path.as_str(),
            if l.merge_slashes { ", slashes merged" } else { "" },
        );
    }
}

fn pools(out: &mut String, pools: &[Pool]) {
    let _ = writeln!(out, "pools ({}):", pools.len());
    for p in pools {
        let hash = p
            .hash_key
            .as_deref()
            .map(|k| format!(" on {k}"))
            .unwrap_or_default();
        let mut affinity = p.affinity.mode.as_str().to_string();
        match p.affinity.mode {
            crate::AffinityMode::Cookie | crate::AffinityMode::Learn => {
                affinity = format!("{affinity} ({})", p.affinity.cookie_name());
            }
            crate::AffinityMode::Header => {
                affinity = format!(
                    "{affinity} ({})",
                    p.affinity.header.as_deref().unwrap_or("?")
                );
            }
            _ => {}
        }
        let _ = writeln!(
            out,
            "  {} {}{hash}, affinity {affinity}, connect {}, response {}, upstream idle {}{}{}",
            p.name,
            p.algorithm.as_str(),
            h(p.connect_timeout),
            h(p.response_timeout),
            h(p.upstream_idle_timeout),
            p.send_proxy
                .map(|v| format!(", send PROXY {v:?}"))
                .unwrap_or_default(),
            if p.tls.is_some() {
                ", tls to backends"
            } else {
                ""
            },
        );
        health(out, p.health.as_ref());
        for b in &p.backends {
            let _ = writeln!(out, "    backend {} weight {}", b.addr, b.weight);
        }
    }
}

fn health(out: &mut String, health: Option<&HealthCheck>) {
    let Some(c) = health else {
        out.push_str("    health: no active checks (passive failure detection only)\n");
        return;
    };
    let what = match c.kind {
        crate::CheckKind::Http => format!(
            "http GET {} expect {}{}",
            c.path,
            c.expect_status,
            c.expect_body
                .as_deref()
                .map(|b| format!(" body containing {b:?}"))
                .unwrap_or_default()
        ),
        crate::CheckKind::Tcp => "tcp connect".to_string(),
        crate::CheckKind::Grpc => format!(
            "grpc.health.v1 Check of {:?}",
            c.service.as_deref().unwrap_or("")
        ),
    };
    let _ = writeln!(
        out,
        "    health: {what}, every {}, timeout {}, rise {}, fall {}",
        h(c.interval),
        h(c.timeout),
        c.rise,
        c.fall,
    );
}

/// `pool NAME`, or `split blue 90, green 10`.
fn target(r: &crate::Route) -> String {
    match &r.pool {
        Some(pool) => format!("pool {pool}"),
        None => {
            let parts: Vec<String> = (r.split.iter())
                .map(|s| format!("{} {}", s.pool, s.weight))
                .collect();
            format!("split {}", parts.join(", "))
        }
    }
}
