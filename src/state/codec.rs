//! The one encoding of a [`StageState`] document, shared by every store, so a file written
//! by the local store, an S3 object and the in-memory store are refused or accepted alike.
//!
//! Decoding checks the format `version` *before* the strict parse: a newer ferry may add
//! fields this build does not know, and that must read as "newer version", not "corrupt".

use std::sync::OnceLock;

use super::error::{Result, StateError};
use super::json_chunks;
use super::model::{StageState, STATE_FORMAT_VERSION};

/// The stored bytes of `state`: pretty JSON (reviewable, diffable) with a final newline,
/// version [`StageState::format_version`] whatever the `version` read (an adoption raises
/// it, removing the last adopted app lowers it again).
pub fn encode(state: &StageState) -> Vec<u8> {
    let version = state.format_version();
    let relabelled;
    // A copy only when the version changes: the first write after an import, say.
    let state = if state.version == version {
        state
    } else {
        relabelled = StageState { version, ..state.clone() };
        &relabelled
    };
    let mut bytes = serde_json::to_vec_pretty(state).expect("StageState serialises");
    bytes.push(b'\n');
    bytes
}

/// Parse stored bytes of stage `stage` found at `location` (named in every error).
pub fn decode(location: &str, stage: &str, bytes: &[u8]) -> Result<StageState> {
    decode_vec(location, stage, bytes.to_vec())
}

/// [`decode`] of bytes the caller gives away: a large file is decoded in pieces in place.
pub fn decode_vec(location: &str, stage: &str, bytes: Vec<u8>) -> Result<StageState> {
    // The common case, a well-formed file: parse it straight into the model, a large one
    // in pieces on several cores. Only a file that fails takes the slow path below, which
    // reads it as a JSON value first, so the version is checked before the strict parse and
    // the error names the bad field's path. UTF-8 is checked once for the whole file:
    // parsing from bytes checks every string again.
    let (parsed, bytes) = match String::from_utf8(bytes) {
        Ok(mut text) => {
            let parsed = json_chunks::decode_in_chunks(&mut text, decode_threads())
                .or_else(|| serde_json::from_str::<StageState>(&text).ok());
            (parsed, text.into_bytes())
        }
        Err(not_utf8) => (None, not_utf8.into_bytes()),
    };
    let corrupt = |message: String| StateError::Corrupt { location: location.to_string(), message };
    let state = match parsed {
        Some(state) => {
            check_version(location, u64::from(state.version), STATE_FORMAT_VERSION)?;
            state
        }
        None => decode_slowly(location, &bytes)?,
    };
    if state.stage != stage {
        return Err(corrupt(format!("it holds the state of stage `{}`, not `{stage}`", state.stage)));
    }
    // Read as the version `encode` will write (an older or zero `version` is read the same),
    // so what is read and what is written back are equal.
    let mut state = state;
    state.version = state.format_version();
    Ok(state)
}

/// The check every ferry makes before reading a state: a `version` above the newest it
/// `understands` is refused as newer (upgrade ferry), never read or rewritten.
fn check_version(location: &str, version: u64, understands: u32) -> Result<()> {
    if version > u64::from(understands) {
        return Err(StateError::NewerVersion {
            location: location.to_string(),
            version: u32::try_from(version).unwrap_or(u32::MAX),
        });
    }
    Ok(())
}

/// How many threads may decode one file: the cores, up to 4 (more pieces of a file of a few
/// megabytes would cost more in thread starts and copies than they save).
fn decode_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from).min(4))
}

/// Parse bytes that do not parse as a [`StageState`], to say why.
fn decode_slowly(location: &str, bytes: &[u8]) -> Result<StageState> {
    let corrupt = |message: String| StateError::Corrupt { location: location.to_string(), message };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".into()));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if let Some(Some(v)) = value.get("version").map(serde_json::Value::as_u64) {
        check_version(location, v, STATE_FORMAT_VERSION)?;
    }
    let state: StageState = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            corrupt(e.into_inner().to_string())
        } else {
            corrupt(format!("at `{path}`: {}", e.into_inner()))
        }
    })?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::ADOPTED_STATE_FORMAT_VERSION;

    #[test]
    fn round_trips_and_names_the_problem() {
        let s = StageState::new("dev");
        assert_eq!(decode("f.json", "dev", &encode(&s)).unwrap(), s);

        let err = decode("f.json", "dev", b"").unwrap_err().to_string();
        assert_eq!(err, "f.json is not a valid state file: the file is empty");

        let err = decode("f.json", "dev", b"{\"version\": 1,").unwrap_err().to_string();
        assert!(err.starts_with("f.json is not a valid state file: EOF"), "{err}");

        let mut v = serde_json::to_value(&s).unwrap();
        v["serial"] = "three".into();
        let err = decode("f.json", "dev", &serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
        assert!(err.contains("at `serial`"), "{err}");

        let err = decode("f.json", "prod", &encode(&s)).unwrap_err().to_string();
        assert!(err.contains("holds the state of stage `dev`, not `prod`"), "{err}");
    }

    #[test]
    fn a_large_file_decodes_and_is_refused_as_a_small_one() {
        // Large enough to be decoded in pieces where there are several cores.
        let state = crate::plan::fixture::applied(&crate::plan::fixture::large_stage(300, 2));
        let bytes = encode(&state);
        assert!(bytes.len() > 1 << 20);
        assert_eq!(decode("f.json", "bench", &bytes).unwrap(), state);

        let text = String::from_utf8(bytes).unwrap();
        let newer = text.replacen("\"version\": 1", &format!("\"version\": {}", STATE_FORMAT_VERSION + 1), 1);
        let err = decode("f.json", "bench", newer.as_bytes()).unwrap_err();
        assert!(
            matches!(err, StateError::NewerVersion { version, .. } if version == STATE_FORMAT_VERSION + 1),
            "{err}"
        );

        let err = decode("f.json", "prod", text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("holds the state of stage `bench`, not `prod`"), "{err}");

        let unknown = text.replacen("\"active\": {", "\"later\": 1,\n      \"active\": {", 200);
        let err = decode("f.json", "bench", unknown.as_bytes()).unwrap_err().to_string();
        let slow = decode_slowly("f.json", unknown.as_bytes()).unwrap_err().to_string();
        assert_eq!(err, slow);
        assert!(err.contains("at `apps.app-0000.later`: unknown field `later`"), "{err}");

        let cut = &text.as_bytes()[..text.len() / 2];
        let err = decode("f.json", "bench", cut).unwrap_err().to_string();
        assert_eq!(err, decode_slowly("f.json", cut).unwrap_err().to_string());
        assert!(err.contains("EOF while parsing"), "{err}");
    }

    fn adopted(state: &mut StageState) {
        state.apps.entry("web".into()).or_default().adopted = Some(crate::state::AdoptedService {
            service: "legacy-web".into(),
            family: "legacy-web".into(),
            container: "app".into(),
            ..Default::default()
        });
    }

    #[test]
    fn an_adopted_service_raises_the_version_and_older_files_read_as_before() {
        use crate::state::model::BASE_STATE_FORMAT_VERSION;
        // A version 1 file, as ferry wrote it before adoption existed, reads and is written
        // back as version 1.
        let old = br#"{"version": 1, "lineage": "l", "serial": 3, "stage": "dev", "apps": {"web": {}}}"#;
        let mut state = decode("f.json", "dev", old).unwrap();
        assert_eq!((state.version, state.serial), (1, 3));
        let text = String::from_utf8(encode(&state)).unwrap();
        assert!(text.contains("\"version\": 1,"), "{text}");

        // Adopted: version 2, which this build reads back.
        adopted(&mut state);
        let bytes = encode(&state);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"version\": 2,") && text.contains("\"adopted\""), "{text}");
        let read = decode("f.json", "dev", &bytes).unwrap();
        assert_eq!(read.apps, state.apps);
        assert_eq!(read.version, ADOPTED_STATE_FORMAT_VERSION);

        // What a ferry that understands version 1 only does with it: the version check it
        // makes before anything else refuses the file as newer, not as corrupt.
        let v = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["version"].as_u64().unwrap();
        let err = check_version("f.json", v, BASE_STATE_FORMAT_VERSION).unwrap_err();
        assert!(matches!(err, StateError::NewerVersion { version: 2, .. }), "{err}");
        assert_eq!(err.hint().as_deref(), Some("upgrade ferry; the file was left untouched"));
        // … and a file without an adopted service is still one it reads.
        let mut plain = read;
        plain.apps.get_mut("web").unwrap().adopted = None;
        let bytes = encode(&plain);
        let v = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["version"].as_u64().unwrap();
        assert!(check_version("f.json", v, BASE_STATE_FORMAT_VERSION).is_ok());
    }

    #[test]
    fn a_deployment_s_build_sources_raise_the_version_to_3_and_only_while_recorded() {
        use crate::plan::fixture;
        // An adopted app with a deployment, as `ferry commit` wrote it before builds were
        // recorded: version 2.
        let mut state = fixture::applied(&fixture::stage("dev", [fixture::app("web", 1)]));
        adopted(&mut state);
        let mut state = decode("f.json", "dev", &encode(&state)).unwrap();
        assert_eq!(state.version, ADOPTED_STATE_FORMAT_VERSION);
        let text = String::from_utf8(encode(&state)).unwrap();
        assert!(text.contains("\"version\": 2,") && !text.contains("\"build\""), "{text}");

        let build = crate::state::BuildSource {
            tag: "0123456789abcdef-dirty".into(),
            commit: Some("0123456789abcdef".into()),
            dirty: true,
            repo: Some("https://example.com/web.git".into()),
        };
        state.apps.get_mut("web").unwrap().history[0].build = Some(build.clone());
        let bytes = encode(&state);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"version\": 3,") && text.contains("\"build\""), "{text}");
        let read = decode("f.json", "dev", &bytes).unwrap();
        assert_eq!(read.apps["web"].history[0].build.as_ref(), Some(&build));
        assert_eq!(read, decode("again", "dev", &encode(&read)).unwrap());

        // A ferry that understands version 2 (adoption, no build sources) refuses it as newer.
        let v = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["version"].as_u64().unwrap();
        let err = check_version("f.json", v, ADOPTED_STATE_FORMAT_VERSION).unwrap_err();
        assert!(matches!(err, StateError::NewerVersion { version: 3, .. }), "{err}");

        // The fuzz seed of such a state (what the state_file target starts from) reads and
        // survives encode and decode, as the target asserts; so does one that says an older
        // version than it needs (it is read, and written as version 3).
        let seed = include_bytes!("../../fuzz/seeds/state_file/development-built.json");
        let read = decode("seed", "development", seed).unwrap();
        assert_eq!(read.version, STATE_FORMAT_VERSION);
        assert_eq!(decode("again", "development", &encode(&read)).unwrap(), read);
        let text = std::str::from_utf8(seed).unwrap().replacen("\"version\": 3", "\"version\": 1", 1);
        let understated = decode("seed", "development", text.as_bytes()).unwrap();
        assert_eq!(understated, read);

        // Once no deployment records a build (history trimmed, say), version 2 again.
        state.apps.get_mut("web").unwrap().history[0].build = None;
        let text = String::from_utf8(encode(&state)).unwrap();
        assert!(text.contains("\"version\": 2,"), "{text}");
    }

    #[test]
    fn a_newer_version_is_not_reported_as_corrupt() {
        // A newer format may carry fields this build rejects; the version decides first.
        let text = br#"{"version": 7, "lineage": "x", "serial": 1, "stage": "dev", "future": true}"#;
        let err = decode("f.json", "dev", text).unwrap_err();
        assert!(matches!(err, StateError::NewerVersion { version: 7, .. }), "{err}");
    }
}
