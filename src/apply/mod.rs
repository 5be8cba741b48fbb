//! The apply engine: walk a changeset's DAG against a runtime, journaling each finished
//! operation into state at once.
//!
//! * **Walk.** Every operation whose dependencies succeeded starts at once, up to
//!   `parallelism` running together (default: no limit). A failed operation skips what
//!   depends on it, transitively, and nothing else: independent apps carry on.
//! * **Watch.** Deploys and scales start in spawned steps ([`ops`]) and are then watched from
//!   one loop here, which observes every in-flight app in one call
//!   ([`Runtime::observe_changes`], beside the walk: the local agent answers as soon as
//!   something changed; other runtimes are polled, 200 ms at first, backing off to 1 s while
//!   nothing changes, a pace ECS stretches tenfold) and judges each rollout
//!   ([`rollout::judge`]): success only when ferry's rollout is COMPLETED, the planned
//!   revision is primary and its tasks are healthy; failure fast on crash loops or at
//!   `deploy.timeout`. A failed or aborted rollout is rolled back to the previous revision
//!   and recorded with a reason that holds the task's check output, exit code and last log
//!   lines.
//! * **Journal.** A deployment is written `in_progress` when its rollout starts and settled
//!   when it ends ([`journal`]); every other operation is recorded when it finishes. State
//!   is written through [`LockedStage::update`], a conditional write per entry.
//! * **Abort.** When the [`AbortSignal`] fires (Ctrl-C, SIGTERM, `ferry abort`), nothing new
//!   starts, waiting operations are skipped, release tasks are stopped, and every in-flight
//!   rollout is rolled back and recorded `aborted`.
//! * **Tasks.** One-off tasks (release tasks, `ferry task run`) are waited for by one loop,
//!   [`task::watch_task`].
//! * **Progress** goes to a [`Hook`].

pub mod abort;
pub mod hook;
pub mod journal;
pub mod ops;
pub mod rollout;
pub mod task;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use petgraph::Direction;
use tokio::task::JoinSet;

pub use abort::AbortSignal;
pub use hook::{Hook, HumanHook, JsonHook, OpOutcome, SilentHook, Step};
use ops::{OpContext, Started};
use rollout::Verdict;

use crate::plan::{Changeset, InvalidChangeset, Operation, Outcome};
use crate::runtime::{
    LogLine, LogQuery, RecordedRevisions, RevisionId, Runtime, RuntimeResult, ServiceEvent, ServiceStatus,
};
use crate::state::{BuildSource, DeploymentStatus, LockedStage, Source, StateError};

/// First poll delay of in-flight rollouts (for the local agent: how long it may hold an
/// answer while nothing changes).
const POLL_START: Duration = Duration::from_millis(200);
/// Longest poll delay, reached while nothing changes.
const POLL_MAX: Duration = Duration::from_secs(1);
/// Observe failures in a row after which in-flight rollouts are given up as failed.
const OBSERVE_RETRIES: u32 = 5;
/// How many of a failed rollout's newest scheduler events its recorded reason keeps.
const EVENTS_IN_REASON: usize = 10;
/// How long a removal may take.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a walk could not be carried out at all (as opposed to operations failing).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A journal write failed: the walk stopped there, and the state last written stays.
    #[error("cannot write state, so the commit stopped (the state last written stays as it was): {0}")]
    State(#[from] StateError),
    #[error("the changeset cannot be applied: {0}")]
    Invalid(#[from] InvalidChangeset),
}

/// A deployment recorded by the walk.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentResult {
    pub app: String,
    /// N in vN.
    pub number: u64,
    pub status: DeploymentStatus,
    pub description: String,
    pub reason: Option<String>,
}

/// What a walk did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Every operation's id and outcome, in the order they ended.
    pub operations: Vec<(String, OpOutcome)>,
    /// Deployments recorded, in the order they ended.
    pub deployments: Vec<DeploymentResult>,
    /// Why the walk was aborted, if it was.
    pub aborted: Option<String>,
}

impl ApplyReport {
    /// Whether every operation succeeded.
    pub fn succeeded(&self) -> bool {
        self.aborted.is_none() && self.operations.iter().all(|(_, o)| o.is_success())
    }
}

/// The engine and its settings.
#[derive(Clone)]
pub struct Engine {
    pub ops: OpContext,
    /// At most this many operations at once; `None`: no limit.
    pub parallelism: Option<usize>,
    /// Recorded as each deployment's source.
    pub source: Source,
    /// The sources of images built by `ferry release create --source`, by digest: recorded
    /// with each deployment of such an image.
    pub builds: BTreeMap<String, BuildSource>,
    /// Stream new tasks' output to the hook while they roll out.
    pub stream_logs: bool,
    pub abort: AbortSignal,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Waiting,
    Running,
    Done,
}

/// What a spawned step reports back.
enum Event {
    /// The operation ended (a revision id for registrations).
    Finished { outcome: OpOutcome, revision: Option<RevisionId> },
    /// A rollout started; watch it.
    Watch(Box<Started>),
}

/// The observation of the watched apps under way.
struct Observing {
    apps: Vec<String>,
    handle: tokio::task::JoinHandle<RuntimeResult<Vec<ServiceStatus>>>,
}

impl Observing {
    /// Observe `apps` once they changed or `within` is up ([`Runtime::observe_changes`]),
    /// not before `not_before`.
    fn start(runtime: Arc<dyn Runtime>, apps: Vec<String>, within: Duration, not_before: tokio::time::Instant) -> Self {
        let asked = apps.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep_until(not_before).await;
            runtime.observe_changes(&asked, within).await
        });
        Observing { apps, handle }
    }
}

/// What a progress line shows, less the clock: a change resets the poll delay.
type PhaseKey = (String, u32, u32, u32, u32);

struct Walk<'a> {
    engine: &'a Engine,
    cs: &'a Changeset,
    session: &'a mut LockedStage,
    /// State with every entry journaled so far; written by [`Walk::flush`].
    working: crate::state::StageState,
    dirty: bool,
    hook: &'a mut dyn Hook,
    nodes: Vec<Node>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    started: Vec<Option<(DateTime<Utc>, Instant)>>,
    in_progress: Vec<Option<u64>>,
    revisions: BTreeMap<String, RevisionId>,
    join: JoinSet<(usize, Event)>,
    watches: BTreeMap<usize, (Started, Option<PhaseKey>)>,
    log_tx: tokio::sync::mpsc::Sender<(String, LogLine)>,
    log_tasks: BTreeMap<usize, tokio::task::JoinHandle<()>>,
    /// Scheduler events shown per watched rollout, kept for its failure report.
    events: BTreeMap<usize, Vec<ServiceEvent>>,
    done: usize,
    report: ApplyReport,
    journal_error: Option<StateError>,
    aborting: bool,
}

impl Engine {
    /// Walk `cs`, journaling into `session`, reporting to `hook`.
    pub async fn apply(
        &self,
        cs: &Changeset,
        session: &mut LockedStage,
        hook: &mut dyn Hook,
    ) -> Result<ApplyReport, ApplyError> {
        let graph = cs.graph()?;
        cs.apply_order()?; // refuses cycles
        let n = cs.operations.len();
        let mut deps = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        for node in graph.node_indices() {
            let i = graph[node];
            deps[i] = graph.neighbors_directed(node, Direction::Incoming).map(|d| graph[d]).collect();
            dependents[i] = graph.neighbors_directed(node, Direction::Outgoing).map(|d| graph[d]).collect();
        }
        // The registry learns every digest the walk will verify, so that it can ask for
        // each repository's digests in one request as the first verification starts.
        let mut expected: BTreeMap<&str, Vec<crate::config::Digest>> = BTreeMap::new();
        for op in &cs.operations {
            if let Operation::VerifyImage { image, digest, .. } = op {
                expected.entry(image.as_str()).or_default().push(digest.clone());
            }
        }
        for (repo, digests) in &expected {
            self.ops.registry.expect(repo, digests);
        }
        let (log_tx, mut log_rx) = tokio::sync::mpsc::channel(1024);
        let mut walk = Walk {
            engine: self,
            cs,
            working: session.state().clone(),
            dirty: false,
            session,
            hook,
            nodes: vec![Node::Waiting; n],
            deps,
            dependents,
            started: vec![None; n],
            in_progress: vec![None; n],
            revisions: BTreeMap::new(),
            join: JoinSet::new(),
            watches: BTreeMap::new(),
            log_tx,
            log_tasks: BTreeMap::new(),
            events: BTreeMap::new(),
            done: 0,
            report: ApplyReport::default(),
            journal_error: None,
            aborting: false,
        };
        walk.hook.step(Step::Applying { total: n });
        let mut delay = POLL_START;
        // After a failed observation, the next waits this long.
        let mut not_before = tokio::time::Instant::now();
        let mut observe_failures = 0;
        let mut observing: Option<Observing> = None;
        loop {
            // Steps whose answers came in while the loop was busy (a journal write blocks it)
            // run first, so that what ended together starts together, with one write for all.
            tokio::task::yield_now().await;
            // Everything that ended already is handled before the one write and the next wait.
            while let Some(joined) = walk.join.try_join_next() {
                match joined {
                    Ok((i, event)) => walk.on_event(i, event),
                    Err(e) => panic!("an apply step panicked: {e}"),
                }
            }
            if !walk.aborting {
                if let Some(reason) = self.abort.reason() {
                    walk.begin_abort(reason);
                } else {
                    walk.start_ready();
                }
            }
            walk.flush();
            if walk.done == n && walk.join.is_empty() && walk.watches.is_empty() {
                break;
            }
            // One observation of every watched app is under way at a time, running beside the
            // walk. When the set of apps changes (a rollout started or ended), the set is asked
            // about afresh: the runtime answers a new set at once.
            let apps = walk.watched_apps();
            if observing.as_ref().is_some_and(|o| o.apps != apps) {
                observing.take().expect("observing").handle.abort();
            }
            if apps.is_empty() {
                // The next rollout to start is observed soon after it starts.
                delay = POLL_START;
            } else if observing.is_none() {
                observing = Some(Observing::start(self.ops.runtime.clone(), apps, delay, not_before));
            }
            tokio::select! {
                Some(joined) = walk.join.join_next(), if !walk.join.is_empty() => match joined {
                    Ok((i, event)) => walk.on_event(i, event),
                    Err(e) => panic!("an apply step panicked: {e}"),
                },
                Some((app, line)) = log_rx.recv() => walk.hook.log(&app, &line),
                joined = async { (&mut observing.as_mut().expect("observing").handle).await }, if observing.is_some() => {
                    observing = None;
                    let observed = joined.unwrap_or_else(|e| Err(crate::runtime::RuntimeError::Unavailable(e.to_string())));
                    let changed = match observed {
                        Ok(statuses) => {
                            observe_failures = 0;
                            walk.judge(&statuses)
                        }
                        Err(e) => {
                            observe_failures += 1;
                            if observe_failures >= OBSERVE_RETRIES {
                                walk.fail_all_watches(&format!("cannot observe the runtime: {e}"));
                            }
                            not_before = tokio::time::Instant::now() + delay;
                            false
                        }
                    };
                    delay = if changed { POLL_START } else { (delay * 5 / 4).min(POLL_MAX) };
                },
                reason = self.abort.requested(), if !walk.aborting => walk.begin_abort(reason),
            }
        }
        if let Some(o) = observing {
            o.handle.abort();
        }
        for (_, h) in std::mem::take(&mut walk.log_tasks) {
            h.abort();
        }
        while let Ok((app, line)) = log_rx.try_recv() {
            walk.hook.log(&app, &line);
        }
        if let Some(e) = walk.journal_error.take() {
            return Err(e.into());
        }
        Ok(walk.report)
    }
}

impl Walk<'_> {
    fn op(&self, i: usize) -> &Operation {
        &self.cs.operations[i]
    }

    fn running(&self) -> usize {
        self.nodes.iter().filter(|n| **n == Node::Running).count()
    }

    fn start_ready(&mut self) {
        let limit = self.engine.parallelism.unwrap_or(usize::MAX).max(1);
        let mut starting = Vec::new();
        for i in 0..self.nodes.len() {
            if self.running() >= limit {
                break;
            }
            if self.nodes[i] == Node::Waiting && self.deps[i].iter().all(|&d| self.nodes[d] == Node::Done) {
                self.prepare(i);
                if matches!(self.op(i), Operation::PruneRevisions { .. }) {
                    // Nothing to ask the runtime (see `spawn`): recorded now, in the write below
                    // with everything else that starts or ended, rather than in a write of its
                    // own after each deploy it follows.
                    self.finish(i, OpOutcome::Succeeded { detail: None }, None);
                } else {
                    starting.push(i);
                }
            }
        }
        // Rollouts are recorded `in_progress` before the runtime hears of them, in one write
        // for everything starting now. When that write fails, nothing starts: the runtime must
        // not run what state cannot record.
        self.flush();
        for i in starting {
            match &self.journal_error {
                None => self.spawn(i),
                Some(e) => {
                    let because = format!("not started: cannot write state: {e}");
                    self.settle(i, OpOutcome::Skipped { because });
                }
            }
        }
    }

    fn prepare(&mut self, i: usize) {
        self.nodes[i] = Node::Running;
        let now = Utc::now();
        self.started[i] = Some((now, Instant::now()));
        let op = self.op(i).clone();
        self.hook.started(&op);
        if op.is_rollout() {
            let outcome = self.outcome(i, DeploymentStatus::Succeeded, None, None);
            let entry = journal::in_progress(&op, &self.working, &outcome);
            if let Some(d) = entry {
                let number = d.number;
                let app = op.app().to_string();
                if self.journal(move |s| s.apps.entry(app).or_default().history.push(d)) {
                    self.in_progress[i] = Some(number);
                }
            }
        }
    }

    fn spawn(&mut self, i: usize) {
        let op = self.op(i).clone();
        let ctx = self.engine.ops.clone();
        let abort = self.engine.abort.clone();
        let revision = self.revisions.get(op.app()).cloned();
        let deployment = self.in_progress[i];
        let task_def = match &op {
            Operation::RunReleaseTask { app, task, .. } => self.release_task(app, task),
            _ => None,
        };
        // Whether the app being removed runs autoscaled (as recorded): only then is its
        // autoscaling taken back, so removing any other app asks nothing of autoscaling.
        let autoscaled = matches!(&op, Operation::RemoveApp { app, .. } if self.working.apps.get(app)
            .and_then(|a| a.active.as_ref())
            .is_some_and(|a| a.config.deploy.autoscaling.is_some()));
        // What state records of the revisions involved, so the runtime need not look them up.
        let recorded = match &op {
            Operation::RegisterRevision { app, release, digest, config_hash, .. } => RecordedRevisions {
                // The deployment the app's rollout in this walk will record, for the label.
                deployment: Some(self.working.apps.get(app).map_or(1, |a| a.next_deployment_number())),
                ..ops::recorded_revisions(&self.working, app, *release, digest, config_hash)
            },
            _ => RecordedRevisions::default(),
        };
        let records = match &op {
            Operation::Deploy { app, from, to, .. } => {
                ops::DeployRecords::of(&self.working, app, from.as_ref(), to, deployment, self.engine.stream_logs)
            }
            _ => ops::DeployRecords::default(),
        };
        self.join.spawn(async move {
            let event = match &op {
                Operation::VerifyImage { app, release, image, digest } => {
                    Event::Finished { outcome: ops::verify(&ctx, app, *release, image, digest).await, revision: None }
                }
                Operation::RegisterRevision { app, release, image, digest, config, .. } => {
                    match ops::register(&ctx, app, (*release, image, digest), config, &recorded).await {
                        Ok(id) => Event::Finished {
                            outcome: OpOutcome::Succeeded { detail: Some(id.to_string()) },
                            revision: Some(id),
                        },
                        Err(reason) => failed(reason),
                    }
                }
                Operation::RunReleaseTask { app, task, .. } => {
                    let outcome = match (task_def, revision) {
                        (Some(def), Some(rev)) => ops::run_release_task(&ctx, app, &def, rev, &abort).await,
                        (None, _) => OpOutcome::Failed {
                            status: DeploymentStatus::Failed,
                            reason: format!("release task {task} of app {app} is not defined in the plan's deploy"),
                        },
                        // Plans always register before release tasks; a hand-edited one may not.
                        (Some(_), None) => OpOutcome::Failed {
                            status: DeploymentStatus::Failed,
                            reason: format!("release task {task} of app {app}: no revision was registered before it"),
                        },
                    };
                    Event::Finished { outcome, revision: None }
                }
                Operation::Deploy { app, from, to, .. } => {
                    match ops::start_deploy(&ctx, app, (from.as_ref(), to), revision, deployment, &records).await {
                        Ok(s) => Event::Watch(Box::new(s)),
                        Err(reason) => failed(reason),
                    }
                }
                Operation::Scale { app, running, from, to, .. } => {
                    match ops::start_scale(&ctx, app, running, (*from, *to), deployment).await {
                        Ok(s) => Event::Watch(Box::new(s)),
                        Err(reason) => failed(reason),
                    }
                }
                Operation::RemoveApp { app, .. } => Event::Finished {
                    outcome: ops::remove(&ctx, app, autoscaled, REMOVE_TIMEOUT).await,
                    revision: None,
                },
                // The runtime keeps no revisions worth deregistering yet (the local agent's
                // live in memory); recording the prune keeps state's list short. Settled in
                // `start_ready` without a step of its own; kept here for completeness.
                Operation::PruneRevisions { .. } => {
                    Event::Finished { outcome: OpOutcome::Succeeded { detail: None }, revision: None }
                }
            };
            (i, event)
        });
    }

    /// The definition of a release task, from the target config of its app's deploy.
    fn release_task(&self, app: &str, task: &str) -> Option<crate::config::ReleaseTask> {
        self.cs.operations.iter().find_map(|op| match op {
            Operation::Deploy { app: a, to, .. } if a == app => {
                to.config.release_tasks.iter().find(|t| t.name == task).cloned()
            }
            _ => None,
        })
    }

    fn outcome(
        &self,
        i: usize,
        status: DeploymentStatus,
        reason: Option<String>,
        revision: Option<&RevisionId>,
    ) -> Outcome {
        let now = Utc::now();
        Outcome {
            status,
            started_at: self.started[i].map_or(now, |(t, _)| t),
            finished_at: now,
            revision: revision.map(|r| r.to_string()),
            reason,
            source: self.engine.source.clone(),
        }
    }

    /// Add one journal entry to the working state; [`Walk::flush`] writes it before the
    /// walk waits for anything, so entries of operations that end together share one write
    /// (20 apps finishing at once would otherwise queue 20 writes behind each other).
    fn journal(&mut self, change: impl FnOnce(&mut crate::state::StageState)) -> bool {
        if self.journal_error.is_some() {
            return false;
        }
        change(&mut self.working);
        self.dirty = true;
        true
    }

    /// Write the working state if it changed. On failure the walk aborts: going on without
    /// a true record would leave state that lies.
    fn flush(&mut self) {
        if !self.dirty || self.journal_error.is_some() {
            return;
        }
        self.dirty = false;
        // Entries that changed nothing (a release verified before, …) need no write: each
        // write is a read, a copy and two fsyncs, and the walk waits for it.
        if self.working == *self.session.state() {
            return;
        }
        match self.session.write(self.working.clone()) {
            Ok(()) => self.working.serial = self.session.state().serial,
            Err(e) => {
                self.engine.abort.trigger(format!("cannot write state: {e}"));
                self.journal_error = Some(e);
            }
        }
    }

    fn on_event(&mut self, i: usize, event: Event) {
        match event {
            Event::Finished { outcome, revision } => self.finish(i, outcome, revision),
            Event::Watch(started) => {
                if let Some(reason) = self.engine.abort.reason() {
                    // Started just as the abort came: undo it at once.
                    self.spawn_roll_back(i, *started, DeploymentStatus::Aborted, reason, None);
                    return;
                }
                if self.engine.stream_logs {
                    self.follow_logs(i, &started);
                }
                self.watches.insert(i, (*started, None));
            }
        }
    }

    fn follow_logs(&mut self, i: usize, started: &Started) {
        let runtime: Arc<dyn Runtime> = self.engine.ops.runtime.clone();
        let app = started.watch.app.clone();
        let old = started.watch.old_tasks.clone();
        let tx = self.log_tx.clone();
        let since = Some(Utc::now() - chrono::Duration::seconds(1));
        self.log_tasks.insert(
            i,
            tokio::spawn(async move {
                let query = LogQuery { task: None, since, follow: true };
                let Ok(mut lines) = runtime.logs(&app, &query).await else { return };
                while let Some(line) = lines.recv().await {
                    if !old.contains(&line.task) && tx.send((app.clone(), line)).await.is_err() {
                        return;
                    }
                }
            }),
        );
    }

    /// The apps of every in-flight rollout, sorted.
    fn watched_apps(&self) -> Vec<String> {
        self.watches.values().map(|(s, _)| s.watch.app.clone()).collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// Judge every in-flight rollout by one batched observation. Returns whether anything
    /// changed.
    fn judge(&mut self, statuses: &[ServiceStatus]) -> bool {
        let now = Instant::now();
        let mut changed = false;
        let ids: Vec<usize> = self.watches.keys().copied().collect();
        for i in ids {
            let started = &self.watches[&i].0;
            let Some(status) = statuses.iter().find(|s| s.app == started.watch.app) else { continue };
            let shown = self.events.entry(i).or_default();
            let since = rollout::rollout_began(&started.watch, status);
            let fresh: Vec<ServiceEvent> = rollout::new_events(status, started.events_before.as_deref(), since, shown)
                .into_iter()
                .cloned()
                .collect();
            if !fresh.is_empty() {
                changed = true;
                let op = self.op(i).clone();
                for e in &fresh {
                    self.hook.service_event(&op, e);
                }
                self.events.entry(i).or_default().extend(fresh);
            }
            let (started, last) = &self.watches[&i];
            match rollout::judge(&started.watch, status, now) {
                Verdict::Waiting(p) => {
                    let key = (p.phase.clone(), p.running, p.pending, p.healthy, p.old);
                    if last.as_ref() != Some(&key) {
                        changed = true;
                    }
                    self.watches.get_mut(&i).expect("watched").1 = Some(key);
                    let op = self.op(i).clone();
                    self.hook.progress(&op, &p);
                }
                Verdict::Succeeded(p) => {
                    changed = true;
                    let op = self.op(i).clone();
                    self.hook.progress(&op, &p);
                    self.watches.remove(&i);
                    self.stop_logs(i);
                    self.events.remove(&i);
                    self.finish(i, OpOutcome::Succeeded { detail: None }, None);
                }
                Verdict::Failed { reason, task } => {
                    changed = true;
                    let (started, _) = self.watches.remove(&i).expect("watched");
                    self.stop_logs(i);
                    self.spawn_roll_back(i, started, DeploymentStatus::Failed, reason, task.map(|t| *t));
                }
            }
        }
        changed
    }

    fn stop_logs(&mut self, i: usize) {
        if let Some(h) = self.log_tasks.remove(&i) {
            h.abort();
        }
    }

    fn fail_all_watches(&mut self, reason: &str) {
        for (i, (started, _)) in std::mem::take(&mut self.watches) {
            self.stop_logs(i);
            self.spawn_roll_back(i, started, DeploymentStatus::Failed, reason.to_string(), None);
        }
    }

    fn spawn_roll_back(
        &mut self,
        i: usize,
        started: Started,
        status: DeploymentStatus,
        reason: String,
        culprit: Option<crate::runtime::TaskStatus>,
    ) {
        let mut reason = reason;
        if let Some(events) = self.events.remove(&i).filter(|e| !e.is_empty()) {
            reason.push_str("\nservice events:");
            for e in events.iter().rev().take(EVENTS_IN_REASON).rev() {
                reason.push_str(&format!("\n  {} {}", e.time.format("%H:%M:%S"), e.message));
            }
        }
        let ctx = self.engine.ops.clone();
        self.join.spawn(async move {
            let reason = ops::roll_back(&ctx, &started, &reason, culprit.as_ref()).await;
            (i, Event::Finished { outcome: OpOutcome::Failed { status, reason }, revision: None })
        });
    }

    fn begin_abort(&mut self, reason: String) {
        self.aborting = true;
        self.report.aborted = Some(reason.clone());
        self.hook.note(&format!("{reason}: rolling back in-flight deployments…"));
        for (i, (started, _)) in std::mem::take(&mut self.watches) {
            self.stop_logs(i);
            self.spawn_roll_back(i, started, DeploymentStatus::Aborted, reason.clone(), None);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i] == Node::Waiting {
                self.settle(i, OpOutcome::Skipped { because: reason.clone() });
            }
        }
    }

    /// An operation ended: journal it, report it, and skip its dependents if it failed.
    fn finish(&mut self, i: usize, outcome: OpOutcome, revision: Option<RevisionId>) {
        let op = self.op(i).clone();
        let (status, reason) = match &outcome {
            OpOutcome::Succeeded { .. } => (DeploymentStatus::Succeeded, None),
            OpOutcome::Failed { status, reason } => (*status, Some(reason.clone())),
            OpOutcome::Skipped { because } => (DeploymentStatus::Aborted, Some(because.clone())),
        };
        if let Some(rev) = &revision {
            self.revisions.insert(op.app().to_string(), rev.clone());
        }
        let recorded = self.outcome(i, status, reason.clone(), revision.as_ref());
        let mut outcome = outcome;
        self.record(i, &op, &recorded, &mut outcome);
        self.settle(i, outcome.clone());
        if !outcome.is_success() {
            self.skip_dependents(i, &op, status, reason.unwrap_or_default());
        }
    }

    /// Journal `op`'s outcome; for rollouts, name the deployment in the outcome and report.
    fn record(&mut self, i: usize, op: &Operation, recorded: &Outcome, outcome: &mut OpOutcome) {
        let in_progress = self.in_progress[i];
        let mut number = None;
        let build = match op {
            Operation::Deploy { to, .. } => self.engine.builds.get(&to.digest.to_string()).cloned(),
            _ => None,
        };
        let ok = self.journal(|s| {
            number = journal::finish(op, s, recorded, in_progress);
            if let (Some(n), Some(build)) = (number, build) {
                let deployment =
                    s.apps.get_mut(op.app()).and_then(|a| a.history.iter_mut().rev().find(|d| d.number == n));
                if let Some(d) = deployment {
                    d.build = Some(build);
                }
            }
        });
        if !ok {
            return;
        }
        if let (Some(n), Operation::Deploy { description, .. } | Operation::Scale { description, .. }) = (number, op) {
            if let OpOutcome::Succeeded { detail } = outcome {
                *detail = Some(format!("→ v{n}"));
            }
            self.report.deployments.push(DeploymentResult {
                app: op.app().to_string(),
                number: n,
                status: recorded.status,
                description: description.clone(),
                reason: recorded.reason.clone(),
            });
        }
    }

    /// Mark an operation done and tell the hook.
    fn settle(&mut self, i: usize, outcome: OpOutcome) {
        self.nodes[i] = Node::Done;
        self.done += 1;
        let elapsed = self.started[i].map_or(Duration::ZERO, |(_, t)| t.elapsed());
        let op = self.op(i).clone();
        self.hook.finished(&op, &outcome, elapsed, self.done, self.nodes.len());
        self.report.operations.push((op.id(), outcome));
    }

    /// Skip everything that depends on `root`, transitively. A deploy or scale of the same
    /// app that cannot start because its own verify, register or release task failed is a
    /// failed deployment of that app, and is recorded as one.
    fn skip_dependents(&mut self, root: usize, root_op: &Operation, status: DeploymentStatus, reason: String) {
        let mut queue: VecDeque<usize> = self.dependents[root].iter().copied().collect();
        let first_line = reason.lines().next().unwrap_or_default().to_string();
        while let Some(d) = queue.pop_front() {
            if self.nodes[d] != Node::Waiting {
                continue;
            }
            let op = self.op(d).clone();
            let own_app = op.app() == root_op.app() && !root_op.is_rollout();
            if own_app && op.is_rollout() && status == DeploymentStatus::Failed {
                let why = format!("not started: {} failed\n{reason}", root_op.id());
                let recorded = self.outcome(d, DeploymentStatus::Failed, Some(why.clone()), None);
                let mut outcome = OpOutcome::Failed { status: DeploymentStatus::Failed, reason: why };
                self.record(d, &op, &recorded, &mut outcome);
                self.settle(d, outcome);
            } else {
                let because = format!("{} did not succeed ({first_line})", root_op.id());
                self.settle(d, OpOutcome::Skipped { because });
            }
            queue.extend(self.dependents[d].iter().copied());
        }
    }
}

fn failed(reason: String) -> Event {
    Event::Finished { outcome: OpOutcome::Failed { status: DeploymentStatus::Failed, reason }, revision: None }
}

#[cfg(test)]
mod tests;
