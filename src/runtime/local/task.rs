//! The runner of one task: prepares it (port, env, secrets, log), starts it as a child
//! process in its own process group in the release folder, runs its health checks, restarts
//! it with exponential backoff when it crashes or turns unhealthy (service tasks only), and
//! stops it on request: drain → SIGTERM → SIGKILL after the stop timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::agent::Agent;
use super::health::{self, HealthTracker};
use super::logs::{self, TaskLog};
use super::spawner;
use crate::config::{Health as HealthConfig, SecretRef};
use crate::runtime::{Health, Lifecycle, TaskId, TaskKind};

/// Environment variables passed through from the agent: enough to find programs and
/// behave sanely, not the whole environment of whoever started the agent.
const PASSTHROUGH: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM"];
const PASSTHROUGH_PREFIXES: &[&str] = &["LC_", "PYENV_"];

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the backoff: the task was fine for a while.
const BACKOFF_RESET: Duration = Duration::from_secs(60);

/// Everything needed to start one run, copied out of the state.
struct Plan {
    kind: TaskKind,
    dir: PathBuf,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    file_secrets: BTreeMap<String, String>,
    health: HealthConfig,
    /// Whether the TCP liveness check runs ([`health::tcp_liveness`]).
    tcp_check: bool,
    drain: Duration,
    stop_timeout: Duration,
    log_path: PathBuf,
}

/// How one run ended.
enum Outcome {
    Exited(ExitStatus),
    Unhealthy(String),
    StopRequested,
}

/// Run a task until it is stopped (or, for a one-off task, until it exits).
pub async fn run(agent: Arc<Agent>, id: TaskId) {
    let mut backoff = BACKOFF_START;
    loop {
        let Some(plan) = plan(&agent, &id) else { return };
        let log = match TaskLog::open(&plan.log_path) {
            Ok(l) => {
                prune_logs(&agent, &id, &plan.log_path);
                l
            }
            Err(e) => {
                finish(&agent, &id, None, Some(format!("cannot open log {}: {e}", plan.log_path.display())));
                return;
            }
        };
        let started = Instant::now();
        let outcome = match start(&agent, &id, &plan, &log).await {
            Ok((child, port)) => supervise(&agent, &id, &plan, &log, child, port).await,
            Err(reason) => {
                log.note(&reason);
                agent.update(&id, |t| t.stopped_reason = Some(reason.clone()));
                Err(reason)
            }
        };
        let reason = match outcome {
            Ok(Some(code_reason)) => code_reason,
            Ok(None) => return, // stopped on request, or a one-off task finished
            Err(reason) => reason,
        };
        if plan.kind == TaskKind::OneOff {
            finish(&agent, &id, None, Some(reason));
            return;
        }
        // A crash or failed health: count it, wait, start again unless asked to stop.
        if started.elapsed() >= BACKOFF_RESET {
            backoff = BACKOFF_START;
        }
        agent.with_state(|s| s.count_failed(&id));
        let wake = agent.update(&id, |t| {
            t.restarts += 1;
            t.lifecycle = Lifecycle::Pending;
            t.health = Health::Unknown;
            t.pid = None;
            t.wake.clone()
        });
        let Some(wake) = wake else { return };
        log.note(&format!("{reason}; restarting in {}ms", backoff.as_millis()));
        agent.wake_reconciler();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = wake.notified() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if stop_requested(&agent, &id) {
            finish(&agent, &id, None, None);
            return;
        }
    }
}

fn stop_requested(agent: &Agent, id: &TaskId) -> bool {
    agent.update(id, |t| t.stop.is_some()).unwrap_or(true)
}

/// Copy what one run needs out of the state; `None` when the task is gone or asked to stop
/// before it started.
fn plan(agent: &Agent, id: &TaskId) -> Option<Plan> {
    let plan = agent.with_state(|s| {
        let t = s.tasks.get(id)?;
        let rev = s.revision(&t.stage, &t.app, &t.revision).ok()?;
        let config = &rev.spec.config;
        let mut env = config.env.clone();
        env.extend(rev.secrets.clone());
        let mut command = config.command.clone();
        if let Some(one_off) = &t.one_off {
            env.extend(one_off.env.clone());
            if let Some(c) = &one_off.command {
                command = c.clone();
            }
        }
        let file_secrets = config
            .secrets
            .iter()
            .filter_map(|(name, r)| match r {
                SecretRef::File(p) => Some((name.clone(), p.clone())),
                _ => None,
            })
            .collect();
        Some(Plan {
            kind: t.kind,
            dir: rev.spec.local_dir.clone().unwrap_or_default(),
            command,
            env,
            file_secrets,
            health: config.health.clone(),
            tcp_check: health::tcp_liveness(&config.health, config.port),
            drain: rev.spec.config.deploy.drain.to_std(),
            stop_timeout: rev.spec.config.deploy.stop_timeout.to_std(),
            log_path: agent.layout.task_log(&t.stage, &t.app, &t.id),
        })
    })?;
    if stop_requested(agent, id) {
        finish(agent, id, None, None);
        return None;
    }
    Some(plan)
}

/// PROVISIONING → PENDING → ACTIVATING: resolve secrets, pick a port, spawn.
async fn start(agent: &Agent, id: &TaskId, plan: &Plan, log: &TaskLog) -> Result<(Child, u16), String> {
    agent.update(id, |t| t.lifecycle = Lifecycle::Provisioning);
    let mut env = plan.env.clone();
    for (name, path) in &plan.file_secrets {
        env.insert(name.clone(), super::secrets::read_file(agent.layout.root(), name, path)?);
    }
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    env.insert("PORT".into(), port.to_string());
    let argv: Vec<String> = plan.command.iter().map(|a| a.replace("${PORT}", &port.to_string())).collect();
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    agent.update(id, |t| {
        t.lifecycle = Lifecycle::Pending;
        t.port = Some(port);
    });
    let mut cmd = Command::new(resolve_program(program, &plan.dir));
    cmd.args(args)
        .current_dir(&plan.dir)
        .env_clear()
        .envs(passthrough_env())
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so stopping reaches the whole tree (shell wrappers, workers).
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe. If the agent dies without stopping its tasks
    // (SIGKILL, OOM), the kernel kills them instead of leaving orphans holding ports. The
    // signal follows the *thread* that spawned the child: the spawner's threads live as
    // long as the agent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = spawner::spawn(cmd).await.map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let pid = child.id();
    // Names only: secret values never reach a log.
    log.note(&format!("started pid {} on port {port}: {}", pid.unwrap_or(0), argv.join(" ")));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(logs::pump(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(logs::pump(err, log.clone()));
    }
    let kind = plan.kind;
    agent.update(id, |t| {
        t.pid = pid;
        t.started_at = Some(Utc::now());
        t.stopped_at = None;
        t.exit_code = None;
        // One-off tasks have no checks: they run as soon as they started.
        t.lifecycle = if kind == TaskKind::OneOff { Lifecycle::Running } else { Lifecycle::Activating };
    });
    agent.wake_reconciler();
    Ok((child, port))
}

/// Watch a started run. `Ok(None)`: finished for good (stopped on request or one-off exit);
/// `Ok(Some(reason))`: crashed or unhealthy, restart.
async fn supervise(
    agent: &Agent,
    id: &TaskId,
    plan: &Plan,
    log: &TaskLog,
    mut child: Child,
    port: u16,
) -> Result<Option<String>, String> {
    let wake = agent.update(id, |t| t.wake.clone()).ok_or("task vanished")?;
    let pid = child.id();
    let service = plan.kind == TaskKind::Service;
    let checks = service && health::has_checks(&plan.health, plan.tcp_check);
    // A service task without any check (a worker with no port) runs ACTIVATING through its
    // grace period, then RUNNING with health UNKNOWN: what it must do to count is outlive it.
    let mut awaiting_grace = service && !checks;
    let started = Instant::now();
    let grace_end = started + plan.health.grace_period.to_std();
    let interval = plan.health.interval.to_std().max(Duration::from_millis(50));
    let mut tracker = HealthTracker::new(&plan.health);
    let mut next_check = started;
    let mut check_env = plan.env.clone();
    check_env.insert("PORT".into(), port.to_string());
    let outcome = loop {
        if stop_requested(agent, id) {
            break Outcome::StopRequested;
        }
        tokio::select! {
            status = child.wait() => match status {
                Ok(s) => break Outcome::Exited(s),
                Err(e) => break Outcome::Unhealthy(format!("lost the process: {e}")),
            },
            _ = wake.notified() => continue,
            _ = tokio::time::sleep_until(grace_end), if awaiting_grace => {
                awaiting_grace = false;
                agent.update(id, |t| {
                    if t.lifecycle == Lifecycle::Activating {
                        t.lifecycle = Lifecycle::Running;
                        // Counted as a failure no more, should it die later.
                        t.ever_healthy = true;
                    }
                });
                agent.wake_reconciler();
            }
            _ = tokio::time::sleep_until(next_check), if checks => {
                let result = health::check(&plan.health, plan.tcp_check, port, &plan.dir, &check_env).await;
                let in_grace = Instant::now() < grace_end;
                let status = tracker.record(result.ok, in_grace);
                let activating_over = status != Health::Unknown || !in_grace;
                let changed = agent.update(id, |t| {
                    let before = (t.health, t.lifecycle);
                    t.health = status;
                    t.last_check = Some(result.output.clone());
                    if status == Health::Healthy {
                        t.ever_healthy = true;
                    }
                    if t.lifecycle == Lifecycle::Activating && activating_over {
                        t.lifecycle = Lifecycle::Running;
                    }
                    before != (t.health, t.lifecycle)
                });
                // Only a change in health or lifecycle gives the rollout rules something to do;
                // waking them after every check of every task costs a full pass each time.
                if changed == Some(true) {
                    agent.wake_reconciler();
                }
                if status == Health::Unhealthy {
                    break Outcome::Unhealthy(format!("failed health checks ({})", result.output));
                }
                next_check = Instant::now() + interval;
            }
        }
    };
    match outcome {
        Outcome::StopRequested => {
            let (reason, drain) = agent
                .update(id, |t| t.stop.clone().map(|s| (s.reason, s.drain)))
                .flatten()
                .unwrap_or(("stopped".into(), false));
            if drain {
                agent.update(id, |t| t.lifecycle = Lifecycle::Deactivating);
                drain_requests(agent, id, plan.drain).await;
            }
            agent.update(id, |t| t.lifecycle = Lifecycle::Stopping);
            log.note(&format!("stopping: {reason}"));
            let status = terminate(&mut child, plan.stop_timeout).await;
            agent.update(id, |t| t.lifecycle = Lifecycle::Deprovisioning);
            finish(agent, id, status.and_then(|s| s.code()), Some(reason));
            Ok(None)
        }
        Outcome::Exited(status) => {
            kill_group(pid, libc::SIGKILL);
            let code = describe(status);
            log.note(&format!("exited: {code}"));
            agent.update(id, |t| t.lifecycle = Lifecycle::Deprovisioning);
            agent.update(id, |t| {
                t.exit_code = exit_code(status);
                t.stopped_at = Some(Utc::now());
            });
            if plan.kind == TaskKind::OneOff || stop_requested(agent, id) {
                finish(agent, id, exit_code(status), Some(format!("Essential container exited ({code})")));
                return Ok(None);
            }
            let reason = format!("Essential container exited ({code})");
            agent.update(id, |t| t.stopped_reason = Some(reason.clone()));
            Ok(Some(reason))
        }
        Outcome::Unhealthy(reason) => {
            let status = terminate(&mut child, plan.stop_timeout).await;
            let reason = format!("Task {reason}");
            agent.update(id, |t| {
                t.exit_code = status.and_then(|s| s.code());
                t.stopped_at = Some(Utc::now());
                t.stopped_reason = Some(reason.clone());
            });
            Ok(Some(reason))
        }
    }
}

/// DEACTIVATING: the task is already out of the proxy (its stop request did that); wait
/// for its in-flight requests, at most `drain`.
async fn drain_requests(agent: &Agent, id: &TaskId, drain: Duration) {
    let Some(counter) = agent.update(id, |t| t.inflight.clone()) else { return };
    let deadline = Instant::now() + drain;
    while counter.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM the group, SIGKILL after `timeout`; returns the exit status.
async fn terminate(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    kill_group(pid, libc::SIGTERM);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => {
            kill_group(pid, libc::SIGKILL);
            child.wait().await.ok()
        }
    };
    // Whatever else the task left in its group goes too.
    kill_group(pid, libc::SIGKILL);
    status
}

/// Signal the task's process group (its pgid is its pid). Takes the pid saved at spawn:
/// tokio forgets it once the child is reaped, and the group may outlive its leader.
fn kill_group(pid: Option<u32>, signal: libc::c_int) {
    if let Some(pid) = pid {
        // SAFETY: plain kill(2) of the task's own process group.
        unsafe {
            libc::kill(-(pid as libc::pid_t), signal);
        }
    }
}

/// Keep the task's app to the newest [`logs::KEEP_TASK_LOGS`] log files, those of its
/// tasks that still run (this one among them) always kept.
fn prune_logs(agent: &Agent, id: &TaskId, log_path: &Path) {
    let Some(dir) = log_path.parent() else { return };
    let Some((stage, app)) = agent.update(id, |t| (t.stage.clone(), t.app.clone())) else { return };
    let in_use: Vec<String> = agent.with_state(|s| {
        s.tasks
            .values()
            .filter(|t| t.stage == stage && t.app == app && (t.lifecycle != Lifecycle::Stopped || t.id == *id))
            .map(|t| format!("{}.log", t.id))
            .collect()
    });
    logs::prune(dir, logs::KEEP_TASK_LOGS, &in_use);
}

/// Mark the task STOPPED.
fn finish(agent: &Agent, id: &TaskId, exit: Option<i32>, reason: Option<String>) {
    agent.update(id, |t| {
        if exit.is_some() {
            t.exit_code = exit;
        }
        if t.stopped_reason.is_none() || reason.is_some() {
            t.stopped_reason = reason.or_else(|| t.stop.as_ref().map(|s| s.reason.clone()));
        }
        t.lifecycle = Lifecycle::Stopped;
        t.health = if t.kind == TaskKind::Service { t.health } else { Health::Unknown };
        t.stopped_at.get_or_insert_with(Utc::now);
        t.pid = None;
    });
    agent.wake_reconciler();
}

/// The exit code as a shell reports it: the process's own, or 128 + the signal that killed
/// it (143 for SIGTERM), so a killed task never reads as an ordinary failure (1).
fn exit_code(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|signal| 128 + signal))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// A free port on 127.0.0.1, chosen by the kernel.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// `bin/server` means the release's `bin/server`, not one relative to the agent's cwd.
fn resolve_program(program: &str, dir: &Path) -> PathBuf {
    let p = Path::new(program);
    if p.is_relative() && program.contains('/') {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

fn passthrough_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| PASSTHROUGH.contains(&k.as_str()) || PASSTHROUGH_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect()
}
