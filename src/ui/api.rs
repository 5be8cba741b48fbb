//! The JSON API (docs/API.md): the dashboard's view models as JSON, and `POST /api/status`,
//! which records a status check exactly as `ferry status set` does, for a bearer token.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::{UiError, UiResult};
use super::model::{self, AppDetail, HistoryView, Loaded, OverviewView, PipelinePage};
use super::{blocking, UiState};
use crate::config::Digest;
use crate::pipeline::{open_records, CheckState, StatusReport, StatusStore};
use crate::render::{self, PlanView};

/// `GET /api/stages`: every stage by pipeline step, each app's active release, digest,
/// health, running/desired and last deployment.
pub async fn stages(State(state): State<UiState>) -> UiResult<Json<OverviewView>> {
    Ok(Json(overview(&state).await?))
}

/// The overview, loaded and observed.
pub async fn overview(state: &UiState) -> UiResult<OverviewView> {
    let project = state.project().clone();
    let loaded = blocking(move || Loaded::read(&project)).await?;
    let observed = model::observe_all(&loaded).await;
    Ok(OverviewView::build(&loaded, &observed))
}

/// `GET /api/stages/STAGE/apps/APP`: an app's releases, deployments, tasks and last log lines.
pub async fn app(
    State(state): State<UiState>,
    Path((stage, app)): Path<(String, String)>,
) -> UiResult<Json<AppDetail>> {
    Ok(Json(app_detail(&state, &stage, &app).await?))
}

/// One app, loaded and observed.
pub async fn app_detail(state: &UiState, stage: &str, app: &str) -> UiResult<AppDetail> {
    let project = state.project().clone();
    let loaded = blocking(move || Loaded::read(&project)).await?;
    let declared = loaded.stage(stage)?;
    if !declared.apps.contains_key(app) {
        // Built first for its error, which lists the stage's apps.
        AppDetail::build(&loaded, stage, app, Ok(None), Vec::new())?;
    }
    let service =
        model::observe(&loaded.project.root, declared).await.map(|list| list.into_iter().find(|s| s.app == app));
    let logs = match &service {
        Ok(Some(s)) if s.state != crate::runtime::ServiceState::Missing => {
            let (root, stage) = (loaded.project.root.clone(), declared.clone());
            let runtime = blocking(move || Ok(model::runtime_of(&root, &stage))).await?;
            model::last_log_lines(runtime, app, model::LOG_LINES).await
        }
        _ => Vec::new(),
    };
    AppDetail::build(&loaded, stage, app, service, logs)
}

/// `GET /api/stages/STAGE/apps/APP/history`: every deployment vN, newest first.
pub async fn history(
    State(state): State<UiState>,
    Path((stage, app)): Path<(String, String)>,
) -> UiResult<Json<HistoryView>> {
    let project = state.project().clone();
    blocking(move || HistoryView::build(&Loaded::read(&project)?, &stage, &app)).await.map(Json)
}

/// `GET /api/pipeline`: steps, releases per stage, required checks and promotability.
pub async fn pipeline(State(state): State<UiState>) -> UiResult<Json<PipelinePage>> {
    Ok(Json(pipeline_page(&state).await?))
}

/// The pipeline page's model.
pub async fn pipeline_page(state: &UiState) -> UiResult<PipelinePage> {
    let project = state.project().clone();
    blocking(move || {
        let loaded = Loaded::read(&project)?;
        let logs = model::status_logs(&loaded)?;
        Ok(PipelinePage::build(&loaded, &logs))
    })
    .await
}

/// `GET /api/plan`: the plan of every stage's working-tree file against recorded state, in
/// the JSON format of `ferry plan --json` (docs/PLAN_JSON.md).
pub async fn plan(State(state): State<UiState>) -> UiResult<Response> {
    let view = plan_view(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], render::json::render(&view)).into_response())
}

/// What `ferry plan --all` shows, as its view model.
pub async fn plan_view(state: &UiState) -> UiResult<PlanView> {
    let project = state.project().clone();
    blocking(move || {
        let loaded = Loaded::read(&project)?;
        let mut stages = Vec::new();
        for desired in &loaded.stages {
            let recorded = loaded
                .recorded
                .get(&desired.name)
                .cloned()
                .unwrap_or_else(|| crate::state::StageState::new(&desired.name));
            let mut changeset = crate::plan::plan(desired, &recorded, &crate::plan::PlanOptions::default())
                .map_err(|e| UiError::internal(format!("cannot plan stage `{}`: {e}", desired.name)))?;
            crate::cli::stage::label_promotions(&project, &recorded, &mut changeset)?;
            let file = desired.file.display().to_string();
            stages.push(render::StageView::build(&changeset, &recorded.lineage, recorded.serial, Some(&file)));
        }
        Ok(PlanView { stages })
    })
    .await
}

/// The body of `POST /api/status`: the arguments of `ferry status set`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub app: String,
    /// `sha256:` and 64 hex digits.
    pub digest: String,
    /// The check's name, e.g. `ci/tests`.
    pub context: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `POST /api/status`: record a status check. 403 when the server has no token, 401 for a
/// missing or wrong one, 400 for a body that is not a status report; 201 with the report.
pub async fn set_status(
    State(state): State<UiState>,
    headers: HeaderMap,
    body: Result<Json<StatusRequest>, JsonRejection>,
) -> UiResult<(StatusCode, Json<StatusReport>)> {
    authorize(&state, &headers)?;
    let Json(request) = body.map_err(|e| UiError::new(e.status(), e.body_text()).with_hint(STATUS_BODY_HINT))?;
    let digest: Digest = request.digest.parse().map_err(|e: crate::config::DigestError| {
        UiError::bad_request(e.to_string()).with_hint("a digest is `sha256:` and 64 hex digits")
    })?;
    let check_state: CheckState = request.state.parse().map_err(|e: String| UiError::bad_request(e))?;
    if request.context.trim().is_empty() {
        return Err(UiError::bad_request("the check's context must not be empty"));
    }
    if request.app.trim().is_empty() {
        return Err(UiError::bad_request("the app must not be empty"));
    }
    let report = StatusReport {
        digest,
        context: request.context,
        state: check_state,
        description: request.description,
        url: request.url,
        at: chrono::Utc::now(),
    };
    let project = state.project().clone();
    let (app, stored) = (request.app, report.clone());
    blocking(move || Ok(StatusStore::new(open_records(&project)?).set(&app, stored)?)).await?;
    Ok((StatusCode::CREATED, Json(report)))
}

const STATUS_BODY_HINT: &str = "send JSON {\"app\", \"digest\", \"context\", \"state\"} with optional \"description\" \
                                and \"url\", as `ferry status set` takes them";

/// Allow a write: the server must have a token (else 403) and the request must carry it as
/// `Authorization: Bearer TOKEN` (else 401).
fn authorize(state: &UiState, headers: &HeaderMap) -> UiResult<()> {
    let Some(token) = state.token() else {
        return Err(UiError::new(StatusCode::FORBIDDEN, "this server is read-only: no write token is configured")
            .with_hint(format!("start `ferry ui` with {} set to allow writes", super::TOKEN_VAR)));
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match offered {
        Some(t) if token.matches(t) => Ok(()),
        Some(_) => Err(unauthorized("the bearer token is wrong")),
        None => Err(unauthorized("this write needs `Authorization: Bearer TOKEN`")),
    }
}

fn unauthorized(message: &str) -> UiError {
    UiError::new(StatusCode::UNAUTHORIZED, message)
        .with_hint(format!("send the token `ferry ui` was started with ({})", super::TOKEN_VAR))
}
