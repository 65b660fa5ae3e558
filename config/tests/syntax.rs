//! Errors found before validation (TOML syntax, unknown keys, wrong types), and a file with
//! many problems reported all at once.

mod common;
use common::{assert_at, errors, BASE};

#[test]
fn unknown_key_in_pool() {
    let text = BASE.replace("name = \"app\"", "name = \"app\"\nalgoritm = \"x\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (12, 1));
    assert!(
        errs[0].message.contains("unknown field `algoritm`"),
        "{}",
        errs[0].message
    );
}

#[test]
fn toml_syntax_error() {
    let text = "[[listener]]\nname = \"web\nbind = \"127.0.0.1:80\"\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2, "{}", errs[0]);
    assert_eq!(errs[0].column, 12, "{}", errs[0]);
    assert!(
        errs[0].to_string().starts_with("test.toml:2:12: "),
        "{}",
        errs[0]
    );
}

#[test]
fn wrong_type_is_located() {
    let text = BASE.replace(
        "backends = [{ addr = \"127.0.0.1:9001\" }]",
        "backends = [{ addr = \"127.0.0.1:9001\", weight = \"2\" }]",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_at(&errs[0], &text, "\"2\"", 0, "invalid type");
}

#[test]
fn bad_enum_value_is_located() {
    let text = BASE.replace("name = \"app\"", "name = \"app\"\nalgorithm = \"fastest\"");
    let errs = errors(&text);
    assert_at(&errs[0], &text, "\"fastest\"", 0, "unknown variant");
}

#[test]
fn many_errors_in_one_file_are_all_reported_in_order() {
    let text = r#"
[[listener]]
name = "web"
bind = "nowhere"

[[listener]]
name = "web"
bind = "127.0.0.1:8081"
protocol = "https"

[[route]]
listener = "web"
pool = "missing"
path_prefix = "api"

[[pool]]
name = "app"
backends = [{ addr = "127.0.0.1:9001", weight = 5000 }]
"#;
    let errs = errors(text);
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 6, "{lines:#?}");
    assert_at(&errs[0], text, "\"nowhere\"", 0, "bind");
    assert_at(&errs[1], text, "\"web\"", 1, "duplicate listener name");
    assert_at(&errs[2], text, "\"https\"", 0, "tls");
    assert_at(&errs[3], text, "\"missing\"", 0, "does not exist");
    assert_at(&errs[4], text, "\"api\"", 0, "must start with '/'");
    assert_at(&errs[5], text, "5000", 0, "out of range");
    // Display of the whole set: one `file:line:column: message` line per error.
    let shown = fulcrum_config::parse(text, "test.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(shown.lines().count(), 6);
    assert!(
        shown.lines().next().unwrap().starts_with("test.toml:4:8: "),
        "{shown}"
    );
}
