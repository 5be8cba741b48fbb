//! `ferry completions SHELL`: shell completion scripts.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::{print_out, Cli, CliResult};

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry completions bash > /etc/bash_completion.d/ferry")]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> CliResult {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "ferry", &mut buf);
    print_out(&String::from_utf8_lossy(&buf))
}
