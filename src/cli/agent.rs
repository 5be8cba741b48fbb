//! `ferry agent start|stop|status`, and the hidden `ferry agent run` that `start` spawns
//! detached: the local runtime's background process for this project.

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::runtime::local::{self, Layout};

/// Manage the local runtime's agent for this project.
#[derive(Debug, Args)]
#[command(
    after_help = "The agent starts on demand; these commands are for looking and tidying up.\n\nExamples:\n  ferry agent status\n  ferry agent stop"
)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Start the agent in the background (no-op when it runs).
    #[command(after_help = "Example:\n  ferry agent start && ferry agent status")]
    Start,
    /// Stop every local task of this project and the agent.
    #[command(after_help = "Example:\n  ferry agent stop")]
    Stop,
    /// Show whether the agent runs (exit 3 when it does not).
    #[command(after_help = "Example:\n  ferry agent status || echo 'not running'")]
    Status,
    /// Run the agent in the foreground (what `start` runs).
    #[command(hide = true)]
    Run,
}

pub fn run(ctx: &Context, args: AgentArgs) -> CliResult {
    let layout = Layout::new(ctx.root()?);
    if let AgentCommand::Run = args.command {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        return match rt.block_on(local::agent::run(layout))? {
            true => Ok(()),
            false => {
                eprintln!("another agent already runs for this project");
                Ok(())
            }
        };
    }
    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        match args.command {
            AgentCommand::Start => {
                let exe = std::env::current_exe()?;
                let s = local::start_agent(&layout, &exe).await.map_err(runtime_error)?;
                eprintln!("agent running (pid {})", s.pid);
                Ok(())
            }
            AgentCommand::Stop => {
                if local::stop_agent(&layout, Duration::from_secs(150)).await.map_err(runtime_error)? {
                    eprintln!("agent stopped");
                } else {
                    eprintln!("agent not running");
                }
                Ok(())
            }
            AgentCommand::Status => match local::agent_status(&layout).await.map_err(runtime_error)? {
                Some(s) => {
                    let mut text = format!(
                        "agent running (pid {}, ferry {}, since {})\nstages: {}\nlive tasks: {}\n",
                        s.pid,
                        s.version,
                        s.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        if s.stages.is_empty() { "-".to_string() } else { s.stages.join(", ") },
                        s.tasks
                    );
                    if !s.killed_leftovers.is_empty() {
                        let pids: Vec<String> = s.killed_leftovers.iter().map(u32::to_string).collect();
                        text.push_str(&format!(
                            "at start, killed processes a killed agent left running: pids {}\n",
                            pids.join(", ")
                        ));
                    }
                    print_out(&text)
                }
                None => {
                    print_out("agent not running\n")?;
                    Err(CliError::Exit(3))
                }
            },
            AgentCommand::Run => unreachable!("handled above"),
        }
    })
}

/// A runtime error as a command error.
pub fn runtime_error(e: crate::runtime::RuntimeError) -> CliError {
    CliError::new(e.to_string())
}
