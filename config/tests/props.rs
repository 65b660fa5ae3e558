//! Property tests of the config loader (issue 17 item 4): whatever text it is given —
//! arbitrary, or a shipped example with one byte changed, a line dropped or the file
//! cut short — it answers with a config or with errors that each point at a line and
//! column inside the text, never a panic. `PROPTEST_CASES` sets how many cases run.

use fulcrum_config::parse;
use proptest::prelude::*;

const EXAMPLES: [&str; 2] = [
    include_str!("../examples/single-node.toml"),
    include_str!("../examples/three-node-1.toml"),
];

/// Errors, if any, must each point inside `text`.
fn check_errors(text: &str) -> Result<(), TestCaseError> {
    if let Err(errors) = parse(text, "fuzz.toml") {
        prop_assert!(!errors.0.is_empty(), "an error with no entries");
        let lines = text.lines().count().max(1) + 1;
        for e in &errors.0 {
            prop_assert_eq!(e.file.as_str(), "fuzz.toml");
            prop_assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {}: {}",
                e.line,
                lines,
                e
            );
            prop_assert!(e.column >= 1, "column {}: {}", e.column, e);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_text_is_a_config_or_located_errors(text in "\\PC{0,400}") {
        check_errors(&text)?;
    }

    #[test]
    fn an_example_with_one_byte_changed_is_a_config_or_located_errors(
        which in 0usize..2,
        at in any::<prop::sample::Index>(),
        byte in 0x20u8..0x7f,
    ) {
        let mut bytes = EXAMPLES[which].as_bytes().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            check_errors(&text)?;
        }
    }

    #[test]
    fn an_example_with_a_line_dropped_or_cut_short_is_a_config_or_located_errors(
        which in 0usize..2,
        line in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = EXAMPLES[which];
        let lines: Vec<&str> = text.lines().collect();
        let drop_at = line.index(lines.len());
        let dropped: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != drop_at)
            .map(|(_, l)| *l)
            .collect();
        check_errors(&dropped.join("\n"))?;
        let end = cut.index(text.len());
        if text.is_char_boundary(end) {
            check_errors(&text[..end])?;
        }
    }
}
