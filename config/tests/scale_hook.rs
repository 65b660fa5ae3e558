//! `capacity` and `scale_hook` on a pool: accepted as written, refused with the spot.

mod common;
use common::{assert_one, BASE};
use fulcrum_config::parse;
use std::time::Duration;

fn pool(lines: &str) -> String {
    BASE.replace(
        "backends = [{ addr = \"127.0.0.1:9001\" }]",
        &format!("backends = [{{ addr = \"127.0.0.1:9001\" }}]\n{lines}"),
    )
}

#[test]
fn a_full_hook_is_read_as_written() {
    let text = pool(
        "capacity = 200\nscale_hook = { url = \"http://127.0.0.1:9900/scale\", above = 0.9, below = 0.2, for = \"3s\", cooldown = \"1m\" }",
    );
    let config = parse(&text, "test.toml").expect("valid");
    let p = &config.pool[0];
    assert_eq!(p.capacity, Some(200));
    let hook = p.scale_hook.as_ref().expect("hook");
    assert_eq!((hook.above, hook.below), (0.9, 0.2));
    assert_eq!(hook.hold, Duration::from_secs(3));
    assert_eq!(hook.cooldown, Duration::from_secs(60));
    let (addr, path) = hook.target().expect("target");
    assert_eq!(
        (addr.to_string(), path.as_str()),
        ("127.0.0.1:9900".into(), "/scale")
    );
}

#[test]
fn zero_capacity_is_refused() {
    assert_one(
        &pool("capacity = 0"),
        "0\n",
        0,
        "capacity must be at least 1",
    );
}

#[test]
fn a_hook_without_capacity_is_refused() {
    let text = pool("scale_hook = { url = \"http://127.0.0.1:9900/\" }");
    assert_one(&text, "{ url", 0, "needs `capacity`");
}

#[test]
fn a_hook_url_that_is_not_http_ip_port_is_refused() {
    let text = pool("capacity = 10\nscale_hook = { url = \"https://scaler.internal/\" }");
    assert_one(&text, "\"https", 0, "must start with http://");
    let text = pool("capacity = 10\nscale_hook = { url = \"http://scaler.internal/\" }");
    assert_one(&text, "\"http://s", 0, "IP:PORT");
}

#[test]
fn below_at_or_above_above_is_refused() {
    let text = pool(
        "capacity = 10\nscale_hook = { url = \"http://127.0.0.1:1/\", above = 0.5, below = 0.5 }",
    );
    assert_one(&text, "0.5 }", 0, "below must be less than above");
}

#[test]
fn a_zero_hold_is_refused() {
    let text = pool("capacity = 10\nscale_hook = { url = \"http://127.0.0.1:1/\", for = \"0s\" }");
    assert_one(&text, "\"0s\"", 0, "for must be greater than 0");
}

#[test]
fn unknown_hook_keys_are_refused() {
    let text =
        pool("capacity = 10\nscale_hook = { url = \"http://127.0.0.1:1/\", every = \"1s\" }");
    assert!(parse(&text, "test.toml").is_err());
}
