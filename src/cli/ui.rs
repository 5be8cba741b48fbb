//! `ferry ui [--listen 127.0.0.1:PORT] [--open]`: serve the dashboard and its JSON API
//! (`src/ui/`, docs/API.md) until interrupted.

use std::net::SocketAddr;

use clap::Args;

use crate::cli::{CliError, CliResult, Context};
use crate::config::{self, SecretRef};
use crate::ui::{self, Token, UiState, TOKEN_VAR};

/// Serve a dashboard of the project and a JSON API in the browser.
///
/// Pages: the overview of every stage (`/`), an app (`/stages/STAGE/apps/APP`), the
/// pipeline (`/pipeline`), the plan (`/plan`) and a deploy as it happens
/// (`/stages/STAGE/live`). Read-only unless a token is configured — FERRY_UI_TOKEN, or else
/// the reference in ferry.toml's `[ui] token` (`env:NAME` or `file:PATH`): then
/// `POST /api/status` with `Authorization: Bearer TOKEN` records status checks (docs/API.md).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry ui --open\n  ferry ui --listen 127.0.0.1:8080\n  \
                        FERRY_UI_TOKEN=$(openssl rand -hex 16) ferry ui")]
pub struct UiArgs {
    /// The address to listen on. Port 0 takes a free port. Anything but a loopback address
    /// shows the dashboard to the network.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7600")]
    pub listen: SocketAddr,
    /// Open the dashboard in the default browser.
    #[arg(long)]
    pub open: bool,
}

/// The write token: `FERRY_UI_TOKEN` when set (so one run can override the file), else
/// what `[ui] token` references. A reference that cannot be read is an error naming the
/// reference, never a silent read-only server; the value is never printed.
pub(crate) fn write_token(project: &config::Project) -> CliResult<Option<Token>> {
    if let Some(token) = std::env::var(TOKEN_VAR).ok().filter(|t| !t.trim().is_empty()) {
        return Ok(Token::new(&token));
    }
    let Some(reference) = &project.ui_token else { return Ok(None) };
    let hint = "set the variable or write the file, or set FERRY_UI_TOKEN";
    let value = match reference {
        SecretRef::Env(name) => std::env::var(name).map_err(|_| {
            CliError::with_hint(format!("[ui] token: env:{name} is not set in ferry's environment"), hint)
        })?,
        SecretRef::File(path) => crate::runtime::local::secrets::read_file(&project.root, "[ui] token", path)
            .map_err(|e| CliError::with_hint(e, hint))?,
        // Validation accepts only the two above.
        other => return Err(CliError::new(format!("[ui] token: {} cannot be read here", other.reference()))),
    };
    Token::new(&value).map(Some).ok_or_else(|| {
        CliError::with_hint(format!("[ui] token: {} is empty", reference.reference()), "put a non-empty token there")
    })
}

pub fn run(ctx: &Context, args: UiArgs) -> CliResult {
    let project = ctx.project()?;
    let token = write_token(&project)?;
    let writes = if token.is_some() { "writes allowed with the bearer token" } else { "read-only" };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| {
            CliError::with_hint(
                format!("cannot listen on {}: {e}", args.listen),
                "pass another address with --listen, e.g. --listen 127.0.0.1:0 for a free port",
            )
        })?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}/");
        if !addr.ip().is_loopback() {
            eprintln!("warning: listening on {addr}: the dashboard is reachable from the network");
        }
        // The URL on stdout (for scripts and tests), the rest on stderr.
        crate::cli::print_out(&format!("{url}\n"))?;
        eprintln!("serving the dashboard of project {} ({writes}); Ctrl-C stops", project.name);
        if args.open {
            if let Err(e) = open::that_detached(&url) {
                eprintln!("cannot open a browser: {e}");
            }
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        ui::serve(listener, UiState::new(project, token), shutdown).await?;
        Ok(())
    })
}
