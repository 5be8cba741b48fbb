//! `ferry task run APP [--release ID] [--env K=V…] -- CMD ARGS…` runs a one-off task with a
//! declared release's image and the app's config (any declared release, not only the active
//! one: run a migration before activating), streams its output and exits with its exit code
//! (that of the essential container on ECS). `ferry task list APP` shows the app's recent
//! one-off tasks. Both work on local and ECS stages.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};

use crate::apply::ops;
use crate::apply::task::{watch_task, TaskEnd, TaskWait};
use crate::cli::agent::runtime_error;
use crate::cli::stage::select_stages;
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{self, RuntimeKind};
use crate::runtime::local::LocalRuntime;
use crate::runtime::{LogLine, TaskKind, TaskSpec};

/// One-off tasks.
#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub command: TaskCommand,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Run a one-off task and stream its output; exits with the task's exit code.
    #[command(after_help = "Examples:\n  ferry task run web -- python3 manage.py migrate\n  ferry task run web \
                            --release 4 --env DRY_RUN=1 -- bin/seed")]
    Run(RunArgs),
    /// Show an app's recent one-off tasks.
    #[command(after_help = "Example:\n  ferry task list web -s staging")]
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(short, long)]
    pub stage: Option<String>,
    pub app: String,
    /// The release to run (default: the active one). Any declared release works.
    #[arg(long, value_name = "ID")]
    pub release: Option<u64>,
    /// Extra environment, overriding the app's.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The command (default: the app's own).
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(short, long)]
    pub stage: Option<String>,
    pub app: String,
}

pub fn run(ctx: &Context, args: TaskArgs) -> CliResult {
    match args.command {
        TaskCommand::Run(a) => run_task(ctx, a),
        TaskCommand::List(a) => list(ctx, a),
    }
}

fn load_stage(ctx: &Context, stage: Option<&str>) -> CliResult<(config::Project, config::Stage)> {
    let project = ctx.project()?;
    let name = select_stages(&project, stage, false)?.remove(0);
    let stage = config::load_stage(&project, &name)?;
    Ok((project, stage))
}

fn run_task(ctx: &Context, args: RunArgs) -> CliResult {
    let (project, stage) = load_stage(ctx, args.stage.as_deref())?;
    let app = stage.apps.get(&args.app).ok_or_else(|| {
        let names: Vec<&str> = stage.apps.keys().map(String::as_str).collect();
        CliError::new(format!("stage {} has no app `{}` (apps: {})", stage.name, args.app, names.join(", ")))
    })?;
    let release = args
        .release
        .or(app.active)
        .ok_or_else(|| CliError::with_hint(format!("app {} has no active release", app.name), "pass --release ID"))?;
    let digest = app.releases.get(&release).ok_or_else(|| {
        let ids: Vec<String> = app.releases.keys().map(u64::to_string).collect();
        CliError::new(format!("app {} declares no release {release} (declared: {})", app.name, ids.join(", ")))
    })?;
    let mut env = BTreeMap::new();
    for kv in &args.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| CliError::new(format!("--env {kv}: expected K=V")))?;
        env.insert(k.to_string(), v.to_string());
    }
    // The local agent or ECS (RunTask with the stage's network, startedBy ferry, output
    // from CloudWatch Logs): the same steps through the runtime seam.
    let ctx_ops = super::stage::op_context(&project.root, &stage);
    if let Ok(Some(state)) = crate::state::open_store(&project).and_then(|store| store.read(&stage.name)) {
        ctx_ops.runtime.adopt(&state.adopted());
    }
    let runtime = ctx_ops.runtime.clone();
    let rt = super::tokio_runtime()?;
    let code = rt.block_on(async {
        let revision =
            ops::register(&ctx_ops, &app.name, (release, &app.image, digest), &app.config, &Default::default())
                .await
                .map_err(CliError::new)?;
        let spec = TaskSpec {
            app: app.name.clone(),
            revision,
            command: (!args.command.is_empty()).then(|| args.command.clone()),
            env,
            name: "one-off".into(),
        };
        let id = runtime.run_task(&spec).await.map_err(runtime_error)?;
        eprintln!("task {id} of app {} (release {release}) started", app.name);
        let mut print = |line: &LogLine| {
            let _ = print_out(&format!("{}\n", line.text));
        };
        let status = tokio::select! {
            end = watch_task(runtime.as_ref(), &app.name, &id, TaskWait { output: Some(&mut print), ..TaskWait::default() }) => {
                match end.map_err(runtime_error)? {
                    TaskEnd::Stopped(status) => status,
                    // Neither a deadline nor an abort signal was given.
                    other => return Err(CliError::new(format!("task {id}: {other:?}"))),
                }
            }
            _ = tokio::signal::ctrl_c() => {
                let _ = runtime.stop_task(&app.name, &id).await;
                eprintln!("interrupted: stopped task {id}");
                return Ok::<u8, CliError>(130);
            }
        };
        match status.exit_code {
            Some(c) => {
                if c != 0 {
                    eprintln!("task {id} exited with code {c}");
                }
                Ok(u8::try_from(c).unwrap_or(1))
            }
            None => {
                eprintln!(
                    "task {id} ended without an exit code: {}",
                    status.stopped_reason.as_deref().unwrap_or("killed")
                );
                Ok(1)
            }
        }
    })?;
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::Exit(code))
    }
}

fn list(ctx: &Context, args: ListArgs) -> CliResult {
    let (project, stage) = load_stage(ctx, args.stage.as_deref())?;
    let apps = std::slice::from_ref(&args.app);
    let services = match stage.runtime.kind() {
        // Listing must not start the agent.
        RuntimeKind::Local => {
            let runtime = LocalRuntime::new(&project.root, &stage.name);
            super::tokio_runtime()?.block_on(runtime.observe_if_running(apps))
        }
        RuntimeKind::Ecs => {
            let runtime = super::stage::reading_runtime(&project.root, &stage);
            super::tokio_runtime()?.block_on(runtime.observe(apps))
        }
    }
    .map_err(runtime_error)?;
    let header = ["ID", "Name", "Release", "Last Status", "Exit", "Started At"].map(String::from);
    let rows: Vec<[String; 6]> = services
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.kind == TaskKind::OneOff)
        .map(|t| {
            [
                t.id.to_string(),
                t.name.clone().unwrap_or_else(|| "-".into()),
                t.release.to_string(),
                t.last_status.as_str().into(),
                t.exit_code.map_or("-".to_string(), |c| c.to_string()),
                t.started_at.map_or("-".to_string(), |s| s.format("%Y-%m-%d %H:%M:%S").to_string()),
            ]
        })
        .collect();
    if rows.is_empty() {
        eprintln!("app {} has no recent one-off tasks", args.app);
        return Ok(());
    }
    print_out(&columns(std::iter::once(&header).chain(&rows)))
}

/// Rows as a table ([`crate::render::table`]).
fn columns<'a>(rows: impl Iterator<Item = &'a [String; 6]>) -> String {
    let rows: Vec<&[String; 6]> = rows.collect();
    crate::render::table::table(&rows, "")
}
