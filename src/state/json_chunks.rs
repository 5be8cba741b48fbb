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
//! name keeps its last value either way). Each run is parsed in place as `[{R}]`, at the
//! depth it has in the file, so serde_json's nesting limit applies to it alike. When
//! anything fails or looks odd, [`decode_in_chunks`] says `None` and the caller parses the
//! file whole, so every error is that of the serial path.

use std::collections::BTreeMap;
use std::ops::Range;

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
/// small, has another layout, or a piece does not parse; then parse it whole. `text` is
/// changed while the pieces are parsed, and is as it was when this returns.
pub fn decode_in_chunks(text: &mut String, threads: usize) -> Option<StageState> {
    decode_runs(text, threads.min(text.len() / MIN_RUN_BYTES))
}

/// The state in `text` parsed as up to `n` runs of apps and the head, each but the first run
/// on a thread of its own.
fn decode_runs(text: &mut String, n: usize) -> Option<StageState> {
    if n < 2 {
        return None;
    }
    let cuts = cut(text, n)?;
    if cuts.runs.len() < 2 {
        return None;
    }
    let head = [&text[..cuts.apps.start], "{}", &text[cuts.apps.end..]].concat();
    // Each run is parsed where it lies, as `[{` run `}]`: the brackets overwrite the layout
    // around it (` {` before the first run, `,\n` after a run and the four spaces before the
    // next, `}\n` after the last), which saves copying megabytes. `[{` nests a run's apps
    // as deep as `{"apps": {` does in the file. A run after a cut loses its leading newline
    // and indentation, which is whitespace. The bytes are put back afterwards.
    let wrapped: Vec<Range<usize>> = (cuts.runs.iter().enumerate())
        .map(|(k, run)| if k == 0 { run.start - 2..run.end + 2 } else { run.start + 3..run.end + 2 })
        .collect();
    // (where, the bracket, the bytes the layout has there)
    let mut edits: Vec<(usize, u8, &str)> = Vec::with_capacity(wrapped.len() * 4);
    for run in &wrapped {
        edits.extend([(run.start, b'[', " "), (run.start + 1, b'{', " {")]);
        edits.extend([(run.end - 2, b'}', ",}"), (run.end - 1, b']', "\n")]);
    }
    let saved: Vec<(usize, u8)> = edits.iter().map(|&(at, _, _)| (at, text.as_bytes()[at])).collect();
    if edits.iter().zip(&saved).any(|(&(_, _, expected), &(_, found))| !expected.as_bytes().contains(&found)) {
        return None; // not the layout `cut` checked: cannot happen, but never guess
    }
    for &(at, bracket, _) in &edits {
        text.replace_range(at..at + 1, char::from(bracket).encode_utf8(&mut [0; 4]));
    }
    let (head, runs) = {
        let text: &str = text;
        std::thread::scope(|scope| {
            let parse = |run: &Range<usize>| parse_run(&text[run.clone()]);
            let helpers: Vec<_> = wrapped[1..].iter().map(|run| scope.spawn(move || parse(run))).collect();
            let first = parse(&wrapped[0]);
            let head = serde_json::from_str::<StageState>(&head).ok();
            let mut runs = vec![first];
            runs.extend(helpers.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
            (head, runs)
        })
    };
    for &(at, byte) in saved.iter().rev() {
        text.replace_range(at..at + 1, char::from(byte).encode_utf8(&mut [0; 4]));
    }
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

/// The apps of one run, written `[{` run `}]`.
fn parse_run(wrapped: &str) -> Option<BTreeMap<String, AppState>> {
    serde_json::from_str::<(BTreeMap<String, AppState>,)>(wrapped).ok().map(|(apps,)| apps)
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
            if let Some(state) = runs(text, n) {
                assert_eq!(Some(state), whole(text), "{n} runs of:\n{text}");
            }
        }
    }

    /// [`decode_runs`] of a copy of `text`, checking the copy is as it was afterwards.
    fn runs(text: &str, n: usize) -> Option<StageState> {
        let mut copy = text.to_string();
        let state = decode_runs(&mut copy, n);
        assert_eq!(copy, text, "the text is put back");
        state
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
            assert_eq!(runs(&text, n).as_ref(), Some(&state), "{n} runs");
        }
    }

    #[test]
    fn small_or_empty_states_are_left_to_the_whole_parse() {
        let text = text(&large(12));
        assert_eq!(decode_in_chunks(&mut text.clone(), 4), None, "well under the size that pays");
        assert_eq!(runs(&text, 1), None);
        assert_eq!(runs(&self::text(&StageState::new("dev")), 2), None);
        assert_eq!(runs(&self::text(&small(&["one"])), 2), None, "one app, no cut");
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
            assert_eq!(runs(&text, n).as_ref(), Some(&state), "{n} runs");
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
            pretty.replacen("\"version\": 1", "\"version\": 3", 1),
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
                assert_eq!(runs(&case, n), expected, "depth {depth}, {n} runs");
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
