//! The agent's in-memory model (revisions, services, rollouts, tasks) and the rollout
//! rules: [`State::reconcile`] decides which tasks to start and which to stop; task
//! runners ([`super::task`]) carry it out and report back into the same state.
//!
//! Rollout rules, per service, for its primary rollout to revision R with N desired tasks,
//! surge S = ⌈N·max_surge⌉ (at least 1 when min_healthy is 100%, as ECS requires):
//! * start tasks of R while fewer than N exist and the service has fewer than N+S tasks
//!   (draining and stopping ones included);
//! * when all N new tasks fit beside the old (S ≥ N, the default), traffic switches at once:
//!   the old revision serves until N new tasks are healthy, then the new one serves and the
//!   old tasks drain and stop — no mixed versions, no request to an unready task;
//! * otherwise (S < N) it rolls like ECS: healthy new tasks join traffic as they come, and old
//!   tasks drain as enough new ones are healthy, never below ⌈N·min_healthy⌉ serving;
//! * a rollout is COMPLETED once N tasks of R are healthy and every other task is stopped.
//!
//! Time limits and failure decisions are the apply engine's, not this module's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::protocol::Driver;
use crate::config::{DeploySettings, LocalDriver};
use crate::runtime::{
    Health, Lifecycle, RevisionId, RevisionSpec, RolloutId, RolloutState, RolloutStatus, RuntimeError, RuntimeResult,
    ServiceState, ServiceStatus, TaskId, TaskKind, TaskSpec, TaskStatus,
};

/// `(stage, app)`.
pub type AppKey = (String, String);

/// How many stopped tasks of an app are kept for `ps` and failure reports.
const KEEP_STOPPED: usize = 10;

/// A registered revision.
#[derive(Debug, Clone)]
pub struct Revision {
    pub id: RevisionId,
    pub spec: RevisionSpec,
    /// Values of `env:` secrets, resolved by the client that registered it.
    pub secrets: BTreeMap<String, String>,
    /// How its tasks run.
    pub driver: LocalDriver,
    /// Docker: `HOST/REPO@DIGEST`.
    pub image_ref: Option<String>,
    /// A hash of what its tasks run (spec and image, no secret value): the label that lets a
    /// restarted agent take over a container of the same revision.
    pub key: String,
}

/// One rollout.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub id: RolloutId,
    pub revision: RevisionId,
    pub release: u64,
    pub settings: DeploySettings,
    pub state: RolloutState,
    pub reason: Option<String>,
    /// Whether traffic goes to this revision's healthy tasks.
    pub switched: bool,
    pub failed_tasks: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The desired count it was started with, restored when a later rollout is rolled back
    /// to it.
    pub desired: u32,
    /// Pid of the ferry that started it and watches it (see [`State::roll_back_orphans`]).
    pub owner: Option<u32>,
}

/// An app with a desired count.
#[derive(Debug)]
pub struct Service {
    pub desired: u32,
    /// Oldest first; the last is the primary.
    pub rollouts: Vec<Rollout>,
    pub removing: bool,
    /// Proxy listeners by port; more than one only while a rollout changes the port.
    pub listeners: BTreeMap<u16, JoinHandle<()>>,
    /// Round-robin position of the proxy.
    pub next_backend: usize,
}

impl Service {
    pub fn primary(&self) -> Option<&Rollout> {
        self.rollouts.last()
    }
}

/// Why and how a task is to stop.
#[derive(Debug, Clone)]
pub struct StopRequest {
    pub reason: String,
    /// Wait for in-flight requests first (service tasks being replaced or scaled in).
    pub drain: bool,
}

/// One task.
#[derive(Debug)]
pub struct Task {
    pub id: TaskId,
    pub stage: String,
    pub app: String,
    pub kind: TaskKind,
    pub name: Option<String>,
    pub revision: RevisionId,
    pub release: u64,
    /// One-off tasks: the command and extra env.
    pub one_off: Option<TaskSpec>,
    pub lifecycle: Lifecycle,
    pub health: Health,
    /// Whether its revision gives it any health check (`health::has_checks`).
    pub has_health_check: bool,
    pub ever_healthy: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub stopped_reason: Option<String>,
    pub restarts: u32,
    pub last_check: Option<String>,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub stop: Option<StopRequest>,
    /// Requests the proxy is relaying to this task now.
    pub inflight: Arc<AtomicUsize>,
    /// Wakes the task's runner when `stop` is set.
    pub wake: Arc<Notify>,
    /// Creation order, for choosing which tasks to stop first.
    pub seq: u64,
}

impl Task {
    /// Whether the proxy may send it requests: RUNNING, HEALTHY, not asked to stop, and of
    /// a revision that has traffic.
    pub fn routable(&self, service: &Service) -> bool {
        if self.kind != TaskKind::Service
            || self.lifecycle != Lifecycle::Running
            || self.health != Health::Healthy
            || self.stop.is_some()
        {
            return false;
        }
        match service.primary() {
            Some(p) if p.revision == self.revision => p.switched,
            _ => true,
        }
    }

    fn is_live(&self) -> bool {
        self.lifecycle != Lifecycle::Stopped
    }

    /// Whether it counts toward its rollout ([`TaskStatus::is_ready`]).
    fn is_ready(&self) -> bool {
        self.lifecycle == Lifecycle::Running
            && (self.health == Health::Healthy || !self.has_health_check && self.health == Health::Unknown)
    }

    fn status(&self, service: Option<&Service>) -> TaskStatus {
        TaskStatus {
            id: self.id.clone(),
            kind: self.kind,
            name: self.name.clone(),
            revision: self.revision.clone(),
            release: self.release,
            last_status: self.lifecycle,
            desired_status: if self.stop.is_some() || self.kind == TaskKind::OneOff && !self.is_live() {
                Lifecycle::Stopped
            } else {
                Lifecycle::Running
            },
            health: self.health,
            in_service: service.is_some_and(|s| self.routable(s)),
            started_at: self.started_at,
            stopped_at: self.stopped_at,
            exit_code: self.exit_code,
            stopped_reason: self.stopped_reason.clone(),
            restarts: self.restarts,
            last_check: self.last_check.clone(),
            has_health_check: self.has_health_check,
            port: self.port,
            pid: self.pid,
        }
    }
}

/// Everything the agent knows.
#[derive(Debug, Default)]
pub struct State {
    pub revisions: BTreeMap<AppKey, Vec<Revision>>,
    pub services: BTreeMap<AppKey, Service>,
    /// Every task. Tasks are added by [`State::add_task`] and forgotten by the reconcile
    /// pass only, which keep `by_app` in step.
    pub tasks: BTreeMap<TaskId, Task>,
    /// The ids of each app's tasks, oldest first: a reconcile pass and an observation look
    /// at one app's tasks, not at every task of every app for each app.
    by_app: BTreeMap<AppKey, Vec<TaskId>>,
    seq: u64,
    /// Set by a removal: exit once nothing is left.
    pub exit_when_idle: bool,
}

fn key(stage: &str, app: &str) -> AppKey {
    (stage.to_string(), app.to_string())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

impl State {
    /// Register a revision, or return the identical one registered before. `driver`: how
    /// its tasks run (`None`: as processes).
    pub fn register(
        &mut self,
        stage: &str,
        spec: RevisionSpec,
        secrets: BTreeMap<String, String>,
        driver: Option<Driver>,
    ) -> RuntimeResult<RevisionId> {
        let driver = driver.unwrap_or(Driver {
            kind: LocalDriver::Process,
            configured: true,
            image_ref: None,
            stage_file: None,
        });
        match driver.kind {
            LocalDriver::Process => check_process_spec(&spec)?,
            LocalDriver::Docker if driver.image_ref.is_none() => {
                return Err(RuntimeError::Invalid(format!(
                    "app {}: the Docker driver needs the image's registry address",
                    spec.app
                )))
            }
            LocalDriver::Docker => {}
        }
        if !driver.configured {
            self.check_driver_switch(stage, &spec.app, &driver)?;
        }
        let revision_key = {
            let text = serde_json::to_string(&(&spec, &driver.image_ref, driver.kind)).unwrap_or_default();
            crate::config::Digest::of_bytes(text.as_bytes()).hex()[..16].to_string()
        };
        let revisions = self.revisions.entry(key(stage, &spec.app)).or_default();
        if let Some(r) = revisions.iter().find(|r| r.key == revision_key && r.spec == spec && r.secrets == secrets) {
            return Ok(r.id.clone());
        }
        let id = RevisionId(format!("{stage}-{}:{}", spec.app, revisions.len() + 1));
        revisions.push(Revision {
            id: id.clone(),
            spec,
            secrets,
            driver: driver.kind,
            image_ref: driver.image_ref,
            key: revision_key,
        });
        Ok(id)
    }

    /// Refuse to move an app whose tasks run with one driver to the other when the stage
    /// file does not say so: the default changed under it (Docker installed since), and its
    /// command may only work on the host.
    fn check_driver_switch(&self, stage: &str, app: &str, driver: &Driver) -> RuntimeResult<()> {
        let k = key(stage, app);
        let running =
            self.app_tasks(&k).into_iter().filter(|t| t.is_live()).find_map(|t| {
                self.revision(stage, app, &t.revision).ok().map(|r| r.driver).filter(|d| *d != driver.kind)
            });
        let Some(before) = running else { return Ok(()) };
        let words = |d: LocalDriver| match d {
            LocalDriver::Process => "host processes",
            LocalDriver::Docker => "Docker containers",
        };
        let file = driver.stage_file.as_deref().unwrap_or("the stage file");
        Err(RuntimeError::Invalid(format!(
            "app {app} of stage {stage} runs as {} and would now run as {}, since [runtime] names no driver and \
             {}; add `driver = \"{}\"` under [runtime] in {file} to keep it as it runs, or `driver = \"{}\"` to move it",
            words(before),
            words(driver.kind),
            if driver.kind == LocalDriver::Docker { "a Docker Engine answers" } else { "no Docker Engine answers" },
            before.as_str(),
            driver.kind.as_str(),
        )))
    }

    /// Whether the app was deployed and its rollout has settled (completed or failed): a
    /// container a killed agent left for it that no task took over by now never will be.
    pub fn settled(&self, stage: &str, app: &str) -> bool {
        self.services
            .get(&key(stage, app))
            .and_then(|s| s.primary())
            .is_some_and(|r| r.state != RolloutState::InProgress)
    }

    pub fn revision(&self, stage: &str, app: &str, id: &RevisionId) -> RuntimeResult<&Revision> {
        self.revisions
            .get(&key(stage, app))
            .and_then(|rs| rs.iter().find(|r| &r.id == id))
            .ok_or_else(|| RuntimeError::NotFound(format!("app {app} has no revision {id}")))
    }

    /// Start a rollout to `revision`; the previous one, if still in progress, fails with
    /// `superseded`. Returns the new rollout and whether the service is new (needs a proxy).
    pub fn deploy(
        &mut self,
        stage: &str,
        app: &str,
        revision: &RevisionId,
        desired: u32,
        settings: Option<DeploySettings>,
        superseded: &str,
    ) -> RuntimeResult<RolloutId> {
        let release = self.revision(stage, app, revision)?.spec.release;
        let k = key(stage, app);
        let settings = match settings {
            Some(s) => s,
            None => self.services.get(&k).and_then(|s| s.primary()).map(|r| r.settings.clone()).unwrap_or_default(),
        };
        let now = Utc::now();
        let service = self.services.entry(k.clone()).or_insert_with(|| Service {
            desired,
            rollouts: Vec::new(),
            removing: false,
            listeners: BTreeMap::new(),
            next_backend: 0,
        });
        service.removing = false;
        service.desired = desired;
        for r in &mut service.rollouts {
            if r.state == RolloutState::InProgress {
                r.state = RolloutState::Failed;
                r.reason = Some(superseded.to_string());
                r.updated_at = now;
            }
        }
        // Tasks of this revision that already serve keep serving (a rollback, or a deploy of
        // the running revision), so traffic starts switched in that case.
        let serving = self
            .tasks
            .values()
            .any(|t| (&t.stage, &t.app) == (&k.0, &k.1) && t.revision == *revision && t.routable(service));
        let id = RolloutId(format!("ro-{}", new_id()));
        service.rollouts.push(Rollout {
            id: id.clone(),
            revision: revision.clone(),
            release,
            settings,
            state: RolloutState::InProgress,
            reason: None,
            switched: serving,
            failed_tasks: 0,
            created_at: now,
            updated_at: now,
            desired,
            owner: None,
        });
        if service.rollouts.len() > 10 {
            service.rollouts.remove(0);
        }
        Ok(id)
    }

    /// Record `owner` as the process watching rollout `id`.
    pub fn set_owner(&mut self, stage: &str, app: &str, id: &RolloutId, owner: Option<u32>) {
        let rollouts = self.services.get_mut(&key(stage, app)).map(|s| s.rollouts.iter_mut());
        if let Some(r) = rollouts.into_iter().flatten().find(|r| &r.id == id) {
            r.owner = owner;
        }
    }

    /// Roll back every app whose rollout in progress was started by a ferry that is gone
    /// (`alive` says which pids still run): killed with `kill -9` or lost with its terminal
    /// in mid-commit, nobody would judge the rollout, roll it back on failure or record it,
    /// and an unhealthy release would be restarted forever while state names the old one.
    /// The app goes back to its last completed rollout (revision and count), which is what
    /// the dead commit's state says runs. A rollout with none before it (a first deploy, or
    /// the engine starting a lost app's release again on a new agent as its rollback, which
    /// it does not wait for) is left to finish: the next commit settles what the dead one
    /// recorded in progress and plans that app again. Returns a line per app rolled back,
    /// for the agent's log.
    pub fn roll_back_orphans(&mut self, alive: impl Fn(u32) -> bool) -> Vec<String> {
        let orphans: Vec<(AppKey, u32, RevisionId, u32)> = self
            .services
            .iter()
            .filter_map(|(k, svc)| {
                let primary = svc.primary()?;
                let owner = primary.owner?;
                if svc.removing || primary.state != RolloutState::InProgress || alive(owner) {
                    return None;
                }
                let earlier = &svc.rollouts[..svc.rollouts.len() - 1];
                let previous = earlier.iter().rev().find(|r| r.state == RolloutState::Completed)?;
                Some((k.clone(), owner, previous.revision.clone(), previous.desired))
            })
            .collect();
        let mut notes = Vec::new();
        for ((stage, app), owner, revision, desired) in orphans {
            let reason = format!("the ferry that started its rollout (pid {owner}) is gone: rolled back to {revision}");
            if self.deploy(&stage, &app, &revision, desired, None, &reason).is_ok() {
                notes.push(format!("{stage}/{app}: {reason}"));
            }
        }
        notes
    }

    /// Create a task record (the caller spawns its runner).
    pub fn add_task(
        &mut self,
        stage: &str,
        app: &str,
        revision: &RevisionId,
        one_off: Option<TaskSpec>,
    ) -> RuntimeResult<TaskId> {
        let rev = self.revision(stage, app, revision)?;
        let release = rev.spec.release;
        let config = &rev.spec.config;
        let has_health_check =
            super::health::has_checks(&config.health, super::health::tcp_liveness(&config.health, config.port));
        self.seq += 1;
        let id = TaskId(new_id());
        self.by_app.entry(key(stage, app)).or_default().push(id.clone());
        let kind = if one_off.is_some() { TaskKind::OneOff } else { TaskKind::Service };
        self.tasks.insert(
            id.clone(),
            Task {
                id: id.clone(),
                stage: stage.into(),
                app: app.into(),
                kind,
                name: one_off.as_ref().map(|s| s.name.clone()),
                revision: revision.clone(),
                release,
                one_off,
                lifecycle: Lifecycle::Provisioning,
                health: Health::Unknown,
                has_health_check,
                ever_healthy: false,
                started_at: None,
                stopped_at: None,
                exit_code: None,
                stopped_reason: None,
                restarts: 0,
                last_check: None,
                port: None,
                pid: None,
                stop: None,
                inflight: Arc::new(AtomicUsize::new(0)),
                wake: Arc::new(Notify::new()),
                seq: self.seq,
            },
        );
        Ok(id)
    }

    /// Ask a task to stop (idempotent).
    pub fn request_stop(&mut self, id: &TaskId, reason: &str, drain: bool) {
        if let Some(t) = self.tasks.get_mut(id) {
            if t.stop.is_none() && t.is_live() {
                t.stop = Some(StopRequest { reason: reason.to_string(), drain });
                t.wake.notify_one();
            }
        }
    }

    /// Mark every app of a stage (every stage: `None`) for removal.
    pub fn remove_stage(&mut self, stage: Option<&str>) {
        for ((s, _), service) in self.services.iter_mut() {
            if stage.is_none_or(|st| st == s) {
                service.removing = true;
            }
        }
        let one_offs: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.kind == TaskKind::OneOff && stage.is_none_or(|st| st == t.stage))
            .map(|t| t.id.clone())
            .collect();
        for id in one_offs {
            self.request_stop(&id, "stage is going down", false);
        }
        self.exit_when_idle = true;
    }

    /// The tasks of app `k`, oldest first.
    fn app_tasks(&self, k: &AppKey) -> Vec<&Task> {
        self.by_app.get(k).map_or_else(Vec::new, |ids| ids.iter().filter_map(|id| self.tasks.get(id)).collect())
    }

    /// Tasks not yet stopped, in `stage` (all: `None`).
    pub fn live_tasks(&self, stage: Option<&str>) -> usize {
        self.tasks.values().filter(|t| t.is_live() && stage.is_none_or(|s| s == t.stage)).count()
    }

    /// Apply the rollout rules to every service. Returns tasks to start (records already
    /// created) and listeners of removed services to close.
    pub fn reconcile(&mut self) -> Reconciled {
        let mut out = Reconciled::default();
        let keys: Vec<AppKey> = self.services.keys().cloned().collect();
        for k in keys {
            self.reconcile_service(&k, &mut out);
        }
        self.prune();
        out
    }

    fn reconcile_service(&mut self, k: &AppKey, out: &mut Reconciled) {
        let now = Utc::now();
        let service = &self.services[k];
        // The app's live service tasks, looked up once for the whole pass over the app.
        let tasks: Vec<&Task> =
            self.app_tasks(k).into_iter().filter(|t| t.kind == TaskKind::Service && t.is_live()).collect();
        if service.removing {
            let live: Vec<TaskId> = tasks.iter().map(|t| t.id.clone()).collect();
            if live.is_empty() {
                if let Some(s) = self.services.remove(k) {
                    out.closed.extend(s.listeners.into_values());
                }
            } else {
                for id in live {
                    self.request_stop(&id, "service removed", true);
                }
            }
            return;
        }
        let Some(primary) = service.primary().cloned() else { return };
        let n = service.desired as usize;
        let active: Vec<&Task> = tasks.iter().copied().filter(|t| t.stop.is_none()).collect();
        let (new, old): (Vec<&Task>, Vec<&Task>) = active.into_iter().partition(|t| t.revision == primary.revision);
        let healthy_new = new.iter().filter(|t| t.is_ready()).count();
        let mut surge = primary.settings.max_surge.of_ceil(n as u32) as usize;
        let min_serving = primary.settings.min_healthy.of_ceil(n as u32) as usize;
        if surge == 0 && min_serving >= n {
            surge = 1;
        }
        let atomic = surge >= n || old.is_empty();
        let old_routable = old.iter().filter(|t| t.routable(service)).count();
        let switch = !primary.switched
            && (!atomic || old.is_empty() || healthy_new >= n || (healthy_new > 0 && old_routable == 0));

        let mut start = 0;
        let mut stops: Vec<(TaskId, &'static str)> = Vec::new();
        // Tasks still draining or stopping count against the surge, as on ECS: they hold
        // resources until they are gone.
        let stopping = tasks.iter().filter(|t| t.stop.is_some()).count();
        if new.len() < n {
            let room = (n + surge).saturating_sub(new.len() + old.len() + stopping);
            start = (n - new.len()).min(room);
        }
        if new.len() > n {
            let mut extra: Vec<&&Task> = new.iter().collect();
            // Stop the unhealthy first, then the youngest.
            extra.sort_by_key(|t| (t.health == Health::Healthy, std::cmp::Reverse(t.seq)));
            stops.extend(extra.iter().take(new.len() - n).map(|t| (t.id.clone(), "scaled in")));
        }
        let switched = primary.switched || switch;
        if atomic {
            if switched {
                stops.extend(old.iter().map(|t| (t.id.clone(), "replaced by a new revision")));
            }
        } else {
            // Rolling: keep enough old tasks that old + healthy new cover N.
            let keep = n.saturating_sub(healthy_new);
            let mut sorted: Vec<&&Task> = old.iter().collect();
            sorted.sort_by_key(|t| (t.routable(service), t.seq));
            let mut drop = old.len().saturating_sub(keep);
            // Out of surge room: free one slot if serving stays at or above min healthy.
            if drop == 0 && start == 0 && stopping == 0 && new.len() < n && old_routable + healthy_new > min_serving {
                drop = 1;
            }
            stops.extend(sorted.iter().take(drop).map(|t| (t.id.clone(), "replaced by a new revision")));
        }
        let others_live = tasks.iter().any(|t| t.revision != primary.revision);
        let complete = primary.state == RolloutState::InProgress
            && new.len() == n
            && healthy_new == n
            && start == 0
            && !others_live;

        let service = self.services.get_mut(k).expect("service");
        let rollout = service.rollouts.last_mut().expect("primary");
        if switch {
            rollout.switched = true;
            rollout.updated_at = now;
        }
        if complete {
            rollout.state = RolloutState::Completed;
            rollout.updated_at = now;
            // A finished port change leaves only the current port's listener.
            let port = self
                .revisions
                .get(k)
                .and_then(|rs| rs.iter().find(|r| r.id == rollout.revision))
                .and_then(|r| r.spec.config.port);
            let stale: Vec<u16> = service.listeners.keys().copied().filter(|p| Some(*p) != port).collect();
            for p in stale {
                out.closed.extend(service.listeners.remove(&p));
            }
        }
        let revision = primary.revision.clone();
        for (id, reason) in stops {
            self.request_stop(&id, reason, true);
        }
        for _ in 0..start {
            if let Ok(id) = self.add_task(&k.0, &k.1, &revision, None) {
                out.start.push(id);
            }
        }
    }

    /// Forget the oldest stopped tasks beyond [`KEEP_STOPPED`] per app.
    fn prune(&mut self) {
        let tasks = &mut self.tasks;
        for ids in self.by_app.values_mut() {
            let stopped = |tasks: &BTreeMap<TaskId, Task>, id: &TaskId| tasks.get(id).is_some_and(|t| !t.is_live());
            let mut excess = ids.iter().filter(|id| stopped(tasks, id)).count().saturating_sub(KEEP_STOPPED);
            if excess == 0 {
                continue;
            }
            // Oldest first, so the oldest stopped tasks go.
            ids.retain(|id| {
                if excess == 0 || !stopped(tasks, id) {
                    return true;
                }
                tasks.remove(id);
                excess -= 1;
                false
            });
        }
    }

    /// Count a task that stopped or restarted before ever turning healthy against the
    /// newest rollout of its revision.
    pub fn count_failed(&mut self, id: &TaskId) {
        let Some(t) = self.tasks.get(id) else { return };
        if t.kind != TaskKind::Service || t.ever_healthy {
            return;
        }
        let revision = t.revision.clone();
        if let Some(s) = self.services.get_mut(&key(&t.stage, &t.app)) {
            if let Some(r) = s.rollouts.iter_mut().rev().find(|r| r.revision == revision) {
                r.failed_tasks += 1;
                r.updated_at = Utc::now();
            }
        }
    }

    /// The status of `apps` of `stage` (every app with a service or tasks: empty). With
    /// `current`, tasks that stopped before an app's current rollout began are left out.
    pub fn observe(&self, stage: &str, apps: &[String], current: bool) -> Vec<ServiceStatus> {
        let apps: Vec<String> = if apps.is_empty() {
            let mut all: Vec<String> =
                self.services.keys().filter(|(s, _)| s == stage).map(|(_, a)| a.clone()).collect();
            all.extend(self.by_app.keys().filter(|(s, _)| s == stage).map(|(_, a)| a.clone()));
            all.sort();
            all.dedup();
            all
        } else {
            apps.to_vec()
        };
        apps.iter().map(|app| self.observe_app(stage, app, current)).collect()
    }

    fn observe_app(&self, stage: &str, app: &str, current: bool) -> ServiceStatus {
        let k = key(stage, app);
        let service = self.services.get(&k);
        let mut tasks = self.app_tasks(&k);
        tasks.reverse(); // newest first
        let Some(service) = service else {
            let mut s = ServiceStatus::missing(app);
            s.tasks = tasks.iter().map(|t| t.status(None)).collect();
            return s;
        };
        let primary = service.primary();
        if let Some(since) = primary.map(|p| p.created_at).filter(|_| current) {
            tasks.retain(|t| t.is_live() || t.stopped_at.is_none_or(|at| at >= since));
        }
        let svc_tasks = || tasks.iter().filter(|t| t.kind == TaskKind::Service && t.is_live());
        let rollouts = service
            .rollouts
            .iter()
            .rev()
            .map(|r| {
                let of_rev = || svc_tasks().filter(|t| t.revision == r.revision && t.stop.is_none());
                RolloutStatus {
                    id: r.id.clone(),
                    revision: r.revision.clone(),
                    release: r.release,
                    primary: primary.is_some_and(|p| p.id == r.id),
                    state: r.state,
                    reason: r.reason.clone(),
                    desired: if primary.is_some_and(|p| p.id == r.id) { service.desired } else { 0 },
                    running: of_rev().filter(|t| t.lifecycle == Lifecycle::Running).count() as u32,
                    pending: of_rev().filter(|t| t.lifecycle.is_pending()).count() as u32,
                    healthy: of_rev().filter(|t| t.is_ready()).count() as u32,
                    failed_tasks: r.failed_tasks,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                    stage: None,
                }
            })
            .collect();
        let port = primary.and_then(|p| self.revision(stage, app, &p.revision).ok()).and_then(|r| r.spec.config.port);
        ServiceStatus {
            app: app.to_string(),
            state: if service.removing { ServiceState::Draining } else { ServiceState::Active },
            revision: primary.map(|p| p.revision.clone()),
            desired: if service.removing { 0 } else { service.desired },
            running: svc_tasks().filter(|t| t.lifecycle == Lifecycle::Running).count() as u32,
            pending: svc_tasks().filter(|t| t.lifecycle.is_pending()).count() as u32,
            port,
            rollouts,
            tasks: tasks.iter().map(|t| t.status(Some(service))).collect(),
            events: Vec::new(),
        }
    }

    /// Pick a task for the proxy (round robin over routable tasks) and count the request
    /// as in flight; `exclude` holds tasks that already refused this request.
    pub fn pick_backend(&mut self, k: &AppKey, exclude: &[TaskId]) -> Option<(TaskId, u16, InflightGuard)> {
        let service = self.services.get(k)?;
        let candidates: Vec<&Task> =
            self.app_tasks(k).into_iter().filter(|t| !exclude.contains(&t.id) && t.routable(service)).collect();
        if candidates.is_empty() {
            return None;
        }
        let i = service.next_backend % candidates.len();
        let t = candidates[i];
        let picked = (t.id.clone(), t.port?, InflightGuard::new(t.inflight.clone()));
        self.services.get_mut(k)?.next_backend = i + 1;
        Some(picked)
    }
}

/// What a reconcile pass asks the agent to do outside the lock.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub start: Vec<TaskId>,
    pub closed: Vec<JoinHandle<()>>,
}

/// Counts one relayed request as in flight until dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InflightGuard(counter)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the process driver needs: the unpacked release and a command.
fn check_process_spec(spec: &RevisionSpec) -> RuntimeResult<()> {
    let Some(dir) = &spec.local_dir else {
        return Err(RuntimeError::Invalid(format!(
            "app {}: the local runtime needs the release's unpacked folder",
            spec.app
        )));
    };
    if !dir.is_dir() {
        return Err(RuntimeError::Invalid(format!(
            "app {}: release folder {} does not exist",
            spec.app,
            dir.display()
        )));
    }
    if spec.config.command.is_empty() {
        return Err(RuntimeError::Invalid(format!(
            "app {}: the process driver needs a command (a process has no image entrypoint); \
             set `command`, or run containers with `driver = \"docker\"`",
            spec.app
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppConfig, Digest, Percent};

    fn spec(release: u64) -> RevisionSpec {
        RevisionSpec {
            app: "web".into(),
            release,
            image: "local/web".into(),
            digest: Digest::of_bytes(&release.to_be_bytes()),
            config: AppConfig {
                cpu: 256,
                memory: 512,
                command: vec!["true".into()],
                port: None,
                env: BTreeMap::from([("V".to_string(), release.to_string())]),
                sensitive_env: Default::default(),
                secrets: Default::default(),
                health: Default::default(),
                deploy: Default::default(),
                release_tasks: Vec::new(),
                target_group: None,
            },
            local_dir: Some(std::env::temp_dir()),
        }
    }

    /// Play the runners' part: every started task turns RUNNING and HEALTHY, every stop
    /// request completes.
    fn settle(state: &mut State, started: &[TaskId]) {
        for id in started {
            let t = state.tasks.get_mut(id).unwrap();
            t.lifecycle = Lifecycle::Running;
            t.health = Health::Healthy;
        }
        for t in state.tasks.values_mut() {
            if t.stop.is_some() {
                t.lifecycle = Lifecycle::Stopped;
            }
        }
    }

    fn rollout_state(state: &State) -> (RolloutState, bool) {
        let r = state.services[&key("dev", "web")].primary().unwrap();
        (r.state, r.switched)
    }

    #[test]
    fn default_rollout_switches_all_at_once_after_every_new_task_is_healthy() {
        let mut state = State::default();
        let v1 = state.register("dev", spec(1), BTreeMap::new(), None).unwrap();
        assert_eq!(state.register("dev", spec(1), BTreeMap::new(), None).unwrap(), v1);
        state.deploy("dev", "web", &v1, 2, Some(DeploySettings::default()), "superseded").unwrap();
        let first = state.reconcile().start;
        assert_eq!(first.len(), 2);
        settle(&mut state, &first);
        state.reconcile();
        assert_eq!(rollout_state(&state), (RolloutState::Completed, true));

        let v2 = state.register("dev", spec(2), BTreeMap::new(), None).unwrap();
        state.deploy("dev", "web", &v2, 2, Some(DeploySettings::default()), "superseded").unwrap();
        let second = state.reconcile().start;
        assert_eq!(second.len(), 2, "100% surge: all new tasks beside the old");
        assert!(state.tasks.values().filter(|t| t.revision == v1).all(|t| t.stop.is_none()));
        assert_eq!(rollout_state(&state), (RolloutState::InProgress, false));
        // One new task healthy is not enough to switch.
        settle(&mut state, &second[..1]);
        state.reconcile();
        assert_eq!(rollout_state(&state), (RolloutState::InProgress, false));
        settle(&mut state, &second[1..]);
        state.reconcile();
        assert_eq!(rollout_state(&state), (RolloutState::InProgress, true));
        assert!(state.tasks.values().filter(|t| t.revision == v1).all(|t| t.stop.is_some()), "old tasks drain");
        settle(&mut state, &[]);
        state.reconcile();
        assert_eq!(rollout_state(&state), (RolloutState::Completed, true));
    }

    #[test]
    fn rollback_keeps_the_serving_revision_and_stops_the_new_tasks() {
        let mut state = State::default();
        let v1 = state.register("dev", spec(1), BTreeMap::new(), None).unwrap();
        state.deploy("dev", "web", &v1, 1, None, "superseded").unwrap();
        let first = state.reconcile().start;
        settle(&mut state, &first);
        state.reconcile();
        let v2 = state.register("dev", spec(2), BTreeMap::new(), None).unwrap();
        state.deploy("dev", "web", &v2, 1, None, "superseded").unwrap();
        let bad = state.reconcile().start;
        assert_eq!(bad.len(), 1);
        state.deploy("dev", "web", &v1, 1, None, "rolled back").unwrap();
        assert_eq!(rollout_state(&state), (RolloutState::InProgress, true), "v1 still serves: no switch needed");
        assert!(state.reconcile().start.is_empty(), "the serving task is adopted, not replaced");
        assert!(state.tasks[&bad[0]].stop.is_some());
        assert!(state.tasks[&first[0]].stop.is_none());
        settle(&mut state, &[]);
        state.reconcile();
        assert_eq!(rollout_state(&state), (RolloutState::Completed, true));
        let failed = &state.services[&key("dev", "web")].rollouts[1];
        assert_eq!((failed.state, failed.reason.as_deref()), (RolloutState::Failed, Some("rolled back")));
    }

    #[test]
    fn keeps_each_apps_newest_stopped_tasks_and_lists_them_newest_first() {
        let mut state = State::default();
        let web = state.register("dev", spec(1), BTreeMap::new(), None).unwrap();
        let api = state.register("dev", RevisionSpec { app: "api".into(), ..spec(1) }, BTreeMap::new(), None).unwrap();
        let mut ids = Vec::new();
        for _ in 0..KEEP_STOPPED + 2 {
            ids.push(state.add_task("dev", "web", &web, None).unwrap());
        }
        let api_task = state.add_task("dev", "api", &api, None).unwrap();
        for t in state.tasks.values_mut() {
            t.lifecycle = Lifecycle::Stopped;
        }
        state.reconcile();
        assert!(!state.tasks.contains_key(&ids[0]) && !state.tasks.contains_key(&ids[1]), "the oldest two go");
        assert!(state.tasks.contains_key(&api_task), "another app's tasks count apart");
        let listed: Vec<TaskId> =
            state.observe("dev", &["web".into()], false)[0].tasks.iter().map(|t| t.id.clone()).collect();
        let newest_first: Vec<TaskId> = ids[2..].iter().rev().cloned().collect();
        assert_eq!(listed, newest_first);
        let all: Vec<String> = state.observe("dev", &[], false).iter().map(|s| s.app.clone()).collect();
        assert_eq!(all, ["api", "web"], "apps with tasks only are observed too");
    }

    #[test]
    fn a_watchers_observation_leaves_out_tasks_stopped_before_the_current_rollout() {
        let mut state = State::default();
        let v1 = state.register("dev", spec(1), BTreeMap::new(), None).unwrap();
        let before = state.add_task("dev", "web", &v1, None).unwrap();
        let t = state.tasks.get_mut(&before).unwrap();
        t.lifecycle = Lifecycle::Stopped;
        t.stopped_at = Some(Utc::now() - chrono::Duration::seconds(1));
        state.deploy("dev", "web", &v1, 1, None, "superseded").unwrap();
        let new = state.reconcile().start;
        let ids = |state: &State, current: bool| -> Vec<TaskId> {
            state.observe("dev", &["web".into()], current)[0].tasks.iter().map(|t| t.id.clone()).collect()
        };
        assert_eq!(ids(&state, false), [new[0].clone(), before.clone()], "everything, newest first");
        assert_eq!(ids(&state, true), [new[0].clone()]);
        // A task of the current rollout that stopped stays: it may be why the rollout fails.
        let t = state.tasks.get_mut(&new[0]).unwrap();
        t.lifecycle = Lifecycle::Stopped;
        t.stopped_at = Some(Utc::now());
        assert_eq!(ids(&state, true), [new[0].clone()]);
    }

    #[test]
    fn small_surge_rolls_within_min_healthy() {
        let mut state = State::default();
        let settings = DeploySettings { max_surge: Percent(0), min_healthy: Percent(50), ..DeploySettings::default() };
        let v1 = state.register("dev", spec(1), BTreeMap::new(), None).unwrap();
        state.deploy("dev", "web", &v1, 2, Some(settings.clone()), "superseded").unwrap();
        let first = state.reconcile().start;
        settle(&mut state, &first);
        state.reconcile();
        let v2 = state.register("dev", spec(2), BTreeMap::new(), None).unwrap();
        state.deploy("dev", "web", &v2, 2, Some(settings), "superseded").unwrap();
        // No surge room: one old task goes first, keeping one of two serving (50%).
        assert!(state.reconcile().start.is_empty());
        let stopping = state.tasks.values().filter(|t| t.stop.is_some()).count();
        assert_eq!(stopping, 1);
        let mut guard = 0;
        while rollout_state(&state).0 != RolloutState::Completed {
            let started = state.reconcile().start;
            settle(&mut state, &started);
            let serving = state.tasks.values().filter(|t| t.routable(&state.services[&key("dev", "web")])).count();
            assert!(serving >= 1, "never below min healthy");
            guard += 1;
            assert!(guard < 20, "rollout does not converge");
        }
    }
}
