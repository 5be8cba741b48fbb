//! `ferry commit [-s STAGE] [PLANFILE] [--yes] [--parallelism N] [--logs]`: apply a
//! changeset under the stage's lock, through the apply engine.
//!
//! Without a plan file it plans, shows the changeset and asks (on a terminal; elsewhere it
//! refuses without `--yes`). With one it applies exactly that plan, or refuses it as stale
//! naming what moved. Ctrl-C, SIGTERM or `ferry abort` roll back in-flight deployments and
//! record them `aborted`. Exit codes: 0 all succeeded, 1 something failed, 130 aborted.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::apply::abort::{request_path, AbortRequest};
use crate::apply::ops::OpContext;
use crate::apply::{journal, AbortSignal, ApplyReport, Engine, Hook, HumanHook, JsonHook, Step};
use crate::cli::plan::{plan_stage, select_stages};
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config;
use crate::plan::{self, Changeset, PlanOptions, SavedPlan};
use crate::registry::{EcrRegistry, LocalRegistry};
use crate::render::{self, PlanView, StageView};
use crate::runtime::ecs::EcsRuntime;
use crate::runtime::local::LocalRuntime;
use crate::runtime::ServiceState;
use crate::state::{command_line, DeploymentStatus, LockedStage};

/// The exit code of an aborted commit (128 + SIGINT, as shells report Ctrl-C).
pub const EXIT_ABORTED: u8 = 130;

/// Apply the changes of a stage: plan and apply, or apply a saved plan.
#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 every change succeeded, 1 something failed, 130 aborted.\n\nExamples:\n  \
                        ferry commit\n  ferry commit --yes --parallelism 4\n  ferry plan -s production -o p.plan && \
                        ferry commit p.plan\n  ferry abort -s production     # from another shell")]
pub struct CommitArgs {
    /// The stage. Not needed when the project has one stage, or with a plan file.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// A plan saved by `ferry plan -o FILE`: apply exactly it.
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,
    /// Apply without asking.
    #[arg(short, long)]
    pub yes: bool,
    /// At most N operations at once (default: every operation whose dependencies are done).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelism: Option<u32>,
    /// Stream the new tasks' output while they roll out.
    #[arg(long)]
    pub logs: bool,
    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value_t = ProgressStyle::Auto)]
    pub progress: ProgressStyle,
    /// Allow removing apps that the stage files no longer run.
    #[arg(long)]
    pub allow_remove: bool,
    /// First read what the runtime runs, and put back what drifted from recorded state (as
    /// `ferry plan --refresh` shows it).
    #[arg(long, conflicts_with = "plan_file")]
    pub refresh: bool,
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressStyle {
    /// Live lines on a terminal, plain lines otherwise.
    Auto,
    /// One line per change.
    Plain,
    /// One JSON object per event.
    Json,
}

pub fn run(ctx: &Context, args: CommitArgs) -> CliResult {
    let mut hook: Box<dyn Hook> = match args.progress {
        ProgressStyle::Json => Box::new(JsonHook),
        style => Box::new(HumanHook::new(style == ProgressStyle::Plain)),
    };
    hook.step(Step::Initializing);
    let project = ctx.project()?;
    let saved = match &args.plan_file {
        Some(path) => Some(SavedPlan::read(&ctx.cwd.join(path)).map_err(|e| CliError::new(e.to_string()))?),
        None => None,
    };
    let name = match (&args.stage, &saved) {
        (Some(s), Some(p)) if *s != p.stage => {
            return Err(CliError::new(format!("the plan file is for stage `{}`, not `{s}`", p.stage)))
        }
        (_, Some(p)) => p.stage.clone(),
        (Some(s), None) => s.clone(),
        (None, None) => select_stages(&project, None, false)?.remove(0),
    };
    let options = StageCommit {
        yes: args.yes,
        parallelism: args.parallelism.map(|n| n as usize),
        logs: args.logs,
        allow_remove: args.allow_remove,
        refresh: args.refresh,
    };
    commit_stage(ctx, &project, &name, saved, &options, hook.as_mut())
}

/// How [`commit_stage`] applies a stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageCommit {
    /// Apply without asking.
    pub yes: bool,
    pub parallelism: Option<usize>,
    pub logs: bool,
    pub allow_remove: bool,
    /// Plan against what the runtime runs too (`--refresh`).
    pub refresh: bool,
}

/// Plan (or take the saved plan of) one stage and apply it under the stage's own lock,
/// printing the changeset and a summary; `Err(Exit(…))` when something failed. Promotion
/// calls this for each of its target stages at once, on their own threads.
pub(crate) fn commit_stage(
    ctx: &Context,
    project: &config::Project,
    name: &str,
    saved: Option<SavedPlan>,
    args: &StageCommit,
    hook: &mut dyn Hook,
) -> CliResult {
    let from_file = saved.is_some();
    let desired = config::load_stage(project, name)?;
    let mut session = LockedStage::open(project, name, &command_line(), ctx.lock_timeout)?;
    if !from_file {
        forget_lost_apps(&project.root, &desired, &mut session, hook)?;
    }

    hook.step(Step::Planning);
    let changeset = match saved {
        Some(p) => fresh_changeset(project, &desired, &session, p)?,
        None => {
            let options = PlanOptions { allow_remove: args.allow_remove };
            let mut cs = plan_stage(project, &desired, session.state(), &options, args.refresh)?;
            crate::cli::promote::label_promotions(project, session.state(), &mut cs)?;
            cs
        }
    };
    let view = PlanView {
        stages: vec![StageView::build(
            &changeset,
            &session.state().lineage,
            session.state().serial,
            Some(&desired.file.display().to_string()),
        )],
    };
    print_out(&render::text::render(&view, ctx.color))?;
    if changeset.is_empty() {
        settle_interrupted(&mut session, hook)?;
        return Ok(());
    }
    // Refused here, before anything reaches the runtime: a counter that would wrap leaves
    // a stage no later write is accepted for.
    crate::apply::journal::check_counters(session.state(), &changeset).map_err(|why| {
        CliError::with_hint(
            format!("cannot commit stage `{name}`: {why}"),
            "the state file was edited or damaged: `ferry state restore` brings back the previous copy",
        )
    })?;
    if !from_file && !args.yes {
        confirm(name)?;
    }
    settle_interrupted(&mut session, hook)?;

    let root = project.root.clone();
    let engine = Engine {
        ops: op_context(&root, &desired),
        parallelism: args.parallelism,
        source: crate::state::Source::detect(&ctx.cwd),
        stream_logs: args.logs,
        abort: AbortSignal::new(),
    };
    let request = request_path(&root, name);
    let lock_id = session.lock_info().id.clone();
    let rt = super::tokio_runtime()?;
    let report = rt.block_on(async {
        let signals = engine.abort.listen_for_signals()?;
        let requests = engine.abort.listen_for_requests(request.clone(), lock_id.clone());
        let report = engine.apply(&changeset, &mut session, hook).await;
        signals.abort();
        requests.abort();
        report.map_err(|e| CliError::new(e.to_string()))
    })?;
    // A request that came too late to matter must not linger for the next run.
    if AbortRequest::read(&request).is_some_and(|r| r.lock_id == lock_id) {
        let _ = std::fs::remove_file(&request);
    }
    // Keep the state small: deployments beyond the newest `keep_deployments` per app move to
    // the archive, which `ferry history` reads too. A failure only leaves them in state.
    if let Err(e) = crate::state::archive::prune(&mut session, project.keep_deployments) {
        hook.note(&format!("older deployments stay in state: archiving them failed: {e}"));
    }
    session.unlock()?;
    print_summary(&changeset, &report)?;
    if report.aborted.is_some() {
        Err(CliError::Exit(EXIT_ABORTED))
    } else if report.succeeded() {
        Ok(())
    } else {
        Err(CliError::Exit(1))
    }
}

/// The runtime and registry of a stage: the local ones, or ECS and ECR in its region.
pub(crate) fn op_context(root: &std::path::Path, stage: &config::Stage) -> OpContext {
    match &stage.runtime {
        config::Runtime::Local => {
            let registry = Arc::new(LocalRegistry::for_project(root));
            OpContext {
                runtime: Arc::new(LocalRuntime::new(root, &stage.name)),
                registry: registry.clone(),
                local_releases: Some((registry, root.join(".ferry").join("releases"))),
            }
        }
        config::Runtime::Ecs(ecs) => {
            let sdk = crate::aws::block_on(crate::runtime::ecs::load_sdk_config(&ecs.region));
            OpContext {
                runtime: Arc::new(EcsRuntime::new(&stage.name, ecs, &sdk)),
                registry: Arc::new(EcrRegistry::new(&sdk)),
                local_releases: None,
            }
        }
    }
}

/// The saved plan's changeset, when nothing it was made against has moved.
fn fresh_changeset(
    project: &config::Project,
    desired: &config::Stage,
    session: &LockedStage,
    saved: SavedPlan,
) -> CliResult<Changeset> {
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| CliError::new(format!("cannot read {}: {e}", p.display())));
    let hash =
        plan::input_hash(&read(project.root.join(&desired.file))?, &read(project.root.join(config::PROJECT_FILE))?);
    let state = session.state();
    // A never-applied stage has no stored lineage yet (each read makes up a fresh one), so
    // only the serial and the inputs can have moved.
    let lineage = if session.is_stored() { state.lineage.as_str() } else { saved.lineage.as_str() };
    saved.check_fresh(lineage, state.serial, &hash).map_err(|stale| {
        CliError::with_hint(stale.to_string(), format!("make a new plan: ferry plan -s {} -o FILE", saved.stage))
    })?;
    Ok(saved.changeset)
}

/// Record as stopped the apps state says run but the local agent does not run (it was
/// killed, or the machine restarted), as `ferry down` would have: the plan then starts
/// them again instead of "no changes" for an app that serves nothing. A saved plan is
/// applied as reviewed, so this runs only when the commit plans.
fn forget_lost_apps(
    root: &std::path::Path,
    desired: &config::Stage,
    session: &mut LockedStage,
    hook: &mut dyn Hook,
) -> CliResult {
    if !matches!(desired.runtime, config::Runtime::Local) {
        return Ok(());
    }
    let active: Vec<String> =
        session.state().apps.iter().filter(|(_, a)| a.active.is_some()).map(|(name, _)| name.clone()).collect();
    if active.is_empty() {
        return Ok(());
    }
    let runtime = LocalRuntime::new(root, &desired.name);
    let services = super::tokio_runtime()?
        .block_on(runtime.observe_if_running(&active))
        .map_err(|e| CliError::new(format!("cannot ask the local agent what runs: {e}")))?;
    let lost: Vec<String> = services.into_iter().filter(|s| s.state == ServiceState::Missing).map(|s| s.app).collect();
    if lost.is_empty() {
        return Ok(());
    }
    session.update(|s| {
        for app in &lost {
            if let Some(a) = s.apps.get_mut(app) {
                a.active = None;
            }
        }
    })?;
    hook.note(&format!(
        "the local agent does not run {}, recorded as running (was the agent killed, or the machine restarted?); \
         recorded as stopped, this commit starts {} again",
        lost.join(", "),
        if lost.len() == 1 { "it" } else { "them" }
    ));
    Ok(())
}

/// Settle deployments a killed commit left `in_progress` (see `apply::journal`).
fn settle_interrupted(session: &mut LockedStage, hook: &mut dyn Hook) -> CliResult {
    let left = journal::interrupted(session.state());
    if left.is_empty() {
        return Ok(());
    }
    session.update(|s| journal::settle_interrupted(s, chrono::Utc::now()))?;
    let names: Vec<String> = left.iter().map(|(app, n)| format!("{app} v{n}")).collect();
    hook.note(&format!("settled deployments an interrupted commit left in progress as aborted: {}", names.join(", ")));
    Ok(())
}

/// Ask on a terminal; refuse elsewhere.
fn confirm(stage: &str) -> CliResult {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::with_hint(
            "not applying without confirmation: stdin is not a terminal",
            "pass --yes, or review a saved plan: ferry plan -o FILE && ferry commit FILE",
        ));
    }
    eprint!("Apply these changes to stage {stage}? Only `yes` applies: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        eprintln!("nothing applied");
        Err(CliError::Exit(1))
    }
}

fn print_summary(cs: &Changeset, report: &ApplyReport) -> CliResult {
    let mut out = String::from("\nSummary:\n");
    let width = cs.apps().iter().map(|a| a.len()).max().unwrap_or(0);
    for d in &report.deployments {
        let status = match d.status {
            DeploymentStatus::Succeeded => console::style(d.status.as_str()).green(),
            _ => console::style(d.status.as_str()).red().bold(),
        };
        out.push_str(&format!("  {:width$}  v{:<3} {status}  {}\n", d.app, d.number, d.description));
        if let Some(r) = d.reason.as_deref().and_then(|r| r.lines().next()) {
            out.push_str(&format!("  {:width$}        {r}\n", ""));
        }
    }
    let failed: Vec<&str> = report
        .operations
        .iter()
        .filter(|(id, o)| !o.is_success() && !report.deployments.iter().any(|d| id == &format!("{}/deploy", d.app)))
        .map(|(id, _)| id.as_str())
        .collect();
    if !failed.is_empty() {
        out.push_str(&format!("  not done: {}\n", failed.join(", ")));
    }
    if let Some(reason) = &report.aborted {
        out.push_str(&format!("  {reason}\n"));
    }
    print_out(&out)
}
