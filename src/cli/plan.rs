//! `ferry plan`: diff stage files against recorded state and show the changeset, or save it
//! for `ferry commit FILE`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::source::{PathSeg, Target};
use crate::config::{self, Project, Stage};
use crate::path;
use crate::plan::diff::short_digest;
use crate::plan::{self, Changeset, PlanError, PlanOptions, RemovalReason, SavedPlan};
use crate::render::{self, PlanView, StageView};
use crate::state::StageState;

/// Show what `ferry commit` would change: a changeset per stage.
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 no changes (or changes without --detailed-exitcode), 1 error, 2 changes \
                        with --detailed-exitcode.\n\nExamples:\n  ferry plan\n  ferry plan --refresh \
                        --detailed-exitcode     # drift shows as changes\n  ferry plan --offline     # without asking the \
                        local agent what runs\n  ferry plan -s production -o \
                        production.plan && ferry commit production.plan\n  ferry plan --all --markdown > \
                        plan.md\n  ferry plan --json | jq .summary\n  ferry plan --detailed-exitcode || \
                        echo \"changes (2) or error (1)\"")]
pub struct PlanArgs {
    /// The stage to plan. Not needed when the project has one stage.
    #[arg(short, long, conflicts_with = "all")]
    pub stage: Option<String>,
    /// Plan every stage.
    #[arg(long)]
    pub all: bool,
    /// Save the plan to FILE, to commit exactly this plan later.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON (docs/PLAN_JSON.md).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the plan as markdown, for a pull-request comment.
    #[arg(long)]
    pub markdown: bool,
    /// Exit 2 when the plan has changes.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Allow removing apps that the stage files no longer run.
    #[arg(long)]
    pub allow_remove: bool,
    /// First read what the runtime runs, and show and plan back what drifted from recorded
    /// state (a changed task definition or desired count, a missing service).
    #[arg(long)]
    pub refresh: bool,
    /// Plan from the stage files and recorded state only. By default a local stage's plan
    /// asks the running local agent (never starting one) what runs, and plans back tasks
    /// that should run and do not.
    #[arg(long, conflicts_with = "refresh")]
    pub offline: bool,
}

pub fn run(ctx: &Context, args: PlanArgs) -> CliResult {
    let project = ctx.project()?;
    let names = select_stages(&project, args.stage.as_deref(), args.all)?;
    if args.out.is_some() && names.len() > 1 {
        return Err(CliError::with_hint(
            "-o saves the plan of one stage, and this plans several",
            format!("pass -s STAGE (stages: {})", names.join(", ")),
        ));
    }
    let options = PlanOptions { allow_remove: args.allow_remove };
    let mut stages = Vec::new();
    let mut planned = Vec::new();
    for name in &names {
        // The recorded state is read on a second thread while the stage file is parsed: the
        // two are independent and, for a large stage, each takes a good share of the time.
        let reading = {
            let (project, name) = (project.clone(), name.clone());
            std::thread::spawn(move || read_recorded(&project, &name))
        };
        let desired = config::load_stage(&project, name)?;
        let recorded = reading.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let live = LiveCheck::of(args.refresh, args.offline);
        let mut changeset = plan_stage(&project, &desired, &recorded, &options, live)?;
        crate::cli::promote::label_promotions(&project, &recorded, &mut changeset)?;
        if let Some(out) = &args.out {
            save(ctx, &project, &desired, &recorded, changeset.clone(), &options, out)?;
        }
        stages.push(StageView::build(&changeset, &recorded.lineage, recorded.serial, Some(&file_name(&desired))));
        planned.push((desired, recorded, changeset));
    }
    let view = PlanView { stages };
    let text = if args.json {
        render::json::render(&view)
    } else if args.markdown {
        render::markdown::render(&view)
    } else {
        render::text::render(&view, ctx.color)
    };
    print_out(&text)?;
    // Previews are stages too, but not planned with --all: listed apart (`ferry preview`).
    if args.all && !args.json {
        if let Some(section) = crate::cli::preview::plan_section(&project, args.markdown) {
            print_out(&section)?;
        }
    }
    let has_changes = view.has_changes();
    // The process ends next: freeing the stages, states and plans allocation by allocation
    // would only add time (a tenth of a large stage's plan), so they are left to the exit.
    std::mem::forget((planned, view));
    if args.detailed_exitcode && has_changes {
        return Err(CliError::Exit(2));
    }
    Ok(())
}

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
        check_alarms(project, desired)?;
        let runtime = crate::cli::commit::op_context(&project.root, desired).runtime;
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

/// The CloudWatch alarms the stage's apps roll back on exist (ECS stages; AWS is asked, so
/// at `plan --refresh` and `commit` only); each missing one located in the stage file.
pub(crate) fn check_alarms(project: &Project, desired: &Stage) -> CliResult<()> {
    let missing = super::tokio_runtime()?
        .block_on(crate::runtime::ecs::alarms::missing(desired))
        .map_err(|e| CliError::new(format!("cannot check the alarms of stage `{}`: {e}", desired.name)))?;
    if missing.is_empty() {
        return Ok(());
    }
    let region = match &desired.runtime {
        config::Runtime::Ecs(ecs) => ecs.region.as_str(),
        config::Runtime::Local { .. } => "",
    };
    Err(CliError::Config(config::Diagnostics(
        missing
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
            .collect(),
    )))
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

fn file_name(stage: &Stage) -> String {
    stage.file.display().to_string()
}

fn save(
    ctx: &Context,
    project: &Project,
    desired: &Stage,
    recorded: &StageState,
    changeset: Changeset,
    options: &PlanOptions,
    out: &Path,
) -> CliResult {
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| CliError::new(format!("cannot read {}: {e}", p.display())));
    let stage_bytes = read(project.root.join(&desired.file))?;
    let project_bytes = read(project.root.join(config::PROJECT_FILE))?;
    let mut saved =
        SavedPlan::new(changeset, recorded, plan::input_hash(&stage_bytes, &project_bytes), chrono::Utc::now());
    saved.allow_remove = options.allow_remove;
    saved.seal();
    let path = ctx.cwd.join(out);
    saved.write(&path).map_err(|e| CliError::new(e.to_string()))?;
    eprintln!(
        "saved the plan of stage `{}` to {}; apply it with `ferry commit {}`",
        desired.name,
        out.display(),
        out.display()
    );
    Ok(())
}

/// The recorded state of `stage`, or fresh state when it was never applied. Read through
/// the state store without taking the lock: a plan only reads, and a saved plan is checked
/// against the serial again when it is committed.
pub(crate) fn read_recorded(project: &Project, stage: &str) -> CliResult<StageState> {
    let store = crate::state::open_store(project)?;
    Ok(store.read(stage)?.unwrap_or_else(|| StageState::new(stage)))
}
