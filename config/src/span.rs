//! Locating a TOML path (`pool[2].backends[1].weight`) in the source text.
//!
//! Serde forgets where a value came from, so semantic errors found after parsing re-parse
//! the text with `toml_edit::ImDocument`, which keeps byte spans, and walk it along the
//! same path the typed model used. When the path ends early (a key that was left out and
//! took its default), the deepest part that does exist is returned: a missing `hash_key`
//! therefore points at its `[[pool]]` header.

use std::ops::Range;
use toml_edit::{ArrayOfTables, ImDocument, Item, Table, Value};

/// One step of a path: a table key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    K(&'a str),
    I(usize),
}

/// Span lookups over one parsed source text.
pub(crate) struct Locator<'t> {
    doc: Option<ImDocument<&'t str>>,
}

/// A position while walking the document.
#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d Item),
    Value(&'d Value),
    Table(&'d Table),
    Tables(&'d ArrayOfTables),
}

impl<'t> Locator<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Locator {
            doc: ImDocument::parse(text).ok(),
        }
    }

    /// Byte offset of the value at `path`, or of its deepest existing ancestor; 0 if none.
    pub(crate) fn offset(&self, path: &[Seg<'_>]) -> usize {
        let Some(doc) = &self.doc else { return 0 };
        let mut node = Node::Item(doc.as_item());
        let mut best: Option<Range<usize>> = None;
        for seg in path {
            let Some((next, key_span)) = node.child(*seg) else {
                break;
            };
            // A table made implicitly by a dotted key has no span of its own: its key does.
            if let Some(span) = next.span().or(key_span) {
                best = Some(span);
            }
            node = next;
        }
        best.map(|r| r.start).unwrap_or(0)
    }
}

impl<'d> Node<'d> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
            Node::Tables(a) => a.span(),
        }
    }

    /// Normalises an item into the most specific node kind.
    fn from_item(item: &'d Item) -> Node<'d> {
        match item {
            Item::Value(v) => Node::Value(v),
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
            Item::None => Node::Item(item),
        }
    }

    fn child(self, seg: Seg<'_>) -> Option<(Node<'d>, Option<Range<usize>>)> {
        let node = match self {
            Node::Item(i) => Node::from_item(i),
            other => other,
        };
        match (node, seg) {
            (Node::Table(t), Seg::K(k)) => t
                .get_key_value(k)
                .map(|(key, item)| (Node::from_item(item), key.span())),
            (Node::Value(Value::InlineTable(t)), Seg::K(k)) => t
                .get_key_value(k)
                .map(|(key, item)| (Node::from_item(item), key.span())),
            (Node::Value(Value::Array(a)), Seg::I(i)) => a.get(i).map(|v| (Node::Value(v), None)),
            (Node::Tables(a), Seg::I(i)) => a.get(i).map(|t| (Node::Table(t), None)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Seg::{I, K};
    use super::*;
    use crate::error::line_column;

    fn at(text: &str, path: &[Seg<'_>]) -> (usize, usize) {
        line_column(text, Locator::new(text).offset(path))
    }

    #[test]
    fn finds_value_in_inline_table_inside_array_of_tables() {
        let text = "[[pool]]\nname = \"a\"\n[[pool]]\nname = \"b\"\nbackends = [{ addr = \"x\" }, { addr = \"y\", weight = 0 }]\n";
        assert_eq!(
            at(text, &[K("pool"), I(1), K("backends"), I(1), K("weight")]),
            (5, 52)
        );
    }

    #[test]
    fn missing_key_points_at_deepest_existing_table() {
        let text = "[[pool]]\nname = \"a\"\n\n[[pool]]\nname = \"b\"\n";
        assert_eq!(at(text, &[K("pool"), I(1), K("hash_key")]), (4, 1));
    }

    #[test]
    fn dotted_and_sub_tables_are_found() {
        let text = "[[pool]]\nname = \"a\"\nhealth.rise = 0\n[[pool]]\nname = \"b\"\n[pool.health]\nfall = 0\n";
        assert_eq!(
            at(text, &[K("pool"), I(0), K("health"), K("rise")]),
            (3, 15)
        );
        assert_eq!(at(text, &[K("pool"), I(1), K("health"), K("fall")]), (7, 8));
        assert_eq!(at(text, &[K("pool"), I(1), K("health"), K("rise")]), (6, 1));
    }
}
