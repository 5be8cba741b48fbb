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
/// Each line says what changed (for an image `release create --source` built: the commit it
/// was built from, `-dirty` for uncommitted changes), when, from which commit it was
/// applied, and how it ended; a failed or aborted one shows why on the lines below.
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

/// The list as text: aligned columns, then the source commit's author and subject (free
/// width, last), a failed deployment's reason indented below it.
fn render(deployments: &[&Deployment], now: chrono::DateTime<chrono::Utc>, color: bool) -> String {
    let rows: Vec<[String; 6]> = deployments
        .iter()
        .map(|d| {
            [
                format!("v{}", d.number),
                relative_time(d.started_at, now),
                printable(&match &d.build {
                    Some(build) => format!("{}, built from {}", d.description, build.short()),
                    None => d.description.clone(),
                }),
                d.source.short_commit().map_or_else(|| "-".to_string(), printable),
                status_text(d.status, color),
                commit_line(&d.source),
            ]
        })
        .collect();
    // The last column (the commit line) sets no width: it is never padded.
    let columns = crate::render::table::Columns::fit(rows.iter().map(|r| &r[..5]));
    let mut out = String::new();
    for (row, d) in rows.iter().zip(deployments) {
        out.push_str(&columns.line(row));
        out.push('\n');
        if let (DeploymentStatus::Failed | DeploymentStatus::Aborted, Some(reason)) = (d.status, &d.reason) {
            for line in reason.lines() {
                out.push_str(&" ".repeat(columns.width(0) + 2));
                out.push_str(&printable(line));
                out.push('\n');
            }
        }
    }
    out
}

/// `Ada: Fix the login` (either part may be missing; the subject cut at 60 characters).
fn commit_line(source: &crate::state::Source) -> String {
    const SUBJECT_MAX: usize = 60;
    let subject = source.subject.as_deref().map(|s| {
        if s.chars().count() > SUBJECT_MAX {
            format!("{}…", s.chars().take(SUBJECT_MAX - 1).collect::<String>())
        } else {
            s.to_string()
        }
    });
    match (source.author.as_deref(), subject) {
        (Some(a), Some(s)) => printable(&format!("{a}: {s}")),
        (Some(a), None) => printable(a),
        (None, Some(s)) => printable(&s),
        (None, None) => String::new(),
    }
}

/// `text` as one line with control characters escaped (`\u{1b}`): commit subjects and author
/// names come from whoever made the commit, and must not drive the terminal.
fn printable(text: &str) -> String {
    crate::render::escape_line(text).into_owned()
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
