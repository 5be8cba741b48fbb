//! Format-preserving edits of stage files, and the canonical layout `ferry fmt` writes.
//!
//! Commands that change intent (`release create/activate`, `rollback`, `promote`,
//! `images sync`) never regenerate a stage file: they open it as a [`StageEdit`], change the
//! few values they mean to, and write it back, so comments and layout elsewhere stay as the
//! team wrote them and the change is a small, reviewable diff ([`unified_diff`]). TOML is
//! edited with `toml_edit`, HCL with `hcl-edit`.

mod diff;
mod hcl;
mod lock;
pub mod order;
mod restore;
mod toml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use diff::unified_diff;
pub use lock::{EditLock, EDIT_LOCK_FILE};
pub use restore::{Restore, Unrestored};

use crate::config::diagnostic::Diagnostic;
use crate::config::model::Digest;
use crate::config::source::{Format, SourceFile};

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
    /// A restore would bind a declared release id to another digest; release ids are
    /// immutable, so the file or the recorded history was changed by hand.
    #[error("{file}: release {id} of app `{app}` is {declared}, not {expected} as recorded")]
    ReleaseChanged { file: PathBuf, app: String, id: u64, declared: Digest, expected: Digest },
    /// A key holds something other than what ferry writes there (e.g. `env` is a string), so
    /// editing it would guess at the user's intent.
    #[error("{file}: `{key}` of app `{app}` is not a table; fix the file first (`ferry validate`)")]
    NotATable { file: PathBuf, app: String, key: String },
    /// An edit only made to TOML stage files (`ferry import` writes TOML).
    #[error("{file}: {what} is only written into TOML stage files")]
    TomlOnly { file: PathBuf, what: String },
}

/// The result of an edit.
pub type EditResult<T = ()> = Result<T, EditError>;

/// A value ferry writes into a stage file: the few shapes app settings take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileValue {
    Int(i64),
    /// `assign_public_ip`.
    Bool(bool),
    Str(String),
    /// A list of strings (`command`, `sensitive_env`).
    List(Vec<String>),
    /// An inline table, keys in order (`scale = { min = 2, max = 8 }`, `circuit_breaker`).
    Table(Vec<(String, FileValue)>),
    /// A list of inline tables (`hooks = [{ stages = […], pause = true }]`).
    Tables(Vec<Vec<(String, FileValue)>>),
}

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

    /// Declare app `app` with `image` when the file does not yet (`ferry import`). TOML only.
    pub fn add_app(&mut self, app: &str, image: &str) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::add_app(doc, &at, image),
            Document::Hcl(_) => Err(EditError::TomlOnly { file: self.path.clone(), what: "a new app".into() }),
        }
    }

    /// Set `key` of the stage's `[runtime]` to `value`, or remove it with `None`. TOML only.
    pub fn set_runtime_value(&mut self, key: &str, value: Option<&FileValue>) -> EditResult {
        let at = self.at("");
        match &mut self.doc {
            Document::Toml(doc) => toml::set_runtime_value(doc, &at, key, value),
            Document::Hcl(_) => Err(EditError::TomlOnly { file: self.path.clone(), what: "[runtime]".into() }),
        }
    }

    /// Set the app's own key `key` (`scale`, `cpu`, `command`, `port`…) to `value`, or remove
    /// it with `None` (the default applies again). A trailing comment on the line is kept.
    pub fn set_app_value(&mut self, app: &str, key: &str, value: Option<&FileValue>) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::set_app_value(doc, &at, key, value),
            Document::Hcl(body) => hcl::set_app_value(body, &at, key, value),
        }
    }

    /// Set `key` of the app's `section` (`health`, `deploy`, `env`, `secrets`) to `value`, or
    /// remove it with `None`. A missing section is created where `fmt` would put it; a section
    /// left empty is removed.
    pub fn set_section_value(&mut self, app: &str, section: &str, key: &str, value: Option<&FileValue>) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::set_section_value(doc, &at, section, key, value),
            Document::Hcl(body) => hcl::set_section_value(body, &at, section, key, value),
        }
    }

    /// Make `app` declare exactly `tasks` as its release tasks, in order (none: remove them):
    /// `[[apps.NAME.release_tasks]]` sections or `release_task "NAME"` blocks, written where
    /// `fmt` puts them. Rollback restores a deployment's release tasks this way.
    pub fn set_release_tasks(&mut self, app: &str, tasks: &[crate::config::ReleaseTask]) -> EditResult {
        let at = self.at(app);
        match &mut self.doc {
            Document::Toml(doc) => toml::set_release_tasks(doc, &at, tasks),
            Document::Hcl(body) => hcl::set_release_tasks(body, &at, tasks),
        }
    }

    /// Whether the text differs from what was opened.
    pub fn is_changed(&self) -> bool {
        self.to_string() != self.original
    }

    /// A unified diff of the opened text and the edited one, with the values of sensitive
    /// env vars masked as plans mask them (a key marked sensitive before or after the edit).
    pub fn diff(&self, color: bool) -> String {
        let edited = self.to_string();
        let diff = unified_diff(&self.path.to_string_lossy(), &self.original, &edited, color);
        diff::mask_sensitive_lines(&diff, &self.sensitive_values(&edited))
    }

    /// `(key, value)` of every env var of an app that marks it sensitive, in the opened text
    /// or in `edited`; read from the parsed tree, so it needs no valid stage.
    fn sensitive_values(&self, edited: &str) -> Vec<(String, String)> {
        let trees: Vec<serde_json::Value> = [self.original.as_str(), edited]
            .into_iter()
            .filter_map(|text| SourceFile::parse(&self.path, text.to_string(), self.format()).ok())
            .map(|source| source.root().to_json())
            .collect();
        let apps = |tree: &serde_json::Value| tree.get("apps").and_then(|a| a.as_object()).cloned().unwrap_or_default();
        let mut sensitive = std::collections::BTreeSet::new();
        for tree in &trees {
            for (app, config) in apps(tree) {
                for key in config.get("sensitive_env").and_then(|k| k.as_array()).into_iter().flatten() {
                    sensitive.extend(key.as_str().map(|k| (app.clone(), k.to_string())));
                }
            }
        }
        let mut out = Vec::new();
        for tree in &trees {
            for (app, config) in apps(tree) {
                for (key, value) in config.get("env").and_then(|e| e.as_object()).into_iter().flatten() {
                    if let (true, Some(value)) = (sensitive.contains(&(app.clone(), key.clone())), value.as_str()) {
                        out.push((key.clone(), value.to_string()));
                    }
                }
            }
        }
        out
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
    // The parse below reads `rest` only: the header must still be a comment block the format
    // accepts (no control characters; no lone CR, which ends an HCL comment), or the file
    // would be formatted once and refused on the next read.
    if !header.is_empty() {
        match Format::of_path(path) {
            Format::Toml => toml::format(path, header, header, kind)?,
            Format::Hcl => hcl::format(path, header, header)?,
        };
    }
    // Header lines are laid out as every other comment is (trimmed), so that a header which
    // ends up alone in the file formats the same on the next pass, where it is a trailing
    // comment.
    let header: String = order::comment_lines(header).iter().map(|line| format!("{line}\n")).collect();
    let body = match Format::of_path(path) {
        Format::Toml => toml::format(path, text, rest, kind)?,
        Format::Hcl => hcl::format(path, text, rest)?,
    };
    Ok(match (header.is_empty(), body.is_empty()) {
        (true, _) => body,
        (false, true) => header,
        (false, false) => format!("{header}\n{body}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:2b51cdaabcdc9c35b36e998ec81d2ed8507def0e4709a4d5003414e727e67fa9";

    const TOML: &str = r#"# Production.

[apps.web]
image = "web"   # the repository
active = 2      # reviewed in PR 41

[apps.web.releases]
# the first one
2 = "sha256:b652b6fe388c8320d02dfcdcace99b59fcda6773a11f89d444174c9d70e3ab79"

[apps.web.env]
RAILS_ENV = "production" # keep
OLD = "x"

[apps.web.health]
command = ["CMD", "true"]

[apps.api]
image = "api"

[apps.api.deploy]
timeout = "5m"
"#;

    const HCL: &str = r#"# Production.

app "web" {
  image  = "web"   # the repository
  active = 2       # reviewed in PR 41

  releases = {
    # the first one
    2 = "sha256:b652b6fe388c8320d02dfcdcace99b59fcda6773a11f89d444174c9d70e3ab79"
  }

  env = {
    RAILS_ENV = "production" # keep
    OLD       = "x"
  }

  health {
    command = ["CMD", "true"]
  }
}

app "api" {
  image = "api"

  deploy {
    timeout = "5m"
  }
}
"#;

    fn digest() -> Digest {
        DIGEST.parse().unwrap()
    }

    /// The same edits on a file: a new release and activation, env changed, added, removed.
    fn edit(path: &str, text: &str) -> StageEdit {
        let mut e = StageEdit::parse(Path::new(path), text).unwrap();
        e.add_release("web", 3, &digest()).unwrap();
        e.set_active("web", 3).unwrap();
        e.set_env("web", "RAILS_ENV", Some("staging")).unwrap();
        e.set_env("web", "NEW", Some("1")).unwrap();
        e.set_env("web", "OLD", None).unwrap();
        // An app without releases, active or env gets them where `fmt` would put them.
        e.add_release("api", 1, &digest()).unwrap();
        e.set_active("api", 1).unwrap();
        e.set_env("api", "LOG", Some("debug")).unwrap();
        e
    }

    fn loads(path: &str, text: &str) -> crate::config::Stage {
        let src = crate::config::source::SourceFile::parse(
            Path::new(path),
            text.to_string(),
            Format::of_path(Path::new(path)),
        )
        .unwrap();
        crate::config::validate::check_stage(&src, "p").unwrap()
    }

    fn check_edited_model(path: &str, text: &str) {
        let stage = loads(path, text);
        let web = &stage.apps["web"];
        assert_eq!(web.active, Some(3));
        assert_eq!(web.releases[&3], digest());
        assert_eq!(web.config.env.get("RAILS_ENV").map(String::as_str), Some("staging"));
        assert_eq!(web.config.env.get("NEW").map(String::as_str), Some("1"));
        assert!(!web.config.env.contains_key("OLD"));
        let api = &stage.apps["api"];
        assert_eq!((api.active, api.releases.len()), (Some(1), 1));
        assert_eq!(api.config.env["LOG"], "debug");
    }

    #[test]
    fn toml_edits_keep_comments_and_layout() {
        let e = edit("stages/p.toml", TOML);
        let text = e.to_string();
        check_edited_model("stages/p.toml", &text);
        insta::assert_snapshot!("toml_edited", text);
        insta::assert_snapshot!("toml_edit_diff", e.diff(false));
    }

    #[test]
    fn hcl_edits_keep_comments_and_layout() {
        let e = edit("stages/p.hcl", HCL);
        let text = e.to_string();
        check_edited_model("stages/p.hcl", &text);
        insta::assert_snapshot!("hcl_edited", text);
        insta::assert_snapshot!("hcl_edit_diff", e.diff(false));
    }

    #[test]
    fn removing_a_release_leaves_the_rest() {
        for (path, text) in [("stages/p.toml", TOML), ("stages/p.hcl", HCL)] {
            let mut e = StageEdit::parse(Path::new(path), text).unwrap();
            e.add_release("web", 3, &digest()).unwrap();
            e.remove_release("web", 2).unwrap();
            e.set_active("web", 3).unwrap();
            let stage = loads(path, &e.to_string());
            assert_eq!(stage.apps["web"].releases.keys().collect::<Vec<_>>(), [&3], "{path}");
            // The comment above release 2 goes with it; the others stay.
            assert!(!e.to_string().contains("# the first one"), "{path}");
            assert!(e.to_string().contains("# reviewed in PR 41"), "{path}");
        }
    }

    #[test]
    fn edits_refuse_what_does_not_fit() {
        for (path, text) in [("stages/p.toml", TOML), ("stages/p.hcl", HCL)] {
            let mut e = StageEdit::parse(Path::new(path), text).unwrap();
            assert!(matches!(e.add_release("nope", 1, &digest()), Err(EditError::UnknownApp { .. })), "{path}");
            assert!(
                matches!(e.add_release("web", 2, &digest()), Err(EditError::ReleaseExists { id: 2, .. })),
                "{path}"
            );
            assert!(matches!(e.remove_release("web", 9), Err(EditError::UnknownRelease { id: 9, .. })), "{path}");
            assert!(!e.is_changed(), "{path}: failed edits change nothing\n{}", e.diff(false));
            assert_eq!(e.to_string(), text, "{path}: an untouched file prints as read");
        }
    }

    #[test]
    fn format_is_idempotent_and_keeps_the_model() {
        for (path, text) in [("stages/p.toml", TOML), ("stages/p.hcl", HCL)] {
            let once = format_file(Path::new(path), text, FileKind::Stage).unwrap();
            let twice = format_file(Path::new(path), &once, FileKind::Stage).unwrap();
            assert_eq!(once, twice, "{path}");
            let (mut a, mut b) = (loads(path, text), loads(path, &once));
            a.file = PathBuf::new();
            b.file = PathBuf::new();
            assert_eq!(a, b, "{path}");
            // Apps are sorted by name: `api` now comes before `web`.
            assert!(once.find("api").unwrap() < once.find("web").unwrap(), "{path}:\n{once}");
            assert!(once.starts_with("# Production.\n\n"), "{path}: the header stays on top");
        }
    }

    /// Inputs the `fmt_toml` and `fmt_hcl` fuzz targets found that settled only on a second
    /// pass: a header comment with trailing blanks, an empty object spread over lines.
    #[test]
    fn format_settles_in_one_pass_on_what_fuzzing_found() {
        let cases = [
            ("stages/p.toml", "# x      \n\n"),
            ("stages/p.toml", "  # x \n\n[apps.a]\nimage = \"a\"\n"),
            ("stages/p.toml", "# x      \n"),
            ("stages/p.hcl", "app \"zeb\" {\n  releases = {\n  }\n}\n"),
            ("stages/p.hcl", "app \"zeb\" {\n  releases = {\n  }\n}"),
            ("stages/p.hcl", "// x   \n\n"),
            ("stages/p.toml", "# a\0b\n\n"),
            ("stages/p.hcl", "# a,\r\0b\n\n"),
            ("stages/p.hcl", "\n#L.\n\n\n#\n#L\n\n"),
            ("stages/p.hcl", "app \"a\" {\n  image = \"a\"\n}\n\n\n# after\n\n# all\n"),
            ("stages/p.hcl", "# top\n\n\n# next\n\napp \"a\" {\n  image = \"a\"\n}\n"),
            ("stages/p.hcl", "app \"a\" {\n  releases = {\n    1 = \"x\"\n    # later\n  }\n}\n"),
            ("stages/p.hcl", "app \"a\" {\n  releases = {\n  # none yet\n  }\n}\n"),
        ];
        for (path, text) in cases {
            let Ok(once) = format_file(Path::new(path), text, FileKind::Stage) else {
                // Refused (a header the format does not accept): then it stays refused.
                assert!(text.contains('\0'), "{path}: {text:?} refused");
                continue;
            };
            let twice = format_file(Path::new(path), &once, FileKind::Stage).unwrap();
            assert_eq!(once, twice, "{path}: {text:?}");
            for comment in ["# later", "# none yet"] {
                assert_eq!(text.contains(comment), once.contains(comment), "{comment} kept in {once:?}");
            }
        }
    }
}
