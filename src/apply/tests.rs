//! The engine on its own, on the strict in-memory runtime ([`InMemoryRuntime`]): what a
//! walk does when operations fail, how many run at once, abort, a state write that fails
//! and release tasks that fail. Rollouts progress one step per observation, so outcomes do
//! not depend on the machine's speed; only timeouts take (short) real time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{AppConfig, DeploySettings, Digest, ReleaseTask, RunOn};
use crate::plan::{DeployKind, Edge, Running};
use crate::registry::{Registry, RegistryError};
use crate::runtime::memory::{InMemoryRuntime, Script};
use crate::runtime::{conformance::sample_spec, RolloutState, Runtime, ServiceState};
use crate::state::{InMemoryStateStore, LockInfo, StageState, StateStore};

/// The registry is asked only by verify steps, which these changesets do not have.
struct NoRegistry;

impl Registry for NoRegistry {
    fn verify(&self, repo: &str, digest: &Digest) -> crate::registry::Result<()> {
        Err(RegistryError::DigestNotFound { repo: repo.into(), digest: digest.clone() })
    }
    fn resolve_tag(&self, repo: &str, _tag: &str) -> crate::registry::Result<Digest> {
        Err(RegistryError::Refused { url: repo.into(), reason: "not in these tests".into() })
    }
}

fn config() -> AppConfig {
    let mut config = sample_spec(1).config;
    // Long enough never to be what ends a rollout here: the scripts do.
    config.deploy = DeploySettings { timeout: "60s".parse().unwrap(), ..DeploySettings::default() };
    config
}

fn running(app: &str, release: u64) -> Running {
    running_with(app, release, config())
}

fn running_with(app: &str, release: u64, config: AppConfig) -> Running {
    Running {
        release,
        digest: Digest::of_bytes(format!("{app} {release}").as_bytes()),
        image: format!("registry.example/{app}"),
        scale: 1,
        config_hash: crate::state::config_hash(&config),
        config,
    }
}

fn deploy(app: &str, from: Option<u64>, to: Running) -> Operation {
    Operation::Deploy {
        app: app.into(),
        kind: DeployKind::Activate,
        from: from.map(|r| running(app, r)),
        to,
        description: format!("Deploy {app}"),
        record_as: None,
    }
}

fn register(to: &Running, app: &str) -> Operation {
    Operation::RegisterRevision {
        app: app.into(),
        release: to.release,
        image: to.image.clone(),
        digest: to.digest.clone(),
        config_hash: to.config_hash.clone(),
        config: to.config.clone(),
    }
}

fn changeset(operations: Vec<Operation>, edges: &[(&str, &str)]) -> Changeset {
    Changeset {
        stage: "dev".into(),
        operations,
        edges: edges.iter().map(|(a, b)| Edge { from: a.to_string(), to: b.to_string() }).collect(),
        ..Changeset::default()
    }
}

fn engine(rt: &InMemoryRuntime, parallelism: Option<usize>) -> Engine {
    Engine {
        ops: OpContext { runtime: Arc::new(rt.clone()), registry: Arc::new(NoRegistry), local_releases: None },
        parallelism,
        source: Default::default(),
        builds: Default::default(),
        stream_logs: false,
        abort: AbortSignal::new(),
    }
}

fn session(store: Box<dyn StateStore>) -> LockedStage {
    LockedStage::acquire(store, "dev", LockInfo::for_this_process("test"), Duration::ZERO).expect("lock")
}

async fn walk(engine: &Engine, cs: &Changeset) -> (ApplyReport, LockedStage) {
    let mut s = session(Box::new(InMemoryStateStore::new()));
    let report = engine.apply(cs, &mut s, &mut SilentHook).await.expect("apply");
    (report, s)
}

fn outcome<'a>(report: &'a ApplyReport, id: &str) -> &'a OpOutcome {
    &report.operations.iter().find(|(i, _)| i == id).unwrap_or_else(|| panic!("no outcome for {id}: {report:#?}")).1
}

/// Serve `app`'s release `release` before the walk, as an earlier commit left it.
async fn serving(rt: &InMemoryRuntime, app: &str, release: u64) -> RevisionId {
    let r = running(app, release);
    let spec = crate::runtime::RevisionSpec {
        app: app.into(),
        release,
        image: r.image,
        digest: r.digest,
        config: r.config,
        local_dir: None,
    };
    let id = rt.register_revision(&spec).await.unwrap();
    rt.deploy(app, &id, 1, &DeploySettings::default()).await.unwrap();
    for _ in 0..10 {
        rt.observe(&[]).await.unwrap();
    }
    let s = rt.observe(&[app.to_string()]).await.unwrap().remove(0);
    assert_eq!(s.primary().map(|p| p.state), Some(RolloutState::Completed), "{s:#?}");
    id
}

#[tokio::test]
async fn a_failure_skips_its_dependents_and_nothing_else() {
    let rt = InMemoryRuntime::new();
    rt.script_release("web", 2, Script::exits(1));
    let (web, api, worker) = (running("web", 2), running("api", 2), running("worker", 2));
    let cs = changeset(
        vec![register(&web, "web"), deploy("web", None, web), deploy("api", None, api), deploy("worker", None, worker)],
        &[("web/register", "web/deploy"), ("web/deploy", "api/deploy")],
    );
    let (report, session) = walk(&engine(&rt, None), &cs).await;

    assert!(!report.succeeded());
    match outcome(&report, "web/deploy") {
        OpOutcome::Failed { status: DeploymentStatus::Failed, reason } => {
            assert!(reason.contains("exit code 1"), "the crash is named: {reason}");
            assert!(reason.contains("stopped the new tasks"), "a first deploy is undone: {reason}");
        }
        other => panic!("web/deploy: {other:?}"),
    }
    match outcome(&report, "api/deploy") {
        OpOutcome::Skipped { because } => assert!(because.starts_with("web/deploy did not succeed"), "{because}"),
        other => panic!("api/deploy: {other:?}"),
    }
    assert!(outcome(&report, "worker/deploy").is_success(), "an independent app carries on: {report:#?}");
    assert!(!rt.deploys().iter().any(|(app, _)| app == "api"), "api never reached the runtime");
    let state = session.state();
    assert_eq!(state.apps["web"].history.last().map(|d| d.status), Some(DeploymentStatus::Failed));
    assert!(state.apps.get("api").is_none_or(|a| a.history.is_empty()), "nothing recorded for api");
    assert_eq!(state.apps["worker"].history.last().map(|d| d.status), Some(DeploymentStatus::Succeeded));
    let web_now = rt.observe(&["web".into()]).await.unwrap().remove(0);
    assert_eq!(web_now.state, ServiceState::Missing, "the failed first deploy was removed");
}

#[tokio::test]
async fn no_more_operations_run_at_once_than_the_parallelism_allows() {
    let apps = ["a", "b", "c", "d"];
    let slow = |rt: &InMemoryRuntime| {
        for app in apps {
            rt.script_release(app, 1, Script::healthy().starting_after(20));
        }
    };
    let ops = || apps.iter().map(|a| deploy(a, None, running(a, 1))).collect::<Vec<_>>();

    let bounded = InMemoryRuntime::new();
    slow(&bounded);
    let (report, _) = walk(&engine(&bounded, Some(2)), &changeset(ops(), &[])).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(bounded.most_in_progress(), 2, "two at a time, and the bound was reached");

    let free = InMemoryRuntime::new();
    slow(&free);
    let (report, _) = walk(&engine(&free, None), &changeset(ops(), &[])).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(free.most_in_progress(), 4, "without a bound, all at once");
}

#[tokio::test]
async fn abort_rolls_back_what_is_in_flight_and_starts_nothing_more() {
    let rt = InMemoryRuntime::new();
    let v1 = serving(&rt, "web", 1).await;
    rt.script_release("web", 2, Script::never_healthy());
    let cs = changeset(
        vec![deploy("web", Some(1), running("web", 2)), deploy("api", None, running("api", 1))],
        &[("web/deploy", "api/deploy")],
    );
    let engine = engine(&rt, None);
    let (abort, watcher) = (engine.abort.clone(), rt.clone());
    // Abort once the new release's task runs (and fails its checks).
    tokio::spawn(async move {
        for _ in 0..10_000 {
            let web = watcher.observe(&["web".into()]).await.unwrap().remove(0);
            if web.tasks.iter().any(|t| t.release == 2 && t.last_check.is_some()) {
                abort.trigger("aborted by test");
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let (report, session) = walk(&engine, &cs).await;

    assert_eq!(report.aborted.as_deref(), Some("aborted by test"));
    match outcome(&report, "web/deploy") {
        OpOutcome::Failed { status: DeploymentStatus::Aborted, reason } => {
            assert!(reason.contains(&format!("rolled back to {v1}")), "{reason}")
        }
        other => panic!("web/deploy: {other:?}"),
    }
    assert!(matches!(outcome(&report, "api/deploy"), OpOutcome::Skipped { .. }), "{report:#?}");
    assert!(!rt.deploys().iter().any(|(app, _)| app == "api"), "nothing new starts");
    assert_eq!(rt.deploys().last(), Some(&("web".to_string(), v1.clone())), "the last move was back to v1");
    let web = rt.observe(&["web".into()]).await.unwrap().remove(0);
    assert_eq!(web.revision.as_ref(), Some(&v1));
    assert_eq!(session.state().apps["web"].history.last().map(|d| d.status), Some(DeploymentStatus::Aborted));
}

/// A store whose writes fail once `allowed` of them succeeded, as a full disk would make
/// them (no real store fails on cue).
#[derive(Debug, Clone)]
struct FailingWrites {
    inner: InMemoryStateStore,
    allowed: Arc<AtomicUsize>,
}

impl StateStore for FailingWrites {
    fn location(&self, stage: &str) -> String {
        self.inner.location(stage)
    }
    fn try_lock(&self, stage: &str, info: &LockInfo) -> crate::state::store::Result<()> {
        self.inner.try_lock(stage, info)
    }
    fn unlock(&self, stage: &str, id: &str) -> crate::state::store::Result<()> {
        self.inner.unlock(stage, id)
    }
    fn force_unlock(&self, stage: &str, id: &str) -> crate::state::store::Result<()> {
        self.inner.force_unlock(stage, id)
    }
    fn lock_holder(&self, stage: &str) -> crate::state::store::Result<Option<LockInfo>> {
        self.inner.lock_holder(stage)
    }
    fn read(&self, stage: &str) -> crate::state::store::Result<Option<StageState>> {
        self.inner.read(stage)
    }
    fn write(&self, state: &mut StageState) -> crate::state::store::Result<()> {
        if self.allowed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
            return Err(StateError::Backend { location: self.location(&state.stage), message: "disk full".into() });
        }
        self.inner.write(state)
    }
}

#[tokio::test]
async fn a_rollout_state_cannot_record_never_starts() {
    let rt = InMemoryRuntime::new();
    let store = FailingWrites { inner: InMemoryStateStore::new(), allowed: Arc::new(AtomicUsize::new(0)) };
    let mut s = session(Box::new(store.clone()));
    let cs = changeset(vec![deploy("web", None, running("web", 1))], &[]);
    let err = engine(&rt, None).apply(&cs, &mut s, &mut SilentHook).await.expect_err("the write fails");
    assert!(matches!(err, ApplyError::State(_)), "{err:?}");
    assert!(err.to_string().starts_with("cannot write state, so the commit stopped"), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(rt.deploys().is_empty(), "the runtime must not run what state cannot record");
    assert_eq!(store.inner.read("dev").unwrap(), None, "nothing half-written");
}

#[tokio::test]
async fn a_write_that_fails_mid_walk_stops_it_and_the_last_state_written_stays() {
    let rt = InMemoryRuntime::new();
    serving(&rt, "web", 1).await;
    rt.script_release("web", 2, Script::healthy().starting_after(5));
    // The `in_progress` entry is written; the next write (the deploy's end) fails.
    let store = FailingWrites { inner: InMemoryStateStore::new(), allowed: Arc::new(AtomicUsize::new(1)) };
    let mut s = session(Box::new(store.clone()));
    let cs = changeset(vec![deploy("web", Some(1), running("web", 2))], &[]);
    let err = engine(&rt, None).apply(&cs, &mut s, &mut SilentHook).await.expect_err("the second write fails");
    assert!(err.to_string().contains("disk full"), "{err}");
    let stored = store.inner.read("dev").unwrap().expect("the first write stays");
    let last = stored.apps["web"].history.last().expect("recorded").clone();
    assert_eq!(last.status, DeploymentStatus::InProgress, "the state last written stays as it was");
    assert_eq!(rt.deploys().iter().filter(|(a, _)| a == "web").count(), 2, "v1 before the walk, then release 2");
}

fn with_task(exit: Option<i32>, timeout: &str) -> (InMemoryRuntime, Changeset) {
    let rt = InMemoryRuntime::new();
    let script = match exit {
        Some(code) => Script::one_off(2, code, &["== AddIndex: migrating", "PG::DuplicateTable"]),
        None => Script { exit: None, ..Script::one_off(1, 0, &["waiting for a lock"]) },
    };
    rt.script_task("web", "migrate", script);
    let mut config = config();
    config.release_tasks = vec![ReleaseTask {
        name: "migrate".into(),
        command: vec!["bin/migrate".into()],
        timeout: timeout.parse().unwrap(),
        run_on: RunOn::default(),
    }];
    let to = running_with("web", 2, config);
    let task =
        Operation::RunReleaseTask { app: "web".into(), task: "migrate".into(), release: 2, digest: to.digest.clone() };
    let cs = changeset(
        vec![register(&to, "web"), task, deploy("web", None, to)],
        &[("web/register", "web/task/migrate"), ("web/task/migrate", "web/deploy")],
    );
    (rt, cs)
}

#[tokio::test]
async fn a_release_task_that_fails_keeps_its_deploy_from_starting() {
    let (rt, cs) = with_task(Some(3), "60s");
    let (report, session) = walk(&engine(&rt, None), &cs).await;
    match outcome(&report, "web/task/migrate") {
        OpOutcome::Failed { status: DeploymentStatus::Failed, reason } => {
            assert!(reason.starts_with("release task migrate (task "), "{reason}");
            assert!(reason.contains("exited with code 3; the deploy does not start"), "{reason}");
            assert!(reason.contains("| PG::DuplicateTable"), "its last lines are shown: {reason}");
        }
        other => panic!("migrate: {other:?}"),
    }
    match outcome(&report, "web/deploy") {
        OpOutcome::Failed { status: DeploymentStatus::Failed, reason } => {
            assert!(reason.starts_with("not started: web/task/migrate failed"), "{reason}")
        }
        other => panic!("deploy: {other:?}"),
    }
    assert!(rt.deploys().is_empty(), "the deploy never reached the runtime");
    let recorded = session.state().apps["web"].history.last().expect("recorded").clone();
    assert_eq!(recorded.status, DeploymentStatus::Failed);
    let id = report.operations.iter().find_map(|(i, o)| match o {
        OpOutcome::Failed { reason, .. } if i == "web/task/migrate" => {
            reason.split("(task ").nth(1).and_then(|r| r.split(')').next()).map(str::to_string)
        }
        _ => None,
    });
    let id = crate::runtime::TaskId(id.expect("the task id is named"));
    assert_eq!(rt.task_command(&id), Some(vec!["bin/migrate".to_string()]), "run with its own command");
}

#[tokio::test]
async fn a_release_task_that_overruns_is_stopped() {
    let (rt, cs) = with_task(None, "300ms");
    let (report, _) = walk(&engine(&rt, None), &cs).await;
    let reason = match outcome(&report, "web/task/migrate") {
        OpOutcome::Failed { status: DeploymentStatus::Failed, reason } => reason.clone(),
        other => panic!("migrate: {other:?}"),
    };
    assert!(reason.contains("did not finish within its timeout (300ms); stopped it"), "{reason}");
    let web = rt.observe(&["web".into()]).await.unwrap().remove(0);
    let task = web.tasks.iter().find(|t| t.name.as_deref() == Some("migrate")).expect("observed");
    assert_eq!(task.desired_status, crate::runtime::Lifecycle::Stopped, "{task:#?}");
    assert!(rt.deploys().is_empty());
}
