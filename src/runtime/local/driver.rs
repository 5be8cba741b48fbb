//! The seam between the task runner ([`super::task`]) and what a task *is*: a host process
//! ([`ProcessDriver`]) or a Docker container ([`super::docker::DockerDriver`]). The runner
//! keeps one code path for restarts, health, draining and stopping; a driver only starts a
//! run, runs a health command inside it, and stops it. Which driver a revision uses is chosen
//! by the client (`[runtime] driver`, or [`resolve`]) and sent with the revision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

use super::health::{self, CheckResult};
use super::logs::{self, TaskLog};
use super::spawner;
use crate::runtime::{TaskId, TaskKind};

/// Environment variables passed through from the agent to a host process: enough to find
/// programs and behave sanely, not the whole environment of whoever started the agent.
const PASSTHROUGH: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM"];
const PASSTHROUGH_PREFIXES: &[&str] = &["LC_", "PYENV_"];

/// Everything a driver needs to start one run of a task.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub task: TaskId,
    pub kind: TaskKind,
    pub stage: String,
    pub app: String,
    pub release: u64,
    /// The command (empty: the image's own, Docker only).
    pub command: Vec<String>,
    /// Env and secret values (never logged).
    pub env: BTreeMap<String, String>,
    /// The app's stable port, if it has one.
    pub app_port: Option<u16>,
    /// Process driver: the unpacked release.
    pub dir: PathBuf,
    /// Docker driver: `HOST/REPO@DIGEST`.
    pub image_ref: Option<String>,
    /// Docker driver: which revision a container runs, to re-adopt it after an agent restart.
    pub revision_key: String,
    /// Memory limit in MiB (Docker driver; the process driver sets none).
    pub memory_mib: u32,
    pub stop_timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code as a shell reports it (128 + signal for a killed process).
    pub code: Option<i32>,
    /// For humans: `exit code 1`, `killed by signal 9`, `exit code 137, OOM killed …`.
    pub text: String,
    /// Ended by a signal rather than by exiting (a stopped task reports no code then).
    pub signaled: bool,
}

/// A run that started.
pub struct Started {
    pub handle: Box<dyn Running>,
    /// Where the task listens on 127.0.0.1 (checks and the proxy go there).
    pub port: u16,
    /// The task's main process on this machine (shown by `ps`).
    pub pid: Option<u32>,
    /// Becomes `Some` when the run ended by itself or was stopped.
    pub exited: watch::Receiver<Option<Exit>>,
}

/// Starts runs of tasks.
#[async_trait::async_trait]
pub trait TaskDriver: Send + Sync {
    /// Start one run; the error is one line for the task's log and failure report.
    async fn start(&self, run: &RunSpec, log: &TaskLog) -> Result<Started, String>;
}

/// One started run.
#[async_trait::async_trait]
pub trait Running: health::CommandCheck {
    /// SIGTERM, then SIGKILL after `timeout`; returns how it ended.
    async fn stop(&self, timeout: Duration) -> Option<Exit>;
    /// After the run ended (by itself or stopped): release what it held.
    async fn cleanup(&self);
    /// [`Running::cleanup`] of a run stopped for good (its task is not restarted): what
    /// takes long may go on in the background (a container's removal), so that a rollout
    /// replacing the task does not wait for it.
    async fn release(&self) {
        self.cleanup().await;
    }
}

/// Wait until `exited` says the run ended (cancel-safe: used in `select!`).
pub async fn wait_exit(exited: &mut watch::Receiver<Option<Exit>>) -> Exit {
    match exited.wait_for(|e| e.is_some()).await {
        Ok(e) => e.clone().unwrap_or_else(lost),
        Err(_) => lost(),
    }
}

fn lost() -> Exit {
    Exit { code: None, text: "lost the task".into(), signaled: false }
}

/// Host processes: the command runs in the release folder, in a process group of its own.
pub struct ProcessDriver;

struct ProcessRun {
    pid: Option<u32>,
    dir: PathBuf,
    exited: watch::Receiver<Option<Exit>>,
}

#[async_trait::async_trait]
impl TaskDriver for ProcessDriver {
    async fn start(&self, run: &RunSpec, log: &TaskLog) -> Result<Started, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let mut env = run.env.clone();
        env.insert("PORT".into(), port.to_string());
        let argv: Vec<String> = run.command.iter().map(|a| a.replace("${PORT}", &port.to_string())).collect();
        let Some((program, args)) = argv.split_first() else {
            return Err("empty command".into());
        };
        let mut cmd = Command::new(resolve_program(program, &run.dir));
        cmd.args(args)
            .current_dir(&run.dir)
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
        let (tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => {
                    Exit { code: exit_code(status), text: describe(status), signaled: status.code().is_none() }
                }
                Err(e) => Exit { code: None, text: format!("lost the process: {e}"), signaled: false },
            };
            // Whatever else the task left in its group goes too.
            kill_group(pid, libc::SIGKILL);
            let _ = tx.send(Some(exit));
        });
        let handle = ProcessRun { pid, dir: run.dir.clone(), exited: exited.clone() };
        Ok(Started { handle: Box::new(handle), port, pid, exited })
    }
}

#[async_trait::async_trait]
impl health::CommandCheck for ProcessRun {
    async fn run_check(&self, argv: &[String], env: &BTreeMap<String, String>, timeout: Duration) -> CheckResult {
        health::host_command(argv, &self.dir, env, timeout).await
    }
}

#[async_trait::async_trait]
impl Running for ProcessRun {
    async fn stop(&self, timeout: Duration) -> Option<Exit> {
        let mut exited = self.exited.clone();
        kill_group(self.pid, libc::SIGTERM);
        let exit = match tokio::time::timeout(timeout, wait_exit(&mut exited)).await {
            Ok(e) => e,
            Err(_) => {
                kill_group(self.pid, libc::SIGKILL);
                wait_exit(&mut exited).await
            }
        };
        Some(exit)
    }

    async fn cleanup(&self) {
        kill_group(self.pid, libc::SIGKILL);
    }
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

/// The exit code as a shell reports it: the process's own, or 128 + the signal that killed
/// it (143 for SIGTERM), so a killed task never reads as an ordinary failure (1).
fn exit_code(status: std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|signal| 128 + signal))
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// A free port on 127.0.0.1, chosen by the kernel.
pub fn free_port() -> std::io::Result<u16> {
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
