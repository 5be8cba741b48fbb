//! `ferry logs [-s STAGE] APP [--task ID] [-f] [--since DURATION]`: task output from the
//! runtime, oldest first, each line stamped with its time and task.

use clap::Args;

use crate::cli::agent::runtime_error;
use crate::cli::{CliError, CliResult, Context};
use crate::config::Duration;
use crate::runtime::local::LocalRuntime;
use crate::runtime::{LogQuery, Runtime, TaskId};

/// Show an app's task output.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry logs web\n  ferry logs -s production web --since 10m -f\n  ferry logs web --task 3f2a9c1d0b7e"
)]
pub struct LogsArgs {
    /// The stage (default: the only local stage).
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
    let stages = super::ps::local_stages(ctx, args.stage.as_deref())?;
    let stage = match stages.as_slice() {
        [one] => one.clone(),
        [] => return Err(CliError::new("no stage runs on the local runtime")),
        _ => {
            return Err(CliError::with_hint(
                format!("several local stages ({}): which one?", stages.join(", ")),
                "pass `-s STAGE`",
            ))
        }
    };
    let query = LogQuery {
        task: args.task.map(TaskId),
        since: args.since.map(|d| chrono::Utc::now() - chrono::Duration::milliseconds(d.as_millis() as i64)),
        follow: args.follow,
    };
    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        let runtime = LocalRuntime::new(&root, &stage);
        let mut lines = runtime.logs(&args.app, &query).await.map_err(runtime_error)?;
        while let Some(line) = lines.recv().await {
            let text = format!(
                "{} {} {}\n",
                console::style(line.time.format("%Y-%m-%dT%H:%M:%S%.3fZ")).dim(),
                console::style(&line.task).cyan(),
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
