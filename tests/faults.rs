//! Fault injection on the local runtime: releases that crash at start, never listen, or
//! fail after turning healthy; a state write that fails (a full disk, through a failing
//! store wrapper: the one fault no real part produces on cue); the agent killed with
//! SIGKILL mid-rollout and between commits; a corrupted state file. Each checks what ferry
//! promises: the old release keeps serving, nothing is recorded as succeeded that did not,
//! the error says what happened, no process or port is left behind.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry::apply::ops::OpContext;
use ferry::apply::{AbortSignal, ApplyError, Engine, SilentHook};
use ferry::process::alive as process_alive;
use ferry::registry::{OciRegistry, ProjectRegistry, RegistryUrl};
use ferry::runtime::local::leftovers::session_members;
use ferry::runtime::local::LocalRuntime;
use ferry::state::{DeploymentStatus, LocalStateStore, LockInfo, LockedStage, StateStore};
use serde_json::Value;

use crate::commit::{app, get, in_progress, wait_until, Load, Project};
use crate::support::failing_store::FullDiskStore;
use crate::support::ferry_bin;

/// `ferry ps --json`: the live tasks of app `web`.
fn tasks(p: &Project) -> Vec<Value> {
    ps_tasks(p, &["ps", "--json"])
}

/// `ferry ps --all --json`: every task of `web` the agent remembers, stopped ones too.
fn all_tasks(p: &Project) -> Vec<Value> {
    ps_tasks(p, &["ps", "--all", "--json"])
}

fn ps_tasks(p: &Project, args: &[&str]) -> Vec<Value> {
    let ps: Value = serde_json::from_str(&p.run(args).stdout()).unwrap_or(Value::Null);
    ps["stages"][0]["services"][0]["tasks"].as_array().cloned().unwrap_or_default()
}

fn agent_pid(p: &Project) -> u32 {
    ferry::runtime::local::Layout::new(p.p.path()).agent_pid().expect("an agent pid file")
}

#[test]
fn a_release_that_crashes_at_start_fails_fast_and_the_old_keeps_serving() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let crash = p.push("web", "crash", &["exit"]);
    let mut web = app("web", vec![(1, d1), (2, crash)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    web.active = 2;
    p.stage(&[web.clone()]);
    let load = Load::start(web.port);
    let run = p.commit();
    let (ok, failed) = load.finish();
    run.expect_code(1);
    assert!(failed.is_empty(), "failed requests while the release crashed: {failed:?}");
    assert!(!ok.is_empty() && ok.iter().all(|b| b == "one"), "only the old release served");
    let err = run.stderr();
    assert!(err.contains("keep dying before turning healthy"), "fails fast, not at the timeout: {err}");
    assert!(err.contains("exit code 3") && err.contains("boom: cannot start"), "exit code and log lines: {err}");
    assert!(run.stdout().contains("web  v2   failed"), "{}", run.stdout());
    let h = p.history("web");
    assert_eq!(h[1]["status"], "failed");
    let reason = h[1]["reason"].as_str().unwrap();
    assert!(reason.contains("exit code 3") && reason.contains("boom: cannot start"), "{reason}");
    assert!(reason.contains("rolled back") && reason.contains("keeps serving"), "{reason}");
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 1);
    assert_eq!(get(web.port).unwrap(), "one");
}

#[test]
fn a_release_that_never_listens_fails_at_the_timeout_and_the_old_keeps_serving() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let d2 = p.push("web", "two", &[]);
    let mut web = app("web", vec![(1, d1), (2, d2)], 1);
    web.timeout = "5s";
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    // Release 2 sleeps for an hour before it listens: its checks are refused until the
    // deploy timeout.
    web.active = 2;
    web.start_delay = "3600";
    p.stage(&[web.clone()]);
    let load = Load::start(web.port);
    let run = p.commit();
    let (ok, failed) = load.finish();
    run.expect_code(1);
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(!ok.is_empty() && ok.iter().all(|b| b == "one"), "only the old release served");
    let err = run.stderr();
    assert!(err.contains("not healthy within the deploy timeout (5s)"), "{err}");
    assert!(err.contains("last check: GET /health") && err.to_lowercase().contains("refused"), "{err}");
    let h = p.history("web");
    assert_eq!(h[1]["status"], "failed");
    assert!(h[1]["reason"].as_str().unwrap().contains("refused"), "{}", h[1]["reason"]);
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 1);
    assert_eq!(get(web.port).unwrap(), "one");
    wait_until("the unlistening tasks to be stopped", Duration::from_secs(20), || {
        tasks(&p).iter().all(|t| t["release"] == 1 || t["last_status"] == "STOPPED")
    });
}

#[test]
fn a_task_that_fails_after_turning_healthy_is_restarted_and_reported() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let web = app("web", vec![(1, d1.clone())], 1);
    p.stage(std::slice::from_ref(&web));
    p.commit().expect_code(0);
    let before = p.state();
    // The release folder the tasks run in: its `unhealthy` file turns /health to 503.
    let sick = p.p.path().join(".ferry/releases").join(&d1).join("unhealthy");
    assert!(sick.parent().unwrap().is_dir(), "release folder {}", sick.parent().unwrap().display());
    std::fs::write(&sick, "").unwrap();
    wait_until("the agent to restart the failing tasks", Duration::from_secs(30), || {
        let t = tasks(&p);
        t.len() >= 2
            && t.iter().all(|t| {
                t["restarts"].as_u64() >= Some(1)
                    && t["stopped_reason"].as_str().is_some_and(|r| r.contains("failed health checks"))
            })
    });
    let reasons: Vec<Value> = tasks(&p).iter().map(|t| t["stopped_reason"].clone()).collect();
    assert!(reasons.iter().all(|r| r.as_str().is_some_and(|r| r.contains("503"))), "the failing check: {reasons:?}");
    let ps = p.run(&["ps"]).stdout();
    assert!(ps.contains("Restarts"), "{ps}");
    // Nothing claims otherwise: state still holds the one deployment, and a commit has
    // nothing to do for an app the runtime is already restarting.
    assert_eq!(p.state()["apps"]["web"]["history"], before["apps"]["web"]["history"]);
    std::fs::remove_file(&sick).unwrap();
    wait_until("the restarted tasks to serve again", Duration::from_secs(40), || get(web.port).as_deref() == Ok("one"));
}

fn engine(p: &Project) -> Engine {
    let root = p.p.path();
    let url = RegistryUrl::parse(&p.p.registry_url()).unwrap();
    let registry = Arc::new(ProjectRegistry::fixed(OciRegistry::anonymous(url)));
    Engine {
        ops: OpContext {
            runtime: Arc::new(LocalRuntime::new(root, "dev").with_agent_program(ferry_bin())),
            registry: registry.clone(),
            local_releases: Some((registry, root.join(".ferry/releases"))),
        },
        parallelism: None,
        source: Default::default(),
        builds: Default::default(),
        stream_logs: false,
        abort: AbortSignal::new(),
    }
}

/// Plan the stage files against the stored state and apply, through `store`.
async fn apply_through(p: &Project, store: &FullDiskStore) -> Result<(), ApplyError> {
    let project = ferry::config::load_project(p.p.path()).unwrap();
    let desired = ferry::config::load_stage(&project, "dev").unwrap();
    let lock = LockInfo::for_this_process("fault test");
    let mut session = LockedStage::acquire(Box::new(store.clone()), "dev", lock, Duration::ZERO).unwrap();
    let cs = ferry::plan::plan(&desired, session.state(), &Default::default()).unwrap();
    assert!(!cs.is_empty());
    engine(p).apply(&cs, &mut session, &mut SilentHook).await.map(|report| assert!(report.succeeded()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_write_that_fails_stops_the_commit_and_keeps_the_last_good_state() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let d2 = p.push("web", "two", &[]);
    let mut web = app("web", vec![(1, d1), (2, d2)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    let state_file = p.p.path().join(".ferry/state/dev.json");
    let store = FullDiskStore::new(LocalStateStore::new(p.p.path().join(".ferry/state")));
    web.active = 2;
    p.stage(&[web.clone()]);

    // The disk is full from the start: the first journal write fails, and nothing reaches
    // the runtime after it.
    let good = std::fs::read_to_string(&state_file).unwrap();
    store.set_full(true);
    let err = apply_through(&p, &store).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot write state, so the commit stopped"), "{text}");
    assert!(text.contains(&state_file.display().to_string()) && text.contains("No space left on device"), "{text}");
    assert!(std::fs::read_to_string(&state_file).unwrap() == good, "the last good state stays, byte for byte");
    assert_eq!(store.lock_holder("dev").unwrap(), None, "the lock is released");
    assert!(all_tasks(&p).iter().all(|t| t["release"] == 1), "release 2 never started: {:#?}", all_tasks(&p));
    assert_eq!(get(web.port).unwrap(), "one");

    // The disk fills as the deploy is recorded in progress: the runtime never hears of it.
    store.fill_when(|s| s.apps["web"].history.iter().any(|d| d.status == DeploymentStatus::InProgress));
    let err = apply_through(&p, &store).await.unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    let h = p.history("web");
    assert_eq!((h.len(), h[0]["status"].as_str()), (1, Some("succeeded")), "{h:#?}");
    assert!(all_tasks(&p).iter().all(|t| t["release"] == 1), "release 2 never started: {:#?}", all_tasks(&p));

    // The disk fills as the rollout's end is recorded: state keeps saying in progress, never
    // succeeded, although release 2 serves.
    store
        .fill_when(|s| s.apps["web"].history.iter().any(|d| d.status == DeploymentStatus::Succeeded && d.release == 2));
    let err = apply_through(&p, &store).await.unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    let h = p.history("web");
    assert_eq!(h.last().unwrap()["status"], "in_progress", "{h:#?}");
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 1, "nothing recorded succeeded");

    // With room again, the next commit settles the entry and converges.
    store.set_full(false);
    let run = p.commit();
    run.expect_code(0);
    assert!(run.stderr().contains("settled deployments an interrupted commit left in progress"), "{}", run.stderr());
    let statuses: Vec<Value> = p.history("web").iter().map(|d| d["status"].clone()).collect();
    assert_eq!(statuses, ["succeeded", "aborted", "succeeded"]);
    assert_eq!(get(web.port).unwrap(), "two");
}

#[test]
fn an_agent_killed_mid_rollout_is_replaced_its_leftovers_killed_and_state_stays_true() {
    let p = Project::new();
    // Both releases serve from a child process: what the kernel's parent-death signal
    // does not reach, and what the next agent must clean up.
    let d1 = p.push("web", "one", &["fork"]);
    let d2 = p.push("web", "two", &["fork"]);
    let mut web = app("web", vec![(1, d1), (2, d2)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    assert_eq!(get(web.port).unwrap(), "one");

    web.active = 2;
    web.start_delay = "3";
    p.stage(&[web.clone()]);
    let old_agent = agent_pid(&p);
    let commit = p.spawn(&["commit", "--yes"]);
    // Two tasks of each release, each a parent and its child, plus the agent.
    wait_until("release 2's tasks to start their children", Duration::from_secs(20), || {
        in_progress(&p, "web") && session_members(old_agent).len() >= 9
    });
    let left = session_members(old_agent);
    // SAFETY: the agent this test started.
    unsafe { libc::kill(old_agent as libc::pid_t, libc::SIGKILL) };

    let (code, out, err) = commit.wait(Duration::from_secs(60));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("the runtime no longer knows app web"), "{err}");
    assert!(err.contains("started release 1 again"), "the previous release is brought back: {err}");
    wait_until("every process of the killed agent to be gone", Duration::from_secs(20), || {
        left.iter().all(|&pid| !process_alive(pid))
    });
    let new_agent = agent_pid(&p);
    assert_ne!(new_agent, old_agent);
    let status = p.run(&["agent", "status"]).stdout();
    assert!(status.contains("killed processes a killed agent left running"), "reported: {status}");
    let h = p.history("web");
    assert_eq!(h[1]["status"], "failed", "{h:#?}");
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 1);
    wait_until("release 1 to serve again", Duration::from_secs(30), || get(web.port).as_deref() == Ok("one"));

    // The next commit deploys release 2 on the new agent.
    web.start_delay = "0";
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    assert_eq!(get(web.port).unwrap(), "two");

    // Killed between commits: the next commit finds the app gone and plans it back as
    // drift, instead of "no changes" for a stage that serves nothing.
    let agent = agent_pid(&p);
    let left = session_members(agent);
    unsafe { libc::kill(agent as libc::pid_t, libc::SIGKILL) };
    wait_until("the killed agent's socket to refuse", Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(ferry::runtime::local::Layout::new(p.p.path()).socket()).is_err()
    });
    let run = p.commit();
    run.expect_code(0);
    assert!(run.stdout().contains("± web: Revert drift: 0 of 2 tasks running"), "{}", run.stdout());
    assert!(left.iter().all(|&pid| !process_alive(pid)), "the killed agent's processes are gone");
    assert_eq!(get(web.port).unwrap(), "two");
    let h = p.history("web");
    let last = h.last().unwrap();
    assert_eq!((last["status"].as_str(), last["release"].as_u64()), (Some("succeeded"), Some(2)), "{last:#?}");
    assert_eq!(last["description"], "Revert drift: 0 of 2 tasks running", "{last:#?}");
}

#[test]
fn a_corrupted_state_file_is_refused_by_name_and_state_restore_brings_back_the_previous_copy() {
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let d2 = p.push("web", "two", &[]);
    let mut web = app("web", vec![(1, d1), (2, d2)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    web.active = 2;
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);

    let path = p.p.path().join(".ferry/state/dev.json");
    let damaged = "{\"version\": 1, \"stage\": \"dev\", \"serial\": ";
    std::fs::write(&path, damaged).unwrap();
    let run = p.commit();
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains(&format!("{} is not a valid state file", path.display())), "names the file: {err}");
    assert!(err.contains("ferry state restore"), "says what to do: {err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged, "left untouched");
    assert_eq!(get(web.port).unwrap(), "two", "the app keeps serving");

    let run = p.run(&["state", "restore", "-s", "dev"]);
    run.expect_code(0);
    assert!(run.stderr().contains("the unreadable state file was kept as "), "{}", run.stderr());
    assert!(std::fs::read_dir(path.parent().unwrap()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("dev.json.corrupt")));
    // The kept copy is the state before the last write; the next commit settles what it
    // still had in progress and converges.
    p.commit().expect_code(0);
    assert_eq!(get(web.port).unwrap(), "two");
    let h = p.history("web");
    assert_eq!(h.last().unwrap()["status"], "succeeded");
    assert_eq!(p.state()["apps"]["web"]["active"]["release"], 2);
    assert!(Path::new(&path).exists());
}
