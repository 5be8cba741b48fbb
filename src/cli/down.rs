//! `ferry down [-s STAGE]`: stop a stage's local tasks (every stage's without `-s`); the
//! agent exits once nothing is left.

use clap::Args;

use crate::cli::agent::runtime_error;
use crate::cli::{CliResult, Context};
use crate::runtime::local::{self, protocol, Layout, LocalRuntime};

/// Stop every app of a stage on the local runtime.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry down -s development\n  ferry down")]
pub struct DownArgs {
    /// The stage to stop (default: every stage).
    #[arg(short, long)]
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: DownArgs) -> CliResult {
    let root = ctx.root()?;
    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        let running = match &args.stage {
            Some(stage) => {
                super::ps::local_stages(ctx, Some(stage))?;
                LocalRuntime::new(&root, stage).down().await.map_err(runtime_error)?
            }
            None => local::request(&Layout::new(&root), &protocol::Request::Down { stage: None })
                .await
                .map_err(runtime_error)?
                .is_some(),
        };
        match (running, &args.stage) {
            (false, _) => eprintln!("nothing runs: the agent is not running"),
            (true, Some(stage)) => eprintln!("stopped every task of stage {stage}"),
            (true, None) => eprintln!("stopped every task"),
        }
        Ok(())
    })
}
