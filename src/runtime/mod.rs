//! The runtime seam: what ferry needs from the place apps run, and nothing more.
//!
//! A [`Runtime`] starts, stops and reports, in the shape of the ECS service scheduler so that
//! the local runtime and the ECS runtime can sit behind the same trait:
//!
//! * a **revision** ([`RevisionSpec`] → [`RevisionId`]) is an immutable description of how to
//!   run one release of an app (an ECS task definition);
//! * a **service** is an app with a desired count, running one *primary* revision;
//! * a **rollout** ([`Runtime::deploy`] → [`RolloutId`]) moves a service to a revision: new
//!   tasks start beside the old (up to `max_surge`), the runtime itself routes traffic to new
//!   tasks only once they are healthy, then drains and stops the old ones (an ECS deployment);
//! * **observing** ([`Runtime::observe`]) is batched and cheap, so the apply engine can poll
//!   every in-flight app from one loop.
//!
//! Polling, timeouts and the decision to roll back are *not* here: they are written once,
//! above the runtimes, in the apply engine. A rollout therefore never fails on its own
//! because of time; it reports facts (task states, health, exit codes, restarts, failed task
//! counts) and the engine decides. The only exception mirrors ECS: a runtime may report a
//! rollout `FAILED` when it was superseded or rolled back.

// The conformance suite and the in-memory double are for tests only: built for the crate's
// own tests and with the `testing` feature (the integration tests' dev-dependency on the
// crate turns it on), never in the release library.
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod ecs;
pub mod live;
pub mod local;
#[cfg(any(test, feature = "testing"))]
pub mod memory;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, DeploySettings, Digest};

/// Errors a runtime reports. Variants are what a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No such app, revision, rollout or task.
    #[error("{0}")]
    NotFound(String),
    /// The request is not valid for this runtime (bad spec, unresolvable secret, port in use…).
    #[error("{0}")]
    Invalid(String),
    /// The runtime could not be reached or did not answer sensibly.
    #[error("{0}")]
    Unavailable(String),
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The result of a runtime call.
pub type RuntimeResult<T> = Result<T, RuntimeError>;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A registered revision: `<stage>-<app>:<n>` locally, a task definition ARN on ECS.
    RevisionId
);
id_type!(
    /// One rollout of a service (an ECS deployment id).
    RolloutId
);
id_type!(
    /// One task (an ECS task id).
    TaskId
);

/// How to run one release of an app. Immutable once registered; registering an identical
/// spec again returns the same [`RevisionId`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionSpec {
    /// The app's name within the stage.
    pub app: String,
    /// The release id this revision runs.
    pub release: u64,
    /// The image repository (ECR repository URI on ECS; informational locally).
    pub image: String,
    /// The image digest.
    pub digest: Digest,
    /// Command, env, secret *references*, health checks, port, cpu and memory. Secrets are
    /// resolved by the runtime when a task starts, never by the caller.
    pub config: AppConfig,
    /// Local runtime only: the folder holding the unpacked release
    /// (`.ferry/releases/<digest>/`). `None` on ECS, which pulls `image@digest` itself.
    pub local_dir: Option<PathBuf>,
}

/// What recorded state says about the revisions of a spec's app, handed to
/// [`Runtime::register_recorded`] so a runtime whose revisions outlive ferry (ECS task
/// definitions) need not search for an identical one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedRevisions {
    /// Revisions state recorded for this release, digest and config, newest first.
    pub matching: Vec<RevisionId>,
    /// Whether state records any revision of the app. When it does and none matches, ferry
    /// never registered this spec, so there is nothing to look for.
    pub any: bool,
    /// The newest of `matching` is the revision state records as serving the app now (the
    /// one a deploy returns to when it fails): it ran until now, so it may be taken as is.
    pub serving: bool,
    /// The deployment (vN) the registration is for, to label a new revision with at once.
    pub deployment: Option<u64>,
}

/// A one-off task: a release task (migration) or `ferry task run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The app whose config the task borrows.
    pub app: String,
    /// Which revision (image and config) to run; any registered one, not only the active.
    pub revision: RevisionId,
    /// Replaces the revision's command (`${PORT}` is expanded); `None` keeps it.
    pub command: Option<Vec<String>>,
    /// Added to (and overriding) the revision's env.
    pub env: BTreeMap<String, String>,
    /// What the task is for, shown in listings (`migrate`, `one-off`).
    pub name: String,
}

/// What a `logs` call asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// One task only; `None`: every task of the app.
    pub task: Option<TaskId>,
    /// Only lines written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Keep streaming new lines (and new tasks' lines) until the receiver is dropped.
    pub follow: bool,
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub task: TaskId,
    pub time: DateTime<Utc>,
    pub text: String,
}

/// A stream of log lines; it ends when the runtime has nothing more to send (or, with
/// `follow`, when the receiver is dropped).
pub type LogStream = tokio::sync::mpsc::Receiver<LogLine>;

/// Where a task is in its life, as ECS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    /// Being prepared: port, log file, secrets.
    Provisioning,
    /// Prepared, waiting to start (also while waiting out a restart backoff).
    Pending,
    /// Started; not yet healthy and still inside its grace period.
    Activating,
    /// Running.
    Running,
    /// Taken out of traffic; in-flight requests are draining.
    Deactivating,
    /// Asked to stop (SIGTERM; SIGKILL after the stop timeout).
    Stopping,
    /// Exited; resources being released.
    Deprovisioning,
    /// Gone.
    Stopped,
}

impl Lifecycle {
    /// Upper-case name, as shown by `ps`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Provisioning => "PROVISIONING",
            Lifecycle::Pending => "PENDING",
            Lifecycle::Activating => "ACTIVATING",
            Lifecycle::Running => "RUNNING",
            Lifecycle::Deactivating => "DEACTIVATING",
            Lifecycle::Stopping => "STOPPING",
            Lifecycle::Deprovisioning => "DEPROVISIONING",
            Lifecycle::Stopped => "STOPPED",
        }
    }

    /// Before RUNNING.
    pub fn is_pending(self) -> bool {
        self < Lifecycle::Running
    }
}

/// A task's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Unhealthy => "UNHEALTHY",
            Health::Unknown => "UNKNOWN",
        }
    }
}

/// Whether a task serves a service or runs once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Service,
    OneOff,
}

/// One task as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: TaskId,
    pub kind: TaskKind,
    /// For one-off tasks, what it is for.
    pub name: Option<String>,
    pub revision: RevisionId,
    pub release: u64,
    pub last_status: Lifecycle,
    /// `RUNNING` while the runtime means to keep it, `STOPPED` once it was asked to stop.
    pub desired_status: Lifecycle,
    pub health: Health,
    /// Whether the service's port currently routes requests to it.
    pub in_service: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Exit code of the last run (signal deaths have none).
    pub exit_code: Option<i32>,
    /// Why it stopped (or last restarted).
    pub stopped_reason: Option<String>,
    /// How often the runtime restarted it after a crash or failed health.
    pub restarts: u32,
    /// Output of the last health check, for failure reports.
    pub last_check: Option<String>,
    /// Whether the runtime checks the task's health at all. A task without a check shows
    /// health UNKNOWN, as on ECS, and counts once it runs ([`TaskStatus::is_ready`]).
    #[serde(default = "checked_by_default")]
    pub has_health_check: bool,
    /// Local runtime: the task's own port.
    pub port: Option<u16>,
    /// Local runtime: the process id while it runs.
    pub pid: Option<u32>,
}

fn checked_by_default() -> bool {
    true
}

impl TaskStatus {
    /// Whether the task counts toward its rollout: RUNNING and HEALTHY, or RUNNING with no
    /// health check at all (the local agent reports such a task RUNNING once it is still
    /// running at the end of its grace period).
    pub fn is_ready(&self) -> bool {
        self.last_status == Lifecycle::Running
            && (self.health == Health::Healthy || !self.has_health_check && self.health == Health::Unknown)
    }
}

/// ECS's rollout states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::InProgress => "IN_PROGRESS",
            RolloutState::Completed => "COMPLETED",
            RolloutState::Failed => "FAILED",
        }
    }
}

/// One rollout as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub id: RolloutId,
    pub revision: RevisionId,
    pub release: u64,
    /// Whether it is the service's current (primary) rollout.
    pub primary: bool,
    pub state: RolloutState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    pub desired: u32,
    /// Tasks of this revision that are RUNNING.
    pub running: u32,
    /// Tasks of this revision that are not yet RUNNING.
    pub pending: u32,
    /// Tasks of this revision that are ready: RUNNING and HEALTHY, or RUNNING without a
    /// health check ([`TaskStatus::is_ready`]).
    pub healthy: u32,
    /// Tasks of this revision that stopped or restarted before ever turning healthy.
    pub failed_tasks: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where a deployment the runtime itself runs in stages stands (ECS blue/green, linear,
    /// canary, bake times, lifecycle hooks); `None` for a plain rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<DeploymentStage>,
}

/// A stage of a deployment the runtime runs itself, for progress lines and the watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStage {
    /// In words: `production traffic 20% on the new tasks`, `bake time, 3m left`, `paused at
    /// post_test_traffic_shift: release with …`.
    pub text: String,
    /// The new tasks run and the runtime now decides (traffic shifts, bake time, a hook):
    /// the deploy timeout, which bounds how long new tasks take to turn healthy, is over.
    pub tasks_started: bool,
}

/// A service's overall status, as ECS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceState {
    Active,
    /// Being removed.
    Draining,
    /// Not known to the runtime.
    Missing,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Active => "ACTIVE",
            ServiceState::Draining => "DRAINING",
            ServiceState::Missing => "MISSING",
        }
    }
}

/// Something the runtime's scheduler said about a service (an ECS service event: "has
/// started 2 tasks", "is unable to place a task", "has reached a steady state").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub id: String,
    pub time: DateTime<Utc>,
    pub message: String,
}

/// One app as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub app: String,
    pub state: ServiceState,
    /// The primary revision, when there is one.
    pub revision: Option<RevisionId>,
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
    /// The app's stable port, when it has one.
    pub port: Option<u16>,
    /// Newest first.
    pub rollouts: Vec<RolloutStatus>,
    /// Current and recently stopped tasks, service and one-off.
    pub tasks: Vec<TaskStatus>,
    /// The scheduler's recent events, newest first (ECS keeps the last 100; the local
    /// runtime has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ServiceEvent>,
}

impl ServiceStatus {
    /// The status of an app the runtime does not know.
    pub fn missing(app: &str) -> Self {
        ServiceStatus {
            app: app.to_string(),
            state: ServiceState::Missing,
            revision: None,
            desired: 0,
            running: 0,
            pending: 0,
            port: None,
            rollouts: Vec::new(),
            tasks: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The primary rollout.
    pub fn primary(&self) -> Option<&RolloutStatus> {
        self.rollouts.iter().find(|r| r.primary)
    }

    /// A rollout by id.
    pub fn rollout(&self, id: &RolloutId) -> Option<&RolloutStatus> {
        self.rollouts.iter().find(|r| &r.id == id)
    }

    /// A task by id.
    pub fn task(&self, id: &TaskId) -> Option<&TaskStatus> {
        self.tasks.iter().find(|t| &t.id == id)
    }
}

/// The seam between ferry and the place apps run. Every method addresses one stage: a
/// runtime value is built for a stage (its region and cluster, or its local agent).
///
/// Implementations must be cheap to call repeatedly: the apply engine polls [`observe`]
/// for all in-flight apps at once.
///
/// [`observe`]: Runtime::observe
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Whether a task that crashes or fails its checks is restarted in place (the local
    /// agent, with backoff) rather than stopped for good and replaced by a new task (ECS).
    /// The engine tolerates a few in-place restarts during a rollout, but fails it at the
    /// first new task that stops where a stop is final.
    fn restarts_in_place(&self) -> bool;

    /// Services recorded state says ferry adopted (`ferry import`), by app: they keep their
    /// own names. Told once, before any other call; runtimes without such names ignore it.
    fn adopt(&self, _adopted: &std::collections::BTreeMap<String, crate::state::AdoptedService>) {}

    /// Register how to run a release (ECS: RegisterTaskDefinition). Registering an
    /// identical spec again returns the existing revision.
    async fn register_revision(&self, spec: &RevisionSpec) -> RuntimeResult<RevisionId>;

    /// [`register_revision`](Runtime::register_revision), told what recorded state knows of
    /// the app's revisions. By default that is ignored; ECS reuses a recorded task
    /// definition without searching the family, and registers a spec state never saw
    /// without looking for it first.
    async fn register_recorded(&self, spec: &RevisionSpec, _recorded: &RecordedRevisions) -> RuntimeResult<RevisionId> {
        self.register_revision(spec).await
    }

    /// Whether [`observe`](Runtime::observe) is cheap enough to call before each deploy, to
    /// learn which tasks and events predate it (the local agent). Where it is a metered API
    /// (ECS), the engine skips that look and tells a rollout's own tasks and events from
    /// earlier ones by the rollout's start time instead.
    fn observe_is_cheap(&self) -> bool {
        true
    }

    /// Move `app` to `revision` with `desired_count` tasks (ECS: CreateService or
    /// UpdateService). Creates the service when missing. Returns at once; the rollout
    /// proceeds in the runtime and is watched with [`Runtime::observe`]. A rollout still in
    /// progress is superseded (reported FAILED) by a new one.
    async fn deploy(
        &self,
        app: &str,
        revision: &RevisionId,
        desired_count: u32,
        settings: &DeploySettings,
    ) -> RuntimeResult<RolloutId>;

    /// Note which deployment (vN in the stage's history) a rollout started by [`deploy`]
    /// records as, where the runtime can keep it (ECS: the `ferry:deployment` tag on the task
    /// definition, given at registration when it is new). Best effort for the caller: the deployment is
    /// recorded in state either way.
    ///
    /// [`deploy`]: Runtime::deploy
    async fn label_deployment(&self, _app: &str, _revision: &RevisionId, _deployment: u64) -> RuntimeResult<()> {
        Ok(())
    }

    /// The status of `apps` (empty: every app of the stage), in one batched call. Unknown
    /// apps come back as [`ServiceState::Missing`].
    async fn observe(&self, apps: &[String]) -> RuntimeResult<Vec<ServiceStatus>>;

    /// [`observe`](Self::observe) for a watcher: the status of `apps` once it may differ
    /// from what this method answered last time for the same `apps`, or after `within`. A
    /// runtime that cannot tell when its state changes waits `within`, then observes (this
    /// default); the local agent answers as soon as something changed, and leaves out tasks
    /// that stopped before an app's current rollout began.
    async fn observe_changes(&self, apps: &[String], within: Duration) -> RuntimeResult<Vec<ServiceStatus>> {
        tokio::time::sleep(within).await;
        self.observe(apps).await
    }

    /// Abandon the current rollout and return `app` to `to_revision` (ECS:
    /// StopServiceDeployment with ROLLBACK, or an update back). Tasks of `to_revision` that
    /// are still serving keep serving; the abandoned rollout's tasks are stopped and never
    /// receive traffic they did not already have.
    async fn roll_back(&self, app: &str, to_revision: &RevisionId) -> RuntimeResult<RolloutId>;

    /// Change the desired count of `app` without changing its revision.
    async fn scale(&self, app: &str, desired_count: u32) -> RuntimeResult<()>;

    /// Hand `app`'s count to autoscaling within `range` (`None`: take it back, the count
    /// is the deploy's again). Only runtimes with an autoscaler take a range.
    async fn autoscale(&self, app: &str, range: Option<&crate::config::Autoscaling>) -> RuntimeResult<()> {
        match range {
            None => Ok(()),
            Some(_) => Err(RuntimeError::Invalid(format!("app {app}: this runtime has no autoscaling"))),
        }
    }

    /// Stop every task of `app` (draining first) and forget the service.
    async fn remove(&self, app: &str) -> RuntimeResult<()>;

    /// Start a one-off task; watch it with [`Runtime::observe`] (or
    /// [`crate::apply::task::watch_task`]).
    async fn run_task(&self, spec: &TaskSpec) -> RuntimeResult<TaskId>;

    /// Stop a task now (SIGTERM, then SIGKILL after the app's stop timeout); used for
    /// release tasks that overran their timeout.
    async fn stop_task(&self, app: &str, task: &TaskId) -> RuntimeResult<()>;

    /// The output of `app`'s tasks (or one task).
    async fn logs(&self, app: &str, query: &LogQuery) -> RuntimeResult<LogStream>;

    /// What runs for each of `recorded` (`plan --refresh`), in the same order: presence,
    /// revision, desired count and how the revision differs from the recorded one. By
    /// default from [`observe`](Runtime::observe), comparing revision ids.
    async fn live(&self, recorded: &[live::RecordedService]) -> RuntimeResult<Vec<live::LiveService>> {
        let apps: Vec<String> = recorded.iter().map(|r| r.spec.app.clone()).collect();
        Ok(live::by_revision_id(recorded, &self.observe(&apps).await?))
    }
}
