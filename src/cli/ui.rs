//! `ferry ui [--listen 127.0.0.1:PORT] [--open]`: serve the dashboard and its JSON API
//! (`src/ui/`, docs/API.md) until interrupted.

use std::net::SocketAddr;

use clap::Args;

use crate::cli::{CliError, CliResult, Context};
use crate::ui::{self, Token, UiState, TOKEN_VAR};

/// Serve a dashboard of the project and a JSON API in the browser.
///
/// Pages: the overview of every stage (`/`), an app (`/stages/STAGE/apps/APP`), the
/// pipeline (`/pipeline`), the plan (`/plan`) and a deploy as it happens
/// (`/stages/STAGE/live`). Read-only unless FERRY_UI_TOKEN is set: then `POST /api/status`
/// with `Authorization: Bearer TOKEN` records status checks (docs/API.md).
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

pub fn run(ctx: &Context, args: UiArgs) -> CliResult {
    let project = ctx.project()?;
    let token = std::env::var(TOKEN_VAR).ok().as_deref().and_then(Token::new);
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
