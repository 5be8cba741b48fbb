//! `ferry plan`: diff stage files against recorded state and show the changeset, or save it
//! for `ferry commit FILE`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::stage::{plan_stage, read_recorded, select_stages, LiveCheck};
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{self, Project, Stage};
use crate::plan::{self, Changeset, PlanOptions, SavedPlan};
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
        crate::cli::stage::label_promotions(&project, &recorded, &mut changeset)?;
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
