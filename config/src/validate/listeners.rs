//! Checks of `[[listener]]` entries: names, bind addresses, TLS, PROXY protocol, tcp pools,
//! trusted forwarding proxies.

use super::Report;
use crate::model::{Config, Listener, Protocol};
use crate::net::{parse_socket_addr, IpNet};
use crate::span::Seg::{I, K};
use std::collections::HashSet;
use std::net::SocketAddr;

pub(super) fn check(config: &Config, r: &mut Report<'_>) {
    let pools: HashSet<&str> = config.pool.iter().map(|p| p.name.as_str()).collect();
    let mut names = HashSet::new();
    let mut binds: Vec<(SocketAddr, &str)> = Vec::new();
    for (i, l) in config.listener.iter().enumerate() {
        r.name(&[K("listener"), I(i), K("name")], "listener", &l.name);
        if !names.insert(l.name.as_str()) {
            r.error(
                &[K("listener"), I(i), K("name")],
                format!("duplicate listener name `{}`", l.name),
            );
        }
        if let Some(addr) = check_bind(config, i, l, &binds, r) {
            binds.push((addr, &l.name));
        }
        check_tls(i, l, r);
        check_proxy(i, l, r);
        check_pool(i, l, &pools, r);
        check_limits(i, l, r);
        check_trusted_proxies(i, l, r);
    }
}

/// Parses `bind` and refuses an address another listener (or the admin API) already takes.
fn check_bind(
    config: &Config,
    i: usize,
    l: &Listener,
    taken: &[(SocketAddr, &str)],
    r: &mut Report<'_>,
) -> Option<SocketAddr> {
    let path = [K("listener"), I(i), K("bind")];
    let addr = match parse_socket_addr(&l.bind) {
        Ok(a) => a,
        Err(e) => {
            r.error(&path, format!("bind: {e}"));
            return None;
        }
    };
    if let Some((_, other)) = taken.iter().find(|(t, _)| conflicts(*t, addr)) {
        r.error(
            &path,
            format!("bind {addr} is already used by listener `{other}`"),
        );
    } else if config
        .node
        .as_ref()
        .is_some_and(|n| conflicts(n.admin, addr))
    {
        r.error(
            &path,
            format!("bind {addr} is the admin API address (node.admin)"),
        );
    }
    Some(addr)
}

/// Two binds collide on the same port when the IPs are equal or either is the wildcard of
/// the same family. Port 0 asks the kernel for a free port, so it never collides.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 || a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

fn check_tls(i: usize, l: &Listener, r: &mut Report<'_>) {
    match l.protocol {
        Protocol::Https if l.tls.is_empty() => r.error(
            &[K("listener"), I(i), K("protocol")],
            format!("https listener `{}` needs at least one `tls` certificate", l.name),
        ),
        Protocol::Http | Protocol::Tcp if !l.tls.is_empty() => r.error(
            &[K("listener"), I(i), K("tls")],
            format!(
                "listener `{}` has `tls` but protocol {}: use protocol = \"https\" to terminate TLS",
                l.name,
                l.protocol.as_str()
            ),
        ),
        _ => {}
    }
}

fn check_proxy(i: usize, l: &Listener, r: &mut Report<'_>) {
    if l.accept_proxy && l.proxy_from.is_empty() {
        r.error(
            &[K("listener"), I(i), K("accept_proxy")],
            "accept_proxy = true needs `proxy_from` (the networks trusted to send a PROXY header)",
        );
    }
    for (j, net) in l.proxy_from.iter().enumerate() {
        if let Err(e) = IpNet::parse(net) {
            r.error(
                &[K("listener"), I(i), K("proxy_from"), I(j)],
                format!("proxy_from: {e}"),
            );
        }
    }
}

/// tcp listeners name their pool; http/https listeners pick pools through routes.
fn check_pool(i: usize, l: &Listener, pools: &HashSet<&str>, r: &mut Report<'_>) {
    let path = [K("listener"), I(i), K("pool")];
    match (l.protocol, &l.pool) {
        (Protocol::Tcp, None) => r.error(
            &[K("listener"), I(i)],
            format!(
                "tcp listener `{}` needs `pool` (tcp listeners have no routes)",
                l.name
            ),
        ),
        (Protocol::Tcp, Some(p)) if !pools.contains(p.as_str()) => r.error(
            &path,
            format!(
                "listener `{}` names pool `{p}`, which does not exist",
                l.name
            ),
        ),
        (Protocol::Http | Protocol::Https, Some(_)) => r.error(
            &path,
            format!(
                "`pool` is only for tcp listeners; {} listener `{}` chooses pools with [[route]]",
                l.protocol.as_str(),
                l.name
            ),
        ),
        _ => {}
    }
}

/// `trusted_proxies` entries are networks, and only mean something on HTTP listeners.
fn check_trusted_proxies(i: usize, l: &Listener, r: &mut Report<'_>) {
    if l.protocol == Protocol::Tcp && !l.trusted_proxies.is_empty() {
        r.error(
            &[K("listener"), I(i), K("trusted_proxies")],
            format!(
                "tcp listener `{}` forwards no HTTP headers; trusted_proxies is for http/https listeners",
                l.name
            ),
        );
    }
    for (j, net) in l.trusted_proxies.iter().enumerate() {
        if let Err(e) = IpNet::parse(net) {
            r.error(
                &[K("listener"), I(i), K("trusted_proxies"), I(j)],
                format!("trusted_proxies: {e}"),
            );
        }
    }
}

fn check_limits(i: usize, l: &Listener, r: &mut Report<'_>) {
    let at = |key| [K("listener"), I(i), K(key)];
    r.positive(
        &at("header_read_timeout"),
        "header_read_timeout",
        l.header_read_timeout,
    );
    r.positive(&at("idle_timeout"), "idle_timeout", l.idle_timeout);
    if l.max_header_bytes == 0 {
        r.error(
            &at("max_header_bytes"),
            "max_header_bytes must be greater than 0",
        );
    }
    if l.max_connections == 0 {
        r.error(
            &at("max_connections"),
            "max_connections must be greater than 0",
        );
    }
}
