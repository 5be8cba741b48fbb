//! The conformance suite every [`Runtime`] must pass, written once (as
//! [`crate::state::conformance`] is for the state stores). A runtime's tests implement
//! [`RuntimeFixture`] — a runtime for one fresh stage, and specs and one-off tasks of app
//! `web` it can run — and expand [`runtime_conformance!`](crate::runtime_conformance), which
//! makes one `#[tokio::test]` per check:
//!
//! ```ignore
//! mod runtime_conformance {
//!     ferry::runtime_conformance!(MyFixture::new());
//!     // A runtime whose tasks never run (the ECS emulator) passes the control-plane checks:
//!     // ferry::runtime_conformance!(control_plane: MyFixture::new());
//! }
//! ```
//!
//! Two groups, so a runtime that cannot run tasks is not silently excused from the rest:
//! *control plane* (registration, errors, services and rollouts as records) and *running*
//! (a scheduler that starts a rollout per deploy, tasks that start, turn healthy or not,
//! exit with a code, write output, are stopped).
//! Errors are compared by kind ([`RuntimeError`]'s variant), never by text.
//!
//! Only built for tests (`cfg(test)`) and with the `testing` feature, which the integration
//! tests turn on through the crate's dev-dependency on itself: the release library ships no
//! suite. The checks panic like any assertion, and wait on conditions with deadlines.

use std::time::Duration;

use super::{
    Lifecycle, LogQuery, RevisionId, RevisionSpec, RolloutState, Runtime, RuntimeError, ServiceState, ServiceStatus,
    TaskKind, TaskSpec, TaskStatus,
};
use crate::config::{AppConfig, DeploySettings, Health};
use crate::poll::Poll;

/// The app every check runs.
pub const APP: &str = "web";

/// How long any one condition may take to come true (a local task's start and checks on a
/// loaded machine take seconds, the in-memory runtime's a few steps).
const WAIT: Duration = Duration::from_secs(60);

/// How a revision's tasks should behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// They start and pass their health check.
    Healthy,
    /// They start and keep failing their health check.
    NeverHealthy,
}

/// What the suite needs from a runtime under test.
pub trait RuntimeFixture {
    /// The runtime, for a stage no other test uses.
    fn runtime(&self) -> &dyn Runtime;
    /// A spec of app [`APP`] for `release` (different releases give different specs) whose
    /// tasks behave as `behaviour`, with a health check.
    fn spec(&self, release: u64, behaviour: Behaviour) -> RevisionSpec;
    /// A one-off task of [`APP`] on `revision`, named `name`, that writes `line` and then
    /// exits with `exit` — or, with `None`, keeps running until it is stopped.
    fn one_off(&self, revision: &RevisionId, name: &str, line: &str, exit: Option<i32>) -> TaskSpec;
}

/// Expand to one `#[tokio::test]` per conformance check, each on a fresh fixture from
/// `$make`: every check, or (`control_plane: $make`) those that need no task to run.
#[macro_export]
macro_rules! runtime_conformance {
    (control_plane: $make:expr) => {
        $crate::runtime_conformance!(@each $make;
            registering_is_idempotent, unknown_apps_are_missing, deploy_refuses_an_unknown_revision,
            deploy_creates_the_service_on_its_revision, a_new_deploy_becomes_primary,
            scale_and_roll_back_refuse_an_unknown_app, remove_forgets_the_service,
            one_off_tasks_refuse_an_unknown_revision_and_are_observed);
    };
    ($make:expr) => {
        $crate::runtime_conformance!(control_plane: $make);
        $crate::runtime_conformance!(@each $make;
            a_new_deploy_is_a_rollout_of_its_own, a_deploy_turns_healthy_and_completes,
            an_unhealthy_rollout_waits_and_rolls_back,
            a_one_off_task_ends_with_its_exit_code_and_output, a_one_off_task_stops_when_asked,
            stop_task_refuses_an_unknown_task);
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $make;
                $crate::runtime::conformance::$check(&fixture).await;
            }
        )*
    };
}

/// A spec of [`APP`] with an HTTP health check, for fixtures that do not run it.
pub fn sample_spec(release: u64) -> RevisionSpec {
    RevisionSpec {
        app: APP.into(),
        release,
        image: "registry.example/web".into(),
        digest: crate::config::Digest::of_bytes(format!("release {release}").as_bytes()),
        config: AppConfig {
            cpu: 256,
            memory: 512,
            command: vec!["serve".into()],
            port: Some(8080),
            env: Default::default(),
            sensitive_env: Default::default(),
            secrets: Default::default(),
            health: Health { path: Some("/health".into()), ..Health::default() },
            deploy: DeploySettings::default(),
            release_tasks: Vec::new(),
            target_group: None,
        },
        local_dir: None,
    }
}

/// A revision id of the same shape the runtime never issued: the number after the last
/// `:` (`dev-web:1`, a task definition ARN's `:1`) replaced.
fn never_issued(id: &RevisionId) -> RevisionId {
    let stem = id.as_str().rsplit_once(':').map_or(id.as_str(), |(s, _)| s);
    RevisionId(format!("{stem}:9999"))
}

fn web() -> Vec<String> {
    vec![APP.to_string()]
}

async fn observe_web(rt: &dyn Runtime) -> ServiceStatus {
    let mut all = rt.observe(&web()).await.expect("observe");
    assert_eq!(all.len(), 1, "one status per app asked for: {all:#?}");
    all.remove(0)
}

/// Observe [`APP`] until `pred` holds; panics with the last status at the deadline.
async fn wait_for(rt: &dyn Runtime, what: &str, pred: impl Fn(&ServiceStatus) -> bool) -> ServiceStatus {
    let mut poll = Poll::new(Duration::from_millis(25), Duration::from_millis(250)).within(WAIT);
    loop {
        let s = observe_web(rt).await;
        if pred(&s) {
            return s;
        }
        assert!(poll.wait().await, "timed out waiting until {what}; last status:\n{s:#?}");
    }
}

fn assert_kind<T: std::fmt::Debug>(result: Result<T, RuntimeError>, kind: &str, what: &str) {
    let got = match &result {
        Err(RuntimeError::NotFound(_)) => "NotFound",
        Err(RuntimeError::Invalid(_)) => "Invalid",
        Err(RuntimeError::Unavailable(_)) => "Unavailable",
        Err(RuntimeError::Io(_)) => "Io",
        Ok(_) => "Ok",
    };
    assert_eq!(got, kind, "{what}: {result:?}");
}

async fn deployed(f: &dyn RuntimeFixture, release: u64, behaviour: Behaviour) -> RevisionId {
    let rt = f.runtime();
    let id = rt.register_revision(&f.spec(release, behaviour)).await.expect("register");
    rt.deploy(APP, &id, 1, &DeploySettings::default()).await.expect("deploy");
    id
}

/// An identical spec registers as the same revision; another release as another.
pub async fn registering_is_idempotent(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let one = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    let again = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register again");
    assert_eq!(one, again, "an identical spec is the same revision");
    let two = rt.register_revision(&f.spec(2, Behaviour::Healthy)).await.expect("register release 2");
    assert_ne!(one, two, "another release is another revision");
}

/// An app the runtime does not run is observed as MISSING, with nothing in it.
pub async fn unknown_apps_are_missing(f: &dyn RuntimeFixture) {
    let s = observe_web(f.runtime()).await;
    assert_eq!((s.app.as_str(), s.state, s.revision.as_ref()), (APP, ServiceState::Missing, None), "{s:#?}");
    assert!(s.rollouts.is_empty() && s.tasks.is_empty(), "{s:#?}");
}

/// Deploying a revision the runtime never issued is refused as not found, and creates
/// nothing.
pub async fn deploy_refuses_an_unknown_revision(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let real = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    let unknown = never_issued(&real);
    assert_kind(rt.deploy(APP, &unknown, 1, &DeploySettings::default()).await, "NotFound", "deploy of {unknown}");
    assert_eq!(observe_web(rt).await.state, ServiceState::Missing, "a refused deploy creates no service");
}

/// A deploy creates the service, running the revision as its primary rollout.
pub async fn deploy_creates_the_service_on_its_revision(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    let rollout = rt.deploy(APP, &v1, 1, &DeploySettings::default()).await.expect("deploy");
    let s = observe_web(rt).await;
    assert_eq!((s.state, s.revision.as_ref(), s.desired), (ServiceState::Active, Some(&v1), 1), "{s:#?}");
    let primary = s.primary().expect("a primary rollout");
    assert_eq!((&primary.id, &primary.revision, primary.release), (&rollout, &v1, 1), "{s:#?}");
    assert_eq!(s.rollout(&rollout).map(|r| r.primary), Some(true));
}

/// A second deploy moves the service to its revision and count; the rollout it returns is
/// the primary one.
pub async fn a_new_deploy_becomes_primary(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register 1");
    rt.deploy(APP, &v1, 1, &DeploySettings::default()).await.expect("deploy 1");
    let v2 = rt.register_revision(&f.spec(2, Behaviour::Healthy)).await.expect("register 2");
    let second = rt.deploy(APP, &v2, 2, &DeploySettings::default()).await.expect("deploy 2");
    let s = observe_web(rt).await;
    assert_eq!((s.revision.as_ref(), s.desired), (Some(&v2), 2), "{s:#?}");
    assert_eq!(s.primary().map(|p| &p.id), Some(&second), "{s:#?}");
}

/// A second deploy is a rollout of its own, of its revision; the first is no longer
/// primary. (Needs a scheduler that starts a deployment per update: the ECS emulator keeps
/// one through updates.)
pub async fn a_new_deploy_is_a_rollout_of_its_own(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register 1");
    let first = rt.deploy(APP, &v1, 1, &DeploySettings::default()).await.expect("deploy 1");
    let v2 = rt.register_revision(&f.spec(2, Behaviour::Healthy)).await.expect("register 2");
    let second = rt.deploy(APP, &v2, 2, &DeploySettings::default()).await.expect("deploy 2");
    assert_ne!(first, second, "another rollout");
    let s = observe_web(rt).await;
    let primary = s.primary().expect("a primary rollout");
    assert_eq!((&primary.id, &primary.revision, primary.release), (&second, &v2, 2), "{s:#?}");
    assert!(s.rollout(&first).is_none_or(|r| !r.primary), "the first rollout is not primary: {s:#?}");
}

/// Scaling or rolling back an app the runtime does not run is refused as not found.
pub async fn scale_and_roll_back_refuse_an_unknown_app(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    assert_kind(rt.scale(APP, 2).await, "NotFound", "scale of an app never deployed");
    assert_kind(rt.roll_back(APP, &v1).await, "NotFound", "roll back of an app never deployed");
    assert_eq!(observe_web(rt).await.state, ServiceState::Missing, "nothing was created");
}

/// A removed app is soon MISSING; removing an unknown app is no error.
pub async fn remove_forgets_the_service(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    rt.remove(APP).await.expect("removing an app never deployed is a no-op");
    deployed(f, 1, Behaviour::Healthy).await;
    rt.remove(APP).await.expect("remove");
    wait_for(rt, "the removed app is missing", |s| s.state == ServiceState::Missing).await;
}

/// A one-off task needs a revision the runtime issued; a started one is observed with its
/// kind, name and revision.
pub async fn one_off_tasks_refuse_an_unknown_revision_and_are_observed(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    let unknown = f.one_off(&never_issued(&v1), "migrate", "never", Some(0));
    assert_kind(rt.run_task(&unknown).await, "NotFound", "a task of an unknown revision");
    let id = rt.run_task(&f.one_off(&v1, "migrate", "migrating", None)).await.expect("run_task");
    let s = observe_web(rt).await;
    let t = s.task(&id).unwrap_or_else(|| panic!("task {id} is observed: {s:#?}"));
    assert_eq!((t.kind, t.name.as_deref(), &t.revision, t.release), (TaskKind::OneOff, Some("migrate"), &v1, 1));
    let _ = rt.stop_task(APP, &id).await;
}

fn ready_tasks<'a>(s: &'a ServiceStatus, revision: &RevisionId) -> Vec<&'a TaskStatus> {
    s.tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Service && &t.revision == revision && t.last_status != Lifecycle::Stopped)
        .filter(|t| t.is_ready())
        .collect()
}

/// A healthy revision's rollout completes with its tasks ready and serving.
pub async fn a_deploy_turns_healthy_and_completes(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = deployed(f, 1, Behaviour::Healthy).await;
    let s = wait_for(rt, "the rollout completes", |s| {
        s.primary().is_some_and(|p| p.state == RolloutState::Completed && p.healthy >= 1)
    })
    .await;
    let ready = ready_tasks(&s, &v1);
    assert_eq!(ready.len(), 1, "{s:#?}");
    assert!(ready[0].in_service && ready[0].started_at.is_some(), "{s:#?}");
    assert_eq!(s.running, 1, "{s:#?}");
}

/// A rollout whose tasks fail their checks stays in progress while the old revision keeps
/// serving; rolling back returns to the old revision and stops the new tasks.
pub async fn an_unhealthy_rollout_waits_and_rolls_back(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = deployed(f, 1, Behaviour::Healthy).await;
    wait_for(rt, "release 1 completes", |s| s.primary().is_some_and(|p| p.state == RolloutState::Completed)).await;
    let v2 = rt.register_revision(&f.spec(2, Behaviour::NeverHealthy)).await.expect("register 2");
    rt.deploy(APP, &v2, 1, &DeploySettings::default()).await.expect("deploy 2");
    let s = wait_for(rt, "a release 2 task failed a check", |s| {
        s.tasks.iter().any(|t| t.revision == v2 && t.last_check.is_some() && t.health != super::Health::Healthy)
    })
    .await;
    let primary = s.primary().expect("primary");
    assert_eq!((&primary.revision, primary.state), (&v2, RolloutState::InProgress), "{s:#?}");
    assert!(ready_tasks(&s, &v2).is_empty(), "{s:#?}");
    assert!(ready_tasks(&s, &v1).iter().any(|t| t.in_service), "the old revision keeps serving: {s:#?}");

    rt.roll_back(APP, &v1).await.expect("roll back");
    let s = wait_for(rt, "back on release 1 with release 2 stopped", |s| {
        s.primary().is_some_and(|p| p.revision == v1 && p.state == RolloutState::Completed)
            && s.tasks.iter().filter(|t| t.revision == v2).all(|t| t.last_status == Lifecycle::Stopped)
    })
    .await;
    assert_eq!(s.revision.as_ref(), Some(&v1));
    assert!(!ready_tasks(&s, &v1).is_empty(), "{s:#?}");
}

/// Observe until `task` is STOPPED.
async fn stopped(rt: &dyn Runtime, task: &super::TaskId) -> TaskStatus {
    let s =
        wait_for(rt, "the task stopped", |s| s.task(task).is_some_and(|t| t.last_status == Lifecycle::Stopped)).await;
    s.task(task).expect("observed").clone()
}

async fn output(rt: &dyn Runtime, task: &super::TaskId) -> Vec<String> {
    let query = LogQuery { task: Some(task.clone()), since: None, follow: false };
    let mut lines = rt.logs(APP, &query).await.expect("logs");
    let mut text = Vec::new();
    while let Some(l) = lines.recv().await {
        assert_eq!(&l.task, task, "only the task asked for");
        text.push(l.text);
    }
    text
}

/// A one-off task ends with its own exit code, and its output can be read.
pub async fn a_one_off_task_ends_with_its_exit_code_and_output(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    let id = rt.run_task(&f.one_off(&v1, "migrate", "migrated 3 tables", Some(3))).await.expect("run_task");
    let t = stopped(rt, &id).await;
    assert_eq!((t.kind, t.exit_code), (TaskKind::OneOff, Some(3)), "{t:#?}");
    assert!(t.stopped_at.is_some(), "{t:#?}");
    // A runtime may add lines of its own (the local agent notes the start and the exit).
    let lines = output(rt, &id).await;
    assert!(lines.iter().any(|l| l == "migrated 3 tables"), "the task's output: {lines:?}");
    let ok = rt.run_task(&f.one_off(&v1, "check", "fine", Some(0))).await.expect("run_task");
    assert_eq!(stopped(rt, &ok).await.exit_code, Some(0));
}

/// A running one-off task stops when asked.
pub async fn a_one_off_task_stops_when_asked(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    let id = rt.run_task(&f.one_off(&v1, "console", "ready", None)).await.expect("run_task");
    wait_for(rt, "the task runs", |s| s.task(&id).is_some_and(|t| t.last_status == Lifecycle::Running)).await;
    rt.stop_task(APP, &id).await.expect("stop_task");
    let t = stopped(rt, &id).await;
    assert_ne!(t.exit_code, Some(0), "a stopped task did not succeed: {t:#?}");
    assert_eq!(t.desired_status, Lifecycle::Stopped, "{t:#?}");
}

/// Stopping a task the runtime never started is refused as not found.
pub async fn stop_task_refuses_an_unknown_task(f: &dyn RuntimeFixture) {
    let rt = f.runtime();
    let v1 = rt.register_revision(&f.spec(1, Behaviour::Healthy)).await.expect("register");
    let id = rt.run_task(&f.one_off(&v1, "migrate", "x", Some(0))).await.expect("run_task");
    stopped(rt, &id).await;
    let unknown = super::TaskId("0123456789ab".into());
    assert_kind(rt.stop_task(APP, &unknown).await, "NotFound", "stop of a task never started");
}
