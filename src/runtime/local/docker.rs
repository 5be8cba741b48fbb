//! The Docker driver: a task is a container of `REPO@DIGEST` from the project's registry,
//! through the Docker Engine API (`bollard`, as `src/build/` uses it).
//!
//! A container listens on the app's port and gets `PORT` set to it (as on ECS); that port is
//! published on 127.0.0.1 only, on a free host port per task, which the checks and the
//! proxy use. `health.command` runs inside the container (exec). Stopping is Docker's stop
//! with the app's `stop_timeout` (SIGTERM, then SIGKILL). Output is followed into the task
//! log; the exit code and an OOM kill come from inspecting the container once it ended.
//!
//! Containers are labelled (project, stage, app, release, task, revision, and `ferry=1`), so
//! they outlive a killed agent and the next one finds them ([`DockerDriver::adopt_leftovers`]):
//! a task of the same revision that starts later takes such a container over instead of
//! starting another; the rest are removed once their app has been deployed again, or when
//! the agent exits.
//!
//! A task stopped for good (replaced by a rollout, scaled in, its app removed) is stopped
//! within the rollout, but its container is removed in the background ([`Removals`]): the
//! rollout, and the commit waiting on it, do not wait for `docker rm`. The agent waits for
//! those removals before it answers `Down` and before it exits; a container whose removal
//! a killed agent never made is an ended container of the project, which the next agent
//! removes at start like any other. `FERRY_CONTAINER_LABELS` (`k=v,k=v`) adds labels to every container
//! (the tests mark theirs with it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::{watch, OnceCell};

use super::driver::{free_port, Exit, RunSpec, Running, Started, TaskDriver};
use super::health::{self, CheckResult};
use super::logs::TaskLog;
use crate::runtime::TaskKind;

/// Label names.
pub const LABEL_FERRY: &str = "ferry";
pub const LABEL_PROJECT: &str = "ferry.project";
pub const LABEL_STAGE: &str = "ferry.stage";
pub const LABEL_APP: &str = "ferry.app";
pub const LABEL_RELEASE: &str = "ferry.release";
pub const LABEL_TASK: &str = "ferry.task";
pub const LABEL_REVISION: &str = "ferry.revision";
pub const LABEL_KIND: &str = "ferry.kind";
/// Extra labels for every container (`k=v,k=v`).
pub const EXTRA_LABELS_ENV: &str = "FERRY_CONTAINER_LABELS";

/// How long a check that the engine answers may take.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an ended container's output may take to reach the task log before its end is
/// reported anyway (the output stream ends with the container; this bounds a stuck one).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// How long a container SIGKILLed by nobody ferry knows of, without Docker's `OOMKilled`
/// flag, waits for the engine's `oom` event before it is reported as a plain kill (see
/// [`oom_event`]).
const OOM_EVENT_WAIT: Duration = Duration::from_secs(2);

/// Whether a Docker Engine answers (for the default driver).
pub async fn engine_answers() -> bool {
    connect().await.is_ok()
}

/// A client of the engine `DOCKER_HOST` names (or the local socket), version negotiated and
/// pinged; the error says what to do.
pub async fn connect() -> Result<Docker, String> {
    let no_engine = |e: String| {
        format!(
            "cannot reach the Docker Engine ({e}); start Docker (or point DOCKER_HOST at it), \
             or run this stage's tasks as host processes with `driver = \"process\"` under [runtime]"
        )
    };
    let attempt = async {
        let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
        let docker = docker.negotiate_version().await.map_err(|e| innermost(&e))?;
        docker.ping().await.map_err(|e| innermost(&e))?;
        Ok::<_, String>(docker)
    };
    match tokio::time::timeout(PING_TIMEOUT, attempt).await {
        Ok(r) => r.map_err(no_engine),
        Err(_) => Err(no_engine(format!("no answer within {}s", PING_TIMEOUT.as_secs()))),
    }
}

/// The deepest cause of an engine error: bollard's outer text repeats the request.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A container a killed agent left running, which a task of the same revision takes over.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub id: String,
    pub stage: String,
    pub app: String,
    pub revision_key: String,
    pub port: u16,
    pub pid: Option<u32>,
}

/// The driver, one per agent: the engine client (connected on first use) and the containers
/// a killed predecessor left.
pub struct DockerDriver {
    /// The project's label value: containers of other projects are never touched.
    project: String,
    docker: OnceCell<Docker>,
    leftovers: Mutex<Vec<Leftover>>,
    removals: Removals,
}

/// Containers of stopped tasks being removed in the background: how many are under way.
#[derive(Clone)]
struct Removals(Arc<watch::Sender<usize>>);

impl Removals {
    fn new() -> Self {
        Removals(Arc::new(watch::channel(0).0))
    }

    /// Remove container `id` in the background.
    fn start(&self, docker: Docker, id: String) {
        self.0.send_modify(|n| *n += 1);
        let pending = self.0.clone();
        tokio::spawn(async move {
            remove(&docker, &id).await;
            pending.send_modify(|n| *n -= 1);
        });
    }

    /// Wait until no removal is under way, at most `within`; whether none is.
    async fn finished(&self, within: Duration) -> bool {
        let mut pending = self.0.subscribe();
        let finished = tokio::time::timeout(within, pending.wait_for(|&n| n == 0)).await.is_ok();
        finished
    }
}

impl DockerDriver {
    pub fn new(project: String) -> Self {
        DockerDriver { project, docker: OnceCell::new(), leftovers: Mutex::new(Vec::new()), removals: Removals::new() }
    }

    /// Wait (at most `within`) for the containers of stopped tasks to be removed: before
    /// `Down` answers and before the agent exits, so that neither leaves a container
    /// behind. Whether all were.
    pub async fn removals_finished(&self, within: Duration) -> bool {
        self.removals.finished(within).await
    }

    async fn client(&self) -> Result<&Docker, String> {
        self.docker.get_or_try_init(connect).await
    }

    /// At agent start: find this project's containers. Running service containers wait to
    /// be taken over ([`Leftover`]); the rest (ended, or one-off tasks nobody watches any
    /// more) are removed. Returns a line per container for the agent's log. No engine: none.
    pub async fn adopt_leftovers(&self) -> Vec<String> {
        if !engine_answers().await {
            return Vec::new();
        }
        let Ok(docker) = self.client().await else { return Vec::new() };
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{LABEL_PROJECT}={}", self.project)]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let Ok(found) = docker.list_containers(Some(options)).await else { return Vec::new() };
        let mut notes = Vec::new();
        for c in found {
            let Some(id) = c.id.clone() else { continue };
            let labels = c.labels.clone().unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let running = c.state.as_ref().is_some_and(|s| s.to_string() == "running");
            let port =
                c.ports.iter().flatten().find(|p| p.ip.as_deref() == Some("127.0.0.1")).and_then(|p| p.public_port);
            let service = label(LABEL_KIND) == "service";
            let short = short(&id);
            match (running && service, port) {
                (true, Some(port)) => {
                    let pid = inspect_pid(docker, &id).await;
                    notes.push(format!(
                        "found container {short} ({}/{} release {}) left by a killed agent: a task of its revision takes it over",
                        label(LABEL_STAGE),
                        label(LABEL_APP),
                        label(LABEL_RELEASE)
                    ));
                    self.leftovers.lock().unwrap_or_else(|p| p.into_inner()).push(Leftover {
                        id,
                        stage: label(LABEL_STAGE),
                        app: label(LABEL_APP),
                        revision_key: label(LABEL_REVISION),
                        port,
                        pid,
                    });
                }
                _ => {
                    remove(docker, &id).await;
                    notes.push(format!("removed container {short} left by a killed agent"));
                }
            }
        }
        notes
    }

    /// Remove the leftovers `done` says nobody will take over any more (their app was
    /// deployed again and settled, or is gone). Returns a line per container removed.
    pub async fn sweep_leftovers(&self, done: impl Fn(&str, &str) -> bool) -> Vec<String> {
        let gone: Vec<Leftover> = {
            let mut left = self.leftovers.lock().unwrap_or_else(|p| p.into_inner());
            let (gone, keep) = left.drain(..).partition(|l| done(&l.stage, &l.app));
            *left = keep;
            gone
        };
        if gone.is_empty() {
            return Vec::new();
        }
        let Ok(docker) = self.client().await else { return Vec::new() };
        let mut notes = Vec::new();
        for l in gone {
            let _ = docker.stop_container(&l.id, Some(StopContainerOptionsBuilder::new().t(10).build())).await;
            remove(docker, &l.id).await;
            notes.push(format!("removed container {} of {}/{}: no task took it over", short(&l.id), l.stage, l.app));
        }
        notes
    }

    /// Whether any leftover waits to be taken over.
    pub fn has_leftovers(&self) -> bool {
        !self.leftovers.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    fn claim(&self, run: &RunSpec) -> Option<Leftover> {
        if run.kind != TaskKind::Service {
            return None;
        }
        let mut left = self.leftovers.lock().unwrap_or_else(|p| p.into_inner());
        let at =
            left.iter().position(|l| l.stage == run.stage && l.app == run.app && l.revision_key == run.revision_key)?;
        Some(left.remove(at))
    }

    fn labels(&self, run: &RunSpec) -> HashMap<String, String> {
        let mut labels = HashMap::new();
        for (k, v) in std::env::var(EXTRA_LABELS_ENV).unwrap_or_default().split(',').filter_map(|kv| kv.split_once('='))
        {
            labels.insert(k.trim().to_string(), v.trim().to_string());
        }
        let kind = if run.kind == TaskKind::Service { "service" } else { "one-off" };
        for (k, v) in [
            (LABEL_FERRY, "1".to_string()),
            (LABEL_PROJECT, self.project.clone()),
            (LABEL_STAGE, run.stage.clone()),
            (LABEL_APP, run.app.clone()),
            (LABEL_RELEASE, run.release.to_string()),
            (LABEL_TASK, run.task.to_string()),
            (LABEL_REVISION, run.revision_key.clone()),
            (LABEL_KIND, kind.to_string()),
        ] {
            labels.insert(k.to_string(), v);
        }
        labels
    }
}

/// The project label of the project at `root`: a hash of its path (stable, and no path in
/// `docker ps`).
pub fn project_label(root: &std::path::Path) -> String {
    crate::config::Digest::of_bytes(root.as_os_str().as_encoded_bytes()).hex()[..16].to_string()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

async fn remove(docker: &Docker, id: &str) {
    let _ = docker.remove_container(id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
}

async fn inspect_pid(docker: &Docker, id: &str) -> Option<u32> {
    let state = docker.inspect_container(id, None).await.ok()?.state?;
    state.pid.filter(|&p| p > 0).and_then(|p| u32::try_from(p).ok())
}

/// Pull `image` from its registry unless the engine has it.
async fn pull(docker: &Docker, image: &str) -> Result<(), String> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    let options = CreateImageOptionsBuilder::new().from_image(image).build();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            let why = innermost(&e);
            let hint = if why.contains("manifest unknown") || why.contains("not found") {
                "the registry does not have it: push it (`ferry image push`, `ferry release create --source`) or fix the release's digest"
            } else {
                "check that the project's registry runs and answers on 127.0.0.1"
            };
            return Err(format!("cannot pull image {image}: {why}; {hint}"));
        }
    }
    Ok(())
}

struct ContainerRun {
    docker: Docker,
    id: String,
    exited: watch::Receiver<Option<Exit>>,
    removals: Removals,
    /// Set once ferry stops it: a SIGKILL after the stop timeout is then no OOM kill.
    stopping: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl TaskDriver for DockerDriver {
    async fn start(&self, run: &RunSpec, log: &TaskLog) -> Result<Started, String> {
        let docker = self.client().await?.clone();
        if let Some(left) = self.claim(run) {
            log.note(&format!(
                "took over container {} on port {} (left by a killed agent)",
                short(&left.id),
                left.port
            ));
            let watched = Watched { port: left.port, pid: left.pid, adopted: true };
            return Ok(watch(docker, left.id, watched, log, self.removals.clone()).await);
        }
        let Some(image) = run.image_ref.clone() else {
            return Err("the revision names no image for the Docker driver".into());
        };
        pull(&docker, &image).await?;
        let mut env = run.env.clone();
        if let Some(port) = run.app_port {
            env.insert("PORT".into(), port.to_string());
        }
        let port_text = run.app_port.map(|p| p.to_string()).unwrap_or_default();
        let cmd: Vec<String> = run.command.iter().map(|a| a.replace("${PORT}", &port_text)).collect();
        // One-off tasks publish nothing: nobody sends them requests.
        let host_port = match (run.kind, run.app_port) {
            (TaskKind::Service, Some(_)) => Some(free_port().map_err(|e| format!("no free port: {e}"))?),
            _ => None,
        };
        let mut host = HostConfig {
            // Docker's init as PID 1: it forwards signals to the app, so SIGTERM stops an app
            // without a handler at once (as it does a process, and as ECS's
            // `initProcessEnabled`); as PID 1 itself, the app would ignore it and wait for
            // the SIGKILL after `stop_timeout`. It also reaps the app's own children.
            init: Some(true),
            memory: Some(i64::from(run.memory_mib.max(6)) * 1024 * 1024),
            // No swap beyond the limit, so the limit is what an OOM kill reports.
            memory_swap: Some(i64::from(run.memory_mib.max(6)) * 1024 * 1024),
            ..Default::default()
        };
        let mut exposed = None;
        if let (Some(inner), Some(outer)) = (run.app_port, host_port) {
            let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(outer.to_string()) };
            host.port_bindings = Some(HashMap::from([(format!("{inner}/tcp"), Some(vec![binding]))]));
            exposed = Some(vec![format!("{inner}/tcp")]);
        }
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: (!cmd.is_empty()).then(|| cmd.clone()),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(self.labels(run)),
            exposed_ports: exposed,
            stop_timeout: Some(run.stop_timeout.as_secs().max(1) as i64),
            host_config: Some(host),
            ..Default::default()
        };
        let name = format!("ferry-{}-{}-{}-{}", self.project, run.stage, run.app, run.task);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| format!("cannot create a container of {image}: {}", innermost(&e)))?;
        if let Err(e) = docker.start_container(&created.id, None).await {
            remove(&docker, &created.id).await;
            return Err(format!("container of {image} failed to start: {}", innermost(&e)));
        }
        let pid = inspect_pid(&docker, &created.id).await;
        // Names only: secret values never reach a log.
        let shown = if cmd.is_empty() { "the image's command".to_string() } else { cmd.join(" ") };
        let published = host_port.map(|p| format!(", port {port_text} on 127.0.0.1:{p}")).unwrap_or_default();
        log.note(&format!("started container {} of {image}{published}: {shown}", short(&created.id)));
        let watched = Watched { port: host_port.unwrap_or(0), pid, adopted: false };
        Ok(watch(docker, created.id, watched, log, self.removals.clone()).await)
    }
}

/// What [`watch`] reports of a container: its published port and pid, and whether it was
/// taken over from a killed agent.
struct Watched {
    port: u16,
    pid: Option<u32>,
    adopted: bool,
}

/// Follow a started container: its output into the log, its end into the exit channel.
async fn watch(docker: Docker, id: String, watched: Watched, log: &TaskLog, removals: Removals) -> Started {
    let Watched { port, pid, adopted } = watched;
    let mut options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true);
    if adopted {
        // What it printed before is in the killed agent's log of its task.
        options = options.since(chrono::Utc::now().timestamp() as i32);
    }
    let mut output = docker.logs(&id, Some(options.build()));
    let to = log.clone();
    let output = tokio::spawn(async move {
        let mut partial: BTreeMap<bool, Vec<u8>> = BTreeMap::new();
        while let Some(Ok(chunk)) = output.next().await {
            let err = matches!(chunk, bollard::container::LogOutput::StdErr { .. });
            let buf = partial.entry(err).or_default();
            buf.extend_from_slice(&chunk.into_bytes());
            while let Some(at) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=at).collect();
                to.line(&String::from_utf8_lossy(&line));
            }
        }
        for rest in partial.values().filter(|b| !b.is_empty()) {
            to.line(&String::from_utf8_lossy(rest));
        }
    });
    let (tx, exited) = watch::channel(None);
    let (waiter, wid) = (docker.clone(), id.clone());
    let stopping = Arc::new(AtomicBool::new(false));
    let stopped_by_us = stopping.clone();
    tokio::spawn(async move {
        // The wait answers once the container ended (an error for a non-zero code, too);
        // the inspection says how.
        let _ = waiter.wait_container(&wid, None).next().await;
        // Its last lines in the log before its end is reported: the log then reads in
        // order ("exited", "stopped" after the output), and whoever reads it once the task
        // stopped finds all of it (a one-off task's output was sometimes cut off before).
        let _ = tokio::time::timeout(OUTPUT_DRAIN, output).await;
        let _ = tx.send(Some(ended(&waiter, &wid, &stopped_by_us).await));
    });
    let handle = ContainerRun { docker, id, exited: exited.clone(), removals, stopping };
    Started { handle: Box::new(handle), port, pid, exited }
}

/// How an ended container ended: its exit code, and whether the kernel killed it for memory.
async fn ended(docker: &Docker, id: &str, stopping: &AtomicBool) -> Exit {
    let state = match docker.inspect_container(id, None).await {
        Ok(c) => c.state.unwrap_or_default(),
        Err(e) => return Exit { code: None, text: format!("lost the container: {}", innermost(&e)), signaled: false },
    };
    let code = state.exit_code.and_then(|c| i32::try_from(c).ok());
    let killed = code == Some(128 + libc::SIGKILL) && !stopping.load(Ordering::SeqCst);
    let oom = state.oom_killed == Some(true)
        || (killed && oom_event(docker, id, state.started_at.as_deref().unwrap_or_default()).await);
    let mut text = match code {
        Some(c) => format!("exit code {c}"),
        None => "unknown status".to_string(),
    };
    if oom {
        text.push_str(", OOMKilled: it ran out of its memory limit (raise the app's `memory`)");
    }
    if let Some(err) = state.error.filter(|e| !e.is_empty()) {
        text.push_str(&format!(", {err}"));
    }
    // 128 + signal, as a shell reports it: a stop by signal, unless the app chose the code.
    let signaled = code.is_some_and(|c| c > 128 && c <= 128 + 64) && !oom;
    Exit { code, text, signaled }
}

/// Whether the engine reported an `oom` event of container `id` (started at `started_at`,
/// RFC 3339), waiting for it at most [`OOM_EVENT_WAIT`]. Docker sets `OOMKilled` only when
/// containerd's OOM event reaches it before the exit event; on a busy machine it sometimes
/// comes after (containerd/containerd#8180), and the container then reads as a plain exit
/// 137, but the engine still logs the `oom` event. Asked only of a container SIGKILLed by
/// someone other than ferry, so a stop's SIGKILL after the timeout costs no wait.
async fn oom_event(docker: &Docker, id: &str, started_at: &str) -> bool {
    let now = chrono::Utc::now();
    let since = chrono::DateTime::parse_from_rfc3339(started_at).map_or(now.timestamp() - 3600, |t| t.timestamp());
    let until = now + OOM_EVENT_WAIT;
    let filters = HashMap::from([
        ("container".to_string(), vec![id.to_string()]),
        ("event".to_string(), vec!["oom".to_string()]),
    ]);
    // Past events since its start, then live ones until `until`, when the stream ends.
    let options = EventsOptions {
        since: Some(since.to_string()),
        until: Some(format!("{}.{:09}", until.timestamp(), until.timestamp_subsec_nanos())),
        filters: Some(filters),
    };
    let mut events = docker.events(Some(options));
    matches!(tokio::time::timeout(OOM_EVENT_WAIT + Duration::from_secs(1), events.next()).await, Ok(Some(Ok(_))))
}

#[async_trait::async_trait]
impl health::CommandCheck for ContainerRun {
    async fn run_check(&self, argv: &[String], env: &BTreeMap<String, String>, timeout: Duration) -> CheckResult {
        let attempt = async {
            let config = ExecConfig {
                cmd: Some(argv.to_vec()),
                env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = self.docker.create_exec(&self.id, config).await.map_err(|e| innermost(&e))?;
            let mut text = String::new();
            if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, None).await.map_err(|e| innermost(&e))?
            {
                while let Some(Ok(chunk)) = output.next().await {
                    if text.len() < 4096 {
                        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                    }
                }
            }
            let code = self.docker.inspect_exec(&exec.id).await.map_err(|e| innermost(&e))?.exit_code;
            Ok::<_, String>((code, text))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok((code, text))) => {
                let status = code.map(|c| format!("exit status: {c}")).unwrap_or_else(|| "no exit status".into());
                health::command_result(code == Some(0), &status, &text)
            }
            Ok(Err(e)) => CheckResult { ok: false, output: format!("health command: {e}") },
            Err(_) => CheckResult { ok: false, output: format!("health command timed out after {timeout:?}") },
        }
    }
}

#[async_trait::async_trait]
impl Running for ContainerRun {
    async fn stop(&self, timeout: Duration) -> Option<Exit> {
        // Docker's stop: SIGTERM, SIGKILL after `t` seconds (rounded up: never shorter).
        let t = timeout.as_millis().div_ceil(1000).max(1);
        self.stopping.store(true, Ordering::SeqCst);
        let options = StopContainerOptionsBuilder::new().t(i32::try_from(t).unwrap_or(i32::MAX)).build();
        let _ = self.docker.stop_container(&self.id, Some(options)).await;
        let mut exited = self.exited.clone();
        tokio::time::timeout(timeout + Duration::from_secs(10), super::driver::wait_exit(&mut exited)).await.ok()
    }

    async fn cleanup(&self) {
        remove(&self.docker, &self.id).await;
    }

    async fn release(&self) {
        self.removals.start(self.docker.clone(), self.id.clone());
    }
}
