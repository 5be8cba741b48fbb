//! Saved plans (`ferry plan -o FILE`): a changeset with what it was made against, so
//! `ferry commit FILE` applies exactly what was reviewed, or refuses when the state or the
//! inputs moved since. A plan file is sealed with the sha256 of its content
//! ([`SavedPlan::seal`]): one edited by hand (or damaged) is refused when read; `ferry commit`
//! also plans again and refuses a changeset that differs from the one the inputs give, which
//! catches an edit whose author sealed the file again.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::changeset::Changeset;
use crate::state::StageState;

/// The saved-plan format written by this build. Files with a higher version are refused.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A plan saved to a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// [`PLAN_FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// The ferry version that made it, for humans reading the file.
    pub ferry_version: String,
    pub stage: String,
    /// Lineage and serial of the state the plan was made against.
    pub lineage: String,
    pub serial: u64,
    /// [`input_hash`] of the stage file and ferry.toml the plan was made from.
    pub input_hash: String,
    pub created_at: DateTime<Utc>,
    /// Whether it was planned with `--allow-remove` (so `ferry commit` plans it again alike).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_remove: bool,
    pub changeset: Changeset,
    /// sha256 of the plan with this field empty ([`SavedPlan::seal`]); an older file without
    /// one is refused like an edited one.
    #[serde(default)]
    pub plan_sha256: String,
}

/// Why a plan file cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot read plan file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write plan file {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{} is not a ferry plan file: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("plan file {} has format version {found}, newer than this ferry understands ({PLAN_FORMAT_VERSION}); upgrade ferry, or make the plan again", path.display())]
    NewerVersion { path: PathBuf, found: u64 },
    #[error("plan file {} does not match its sha256 (`plan_sha256`): it was edited or damaged since `ferry plan -o` wrote it (or an older ferry, which did not seal plans, did); refusing it. Make the plan again: ferry plan -o FILE", path.display())]
    Tampered { path: PathBuf },
}

/// One thing that moved since a plan was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The state was recreated (or belongs to another project).
    Lineage { planned: String, now: String },
    /// Someone applied since.
    Serial { planned: u64, now: u64 },
    /// The stage file or ferry.toml changed.
    Inputs,
}

/// A saved plan that no longer matches the state or the files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StalePlan {
    pub stage: String,
    pub moved: Vec<Moved>,
}

impl fmt::Display for StalePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what: Vec<String> = self
            .moved
            .iter()
            .map(|m| match m {
                Moved::Lineage { planned, now } => {
                    format!("the state was recreated (lineage {planned} when planned, {now} now)")
                }
                Moved::Serial { planned, now } => {
                    format!("the state changed since (serial {planned} when planned, {now} now: someone applied)")
                }
                Moved::Inputs => "the stage file or ferry.toml changed since".to_string(),
            })
            .collect();
        write!(f, "the saved plan for stage `{}` is stale: {}; run `ferry plan` again", self.stage, what.join("; "))
    }
}

/// sha256 of the inputs a plan is made from. Each part is length-prefixed so moving bytes
/// from one file to the other changes the hash.
pub fn input_hash(stage_file: &[u8], project_file: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [stage_file, project_file] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

impl SavedPlan {
    /// A plan of `changeset`, made against `recorded` from inputs hashing to `input_hash`,
    /// sealed.
    pub fn new(changeset: Changeset, recorded: &StageState, input_hash: String, now: DateTime<Utc>) -> SavedPlan {
        let mut plan = SavedPlan {
            format_version: PLAN_FORMAT_VERSION,
            ferry_version: env!("CARGO_PKG_VERSION").to_string(),
            stage: changeset.stage.clone(),
            lineage: recorded.lineage.clone(),
            serial: recorded.serial,
            input_hash,
            created_at: now,
            allow_remove: false,
            changeset,
            plan_sha256: String::new(),
        };
        plan.seal();
        plan
    }

    /// The sha256 of everything in the plan but `plan_sha256` (its JSON, which serde writes
    /// in a fixed order).
    fn content_hash(&self) -> String {
        let unsealed = SavedPlan { plan_sha256: String::new(), ..self.clone() };
        hex::encode(Sha256::digest(serde_json::to_vec(&unsealed).expect("a saved plan serialises")))
    }

    /// Set `plan_sha256` to the hash of the plan as it is now (after any change to it).
    pub fn seal(&mut self) {
        self.plan_sha256 = self.content_hash();
    }

    /// `Ok` when nothing the plan was made against has moved; otherwise everything that did.
    pub fn check_fresh(&self, lineage: &str, serial: u64, input_hash: &str) -> Result<(), StalePlan> {
        let mut moved = Vec::new();
        if self.lineage != lineage {
            moved.push(Moved::Lineage { planned: self.lineage.clone(), now: lineage.to_string() });
        }
        if self.serial != serial {
            moved.push(Moved::Serial { planned: self.serial, now: serial });
        }
        if self.input_hash != input_hash {
            moved.push(Moved::Inputs);
        }
        if moved.is_empty() {
            Ok(())
        } else {
            Err(StalePlan { stage: self.stage.clone(), moved })
        }
    }

    /// The file's JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a saved plan serialises");
        text.push('\n');
        text
    }

    /// Parse a plan file's text; `path` names it in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<SavedPlan, SavedPlanError> {
        let parse = |message: String| SavedPlanError::Parse { path: path.to_path_buf(), message };
        // The version is read first so a newer file is refused as newer, not as garbage.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| parse(e.to_string()))?;
        let version = value.get("format_version").and_then(serde_json::Value::as_u64);
        match version {
            None => return Err(parse("no `format_version`".into())),
            Some(v) if v > u64::from(PLAN_FORMAT_VERSION) => {
                return Err(SavedPlanError::NewerVersion { path: path.to_path_buf(), found: v })
            }
            Some(_) => {}
        }
        let plan: SavedPlan =
            serde_path_to_error::deserialize(value).map_err(|e| parse(format!("at `{}`: {}", e.path(), e.inner())))?;
        if plan.plan_sha256 != plan.content_hash() {
            return Err(SavedPlanError::Tampered { path: path.to_path_buf() });
        }
        if let Err(e) = plan.changeset.apply_order() {
            return Err(parse(e.to_string()));
        }
        Ok(plan)
    }

    /// Read and check a plan file.
    pub fn read(path: &Path) -> Result<SavedPlan, SavedPlanError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SavedPlanError::Read { path: path.to_path_buf(), source })?;
        SavedPlan::from_json(path, &text)
    }

    /// Write the plan to `path`, atomically (a reader never sees half a plan) and private to
    /// its owner.
    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        crate::atomic_file::write(path, self.to_json().as_bytes(), crate::atomic_file::Mode::Private)
            .map_err(|source| SavedPlanError::Write { path: path.to_path_buf(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> SavedPlan {
        let mut state = StageState::new("dev");
        state.serial = 4;
        let cs = Changeset { stage: "dev".into(), ..Changeset::default() };
        SavedPlan::new(cs, &state, input_hash(b"a", b"b"), DateTime::<Utc>::UNIX_EPOCH)
    }

    #[test]
    fn fresh_when_nothing_moved_and_stale_naming_what_did() {
        let p = saved();
        assert!(p.check_fresh(&p.lineage, 4, &input_hash(b"a", b"b")).is_ok());
        let err = p.check_fresh(&p.lineage, 5, &input_hash(b"a", b"c")).unwrap_err();
        assert_eq!(err.moved, vec![Moved::Serial { planned: 4, now: 5 }, Moved::Inputs]);
        let msg = err.to_string();
        assert!(msg.contains("serial 4 when planned, 5 now") && msg.contains("stage file or ferry.toml"), "{msg}");
    }

    #[test]
    fn input_hash_separates_the_files() {
        assert_ne!(input_hash(b"ab", b"c"), input_hash(b"a", b"bc"));
    }

    #[test]
    fn round_trips_and_refuses_newer_or_broken_files() {
        let p = saved();
        let path = Path::new("plan.json");
        assert_eq!(SavedPlan::from_json(path, &p.to_json()).unwrap(), p);
        let newer = p.to_json().replace("\"format_version\": 1", "\"format_version\": 99");
        let e = SavedPlan::from_json(path, &newer).unwrap_err().to_string();
        assert!(e.contains("plan.json") && e.contains("version 99"), "{e}");
        // A version past u32 is named as written, not cut to "version 0".
        let huge = p.to_json().replace("\"format_version\": 1", "\"format_version\": 4294967296");
        let e = SavedPlan::from_json(path, &huge).unwrap_err().to_string();
        assert!(e.contains("version 4294967296"), "{e}");
        let e = SavedPlan::from_json(path, "{not json").unwrap_err().to_string();
        assert!(e.starts_with("plan.json is not a ferry plan file"), "{e}");
    }

    #[test]
    fn an_edited_or_unsealed_plan_is_refused_and_a_resealed_one_reads() {
        let p = saved();
        let path = Path::new("plan.json");
        let edited = p.to_json().replace("\"serial\": 4", "\"serial\": 5");
        let e = SavedPlan::from_json(path, &edited).unwrap_err().to_string();
        assert!(e.contains("plan.json does not match its sha256") && e.contains("ferry plan -o"), "{e}");
        let unsealed = p.to_json().replace(&format!("\"plan_sha256\": \"{}\"", p.plan_sha256), "\"plan_sha256\": \"\"");
        assert!(matches!(SavedPlan::from_json(path, &unsealed), Err(SavedPlanError::Tampered { .. })));
        let mut resealed: SavedPlan = serde_json::from_str(&edited).unwrap();
        resealed.seal();
        assert_eq!(SavedPlan::from_json(path, &resealed.to_json()).unwrap().serial, 5);
    }
}
