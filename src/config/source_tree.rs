//! The tree a parsed file becomes: values that remember the byte span they came from.
//! `toml_source` and `hcl_source` build it; `source` holds it with the file's text and maps
//! key paths back to spans for located errors. Kept apart from `source` so the two parsers
//! depend on the tree only, not on the file that calls them.

use std::ops::Range;

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl From<&str> for PathSeg {
    fn from(s: &str) -> Self {
        PathSeg::Key(s.to_string())
    }
}
impl From<String> for PathSeg {
    fn from(s: String) -> Self {
        PathSeg::Key(s)
    }
}
impl From<&String> for PathSeg {
    fn from(s: &String) -> Self {
        PathSeg::Key(s.clone())
    }
}
impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        PathSeg::Index(i)
    }
}

/// Build a path: `path!["apps", name, "releases", id]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {
        vec![$($crate::config::source_tree::PathSeg::from($seg)),*]
    };
}

/// A value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceNode {
    /// Span of the key that names this value in its parent table, if any.
    pub key_span: Option<Range<usize>>,
    /// Span of the value itself.
    pub span: Range<usize>,
    pub value: SourceValue,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceValue {
    /// Entries in file order.
    Table(Vec<(String, SourceNode)>),
    Array(Vec<SourceNode>),
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// TOML date-times, kept as written.
    Datetime(String),
}

impl SourceNode {
    /// The entry `key` of a table node.
    pub fn get(&self, key: &str) -> Option<&SourceNode> {
        match &self.value {
            SourceValue::Table(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    /// Follow `path` as far as it goes; returns the deepest node reached and whether the
    /// whole path was found.
    pub fn walk(&self, path: &[PathSeg]) -> (&SourceNode, bool) {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Key(k), SourceValue::Table(_)) => node.get(k),
                (PathSeg::Index(i), SourceValue::Array(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// The node as JSON, for serde.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            SourceValue::Table(entries) => {
                Value::Object(entries.iter().map(|(k, n)| (k.clone(), n.to_json())).collect())
            }
            SourceValue::Array(items) => Value::Array(items.iter().map(SourceNode::to_json).collect()),
            SourceValue::String(s) | SourceValue::Datetime(s) => Value::String(s.clone()),
            SourceValue::Integer(i) => Value::from(*i),
            SourceValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            SourceValue::Bool(b) => Value::Bool(*b),
        }
    }
}
