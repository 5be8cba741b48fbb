//! `ferry ps [-s STAGE] [APP] [--json]`: apps and their tasks as the runtime sees them, in
//! SetOps' layout (`web  ACTIVE 2 / 2 running tasks (0 pending)` and a task table).

use clap::Args;
use serde::Serialize;

use crate::cli::agent::runtime_error;
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{self, RuntimeKind};
use crate::runtime::local::LocalRuntime;
use crate::runtime::{Lifecycle, ServiceState, ServiceStatus, TaskKind};

/// Show apps and their tasks.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry ps\n  ferry ps -s production web\n  ferry ps --json")]
pub struct PsArgs {
    /// Only this stage (default: every local stage; every stage when none is local).
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// Include stopped tasks.
    #[arg(short, long)]
    pub all: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The stages to look at: the one named (it must run locally), or every local stage.
pub(crate) fn local_stages(ctx: &Context, stage: Option<&str>) -> CliResult<Vec<String>> {
    let project = ctx.project()?;
    match stage {
        Some(name) => {
            let s = config::load_stage(&project, name)?;
            if s.runtime.kind() != RuntimeKind::Local {
                return Err(CliError::new(format!("stage {name} runs on ECS, which this command does not reach yet")));
            }
            Ok(vec![name.to_string()])
        }
        None => Ok(config::load_stages(&project)?
            .into_iter()
            .filter(|s| s.runtime.kind() == RuntimeKind::Local)
            .map(|s| s.name)
            .collect()),
    }
}

/// The stages `ps` and `logs` look at: the one named (local or ECS); otherwise every local
/// stage, or every stage when none runs locally (AWS is only asked when a stage needs it).
pub(crate) fn observed_stages(ctx: &Context, stage: Option<&str>) -> CliResult<Vec<config::Stage>> {
    let project = ctx.project()?;
    if let Some(name) = stage {
        return Ok(vec![config::load_stage(&project, name)?]);
    }
    let all = config::load_stages(&project)?;
    if all.iter().any(|s| s.runtime.kind() == RuntimeKind::Local) {
        Ok(all.into_iter().filter(|s| s.runtime.kind() == RuntimeKind::Local).collect())
    } else {
        Ok(all)
    }
}

#[derive(Serialize)]
struct StageView {
    stage: String,
    services: Vec<ServiceStatus>,
}

pub fn run(ctx: &Context, args: PsArgs) -> CliResult {
    let root = ctx.root()?;
    let stages = observed_stages(ctx, args.stage.as_deref())?;
    let apps: Vec<String> = args.app.iter().cloned().collect();
    let rt = super::tokio_runtime()?;
    let mut views = Vec::new();
    for stage in stages {
        let services = rt
            .block_on(async {
                match &stage.runtime {
                    config::Runtime::Local { .. } => {
                        LocalRuntime::new(&root, &stage.name).observe_if_running(&apps).await
                    }
                    config::Runtime::Ecs(_) => super::stage::reading_runtime(&root, &stage).observe(&apps).await,
                }
            })
            .map_err(runtime_error)?;
        let services = if args.app.is_some() { services } else { without_removed(services) };
        views.push(StageView { stage: stage.name, services });
    }
    if args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "stages": views }))
            .map_err(|e| CliError::new(e.to_string()))?;
        return print_out(&format!("{text}\n"));
    }
    let several = views.len() > 1;
    let mut out = String::new();
    for view in &views {
        if several {
            out.push_str(&format!("{}\n", console::style(format!("stage {}", view.stage)).bold()));
        }
        if view.services.is_empty() {
            out.push_str("no apps running\n\n");
        }
        for s in &view.services {
            out.push_str(&render_service(s, args.all));
            out.push('\n');
        }
    }
    print_out(&out)
}

/// Leave out apps the runtime no longer has a service for and whose tasks all stopped: a
/// removed app (the agent keeps its last stopped tasks a while) is not "MISSING 0 / 0". It
/// is still shown when asked for by name.
fn without_removed(services: Vec<ServiceStatus>) -> Vec<ServiceStatus> {
    services
        .into_iter()
        .filter(|s| s.state != ServiceState::Missing || s.tasks.iter().any(|t| t.last_status != Lifecycle::Stopped))
        .collect()
}

/// One app: the SetOps summary line and its task table.
pub fn render_service(s: &ServiceStatus, all: bool) -> String {
    let mut out = format!(
        "{}  {} {} / {} running tasks ({} pending)\n",
        console::style(&s.app).bold(),
        s.state.as_str(),
        s.running,
        s.desired,
        s.pending
    );
    if let Some(r) = s.primary() {
        let reason = r.reason.as_deref().map(|x| format!(" ({x})")).unwrap_or_default();
        out.push_str(&format!("rollout {}  release {}  {}{reason}\n", r.id, r.release, r.state.as_str()));
    }
    let rows = task_rows(s, all);
    if rows.is_empty() {
        return out;
    }
    let rows: Vec<[String; 7]> = std::iter::once(TASK_COLUMNS.map(String::from)).chain(rows).collect();
    out.push_str(&crate::render::table::table(&rows, ""));
    out
}

/// The columns of the task table, as `ps` and the dashboard show them.
pub const TASK_COLUMNS: [&str; 7] =
    ["ID", "Release", "Last Status", "Health Status", "Started At", "Stopped At", "Restarts"];

/// One row per task (stopped ones only with `all`), in [`TASK_COLUMNS`] order; a one-off
/// task's id is followed by what it is for.
pub fn task_rows(s: &ServiceStatus, all: bool) -> Vec<[String; 7]> {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
    };
    s.tasks
        .iter()
        .filter(|t| all || t.last_status != Lifecycle::Stopped)
        .map(|t| {
            let id = match (t.kind, &t.name) {
                (TaskKind::OneOff, Some(name)) => format!("{} ({name})", t.id),
                _ => t.id.to_string(),
            };
            [
                id,
                t.release.to_string(),
                t.last_status.as_str().into(),
                t.health.as_str().into(),
                time(t.started_at),
                time(t.stopped_at),
                t.restarts.to_string(),
            ]
        })
        .collect()
}
