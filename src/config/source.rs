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
pub use crate::config::source_tree::{PathSeg, SourceNode, SourceValue};

/// What a diagnostic should point at: the key (`port` in `port = 1`) or its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Key,
    Value,
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
