//! `ferry import`: write stage files from what already runs — live ECS services
//! (`--cluster`) or an AWS Copilot workspace (`--copilot DIR`) — and record adopted ECS
//! services in state (`src/import/`).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{self, Project};
use crate::edit::{FileKind, StageEdit};
use crate::import::{self, mapping, ImportError, ImportedStage};
use crate::state::{command_line, LockedStage};

/// Write a stage file from live ECS services or an AWS Copilot workspace.
///
/// From ECS, each service becomes an app (its name without a `STAGE-` prefix): its image
/// repository with the digest it runs as release 1, active (a tag is resolved through ECR),
/// cpu, memory, command, port, environment, secrets as references (never values), health
/// check, scale or its autoscaled range (a CPU or memory policy of another name adopted: ferry
/// puts that one from then on), the deployment (strategy, bake time, steps, circuit breaker,
/// alarms, traffic shifting, hooks, grace period), target groups, sidecars and the containers'
/// waits, roles, logging, architecture, ephemeral storage, capacity providers, Exec and tags;
/// the network goes to `[runtime]`. Whatever the stage file cannot say (volumes, entry
/// points, …) is listed as a warning per service. The services are adopted, not replaced:
/// state records what runs, so the first `ferry plan --refresh` shows no changes and the
/// first commit of a new release updates the same service with a new revision of the same
/// family. A re-import removes the keys a service stopped using.
///
/// Importing into a file that already declares the app is refused without --force, unless
/// the app is the same adopted service (then the file is brought up to date, comments
/// kept; an unchanged service changes nothing).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry import -s production --cluster shop --service shop-web --service shop-api\n  \
                        ferry import -s staging --cluster shop-staging --all --dry-run\n  \
                        ferry import --copilot ../shop --region eu-central-1"
)]
pub struct ImportArgs {
    /// The stage to write (`stages/STAGE.toml`). Not with --copilot (one stage per environment).
    #[arg(short, long, required_unless_present = "copilot", conflicts_with = "copilot")]
    pub stage: Option<String>,
    /// The ECS cluster whose services are imported.
    #[arg(long, required_unless_present = "copilot", conflicts_with = "copilot")]
    pub cluster: Option<String>,
    /// A service to import (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Import every service of the cluster.
    #[arg(long)]
    pub all: bool,
    /// A Copilot workspace: the folder holding `copilot/`.
    #[arg(long, value_name = "DIR")]
    pub copilot: Option<PathBuf>,
    /// AWS region. Default: the stage's `[runtime] region`, else AWS_REGION / AWS_DEFAULT_REGION.
    #[arg(long)]
    pub region: Option<String>,
    /// Print the stage files that would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite apps the stage file already declares (their other keys are kept).
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Context, args: ImportArgs) -> CliResult {
    let project = ctx.project()?;
    match &args.copilot {
        Some(dir) => copilot(&project, &args, &ctx.cwd.join(dir)),
        None => from_ecs(ctx, &project, &args),
    }
}

fn import_error(e: ImportError) -> CliError {
    match e.hint() {
        Some(hint) => CliError::with_hint(e.to_string(), hint),
        None => CliError::new(e.to_string()),
    }
}

/// The stage file of `stage`: the existing one, else `stages/STAGE.toml`.
fn stage_file(project: &Project, stage: &str) -> PathBuf {
    config::stage_refs(&project.root)
        .into_iter()
        .find(|r| r.name == stage)
        .map_or_else(|| Path::new(config::STAGES_DIR).join(format!("{stage}.toml")), |r| r.path)
}

fn region(args: &ImportArgs, existing: Option<&str>) -> CliResult<String> {
    args.region
        .clone()
        .or_else(|| existing.map(str::to_string))
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| CliError::with_hint("no AWS region to import from", "pass --region REGION, or set AWS_REGION"))
}

fn from_ecs(ctx: &Context, project: &Project, args: &ImportArgs) -> CliResult {
    let stage = args.stage.clone().unwrap_or_default();
    if !config::validate::is_stage_name(&stage) {
        return Err(CliError::new(format!("`{stage}` is not a stage name (a DNS label)")));
    }
    let rel = stage_file(project, &stage);
    let current = read_current(project, &rel)?;
    let existing_region = current.get("runtime").and_then(|r| r.get("region")).and_then(|r| r.as_str());
    let request = import::ecs::EcsRequest {
        stage: stage.clone(),
        region: region(args, existing_region)?,
        cluster: args.cluster.clone().unwrap_or_default(),
        services: args.services.clone(),
        all: args.all,
    };
    let sdk = crate::aws::block_on(crate::runtime::ecs::load_sdk_config(&request.region));
    let imported = import::ecs::read(&sdk, &request).map_err(import_error)?;

    let lock = super::release::lock_edits(project)?;
    // Read again under the edit lock: what was read before may have changed.
    let current = read_current(project, &rel)?;
    let mut session = LockedStage::open(project, &stage, &command_line(), ctx.lock_timeout)?;
    let text = edited_text(project, &rel, &current, &imported, mapping::app_keys(mapping::ECS_RULES))?;
    refuse_conflicts(project, &current, &imported, session.state(), &rel, &text, args.force)?;
    let desired = config::validate::load_stage_text(&rel, text.clone(), &stage)?;
    eprint!("{}", import::write::warning_lines(&imported.warnings));
    if args.dry_run {
        drop(lock);
        session.unlock()?;
        return print_out(&text);
    }
    let mut state = session.state().clone();
    import::write::record(&mut state, &desired, &imported, chrono::Utc::now())
        .map_err(|e| CliError::new(format!("cannot record the imported services in state: {e}")))?;
    // State first, then the file: killed in between, state names services the file does not
    // declare yet (a re-import finishes the job; a plan will not remove them unasked), never
    // a file declaring apps that state does not know as adopted, whose next commit would
    // create a second service beside the live one.
    if &state != session.state() {
        session.write(state)?;
    }
    write_file(project, &rel, &text)?;
    drop(lock);
    session.unlock()?;
    let services: Vec<&str> =
        imported.apps.iter().filter_map(|a| a.adopted.as_ref()).map(|a| a.names.service.as_str()).collect();
    eprintln!(
        "imported {} into {}, adopted as they run ({} warning{}); check with `ferry plan -s {stage} --refresh`",
        services.join(", "),
        rel.display(),
        imported.warnings.len(),
        if imported.warnings.len() == 1 { "" } else { "s" },
    );
    Ok(())
}

fn copilot(project: &Project, args: &ImportArgs, dir: &Path) -> CliResult {
    let stages = import::copilot::read(dir, &region(args, None)?).map_err(import_error)?;
    let lock = super::release::lock_edits(project)?;
    let mut written = Vec::new();
    for (stage, imported) in &stages {
        if !config::validate::is_stage_name(stage) {
            return Err(CliError::new(format!("Copilot environment `{stage}` is not a stage name (a DNS label)")));
        }
        let rel = stage_file(project, stage);
        let current = read_current(project, &rel)?;
        let text = edited_text(project, &rel, &current, imported, mapping::app_keys(mapping::COPILOT_RULES))?;
        let state = crate::state::StageState::new(stage);
        refuse_conflicts(project, &current, imported, &state, &rel, &text, args.force)?;
        config::validate::load_stage_text(&rel, text.clone(), stage)?;
        eprint!("{}", import::write::warning_lines(&imported.warnings));
        written.push((rel, text));
    }
    if args.dry_run {
        for (rel, text) in &written {
            print_out(&format!("# {}\n{text}", rel.display()))?;
        }
        return Ok(());
    }
    for (rel, text) in &written {
        write_file(project, rel, text)?;
    }
    drop(lock);
    let files: Vec<String> = written.iter().map(|(r, _)| r.display().to_string()).collect();
    eprintln!("imported the Copilot workspace into {}", files.join(", "));
    Ok(())
}

/// The stage file's parsed tree (`{}` when there is none yet).
fn read_current(project: &Project, rel: &Path) -> CliResult<serde_json::Value> {
    let path = project.root.join(rel);
    if !path.exists() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    if config::source::Format::of_path(rel) != config::source::Format::Toml {
        return Err(CliError::with_hint(
            format!("{}: ferry import writes TOML stage files", rel.display()),
            "import into a new stage, or convert the file to TOML",
        ));
    }
    let src = config::validate::read_source(&project.root, rel)
        .map_err(|d| CliError::Config(config::Diagnostics(vec![d])))?;
    Ok(src.root().to_json())
}

/// Apps the file declares that the import would overwrite: an error without `--force`,
/// unless recorded state says the app is the very service imported again, or the import
/// changes nothing (`text` is the file as it is).
fn refuse_conflicts(
    project: &Project,
    current: &serde_json::Value,
    imported: &ImportedStage,
    state: &crate::state::StageState,
    rel: &Path,
    text: &str,
    force: bool,
) -> CliResult {
    if force || std::fs::read_to_string(project.root.join(rel)).ok().as_deref() == Some(text) {
        return Ok(());
    }
    // Another runtime or cluster would move every app of the stage, not only those imported.
    let runtime = current.get("runtime");
    let kind = runtime.and_then(|r| r.get("kind")).and_then(|k| k.as_str()).unwrap_or("local");
    let cluster = runtime.and_then(|r| r.get("cluster")).and_then(|c| c.as_str());
    let has_apps = current.get("apps").and_then(|a| a.as_object()).is_some_and(|a| !a.is_empty());
    let wanted = imported.runtime.cluster.as_deref();
    if has_apps && (kind != "ecs" || cluster.is_some_and(|c| Some(c) != wanted)) {
        return Err(CliError::with_hint(
            format!(
                "{} runs on {kind}{}, not on ECS cluster {}; nothing written",
                rel.display(),
                cluster.map(|c| format!(" cluster {c}")).unwrap_or_default(),
                wanted.unwrap_or("?")
            ),
            "import into another stage, or pass --force to move the stage's [runtime]",
        ));
    }
    let declared = |app: &str| current.get("apps").and_then(|a| a.get(app)).is_some();
    let same_service = |app: &import::ImportedApp| {
        let recorded = state.apps.get(&app.name).and_then(|a| a.adopted.as_ref());
        matches!((recorded, &app.adopted), (Some(r), Some(a)) if r.service == a.names.service)
    };
    let taken: Vec<&str> =
        imported.apps.iter().filter(|a| declared(&a.name) && !same_service(a)).map(|a| a.name.as_str()).collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(CliError::with_hint(
        format!("{} already declares app{} {}; nothing written", rel.display(), if taken.len() == 1 { "" } else { "s" }, taken.join(", ")),
        "pass --force to overwrite what the import says of them (their other keys are kept), or import into another stage",
    ))
}

/// The stage file's text with `imported` put in (a new file in `fmt`'s layout).
fn edited_text(
    project: &Project,
    rel: &Path,
    current: &serde_json::Value,
    imported: &ImportedStage,
    owned: Vec<&'static str>,
) -> CliResult<String> {
    let path = project.root.join(rel);
    let original = if path.exists() {
        std::fs::read_to_string(&path).map_err(|e| CliError::new(format!("cannot read {}: {e}", rel.display())))?
    } else {
        String::new()
    };
    let mut edit = StageEdit::parse(rel, &original).map_err(|d| CliError::Config(config::Diagnostics(vec![d])))?;
    import::write::apply(&mut edit, current, imported, &owned).map_err(|e| CliError::new(e.to_string()))?;
    if original.is_empty() {
        let header = "# Written by `ferry import`; warnings it printed name what this file does not say.\n\n";
        let text = format!("{header}{edit}");
        return crate::edit::format_file(rel, &text, FileKind::Stage)
            .map_err(|d| CliError::Config(config::Diagnostics(vec![d])));
    }
    Ok(edit.to_string())
}

fn write_file(project: &Project, rel: &Path, text: &str) -> CliResult {
    let path = project.root.join(rel);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    crate::atomic_file::write(&path, text.as_bytes(), crate::atomic_file::Mode::Keep)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", rel.display())))
}
