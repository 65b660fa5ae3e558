//! Checks of a pool's `discover` table: exactly one way to name backends, a name and
//! record type that fit, resolvers that are addresses, sane TTL bounds, and the health
//! check a found backend must pass before it gets traffic.

use super::Report;
use crate::discover::RecordKind;
use crate::model::Pool;
use crate::net::parse_socket_addr;
use crate::span::Seg::{I, K};

/// Longest DNS name (RFC 1035: 255 octets on the wire, 253 in text).
const MAX_NAME: usize = 253;

pub(super) fn check(i: usize, pool: &Pool, r: &mut Report<'_>) {
    let Some(d) = &pool.discover else {
        return;
    };
    let at = |key| [K("pool"), I(i), K("discover"), K(key)];
    if !pool.backends.is_empty() {
        r.error(
            &[K("pool"), I(i), K("backends")],
            "a pool names either `backends` or `discover`, not both",
        );
    }
    if pool.health.is_none() {
        r.error(
            &[K("pool"), I(i), K("discover")],
            "discover needs a `health` check on the pool: a backend found in DNS gets traffic only after it passes one",
        );
    }
    let name_ok = !d.dns.is_empty()
        && d.dns.len() <= MAX_NAME
        && d.dns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        r.error(
            &at("dns"),
            format!(
                "`{}` is not a DNS name (letters, digits, `-`, `_`, `.`)",
                d.dns
            ),
        );
    }
    match (d.kind, d.port) {
        (RecordKind::Srv, Some(_)) => r.error(
            &at("port"),
            "SRV records carry their own ports: no `port` with type = \"srv\"",
        ),
        (RecordKind::A | RecordKind::Aaaa, None | Some(0)) => {
            r.error(&at("type"), "A and AAAA records need a `port` (1-65535)")
        }
        _ => {}
    }
    if d.resolvers.is_empty() {
        r.error(
            &at("resolvers"),
            "discover needs at least one resolver (`IP:PORT`)",
        );
    }
    for (j, server) in d.resolvers.iter().enumerate() {
        let path = [K("pool"), I(i), K("discover"), K("resolvers"), I(j)];
        match parse_socket_addr(server) {
            Err(e) => r.error(&path, format!("resolver: {e}")),
            Ok(a) if a.port() == 0 => r.error(&path, format!("resolver {a} needs a port")),
            Ok(_) => {}
        }
    }
    r.positive(&at("min_ttl"), "min_ttl", d.min_ttl);
    r.positive(&at("timeout"), "timeout", d.timeout);
    if d.max_ttl < d.min_ttl {
        r.error(&at("max_ttl"), "max_ttl must not be less than min_ttl");
    }
    if !super::pools::WEIGHT_RANGE.contains(&d.weight) {
        r.error(
            &at("weight"),
            format!("weight {} is out of range 1..=1000", d.weight),
        );
    }
}
