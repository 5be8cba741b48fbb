//! The local runtime: ECS in miniature on this machine.
//!
//! One background agent per project ([`agent`]) supervises tasks as child processes
//! ([`task`]), runs their health checks ([`health`]), gives each app a stable port that
//! proxies only to healthy tasks of the active revision ([`proxy`]) and keeps each task's
//! log ([`logs`]). The rollout rules live in [`service`]. [`LocalRuntime`] is the client:
//! it implements [`Runtime`] by sending [`protocol`] requests to the agent, starting the
//! agent on demand.
//!
//! Files under the project root, all private to the owner (`private_files`): `.ferry/agent/`
//! holds `agent.sock`, `agent.pid`, `agent.lock` and `agent.log`; task output goes to
//! `.ferry/logs/<stage>/<app>/<task-id>.log`.

pub mod agent;
pub mod docker;
pub mod driver;
pub mod health;
pub mod leftovers;
pub mod logs;
pub mod protocol;
pub mod proxy;
pub mod secrets;
pub mod service;
pub mod shared;
pub mod spawner;
pub mod task;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::config::{DeploySettings, LocalDriver, SecretRef};
use crate::poll::Poll;
use crate::private_files;
use crate::registry::serve::ProjectRegistry;
use crate::runtime::live::{LiveService, RecordedService};
use crate::runtime::{
    LogQuery, LogStream, RevisionId, RevisionSpec, RolloutId, Runtime, RuntimeError, RuntimeResult, ServiceStatus,
    TaskId, TaskSpec,
};
use protocol::{AgentStatus, Reply, Request};

/// Where the agent and task logs live under a project root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn agent_dir(&self) -> PathBuf {
        self.root.join(".ferry").join("agent")
    }
    /// The agent's socket. Unix socket paths are limited to about 100 bytes, so a deep
    /// project falls back to a per-project folder under the temp dir, named by a hash of
    /// the root so both sides find it (see [`Layout::temp_socket_dir`]).
    pub fn socket(&self) -> PathBuf {
        let normal = self.agent_dir().join("agent.sock");
        if normal.as_os_str().len() < 100 {
            return normal;
        }
        let hash = crate::config::Digest::of_bytes(self.root.as_os_str().as_encoded_bytes());
        std::env::temp_dir().join(format!("ferry-{}", &hash.hex()[..16])).join("agent.sock")
    }

    /// The socket's folder when it is the fallback under the shared temp dir. Its name is
    /// predictable, so another local user could create it first and listen there to receive
    /// the `register` request and its secret values: both sides check it
    /// ([`check_private_dir`]) before use.
    pub fn temp_socket_dir(&self) -> Option<PathBuf> {
        let socket = self.socket();
        let dir = socket.parent()?;
        (!dir.starts_with(&self.root)).then(|| dir.to_path_buf())
    }
    pub fn pid_file(&self) -> PathBuf {
        self.agent_dir().join("agent.pid")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.agent_dir().join("agent.lock")
    }
    pub fn agent_log(&self) -> PathBuf {
        self.agent_dir().join("agent.log")
    }
    pub fn logs_dir(&self, stage: &str, app: &str) -> PathBuf {
        self.root.join(".ferry").join("logs").join(stage).join(app)
    }
    pub fn task_log(&self, stage: &str, app: &str, task: &TaskId) -> PathBuf {
        self.logs_dir(stage, app).join(format!("{task}.log"))
    }
    /// The pid the agent wrote, if any (it may be stale).
    pub fn agent_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()
    }
}

/// Refuse `dir` unless it is a real folder (not a link) owned by this process's user and
/// open to nobody else: a folder under the shared temp dir that another user made, or left
/// open, lets that user put their own socket where ferry sends secrets.
pub fn check_private_dir(dir: &Path) -> RuntimeResult<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o7777;
    let problem = if !meta.is_dir() {
        "it is not a folder (a link or a file)".to_string()
    } else if meta.uid() != me {
        format!("it belongs to uid {}, not to you (uid {me})", meta.uid())
    } else if mode & 0o077 != 0 {
        format!("its mode is {mode:04o}, open to other users (want 0700)")
    } else {
        return Ok(());
    };
    Err(RuntimeError::Invalid(format!(
        "refusing the agent's socket folder {}: {problem}; another user may have made it to receive \
         the secrets ferry sends the agent. Remove it (after checking who made it) and run ferry again",
        dir.display()
    )))
}

/// Refuse a peer on the agent's socket that runs as another user: the folder checks keep
/// others out, and this holds even if they did not (SO_PEERCRED, set by the kernel).
pub fn check_peer(stream: &UnixStream, socket: &Path) -> RuntimeResult<()> {
    let peer = stream.peer_cred()?.uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if peer == me {
        return Ok(());
    }
    Err(RuntimeError::Invalid(format!(
        "refusing the process at the other end of {}: it runs as uid {peer}, not as you (uid {me})",
        socket.display()
    )))
}

/// Send one request to a running agent. `Ok(None)` when no agent listens.
pub async fn request(layout: &Layout, req: &Request) -> RuntimeResult<Option<Reply>> {
    // An agent that has nothing left to run exits; a question that reached it as it did is
    // reset or closed unanswered. Questions that change nothing are asked again, a bounded
    // number of times: the next try finds the socket gone (no agent) or a new agent.
    let read_only = matches!(req, Request::Status | Request::Observe { .. });
    let mut tries = 0;
    loop {
        match exchange(layout, req).await {
            Err(e) if read_only && tries < 3 && agent_went_away(&e) => tries += 1,
            other => return other,
        }
    }
}

/// The connection ended before an answer: the agent exited (or crashed) meanwhile.
fn agent_went_away(e: &RuntimeError) -> bool {
    match e {
        RuntimeError::Io(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
        ),
        RuntimeError::Unavailable(m) => m == CLOSED_UNANSWERED,
        _ => false,
    }
}

const CLOSED_UNANSWERED: &str = "the agent closed the connection without answering";

/// One question and its answer on a new connection; see [`request`].
async fn exchange(layout: &Layout, req: &Request) -> RuntimeResult<Option<Reply>> {
    let socket = layout.socket();
    if let Some(dir) = layout.temp_socket_dir() {
        match check_private_dir(&dir) {
            Err(RuntimeError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other?,
        }
    }
    let stream = match UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    check_peer(&stream, &socket)?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(req).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    if answer.is_empty() {
        return Err(RuntimeError::Unavailable(CLOSED_UNANSWERED.into()));
    }
    let reply: Reply = serde_json::from_str(&answer)
        .map_err(|e| RuntimeError::Unavailable(format!("unreadable answer from the agent: {e}")))?;
    reply.into_result().map(Some)
}

/// The running agent's status, or `None` when none runs.
pub async fn agent_status(layout: &Layout) -> RuntimeResult<Option<AgentStatus>> {
    match request(layout, &Request::Status).await? {
        Some(Reply::Status(s)) => Ok(Some(s)),
        Some(other) => Err(unexpected(other)),
        None => Ok(None),
    }
}

/// Start the agent detached (`PROGRAM agent run` in its own session, output to
/// `agent.log`) unless one runs, and wait until it answers.
pub async fn start_agent(layout: &Layout, program: &Path) -> RuntimeResult<AgentStatus> {
    start_agent_with(layout, program, &[]).await
}

/// [`start_agent`] with extra environment variables for the agent (tests and embedders).
pub async fn start_agent_with(layout: &Layout, program: &Path, env: &[(String, String)]) -> RuntimeResult<AgentStatus> {
    if let Some(s) = agent_status(layout).await? {
        return Ok(s);
    }
    private_files::create_dir_all(&layout.agent_dir())?;
    let log = private_files::open_append(&layout.agent_log())?;
    let mut cmd = std::process::Command::new(program);
    cmd.arg("-C")
        .arg(layout.root())
        .args(["agent", "run"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid and close_range are async-signal-safe system calls. setsid detaches the
    // agent from our session and terminal so that it outlives us and ignores our Ctrl-C.
    // close_range marks every descriptor above stderr close-on-exec: whatever ferry inherited
    // without that flag (a CI runner's output pipe, say) must not live on in the agent and
    // its tasks, or whoever waits for that pipe to close would wait for as long as the agent
    // runs. std's own exec-error pipe is close-on-exec already, so it keeps working. An old
    // kernel without close_range (ENOSYS) leaves the descriptors as they were.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // Reap it whenever it exits, so a long-lived starter (a test) keeps no zombie.
    std::thread::spawn(move || child.wait());
    let mut poll = Poll::new(Duration::from_millis(10), Duration::from_millis(100)).within(Duration::from_secs(10));
    loop {
        if let Some(s) = agent_status(layout).await? {
            return Ok(s);
        }
        if !poll.wait().await {
            return Err(RuntimeError::Unavailable(format!(
                "the agent did not start within 10s; see {}",
                layout.agent_log().display()
            )));
        }
    }
}

/// Ask the agent to stop its tasks and exit, and wait (up to `timeout`) until it is gone.
/// `false` when no agent was running.
pub async fn stop_agent(layout: &Layout, timeout: Duration) -> RuntimeResult<bool> {
    let pid = layout.agent_pid();
    if request(layout, &Request::Shutdown).await?.is_none() {
        return Ok(false);
    }
    let mut poll = Poll::new(Duration::from_millis(10), Duration::from_millis(100)).within(timeout);
    loop {
        let alive = pid.is_some_and(crate::process::alive);
        if !alive && !layout.socket().exists() {
            return Ok(true);
        }
        if !poll.wait().await {
            return Err(RuntimeError::Unavailable(format!("the agent did not exit within {}s", timeout.as_secs())));
        }
    }
}

fn unexpected(reply: Reply) -> RuntimeError {
    RuntimeError::Unavailable(format!("unexpected answer from the agent: {reply:?}"))
}

/// The local runtime for one stage of a project: a client of the project's agent.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    layout: Layout,
    stage: String,
    program: PathBuf,
    /// What [`Runtime::observe_changes`] asked about last; shared by clones.
    last_observed: Arc<Mutex<Option<LastObserved>>>,
    /// How tasks run: `None` is the process driver, as before drivers existed.
    driver: Option<DriverSetting>,
    /// Extra environment of an agent this runtime starts.
    agent_env: Vec<(String, String)>,
}

/// The driver of a stage's tasks, as the client resolved it.
#[derive(Debug, Clone)]
pub struct DriverSetting {
    pub kind: LocalDriver,
    /// Whether the stage file names it.
    pub configured: bool,
    /// Docker: the registry the images are pulled from.
    pub registry: Option<Arc<ProjectRegistry>>,
    /// For messages.
    pub stage_file: Option<PathBuf>,
    /// Set once the engine answered: the check is made once per runtime, not once per app
    /// registered (a 20-app commit connected, negotiated and pinged 20 times).
    pub engine_answered: Arc<tokio::sync::OnceCell<()>>,
}

/// The apps asked about and the version of the agent's answer (`None`: the agent gave
/// none, so it cannot hold answers: none runs, or an older one).
type LastObserved = (Vec<String>, Option<u64>);

impl LocalRuntime {
    /// The runtime of `stage` in the project at `root`. The agent is started on demand with
    /// this executable (`ferry`); see [`LocalRuntime::with_agent_program`].
    pub fn new(root: impl Into<PathBuf>, stage: impl Into<String>) -> Self {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ferry"));
        LocalRuntime {
            layout: Layout::new(root),
            stage: stage.into(),
            program,
            last_observed: Default::default(),
            driver: None,
            agent_env: Vec::new(),
        }
    }

    /// Start the agent with `name=value` in its environment (tests mark their containers
    /// with [`docker::EXTRA_LABELS_ENV`]).
    pub fn with_agent_env(mut self, name: &str, value: &str) -> Self {
        self.agent_env.push((name.to_string(), value.to_string()));
        self
    }

    /// Run tasks with `driver` (the default is the process driver).
    pub fn with_driver(mut self, driver: DriverSetting) -> Self {
        self.driver = Some(driver);
        self
    }

    /// The driver for a stage's `[runtime] driver`: the configured one, or the detected one
    /// ([`resolve_driver`]), with the registry Docker pulls from.
    pub async fn driver_for(
        configured: Option<LocalDriver>,
        registry: Arc<ProjectRegistry>,
        stage_file: &Path,
    ) -> DriverSetting {
        let (kind, configured) = resolve_driver(configured).await;
        DriverSetting {
            kind,
            configured,
            registry: Some(registry),
            stage_file: Some(stage_file.to_path_buf()),
            engine_answered: Default::default(),
        }
    }

    /// The driver its tasks run with.
    pub fn driver(&self) -> LocalDriver {
        self.driver.as_ref().map_or(LocalDriver::Process, |d| d.kind)
    }

    /// The driver part of a `Register` request; for Docker, the image's address in the
    /// registry (which is found, or started, now).
    async fn driver_request(&self, spec: &RevisionSpec) -> RuntimeResult<Option<protocol::Driver>> {
        let Some(setting) = &self.driver else { return Ok(None) };
        let image_ref = match (setting.kind, &setting.registry) {
            (LocalDriver::Docker, Some(registry)) => {
                // Before anything is sent: no engine is one clear error, not a task that
                // fails to start over and over.
                setting
                    .engine_answered
                    .get_or_try_init(|| async { docker::connect().await.map(|_| ()) })
                    .await
                    .map_err(|e| RuntimeError::Unavailable(e.clone()))?;
                let registry = registry.clone();
                let repo = spec.image.clone();
                let name = tokio::task::spawn_blocking(move || registry.get().map(|r| r.image_name(&repo)))
                    .await
                    .map_err(|e| RuntimeError::Unavailable(e.to_string()))?
                    .map_err(|e| RuntimeError::Unavailable(format!("app {}: {e}", spec.app)))?;
                Some(format!("{name}@{}", spec.digest))
            }
            _ => None,
        };
        Ok(Some(protocol::Driver {
            kind: setting.kind,
            configured: setting.configured,
            image_ref,
            stage_file: setting.stage_file.as_ref().map(|f| f.display().to_string()),
        }))
    }

    /// Start the agent with another `ferry` binary (tests and embedders, whose own
    /// executable is not ferry).
    pub fn with_agent_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Send a request, starting the agent when none runs.
    async fn call(&self, req: Request) -> RuntimeResult<Reply> {
        if let Some(reply) = request(&self.layout, &req).await? {
            return Ok(reply);
        }
        start_agent_with(&self.layout, &self.program, &self.agent_env).await?;
        request(&self.layout, &req)
            .await?
            .ok_or_else(|| RuntimeError::Unavailable("the agent stopped right after starting".into()))
    }

    /// Stop every app of this stage and wait for their tasks to stop; the agent exits when
    /// nothing is left. Does not start an agent. `false` when none was running.
    pub async fn down(&self) -> RuntimeResult<bool> {
        match request(&self.layout, &Request::Down { stage: Some(self.stage.clone()) }).await? {
            Some(Reply::Done) => Ok(true),
            Some(other) => Err(unexpected(other)),
            None => Ok(false),
        }
    }

    /// Like [`Runtime::observe`], but without starting an agent (an absent agent runs
    /// nothing: every app is missing).
    pub async fn observe_if_running(&self, apps: &[String]) -> RuntimeResult<Vec<ServiceStatus>> {
        Ok(self.observe_request(apps, false, None, Duration::ZERO).await?.0)
    }

    /// An `Observe` request (a long poll with `since`; `current`: see [`Request::Observe`])
    /// and the version of its answer.
    async fn observe_request(
        &self,
        apps: &[String],
        current: bool,
        since: Option<u64>,
        wait: Duration,
    ) -> RuntimeResult<(Vec<ServiceStatus>, Option<u64>)> {
        match self.observe_agent(apps, current, since, wait).await? {
            Some(answer) => Ok(answer),
            None => Ok((apps.iter().map(|a| ServiceStatus::missing(a)).collect(), None)),
        }
    }

    /// [`observe_request`](Self::observe_request), `None` when no agent runs.
    async fn observe_agent(
        &self,
        apps: &[String],
        current: bool,
        since: Option<u64>,
        wait: Duration,
    ) -> RuntimeResult<Option<(Vec<ServiceStatus>, Option<u64>)>> {
        let wait_ms = if since.is_some() { wait.as_millis().try_into().unwrap_or(u64::MAX) } else { 0 };
        let stage = self.stage.clone();
        let req = Request::Observe { stage, apps: apps.to_vec(), changed_since: since, wait_ms, current };
        match request(&self.layout, &req).await? {
            Some(Reply::Services { services, version }) => Ok(Some((services, version))),
            Some(other) => Err(unexpected(other)),
            None => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    fn restarts_in_place(&self) -> bool {
        true
    }

    async fn register_revision(&self, spec: &RevisionSpec) -> RuntimeResult<RevisionId> {
        let mut secrets = BTreeMap::new();
        for (name, reference) in &spec.config.secrets {
            match reference {
                SecretRef::Env(var) => {
                    let value = std::env::var(var).map_err(|_| {
                        RuntimeError::Invalid(format!(
                            "secret {name} of app {}: environment variable {var} is not set",
                            spec.app
                        ))
                    })?;
                    secrets.insert(name.clone(), value);
                }
                SecretRef::File(_) => {}
                SecretRef::Ssm(_) | SecretRef::SecretsManager(_) => {
                    let app = &spec.app;
                    let hint = "the local runtime cannot read AWS references; use env:NAME or file:PATH";
                    return Err(RuntimeError::Invalid(format!("secret {name} of app {app}: {hint}")));
                }
            }
        }
        let driver = self.driver_request(spec).await?;
        let req = Request::Register { stage: self.stage.clone(), spec: Box::new(spec.clone()), secrets, driver };
        match self.call(req).await? {
            Reply::Revision { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    async fn deploy(
        &self,
        app: &str,
        revision: &RevisionId,
        desired_count: u32,
        settings: &DeploySettings,
    ) -> RuntimeResult<RolloutId> {
        let req = Request::Deploy {
            stage: self.stage.clone(),
            app: app.into(),
            revision: revision.clone(),
            desired: desired_count,
            settings: settings.clone(),
            owner: Some(std::process::id()),
        };
        match self.call(req).await? {
            Reply::Rollout { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    async fn observe(&self, apps: &[String]) -> RuntimeResult<Vec<ServiceStatus>> {
        // Observing never starts an agent: with none running, nothing runs.
        self.observe_if_running(apps).await
    }

    async fn observe_changes(&self, apps: &[String], within: Duration) -> RuntimeResult<Vec<ServiceStatus>> {
        let last = self.last_observed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // New apps to watch are answered at once; then the agent holds the answer until it
        // changes. An agent that cannot (none runs, or an older one) is polled every `within`.
        let since = match last {
            Some((seen, version)) if seen == apps => match version {
                Some(v) => Some(v),
                None => {
                    tokio::time::sleep(within).await;
                    None
                }
            },
            _ => None,
        };
        // A watcher judges the current rollouts: older stopped tasks are left out.
        let (services, version) = self.observe_request(apps, true, since, within).await?;
        *self.last_observed.lock().unwrap_or_else(|p| p.into_inner()) = Some((apps.to_vec(), version));
        Ok(services)
    }

    async fn roll_back(&self, app: &str, to_revision: &RevisionId) -> RuntimeResult<RolloutId> {
        let req = Request::RollBack { stage: self.stage.clone(), app: app.into(), revision: to_revision.clone() };
        match self.call(req).await? {
            Reply::Rollout { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    async fn scale(&self, app: &str, desired_count: u32) -> RuntimeResult<()> {
        let req = Request::Scale { stage: self.stage.clone(), app: app.into(), desired: desired_count };
        match self.call(req).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn remove(&self, app: &str) -> RuntimeResult<()> {
        let req = Request::Remove { stage: self.stage.clone(), app: app.into() };
        match request(&self.layout, &req).await? {
            Some(Reply::Done) | None => Ok(()),
            Some(other) => Err(unexpected(other)),
        }
    }

    async fn run_task(&self, spec: &TaskSpec) -> RuntimeResult<TaskId> {
        let req = Request::RunTask { stage: self.stage.clone(), spec: Box::new(spec.clone()) };
        match self.call(req).await? {
            Reply::Task { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    async fn stop_task(&self, app: &str, task: &TaskId) -> RuntimeResult<()> {
        let req = Request::StopTask { stage: self.stage.clone(), app: app.into(), task: task.clone() };
        match request(&self.layout, &req).await? {
            Some(Reply::Done) => Ok(()),
            Some(other) => Err(unexpected(other)),
            None => Err(RuntimeError::NotFound(format!("no task {task}: the agent is not running"))),
        }
    }

    async fn logs(&self, app: &str, query: &LogQuery) -> RuntimeResult<LogStream> {
        // Log files are plain files on this machine: read them here, no agent needed.
        logs::stream(self.layout.logs_dir(&self.stage, app), query.clone())
    }

    /// What the agent runs, asked without starting one: a crashed agent (or a reboot)
    /// leaves every app missing, and saying why spares the user a hunt.
    async fn live(&self, recorded: &[RecordedService]) -> RuntimeResult<Vec<LiveService>> {
        let apps: Vec<String> = recorded.iter().map(|r| r.spec.app.clone()).collect();
        let answer = self.observe_agent(&apps, false, None, Duration::ZERO).await?;
        let cause = match answer {
            Some(_) => "the local agent runs, but not this app (was the agent restarted?)",
            None => "the local agent is not running (was it killed, or the machine restarted?)",
        };
        let services = match answer {
            Some((services, _)) => services,
            None => apps.iter().map(|a| ServiceStatus::missing(a)).collect(),
        };
        let mut live = crate::runtime::live::by_revision_id(recorded, &services);
        for service in live.iter_mut().filter(|s| !s.present) {
            service.cause = Some(cause.to_string());
        }
        Ok(live)
    }
}

/// Chooses the driver of stages whose `[runtime]` names none (`docker` or `process`), in
/// place of the detection: for a machine (a CI runner, the test suite) whose Docker Engine
/// should not run apps written as host commands.
pub const DRIVER_ENV: &str = "FERRY_LOCAL_DRIVER";

/// The driver a stage uses: the configured one, else [`DRIVER_ENV`], else `docker` when an
/// engine answers and `process` otherwise. Returns whether it was chosen (file or env)
/// rather than detected.
pub async fn resolve_driver(configured: Option<LocalDriver>) -> (LocalDriver, bool) {
    let from_env = match std::env::var(DRIVER_ENV).ok().filter(|v| !v.is_empty()).as_deref() {
        Some("docker") => Some(LocalDriver::Docker),
        Some("process") => Some(LocalDriver::Process),
        Some(other) => {
            let shown = crate::render::escape::escape_line(other);
            eprintln!("warning: {DRIVER_ENV}=`{shown}` is neither `docker` nor `process`; ignored");
            None
        }
        None => None,
    };
    match configured.or(from_env) {
        Some(d) => (d, true),
        None if docker::engine_answers().await => (LocalDriver::Docker, false),
        None => (LocalDriver::Process, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent that exits as a question reaches it closes the connection unanswered; a
    /// question that changes nothing is asked again and finds no agent, instead of failing
    /// (the Docker conformance run saw "connection reset" from `observe` after `remove`).
    #[tokio::test]
    async fn a_read_only_question_to_an_agent_that_exits_meanwhile_finds_no_agent() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        private_files::create_dir_all(&layout.agent_dir()).unwrap();
        let socket = layout.socket();
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let exiting = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            // Gone before answering: the socket file first, as the agent does, then the line.
            std::fs::remove_file(&socket).unwrap();
            drop(conn);
        });
        let req = Request::Observe {
            stage: "dev".into(),
            apps: vec!["web".into()],
            changed_since: None,
            wait_ms: 0,
            current: false,
        };
        let answer = request(&layout, &req).await.expect("a read-only question is asked again");
        assert!(answer.is_none(), "no agent runs any more: {answer:?}");
        exiting.await.unwrap();
    }

    /// A question that changes something is not asked twice: the agent may have acted on it.
    #[tokio::test]
    async fn a_question_that_changes_something_is_not_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        private_files::create_dir_all(&layout.agent_dir()).unwrap();
        let socket = layout.socket();
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let exiting = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            std::fs::remove_file(&socket).unwrap();
            drop(conn);
        });
        let req = Request::Remove { stage: "dev".into(), app: "web".into() };
        let err = request(&layout, &req).await.expect_err("the closed connection is reported");
        assert!(agent_went_away(&err), "{err}");
        exiting.await.unwrap();
    }
}
