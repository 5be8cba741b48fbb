//! Waiting for a one-off task, written once: release tasks (`ops::run_release_task`),
//! `ferry task run` (which also streams the output) and tests all wait through
//! [`watch_task`]. It polls [`Runtime::observe`] (100 ms, growing by half to 1 s) until the
//! task is STOPPED, the deadline passes or the abort signal fires; which of those happened
//! is the caller's to act on (stop the task, report a timeout).

use std::time::Duration;

use tokio::time::Instant;

use super::abort::AbortSignal;
use crate::poll::Poll;
use crate::runtime::{Lifecycle, LogLine, LogQuery, Runtime, RuntimeError, RuntimeResult, TaskId, TaskStatus};

/// What else a wait pays attention to besides the task.
#[derive(Default)]
pub struct TaskWait<'a> {
    /// Give up at this moment.
    pub deadline: Option<Instant>,
    /// Give up when this fires.
    pub abort: Option<&'a AbortSignal>,
    /// Pass each line of the task's output here as it comes, and, at the end, the lines the
    /// stream had not delivered yet (CloudWatch is polled): nothing the task wrote is lost.
    pub output: Option<&'a mut (dyn FnMut(&LogLine) + Send)>,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEnd {
    /// The task stopped; its final status.
    Stopped(TaskStatus),
    /// The deadline passed first; the task may still run.
    DeadlinePassed,
    /// The abort signal fired first, for this reason; the task may still run.
    Aborted(String),
}

/// Wait for `task` of `app` to stop (see the module). A task the runtime no longer knows is
/// [`RuntimeError::NotFound`].
pub async fn watch_task(runtime: &dyn Runtime, app: &str, task: &TaskId, wait: TaskWait<'_>) -> RuntimeResult<TaskEnd> {
    let TaskWait { deadline, abort, mut output } = wait;
    let query = |follow| LogQuery { task: Some(task.clone()), since: None, follow };
    let mut lines = match output {
        Some(_) => Some(runtime.logs(app, &query(true)).await?),
        None => None,
    };
    let mut shown = 0usize;
    let mut poll = Poll::new(Duration::from_millis(100), Duration::from_secs(1));
    if let Some(d) = deadline {
        poll = poll.until(d);
    }
    let aborted = async {
        match abort {
            Some(a) => a.requested().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(aborted);
    let status = loop {
        let services = runtime.observe(&[app.to_string()]).await?;
        match services.iter().find_map(|s| s.task(task)) {
            Some(t) if t.last_status == Lifecycle::Stopped => break t.clone(),
            Some(_) => {}
            None => return Err(RuntimeError::NotFound(format!("the runtime lost task {task} of app {app}"))),
        }
        if poll.expired() {
            return Ok(TaskEnd::DeadlinePassed);
        }
        let next = poll.next_look();
        loop {
            tokio::select! {
                Some(line) = async { lines.as_mut().expect("lines").recv().await }, if lines.is_some() => {
                    if let Some(out) = output.as_mut() {
                        out(&line);
                    }
                    shown += 1;
                }
                _ = tokio::time::sleep_until(next) => break,
                reason = &mut aborted => return Ok(TaskEnd::Aborted(reason)),
            }
        }
    };
    if let Some(out) = output.as_mut() {
        drop(lines);
        let mut all = runtime.logs(app, &query(false)).await?;
        let mut seen = 0usize;
        while let Some(line) = all.recv().await {
            seen += 1;
            if seen > shown {
                out(&line);
            }
        }
    }
    Ok(TaskEnd::Stopped(status))
}
