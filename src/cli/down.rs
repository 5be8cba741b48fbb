//! `ferry down [-s STAGE]`: stop a stage's local tasks (every stage's without `-s`); the
//! agent exits once nothing is left. The stage's state then records nothing running, so the
//! next `ferry commit` starts the apps again instead of planning "no changes" for a stage
//! that serves nothing. It writes like a commit, so it takes each stage's lock first: under a
//! running commit it would stop tasks that the commit's rollback starts again.

use clap::Args;

use crate::cli::agent::runtime_error;
use crate::cli::{CliResult, Context};
use crate::runtime::local::{self, protocol, Layout, LocalRuntime};
use crate::state::{command_line, LockedStage};

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
    let stages = super::ps::local_stages(ctx, args.stage.as_deref())?;
    let project = ctx.project()?;
    let mut sessions = Vec::with_capacity(stages.len());
    for stage in &stages {
        sessions.push(LockedStage::open(&project, stage, &command_line(), ctx.lock_timeout)?);
    }
    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        let running = match &args.stage {
            Some(stage) => LocalRuntime::new(&root, stage).down().await.map_err(runtime_error)?,
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
        Ok::<(), crate::cli::CliError>(())
    })?;
    forget_running(sessions)
}

/// Record that nothing runs on these stages any more (history and releases stay), under
/// each stage's lock, and let go of the locks.
fn forget_running(sessions: Vec<LockedStage>) -> CliResult {
    for mut session in sessions {
        let stage = session.state().stage.clone();
        if session.is_stored() && session.state().apps.values().any(|a| a.active.is_some()) {
            session.update(|state| state.apps.values_mut().for_each(|a| a.active = None))?;
            eprintln!("stage {stage}: recorded as stopped; `ferry commit -s {stage}` starts it again");
        }
        session.unlock()?;
    }
    Ok(())
}
