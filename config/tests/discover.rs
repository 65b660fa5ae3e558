//! `discover` on a pool: accepted as written, refused with the spot.

mod common;
use common::{assert_one, BASE};
use fulcrum_config::{parse, RecordKind};
use std::time::Duration;

const HEALTH: &str = "health = { kind = \"tcp\", interval = \"1s\" }";

/// `BASE` with the pool's `backends` line replaced by `lines`.
fn pool(lines: &str) -> String {
    BASE.replace("backends = [{ addr = \"127.0.0.1:9001\" }]", lines)
}

#[test]
fn srv_and_a_tables_are_read_as_written() {
    let text = pool(&format!(
        "{HEALTH}\ndiscover = {{ dns = \"_http._tcp.app.internal\", type = \"srv\", resolvers = [\"127.0.0.1:5353\"], min_ttl = \"2s\", max_ttl = \"1m\", drain = \"10s\" }}"
    ));
    let config = parse(&text, "test.toml").expect("valid");
    let d = config.pool[0].discover.as_ref().expect("discover");
    assert_eq!((d.kind, d.port), (RecordKind::Srv, None));
    assert_eq!(
        (d.min_ttl, d.max_ttl),
        (Duration::from_secs(2), Duration::from_secs(60))
    );
    assert_eq!(d.drain, Duration::from_secs(10));
    assert!(config.pool[0].backends.is_empty());

    let text = pool(&format!(
        "{HEALTH}\ndiscover = {{ dns = \"app.internal\", type = \"aaaa\", port = 8080, resolvers = [\"[::1]:53\", \"127.0.0.1:53\"] }}"
    ));
    let d = parse(&text, "test.toml").expect("valid").pool[0]
        .discover
        .clone()
        .expect("discover");
    assert_eq!(
        (d.kind, d.port, d.resolvers.len()),
        (RecordKind::Aaaa, Some(8080), 2)
    );
}

#[test]
fn a_records_need_a_port() {
    let text = pool(&format!(
        "{HEALTH}\ndiscover = {{ dns = \"app.internal\", type = \"a\", resolvers = [\"127.0.0.1:53\"] }}"
    ));
    assert_one(&text, "\"a\"", 0, "need a `port`");
}

#[test]
fn srv_records_refuse_a_port() {
    let text = pool(&format!(
        "{HEALTH}\ndiscover = {{ dns = \"_h._tcp.app\", type = \"srv\", port = 80, resolvers = [\"127.0.0.1:53\"] }}"
    ));
    assert_one(&text, "80,", 0, "carry their own ports");
}

#[test]
fn a_resolver_must_be_an_address_with_a_port() {
    let text = pool(&format!(
        "{HEALTH}\ndiscover = {{ dns = \"_h._tcp.app\", type = \"srv\", resolvers = [\"127.0.0.1:53\", \"ns.example:53\"] }}"
    ));
    assert_one(&text, "\"ns.example:53\"", 0, "resolver");
}

#[test]
fn discovery_needs_a_health_check() {
    let text = pool(
        "discover = { dns = \"_h._tcp.app\", type = \"srv\", resolvers = [\"127.0.0.1:53\"] }",
    );
    assert_one(&text, "{ dns", 0, "needs a `health` check");
}

#[test]
fn backends_and_discover_do_not_mix() {
    let text = pool(&format!(
        "{HEALTH}\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\ndiscover = {{ dns = \"_h._tcp.app\", type = \"srv\", resolvers = [\"127.0.0.1:53\"] }}"
    ));
    assert_one(&text, "[{ addr", 0, "either `backends` or `discover`");
}

#[test]
fn ttl_bounds_must_be_ordered() {
    let text = pool(&format!(
        "{HEALTH}\ndiscover = {{ dns = \"_h._tcp.app\", type = \"srv\", resolvers = [\"127.0.0.1:53\"], min_ttl = \"10s\", max_ttl = \"5s\" }}"
    ));
    assert_one(&text, "\"5s\"", 0, "max_ttl must not be less than min_ttl");
}

#[test]
fn unknown_record_type_is_a_syntax_error() {
    let text = pool(&format!(
        "{HEALTH}\ndiscover = {{ dns = \"app\", type = \"mx\", resolvers = [\"127.0.0.1:53\"] }}"
    ));
    let errs = common::errors(&text);
    assert!(
        errs.iter().any(|e| e.to_string().contains("mx")),
        "{errs:#?}"
    );
}
