//! Command-line interface: clap types, one file per command, and the error type that maps
//! failures to exit codes (0 success, 1 error, 2 plan found changes with
//! `--detailed-exitcode`).

mod abort;
pub mod agent;
mod build;
pub(crate) mod commit;
mod completions;
mod continue_deploy;
mod down;
mod fmt;
mod force_unlock;
mod graph;
mod history;
mod image;
mod images;
mod import;
mod init;
mod logs;
mod pipeline;
pub(crate) mod plan;
pub(crate) mod preview;
pub(crate) mod promote;
pub mod ps;
pub(crate) mod release;
pub(crate) mod releases;
mod rollback;
pub mod schema;
pub(crate) mod stage;
mod state;
mod status;
mod task;
mod ui;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Diagnostics, Project};

/// Declarative deploys of container apps to AWS ECS or a local runtime.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
#[command(after_help = "Example:\n  ferry init && ferry plan && ferry commit --yes")]
pub struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', long = "chdir", global = true, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// When to use colours.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// How long to wait for another run's lock on a stage's state, e.g. `30s`, `5m`
    /// (default: fail at once).
    #[arg(long, global = true, value_name = "DURATION", default_value = "0s", env = "FERRY_LOCK_TIMEOUT")]
    pub lock_timeout: config::Duration,
    /// Show the full error chain of AWS errors (also: `FERRY_LOG=debug`).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::InitArgs),
    Commit(commit::CommitArgs),
    Abort(abort::AbortArgs),
    Continue(continue_deploy::ContinueArgs),
    Task(task::TaskArgs),
    Validate(validate::ValidateArgs),
    Fmt(fmt::FmtArgs),
    Schema(schema::SchemaArgs),
    Completions(completions::CompletionsArgs),
    Agent(agent::AgentArgs),
    Down(down::DownArgs),
    ForceUnlock(force_unlock::ForceUnlockArgs),
    Graph(graph::GraphArgs),
    History(history::HistoryArgs),
    Image(image::ImageArgs),
    Logs(logs::LogsArgs),
    Plan(plan::PlanArgs),
    Ps(ps::PsArgs),
    Release(release::ReleaseArgs),
    Releases(releases::ReleasesArgs),
    Rollback(rollback::RollbackArgs),
    State(state::StateArgs),
    Promote(promote::PromoteArgs),
    Preview(preview::PreviewArgs),
    Status(status::StatusArgs),
    Pipeline(pipeline::PipelineArgs),
    Images(images::ImagesArgs),
    Ui(ui::UiArgs),
    Import(import::ImportArgs),
}

/// What kind of failure, which decides the exit code and how it is shown.
#[derive(Debug)]
pub enum CliError {
    /// Problems in the user's files, already located.
    Config(Diagnostics),
    /// A failure with a message and an optional hint.
    Failed { message: String, hint: Option<String> },
    /// The command has already printed what went wrong; exit with this code.
    Exit(u8),
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError::Failed { message: message.into(), hint: None }
    }
    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Failed { message: message.into(), hint: Some(hint.into()) }
    }
}

impl From<Diagnostics> for CliError {
    fn from(d: Diagnostics) -> Self {
        CliError::Config(d)
    }
}

impl From<crate::state::StateError> for CliError {
    fn from(e: crate::state::StateError) -> Self {
        CliError::Failed { message: e.to_string(), hint: e.hint() }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(e.to_string())
    }
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// What every command gets: where the project is and how to print.
pub struct Context {
    /// The working directory (after `-C`).
    pub cwd: PathBuf,
    /// Whether to colour output on stdout.
    pub color: bool,
    /// `--lock-timeout`: how long to wait for a stage's state lock.
    pub lock_timeout: std::time::Duration,
}

impl Context {
    /// The project root: the nearest directory at or above the working directory holding
    /// `ferry.toml`.
    pub fn root(&self) -> CliResult<PathBuf> {
        config::find_root(&self.cwd).ok_or_else(|| {
            CliError::with_hint(
                format!("no {} in {} or any parent directory", config::PROJECT_FILE, self.cwd.display()),
                "run `ferry init` to create a project, or pass `-C DIR`",
            )
        })
    }

    /// Load `ferry.toml`.
    pub fn project(&self) -> CliResult<Project> {
        Ok(config::load_project(&self.root()?)?)
    }
}

/// Parse the command line, run the command, and return the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    crate::aws::show_full_errors(cli.verbose);
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
        }
    };
    console::set_colors_enabled(color);
    console::set_colors_enabled_stderr(color && std::io::stderr().is_terminal() || cli.color == ColorChoice::Always);
    let cwd = match &cli.chdir {
        Some(dir) => match std::fs::canonicalize(dir) {
            Ok(d) if d.is_dir() => d,
            _ => {
                eprintln!("error: cannot change to directory {}", dir.display());
                return ExitCode::from(1);
            }
        },
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let ctx = Context { cwd, color, lock_timeout: cli.lock_timeout.to_std() };
    let result = match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Commit(args) => commit::run(&ctx, args),
        Command::Abort(args) => abort::run(&ctx, args),
        Command::Continue(args) => continue_deploy::run(&ctx, args),
        Command::Task(args) => task::run(&ctx, args),
        Command::Validate(args) => validate::run(&ctx, args),
        Command::Fmt(args) => fmt::run(&ctx, args),
        Command::Schema(args) => schema::run(&ctx, args),
        Command::Completions(args) => completions::run(args),
        Command::Agent(args) => agent::run(&ctx, args),
        Command::Down(args) => down::run(&ctx, args),
        Command::ForceUnlock(args) => force_unlock::run(&ctx, args),
        Command::Graph(args) => graph::run(&ctx, args),
        Command::History(args) => history::run(&ctx, args),
        Command::Image(args) => image::run(&ctx, args),
        Command::Logs(args) => logs::run(&ctx, args),
        Command::Plan(args) => plan::run(&ctx, args),
        Command::Ps(args) => ps::run(&ctx, args),
        Command::Release(args) => release::run(&ctx, args),
        Command::Releases(args) => releases::run(&ctx, args),
        Command::Rollback(args) => rollback::run(&ctx, args),
        Command::State(args) => state::run(&ctx, args),
        Command::Promote(args) => promote::run(&ctx, args),
        Command::Preview(args) => preview::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Pipeline(args) => pipeline::run(&ctx, args),
        Command::Images(args) => images::run(&ctx, args),
        Command::Ui(args) => ui::run(&ctx, args),
        Command::Import(args) => import::run(&ctx, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

fn report(e: CliError) -> ExitCode {
    let mut err = std::io::stderr().lock();
    match e {
        // Errors quote values from files, state and runtimes: control characters escaped.
        CliError::Config(d) => {
            let _ = writeln!(err, "{}", crate::render::escape_controls(&d.to_string()));
            ExitCode::from(1)
        }
        CliError::Failed { message, hint } => {
            let message = crate::render::escape_controls(&message);
            let _ = writeln!(err, "{} {message}", console::style("error:").red().bold());
            if let Some(h) = hint {
                let _ = writeln!(err, "  hint: {}", crate::render::escape_controls(&h));
            }
            ExitCode::from(1)
        }
        CliError::Exit(code) => ExitCode::from(code),
    }
}

/// Write to stdout, treating a closed pipe (`ferry plan | head`) as success.
pub fn print_out(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A small runtime for commands that talk to a runtime (the agent, AWS).
pub fn tokio_runtime() -> CliResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
