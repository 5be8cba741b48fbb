//! `ferry release create` and `ferry release activate`: change which image digests an app
//! may run and which one it should, by editing the stage file (comments and layout kept) and
//! printing the diff, so the change is reviewed like any other. Also the helpers the other
//! stage-editing commands share: picking the stage, reading an app's recorded state,
//! writing an edit, the registry seam and the `--commit` seam.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::image::registry_error;
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{self, App, Digest, Project, Runtime, Stage};
use crate::edit::{EditLock, StageEdit};
use crate::history::short_digest;
use crate::registry::{ProjectRegistry, Registry};
use crate::state::{open_store, AppState};

/// Add image digests to an app as releases, and choose the active one.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry release create web sha256:2b51cd… --activate\n  \
                        ferry release activate web 3 -s production")]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub command: ReleaseCommand,
}

/// `ferry release …`.
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    Create(CreateArgs),
    Activate(ActivateArgs),
}

/// Declare DIGEST — or the image built from --source — as the app's next release (ids are
/// never reused) and print the diff.
///
/// A digest is verified in the stage's registry first (`ferry image push` fills the local
/// one). With --source, ferry builds the sources with the Docker Engine (build args
/// FERRY_GIT_SHA, FERRY_GIT_BRANCH, FERRY_GIT_REPO; tag GITSHA, `-dirty` for uncommitted
/// changes), pushes the image to the app's registry and adds its digest. A digest the app
/// already declares is not added again.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ferry release create web $(ferry image push image --repo web) --activate\n  \
    ferry release create api sha256:2b51cdaabcdc9c35b36e998ec81d2ed8507def0e4709a4d5003414e727e67fa9 -s staging\n  \
    ferry release create web --source . --activate --commit\n  \
    ferry release create web --source https://git.example.com/shop/web.git#v1.2 --build-arg MODE=prod")]
pub struct CreateArgs {
    /// The app, as named in the stage file.
    pub app: String,
    /// The image digest, `sha256:` and 64 hex digits (or --source to build one).
    #[arg(required_unless_present = "source", conflicts_with = "source")]
    pub digest: Option<String>,
    /// Build the release from sources: a folder, a .tgz/.tar.gz/.tar or .zip file, or a git
    /// URL (`URL#REF` for a branch, tag or commit).
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// The Dockerfile, relative to the build context. Default: `dockerfile` under
    /// [apps.NAME.build], else `Dockerfile`.
    #[arg(long, value_name = "FILE", requires = "source")]
    pub dockerfile: Option<String>,
    /// The Dockerfile stage to build.
    #[arg(long, value_name = "STAGE", requires = "source")]
    pub target: Option<String>,
    /// A build arg (repeatable), added to those under [apps.NAME.build].
    #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "source")]
    pub build_args: Vec<String>,
    /// Also make it the active release.
    #[arg(long)]
    pub activate: bool,
    /// The stage. Default: the project's only stage.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Do not check that the registry holds the digest.
    #[arg(long)]
    pub no_verify: bool,
    /// Apply the edited stage file at once, as `ferry commit` would.
    #[arg(long)]
    pub commit: bool,
}

/// Make release ID the app's active one and print the diff.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry release activate web 3 -s production")]
pub struct ActivateArgs {
    /// The app, as named in the stage file.
    pub app: String,
    /// A release id the app declares.
    pub id: u64,
    /// The stage. Default: the project's only stage.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Apply the edited stage file at once, as `ferry commit` would.
    #[arg(long)]
    pub commit: bool,
}

pub fn run(ctx: &Context, args: ReleaseArgs) -> CliResult {
    match args.command {
        ReleaseCommand::Create(a) => create(ctx, a),
        ReleaseCommand::Activate(a) => activate(ctx, a),
    }
}

impl From<&CreateArgs> for super::build::BuildFlags {
    fn from(args: &CreateArgs) -> Self {
        Self { dockerfile: args.dockerfile.clone(), target: args.target.clone(), build_args: args.build_args.clone() }
    }
}

fn create(ctx: &Context, args: CreateArgs) -> CliResult {
    let project = ctx.project()?;
    let lock = lock_edits(&project)?;
    let stage = load_stage(&project, args.stage.clone())?;
    let app = find_app(&stage, &args.app)?;
    // Everything that can refuse without side effects comes first: the stage file opens
    // before a build starts, so a build never runs for an edit that cannot be made.
    let recorded = app_state(&project, &stage.name, &app.name)?;
    let mut edit = open_edit(&project, &stage)?;
    let (digest, verified) = match (&args.source, &args.digest) {
        (Some(source), _) => (super::build::build_release(ctx, &project, &stage, app, source, &args)?, true),
        (None, Some(digest)) => (
            digest.parse().map_err(|e: config::DigestError| {
                CliError::with_hint(
                    e.to_string(),
                    "a digest is `sha256:` and 64 lowercase hex digits, as `ferry image push` prints",
                )
            })?,
            false,
        ),
        (None, None) => unreachable!("clap requires a digest or --source"),
    };
    let edit_err = |e: crate::edit::EditError| CliError::new(e.to_string());

    let id = match app.releases.iter().find(|(_, d)| **d == digest) {
        Some((&id, _)) => {
            eprintln!("release {id} of {} already is {digest}; not adding it again", app.name);
            id
        }
        None => {
            if !args.no_verify && !verified {
                verify(&project, &stage, app, &digest)?;
            }
            // A digest once declared and since deleted from the file comes back under its
            // id: an id stands for one digest forever. Anything else gets a fresh id.
            let before = recorded.releases.iter().find(|(_, r)| r.digest == digest).map(|(id, _)| *id);
            let id = before.unwrap_or_else(|| crate::pipeline::next_release_id(app, Some(&recorded)));
            edit.add_release(&app.name, id, &digest).map_err(edit_err)?;
            match before {
                Some(_) => eprintln!("added release {id} of {} back ({})", app.name, short_digest(&digest)),
                None => eprintln!("added release {id} of {} ({})", app.name, short_digest(&digest)),
            }
            id
        }
    };
    let mut event =
        crate::events::Event::new(crate::events::EventKind::Release, &project.name, crate::events::Outcome::Succeeded)
            .stage(&stage.name)
            .app(&app.name);
    event.release = Some(id);
    event.digest = Some(digest.to_string());
    event.action = args.activate.then(|| "activate".to_string());
    crate::events::emit(&project, &[event]);
    if args.activate {
        if app.active == Some(id) {
            eprintln!("release {id} already is the active one");
        } else {
            edit.set_active(&app.name, id).map_err(edit_err)?;
        }
    }
    finish(ctx, &project, &stage, &edit, args.commit, lock)
}

fn activate(ctx: &Context, args: ActivateArgs) -> CliResult {
    let project = ctx.project()?;
    let lock = lock_edits(&project)?;
    let stage = load_stage(&project, args.stage)?;
    let app = find_app(&stage, &args.app)?;
    let id = args.id;
    if !app.releases.contains_key(&id) {
        let recorded = app_state(&project, &stage.name, &app.name)?;
        let declared: Vec<String> = app.releases.keys().map(u64::to_string).collect();
        return Err(match recorded.releases.get(&id) {
            Some(r) => CliError::with_hint(
                format!("release {id} of {} was deleted from {}", app.name, stage.file.display()),
                format!(
                    "`ferry rollback {0} vN` restores a deployment that ran it, with its config; \
                     or add it back with `ferry release create {0} {1}`",
                    app.name, r.digest
                ),
            ),
            None => CliError::with_hint(
                format!("app `{}` declares no release {id}", app.name),
                if declared.is_empty() {
                    format!("add one with `ferry release create {} DIGEST`", app.name)
                } else {
                    format!("declared releases: {}", declared.join(", "))
                },
            ),
        });
    }
    let mut edit = open_edit(&project, &stage)?;
    if app.active == Some(id) {
        eprintln!("release {id} already is the active one of {}; nothing to change", app.name);
    } else {
        edit.set_active(&app.name, id).map_err(|e| CliError::new(e.to_string()))?;
    }
    finish(ctx, &project, &stage, &edit, args.commit, lock)
}

/// Check that the stage's registry holds `digest` in the app's repository.
fn verify(project: &Project, stage: &Stage, app: &App, digest: &Digest) -> CliResult {
    let registry = registry_for_stage(project, stage)?;
    registry.verify(&app.image, digest).map_err(|e| match registry_error(e) {
        CliError::Failed { message, hint } => CliError::Failed {
            message: format!("cannot add {digest} to app `{}`: {message}", app.name),
            hint: hint.map(|h| format!("{h}; or pass --no-verify")),
        },
        other => other,
    })
}

/// The registry a stage's images live in: the project's registry for `local` stages (found
/// or started on first use); ECR for `ecs` ones.
pub fn registry_for_stage(project: &Project, stage: &Stage) -> CliResult<Box<dyn Registry>> {
    // (Pushes go through `build::push_registry`: the same client for the local registry and ECR.)
    match &stage.runtime {
        Runtime::Local { .. } => Ok(Box::new(ProjectRegistry::new(project))),
        Runtime::Ecs(ecs) => {
            let sdk = crate::aws::block_on(crate::runtime::ecs::load_sdk_config(&ecs.region));
            Ok(Box::new(crate::registry::ecr::EcrRegistry::new(&sdk)))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared by the commands that read history or edit stage files.

/// Which stage a command works on: `-s STAGE`, or the project's only one.
pub(super) fn pick_stage(project: &Project, stage: Option<String>) -> CliResult<String> {
    if let Some(s) = stage {
        return Ok(s);
    }
    let refs = config::stage_refs(&project.root);
    match refs.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => Err(CliError::with_hint("this project has no stages", "create stages/NAME.toml (`ferry init`)")),
        many => Err(CliError::with_hint(
            "which stage? this project has several",
            format!("pass `-s STAGE`, one of: {}", many.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")),
        )),
    }
}

/// Load (and check) the stage `-s` names.
pub(super) fn load_stage(project: &Project, stage: Option<String>) -> CliResult<Stage> {
    Ok(config::load_stage(project, &pick_stage(project, stage)?)?)
}

/// App `name` of `stage`, or an error listing the apps it has.
pub(super) fn find_app<'a>(stage: &'a Stage, name: &str) -> CliResult<&'a App> {
    stage.apps.get(name).ok_or_else(|| {
        let apps: Vec<&str> = stage.apps.keys().map(String::as_str).collect();
        CliError::with_hint(
            format!("stage `{}` has no app `{name}`", stage.name),
            if apps.is_empty() { "the stage declares no apps".into() } else { format!("apps: {}", apps.join(", ")) },
        )
    })
}

/// What state records about `app` in `stage` (empty when nothing was applied yet). Read
/// without the lock: writes are atomic, so this is one consistent state, and these commands
/// record nothing.
pub(super) fn app_state(project: &Project, stage: &str, app: &str) -> CliResult<AppState> {
    let store = open_store(project)?;
    let state = store.read(stage)?.and_then(|mut s| s.apps.remove(app)).unwrap_or_default();
    // With the deployments older commits archived: history and rollback see them all.
    Ok(crate::state::archive::with_archived(store.as_ref(), stage, app, state)?)
}

/// The stage file (relative to the project root) of `stage`.
fn stage_path(project: &Project, stage: &Stage) -> PathBuf {
    config::stage_refs(&project.root)
        .into_iter()
        .find(|r| r.name == stage.name)
        .map_or_else(|| stage.file.clone(), |r| r.path)
}

/// Open `stage`'s file for editing.
pub(super) fn open_edit(project: &Project, stage: &Stage) -> CliResult<StageEdit> {
    let rel = stage_path(project, stage);
    let text = std::fs::read_to_string(project.root.join(&rel))
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", rel.display())))?;
    StageEdit::parse(&rel, &text).map_err(|d| CliError::Config(config::Diagnostics(vec![d])))
}

/// Take the project's stage-edit lock ([`EditLock`]), before the stage file is read.
pub(super) fn lock_edits(project: &Project) -> CliResult<EditLock> {
    EditLock::take(&project.root)
        .map_err(|e| CliError::new(format!("cannot lock stage file edits ({}): {e}", crate::edit::EDIT_LOCK_FILE)))
}

/// Write an edit back (when it changed anything), print its diff, and apply the stage file
/// at once with `--commit` (also when the file already said so: it may not be applied yet).
/// `lock` (taken before the file was read) is let go once the file is written.
pub(super) fn finish(
    ctx: &Context,
    project: &Project,
    stage: &Stage,
    edit: &StageEdit,
    commit: bool,
    lock: EditLock,
) -> CliResult {
    if !edit.is_changed() {
        drop(lock);
        return if commit { commit_edited_stage(ctx, &stage.name) } else { Ok(()) };
    }
    let rel = stage_path(project, stage);
    let path = project.root.join(&rel);
    // Every ferry takes the lock, but an editor (or an older ferry) does not: a file that
    // changed since it was read is not overwritten.
    let now =
        std::fs::read_to_string(&path).map_err(|e| CliError::new(format!("cannot read {}: {e}", rel.display())))?;
    if now != edit.original() {
        return Err(CliError::with_hint(
            format!("{} changed while this command ran (written by another program); nothing written", rel.display()),
            "run the command again: it reads the file anew",
        ));
    }
    // Atomic: an interrupted write never leaves half a stage file; the file keeps its mode
    // and a symlinked stage file its link.
    crate::atomic_file::write(&path, edit.to_string().as_bytes(), crate::atomic_file::Mode::Keep)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", rel.display())))?;
    drop(lock);
    print_out(&edit.diff(ctx.color))?;
    if commit {
        return commit_edited_stage(ctx, &stage.name);
    }
    eprintln!(
        "edited {}; review with `ferry plan -s {1}`, apply with `ferry commit -s {1}`",
        rel.display(),
        stage.name
    );
    Ok(())
}

/// `--commit`: apply the stage file just edited, as `ferry commit -s STAGE` would. The one
/// place the editing commands (`release`, `rollback`) reach the apply engine.
pub(super) fn commit_edited_stage(ctx: &Context, stage: &str) -> CliResult {
    // Asking for `--commit` is the confirmation: the diff was just printed.
    super::commit::run(
        ctx,
        super::commit::CommitArgs {
            stage: Some(stage.to_string()),
            plan_file: None,
            yes: true,
            parallelism: None,
            logs: false,
            progress: super::commit::ProgressStyle::Auto,
            allow_remove: false,
            refresh: false,
            events: None,
        },
    )
}
