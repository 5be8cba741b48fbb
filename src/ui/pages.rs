//! The dashboard's pages: server-rendered HTML from maud templates (compiled into the
//! binary, escaping every value), one style sheet and one small hand-written script for the
//! live view. Each page renders a view model of [`super::model`], the same value the JSON
//! API answers with.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::api;
use super::error::UiError;
use super::model::{AppDetail, DeploymentView, OverviewView, PipelinePage};
use super::UiState;
use crate::cli::ps::{task_rows, TASK_COLUMNS};
use crate::history::{now, relative_time};
use crate::pipeline::CheckState;
use crate::state::DeploymentStatus;

/// `GET /`: every stage by pipeline step.
pub async fn overview(State(state): State<UiState>) -> Response {
    match api::overview(&state).await {
        Ok(view) => render_overview(&view).into_response(),
        Err(e) => e.into_page(),
    }
}

/// `GET /stages/STAGE/apps/APP`.
pub async fn app(State(state): State<UiState>, Path((stage, app)): Path<(String, String)>) -> Response {
    match api::app_detail(&state, &stage, &app).await {
        Ok(view) => render_app(&view).into_response(),
        Err(e) => e.into_page(),
    }
}

/// `GET /pipeline`.
pub async fn pipeline(State(state): State<UiState>) -> Response {
    match api::pipeline_page(&state).await {
        Ok(view) => render_pipeline(&view).into_response(),
        Err(e) => e.into_page(),
    }
}

/// `GET /plan`: the text plan of every stage's working-tree file, as `ferry plan --all`.
pub async fn plan(State(state): State<UiState>) -> Response {
    match api::plan_view(&state).await {
        Ok(view) => {
            let text = crate::render::text::render(&view, false);
            layout(
                "Plan",
                html! {
                    h1 { "Plan" }
                    p.muted { "The stage files of the working tree against recorded state, as " code { "ferry plan --all" } " shows it. Apply with " code { "ferry commit" } "." }
                    pre.plan { (text) }
                },
            )
            .into_response()
        }
        Err(e) => e.into_page(),
    }
}

/// `GET /stages/STAGE/live`: a deploy as it happens.
pub async fn live(State(state): State<UiState>, Path(stage): Path<String>) -> Response {
    match api::overview(&state).await {
        Ok(view) => match view.stages.iter().find(|s| s.name == stage) {
            Some(summary) => render_live(summary).into_response(),
            None => UiError::not_found(format!("the project has no stage `{stage}`")).into_page(),
        },
        Err(e) => e.into_page(),
    }
}

/// `GET /assets/ferry.css`.
pub async fn style_sheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// `GET /assets/live.js`.
pub async fn live_script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], LIVE_JS).into_response()
}

/// A page for a failed request.
pub fn error_page(e: &UiError) -> Markup {
    layout(
        "Error",
        html! {
            h1 { (e.status.as_u16()) " " (e.status.canonical_reason().unwrap_or("")) }
            pre.error { (e.error) }
            @if let Some(h) = &e.hint { p.hint { "hint: " (h) } }
        },
    )
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ferry" }
                link rel="stylesheet" href="/assets/ferry.css";
            }
            body {
                header.top {
                    a.brand href="/" { "ferry" }
                    nav {
                        a href="/" { "Overview" }
                        a href="/pipeline" { "Pipeline" }
                        a href="/plan" { "Plan" }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(t.format("%Y-%m-%d %H:%M:%S UTC")) { (relative_time(t, now)) } }
}

/// The words and class of a deployment's status: failed and aborted stand out.
fn status_badge(status: DeploymentStatus) -> Markup {
    let (class, text) = match status {
        DeploymentStatus::Succeeded => ("ok", "✓ succeeded"),
        DeploymentStatus::Failed => ("failed", "✗ failed"),
        DeploymentStatus::Aborted => ("aborted", "⊘ aborted"),
        DeploymentStatus::InProgress => ("progress", "… in progress"),
    };
    html! { span class={ "badge status-" (class) } { (text) } }
}

fn health_badge(health: &str) -> Markup {
    let class = match health {
        "healthy" => "ok",
        "unhealthy" => "failed",
        "starting" | "unknown" => "progress",
        _ => "none",
    };
    html! { span class={ "badge health-" (class) } { (health) } }
}

fn short(d: &crate::config::Digest) -> &str {
    d.short()
}

/// The overview page of `view`.
pub fn render_overview(view: &OverviewView) -> Markup {
    let now = now();
    // A step's heading goes above its first stage.
    let opens_step: Vec<bool> =
        view.stages.iter().enumerate().map(|(i, s)| i == 0 || view.stages[i - 1].step != s.step).collect();
    layout(
        "Overview",
        html! {
            h1 { "Project " (view.project) }
            @if view.stages.is_empty() { p.muted { "No stages yet: add a file under stages/." } }
            @for (stage, opens) in view.stages.iter().zip(&opens_step) {
                @if *opens {
                    @if let Some(s) = &stage.step { h2.step { "Step " (s) } } @else { h2.step { "Not in the pipeline" } }
                }
                section.stage id={ "stage-" (stage.name) } {
                    h3 {
                        "Stage " (stage.name)
                        span.muted { " · " (format!("{:?}", stage.runtime).to_lowercase()) " · state serial " (stage.serial) }
                        " " a.live href={ "/stages/" (stage.name) "/live" } { "live view" }
                    }
                    @if let Some(l) = &stage.locked_by { p.banner { "Deploy in progress: " (l) } }
                    @if let Some(e) = &stage.runtime_error { p.warning { "runtime: " (e) } }
                    @if stage.apps.is_empty() { p.muted { "(no apps)" } } @else {
                        table.apps {
                            thead { tr { th { "App" } th { "Release" } th { "Digest" } th { "Health" } th { "Running" } th { "Last deployment" } th { "Outcome" } } }
                            tbody {
                                @for app in &stage.apps {
                                    tr data-app=(app.name) {
                                        td { a href={ "/stages/" (stage.name) "/apps/" (app.name) } { (app.name) } }
                                        td {
                                            @if let Some(r) = app.release { (r) } @else { "–" }
                                            @match (app.deployed_release, app.release) {
                                                (None, Some(_)) => { span.muted { " (not deployed)" } }
                                                (Some(d), Some(r)) if d != r => { span.muted { " (runs " (d) ")" } }
                                                _ => {}
                                            }
                                        }
                                        td.digest { @if let Some(d) = &app.digest { code title=(d) { (short(d)) } } @else { "–" } }
                                        td { (health_badge(app.health)) }
                                        td { (app.running) " / " (app.desired) }
                                        @if let Some(d) = &app.last_deployment {
                                            td { "v" (d.number) " " (d.description) " " span.muted { (when(d.started_at, now)) } }
                                            td { (status_badge(d.status)) }
                                        } @else {
                                            td.muted { "never deployed" } td {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn history_table(deployments: &[DeploymentView], now: DateTime<Utc>) -> Markup {
    html! {
        @if deployments.is_empty() { p.muted { "No deployments yet." } } @else {
            table.history {
                thead { tr { th { "Version" } th { "When" } th { "Description" } th { "Commit" } th { "Author" } th { "Status" } } }
                tbody {
                    @for d in deployments {
                        tr class={ "deployment status-" (d.status.as_str()) } {
                            td { "v" (d.number) }
                            td { (when(d.started_at, now)) }
                            td { (d.description) }
                            td { code { (d.source.short_commit().unwrap_or("-")) } }
                            td { (d.source.author.as_deref().or(d.source.user.as_deref()).unwrap_or("-")) }
                            td { (status_badge(d.status)) }
                        }
                        @if let (DeploymentStatus::Failed | DeploymentStatus::Aborted, Some(r)) = (d.status, &d.reason) {
                            tr class={ "reason status-" (d.status.as_str()) } { td {} td colspan="5" { pre { (super::error::clean(r)) } } }
                        }
                    }
                }
            }
        }
    }
}

fn render_app(view: &AppDetail) -> Markup {
    let now = now();
    layout(
        &format!("{} · {}", view.app, view.stage),
        html! {
            h1 { (view.app) span.muted { " in stage " (view.stage) } }
            p.summary {
                "image " code { (view.image) } " · release "
                @if let Some(r) = view.release { (r) } @else { "–" }
                @if let Some(d) = &view.digest { " " code title=(d) { (short(d)) } }
                " · scale " (view.scale) " · " (health_badge(view.health))
                " · " a href={ "/stages/" (view.stage) "/live" } { "live view" }
            }
            h2 { "Deployments" }
            (history_table(&view.deployments, now))
            h2 { "Tasks" }
            @if let Some(e) = &view.runtime_error { p.warning { "runtime: " (e) } }
            @if let Some(s) = &view.service {
                p.ps { (s.state.as_str()) " " (s.running) " / " (s.desired) " running tasks (" (s.pending) " pending)" }
                @if let Some(r) = s.primary() {
                    p.ps { "rollout " (r.id) " · release " (r.release) " · " (r.state.as_str()) @if let Some(x) = &r.reason { " (" (x) ")" } }
                }
                @let rows = task_rows(s, true);
                @if rows.is_empty() { p.muted { "No tasks." } } @else {
                    table.tasks {
                        thead { tr { @for c in TASK_COLUMNS { th { (c) } } } }
                        tbody { @for row in &rows { tr { @for cell in row { td { (cell) } } } } }
                    }
                }
            } @else { p.muted { "The runtime runs nothing of this app." } }
            h2 { "Releases" }
            @if view.releases.is_empty() { p.muted { "No releases declared." } } @else {
                table.releases {
                    thead { tr { th {} th { "Release" } th { "Digest" } th { "First deployed" } th { "" } } }
                    tbody {
                        @for r in &view.releases {
                            tr {
                                td { @if r.active { "*" } }
                                td { (r.id) }
                                td { code { (r.digest) } }
                                td { @if let Some(t) = r.first_deployed { (when(t, now)) } @else { span.muted { "never deployed" } } }
                                td.muted { (r.note) }
                            }
                        }
                    }
                }
            }
            h2 { "Logs" }
            @if view.logs.is_empty() { p.muted { "No log lines." } } @else {
                pre.logs { @for l in &view.logs { (l.time.format("%H:%M:%S%.3f")) " " (l.task) " " (l.text) "\n" } }
            }
        },
    )
}

fn check_badge(state: Option<CheckState>) -> Markup {
    let (class, text) = match state {
        Some(CheckState::Success) => ("ok", "success"),
        Some(CheckState::Pending) => ("progress", "pending"),
        Some(CheckState::Failure) => ("failed", "failure"),
        Some(CheckState::Error) => ("failed", "error"),
        None => ("none", "missing"),
    };
    html! { span class={ "badge check-" (class) } { (text) } }
}

fn render_pipeline(view: &PipelinePage) -> Markup {
    layout(
        "Pipeline",
        html! {
            h1 { "Pipeline" }
            @if view.pipeline.steps.is_empty() { p.muted { "No pipeline: add [[pipeline.steps]] to ferry.toml." } }
            div.pipeline {
                @for (i, step) in view.pipeline.steps.iter().enumerate() {
                    @if i > 0 { div.arrow { "→" } }
                    section.step {
                        h2 { (i + 1) ". " (step.name) }
                        @if !step.required_checks.is_empty() { p.muted { "requires: " (step.required_checks.join(", ")) } }
                        @for stage in &step.stages {
                            h3 { (stage.name) @if stage.differs_from_previous { span.badge.status-aborted { "differs" } } }
                            @if stage.apps.is_empty() { p.muted { "(no apps)" } }
                            table {
                                @for app in &stage.apps {
                                    tr {
                                        td { a href={ "/stages/" (stage.name) "/apps/" (app.name) } { (app.name) } }
                                        td { @if let Some(r) = app.release { "release " (r) } @else { "–" } }
                                        td { @if let Some(d) = &app.digest { code title=(d) { (short(d)) } } @if app.differs_from_previous { " *" } }
                                        td.muted {
                                            @match (app.deployed_release, app.release) {
                                                (None, Some(_)) => { "not deployed" }
                                                (Some(d), Some(r)) if d != r => { "deployed: release " (d) }
                                                _ => {}
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !view.promotions.is_empty() {
                h2 { "Promotions" }
                table.promotions {
                    thead { tr { th { "From stage" } th { "App" } th { "Release" } th { "Into step" } th { "Required checks" } th { "Promotable" } th { "" } } }
                    tbody {
                        @for p in &view.promotions {
                            tr class=(if p.promotable { "promotable" } else { "blocked" }) {
                                td { (p.stage) }
                                td { (p.app) }
                                td { @if let Some(r) = p.release { (r) } @if let Some(d) = &p.digest { " " code title=(d) { (short(d)) } } }
                                td { (p.to_step) }
                                td {
                                    @if p.checks.is_empty() { span.muted { "none" } }
                                    @for c in &p.checks {
                                        span.check title=(c.description.as_deref().unwrap_or("")) { (c.context) " " (check_badge(c.state)) } " "
                                    }
                                }
                                td { @if p.promotable { span.badge.status-ok { "yes" } } @else { span.badge.status-failed { "no" } } }
                                td { @if p.promotable { code { (p.note) } } @else { (p.note) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn render_live(stage: &super::model::StageSummary) -> Markup {
    let now = now();
    let mut recent: Vec<(&str, &DeploymentView)> =
        stage.apps.iter().filter_map(|a| a.last_deployment.as_ref().map(|d| (a.name.as_str(), d))).collect();
    recent.sort_by_key(|(_, d)| std::cmp::Reverse(d.started_at));
    layout(
        &format!("Live · {}", stage.name),
        html! {
            h1 { "Stage " (stage.name) span.muted { " · live" } }
            div #live data-events={ "/api/stages/" (stage.name) "/events" } {
                p #connection.muted { "connecting…" }
                @if let Some(l) = &stage.locked_by { p.banner { "Deploy in progress: " (l) } }
                h2 { "Operations" }
                table #operations {
                    thead { tr { th { "#" } th { "Operation" } th { "Type" } th { "After" } th { "State" } } }
                    tbody { tr.muted { td colspan="5" { "Waiting for a commit of this stage." } } }
                }
                h2 { "Timeline" }
                ol #timeline reversed {
                    @for (app, d) in recent.iter().take(10) {
                        li class={ "status-" (d.status.as_str()) } {
                            (when(d.started_at, now)) " " (app) " v" (d.number) " " (d.status.as_str()) ": " (d.description)
                        }
                    }
                }
                h2 { "New tasks' output" }
                pre #logs.logs {}
            }
            script src="/assets/live.js" {}
        },
    )
}

const STYLE: &str = r#"
:root { --fg: #1d2330; --muted: #6b7385; --line: #dde1ea; --ok: #1f7a3a; --ok-bg: #e3f4e8;
  --bad: #a4161a; --bad-bg: #fde2e2; --warn: #8a5a00; --warn-bg: #fff1cc; --run: #1d4ed8; --run-bg: #e0e9ff; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: #f7f8fb; }
header.top { display: flex; gap: 2rem; align-items: center; padding: .6rem 1.5rem; background: #1d2330; }
header.top a { color: #fff; text-decoration: none; margin-right: 1rem; }
header.top .brand { font-weight: 700; font-size: 1.1rem; }
main { padding: 1rem 1.5rem 3rem; max-width: 1400px; }
h2.step { border-bottom: 2px solid var(--line); padding-bottom: .2rem; margin-top: 2rem; }
section.stage { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .4rem 1rem 1rem; margin: 1rem 0; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; }
code, pre { font-family: ui-monospace, monospace; font-size: 13px; }
pre { background: #fff; border: 1px solid var(--line); padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
pre.logs { background: #10141c; color: #d7dce6; max-height: 30rem; overflow-y: auto; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: 12px; font-weight: 600; }
.status-ok, .health-ok, .check-ok { color: var(--ok); background: var(--ok-bg); }
.status-failed, .health-failed, .check-failed { color: var(--bad); background: var(--bad-bg); }
.status-aborted { color: var(--warn); background: var(--warn-bg); }
.status-progress, .health-progress, .check-progress { color: var(--run); background: var(--run-bg); }
.health-none, .check-none { color: var(--muted); background: #eceef3; }
tr.deployment.status-failed td, tr.reason.status-failed td { background: var(--bad-bg); }
tr.deployment.status-aborted td, tr.reason.status-aborted td { background: var(--warn-bg); }
tr.reason pre { margin: 0; background: transparent; border: 0; padding: 0; }
.banner { background: var(--run-bg); color: var(--run); padding: .4rem .8rem; border-radius: 4px; }
.warning { background: var(--warn-bg); color: var(--warn); padding: .4rem .8rem; border-radius: 4px; }
a.live { font-size: 13px; font-weight: 400; }
div.pipeline { display: flex; gap: 1rem; align-items: flex-start; flex-wrap: wrap; }
section.step { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .2rem 1rem 1rem; min-width: 18rem; }
div.arrow { font-size: 2rem; color: var(--muted); align-self: center; }
tr.blocked td { color: var(--muted); }
ol#timeline li { padding: .15rem 0; }
ol#timeline li.status-failed { color: var(--bad); font-weight: 600; }
ol#timeline li.status-aborted { color: var(--warn); font-weight: 600; }
ol#timeline li.status-succeeded { color: var(--ok); }
#operations td.state-done { color: var(--ok); font-weight: 600; }
#operations td.state-running { color: var(--run); font-weight: 600; }
#operations td.state-failed { color: var(--bad); font-weight: 600; }
"#;

/// The live view's script: hand-written, no build step. It listens to the stage's events
/// (EventSource) and adds them to the page; text goes in as text, never as HTML.
const LIVE_JS: &str = r#"'use strict';
(function () {
  const root = document.getElementById('live');
  if (!root) return;
  const connection = document.getElementById('connection');
  const timeline = document.getElementById('timeline');
  const logs = document.getElementById('logs');
  const ops = document.querySelector('#operations tbody');
  const source = new EventSource(root.dataset.events);
  const stamp = () => new Date().toISOString().substring(11, 19);
  function note(text, cls) {
    const li = document.createElement('li');
    li.textContent = stamp() + ' ' + text;
    if (cls) li.className = cls;
    timeline.prepend(li);
  }
  function opState(app, state, only) {
    ops.querySelectorAll('tr[data-app="' + CSS.escape(app) + '"]').forEach(function (tr) {
      const kind = tr.dataset.kind;
      const rollout = kind === 'deploy' || kind === 'scale';
      const cell = tr.querySelector('td.state');
      if (rollout || !only) { cell.textContent = rollout ? state : 'done'; cell.className = 'state state-' + (rollout ? state : 'done'); }
    });
  }
  source.onopen = function () { connection.textContent = 'live: watching for deploys'; };
  source.onerror = function () { connection.textContent = 'disconnected, retrying…'; };
  source.addEventListener('commit', function (e) {
    const ev = JSON.parse(e.data);
    note(ev.text, ev.started ? 'status-in_progress' : '');
  });
  source.addEventListener('plan', function (e) {
    const ev = JSON.parse(e.data);
    ops.replaceChildren();
    ev.operations.forEach(function (op, i) {
      const tr = document.createElement('tr');
      tr.dataset.app = op.app;
      tr.dataset.kind = op.type;
      [String(i + 1), op.id, op.type, op.depends_on.join(', '), 'pending'].forEach(function (text, j) {
        const td = document.createElement('td');
        td.textContent = text;
        if (j === 4) td.className = 'state';
        tr.appendChild(td);
      });
      ops.appendChild(tr);
    });
    note(ev.text, '');
  });
  source.addEventListener('deployment', function (e) {
    const ev = JSON.parse(e.data);
    const state = ev.status === 'in_progress' ? 'running' : ev.status === 'succeeded' ? 'done' : 'failed';
    opState(ev.app, state, false);
    note(ev.text, 'status-' + ev.status);
  });
  source.addEventListener('task', function (e) { note(JSON.parse(e.data).text, ''); });
  source.addEventListener('log', function (e) {
    const ev = JSON.parse(e.data);
    logs.append(ev.time.substring(11, 23) + ' ' + ev.app + ' ' + ev.task + ' ' + ev.text + '\n');
    while (logs.childNodes.length > 1000) logs.removeChild(logs.firstChild);
    logs.scrollTop = logs.scrollHeight;
  });
})();
"#;
