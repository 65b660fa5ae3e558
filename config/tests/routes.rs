//! Rejections of bad `[[route]]` entries.

mod common;
use common::{assert_one, with, BASE};

#[test]
fn route_to_missing_listener() {
    let text = BASE.replace("listener = \"web\"", "listener = \"api\"");
    assert_one(&text, "\"api\"", 0, "listener `api`, which does not exist");
}

#[test]
fn route_to_missing_pool() {
    let text = BASE.replace("pool = \"app\"", "pool = \"nope\"");
    assert_one(&text, "\"nope\"", 0, "pool `nope`, which does not exist");
}

#[test]
fn route_on_tcp_listener() {
    let text = with(
        "\n[[listener]]\nname = \"db\"\nbind = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\npool = \"app\"\n\n[[route]]\nlistener = \"db\"\npool = \"app\"\n",
    );
    assert_one(&text, "\"db\"", 1, "is tcp and cannot have routes");
}

#[test]
fn path_prefix_must_start_with_slash() {
    let text = BASE.replace(
        "pool = \"app\"\n\n",
        "pool = \"app\"\npath_prefix = \"api\"\n\n",
    );
    assert_one(&text, "\"api\"", 0, "must start with '/'");
}

#[test]
fn host_must_not_be_empty() {
    let text = BASE.replace("pool = \"app\"\n\n", "pool = \"app\"\nhost = \"\"\n\n");
    assert_one(&text, "\"\"", 0, "host must not be empty");
}

#[test]
fn duplicate_route_points_at_second() {
    let text = with("\n[[route]]\nlistener = \"web\"\npool = \"app\"\npath_prefix = \"/\"\n");
    assert_one(&text, "[[route]]", 1, "same requests as route #1");
}

#[test]
fn routes_differing_in_headers_are_fine() {
    let text =
        with("\n[[route]]\nlistener = \"web\"\npool = \"app\"\nheaders = { x-canary = \"1\" }\n");
    assert!(fulcrum_config::parse(&text, "t").is_ok());
}

#[test]
fn upgrades_default_to_websocket_and_can_be_set() {
    let config = fulcrum_config::parse(BASE, "t").unwrap();
    assert_eq!(config.route[0].upgrades, ["websocket"]);
    let text = BASE.replace(
        "pool = \"app\"\n\n",
        "pool = \"app\"\nupgrades = [\"websocket\", \"TLS/1.3\"]\n\n",
    );
    let config = fulcrum_config::parse(&text, "t").unwrap();
    assert_eq!(config.route[0].upgrades, ["websocket", "TLS/1.3"]);
    let none = BASE.replace("pool = \"app\"\n\n", "pool = \"app\"\nupgrades = []\n\n");
    assert!(fulcrum_config::parse(&none, "t").unwrap().route[0]
        .upgrades
        .is_empty());
}

#[test]
fn h2c_upgrade_is_refused() {
    let text = BASE.replace(
        "pool = \"app\"\n\n",
        "pool = \"app\"\nupgrades = [\"websocket\", \"H2C\"]\n\n",
    );
    assert_one(&text, "\"H2C\"", 0, "never tunnelled");
}

#[test]
fn upgrade_tokens_must_be_protocol_names() {
    let text = BASE.replace(
        "pool = \"app\"\n\n",
        "pool = \"app\"\nupgrades = [\"web socket\"]\n\n",
    );
    assert_one(
        &text,
        "\"web socket\"",
        0,
        "not a valid upgrade protocol name",
    );
}

#[test]
fn a_cluster_wide_rate_limit_needs_redis() {
    let limit = "rate_limit = { requests_per_second = 10, scope = \"cluster\" }";
    let text = BASE.replace(
        "pool = \"app\"\n\n",
        &format!("pool = \"app\"\n{limit}\n\n"),
    );
    assert_one(&text, "\"cluster\"", 0, "needs `[session] redis`");
    let with_redis = format!("[session]\nredis = \"redis://127.0.0.1:6379\"\n{text}");
    let config = fulcrum_config::parse(&with_redis, "t").expect("accepted with Redis");
    let limit = config.route[0].rate_limit.as_ref().expect("a limit");
    assert_eq!(limit.scope, fulcrum_config::RateScope::Cluster);
    assert_eq!(limit.window(), std::time::Duration::from_secs(1));
}

#[test]
fn a_pool_may_speak_http2_to_its_backends() {
    let text = BASE.replace("name = \"app\"\n", "name = \"app\"\nprotocol = \"h2\"\n");
    let config = fulcrum_config::parse(&text, "t").expect("accepted");
    assert_eq!(config.pool[0].protocol, fulcrum_config::BackendProtocol::H2);
    let text = BASE.replace("name = \"app\"\n", "name = \"app\"\nprotocol = \"h3\"\n");
    assert!(fulcrum_config::parse(&text, "t").is_err());
}
