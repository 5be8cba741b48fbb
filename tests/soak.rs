//! Soak: consecutive deploys of one app under continuous HTTP load through its stable port,
//! then a count of what the agent holds. No request may fail, and the agent's processes,
//! file descriptors and listening sockets must be what they were before.
//!
//! CI runs 8 deploys; the full soak is 50:
//! `FERRY_SOAK_DEPLOYS=50 cargo test --test integration soak -- --nocapture`
//! (it prints the figures docs/PERFORMANCE.md quotes).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferry::runtime::local::leftovers::session_members;
use ferry::runtime::local::Layout;

use crate::commit::{app, get, Load, Project};

/// Deploys in CI; `FERRY_SOAK_DEPLOYS` sets another count.
const CI_DEPLOYS: usize = 8;

/// What the agent and its tasks hold at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holdings {
    /// Processes in the agent's session (the agent and every task process).
    processes: usize,
    /// The agent's open file descriptors.
    agent_fds: usize,
    /// TCP sockets listening on 127.0.0.1, held by any of those processes.
    listening: usize,
}

/// Socket inodes a process holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return BTreeSet::new() };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// Inodes of IPv4 TCP sockets in LISTEN state (`0A`), machine-wide.
fn listening_inodes() -> BTreeSet<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.get(3) == Some(&"0A")).then(|| cols.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

fn holdings(agent: u32) -> Holdings {
    let members = session_members(agent);
    let listening = listening_inodes();
    let held: BTreeSet<u64> = members.iter().flat_map(|&pid| socket_inodes(pid)).collect();
    Holdings {
        processes: members.len(),
        agent_fds: std::fs::read_dir(format!("/proc/{agent}/fd")).map_or(0, |d| d.count()),
        listening: held.intersection(&listening).count(),
    }
}

/// The agent's resident memory in kB, for the record (revisions accumulate by design).
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[test]
fn soak_consecutive_deploys_under_load_lose_no_request_and_leak_nothing() {
    let deploys: usize = std::env::var("FERRY_SOAK_DEPLOYS").ok().and_then(|n| n.parse().ok()).unwrap_or(CI_DEPLOYS);
    let p = Project::new();
    let d1 = p.push("web", "one", &[]);
    let mut web = app("web", vec![(1, d1)], 1);
    p.stage(&[web.clone()]);
    p.commit().expect_code(0);
    assert_eq!(get(web.port).unwrap(), "one");
    let agent = Layout::new(p.p.path()).agent_pid().expect("agent pid");
    // Health checks open short-lived sockets in the agent: its resting fd count is the
    // lowest of a few samples.
    let mut before = holdings(agent);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(50));
        let now = holdings(agent);
        before.agent_fds = before.agent_fds.min(now.agent_fds);
    }
    // The agent, two tasks; the app's port and one per task.
    assert_eq!((before.processes, before.listening), (3, 3), "{before:?}");

    let rss_before = rss_kb(agent);
    let load = Load::start(web.port);
    let mut times = Vec::new();
    let started = Instant::now();
    for i in 1..=deploys {
        // Each deploy changes the app's config, so it rolls out a new revision.
        web.start_delay = Box::leak(format!("0.{i:03}").into_boxed_str());
        p.stage(&[web.clone()]);
        let t = Instant::now();
        p.commit().expect_code(0);
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    let (ok, failed) = load.finish();
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), ok.len() + failed.len(), failed);
    assert!(ok.len() >= deploys * 10, "too little load to mean anything: {} requests", ok.len());
    let history = p.history("web");
    assert_eq!(history.len(), deploys + 1);
    assert!(history.iter().all(|d| d["status"] == "succeeded"), "{history:#?}");

    // Connections of the load close as their clients go; the count comes back to rest.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = holdings(agent);
    while after != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = holdings(agent);
    }
    assert_eq!(after, before, "what the agent holds after {deploys} deploys, against before");
    eprintln!(
        "soak: {deploys} deploys in {:.1}s (median {:.2}s, max {:.2}s per commit), {} requests, 0 failed; \
         before {before:?}, after {after:?}; agent RSS {rss_before} kB before, {} kB after",
        total.as_secs_f64(),
        median(times.clone()).as_secs_f64(),
        times.iter().max().unwrap().as_secs_f64(),
        ok.len(),
        rss_kb(agent)
    );
}
