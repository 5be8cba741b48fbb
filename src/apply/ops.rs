//! Carrying out single operations against the registry and the runtime. Each function is
//! one step the engine spawns; none touches state (the engine journals what they return) and
//! none decides about time except a release task's own timeout, which belongs to the task.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::abort::AbortSignal;
use super::hook::OpOutcome;
use super::rollout::{RolloutWatch, Watched};
use super::task::{watch_task, TaskEnd, TaskWait};
use crate::config::{AppConfig, Digest, ReleaseTask};
use crate::plan::Running;
use crate::poll::Poll;
use crate::registry::{ProjectRegistry, Registry};
use crate::runtime::{
    LogQuery, RecordedRevisions, RevisionId, RevisionSpec, Runtime, RuntimeError, ServiceState, ServiceStatus, TaskId,
    TaskSpec, TaskStatus,
};
use crate::state::{DeploymentStatus, StageState};

/// How many of a task's last log lines a failure report shows.
pub const LOG_TAIL: usize = 10;

/// What the operations need, cheap to clone into each spawned step.
#[derive(Clone)]
pub struct OpContext {
    pub runtime: Arc<dyn Runtime>,
    pub registry: Arc<dyn Registry>,
    /// Local runtime: the registry to pull from and the folder releases are unpacked into
    /// (`.ferry/releases/`). `None` on ECS, which pulls images itself.
    pub local_releases: Option<(Arc<ProjectRegistry>, PathBuf)>,
}

/// A rollout that has started and is now watched by the engine's poll loop.
#[derive(Debug, Clone)]
pub struct Started {
    pub watch: RolloutWatch,
    /// What to return to when the gate fails: the revision that served before (`None`: a
    /// first deploy, so failing stops the new tasks).
    pub previous: Option<RevisionId>,
    /// The release behind `previous`, to deploy again if the runtime lost it (a local agent
    /// killed mid-rollout comes back knowing nothing).
    pub previous_release: Option<Running>,
    /// A scale's previous count, to scale back to.
    pub scale_from: Option<u32>,
    /// The newest scheduler event before the rollout: only later ones are its own.
    pub events_before: Option<String>,
}

/// Check the digest is in the registry.
pub async fn verify(ctx: &OpContext, app: &str, release: u64, image: &str, digest: &Digest) -> OpOutcome {
    let (registry, repo, d) = (ctx.registry.clone(), image.to_string(), digest.clone());
    match tokio::task::spawn_blocking(move || registry.verify(&repo, &d)).await {
        Ok(Ok(())) => OpOutcome::Succeeded { detail: Some(digest.short().to_string()) },
        Ok(Err(e)) => {
            let mut reason = format!("app {app}, release {release}: image {digest} is not in the registry: {e}");
            if let Some(hint) = e.hint() {
                reason.push_str(&format!("\nhint: {hint}"));
            }
            OpOutcome::Failed { status: DeploymentStatus::Failed, reason }
        }
        Err(e) => OpOutcome::Failed { status: DeploymentStatus::Failed, reason: e.to_string() },
    }
}

/// What `state` records of `app`'s revisions for this release, digest and config (see
/// [`RecordedRevisions`]): the serving one first when it matches, then registered ones and
/// those of past deployments, newest first. `serving` is left for the caller to set.
pub fn recorded_revisions(
    state: &StageState,
    app: &str,
    release: u64,
    digest: &Digest,
    config_hash: &str,
) -> RecordedRevisions {
    let Some(a) = state.apps.get(app) else { return RecordedRevisions::default() };
    let same = |r: u64, d: &Digest, c: &str| r == release && d == digest && c == config_hash;
    let active =
        a.active.as_ref().filter(|x| same(x.release, &x.digest, &x.config_hash)).and_then(|x| x.revision.clone());
    let registered =
        a.revisions.iter().rev().filter(|r| same(r.release, &r.digest, &r.config_hash)).map(|r| r.id.clone());
    let deployed = a
        .history
        .iter()
        .rev()
        .filter(|d| same(d.release, &d.digest, &d.config_hash))
        .filter_map(|d| d.revision.clone());
    let mut matching: Vec<RevisionId> = Vec::new();
    for id in active.into_iter().chain(registered).chain(deployed) {
        if !matching.iter().any(|m| m.as_str() == id) {
            matching.push(RevisionId(id));
        }
    }
    RecordedRevisions {
        matching,
        any: !a.revisions.is_empty() || a.history.iter().any(|d| d.revision.is_some()),
        serving: false,
        deployment: None,
    }
}

/// What recorded state knows of a deploy's two revisions, and whether the engine needs the
/// tasks that predate it by id.
#[derive(Debug, Clone, Default)]
pub struct DeployRecords {
    /// Of the revision it leaves (`serving` set when state records it as serving).
    pub from: RecordedRevisions,
    /// Of the revision it goes to, when the deploy registers it itself.
    pub to: RecordedRevisions,
    /// The engine streams the new tasks' output and must tell old tasks' lines apart.
    pub old_tasks_by_id: bool,
}

impl DeployRecords {
    /// The records of `from` → `to` of `app` in `state`, for deployment v`deployment`.
    pub fn of(
        state: &StageState,
        app: &str,
        from: Option<&Running>,
        to: &Running,
        deployment: Option<u64>,
        old_tasks_by_id: bool,
    ) -> Self {
        let of = |r: &Running| recorded_revisions(state, app, r.release, &r.digest, &r.config_hash);
        let serving = |r: &Running| {
            state.apps.get(app).and_then(|a| a.active.as_ref()).is_some_and(|a| {
                a.release == r.release && a.digest == r.digest && a.config_hash == r.config_hash && a.revision.is_some()
            })
        };
        DeployRecords {
            from: from.map(|f| RecordedRevisions { serving: serving(f), ..of(f) }).unwrap_or_default(),
            to: RecordedRevisions { deployment, ..of(to) },
            old_tasks_by_id,
        }
    }
}

/// Unpack the release (local runtime) and register a revision for it; idempotent.
pub async fn register(
    ctx: &OpContext,
    app: &str,
    (release, image, digest): (u64, &str, &Digest),
    config: &AppConfig,
    recorded: &RecordedRevisions,
) -> Result<RevisionId, String> {
    let local_dir = match &ctx.local_releases {
        Some((registry, dir)) => {
            let dest = dir.join(digest.as_str());
            let (registry, d, dest2, repo) = (registry.clone(), digest.clone(), dest.clone(), image.to_string());
            tokio::task::spawn_blocking(move || registry.get()?.unpack(&repo, &d, &dest2))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("app {app}, release {release}: cannot unpack {digest}: {e}"))?;
            Some(dest)
        }
        None => None,
    };
    let spec = RevisionSpec {
        app: app.to_string(),
        release,
        image: image.to_string(),
        digest: digest.clone(),
        config: config.clone(),
        local_dir,
    };
    ctx.runtime
        .register_recorded(&spec, recorded)
        .await
        .map_err(|e| format!("app {app}: cannot register release {release}: {e}"))
}

async fn register_running(
    ctx: &OpContext,
    app: &str,
    r: &Running,
    recorded: &RecordedRevisions,
) -> Result<RevisionId, String> {
    register(ctx, app, (r.release, &r.image, &r.digest), &r.config, recorded).await
}

async fn observe_one(ctx: &OpContext, app: &str) -> Result<ServiceStatus, String> {
    let mut all = ctx.runtime.observe(&[app.to_string()]).await.map_err(|e| format!("cannot observe {app}: {e}"))?;
    all.pop().ok_or_else(|| format!("the runtime said nothing about {app}"))
}

/// Start a deploy of `to` (registered as `revision` when the register step ran), recorded
/// as deployment v`deployment`.
pub async fn start_deploy(
    ctx: &OpContext,
    app: &str,
    (from, to): (Option<&Running>, &Running),
    revision: Option<RevisionId>,
    deployment: Option<u64>,
    records: &DeployRecords,
) -> Result<Started, String> {
    let target = match revision {
        Some(r) => r,
        None => register_running(ctx, app, to, &records.to).await?,
    };
    // Which tasks and events predate the rollout: looked at first where that is cheap (or
    // old tasks' output must be told apart by id); otherwise the rollout's start time tells
    // (see `rollout::judge`), and the deploy costs no observation.
    let look_first = ctx.runtime.observe_is_cheap() || records.old_tasks_by_id;
    // The recorded active deployment is what "previous" means; registering it again is
    // idempotent and also works after the agent restarted (ECS takes the recorded task
    // definition as is). Where the look before the rollout is made, the two requests do not
    // depend on each other: both are under way at once. If registering the previous release
    // fails, fall back to what the runtime serves, looking now if it was not looked at: a
    // deploy that fails with no previous revision removes the app.
    let register_previous = async {
        match from {
            Some(f) => Some(register_running(ctx, app, f, &records.from).await),
            None => None,
        }
    };
    let (before, registered) = if look_first {
        let (before, registered) = tokio::join!(observe_one(ctx, app), register_previous);
        (Some(before?), registered)
    } else {
        (None, register_previous.await)
    };
    let serving = |b: &ServiceStatus| {
        b.primary().filter(|p| p.state == crate::runtime::RolloutState::Completed).map(|p| p.revision.clone())
    };
    let previous = match registered {
        None => None,
        Some(Ok(revision)) => Some(revision),
        Some(Err(_)) => match &before {
            Some(b) => serving(b),
            None => serving(&observe_one(ctx, app).await?),
        },
    };
    // Autoscaling changes where a service runs: before its rollout (a refusal changes
    // nothing), or, for a first deploy, once the service exists.
    let range = to.config.deploy.autoscaling.as_ref();
    let autoscale = || async {
        ctx.runtime.autoscale(app, range).await.map_err(|e| format!("app {app}: cannot set up autoscaling: {e}"))
    };
    let had_range = from.is_some_and(|f| f.config.deploy.autoscaling.is_some());
    if from.is_some() && (range.is_some() || had_range) {
        autoscale().await?;
    }
    let mut started = start(ctx, app, before, target, to, previous, deployment).await?;
    if from.is_none() && range.is_some() {
        autoscale().await?;
    }
    started.previous_release = from.cloned();
    Ok(started)
}

async fn start(
    ctx: &OpContext,
    app: &str,
    before: Option<ServiceStatus>,
    target: RevisionId,
    to: &Running,
    previous: Option<RevisionId>,
    deployment: Option<u64>,
) -> Result<Started, String> {
    let settings = &to.config.deploy;
    let rollout = ctx
        .runtime
        .deploy(app, &target, to.scale, settings)
        .await
        .map_err(|e| format!("app {app}: cannot start the rollout: {e}"))?;
    if let Some(n) = deployment {
        // A label only: state records the deployment whether or not the runtime keeps it.
        let _ = ctx.runtime.label_deployment(app, &target, n).await;
    }
    let now = Instant::now();
    Ok(Started {
        watch: RolloutWatch {
            app: app.to_string(),
            watched: Watched::Deploy { rollout },
            target,
            desired: to.scale,
            started: now,
            deadline: now + settings.timeout.to_std(),
            old_tasks: before.as_ref().map(old_tasks).unwrap_or_default(),
            failed_before: 0,
            restarts_in_place: ctx.runtime.restarts_in_place(),
        },
        previous,
        previous_release: None,
        scale_from: None,
        events_before: before.as_ref().and_then(|b| b.events.first()).map(|e| e.id.clone()),
    })
}

fn old_tasks(before: &ServiceStatus) -> BTreeSet<TaskId> {
    before.tasks.iter().map(|t| t.id.clone()).collect()
}

/// Start a scale of the running revision to `to` tasks, recorded as deployment v`deployment`.
pub async fn start_scale(
    ctx: &OpContext,
    app: &str,
    running: &Running,
    (from, to): (u32, u32),
    deployment: Option<u64>,
) -> Result<Started, String> {
    let before = observe_one(ctx, app).await?;
    let wanted = Running { scale: to, ..running.clone() };
    let Some(target) = before.revision.clone().filter(|_| before.state == ServiceState::Active) else {
        // The runtime lost the service (a restarted agent): deploying the running revision
        // at the new count is the same change.
        let target = register_running(ctx, app, running, &RecordedRevisions::default()).await?;
        return start(ctx, app, Some(before), target, &wanted, None, deployment).await;
    };
    let failed_before = before.primary().map_or(0, |r| r.failed_tasks);
    ctx.runtime.scale(app, to).await.map_err(|e| format!("app {app}: cannot scale: {e}"))?;
    if let Some(n) = deployment {
        let _ = ctx.runtime.label_deployment(app, &target, n).await;
    }
    let now = Instant::now();
    Ok(Started {
        watch: RolloutWatch {
            app: app.to_string(),
            watched: Watched::Scale,
            target: target.clone(),
            desired: to,
            started: now,
            deadline: now + running.config.deploy.timeout.to_std(),
            old_tasks: old_tasks(&before),
            failed_before,
            restarts_in_place: ctx.runtime.restarts_in_place(),
        },
        previous: Some(target),
        previous_release: Some(running.clone()),
        scale_from: Some(from),
        events_before: before.events.first().map(|e| e.id.clone()),
    })
}

/// Undo a rollout that failed or was aborted: return to the previous revision (or count),
/// or stop the new tasks of a first deploy. Returns the full reason to record and show:
/// `reason`, what the culprit task reported, its last log lines, and what was undone.
pub async fn roll_back(ctx: &OpContext, started: &Started, reason: &str, culprit: Option<&TaskStatus>) -> String {
    let app = &started.watch.app;
    let mut text = reason.to_string();
    if let Some(t) = culprit {
        text.push_str(&describe_task(t));
        text.push_str(&log_tail(ctx, app, &t.id).await);
    }
    let undo = match (&started.scale_from, &started.previous) {
        (Some(n), _) => ctx.runtime.scale(app, *n).await.map(|()| format!("scaled back to {n}")),
        (None, Some(prev)) => {
            ctx.runtime.roll_back(app, prev).await.map(|_| format!("rolled back to {prev}; it keeps serving"))
        }
        (None, None) => ctx.runtime.remove(app).await.map(|()| "stopped the new tasks (nothing served before)".into()),
    };
    let undo = match (undo, &started.previous_release) {
        (Err(RuntimeError::NotFound(lost)), Some(previous)) => redeploy(ctx, app, previous, &lost).await,
        (undo, _) => undo,
    };
    match undo {
        Ok(done) => text.push_str(&format!("\n{done}")),
        Err(e) => text.push_str(&format!("\nrolling back failed too: {e}")),
    }
    text
}

/// The runtime no longer knows what served before (`lost` says why): deploy that release
/// again, as a new revision at its recorded count.
async fn redeploy(ctx: &OpContext, app: &str, previous: &Running, lost: &str) -> Result<String, RuntimeError> {
    let revision =
        register_running(ctx, app, previous, &RecordedRevisions::default()).await.map_err(RuntimeError::Unavailable)?;
    ctx.runtime.deploy(app, &revision, previous.scale, &previous.config.deploy).await?;
    Ok(format!(
        "the runtime had lost the previous revision ({lost}); started release {} again as {revision}",
        previous.release
    ))
}

/// `task 3f2a…: exit code 1; stopped: …; last check: …` on its own line.
fn describe_task(t: &TaskStatus) -> String {
    let mut parts = vec![format!("{} {}", t.last_status.as_str(), t.health.as_str())];
    if let Some(code) = t.exit_code {
        parts.push(format!("exit code {code}"));
    }
    if t.restarts > 0 {
        parts.push(format!("{} restarts", t.restarts));
    }
    if let Some(r) = &t.stopped_reason {
        parts.push(format!("stopped: {r}"));
    }
    if let Some(c) = &t.last_check {
        parts.push(format!("last check: {}", c.trim()));
    }
    format!("\ntask {}: {}", t.id, parts.join("; "))
}

/// The last [`LOG_TAIL`] lines of a task's output, as `\n  | line` text (empty when none).
pub async fn log_tail(ctx: &OpContext, app: &str, task: &TaskId) -> String {
    let query = LogQuery { task: Some(task.clone()), since: None, follow: false };
    let Ok(mut stream) = ctx.runtime.logs(app, &query).await else { return String::new() };
    let mut lines = std::collections::VecDeque::new();
    let collect = async {
        while let Some(line) = stream.recv().await {
            if lines.len() == LOG_TAIL {
                lines.pop_front();
            }
            lines.push_back(line.text);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), collect).await;
    if lines.is_empty() {
        return String::new();
    }
    let mut text = format!("\nlast {} log lines of task {task}:", lines.len());
    for l in lines {
        text.push_str(&format!("\n  | {l}"));
    }
    text
}

/// Run a release task with the new revision and wait for it, within its timeout. A
/// non-zero exit, a timeout or an abort fails it (the task is stopped).
pub async fn run_release_task(
    ctx: &OpContext,
    app: &str,
    task: &ReleaseTask,
    revision: RevisionId,
    abort: &AbortSignal,
) -> OpOutcome {
    let spec = TaskSpec {
        app: app.to_string(),
        revision,
        command: Some(task.command.clone()),
        env: Default::default(),
        name: task.name.clone(),
    };
    let failed = |reason: String| OpOutcome::Failed { status: DeploymentStatus::Failed, reason };
    let id = match ctx.runtime.run_task(&spec).await {
        Ok(id) => id,
        Err(e) => return failed(format!("release task {} of app {app} did not start: {e}", task.name)),
    };
    let started = Instant::now();
    let wait = TaskWait {
        deadline: Some(tokio::time::Instant::now() + task.timeout.to_std()),
        abort: Some(abort),
        output: None,
    };
    let end = match watch_task(ctx.runtime.as_ref(), app, &id, wait).await {
        Ok(end) => end,
        Err(RuntimeError::NotFound(_)) => {
            return failed(format!("the runtime lost release task {} (task {id})", task.name))
        }
        Err(e) => return failed(format!("cannot observe {app}: {e}")),
    };
    match end {
        TaskEnd::Stopped(t) => {
            let secs = started.elapsed().as_secs_f64();
            match t.exit_code {
                Some(0) => OpOutcome::Succeeded { detail: Some(format!("task {id} exited 0 after {secs:.1}s")) },
                code => {
                    let how = code.map_or_else(
                        || format!("ended without an exit code ({})", t.stopped_reason.as_deref().unwrap_or("killed")),
                        |c| format!("exited with code {c}"),
                    );
                    let tail = log_tail(ctx, app, &id).await;
                    failed(format!("release task {} (task {id}) {how}; the deploy does not start{tail}", task.name))
                }
            }
        }
        TaskEnd::DeadlinePassed => {
            let _ = ctx.runtime.stop_task(app, &id).await;
            let tail = log_tail(ctx, app, &id).await;
            failed(format!(
                "release task {} (task {id}) did not finish within its timeout ({}); stopped it{tail}",
                task.name, task.timeout
            ))
        }
        TaskEnd::Aborted(reason) => {
            let _ = ctx.runtime.stop_task(app, &id).await;
            OpOutcome::Failed {
                status: DeploymentStatus::Aborted,
                reason: format!("{reason}; stopped release task {} (task {id})", task.name),
            }
        }
    }
}

/// Remove an app and wait (bounded) until the runtime has forgotten it. An `autoscaled` app's
/// autoscaling is taken back first: it outlives the service (on ECS, the scalable target and
/// ferry's policies would scale a service of the same name made later).
pub async fn remove(ctx: &OpContext, app: &str, autoscaled: bool, timeout: Duration) -> OpOutcome {
    if autoscaled {
        if let Err(e) = ctx.runtime.autoscale(app, None).await {
            return OpOutcome::Failed {
                status: DeploymentStatus::Failed,
                reason: format!("cannot remove {app}: cannot take back its autoscaling: {e}"),
            };
        }
    }
    if let Err(e) = ctx.runtime.remove(app).await {
        return OpOutcome::Failed { status: DeploymentStatus::Failed, reason: format!("cannot remove {app}: {e}") };
    }
    let mut poll = Poll::new(Duration::from_millis(100), Duration::from_secs(1)).within(timeout);
    loop {
        match observe_one(ctx, app).await {
            Ok(s) if s.state == ServiceState::Missing => return OpOutcome::Succeeded { detail: None },
            Ok(_) => {}
            Err(reason) => return OpOutcome::Failed { status: DeploymentStatus::Failed, reason },
        }
        if !poll.wait().await {
            return OpOutcome::Failed {
                status: DeploymentStatus::Failed,
                reason: format!("{app} still has tasks {}s after its removal", timeout.as_secs()),
            };
        }
    }
}
