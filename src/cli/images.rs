//! `ferry images sync|history`: follow registry tags (the local registry, or ECR for ECS
//! stages). An app with `track = "TAG"` gets the digest its tag names as a new, active
//! release in its stage file whenever the tag moves; every move is recorded (time, tag,
//! old → new digest). Built for a schedule: `ferry images sync && ferry commit --yes`.

use clap::{Args, Subcommand};

use crate::cli::release::registry_for_stage;
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config;
use crate::pipeline::open_records;
use crate::pipeline::promotion::write_edit;
use crate::pipeline::tracking::{self, ImageImport};
use crate::state::open_store;

/// Follow registry tags of apps with `track = "TAG"`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry images sync --dry-run\n  ferry images sync -s development && ferry commit \
                        -s development --yes\n  ferry images history web")]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: ImagesCommand,
}

/// `ferry images …`.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    Sync(SyncArgs),
    History(HistoryArgs),
}

/// Resolve every tracked tag; where it names a new digest, add it as a release and activate
/// it in the stage file.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry images sync && ferry commit --yes")]
pub struct SyncArgs {
    /// Only this stage (default: every stage).
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Show what would move; edit and record nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// List the recorded tag moves of an app, oldest first.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry images history web --json")]
pub struct HistoryArgs {
    /// The app.
    pub app: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: ImagesArgs) -> CliResult {
    match args.command {
        ImagesCommand::Sync(a) => sync(ctx, a),
        ImagesCommand::History(a) => history(ctx, a),
    }
}

fn sync(ctx: &Context, args: SyncArgs) -> CliResult {
    let project = ctx.project()?;
    let names: Vec<String> = match &args.stage {
        Some(s) => vec![s.clone()],
        None => config::stage_refs(&project.root).into_iter().map(|r| r.name).collect(),
    };
    let store = open_store(&project)?;
    let records = if args.dry_run { None } else { Some(open_records(&project)?) };
    // Stage files are read and edited under the edit lock, as `release create`'s.
    let _lock = if args.dry_run { None } else { Some(super::release::lock_edits(&project)?) };
    let now = chrono::Utc::now();
    let mut moved = 0;
    for name in &names {
        let stage = config::load_stage(&project, name)?;
        if !stage.apps.values().any(|a| a.track.is_some()) {
            continue;
        }
        // The local registry, or ECR in the stage's region.
        let registry = registry_for_stage(&project, &stage)?;
        let recorded = store.read(name)?;
        let sync = tracking::sync_stage(&project, &stage, recorded.as_ref(), registry.as_ref(), now)?;
        let mut out = String::new();
        for m in &sync.moves {
            out.push_str(&describe(m));
        }
        if let Some((file, edit)) = &sync.edit {
            if let Some(records) = &records {
                write_edit(&project.root, file, edit)?;
                tracking::record_imports(records.as_ref(), &sync.moves)?;
            }
            out.push_str(&edit.diff(ctx.color));
        }
        moved += sync.moves.len();
        print_out(&out)?;
    }
    match (moved, args.dry_run) {
        (0, _) => eprintln!("every tracked tag is where the stage files say"),
        (_, true) => eprintln!("dry run: nothing was edited or recorded"),
        (_, false) => eprintln!("edited the stage files; apply with `ferry commit`"),
    }
    Ok(())
}

fn describe(m: &ImageImport) -> String {
    let from = m.from.as_ref().map_or("(none)".to_string(), |d| d.short().to_string());
    let how = if m.reactivated { "re-activated release" } else { "new release" };
    format!("{}: {} follows tag `{}`: {from} → {} ({how} {})\n", m.stage, m.app, m.tag, m.to.short(), m.release)
}

fn history(ctx: &Context, args: HistoryArgs) -> CliResult {
    let project = ctx.project()?;
    let records = open_records(&project).map_err(|e| CliError::new(e.to_string()))?;
    let log = tracking::imports(records.as_ref(), &args.app)?;
    if args.json {
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&log.imports).expect("imports serialise")));
    }
    if log.imports.is_empty() {
        eprintln!("no image imports recorded for {}", args.app);
        return Ok(());
    }
    let mut out = String::new();
    for m in &log.imports {
        out.push_str(&format!("{}  {}", m.at.format("%Y-%m-%d %H:%M:%S UTC"), describe(m)));
    }
    print_out(&out)
}
