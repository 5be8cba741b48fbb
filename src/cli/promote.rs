//! `ferry promote APP --from STAGE [--release ID] [--to STEP] [--commit]`: copy a release's
//! digest (never its config) into every stage of the next pipeline step, by editing their
//! stage files, once the step's required status checks are `success` for that digest.
//! `--commit` applies every target stage at once, each under its own lock with its own
//! health-gated rollout, and reports per stage.

use chrono::Utc;
use clap::Args;

use crate::apply::HumanHook;
use crate::cli::commit::{commit_stage, StageCommit};
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{Project, StateBackend};
use crate::events::{Event, EventKind, Outcome};
use crate::pipeline::promotion::{self, Destination, TargetChange};
use crate::pipeline::{open_records, PipelineError, StatusStore};

/// Promote an app's release into the next pipeline step.
///
/// Takes the app's active release in STAGE (or --release ID) and, in every stage of the next
/// step (or of --to STEP), declares its digest as a new release and activates it. A stage
/// that already declares the digest re-activates that release. Each stage keeps its own
/// config, scale and secrets. The step's required checks must be `success` for the digest.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry promote web --from development\n  \
                        ferry promote web --from staging --release 7 --commit\n  \
                        ferry promote api --from development --to production\n  \
                        ferry promote api --from development --to-app api-eu   # into app api-eu")]
pub struct PromoteArgs {
    /// The app, as named in the stage files.
    pub app: String,
    /// The stage to promote from.
    #[arg(long, value_name = "STAGE")]
    pub from: String,
    /// The release id in the source stage (default: its active release).
    #[arg(long, value_name = "ID")]
    pub release: Option<u64>,
    /// The step to promote into (default: the step after the source stage's).
    #[arg(long, value_name = "STEP")]
    pub to: Option<String>,
    /// The app to promote into, in the target stages (default: the app of the same name).
    #[arg(long, value_name = "APP")]
    pub to_app: Option<String>,
    /// Apply every target stage at once, as `ferry commit --yes` would.
    #[arg(long)]
    pub commit: bool,
    /// With --commit: at most N operations at once per stage.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelism: Option<u32>,
}

impl From<PipelineError> for CliError {
    fn from(e: PipelineError) -> Self {
        let hint = e.hint();
        match e {
            PipelineError::Config(d) => CliError::Config(d),
            e => CliError::Failed { message: e.to_string(), hint },
        }
    }
}

impl From<crate::pipeline::RecordError> for CliError {
    fn from(e: crate::pipeline::RecordError) -> Self {
        CliError::from(PipelineError::from(e))
    }
}

pub fn run(ctx: &Context, args: PromoteArgs) -> CliResult {
    let project = ctx.project()?;
    // The target stage files are read and edited under the edit lock, as `release create`'s.
    let lock = super::release::lock_edits(&project)?;
    let status = StatusStore::new(open_records(&project)?).log(&args.app)?;
    let to = Destination { step: args.to.as_deref(), app: args.to_app.as_deref() };
    let promotion = promotion::prepare(&project, &status, &args.app, &args.from, args.release, to)
        .map_err(|e| checks_refusal(&project, e))?;
    if promotion.targets.is_empty() {
        return Err(CliError::new(format!("step `{}` has no stage to promote into", promotion.step.name)));
    }
    let into =
        if promotion.target_app == promotion.app { String::new() } else { format!(" as app {}", promotion.target_app) };
    eprintln!(
        "promoting {} release {} ({}) from {} into step {}{into}",
        promotion.app,
        promotion.from_release,
        promotion.digest.short(),
        promotion.from_stage,
        promotion.step.name
    );
    for t in &promotion.targets {
        match t.change {
            TargetChange::AlreadyActive => {
                eprintln!("{}: already runs it as release {}", t.stage, t.release);
            }
            change => {
                promotion::write_edit(&project.root, &t.file, &t.edit)?;
                print_out(&t.edit.diff(ctx.color))?;
                let how = if change == TargetChange::NewRelease { "new release" } else { "re-activated release" };
                eprintln!("{}: {how} {}", t.stage, t.release);
            }
        }
    }
    drop(lock);
    promotion::record_pending(open_records(&project)?.as_ref(), &promotion, Utc::now())?;
    let stages: Vec<&str> = promotion.targets.iter().map(|t| t.stage.as_str()).collect();
    let events: Vec<Event> = stages
        .iter()
        .map(|stage| {
            let mut e =
                Event::new(EventKind::Promote, &project.name, Outcome::Requested).stage(stage).app(&promotion.app);
            e.action = Some(format!("from {} into step {}", promotion.from_stage, promotion.step.name));
            e.release = Some(promotion.from_release);
            e.digest = Some(promotion.digest.to_string());
            e
        })
        .collect();
    crate::events::emit(&project, &events);
    if !args.commit {
        eprintln!(
            "review with `ferry plan -s STAGE`, apply with `ferry commit -s STAGE` for {} (or promote with --commit)",
            stages.join(", ")
        );
        return Ok(());
    }
    commit_all(ctx, &project, &stages, args.parallelism.map(|n| n as usize), &promotion.description())
}

/// A refusal for unmet checks, which with the local backend also says where checks are
/// kept: in `.ferry/records/` of this checkout, so a check reported by another CI job (on
/// another machine) is never seen here.
fn checks_refusal(project: &Project, e: PipelineError) -> CliError {
    let unmet = matches!(e, PipelineError::ChecksNotMet { .. });
    let mut refusal = CliError::from(e);
    if let (true, StateBackend::Local, CliError::Failed { hint: Some(hint), .. }) =
        (unmet, &project.state, &mut refusal)
    {
        hint.push_str(&format!("\n  {LOCAL_CHECKS_NOTE}"));
    }
    refusal
}

/// Why a check reported in one CI job is missing in the next, with the local backend.
pub(crate) const LOCAL_CHECKS_NOTE: &str = "this project keeps state and status checks in .ferry/ on this \
     machine (`backend = \"local\"`), so checks reported by another CI job or machine are not seen here; \
     use the S3 backend ([state] backend = \"s3\" in ferry.toml) to share them";

/// Apply `stages` concurrently, each on its own thread under its own lock, and report each.
fn commit_all(ctx: &Context, project: &Project, stages: &[&str], parallelism: Option<usize>, what: &str) -> CliResult {
    let options = StageCommit { yes: true, parallelism, ..StageCommit::default() };
    let results: Vec<(&str, CliResult)> = std::thread::scope(|scope| {
        let handles: Vec<_> = stages
            .iter()
            .map(|stage| {
                let options = &options;
                scope.spawn(move || {
                    let mut hook = HumanHook::new(true);
                    commit_stage(ctx, project, stage, None, options, &mut hook)
                })
            })
            .collect();
        stages
            .iter()
            .zip(handles)
            .map(|(stage, h)| (*stage, h.join().unwrap_or_else(|_| Err(CliError::new("the commit thread panicked")))))
            .collect()
    });
    let mut out = format!("\n{what}:\n");
    let mut worst = 0u8;
    for (stage, result) in results {
        let line = match result {
            Ok(()) => "succeeded".to_string(),
            Err(CliError::Exit(code)) => {
                worst = worst.max(code);
                "failed (see its summary above)".to_string()
            }
            Err(CliError::Failed { message, .. }) => {
                worst = worst.max(1);
                format!("failed: {message}")
            }
            Err(CliError::Config(d)) => {
                worst = worst.max(1);
                format!("failed: {d}")
            }
        };
        out.push_str(&format!("  {stage}: {line}\n"));
    }
    print_out(&out)?;
    if worst == 0 {
        Ok(())
    } else {
        Err(CliError::Exit(worst))
    }
}
