//! `ferry ui`: a dashboard of the project in the browser and a JSON API over the same data,
//! served by axum on tokio from `127.0.0.1` by default.
//!
//! - [`model`]: the view models (overview, app, history, pipeline), built from the stores
//!   and the runtime the CLI uses; one value is both the JSON answer and the page.
//! - [`pages`]: server-rendered HTML (maud templates, compiled with the binary), a style
//!   sheet and the one small script of the live view; no JavaScript build.
//! - [`api`]: the JSON endpoints and `POST /api/status`, the one write.
//! - [`live`]: a stage's deploy as it happens, as server-sent events.
//! - [`error`]: every failure as a JSON error (or an error page), never a panic.
//!
//! Safe by default: writes need the bearer token of `FERRY_UI_TOKEN`, and without one the
//! server is read-only (403); request bodies are limited to [`BODY_LIMIT`]; no page or
//! answer holds a secret value (state and stage files keep references only, deployments
//! are shown without their config snapshots, the token is never echoed).

pub mod api;
pub mod error;
pub mod live;
pub mod model;
pub mod pages;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest as _, Sha256};

use crate::config::Project;

/// The largest request body the server reads (a status report is a few hundred bytes).
pub const BODY_LIMIT: usize = 16 * 1024;

/// The environment variable holding the bearer token that allows writes.
pub const TOKEN_VAR: &str = "FERRY_UI_TOKEN";

/// The bearer token that allows writes. Kept as its SHA-256 only, so the server's memory
/// holds no copy to leak into a page, and compared in constant time.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// The token `secret`; `None` when it is empty (an empty token would allow anyone).
    pub fn new(secret: &str) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(Sha256::digest(secret.as_bytes()).into()))
    }

    /// Whether `offered` is the token.
    pub fn matches(&self, offered: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(offered.as_bytes()).into();
        self.0.iter().zip(other).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What every handler shares: the project and the write token.
#[derive(Clone)]
pub struct UiState {
    inner: Arc<Inner>,
}

struct Inner {
    project: Project,
    token: Option<Token>,
}

impl UiState {
    /// The dashboard of `project`; writes allowed with `token`, none without.
    pub fn new(project: Project, token: Option<Token>) -> Self {
        UiState { inner: Arc::new(Inner { project, token }) }
    }

    /// The project served.
    pub fn project(&self) -> &Project {
        &self.inner.project
    }

    /// The write token, when one is configured.
    pub fn token(&self) -> Option<&Token> {
        self.inner.token.as_ref()
    }
}

/// Every route of the dashboard and its API.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/stages/{stage}/apps/{app}", get(pages::app))
        .route("/stages/{stage}/live", get(pages::live))
        .route("/pipeline", get(pages::pipeline))
        .route("/plan", get(pages::plan))
        .route("/assets/ferry.css", get(pages::style_sheet))
        .route("/assets/live.js", get(pages::live_script))
        .route("/api/stages", get(api::stages))
        .route("/api/stages/{stage}/apps/{app}", get(api::app))
        .route("/api/stages/{stage}/apps/{app}/history", get(api::history))
        .route("/api/stages/{stage}/events", get(live::events))
        .route("/api/pipeline", get(api::pipeline))
        .route("/api/plan", get(api::plan))
        .route("/api/status", post(api::set_status))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Pages load nothing from elsewhere and run only the server's own script; nothing is
/// framed or sniffed.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Serve the dashboard on `listener` until `shutdown` resolves. Open connections are
/// dropped then, not drained: a live view's event stream never ends by itself.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: UiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::select! {
        served = axum::serve(listener, router(state)) => served,
        () = shutdown => Ok(()),
    }
}

/// Run blocking work (files, the state store) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> error::UiResult<T> + Send + 'static,
) -> error::UiResult<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(error::UiError::internal(format!("failed: {e}"))))
}
