//! `ferry force-unlock ID [-s STAGE]`: remove a stage's state lock left behind by a run that
//! is gone. Taking the holder's id (not just the stage) makes sure the lock removed is the
//! one the user looked at, not one a new run has taken since.

use clap::Args;

use crate::cli::{CliError, CliResult, Context};
use crate::config;
use crate::state::{open_store, StateError, StateStore};

/// Remove a stage's state lock, given the id its error message showed.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry force-unlock 6f1c2b0e-3d4a-4e8f-9b7c-2a5d8e1f0c3b -s production")]
pub struct ForceUnlockArgs {
    /// The lock's id, as the lock error showed it.
    pub id: String,
    /// The stage whose lock it is. Default: the stage whose lock has this id.
    #[arg(short, long)]
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: ForceUnlockArgs) -> CliResult {
    let project = ctx.project()?;
    let store = open_store(&project)?;
    let stage = match args.stage {
        Some(stage) => stage,
        None => find_stage(store.as_ref(), &project, &args.id)?,
    };
    let holder = match store.lock_holder(&stage) {
        Ok(Some(h)) => h.describe(),
        Ok(None) => String::new(),
        Err(StateError::LockUnreadable { message, .. }) => format!("nobody readable ({message})"),
        Err(e) => return Err(e.into()),
    };
    store.force_unlock(&stage, &args.id)?;
    eprintln!("removed the lock of stage `{stage}` ({}), held by {holder}", store.lock_location(&stage));
    Ok(())
}

/// The stage whose lock has `id`; the error lists the locks there are.
fn find_stage(store: &dyn StateStore, project: &config::Project, id: &str) -> CliResult<String> {
    let mut held = Vec::new();
    for r in config::stage_refs(&project.root) {
        match store.lock_holder(&r.name) {
            Ok(Some(h)) if h.id == id => return Ok(r.name),
            Ok(Some(h)) => held.push(format!("stage `{}` is locked by {} with id `{}`", r.name, h.describe(), h.id)),
            Err(StateError::LockUnreadable { id: token, .. }) if token == id => return Ok(r.name),
            Err(StateError::LockUnreadable { id: token, location, .. }) => {
                held.push(format!("stage `{}` has an unreadable lock {location} with id `{token}`", r.name))
            }
            Ok(None) | Err(_) => {}
        }
    }
    let hint = if held.is_empty() { "no stage is locked".to_string() } else { held.join("; ") };
    Err(CliError::with_hint(format!("no stage's lock has id `{id}`; nothing was removed"), hint))
}
