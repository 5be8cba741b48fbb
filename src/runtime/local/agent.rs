//! The agent process (`ferry agent run`): one per project, holding `.ferry/agent/agent.lock`
//! for its whole life so a second one started in a race exits at once. It answers
//! [`protocol`](super::protocol) requests on its Unix socket, reconciles services every
//! 100 ms (and whenever a task changes), and exits when asked (`Shutdown`, SIGTERM,
//! SIGINT) — stopping every task first — or when a removal leaves nothing running.
//!
//! State is in memory only: process tasks are the agent's children and die with it, and the
//! recorded state (state store) is what `ferry commit` converges to again. What a killed
//! agent's tasks left running (their own children) the next agent kills at start
//! ([`leftovers`](super::leftovers)). Containers (the Docker driver) outlive a killed agent:
//! the next one finds them by label and lets tasks of their revision take them over
//! ([`docker`](super::docker)), so a commit after the crash starts no duplicate.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};

use super::docker::{self, DockerDriver};
use super::protocol::{AgentStatus, Reply, Request};
use super::service::State;
use super::shared::Agent;
use super::{leftovers, proxy, task, Layout};
use crate::poll::Poll;
use crate::private_files;
use crate::runtime::{RuntimeError, RuntimeResult, ServiceStatus, TaskKind};

/// How long `Down` and `Shutdown` wait for tasks to stop before answering anyway.
const STOP_WAIT: Duration = Duration::from_secs(120);
/// The longest an `Observe` long poll is held.
const MAX_OBSERVE_WAIT: Duration = Duration::from_secs(5);

/// Run the agent for the project at `layout` until it exits. Returns `Ok(false)` when
/// another agent already holds the lock.
pub async fn run(layout: Layout) -> io::Result<bool> {
    private_files::create_dir_all(&layout.agent_dir())?;
    let lock = private_files::open_write(&layout.lock_file())?;
    // SAFETY: flock on a descriptor we own; released when the process exits.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(false);
    }
    let socket = layout.socket();
    match layout.temp_socket_dir() {
        // Under the shared temp dir: made 0700 here, and one that exists is used only when it
        // is ours and private (never made private by us: it may be someone else's).
        Some(dir) => {
            match std::fs::DirBuilder::new().mode(private_files::DIR_MODE).create(&dir) {
                Ok(()) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(private_files::DIR_MODE))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            super::check_private_dir(&dir)
                .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
        }
        None => {
            if let Some(dir) = socket.parent() {
                private_files::create_dir_all(dir)?;
            }
        }
    }
    // We hold the lock, so a socket file left here is from a dead agent, and so are any
    // processes still in its session: kill them before anything starts (see `leftovers`).
    let _ = std::fs::remove_file(&socket);
    let previous = leftovers::previous_agent(&layout.pid_file());
    let killed_leftovers = previous.map(leftovers::kill_leftovers).unwrap_or_default();
    if let Some(previous) = previous.filter(|_| !killed_leftovers.is_empty()) {
        eprintln!(
            "{} killed {} process(es) left by agent {previous}, which ended without stopping its tasks: pids {:?}",
            Utc::now().to_rfc3339(),
            killed_leftovers.len(),
            killed_leftovers
        );
    }
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    private_files::write(&layout.pid_file(), format!("{}\n", std::process::id()).as_bytes())?;
    eprintln!("{} ferry agent {} listening on {}", Utc::now().to_rfc3339(), std::process::id(), socket.display());

    let docker = DockerDriver::new(docker::project_label(layout.root()));
    // Containers outlive a killed agent (processes do not): find them before serving.
    for note in docker.adopt_leftovers().await {
        eprintln!("{} {note}", Utc::now().to_rfc3339());
    }
    let agent = Arc::new(Agent {
        layout: layout.clone(),
        state: Mutex::new(State::default()),
        reconcile: Notify::new(),
        exit: Notify::new(),
        started_at: Utc::now(),
        busy: AtomicUsize::new(0),
        killed_leftovers,
        passes: watch::channel(0).0,
        docker,
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((conn, _)) = accepted {
                    if let Err(e) = super::check_peer(&conn, &socket) {
                        eprintln!("{} {e}", Utc::now().to_rfc3339());
                        continue;
                    }
                    agent.busy.fetch_add(1, Ordering::SeqCst);
                    let agent = agent.clone();
                    tokio::spawn(async move {
                        let _ = serve_connection(&agent, conn).await;
                        agent.busy.fetch_sub(1, Ordering::SeqCst);
                        agent.wake_reconciler();
                    });
                }
            }
            _ = tick.tick() => {
                for note in agent.with_state(|s| s.roll_back_orphans(crate::process::alive)) {
                    eprintln!("{} {note}", Utc::now().to_rfc3339());
                }
                reconcile(&agent);
                if agent.docker.has_leftovers() {
                    let settled = |stage: &str, app: &str| agent.with_state(|s| s.settled(stage, app));
                    for note in agent.docker.sweep_leftovers(settled).await {
                        eprintln!("{} {note}", Utc::now().to_rfc3339());
                    }
                }
                // A removed socket (project deleted, or another agent took over after a
                // crash) means nobody can reach us: stop rather than run unmanaged tasks.
                if !socket.exists() {
                    eprintln!("{} socket {} is gone; exiting", Utc::now().to_rfc3339(), socket.display());
                    break;
                }
            }
            _ = agent.reconcile.notified() => reconcile(&agent),
            _ = agent.exit.notified() => break,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        let idle = agent.with_state(|s| s.exit_when_idle && s.services.is_empty() && s.live_tasks(None) == 0);
        if idle && agent.busy.load(Ordering::SeqCst) == 0 {
            eprintln!("{} nothing left to run; exiting", Utc::now().to_rfc3339());
            break;
        }
    }
    // Stop answering first: a client that connects while the tasks stop would otherwise sit
    // in the listener's backlog and be reset when we exit. With the socket gone it learns at
    // once that no agent runs (and one it starts waits for our lock).
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    // Stop everything before leaving: tasks are our children and must not outlive us.
    agent.with_state(|s| s.remove_stage(None));
    stop_all(&agent).await;
    for note in agent.docker.sweep_leftovers(|_, _| true).await {
        eprintln!("{} {note}", Utc::now().to_rfc3339());
    }
    if !agent.docker.removals_finished(STOP_WAIT).await {
        eprintln!(
            "{} containers of stopped tasks were not all removed; the next agent removes them",
            Utc::now().to_rfc3339()
        );
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(layout.pid_file());
    eprintln!("{} ferry agent {} exited", Utc::now().to_rfc3339(), std::process::id());
    drop(lock);
    Ok(true)
}

/// Reconcile, then start runners and close listeners outside the lock.
fn reconcile(agent: &Arc<Agent>) {
    let out = agent.with_state(|s| s.reconcile());
    for handle in out.closed {
        handle.abort();
    }
    for id in out.start {
        tokio::spawn(task::run(agent.clone(), id));
    }
    agent.passes.send_modify(|n| *n = n.wrapping_add(1));
}

/// Reconcile until no task is live (bounded by [`STOP_WAIT`]).
async fn stop_all(agent: &Arc<Agent>) {
    let mut poll = Poll::new(Duration::from_millis(10), Duration::from_millis(100)).within(STOP_WAIT);
    loop {
        reconcile(agent);
        if agent.with_state(|s| s.live_tasks(None) == 0 && s.services.is_empty()) || !poll.wait().await {
            return;
        }
    }
}

async fn serve_connection(agent: &Arc<Agent>, conn: UnixStream) -> io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handle(agent, req).await.unwrap_or_else(Reply::error),
        Err(e) => Reply::error(RuntimeError::Invalid(format!("bad request: {e}"))),
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

async fn handle(agent: &Arc<Agent>, req: Request) -> RuntimeResult<Reply> {
    match req {
        Request::Status => Ok(Reply::Status(agent.with_state(|s| {
            let mut stages: Vec<String> = s.services.keys().map(|(st, _)| st.clone()).collect();
            stages.extend(s.tasks.values().map(|t| t.stage.clone()));
            stages.sort();
            stages.dedup();
            AgentStatus {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: agent.started_at,
                stages,
                tasks: s.live_tasks(None),
                killed_leftovers: agent.killed_leftovers.clone(),
            }
        }))),
        Request::Register { stage, spec, secrets, driver } => {
            let id = agent.with_state(|s| s.register(&stage, *spec, secrets, driver))?;
            Ok(Reply::Revision { id })
        }
        Request::Deploy { stage, app, revision, desired, settings, owner } => {
            let port = agent.with_state(|s| s.revision(&stage, &app, &revision).map(|r| r.spec.config.port))?;
            ensure_listener(agent, &stage, &app, port).await?;
            let id = agent.with_state(|s| {
                let id = s.deploy(&stage, &app, &revision, desired, Some(settings), "superseded by a newer rollout")?;
                s.set_owner(&stage, &app, &id, owner);
                Ok::<_, RuntimeError>(id)
            })?;
            agent.wake_reconciler();
            Ok(Reply::Rollout { id })
        }
        Request::RollBack { stage, app, revision } => {
            let port = agent.with_state(|s| s.revision(&stage, &app, &revision).map(|r| r.spec.config.port))?;
            let desired = agent
                .with_state(|s| s.services.get(&(stage.clone(), app.clone())).map(|svc| svc.desired))
                .ok_or_else(|| RuntimeError::NotFound(format!("app {app} is not running in stage {stage}")))?;
            ensure_listener(agent, &stage, &app, port).await?;
            let reason = format!("rolled back to {revision}");
            let id = agent.with_state(|s| s.deploy(&stage, &app, &revision, desired, None, &reason))?;
            agent.wake_reconciler();
            Ok(Reply::Rollout { id })
        }
        Request::Observe { stage, apps, changed_since, wait_ms, current } => {
            let wait = Duration::from_millis(wait_ms).min(MAX_OBSERVE_WAIT);
            let (services, version) = observe_changed(agent, &stage, &apps, current, changed_since, wait).await;
            Ok(Reply::Services { services, version: Some(version) })
        }
        Request::Scale { stage, app, desired } => {
            agent.with_state(|s| match s.services.get_mut(&(stage.clone(), app.clone())) {
                Some(svc) if !svc.removing => {
                    svc.desired = desired;
                    Ok(())
                }
                _ => Err(RuntimeError::NotFound(format!("app {app} is not running in stage {stage}"))),
            })?;
            agent.wake_reconciler();
            Ok(Reply::Done)
        }
        Request::Remove { stage, app } => {
            agent.with_state(|s| {
                if let Some(svc) = s.services.get_mut(&(stage.clone(), app.clone())) {
                    svc.removing = true;
                    s.exit_when_idle = true;
                }
            });
            agent.wake_reconciler();
            Ok(Reply::Done)
        }
        Request::RunTask { stage, spec } => {
            let app = spec.app.clone();
            let revision = spec.revision.clone();
            let id = agent.with_state(|s| s.add_task(&stage, &app, &revision, Some(*spec)))?;
            tokio::spawn(task::run(agent.clone(), id.clone()));
            Ok(Reply::Task { id })
        }
        Request::StopTask { stage, app, task } => {
            agent.with_state(|s| match s.tasks.get(&task) {
                Some(t) if t.stage == stage && t.app == app => {
                    // A service task stopped by hand is replaced, as on ECS.
                    let drain = t.kind == TaskKind::Service;
                    s.request_stop(&task, "stopped by request", drain);
                    Ok(())
                }
                _ => Err(RuntimeError::NotFound(format!("no task {task} of app {app} in stage {stage}"))),
            })?;
            agent.wake_reconciler();
            Ok(Reply::Done)
        }
        Request::Down { stage } => {
            agent.with_state(|s| s.remove_stage(stage.as_deref()));
            let of_stage = |st: &str, _: &str| stage.as_deref().is_none_or(|x| x == st);
            for note in agent.docker.sweep_leftovers(of_stage).await {
                eprintln!("{} {note}", Utc::now().to_rfc3339());
            }
            agent.wake_reconciler();
            let mut poll = Poll::new(Duration::from_millis(10), Duration::from_millis(100)).within(STOP_WAIT);
            loop {
                let done = agent.with_state(|s| {
                    s.live_tasks(stage.as_deref()) == 0
                        && !s.services.keys().any(|(st, _)| stage.as_ref().is_none_or(|x| x == st))
                });
                if done || !poll.wait().await {
                    break;
                }
            }
            // `down` leaves no container: those of the tasks just stopped are removed in the
            // background (`docker::Removals`).
            let left =
                poll.deadline().map_or(Duration::ZERO, |d| d.saturating_duration_since(tokio::time::Instant::now()));
            agent.docker.removals_finished(left).await;
            Ok(Reply::Done)
        }
        Request::Shutdown => {
            agent.exit.notify_one();
            Ok(Reply::Done)
        }
    }
}

/// Make sure the app's port is bound (a new service, or a rollout that changes the port).
async fn ensure_listener(agent: &Arc<Agent>, stage: &str, app: &str, port: Option<u16>) -> RuntimeResult<()> {
    let Some(port) = port else { return Ok(()) };
    let key = (stage.to_string(), app.to_string());
    let bound = agent.with_state(|s| s.services.get(&key).is_some_and(|svc| svc.listeners.contains_key(&port)));
    if bound {
        return Ok(());
    }
    let listener = proxy::bind(port)
        .await
        .map_err(|e| RuntimeError::Invalid(format!("app {app}: cannot listen on 127.0.0.1:{port}: {e}")))?;
    let handle = tokio::spawn(proxy::serve(agent.clone(), key.clone(), listener));
    // The service record is created by the deploy that follows; keep the handle until then.
    agent.with_state(|s| {
        let svc = s.services.entry(key).or_insert_with(|| super::service::Service {
            desired: 0,
            rollouts: Vec::new(),
            removing: false,
            listeners: Default::default(),
            next_backend: 0,
        });
        svc.listeners.insert(port, handle);
    });
    Ok(())
}

/// `Observe`, as a long poll when `since` is given: the status of `apps` (`current`: see
/// [`Request::Observe`]) and its
/// fingerprint as soon as that differs from `since`, or when `wait` is up. Looked at again
/// after every reconcile pass: passes follow every change of a task's state (and run at
/// least every 100 ms), and the rollout states they set are what a watcher waits for. A pass
/// that left the status as it was costs a comparison, not a fingerprint: with 20 apps the
/// status is tens of kB of JSON, and passes come many times a second during a rollout.
async fn observe_changed(
    agent: &Agent,
    stage: &str,
    apps: &[String],
    current: bool,
    since: Option<u64>,
    wait: Duration,
) -> (Vec<ServiceStatus>, u64) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut passes = agent.passes.subscribe();
    // The status `since` fingerprints, once seen.
    let mut seen: Option<Vec<ServiceStatus>> = None;
    loop {
        passes.borrow_and_update();
        let services = agent.with_state(|s| s.observe(stage, apps, current));
        let timed_out = tokio::time::Instant::now() >= deadline;
        if timed_out || seen.as_ref() != Some(&services) {
            let version = fingerprint(&services);
            if timed_out || since != Some(version) {
                return (services, version);
            }
            seen = Some(services);
        }
        tokio::select! {
            _ = passes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A hash of what an observation says. Only the agent computes it, so it needs to be stable
/// within this process only.
fn fingerprint(services: &[ServiceStatus]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_vec(services).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}
