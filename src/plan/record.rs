//! Recording an operation's effect into state. The apply engine calls [`record`] after each
//! operation finishes and writes the state at once, so a crash leaves a true record; the
//! property tests call it for every operation of a plan and expect the next plan to be empty.

use chrono::{DateTime, Utc};

use super::changeset::Changeset;
use super::operation::{DeployKind, Operation, Running};
use crate::state::{
    ActiveDeployment, AppState, Deployment, DeploymentKind, DeploymentStatus, ReleaseRecord, RevisionRecord, Source,
    StageState,
};

/// How an operation ended, as the apply engine saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `Succeeded`, `Failed` or `Aborted` (`InProgress` records nothing).
    pub status: DeploymentStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// For a registered revision: the runtime's id (ECS task definition ARN). `None`: ferry
    /// names it `<app>:<n>`.
    pub revision: Option<String>,
    /// Why it failed or was aborted.
    pub reason: Option<String>,
    /// Where the change came from (git commit, CI run, user).
    pub source: Source,
}

impl Outcome {
    /// A success that started and finished at `at`.
    pub fn succeeded(at: DateTime<Utc>) -> Outcome {
        Outcome {
            status: DeploymentStatus::Succeeded,
            started_at: at,
            finished_at: at,
            revision: None,
            reason: None,
            source: Source::default(),
        }
    }

    /// A failure (or, with `DeploymentStatus::Aborted`, an abort) for `reason`.
    pub fn failed(status: DeploymentStatus, at: DateTime<Utc>, reason: impl Into<String>) -> Outcome {
        Outcome { status, reason: Some(reason.into()), ..Outcome::succeeded(at) }
    }

    /// The same outcome with the runtime's revision id.
    pub fn with_revision(mut self, id: impl Into<String>) -> Outcome {
        self.revision = Some(id.into());
        self
    }
}

/// Write what `op` did into `state`. A failed or aborted deploy or scale is recorded in the
/// history and leaves the active deployment as it was; other failed operations record
/// nothing (they changed nothing that state tracks).
pub fn record(op: &Operation, state: &mut StageState, outcome: &Outcome) {
    let succeeded = outcome.status == DeploymentStatus::Succeeded;
    if outcome.status == DeploymentStatus::InProgress {
        return;
    }
    let app_state = state.apps.entry(op.app().to_string()).or_default();
    match op {
        Operation::VerifyImage { release, digest, .. } if succeeded => {
            app_state.releases.entry(*release).or_insert_with(|| ReleaseRecord {
                digest: digest.clone(),
                first_seen: outcome.finished_at,
                first_deployed: None,
            });
        }
        Operation::RegisterRevision { app, release, digest, config_hash, .. } if succeeded => {
            let id = outcome.revision.clone().unwrap_or_else(|| next_revision_id(app, app_state));
            app_state.revisions.push(RevisionRecord {
                id,
                release: *release,
                digest: digest.clone(),
                config_hash: config_hash.clone(),
                registered_at: outcome.finished_at,
            });
        }
        Operation::Deploy { kind, to, description, record_as, .. } => {
            let kind = record_as.unwrap_or(match kind {
                DeployKind::Activate => DeploymentKind::Activate,
                DeployKind::Config => DeploymentKind::Config,
            });
            let revision = app_state
                .revisions
                .iter()
                .rev()
                .find(|r| r.release == to.release && r.digest == to.digest && r.config_hash == to.config_hash)
                .map(|r| r.id.clone());
            push_deployment(app_state, kind, to, to.scale, revision, description, outcome);
        }
        Operation::Scale { running, to, description, .. } => {
            let revision = app_state.active.as_ref().and_then(|a| a.revision.clone());
            push_deployment(app_state, DeploymentKind::Scale, running, *to, revision, description, outcome);
        }
        Operation::RemoveApp { .. } if succeeded => app_state.active = None,
        Operation::PruneRevisions { ids, .. } if succeeded => app_state.revisions.retain(|r| !ids.contains(&r.id)),
        _ => {}
    }
}

fn push_deployment(
    app_state: &mut AppState,
    kind: DeploymentKind,
    what: &Running,
    scale: u32,
    revision: Option<String>,
    description: &str,
    outcome: &Outcome,
) {
    let number = app_state.next_deployment_number();
    app_state.history.push(Deployment {
        number,
        kind,
        release: what.release,
        digest: what.digest.clone(),
        scale,
        config: what.config.clone(),
        config_hash: what.config_hash.clone(),
        revision: revision.clone(),
        description: description.to_string(),
        source: outcome.source.clone(),
        build: None,
        started_at: outcome.started_at,
        finished_at: Some(outcome.finished_at),
        status: outcome.status,
        reason: outcome.reason.clone(),
    });
    if outcome.status != DeploymentStatus::Succeeded {
        return;
    }
    let release = app_state.releases.entry(what.release).or_insert_with(|| ReleaseRecord {
        digest: what.digest.clone(),
        first_seen: outcome.started_at,
        first_deployed: None,
    });
    release.first_deployed.get_or_insert(outcome.finished_at);
    app_state.active = Some(ActiveDeployment {
        deployment: number,
        image: what.image.clone(),
        release: what.release,
        digest: what.digest.clone(),
        scale,
        config: what.config.clone(),
        config_hash: what.config_hash.clone(),
        revision,
    });
}

/// `<app>:<n>`, one more than the highest such id ever registered (pruned ones included,
/// as far as the remaining ids and the history tell), so ids are not reused.
fn next_revision_id(app: &str, state: &AppState) -> String {
    let prefix = format!("{app}:");
    let number = |id: &str| id.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok());
    let highest = state
        .revisions
        .iter()
        .filter_map(|r| number(&r.id))
        .chain(state.history.iter().filter_map(|d| d.revision.as_deref().and_then(number)))
        .max()
        .unwrap_or(0);
    format!("{prefix}{}", highest + 1)
}

impl Changeset {
    /// Record the success of the operation `op_id` at `now`, with the runtime's revision id
    /// when it registered one. Returns `false` when the changeset has no such operation.
    pub fn record_success(
        &self,
        op_id: &str,
        state: &mut StageState,
        now: DateTime<Utc>,
        revision: Option<String>,
    ) -> bool {
        let Some(op) = self.operation(op_id) else { return false };
        let mut outcome = Outcome::succeeded(now);
        outcome.revision = revision;
        record(op, state, &outcome);
        true
    }
}
