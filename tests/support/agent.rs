//! A local-runtime test fixture: a project folder with a tiny Python HTTP app as its
//! release, a [`LocalRuntime`] whose agent is the built `ferry`, and a guard that stops
//! the agent (and so every task) when the test ends, passed or failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry::config::{AppConfig, DeploySettings, Health, Percent};
use ferry::process::alive as process_alive;
use ferry::runtime::local::{Layout, LocalRuntime};
use ferry::runtime::{RevisionSpec, Runtime, ServiceStatus};

use super::{ferry_bin, TestProject};

/// The test app: `/health` answers 200 unless `HEALTHY=0` or a file `unhealthy` exists in
/// its folder; every other path answers the `VERSION` env var.
pub const APP_PY: &str = r#"
import http.server, os, sys
port = int(os.environ["PORT"])
version = os.environ.get("VERSION", "0")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            ok = os.environ.get("HEALTHY", "1") == "1" and not os.path.exists("unhealthy")
            code = 200 if ok else 503
        else:
            code = 200
        body = version.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        pass
print("app version", version, "listening on", port, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// A project with a release folder, a runtime for stage `dev`, and the agent guard.
pub struct LocalFixture {
    // First, so it is dropped first: the project folder (with the pid file) must still exist.
    _guard: AgentGuard,
    pub project: TestProject,
    pub runtime: LocalRuntime,
    pub app_port: u16,
}

impl LocalFixture {
    pub fn new() -> Self {
        let project = TestProject::empty();
        project.write("ferry.toml", "[project]\nname = \"test\"\n");
        project.write("stages/dev.toml", "");
        project.write("releases/app/app.py", APP_PY);
        let runtime = LocalRuntime::new(project.path(), "dev").with_agent_program(ferry_bin());
        let guard = AgentGuard { layout: Layout::new(project.path()) };
        LocalFixture { _guard: guard, project, runtime, app_port: free_port() }
    }

    pub fn release_dir(&self) -> PathBuf {
        self.project.path().join("releases/app")
    }

    /// A revision spec for app `web`, release `release`, answering `VERSION=release`.
    pub fn spec(&self, release: u64, extra_env: &[(&str, &str)]) -> RevisionSpec {
        let mut env = BTreeMap::new();
        env.insert("VERSION".to_string(), release.to_string());
        for (k, v) in extra_env {
            env.insert(k.to_string(), v.to_string());
        }
        RevisionSpec {
            app: "web".into(),
            release,
            image: "local/web".into(),
            digest: ferry::config::Digest::of_bytes(format!("release {release}").as_bytes()),
            config: AppConfig {
                cpu: 256,
                memory: 512,
                command: vec!["python3".into(), "app.py".into()],
                port: Some(self.app_port),
                env,
                sensitive_env: Default::default(),
                secrets: Default::default(),
                health: Health {
                    command: None,
                    path: Some("/health".into()),
                    interval: ferry::config::Duration::from_millis(100),
                    timeout: ferry::config::Duration::from_millis(1000),
                    healthy_threshold: 2,
                    unhealthy_threshold: 2,
                    grace_period: ferry::config::Duration::from_millis(1500),
                },
                deploy: settings(),
                release_tasks: Vec::new(),
                target_group: None,
            },
            local_dir: Some(self.release_dir()),
        }
    }

    /// Observe `web`.
    pub async fn web(&self) -> ServiceStatus {
        self.runtime.observe(&["web".to_string()]).await.expect("observe").remove(0)
    }

    /// Poll `web` until `pred` holds; panics with the last status at the deadline.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&ServiceStatus) -> bool,
    ) -> ServiceStatus {
        let mut poll = ferry::poll::Poll::new(Duration::from_millis(50), Duration::from_millis(50)).within(timeout);
        loop {
            let s = self.web().await;
            if pred(&s) {
                return s;
            }
            assert!(poll.wait().await, "timed out waiting for {what}; last status:\n{s:#?}");
        }
    }
}

/// Fast deploy settings for tests.
pub fn settings() -> DeploySettings {
    DeploySettings {
        max_surge: Percent(100),
        min_healthy: Percent(100),
        timeout: ferry::config::Duration::from_millis(30_000),
        drain: ferry::config::Duration::from_millis(3_000),
        stop_timeout: ferry::config::Duration::from_millis(3_000),
        ..DeploySettings::default()
    }
}

/// Stops the project's agent on drop: SIGTERM (the agent stops its tasks), then SIGKILL of
/// the agent and of any task pid it left, so no test leaks processes.
pub struct AgentGuard {
    pub layout: Layout,
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let Some(pid) = self.layout.agent_pid() else { return };
        if !process_alive(pid) {
            return;
        }
        // SAFETY: signals to the agent this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if process_alive(pid) {
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// Whether a pid is gone (or a zombie).
pub fn gone(pid: u32) -> bool {
    !process_alive(pid)
}

/// Read the pid from a folder's pid file.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
