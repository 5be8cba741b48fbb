//! What the agent's parts share: its state behind one lock, the reconciler's wake-up, the
//! project layout and the Docker driver. Apart from [`agent`](super::agent) (the process:
//! socket, requests, reconciler), so that the task runners ([`task`](super::task)) and the
//! proxy ([`proxy`](super::proxy)) the agent spawns depend on this alone, not back on it.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};

use super::docker::DockerDriver;
use super::service::{State, Task};
use super::Layout;

/// The shared agent: state behind one lock (critical sections are short and never await),
/// plus the reconciler's wake-up.
pub struct Agent {
    pub layout: Layout,
    pub(super) state: Mutex<State>,
    pub(super) reconcile: Notify,
    pub(super) exit: Notify,
    pub(super) started_at: DateTime<Utc>,
    /// Connections being answered: the agent does not exit under a client's feet.
    pub(super) busy: AtomicUsize,
    /// Pids of processes a killed predecessor left, which this agent killed at start.
    pub(super) killed_leftovers: Vec<u32>,
    /// Counts reconcile passes, which follow every change: wakes `Observe` long polls.
    pub(super) passes: watch::Sender<u64>,
    /// Runs the tasks of revisions on the Docker driver; holds the containers a killed
    /// predecessor left.
    pub docker: DockerDriver,
}

impl Agent {
    /// Run `f` on the state.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Run `f` on one task, if it still exists.
    pub fn update<R>(&self, id: &crate::runtime::TaskId, f: impl FnOnce(&mut Task) -> R) -> Option<R> {
        self.with_state(|s| s.tasks.get_mut(id).map(f))
    }

    /// Ask for a reconcile pass soon.
    pub fn wake_reconciler(&self) {
        self.reconcile.notify_one();
    }
}
