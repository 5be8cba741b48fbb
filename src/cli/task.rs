//! `ferry task run APP [--release ID] [--env K=V…] -- CMD ARGS…` runs a one-off task with a
//! declared release's image and the app's config (any declared release, not only the active
//! one: run a migration before activating), streams its output and exits with its exit code.
//! `ferry task list APP` shows the app's recent one-off tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::apply::ops::{self, OpContext};
use crate::cli::agent::runtime_error;
use crate::cli::plan::select_stages;
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{self, RuntimeKind};
use crate::registry::LocalRegistry;
use crate::runtime::local::LocalRuntime;
use crate::runtime::{Lifecycle, LogQuery, Runtime, TaskKind, TaskSpec};

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

fn local_stage(ctx: &Context, stage: Option<&str>) -> CliResult<(config::Project, config::Stage)> {
    let project = ctx.project()?;
    let name = select_stages(&project, stage, false)?.remove(0);
    let stage = config::load_stage(&project, &name)?;
    if stage.runtime.kind() != RuntimeKind::Local {
        return Err(CliError::new(format!("stage {name} runs on ECS, which `ferry task` does not reach yet")));
    }
    Ok((project, stage))
}

fn run_task(ctx: &Context, args: RunArgs) -> CliResult {
    let (project, stage) = local_stage(ctx, args.stage.as_deref())?;
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
    let root = project.root.clone();
    let runtime = Arc::new(LocalRuntime::new(&root, &stage.name));
    let registry = Arc::new(LocalRegistry::for_project(&root));
    let ctx_ops = OpContext {
        runtime: runtime.clone(),
        registry: registry.clone(),
        local_releases: Some((registry, root.join(".ferry").join("releases"))),
    };
    let rt = super::tokio_runtime()?;
    let code = rt.block_on(async {
        let revision = ops::register(&ctx_ops, &app.name, release, &app.image, digest, &app.config)
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
        let query = LogQuery { task: Some(id.clone()), since: None, follow: true };
        let mut lines = runtime.logs(&app.name, &query).await.map_err(runtime_error)?;
        let mut interrupt = Box::pin(tokio::signal::ctrl_c());
        let mut delay = Duration::from_millis(100);
        let status = loop {
            tokio::select! {
                Some(line) = lines.recv() => { let _ = print_out(&format!("{}\n", line.text)); continue; }
                _ = tokio::time::sleep(delay) => {}
                _ = &mut interrupt => {
                    let _ = runtime.stop_task(&app.name, &id).await;
                    eprintln!("interrupted: stopped task {id}");
                    return Ok(130u8);
                }
            }
            delay = (delay * 3 / 2).min(Duration::from_millis(500));
            let services = runtime.observe(std::slice::from_ref(&app.name)).await.map_err(runtime_error)?;
            match services.iter().find_map(|s| s.task(&id)) {
                Some(t) if t.last_status == Lifecycle::Stopped => break t.clone(),
                Some(_) => {}
                None => return Err(CliError::new(format!("the runtime lost task {id}"))),
            }
        };
        // The last lines may still be on their way from the log file.
        while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(300), lines.recv()).await {
            let _ = print_out(&format!("{}\n", line.text));
        }
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
    let (project, stage) = local_stage(ctx, args.stage.as_deref())?;
    let runtime = LocalRuntime::new(&project.root, &stage.name);
    let rt = super::tokio_runtime()?;
    let services = rt.block_on(runtime.observe_if_running(std::slice::from_ref(&args.app))).map_err(runtime_error)?;
    let mut out = format!(
        "{:<14} {:<10} {:<8} {:<15} {:<5} {:<20}\n",
        "ID", "Name", "Release", "Last Status", "Exit", "Started At"
    );
    let mut any = false;
    for t in services.iter().flat_map(|s| &s.tasks).filter(|t| t.kind == TaskKind::OneOff) {
        any = true;
        out.push_str(&format!(
            "{:<14} {:<10} {:<8} {:<15} {:<5} {:<20}\n",
            t.id,
            t.name.as_deref().unwrap_or("-"),
            t.release,
            t.last_status.as_str(),
            t.exit_code.map_or("-".to_string(), |c| c.to_string()),
            t.started_at.map_or("-".to_string(), |s| s.format("%Y-%m-%d %H:%M:%S").to_string()),
        ));
    }
    if !any {
        eprintln!("app {} has no recent one-off tasks", args.app);
        return Ok(());
    }
    print_out(&out)
}
