//! `split` on a route (blue-green / canary): accepted shapes and refusals at
//! `file:line:column`.

mod common;
use common::{assert_one, errors, BASE};

/// BASE with a second pool `green` and the route's `pool` replaced by `route_lines`.
fn split_config(route_lines: &str) -> String {
    BASE.replace("pool = \"app\"\n\n", &format!("{route_lines}\n\n"))
        + "\n[[pool]]\nname = \"green\"\nbackends = [{ addr = \"127.0.0.1:9002\" }]\n"
}

const GOOD: &str = "name = \"front\"\nsplit = [{ pool = \"app\", weight = 90 }, { pool = \"green\", weight = 10 }]";

#[test]
fn a_named_split_is_accepted_and_lists_its_pools() {
    let config = fulcrum_config::parse(&split_config(GOOD), "t").unwrap();
    let route = &config.route[0];
    assert_eq!(route.name.as_deref(), Some("front"));
    assert_eq!(route.pool, None);
    assert_eq!(route.pools().collect::<Vec<_>>(), ["app", "green"]);
    assert_eq!(route.split[1].weight, 10);
    // It survives the round trip through the replicated text.
    let again = fulcrum_config::parse(&config.to_toml().unwrap(), "t").unwrap();
    assert_eq!(again.route, config.route);
}

#[test]
fn unknown_pool_in_split_is_refused_at_the_name() {
    let text = split_config(&GOOD.replace("\"green\"", "\"teal\""));
    assert_one(
        &text,
        "\"teal\"",
        0,
        "split names pool `teal`, which does not exist",
    );
}

#[test]
fn zero_total_weight_is_refused() {
    let text = split_config(&GOOD.replace("90", "0").replace("10 }", "0 }"));
    assert_one(&text, "[{", 0, "add up to 0");
}

#[test]
fn pool_and_split_together_are_refused() {
    let text = split_config(&format!("pool = \"app\"\n{GOOD}"));
    assert_one(&text, "[{", 0, "both `pool` and `split`");
}

#[test]
fn neither_pool_nor_split_is_refused() {
    let text = split_config("host = \"a.test\"");
    assert_one(&text, "[[route]]", 0, "needs `pool` or `split`");
}

#[test]
fn a_split_needs_a_name() {
    let text = split_config(&GOOD.replace("name = \"front\"\n", ""));
    assert_one(&text, "[{", 0, "needs a `name`");
}

#[test]
fn a_pool_twice_and_a_weight_too_high_are_both_reported() {
    let text = split_config(
        "name = \"front\"\nsplit = [{ pool = \"app\", weight = 20000 }, { pool = \"app\", weight = 1 }]",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    common::assert_at(
        &errs[0],
        &text,
        "20000",
        0,
        "split weight must be 0..=10000",
    );
    common::assert_at(&errs[1], &text, "\"app\"", 1, "appears twice");
}

#[test]
fn one_pool_is_not_a_split() {
    let text = split_config("name = \"front\"\nsplit = [{ pool = \"app\", weight = 1 }]");
    assert_one(&text, "[{", 0, "at least two pools");
}

#[test]
fn route_names_are_unique() {
    let text = split_config(GOOD)
        + "\n[[route]]\nname = \"front\"\nlistener = \"web\"\npool = \"app\"\nhost = \"b.test\"\n";
    assert_one(&text, "\"front\"", 1, "duplicate route name `front`");
}
