//! The recorded state of one stage: what ferry last applied, per app, with the deployment
//! history. Serialised as JSON (`.ferry/state/<stage>.json` or an S3 object); `version`
//! guards the format, `lineage` and `serial` guard against lost updates.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::timestamp;
use crate::config::{AppConfig, Digest};

/// The newest state file format this build reads and writes. Files with a higher version
/// are refused.
///
/// Version 2 adds `adopted` (a service `ferry import` adopted, which keeps its own names).
/// A ferry that knows only version 1 must not read such a state: it would deploy
/// `<stage>-<app>` beside the live service, or drop `adopted` on its next write. The
/// version is raised per file, not for every file: a state is written as version 2 only
/// while an app records an adopted service ([`StageState::format_version`]), so that teams
/// whose members run older ferry builds keep sharing every other stage, and version 1 files
/// read as they always did. Every ferry checks the version before anything else (`codec`),
/// so an older one says "newer than this ferry understands: upgrade ferry" rather than
/// calling the file corrupt.
///
/// Version 3 adds `build` to a deployment (the sources `ferry release create --source` built
/// its image from). A version 2 ferry would refuse the unknown field as a corrupt file, or,
/// were it lenient, drop it on its next write; it refuses the file as newer instead. Raised
/// per file as version 2 is: only while a deployment in the history records a build.
pub const STATE_FORMAT_VERSION: u32 = 3;

/// The format of a state with an adopted service and no deployment's build sources.
pub const ADOPTED_STATE_FORMAT_VERSION: u32 = 2;

/// The format of a state without anything newer in it: what ferry wrote before version 2.
pub const BASE_STATE_FORMAT_VERSION: u32 = 1;

/// Recorded state of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageState {
    /// Format version: what the file read said; written as [`StageState::format_version`].
    pub version: u32,
    /// A random id given when the state is first created; a saved plan or a write made
    /// against another lineage is refused.
    pub lineage: String,
    /// Incremented by every write; writes are conditional on the serial that was read.
    pub serial: u64,
    /// The stage this state belongs to.
    pub stage: String,
    /// Per app, by name.
    #[serde(default)]
    pub apps: BTreeMap<String, AppState>,
}

impl StageState {
    /// Fresh, empty state for a stage that has never been applied (serial 0, new lineage).
    pub fn new(stage: &str) -> StageState {
        StageState {
            version: BASE_STATE_FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            stage: stage.to_string(),
            apps: BTreeMap::new(),
        }
    }
}

/// What ferry has recorded about one app of a stage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppState {
    /// Every release id ever seen for this app (even ones since deleted from the file), so
    /// ids are never reused.
    #[serde(default)]
    pub releases: BTreeMap<u64, ReleaseRecord>,
    /// What the app runs now: the last deployment that succeeded. `None` before the first
    /// one, and after the app was removed.
    #[serde(default)]
    pub active: Option<ActiveDeployment>,
    /// Runtime revisions registered for this app (ECS task definitions; on the local
    /// runtime a content hash), oldest first. Pruned by the prune operation.
    #[serde(default)]
    pub revisions: Vec<RevisionRecord>,
    /// The newest deployments vN (`[state] keep_deployments` of them), oldest first, numbers
    /// consecutive; older ones are in the stage's archive (`state::archive`).
    #[serde(default)]
    pub history: Vec<Deployment>,
    /// A service ferry adopted (`ferry import`) rather than created: it keeps its own name,
    /// task definition family and container name. `None`: ferry's own `<stage>-<app>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<AdoptedService>,
}

/// The names an adopted ECS service keeps (see `AppState::adopted`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptedService {
    /// The service's name in its cluster.
    pub service: String,
    /// Its task definitions' family: new revisions are registered in it.
    pub family: String,
    /// The container that runs the app (its image, port, environment).
    pub container: String,
    /// The target-tracking policy of the CPU target when it is not ferry's `ferry-cpu`: one
    /// the service had when adopted, which ferry puts under its own name from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_policy: Option<String>,
    /// The same for the memory target (`ferry-memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_policy: Option<String>,
}

impl StageState {
    /// The format version this state is written as: the oldest that can say all of it
    /// (see [`STATE_FORMAT_VERSION`]).
    pub fn format_version(&self) -> u32 {
        if self.apps.values().any(|a| a.history.iter().any(|d| d.build.is_some())) {
            STATE_FORMAT_VERSION
        } else if self.apps.values().any(|a| a.adopted.is_some()) {
            ADOPTED_STATE_FORMAT_VERSION
        } else {
            BASE_STATE_FORMAT_VERSION
        }
    }

    /// The adopted services of the stage, by app.
    pub fn adopted(&self) -> BTreeMap<String, AdoptedService> {
        self.apps.iter().filter_map(|(app, s)| Some((app.clone(), s.adopted.clone()?))).collect()
    }
}

impl AppState {
    /// The highest release id ever recorded for this app.
    pub fn max_release_id(&self) -> u64 {
        self.releases.keys().next_back().copied().unwrap_or(0)
    }

    /// The number the next deployment gets. Saturates instead of wrapping to v0: a commit
    /// refuses to start when a number would pass `u64::MAX` (`apply::journal::check_counters`).
    pub fn next_deployment_number(&self) -> u64 {
        self.history.last().map_or(1, |d| d.number.saturating_add(1))
    }

    /// Deployment vN, when it exists.
    pub fn deployment(&self, number: u64) -> Option<&Deployment> {
        self.history.iter().find(|d| d.number == number)
    }
}

/// A release as ferry has seen it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRecord {
    pub digest: Digest,
    /// When ferry first recorded this release.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub first_seen: DateTime<Utc>,
    /// When it was first part of a succeeded deployment.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub first_deployed: Option<DateTime<Utc>>,
}

/// What an app runs after its last succeeded deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveDeployment {
    /// The deployment vN that made this active.
    pub deployment: u64,
    /// Image repository.
    pub image: String,
    pub release: u64,
    pub digest: Digest,
    pub scale: u32,
    /// Config snapshot: secret *references* only, never values.
    pub config: AppConfig,
    /// [`config_hash`] of `config`.
    pub config_hash: String,
    /// The runtime revision serving it (ECS task definition ARN; local: revision id).
    #[serde(default)]
    pub revision: Option<String>,
}

/// A runtime revision ferry registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionRecord {
    /// Runtime id (ECS task definition ARN; local: `<app>:<n>`).
    pub id: String,
    pub release: u64,
    pub digest: Digest,
    pub config_hash: String,
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub registered_at: DateTime<Utc>,
}

/// One deployment vN: an applied change of what an app runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// N in vN, sequential per app and stage from 1.
    pub number: u64,
    pub kind: DeploymentKind,
    pub release: u64,
    pub digest: Digest,
    pub scale: u32,
    pub config: AppConfig,
    pub config_hash: String,
    #[serde(default)]
    pub revision: Option<String>,
    /// Human description: "Activate release 3 (sha256:2b51cd…)", "Scale 2 → 4", …
    pub description: String,
    #[serde(default)]
    pub source: Source,
    /// For a release built by `ferry release create --source`: the sources it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSource>,
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub started_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub finished_at: Option<DateTime<Utc>>,
    pub status: DeploymentStatus,
    /// Why it failed or was aborted: last check output, exit code, log lines.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What kind of change a deployment was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentKind {
    /// First deployment, or activation of another release.
    Activate,
    /// Same release, new config.
    Config,
    /// Same release and config, new scale.
    Scale,
    Rollback,
    Promotion,
}

/// Outcome of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Started and not finished; after a crash, the next commit settles it.
    InProgress,
    Succeeded,
    Failed,
    Aborted,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::InProgress => "in_progress",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Aborted => "aborted",
        }
    }
}

/// Where a deployment came from: the git checkout and CI run that applied it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The first line of the commit's message, when the checkout holds that commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// CI run URL or id, e.g. from `GITHUB_RUN_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<String>,
    /// Local user and host that ran `ferry commit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The sources an image was built from by `ferry release create --source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSource {
    /// The image tag pushed: the commit, `COMMIT-dirty` with uncommitted changes, `src-HASH`
    /// outside git.
    pub tag: String,
    /// The source's git commit; `None` outside git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The checkout had uncommitted changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dirty: bool,
    /// The git repository (a URL without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

impl BuildSource {
    /// The commit's first 12 digits and `-dirty` for uncommitted changes; the tag outside git.
    pub fn short(&self) -> String {
        match &self.commit {
            // By characters: a state file's commit is not necessarily hex.
            Some(c) => format!("{}{}", c.chars().take(12).collect::<String>(), if self.dirty { "-dirty" } else { "" }),
            None => self.tag.clone(),
        }
    }
}

/// Stable hash of an app config: sha256 of its canonical JSON. Equal configs hash equal
/// regardless of file order or layout (maps are sorted, defaults are filled in).
pub fn config_hash(config: &AppConfig) -> String {
    let json = serde_json::to_vec(config).expect("AppConfig serialises");
    hex::encode(Sha256::digest(&json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_state_is_empty_with_fresh_lineage() {
        let a = StageState::new("dev");
        let b = StageState::new("dev");
        assert_eq!(a.serial, 0);
        assert_eq!(a.version, BASE_STATE_FORMAT_VERSION);
        assert_eq!(a.format_version(), BASE_STATE_FORMAT_VERSION);
        assert_ne!(a.lineage, b.lineage);
    }

    #[test]
    fn round_trips_through_json() {
        let mut s = StageState::new("dev");
        s.apps.insert("web".into(), AppState::default());
        let text = serde_json::to_string_pretty(&s).unwrap();
        assert_eq!(serde_json::from_str::<StageState>(&text).unwrap(), s);
    }
}
