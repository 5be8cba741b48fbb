//! Aborting a commit: Ctrl-C (SIGINT), SIGTERM or SIGHUP to the committing process, or
//! `ferry abort [-s STAGE]` from another shell.
//!
//! `ferry abort` writes an abort request file, `.ferry/abort/<stage>.json`, naming the id of
//! the lock it found on the stage; the committing engine polls for that file on every tick
//! of its watch loop (about 200 ms) and aborts only when the request names *its* lock, so a
//! request left over from an earlier run never aborts a later one. A file works the same for
//! a commit on this machine and for the lock holder's files on a shared folder, needs no pid
//! (which may belong to another host, or to a process we may not signal) and leaves a trace.
//! The engine removes the request once it has acted on it; `ferry abort` then waits for the
//! lock to be released.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The folder under the project root holding abort requests.
pub const ABORT_DIR: &str = ".ferry/abort";

/// How often the request file is looked for.
const POLL: Duration = Duration::from_millis(200);

/// The request file of `stage`.
pub fn request_path(root: &Path, stage: &str) -> PathBuf {
    root.join(ABORT_DIR).join(format!("{stage}.json"))
}

/// What `ferry abort` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortRequest {
    /// The lock id of the commit to abort.
    pub lock_id: String,
    /// `user@host (pid N)`.
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
}

impl AbortRequest {
    /// Write the request atomically, private to its owner.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            crate::private_files::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic_file::write(path, &bytes, crate::atomic_file::Mode::Private)
    }

    /// The request in `path`, if there is a readable one.
    pub fn read(path: &Path) -> Option<AbortRequest> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// Whether (and why) the commit is to be aborted. Cheap to clone; every clone sees the first
/// reason given.
#[derive(Debug, Clone)]
pub struct AbortSignal {
    tx: watch::Sender<Option<String>>,
    rx: watch::Receiver<Option<String>>,
}

impl Default for AbortSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl AbortSignal {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(None);
        AbortSignal { tx, rx }
    }

    /// Ask for an abort; the first reason wins.
    pub fn trigger(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The reason, once an abort was asked for.
    pub fn reason(&self) -> Option<String> {
        self.rx.borrow().clone()
    }

    /// Wait until an abort is asked for, and return why.
    pub async fn requested(&self) -> String {
        let mut rx = self.rx.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen; wait forever rather than spin.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Abort on SIGINT, SIGTERM or SIGHUP (a closed terminal or a dropped SSH session, which
    /// would otherwise kill the commit mid-rollout). Must be called inside a tokio runtime.
    pub fn listen_for_signals(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "Ctrl-C (SIGINT)",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP (the terminal closed)",
                };
                me.trigger(format!("aborted by {name}"));
            }
        }))
    }

    /// Abort when `ferry abort` writes a request for `lock_id` to `path`; the request is
    /// removed once seen. Must be called inside a tokio runtime.
    pub fn listen_for_requests(&self, path: PathBuf, lock_id: String) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Some(req) = AbortRequest::read(&path) {
                    if req.lock_id == lock_id {
                        let _ = std::fs::remove_file(&path);
                        me.trigger(format!("aborted by `ferry abort` from {}", req.requested_by));
                        return;
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_requests_for_other_locks_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = request_path(dir.path(), "dev");
        let signal = AbortSignal::new();
        let listener = signal.listen_for_requests(path.clone(), "mine".into());
        let other = AbortRequest { lock_id: "theirs".into(), requested_by: "x".into(), requested_at: Utc::now() };
        other.write(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(signal.reason(), None, "a request for another lock is not ours");
        AbortRequest { lock_id: "mine".into(), ..other }.write(&path).unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), signal.requested()).await.unwrap();
        assert!(reason.contains("`ferry abort` from x"), "{reason}");
        signal.trigger("later");
        assert_eq!(signal.reason().unwrap(), reason);
        assert!(!path.exists(), "the request is consumed");
        listener.abort();
    }

    #[test]
    fn a_request_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = request_path(dir.path(), "dev");
        let request = AbortRequest { lock_id: "l".into(), requested_by: "x".into(), requested_at: Utc::now() };
        request.write(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(path.parent().unwrap()), mode(&path)), (0o700, 0o600));
        assert_eq!(AbortRequest::read(&path), Some(request));
    }
}
