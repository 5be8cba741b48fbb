//! `ferry fmt`: rewrite stage and project files in canonical order and layout.

use clap::Args;

use crate::cli::{CliError, CliResult, Context};

/// Rewrite files in canonical key order and layout, keeping comments.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry fmt\n  ferry fmt --check   # in CI: exit 1 if a file would change")]
pub struct FmtArgs {
    /// Change nothing; exit 1 and list the files that are not formatted.
    #[arg(long)]
    pub check: bool,
}

pub fn run(_ctx: &Context, _args: FmtArgs) -> CliResult {
    Err(CliError::new("ferry fmt is not built yet"))
}
