//! A parsed file as a tree of values that remember where they came from.
//!
//! TOML and HCL both load into a [`SourceNode`] tree. The tree converts to JSON for serde
//! (so both formats deserialize into the same `config::file` types), and maps a key path
//! such as `apps.web.releases.2` back to the byte span of that key or value, so any check
//! anywhere can report `file:line:col` without the model carrying spans around.
//!
//! Building the tree costs more than reading a valid file needs, so a [`SourceFile`] may
//! be made without it ([`SourceFile::unparsed`]): the tree is then built the first time a
//! check asks where something is, which only happens when there is a problem to report.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::diagnostic::Diagnostic;

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
        vec![$($crate::config::source::PathSeg::from($seg)),*]
    };
}

/// What a diagnostic should point at: the key (`port` in `port = 1`) or its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Key,
    Value,
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

/// A loaded file: its path, text and (built on demand) tree.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path shown in diagnostics.
    pub path: PathBuf,
    pub text: String,
    format: Format,
    // A lock, not a cell: large stage files are checked app by app on several threads.
    root: OnceLock<SourceNode>,
}

/// The file formats a stage may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Hcl,
}

impl Format {
    /// By file extension: `.hcl` is HCL, anything else TOML.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("hcl") => Format::Hcl,
            _ => Format::Toml,
        }
    }
}

impl SourceFile {
    /// Parse `text` (the contents of `path`) in `format`. A syntax error is a located
    /// diagnostic.
    pub fn parse(path: &Path, text: String, format: Format) -> Result<SourceFile, Diagnostic> {
        let root = match format {
            Format::Toml => crate::config::toml_source::parse(path, &text)?,
            Format::Hcl => crate::config::hcl_source::parse(path, &text)?,
        };
        Ok(SourceFile { path: path.to_path_buf(), text, format, root: OnceLock::from(root) })
    }

    /// A file whose text is already known to parse (a serde deserializer read it), with its
    /// tree left to be built on first use: a valid file never needs it.
    pub fn unparsed(path: &Path, text: String, format: Format) -> SourceFile {
        SourceFile { path: path.to_path_buf(), text, format, root: OnceLock::new() }
    }

    /// The file's tree.
    pub fn root(&self) -> &SourceNode {
        self.root.get_or_init(|| {
            let parsed = match self.format {
                Format::Toml => crate::config::toml_source::parse(&self.path, &self.text),
                Format::Hcl => crate::config::hcl_source::parse(&self.path, &self.text),
            };
            // `unparsed` is only given text that parsed already (with the same toml_edit);
            // were it not so, diagnostics would point at the file's start rather than panic.
            parsed.unwrap_or(SourceNode { key_span: None, span: 0..0, value: SourceValue::Table(Vec::new()) })
        })
    }

    /// The span of `path` in the file: of the key or of the value. Where the path does not
    /// exist (a missing field), the span of the deepest table it reaches, pointing at its
    /// key (e.g. the `[apps.web]` header) so the user sees where to add it.
    pub fn span_of(&self, path: &[PathSeg], target: Target) -> Range<usize> {
        let (node, found) = self.root().walk(path);
        match (found, target) {
            (true, Target::Value) => node.span.clone(),
            _ => node.key_span.clone().unwrap_or_else(|| node.span.clone()),
        }
    }

    /// A diagnostic at `path`.
    pub fn diagnostic(&self, path: &[PathSeg], target: Target, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.path, &self.text, self.span_of(path, target), message)
    }
}
