//! Rejections of bad health checks.

mod common;
use common::{assert_one, BASE};

fn health(h: &str) -> String {
    BASE.replace("backends =", &format!("health = {{ {h} }}\nbackends ="))
}

#[test]
fn rise_and_fall_at_least_one() {
    assert_one(&health("rise = 0"), "0 }", 0, "rise must be at least 1");
    assert_one(&health("fall = 0"), "0 }", 0, "fall must be at least 1");
}

#[test]
fn timeout_not_above_interval() {
    let text = health("interval = \"1s\", timeout = \"2s\"");
    assert_one(&text, "\"2s\"", 0, "timeout 2s must not exceed interval 1s");
}

#[test]
fn timeout_positive() {
    assert_one(
        &health("timeout = \"0s\""),
        "\"0s\"",
        0,
        "timeout must be greater than 0",
    );
}

#[test]
fn interval_at_least_100ms() {
    let text = health("interval = \"50ms\", timeout = \"10ms\"");
    assert_one(&text, "\"50ms\"", 0, "must be at least 100ms");
}

#[test]
fn expect_status_syntax() {
    for bad in ["99", "600", "399-200", "2xx"] {
        let text = health(&format!("expect_status = \"{bad}\""));
        assert_one(&text, &format!("\"{bad}\""), 0, "expect_status");
    }
}

#[test]
fn status_range_is_typed() {
    let config = fulcrum_config::parse(&health("expect_status = \"204\""), "t").unwrap();
    assert_eq!(
        config.pool[0].health.as_ref().unwrap().status_range(),
        (204, 204)
    );
}

#[test]
fn path_starts_with_slash() {
    assert_one(
        &health("path = \"healthz\""),
        "\"healthz\"",
        0,
        "must start with '/'",
    );
}

#[test]
fn health_as_sub_table_is_located() {
    let text = format!("{BASE}\n[pool.health]\nfall = 0\n");
    assert_one(&text, "0\n", 0, "fall must be at least 1");
}

#[test]
fn grpc_kind_takes_an_optional_service_name() {
    let config = fulcrum_config::parse(&health("kind = \"grpc\", service = \"test.Echo\""), "t")
        .expect("a gRPC check with a service parses");
    let check = config.pool[0].health.as_ref().expect("health");
    assert_eq!(check.kind, fulcrum_config::CheckKind::Grpc);
    assert_eq!(check.service.as_deref(), Some("test.Echo"));
    let whole = fulcrum_config::parse(&health("kind = \"grpc\""), "t").expect("without service");
    assert_eq!(
        whole.pool[0]
            .health
            .as_ref()
            .and_then(|h| h.service.clone()),
        None
    );
}

#[test]
fn service_needs_the_grpc_kind() {
    assert_one(
        &health("service = \"test.Echo\""),
        "\"test.Echo\"",
        0,
        "it needs kind = \"grpc\"",
    );
}
