//! A strict in-memory [`Runtime`] for tests: the engine's double, and the reference the
//! runtime conformance suite ([`super::conformance`]) is checked against first.
//!
//! *Strict*: it refuses what a real runtime refuses, with the same error kinds — a revision
//! it never registered, or one of another app ([`RuntimeError::NotFound`]), an app it does
//! not run for `scale` and `roll_back`, a task it never started. *Scripted*: each release of
//! an app (and each one-off task, by name) follows a [`Script`]: how long a task takes to
//! start, whether and when it turns healthy, whether it exits (a crash, or a service task
//! that stops), what it writes.
//!
//! Time is *logical*: the world moves one step on each observation ([`Runtime::observe`],
//! [`Runtime::observe_changes`]), so a test's outcome never depends on how busy the machine
//! is. Only `deploy.timeout` and release task timeouts, which the engine measures on its own
//! clock, take real (short) time. Why not `tokio::time::pause`: it needs tokio's
//! `test-util` feature, and turning a tokio feature on rebuilds every crate above tokio (the
//! whole AWS SDK) for the test profile; logical steps give the same determinism for free.
//!
//! It models the ECS scheduler, not the local agent: a task that exits is stopped for good
//! and replaced ([`Runtime::restarts_in_place`] is false), a rollout completes once the
//! primary revision has `desired` ready tasks, and then the other revisions' tasks stop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;

use super::{
    Health, Lifecycle, LogLine, LogQuery, LogStream, RevisionId, RevisionSpec, RolloutId, RolloutState, RolloutStatus,
    Runtime, RuntimeError, RuntimeResult, ServiceState, ServiceStatus, TaskId, TaskKind, TaskSpec, TaskStatus,
};
use crate::config::DeploySettings;

/// How the tasks of one release (or one named one-off task) behave, in observation steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Steps from the task's creation until it is RUNNING (a slow start when large).
    pub start_steps: u32,
    /// Steps of running until its health check passes; `None`: it never does (UNHEALTHY).
    /// Ignored for an app without a health check (its tasks count once RUNNING).
    pub healthy_after: Option<u32>,
    /// After this many steps of running the task exits with this code: a crash when
    /// non-zero; a one-off task's end.
    pub exit: Option<(u32, i32)>,
    /// Lines the task writes once it runs.
    pub output: Vec<String>,
}

impl Script {
    /// A service task that starts at the next step and is healthy one step later.
    pub fn healthy() -> Self {
        Script { start_steps: 1, healthy_after: Some(1), exit: None, output: Vec::new() }
    }

    /// A service task that runs but never passes its health check.
    pub fn never_healthy() -> Self {
        Script { healthy_after: None, ..Script::healthy() }
    }

    /// A task that exits with `code` one step after it starts, before turning healthy.
    pub fn exits(code: i32) -> Self {
        Script { healthy_after: None, exit: Some((1, code)), ..Script::healthy() }
    }

    /// A one-off task that writes `output` and exits with `code` after `steps` of running.
    pub fn one_off(steps: u32, code: i32, output: &[&str]) -> Self {
        Script {
            start_steps: 1,
            healthy_after: None,
            exit: Some((steps, code)),
            output: output.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Slow start: `steps` before RUNNING.
    pub fn starting_after(self, steps: u32) -> Self {
        Script { start_steps: steps, ..self }
    }
}

#[derive(Debug)]
struct Task {
    status: TaskStatus,
    app: String,
    script: Script,
    /// Steps since creation, and since it started running.
    age: u32,
    running_for: u32,
    /// Whether it was ever ready (a stop before that counts as a failed task).
    was_ready: bool,
    /// The rollout that started it (service tasks).
    rollout: Option<RolloutId>,
    /// The command it was started with (one-off tasks: the override), for tests to read.
    command: Vec<String>,
}

#[derive(Debug)]
struct Service {
    desired: u32,
    /// Newest first; the first is primary.
    rollouts: Vec<RolloutStatus>,
}

#[derive(Debug, Default)]
struct World {
    /// Per app, in registration order; ids are `<app>:<n>`.
    revisions: BTreeMap<String, Vec<(RevisionId, RevisionSpec)>>,
    services: BTreeMap<String, Service>,
    tasks: Vec<Task>,
    logs: Vec<(String, LogLine)>,
    /// Per (app, release).
    scripts: BTreeMap<(String, u64), Script>,
    /// Per (app, one-off task name).
    task_scripts: BTreeMap<(String, String), Script>,
    next_id: u64,
    steps: u64,
    /// The most services seen with an IN_PROGRESS primary rollout at one time.
    most_in_progress: usize,
    deploys: Vec<(String, RevisionId)>,
}

/// The in-memory runtime; clones share one world.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRuntime {
    world: Arc<Mutex<World>>,
}

impl InMemoryRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tasks of `app`'s release `release` behave as `script` (default [`Script::healthy`]).
    pub fn script_release(&self, app: &str, release: u64, script: Script) {
        self.world().scripts.insert((app.to_string(), release), script);
    }

    /// One-off tasks of `app` named `name` behave as `script` (default: exit 0 after a step).
    pub fn script_task(&self, app: &str, name: &str, script: Script) {
        self.world().task_scripts.insert((app.to_string(), name.to_string()), script);
    }

    /// The most apps that were rolling out at one time.
    pub fn most_in_progress(&self) -> usize {
        self.world().most_in_progress
    }

    /// Every `deploy` and `roll_back` so far: app and revision, in order.
    pub fn deploys(&self) -> Vec<(String, RevisionId)> {
        self.world().deploys.clone()
    }

    /// The command a task was started with.
    pub fn task_command(&self, task: &TaskId) -> Option<Vec<String>> {
        self.world().tasks.iter().find(|t| &t.status.id == task).map(|t| t.command.clone())
    }

    /// How many observation steps have passed.
    pub fn steps(&self) -> u64 {
        self.world().steps
    }
}

impl World {
    fn revision(&self, app: &str, id: &RevisionId) -> RuntimeResult<&RevisionSpec> {
        self.revisions
            .get(app)
            .and_then(|rs| rs.iter().find(|(r, _)| r == id))
            .map(|(_, spec)| spec)
            .ok_or_else(|| RuntimeError::NotFound(format!("app {app} has no revision {id}")))
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:012x}", self.next_id)
    }

    fn start_rollout(&mut self, app: &str, revision: &RevisionId, desired: u32, superseded: &str) -> RolloutId {
        let release = self.revision(app, revision).map(|s| s.release).unwrap_or(0);
        let id = RolloutId(self.id("rollout-"));
        let now = Utc::now();
        let service = self.services.entry(app.to_string()).or_insert(Service { desired, rollouts: Vec::new() });
        service.desired = desired;
        for r in &mut service.rollouts {
            r.primary = false;
            if r.state == RolloutState::InProgress {
                r.state = RolloutState::Failed;
                r.reason = Some(superseded.to_string());
                r.updated_at = now;
            }
        }
        service.rollouts.insert(
            0,
            RolloutStatus {
                id: id.clone(),
                revision: revision.clone(),
                release,
                primary: true,
                state: RolloutState::InProgress,
                reason: None,
                desired,
                running: 0,
                pending: 0,
                healthy: 0,
                failed_tasks: 0,
                created_at: now,
                updated_at: now,
                stage: None,
            },
        );
        self.deploys.push((app.to_string(), revision.clone()));
        self.reconcile();
        id
    }

    fn new_task(&mut self, app: &str, revision: &RevisionId, kind: TaskKind, name: Option<String>) -> TaskId {
        let spec = self.revision(app, revision).expect("checked by the caller").clone();
        let script = match &name {
            Some(n) if kind == TaskKind::OneOff => self
                .task_scripts
                .get(&(app.to_string(), n.clone()))
                .cloned()
                .unwrap_or_else(|| Script::one_off(1, 0, &[])),
            _ => self.scripts.get(&(app.to_string(), spec.release)).cloned().unwrap_or_else(Script::healthy),
        };
        let has_health_check =
            kind == TaskKind::Service && (spec.config.health.command.is_some() || spec.config.health.path.is_some());
        let id = TaskId(self.id("task-"));
        let rollout = self.services.get(app).and_then(|s| s.rollouts.first()).map(|r| r.id.clone());
        self.tasks.push(Task {
            status: TaskStatus {
                id: id.clone(),
                kind,
                name,
                revision: revision.clone(),
                release: spec.release,
                last_status: Lifecycle::Provisioning,
                desired_status: Lifecycle::Running,
                health: Health::Unknown,
                in_service: false,
                started_at: None,
                stopped_at: None,
                exit_code: None,
                stopped_reason: None,
                restarts: 0,
                last_check: None,
                has_health_check,
                port: spec.config.port,
                pid: None,
            },
            app: app.to_string(),
            script,
            age: 0,
            running_for: 0,
            was_ready: false,
            rollout: if kind == TaskKind::Service { rollout } else { None },
            command: spec.config.command.clone(),
        });
        id
    }

    fn stop(task: &mut Task, reason: &str) {
        if task.status.desired_status != Lifecycle::Stopped {
            task.status.desired_status = Lifecycle::Stopped;
            task.status.stopped_reason = Some(reason.to_string());
        }
    }

    /// One step of time: tasks start, check, exit and stop as scripted; then the scheduler
    /// reconciles.
    fn step(&mut self) {
        self.steps += 1;
        let now = Utc::now();
        let mut written = Vec::new();
        let mut failed: Vec<RolloutId> = Vec::new();
        for t in self.tasks.iter_mut().filter(|t| t.status.last_status != Lifecycle::Stopped) {
            t.age += 1;
            if t.status.desired_status == Lifecycle::Stopped {
                t.status.last_status = Lifecycle::Stopped;
                t.status.stopped_at = Some(now);
                t.status.in_service = false;
                if !t.was_ready {
                    failed.extend(t.rollout.clone());
                }
                continue;
            }
            if t.status.last_status.is_pending() {
                if t.age >= t.script.start_steps {
                    t.status.last_status = Lifecycle::Running;
                    t.status.started_at = Some(now);
                    for line in &t.script.output {
                        written.push((
                            t.app.clone(),
                            LogLine { task: t.status.id.clone(), time: now, text: line.clone() },
                        ));
                    }
                } else {
                    t.status.last_status = Lifecycle::Pending;
                }
                continue;
            }
            t.running_for += 1;
            if t.status.has_health_check {
                let healthy = t.script.healthy_after.is_some_and(|n| t.running_for >= n);
                t.status.health = if healthy { Health::Healthy } else { Health::Unhealthy };
                t.status.last_check = Some(if healthy { "ok".into() } else { "check failed (scripted)".into() });
            }
            if t.status.is_ready() {
                t.was_ready = true;
            }
            if let Some((after, code)) = t.script.exit {
                if t.running_for >= after {
                    t.status.last_status = Lifecycle::Stopped;
                    t.status.desired_status = Lifecycle::Stopped;
                    t.status.stopped_at = Some(now);
                    t.status.exit_code = Some(code);
                    t.status.in_service = false;
                    t.status.stopped_reason = Some("Essential container in task exited".into());
                    if !t.was_ready {
                        failed.extend(t.rollout.clone());
                    }
                }
            }
        }
        for r in failed {
            for s in self.services.values_mut() {
                if let Some(rollout) = s.rollouts.iter_mut().find(|x| x.id == r) {
                    rollout.failed_tasks += 1;
                }
            }
        }
        self.logs.extend(written);
        self.reconcile();
    }

    /// The scheduler: the primary revision gets `desired` live tasks; once they are all
    /// ready the rollout completes and other revisions' tasks stop.
    fn reconcile(&mut self) {
        let now = Utc::now();
        let apps: Vec<String> = self.services.keys().cloned().collect();
        for app in apps {
            let (revision, desired) = {
                let s = &self.services[&app];
                (s.rollouts[0].revision.clone(), s.desired)
            };
            let live = |t: &Task| {
                t.app == app
                    && t.status.kind == TaskKind::Service
                    && t.status.revision == revision
                    && t.status.desired_status == Lifecycle::Running
            };
            let count = self.tasks.iter().filter(|t| live(t)).count() as u32;
            for _ in count..desired {
                self.new_task(&app, &revision, TaskKind::Service, None);
            }
            if count > desired {
                let extra = (count - desired) as usize;
                for t in self.tasks.iter_mut().rev().filter(|t| live(t)).take(extra) {
                    Self::stop(t, "scaled in");
                }
            }
            let ready = self.tasks.iter().filter(|t| live(t) && t.status.is_ready()).count() as u32;
            let service = self.services.get_mut(&app).expect("service");
            let primary = &mut service.rollouts[0];
            if primary.state == RolloutState::InProgress && ready >= desired {
                primary.state = RolloutState::Completed;
                primary.updated_at = now;
            }
            let completed = primary.state == RolloutState::Completed;
            for t in self.tasks.iter_mut().filter(|t| t.app == app && t.status.kind == TaskKind::Service) {
                if completed && t.status.revision != revision {
                    Self::stop(t, "replaced by a newer rollout");
                }
                t.status.in_service = t.status.is_ready() && t.status.desired_status == Lifecycle::Running;
            }
        }
        let in_progress = self
            .services
            .values()
            .filter(|s| s.rollouts.first().is_some_and(|r| r.state == RolloutState::InProgress))
            .count();
        self.most_in_progress = self.most_in_progress.max(in_progress);
    }

    fn status(&self, app: &str) -> ServiceStatus {
        let tasks: Vec<TaskStatus> = self.tasks.iter().filter(|t| t.app == app).map(|t| t.status.clone()).collect();
        let Some(service) = self.services.get(app) else {
            // One-off tasks need no service: they are observed all the same (as on ECS).
            let tasks = tasks.into_iter().filter(|t| t.kind == TaskKind::OneOff).collect();
            return ServiceStatus { tasks, ..ServiceStatus::missing(app) };
        };
        let serving = |t: &&TaskStatus| t.kind == TaskKind::Service && t.last_status != Lifecycle::Stopped;
        let rollouts = service
            .rollouts
            .iter()
            .map(|r| {
                let own: Vec<&TaskStatus> = tasks.iter().filter(serving).filter(|t| t.revision == r.revision).collect();
                RolloutStatus {
                    running: own.iter().filter(|t| t.last_status == Lifecycle::Running).count() as u32,
                    pending: own.iter().filter(|t| t.last_status.is_pending()).count() as u32,
                    healthy: own.iter().filter(|t| t.is_ready()).count() as u32,
                    desired: if r.primary { service.desired } else { r.desired },
                    ..r.clone()
                }
            })
            .collect();
        let revision = service.rollouts[0].revision.clone();
        ServiceStatus {
            app: app.to_string(),
            state: ServiceState::Active,
            port: self.revision(app, &revision).ok().and_then(|s| s.config.port),
            revision: Some(revision),
            desired: service.desired,
            running: tasks.iter().filter(serving).filter(|t| t.last_status == Lifecycle::Running).count() as u32,
            pending: tasks.iter().filter(serving).filter(|t| t.last_status.is_pending()).count() as u32,
            rollouts,
            tasks,
            events: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Runtime for InMemoryRuntime {
    fn restarts_in_place(&self) -> bool {
        false
    }

    async fn register_revision(&self, spec: &RevisionSpec) -> RuntimeResult<RevisionId> {
        if spec.app.is_empty() {
            return Err(RuntimeError::Invalid("a revision needs an app name".into()));
        }
        let mut world = self.world();
        let revisions = world.revisions.entry(spec.app.clone()).or_default();
        if let Some((id, _)) = revisions.iter().find(|(_, s)| s == spec) {
            return Ok(id.clone());
        }
        let id = RevisionId(format!("{}:{}", spec.app, revisions.len() + 1));
        revisions.push((id.clone(), spec.clone()));
        Ok(id)
    }

    async fn deploy(
        &self,
        app: &str,
        revision: &RevisionId,
        desired_count: u32,
        _settings: &DeploySettings,
    ) -> RuntimeResult<RolloutId> {
        let mut world = self.world();
        world.revision(app, revision)?;
        Ok(world.start_rollout(app, revision, desired_count, "superseded by a newer rollout"))
    }

    async fn observe(&self, apps: &[String]) -> RuntimeResult<Vec<ServiceStatus>> {
        let mut world = self.world();
        world.step();
        let apps: Vec<String> = if apps.is_empty() { world.services.keys().cloned().collect() } else { apps.to_vec() };
        Ok(apps.iter().map(|a| world.status(a)).collect())
    }

    /// A step passes at every look, so there is always something new: answer at once (a
    /// moment's pause keeps a watcher's loop from spinning).
    async fn observe_changes(&self, apps: &[String], within: Duration) -> RuntimeResult<Vec<ServiceStatus>> {
        tokio::time::sleep(within.min(Duration::from_millis(2))).await;
        self.observe(apps).await
    }

    async fn roll_back(&self, app: &str, to_revision: &RevisionId) -> RuntimeResult<RolloutId> {
        let mut world = self.world();
        let desired = world
            .services
            .get(app)
            .map(|s| s.desired)
            .ok_or_else(|| RuntimeError::NotFound(format!("app {app} is not running")))?;
        world.revision(app, to_revision)?;
        Ok(world.start_rollout(app, to_revision, desired, &format!("rolled back to {to_revision}")))
    }

    async fn scale(&self, app: &str, desired_count: u32) -> RuntimeResult<()> {
        let mut world = self.world();
        let service =
            world.services.get_mut(app).ok_or_else(|| RuntimeError::NotFound(format!("app {app} is not running")))?;
        service.desired = desired_count;
        service.rollouts[0].desired = desired_count;
        world.reconcile();
        Ok(())
    }

    async fn remove(&self, app: &str) -> RuntimeResult<()> {
        let mut world = self.world();
        world.services.remove(app);
        for t in world.tasks.iter_mut().filter(|t| t.app == app && t.status.kind == TaskKind::Service) {
            World::stop(t, "the service was removed");
        }
        Ok(())
    }

    async fn run_task(&self, spec: &TaskSpec) -> RuntimeResult<TaskId> {
        let mut world = self.world();
        world.revision(&spec.app, &spec.revision)?;
        let id = world.new_task(&spec.app, &spec.revision, TaskKind::OneOff, Some(spec.name.clone()));
        if let Some(command) = &spec.command {
            world.tasks.last_mut().expect("just added").command = command.clone();
        }
        Ok(id)
    }

    async fn stop_task(&self, app: &str, task: &TaskId) -> RuntimeResult<()> {
        let mut world = self.world();
        let t = world
            .tasks
            .iter_mut()
            .find(|t| &t.status.id == task && t.app == app)
            .ok_or_else(|| RuntimeError::NotFound(format!("no task {task} of app {app}")))?;
        World::stop(t, "stopped by request");
        Ok(())
    }

    async fn logs(&self, app: &str, query: &LogQuery) -> RuntimeResult<LogStream> {
        if let Some(task) = &query.task {
            if !self.world().tasks.iter().any(|t| &t.status.id == task && t.app == app) {
                return Err(RuntimeError::NotFound(format!("no task {task} of app {app}")));
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (world, app, query) = (self.world.clone(), app.to_string(), query.clone());
        let wanted = move |(a, l): &(String, LogLine)| {
            *a == app && query.task.as_ref().is_none_or(|t| *t == l.task) && query.since.is_none_or(|s| l.time >= s)
        };
        tokio::spawn(async move {
            let mut sent = 0;
            loop {
                let lines: Vec<LogLine> = {
                    let w = world.lock().unwrap_or_else(|p| p.into_inner());
                    let all = w.logs.iter().filter(|l| wanted(l)).map(|(_, l)| l.clone()).collect::<Vec<_>>();
                    all.into_iter().skip(sent).collect()
                };
                for line in lines {
                    sent += 1;
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                if !query.follow || tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod conformance_tests {
    use super::*;
    use crate::runtime::conformance::{Behaviour, RuntimeFixture};

    /// The in-memory runtime as the suite sees it: the spec's release picks the script.
    struct Fixture(InMemoryRuntime);

    impl RuntimeFixture for Fixture {
        fn runtime(&self) -> &dyn Runtime {
            &self.0
        }
        fn spec(&self, release: u64, behaviour: Behaviour) -> RevisionSpec {
            let script = match behaviour {
                Behaviour::Healthy => Script::healthy(),
                Behaviour::NeverHealthy => Script::never_healthy(),
            };
            self.0.script_release("web", release, script);
            crate::runtime::conformance::sample_spec(release)
        }
        fn one_off(&self, revision: &RevisionId, name: &str, line: &str, exit: Option<i32>) -> TaskSpec {
            let script = match exit {
                Some(code) => Script::one_off(2, code, &[line]),
                None => Script { exit: None, ..Script::one_off(1, 0, &[line]) },
            };
            self.0.script_task("web", name, script);
            TaskSpec {
                app: "web".into(),
                revision: revision.clone(),
                command: None,
                env: Default::default(),
                name: name.into(),
            }
        }
    }

    crate::runtime_conformance!(Fixture(InMemoryRuntime::new()));
}
