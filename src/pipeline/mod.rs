//! How a release travels from development to production: the pipeline of `ferry.toml`
//! (ordered steps of one or more stages), promotion of a digest into every stage of the next
//! step, the status checks a step requires first, and image tracking (`track = "TAG"`).
//!
//! - [`records`]: the project-level record store (status checks, image imports, pending
//!   promotions) beside the stages' state, in `.ferry/` or the S3 state bucket.
//! - [`status`]: status checks and their history.
//! - [`promotion`]: what a promotion edits, and the label its deployments are recorded with.
//! - [`tracking`]: `images sync` — follow registry tags.
//! - [`view`]: the pipeline as `ferry pipeline show` draws it.
//!
//! Everything here edits stage files or records; applying is left to the apply engine, as
//! for any other change of intent.

pub mod promotion;
pub mod records;
pub mod status;
pub mod tracking;
pub mod view;

use crate::config::{App, Diagnostics, PipelineStep, Project};
use crate::edit::EditError;
use crate::state::{AppState, StateError};

pub use records::{open_records, RecordError, RecordStore};
pub use status::{CheckState, StatusLog, StatusReport, StatusStore, UnmetCheck};

/// Result alias for pipeline operations.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can stop a pipeline command.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A stage or project file has problems (shown as located diagnostics).
    #[error("{0}")]
    Config(Diagnostics),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The stage is in no pipeline step.
    #[error("stage `{0}` is in no pipeline step of ferry.toml")]
    NotInPipeline(String),
    /// No step of that name.
    #[error("ferry.toml has no pipeline step `{0}`")]
    UnknownStep(String),
    /// Promotion from the last step without `--to`.
    #[error("stage `{stage}` is in the last pipeline step (`{step}`); there is no next step to promote into")]
    LastStep { stage: String, step: String },
    /// The stage file declares no such app.
    #[error("stage `{stage}` has no app `{app}`")]
    UnknownApp { stage: String, app: String },
    /// The app has no active release to promote.
    #[error("app `{app}` of stage `{stage}` has no active release")]
    NoActiveRelease { stage: String, app: String },
    /// `--release ID` that the source stage does not declare.
    #[error("app `{app}` of stage `{stage}` declares no release {release}")]
    UnknownRelease { stage: String, app: String, release: u64 },
    /// Required checks of the target step are missing or not `success`.
    #[error("{}", checks_message(.app, .digest, .step, .unmet))]
    ChecksNotMet { app: String, digest: String, step: String, unmet: Vec<UnmetCheck> },
}

fn checks_message(app: &str, digest: &str, step: &str, unmet: &[UnmetCheck]) -> String {
    let mut s = format!(
        "not promoting {app} {digest} into step `{step}`: {} required check{} not successful",
        unmet.len(),
        if unmet.len() == 1 { " is" } else { "s are" }
    );
    for u in unmet {
        s.push_str(&format!("\n  - {u}"));
    }
    s
}

impl From<Diagnostics> for PipelineError {
    fn from(d: Diagnostics) -> Self {
        PipelineError::Config(d)
    }
}

impl PipelineError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            PipelineError::State(e) => e.hint(),
            PipelineError::Registry(e) => e.hint(),
            PipelineError::ChecksNotMet { app, digest, .. } => Some(format!(
                "checks are reported with `ferry status set {app} {digest} CONTEXT success`; see `ferry status list {app} \
                 {digest}`"
            )),
            PipelineError::NotInPipeline(_) | PipelineError::UnknownStep(_) | PipelineError::LastStep { .. } => {
                Some("see the steps with `ferry pipeline show`, or pass --to STEP".into())
            }
            PipelineError::UnknownApp { .. } => {
                Some("`ferry promote APP --from STAGE --to-app NAME` promotes into an app of another name".into())
            }
            _ => None,
        }
    }
}

/// The index of the step holding `stage`.
pub fn step_of(project: &Project, stage: &str) -> Option<usize> {
    project.pipeline.iter().position(|s| s.stages.iter().any(|n| n == stage))
}

/// The step named `name`.
pub fn step_named<'a>(project: &'a Project, name: &str) -> Result<&'a PipelineStep> {
    project.pipeline.iter().find(|s| s.name == name).ok_or_else(|| PipelineError::UnknownStep(name.to_string()))
}

/// The id the next release of `app` gets: one above both the highest id in the stage file
/// and the highest ever recorded in state, so ids deleted from the file are never reused.
// The release commands on another branch compute the same rule inline; one shared helper
// is the aim once both have landed.
pub fn next_release_id(app: &App, recorded: Option<&AppState>) -> u64 {
    let in_file = app.releases.keys().next_back().copied().unwrap_or(0);
    // Saturates instead of wrapping to 0: u64::MAX is then taken, and adding it is refused.
    in_file.max(recorded.map_or(0, AppState::max_release_id)).saturating_add(1)
}
