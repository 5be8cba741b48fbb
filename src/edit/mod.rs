//! Format-preserving edits of stage files, and the canonical layout `ferry fmt` writes.
//!
//! Commands that change intent (`release create/activate`, `rollback`, `promote`,
//! `images sync`) never regenerate a stage file: they open it as a [`StageEdit`], change the
//! few values they mean to, and write it back, so comments and layout elsewhere stay as the
//! team wrote them and the change is a small, reviewable diff ([`unified_diff`]). TOML is
//! edited with `toml_edit`, HCL with `hcl-edit`.

mod diff;
mod hcl;
pub mod order;
mod toml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use diff::unified_diff;

use crate::config::diagnostic::Diagnostic;
use crate::config::model::Digest;
use crate::config::source::Format;

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The stage file declares no such app.
    #[error("{file}: no app `{app}`")]
    UnknownApp { file: PathBuf, app: String },
    /// `add_release` with an id the app already declares.
    #[error("{file}: app `{app}` already declares release {id}")]
    ReleaseExists { file: PathBuf, app: String, id: u64 },
    /// `remove_release` with an id the app does not declare.
    #[error("{file}: app `{app}` declares no release {id}")]
    UnknownRelease { file: PathBuf, app: String, id: u64 },
    /// A key holds something other than what ferry writes there (e.g. `env` is a string), so
    /// editing it would guess at the user's intent.
    #[error("{file}: `{key}` of app `{app}` is not a table; fix the file first (`ferry validate`)")]
    NotATable { file: PathBuf, app: String, key: String },
}

/// The result of an edit.
pub type EditResult<T = ()> = Result<T, EditError>;

/// A stage file open for editing.
#[derive(Debug, Clone)]
pub struct StageEdit {
    path: PathBuf,
    original: String,
    doc: Document,
}

#[derive(Debug, Clone)]
enum Document {
    Toml(toml_edit::DocumentMut),
    Hcl(hcl_edit::structure::Body),
}

impl StageEdit {
    /// Open `text`, the contents of `path`, in the format its extension names. A syntax error
    /// is a located diagnostic.
    pub fn parse(path: &Path, text: &str) -> Result<StageEdit, Diagnostic> {
        let doc = match Format::of_path(path) {
            Format::Toml => Document::Toml(toml::parse(path, text)?),
            Format::Hcl => Document::Hcl(crate::config::hcl_source::parse_body(path, text)?),
        };
        Ok(StageEdit { path: path.to_path_buf(), original: text.to_string(), doc })
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        match self.doc {
            Document::Toml(_) => Format::Toml,
            Document::Hcl(_) => Format::Hcl,
        }
    }

    /// The text the file was opened with.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// Declare release `id` of `app` bound to `digest`, after the app's other releases.
    pub fn add_release(&mut self, app: &str, id: u64, digest: &Digest) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::add_release(doc, &at, id, digest),
            Document::Hcl(body) => hcl::add_release(body, &at, id, digest),
        }
    }

    /// Remove release `id` of `app`.
    pub fn remove_release(&mut self, app: &str, id: u64) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::remove_release(doc, &at, id),
            Document::Hcl(body) => hcl::remove_release(body, &at, id),
        }
    }

    /// Make release `id` the active one of `app` (a trailing comment on the line is kept).
    pub fn set_active(&mut self, app: &str, id: u64) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::set_active(doc, &at, id),
            Document::Hcl(body) => hcl::set_active(body, &at, id),
        }
    }

    /// Set the environment variable `key` of `app` to `value`, or remove it with `None`
    /// (rollback restores a deployment's config this way).
    pub fn set_env(&mut self, app: &str, key: &str, value: Option<&str>) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::set_env(doc, &at, key, value),
            Document::Hcl(body) => hcl::set_env(body, &at, key, value),
        }
    }

    /// Whether the text differs from what was opened.
    pub fn is_changed(&self) -> bool {
        self.to_string() != self.original
    }

    /// A unified diff of the opened text and the edited one.
    pub fn diff(&self, color: bool) -> String {
        unified_diff(&self.path.to_string_lossy(), &self.original, &self.to_string(), color)
    }

    fn at(&self, app: &str) -> AppAt {
        AppAt { file: self.path.clone(), app: app.to_string() }
    }
}

impl fmt::Display for StageEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.doc {
            Document::Toml(doc) => write!(f, "{doc}"),
            Document::Hcl(body) => write!(f, "{body}"),
        }
    }
}

/// Which app of which file an edit is about, for its errors.
pub(crate) struct AppAt {
    file: PathBuf,
    app: String,
}

impl AppAt {
    fn unknown(&self) -> EditError {
        EditError::UnknownApp { file: self.file.clone(), app: self.app.clone() }
    }
    fn not_a_table(&self, key: &str) -> EditError {
        EditError::NotATable { file: self.file.clone(), app: self.app.clone(), key: key.to_string() }
    }
    fn release_exists(&self, id: u64) -> EditError {
        EditError::ReleaseExists { file: self.file.clone(), app: self.app.clone(), id }
    }
    fn unknown_release(&self, id: u64) -> EditError {
        EditError::UnknownRelease { file: self.file.clone(), app: self.app.clone(), id }
    }
}

/// Which file `ferry fmt` is formatting: the key orders differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `ferry.toml`.
    Project,
    /// `stages/NAME.toml` or `stages/NAME.hcl`.
    Stage,
}

/// `text` (the contents of `path`) in canonical order and layout, comments kept. A file that
/// does not parse is a located diagnostic. Formatting never changes what the file means, and
/// formatting a formatted file changes nothing.
pub fn format_file(path: &Path, text: &str, kind: FileKind) -> Result<String, Diagnostic> {
    // A leading comment block followed by a blank line describes the file; keep it on top
    // instead of letting it travel with whatever key happens to come first.
    let (header, rest) = order::split_header(text);
    let body = match Format::of_path(path) {
        Format::Toml => toml::format(path, text, rest, kind)?,
        Format::Hcl => hcl::format(path, text, rest)?,
    };
    Ok(match (header.is_empty(), body.is_empty()) {
        (true, _) => body,
        (false, true) => header.to_string(),
        (false, false) => format!("{header}\n{body}"),
    })
}
