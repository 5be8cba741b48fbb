//! Live facts for `ferry plan --refresh`: what a runtime actually runs for each app the
//! recorded state says is active, gathered before planning so the planner itself stays pure
//! (`plan::plan_refreshed` compares them with recorded state).
//!
//! A runtime reports, per app, whether its service exists, which revision it runs, its
//! desired count, and how that revision differs from the one the recorded release renders
//! to ([`DefinitionChange`]s, already normalised by the runtime: an ECS task definition is
//! compared field by field with ECS's server-side defaults filled in on both sides, so an
//! untouched service reports nothing). The default, for runtimes without a richer notion of
//! a revision, compares revision ids ([`by_revision_id`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{RevisionId, RevisionSpec, Runtime, RuntimeResult, ServiceState, ServiceStatus};
use crate::state::StageState;

/// One field of a revision that differs between the recorded release and what runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionChange {
    /// `container.environment.FEATURE_X`, `cpu`, `revision`, …
    pub field: String,
    /// The recorded value; `""` when the recorded revision has no such field.
    pub recorded: String,
    /// The live value; `""` when the live revision has no such field.
    pub live: String,
}

/// How the [`DefinitionChange`] fields of a service's own settings begin (ECS: load
/// balancers, capacity providers, Exec, tags…), as opposed to its revision's.
pub const SERVICE_FIELD: &str = "service.";

/// What the recorded state says an app runs, for the runtime to compare with.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedService {
    /// The recorded release and config as a revision spec.
    pub spec: RevisionSpec,
    /// The revision id recorded for it, when one was.
    pub revision: Option<RevisionId>,
}

/// What a runtime runs for one app.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveService {
    pub app: String,
    /// Whether the runtime has an active service for the app.
    pub present: bool,
    /// The revision the service runs.
    pub revision: Option<RevisionId>,
    /// Its desired count.
    pub desired: u32,
    /// How its revision differs from the recorded one, then how the service's own settings
    /// differ from those recorded (`service.…` fields, where the runtime has any); empty:
    /// the same.
    pub changes: Vec<DefinitionChange>,
    /// How many of its tasks run, where the runtime counts them cheaply (the local agent);
    /// `None` where it does not (ECS, whose drift check looks at definitions only).
    pub running: Option<u32>,
    /// Why the service is missing, when the runtime can tell (`the local agent is not
    /// running`).
    pub cause: Option<String>,
}

/// The live services of a stage, by app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveStage {
    pub services: BTreeMap<String, LiveService>,
}

/// The recorded active deployments of `recorded` as runtimes compare them.
pub fn recorded_services(recorded: &StageState) -> Vec<RecordedService> {
    recorded
        .apps
        .iter()
        .filter_map(|(app, s)| {
            let a = s.active.as_ref()?;
            Some(RecordedService {
                spec: RevisionSpec {
                    app: app.clone(),
                    release: a.release,
                    image: a.image.clone(),
                    digest: a.digest.clone(),
                    config: a.config.clone(),
                    local_dir: None,
                },
                revision: a.revision.clone().map(RevisionId),
            })
        })
        .collect()
}

/// Ask `runtime` what it runs for every app `recorded` says is active.
pub async fn gather(runtime: &dyn Runtime, recorded: &StageState) -> RuntimeResult<LiveStage> {
    let expected = recorded_services(recorded);
    if expected.is_empty() {
        return Ok(LiveStage::default());
    }
    let services = runtime.live(&expected).await?;
    Ok(LiveStage { services: services.into_iter().map(|s| (s.app.clone(), s)).collect() })
}

/// The generic comparison from `observe`d services (in the order of `recorded`): a revision
/// other than the recorded one is a change of the one field `revision`.
pub fn by_revision_id(recorded: &[RecordedService], observed: &[ServiceStatus]) -> Vec<LiveService> {
    recorded
        .iter()
        .zip(observed)
        .map(|(r, s)| {
            let present = s.state == ServiceState::Active;
            let changes = match (&r.revision, &s.revision) {
                (Some(rec), Some(live)) if present && rec != live => vec![DefinitionChange {
                    field: "revision".into(),
                    recorded: rec.to_string(),
                    live: live.to_string(),
                }],
                _ => Vec::new(),
            };
            LiveService {
                app: r.spec.app.clone(),
                present,
                revision: s.revision.clone(),
                desired: s.desired,
                changes,
                running: Some(s.running),
                cause: None,
            }
        })
        .collect()
}
