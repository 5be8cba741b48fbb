//! A stage as the commands see it: which stages a command acts on, its runtime and
//! registry, and its changeset (planned, with live facts where asked, promotions labelled).
//! `plan`, `commit`, `promote`, `graph` and the rest build on these; none of them imports
//! another command for it.

use std::sync::Arc;

use crate::apply::ops::OpContext;
use crate::cli::{CliError, CliResult};
use crate::config::source::{PathSeg, Target};
use crate::config::{self, Project, Stage};
use crate::path;
use crate::pipeline::open_records;
use crate::pipeline::promotion;
use crate::plan::diff::short_digest;
use crate::plan::{self, Changeset, PlanError, PlanOptions, RemovalReason};
use crate::registry::{EcrRegistry, ProjectRegistry};
use crate::runtime::ecs::EcsRuntime;
use crate::runtime::local::LocalRuntime;
use crate::state::StageState;

/// Whether a plan also compares recorded state with what the runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiveCheck {
    /// Never (`--offline`).
    Offline,
    /// On a local stage only, where asking the running agent is cheap (the default): a
    /// crashed agent or a reboot is seen by a plain `plan`.
    Local,
    /// Always (`--refresh`).
    Refresh,
}

impl LiveCheck {
    /// From the `--refresh` and `--offline` flags.
    pub(crate) fn of(refresh: bool, offline: bool) -> Self {
        match (refresh, offline) {
            (true, _) => LiveCheck::Refresh,
            (false, true) => LiveCheck::Offline,
            (false, false) => LiveCheck::Local,
        }
    }

    pub(crate) fn applies_to(self, stage: &Stage) -> bool {
        match self {
            LiveCheck::Offline => false,
            LiveCheck::Local => matches!(stage.runtime, config::Runtime::Local { .. }),
            LiveCheck::Refresh => true,
        }
    }
}

/// Plan `desired` against `recorded`; where `live` says so, against what the stage's
/// runtime runs too (gathered first, so the planner stays pure; the local runtime answers
/// without starting an agent).
pub(crate) fn plan_stage(
    project: &Project,
    desired: &Stage,
    recorded: &StageState,
    options: &PlanOptions,
    live: LiveCheck,
) -> CliResult<Changeset> {
    let planned = if live.applies_to(desired) {
        check_aws_references(project, desired)?;
        let runtime = op_context(&project.root, desired).runtime;
        runtime.adopt(&recorded.adopted());
        let live = super::tokio_runtime()?
            .block_on(crate::runtime::live::gather(runtime.as_ref(), recorded))
            .map_err(|e| CliError::new(format!("cannot refresh stage `{}`: {e}", desired.name)))?;
        plan::plan_refreshed(desired, recorded, &live, options)
    } else {
        plan::plan(desired, recorded, options)
    };
    planned.map_err(|e| plan_error(project, desired, e))
}

/// What the stage file names in AWS exists (ECS stages; AWS is asked, so at `plan
/// --refresh` and `commit` only): the CloudWatch alarms the apps roll back on, and the
/// sidecar images in ECR. Each missing one located in the stage file.
pub(crate) fn check_aws_references(project: &Project, desired: &Stage) -> CliResult<()> {
    let mut diagnostics = missing_alarms(project, desired)?;
    diagnostics.extend(missing_sidecar_images(project, desired)?);
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(CliError::Config(config::Diagnostics(diagnostics)))
    }
}

/// The deploy alarms CloudWatch does not know, located.
fn missing_alarms(project: &Project, desired: &Stage) -> CliResult<Vec<config::Diagnostic>> {
    let missing = super::tokio_runtime()?
        .block_on(crate::runtime::ecs::alarms::missing(desired))
        .map_err(|e| CliError::new(format!("cannot check the alarms of stage `{}`: {e}", desired.name)))?;
    let region = match &desired.runtime {
        config::Runtime::Ecs(ecs) => ecs.region.as_str(),
        config::Runtime::Local { .. } => "",
    };
    Ok(missing
        .into_iter()
        .map(|m| {
            let path = [
                PathSeg::from("apps"),
                PathSeg::from(&m.app),
                "deploy".into(),
                "alarms".into(),
                PathSeg::from(m.index),
            ];
            config::stage_diagnostic(
                &project.root,
                desired,
                &path,
                Target::Value,
                format!("CloudWatch has no alarm `{}` in {region}", m.name),
            )
            .with_hint("create the alarm first, or correct its name: ECS never fires an alarm that does not exist")
        })
        .collect())
}

/// The sidecar images ECR does not hold, located: each names the app, the sidecar and the
/// image, as the commit's verify step names the app's own.
fn missing_sidecar_images(project: &Project, desired: &Stage) -> CliResult<Vec<config::Diagnostic>> {
    let registry = |region: &str| EcrRegistry::new(&crate::aws::block_on(crate::runtime::ecs::load_sdk_config(region)));
    let missing = crate::runtime::ecs::images::missing(desired, &registry)
        .map_err(|e| CliError::new(format!("cannot check the sidecar images of stage `{}`: {e}", desired.name)))?;
    Ok(missing
        .into_iter()
        .map(|m| {
            let path = [
                PathSeg::from("apps"),
                PathSeg::from(&m.app),
                "sidecars".into(),
                PathSeg::from(&m.sidecar),
                "image".into(),
            ];
            let hint = m.error.hint().unwrap_or_default();
            config::stage_diagnostic(
                &project.root,
                desired,
                &path,
                Target::Value,
                format!("app `{}`, sidecar `{}`: image `{}` is not in ECR: {}", m.app, m.sidecar, m.image, m.error),
            )
            .with_hint(format!("{hint}; or correct the image: ECS would fail to pull it mid-rollout"))
        })
        .collect())
}

/// A planner's refusal as located diagnostics: each names the place in the stage file that
/// asks for what cannot be planned.
pub(crate) fn plan_error(project: &Project, desired: &Stage, e: PlanError) -> CliError {
    let at = |path: &[PathSeg], target: Target, message: String| {
        config::stage_diagnostic(&project.root, desired, path, target, message)
    };
    let diagnostics = match e {
        PlanError::ReleaseRebound(releases) => releases
            .iter()
            .map(|r| {
                at(
                    &[PathSeg::from("apps"), PathSeg::from(&r.app), "releases".into(), r.release.to_string().into()],
                    Target::Value,
                    format!(
                        "release {} of app `{}` is {} here but was recorded as {}; release ids are immutable",
                        r.release,
                        r.app,
                        short_digest(&r.declared),
                        short_digest(&r.recorded)
                    ),
                )
                .with_hint(format!(
                    "set release {} back to {}, and add the new digest as a new release: `ferry release create {} {}`",
                    r.release, r.recorded, r.app, r.declared
                ))
            })
            .collect(),
        PlanError::RemovalNotAllowed { stage, apps } => apps
            .iter()
            .map(|(app, why)| {
                let (path, message) = match why {
                    RemovalReason::NotInFile => {
                        (path![], format!("app `{app}` runs in stage `{stage}` but is no longer in its file"))
                    }
                    RemovalReason::NoActiveRelease => (
                        path!["apps", app],
                        format!("app `{app}` runs in stage `{stage}` but declares no `active` release"),
                    ),
                };
                let d = if path.is_empty() {
                    config::Diagnostic::whole_file(&desired.file, message)
                } else {
                    at(&path, Target::Key, message)
                };
                d.with_hint("the plan would stop and remove it: pass --allow-remove to plan that, or declare it again")
            })
            .collect(),
    };
    CliError::Config(config::Diagnostics(diagnostics))
}

/// The stages a command acts on: `-s`, every stage with `--all`, or the only one.
pub(crate) fn select_stages(project: &Project, stage: Option<&str>, all: bool) -> CliResult<Vec<String>> {
    if let Some(s) = stage {
        return Ok(vec![s.to_string()]);
    }
    let names: Vec<String> = config::stage_refs(&project.root).into_iter().map(|r| r.name).collect();
    match names.len() {
        0 => Err(CliError::with_hint(
            format!("no stage files in {}", project.root.join(config::STAGES_DIR).display()),
            "create stages/NAME.toml (`ferry init` makes a first one)",
        )),
        1 => Ok(names),
        _ if all => Ok(names),
        _ => Err(CliError::with_hint(
            format!("this project has {} stages: {}; say which", names.len(), names.join(", ")),
            format!("pass -s STAGE (e.g. -s {}) or --all", names[0]),
        )),
    }
}

/// The recorded state of `stage`, or fresh state when it was never applied. Read through
/// the state store without taking the lock: a plan only reads, and a saved plan is checked
/// against the serial again when it is committed.
pub(crate) fn read_recorded(project: &Project, stage: &str) -> CliResult<StageState> {
    let store = crate::state::open_store(project)?;
    Ok(store.read(stage)?.unwrap_or_else(|| StageState::new(stage)))
}

/// The runtime of `stage` for commands that only look (ps, logs, task, the dashboard),
/// told the services recorded state says were adopted (`ferry import`), read without the
/// lock; when state cannot be read the runtime knows ferry's own names only.
pub(crate) fn reading_runtime(root: &std::path::Path, stage: &config::Stage) -> Arc<dyn crate::runtime::Runtime> {
    let config::Runtime::Ecs(ecs) = &stage.runtime else { return op_context(root, stage).runtime };
    let sdk = crate::aws::block_on(crate::runtime::ecs::load_sdk_config(&ecs.region));
    let runtime = ecs_runtime(stage, ecs, &sdk);
    let state = config::load_project(root)
        .ok()
        .and_then(|project| crate::state::open_store(&project).ok())
        .and_then(|store| store.read(&stage.name).ok().flatten());
    if let Some(state) = state {
        crate::runtime::Runtime::adopt(&runtime, &state.adopted());
        // What runs logs where its recorded config says, even when the file has changed since.
        for (app, a) in &state.apps {
            if let Some(active) = &a.active {
                runtime.tell_logging(app, active.config.deploy.ecs_task.logging.as_ref());
            }
        }
    }
    Arc::new(runtime)
}

/// The ECS runtime of `stage`, told where each app of the file logs.
fn ecs_runtime(stage: &config::Stage, ecs: &config::EcsRuntime, sdk: &aws_config::SdkConfig) -> EcsRuntime {
    let runtime = EcsRuntime::new(&stage.name, ecs, sdk);
    for (app, a) in &stage.apps {
        runtime.tell_logging(app, a.config.deploy.ecs_task.logging.as_ref());
    }
    runtime
}

/// The runtime and registry of a stage: the local ones, or ECS and ECR in its region.
pub(crate) fn op_context(root: &std::path::Path, stage: &config::Stage) -> OpContext {
    match &stage.runtime {
        config::Runtime::Local { driver } => {
            let registry = Arc::new(ProjectRegistry::at_root(root));
            let driver = crate::aws::block_on(LocalRuntime::driver_for(*driver, registry.clone(), &stage.file));
            // Containers pull their image themselves: only processes need it unpacked.
            let unpack = driver.kind == config::LocalDriver::Process;
            OpContext {
                runtime: Arc::new(LocalRuntime::new(root, &stage.name).with_driver(driver)),
                registry: registry.clone(),
                local_releases: unpack.then(|| (registry, root.join(".ferry").join("releases"))),
            }
        }
        config::Runtime::Ecs(ecs) => {
            let sdk = crate::aws::block_on(crate::runtime::ecs::load_sdk_config(&ecs.region));
            OpContext {
                runtime: Arc::new(ecs_runtime(stage, ecs, &sdk)),
                registry: Arc::new(EcrRegistry::new(&sdk)),
                local_releases: None,
            }
        }
    }
}

/// Label the deploys of `cs` that apply a pending promotion ("Promotion from STAGE
/// (release N)"), for `ferry plan` and `ferry commit`.
pub(crate) fn label_promotions(project: &Project, recorded: &StageState, cs: &mut Changeset) -> CliResult {
    let records = match open_records(project) {
        Ok(r) => r,
        // No records backend (S3 for now) means no promotions were recorded there.
        Err(_) => return Ok(()),
    };
    Ok(promotion::label_deploys(records.as_ref(), recorded, cs)?)
}
