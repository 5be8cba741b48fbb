//! `ferry rollback APP [vN]`: edit the stage file so the app's active release and config are
//! those deployment vN ran (default: what runs now after a failed deployment, else the last
//! good one before what runs now), and print the diff. It records nothing itself: applying the file records the deployment, and the apply
//! engine recognises it as "Rollback to vN" by its release and config
//! (`history::rollback_target_matching`), whoever made the edit.

use clap::Args;

use crate::cli::release::{app_state, find_app, finish, load_stage, lock_edits, open_edit};
use crate::cli::{CliError, CliResult, Context};
use crate::config;
use crate::config::source::{PathSeg, Target};
use crate::edit::{EditError, Restore, StageEdit, Unrestored};
use crate::history::{earlier_target, rollback_target, running_after_failure, short_digest, RollbackRefusal};
use crate::state::Deployment;

/// Edit the stage file back to what an earlier deployment ran.
///
/// Restores deployment vN's release (re-declared if it was deleted from the file), scale,
/// command, env, secret references, target group(s), health and deploy settings and release
/// tasks, and prints the diff;
/// `ferry commit` applies it and records "Rollback to vN".
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry rollback web                    # the last good deployment before this one (after a \
                  failed deploy: what runs now)\n  \
                        ferry rollback web v5 -s production   # deployment v5 (`ferry history web` lists them)"
)]
pub struct RollbackArgs {
    /// The app.
    pub app: String,
    /// The deployment to go back to, `vN` or `N`. Default: the one that runs now when the
    /// latest deployment failed or was aborted (the stage file still asks for it), else the last
    /// succeeded deployment before the one that runs now.
    #[arg(value_parser = parse_deployment, value_name = "vN")]
    pub deployment: Option<u64>,
    /// The stage. Default: the project's only stage.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Apply the edited stage file at once, as `ferry commit` would.
    #[arg(long)]
    pub commit: bool,
}

fn parse_deployment(s: &str) -> Result<u64, String> {
    s.strip_prefix('v')
        .unwrap_or(s)
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a deployment: write vN, e.g. v5"))
}

pub fn run(ctx: &Context, args: RollbackArgs) -> CliResult {
    let project = ctx.project()?;
    let lock = lock_edits(&project)?;
    let stage = load_stage(&project, args.stage)?;
    let app = find_app(&stage, &args.app)?;
    let recorded = app_state(&project, &stage.name, &app.name)?;
    let refused = |refusal: RollbackRefusal| {
        CliError::with_hint(format!("cannot roll back {}: {refusal}", app.name), refusal.hint(&app.name))
    };
    let restored = |target: &Deployment| -> CliResult<(StageEdit, Unrestored)> {
        let mut edit = open_edit(&project, &stage)?;
        let restore =
            Restore { release: target.release, digest: &target.digest, scale: target.scale, config: &target.config };
        let unrestored = edit.restore(app, restore).map_err(|e| match e {
            EditError::ReleaseChanged { app, id, declared, expected, .. } => {
                let d = config::stage_diagnostic(
                    &project.root,
                    &stage,
                    &[PathSeg::from("apps"), PathSeg::from(&app), "releases".into(), id.to_string().into()],
                    Target::Value,
                    format!(
                        "release {id} of app `{app}` is {} here, but v{} ran it as {}; release ids are immutable",
                        short_digest(&declared),
                        target.number,
                        short_digest(&expected)
                    ),
                )
                .with_hint(format!(
                    "set release {id} back to {expected}, what v{} ran; `ferry state show` shows what is recorded",
                    target.number
                ));
                CliError::Config(config::Diagnostics(vec![d]))
            }
            e => CliError::new(e.to_string()),
        })?;
        Ok((edit, unrestored))
    };
    let mut target = rollback_target(&recorded, args.deployment).map_err(refused)?;
    let (mut edit, mut unrestored) = restored(target)?;
    // After a failed deployment the default is what runs now; a file that declares it
    // already goes back further, as it would without the failure.
    if !edit.is_changed() && args.deployment.is_none() && running_after_failure(&recorded).is_some() {
        target = earlier_target(&recorded, None).map_err(refused)?;
        (edit, unrestored) = restored(target)?;
    }
    let what = format!("v{} (release {}, {})", target.number, target.release, short_digest(&target.digest));
    let mut event =
        crate::events::Event::new(crate::events::EventKind::Rollback, &project.name, crate::events::Outcome::Requested)
            .stage(&stage.name)
            .app(&app.name);
    event.deployment = Some(target.number);
    event.release = Some(target.release);
    event.digest = Some(target.digest.to_string());
    crate::events::emit(&project, &[event]);
    if !edit.is_changed() {
        eprintln!(
            "{} already declares what {what} ran; `ferry plan -s {}` shows what applying it changes",
            stage.file.display(),
            stage.name
        );
        return finish(ctx, &project, &stage, &edit, args.commit, lock);
    }
    for field in &unrestored.0 {
        eprintln!("note: {what} ran other {field}; the file keeps today's (edit them by hand if needed)");
    }
    eprintln!("rolling {} back to {what}", app.name);
    finish(ctx, &project, &stage, &edit, args.commit, lock)
}
