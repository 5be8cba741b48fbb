//! `ferry status set|list`: status checks of an app's image digests, reported by other
//! systems (CI, QA sign-off) and kept with their history in the project's record store.
//! A pipeline step's `required_checks` must be `success` before `ferry promote` moves a
//! digest into it.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config::{Digest, StateBackend};
use crate::pipeline::{open_records, CheckState, StatusReport, StatusStore};

/// Report and list status checks of image digests.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry status set web sha256:2b51cd… ci/tests success --url https://ci.example/run/42\n  \
                        ferry status list web\n  ferry status list web sha256:2b51cd… --json"
)]
pub struct StatusArgs {
    #[command(subcommand)]
    pub command: StatusCommand,
}

/// `ferry status …`.
#[derive(Debug, Subcommand)]
pub enum StatusCommand {
    Set(SetArgs),
    List(ListArgs),
}

/// Record the state of check CONTEXT for an app's image digest (the latest report counts).
///
/// With `--json -` the check is read as one JSON object from stdin instead of the arguments,
/// so any CI can pipe its result: `{"app": "web", "digest": "sha256:…", "context":
/// "ci/tests", "state": "success", "description": "…", "url": "…"}` (description and url
/// optional).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry status set web \"$DIGEST\" qa/signoff failure --description \"checkout broken\" \
                        --url https://qa.example/42\n  \
                        jq -n --arg d \"$DIGEST\" '{app: \"web\", digest: $d, context: \"ci/tests\", state: \"success\"}' \
                        | ferry status set --json -"
)]
pub struct SetArgs {
    /// The app.
    #[arg(required_unless_present = "json")]
    pub app: Option<String>,
    /// The image digest, `sha256:` and 64 hex digits.
    #[arg(required_unless_present = "json")]
    pub digest: Option<String>,
    /// The check's name, e.g. `ci/tests`.
    #[arg(required_unless_present = "json")]
    pub context: Option<String>,
    /// pending, success, failure or error.
    #[arg(value_enum, required_unless_present = "json")]
    pub state: Option<CheckState>,
    /// A short human description.
    #[arg(long, short)]
    pub description: Option<String>,
    /// Where to read more (the CI run, the review).
    #[arg(long, short)]
    pub url: Option<String>,
    /// Read the check as a JSON object from stdin (`-`) instead of the arguments.
    #[arg(
        long,
        value_name = "-",
        value_parser = clap::builder::PossibleValuesParser::new(["-"]),
        conflicts_with_all = ["app", "digest", "context", "state", "description", "url"]
    )]
    pub json: Option<String>,
}

/// A check as `ferry status set --json -` reads it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInput {
    app: String,
    digest: String,
    context: String,
    state: CheckState,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

impl CheckInput {
    /// The check from the command line's arguments (clap made sure they are all there).
    fn from_args(args: SetArgs) -> CliResult<CheckInput> {
        match (args.app, args.digest, args.context, args.state) {
            (Some(app), Some(digest), Some(context), Some(state)) => {
                Ok(CheckInput { app, digest, context, state, description: args.description, url: args.url })
            }
            _ => Err(CliError::new("pass APP DIGEST CONTEXT STATE, or --json - with the check on stdin")),
        }
    }

    /// The check from a JSON document (`--json -`); `source` names it in messages.
    fn from_json(text: &str, source: &str) -> CliResult<CheckInput> {
        serde_json::from_str(text).map_err(|e| {
            // The position leads the message, as in every located error; serde_json's own
            // " at line L column C" suffix would say it twice.
            let what = e.to_string();
            let what = what.rsplit_once(" at line ").map_or(what.as_str(), |(what, _)| what);
            CliError::with_hint(
                format!("{source}:{}:{}: not a status check: {what}", e.line(), e.column()),
                "send one JSON object: {\"app\": \"web\", \"digest\": \"sha256:…\", \"context\": \"ci/tests\", \
                 \"state\": \"success\"} (with optional \"description\" and \"url\"); state is pending, success, \
                 failure or error",
            )
        })
    }
}

/// List the latest state of each check per digest, and with --history every report.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry status list web\n  ferry status list web \"$DIGEST\" --json")]
pub struct ListArgs {
    /// The app.
    pub app: String,
    /// Only this digest.
    pub digest: Option<String>,
    /// Print JSON: `{app, latest: […], history: […]}`.
    #[arg(long)]
    pub json: bool,
    /// Also list every earlier report, oldest first.
    #[arg(long)]
    pub history: bool,
}

pub fn run(ctx: &Context, args: StatusArgs) -> CliResult {
    match args.command {
        StatusCommand::Set(a) => set(ctx, a),
        StatusCommand::List(a) => list(ctx, a),
    }
}

use crate::events::{Event, EventKind, Outcome};

fn parse_digest(s: &str) -> CliResult<Digest> {
    s.parse().map_err(|e: crate::config::DigestError| {
        CliError::with_hint(e.to_string(), "a digest is `sha256:` and 64 hex digits, as `ferry image push` prints")
    })
}

fn set(ctx: &Context, args: SetArgs) -> CliResult {
    let project = ctx.project()?;
    let check = if args.json.is_some() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(|e| CliError::new(format!("cannot read the check from stdin: {e}")))?;
        CheckInput::from_json(&text, "<stdin>")?
    } else {
        CheckInput::from_args(args)?
    };
    let digest = parse_digest(&check.digest)?;
    if check.context.trim().is_empty() {
        return Err(CliError::new("the check's context must not be empty"));
    }
    let store = StatusStore::new(open_records(&project)?);
    store.set(
        &check.app,
        StatusReport {
            digest: digest.clone(),
            context: check.context.clone(),
            state: check.state,
            description: check.description,
            url: check.url,
            at: chrono::Utc::now(),
        },
    )?;
    eprintln!("{} {} {}: {}", check.app, digest.short(), check.context, check.state);
    let mut event = Event::new(EventKind::Status, &project.name, Outcome::Requested).app(&check.app);
    event.action = Some(format!("{}: {}", check.context, check.state));
    event.digest = Some(digest.to_string());
    crate::events::emit(&project, &[event]);
    // CI providers set `CI`; a check recorded in a CI job's own checkout is gone with the job.
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if in_ci && matches!(project.state, StateBackend::Local) {
        eprintln!("note: {}", crate::cli::promote::LOCAL_CHECKS_NOTE);
    }
    Ok(())
}

fn list(ctx: &Context, args: ListArgs) -> CliResult {
    let project = ctx.project()?;
    let digest = args.digest.as_deref().map(parse_digest).transpose()?;
    let log = StatusStore::new(open_records(&project)?).log(&args.app)?;
    let history: Vec<&StatusReport> = log.history(digest.as_ref()).collect();
    // Digests in the order they were first reported.
    let mut digests: Vec<&Digest> = Vec::new();
    for r in &history {
        if !digests.contains(&&r.digest) {
            digests.push(&r.digest);
        }
    }
    let latest: Vec<&StatusReport> = digests.iter().flat_map(|d| log.latest(d).into_values()).collect();
    if args.json {
        let doc = json!({ "app": args.app, "latest": latest, "history": history });
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&doc).expect("reports serialise")));
    }
    if history.is_empty() {
        eprintln!("no status checks reported for {}", args.app);
        return Ok(());
    }
    let mut out = String::new();
    let width = latest.iter().map(|r| r.context.len()).max().unwrap_or(0);
    for d in &digests {
        out.push_str(&format!("{d}\n"));
        for r in latest.iter().filter(|r| &&r.digest == d) {
            out.push_str(&format!("  {}\n", line(r, width, ctx.color)));
        }
    }
    if args.history {
        out.push_str("\nhistory (oldest first):\n");
        let width = history.iter().map(|r| r.context.len()).max().unwrap_or(0);
        for r in &history {
            out.push_str(&format!("  {}  {}\n", r.digest.short(), line(r, width, ctx.color)));
        }
    }
    print_out(&out)
}

fn line(r: &StatusReport, width: usize, color: bool) -> String {
    let state = format!("{:<7}", r.state.as_str());
    let state = if !color {
        state
    } else {
        match r.state {
            CheckState::Success => console::style(state).green().to_string(),
            CheckState::Pending => console::style(state).yellow().to_string(),
            _ => console::style(state).red().to_string(),
        }
    };
    let mut s = format!("{:width$}  {state}  {}", r.context, r.at.format("%Y-%m-%d %H:%M:%S UTC"));
    if let Some(d) = &r.description {
        s.push_str(&format!("  {d}"));
    }
    if let Some(u) = &r.url {
        s.push_str(&format!("  {u}"));
    }
    s
}
