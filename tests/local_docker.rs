//! The local runtime's Docker driver through the `Runtime` trait: real containers of images
//! in the tests' registry, on the real Docker Engine, reached on 127.0.0.1. No image can be
//! pulled on the test machines, so each image is made from nothing: a folder with the static
//! busybox (Debian's `busybox-static`) and a page, pushed as a single-layer image. Every
//! container carries `ferry.test=1`; a guard stops the agent and removes the project's
//! containers when a test ends, passed or failed.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::apply::task::{watch_task, TaskEnd, TaskWait};
use ferry::config::{AppConfig, Health, LocalDriver};
use ferry::registry::serve::ProjectRegistry;
use ferry::registry::{OciRegistry, RegistryUrl};
use ferry::runtime::local::{docker, DriverSetting, Layout, LocalRuntime};
use ferry::runtime::{Lifecycle, LogQuery, RevisionSpec, RolloutState, Runtime, ServiceStatus, TaskSpec};

use crate::local_runtime::{get, Load};
use crate::support::agent::{free_port, gone, settings, AgentGuard};
use crate::support::{registry, TestProject};

/// The app: busybox's httpd on `$PORT`, serving `/srv` (`index.html` says the release,
/// `health` is there unless the image leaves it out); it says which release it is first.
pub(crate) const SERVE: &str =
    "echo release $VERSION listening on $PORT; exec /bin/busybox httpd -f -v -p $PORT -h /srv";

/// A project, an image per release in the tests' registry, a runtime on the Docker driver.
pub(crate) struct DockerFixture {
    // Dropped first: the agent stops its containers, then the guard removes what is left.
    _containers: Containers,
    _agent: AgentGuard,
    project: TestProject,
    pub(crate) runtime: LocalRuntime,
    registry: OciRegistry,
    app_port: u16,
}

/// Removes every container of the test's project (by its `ferry.project` label) on drop.
pub(crate) struct Containers(pub(crate) String);

impl Drop for Containers {
    fn drop(&mut self) {
        for id in containers(&self.0, true) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
}

/// Ids of the project's containers (running only, unless `all`).
pub(crate) fn containers(project: &str, all: bool) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["ps", "-q", "--no-trunc", "--filter", &format!("label={}={project}", docker::LABEL_PROJECT)]);
    if all {
        cmd.arg("-a");
    }
    let out = cmd.output().expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

pub(crate) fn inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker").args(["inspect", "--format", format, id]).output().expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl DockerFixture {
    pub(crate) fn new() -> Self {
        let project = TestProject::empty();
        project.write("ferry.toml", "[project]\nname = \"test\"\n");
        project.write("stages/dev.toml", "[runtime]\ndriver = \"docker\"\n");
        let registry = OciRegistry::anonymous(RegistryUrl {
            host: registry::shared().to_string(),
            namespace: Some(project.registry_namespace.clone()),
        });
        let setting = DriverSetting {
            kind: LocalDriver::Docker,
            configured: true,
            registry: Some(Arc::new(ProjectRegistry::fixed(registry.clone()))),
            stage_file: None,
            engine_answered: Default::default(),
        };
        let runtime = LocalRuntime::new(project.path(), "dev")
            .with_agent_program(crate::support::ferry_bin())
            .with_driver(setting)
            .with_agent_env(docker::EXTRA_LABELS_ENV, "ferry.test=1");
        DockerFixture {
            _containers: Containers(docker::project_label(project.path())),
            _agent: AgentGuard { layout: Layout::new(project.path()) },
            project,
            runtime,
            registry,
            app_port: free_port(),
        }
    }

    fn label(&self) -> String {
        docker::project_label(self.project.path())
    }

    /// Push release `release`'s image (its page says the release; `healthy`: it has
    /// `/srv/health`) and return its digest.
    pub(crate) fn push(&self, release: u64, healthy: bool) -> ferry::config::Digest {
        let dir = self.project.path().join(format!("image-{release}"));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("srv")).unwrap();
        std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static must be installed");
        std::fs::write(dir.join("srv/index.html"), release.to_string()).unwrap();
        if healthy {
            std::fs::write(dir.join("srv/health"), "ok").unwrap();
        }
        let image = ferry::registry::image::from_path(&dir, &Default::default()).expect("image");
        self.registry.push("web", &image, None).expect("push").digest
    }

    /// App `web`, release `release` of image `digest`, running `command` (busybox sh -c).
    pub(crate) fn spec(&self, release: u64, digest: &ferry::config::Digest, command: &str) -> RevisionSpec {
        let mut env = std::collections::BTreeMap::new();
        env.insert("VERSION".to_string(), release.to_string());
        RevisionSpec {
            app: "web".into(),
            release,
            image: "web".into(),
            digest: digest.clone(),
            config: AppConfig {
                cpu: 256,
                memory: 64,
                command: vec!["/bin/busybox".into(), "sh".into(), "-c".into(), command.into()],
                port: Some(self.app_port),
                env,
                sensitive_env: Default::default(),
                secrets: Default::default(),
                health: Health {
                    command: Some(vec![
                        "CMD".into(),
                        "/bin/busybox".into(),
                        "test".into(),
                        "-f".into(),
                        "/srv/health".into(),
                    ]),
                    path: Some("/index.html".into()),
                    interval: ferry::config::Duration::from_millis(200),
                    timeout: ferry::config::Duration::from_millis(3000),
                    healthy_threshold: 2,
                    unhealthy_threshold: 2,
                    grace_period: ferry::config::Duration::from_millis(1500),
                },
                deploy: settings(),
                release_tasks: Vec::new(),
                target_group: None,
            },
            local_dir: None,
        }
    }

    async fn web(&self) -> ServiceStatus {
        self.runtime.observe(&["web".to_string()]).await.expect("observe").remove(0)
    }

    async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&ServiceStatus) -> bool) -> ServiceStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.web().await;
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last status:\n{s:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn log_text(&self, task: Option<&ferry::runtime::TaskId>) -> String {
        self.log_text_so_far(task).await.expect("logs")
    }

    /// The task's log, or the runtime's error: a one-off task that has just been started
    /// may have no log yet (`NotFound`) until its container has been created.
    async fn log_text_so_far(
        &self,
        task: Option<&ferry::runtime::TaskId>,
    ) -> Result<String, ferry::runtime::RuntimeError> {
        let query = LogQuery { task: task.cloned(), ..Default::default() };
        let mut stream = self.runtime.logs("web", &query).await?;
        let mut text = String::new();
        while let Some(line) = stream.recv().await {
            text.push_str(&line.text);
            text.push('\n');
        }
        Ok(text)
    }
}

/// The task's status once it stopped.
async fn finished(rt: &LocalRuntime, id: &ferry::runtime::TaskId) -> ferry::runtime::TaskStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let wait = TaskWait { deadline: Some(deadline), ..TaskWait::default() };
    let TaskEnd::Stopped(t) = watch_task(rt, "web", id, wait).await.unwrap() else { panic!("the task did not finish") };
    t
}

fn completed(id: &ferry::runtime::RolloutId) -> impl Fn(&ServiceStatus) -> bool + '_ {
    move |s| s.rollout(id).is_some_and(|r| r.state == RolloutState::Completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_roll_under_load_with_health_in_the_container_labels_and_logs() {
    let fx = DockerFixture::new();
    let rt = &fx.runtime;
    let (d1, d2) = (fx.push(1, true), fx.push(2, true));
    let v1 = rt.register_revision(&fx.spec(1, &d1, SERVE)).await.unwrap();
    let r1 = rt.deploy("web", &v1, 2, &settings()).await.unwrap();
    let s = fx.wait_for("first rollout", Duration::from_secs(60), completed(&r1)).await;
    // The health command ran inside the container: /srv/health exists only there.
    assert!(s.tasks.iter().all(|t| t.last_check.as_deref().is_some_and(|c| c.contains("command: exit 0"))), "{s:#?}");
    let old_tasks: Vec<_> = s.tasks.iter().map(|t| t.id.clone()).collect();
    let old = containers(&fx.label(), false);
    assert_eq!(old.len(), 2, "one container per task");
    for id in &old {
        let labels = inspect(id, "{{json .Config.Labels}}");
        for want in
            ["\"ferry.test\":\"1\"", "\"ferry.app\":\"web\"", "\"ferry.stage\":\"dev\"", "\"ferry.release\":\"1\""]
        {
            assert!(labels.contains(want), "{want} in {labels}");
        }
        // Published on 127.0.0.1 only, from the app's port inside.
        let ports = inspect(id, "{{json .NetworkSettings.Ports}}");
        assert!(
            ports.contains(&format!("\"{}/tcp\"", fx.app_port)) && ports.contains("\"HostIp\":\"127.0.0.1\""),
            "{ports}"
        );
        assert!(!ports.contains("0.0.0.0"), "{ports}");
        assert!(inspect(id, "{{json .Config.Env}}").contains(&format!("PORT={}", fx.app_port)));
    }
    assert_eq!(get(fx.app_port).await.as_deref(), Ok("1"));

    let load = Load::start(fx.app_port, 4);
    load.served(20).await;
    let v2 = rt.register_revision(&fx.spec(2, &d2, SERVE)).await.unwrap();
    let r2 = rt.deploy("web", &v2, 2, &settings()).await.unwrap();
    let s = fx.wait_for("second rollout", Duration::from_secs(60), completed(&r2)).await;
    load.served(20).await;
    let bodies = load.finish_without_failures().await;
    assert_eq!((bodies.first().map(String::as_str), bodies.last().map(String::as_str)), (Some("1"), Some("2")));
    assert_eq!(s.running, 2);
    // The old containers are stopped within the rollout and removed after it (in the
    // background: the rollout does not wait for `docker rm`).
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers(&fx.label(), true).len() != 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = containers(&fx.label(), true);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(old.iter().all(|id| !now.contains(id)), "old containers left: {old:?} in {now:?}");

    // SIGTERM reached the app (Docker's init forwards it), which ended by it: no SIGKILL
    // after the stop timeout (137).
    for id in &old_tasks {
        let log = fx.log_text(Some(id)).await;
        assert!(log.contains("stopped: exit code 143"), "{log}");
    }

    // Container output is in the task's log.
    let task = s.tasks.iter().find(|t| t.last_status == Lifecycle::Running).unwrap();
    let log = fx.log_text(Some(&task.id)).await;
    assert!(log.contains(&format!("release 2 listening on {}", fx.app_port)), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_turns_healthy_leaves_the_old_one_serving_and_rolls_back() {
    let fx = DockerFixture::new();
    let rt = &fx.runtime;
    let (d1, bad) = (fx.push(1, true), fx.push(2, false));
    let v1 = rt.register_revision(&fx.spec(1, &d1, SERVE)).await.unwrap();
    let r1 = rt.deploy("web", &v1, 1, &settings()).await.unwrap();
    fx.wait_for("first rollout", Duration::from_secs(60), completed(&r1)).await;

    let v2 = rt.register_revision(&fx.spec(2, &bad, SERVE)).await.unwrap();
    rt.deploy("web", &v2, 1, &settings()).await.unwrap();
    let s = fx
        .wait_for("the bad release to fail a health check", Duration::from_secs(60), |s| {
            s.tasks.iter().any(|t| t.release == 2 && (t.restarts > 0 || t.last_status == Lifecycle::Stopped))
        })
        .await;
    let failed = s.tasks.iter().find(|t| t.release == 2).unwrap();
    assert!(failed.stopped_reason.as_deref().is_some_and(|r| r.contains("failed health checks")), "{failed:#?}");
    assert_eq!(get(fx.app_port).await.as_deref(), Ok("1"), "the old release serves throughout");

    // Abort: back to release 1, whose container kept serving; the bad one goes.
    let back = rt.roll_back("web", &v1).await.unwrap();
    fx.wait_for("the rollback", Duration::from_secs(60), completed(&back)).await;
    assert_eq!(get(fx.app_port).await.as_deref(), Ok("1"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers(&fx.label(), true).len() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(containers(&fx.label(), true).len(), 1, "only release 1's container is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_containers_are_taken_over_without_duplicate_or_orphan() {
    let fx = DockerFixture::new();
    let rt = &fx.runtime;
    let d1 = fx.push(1, true);
    let v1 = rt.register_revision(&fx.spec(1, &d1, SERVE)).await.unwrap();
    let r1 = rt.deploy("web", &v1, 2, &settings()).await.unwrap();
    fx.wait_for("rollout", Duration::from_secs(60), completed(&r1)).await;
    let before = containers(&fx.label(), false);
    assert_eq!(before.len(), 2);
    let agent_pid = rt.layout().agent_pid().unwrap();
    // SAFETY: the agent this test started.
    unsafe { libc::kill(agent_pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(agent_pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone(agent_pid));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(rt.layout().socket()).is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Containers are not the agent's children: they keep running.
    assert_eq!(containers(&fx.label(), false), before);

    // A new agent; the same revision, now with one task: one container is taken over, the
    // other removed once the rollout settled. None is started.
    let v1 = rt.register_revision(&fx.spec(1, &d1, SERVE)).await.unwrap();
    let r1 = rt.deploy("web", &v1, 1, &settings()).await.unwrap();
    fx.wait_for("rollout on a new agent", Duration::from_secs(60), completed(&r1)).await;
    assert_ne!(rt.layout().agent_pid(), Some(agent_pid));
    assert_eq!(get(fx.app_port).await.as_deref(), Ok("1"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers(&fx.label(), true).len() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = containers(&fx.label(), true);
    assert_eq!(after.len(), 1, "no orphan: {after:?}");
    assert!(before.contains(&after[0]), "taken over, not started anew: {after:?} vs {before:?}");
    let log = std::fs::read_to_string(rt.layout().agent_log()).unwrap();
    assert!(log.contains("a task of its revision takes it over"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_containers_report_exit_codes_oom_kills_and_stop_with_the_timeout() {
    let fx = DockerFixture::new();
    let rt = &fx.runtime;
    let d1 = fx.push(1, true);
    let run = |revision: &ferry::runtime::RevisionId, command: &str| TaskSpec {
        app: "web".into(),
        revision: revision.clone(),
        command: Some(vec!["/bin/busybox".into(), "sh".into(), "-c".into(), command.into()]),
        env: Default::default(),
        name: "one-off".into(),
    };

    // An exit code, the task's output, a secret's value in the container's env only.
    std::env::set_var("FERRY_TEST_DOCKER_SECRET", "s3cr3t-value");
    let mut spec = fx.spec(1, &d1, SERVE);
    spec.config.secrets.insert("TOKEN".into(), "env:FERRY_TEST_DOCKER_SECRET".parse().unwrap());
    let v1 = rt.register_revision(&spec).await.unwrap();
    let id = rt.run_task(&run(&v1, "echo from the container, token $TOKEN; exit 7")).await.unwrap();
    let t = finished(rt, &id).await;
    assert_eq!(t.exit_code, Some(7), "{t:#?}");
    assert!(t.stopped_reason.as_deref().is_some_and(|r| r.contains("exit code 7")), "{t:#?}");
    let log = fx.log_text(Some(&id)).await;
    assert!(log.contains("from the container, token s3cr3t-value"), "{log}");
    let notes: Vec<&str> = log.lines().filter(|l| l.starts_with("ferry: ")).collect();
    assert!(notes.iter().any(|l| l.contains("started container")), "{log}");
    assert!(notes.iter().all(|l| !l.contains("s3cr3t-value")), "a secret in ferry's own notes: {log}");

    // Out of memory: a 6 MiB limit and a shell variable of 64 MB.
    let mut small = fx.spec(1, &d1, SERVE);
    small.config.memory = 6;
    let small = rt.register_revision(&small).await.unwrap();
    let hog = "x=$(/bin/busybox head -c 64000000 /dev/zero | /bin/busybox tr '\\0' x); echo survived";
    let id = rt.run_task(&run(&small, hog)).await.unwrap();
    let t = finished(rt, &id).await;
    let reason = t.stopped_reason.clone().unwrap_or_default();
    assert!(reason.contains("OOMKilled") && reason.contains("exit code 137"), "{t:#?}");

    // Stop: SIGTERM first, which a handler answers; SIGKILL after the stop timeout for
    // one that ignores it (PID 1 in a container ignores what it does not handle).
    let graceful = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do /bin/busybox sleep 0.1; done";
    let stubborn = "trap '' TERM; echo ready; while true; do /bin/busybox sleep 0.1; done";
    let mut ids = Vec::new();
    for command in [graceful, stubborn] {
        let id = rt.run_task(&run(&v1, command)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        // The container's own line, not ferry's note of the command it started (which
        // holds "echo ready"): stopped before its trap is set, the shell dies of the SIGTERM.
        while !fx.log_text_so_far(Some(&id)).await.is_ok_and(|log| log.lines().any(|l| l == "ready")) {
            assert!(Instant::now() < deadline, "task never started: {:?}", fx.log_text_so_far(Some(&id)).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rt.stop_task("web", &id).await.unwrap();
        ids.push(id);
    }
    for id in &ids {
        finished(rt, id).await;
    }
    let (graceful, stubborn) = (fx.log_text(Some(&ids[0])).await, fx.log_text(Some(&ids[1])).await);
    assert!(graceful.contains("got TERM") && graceful.contains("stopped: exit code 0"), "{graceful}");
    assert!(!stubborn.contains("got TERM") && stubborn.contains("stopped: exit code 137"), "{stubborn}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers(&fx.label(), true).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(containers(&fx.label(), true).is_empty(), "one-off containers are removed once they ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_missing_from_the_registry_is_one_clear_error() {
    let fx = DockerFixture::new();
    let rt = &fx.runtime;
    let missing = ferry::config::Digest::of_bytes(b"never pushed");
    let v = rt.register_revision(&fx.spec(1, &missing, SERVE)).await.unwrap();
    rt.deploy("web", &v, 1, &settings()).await.unwrap();
    let s = fx
        .wait_for("the task to fail", Duration::from_secs(60), |s| s.tasks.iter().any(|t| t.stopped_reason.is_some()))
        .await;
    let reason = s.tasks.iter().find_map(|t| t.stopped_reason.clone()).unwrap();
    assert!(reason.starts_with("cannot pull image ") && reason.contains(&missing.to_string()), "{reason}");
    assert!(reason.contains("push it"), "{reason}");
}

/// A project whose stage `dev` runs app `web` (busybox httpd on `port`) as containers, with
/// release 1 pushed through `ferry image push`.
fn cli_project(driver: Option<&str>, port: u16) -> (TestProject, String) {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"docker-cli\"\n\n[state]\nbackend = \"local\"\n");
    p.write("image/srv/index.html", "hello from a container\n");
    std::fs::create_dir_all(p.path().join("image/bin")).unwrap();
    std::fs::copy("/bin/busybox", p.path().join("image/bin/busybox")).expect("busybox-static must be installed");
    let push = p.run(&["image", "push", "image", "--repo", "web"]);
    push.expect_code(0);
    let digest = push.stdout().trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let driver = driver.map(|d| format!("driver = \"{d}\"\n")).unwrap_or_default();
    p.write(
        "stages/dev.toml",
        &format!(
            "[runtime]\nkind = \"local\"\n{driver}\n[apps.web]\nimage = \"web\"\nactive = 1\nport = {port}\n\
             command = [\"/bin/busybox\", \"sh\", \"-c\", \"echo serving on $PORT; exec /bin/busybox httpd -f -v -p $PORT -h /srv\"]\n\n\
             [apps.web.releases]\n1 = \"{digest}\"\n\n[apps.web.health]\npath = \"/\"\ninterval = \"200ms\"\ngrace_period = \"2s\"\n\n\
             [apps.web.deploy]\ntimeout = \"60s\"\ndrain = \"500ms\"\nstop_timeout = \"2s\"\n"
        ),
    );
    (p, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_commit_runs_the_stage_as_containers_and_down_removes_them() {
    let port = free_port();
    let (p, digest) = cli_project(Some("docker"), port);
    let _containers = Containers(docker::project_label(p.path()));
    let _agent = AgentGuard { layout: Layout::new(p.path()) };
    p.run(&["commit", "--yes"]).expect_code(0);
    assert_eq!(get(port).await.as_deref(), Ok("hello from a container\n"));
    let running = containers(&docker::project_label(p.path()), false);
    assert_eq!(running.len(), 1);
    assert!(inspect(&running[0], "{{.Config.Image}}").ends_with(&format!("/web@{digest}")));
    assert!(inspect(&running[0], "{{json .Config.Labels}}").contains("\"ferry.test\":\"1\""));
    let ps = p.run(&["ps"]);
    ps.expect_code(0);
    assert!(ps.stdout().contains("RUNNING"), "{}", ps.stdout());
    let logs = p.run(&["logs", "-s", "dev", "web", "--since", "1h"]);
    assert!(logs.stdout().contains(&format!("serving on {port}")), "{}", logs.stdout());
    p.run(&["down", "-s", "dev"]).expect_code(0);
    assert!(containers(&docker::project_label(p.path()), true).is_empty(), "down removes the containers");
}

#[test]
fn a_bad_driver_is_a_located_error_and_a_dead_engine_one_clear_error() {
    let (p, _) = cli_project(Some("podman"), free_port());
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("stages/dev.toml:3:"), "{err}");
    assert!(err.contains("podman") && err.contains("docker") && err.contains("process"), "{err}");

    let stage = p.read("stages/dev.toml").replace("driver = \"podman\"", "driver = \"docker\"");
    p.write(
        "stages/dev.toml",
        &stage.replace("kind = \"local\"", "kind = \"ecs\"\nregion = \"eu-west-1\"\ncluster = \"c\""),
    );
    let run = p.run(&["validate"]);
    run.expect_code(1);
    assert!(run.stderr().contains("`driver` only applies to the local runtime"), "{}", run.stderr());

    p.write("stages/dev.toml", &stage);
    let dead = p.path().join("no-docker.sock");
    let run = crate::support::Run(
        p.ferry().env("DOCKER_HOST", format!("unix://{}", dead.display())).args(["commit", "--yes"]).output().unwrap(),
    );
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("cannot reach the Docker Engine"), "{err}");
    assert!(err.contains("driver = \"process\""), "{err}");
    let _agent = AgentGuard { layout: Layout::new(p.path()) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_on_processes_is_not_moved_to_containers_by_the_default() {
    let port = free_port();
    let (p, _) = cli_project(None, port);
    let _containers = Containers(docker::project_label(p.path()));
    let _agent = AgentGuard { layout: Layout::new(p.path()) };
    // The harness chooses processes; busybox from the unpacked image runs on the host.
    let stage = p
        .read("stages/dev.toml")
        .replace("\"/bin/busybox\"", "\"bin/busybox\"")
        .replace("-h /srv", "-h srv")
        .replace("-p $PORT", "-p 127.0.0.1:$PORT");
    p.write("stages/dev.toml", &stage);
    p.run(&["commit", "--yes"]).expect_code(0);
    assert_eq!(get(port).await.as_deref(), Ok("hello from a container\n"));
    // Without the harness's choice, an engine answers: the default would be Docker.
    p.write("stages/dev.toml", &stage.replace("drain = \"500ms\"", "drain = \"600ms\""));
    let run =
        crate::support::Run(p.ferry().env_remove("FERRY_LOCAL_DRIVER").args(["commit", "--yes"]).output().unwrap());
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("runs as host processes and would now run as Docker containers"), "{err}");
    assert!(err.contains("add `driver = \"process\"` under [runtime]"), "{err}");
    assert_eq!(get(port).await.as_deref(), Ok("hello from a container\n"), "still serving");
    assert!(containers(&docker::project_label(p.path()), true).is_empty());
}
