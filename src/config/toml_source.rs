//! TOML to [`SourceNode`], with spans, via `toml_edit`.

use std::ops::Range;
use std::path::Path;

use toml_edit::{ImDocument, Item, Table, Value};

use crate::config::diagnostic::Diagnostic;
use crate::config::source_tree::{SourceNode, SourceValue};

/// Parse a TOML document.
pub fn parse(path: &Path, text: &str) -> Result<SourceNode, Diagnostic> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml_edit's message is "what\nexpected …"; our renderer draws the location.
        let msg = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ");
        let msg = if msg.is_empty() { "invalid TOML".to_string() } else { msg };
        let hint = syntax_hint(&msg);
        Diagnostic::at(path, text, span, format!("TOML syntax: {msg}")).with_hint(hint)
    })?;
    Ok(table_node(doc.as_table(), None, text.len()))
}

/// What usually fixes each kind of syntax error; toml_edit's "expected" list alone can
/// mislead (a missing `,` in an array is reported as "expected `]`").
fn syntax_hint(msg: &str) -> &'static str {
    if msg.starts_with("invalid array") {
        "separate array items with `,` and close the array with `]`"
    } else if msg.starts_with("invalid table header") {
        "a table header is `[name]` or `[a.b]`, closed on the same line"
    } else if msg.starts_with("invalid string") || msg.starts_with("invalid basic string") {
        "quote text with \"…\" (or '…'), opened and closed on the same line"
    } else if msg.starts_with("duplicate key") {
        "each key may appear once per table; remove or rename one"
    } else {
        "fix the syntax at the caret; see https://toml.io for the format"
    }
}

fn table_node(table: &Table, key_span: Option<Range<usize>>, len: usize) -> SourceNode {
    let mut entries = Vec::new();
    for (key, item) in table.iter() {
        let key_span = table.key(key).and_then(|k| k.span());
        if let Some(node) = item_node(item, key_span, len) {
            entries.push((key.to_string(), node));
        }
    }
    SourceNode {
        span: table.span().or_else(|| key_span.clone()).unwrap_or(0..0),
        key_span,
        value: SourceValue::Table(entries),
    }
}

fn item_node(item: &Item, key_span: Option<Range<usize>>, len: usize) -> Option<SourceNode> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_node(v, key_span)),
        Item::Table(t) => Some(table_node(t, key_span, len)),
        Item::ArrayOfTables(arr) => {
            let items: Vec<SourceNode> =
                arr.iter().map(|t| table_node(t, t.span().map(|s| s.start..s.start + 2), len)).collect();
            Some(SourceNode {
                span: arr.span().or_else(|| key_span.clone()).unwrap_or(0..0),
                key_span,
                value: SourceValue::Array(items),
            })
        }
    }
}

fn value_node(v: &Value, key_span: Option<Range<usize>>) -> SourceNode {
    let span = v.span().unwrap_or(0..0);
    let value = match v {
        Value::String(s) => SourceValue::String(s.value().clone()),
        Value::Integer(i) => SourceValue::Integer(*i.value()),
        Value::Float(f) => SourceValue::Float(*f.value()),
        Value::Boolean(b) => SourceValue::Bool(*b.value()),
        Value::Datetime(d) => SourceValue::Datetime(d.value().to_string()),
        Value::Array(a) => SourceValue::Array(a.iter().map(|v| value_node(v, None)).collect()),
        Value::InlineTable(t) => SourceValue::Table(
            t.iter()
                .map(|(k, v)| {
                    let ks = t.key(k).and_then(|key| key.span());
                    (k.to_string(), value_node(v, ks))
                })
                .collect(),
        ),
    };
    SourceNode { key_span, span, value }
}
