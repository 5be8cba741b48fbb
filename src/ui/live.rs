//! A stage's deploy as it happens: `GET /api/stages/STAGE/events` streams server-sent
//! events, read by the live page's script.
//!
//! A commit runs in another process, so the server watches what it leaves behind, the same
//! way a second `ferry` would: the stage's lock (a commit started or ended; when one starts,
//! its plan, made here from the stage file and the state it found, gives the operations),
//! recorded state (each deployment vN is journaled `in_progress` when its rollout starts
//! and settled when it ends), the runtime's tasks (states and health), and the log lines of
//! the tasks a deployment starts. Every [`POLL`] (well inside the one second a person
//! should wait to see an event); the runtime of an ECS stage every [`ECS_POLL_EVERY`] polls,
//! to keep AWS calls few.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::{clean, UiResult};
use super::model::{self, Loaded};
use super::{blocking, UiState};
use crate::config::{Project, Stage};
use crate::render::OperationView;
use crate::runtime::{Health, Lifecycle, LogQuery, Runtime, ServiceStatus};
use crate::state::{open_store, DeploymentStatus, LockInfo, StageState, StateStore};

/// How often state, the lock and a local runtime are looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// An ECS stage's runtime is asked every this many polls.
pub const ECS_POLL_EVERY: u32 = 8;

/// One thing that happened, as sent to the page. `text` is what the timeline shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A commit took the stage's lock (`started`) or let it go.
    Commit { started: bool, text: String },
    /// The operations of the commit that started, in order, with their dependencies.
    Plan { operations: Vec<OperationView>, text: String },
    /// A deployment vN started or ended.
    Deployment {
        app: String,
        number: u64,
        status: DeploymentStatus,
        description: String,
        reason: Option<String>,
        text: String,
    },
    /// A task appeared or changed state or health.
    Task { app: String, task: String, release: u64, status: Lifecycle, health: Health, text: String },
    /// A line of a new task's output.
    Log { app: String, task: String, time: chrono::DateTime<chrono::Utc>, text: String },
}

impl LiveEvent {
    /// The SSE event name: `commit`, `plan`, `deployment`, `task` or `log`.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::Commit { .. } => "commit",
            LiveEvent::Plan { .. } => "plan",
            LiveEvent::Deployment { .. } => "deployment",
            LiveEvent::Task { .. } => "task",
            LiveEvent::Log { .. } => "log",
        }
    }

    fn to_sse(&self) -> Event {
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        Event::default().event(self.name()).data(data)
    }
}

/// `GET /api/stages/STAGE/events`: the stage's events from now on, until the client leaves.
pub async fn events(
    State(state): State<UiState>,
    Path(stage): Path<String>,
) -> UiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let project = state.project().clone();
    let name = stage.clone();
    let (stage, store) = blocking(move || {
        let loaded = Loaded::read(&project)?;
        let stage = loaded.stage(&name)?.clone();
        Ok((stage, open_store(&project)?))
    })
    .await?;
    let (tx, rx) = mpsc::channel::<LiveEvent>(512);
    let project = state.project().clone();
    tokio::spawn(async move {
        let closed = tx.clone();
        tokio::select! {
            () = watch(project, stage, Arc::from(store), tx) => {}
            () = closed.closed() => {}
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok::<_, Infallible>(event.to_sse()), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The log followers of a watch, stopped with it (also when the client leaves mid-poll).
#[derive(Default)]
struct Followers(BTreeMap<String, tokio::task::AbortHandle>);

impl Drop for Followers {
    fn drop(&mut self) {
        for handle in self.0.values() {
            handle.abort();
        }
    }
}

/// What the watcher saw last.
#[derive(Default)]
struct Seen {
    state: Option<StageState>,
    lock: Option<LockInfo>,
    tasks: HashMap<String, (Lifecycle, Health)>,
}

/// Watch the stage and send what changes, until the receiver is gone.
async fn watch(project: Project, stage: Stage, store: Arc<dyn StateStore>, tx: mpsc::Sender<LiveEvent>) {
    let runtime = {
        let (root, stage) = (project.root.clone(), stage.clone());
        match tokio::task::spawn_blocking(move || model::runtime_of(&root, &stage)).await {
            Ok(r) => r,
            Err(_) => return,
        }
    };
    let ecs = stage.runtime.kind() == crate::config::RuntimeKind::Ecs;
    // When each task started, so only the lines of the tasks a deployment started are sent.
    let started: TaskStarts = Arc::default();
    let mut followed = Followers::default();
    let mut seen = Seen::default();
    let mut first = true;
    let mut tick: u32 = 0;
    loop {
        let (store2, name) = (store.clone(), stage.name.clone());
        let read = tokio::task::spawn_blocking(move || (store2.read(&name), store2.lock_holder(&name))).await;
        let Ok((Ok(state), lock)) = read else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let lock = lock.ok().flatten();
        let mut events = Vec::new();
        if lock.as_ref().map(|l| &l.id) != seen.lock.as_ref().map(|l| &l.id) {
            if let Some(l) = &lock {
                events.push(LiveEvent::Commit {
                    started: true,
                    text: format!("commit started: {}", clean(&l.describe())),
                });
                let desired = {
                    let (project, name) = (project.clone(), stage.name.clone());
                    tokio::task::spawn_blocking(move || crate::config::load_stage(&project, &name)).await
                };
                if let Ok(Ok(desired)) = desired {
                    let recorded = state.clone().unwrap_or_else(|| StageState::new(&stage.name));
                    if let Some(e) = plan_event(&desired, &recorded) {
                        events.push(e);
                    }
                }
            } else if !first {
                events.push(LiveEvent::Commit { started: false, text: "commit finished".into() });
            }
        }
        if let Some(next) = &state {
            let new = deployment_events(if first { None } else { seen.state.as_ref() }, next);
            // At the start only what is in progress now is news.
            events.extend(
                new.into_iter().filter(|e| {
                    !first || matches!(e, LiveEvent::Deployment { status: DeploymentStatus::InProgress, .. })
                }),
            );
            for (app, a) in &next.apps {
                let Some(d) = a.history.iter().rev().find(|d| d.status == DeploymentStatus::InProgress) else {
                    continue;
                };
                if !followed.0.contains_key(app) {
                    let handle = tokio::spawn(follow_logs(
                        runtime.clone(),
                        app.clone(),
                        d.started_at,
                        started.clone(),
                        tx.clone(),
                    ));
                    followed.0.insert(app.clone(), handle.abort_handle());
                }
            }
        }
        if !ecs || tick % ECS_POLL_EVERY == 0 {
            if let Ok(Ok(services)) = tokio::time::timeout(model::RUNTIME_TIMEOUT, runtime.observe(&[])).await {
                {
                    let mut map = started.lock().unwrap_or_else(|p| p.into_inner());
                    for s in &services {
                        for t in &s.tasks {
                            map.insert(t.id.to_string(), t.started_at);
                        }
                    }
                }
                let (task_events, now) = task_events(&seen.tasks, &services);
                if !first {
                    events.extend(task_events);
                }
                seen.tasks = now;
            }
        }
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        seen.state = state;
        seen.lock = lock;
        first = false;
        tick = tick.wrapping_add(1);
        tokio::time::sleep(POLL).await;
    }
}

/// The operations a commit of `desired` over `recorded` carries out.
pub fn plan_event(desired: &Stage, recorded: &StageState) -> Option<LiveEvent> {
    let changeset = crate::plan::plan(desired, recorded, &crate::plan::PlanOptions::default()).ok()?;
    let view = crate::render::StageView::build(&changeset, &recorded.lineage, recorded.serial, None);
    let text = format!("{} (operations: {})", view.counts.line(), view.operations.len());
    Some(LiveEvent::Plan { operations: view.operations, text })
}

/// Deployments that appeared or changed status between two reads of state (every one in
/// `next` when there is no `prev`).
pub fn deployment_events(prev: Option<&StageState>, next: &StageState) -> Vec<LiveEvent> {
    let mut out = Vec::new();
    for (app, a) in &next.apps {
        let before = prev.and_then(|p| p.apps.get(app));
        for d in &a.history {
            let was = before.and_then(|b| b.deployment(d.number)).map(|b| b.status);
            if was == Some(d.status) {
                continue;
            }
            let status = match d.status {
                DeploymentStatus::InProgress => "started".to_string(),
                other => other.as_str().to_string(),
            };
            let reason = d.reason.as_deref().map(clean);
            let mut text = format!("{app} v{} {status}: {}", d.number, clean(&d.description));
            if let Some(r) = &reason {
                text.push_str(&format!(" — {}", r.lines().next().unwrap_or("")));
            }
            out.push(LiveEvent::Deployment {
                app: app.clone(),
                number: d.number,
                status: d.status,
                description: clean(&d.description),
                reason,
                text,
            });
        }
    }
    out
}

/// Tasks that appeared or changed state or health, and what is seen now.
pub fn task_events(
    prev: &HashMap<String, (Lifecycle, Health)>,
    services: &[ServiceStatus],
) -> (Vec<LiveEvent>, HashMap<String, (Lifecycle, Health)>) {
    let mut out = Vec::new();
    let mut now = HashMap::new();
    for s in services {
        for t in &s.tasks {
            let id = t.id.to_string();
            let current = (t.last_status, t.health);
            if prev.get(&id) != Some(&current) {
                let what = t.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                out.push(LiveEvent::Task {
                    app: s.app.clone(),
                    task: id.clone(),
                    release: t.release,
                    status: t.last_status,
                    health: t.health,
                    text: format!(
                        "{} task {id}{what} release {}: {} {}",
                        s.app,
                        t.release,
                        t.last_status.as_str(),
                        t.health.as_str()
                    ),
                });
            }
            now.insert(id, current);
        }
    }
    (out, now)
}

/// When each observed task started (`None`: not yet), by task id.
type TaskStarts = Arc<Mutex<HashMap<String, Option<chrono::DateTime<chrono::Utc>>>>>;

/// Send the output of the tasks of `app` that started at or after `since` (the deployment's
/// start), as it is written.
async fn follow_logs(
    runtime: Arc<dyn Runtime>,
    app: String,
    since: chrono::DateTime<chrono::Utc>,
    started: TaskStarts,
    tx: mpsc::Sender<LiveEvent>,
) {
    let query = LogQuery { task: None, since: Some(since), follow: true };
    let Ok(mut lines) = runtime.logs(&app, &query).await else { return };
    while let Some(line) = lines.recv().await {
        let task = line.task.to_string();
        let start = started.lock().unwrap_or_else(|p| p.into_inner()).get(&task).copied().flatten();
        // A task not observed yet is a new one: the old ones were running, so seen before.
        if start.is_some_and(|t| t < since) {
            continue;
        }
        let event = LiveEvent::Log { app: app.clone(), task, time: line.time, text: clean(&line.text) };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}
