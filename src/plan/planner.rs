//! `plan`: diff a desired stage against its recorded state into a changeset. Pure: no I/O,
//! no clock, no randomness, so the same inputs always give the same plan.
//!
//! Models are compared, never text, so reordering or reformatting a stage file plans
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::changeset::{Changeset, Edge};
use super::diff::{config_diff, describe_config_change, short_digest};
use super::drift::{plan_back, Drift};
use super::operation::{DeployKind, Operation, Running};
use crate::config::{App, Digest, RunOn, Stage};
use crate::runtime::live::LiveStage;
use crate::state::{config_hash, AppState, StageState};

/// How many inactive runtime revisions an app keeps: enough to roll back a few deployments
/// without registering again, few enough that ECS task definition lists stay readable.
pub const KEEP_REVISIONS: usize = 5;

/// Choices that widen what a plan may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Plan removals of apps that are recorded as running but no longer run by the file.
    pub allow_remove: bool,
}

/// Why an app would be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// The app is not in the stage file any more.
    NotInFile,
    /// The app is declared, but with no `active` release.
    NoActiveRelease,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Removals were needed and not allowed.
    #[error("{}", removal_message(.stage, .apps))]
    RemovalNotAllowed { stage: String, apps: Vec<(String, RemovalReason)> },
    /// A release id was bound to another digest than the one recorded: release ids are
    /// immutable, and reusing one would make history lie.
    #[error("{}", rebound_message(.0))]
    ReleaseRebound(Vec<ReboundRelease>),
}

/// A release whose digest in the file differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReboundRelease {
    pub app: String,
    pub release: u64,
    pub recorded: Digest,
    pub declared: Digest,
}

fn removal_message(stage: &str, apps: &[(String, RemovalReason)]) -> String {
    let list: Vec<String> = apps
        .iter()
        .map(|(app, why)| match why {
            RemovalReason::NotInFile => format!("`{app}` (no longer in the stage file)"),
            RemovalReason::NoActiveRelease => format!("`{app}` (declared with no `active` release)"),
        })
        .collect();
    format!(
        "stage `{stage}`: the plan would stop and remove {} {}; pass --allow-remove to plan {}",
        if apps.len() == 1 { "app" } else { "apps" },
        list.join(", "),
        if apps.len() == 1 { "its removal" } else { "their removal" }
    )
}

fn rebound_message(releases: &[ReboundRelease]) -> String {
    let list: Vec<String> = releases
        .iter()
        .map(|r| {
            format!(
                "release {} of app `{}` is {} in the stage file but was recorded as {}",
                r.release,
                r.app,
                short_digest(&r.declared),
                short_digest(&r.recorded)
            )
        })
        .collect();
    format!("{}; release ids are immutable: declare the new digest as a new release id", list.join("; "))
}

impl fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemovalReason::NotInFile => "not in the stage file",
            RemovalReason::NoActiveRelease => "no active release",
        })
    }
}

/// Diff `desired` against `recorded` into a changeset.
pub fn plan(desired: &Stage, recorded: &StageState, options: &PlanOptions) -> Result<Changeset, PlanError> {
    plan_with(desired, recorded, None, options)
}

/// [`plan`], and where `live` (what the runtime runs, gathered by `plan --refresh`) drifted
/// from `recorded`, the drift (in [`Changeset::drift`]) and the operations that put it back
/// ([`super::drift`]).
pub fn plan_refreshed(
    desired: &Stage,
    recorded: &StageState,
    live: &LiveStage,
    options: &PlanOptions,
) -> Result<Changeset, PlanError> {
    plan_with(desired, recorded, Some(live), options)
}

fn plan_with(
    desired: &Stage,
    recorded: &StageState,
    live: Option<&LiveStage>,
    options: &PlanOptions,
) -> Result<Changeset, PlanError> {
    check_releases(desired, recorded)?;
    let removals = removals(desired, recorded);
    if !removals.is_empty() && !options.allow_remove {
        return Err(PlanError::RemovalNotAllowed { stage: desired.name.clone(), apps: removals });
    }

    let empty = AppState::default();
    let names: BTreeSet<&str> =
        desired.apps.keys().map(String::as_str).chain(recorded.apps.keys().map(String::as_str)).collect();
    let mut cs = Changeset { stage: desired.name.clone(), refreshed: live.is_some(), ..Changeset::default() };
    // The op that finishes each app's rollout (deploy or scale), for depends_on edges.
    let mut rollouts: BTreeMap<&str, String> = BTreeMap::new();
    for name in names {
        let state = recorded.apps.get(name).unwrap_or(&empty);
        let before = cs.operations.len();
        let mut deployed = false;
        match desired.apps.get(name) {
            Some(app) if app.active.is_some() => {
                deployed = plan_app(app, state, &mut cs);
                let service = live.and_then(|l| l.services.get(name));
                if let Some(drift) = service.and_then(|s| Drift::detect(state, s)) {
                    deployed = plan_back(app, state, &drift, &mut cs.operations, before) || deployed;
                    cs.drift.push(drift);
                }
            }
            _ if state.active.is_some() => {
                let running = state.active.as_ref().map(Running::of);
                cs.operations.push(Operation::RemoveApp { app: name.to_string(), running });
                deployed = true;
            }
            _ => {}
        }
        plan_prune(name, state, deployed, &mut cs);
        chain(&mut cs, before);
        if let Some(op) = cs.operations[before..].iter().find(|op| op.is_rollout()) {
            rollouts.insert(name, op.id());
        }
    }
    order_by_dependencies(desired, &rollouts, &mut cs);
    Ok(cs)
}

fn check_releases(desired: &Stage, recorded: &StageState) -> Result<(), PlanError> {
    let mut rebound = Vec::new();
    for (name, app) in &desired.apps {
        let Some(state) = recorded.apps.get(name) else { continue };
        for (id, digest) in &app.releases {
            if let Some(rec) = state.releases.get(id) {
                if &rec.digest != digest {
                    rebound.push(ReboundRelease {
                        app: name.clone(),
                        release: *id,
                        recorded: rec.digest.clone(),
                        declared: digest.clone(),
                    });
                }
            }
        }
    }
    if rebound.is_empty() {
        Ok(())
    } else {
        Err(PlanError::ReleaseRebound(rebound))
    }
}

fn removals(desired: &Stage, recorded: &StageState) -> Vec<(String, RemovalReason)> {
    recorded
        .apps
        .iter()
        .filter(|(_, s)| s.active.is_some())
        .filter_map(|(name, _)| match desired.apps.get(name) {
            None => Some((name.clone(), RemovalReason::NotInFile)),
            Some(app) if app.active.is_none() => Some((name.clone(), RemovalReason::NoActiveRelease)),
            Some(_) => None,
        })
        .collect()
}

/// The operations of one app that runs a release in the file. Returns whether it deploys.
fn plan_app(app: &App, state: &AppState, cs: &mut Changeset) -> bool {
    let (Some(release), Some(digest)) = (app.active, app.active_digest()) else { return false };
    let from = state.active.as_ref();
    let same_release = from.is_some_and(|a| a.release == release && &a.digest == digest);
    let same_config = from.is_some_and(|a| a.image == app.image && a.config == app.config);
    if same_release && same_config {
        let a = from.expect("same release implies an active deployment");
        if a.scale != app.scale {
            cs.operations.push(Operation::Scale {
                app: app.name.clone(),
                running: Running::of(a),
                from: a.scale,
                to: app.scale,
                description: format!("Scale {} → {}", a.scale, app.scale),
            });
        }
        return false;
    }

    let to = Running {
        release,
        digest: digest.clone(),
        image: app.image.clone(),
        scale: app.scale,
        config: app.config.clone(),
        config_hash: config_hash(&app.config),
    };
    let from = from.map(Running::of);
    let (kind, mut description) = if same_release {
        let a = from.as_ref().expect("same release implies an active deployment");
        (DeployKind::Config, describe_config_change(&config_diff(&a.image, &a.config, &app.image, &app.config)))
    } else {
        let mut d = format!("Activate release {release} ({})", short_digest(digest));
        if let Some(a) = &from {
            let changes = config_diff(&a.image, &a.config, &app.image, &app.config);
            if !changes.is_empty() {
                d.push_str(&describe_config_change(&changes).replacen("Config change: ", " with config change: ", 1));
            }
        }
        (DeployKind::Activate, d)
    };
    // Going back to exactly what an earlier deployment ran (what `ferry rollback` edits the
    // file to) is reviewed and recorded as that rollback, not as a new activation. Moving to
    // a higher release id is a roll forward, even when that release ran before (activating
    // release 2 again after rolling back to 1), so it stays an activation; and starting an
    // app that runs nothing (after `ferry down`) rolls nothing back.
    let rolls_back = from.as_ref().is_some_and(|a| release <= a.release);
    let rollback_to = crate::history::rollback_target_matching(state, release, &to.config_hash).filter(|_| rolls_back);
    if let Some(n) = rollback_to {
        description = format!("Rollback to v{n} (release {release}, {})", short_digest(digest));
    }
    if let Some(a) = from.as_ref().filter(|a| a.scale != app.scale) {
        description.push_str(&format!("; scale {} → {}", a.scale, app.scale));
    }

    // Verify even for a config change of the running digest: registries expire images
    // (ECR lifecycle policies), and a missing image is better found before a rollout starts.
    cs.operations.push(Operation::VerifyImage {
        app: app.name.clone(),
        release,
        image: app.image.clone(),
        digest: digest.clone(),
    });
    cs.operations.push(Operation::RegisterRevision {
        app: app.name.clone(),
        release,
        image: app.image.clone(),
        digest: digest.clone(),
        config_hash: to.config_hash.clone(),
        config: app.config.clone(),
    });
    for task in &app.config.release_tasks {
        if kind == DeployKind::Activate || task.run_on == RunOn::EveryDeploy {
            cs.operations.push(Operation::RunReleaseTask {
                app: app.name.clone(),
                task: task.name.clone(),
                release,
                digest: digest.clone(),
            });
        }
    }
    let record_as = rollback_to.map(|_| crate::state::DeploymentKind::Rollback);
    cs.operations.push(Operation::Deploy { app: app.name.clone(), kind, from, to, description, record_as });
    true
}

/// Prune inactive revisions beyond [`KEEP_REVISIONS`]. When the app deploys (or is
/// removed), every recorded revision becomes inactive, so the count is taken after it: a
/// second plan right after applying this one prunes nothing.
fn plan_prune(app: &str, state: &AppState, deployed: bool, cs: &mut Changeset) {
    let active = state.active.as_ref().and_then(|a| a.revision.as_deref());
    let inactive: Vec<&str> =
        state.revisions.iter().map(|r| r.id.as_str()).filter(|id| deployed || Some(*id) != active).collect();
    if inactive.len() > KEEP_REVISIONS {
        let ids = inactive[..inactive.len() - KEEP_REVISIONS].iter().map(|s| s.to_string()).collect();
        cs.operations.push(Operation::PruneRevisions { app: app.to_string(), ids });
    }
}

/// Within an app, each operation waits for the one before: verify → register → release
/// tasks (in file order: a seed task may need the migration) → deploy → prune.
fn chain(cs: &mut Changeset, from: usize) {
    for pair in cs.operations[from..].windows(2) {
        cs.edges.push(Edge { from: pair[0].id(), to: pair[1].id() });
    }
}

/// B's rollout waits for the rollout of each app B depends on. An app that does not change
/// passes its own dependencies through, so `web → api → db` still orders web after db when
/// only web and db change.
fn order_by_dependencies(desired: &Stage, rollouts: &BTreeMap<&str, String>, cs: &mut Changeset) {
    for (name, to) in rollouts {
        let Some(app) = desired.apps.get(*name) else { continue };
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut stack: Vec<&str> = app.depends_on.iter().map(String::as_str).collect();
        let mut before: BTreeSet<&str> = BTreeSet::new();
        while let Some(dep) = stack.pop() {
            if !seen.insert(dep) {
                continue;
            }
            match rollouts.get(dep) {
                Some(id) => {
                    before.insert(id);
                }
                None => {
                    if let Some(d) = desired.apps.get(dep) {
                        stack.extend(d.depends_on.iter().map(String::as_str));
                    }
                }
            }
        }
        cs.edges.extend(before.into_iter().map(|from| Edge { from: from.to_string(), to: to.clone() }));
    }
}
