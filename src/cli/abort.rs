//! `ferry abort [-s STAGE]`: ask the `ferry commit` holding a stage's lock to abort — it
//! rolls back its in-flight deployments, records them `aborted` and releases the lock — and
//! wait until it has. The request is a file the committing engine polls
//! (`.ferry/abort/<stage>.json`, see `apply::abort`), naming the lock it is meant for.

use std::time::{Duration, Instant};

use clap::Args;

use crate::apply::abort::{request_path, AbortRequest};
use crate::cli::stage::select_stages;
use crate::cli::{CliError, CliResult, Context};
use crate::poll::Poll;
use crate::state::open_store;

/// Abort the commit running on a stage, from another shell.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry abort\n  ferry abort -s production --wait 10m")]
pub struct AbortArgs {
    /// The stage. Not needed when the project has one stage.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// How long to wait for the commit to roll back and let go of the lock.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub wait: crate::config::Duration,
}

pub fn run(ctx: &Context, args: AbortArgs) -> CliResult {
    let project = ctx.project()?;
    let stage = select_stages(&project, args.stage.as_deref(), false)?.remove(0);
    let store = open_store(&project)?;
    let Some(holder) = store.lock_holder(&stage)? else {
        return Err(CliError::new(format!("nothing to abort: no ferry holds the lock of stage {stage}")));
    };
    if holder.is_gone() {
        return Err(holder_gone(&holder, &stage));
    }
    let user = crate::history::operator().unwrap_or_else(|| "a user with no name".into());
    let request = AbortRequest {
        lock_id: holder.id.clone(),
        requested_by: format!("{user} (pid {} on {})", std::process::id(), crate::state::store::hostname()),
        requested_at: chrono::Utc::now(),
    };
    let path = request_path(&project.root, &stage);
    request.write(&path).map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    eprintln!("asked {} to abort; waiting for it to roll back…", holder.describe());
    let started = Instant::now();
    let mut poll = Poll::new(Duration::from_millis(50), Duration::from_millis(250)).within(args.wait.to_std());
    loop {
        match store.lock_holder(&stage)? {
            Some(h) if h.id == holder.id => {
                if h.is_gone() {
                    let _ = std::fs::remove_file(&path);
                    return Err(holder_gone(&h, &stage));
                }
            }
            _ => {
                eprintln!("aborted: stage {stage} is unlocked");
                let event = crate::events::Event::new(
                    crate::events::EventKind::Abort,
                    &project.name,
                    crate::events::Outcome::Succeeded,
                )
                .stage(&stage)
                .duration(started.elapsed());
                crate::events::emit(&project, &[event]);
                return Ok(());
            }
        }
        if !poll.wait_blocking() {
            let _ = std::fs::remove_file(&path);
            return Err(CliError::with_hint(
                format!("{} still holds the lock of stage {stage} after {}", holder.describe(), args.wait),
                format!("if it is gone, run `ferry force-unlock {}`", holder.id),
            ));
        }
    }
}

/// The lock's holder was killed (or lost) before it could let go: nothing is left to ask.
fn holder_gone(holder: &crate::state::LockInfo, stage: &str) -> CliError {
    CliError::with_hint(
        format!("nothing to abort: {} holds the lock of stage {stage} but no longer runs", holder.describe()),
        format!(
            "it was killed before it could let go; run `ferry force-unlock {}`, and the next `ferry commit` \
             settles what it left in progress",
            holder.id
        ),
    )
}
