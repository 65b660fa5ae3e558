//! Rejections of bad `[[listener]]` entries, each at its exact line and column.

mod common;
use common::{assert_one, with, BASE};

#[test]
fn duplicate_listener_name_points_at_second() {
    let text = with("\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8081\"\n");
    assert_one(&text, "\"web\"", 2, "duplicate listener name `web`");
}

#[test]
fn duplicate_bind_address() {
    let text = with("\n[[listener]]\nname = \"web2\"\nbind = \"127.0.0.1:8080\"\n");
    assert_one(
        &text,
        "\"127.0.0.1:8080\"",
        1,
        "already used by listener `web`",
    );
}

#[test]
fn wildcard_bind_conflicts_with_specific_address_on_same_port() {
    let text = with("\n[[listener]]\nname = \"web2\"\nbind = \"0.0.0.0:8080\"\n");
    assert_one(
        &text,
        "\"0.0.0.0:8080\"",
        0,
        "already used by listener `web`",
    );
}

#[test]
fn bad_bind_address() {
    let text = BASE.replace("127.0.0.1:8080", "localhost:8080");
    assert_one(&text, "\"localhost:8080\"", 0, "not an address");
}

#[test]
fn ipv6_bind_is_accepted() {
    let text = BASE.replace("127.0.0.1:8080", "[::1]:8080");
    let config = fulcrum_config::parse(&text, "t").unwrap();
    assert_eq!(
        config.listener[0].bind_addr(),
        Some("[::1]:8080".parse().unwrap())
    );
}

#[test]
fn https_without_tls() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\nprotocol = \"https\"",
    );
    assert_one(
        &text,
        "\"https\"",
        0,
        "needs at least one `tls` certificate",
    );
}

#[test]
fn http_with_tls() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\ntls = [{ cert = \"c.pem\", key = \"k.pem\" }]",
    );
    assert_one(&text, "[{ cert", 0, "use protocol = \"https\"");
}

#[test]
fn tcp_with_tls() {
    let text = with(
        "\n[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\npool = \"app\"\ntls = [{ cert = \"c\", key = \"k\" }]\n",
    );
    assert_one(&text, "[{ cert", 0, "but protocol tcp");
}

#[test]
fn accept_proxy_without_proxy_from() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\naccept_proxy = true",
    );
    assert_one(&text, "true", 0, "needs `proxy_from`");
}

#[test]
fn proxy_from_entries_must_be_networks() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\naccept_proxy = true\nproxy_from = [\"10.0.0.0/8\", \"10.0.0.0/40\"]",
    );
    assert_one(&text, "\"10.0.0.0/40\"", 0, "prefix length");
}

#[test]
fn proxy_networks_are_typed() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\naccept_proxy = true\nproxy_from = [\"10.0.0.0/8\", \"::1\"]",
    );
    let config = fulcrum_config::parse(&text, "t").unwrap();
    let nets = config.listener[0].proxy_networks();
    assert_eq!(nets.len(), 2);
    assert!(nets[0].contains("10.9.8.7".parse().unwrap()));
    assert!(nets[1].contains("::1".parse().unwrap()));
    assert!(!nets[1].contains("::2".parse().unwrap()));
}

#[test]
fn tcp_listener_pool_must_exist() {
    let text = with("\n[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\npool = \"pg\"\n");
    assert_one(&text, "\"pg\"", 0, "pool `pg`, which does not exist");
}

#[test]
fn tcp_listener_needs_a_pool() {
    let text =
        with("\n[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\n");
    assert_one(&text, "[[listener]]", 1, "needs `pool`");
}

#[test]
fn http_listener_with_pool_is_refused() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\npool = \"app\"",
    );
    assert_one(&text, "\"app\"", 0, "only for tcp listeners");
}

#[test]
fn listener_bind_colliding_with_admin() {
    let text = format!("[node]\nid = 1\nadmin = \"127.0.0.1:8080\"\n{BASE}");
    assert_one(&text, "\"127.0.0.1:8080\"", 1, "admin API address");
}

#[test]
fn port_zero_binds_never_collide() {
    let text = BASE.replace("127.0.0.1:8080", "127.0.0.1:0")
        + "\n[[listener]]\nname = \"web2\"\nbind = \"127.0.0.1:0\"\n";
    assert!(fulcrum_config::parse(&text, "t").is_ok());
}

#[test]
fn trusted_proxies_must_be_networks() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.internal\"]",
    );
    assert_one(&text, "\"proxy.internal\"", 0, "not an IP address");
}

#[test]
fn trusted_proxies_and_path_settings_are_read() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nforward_path = \"as-received\"\nmerge_slashes = true",
    );
    let config = fulcrum_config::parse(&text, "t").unwrap();
    let l = &config.listener[0];
    assert_eq!(l.trusted_proxies, ["10.0.0.0/8", "::1"]);
    assert_eq!(l.forward_path, fulcrum_config::ForwardPath::AsReceived);
    assert!(l.merge_slashes);
    let defaults = fulcrum_config::parse(BASE, "t").unwrap();
    let d = &defaults.listener[0];
    assert!(d.trusted_proxies.is_empty());
    assert_eq!(d.forward_path, fulcrum_config::ForwardPath::Normalized);
    assert!(!d.merge_slashes);
}

#[test]
fn forward_path_must_be_known() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\nforward_path = \"raw\"",
    );
    assert_one(&text, "\"raw\"", 0, "unknown variant");
}

#[test]
fn trusted_proxies_on_a_tcp_listener() {
    let text = with(
        "\n[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\npool = \"app\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    );
    assert_one(&text, "[\"10.0.0.0/8\"]", 0, "for http/https listeners");
}

#[test]
fn trusted_proxies_decide_who_is_trusted() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\"]",
    );
    let config = fulcrum_config::parse(&text, "t").unwrap();
    let l = &config.listener[0];
    assert!(l.trusts_proxy("10.1.2.3".parse().unwrap()));
    assert!(l.trusts_proxy("::ffff:10.1.2.3".parse().unwrap()));
    assert!(l.trusts_proxy("2001:db8::1".parse().unwrap()));
    assert!(!l.trusts_proxy("2001:db8::2".parse().unwrap()));
    assert!(!l.trusts_proxy("127.0.0.1".parse().unwrap()));
    let base = fulcrum_config::parse(BASE, "t").unwrap();
    assert!(!base.listener[0].trusts_proxy("127.0.0.1".parse().unwrap()));
}
