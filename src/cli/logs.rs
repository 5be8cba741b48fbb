//! `ferry logs [-s STAGE] APP [--task ID] [-f] [--since DURATION]`: task output from the
//! runtime (the local agent's files, or CloudWatch Logs on ECS), oldest first, each line
//! stamped with its time and task.

use std::sync::Arc;

use clap::Args;

use crate::cli::agent::runtime_error;
use crate::cli::{CliError, CliResult, Context};
use crate::config::{self, Duration};
use crate::runtime::local::LocalRuntime;
use crate::runtime::{LogQuery, Runtime, TaskId};

/// Show an app's task output.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry logs web\n  ferry logs -s production web --since 10m -f\n  ferry logs web --task 3f2a9c1d0b7e"
)]
pub struct LogsArgs {
    /// The stage (default: the only local stage, or the only stage).
    #[arg(short, long)]
    pub stage: Option<String>,
    /// The app.
    pub app: String,
    /// Only this task.
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines from the last DURATION (`30s`, `10m`, `2h`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<Duration>,
}

pub fn run(ctx: &Context, args: LogsArgs) -> CliResult {
    let root = ctx.root()?;
    let mut stages = super::ps::observed_stages(ctx, args.stage.as_deref())?;
    let stage = match stages.len() {
        1 => stages.remove(0),
        0 => return Err(CliError::new("the project has no stage")),
        _ => {
            let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
            return Err(CliError::with_hint(
                format!("several stages ({}): which one?", names.join(", ")),
                "pass `-s STAGE`",
            ));
        }
    };
    let query = LogQuery {
        task: args.task.map(TaskId),
        since: args.since.map(|d| chrono::Utc::now() - chrono::Duration::milliseconds(d.as_millis() as i64)),
        follow: args.follow,
    };
    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        let runtime: Arc<dyn Runtime> = match &stage.runtime {
            config::Runtime::Local { .. } => Arc::new(LocalRuntime::new(&root, &stage.name)),
            config::Runtime::Ecs(_) => super::stage::reading_runtime(&root, &stage),
        };
        let mut lines = runtime.logs(&args.app, &query).await.map_err(runtime_error)?;
        while let Some(line) = lines.recv().await {
            let text = format!(
                "{} {} {}\n",
                console::style(line.time.format("%Y-%m-%dT%H:%M:%S%.3fZ")).dim(),
                console::style(crate::render::escape_line(&line.task.0)).cyan(),
                line.text
            );
            // A closed pipe (`ferry logs web | head`) ends the stream quietly.
            if super::print_out(&text).is_err() {
                break;
            }
        }
        Ok(())
    })
}
