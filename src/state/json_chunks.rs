//! Decoding a large state file on several cores: the `apps` object is cut into runs of whole
//! apps, each run parsed on its own thread, and the rest of the document (the head) parsed
//! with `apps` empty. `ferry plan` of a large stage reads its state while it parses the
//! stage file, and the state decode, one thread's work, was the longest part of it.
//!
//! The cuts are found in the layout [`encode`](super::codec::encode) writes, without lexing:
//! the `apps` object opens on a line `  "apps": {` and closes on the line `  }` before the
//! document's last `}`; an app starts on a line indented four spaces and the cut is the comma
//! ending the line before. Parsing the pieces checks the cuts. With the head valid JSON with
//! `{}` at the place of `apps`, and every run `R` valid as `{R}`, the runs joined with the
//! cut commas make a valid object, and the file is the head with that object in place of
//! `{}`: it parses, whole, to what the pieces give, apps inserted in file order (a repeated
//! name keeps its last value either way). Each run is parsed wrapped as `{"apps":{R}}`, at
//! the depth it has in the file, so serde_json's nesting limit applies to it alike. When
//! anything fails or looks odd, [`decode_in_chunks`] says `None` and the caller parses the
//! file whole, so every error is that of the serial path.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;

use super::model::{AppState, StageState};

/// Below this many bytes per run, a thread costs more than it saves.
const MIN_RUN_BYTES: usize = 512 * 1024;

/// Where the pieces of a state file are: `apps` spans the `apps` object from its `{` to its
/// `}`, `runs` the text of whole apps inside it, in file order, separated by one comma each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cuts {
    pub apps: Range<usize>,
    pub runs: Vec<Range<usize>>,
}

/// Cut the `apps` object of `text` into at most `n` runs of about equal size; `None` when the
/// text does not have the layout `encode` writes.
pub fn cut(text: &str, n: usize) -> Option<Cuts> {
    const OPEN: &str = "\n  \"apps\": {";
    const APP_START: &[u8] = b",\n    \"";
    let open = text.find(OPEN)? + OPEN.len() - 1;
    // The `}` of `\n  }\n}`, the end of the document.
    let close = text.trim_end().strip_suffix("\n  }\n}")?.len() + 3;
    if close <= open {
        return None;
    }
    let body = open + 1..close;
    let mut runs = Vec::with_capacity(n);
    let mut begin = body.start;
    for k in 1..n.max(1) {
        let target = (body.start + body.len() * k / n).max(begin);
        // Bytes, not `str::find`: `target` need not be at a character boundary.
        let Some(found) = text.as_bytes()[target..body.end].windows(APP_START.len()).position(|w| w == APP_START)
        else {
            break;
        };
        let comma = target + found;
        runs.push(begin..comma);
        begin = comma + 1;
    }
    runs.push(begin..body.end);
    Some(Cuts { apps: open..close + 1, runs })
}

/// The state in `text` parsed in pieces on up to `threads` threads, or `None`: the file is
/// small, has another layout, or a piece does not parse; then parse it whole.
pub fn decode_in_chunks(text: &str, threads: usize) -> Option<StageState> {
    decode_runs(text, threads.min(text.len() / MIN_RUN_BYTES))
}

/// The state in `text` parsed as up to `n` runs of apps and the head, each but the first run
/// on a thread of its own.
fn decode_runs(text: &str, n: usize) -> Option<StageState> {
    if n < 2 {
        return None;
    }
    let cuts = cut(text, n)?;
    if cuts.runs.len() < 2 {
        return None;
    }
    let parse_run = |run: &Range<usize>| parse_run(&text[run.clone()]);
    let (head, runs) = std::thread::scope(|scope| {
        let helpers: Vec<_> = cuts.runs[1..].iter().map(|run| scope.spawn(move || parse_run(run))).collect();
        let first = parse_run(&cuts.runs[0]);
        let head = parse_head(text, &cuts.apps);
        let mut runs = vec![first];
        runs.extend(helpers.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        (head, runs)
    });
    let mut state = head?;
    if !state.apps.is_empty() {
        return None; // `apps` was not where the head holds its apps
    }
    for run in runs {
        let mut run = run?;
        if run.is_empty() {
            return None; // only whitespace between the cuts: the whole would not parse
        }
        state.apps.append(&mut run);
    }
    Some(state)
}

/// The document with `{}` in place of the `apps` object.
fn parse_head(text: &str, apps: &Range<usize>) -> Option<StageState> {
    let head = [&text[..apps.start], "{}", &text[apps.end..]].concat();
    serde_json::from_str(&head).ok()
}

/// The apps of one run, parsed at the depth they have in the file.
fn parse_run(run: &str) -> Option<BTreeMap<String, AppState>> {
    #[derive(Deserialize)]
    struct Wrapper {
        apps: BTreeMap<String, AppState>,
    }
    let wrapped = ["{\"apps\":{", run, "}}"].concat();
    serde_json::from_str::<Wrapper>(&wrapped).ok().map(|w| w.apps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixture;
    use crate::state::codec::encode;
    use crate::state::ReleaseRecord;

    /// What the serial path makes of `text`.
    fn whole(text: &str) -> Option<StageState> {
        serde_json::from_str(text).ok()
    }

    /// The fast path either declines or agrees with the serial path, for every run count.
    fn assert_agrees(text: &str) {
        for n in 2..=5 {
            if let Some(state) = decode_runs(text, n) {
                assert_eq!(Some(state), whole(text), "{n} runs of:\n{text}");
            }
        }
    }

    fn text(state: &StageState) -> String {
        String::from_utf8(encode(state)).unwrap()
    }

    /// A state of the benchmark's shape: full configs, history, revisions.
    fn large(apps: usize) -> StageState {
        fixture::applied(&fixture::large_stage(apps, 2))
    }

    /// A small state: apps with one release each.
    fn small(apps: &[&str]) -> StageState {
        let mut state = StageState::new("dev");
        for (i, name) in apps.iter().enumerate() {
            let mut app = AppState::default();
            let digest = fixture::digest(name, 1);
            app.releases.insert(
                i as u64 + 1,
                ReleaseRecord { digest, first_seen: fixture::fixed_time(), first_deployed: None },
            );
            state.apps.insert(name.to_string(), app);
        }
        state
    }

    #[test]
    fn cuts_between_whole_apps_and_covers_the_apps_object() {
        let text = text(&large(9));
        let cuts = cut(&text, 3).expect("the layout encode writes");
        assert_eq!(cuts.runs.len(), 3);
        assert_eq!(&text[cuts.apps.start..cuts.apps.start + 1], "{");
        assert_eq!(&text[cuts.apps.end - 1..cuts.apps.end], "}");
        assert_eq!(cuts.runs[0].start, cuts.apps.start + 1);
        assert_eq!(cuts.runs[2].end, cuts.apps.end - 1);
        for pair in cuts.runs.windows(2) {
            assert_eq!(pair[0].end + 1, pair[1].start);
            assert_eq!(&text[pair[0].end..pair[1].start], ",");
            assert!(text[pair[1].start..].starts_with("\n    \"app-"), "{}", &text[pair[1].start..][..40]);
        }
    }

    #[test]
    fn decodes_what_the_whole_file_decodes() {
        let state = large(12);
        let text = text(&state);
        for n in 2..=5 {
            assert_eq!(decode_runs(&text, n).as_ref(), Some(&state), "{n} runs");
        }
    }

    #[test]
    fn small_or_empty_states_are_left_to_the_whole_parse() {
        let text = text(&large(12));
        assert_eq!(decode_in_chunks(&text, 4), None, "well under the size that pays");
        assert_eq!(decode_runs(&text, 1), None);
        assert_eq!(decode_runs(&self::text(&StageState::new("dev")), 2), None);
        assert_eq!(decode_runs(&self::text(&small(&["one"])), 2), None, "one app, no cut");
    }

    #[test]
    fn strings_with_escapes_and_other_scripts_read_alike() {
        let mut state = large(6);
        let names = ["app-\"quoted\",\n    \"x", "app-é-ü-字", "app-\\back\\", "app-\u{1F600}", "app-tab\t"];
        for (i, name) in names.iter().enumerate() {
            let mut app = state.apps["app-0001"].clone();
            app.history[0].description = format!("{name}\n    \"app-\",\n  }}\n}}");
            app.active.as_mut().unwrap().config.env.insert("VAR\"Q".into(), "é\u{0}\u{1f}".into());
            state.apps.insert(format!("{name}{i}"), app);
        }
        let text = text(&state);
        for n in 2..=7 {
            assert_eq!(decode_runs(&text, n).as_ref(), Some(&state), "{n} runs");
        }
        // Cut targets in the middle of multi-byte characters must not panic.
        let wide = text.replace("value-", "ééé-");
        assert_agrees(&wide);
    }

    #[test]
    fn other_layouts_and_odd_documents_agree_with_the_whole_parse() {
        let state = large(6);
        let pretty = text(&state);
        let mut value = serde_json::to_value(&state).unwrap();
        // `apps` first, not last: another layout, parsed whole.
        let apps = value.as_object_mut().unwrap().shift_remove("apps").unwrap();
        let mut reordered = serde_json::Map::new();
        reordered.insert("apps".into(), apps);
        reordered.extend(value.as_object().unwrap().clone());
        let reordered = serde_json::to_string_pretty(&reordered).unwrap();
        assert_eq!(cut(&reordered, 2), None);
        assert_eq!(whole(&reordered).as_ref(), Some(&state));

        let cases = [
            // compact JSON
            serde_json::to_string(&state).unwrap(),
            // an unknown field in an app (refused) and in a config (ignored)
            pretty.replacen("      \"releases\": {", "      \"future\": 1,\n      \"releases\": {", 3),
            pretty.replace("\"cpu\": 256,", "\"cpu\": 256, \"later\": {\"a\": [1, 2]},"),
            // a newer version, a wrong stage: decoded alike, the caller refuses both
            pretty.replacen("\"version\": 1", "\"version\": 2", 1),
            pretty.replacen("\"stage\": \"bench\"", "\"stage\": \"other\"", 1),
            // a repeated app name, across any cut: the last one is kept
            pretty.replace("\"app-0004\"", "\"app-0001\""),
            // a repeated or missing `apps`, a duplicate top-level field
            pretty.replacen("\"stage\": \"bench\",", "\"stage\": \"bench\",\n  \"apps\": {},", 1),
            pretty.replacen("\"serial\": 1,", "\"serial\": 1,\n  \"serial\": 2,", 1),
            pretty.replacen("\n  \"apps\": {", "\n  \"apps\": {}, \"x\": {", 1),
            // an empty run: a comma with nothing before it
            pretty.replacen("\n  \"apps\": {", "\n  \"apps\": {,", 1),
            // trailing text, missing end
            format!("{pretty}x"),
            pretty.trim_end().trim_end_matches('}').to_string(),
        ];
        for case in &cases {
            assert_agrees(case);
        }
    }

    #[test]
    fn the_nesting_limit_applies_as_in_the_whole_file() {
        let state = large(4);
        let pretty = text(&state);
        for depth in 120..=130 {
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let case = pretty.replace("\"cpu\": 256,", &format!("\"cpu\": 256, \"deep\": {nested},"));
            let expected = whole(&case);
            for n in 2..=3 {
                assert_eq!(decode_runs(&case, n), expected, "depth {depth}, {n} runs");
            }
        }
    }

    #[test]
    fn any_damaged_byte_is_declined_or_read_as_the_whole_file_reads_it() {
        let pretty = text(&small(&["a", "b", "c", "d"]));
        let replacements: &[&str] =
            &["", "\"", ",", "}", "{", "\n", " ", "\n    \"", ",\n    \"e\": {},\n    \"", "x", "\\"];
        for at in 0..pretty.len() {
            for replacement in replacements {
                let damaged = [&pretty[..at], replacement, &pretty[at + 1..]].concat();
                assert_agrees(&damaged);
            }
        }
    }
}
