//! Integration tests: the state store between real processes, and the state commands
//! (`state show`, `state restore`, `force-unlock`, `--lock-timeout`) through the real binary.
//!
//! Waits are on conditions with deadlines, never fixed sleeps, so a loaded machine makes
//! these slower, not red.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry::state::{AppState, LocalStateStore, LockInfo, StageState, StateError, StateStore};

use crate::support::TestProject;

const RACE_DIR: &str = "FERRY_TEST_LOCK_RACE_DIR";
const RACE_NAME: &str = "FERRY_TEST_LOCK_RACE_NAME";
const DEADLINE: Duration = Duration::from_secs(120);

/// Poll `done` until it holds, failing with `what` after [`DEADLINE`].
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Write a file so that readers see all of it or nothing.
fn publish(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(tmp, path).unwrap();
}

/// Child processes killed and reaped however the test ends.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One racer: run by `lock_race_between_two_processes` as a child process of this test
/// binary; does nothing when run normally.
#[test]
#[ignore = "child process of lock_race_between_two_processes"]
fn lock_race_child() {
    let (Some(dir), Ok(name)) = (std::env::var_os(RACE_DIR), std::env::var(RACE_NAME)) else { return };
    let dir = PathBuf::from(dir);
    let store = LocalStateStore::new(dir.join("state"));
    publish(&dir.join(format!("{name}.ready")), "");
    wait_until("the start signal", || dir.join("go").exists());
    let info = LockInfo::for_this_process(&format!("racer {name}"));
    let outcome = match store.try_lock("dev", &info) {
        Ok(()) => format!("won {}", info.id),
        Err(e @ StateError::Locked { .. }) => {
            let StateError::Locked { holder, .. } = &e else { unreachable!() };
            format!("lost {} {e}", holder.id)
        }
        Err(e) => format!("error {e}"),
    };
    publish(&dir.join(format!("{name}.result")), &outcome);
    if outcome.starts_with("won") {
        wait_until("the release signal", || dir.join("release").exists());
        store.unlock("dev", &info.id).unwrap();
    }
}

/// Two processes take the same stage's lock at once: each round exactly one wins, and the
/// loser's error names the winner.
#[test]
fn lock_race_between_two_processes() {
    let exe = std::env::current_exe().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let dir = tmp.path().join(format!("round-{round}"));
        fs::create_dir_all(&dir).unwrap();
        let mut children = Children(Vec::new());
        for name in ["a", "b"] {
            let log = fs::File::create(dir.join(format!("{name}.log"))).unwrap();
            let child = Command::new(&exe)
                .args(["--exact", "state_store::lock_race_child", "--nocapture", "--include-ignored"])
                .env(RACE_DIR, &dir)
                .env(RACE_NAME, name)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            children.0.push((name.to_string(), child));
        }
        let log = |name: &str| fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        wait_until("both racers to be ready", || ["a", "b"].iter().all(|n| dir.join(format!("{n}.ready")).exists()));
        fs::write(dir.join("go"), "").unwrap();
        wait_until("both results", || ["a", "b"].iter().all(|n| dir.join(format!("{n}.result")).exists()));
        let results: Vec<(String, String)> = ["a", "b"]
            .iter()
            .map(|n| (n.to_string(), fs::read_to_string(dir.join(format!("{n}.result"))).unwrap()))
            .collect();
        let winners: Vec<_> = results.iter().filter(|(_, r)| r.starts_with("won ")).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner: {results:?}\n{}{}", log("a"), log("b"));
        let (winner, won) = winners[0];
        let winner_id = won.trim_start_matches("won ");
        let (loser, lost) = results.iter().find(|(n, _)| n != winner).unwrap();
        let winner_pid = children.0.iter().find(|(n, _)| n == winner).unwrap().1.id();
        assert!(lost.starts_with(&format!("lost {winner_id} ")), "round {round}: {loser} says {lost}");
        assert!(
            lost.contains(&format!("locked by `racer {winner}` (pid {winner_pid} on ")),
            "round {round}: the loser's error names the holder: {lost}"
        );

        fs::write(dir.join("release"), "").unwrap();
        for (name, child) in &mut children.0 {
            let deadline = Instant::now() + DEADLINE;
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                assert!(Instant::now() < deadline, "racer {name} did not exit");
                std::thread::sleep(Duration::from_millis(10));
            };
            assert!(status.success(), "racer {name} failed:\n{}", log(name));
        }
        let store = LocalStateStore::new(dir.join("state"));
        assert_eq!(store.lock_holder("dev").unwrap(), None, "the winner let go");
    }
}

/// A project made by `ferry init` (stage `development`) and its state store.
fn project() -> (TestProject, LocalStateStore) {
    let p = TestProject::empty();
    p.run(&["init", "--name", "shop"]).expect_code(0);
    let store = LocalStateStore::new(p.path().join(".ferry/state"));
    (p, store)
}

/// Write two states of `development`: serial 1 with app `web`, serial 2 with `api` too.
fn two_writes(store: &LocalStateStore) -> StageState {
    let mut s = StageState::new("development");
    s.apps.insert("web".into(), AppState::default());
    store.write(&mut s).unwrap();
    let first = s.clone();
    s.apps.insert("api".into(), AppState::default());
    store.write(&mut s).unwrap();
    first
}

#[test]
fn a_held_lock_fails_at_once_naming_the_holder_and_force_unlock() {
    let (p, store) = project();
    // Held by this (running) test process.
    let holder = LockInfo::for_this_process("ferry commit -s development");
    store.try_lock("development", &holder).unwrap();

    let run = p.run(&["state", "restore", "-s", "development"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(
        err.contains(&format!(
            "error: the state of stage `development` is locked by `ferry commit -s development` (pid {} on {}, user {}",
            holder.pid, holder.host, holder.user
        )),
        "{err}"
    );
    assert!(err.contains(&format!("`ferry force-unlock {}`", holder.id)), "{err}");
    assert!(!err.contains("stale"), "{err}");
    assert_eq!(store.lock_holder("development").unwrap(), Some(holder));
}

#[test]
fn lock_timeout_waits_then_fails() {
    let (p, store) = project();
    store.try_lock("development", &LockInfo::for_this_process("ferry commit")).unwrap();
    let started = Instant::now();
    let run = p.run(&["--lock-timeout", "1s", "state", "restore", "-s", "development"]);
    run.expect_code(1);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert!(run.stderr().contains("is locked by `ferry commit`"), "{}", run.stderr());

    let run = p.run(&["--lock-timeout", "soon", "state", "show"]);
    run.expect_code(2);
    assert!(run.stderr().contains("`soon` is not a duration"), "{}", run.stderr());
}

#[test]
fn a_lock_left_by_a_dead_process_is_reported_stale() {
    let (p, store) = project();
    let mut child = Command::new("true").spawn().unwrap();
    let mut holder = LockInfo::for_this_process("ferry commit");
    holder.pid = child.id();
    child.wait().unwrap();
    store.try_lock("development", &holder).unwrap();
    let run = p.run(&["--lock-timeout", "1m", "state", "restore", "-s", "development"]);
    run.expect_code(1);
    assert!(run.stderr().contains("that process is no longer running (stale lock)"), "{}", run.stderr());
    assert!(run.stderr().contains(&format!("ferry force-unlock {}", holder.id)), "{}", run.stderr());
}

#[test]
fn force_unlock_refuses_a_wrong_id_and_removes_the_right_one() {
    let (p, store) = project();
    let holder = LockInfo::for_this_process("ferry commit -s development");
    store.try_lock("development", &holder).unwrap();

    let run = p.run(&["force-unlock", "not-it"]);
    run.expect_code(1);
    assert!(run.stderr().contains("no stage's lock has id `not-it`; nothing was removed"), "{}", run.stderr());
    assert!(run.stderr().contains(&format!("with id `{}`", holder.id)), "shows the holder: {}", run.stderr());

    let run = p.run(&["force-unlock", "not-it", "-s", "development"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains(&format!("is held by `ferry commit -s development` (pid {}", holder.pid)),
        "{}",
        run.stderr()
    );
    assert!(store.lock_path("development").exists());

    let run = p.run(&["force-unlock", &holder.id]);
    run.expect_code(0);
    let lock_path = store.lock_path("development");
    assert!(
        run.stderr().contains(&format!(
            "removed the lock of stage `development` ({}), held by `ferry commit -s development`",
            lock_path.display()
        )),
        "{}",
        run.stderr()
    );
    assert!(!lock_path.exists());
}

#[test]
fn force_unlock_removes_a_torn_lock() {
    let (p, store) = project();
    fs::create_dir_all(store.dir()).unwrap();
    fs::write(store.lock_path("development"), "").unwrap();
    let run = p.run(&["state", "restore", "-s", "development"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains(&format!("unreadable lock {}", store.lock_path("development").display())), "{err}");
    let id = err.split("`ferry force-unlock ").nth(1).and_then(|s| s.split('`').next()).expect(&err).to_string();
    p.run(&["force-unlock", &id]).expect_code(0);
    assert!(!store.lock_path("development").exists());
}

#[test]
fn state_show_summarises_each_stage() {
    let (p, store) = project();
    let run = p.run(&["state", "show"]);
    run.expect_code(0);
    assert!(run.stdout().starts_with("stage development: no state recorded yet"), "{}", run.stdout());

    let first = two_writes(&store);
    let run = p.run(&["state", "show", "-s", "development"]);
    run.expect_code(0);
    let out = run.stdout();
    assert!(out.contains(&format!("  serial 2, lineage {}, format 1\n", first.lineage)), "{out}");
    assert!(out.contains("  app  active  release  digest  scale  last deployment\n"), "{out}");
    assert!(out.contains("  api  -       -        -       -      -\n"), "{out}");

    let holder = LockInfo::for_this_process("ferry commit");
    store.try_lock("development", &holder).unwrap();
    let run = p.run(&["state", "show"]);
    assert!(run.stdout().contains(&format!("  locked by `ferry commit` (pid {}", holder.pid)), "{}", run.stdout());
    assert!(run.stdout().contains(&format!("with id {}\n", holder.id)), "{}", run.stdout());
    store.unlock("development", &holder.id).unwrap();

    let run = p.run(&["state", "show", "--json"]);
    run.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let stage = &doc["stages"][0];
    assert_eq!(stage["serial"], 2);
    assert_eq!(stage["lineage"], first.lineage.as_str());
    assert_eq!(stage["lock"], serde_json::Value::Null);
    assert_eq!(stage["apps"]["web"]["active"], serde_json::Value::Null);
}

#[test]
fn state_show_refuses_a_corrupt_file_and_leaves_it() {
    let (p, store) = project();
    fs::create_dir_all(store.dir()).unwrap();
    fs::write(store.state_path("development"), "{\"version\": 1,").unwrap();
    let run = p.run(&["state", "show"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains(&format!("{} is not a valid state file", store.state_path("development").display())),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("ferry state restore"), "{}", run.stderr());
    assert_eq!(fs::read_to_string(store.state_path("development")).unwrap(), "{\"version\": 1,");
}

#[test]
fn state_restore_brings_back_the_previous_copy() {
    let (p, store) = project();
    let run = p.run(&["state", "restore", "-s", "development"]);
    run.expect_code(1);
    assert!(run.stderr().contains("there is no previous copy of"), "{}", run.stderr());

    let first = two_writes(&store);
    let run = p.run(&["state", "restore", "-s", "development"]);
    run.expect_code(0);
    let err = run.stderr();
    assert!(err.contains("current state serial 2; kept previous copy serial 1"), "{err}");
    assert!(err.contains("restored stage `development` to the state of serial 1, written as serial 3"), "{err}");
    let now = store.read("development").unwrap().unwrap();
    assert_eq!((now.serial, &now.apps), (3, &first.apps));
    assert_eq!(store.lock_holder("development").unwrap(), None, "unlocked");

    // A damaged file is set aside, and the kept copy (serial 2) comes back.
    fs::write(store.state_path("development"), "garbage").unwrap();
    let run = p.run(&["state", "restore", "-s", "development"]);
    run.expect_code(0);
    assert!(run.stderr().contains("current state unreadable ("), "{}", run.stderr());
    assert!(run.stderr().contains("the unreadable state file was kept as "), "{}", run.stderr());
    assert_eq!(store.read("development").unwrap().unwrap().apps.len(), 2);
}

#[test]
fn state_commands_have_examples_in_their_help() {
    let p = TestProject::empty();
    for args in [&["state", "show", "--help"][..], &["state", "restore", "--help"], &["force-unlock", "--help"]] {
        let run = p.run(args);
        run.expect_code(0);
        assert!(run.stdout().contains("Example"), "{args:?}: {}", run.stdout());
    }
    let run = p.run(&["--help"]);
    assert!(run.stdout().contains("--lock-timeout <DURATION>"), "{}", run.stdout());
}
