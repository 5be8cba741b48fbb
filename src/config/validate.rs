//! Checks of project and stage files, reporting every problem at once with its location,
//! and the conversion from the file types to the typed model with defaults applied.

// `path![…]` builds a `Vec` because paths get extended (`at(&path![…])`); borrowing a literal
// one as a slice is the common case and costs nothing that matters here.
#![allow(clippy::useless_vec)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::config::diagnostic::{Diagnostic, Diagnostics};
use crate::config::file::{self, AppSection, ProjectFile, StageFile};
use crate::config::model::*;
use crate::config::source::{Format, PathSeg, SourceFile, Target};
use crate::config::toml_plain;
use crate::config::{stage_refs, PROJECT_FILE, STAGES_DIR};
use crate::path;

/// Read and parse a file; a missing or unreadable file is a diagnostic.
pub fn read_source(root: &Path, rel: &Path) -> Result<SourceFile, Diagnostic> {
    SourceFile::parse(rel, read_text(root, rel)?, Format::of_path(rel))
}

/// Read a file's text; a missing or unreadable file is a diagnostic, and so is one that is
/// not UTF-8, located at its first byte that is not.
pub fn read_text(root: &Path, rel: &Path) -> Result<String, Diagnostic> {
    let bytes = std::fs::read(root.join(rel)).map_err(|e| {
        Diagnostic::whole_file(rel, format!("cannot read {}: {e}", rel.display()))
            .with_hint("run `ferry init` to create a project, or `-C DIR` to point at one")
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let shown = String::from_utf8_lossy(e.as_bytes());
        Diagnostic::at(rel, &shown, at..at + 1, format!("{} is not UTF-8 text", rel.display())).with_hint(format!(
            "byte 0x{:02x} starts no UTF-8 character; save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
            e.as_bytes()[at]
        ))
    })
}

/// Deserialize `value` (found at `at` in `src`) into `T`, turning a serde error into a
/// diagnostic at the offending key.
fn deserialize<T: DeserializeOwned>(
    src: &SourceFile,
    at: &[PathSeg],
    value: serde_json::Value,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path = at.to_vec();
        for seg in err.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => path.push(PathSeg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => path.push(PathSeg::Index(*index)),
                _ => {}
            }
        }
        let inner = err.into_inner().to_string();
        let (message, hint) = explain_serde_error(&inner);
        let target = if message.starts_with("unknown key") { Target::Key } else { Target::Value };
        let mut d = src.diagnostic(&path, target, message);
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        d
    })
}

/// serde says "unknown field `heath`, expected one of `a`, `b`"; we say "unknown key".
fn explain_serde_error(msg: &str) -> (String, Option<String>) {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (name, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let name = name.trim_matches('`');
        let expected_names: Vec<&str> = expected
            .trim_start_matches("one of ")
            .split(", ")
            .map(|s| s.trim_matches('`'))
            .filter(|s| !s.is_empty())
            .collect();
        let hint = match closest(name, &expected_names) {
            Some(best) => format!("did you mean `{best}`? Known keys here: {}", expected_names.join(", ")),
            None if expected_names.is_empty() => "remove it".to_string(),
            None => format!("known keys here: {}", expected_names.join(", ")),
        };
        return (format!("unknown key `{name}`"), Some(hint));
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return (format!("missing key {rest}"), Some("add it: see `ferry schema stage` for every key".to_string()));
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        return (format!("wrong type: {rest}"), None);
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return (format!("unknown value {rest}"), None);
    }
    (msg.to_string(), None)
}

/// The candidate closest to `name` by edit distance, if close enough to be a typo.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether `name` is a DNS label: lowercase letters, digits and `-`, not starting or ending
/// with `-`, at most `max` characters.
pub fn is_dns_label(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` can name a stage: stage names become file names (`.ferry/state/NAME.json`,
/// `.ferry/logs/NAME/`), so letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn is_stage_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether the path of a `file:` secret stays inside the project: relative, without `..`.
/// (The local runtime also refuses a path that leaves the project through a symlink.)
pub fn is_inside_project(path: &str) -> bool {
    let path = Path::new(path);
    !path.is_absolute() && !path.components().any(|c| matches!(c, std::path::Component::ParentDir))
}

/// Load and check `ferry.toml`.
pub fn load_project(root: &Path) -> Result<Project, Diagnostics> {
    let src = read_source(root, Path::new(PROJECT_FILE)).map_err(|d| Diagnostics(vec![d]))?;
    let stages: Vec<String> = stage_refs(root).into_iter().map(|r| r.name).collect();
    check_project(root, &src, &stages)
}

/// `[registry]`: a usable url, or the port and storage of the registry ferry starts.
fn check_registry(src: &SourceFile, section: file::RegistrySection, diags: &mut Diagnostics) -> RegistrySettings {
    let mut settings = RegistrySettings::default();
    if let Some(url) = section.url {
        match crate::registry::RegistryUrl::parse(&url) {
            Ok(_) => settings.url = Some(url),
            Err(why) => diags.push(
                src.diagnostic(&path!["registry", "url"], Target::Value, format!("registry url `{url}` {why}"))
                    .with_hint("write HOST[:PORT][/NAMESPACE], e.g. `127.0.0.1:5000` or `registry.example.com/shop`"),
            ),
        }
        for (key, set) in [("port", section.port.is_some()), ("storage", section.storage.is_some())] {
            if set {
                diags.push(
                    src.diagnostic(
                        &path!["registry", key],
                        Target::Key,
                        format!("`{key}` applies to the registry ferry starts, not to one named by `url`"),
                    )
                    .with_hint("remove it, or remove `url`"),
                );
            }
        }
    }
    if let Some(port) = section.port {
        match u16::try_from(port) {
            Ok(p) if p > 0 => settings.port = Some(p),
            _ => diags.push(
                src.diagnostic(&path!["registry", "port"], Target::Value, format!("port {port} is out of range"))
                    .with_hint("use a port from 1 to 65535, or leave it out for a free one"),
            ),
        }
    }
    if let Some(storage) = section.storage {
        let path = std::path::PathBuf::from(&storage);
        if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            diags.push(
                src.diagnostic(
                    &path!["registry", "storage"],
                    Target::Value,
                    format!("storage `{storage}` is outside the project"),
                )
                .with_hint("use a folder relative to the project, e.g. `.ferry/oci-registry`"),
            );
        } else {
            settings.storage = Some(path);
        }
    }
    settings
}

/// `[ui] token`: a reference `ferry ui` can read on this machine — `env:NAME` or a
/// `file:PATH` inside the project. AWS references would need SSM and Secrets Manager
/// clients on the dashboard's machine; a plain value is reported without being echoed.
fn check_ui_token(src: &SourceFile, token: Option<&str>, diags: &mut Diagnostics) -> Option<SecretRef> {
    let token = token?;
    let at = path!["ui", "token"];
    match token.parse::<SecretRef>() {
        Ok(r @ SecretRef::Env(_)) => Some(r),
        Ok(SecretRef::File(p)) if is_inside_project(&p) => Some(SecretRef::File(p)),
        Ok(SecretRef::File(p)) => {
            diags.push(
                src.diagnostic(&at, Target::Value, format!("`[ui] token` file `{p}` is outside the project"))
                    .with_hint("use a path relative to the project root, without `..`"),
            );
            None
        }
        Ok(_) => {
            diags.push(
                src.diagnostic(&at, Target::Value, "`[ui] token` cannot be an AWS reference".to_string()).with_hint(
                    "use env:NAME or file:PATH (the dashboard reads it on this machine), or set FERRY_UI_TOKEN",
                ),
            );
            None
        }
        Err(_) => {
            // Never echo the value, not even in the quoted source line: it may be the token.
            let mut d = src
                .diagnostic(&at, Target::Key, "`[ui] token` is a plain value, not a reference".to_string())
                .with_hint("write env:NAME or file:PATH; remove the value from the file and from its history");
            if !token.is_empty() {
                d.source_line = d.source_line.replace(token, &"*".repeat(token.chars().count()));
            }
            diags.push(d);
            None
        }
    }
}

/// Check a parsed project file against the stage names that exist.
pub fn check_project(root: &Path, src: &SourceFile, stages: &[String]) -> Result<Project, Diagnostics> {
    let mut diags = Diagnostics::default();
    let file: ProjectFile = deserialize(src, &[], src.root().to_json()).map_err(|d| Diagnostics(vec![d]))?;

    if !is_dns_label(&file.project.name, 63) {
        diags.push(
            src.diagnostic(
                &path!["project", "name"],
                Target::Value,
                format!("project name `{}` is not a DNS label", file.project.name),
            )
            .with_hint("use lowercase letters, digits and `-`, at most 63 characters"),
        );
    }

    let keep_deployments = match file.state.as_ref().and_then(|s| s.keep_deployments) {
        None => crate::state::archive::DEFAULT_KEEP_DEPLOYMENTS,
        Some(n) if (1..=100_000).contains(&n) => n as usize,
        Some(n) => {
            diags.push(
                src.diagnostic(
                    &path!["state", "keep_deployments"],
                    Target::Value,
                    format!("`keep_deployments` is {n}, not between 1 and 100000"),
                )
                .with_hint("older deployments are archived beside the state and still listed by `ferry history`"),
            );
            crate::state::archive::DEFAULT_KEEP_DEPLOYMENTS
        }
    };
    let state = match file.state.clone().unwrap_or_default() {
        file::StateSection { backend: file::StateBackendKind::Local, bucket, prefix, region, .. } => {
            for (key, set) in [("bucket", bucket.is_some()), ("prefix", prefix.is_some()), ("region", region.is_some())]
            {
                if set {
                    diags.push(
                        src.diagnostic(
                            &path!["state", key],
                            Target::Key,
                            format!("`{key}` only applies to the s3 backend"),
                        )
                        .with_hint("remove it, or set `backend = \"s3\"`"),
                    );
                }
            }
            StateBackend::Local
        }
        file::StateSection { backend: file::StateBackendKind::S3, bucket, prefix, region, .. } => {
            if bucket.is_none() {
                diags.push(
                    src.diagnostic(&path!["state"], Target::Key, "the s3 state backend needs a `bucket`")
                        .with_hint("add `bucket = \"my-ferry-state\"` under [state]"),
                );
            }
            StateBackend::S3 {
                bucket: bucket.unwrap_or_default(),
                prefix: prefix.unwrap_or_else(|| file.project.name.clone()),
                region,
            }
        }
    };

    let mut pipeline = Vec::new();
    let mut seen_stage: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen_step: BTreeSet<&str> = BTreeSet::new();
    let steps = file.pipeline.as_ref().map(|p| p.steps.as_slice()).unwrap_or_default();
    for (i, step) in steps.iter().enumerate() {
        if !seen_step.insert(&step.name) {
            diags.push(
                src.diagnostic(
                    &path!["pipeline", "steps", i, "name"],
                    Target::Value,
                    format!("pipeline step `{}` is declared twice", step.name),
                )
                .with_hint("give every step its own name"),
            );
        }
        if step.stages.is_empty() {
            diags.push(
                src.diagnostic(
                    &path!["pipeline", "steps", i, "stages"],
                    Target::Value,
                    format!("pipeline step `{}` has no stages", step.name),
                )
                .with_hint("list at least one stage of `stages/`"),
            );
        }
        for (j, stage) in step.stages.iter().enumerate() {
            let at = path!["pipeline", "steps", i, "stages", j];
            if !stages.iter().any(|s| s == stage) {
                let known = if stages.is_empty() { "none".to_string() } else { stages.join(", ") };
                diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        format!("pipeline step `{}` names unknown stage `{stage}`", step.name),
                    )
                    .with_hint(format!("create {STAGES_DIR}/{stage}.toml, or use a known stage ({known})")),
                );
            }
            if let Some(prev) = seen_stage.insert(stage, i) {
                diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        format!("stage `{stage}` is in two pipeline steps: `{}` and `{}`", steps[prev].name, step.name),
                    )
                    .with_hint("a stage belongs to one step; remove it from one of them"),
                );
            }
        }
        pipeline.push(PipelineStep {
            name: step.name.clone(),
            stages: step.stages.clone(),
            required_checks: step.required_checks.clone(),
        });
    }

    let registry = check_registry(src, file.registry.clone().unwrap_or_default(), &mut diags);
    let preview = crate::preview::settings::check(
        src,
        file.pipeline.as_ref().and_then(|p| p.preview.as_ref()),
        stages,
        &mut diags,
    );
    let notify = crate::events::notify::check_all(src, &file.notify, &mut diags);
    let ui_token = check_ui_token(src, file.ui.as_ref().and_then(|u| u.token.as_deref()), &mut diags);

    if diags.is_empty() {
        Ok(Project {
            root: root.to_path_buf(),
            name: file.project.name,
            state,
            pipeline,
            keep_deployments,
            registry,
            preview,
            notify,
            ui_token,
        })
    } else {
        diags.sort();
        Err(diags)
    }
}

/// Load and check one stage of a project.
pub fn load_stage(project: &Project, name: &str) -> Result<Stage, Diagnostics> {
    let refs = stage_refs(&project.root);
    let Some(r) = refs.iter().find(|r| r.name == name) else {
        let known: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        let hint = if known.is_empty() {
            format!("create {STAGES_DIR}/{name}.toml (`ferry init` makes a first one)")
        } else {
            format!("known stages: {}", known.join(", "))
        };
        return Err(Diagnostics(vec![Diagnostic::whole_file(
            &Path::new(STAGES_DIR).join(format!("{name}.toml")),
            format!("no stage `{name}`"),
        )
        .with_hint(hint)]));
    };
    if !is_stage_name(name) {
        return Err(Diagnostics(vec![Diagnostic::whole_file(&r.path, format!("`{name}` is not a valid stage name"))
            .with_hint(format!(
                "rename the file: a stage name is letters, digits, `-`, `_` and `.`, not starting with `.` \
                 (it names files under .ferry/), e.g. {STAGES_DIR}/production-eu.toml"
            ))]));
    }
    let both = ["toml", "hcl"].iter().all(|ext| project.root.join(STAGES_DIR).join(format!("{name}.{ext}")).is_file());
    if both {
        return Err(Diagnostics(vec![Diagnostic::whole_file(
            &r.path,
            format!("stage `{name}` is written twice, as .toml and .hcl"),
        )
        .with_hint("keep one of the two files")]));
    }
    let text = read_text(&project.root, &r.path).map_err(|d| Diagnostics(vec![d]))?;
    load_stage_text(&r.path, text, name)
}

/// Check the text of stage `name`'s file, `path` (relative to the project root; its
/// extension picks TOML or HCL, and diagnostics name it). What [`load_stage`] does once it
/// has read the file; the fuzz targets (`fuzz/`) call it with arbitrary text.
pub fn load_stage_text(path: &Path, text: String, name: &str) -> Result<Stage, Diagnostics> {
    let format = Format::of_path(path);
    if format == Format::Toml {
        if let Some(file) = deserialize_valid_toml(&text) {
            return check_stage_file(&SourceFile::unparsed(path, text, format), file, Diagnostics::default(), name);
        }
    }
    let src = SourceFile::parse(path, text, format).map_err(|d| Diagnostics(vec![d]))?;
    check_stage(&src, name)
}

/// The fast path for a stage file that is valid TOML of the right shape: deserialize it
/// straight into the file types with the `toml` crate's lighter reader (no spans or layout
/// kept for every value, unlike toml_edit). `None` when anything is off; the caller then
/// takes the slow path ([`check_stage`]), which parses with toml_edit, builds the spanned
/// tree, deserializes app by app and reports every problem at its place.
///
/// The fast path must accept exactly what the slow one accepts, with the same result. Two
/// differences are guarded here. The `toml` reader implements TOML 1.1, toml_edit 1.0, so
/// what only 1.1 allows takes the slow path (which refuses it): newlines or a trailing comma
/// in an inline table, and the `\e` and `\xHH` escapes; the other 1.1 addition, a time
/// without seconds, is a datetime, which no field of a stage file takes. And a deserializer
/// also takes an empty table as a unit enum variant (`run_on = { release = {} }`), which the
/// slow path rejects, so the enum keys must be strings.
fn deserialize_valid_toml(text: &str) -> Option<StageFile> {
    // Conservative: a backslash before `e` or `x` anywhere, even escaped or in a comment.
    if text.match_indices('\\').any(|(i, _)| matches!(text.as_bytes().get(i + 1), Some(b'e' | b'x'))) {
        return None;
    }
    if text.len() >= PARALLEL_PARSE_MIN && cores() > 1 {
        if let Some(file) = deserialize_in_chunks(text, cores(), text.len() / PARSE_CHUNK_SIZE) {
            return Some(file);
        }
    }
    deserialize_toml_part(text, Part::Whole)
}

/// From this size on, a stage file is parsed in chunks on several cores; below it, the
/// threads would cost more than they save.
const PARALLEL_PARSE_MIN: usize = 256 * 1024;

/// About how much of a large stage file is parsed at a time.
const PARSE_CHUNK_SIZE: usize = 64 * 1024;

/// From this many apps on, a stage's apps are checked on several cores.
const PARALLEL_CHECK_MIN: usize = 200;

/// The cores to parse and check a large stage file on (at most 8).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from).min(8))
}

/// Which part of a stage file a text is, for [`deserialize_toml_part`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The whole file.
    Whole,
    /// What comes before the first app: it must not mention `apps` (an `apps = {}` there
    /// would close the table to the chunks' apps).
    Prefix,
    /// Whole apps: it must hold nothing but `apps`.
    Apps,
}

/// [`deserialize_valid_toml`] on `threads` cores: the file is cut into its prefix and
/// `pieces` chunks of whole apps ([`toml_chunks`](crate::config::toml_chunks)), runs of
/// chunks are parsed on threads, and the apps merged. Small chunks keep the parser's
/// token and event lists small, so their memory is reused from one chunk to the next
/// rather than touched anew. `None` at any doubt — a piece that does not parse, an app
/// found in two chunks — and the caller parses the file whole, so results and diagnostics
/// are those of the serial path.
fn deserialize_in_chunks(text: &str, threads: usize, pieces: usize) -> Option<StageFile> {
    let cut = crate::config::toml_chunks::app_chunks(text, pieces.max(threads))?;
    // Each thread takes the next chunk nobody has taken yet: the state is read beside this
    // and other work may hold a core, so a fixed share per thread would leave the file
    // waiting on whichever thread got the least time.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parse_next = || -> Vec<(usize, Option<StageFile>)> {
        let mut parsed = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(chunk) = cut.chunks.get(i) else { return parsed };
            parsed.push((i, deserialize_toml_part(&text[chunk.clone()], Part::Apps)));
        }
    };
    let (mut file, mut chunks) = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(parse_next)).collect();
        let prefix = deserialize_toml_part(&text[cut.prefix.clone()], Part::Prefix);
        let mut chunks = parse_next();
        for helper in helpers {
            chunks.extend(helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        (prefix, chunks)
    });
    chunks.sort_unstable_by_key(|(i, _)| *i);
    let chunks = chunks.into_iter().map(|(_, chunk)| chunk);
    let apps = &mut file.as_mut()?.apps;
    for chunk in chunks {
        for (name, app) in chunk?.apps {
            if apps.insert(name, app).is_some() {
                return None;
            }
        }
    }
    file
}

/// Parse and deserialize `text`, one [`Part`] of a stage file, if it is valid TOML 1.0 of
/// the right shape; `None` otherwise. Most stage files are plain TOML, which a leaner reader
/// takes in less than half the time; what it declines is read with the `toml` crate.
fn deserialize_toml_part(text: &str, part: Part) -> Option<StageFile> {
    deserialize_plain_toml_part(text, part).or_else(|| deserialize_full_toml_part(text, part))
}

/// Whether the top-level keys of a part of a stage file fit that part.
fn shape_fits<'k>(part: Part, mut keys: impl Iterator<Item = &'k str>) -> bool {
    match part {
        Part::Whole => true,
        Part::Prefix => !keys.any(|k| k == "apps"),
        Part::Apps => keys.all(|k| k == "apps"),
    }
}

/// [`deserialize_toml_part`] for plain TOML ([`toml_plain`]); `None` for anything else.
fn deserialize_plain_toml_part(text: &str, part: Part) -> Option<StageFile> {
    let root = toml_plain::parse(text)?;
    shape_fits(part, root.keys()).then(|| toml_plain::from_table(root))?
}

/// [`deserialize_toml_part`] with the `toml` crate's reader.
fn deserialize_full_toml_part(text: &str, part: Part) -> Option<StageFile> {
    use serde::Deserialize as _;
    use toml::de::{DeTable, DeValue};
    type Node<'i> = toml::Spanned<DeValue<'i>>;

    fn is_toml_1_0(text: &str, node: &Node<'_>) -> bool {
        match node.get_ref() {
            DeValue::Table(table) => {
                let source = text.get(node.span()).unwrap_or_default();
                let inline_is_1_0 = match source.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(inside) => !inside.contains('\n') && !inside.trim_end().ends_with(','),
                    None => !source.starts_with('{'),
                };
                inline_is_1_0 && table.values().all(|v| is_toml_1_0(text, v))
            }
            DeValue::Array(array) => array.iter().all(|v| is_toml_1_0(text, v)),
            _ => true,
        }
    }
    let doc = DeTable::parse(text).ok()?;
    let root = doc.get_ref();
    let shape_fits = shape_fits(part, root.keys().map(|k| k.get_ref().as_ref()));
    if !shape_fits || !root.values().all(|v| is_toml_1_0(text, v)) {
        return None;
    }
    let is_str = |node: Option<&Node<'_>>| node.is_none_or(|n| n.get_ref().is_str());
    if !is_str(root.get("runtime").and_then(|rt| rt.get_ref().get("kind"))) {
        return None;
    }
    if let Some(DeValue::Table(apps)) = root.get("apps").map(Node::get_ref) {
        for app in apps.values() {
            if let Some(DeValue::Array(tasks)) = app.get_ref().get("release_tasks").map(Node::get_ref) {
                if !tasks.iter().all(|t| is_str(t.get_ref().get("run_on"))) {
                    return None;
                }
            }
        }
    }
    StageFile::deserialize(toml::de::Deserializer::from(doc)).ok()
}

/// Check a parsed stage file and build the typed stage.
pub fn check_stage(src: &SourceFile, name: &str) -> Result<Stage, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut json = src.root().to_json();
    // Apps are deserialized one by one, so a typo in one app does not hide the others.
    let apps_json = json.as_object_mut().and_then(|o| o.remove("apps"));
    let mut file: StageFile = deserialize(src, &[], json).map_err(|d| Diagnostics(vec![d]))?;
    match apps_json {
        Some(serde_json::Value::Object(apps)) => {
            for (app, value) in apps {
                match deserialize::<AppSection>(src, &path!["apps", &app], value) {
                    Ok(section) => {
                        file.apps.insert(app, section);
                    }
                    Err(d) => diags.push(d),
                }
            }
        }
        Some(_) => diags.push(
            src.diagnostic(&path!["apps"], Target::Value, "`apps` must be a table of apps")
                .with_hint("write `[apps.NAME]` sections"),
        ),
        None => {}
    }
    check_stage_file(src, file, diags, name)
}

/// Check a deserialized stage file (`diags`: what deserializing it found) and build the
/// typed stage.
fn check_stage_file(
    src: &SourceFile,
    file: StageFile,
    mut diags: Diagnostics,
    name: &str,
) -> Result<Stage, Diagnostics> {
    let runtime = check_runtime(src, &file, &mut diags);
    // What involves several apps is checked first, while the file types are whole:
    // `check_apps` then takes the apps apart, moving their strings into the model. Its
    // findings still come after the apps' own, as from one pass in that order.
    let mut across = Diagnostics::default();
    check_across_apps(src, &file, &runtime, &mut across);
    let threads = if file.apps.len() >= PARALLEL_CHECK_MIN { cores() } else { 1 };
    let apps = check_apps(src, file.apps, &runtime, threads, &mut diags);
    diags.0.extend(across.0);

    if diags.is_empty() {
        Ok(Stage { name: name.to_string(), file: src.path.clone(), runtime, apps })
    } else {
        diags.sort();
        Err(diags)
    }
}

/// [`check_app`] for every app, on `threads` threads: apps are checked independently, in
/// runs whose results are put back in order, so the diagnostics come out as from one loop.
/// The sections are consumed: their strings move into the model, and what is left of each
/// is freed on the thread that checked it, not all at once on the caller's.
fn check_apps(
    src: &SourceFile,
    sections: BTreeMap<String, AppSection>,
    runtime: &Runtime,
    threads: usize,
    diags: &mut Diagnostics,
) -> BTreeMap<String, App> {
    let count = sections.len();
    let check = |run: Vec<(String, AppSection)>| {
        let mut diags = Diagnostics::default();
        let apps: Vec<(String, App)> = run
            .into_iter()
            .filter_map(|(name, section)| {
                let app = check_app(src, &name, section, runtime, &mut diags)?;
                Some((name, app))
            })
            .collect();
        (apps, diags)
    };
    let mut sections = sections.into_iter();
    let run_len = count.div_ceil(threads).max(1);
    let mut runs: Vec<Vec<(String, AppSection)>> = Vec::with_capacity(threads);
    while runs.len() * run_len < count {
        runs.push(sections.by_ref().take(run_len).collect());
    }
    let checked: Vec<(Vec<(String, App)>, Diagnostics)> = if runs.len() > 1 {
        let mut runs = runs.into_iter();
        let first = runs.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let helpers: Vec<_> = runs.map(|run| scope.spawn(|| check(run))).collect();
            let mut checked = vec![check(first)];
            checked
                .extend(helpers.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
            checked
        })
    } else {
        runs.into_iter().map(check).collect()
    };
    let mut apps = Vec::with_capacity(count);
    for (run, run_diags) in checked {
        apps.extend(run);
        diags.0.extend(run_diags.0);
    }
    // In name order already, as the sections were: the map is built without sorting.
    apps.into_iter().collect()
}

fn check_runtime(src: &SourceFile, file: &StageFile, diags: &mut Diagnostics) -> Runtime {
    let Some(rt) = &file.runtime else { return Runtime::Local { driver: None } };
    match rt.kind {
        file::RuntimeKind::Local => {
            let ecs_only = [
                ("region", rt.region.is_some()),
                ("cluster", rt.cluster.is_some()),
                ("subnets", !rt.subnets.is_empty()),
                ("security_groups", !rt.security_groups.is_empty()),
                ("assign_public_ip", rt.assign_public_ip.is_some()),
                ("execution_role", rt.execution_role.is_some()),
                ("task_role", rt.task_role.is_some()),
                ("log_group", rt.log_group.is_some()),
            ];
            for (key, set) in ecs_only {
                if set {
                    diags.push(
                        src.diagnostic(
                            &path!["runtime", key],
                            Target::Key,
                            format!("`{key}` only applies to the ecs runtime"),
                        )
                        .with_hint("remove it, or set `kind = \"ecs\"`"),
                    );
                }
            }
            Runtime::Local { driver: rt.driver }
        }
        file::RuntimeKind::Ecs => {
            if rt.driver.is_some() {
                diags.push(
                    src.diagnostic(
                        &path!["runtime", "driver"],
                        Target::Key,
                        "`driver` only applies to the local runtime",
                    )
                    .with_hint("remove it (ECS runs every task as a container)"),
                );
            }
            for (key, missing, example) in [
                ("region", rt.region.is_none(), "region = \"eu-central-1\""),
                ("cluster", rt.cluster.is_none(), "cluster = \"my-cluster\""),
            ] {
                if missing {
                    diags.push(
                        src.diagnostic(&path!["runtime"], Target::Key, format!("the ecs runtime needs a `{key}`"))
                            .with_hint(format!("add `{example}` under [runtime]")),
                    );
                }
            }
            for (key, arn) in [("execution_role", &rt.execution_role), ("task_role", &rt.task_role)] {
                if let Some(arn) = arn {
                    if !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/")) {
                        diags.push(
                            src.diagnostic(
                                &path!["runtime", key],
                                Target::Value,
                                format!("`{arn}` is not an IAM role ARN"),
                            )
                            .with_hint("use arn:aws:iam::ACCOUNT:role/NAME"),
                        );
                    }
                }
            }
            Runtime::Ecs(EcsRuntime {
                region: rt.region.clone().unwrap_or_default(),
                cluster: rt.cluster.clone().unwrap_or_default(),
                subnets: rt.subnets.clone(),
                security_groups: rt.security_groups.clone(),
                assign_public_ip: rt.assign_public_ip.unwrap_or(false),
                execution_role: rt.execution_role.clone(),
                task_role: rt.task_role.clone(),
                log_group: rt.log_group.clone(),
            })
        }
    }
}

/// Parse an optional string field with `FromStr`, reporting a located error. `at` makes
/// the field's path, only when there is something to report.
fn parse_opt<T: std::str::FromStr>(
    src: &SourceFile,
    at: impl FnOnce() -> Vec<PathSeg>,
    value: &Option<String>,
    default: T,
    what: &str,
    diags: &mut Diagnostics,
) -> T {
    match value {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|_| {
            diags.push(src.diagnostic(&at(), Target::Value, format!("`{s}` is not {what}")).with_hint(match what {
                "a duration" => "write a whole number with a unit: \"500ms\", \"5s\", \"10m\", \"1h\"",
                _ => "write a whole number with a percent sign, e.g. \"100%\"",
            }));
            default
        }),
    }
}

/// A positive integer field (at least `min`).
#[allow(clippy::too_many_arguments)]
fn int_field(
    src: &SourceFile,
    at: impl FnOnce() -> Vec<PathSeg>,
    value: Option<i64>,
    default: u32,
    min: i64,
    max: i64,
    what: &str,
    diags: &mut Diagnostics,
) -> u32 {
    match value {
        None => default,
        Some(v) if v >= min && v <= max => v as u32,
        Some(v) => {
            diags.push(
                src.diagnostic(&at(), Target::Value, format!("{what} {v} is out of range"))
                    .with_hint(format!("use a whole number from {min} to {max}")),
            );
            default
        }
    }
}

/// `scale`: the count a deploy asks for (for an autoscaled range, its `min`: what a new
/// service starts with) and the range, if any.
fn check_scale(
    src: &SourceFile,
    at: &[PathSeg],
    scale: Option<file::ScaleSection>,
    runtime: &Runtime,
    diags: &mut Diagnostics,
) -> (u32, Option<Autoscaling>) {
    let auto = match scale {
        None => return (1, None),
        Some(file::ScaleSection::Count(n)) => {
            return (int_field(src, || at.to_vec(), Some(n), 1, 0, 1000, "scale", diags), None)
        }
        Some(file::ScaleSection::Auto(auto)) => auto,
    };
    let key = |k: &str| {
        let mut p = at.to_vec();
        p.push(PathSeg::Key(k.to_string()));
        p
    };
    let min = int_field(src, || key("min"), Some(auto.min), 1, 0, 1000, "scale min", diags);
    let max = int_field(src, || key("max"), Some(auto.max), min.max(1), 1, 1000, "scale max", diags);
    let target = |k: &str, v: Option<i64>, diags: &mut Diagnostics| {
        v.map(|v| int_field(src, || key(k), Some(v), 70, 1, 100, &format!("scale {k}"), diags))
    };
    let cpu_target = target("cpu_target", auto.cpu_target, diags);
    let memory_target = target("memory_target", auto.memory_target, diags);
    if auto.min > auto.max && auto.max >= 1 {
        diags.push(
            src.diagnostic(&key("min"), Target::Value, format!("scale min {} is above max {}", auto.min, auto.max))
                .with_hint("autoscaling keeps the count between min and max: make min at most max"),
        );
    }
    if !matches!(runtime, Runtime::Ecs(_)) {
        diags.push(
            src.diagnostic(at, Target::Value, "an autoscaled `scale` needs the ECS runtime")
                .with_hint("the local runtime runs a fixed number of tasks: write `scale = N`"),
        );
    }
    let cpu_target = cpu_target.or(memory_target.is_none().then_some(70));
    (min, Some(Autoscaling { min, max, cpu_target, memory_target }))
}

/// Check one app's section and build the app, moving the section's strings into it.
fn check_app(src: &SourceFile, name: &str, a: AppSection, runtime: &Runtime, diags: &mut Diagnostics) -> Option<App> {
    let at = |rest: &[PathSeg]| {
        let mut p = path!["apps", name];
        p.extend_from_slice(rest);
        p
    };
    let before = diags.len();
    // Before the section's fields are moved out below.
    let ecs_task = crate::config::ecs_task::check(src, &at, name, &a, runtime, diags);

    if !is_dns_label(name, 32) {
        diags.push(
            src.diagnostic(
                &at(&[]),
                Target::Key,
                format!("app name `{name}` is not a DNS label of at most 32 characters"),
            )
            .with_hint("use lowercase letters, digits and `-`, not at the start or end"),
        );
    }
    if a.image.trim().is_empty() {
        diags.push(
            src.diagnostic(&at(&path!["image"]), Target::Value, "`image` is empty")
                .with_hint("name the image repository"),
        );
    } else if matches!(runtime, Runtime::Local { .. }) && !crate::registry::is_repository_name(&a.image) {
        // The local registry keeps a repository as a folder of that name: `../..` would
        // leave it. Found here rather than when the commit asks the registry.
        diags.push(
            src.diagnostic(
                &at(&path!["image"]),
                Target::Value,
                format!("`{}` is not a repository name of the local registry", a.image.escape_debug()),
            )
            .with_hint("use lowercase letters and digits with `.`, `_` or `-` between them, in `/`-separated parts, e.g. `web` or `team/web`"),
        );
    }

    // Releases: positive, unique ids; valid digests.
    let mut releases: Vec<(u64, Digest)> = Vec::with_capacity(a.releases.len());
    // Each declared id and where its key is in `in_file_order`.
    let mut written: BTreeMap<u64, usize> = BTreeMap::new();
    // In file order, so a duplicate is reported where it is written the second time.
    // Only ids written twice (`1` and `01`) make the order matter, and finding where each
    // key is written costs a walk of the file's tree, so sort only then.
    let mut in_file_order: Vec<(String, String)> = a.releases.into_iter().collect();
    let mut ids: Vec<i64> =
        in_file_order.iter().filter_map(|(key, _)| key.parse::<i64>().ok()).filter(|&id| id > 0).collect();
    ids.sort_unstable();
    let written_twice = ids.windows(2).any(|w| w[0] == w[1]);
    if written_twice {
        in_file_order.sort_by_cached_key(|(key, _)| src.span_of(&at(&path!["releases", key]), Target::Key).start);
    } else {
        // Each id once: the map is built in one go below, with no duplicate to report.
        written = in_file_order
            .iter()
            .enumerate()
            .filter_map(|(i, (key, _))| Some((key.parse::<i64>().ok().filter(|&id| id > 0)? as u64, i)))
            .collect();
    }
    for i in 0..in_file_order.len() {
        // The digest moves into the model; the key stays for the messages.
        let digest = std::mem::take(&mut in_file_order[i].1);
        let key = &in_file_order[i].0;
        let rel_at = || at(&path!["releases", key]);
        match key.parse::<i64>() {
            Ok(id) if id > 0 => {
                if let Some(other) = written_twice.then(|| written.insert(id as u64, i)).flatten() {
                    let other = &in_file_order[other].0;
                    diags.push(
                        src.diagnostic(
                            &rel_at(),
                            Target::Key,
                            format!(
                                "release id {id} is declared twice: as `{other}` on line {} and as `{key}`",
                                line_of(src, &at(&path!["releases", other]), Target::Key)
                            ),
                        )
                        .with_hint("every release needs its own id; ids are never reused"),
                    );
                }
                match Digest::try_from(digest) {
                    Ok(d) => releases.push((id as u64, d)),
                    Err(DigestError(digest)) => diags.push(
                        src.diagnostic(
                            &rel_at(),
                            Target::Value,
                            format!("release {id}: `{digest}` is not an image digest"),
                        )
                        .with_hint(
                            "a digest is `sha256:` followed by 64 lowercase hex digits; `ferry image push` prints one",
                        ),
                    ),
                }
            }
            _ => diags.push(
                src.diagnostic(&rel_at(), Target::Key, format!("release id `{key}` is not a positive integer"))
                    .with_hint("release ids are 1, 2, 3…, one more than the highest ever used"),
            ),
        }
    }
    let active = match a.active {
        None => None,
        Some(id) if id > 0 && written.contains_key(&(id as u64)) => Some(id as u64),
        Some(id) => {
            let declared: Vec<String> = written.keys().map(u64::to_string).collect();
            diags.push(
                src.diagnostic(
                    &at(&path!["active"]),
                    Target::Value,
                    format!("active release {id} is not declared in [apps.{name}.releases]"),
                )
                .with_hint(if declared.is_empty() {
                    "declare it first: `ferry release create APP DIGEST`".to_string()
                } else {
                    format!("declared releases: {}", declared.join(", "))
                }),
            );
            None
        }
    };

    let (scale, autoscaling) = check_scale(src, &at(&path!["scale"]), a.scale, runtime, diags);
    let cpu = int_field(src, || at(&path!["cpu"]), a.cpu, 256, 1, 16_384, "cpu", diags);
    let memory = int_field(src, || at(&path!["memory"]), a.memory, 512, 1, 122_880, "memory", diags);
    let port = a.port.map(|p| int_field(src, || at(&path!["port"]), Some(p), 1, 1, 65_535, "port", diags) as u16);
    let target_groups = check_target_groups(src, &at, &a.target_group, &a.target_groups, port, runtime, diags);

    let command_is_empty = a.command.as_ref().is_some_and(Vec::is_empty);
    let mut command = a.command.unwrap_or_default();
    if command_is_empty {
        diags.push(
            src.diagnostic(&at(&path!["command"]), Target::Value, "`command` is empty")
                .with_hint("remove it to use the image's own command"),
        );
        command.clear();
    }
    if port.is_none() && command.iter().any(|c| c.contains("${PORT}")) {
        diags.push(
            src.diagnostic(&at(&path!["command"]), Target::Value, "`command` uses ${PORT} but the app has no `port`")
                .with_hint("add `port = 8080` to the app"),
        );
    }

    for (key, value) in &a.env {
        if let Some(problem) = env_value_problem(key, value) {
            diags.push(src.diagnostic(&at(&path!["env", key]), Target::Value, problem).with_hint(
                "a process cannot be started with it; pass large or binary data as a file (a `file:` secret) instead",
            ));
        }
        if !is_env_name(key) {
            diags.push(
                src.diagnostic(
                    &at(&path!["env", key]),
                    Target::Key,
                    format!("`{key}` is not an environment variable name"),
                )
                .with_hint("use letters, digits and `_`, not starting with a digit"),
            );
        }
    }
    for (i, key) in a.sensitive_env.iter().enumerate() {
        if !a.env.contains_key(key) {
            diags.push(
                src.diagnostic(
                    &at(&path!["sensitive_env", i]),
                    Target::Value,
                    format!("`{key}` is marked sensitive but is not in [apps.{name}.env]"),
                )
                .with_hint("list only names of this app's env variables"),
            );
        }
    }

    let mut secrets = BTreeMap::new();
    for (key, reference) in a.secrets {
        let s_at = at(&path!["secrets", &key]);
        if !is_env_name(&key) {
            diags.push(
                src.diagnostic(&s_at, Target::Key, format!("`{key}` is not an environment variable name"))
                    .with_hint("use letters, digits and `_`, not starting with a digit"),
            );
        }
        if a.env.contains_key(&key) {
            diags.push(
                src.diagnostic(&s_at, Target::Key, format!("`{key}` is both in env and in secrets"))
                    .with_hint("keep it in one of the two"),
            );
        }
        match reference.parse::<SecretRef>() {
            Ok(r) => {
                if matches!(runtime, Runtime::Ecs(_)) && !r.is_aws() {
                    diags.push(
                        src.diagnostic(
                            &s_at,
                            Target::Value,
                            format!(
                                "secret `{key}`: `{}` references cannot be resolved on ECS",
                                reference.split(':').next().unwrap_or("")
                            ),
                        )
                        .with_hint("on ECS use an SSM parameter or Secrets Manager ARN"),
                    );
                }
                if let SecretRef::File(p) = &r {
                    if !is_inside_project(p) {
                        diags.push(
                            src.diagnostic(
                                &s_at,
                                Target::Value,
                                format!("secret `{key}`: `{p}` is outside the project"),
                            )
                            .with_hint("use a path relative to the project root, without `..`"),
                        );
                    }
                }
                secrets.insert(key, r);
            }
            // Never echo the value, not even in the quoted source line: it may be the secret
            // itself, and validate output ends up in CI logs.
            Err(_) => {
                let mut d = src
                    .diagnostic(&s_at, Target::Key, format!("secret `{key}` is a plain value, not a reference"))
                    .with_hint("secrets are references: arn:aws:ssm:…:parameter/…, arn:aws:secretsmanager:…:secret:…, env:NAME or file:PATH; remove the value from the file and from its history");
                if !reference.is_empty() {
                    d.source_line = d.source_line.replace(reference.as_str(), &"*".repeat(reference.chars().count()));
                }
                diags.push(d);
            }
        }
    }

    let h = a.health.unwrap_or_default();
    let hd = Health::default();
    let h_at = |k: &str| at(&path!["health", k]);
    let health = Health {
        command: h.command,
        path: h.path,
        interval: parse_opt(src, || h_at("interval"), &h.interval, hd.interval, "a duration", diags),
        // Filled in below: its default follows the interval.
        timeout: hd.timeout,
        healthy_threshold: int_field(
            src,
            || h_at("healthy_threshold"),
            h.healthy_threshold,
            hd.healthy_threshold,
            1,
            100,
            "healthy_threshold",
            diags,
        ),
        unhealthy_threshold: int_field(
            src,
            || h_at("unhealthy_threshold"),
            h.unhealthy_threshold,
            hd.unhealthy_threshold,
            1,
            100,
            "unhealthy_threshold",
            diags,
        ),
        grace_period: parse_opt(src, || h_at("grace_period"), &h.grace_period, hd.grace_period, "a duration", diags),
    };
    // A default must never make a file invalid: a check interval set below the default
    // timeout shortens the timeout with it.
    let health = Health {
        timeout: parse_opt(src, || h_at("timeout"), &h.timeout, hd.timeout.min(health.interval), "a duration", diags),
        ..health
    };
    if let Some(p) = &health.path {
        if !p.starts_with('/') {
            diags.push(
                src.diagnostic(&h_at("path"), Target::Value, format!("health path `{p}` does not start with `/`"))
                    .with_hint("write e.g. \"/health\""),
            );
        }
        if port.is_none() {
            diags.push(
                src.diagnostic(&h_at("path"), Target::Key, "a network health check needs the app's `port`")
                    .with_hint("add `port = 8080` to the app"),
            );
        }
    }
    if health.command.as_ref().is_some_and(|c| c.is_empty() || (c.len() == 1 && (c[0] == "CMD" || c[0] == "CMD-SHELL")))
    {
        diags.push(
            src.diagnostic(&h_at("command"), Target::Value, "health `command` has nothing to run")
                .with_hint("e.g. [\"CMD-SHELL\", \"curl -f http://localhost:8080/health\"]"),
        );
    }
    // Only a timeout the file sets can be longer than the interval (the default adapts).
    if health.timeout > health.interval {
        let (interval, hint) = if h.interval.is_none() {
            (
                format!("{} (the default interval)", health.interval),
                format!("set `interval` to {} or more, or shorten `timeout`", health.timeout),
            )
        } else {
            (health.interval.to_string(), "a check must finish before the next one starts".to_string())
        };
        diags.push(
            src.diagnostic(
                &h_at("timeout"),
                Target::Value,
                format!("health timeout {} is longer than its interval {interval}", health.timeout),
            )
            .with_hint(hint),
        );
    }

    let d = a.deploy.unwrap_or_default();
    let dd = DeploySettings::default();
    let d_at = |k: &str| at(&path!["deploy", k]);
    let deploy = DeploySettings {
        max_surge: parse_opt(src, || d_at("max_surge"), &d.max_surge, dd.max_surge, "a percentage", diags),
        min_healthy: parse_opt(src, || d_at("min_healthy"), &d.min_healthy, dd.min_healthy, "a percentage", diags),
        timeout: parse_opt(src, || d_at("timeout"), &d.timeout, dd.timeout, "a duration", diags),
        drain: parse_opt(src, || d_at("drain"), &d.drain, dd.drain, "a duration", diags),
        stop_timeout: parse_opt(src, || d_at("stop_timeout"), &d.stop_timeout, dd.stop_timeout, "a duration", diags),
        ecs: Box::new(crate::config::EcsDeploy {
            target_groups: target_groups.clone(),
            ..crate::config::ecs_deploy::check(
                src,
                &at,
                &d,
                runtime,
                a.target_group.as_deref().or(target_groups.first().map(|t| t.arn.as_str())),
                diags,
            )
        }),
        autoscaling,
        ecs_task: Box::new(ecs_task),
    };
    if deploy.min_healthy.0 > 100 {
        diags.push(
            src.diagnostic(
                &d_at("min_healthy"),
                Target::Value,
                format!("min_healthy {} is over 100%", deploy.min_healthy),
            )
            .with_hint("use 0% to 100%"),
        );
    }
    if deploy.max_surge.0 == 0 && deploy.min_healthy.0 == 100 && d.max_surge.is_some() {
        let min_healthy = if d.min_healthy.is_none() { "100% (the default)" } else { "100%" };
        diags.push(
            src.diagnostic(
                &d_at("max_surge"),
                Target::Value,
                format!("max_surge 0% with min_healthy {min_healthy} leaves no room to replace a task"),
            )
            .with_hint("allow a surge (e.g. \"100%\") or set min_healthy below 100%"),
        );
    }
    if deploy.timeout.as_millis() == 0 {
        diags.push(
            src.diagnostic(&d_at("timeout"), Target::Value, "deploy timeout is 0")
                .with_hint("give new tasks time to turn healthy, e.g. \"5m\""),
        );
    }

    let mut task_timeouts = Vec::with_capacity(a.release_tasks.len());
    let mut task_names = BTreeSet::new();
    for (i, t) in a.release_tasks.iter().enumerate() {
        let t_at = |k: &str| at(&path!["release_tasks", i, k]);
        if !task_names.insert(t.name.as_str()) {
            diags.push(
                src.diagnostic(&t_at("name"), Target::Value, format!("release task `{}` is declared twice", t.name))
                    .with_hint("give each release task its own name"),
            );
        }
        if !is_dns_label(&t.name, 32) {
            diags.push(
                src.diagnostic(
                    &t_at("name"),
                    Target::Value,
                    format!("release task name `{}` is not a DNS label", t.name),
                )
                .with_hint("use lowercase letters, digits and `-`"),
            );
        }
        if t.command.is_empty() {
            diags.push(
                src.diagnostic(&t_at("command"), Target::Value, "release task `command` is empty")
                    .with_hint("e.g. [\"bin/rails\", \"db:migrate\"]"),
            );
        }
        task_timeouts.push(parse_opt(
            src,
            || t_at("timeout"),
            &t.timeout,
            Duration::from_millis(600_000),
            "a duration",
            diags,
        ));
    }

    if let Some(tag) = &a.track {
        if tag.is_empty() || tag.len() > 128 || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            diags.push(
                src.diagnostic(&at(&path!["track"]), Target::Value, format!("`{tag}` is not an image tag"))
                    .with_hint("tags use letters, digits, `.`, `_` and `-`"),
            );
        }
    }

    let build = a.build.unwrap_or_default();
    if let Some(context) = &build.context {
        let path = std::path::Path::new(context);
        if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            diags.push(
                src.diagnostic(
                    &at(&path!["build", "context"]),
                    Target::Value,
                    format!("build context `{context}` is outside the source"),
                )
                .with_hint("use a folder relative to the source's root, e.g. `services/web`"),
            );
        }
    }

    if diags.len() > before {
        return None;
    }
    let release_tasks = a
        .release_tasks
        .into_iter()
        .zip(task_timeouts)
        .map(|(t, timeout)| ReleaseTask {
            name: t.name,
            command: t.command,
            timeout,
            run_on: t.run_on.unwrap_or_default(),
        })
        .collect();
    Some(App {
        name: name.to_string(),
        image: a.image,
        // Later entries win, as `insert` would (only a file with a duplicate id has any).
        releases: releases.into_iter().collect(),
        active,
        scale,
        track: a.track,
        depends_on: a.depends_on,
        config: AppConfig {
            cpu,
            memory,
            command,
            port,
            env: a.env,
            sensitive_env: a.sensitive_env.into_iter().collect(),
            secrets,
            health,
            deploy,
            release_tasks,
            target_group: a.target_group,
        },
        build: AppBuild {
            context: build.context,
            dockerfile: build.dockerfile,
            target: build.target,
            args: build.args,
        },
    })
}

/// The 1-based line of `path` in the file, for messages that mention a second place.
fn line_of(src: &SourceFile, path: &[PathSeg], target: Target) -> usize {
    let start = src.span_of(path, target).start.min(src.text.len());
    src.text[..start].matches('\n').count() + 1
}

/// Linux's limit on one `KEY=VALUE` string of a process's environment, with its NUL
/// (`MAX_ARG_STRLEN`, 32 pages): a longer one fails the task's start with E2BIG.
const MAX_ENV_STRING: usize = 128 * 1024;

/// Why an env var cannot be passed to a process, if it cannot: a NUL byte ends the string
/// early, and a string over [`MAX_ENV_STRING`] is refused by `execve`.
fn env_value_problem(key: &str, value: &str) -> Option<String> {
    if value.contains('\0') {
        return Some(format!("the value of `{key}` holds a NUL byte"));
    }
    let len = key.len() + 1 + value.len() + 1;
    (len > MAX_ENV_STRING)
        .then(|| format!("`{key}=…` is {len} bytes, over the 128 KiB a process's environment string may hold"))
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !s.as_bytes()[0].is_ascii_digit()
}

/// `target_group = "ARN"` or `target_groups = [{ arn, container, port }, …]` (not both):
/// ARNs, ECS only, a port to register. The long form, with what it leaves out left `None`
/// (the runtime implies the app's container and port); the short form stays the app's.
fn check_target_groups(
    src: &SourceFile,
    at: &dyn Fn(&[PathSeg]) -> Vec<PathSeg>,
    target_group: &Option<String>,
    target_groups: &Option<Vec<file::TargetGroupSection>>,
    port: Option<u16>,
    runtime: &Runtime,
    diags: &mut Diagnostics,
) -> Vec<crate::config::TargetGroup> {
    let not_an_arn = |tg: &str| !tg.starts_with("arn:aws") || !tg.contains(":targetgroup/");
    let arn_hint = "use arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID";
    let ecs = matches!(runtime, Runtime::Ecs(_));
    for (key, set) in [("target_group", target_group.is_some()), ("target_groups", target_groups.is_some())] {
        if set && !ecs {
            diags.push(
                src.diagnostic(&at(&path![key]), Target::Key, format!("`{key}` only applies to the ecs runtime"))
                    .with_hint("remove it; the local runtime proxies `port` itself"),
            );
        }
    }
    if !ecs {
        return Vec::new();
    }
    if target_group.is_some() && target_groups.is_some() {
        diags.push(
            src.diagnostic(
                &at(&path!["target_groups"]),
                Target::Key,
                "`target_group` and `target_groups` are both set",
            )
            .with_hint("keep one: `target_group = \"ARN\"` is the short form of `target_groups = [{ arn = \"ARN\" }]`"),
        );
    }
    if let Some(tg) = &target_group {
        if not_an_arn(tg) {
            diags.push(
                src.diagnostic(&at(&path!["target_group"]), Target::Value, format!("`{tg}` is not a target group ARN"))
                    .with_hint(arn_hint),
            );
        }
    }
    let mut out = Vec::new();
    for (i, tg) in target_groups.iter().flatten().enumerate() {
        let before = diags.len();
        if not_an_arn(&tg.arn) {
            diags.push(
                src.diagnostic(
                    &at(&path!["target_groups", i, "arn"]),
                    Target::Value,
                    format!("`{}` is not a target group ARN", tg.arn),
                )
                .with_hint(arn_hint),
            );
        }
        let own_port = tg.port.map(|p| {
            int_field(src, || at(&path!["target_groups", i, "port"]), Some(p), 1, 1, 65_535, "port", diags) as u16
        });
        if own_port.or(port).is_none() {
            diags.push(
                src.diagnostic(
                    &at(&path!["target_groups", i]),
                    Target::Value,
                    format!("target group `{}` has no port to register", tg.arn),
                )
                .with_hint("give the app a `port`, or this entry `port = N`"),
            );
        }
        if tg.container.as_ref().is_some_and(|c| c.is_empty() || c.len() > 255) {
            diags.push(
                src.diagnostic(
                    &at(&path!["target_groups", i, "container"]),
                    Target::Value,
                    "a container name is 1 to 255 characters",
                )
                .with_hint("name a container of the task definition, or leave it out for the app's"),
            );
        }
        if diags.len() == before {
            out.push(crate::config::TargetGroup {
                arn: tg.arn.clone(),
                container: tg.container.clone(),
                port: own_port,
            });
        }
    }
    out
}

/// Checks that involve more than one app: `depends_on` targets and cycles, port clashes,
/// target groups claimed twice.
fn check_across_apps(src: &SourceFile, file: &StageFile, runtime: &Runtime, diags: &mut Diagnostics) {
    // A target group registers one service's tasks: a second claim (in another app, or
    // again in the same one) is an error where it is written.
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, app) in &file.apps {
        let short = app.target_group.iter().map(|tg| (tg.as_str(), path!["apps", name, "target_group"]));
        let long = app
            .target_groups
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, tg)| (tg.arn.as_str(), path!["apps", name, "target_groups", i, "arn"]));
        for (arn, at) in short.chain(long) {
            match claimed.get(arn) {
                None => {
                    claimed.insert(arn, name);
                }
                Some(first) => diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        if *first == name.as_str() {
                            format!("app `{name}` lists target group `{arn}` twice")
                        } else {
                            format!("target group `{arn}` is already app `{first}`'s")
                        },
                    )
                    .with_hint("a target group registers the tasks of one service: give each app its own"),
                ),
            }
        }
    }
    for (name, app) in &file.apps {
        for (i, dep) in app.depends_on.iter().enumerate() {
            let at = path!["apps", name, "depends_on", i];
            if dep == name {
                diags.push(
                    src.diagnostic(&at, Target::Value, format!("app `{name}` depends on itself"))
                        .with_hint("remove it from depends_on"),
                );
            } else if !file.apps.contains_key(dep) {
                let known: Vec<&str> = file.apps.keys().map(String::as_str).filter(|k| k != name).collect();
                diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        format!("app `{name}` depends on `{dep}`, which this stage does not declare"),
                    )
                    .with_hint(if known.is_empty() {
                        "declare it, or remove it from depends_on".to_string()
                    } else {
                        format!("apps in this stage: {}", known.join(", "))
                    }),
                );
            }
        }
    }
    // Cycles: report each once, at the edge that closes it, printing the whole cycle. Looking
    // for one from every app costs a walk per app, so first see whether there is any.
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let starts = if has_cycle(file) { file.apps.keys().collect() } else { Vec::new() };
    for start in starts {
        if let Some(cycle) = find_cycle(file, start) {
            let mut key = cycle.clone();
            key.sort();
            if reported.insert(key) {
                let last = &cycle[cycle.len() - 1];
                let idx = file.apps[last].depends_on.iter().position(|d| d == &cycle[0]).unwrap_or(0);
                let mut shown = cycle.clone();
                shown.push(cycle[0].clone());
                diags.push(
                    src.diagnostic(
                        &path!["apps", last, "depends_on", idx],
                        Target::Value,
                        format!("depends_on forms a cycle: {}", shown.join(" → ")),
                    )
                    .with_hint("deploy order must be a chain; remove one of these dependencies"),
                );
            }
        }
    }
    if matches!(runtime, Runtime::Local { .. }) {
        // In file order, so the clash is reported at the port written second.
        // Sorting needs each app's place in the file; only a clash makes it matter.
        let mut apps: Vec<(&String, &AppSection)> = file.apps.iter().collect();
        let mut seen = BTreeSet::new();
        if apps.iter().filter_map(|(_, app)| app.port).any(|p| !seen.insert(p)) {
            apps.sort_by_cached_key(|(name, _)| src.span_of(&path!["apps", *name], Target::Key).start);
        }
        let mut ports: BTreeMap<i64, &str> = BTreeMap::new();
        for (name, app) in apps {
            if let Some(p) = app.port {
                if let Some(other) = ports.get(&p) {
                    let other_line = line_of(src, &path!["apps", *other, "port"], Target::Value);
                    diags.push(
                        src.diagnostic(
                            &path!["apps", name, "port"],
                            Target::Value,
                            format!("apps `{other}` and `{name}` both use port {p}"),
                        )
                        .with_hint(format!(
                            "on the local runtime every app needs its own port; `{other}` has {p} on line {other_line}"
                        )),
                    );
                } else {
                    ports.insert(p, name);
                }
            }
        }
    }
}

/// Whether the depends_on graph has a cycle, leaving aside an app that depends on itself
/// and names of apps that do not exist (both reported on their own), in linear time: peel
/// off apps whose dependencies are all peeled off; what remains is on or behind a cycle.
fn has_cycle(file: &StageFile) -> bool {
    let index: BTreeMap<&str, usize> = file.apps.keys().enumerate().map(|(i, name)| (name.as_str(), i)).collect();
    let mut pending = vec![0_usize; index.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); index.len()];
    for (i, (name, app)) in file.apps.iter().enumerate() {
        for dep in app.depends_on.iter().filter(|dep| *dep != name) {
            if let Some(&j) = index.get(dep.as_str()) {
                pending[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..pending.len()).filter(|&i| pending[i] == 0).collect();
    let mut peeled = 0;
    while let Some(j) = ready.pop() {
        peeled += 1;
        for &i in &dependents[j] {
            pending[i] -= 1;
            if pending[i] == 0 {
                ready.push(i);
            }
        }
    }
    peeled < pending.len()
}

/// A cycle through `start` in the depends_on graph, as the list of apps from `start`.
fn find_cycle(file: &StageFile, start: &str) -> Option<Vec<String>> {
    fn dfs(file: &StageFile, node: &str, start: &str, stack: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        let Some(app) = file.apps.get(node) else { return false };
        for dep in &app.depends_on {
            if dep == node {
                continue;
            }
            if dep == start {
                return true;
            }
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
                if dfs(file, dep, start, stack, seen) {
                    return true;
                }
                stack.pop();
            }
        }
        false
    }
    let mut stack = vec![start.to_string()];
    let mut seen = BTreeSet::from([start.to_string()]);
    dfs(file, start, start, &mut stack, &mut seen).then_some(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stage as the fast path loads it, when it takes it.
    fn fast(text: &str) -> Option<Result<Stage, Diagnostics>> {
        let file = deserialize_valid_toml(text)?;
        let src = SourceFile::unparsed(Path::new("stages/p.toml"), text.to_string(), Format::Toml);
        Some(check_stage_file(&src, file, Diagnostics::default(), "p"))
    }

    /// The stage as the slow path loads it.
    fn slow(text: &str) -> Result<Stage, Diagnostics> {
        let src = SourceFile::parse(Path::new("stages/p.toml"), text.to_string(), Format::Toml)
            .map_err(|d| Diagnostics(vec![d]))?;
        check_stage(&src, "p")
    }

    #[test]
    fn the_fast_path_loads_what_the_slow_one_does() {
        let stage = crate::plan::fixture::large_stage(12, 3);
        let text = crate::plan::fixture::stage_toml(&stage);
        let loaded = fast(&text).expect("a valid file takes the fast path").expect("it loads");
        assert_eq!(loaded, slow(&text).unwrap());
        assert_eq!(loaded.apps, stage.apps);
    }

    #[test]
    fn problems_found_after_the_fast_path_are_reported_as_by_the_slow_one() {
        let digest = format!("\"sha256:{}\"", "a".repeat(64));
        let text = format!(
            "[apps.web]\nimage = \"web\"\nport = 80\n[apps.web.releases]\n01 = {digest}\n1 = {digest}\n2 = \"x\"\n\
             [apps.api]\nimage = \"api\"\nport = 80\ndepends_on = [\"db\"]\n[apps.api.health]\ntimeout = \"9s\"\n"
        );
        let found = fast(&text).expect("the file deserializes").unwrap_err();
        assert_eq!(found, slow(&text).unwrap_err());
        assert_eq!(found.0.len(), 5, "{found:?}");
    }

    #[test]
    fn an_app_problem_comes_before_a_problem_across_apps_at_the_same_place() {
        // Both apps' ports are out of range, and the second clashes with the first: two
        // findings at `b`'s port, the app's own first, as when the apps were checked first.
        let text = "[apps.a]\nimage = \"a\"\nport = 70000\n[apps.b]\nimage = \"b\"\nport = 70000\n";
        let found = fast(text).expect("the file deserializes").unwrap_err();
        assert_eq!(found, slow(text).unwrap_err());
        let messages: Vec<&str> = found.0.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            ["port 70000 is out of range", "port 70000 is out of range", "apps `a` and `b` both use port 70000"]
        );
        assert_eq!((found.0[1].line, found.0[1].col), (found.0[2].line, found.0[2].col));
    }

    const HEALTHY_APP: &str = "[apps.web]\nimage = \"web\"\nport = 8080\n";

    #[test]
    fn a_short_interval_shortens_the_default_timeout_with_it() {
        let text = format!("{HEALTHY_APP}[apps.web.health]\ninterval = \"1s\"\n");
        let stage = slow(&text).expect("a default never makes a file invalid");
        let health = &stage.apps["web"].config.health;
        assert_eq!((health.interval, health.timeout), (Duration::from_millis(1_000), Duration::from_millis(1_000)));
        assert_eq!(fast(&text).unwrap().unwrap(), stage);
        // A longer interval keeps the usual default.
        let text = format!("{HEALTHY_APP}[apps.web.health]\ninterval = \"30s\"\n");
        assert_eq!(slow(&text).unwrap().apps["web"].config.health.timeout, Duration::from_millis(2_000));
    }

    #[test]
    fn an_error_about_a_default_says_it_is_one() {
        let text = format!("{HEALTHY_APP}[apps.web.health]\ntimeout = \"10s\"\n");
        let found = slow(&text).unwrap_err();
        assert_eq!(found.0.len(), 1, "{found:?}");
        assert_eq!(found.0[0].message, "health timeout 10s is longer than its interval 5s (the default interval)");
        assert_eq!(found.0[0].hint.as_deref(), Some("set `interval` to 10s or more, or shorten `timeout`"));

        let text = format!("{HEALTHY_APP}[apps.web.deploy]\nmax_surge = \"0%\"\n");
        let found = slow(&text).unwrap_err();
        assert_eq!(
            found.0[0].message,
            "max_surge 0% with min_healthy 100% (the default) leaves no room to replace a task"
        );
        // Both written: no mention of a default.
        let text = format!("{HEALTHY_APP}[apps.web.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n");
        assert_eq!(slow(&text).unwrap_err().0[0].message, "health timeout 2s is longer than its interval 1s");
    }

    /// Every stage file under `dir`, as text.
    fn stage_texts(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stage_texts(&path, out);
            } else if path.extension().is_some_and(|e| e == "toml")
                && path.parent().is_some_and(|p| p.ends_with("stages"))
            {
                out.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }

    #[test]
    fn parsing_in_chunks_gives_what_parsing_whole_does() {
        let mut texts: Vec<String> = Vec::new();
        for dir in ["examples", "tests"] {
            stage_texts(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut texts);
        }
        assert!(texts.len() > 10, "found the example stages: {}", texts.len());
        texts.push(crate::plan::fixture::stage_toml(&crate::plan::fixture::large_stage(40, 3)));
        texts.push(
            "# ferry\n[runtime]\nkind = \"local\"\n\n[apps.a]\nimage = \"a\"\ncommand = [\n  \"x\",\n]\n\
             [apps.a.env]\nNOTE = \"\"\"\n[apps.b]\n\"\"\"\n[apps.b] # the real one\nimage = 'b'\n\
             [[apps.b.release_tasks]]\nname = \"m\"\ncommand = ['''\n[apps.c]\n''']\n[apps.c]\r\nimage = \"c\"\r\n"
                .to_string(),
        );
        let mut chunked = 0;
        for text in &texts {
            let whole = deserialize_toml_part(text, Part::Whole);
            for n in 2..5 {
                let in_chunks = deserialize_in_chunks(text, n.min(3), n * 2 - 1);
                if in_chunks.is_some() {
                    chunked += 1;
                    assert_eq!(in_chunks, whole, "{n} chunks of\n{text}");
                }
            }
        }
        assert!(chunked > 20, "most files parse in chunks: {chunked}");
        let tricky = texts.last().unwrap();
        assert_eq!(deserialize_toml_part(tricky, Part::Whole).unwrap().apps.len(), 3, "a valid file");
    }

    #[test]
    fn the_plain_reader_reads_what_the_toml_crate_does() {
        let mut texts: Vec<String> = Vec::new();
        for dir in ["examples", "tests"] {
            stage_texts(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut texts);
        }
        texts.push(crate::plan::fixture::stage_toml(&crate::plan::fixture::large_stage(40, 3)));
        let mut plain = 0;
        for text in &texts {
            let full = deserialize_full_toml_part(text, Part::Whole);
            if let Some(file) = deserialize_plain_toml_part(text, Part::Whole) {
                plain += 1;
                assert_eq!(Some(file), full, "{text}");
            }
        }
        assert!(plain * 10 >= texts.len() * 8, "most stage files are plain TOML: {plain} of {}", texts.len());
        // Enum variants are strings: a table naming one is left to the full readers (whose
        // slow path refuses it).
        let table_variant = "[apps.a]\nimage = \"a\"\n[[apps.a.release_tasks]]\nname = \"m\"\ncommand = [\"m\"]\n\
                             run_on = { release = {} }\n";
        assert_eq!(deserialize_plain_toml_part(table_variant, Part::Whole), None);
        assert_eq!(deserialize_toml_part(table_variant, Part::Whole), None);
    }

    #[test]
    fn what_chunks_cannot_see_of_each_other_is_left_to_the_whole_file() {
        let app = |name: &str| format!("[apps.{name}]\nimage = \"{name}\"\n");
        for text in [
            // An app in two chunks: a duplicate table, or a subtable after another app.
            format!("{}{}{}", app("a"), app("b"), app("a")),
            format!("{}{}{}[apps.a.env]\nX = \"1\"\n", app("a"), app("b"), app("c")),
            format!("{}[apps.\"b\"]\nimage = \"b\"\n{}", app("a"), app("b")),
            // `apps` in the prefix, closed or not.
            format!("apps = {{}}\n{}{}", app("a"), app("b")),
            format!("[apps]\n{}{}", app("a"), app("b")),
            // Something other than apps after the first app.
            format!("{}{}[runtime]\nkind = \"local\"\n", app("a"), app("b")),
        ] {
            // Cut before each app: each case is seen and refused.
            assert_eq!(deserialize_in_chunks(&text, 3, 3), None, "{text}");
            assert_eq!(deserialize_in_chunks(&text, 2, 3), None, "{text}");
            let whole = deserialize_toml_part(&text, Part::Whole);
            for n in [2, 4] {
                let in_chunks = deserialize_in_chunks(&text, n, n);
                assert!(in_chunks.is_none() || in_chunks == whole, "{n} chunks of\n{text}");
            }
        }
    }

    #[test]
    fn a_cut_inside_a_multi_line_value_is_refused_by_the_parse() {
        // Each text has a line reading `[apps.in]` inside a multi-line value, where the cut
        // into three lands; the piece before it does not parse, so the file is parsed whole.
        let pad = format!("[apps.a]\nimage = \"a\"\ncommand = [{}]\n", "\"x\", ".repeat(20));
        for inside in ["NOTE = \"\"\"\n[apps.in]\n\"\"\"\n", "NOTE = '''\n[apps.in]\n'''\n", "NOTE = [\n[apps.in]\n]\n"]
        {
            let text = format!("{pad}[apps.b]\nimage = \"b\"\n{inside}{pad}");
            let cut = crate::config::toml_chunks::app_chunks(&text, 2).unwrap();
            assert!(text[cut.chunks[1].clone()].starts_with("[apps.in]"), "{text}");
            assert_eq!(deserialize_in_chunks(&text, 2, 2), None, "{text}");
        }
    }

    #[test]
    fn checking_apps_on_several_threads_reports_as_one_loop_does() {
        let stage = crate::plan::fixture::large_stage(30, 3);
        let mut text = crate::plan::fixture::stage_toml(&stage);
        // Problems in apps that land in different runs, found lazily in the file's tree.
        for (app, bad) in [("app-0002", "cpu = 0"), ("app-0017", "memory = 0"), ("app-0029", "cpu = 99999")] {
            text = text.replacen(&format!("[apps.{app}]\n"), &format!("[apps.{app}]\n{bad}\n"), 1);
        }
        let file = deserialize_toml_part(&text, Part::Whole).expect("deserializes");
        let check = |threads| {
            let src = SourceFile::unparsed(Path::new("stages/p.toml"), text.clone(), Format::Toml);
            let mut diags = Diagnostics::default();
            let apps = check_apps(&src, file.apps.clone(), &Runtime::Local { driver: None }, threads, &mut diags);
            (apps, diags)
        };
        let (apps, diags) = check(1);
        assert_eq!(diags.0.len(), 3, "{diags:?}");
        assert_eq!(apps.len(), 27);
        for threads in [2, 3, 7] {
            assert_eq!(check(threads), (apps.clone(), diags.clone()), "{threads} threads");
        }
    }

    #[test]
    fn has_cycle_agrees_with_find_cycle() {
        let stage = |deps: &[(&str, &[&str])]| StageFile {
            apps: deps
                .iter()
                .map(|(name, on)| {
                    let on = on.iter().map(|d| d.to_string()).collect();
                    (name.to_string(), AppSection { depends_on: on, ..AppSection::default() })
                })
                .collect(),
            ..StageFile::default()
        };
        for (deps, cyclic) in [
            (vec![("a", &["b"][..]), ("b", &["c"]), ("c", &[])], false),
            (vec![("a", &["a", "x"][..]), ("b", &["a", "a"])], false),
            (vec![("a", &["b"][..]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])], true),
            (vec![("a", &["b", "b"][..]), ("b", &["a"])], true),
        ] {
            let file = stage(&deps);
            assert_eq!(has_cycle(&file), cyclic, "{deps:?}");
            assert_eq!(file.apps.keys().any(|start| find_cycle(&file, start).is_some()), cyclic, "{deps:?}");
        }
    }

    #[test]
    fn toml_1_1_syntax_takes_the_slow_path_and_is_refused() {
        let app = "[apps.web]\nimage = \"web\"\n";
        for text in [
            format!("{app}health = {{ path = \"/h\",\n  interval = \"5s\" }}\n"),
            format!("{app}health = {{ path = \"/h\", # why\n}}\n"),
            format!("{app}health = {{ path = \"/h\", }}\n"),
            format!("{app}release_tasks = [{{ name = \"m\", command = [\"m\"], }}]\n"),
            format!("{app}env = {{ A = {{ b = 1, }} }}\n"),
            format!("{app}[apps.web.env]\nA = \"\\e[0m\"\n"),
            format!("{app}[apps.web.env]\nA = \"\\x41\"\n"),
            format!("{app}[apps.web.env]\nA = 07:32\n"),
        ] {
            // What the guard is for: the `toml` reader (TOML 1.1) parses these, toml_edit (1.0) does not.
            assert!(toml::de::DeTable::parse(&text).is_ok(), "{text}");
            assert!(deserialize_valid_toml(&text).is_none(), "{text}");
            let refused = slow(&text).unwrap_err();
            assert!(refused.0[0].message.starts_with("TOML syntax"), "{text}: {refused:?}");
        }
        // TOML 1.0 inline tables, escapes and arrays across lines still take the fast path.
        let text = format!(
            "{app}port = 8080\ncommand = [\n  \"a\",\n  \"b\\t\\u00e9\",\n]\nhealth = {{ path = \"/h\", interval = \"5s\" }}\n\
             release_tasks = [{{ name = \"m\", command = [\"m\"], run_on = \"every_deploy\" }}]\n"
        );
        let loaded = fast(&text).expect("takes the fast path").expect("it loads");
        assert_eq!(loaded, slow(&text).unwrap());
    }

    #[test]
    fn an_enum_written_as_a_table_takes_the_slow_path_and_is_refused() {
        let task = "[apps.web]\nimage = \"web\"\n[[apps.web.release_tasks]]\nname = \"m\"\ncommand = [\"m\"]\n";
        for text in [
            "[runtime]\nkind = { local = {} }\n".to_string(),
            "[runtime.kind]\nlocal = []\n".to_string(),
            format!("{task}run_on = {{ release = {{}} }}\n"),
            format!("{task}[apps.web.release_tasks.run_on]\nrelease = {{}}\n"),
            "[apps.web]\nimage = \"web\"\nrelease_tasks = [{ name = \"m\", command = [\"m\"], run_on = { release = [] } }]\n"
                .to_string(),
        ] {
            // What the guard is for: the deserializer alone would take these.
            assert!(toml::from_str::<StageFile>(&text).is_ok(), "{text}");
            assert!(deserialize_valid_toml(&text).is_none(), "{text}");
            assert!(slow(&text).is_err(), "{text}");
        }
    }
}
