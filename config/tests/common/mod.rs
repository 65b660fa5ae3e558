//! Helpers for the config tests: expected positions are found by plain text search, so they
//! do not depend on the span code under test.
#![allow(dead_code)]

use fulcrum_config::{parse, ConfigError};

/// A small valid config the rejection tests extend.
pub const BASE: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
backends = [{ addr = "127.0.0.1:9001" }]
"#;

/// The errors `text` is refused with; panics if it is accepted.
pub fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, "test.toml") {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.0,
    }
}

/// 1-based (line, column) of the `nth` (0-based) occurrence of `needle` in `text`.
pub fn locate(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` #{nth} not in text"))
        .0;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, column)
}

/// Asserts `text` is refused with exactly one error, at the `nth` `needle`, whose message
/// contains `message`.
pub fn assert_one(text: &str, needle: &str, nth: usize, message: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    assert_at(&errs[0], text, needle, nth, message);
}

/// Asserts one error sits at the `nth` `needle` and mentions `message`.
pub fn assert_at(err: &ConfigError, text: &str, needle: &str, nth: usize, message: &str) {
    let (line, column) = locate(text, needle, nth);
    assert_eq!(
        (err.line, err.column),
        (line, column),
        "wrong spot for: {err}"
    );
    assert!(
        err.message.contains(message),
        "`{}` lacks `{message}`",
        err.message
    );
    assert_eq!(err.file, "test.toml");
}

/// `BASE` with `extra` appended.
pub fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}
