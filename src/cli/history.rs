//! `ferry history APP`: an app's deployments vN, newest first, as Akkeris lists releases:
//! `v12  3 days ago  Activate release 3 (sha256:2b51cd…)  ef5c71a  succeeded`.

use clap::Args;
use serde_json::json;

use crate::cli::release::{app_state, pick_stage};
use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config;
use crate::history::{now, relative_time};
use crate::plan::diff::mask_sensitive;
use crate::state::{Deployment, DeploymentStatus};

/// List an app's deployments vN, newest first.
///
/// Each line says what changed, when, from which commit, and how it ended; a failed or
/// aborted one shows why on the lines below.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry history web\n  ferry history web -s production -n 5\n  \
                        ferry history web --json | jq '.deployments[0].status'")]
pub struct HistoryArgs {
    /// The app.
    pub app: String,
    /// The stage. Default: the project's only stage.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Show the newest N deployments.
    #[arg(short = 'n', long = "number", value_name = "N", default_value_t = 20)]
    pub number: usize,
    /// Print JSON: `{"app", "stage", "deployments": [...]}`, deployments as recorded.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: HistoryArgs) -> CliResult {
    let project = ctx.project()?;
    let stage = pick_stage(&project, args.stage)?;
    let app = app_state(&project, &stage, &args.app)?;
    if app.history.is_empty() {
        // An app never deployed is fine; an app nobody declared is a typo.
        let declared = config::load_stage(&project, &stage)?.apps.contains_key(&args.app);
        if !declared {
            return Err(CliError::with_hint(
                format!("stage `{stage}` has no app `{}`, and none was ever deployed", args.app),
                format!("`ferry state show -s {stage}` lists recorded apps"),
            ));
        }
    }
    let newest: Vec<&Deployment> = app.history.iter().rev().take(args.number).collect();
    if args.json {
        // As recorded, but with the values of sensitive env vars masked, as in plans.
        let masked: Vec<Deployment> =
            newest.iter().map(|d| Deployment { config: mask_sensitive(&d.config), ..(*d).clone() }).collect();
        let doc = json!({ "app": args.app, "stage": stage, "deployments": masked });
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON")));
    }
    if newest.is_empty() {
        return print_out(&format!("{} has no deployments in stage {stage} yet\n", args.app));
    }
    print_out(&render(&newest, now(), ctx.color))
}

/// The list as text: aligned columns, a failed deployment's reason indented below it.
fn render(deployments: &[&Deployment], now: chrono::DateTime<chrono::Utc>, color: bool) -> String {
    let rows: Vec<[String; 5]> = deployments
        .iter()
        .map(|d| {
            [
                format!("v{}", d.number),
                relative_time(d.started_at, now),
                d.description.clone(),
                d.source.short_commit().unwrap_or("-").to_string(),
                status_text(d.status, color),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| console::measure_text_width(&r[i])).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3)];
    let mut out = String::new();
    for (row, d) in rows.iter().zip(deployments) {
        for (cell, w) in row.iter().zip(widths) {
            out.push_str(cell);
            out.push_str(&" ".repeat(w - console::measure_text_width(cell) + 2));
        }
        out.push_str(&row[4]);
        out.push('\n');
        if let (DeploymentStatus::Failed | DeploymentStatus::Aborted, Some(reason)) = (d.status, &d.reason) {
            for line in reason.lines() {
                out.push_str(&" ".repeat(widths[0] + 2));
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn status_text(status: DeploymentStatus, color: bool) -> String {
    let text = match status {
        DeploymentStatus::InProgress => "in progress",
        other => other.as_str(),
    };
    if !color {
        return text.to_string();
    }
    let style = match status {
        DeploymentStatus::Succeeded => console::Style::new().green(),
        DeploymentStatus::Failed => console::Style::new().red(),
        DeploymentStatus::Aborted | DeploymentStatus::InProgress => console::Style::new().yellow(),
    };
    style.apply_to(text).to_string()
}
