//! `ferry commit`, `ferry abort` and `ferry task` end to end: the real binary on a temp
//! project of small Python HTTP apps pushed with `ferry image push`, on the local runtime,
//! 127.0.0.1 only. Every test stops its agent (and so every task) through a guard, and every
//! background `ferry` it starts through another, also when it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::runtime::local::Layout;
use serde_json::Value;

use crate::support::agent::{free_port, AgentGuard};
use crate::support::{Run, TestProject};

/// The app: `/health` answers 200 unless a file `unhealthy` is in its folder; other paths
/// answer the content of `release.txt`. `START_DELAY` seconds pass before it listens, an
/// `exit` file makes it exit at once with code 3, and with a `fork` file a child process
/// serves while the first one waits for it (a task that is a tree of processes).
pub(crate) const APP_PY: &str = r#"
import http.server, os, subprocess, sys, time
if os.path.exists("exit"):
    print("boom: cannot start", flush=True)
    sys.exit(3)
if os.path.exists("fork") and "FORKED" not in os.environ:
    sys.exit(subprocess.call([sys.executable, "app.py"], env=dict(os.environ, FORKED="1")))
time.sleep(float(os.environ.get("START_DELAY", "0")))
port = int(os.environ["PORT"])
body = open("release.txt").read().strip().encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200
        if self.path == "/health" and os.path.exists("unhealthy"):
            code = 503
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        pass
print("listening on", port, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// One app of the test stage.
#[derive(Clone)]
pub(crate) struct AppDef {
    pub name: &'static str,
    pub port: u16,
    /// (release id, digest)
    pub releases: Vec<(u64, String)>,
    pub active: u64,
    pub scale: u32,
    pub start_delay: &'static str,
    pub release_task: Option<&'static str>,
    pub timeout: &'static str,
    /// Health-check grace period: failed checks before it ends do not count.
    pub grace: &'static str,
}

/// A temp project with its agent guard (dropped first, while the folder still exists).
pub(crate) struct Project {
    _guard: AgentGuard,
    pub p: TestProject,
}

impl Project {
    pub fn new() -> Project {
        let p = TestProject::empty();
        p.write("ferry.toml", "[project]\nname = \"test\"\n");
        Project { _guard: AgentGuard { layout: Layout::new(p.path()) }, p }
    }

    /// Push an image of the app; `marker` is the body it answers, `extra` files are added
    /// (`unhealthy`, `exit`). Returns the digest.
    pub fn push(&self, repo: &str, marker: &str, extra: &[&str]) -> String {
        let dir = format!("images/{repo}-{marker}-{}", extra.join("-"));
        self.p.write(&format!("{dir}/app.py"), APP_PY);
        self.p.write(&format!("{dir}/release.txt"), marker);
        for f in extra {
            self.p.write(&format!("{dir}/{f}"), "");
        }
        let run = self.p.run(&["image", "push", &dir, "--repo", repo]);
        run.expect_code(0);
        run.stdout().trim().to_string()
    }

    pub fn stage(&self, apps: &[AppDef]) {
        let mut text = String::from("[runtime]\nkind = \"local\"\n");
        for a in apps {
            text.push_str(&format!(
                "\n[apps.{n}]\nimage = \"{n}\"\nactive = {active}\nscale = {scale}\ncommand = [\"python3\", \"app.py\"]\n\
                 port = {port}\n\n[apps.{n}.releases]\n",
                n = a.name,
                active = a.active,
                scale = a.scale,
                port = a.port
            ));
            for (id, d) in &a.releases {
                text.push_str(&format!("{id} = \"{d}\"\n"));
            }
            text.push_str(&format!(
                "\n[apps.{n}.env]\nSTART_DELAY = \"{}\"\n\n[apps.{n}.health]\npath = \"/health\"\ninterval = \"200ms\"\n\
                 timeout = \"200ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\ngrace_period = \"{}\"\n\n\
                 [apps.{n}.deploy]\ntimeout = \"{}\"\ndrain = \"500ms\"\nstop_timeout = \"2s\"\n",
                a.start_delay,
                a.grace,
                a.timeout,
                n = a.name
            ));
            if let Some(cmd) = a.release_task {
                text.push_str(&format!(
                    "\n[[apps.{n}.release_tasks]]\nname = \"migrate\"\ncommand = [\"python3\", \"-c\", \"{cmd}\"]\n\
                     timeout = \"20s\"\n",
                    n = a.name
                ));
            }
        }
        self.p.write("stages/dev.toml", &text);
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.p.run(args)
    }

    pub fn commit(&self) -> Run {
        self.run(&["commit", "--yes"])
    }

    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        let child = self.p.ferry().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        ChildGuard(Some(child))
    }

    pub fn state(&self) -> Value {
        serde_json::from_str(&self.p.read(".ferry/state/dev.json")).expect("state parses")
    }

    pub fn history(&self, app: &str) -> Vec<Value> {
        self.state()["apps"][app]["history"].as_array().cloned().unwrap_or_default()
    }
}

pub(crate) fn app(name: &'static str, releases: Vec<(u64, String)>, active: u64) -> AppDef {
    AppDef {
        name,
        port: free_port(),
        releases,
        active,
        scale: 2,
        start_delay: "0",
        release_task: None,
        timeout: "20s",
        // Failed checks count only after this: room for a slow Python start on a loaded CI machine.
        grace: "10s",
    }
}

/// Kills a background `ferry` on drop, and collects its output.
pub(crate) struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(self.pid(), sig) };
    }
    /// Wait (bounded) and return (code, stdout, stderr).
    pub fn wait(mut self, timeout: Duration) -> (i32, String, String) {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferry did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut out, mut err) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status.code().unwrap_or(-1), out, err)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Poll `cond` until it holds; panic naming `what` at the deadline.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One GET of `/` through the app's port: the body on a 200.
pub(crate) fn get(port: u16) -> Result<String, String> {
    get_path(port, "/")
}

/// [`get`] of `path`.
pub(crate) fn get_path(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    if !buf.starts_with("HTTP/1.0 200") && !buf.starts_with("HTTP/1.1 200") {
        return Err(format!("bad response: {:?}", buf.lines().next()));
    }
    Ok(buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// Continuous GETs from a few threads until finished.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<Result<String, String>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..3)
            .map(|_| {
                let (stop, results) = (stop.clone(), results.clone());
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let r = get(port);
                        results.lock().unwrap().push(r);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load { stop, results, threads }
    }

    /// (successful bodies, failures)
    pub fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let results = self.results.lock().unwrap();
        let ok = results.iter().filter_map(|r| r.clone().ok()).collect();
        let failed = results.iter().filter_map(|r| r.clone().err()).collect();
        (ok, failed)
    }
}

pub(crate) fn in_progress(p: &Project, app: &str) -> bool {
    Path::new(&p.p.path().join(".ferry/state/dev.json")).exists()
        && p.history(app).iter().any(|d| d["status"] == "in_progress")
}

#[test]
fn first_commit_serves_then_a_rolling_deploy_under_load_loses_no_request() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    p.stage(&[web.clone()]);
    let run = p.commit();
    run.expect_code(0);
    assert!(run.stderr().contains("Applying… (0/3)"), "{}", run.stderr());
    assert!(run.stdout().contains("web  v1   succeeded"), "{}", run.stdout());
    assert_eq!(get(web.port).unwrap(), "one");

    let d2 = p.push("web", "two", &[]);
    web.releases.push((2, d2));
    web.active = 2;
    p.stage(&[web.clone()]);
    let load = Load::start(web.port);
    std::thread::sleep(Duration::from_millis(200));
    let run = p.commit();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    run.expect_code(0);
    assert!(failed.is_empty(), "failed requests during the rollout: {failed:?}");
    assert_eq!(ok.first().map(String::as_str), Some("one"));
    assert_eq!(ok.last().map(String::as_str), Some("two"));
    let h = p.history("web");
    assert_eq!(h.len(), 2);
    assert_eq!((h[1]["number"].as_u64(), h[1]["status"].as_str()), (Some(2), Some("succeeded")));
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 2);
    // A second commit has nothing to do.
    p.commit().expect_code(0);
    assert_eq!(p.history("web").len(), 2);

    // A task killed with SIGKILL is restarted, and `ps` shows it.
    let ps: Value = serde_json::from_str(&p.run(&["ps", "--json"]).stdout()).unwrap();
    let tasks = ps["stages"][0]["services"][0]["tasks"].as_array().unwrap().clone();
    let victim = tasks.iter().find(|t| t["last_status"] == "RUNNING").unwrap();
    let pid = victim["pid"].as_u64().unwrap() as i32;
    // SAFETY: a task process this test's agent started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let id = victim["id"].as_str().unwrap().to_string();
    wait_until("the killed task's restart", Duration::from_secs(15), || {
        let ps: Value = serde_json::from_str(&p.run(&["ps", "--json"]).stdout()).unwrap();
        let t = ps["stages"][0]["services"][0]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str())
            .cloned();
        t.is_some_and(|t| t["restarts"].as_u64() >= Some(1) && t["last_status"] == "RUNNING" && t["pid"] != pid)
    });
    let text = p.run(&["ps"]).stdout();
    assert!(text.contains(&id) && text.contains("RUNNING"), "{text}");
}

#[test]
fn after_down_the_next_commit_starts_the_stage_again() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let web = app("web", vec![(1, d1)], 1);
    p.stage(std::slice::from_ref(&web));
    p.commit().expect_code(0);
    assert_eq!(get(web.port).unwrap(), "one");
    p.run(&["down"]).expect_code(0);
    wait_until("the app's port to close after down", Duration::from_secs(20), || get(web.port).is_err());
    // State no longer claims the app runs: the plan deploys it again.
    p.run(&["plan", "--detailed-exitcode"]).expect_code(2);
    p.commit().expect_code(0);
    assert_eq!(get(web.port).unwrap(), "one");
    let history = p.history("web");
    assert_eq!(history.len(), 2, "the restart is a new deployment");
    assert!(history[1]["description"].as_str().unwrap().starts_with("Activate release 1"), "{:#?}", history[1]);
}

/// Once an app has more inactive revisions than state keeps, every deploy is followed by a
/// prune. The prune asks nothing of the runtime, so it is journaled in the same write as the
/// deploy's end: the write before the last one still has the deploy in progress.
#[test]
fn a_prune_is_journaled_with_the_deploy_it_follows() {
    let p = Project::new();
    let keep = ferry::plan::KEEP_REVISIONS as u64;
    // The deploy of release KEEP + 2 is the first with more inactive revisions than state keeps.
    let last = keep + 2;
    let releases: Vec<(u64, String)> = (1..=last).map(|r| (r, p.push("web", &format!("r{r}"), &[]))).collect();
    let mut web = app("web", releases, 1);
    web.scale = 1;
    for release in 1..=last {
        web.active = release;
        p.stage(std::slice::from_ref(&web));
        p.commit().expect_code(0);
    }
    assert_eq!(get(web.port).unwrap(), format!("r{last}"));
    let state = p.state();
    let revisions = state["apps"]["web"]["revisions"].as_array().unwrap().len() as u64;
    assert_eq!(revisions, keep + 1, "the active one and {keep} inactive: {state:#}");
    let previous: Value = serde_json::from_str(&p.p.read(".ferry/state/dev.json.previous")).unwrap();
    let newest = |s: &Value| s["apps"]["web"]["history"].as_array().unwrap().last().unwrap()["status"].clone();
    assert_eq!((newest(&previous), newest(&state)), ("in_progress".into(), "succeeded".into()));
    assert_eq!(previous["serial"].as_u64().unwrap() + 1, state["serial"].as_u64().unwrap(), "one write apart");
}

#[test]
fn a_release_that_never_turns_healthy_fails_and_the_old_keeps_serving() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    web.timeout = "4s";
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    let bad = p.push("web", "bad", &["unhealthy"]);
    web.releases.push((2, bad));
    web.active = 2;
    p.stage(&[web.clone()]);
    let load = Load::start(web.port);
    let run = p.commit();
    let (ok, failed) = load.finish();
    run.expect_code(1);
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(ok.iter().all(|b| b == "one"), "only the old release served");
    assert!(run.stderr().contains("not healthy within the deploy timeout"), "{}", run.stderr());
    assert!(run.stderr().contains("last check"), "the check output is shown: {}", run.stderr());
    assert!(run.stdout().contains("web  v2   failed"), "{}", run.stdout());
    let h = p.history("web");
    assert_eq!(h[1]["status"], "failed");
    assert!(h[1]["reason"].as_str().unwrap().contains("rolled back"), "{}", h[1]["reason"]);
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 1);
    assert_eq!(get(web.port).unwrap(), "one");

    // What now: the file still asks for release 2, and how to return to release 1.
    let err = run.stderr();
    assert!(err.contains("web: v2 failed; the stage file still asks for release 2"), "{err}");
    assert!(err.contains("the next commit tries it again"), "{err}");
    assert!(err.contains("Release 1 (v1) runs now"), "{err}");
    assert!(err.contains("`ferry rollback web`") && err.contains("`ferry release activate web 1`"), "{err}");
    // `rollback web` after the failure returns the file to what runs now: nothing to apply.
    p.run(&["rollback", "web"]).expect_code(0);
    assert!(p.p.read("stages/dev.toml").contains("active = 1"), "{}", p.p.read("stages/dev.toml"));
    let plan = p.run(&["plan", "--detailed-exitcode"]);
    assert!(plan.expect_code(0).stdout().starts_with("No changes."), "{}", plan.stdout());
}

#[test]
fn an_independent_app_carries_on_when_another_crashes() {
    let p = Project::new();
    let good = p.push("good", "good", &[]);
    let crash = p.push("crash", "crash", &["exit"]);
    let a = app("good", vec![(1, good)], 1);
    let b = app("crash", vec![(1, crash)], 1);
    p.stage(&[a.clone(), b]);
    let run = p.commit();
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("keep dying before turning healthy"), "fails fast, not at the timeout: {err}");
    assert!(err.contains("boom: cannot start"), "the task's last log lines are shown: {err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert_eq!(p.history("good")[0]["status"], "succeeded");
    assert_eq!(p.history("crash")[0]["status"], "failed");
    assert_eq!(get(a.port).unwrap(), "good");
}

#[test]
fn release_tasks_run_before_the_deploy_and_a_failing_one_keeps_the_old_release() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let d2 = p.push("web", "two", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    web.releases.push((2, d2));
    web.active = 2;
    web.release_task = Some("import sys; print('migrating failed'); sys.exit(4)");
    p.stage(&[web.clone()]);
    let run = p.commit();
    run.expect_code(1);
    assert!(run.stderr().contains("exited with code 4"), "{}", run.stderr());
    assert!(run.stderr().contains("migrating failed"), "log lines shown: {}", run.stderr());
    let h = p.history("web");
    assert_eq!(h[1]["status"], "failed");
    assert_eq!(get(web.port).unwrap(), "one");

    web.release_task = Some("print('migrated')");
    p.stage(&[web.clone()]);
    let run = p.commit();
    run.expect_code(0);
    assert!(run.stderr().contains("web/task/migrate"), "{}", run.stderr());
    assert_eq!(get(web.port).unwrap(), "two");
    assert_eq!(p.history("web")[2]["status"], "succeeded");
}

#[test]
fn a_saved_plan_is_applied_as_reviewed_or_refused_when_stale() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    web.scale = 1;
    p.stage(&[web.clone()]);
    p.run(&["plan", "-o", "first.plan"]).expect_code(0);
    p.run(&["commit", "first.plan"]).expect_code(0);
    p.run(&["plan", "-o", "stale.plan"]).expect_code(0);
    web.scale = 2;
    p.stage(&[web.clone()]);
    let run = p.run(&["commit", "stale.plan"]);
    run.expect_code(1);
    assert!(run.stderr().contains("is stale") && run.stderr().contains("stage file"), "{}", run.stderr());
    // Without a terminal and without --yes, nothing is applied.
    let run = p.run(&["commit"]);
    run.expect_code(1);
    assert!(run.stderr().contains("--yes"), "{}", run.stderr());
    p.commit().expect_code(0);
    let h = p.history("web");
    assert_eq!((h[1]["kind"].as_str(), h[1]["scale"].as_u64()), (Some("scale"), Some(2)));
}

#[test]
fn two_commits_at_once_one_is_refused_naming_the_other() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    web.start_delay = "1.5";
    web.grace = "15s"; // room for the delay plus a slow Python start on a loaded machine
    p.stage(&[web]);
    let first = p.spawn(&["commit", "--yes"]);
    wait_until("the first commit's deployment", Duration::from_secs(15), || in_progress(&p, "web"));
    let second = p.commit();
    second.expect_code(1);
    assert!(second.stderr().contains("ferry commit --yes"), "{}", second.stderr());
    assert!(second.stderr().contains(&format!("pid {}", first.pid())), "{}", second.stderr());
    let (code, _, err) = first.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
}

/// `ferry down` is a write like a commit: while a commit runs it is refused naming the
/// commit, and stops nothing (the commit's rollback would start it again).
#[test]
fn down_while_a_commit_runs_is_refused_and_stops_nothing() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let d2 = p.push("web", "two", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    web.releases.push((2, d2));
    web.active = 2;
    web.start_delay = "1.5";
    web.grace = "15s";
    p.stage(&[web.clone()]);
    let commit = p.spawn(&["commit", "--yes"]);
    wait_until("the deployment in progress", Duration::from_secs(15), || in_progress(&p, "web"));
    let down = p.run(&["down"]);
    down.expect_code(1);
    assert!(down.stderr().contains("ferry commit --yes"), "{}", down.stderr());
    assert!(get(web.port).is_ok(), "down stopped the app under a running commit");
    let (code, _, err) = commit.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
    assert_eq!(get(web.port).unwrap(), "two");
    p.run(&["down"]).expect_code(0);
    assert!(get(web.port).is_err(), "down stops it once the commit is done");
}

#[test]
fn a_commit_killed_mid_rollout_leaves_true_state_and_the_next_converges() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let d2 = p.push("web", "two", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    web.releases.push((2, d2));
    web.active = 2;
    web.start_delay = "2";
    // The app listens only after 2 s; on a loaded machine Python's own start adds seconds
    // more, so the grace period leaves room for both (the test is about the kill, not health).
    web.grace = "15s";
    p.stage(&[web.clone()]);
    let first = p.spawn(&["commit", "--yes"]);
    wait_until("the deployment in progress", Duration::from_secs(15), || in_progress(&p, "web"));
    first.signal(libc::SIGKILL);
    let _ = first.wait(Duration::from_secs(10));
    // The killed commit's lock stays, reported stale; the documented way on is force-unlock.
    let refused = p.commit();
    refused.expect_code(1);
    let err = refused.stderr();
    assert!(err.contains("stale lock"), "{err}");
    let id = err.rsplit("force-unlock ").next().unwrap().trim().trim_end_matches('`').to_string();
    p.run(&["force-unlock", &id]).expect_code(0);
    let state = p.state();
    let serial = state["serial"].as_u64().unwrap();
    assert_eq!(state["apps"]["web"]["active"]["release"], 1, "nothing claims v2 succeeded");
    assert_eq!(get(web.port).unwrap(), "one", "the old release still serves");

    let run = p.commit();
    run.expect_code(0);
    assert!(run.stderr().contains("settled deployments an interrupted commit left in progress"), "{}", run.stderr());
    let state = p.state();
    assert!(state["serial"].as_u64().unwrap() > serial);
    let h = p.history("web");
    let statuses: Vec<&str> = h.iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded", "aborted", "succeeded"]);
    let numbers: Vec<u64> = h.iter().map(|d| d["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(get(web.port).unwrap(), "two");
    p.commit().expect_code(0);
    assert_eq!(p.history("web").len(), 3, "converged: nothing left to do");
}

/// A commit aborted by `signal` (`None`: by `ferry abort`) rolls back and lets go of the lock.
fn abort_test(signal: Option<libc::c_int>) {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let bad = p.push("web", "bad", &["unhealthy"]);
    let mut web = app("web", vec![(1, d1)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    web.releases.push((2, bad));
    web.active = 2;
    web.timeout = "60s";
    p.stage(&[web.clone()]);
    let commit = p.spawn(&["commit", "--yes"]);
    wait_until("the deployment in progress", Duration::from_secs(15), || in_progress(&p, "web"));
    match signal {
        None => {
            p.run(&["abort"]).expect_code(0);
        }
        Some(signal) => commit.signal(signal),
    }
    let (code, out, err) = commit.wait(Duration::from_secs(30));
    assert_eq!(code, 130, "{out}\n{err}");
    let expected = match signal {
        None => "aborted by `ferry abort`",
        Some(libc::SIGHUP) => "aborted by SIGHUP (the terminal closed)",
        Some(_) => "aborted by Ctrl-C",
    };
    assert!(err.contains(expected), "{err}");
    let h = p.history("web");
    assert_eq!(h[1]["status"], "aborted");
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 1);
    assert_eq!(get(web.port).unwrap(), "one");
    let unlocked = p.run(&["abort"]);
    unlocked.expect_code(1);
    assert!(unlocked.stderr().contains("nothing to abort"), "the lock is released: {}", unlocked.stderr());
}

#[test]
fn ctrl_c_aborts_and_rolls_back() {
    abort_test(Some(libc::SIGINT));
}

/// A closed terminal or a dropped SSH session (SIGHUP) is a Ctrl-C, not a kill.
#[test]
fn sighup_aborts_and_rolls_back() {
    abort_test(Some(libc::SIGHUP));
}

#[test]
fn ferry_abort_from_another_shell_aborts_and_rolls_back() {
    abort_test(None);
}

/// `ferry commit` killed with kill -9 while an unhealthy release rolls out: nobody is left to
/// fail it, so the agent rolls the app back to what state records (instead of restarting
/// the bad release forever), `ferry abort` says at once that the holder is gone, and the
/// next commit settles the interrupted deployment and converges.
#[test]
fn a_killed_commit_s_rollout_is_rolled_back_by_the_agent_and_abort_says_the_holder_is_gone() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let bad = p.push("web", "bad", &["unhealthy"]);
    let mut web = app("web", vec![(1, d1.clone())], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    web.releases.push((2, bad));
    web.active = 2;
    web.timeout = "120s";
    p.stage(&[web.clone()]);
    let commit = p.spawn(&["commit", "--yes"]);
    wait_until("the deployment in progress", Duration::from_secs(15), || in_progress(&p, "web"));
    wait_until("a task of the bad release", Duration::from_secs(15), || live_releases(&p).contains(&2));
    commit.signal(libc::SIGKILL);
    let _ = commit.wait(Duration::from_secs(10));

    // Not "still holds the lock after 60s": it says at once that the holder is gone.
    let abort = p.run(&["abort", "--wait", "60s"]);
    abort.expect_code(1);
    let err = abort.stderr();
    assert!(err.contains("no longer runs") && err.contains("ferry force-unlock"), "{err}");

    wait_until("the agent to roll back to release 1", Duration::from_secs(30), || live_releases(&p) == vec![1]);
    assert_eq!(get(web.port).unwrap(), "one");
    let log = p.p.read(".ferry/agent/agent.log");
    assert!(log.contains("dev/web: the ferry that started its rollout") && log.contains("is gone"), "{log}");

    let id = err.rsplit("force-unlock ").next().unwrap().split('`').next().unwrap().to_string();
    p.run(&["force-unlock", &id]).expect_code(0);
    // A good release 3: the next commit settles what the killed one left and deploys it.
    web.releases.push((3, p.push("web", "two", &[])));
    web.active = 3;
    p.stage(&[web.clone()]);
    let next = p.commit();
    next.expect_code(0);
    assert!(next.stderr().contains("settled deployments an interrupted commit left in progress"), "{}", next.stderr());
    assert_eq!(get(web.port).unwrap(), "two");
}

/// The releases of the live tasks of `web` (sorted, deduplicated), from `ferry ps --json`.
fn live_releases(p: &Project) -> Vec<u64> {
    let ps: Value = serde_json::from_str(&p.run(&["ps", "--json"]).stdout()).unwrap_or(Value::Null);
    let tasks = ps["stages"][0]["services"][0]["tasks"].as_array().cloned().unwrap_or_default();
    let mut releases: Vec<u64> =
        tasks.iter().filter(|t| t["last_status"] != "STOPPED").filter_map(|t| t["release"].as_u64()).collect();
    releases.sort();
    releases.dedup();
    releases
}

#[test]
fn task_run_streams_output_and_exits_with_the_task_code() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    p.stage(&[app("web", vec![(1, d1)], 1)]);
    // Any declared release, before anything is deployed.
    let run = p.run(&[
        "task",
        "run",
        "web",
        "--env",
        "X=42",
        "--",
        "python3",
        "-c",
        "import os,sys; print('x is', os.environ['X'], open('release.txt').read()); sys.exit(7)",
    ]);
    run.expect_code(7);
    assert!(run.stdout().contains("x is 42 one"), "{}", run.stdout());
    let list = p.run(&["task", "list", "web"]);
    list.expect_code(0);
    assert!(list.stdout().contains("STOPPED") && list.stdout().contains(" 7 "), "{}", list.stdout());
    // The columns line up under their headers.
    let out = list.stdout();
    let lines: Vec<&str> = out.lines().collect();
    for (header, value) in [("Name", "one-off"), ("Last Status", "STOPPED"), ("Exit", "7")] {
        let at = lines[0].find(header).unwrap();
        assert!(lines[1..].iter().all(|l| l.get(at..).is_some_and(|v| v.starts_with(value))), "{header}:\n{out}");
    }
}

/// A removed app is gone from `ps`, not listed as "MISSING 0 / 0" for its stopped tasks;
/// asked for by name, it says so.
#[test]
fn a_removed_app_no_longer_shows_in_ps() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let d2 = p.push("api", "one", &[]);
    let web = AppDef { scale: 1, ..app("web", vec![(1, d1)], 1) };
    let api = AppDef { scale: 1, ..app("api", vec![(1, d2)], 1) };
    p.stage(&[web.clone(), api]);
    p.commit().expect_code(0);
    assert!(p.run(&["ps"]).expect_code(0).stdout().contains("api  ACTIVE"));
    p.stage(std::slice::from_ref(&web));
    p.run(&["commit", "--yes", "--allow-remove"]).expect_code(0);
    let ps = p.run(&["ps"]).expect_code(0).stdout();
    assert!(ps.contains("web  ACTIVE 1 / 1"), "{ps}");
    assert!(!ps.contains("api"), "{ps}");
    let named = p.run(&["ps", "api"]).expect_code(0).stdout();
    assert!(named.contains("api  MISSING"), "{named}");
}

/// A crashed local agent is noticed: a plain `plan` on a local stage asks the running agent
/// what runs (without starting one), and after `kill -9` of the agent shows every task that
/// should run as drift and plans it back; `--offline` does not ask; committing the plan brings
/// the tasks back as a "Revert drift" deployment, not as a new activation.
#[test]
fn a_plain_plan_notices_a_killed_agent_and_its_commit_brings_the_tasks_back() {
    let t = Project::new();
    let d1 = t.push("web", "one", &[]);
    let web = AppDef { scale: 2, ..app("web", vec![(1, d1)], 1) };
    t.stage(std::slice::from_ref(&web));
    t.commit().expect_code(0);
    let same = t.run(&["plan", "--detailed-exitcode"]);
    assert!(same.expect_code(0).stdout().contains("matches recorded state and what runs"), "{}", same.stdout());

    let layout = Layout::new(t.p.path());
    let agent = layout.agent_pid().expect("an agent pid file");
    // SAFETY: the agent this test started.
    unsafe { libc::kill(agent as libc::pid_t, libc::SIGKILL) };
    wait_until("the killed agent to be gone", Duration::from_secs(10), || {
        !ferry::process::alive(agent) && std::os::unix::net::UnixStream::connect(layout.socket()).is_err()
    });
    let drift = t.run(&["plan", "--detailed-exitcode"]);
    drift.expect_code(2);
    let out = drift.stdout();
    assert!(out.contains("  web: 0 of 2 tasks running\n"), "{out}");
    assert!(out.contains("the local agent is not running"), "{out}");
    assert!(out.contains("± web: Revert drift: 0 of 2 tasks running"), "{out}");
    let json: Value = serde_json::from_str(&t.run(&["plan", "--json"]).expect_code(0).stdout()).unwrap();
    assert_eq!(json["stages"][0]["drift"][0]["tasks"], serde_json::json!({"running": 0, "expected": 2}));
    assert!(std::os::unix::net::UnixStream::connect(layout.socket()).is_err(), "planning must not start an agent");
    t.run(&["plan", "--offline", "--detailed-exitcode"]).expect_code(0);

    let commit = t.commit();
    commit.expect_code(0);
    assert!(commit.stdout().contains("Revert drift: 0 of 2 tasks running"), "{}", commit.stdout());
    assert_eq!(get(web.port), Ok("one".to_string()));
    let ps = t.run(&["ps"]).expect_code(0).stdout();
    assert!(ps.contains("ACTIVE 2 / 2 running tasks"), "{ps}");
    t.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    t.run(&["plan", "--refresh", "--detailed-exitcode"]).expect_code(0);
    let last = t.history("web").pop().unwrap();
    assert_eq!(last["description"], "Revert drift: 0 of 2 tasks running", "{last:#?}");
}

/// A worker (no port, no health check) gets no network check: its task shows RUNNING with
/// health UNKNOWN, and the deploy counts it once it still runs at the end of its grace
/// period. Before, it was TCP-checked on the port ferry assigned it and never deployed.
#[test]
fn a_worker_without_port_or_health_check_deploys_with_health_unknown() {
    let p = Project::new();
    let d1 = p.push("worker", "one", &[]);
    p.p.write(
        "stages/dev.toml",
        &format!(
            "[runtime]\nkind = \"local\"\n\n[apps.worker]\nimage = \"worker\"\nactive = 1\nscale = 1\n\
             command = [\"python3\", \"-c\", \"import time; time.sleep(600)\"]\n\n[apps.worker.releases]\n\
             1 = \"{d1}\"\n\n[apps.worker.health]\ngrace_period = \"1s\"\n\n[apps.worker.deploy]\n\
             timeout = \"30s\"\nstop_timeout = \"2s\"\n"
        ),
    );
    let run = p.commit();
    run.expect_code(0);
    assert!(run.stdout().contains("worker  v1   succeeded"), "{}", run.stdout());
    let ps = p.run(&["ps"]).expect_code(0).stdout();
    assert!(ps.contains("worker  ACTIVE 1 / 1 running tasks"), "{ps}");
    let task = ps.lines().find(|l| l.contains(" RUNNING ")).unwrap_or_else(|| panic!("a running task: {ps}"));
    assert!(task.contains(" UNKNOWN "), "health UNKNOWN, not HEALTHY: {ps}");
}
