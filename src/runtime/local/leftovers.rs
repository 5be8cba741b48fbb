//! Processes a killed agent left behind. When an agent dies without stopping its tasks
//! (SIGKILL, OOM), the kernel kills each task's first process (`PR_SET_PDEATHSIG`), but not
//! what that process started: a shell wrapper's child or a worker would live on, holding
//! its port, with nobody to stop it. A task cannot be adopted by the next agent (its output
//! pipes and exit status died with the old one), so the next agent kills what is left
//! before it starts anything, and says so in its log and in `ferry agent status`.
//!
//! The agent runs in a session of its own (`start_agent` calls `setsid`), which every task
//! process inherits whatever process group it moves to, so the dead agent's session id — its
//! pid, left in `agent.pid` — finds them all. Linux does not hand out a pid while a session
//! of that id still has members, so a live process with that session id is one of ours. An
//! agent run in the foreground of a shell is not a session leader: nothing matches, and
//! nothing is killed. A pid file older than the last boot names nobody: its agent and tasks
//! died with the machine, and the pid may have been reused since.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::poll::Poll;
use crate::process::alive as process_alive;

/// How long to wait for the killed processes to be gone (and their ports free).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The pid in a dead agent's pid file, unless the file is from before the last boot.
pub fn previous_agent(pid_file: &Path) -> Option<u32> {
    let written = std::fs::metadata(pid_file).and_then(|m| m.modified()).ok()?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    if written < SystemTime::UNIX_EPOCH + Duration::from_secs(boot) {
        return None;
    }
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// Kill every process left in the session of the dead agent `previous_pid`, and wait
/// (bounded) until they are gone. Returns their pids. Does nothing when `previous_pid` is
/// this process or names a live process (then it is not a dead agent: the pid was reused).
pub fn kill_leftovers(previous_pid: u32) -> Vec<u32> {
    if previous_pid == std::process::id() || process_alive(previous_pid) {
        return Vec::new();
    }
    let left = session_members(previous_pid);
    for &pid in &left {
        // SAFETY: kill(2) of a process in the dead agent's session (see the module docs).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    let mut poll = Poll::new(Duration::from_millis(10), Duration::from_millis(100)).within(KILL_WAIT);
    while left.iter().any(|&pid| process_alive(pid)) && poll.wait_blocking() {}
    left
}

/// Live processes (zombies excluded, this one too) whose session id is `sid`.
pub fn session_members(sid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_session(&s)) == Some(sid)
        })
        .filter(|&pid| process_alive(pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// The session id in a `/proc/PID/stat` line: after the command name in parentheses come
/// state, ppid, pgrp, session.
fn stat_session(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_after_a_command_name_with_spaces_and_parens() {
        let line = "4242 (python3 (x) y) S 1 4242 4100 0 -1 4194560 0 0";
        assert_eq!(stat_session(line), Some(4100));
        assert_eq!(stat_session("garbage"), None);
    }

    #[test]
    fn a_pid_file_from_this_boot_names_its_agent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.pid");
        assert_eq!(previous_agent(&file), None);
        std::fs::write(&file, "4242\n").unwrap();
        assert_eq!(previous_agent(&file), Some(4242));
        let before_boot = std::fs::File::options().write(true).open(&file).unwrap();
        before_boot.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1)).unwrap();
        assert_eq!(previous_agent(&file), None, "from before the last boot");
    }

    #[test]
    fn leaves_everything_alone_when_the_previous_agent_is_alive_or_is_us() {
        assert!(kill_leftovers(std::process::id()).is_empty());
        // The test runner's parent is alive, so it is no dead agent: nothing of its
        // session may be touched.
        let parent = std::os::unix::process::parent_id();
        assert!(kill_leftovers(parent).is_empty());
        assert!(process_alive(parent));
    }
}
