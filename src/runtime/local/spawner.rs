//! Starting task processes off the agent's async workers.
//!
//! Starting a process blocks: with a `pre_exec` hook std forks, and `spawn` returns only once
//! the child has exec'd (or failed to). On a busy machine the child waits to be scheduled, so
//! one start can hold its thread for tens to hundreds of milliseconds. Done on the agent's two
//! async workers, the starts of a 20-app commit queued behind each other and stalled all
//! else the agent does meanwhile — health checks, requests, the proxy — for seconds. They
//! run here instead, on a few threads of their own: starts overlap, and the workers stay
//! free.
//!
//! The threads live as long as the process. A task's `PR_SET_PDEATHSIG` fires when the
//! *thread* that forked it exits, so its thread must not come and go (as the threads of
//! `spawn_blocking` do after a while idle).

use std::io;
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How many starts can be under way at once.
const THREADS: usize = 8;

struct Job {
    command: Command,
    /// The runtime the child is registered with (its pipes, its exit).
    runtime: Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..THREADS {
            let receiver = receiver.clone();
            let started = std::thread::Builder::new().name(format!("ferry-spawn-{i}")).spawn(move || loop {
                let next = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok(mut job) = next else { return };
                let _context = job.runtime.enter();
                // A runner that went away meanwhile drops the child, which kills it.
                let _ = job.reply.send(job.command.spawn());
            });
            // With none started, `spawn` reports the closed queue.
            if started.is_err() {
                break;
            }
        }
        jobs
    })
}

/// Start `command` on a spawner thread (see the module docs). Must be called inside a
/// tokio runtime, which the child is registered with.
pub async fn spawn(command: Command) -> io::Result<Child> {
    let (reply, answer) = oneshot::channel();
    let job = Job { command, runtime: Handle::current(), reply };
    queue().send(job).map_err(|_| io::Error::other("no thread to start processes on"))?;
    answer.await.map_err(|_| io::Error::other("the thread starting the process ended"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_processes_that_the_runtime_can_wait_for() {
        let mut children = Vec::new();
        for code in 0..(THREADS as i32 + 2) {
            let mut command = Command::new("sh");
            command.args(["-c", &format!("exit {code}")]);
            children.push(spawn(command).await.expect("spawn"));
        }
        for (code, child) in children.iter_mut().enumerate() {
            assert_eq!(child.wait().await.expect("wait").code(), Some(code as i32));
        }
        // Pipes are registered with the caller's runtime.
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo started"]).stdout(std::process::Stdio::piped());
        let out = spawn(echo).await.expect("spawn").wait_with_output().await.expect("output");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
        let missing = spawn(Command::new("/nonexistent/ferry-test-program")).await;
        assert_eq!(missing.expect_err("no such program").kind(), io::ErrorKind::NotFound);
    }
}
