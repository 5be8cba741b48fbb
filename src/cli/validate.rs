//! `ferry validate`: check the project file and stage files, reporting every problem.

use clap::Args;

use crate::cli::{CliResult, Context};
use crate::config;

/// Check ferry.toml and the stage files; exit 0 when valid, 1 with every problem located.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry validate\n  ferry validate -s production")]
pub struct ValidateArgs {
    /// Check only this stage (and ferry.toml).
    #[arg(short, long)]
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: ValidateArgs) -> CliResult {
    let project = ctx.project()?;
    let stages = match &args.stage {
        Some(name) => vec![config::load_stage(&project, name)?],
        None => config::load_stages(&project)?,
    };
    let apps: usize = stages.iter().map(|s| s.apps.len()).sum();
    eprintln!(
        "valid: {} and {} stage{} ({apps} app{})",
        config::PROJECT_FILE,
        stages.len(),
        if stages.len() == 1 { "" } else { "s" },
        if apps == 1 { "" } else { "s" }
    );
    Ok(())
}
