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
use crate::config::{stage_refs, PROJECT_FILE, STAGES_DIR};
use crate::path;
// Kept reachable here, where callers have long found them.
pub use crate::config::names::{is_dns_label, is_inside_project, is_stage_name};

mod across_apps;
mod app;
mod project;
mod stage;

use crate::config::fast_toml::{cores, deserialize_valid_toml};
use across_apps::check_across_apps;
#[cfg(test)]
use across_apps::{apps_on_cycles, find_cycle};
use app::{check_app, line_of};
pub use project::{check_project, load_project};
use stage::{check_runtime, check_scale, int_field, parse_opt};

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
        .map(|c| (strsim::levenshtein(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
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

/// From this many apps on, a stage's apps are checked on several cores.
const PARALLEL_CHECK_MIN: usize = 200;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fast_toml::*;

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
            let cut = crate::config::fast_toml::chunks::app_chunks(&text, 2).unwrap();
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
    fn apps_on_cycles_agree_with_find_cycle() {
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
            assert_eq!(!apps_on_cycles(&file).is_empty(), cyclic, "{deps:?}");
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
