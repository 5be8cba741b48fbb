//! Health checks of one task: the container check (a command that must exit 0) and the
//! network check (HTTP GET of `health.path` on the task's port, 2xx/3xx), and the
//! threshold bookkeeping that turns check results into HEALTHY / UNHEALTHY.
//!
//! An app with a port and no HTTP check also gets a TCP connect check on its task port (a
//! liveness check): the proxy must not route to a task before it listens, and "started" is
//! not "listening". An app with no port and no configured check gets no check at all: its
//! tasks show health UNKNOWN and count once they are still running at the end of their grace
//! period (see `task`), as ECS counts a task without a health check.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Health as HealthConfig;
use crate::runtime::Health;

/// The outcome of one check round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    /// What to show a human: status line, error, or the command's output.
    pub output: String,
}

/// Whether a task of an app with this health config and port (the app's stable port, not the
/// task's own) gets the TCP liveness check: it serves a port, and no HTTP check looks at it.
pub fn tcp_liveness(config: &HealthConfig, app_port: Option<u16>) -> bool {
    app_port.is_some() && config.path.is_none()
}

/// Whether a task gets any check (`tcp`: [`tcp_liveness`]).
pub fn has_checks(config: &HealthConfig, tcp: bool) -> bool {
    config.command.is_some() || config.path.is_some() || tcp
}

/// Where a health command runs: beside a host process, or inside a container.
#[async_trait::async_trait]
pub trait CommandCheck: Send + Sync {
    /// Run `argv` (already unwrapped from `CMD` / `CMD-SHELL`); exit 0 passes.
    async fn run_check(&self, argv: &[String], env: &BTreeMap<String, String>, timeout: Duration) -> CheckResult;
}

/// Run every check once (the configured ones, and the TCP liveness check when `tcp`); all
/// must pass. The health command runs through `runner`.
pub async fn check(
    config: &HealthConfig,
    tcp: bool,
    port: u16,
    runner: &dyn CommandCheck,
    env: &BTreeMap<String, String>,
) -> CheckResult {
    let timeout = config.timeout.to_std().max(Duration::from_millis(50));
    let mut outputs = Vec::new();
    if let Some(command) = &config.command {
        let r = container_check(command, runner, env, timeout).await;
        if !r.ok {
            return r;
        }
        outputs.push(r.output);
    }
    if let Some(path) = &config.path {
        let r = http_check(port, path, timeout).await;
        if !r.ok {
            return r;
        }
        outputs.push(r.output);
    }
    if tcp {
        let r = match tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", port))).await {
            Ok(Ok(_)) => CheckResult { ok: true, output: format!("tcp {port}: connected") },
            Ok(Err(e)) => CheckResult { ok: false, output: format!("tcp {port}: {e}") },
            Err(_) => CheckResult { ok: false, output: format!("tcp {port}: timed out") },
        };
        if !r.ok {
            return r;
        }
        outputs.push(r.output);
    }
    CheckResult { ok: true, output: outputs.join("; ") }
}

/// `["CMD-SHELL", "…"]` runs through `sh -c`; `["CMD", argv…]` and plain argv run directly.
async fn container_check(
    command: &[String],
    runner: &dyn CommandCheck,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> CheckResult {
    let argv: Vec<String> = match command.first().map(String::as_str) {
        Some("CMD-SHELL") => vec!["sh".into(), "-c".into(), command[1..].join(" ")],
        Some("CMD") => command[1..].to_vec(),
        _ => command.to_vec(),
    };
    if argv.is_empty() {
        return CheckResult { ok: false, output: "empty health check command".into() };
    }
    runner.run_check(&argv, env, timeout).await
}

/// A health command's result from its exit and output, as both drivers report it.
pub fn command_result(ok: bool, status: &str, output: &str) -> CheckResult {
    let text = tail(output.trim(), 500);
    CheckResult {
        ok,
        output: if ok {
            format!("command: exit 0 {text}").trim_end().to_string()
        } else {
            format!("command: {status} {text}").trim_end().to_string()
        },
    }
}

/// A health command run on this machine in `dir` (the process driver).
pub async fn host_command(
    argv: &[String],
    dir: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> CheckResult {
    let Some((program, args)) = argv.split_first() else {
        return CheckResult { ok: false, output: "empty health check command".into() };
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return CheckResult { ok: false, output: format!("health command: {e}") },
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            command_result(out.status.success(), &out.status.to_string(), &text)
        }
        Ok(Err(e)) => CheckResult { ok: false, output: format!("health command: {e}") },
        Err(_) => CheckResult { ok: false, output: format!("health command timed out after {timeout:?}") },
    }
}

/// A minimal HTTP/1.0 GET: enough for a health endpoint, and no client dependency.
async fn http_check(port: u16, path: &str, timeout: Duration) -> CheckResult {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: ferry-health\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        // The status line is all we need; cap what we read from a chatty endpoint.
        let mut chunk = [0u8; 1024];
        while !buf.contains(&b'\n') && buf.len() < 8192 {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(status_line)) => {
            let code: Option<u16> = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok());
            let ok = code.is_some_and(|c| (200..400).contains(&c));
            let shown = if status_line.is_empty() { "no response".to_string() } else { status_line };
            CheckResult { ok, output: format!("GET {path}: {shown}") }
        }
        Ok(Err(e)) => CheckResult { ok: false, output: format!("GET {path}: {e}") },
        Err(_) => CheckResult { ok: false, output: format!("GET {path}: timed out after {timeout:?}") },
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Consecutive-result bookkeeping, as ECS and Docker count it.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    successes: u32,
    failures: u32,
    pub status: Health,
}

impl HealthTracker {
    pub fn new(config: &HealthConfig) -> Self {
        HealthTracker {
            healthy_threshold: config.healthy_threshold.max(1),
            unhealthy_threshold: config.unhealthy_threshold.max(1),
            successes: 0,
            failures: 0,
            status: Health::Unknown,
        }
    }

    /// Record one result. Failures inside the grace period do not count, so a slow start is
    /// not punished; successes always do, so a fast start turns healthy at once.
    pub fn record(&mut self, ok: bool, in_grace: bool) -> Health {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.healthy_threshold {
                self.status = Health::Healthy;
            }
        } else if !in_grace {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.unhealthy_threshold {
                self.status = Health::Unhealthy;
            }
        } else {
            self.successes = 0;
        }
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_checks_a_task_gets() {
        let none = HealthConfig::default();
        let http = HealthConfig { path: Some("/health".into()), ..HealthConfig::default() };
        let command = HealthConfig { command: Some(vec!["true".into()]), ..HealthConfig::default() };
        assert!(tcp_liveness(&none, Some(8080)) && has_checks(&none, true), "a port alone: TCP");
        assert!(!tcp_liveness(&http, Some(8080)), "an HTTP check looks at the port already");
        assert!(tcp_liveness(&command, Some(8080)), "a command check does not listen for the proxy");
        // A worker: no port, no check. It is not checked on the port ferry assigned it.
        assert!(!tcp_liveness(&none, None) && !has_checks(&none, false));
        assert!(has_checks(&command, false));
    }

    struct Host(std::path::PathBuf);

    #[async_trait::async_trait]
    impl CommandCheck for Host {
        async fn run_check(&self, argv: &[String], env: &BTreeMap<String, String>, timeout: Duration) -> CheckResult {
            host_command(argv, &self.0, env, timeout).await
        }
    }

    #[tokio::test]
    async fn the_tcp_check_needs_a_listener_and_runs_beside_the_command() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = Host(std::env::temp_dir());
        let command = HealthConfig { command: Some(vec!["true".into()]), ..HealthConfig::default() };
        let r = check(&command, true, port, &dir, &BTreeMap::new()).await;
        assert!(r.ok && r.output.contains("tcp"), "{r:?}");
        drop(listener);
        let r = check(&command, true, port, &dir, &BTreeMap::new()).await;
        assert!(!r.ok && r.output.starts_with(&format!("tcp {port}")), "{r:?}");
        assert!(check(&command, false, port, &dir, &BTreeMap::new()).await.ok, "no TCP check asked");
    }

    #[test]
    fn thresholds_and_grace() {
        let cfg = HealthConfig { healthy_threshold: 2, unhealthy_threshold: 2, ..HealthConfig::default() };
        let mut t = HealthTracker::new(&cfg);
        assert_eq!(t.record(false, true), Health::Unknown);
        assert_eq!(t.record(false, true), Health::Unknown, "grace failures do not count");
        assert_eq!(t.record(true, true), Health::Unknown);
        assert_eq!(t.record(true, true), Health::Healthy);
        assert_eq!(t.record(false, false), Health::Healthy);
        assert_eq!(t.record(false, false), Health::Unhealthy);
        assert_eq!(t.record(true, false), Health::Unhealthy);
        assert_eq!(t.record(true, false), Health::Healthy);
    }
}
