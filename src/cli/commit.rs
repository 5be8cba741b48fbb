//! `ferry commit [-s STAGE] [PLANFILE] [--yes] [--parallelism N] [--logs]`: apply a
//! changeset under the stage's lock, through the apply engine.
//!
//! Without a plan file it plans, shows the changeset and asks (on a terminal; elsewhere it
//! refuses without `--yes`). With one it applies exactly that plan, or refuses it as stale
//! naming what moved. Ctrl-C, SIGTERM or `ferry abort` roll back in-flight deployments and
//! record them `aborted`. Exit codes: 0 all succeeded, 1 something failed, 130 aborted.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::apply::abort::{request_path, AbortRequest};
use crate::apply::{journal, AbortSignal, ApplyReport, Engine, Hook, HumanHook, JsonHook, Step};
use crate::cli::stage::{check_aws_references, label_promotions, op_context, plan_stage, select_stages, LiveCheck};
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config;
use crate::plan::{self, Changeset, PlanOptions, SavedPlan};
use crate::render::{self, PlanView, StageView};
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
    /// Also append the deploy events (one per deployment) to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
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
        events: args.events.map(|f| ctx.cwd.join(f)),
        report_on_stderr: false,
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
    /// `--events FILE`: deploy events are appended there too.
    pub events: Option<PathBuf>,
    /// Show the plan and the summary on stderr, keeping stdout for the caller's answer
    /// (`preview up` prints only the URL there, for scripts).
    pub report_on_stderr: bool,
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
    let desired = config::load_stage(project, name)?;
    commit_desired(ctx, project, desired, saved, args, hook)
}

/// [`commit_stage`] of a stage already loaded (or rendered: previews have no file).
pub(crate) fn commit_desired(
    ctx: &Context,
    project: &config::Project,
    desired: config::Stage,
    saved: Option<SavedPlan>,
    args: &StageCommit,
    hook: &mut dyn Hook,
) -> CliResult {
    let name = desired.name.as_str();
    let started = std::time::Instant::now();
    let from_file = saved.is_some();
    let mut session = LockedStage::open(project, name, &command_line(), ctx.lock_timeout)?;

    hook.step(Step::Planning);
    let changeset = match saved {
        Some(p) => fresh_changeset(project, &desired, &session, p)?,
        None => {
            let options = PlanOptions { allow_remove: args.allow_remove };
            let live = LiveCheck::of(args.refresh, false);
            if !live.applies_to(&desired) {
                // (plan_stage checks them when it refreshes.)
                check_aws_references(project, &desired)?;
            }
            let mut cs = plan_stage(project, &desired, session.state(), &options, live)?;
            label_promotions(project, session.state(), &mut cs)?;
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
    let plan_text = render::text::render(&view, ctx.color);
    if args.report_on_stderr {
        eprint!("{plan_text}");
    } else {
        print_out(&plan_text)?;
    }
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
        ops: {
            let ops = op_context(&root, &desired);
            ops.runtime.adopt(&session.state().adopted());
            ops
        },
        parallelism: args.parallelism,
        source: crate::state::Source::detect(&ctx.cwd),
        builds: built_images(project, &changeset),
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
    let several_stages = config::stage_refs(&project.root).len() > 1;
    let next_steps = after_failures(session.state(), &report, several_stages.then_some(name));
    let events = commit_events(project, session.state(), &report, &engine.source, started.elapsed());
    session.unlock()?;
    crate::events::Emitter::new(project, args.events.clone()).emit(&events);
    print_summary(&changeset, &report, args.report_on_stderr)?;
    if !next_steps.is_empty() {
        eprint!("{next_steps}");
    }
    if report.aborted.is_some() {
        Err(CliError::Exit(EXIT_ABORTED))
    } else if report.succeeded() {
        Ok(())
    } else {
        Err(CliError::Exit(1))
    }
}

/// One `commit` event per deployment the walk recorded; one for the stage when it failed
/// before any deployment.
fn commit_events(
    project: &config::Project,
    state: &crate::state::StageState,
    report: &ApplyReport,
    source: &crate::state::Source,
    took: std::time::Duration,
) -> Vec<crate::events::Event> {
    use crate::events::{Event, EventKind, Outcome};
    let outcome = |status: DeploymentStatus| match status {
        DeploymentStatus::Succeeded => Outcome::Succeeded,
        DeploymentStatus::Aborted => Outcome::Aborted,
        _ => Outcome::Failed,
    };
    let mut events: Vec<Event> = report
        .deployments
        .iter()
        .map(|d| {
            let mut e = Event::new(EventKind::Commit, &project.name, outcome(d.status))
                .stage(&state.stage)
                .app(&d.app)
                .duration(took);
            e.deployment = Some(d.number);
            if let Some(dep) = state.apps.get(&d.app).and_then(|a| a.deployment(d.number)) {
                e.release = Some(dep.release);
                e.digest = Some(dep.digest.to_string());
            }
            e.source_commit = source.commit.clone();
            e.reason = d.reason.clone();
            e
        })
        .collect();
    if events.is_empty() && !report.succeeded() {
        let outcome = if report.aborted.is_some() { Outcome::Aborted } else { Outcome::Failed };
        let mut e = Event::new(EventKind::Commit, &project.name, outcome).stage(&state.stage).duration(took);
        e.source_commit = source.commit.clone();
        e.reason = report.aborted.clone().or_else(|| {
            let failed: Vec<&str> =
                report.operations.iter().filter(|(_, o)| !o.is_success()).map(|(id, _)| id.as_str()).collect();
            Some(format!("not done: {}", failed.join(", ")))
        });
        events.push(e);
    }
    events
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
    // Same inputs, same state: planning again must give the same changes. A file edited
    // after `ferry plan -o` and sealed again would otherwise run what nobody reviewed.
    let options = PlanOptions { allow_remove: saved.allow_remove };
    // A plan made against what runs (`--refresh`, or a local stage's default) is made so again.
    let live = if saved.changeset.refreshed { LiveCheck::Refresh } else { LiveCheck::Offline };
    // The deploy alarms and sidecar images may have been deleted since the plan was made: asked again, as a
    // plain commit does (plan_stage asks them itself when it refreshes).
    if !live.applies_to(desired) {
        check_aws_references(project, desired)?;
    }
    let mut planned = plan_stage(project, desired, state, &options, live)?;
    label_promotions(project, state, &mut planned)?;
    if planned != saved.changeset {
        return Err(CliError::with_hint(
            format!(
                "the saved plan for stage `{}` holds other changes than ferry plans from the same stage file and \
                 state: it was edited after `ferry plan -o`{}; refusing it",
                saved.stage,
                if saved.changeset.refreshed { ", or what runs changed since (--refresh)" } else { "" }
            ),
            format!("make a new plan: ferry plan -s {} -o FILE", saved.stage),
        ));
    }
    Ok(saved.changeset)
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

/// What to do after deployments that failed or were aborted: the stage file still asks for
/// what failed, so the next commit tries it again; and the command that returns the file to
/// what runs now. `stage` is given (for `-s STAGE`) when the project has several.
fn after_failures(state: &crate::state::StageState, report: &ApplyReport, stage: Option<&str>) -> String {
    let flag = stage.map(|s| format!(" -s {s}")).unwrap_or_default();
    let mut out = String::new();
    for d in &report.deployments {
        if !matches!(d.status, DeploymentStatus::Failed | DeploymentStatus::Aborted) {
            continue;
        }
        let Some(app) = state.apps.get(&d.app) else { continue };
        let Some(failed) = app.deployment(d.number) else { continue };
        let app_name = &d.app;
        out.push_str(&format!(
            "\n{app_name}: v{} {}; the stage file still asks for release {} ({}), so the next commit tries it again.\n",
            d.number,
            d.status.as_str(),
            failed.release,
            failed.digest.short()
        ));
        match &app.active {
            Some(active) => {
                let mut line = format!(
                    "  Release {} (v{}) runs now; to return the stage file to it: `ferry rollback {app_name}{flag}`",
                    active.release, active.deployment
                );
                if active.release != failed.release {
                    line.push_str(&format!(
                        " (or only the release: `ferry release activate {app_name} {}{flag}`)",
                        active.release
                    ));
                }
                out.push_str(&line);
                out.push('\n');
            }
            None => out.push_str(&format!(
                "  Nothing of {app_name} ran before: fix the release, or remove the app from the stage file.\n"
            )),
        }
    }
    out
}

fn print_summary(cs: &Changeset, report: &ApplyReport, on_stderr: bool) -> CliResult {
    let mut out = String::from("\nSummary:\n");
    let width = cs.apps().iter().map(|a| a.len()).max().unwrap_or(0);
    for d in &report.deployments {
        let status = match d.status {
            DeploymentStatus::Succeeded => console::style(d.status.as_str()).green(),
            _ => console::style(d.status.as_str()).red().bold(),
        };
        // Descriptions and reasons quote the runtime (task exits, check output, log lines).
        let description = render::escape_line(&d.description);
        out.push_str(&format!("  {:width$}  v{:<3} {status}  {description}\n", d.app, d.number));
        if let Some(r) = d.reason.as_deref().and_then(|r| r.lines().next()) {
            out.push_str(&format!("  {:width$}        {}\n", "", render::escape_line(r)));
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
        out.push_str(&format!("  {}\n", render::escape_controls(reason)));
    }
    if on_stderr {
        eprint!("{out}");
        return Ok(());
    }
    print_out(&out)
}

/// The sources of the images `changeset` deploys that `release create --source` built; read
/// only when it deploys something (an S3 state backend pays a request for it). Unreadable,
/// the deploy goes on and its deployments miss the source line.
fn built_images(
    project: &crate::config::Project,
    changeset: &crate::plan::Changeset,
) -> std::collections::BTreeMap<String, crate::state::BuildSource> {
    if !changeset.operations.iter().any(|op| matches!(op, crate::plan::Operation::Deploy { .. })) {
        return Default::default();
    }
    crate::build::load_builds(project).unwrap_or_else(|e| {
        eprintln!("warning: cannot read the sources of built images ({e}); deployments will not record them");
        Default::default()
    })
}
