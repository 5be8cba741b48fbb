//! `ferry preview up|down|list|prune`: preview stages per pull request, made from the
//! template stage of `[pipeline.preview]` (see `crate::preview`).
//!
//! `up` reserves the preview in the `previews` record (ports, `creating`) before anything
//! runs, then commits the rendered stage under the preview's own lock; `down` stops every
//! task, removes the preview's state, logs and record, and works on what a killed `up` left.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::apply::HumanHook;
use crate::cli::commit::{commit_desired, StageCommit};
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{self, Digest, Project, Runtime};
use crate::events::{Emitter, Event, EventKind, Outcome};
use crate::pipeline::records::{open_records, RecordStore};
use crate::preview::{self, Preview, PreviewError, PreviewSettings, PreviewStatus};
use crate::state::{command_line, open_store, LockedStage, StateError};

/// Preview stages per pull request.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry preview up 12 --source . --branch feat/x --sha $GITHUB_SHA --yes\n  \
                        ferry preview list --json\n  ferry preview down 12\n  ferry preview prune --older-than 7d\n  \
                        ferry promote web --from pr-12")]
pub struct PreviewArgs {
    #[command(subcommand)]
    pub command: PreviewCommand,
}

#[derive(Debug, Subcommand)]
pub enum PreviewCommand {
    Up(UpArgs),
    Down(DownArgs),
    List(ListArgs),
    Prune(PruneArgs),
}

/// The PR argument, checked when the command runs (not by clap), so that the CI examples'
/// `${{ … }}` placeholders still parse as command lines in `tests/pipeline.rs`.
fn pr_number(text: &str) -> CliResult<u64> {
    preview::parse_pr(text)
        .map_err(|e| CliError::with_hint(e, "pass the pull request's number, e.g. `ferry preview up 12`"))
}

/// Create or update the preview of a pull request and print its URL (on stdout; the plan
/// and progress go to stderr).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry preview up 12 --source . --branch feat/x --sha 3f2a9c1 --yes\n  \
                        ferry preview up 12 --release web=sha256:2b51cd… --yes")]
pub struct UpArgs {
    /// The pull request number.
    #[arg(allow_hyphen_values = true)]
    pub pr: String,
    /// The image to run: `DIGEST` for every app, or `APP=DIGEST` (repeatable). Default: the
    /// template's active releases (or what the preview ran last).
    #[arg(long, value_name = "DIGEST", conflicts_with = "source")]
    pub release: Vec<String>,
    /// Build the apps that have `[apps.NAME.build]` (or the only app) from sources, as
    /// `ferry release create --source` does.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// The PR's branch (for `{branch}` in env overrides and `preview list`).
    #[arg(long)]
    pub branch: Option<String>,
    /// The PR's head commit (for `{sha}`).
    #[arg(long)]
    pub sha: Option<String>,
    /// Apply without asking.
    #[arg(short, long)]
    pub yes: bool,
    /// Also append the deploy events to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
}

/// Remove a pull request's preview: tasks, ports, state, logs and record.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry preview down 12")]
pub struct DownArgs {
    /// The pull request number.
    #[arg(allow_hyphen_values = true)]
    pub pr: String,
    /// Also append the deploy events to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
}

/// Every preview: PR, stage, release, age and URL.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry preview list\n  ferry preview list --json")]
pub struct ListArgs {
    /// One JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Remove the previews not updated for a while.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry preview prune --older-than 7d")]
pub struct PruneArgs {
    /// e.g. `7d`, `12h`.
    #[arg(long, value_name = "AGE", value_parser = preview::parse_age)]
    pub older_than: chrono::Duration,
}

pub fn run(ctx: &Context, args: PreviewArgs) -> CliResult {
    let project = ctx.project()?;
    match args.command {
        PreviewCommand::Up(a) => up(ctx, &project, a),
        PreviewCommand::Down(a) => {
            let events = a.events.map(|f| ctx.cwd.join(f));
            down(ctx, &project, pr_number(&a.pr)?, events)
        }
        PreviewCommand::List(a) => list(&project, a.json),
        PreviewCommand::Prune(a) => prune(ctx, &project, a.older_than),
    }
}

impl From<PreviewError> for CliError {
    fn from(e: PreviewError) -> Self {
        CliError::Failed { message: e.message, hint: e.hint }
    }
}

fn record_error(e: crate::pipeline::RecordError) -> CliError {
    CliError::new(format!("previews: {e}"))
}

fn settings(project: &Project) -> CliResult<&PreviewSettings> {
    project.preview.as_ref().ok_or_else(|| {
        CliError::with_hint(
            "this project has no previews: ferry.toml has no [pipeline.preview]",
            "add [pipeline.preview] with `template = \"STAGE\"` (docs/PREVIEWS.md)",
        )
    })
}

fn records(project: &Project) -> CliResult<Box<dyn RecordStore>> {
    open_records(project).map_err(record_error)
}

/// `--release` values: one digest for every app, or `APP=DIGEST` each.
fn release_images(template: &config::Stage, values: &[String]) -> CliResult<Vec<(String, Digest)>> {
    let mut out = Vec::new();
    for v in values {
        let (app, digest) = match v.split_once('=') {
            Some((app, d)) => (Some(app), d),
            None => (None, v.as_str()),
        };
        let digest: Digest = digest.parse().map_err(|e: config::model::DigestError| {
            CliError::with_hint(
                e.to_string(),
                "a digest is `sha256:` and 64 hex digits (`ferry image push` prints one)",
            )
        })?;
        match app {
            Some(app) if !template.apps.contains_key(app) => {
                return Err(CliError::with_hint(
                    format!("--release {app}=…: the template stage `{}` has no app `{app}`", template.name),
                    format!("apps: {}", template.apps.keys().cloned().collect::<Vec<_>>().join(", ")),
                ))
            }
            Some(app) => out.push((app.to_string(), digest)),
            None => out.extend(template.apps.keys().map(|a| (a.clone(), digest.clone()))),
        }
    }
    Ok(out)
}

/// Build the template's buildable apps (those with `[apps.NAME.build]`, or the only app).
fn build_images(
    ctx: &Context,
    project: &Project,
    template: &config::Stage,
    source: &str,
) -> CliResult<Vec<(String, Digest)>> {
    let mut apps: Vec<&config::App> =
        template.apps.values().filter(|a| a.build != config::AppBuild::default()).collect();
    if apps.is_empty() && template.apps.len() == 1 {
        apps = template.apps.values().collect();
    }
    if apps.is_empty() {
        return Err(CliError::with_hint(
            format!("--source: no app of the template stage `{}` says how it is built", template.name),
            "add [apps.NAME.build] (e.g. `context = \"web\"`) to the apps to build",
        ));
    }
    let mut out = Vec::new();
    for app in apps {
        let args = crate::cli::release::CreateArgs {
            app: app.name.clone(),
            digest: None,
            source: Some(source.to_string()),
            dockerfile: None,
            target: None,
            build_args: Vec::new(),
            activate: false,
            stage: None,
            no_verify: false,
            commit: false,
        };
        out.push((app.name.clone(), super::build::build_release(ctx, project, template, app, source, &args)?));
    }
    Ok(out)
}

fn up(ctx: &Context, project: &Project, args: UpArgs) -> CliResult {
    let started = Instant::now();
    let pr = pr_number(&args.pr)?;
    let settings = settings(project)?;
    let stage = preview::stage_name(settings, pr)?;
    let template = config::load_stage(project, &settings.template)?;
    let store = records(project)?;
    let book = preview::load_book(store.as_ref()).map_err(record_error)?;
    if let Some(other) = book.by_stage(&stage).filter(|p| p.pr != pr) {
        return Err(CliError::new(format!("stage `{stage}` is already PR {}'s preview", other.pr)));
    }
    // What to run: named images, a build, or what the preview (or else the template) ran.
    let mut images = book.get(pr).map(|p| p.images.clone()).unwrap_or_default();
    let named = match &args.source {
        Some(source) => build_images(ctx, project, &template, source)?,
        None => release_images(&template, &args.release)?,
    };
    images.extend(named);
    for app in template.apps.values() {
        if !images.contains_key(&app.name) && app.active_digest().is_none() {
            return Err(CliError::with_hint(
                format!(
                    "app `{}` of the template stage `{}` has no active release to preview",
                    app.name, template.name
                ),
                format!("pass --release {}=DIGEST or --source DIR", app.name),
            ));
        }
    }

    // Reserve first: whatever happens next, `preview down` finds it.
    // Ports from the range are the local runtime's; on ECS each task has its own address.
    let port_apps: Vec<&str> = match template.runtime {
        Runtime::Local { .. } => {
            template.apps.values().filter(|a| a.config.port.is_some()).map(|a| a.name.as_str()).collect()
        }
        Runtime::Ecs(_) => Vec::new(),
    };
    let now = crate::history::now();
    let reserved = preview::update_book(store.as_ref(), |book| {
        let ports = preview::allocate_ports(book, settings, pr, &port_apps, |port| {
            // A port this preview holds is busy with its own proxy: still its own.
            book.get(pr).is_some_and(|p| p.ports.values().any(|&q| q == port)) || preview::port_is_free(port)
        })?;
        let url = preview::local_url(&ports);
        let entry = book.previews.entry(pr.to_string()).or_insert_with(|| Preview {
            pr,
            stage: stage.clone(),
            template: settings.template.clone(),
            status: PreviewStatus::Creating,
            ports: Default::default(),
            images: Default::default(),
            branch: None,
            sha: None,
            url: None,
            ecs: None,
            created_at: now,
            updated_at: now,
        });
        entry.ports = ports;
        entry.images = images.clone();
        entry.url = url;
        if args.branch.is_some() {
            entry.branch = args.branch.clone();
        }
        if args.sha.is_some() {
            entry.sha = args.sha.clone();
        }
        entry.updated_at = now;
        Ok::<Preview, PreviewError>(entry.clone())
    })
    .map_err(record_error)??;
    let reserved = match &template.runtime {
        Runtime::Ecs(ecs) => ecs_up(project, store.as_ref(), settings, &template, ecs, pr, &stage, ctx)?,
        Runtime::Local { .. } => reserved,
    };

    let desired = preview::render(settings, &template, &reserved);
    let options = StageCommit {
        yes: args.yes,
        events: args.events.clone().map(|f| ctx.cwd.join(f)),
        report_on_stderr: true,
        ..StageCommit::default()
    };
    let mut hook = HumanHook::new(false);
    let result = commit_desired(ctx, project, desired, None, &options, &mut hook);
    let status = if result.is_ok() { PreviewStatus::Up } else { PreviewStatus::Failed };
    preview::update_book(store.as_ref(), |book| {
        if let Some(p) = book.previews.get_mut(&pr.to_string()) {
            p.status = status;
            p.updated_at = crate::history::now();
        }
    })
    .map_err(record_error)?;
    let mut event = Event::new(
        EventKind::Preview,
        &project.name,
        if result.is_ok() { Outcome::Succeeded } else { Outcome::Failed },
    )
    .stage(&stage)
    .duration(started.elapsed());
    event.action = Some("up".into());
    event.pr = Some(pr);
    event.url = reserved.url.clone();
    event.source_commit = reserved.sha.clone();
    if let [(_, digest)] = reserved.images.iter().collect::<Vec<_>>().as_slice() {
        event.digest = Some(digest.to_string());
    }
    Emitter::new(project, options.events.clone()).emit(&[event]);
    result?;
    if let Some(url) = &reserved.url {
        eprintln!("preview of PR {} is up: stage {stage}", pr);
        print_out(&format!("{url}\n"))?;
    } else {
        eprintln!("preview of PR {} is up: stage {stage} (no app has a port, so no URL)", pr);
    }
    Ok(())
}

/// The ECS part of `preview up`, after the reservation: the preview's target groups and host
/// rule (recorded with its URL), and, for a `service` pattern other than the runtime's own
/// `<stage>-<app>`, the service names in the preview's state, as `ferry import` records an
/// adopted service's, so the commit creates the services under those names.
#[allow(clippy::too_many_arguments)]
fn ecs_up(
    project: &Project,
    store: &dyn RecordStore,
    settings: &PreviewSettings,
    template: &config::Stage,
    ecs: &config::EcsRuntime,
    pr: u64,
    stage: &str,
    ctx: &Context,
) -> CliResult<Preview> {
    let own_names: Vec<(String, String)> = template
        .apps
        .keys()
        .map(|app| (app.clone(), preview::ecs::service_name(&settings.ecs, pr, stage, app)))
        .filter(|(app, service)| *service != format!("{stage}-{app}"))
        .collect();
    let (made, url) = crate::aws::block_on(async {
        use crate::runtime::Runtime as _;
        let sdk = crate::runtime::ecs::load_sdk_config(&ecs.region).await;
        let runtime = crate::runtime::ecs::EcsRuntime::new(stage, ecs, &sdk);
        runtime.adopt(&adopted(&own_names));
        let apps: Vec<String> = template.apps.keys().cloned().collect();
        preview::ecs::wait_for_deleted(&runtime, &apps, preview::ecs::DRAIN_DEADLINE, |m| eprintln!("{m}")).await?;
        let elb = crate::aws::elbv2_client(&sdk);
        let made = preview::ecs::up(&elb, &settings.ecs, pr, template).await?;
        let url = preview::ecs::url(&elb, &settings.ecs, pr).await?;
        Ok::<_, String>((made, url))
    })
    .map_err(|e| {
        CliError::with_hint(format!("preview of PR {pr}: {e}"), "`ferry preview down` removes what was made")
    })?;
    let recorded = preview::update_book(store, |book| {
        let p = book.previews.get_mut(&pr.to_string())?;
        p.ecs = Some(made.clone());
        p.url = url.clone();
        Some(p.clone())
    })
    .map_err(record_error)?
    .ok_or_else(|| CliError::new(format!("the preview of PR {pr} was removed meanwhile")))?;
    if !own_names.is_empty() {
        let mut session = lock_preview(project, stage, ctx)?;
        let missing = own_names.iter().any(|(app, service)| {
            session.state().apps.get(app).and_then(|a| a.adopted.as_ref()).is_none_or(|a| a.service != *service)
        });
        if missing {
            session.update(|state| {
                for (app, names) in adopted(&own_names) {
                    state.apps.entry(app).or_default().adopted = Some(names);
                }
            })?;
        }
        session.unlock()?;
    }
    Ok(recorded)
}

/// The names of services a `service` pattern gives, as state records an adopted service's.
fn adopted(own_names: &[(String, String)]) -> std::collections::BTreeMap<String, crate::state::AdoptedService> {
    own_names
        .iter()
        .map(|(app, service)| {
            let names = crate::state::AdoptedService {
                service: service.clone(),
                family: service.clone(),
                container: app.clone(),
                ..Default::default()
            };
            (app.clone(), names)
        })
        .collect()
}

/// The ECS part of `preview down`: the services (under the names recorded state gives
/// them), then the host rule and the target groups. What is gone already is skipped.
fn ecs_down(
    settings: &PreviewSettings,
    ecs: &config::EcsRuntime,
    session: &LockedStage,
    found: &Preview,
    template_apps: &[String],
) -> CliResult<Vec<String>> {
    use crate::runtime::Runtime as _;
    let state = session.state();
    let mut apps: Vec<String> = template_apps.to_vec();
    apps.extend(state.apps.keys().cloned());
    apps.extend(found.ecs.iter().flat_map(|m| m.target_groups.keys().cloned()));
    apps.sort();
    apps.dedup();
    let stage = found.stage.as_str();
    crate::aws::block_on(async {
        let sdk = crate::runtime::ecs::load_sdk_config(&ecs.region).await;
        let runtime = crate::runtime::ecs::EcsRuntime::new(stage, ecs, &sdk);
        runtime.adopt(&state.adopted());
        let mut removed = Vec::new();
        for app in &apps {
            runtime.remove(app).await.map_err(|e| format!("app {app}: {e}"))?;
            removed.push(format!("service {}", runtime.service_name(app)));
        }
        let elb = crate::aws::elbv2_client(&sdk);
        removed.extend(preview::ecs::down(&elb, &settings.ecs, found.pr, &apps).await?);
        Ok::<_, String>(removed)
    })
    .map_err(|e| CliError::with_hint(format!("preview of PR {}: {e}", found.pr), "run `ferry preview down` again"))
}

/// Take the preview's lock, also from a `ferry` that was killed holding it.
fn lock_preview(project: &Project, stage: &str, ctx: &Context) -> CliResult<LockedStage> {
    match LockedStage::open(project, stage, &command_line(), ctx.lock_timeout) {
        Err(StateError::Locked { holder, stale: true, .. }) => {
            eprintln!("removing the lock {} left when it was killed", holder.describe());
            open_store(project)?.force_unlock(stage, &holder.id)?;
            Ok(LockedStage::open(project, stage, &command_line(), ctx.lock_timeout)?)
        }
        other => Ok(other?),
    }
}

fn down(ctx: &Context, project: &Project, pr: u64, events: Option<PathBuf>) -> CliResult {
    let started = Instant::now();
    let settings = settings(project)?;
    let store = records(project)?;
    let book = preview::load_book(store.as_ref()).map_err(record_error)?;
    let Some(found) = book.get(pr).cloned() else {
        eprintln!("nothing to remove: PR {pr} has no preview");
        return Ok(());
    };
    let stage = found.stage.clone();
    let session = lock_preview(project, &stage, ctx)?;
    let root = project.root.clone();
    // The template says which runtime the preview ran on; without it (its file since
    // removed), the local one, whose `down` is harmless when nothing runs.
    let template = config::load_stage(project, &found.template).ok();
    let mut removed = vec!["tasks", "ports", "state", "logs"].into_iter().map(String::from).collect::<Vec<_>>();
    match template.as_ref().map(|t| &t.runtime) {
        Some(Runtime::Ecs(ecs)) => {
            let apps: Vec<String> = template.as_ref().map(|t| t.apps.keys().cloned().collect()).unwrap_or_default();
            removed = ecs_down(settings, ecs, &session, &found, &apps)?;
            removed.push("state".into());
        }
        _ => {
            let rt = super::tokio_runtime()?;
            rt.block_on(crate::runtime::local::LocalRuntime::new(&root, &stage).down())
                .map_err(super::agent::runtime_error)?;
        }
    }
    session.store().delete(&stage)?;
    // `logs_dir(stage, "")`: the stage's folder of app log folders.
    let logs = crate::runtime::local::Layout::new(&root).logs_dir(&stage, "");
    match std::fs::remove_dir_all(&logs) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("warning: could not remove {}: {e}", logs.display())
        }
        _ => {}
    }
    let _ = std::fs::remove_file(crate::apply::abort::request_path(&root, &stage));
    session.unlock()?;
    preview::update_book(store.as_ref(), |book| book.previews.remove(&pr.to_string())).map_err(record_error)?;
    let mut event =
        Event::new(EventKind::Preview, &project.name, Outcome::Succeeded).stage(&stage).duration(started.elapsed());
    event.action = Some("down".into());
    event.pr = Some(pr);
    Emitter::new(project, events).emit(&[event]);
    eprintln!("removed the preview of PR {pr} (stage {stage}): {}", removed.join(", "));
    Ok(())
}

/// One row of `preview list`.
#[derive(Debug, serde::Serialize)]
struct Row<'a> {
    pr: u64,
    stage: &'a str,
    status: &'static str,
    /// `APP@sha256:…` per app.
    release: Vec<String>,
    branch: Option<&'a str>,
    sha: Option<&'a str>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    age: String,
    url: Option<&'a str>,
}

fn list(project: &Project, json: bool) -> CliResult {
    settings(project)?;
    let store = records(project)?;
    let book = preview::load_book(store.as_ref()).map_err(record_error)?;
    let now = crate::history::now();
    let rows: Vec<Row> = book
        .sorted()
        .into_iter()
        .map(|p| Row {
            pr: p.pr,
            stage: &p.stage,
            status: p.status.as_str(),
            release: p.images.iter().map(|(a, d)| format!("{a}@{}", d.short())).collect(),
            branch: p.branch.as_deref(),
            sha: p.sha.as_deref(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            age: crate::history::relative_time(p.updated_at, now),
            url: p.url.as_deref(),
        })
        .collect();
    if json {
        let mut text = serde_json::to_string_pretty(&serde_json::json!({ "previews": rows })).expect("serialises");
        text.push('\n');
        return print_out(&text);
    }
    if rows.is_empty() {
        eprintln!("no previews");
        return Ok(());
    }
    let mut out = format!("{:<6} {:<16} {:<9} {:<14} {:<28} URL\n", "PR", "STAGE", "STATUS", "UPDATED", "RELEASE");
    for r in &rows {
        let release = if r.release.is_empty() { "template's".to_string() } else { r.release.join(", ") };
        out.push_str(&format!(
            "{:<6} {:<16} {:<9} {:<14} {:<28} {}\n",
            r.pr,
            r.stage,
            r.status,
            r.age,
            release,
            r.url.unwrap_or("-")
        ));
    }
    print_out(&crate::render::escape_controls(&out))
}

fn prune(ctx: &Context, project: &Project, older_than: chrono::Duration) -> CliResult {
    settings(project)?;
    let store = records(project)?;
    let book = preview::load_book(store.as_ref()).map_err(record_error)?;
    let cutoff = crate::history::now() - older_than;
    let stale: Vec<u64> = book.sorted().into_iter().filter(|p| p.updated_at < cutoff).map(|p| p.pr).collect();
    if stale.is_empty() {
        eprintln!("nothing to prune: every preview was updated more recently");
        return Ok(());
    }
    let mut failed = 0;
    for pr in stale {
        if let Err(e) = down(ctx, project, pr, None) {
            failed += 1;
            let _ = super::report(e);
        }
    }
    if failed > 0 {
        Err(CliError::new(format!("{failed} preview(s) could not be removed; see above")))
    } else {
        Ok(())
    }
}

/// The previews, listed apart after `ferry plan --all` (they are planned by `preview up`):
/// `None` when the project has none.
pub(crate) fn plan_section(project: &Project, markdown: bool) -> Option<String> {
    let settings = project.preview.as_ref()?;
    let book = preview::load_book(open_records(project).ok()?.as_ref()).ok()?;
    if book.previews.is_empty() {
        return None;
    }
    let mut out = if markdown {
        format!("\n### Previews (from `{}`, not planned here: `ferry preview up PR`)\n\n", settings.template)
    } else {
        format!("\nPreviews (from {}, not planned here: `ferry preview up PR`):\n", settings.template)
    };
    for p in book.sorted() {
        let line = format!("PR {} {} {} {}", p.pr, p.stage, p.status.as_str(), p.url.as_deref().unwrap_or("-"));
        out.push_str(&if markdown { format!("- {line}\n") } else { format!("  {line}\n") });
    }
    Some(crate::render::escape_controls(&out).into_owned())
}
