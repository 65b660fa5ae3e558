//! Rejections of bad `[[pool]]` entries: backends, hashing, affinity.

mod common;
use common::{assert_one, errors, locate, with, BASE};
use fulcrum_config::{parse, HashKey};

const REDIS: &str = "[session]\nredis = \"redis://127.0.0.1:6379\"\n";

/// `BASE` with the pool's `backends` line replaced by `lines`.
fn pool(lines: &str) -> String {
    BASE.replace("backends = [{ addr = \"127.0.0.1:9001\" }]", lines)
}

#[test]
fn duplicate_pool_name_points_at_second() {
    let text = with("\n[[pool]]\nname = \"app\"\nbackends = [{ addr = \"127.0.0.1:9002\" }]\n");
    assert_one(&text, "\"app\"", 2, "duplicate pool name `app`");
}

#[test]
fn weight_zero_in_second_backend_of_third_pool() {
    let text = with(
        "\n[[pool]]\nname = \"b\"\nbackends = [{ addr = \"127.0.0.1:9002\" }]\n\
         \n[[pool]]\nname = \"c\"\nbackends = [{ addr = \"127.0.0.1:9003\" }, { addr = \"127.0.0.1:9004\", weight = 0 }]\n",
    );
    assert_one(&text, "0 }", 0, "weight 0 is out of range 1..=1000");
    let (line, column) = locate(&text, "0 }", 0);
    assert_eq!((line, column), (20, 78));
}

#[test]
fn weight_above_limit() {
    let text = pool("backends = [{ addr = \"127.0.0.1:9001\", weight = 1001 }]");
    assert_one(&text, "1001", 0, "out of range");
}

#[test]
fn pool_without_backends() {
    let text = pool("backends = []");
    assert_one(&text, "[]", 0, "has no backends");
}

#[test]
fn duplicate_backend_addr() {
    let text = pool("backends = [{ addr = \"127.0.0.1:9001\" }, { addr = \"127.0.0.1:9001\" }]");
    assert_one(&text, "\"127.0.0.1:9001\"", 1, "listed twice");
}

#[test]
fn backend_addr_must_be_ip_and_port() {
    let text = pool("backends = [{ addr = \"app.local:80\" }, { addr = \"[::1]:80\" }]");
    assert_one(&text, "\"app.local:80\"", 0, "IP:PORT or [IPv6]:PORT");
}

#[test]
fn consistent_hash_needs_hash_key() {
    let text = pool("algorithm = \"consistent-hash\"\nbackends = [{ addr = \"127.0.0.1:9001\" }]");
    assert_one(&text, "\"consistent-hash\"", 0, "has no `hash_key`");
}

#[test]
fn hash_key_syntax() {
    for (bad, why) in [
        ("header:", "not a valid header name"),
        ("cookie:a b", "not a valid cookie name"),
        ("query:q", "must be one of"),
    ] {
        let text = pool(&format!(
            "algorithm = \"consistent-hash\"\nhash_key = \"{bad}\"\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]"
        ));
        assert_one(&text, &format!("\"{bad}\""), 0, why);
    }
}

#[test]
fn hash_key_is_typed() {
    let text = pool("algorithm = \"consistent-hash\"\nhash_key = \"header:X-User\"\nbackends = [{ addr = \"127.0.0.1:9001\" }]");
    let config = parse(&text, "t").unwrap();
    assert_eq!(
        config.pool[0].hash_key(),
        Some(HashKey::Header("x-user".into()))
    );
}

#[test]
fn cookie_affinity_needs_secret() {
    let text = pool("affinity = { mode = \"cookie\" }\nbackends = [{ addr = \"127.0.0.1:9001\" }]");
    assert_one(&text, "\"cookie\"", 0, "needs `[session].cookie_secret`");
}

#[test]
fn cookie_secret_too_short() {
    let text = format!(
        "[session]\ncookie_secret = \"short\"\n{}",
        pool("affinity = { mode = \"cookie\" }\nbackends = [{ addr = \"127.0.0.1:9001\" }]")
    );
    assert_one(&text, "\"short\"", 0, "at least 16 bytes");
}

#[test]
fn cookie_affinity_with_secret_and_default_name() {
    let text = format!(
        "[session]\ncookie_secret = \"0123456789abcdef\"\n{}",
        pool("affinity = { mode = \"cookie\" }\nbackends = [{ addr = \"127.0.0.1:9001\" }]")
    );
    let config = parse(&text, "t").unwrap();
    assert_eq!(config.pool[0].affinity.cookie_name(), "fulcrum_affinity");
}

#[test]
fn learn_needs_cookie() {
    let text = format!(
        "{REDIS}{}",
        pool("affinity = { mode = \"learn\" }\nbackends = [{ addr = \"127.0.0.1:9001\" }]")
    );
    assert_one(&text, "\"learn\"", 0, "needs `cookie`");
}

#[test]
fn header_needs_header() {
    let text = format!(
        "{REDIS}{}",
        pool("affinity = { mode = \"header\" }\nbackends = [{ addr = \"127.0.0.1:9001\" }]")
    );
    assert_one(&text, "\"header\"", 0, "needs `header`");
}

#[test]
fn stateful_affinity_needs_redis() {
    for mode in [
        "learn\", cookie = \"SID",
        "header\", header = \"x-user",
        "source-ip",
    ] {
        let text = pool(&format!(
            "affinity = {{ mode = \"{mode}\" }}\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]"
        ));
        let value = format!("\"{}", mode.split('"').next().unwrap());
        assert_one(&text, &value, 0, "Redis");
    }
}

#[test]
fn tcp_pool_cannot_use_http_affinity() {
    let text = format!(
        "{REDIS}{}\n[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\npool = \"app\"\n",
        pool("affinity = { mode = \"header\", header = \"x-user\" }\nbackends = [{ addr = \"127.0.0.1:9001\" }]")
    );
    assert_one(&text, "\"header\"", 0, "serves tcp listener `db`");
}

#[test]
fn pool_errors_are_all_reported() {
    let text = pool("algorithm = \"consistent-hash\"\nbackends = [{ addr = \"x\", weight = 0 }]");
    assert_eq!(errors(&text).len(), 3);
}

#[test]
fn send_proxy_on_a_routed_http_pool_is_refused() {
    let text = pool("send_proxy = \"v2\"\nbackends = [{ addr = \"127.0.0.1:9001\" }]");
    assert_one(
        &text,
        "\"v2\"",
        0,
        "send_proxy is only supported for pools behind tcp listeners",
    );
}
