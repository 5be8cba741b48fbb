//! The runner of one task: prepares it (port, env, secrets, log), starts it as a child
//! process in its own process group in the release folder, runs its health checks, restarts
//! it with exponential backoff when it crashes or turns unhealthy (service tasks only), and
//! stops it on request: drain → SIGTERM → SIGKILL after the stop timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::driver::{self, Exit, RunSpec, Started};
use super::health::{self, HealthTracker};
use super::logs::{self, TaskLog};
use super::shared::Agent;
use crate::config::{Health as HealthConfig, LocalDriver, SecretRef};
use crate::poll::Poll;
use crate::runtime::{Health, Lifecycle, TaskId, TaskKind};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the backoff: the task was fine for a while.
const BACKOFF_RESET: Duration = Duration::from_secs(60);

/// Everything needed to start one run, copied out of the state.
struct Plan {
    kind: TaskKind,
    driver: LocalDriver,
    run: RunSpec,
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
    Exited(Exit),
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
            Ok(started) => supervise(&agent, &id, &plan, &log, started).await,
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
            driver: rev.driver,
            run: RunSpec {
                task: t.id.clone(),
                kind: t.kind,
                stage: t.stage.clone(),
                app: t.app.clone(),
                release: t.release,
                command,
                env,
                app_port: config.port,
                dir: rev.spec.local_dir.clone().unwrap_or_default(),
                image_ref: rev.image_ref.clone(),
                revision_key: rev.key.clone(),
                memory_mib: config.memory,
                stop_timeout: rev.spec.config.deploy.stop_timeout.to_std(),
            },
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

/// PROVISIONING → PENDING → ACTIVATING: resolve secrets, start through the revision's driver.
async fn start(agent: &Agent, id: &TaskId, plan: &Plan, log: &TaskLog) -> Result<Started, String> {
    agent.update(id, |t| t.lifecycle = Lifecycle::Provisioning);
    let mut run = plan.run.clone();
    for (name, path) in &plan.file_secrets {
        run.env.insert(name.clone(), super::secrets::read_file(agent.layout.root(), name, path)?);
    }
    agent.update(id, |t| t.lifecycle = Lifecycle::Pending);
    let started = match plan.driver {
        LocalDriver::Process => driver::TaskDriver::start(&driver::ProcessDriver, &run, log).await?,
        LocalDriver::Docker => driver::TaskDriver::start(&agent.docker, &run, log).await?,
    };
    let (kind, pid, port) = (plan.kind, started.pid, started.port);
    agent.update(id, |t| {
        t.pid = pid;
        t.port = Some(port);
        t.started_at = Some(Utc::now());
        t.stopped_at = None;
        t.exit_code = None;
        // One-off tasks have no checks: they run as soon as they started.
        t.lifecycle = if kind == TaskKind::OneOff { Lifecycle::Running } else { Lifecycle::Activating };
    });
    agent.wake_reconciler();
    Ok(started)
}

/// Watch a started run. `Ok(None)`: finished for good (stopped on request or one-off exit);
/// `Ok(Some(reason))`: crashed or unhealthy, restart.
async fn supervise(
    agent: &Agent,
    id: &TaskId,
    plan: &Plan,
    log: &TaskLog,
    started: Started,
) -> Result<Option<String>, String> {
    let Started { handle, port, mut exited, .. } = started;
    let Some(wake) = agent.update(id, |t| t.wake.clone()) else {
        let _ = handle.stop(plan.stop_timeout).await;
        handle.cleanup().await;
        return Err("task vanished".into());
    };
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
    let mut check_env = plan.run.env.clone();
    // The port the app listens on where the check runs: its own on the host (process), the
    // app's port inside a container.
    let inner_port = match plan.driver {
        LocalDriver::Process => Some(port),
        LocalDriver::Docker => plan.run.app_port,
    };
    if let Some(p) = inner_port {
        check_env.insert("PORT".into(), p.to_string());
    }
    let outcome = loop {
        if stop_requested(agent, id) {
            break Outcome::StopRequested;
        }
        tokio::select! {
            exit = driver::wait_exit(&mut exited) => break Outcome::Exited(exit),
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
                let result = health::check(&plan.health, plan.tcp_check, port, handle.as_ref(), &check_env).await;
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
            let exit = handle.stop(plan.stop_timeout).await;
            if let Some(e) = &exit {
                log.note(&format!("stopped: {}", e.text));
            }
            agent.update(id, |t| t.lifecycle = Lifecycle::Deprovisioning);
            // Stopped for good: the rollout waits for the stop, not for the clean-up.
            handle.release().await;
            finish(agent, id, exit.and_then(|e| e.code.filter(|_| !e.signaled)), Some(reason));
            Ok(None)
        }
        Outcome::Exited(exit) => {
            handle.cleanup().await;
            let code = exit.text;
            log.note(&format!("exited: {code}"));
            agent.update(id, |t| t.lifecycle = Lifecycle::Deprovisioning);
            agent.update(id, |t| {
                t.exit_code = exit.code;
                t.stopped_at = Some(Utc::now());
            });
            if plan.kind == TaskKind::OneOff || stop_requested(agent, id) {
                finish(agent, id, exit.code, Some(format!("Essential container exited ({code})")));
                return Ok(None);
            }
            let reason = format!("Essential container exited ({code})");
            agent.update(id, |t| t.stopped_reason = Some(reason.clone()));
            Ok(Some(reason))
        }
        Outcome::Unhealthy(reason) => {
            let exit = handle.stop(plan.stop_timeout).await;
            handle.cleanup().await;
            let reason = format!("Task {reason}");
            agent.update(id, |t| {
                t.exit_code = exit.and_then(|e| e.code.filter(|_| !e.signaled));
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
    let mut poll = Poll::new(Duration::from_millis(10), Duration::from_millis(100)).within(drain);
    while counter.load(Ordering::SeqCst) > 0 && poll.wait().await {}
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
