//! The fast paths of reading a stage file, in one place: a valid file of the right shape is
//! deserialized straight into the file types — by `plain`, a one-pass reader of the plain
//! TOML most stage files are written in, else by the `toml` crate's lighter reader; a large
//! file in pieces of whole apps (`chunks`) parsed on several cores. Each path declines what
//! it does not read exactly as the slow path (`config::validate::check_stage`: toml_edit, the
//! spanned tree, every problem located) would, and the caller then takes that one.
//!
//! Why they exist: `ferry plan` reads every stage file on every run, and for the plan
//! benchmark's 1.9 MB stage file these paths are most of the difference to its goal
//! (docs/PERFORMANCE.md). Their oracles: the tests in `config::validate` (fast and slow
//! paths load every example and fixture alike; chunks parse as the whole file does), the
//! tests in `plain` (equal to the `toml` crate), and the fuzz targets `toml_plain` (plain
//! against the `toml` crate on any input) and `stage_toml` (docs/FUZZING.md).

pub mod chunks;
pub mod plain;

use crate::config::file::StageFile;
/// The fast path for a stage file that is valid TOML of the right shape: deserialize it
/// straight into the file types with the `toml` crate's lighter reader (no spans or layout
/// kept for every value, unlike toml_edit). `None` when anything is off; the caller then
/// takes the slow path ([`check_stage`](crate::config::validate::check_stage)), which parses with toml_edit, builds the spanned
/// tree, deserializes app by app and reports every problem at its place.
///
/// The fast path must accept exactly what the slow one accepts, with the same result. Two
/// differences are guarded here. The `toml` reader implements TOML 1.1, toml_edit 1.0, so
/// what only 1.1 allows takes the slow path (which refuses it): newlines or a trailing comma
/// in an inline table, and the `\e` and `\xHH` escapes; the other 1.1 addition, a time
/// without seconds, is a datetime, which no field of a stage file takes. And a deserializer
/// also takes an empty table as a unit enum variant (`run_on = { release = {} }`), which the
/// slow path rejects, so the enum keys must be strings.
pub(crate) fn deserialize_valid_toml(text: &str) -> Option<StageFile> {
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
pub(crate) const PARALLEL_PARSE_MIN: usize = 256 * 1024;

/// About how much of a large stage file is parsed at a time.
pub(crate) const PARSE_CHUNK_SIZE: usize = 64 * 1024;

/// The cores to parse and check a large stage file on (at most 8).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from).min(8))
}

/// Which part of a stage file a text is, for [`deserialize_toml_part`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The whole file.
    Whole,
    /// What comes before the first app: it must not mention `apps` (an `apps = {}` there
    /// would close the table to the chunks' apps).
    Prefix,
    /// Whole apps: it must hold nothing but `apps`.
    Apps,
}

/// [`deserialize_valid_toml`] on `threads` cores: the file is cut into its prefix and
/// `pieces` chunks of whole apps ([`chunks`]), runs of
/// chunks are parsed on threads, and the apps merged. Small chunks keep the parser's
/// token and event lists small, so their memory is reused from one chunk to the next
/// rather than touched anew. `None` at any doubt — a piece that does not parse, an app
/// found in two chunks — and the caller parses the file whole, so results and diagnostics
/// are those of the serial path.
pub(crate) fn deserialize_in_chunks(text: &str, threads: usize, pieces: usize) -> Option<StageFile> {
    let cut = chunks::app_chunks(text, pieces.max(threads))?;
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
pub(crate) fn deserialize_toml_part(text: &str, part: Part) -> Option<StageFile> {
    deserialize_plain_toml_part(text, part).or_else(|| deserialize_full_toml_part(text, part))
}

/// Whether the top-level keys of a part of a stage file fit that part.
pub(crate) fn shape_fits<'k>(part: Part, mut keys: impl Iterator<Item = &'k str>) -> bool {
    match part {
        Part::Whole => true,
        Part::Prefix => !keys.any(|k| k == "apps"),
        Part::Apps => keys.all(|k| k == "apps"),
    }
}

/// [`deserialize_toml_part`] for plain TOML ([`plain`]); `None` for anything else.
pub(crate) fn deserialize_plain_toml_part(text: &str, part: Part) -> Option<StageFile> {
    let root = plain::parse(text)?;
    shape_fits(part, root.keys()).then(|| plain::from_table(root))?
}

/// [`deserialize_toml_part`] with the `toml` crate's reader.
pub(crate) fn deserialize_full_toml_part(text: &str, part: Part) -> Option<StageFile> {
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
