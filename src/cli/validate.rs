//! `ferry validate`: check the project file and stage files, reporting every problem.

use clap::Args;

use crate::cli::{CliResult, Context};
use crate::config::{self, Diagnostics, Project};

/// Check ferry.toml and the stage files; exit 0 when valid, 1 with every problem located.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry validate\n  ferry validate -s production")]
pub struct ValidateArgs {
    /// Check only this stage (and ferry.toml).
    #[arg(short, long)]
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: ValidateArgs) -> CliResult {
    // Stage files are checked even when ferry.toml has problems, so one run reports every
    // problem of the project, not just the first file's.
    let root = ctx.root()?;
    let (project, mut problems) = match config::load_project(&root) {
        Ok(p) => (p, Diagnostics::default()),
        Err(d) => (Project::unchecked(&root), d),
    };
    let stages = match &args.stage {
        Some(name) => config::load_stage(&project, name).map(|s| vec![s]),
        None => config::load_stages(&project),
    };
    let stages = match stages {
        Ok(stages) if problems.is_empty() => stages,
        Ok(_) => return Err(problems.into()),
        Err(d) => {
            problems.0.extend(d.0);
            problems.sort();
            return Err(problems.into());
        }
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
