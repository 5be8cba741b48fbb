//! Promotion: copy a release's digest (never its config) from an app in one stage to the
//! same app — or an app of another name (`--to-app`, as Akkeris promotes to named apps) — in
//! every stage of the next pipeline step.
//!
//! [`prepare`] works out, per target stage, the edit of its stage file: the digest is added
//! as the app's next release and activated, or — when the stage already declares it —
//! that release is re-activated, never duplicated. Scale, config and secrets stay the
//! target's own. Required checks of the target step are checked first.
//!
//! So the deployments that apply it are recorded "Promotion from STAGE (release N)" even
//! when the edit is committed later by a plain `ferry commit`, [`record_pending`] notes each
//! promoted (stage, app, release, digest) in the record store as `promotions/<stage>`, and
//! [`label_deploys`] relabels a planned deploy of exactly that release until a deployment
//! of it succeeds.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::{self, RecordStore};
use super::status::StatusLog;
use super::{next_release_id, step_named, step_of, PipelineError, Result};
use crate::config::{self, Digest, PipelineStep, Project, Stage};
use crate::edit::StageEdit;
use crate::plan::{Changeset, Operation};
use crate::state::{open_store, DeploymentKind, DeploymentStatus, StageState};

/// What a promotion does to one target stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetChange {
    /// The digest is new to the stage: declared as release N and activated.
    NewRelease,
    /// The stage already declares the digest as release N: it is activated again.
    Reactivate,
    /// Release N with the digest is already the active one: nothing to edit.
    AlreadyActive,
}

/// One target stage of a promotion, with its edited (not yet written) stage file.
#[derive(Debug)]
pub struct Target {
    pub stage: String,
    /// The stage file, relative to the project root.
    pub file: PathBuf,
    pub edit: StageEdit,
    /// The release id the digest has (or gets) in this stage.
    pub release: u64,
    pub change: TargetChange,
}

/// A prepared promotion.
#[derive(Debug)]
pub struct Promotion {
    /// The app promoted from, in the source stage.
    pub app: String,
    /// The app promoted into, in each target stage (`app` unless `--to-app`).
    pub target_app: String,
    pub from_stage: String,
    pub from_release: u64,
    pub digest: Digest,
    /// The step promoted into.
    pub step: PipelineStep,
    pub targets: Vec<Target>,
}

impl Promotion {
    /// What deployments applying it are recorded as.
    pub fn description(&self) -> String {
        describe(&self.from_stage, self.source_app_if_renamed(), self.from_release)
    }

    /// The source app, when the target app has another name.
    fn source_app_if_renamed(&self) -> Option<&str> {
        (self.app != self.target_app).then_some(self.app.as_str())
    }
}

/// "Promotion from STAGE (release N)", N being the release's id in the source stage; "Promotion
/// from STAGE (APP release N)" when it came from an app of another name.
pub fn describe(from_stage: &str, from_app: Option<&str>, from_release: u64) -> String {
    match from_app {
        Some(app) => format!("Promotion from {from_stage} ({app} release {from_release})"),
        None => format!("Promotion from {from_stage} (release {from_release})"),
    }
}

/// Where a promotion goes: the step (default: the one after the source stage's) and the app
/// in its stages (default: the app of the same name).
#[derive(Debug, Clone, Copy, Default)]
pub struct Destination<'a> {
    pub step: Option<&'a str>,
    pub app: Option<&'a str>,
}

/// Work out the promotion of `app` from `from_stage` (its active release, or `release`) into
/// `to`, refusing when a required check of that step is not `success` for the digest.
/// Nothing is written.
pub fn prepare(
    project: &Project,
    status: &StatusLog,
    app: &str,
    from_stage: &str,
    release: Option<u64>,
    to: Destination<'_>,
) -> Result<Promotion> {
    // A preview (`pr-12`) comes before every step: it promotes into the first.
    let preview = crate::preview::load_stage(project, from_stage).transpose()?;
    let from_index = match &preview {
        Some(_) => None,
        None => Some(step_of(project, from_stage).ok_or_else(|| PipelineError::NotInPipeline(from_stage.into()))?),
    };
    let target_app = to.app.unwrap_or(app);
    let step = match (to.step, from_index) {
        (Some(name), _) => step_named(project, name)?.clone(),
        (None, Some(i)) => project.pipeline.get(i + 1).cloned().ok_or_else(|| PipelineError::LastStep {
            stage: from_stage.into(),
            step: project.pipeline[i].name.clone(),
        })?,
        (None, None) => {
            project.pipeline.first().cloned().ok_or_else(|| PipelineError::NotInPipeline(from_stage.into()))?
        }
    };
    let source = match preview {
        Some(stage) => stage,
        None => config::load_stage(project, from_stage)?,
    };
    let source_app =
        source.apps.get(app).ok_or_else(|| PipelineError::UnknownApp { stage: from_stage.into(), app: app.into() })?;
    let from_release = match release.or(source_app.active) {
        Some(id) => id,
        None => return Err(PipelineError::NoActiveRelease { stage: from_stage.into(), app: app.into() }),
    };
    let digest = source_app.releases.get(&from_release).cloned().ok_or_else(|| PipelineError::UnknownRelease {
        stage: from_stage.into(),
        app: app.into(),
        release: from_release,
    })?;

    let unmet = status.unmet(&digest, &step.required_checks);
    if !unmet.is_empty() {
        return Err(PipelineError::ChecksNotMet {
            app: app.into(),
            digest: digest.to_string(),
            step: step.name.clone(),
            unmet,
        });
    }

    let store = open_store(project)?;
    let mut targets = Vec::new();
    for name in step.stages.iter().filter(|s| *s != from_stage) {
        let stage = config::load_stage(project, name)?;
        let recorded = store.read(name)?;
        targets.push(target(project, &stage, recorded.as_ref(), target_app, &digest)?);
    }
    Ok(Promotion {
        app: app.into(),
        target_app: target_app.into(),
        from_stage: from_stage.into(),
        from_release,
        digest,
        step,
        targets,
    })
}

fn target(
    project: &Project,
    stage: &Stage,
    recorded: Option<&StageState>,
    app: &str,
    digest: &Digest,
) -> Result<Target> {
    let declared =
        stage.apps.get(app).ok_or_else(|| PipelineError::UnknownApp { stage: stage.name.clone(), app: app.into() })?;
    let (file, mut edit) = open_edit(project, stage)?;
    let held = declared.releases.iter().find(|(_, d)| *d == digest).map(|(id, _)| *id);
    let (release, change) = match held {
        Some(id) if declared.active == Some(id) => (id, TargetChange::AlreadyActive),
        Some(id) => {
            edit.set_active(app, id)?;
            (id, TargetChange::Reactivate)
        }
        None => {
            let id = next_release_id(declared, recorded.and_then(|s| s.apps.get(app)));
            edit.add_release(app, id, digest)?;
            edit.set_active(app, id)?;
            (id, TargetChange::NewRelease)
        }
    };
    Ok(Target { stage: stage.name.clone(), file, edit, release, change })
}

/// Open a stage's file for a format-preserving edit; the path is relative to the root.
pub fn open_edit(project: &Project, stage: &Stage) -> Result<(PathBuf, StageEdit)> {
    let rel = config::stage_refs(&project.root)
        .into_iter()
        .find(|r| r.name == stage.name)
        .map_or_else(|| stage.file.clone(), |r| r.path);
    let text = std::fs::read_to_string(project.root.join(&rel))
        .map_err(|source| PipelineError::Io { path: rel.display().to_string(), source })?;
    let edit = StageEdit::parse(&rel, &text).map_err(|d| PipelineError::Config(config::Diagnostics(vec![d])))?;
    Ok((rel, edit))
}

/// Write an edited stage file atomically, keeping its mode and any symlink to it.
pub fn write_edit(root: &Path, file: &Path, edit: &StageEdit) -> Result<()> {
    crate::atomic_file::write(&root.join(file), edit.to_string().as_bytes(), crate::atomic_file::Mode::Keep)
        .map_err(|source| PipelineError::Io { path: file.display().to_string(), source })
}

/// A promoted release not yet deployed in its stage: the document `promotions/<stage>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPromotion {
    /// The app promoted into.
    pub app: String,
    pub release: u64,
    pub digest: Digest,
    pub from_stage: String,
    /// The app promoted from, when it has another name than `app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_app: Option<String>,
    pub from_release: u64,
    pub at: DateTime<Utc>,
}

/// Every promotion into one stage, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionLog {
    #[serde(default)]
    pub promotions: Vec<PendingPromotion>,
}

fn key(stage: &str) -> String {
    format!("promotions/{stage}")
}

/// Note the promotion's changed targets, so their deployments are labelled as promotions.
pub fn record_pending(records: &dyn RecordStore, promotion: &Promotion, at: DateTime<Utc>) -> Result<()> {
    for t in promotion.targets.iter().filter(|t| t.change != TargetChange::AlreadyActive) {
        let pending = PendingPromotion {
            app: promotion.target_app.clone(),
            release: t.release,
            digest: promotion.digest.clone(),
            from_stage: promotion.from_stage.clone(),
            from_app: promotion.source_app_if_renamed().map(str::to_string),
            from_release: promotion.from_release,
            at,
        };
        records::update(records, &key(&t.stage), |log: &mut PromotionLog| {
            // Keep the log short: only promotions that may still be deployed matter.
            log.promotions.retain(|p| p.app != pending.app || p.release != pending.release);
            log.promotions.push(pending.clone());
        })?;
    }
    Ok(())
}

/// Relabel the deploys of `cs` that apply a pending promotion into its stage, given the
/// stage's recorded state: description "Promotion from STAGE (release N)", recorded as a
/// [`DeploymentKind::Promotion`]. A promotion counts as pending until a deployment of its
/// release succeeds after it was made.
pub fn label_deploys(records: &dyn RecordStore, recorded: &StageState, cs: &mut Changeset) -> Result<()> {
    let log: PromotionLog = records::load(records, &key(&cs.stage))?;
    if log.promotions.is_empty() {
        return Ok(());
    }
    for op in &mut cs.operations {
        let Operation::Deploy { app, to, description, record_as, .. } = op else { continue };
        let pending = log.promotions.iter().rev().find(|p| {
            &p.app == app
                && p.release == to.release
                && p.digest == to.digest
                && !recorded.apps.get(app).is_some_and(|s| {
                    s.history.iter().any(|d| {
                        d.release == p.release && d.status == DeploymentStatus::Succeeded && d.started_at >= p.at
                    })
                })
        });
        if let Some(p) = pending {
            *description = describe(&p.from_stage, p.from_app.as_deref(), p.from_release);
            *record_as = Some(DeploymentKind::Promotion);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::records::InMemoryRecordStore;
    use crate::plan::fixture::{app, applied, apply, digest, fixed_time, stage};
    use crate::plan::{plan, record, Outcome, PlanOptions};

    fn deploy_of(cs: &Changeset) -> (&str, Option<DeploymentKind>) {
        cs.operations
            .iter()
            .find_map(|op| match op {
                Operation::Deploy { description, record_as, .. } => Some((description.as_str(), *record_as)),
                _ => None,
            })
            .expect("a deploy")
    }

    #[test]
    fn a_pending_promotion_labels_its_deploy_until_it_succeeded_once() {
        let records = InMemoryRecordStore::default();
        let mut state = applied(&stage("prod", [app("web", 1)]));
        let two = stage("prod", [app("web", 2)]);
        let pending = PendingPromotion {
            app: "web".into(),
            release: 2,
            digest: digest("web", 2),
            from_stage: "development".into(),
            from_app: None,
            from_release: 7,
            at: fixed_time() - chrono::Duration::hours(1),
        };
        // A promotion of another digest under the same id, or into another stage, is not it.
        let other = PendingPromotion { digest: digest("web", 9), ..pending.clone() };
        records::update(&records, "promotions/prod", |log: &mut PromotionLog| log.promotions.push(other.clone()))
            .unwrap();
        let mut cs = plan(&two, &state, &PlanOptions::default()).unwrap();
        label_deploys(&records, &state, &mut cs).unwrap();
        assert!(deploy_of(&cs).0.starts_with("Activate release 2"), "{}", deploy_of(&cs).0);
        assert_eq!(deploy_of(&cs).1, None);

        records::update(&records, "promotions/prod", |log: &mut PromotionLog| log.promotions.push(pending.clone()))
            .unwrap();
        let mut cs = plan(&two, &state, &PlanOptions::default()).unwrap();
        label_deploys(&records, &state, &mut cs).unwrap();
        assert_eq!(deploy_of(&cs), ("Promotion from development (release 7)", Some(DeploymentKind::Promotion)));
        for op in cs.apply_order().unwrap() {
            record(op, &mut state, &Outcome::succeeded(fixed_time()));
        }
        let last = state.apps["web"].history.last().unwrap();
        assert_eq!(last.kind, DeploymentKind::Promotion);
        assert_eq!(last.description, "Promotion from development (release 7)");

        // Back to 1 and forward to 2 again later: an ordinary activation now.
        apply(
            &stage(
                "prod",
                [app("web", 2)].map(|mut a| {
                    a.active = Some(1);
                    a
                }),
            ),
            &mut state,
        );
        let mut cs = plan(&two, &state, &PlanOptions::default()).unwrap();
        label_deploys(&records, &state, &mut cs).unwrap();
        assert!(deploy_of(&cs).0.starts_with("Activate release 2"), "{}", deploy_of(&cs).0);
        assert_eq!(deploy_of(&cs).1, None);
    }
}
