//! `ferry pipeline show|checks`: the pipeline of `ferry.toml` — steps, their stages, what
//! each app runs per stage, the required checks, and where a stage differs from the step
//! before.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};

use crate::cli::{print_out, CliResult, Context};
use crate::config;
use crate::pipeline::step_named;
use crate::pipeline::view::PipelineView;
use crate::state::open_store;

/// Show the pipeline and the checks its steps require.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry pipeline show\n  ferry pipeline show --json | jq '.steps[].name'\n  \
                        ferry pipeline checks production")]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub command: PipelineCommand,
}

/// `ferry pipeline …`.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    Show(ShowArgs),
    Checks(ChecksArgs),
}

/// Draw the pipeline: steps, stages, each app's active release and digest per stage.
///
/// A `*` marks an app whose digest differs from the previous step's.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry pipeline show --json")]
pub struct ShowArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// List the status-check contexts a step requires before anything is promoted into it.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry pipeline checks production")]
pub struct ChecksArgs {
    /// The step, as named in ferry.toml.
    pub step: String,
}

pub fn run(ctx: &Context, args: PipelineArgs) -> CliResult {
    match args.command {
        PipelineCommand::Show(a) => show(ctx, a),
        PipelineCommand::Checks(a) => checks(ctx, a),
    }
}

fn show(ctx: &Context, args: ShowArgs) -> CliResult {
    let project = ctx.project()?;
    let stages = config::load_stages(&project)?;
    let store = open_store(&project)?;
    let mut recorded = BTreeMap::new();
    for step in &project.pipeline {
        for name in &step.stages {
            if let Some(state) = store.read(name)? {
                recorded.insert(name.clone(), state);
            }
        }
    }
    let view = PipelineView::build(&project, &stages, &recorded);
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&view).expect("the view serialises")))
    } else {
        print_out(&view.render_text(ctx.color))
    }
}

fn checks(ctx: &Context, args: ChecksArgs) -> CliResult {
    let project = ctx.project()?;
    let step = step_named(&project, &args.step)?;
    if step.required_checks.is_empty() {
        eprintln!("step {} requires no checks", step.name);
        return Ok(());
    }
    print_out(&step.required_checks.iter().map(|c| format!("{c}\n")).collect::<String>())
}
