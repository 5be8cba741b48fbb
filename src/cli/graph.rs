//! `ferry graph`: the plan's operation graph as Graphviz DOT.

use clap::Args;

use crate::cli::stage::{read_recorded, select_stages};
use crate::cli::{print_out, CliResult, Context};
use crate::config;
use crate::plan::{self, PlanOptions};
use crate::render::{self, StageView};

/// Print the changeset of a stage as a DOT graph (removals included, to show them).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry graph | dot -Tsvg > plan.svg\n  ferry graph -s production")]
pub struct GraphArgs {
    /// The stage. Not needed when the project has one stage.
    #[arg(short, long)]
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: GraphArgs) -> CliResult {
    let project = ctx.project()?;
    let name = select_stages(&project, args.stage.as_deref(), false)?.remove(0);
    let desired = config::load_stage(&project, &name)?;
    let recorded = read_recorded(&project, &name)?;
    // A graph is for looking at, not applying: show removals rather than refuse them.
    let changeset = plan::plan(&desired, &recorded, &PlanOptions { allow_remove: true })
        .map_err(|e| crate::cli::stage::plan_error(&project, &desired, e))?;
    let file = desired.file.display().to_string();
    let view = StageView::build(&changeset, &recorded.lineage, recorded.serial, Some(&file));
    print_out(&render::dot::render(&view))
}
