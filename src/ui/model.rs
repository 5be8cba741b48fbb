//! What the dashboard shows, as view models built from the same sources the CLI reads:
//! stage files (`config`), recorded state (`StateStore`), status checks (`StatusStore`) and
//! the runtime (`observe`, `logs`). Each model is serialised as the JSON API's answer and
//! rendered as a page from the same value, so the two cannot disagree. Building a model is
//! pure; loading ([`Loaded`]) and observing do the I/O.
//!
//! No secret value reaches a model: stage files and state hold secret *references*, and
//! deployments are shown without their config snapshot (whose sensitive env values state
//! keeps), with the config hash instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::{UiError, UiResult};
use crate::cli::releases::{release_rows, ReleaseRow};
use crate::config::{self, Digest, Project, RuntimeKind, Stage};
use crate::pipeline::view::PipelineView;
use crate::pipeline::{open_records, CheckState, StatusLog, StatusStore};
use crate::runtime::local::LocalRuntime;
use crate::runtime::{Health, Lifecycle, LogQuery, Runtime, ServiceState, ServiceStatus, TaskKind};
use crate::state::{open_store, Deployment, DeploymentStatus, LockInfo, StageState};

/// How long the dashboard waits for a runtime to answer before it shows the page without it.
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(5);
/// How many log lines an app's page shows.
pub const LOG_LINES: usize = 50;
/// How many deployments an app's page and its history answer list, newest first.
pub const HISTORY_LIMIT: usize = 50;

/// The project's stages as loaded from disk, in pipeline order, with their recorded state.
pub struct Loaded {
    pub project: Project,
    /// Every stage: those of the pipeline's steps in step order first, then the others by name.
    pub stages: Vec<Stage>,
    /// Recorded state by stage name (absent: never applied).
    pub recorded: BTreeMap<String, StageState>,
    /// Who holds each stage's lock (a commit in progress), by stage name.
    pub locks: BTreeMap<String, LockInfo>,
}

impl Loaded {
    /// Read every stage file and its recorded state. Blocking I/O.
    pub fn read(project: &Project) -> UiResult<Loaded> {
        let mut stages = config::load_stages(project)?;
        let order = |s: &Stage| crate::pipeline::step_of(project, &s.name).unwrap_or(usize::MAX);
        stages.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| a.name.cmp(&b.name)));
        let store = open_store(project)?;
        let mut recorded = BTreeMap::new();
        let mut locks = BTreeMap::new();
        for stage in &stages {
            if let Some(state) = store.read(&stage.name)? {
                recorded.insert(stage.name.clone(), state);
            }
            if let Ok(Some(lock)) = store.lock_holder(&stage.name) {
                locks.insert(stage.name.clone(), lock);
            }
        }
        Ok(Loaded { project: project.clone(), stages, recorded, locks })
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> UiResult<&Stage> {
        self.stages.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
            UiError::not_found(format!("the project has no stage `{name}`"))
                .with_hint(format!("stages: {}", names.join(", ")))
        })
    }
}

/// The runtime a stage runs on, as the CLI builds it.
pub fn runtime_of(root: &std::path::Path, stage: &Stage) -> Arc<dyn Runtime> {
    match &stage.runtime {
        config::Runtime::Local { .. } => Arc::new(LocalRuntime::new(root, &stage.name)),
        config::Runtime::Ecs(_) => crate::cli::stage::reading_runtime(root, stage),
    }
}

/// What the runtime says about a stage's apps, or why it could not say. A local stage whose
/// agent is not running answers at once (every app `MISSING`), without starting one.
pub async fn observe(root: &std::path::Path, stage: &Stage) -> Result<Vec<ServiceStatus>, String> {
    let answer = match &stage.runtime {
        config::Runtime::Local { .. } => {
            let local = LocalRuntime::new(root, &stage.name);
            tokio::time::timeout(RUNTIME_TIMEOUT, async move { local.observe_if_running(&[]).await }).await
        }
        config::Runtime::Ecs(_) => {
            let (root, stage) = (root.to_path_buf(), stage.clone());
            // Building the ECS client loads the AWS configuration synchronously.
            let runtime = tokio::task::spawn_blocking(move || runtime_of(&root, &stage))
                .await
                .map_err(|e| format!("cannot reach the runtime: {e}"))?;
            tokio::time::timeout(RUNTIME_TIMEOUT, async move { runtime.observe(&[]).await }).await
        }
    };
    match answer {
        Ok(Ok(services)) => Ok(services),
        Ok(Err(e)) => Err(super::error::clean(&e.to_string())),
        Err(_) => Err(format!("the runtime did not answer within {} s", RUNTIME_TIMEOUT.as_secs())),
    }
}

/// The runtime's view of every stage, observed at once.
pub async fn observe_all(loaded: &Loaded) -> BTreeMap<String, Result<Vec<ServiceStatus>, String>> {
    let root = &loaded.project.root;
    let answers = futures_util::future::join_all(loaded.stages.iter().map(|s| observe(root, s))).await;
    loaded.stages.iter().map(|s| s.name.clone()).zip(answers).collect()
}

/// An app's health in one word: `healthy` when every running service task is, `unhealthy`
/// when one is not, `starting` while none runs yet, `stopped` at scale 0, `not running`
/// when the runtime does not know the app.
pub fn health_word(s: &ServiceStatus) -> &'static str {
    if s.state == ServiceState::Missing {
        return "not running";
    }
    let running: Vec<_> =
        s.tasks.iter().filter(|t| t.kind == TaskKind::Service && t.last_status == Lifecycle::Running).collect();
    if running.is_empty() {
        return if s.desired == 0 { "stopped" } else { "starting" };
    }
    if running.iter().any(|t| t.health == Health::Unhealthy) {
        "unhealthy"
    } else if running.iter().all(|t| t.health == Health::Healthy) {
        "healthy"
    } else {
        "unknown"
    }
}

/// A deployment vN as the dashboard lists it: without the config snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    pub number: u64,
    pub kind: crate::state::DeploymentKind,
    pub release: u64,
    pub digest: Digest,
    pub scale: u32,
    pub description: String,
    pub config_hash: String,
    pub source: crate::state::Source,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: DeploymentStatus,
    pub reason: Option<String>,
}

impl From<&Deployment> for DeploymentView {
    fn from(d: &Deployment) -> Self {
        DeploymentView {
            number: d.number,
            kind: d.kind,
            release: d.release,
            digest: d.digest.clone(),
            scale: d.scale,
            description: d.description.clone(),
            config_hash: d.config_hash.clone(),
            source: d.source.clone(),
            started_at: d.started_at,
            finished_at: d.finished_at,
            status: d.status,
            reason: d.reason.clone(),
        }
    }
}

/// `GET /api/stages` and the overview page.
#[derive(Debug, Clone, Serialize)]
pub struct OverviewView {
    pub project: String,
    pub stages: Vec<StageSummary>,
}

/// One stage of the overview.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub name: String,
    /// The pipeline step holding it, when any.
    pub step: Option<String>,
    pub runtime: RuntimeKind,
    /// Recorded state's serial (0: never applied).
    pub serial: u64,
    /// Who holds the stage's lock: a commit in progress.
    pub locked_by: Option<String>,
    /// Why the runtime could not be asked, when it could not.
    pub runtime_error: Option<String>,
    pub apps: Vec<AppSummary>,
}

/// One app of a stage in the overview.
#[derive(Debug, Clone, Serialize)]
pub struct AppSummary {
    pub name: String,
    /// The stage file's active release and its digest.
    pub release: Option<u64>,
    pub digest: Option<Digest>,
    /// The release the last succeeded deployment runs.
    pub deployed_release: Option<u64>,
    /// `healthy`, `unhealthy`, `starting`, `stopped`, `not running`, `unknown`.
    pub health: &'static str,
    pub running: u32,
    pub desired: u32,
    pub last_deployment: Option<DeploymentView>,
}

impl OverviewView {
    /// Build from what was loaded and observed.
    pub fn build(loaded: &Loaded, observed: &BTreeMap<String, Result<Vec<ServiceStatus>, String>>) -> OverviewView {
        let stages = loaded
            .stages
            .iter()
            .map(|stage| {
                let recorded = loaded.recorded.get(&stage.name);
                let services = observed.get(&stage.name);
                let by_app: BTreeMap<&str, &ServiceStatus> = match services {
                    Some(Ok(list)) => list.iter().map(|s| (s.app.as_str(), s)).collect(),
                    _ => BTreeMap::new(),
                };
                // An app the runtime answered without is not running; without an answer, unknown.
                let unseen = if matches!(services, Some(Ok(_))) { "not running" } else { "unknown" };
                let apps = stage
                    .apps
                    .values()
                    .map(|app| {
                        let state = recorded.and_then(|r| r.apps.get(&app.name));
                        let service = by_app.get(app.name.as_str());
                        AppSummary {
                            name: app.name.clone(),
                            release: app.active,
                            digest: app.active_digest().cloned(),
                            deployed_release: state.and_then(|a| a.active.as_ref()).map(|a| a.release),
                            health: service.map_or(unseen, |s| health_word(s)),
                            running: service.map_or(0, |s| s.running),
                            desired: service.map_or(0, |s| s.desired),
                            last_deployment: state.and_then(|a| a.history.last()).map(DeploymentView::from),
                        }
                    })
                    .collect();
                StageSummary {
                    name: stage.name.clone(),
                    step: crate::pipeline::step_of(&loaded.project, &stage.name)
                        .map(|i| loaded.project.pipeline[i].name.clone()),
                    runtime: stage.runtime.kind(),
                    serial: recorded.map_or(0, |r| r.serial),
                    locked_by: loaded.locks.get(&stage.name).map(LockInfo::describe),
                    runtime_error: services.and_then(|s| s.as_ref().err().cloned()),
                    apps,
                }
            })
            .collect();
        OverviewView { project: loaded.project.name.clone(), stages }
    }
}

/// One line of a task's output, as the app page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LogLineView {
    pub task: String,
    pub time: DateTime<Utc>,
    pub text: String,
}

/// `GET /api/stages/STAGE/apps/APP` and the app page.
#[derive(Debug, Clone, Serialize)]
pub struct AppDetail {
    pub stage: String,
    pub app: String,
    pub image: String,
    pub scale: u32,
    /// The stage file's active release and its digest.
    pub release: Option<u64>,
    pub digest: Option<Digest>,
    /// `healthy`, `unhealthy`, …, as in the overview.
    pub health: &'static str,
    pub releases: Vec<ReleaseRow>,
    /// Deployments vN, newest first (at most [`HISTORY_LIMIT`]).
    pub deployments: Vec<DeploymentView>,
    /// The runtime's view: tasks with their states and health, as `ferry ps` shows them.
    pub service: Option<ServiceStatus>,
    pub runtime_error: Option<String>,
    /// The last [`LOG_LINES`] lines of the app's tasks, oldest first.
    pub logs: Vec<LogLineView>,
}

impl AppDetail {
    /// Build from the loaded stage, its recorded state and what the runtime said.
    pub fn build(
        loaded: &Loaded,
        stage: &str,
        app: &str,
        service: Result<Option<ServiceStatus>, String>,
        logs: Vec<LogLineView>,
    ) -> UiResult<AppDetail> {
        let declared = loaded.stage(stage)?;
        let app_config = declared.apps.get(app).ok_or_else(|| {
            UiError::not_found(format!("stage `{stage}` has no app `{app}`"))
                .with_hint(format!("apps: {}", declared.apps.keys().cloned().collect::<Vec<_>>().join(", ")))
        })?;
        let recorded = loaded.recorded.get(stage).and_then(|s| s.apps.get(app)).cloned().unwrap_or_default();
        let (service, runtime_error) = match service {
            Ok(s) => (s, None),
            Err(e) => (None, Some(e)),
        };
        Ok(AppDetail {
            stage: stage.to_string(),
            app: app.to_string(),
            image: app_config.image.clone(),
            scale: app_config.scale,
            release: app_config.active,
            digest: app_config.active_digest().cloned(),
            health: match (&service, &runtime_error) {
                (Some(s), _) => health_word(s),
                (None, None) => "not running",
                (None, Some(_)) => "unknown",
            },
            releases: release_rows(app_config, &recorded),
            deployments: recorded.history.iter().rev().take(HISTORY_LIMIT).map(DeploymentView::from).collect(),
            service,
            runtime_error,
            logs,
        })
    }
}

/// The last `n` lines of an app's tasks, or none when the runtime cannot say in time.
pub async fn last_log_lines(runtime: Arc<dyn Runtime>, app: &str, n: usize) -> Vec<LogLineView> {
    let query = LogQuery { task: None, since: None, follow: false };
    let collect = async {
        let mut lines = std::collections::VecDeque::with_capacity(n + 1);
        if let Ok(mut stream) = runtime.logs(app, &query).await {
            while let Some(line) = stream.recv().await {
                lines.push_back(LogLineView {
                    task: line.task.to_string(),
                    time: line.time,
                    text: super::error::clean(&line.text),
                });
                if lines.len() > n {
                    lines.pop_front();
                }
            }
        }
        lines.into_iter().collect()
    };
    tokio::time::timeout(RUNTIME_TIMEOUT, collect).await.unwrap_or_default()
}

/// `GET /api/stages/STAGE/apps/APP/history`: like `ferry history APP --json`, without the
/// config snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryView {
    pub stage: String,
    pub app: String,
    /// Every deployment vN, newest first.
    pub deployments: Vec<DeploymentView>,
}

impl HistoryView {
    /// The history of a declared app, or of one state still remembers.
    pub fn build(loaded: &Loaded, stage: &str, app: &str) -> UiResult<HistoryView> {
        let declared = loaded.stage(stage)?;
        let recorded = loaded.recorded.get(stage).and_then(|s| s.apps.get(app));
        if recorded.is_none() && !declared.apps.contains_key(app) {
            return Err(UiError::not_found(format!("stage `{stage}` has no app `{app}`, and none was ever deployed")));
        }
        let deployments =
            recorded.map(|a| a.history.iter().rev().map(DeploymentView::from).collect()).unwrap_or_default();
        Ok(HistoryView { stage: stage.into(), app: app.into(), deployments })
    }
}

/// `GET /api/pipeline` and the pipeline page: `ferry pipeline show`'s view, with the
/// required checks of each step per digest and whether each app can be promoted.
#[derive(Debug, Clone, Serialize)]
pub struct PipelinePage {
    #[serde(flatten)]
    pub pipeline: PipelineView,
    /// Per stage of every step but the last, per app: can it be promoted into the next step?
    pub promotions: Vec<PromotionView>,
}

/// The state of one required check for one digest.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub context: String,
    /// `None`: never reported.
    pub state: Option<CheckState>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// Whether an app's active release in a stage can be promoted into the next step.
#[derive(Debug, Clone, Serialize)]
pub struct PromotionView {
    pub stage: String,
    pub app: String,
    pub release: Option<u64>,
    pub digest: Option<Digest>,
    /// The step it would be promoted into.
    pub to_step: String,
    /// The required checks of that step, for this digest.
    pub checks: Vec<CheckView>,
    pub promotable: bool,
    /// Why not, or that it is already there.
    pub note: String,
}

impl PipelinePage {
    /// Build from the loaded project and the status log of every app.
    pub fn build(loaded: &Loaded, logs: &BTreeMap<String, StatusLog>) -> PipelinePage {
        let pipeline = PipelineView::build(&loaded.project, &loaded.stages, &loaded.recorded);
        let by_name: BTreeMap<&str, &Stage> = loaded.stages.iter().map(|s| (s.name.as_str(), s)).collect();
        let empty = StatusLog::default();
        let mut promotions = Vec::new();
        for pair in loaded.project.pipeline.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            for stage_name in &from.stages {
                let Some(stage) = by_name.get(stage_name.as_str()) else { continue };
                for app in stage.apps.values() {
                    let digest = app.active_digest().cloned();
                    let log = logs.get(&app.name).unwrap_or(&empty);
                    let checks = match &digest {
                        Some(d) => {
                            let latest = log.latest(d);
                            to.required_checks
                                .iter()
                                .map(|c| {
                                    let r = latest.get(c.as_str());
                                    CheckView {
                                        context: c.clone(),
                                        state: r.map(|r| r.state),
                                        description: r.and_then(|r| r.description.clone()),
                                        url: r.and_then(|r| r.url.clone()),
                                        at: r.map(|r| r.at),
                                    }
                                })
                                .collect()
                        }
                        None => Vec::new(),
                    };
                    let missing_in: Vec<&str> = to
                        .stages
                        .iter()
                        .filter(|t| by_name.get(t.as_str()).is_none_or(|s| !s.apps.contains_key(&app.name)))
                        .map(String::as_str)
                        .collect();
                    let already = to.stages.iter().all(|t| {
                        by_name
                            .get(t.as_str())
                            .and_then(|s| s.apps.get(&app.name))
                            .is_some_and(|a| a.active_digest().is_some() && a.active_digest() == digest.as_ref())
                    });
                    let unmet: Vec<String> = digest
                        .as_ref()
                        .map(|d| log.unmet(d, &to.required_checks).iter().map(ToString::to_string).collect())
                        .unwrap_or_default();
                    let (promotable, note) = if digest.is_none() {
                        (false, "no active release".to_string())
                    } else if !missing_in.is_empty() {
                        (false, format!("not declared in {}", missing_in.join(", ")))
                    } else if already {
                        (false, format!("already active in step {}", to.name))
                    } else if !unmet.is_empty() {
                        (false, unmet.join("; "))
                    } else {
                        (true, format!("ferry promote {} --from {}", app.name, stage.name))
                    };
                    promotions.push(PromotionView {
                        stage: stage.name.clone(),
                        app: app.name.clone(),
                        release: app.active,
                        digest,
                        to_step: to.name.clone(),
                        checks,
                        promotable,
                        note,
                    });
                }
            }
        }
        PipelinePage { pipeline, promotions }
    }
}

/// Every app's status log (apps of every stage), read from the project's record store.
pub fn status_logs(loaded: &Loaded) -> UiResult<BTreeMap<String, StatusLog>> {
    let store = StatusStore::new(open_records(&loaded.project)?);
    let mut logs = BTreeMap::new();
    for stage in &loaded.stages {
        for name in stage.apps.keys() {
            if !logs.contains_key(name) {
                logs.insert(name.clone(), store.log(name)?);
            }
        }
    }
    Ok(logs)
}
