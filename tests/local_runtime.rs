//! The local runtime driven through the `Runtime` trait, with real processes (a small
//! Python HTTP app) on 127.0.0.1: rolling replacement under load, a never-healthy revision,
//! crash restarts, one-off tasks, logs, and the agent's life (outlives its starter, `down`
//! stops everything). Every test's agent is stopped by a guard, also when it fails.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::apply::task::{watch_task, TaskEnd, TaskWait};
use ferry::runtime::{Health, Lifecycle, LogQuery, RolloutState, Runtime, ServiceStatus, TaskSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::agent::{gone, settings, LocalFixture};

/// One GET through the app's port; the body on a 200.
pub(crate) async fn get(port: u16) -> Result<String, String> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        if !text.starts_with("HTTP/1.0 200") && !text.starts_with("HTTP/1.1 200") {
            return Err(format!("bad response: {:?}", text.lines().next()));
        }
        Ok(text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt).await.unwrap_or_else(|_| Err("timed out".into()))
}

/// Continuous load on a port from a few clients until stopped (or a bounded count).
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<String>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(port: u16, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..clients)
            .map(|_| {
                let (stop, ok, failures, bodies) = (stop.clone(), ok.clone(), failures.clone(), bodies.clone());
                tokio::spawn(async move {
                    for _ in 0..20_000 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        match get(port).await {
                            Ok(body) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                let mut b = bodies.lock().unwrap();
                                if b.last() != Some(&body) {
                                    b.push(body);
                                }
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load { stop, ok, failures, bodies, handles }
    }

    /// Wait until the app has answered `n` more requests: load that ran before (or after) a
    /// step, waited for as a condition with a deadline rather than a fixed sleep.
    pub(crate) async fn served(&self, n: usize) {
        let target = self.ok.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok.load(Ordering::SeqCst) < target {
            let failures = self.failures.lock().unwrap().clone();
            assert!(
                Instant::now() < deadline,
                "the app answered no load; failures: {:?}",
                &failures[..failures.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop; assert that no request failed; return the distinct bodies in order of change.
    pub(crate) async fn finish_without_failures(self) -> Vec<String> {
        let (ok, failures, bodies) = self.finish().await;
        assert!(
            failures.is_empty(),
            "{} failed requests (of {}): {:?}",
            failures.len(),
            ok + failures.len(),
            &failures[..failures.len().min(5)]
        );
        bodies
    }

    /// Stop and return (successes, failures, distinct bodies in order of change).
    pub(crate) async fn finish(self) -> (usize, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            let _ = h.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        let bodies = self.bodies.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failures, bodies)
    }
}

fn completed(id: &ferry::runtime::RolloutId) -> impl Fn(&ServiceStatus) -> bool + '_ {
    move |s| s.rollout(id).is_some_and(|r| r.state == RolloutState::Completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_deploys_under_load_lose_no_request() {
    let fx = LocalFixture::new();
    let rt = &fx.runtime;
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    assert_eq!(rt.register_revision(&fx.spec(1, &[])).await.unwrap(), v1, "identical specs share a revision");
    let r1 = rt.deploy("web", &v1, 2, &settings()).await.unwrap();
    let s = fx.wait_for("first rollout", Duration::from_secs(30), completed(&r1)).await;
    let old_pids: Vec<u32> = s.tasks.iter().filter_map(|t| t.pid).collect();
    assert_eq!(old_pids.len(), 2);

    let load = Load::start(fx.app_port, 4);
    load.served(20).await;
    let v2 = rt.register_revision(&fx.spec(2, &[])).await.unwrap();
    let r2 = rt.deploy("web", &v2, 2, &settings()).await.unwrap();
    fx.wait_for("second rollout", Duration::from_secs(30), completed(&r2)).await;
    let v3 = rt.register_revision(&fx.spec(3, &[])).await.unwrap();
    let r3 = rt.deploy("web", &v3, 2, &settings()).await.unwrap();
    let s = fx.wait_for("third rollout", Duration::from_secs(30), completed(&r3)).await;
    load.served(20).await;
    let bodies = load.finish_without_failures().await;

    assert_eq!(bodies.first().map(String::as_str), Some("1"));
    assert_eq!(bodies.last().map(String::as_str), Some("3"));
    assert_eq!(s.running, 2);
    let live: Vec<_> = s.tasks.iter().filter(|t| t.last_status != Lifecycle::Stopped).collect();
    assert!(live.iter().all(|t| t.release == 3 && t.health == Health::Healthy && t.in_service), "{live:#?}");
    for pid in old_pids {
        assert!(gone(pid), "old task pid {pid} still runs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_never_turns_healthy_gets_no_traffic() {
    let fx = LocalFixture::new();
    let rt = &fx.runtime;
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    let r1 = rt.deploy("web", &v1, 1, &settings()).await.unwrap();
    fx.wait_for("first rollout", Duration::from_secs(30), completed(&r1)).await;

    let load = Load::start(fx.app_port, 3);
    let bad = rt.register_revision(&fx.spec(2, &[("HEALTHY", "0")])).await.unwrap();
    let r2 = rt.deploy("web", &bad, 1, &settings()).await.unwrap();
    // The engine above would wait for deploy.timeout; the facts it sees are these.
    let s = fx
        .wait_for("the bad task to be replaced after failing its checks", Duration::from_secs(30), |s| {
            let failed = s.rollout(&r2).is_some_and(|r| r.failed_tasks >= 1);
            failed && s.tasks.iter().any(|t| t.release == 2 && t.last_check.as_deref().unwrap_or("").contains("503"))
        })
        .await;
    let bad_task = s.tasks.iter().find(|t| t.release == 2).expect("a task of release 2");
    assert!(!bad_task.in_service, "{bad_task:#?}");
    let r_back = rt.roll_back("web", &v1).await.unwrap();
    let s = fx.wait_for("rollback", Duration::from_secs(30), completed(&r_back)).await;
    load.served(20).await;
    let bodies = load.finish_without_failures().await;

    assert_eq!(bodies, vec!["1".to_string()], "release 2 must never serve");
    let r2 = s.rollout(&r2).unwrap();
    assert_eq!(r2.state, RolloutState::Failed);
    assert!(r2.reason.as_deref().unwrap_or("").contains("rolled back"), "{r2:#?}");
    assert!(s.tasks.iter().filter(|t| t.release == 2).all(|t| t.last_status == Lifecycle::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_task_is_restarted_and_counted() {
    let fx = LocalFixture::new();
    let rt = &fx.runtime;
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    let r1 = rt.deploy("web", &v1, 1, &settings()).await.unwrap();
    let s = fx.wait_for("rollout", Duration::from_secs(30), completed(&r1)).await;
    let task = s.tasks[0].clone();
    let pid = task.pid.unwrap();
    // SAFETY: the task process this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let s = fx
        .wait_for("the task to be restarted and healthy", Duration::from_secs(30), |s| {
            s.task(&task.id).is_some_and(|t| t.restarts == 1 && t.health == Health::Healthy && t.in_service)
        })
        .await;
    let t = s.task(&task.id).unwrap();
    assert_ne!(t.pid, Some(pid));
    assert!(gone(pid));
    assert!(t.stopped_reason.as_deref().unwrap_or("").contains("signal 9"), "{t:#?}");
    assert_eq!(get(fx.app_port).await.unwrap(), "1");

    let ps = fx.project.run(&["ps", "-s", "dev"]);
    ps.expect_code(0);
    let out = ps.stdout();
    assert!(out.contains("web  ACTIVE 1 / 1 running tasks (0 pending)"), "{out}");
    assert!(out.contains("ID") && out.contains("Health Status") && out.contains("Restarts"), "{out}");
    let row = out.lines().find(|l| l.starts_with(task.id.as_str())).expect("task row");
    assert!(row.contains("RUNNING") && row.contains("HEALTHY") && row.trim_end().ends_with('1'), "{row}");
    let json: serde_json::Value = serde_json::from_str(&fx.project.run(&["ps", "--json"]).stdout()).unwrap();
    assert_eq!(json["stages"][0]["services"][0]["tasks"][0]["restarts"], 1);
}

/// A watcher (the apply engine) learns of a change as soon as the agent sees it, instead of
/// at its next poll; while nothing changes, the agent holds the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_changes_answers_when_something_changed_and_holds_otherwise() {
    let fx = LocalFixture::new();
    let rt = &fx.runtime;
    let apps = vec!["web".to_string()];
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    let r1 = rt.deploy("web", &v1, 1, &settings()).await.unwrap();
    fx.wait_for("rollout", Duration::from_secs(30), completed(&r1)).await;

    // A set of apps not asked about before is answered at once, whatever the wait.
    let started = Instant::now();
    let first = rt.observe_changes(&apps, Duration::from_secs(30)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(first[0].rollout(&r1).is_some_and(|r| r.state == RolloutState::Completed));

    // Nothing changes: the answer comes when the wait is up, and says the same.
    let started = Instant::now();
    let same = rt.observe_changes(&apps, Duration::from_millis(600)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600), "answered after {:?}", started.elapsed());
    assert_eq!(same, first);

    // A change (here a scale) is answered at once, well before the agent's longest hold (5 s).
    let watcher = {
        let rt = rt.clone();
        let apps = apps.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let seen = rt.observe_changes(&apps, Duration::from_secs(30)).await.unwrap();
            (seen, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    rt.scale("web", 2).await.unwrap();
    let (seen, waited) = tokio::time::timeout(Duration::from_secs(20), watcher).await.expect("answered").unwrap();
    // Desired 2 means answered after the change, not at once.
    assert_eq!(seen[0].desired, 2, "{seen:#?}");
    assert!(waited < Duration::from_secs(4), "answered only after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_tasks_exit_codes_logs_and_secrets() {
    let fx = LocalFixture::new();
    std::env::set_var("FERRY_TEST_SECRET_A", "from-env");
    fx.project.write("secret.txt", "from-file\n");
    let mut spec = fx.spec(1, &[]);
    spec.config.secrets.insert("A".into(), "env:FERRY_TEST_SECRET_A".parse().unwrap());
    spec.config.secrets.insert("B".into(), "file:secret.txt".parse().unwrap());
    let rt = &fx.runtime;
    let v1 = rt.register_revision(&spec).await.unwrap();
    let script = "import os, sys; print('a=' + os.environ['A'], 'b=' + os.environ['B'], 'port=' + os.environ['PORT'], sys.argv[1]); sys.exit(7)";
    let id = rt
        .run_task(&TaskSpec {
            app: "web".into(),
            revision: v1.clone(),
            command: Some(vec!["python3".into(), "-c".into(), script.into(), "${PORT}".into()]),
            env: Default::default(),
            name: "migrate".into(),
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let wait = TaskWait { deadline: Some(deadline), ..TaskWait::default() };
    let TaskEnd::Stopped(t) = watch_task(rt, "web", &id, wait).await.unwrap() else { panic!("task did not finish") };
    assert_eq!(t.exit_code, Some(7));
    assert_eq!(t.name.as_deref(), Some("migrate"));

    let mut lines = rt.logs("web", &LogQuery { task: Some(id.clone()), ..Default::default() }).await.unwrap();
    let mut text = Vec::new();
    while let Some(l) = lines.recv().await {
        text.push(l.text);
    }
    let out = text.iter().find(|l| l.starts_with("a=")).unwrap_or_else(|| panic!("{text:#?}"));
    assert!(out.starts_with("a=from-env b=from-file port="), "{out}");
    let port = out.split("port=").nth(1).unwrap().split(' ').collect::<Vec<_>>();
    assert_eq!(port[0], port[1], "${{PORT}} expanded to PORT");
    assert!(text.iter().all(|l| !l.contains("ferry:") || !l.contains("from-env")), "secret values are never logged");

    let cli = fx.project.run(&["logs", "-s", "dev", "web", "--task", id.as_str(), "--since", "1h"]);
    cli.expect_code(0);
    assert!(cli.stdout().contains("a=from-env"), "{}", cli.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_outlives_its_starter_and_down_stops_everything() {
    let fx = LocalFixture::new();
    fx.project.run(&["agent", "start"]).expect_code(0);
    let layout = fx.runtime.layout().clone();
    let agent_pid = layout.agent_pid().expect("pid file");
    assert!(!gone(agent_pid), "the agent outlives `ferry agent start`");
    let status = fx.project.run(&["agent", "status"]);
    status.expect_code(0);
    assert!(status.stdout().contains(&format!("pid {agent_pid}")), "{}", status.stdout());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&layout.socket()), 0o600);
        assert_eq!(mode(&layout.agent_dir()), 0o700);
    }

    let rt = &fx.runtime;
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    let r1 = rt.deploy("web", &v1, 2, &settings()).await.unwrap();
    let s = fx.wait_for("rollout", Duration::from_secs(30), completed(&r1)).await;
    assert_eq!(layout.agent_pid(), Some(agent_pid), "the runtime used the running agent");
    let pids: Vec<u32> = s.tasks.iter().filter_map(|t| t.pid).collect();
    assert_eq!(pids.len(), 2);

    let started = Instant::now();
    fx.project.run(&["down", "-s", "dev"]).expect_code(0);
    assert!(started.elapsed() < Duration::from_secs(20));
    for pid in pids {
        assert!(gone(pid), "task pid {pid} survived down");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(agent_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(agent_pid), "the agent exits when down leaves nothing");
    assert!(!layout.socket().exists());
    assert!(get(fx.app_port).await.is_err(), "the app port is closed");
    fx.project.run(&["agent", "status"]).expect_code(3);
}

/// The agent keeps no descriptor that its starter inherited: a CI step running `ferry commit`
/// waits until its output pipe closes, and the agent (which outlives the step) must not hold
/// it open. The pipe's write end reaches `ferry agent start` only (close-on-exec everywhere
/// else, so no other test's child holds it); once ferry has exited, the read end must see
/// the end of the pipe while the agent runs on.
#[test]
fn the_agent_holds_no_descriptor_its_starter_inherited() {
    use std::os::unix::process::CommandExt;
    let fx = LocalFixture::new();
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: a pipe of this test's own, both ends closed below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read_end, write_end) = (fds[0], fds[1]);
    let mut cmd = fx.project.ferry();
    cmd.args(["agent", "start"]);
    // SAFETY: fcntl is async-signal-safe; it lets this one child inherit the write end, as
    // a CI runner's pipe is inherited.
    unsafe {
        cmd.pre_exec(move || {
            libc::fcntl(write_end, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let started = crate::support::Run(cmd.output().unwrap());
    // SAFETY: our copy of the write end; only children may hold it now.
    unsafe { libc::close(write_end) };
    started.expect_code(0);
    let agent_pid = fx.runtime.layout().agent_pid().expect("pid file");
    assert!(!gone(agent_pid), "the agent runs on");

    let mut poll = libc::pollfd { fd: read_end, events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd of ours; waits at most 10 s for every writer to be gone.
    let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
    let mut byte = [0u8; 1];
    let read = if ready == 1 { unsafe { libc::read(read_end, byte.as_mut_ptr().cast(), 1) } } else { -1 };
    unsafe { libc::close(read_end) };
    assert_eq!((ready, read), (1, 0), "the pipe reached its end: no process kept the inherited write end");
    assert!(!gone(agent_pid), "the agent still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_replacement_with_small_surge_keeps_serving() {
    let fx = LocalFixture::new();
    let rt = &fx.runtime;
    let mut rolling = settings();
    // One extra task at a time, never fewer than two of three serving: the ECS-style roll
    // with mixed versions, as opposed to the default all-at-once switch.
    rolling.max_surge = ferry::config::Percent(33);
    rolling.min_healthy = ferry::config::Percent(66);
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    let r1 = rt.deploy("web", &v1, 3, &rolling).await.unwrap();
    fx.wait_for("first rollout", Duration::from_secs(30), completed(&r1)).await;
    let load = Load::start(fx.app_port, 3);
    let v2 = rt.register_revision(&fx.spec(2, &[])).await.unwrap();
    let r2 = rt.deploy("web", &v2, 3, &rolling).await.unwrap();
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = fx.web().await;
        let live = s.tasks.iter().filter(|t| t.last_status != Lifecycle::Stopped).count();
        most = most.max(live);
        if completed(&r2)(&s) {
            break;
        }
        assert!(Instant::now() < deadline, "rolling rollout did not complete: {s:#?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    load.served(20).await;
    let bodies = load.finish_without_failures().await;
    assert_eq!(bodies.last().map(String::as_str), Some("2"));
    assert!(most <= 4, "surge of one task at most, saw {most} live tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_die_with_a_killed_agent() {
    let fx = LocalFixture::new();
    let rt = &fx.runtime;
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    let r1 = rt.deploy("web", &v1, 1, &settings()).await.unwrap();
    let s = fx.wait_for("rollout", Duration::from_secs(30), completed(&r1)).await;
    let task_pid = s.tasks[0].pid.unwrap();
    let agent_pid = rt.layout().agent_pid().unwrap();
    // SAFETY: the agent this test started.
    unsafe { libc::kill(agent_pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(task_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(task_pid), "an orphaned task survived its agent");
    // Tasks get their parent-death signal when the agent's spawning thread exits, which can be
    // before the dying agent's last thread closes the listening socket; until then a connect
    // still succeeds and goes unanswered. Wait for the socket to refuse connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(rt.layout().socket()).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next call starts a fresh agent, which takes over the stale socket.
    assert_eq!(rt.observe(&[]).await.unwrap().len(), 0);
    let v1 = rt.register_revision(&fx.spec(1, &[])).await.unwrap();
    let r1 = rt.deploy("web", &v1, 1, &settings()).await.unwrap();
    fx.wait_for("rollout on a fresh agent", Duration::from_secs(30), completed(&r1)).await;
    assert_ne!(rt.layout().agent_pid(), Some(agent_pid));
}
