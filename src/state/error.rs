//! What can go wrong with state, and who holds a stage's lock: shared by the stores and
//! the codec (kept apart from both so neither imports the other for its error type).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::STATE_FORMAT_VERSION;

/// Result alias for state operations.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Who holds a stage's lock. Stored in the lock (file or object) so a second run can say
/// who is in its way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random id; `ferry force-unlock ID` names it.
    pub id: String,
    pub pid: u32,
    pub host: String,
    pub user: String,
    /// The command line that took the lock, e.g. `ferry commit -s production`.
    pub command: String,
    pub created: DateTime<Utc>,
}

impl LockInfo {
    /// Lock info for this process, running `command`.
    pub fn for_this_process(command: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            pid: std::process::id(),
            host: hostname(),
            user: crate::history::operator().unwrap_or_else(|| "with no name".into()),
            command: command.to_string(),
            created: Utc::now(),
        }
    }

    /// One line naming the holder, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` (pid {} on {}, user {}, since {})",
            self.command,
            self.pid,
            self.host,
            self.user,
            self.created.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// Whether the holder certainly no longer runs: a process of this host that is gone. A
    /// holder on another host cannot be checked from here, and counts as running.
    pub fn is_gone(&self) -> bool {
        self.host == hostname() && crate::process::is_gone(self.pid)
    }
}

/// This machine's host name (best effort).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Everything that can go wrong reading, writing or locking state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run holds the lock. (Holder info is boxed to keep `Result`s small.)
    #[error("the state of stage `{stage}` is locked by {}{}", holder.describe(), if *stale { " — that process is no longer running (stale lock)" } else { "" })]
    Locked { stage: String, holder: Box<LockInfo>, stale: bool },
    /// The state moved since it was read: someone else wrote it.
    #[error("the state of stage `{stage}` changed since it was read (expected serial {expected}, found {found}); nothing was written")]
    Conflict { stage: String, expected: u64, found: u64 },
    /// The state belongs to another lineage (recreated, or another project's).
    #[error("the state of stage `{stage}` has lineage {found}, not {expected}; nothing was written")]
    LineageMismatch { stage: String, expected: String, found: String },
    /// Written by a newer ferry.
    #[error(
        "{location} has state format version {version}, newer than this ferry understands ({STATE_FORMAT_VERSION})"
    )]
    NewerVersion { location: String, version: u32 },
    /// Does not parse.
    #[error("{location} is not a valid state file: {message}")]
    Corrupt { location: String, message: String },
    /// A lock exists but does not say who holds it (torn by a crash between creating and
    /// writing it, or damaged). It never goes away by itself; `id` is what
    /// `ferry force-unlock` takes to remove exactly this lock.
    #[error("the state of stage `{stage}` is locked by an unreadable lock {location} ({message})")]
    LockUnreadable { stage: String, location: String, id: String, message: String },
    /// `state restore` with no previous copy kept.
    #[error("there is no previous copy of {location} to restore")]
    NoPrevious { location: String },
    /// Unlock or force-unlock with an id that is not the holder's.
    #[error("the lock of stage `{stage}` is {}, not `{id}`", match held_by { Some(h) => format!("held by {} with id `{}`", h.describe(), h.id), None => "not held".to_string() })]
    LockMismatch { stage: String, id: String, held_by: Option<Box<LockInfo>> },
    /// The serial is `u64::MAX` and cannot count another write.
    #[error("the state of stage `{stage}` has serial {}, the highest there is; nothing was written", u64::MAX)]
    SerialExhausted { stage: String },
    /// The backend failed (disk, network, permissions).
    #[error("{location}: {message}")]
    Backend { location: String, message: String },
}

impl StateError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            StateError::Locked { holder, stale: true, .. } => Some(format!(
                "if no ferry is running for this stage, remove the lock with `ferry force-unlock {}`",
                holder.id
            )),
            StateError::Locked { holder, .. } => Some(format!(
                "wait for it to finish (or pass --lock-timeout 5m to wait); if it is gone, run `ferry force-unlock {}`",
                holder.id
            )),
            StateError::LockUnreadable { id, .. } => {
                Some(format!("if no ferry is running for this stage, remove the lock with `ferry force-unlock {id}`"))
            }
            StateError::Conflict { .. } => Some("run the command again to work from the new state".into()),
            StateError::NewerVersion { .. } => Some("upgrade ferry; the file was left untouched".into()),
            StateError::SerialExhausted { .. } => {
                Some("the state file was edited or damaged: `ferry state restore` brings back the previous copy".into())
            }
            StateError::Corrupt { .. } => {
                Some("the file was left untouched; `ferry state restore` brings back the previous copy".into())
            }
            _ => None,
        }
    }
}
