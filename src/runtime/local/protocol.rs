//! The agent's wire protocol: one JSON request line per connection, answered by one JSON
//! reply line. One request per connection keeps both sides trivially correct (no
//! multiplexing, no partial state) and costs a connect on a local socket, which is cheap.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::DeploySettings;
use crate::runtime::{RevisionId, RevisionSpec, RolloutId, RuntimeError, ServiceStatus, TaskId, TaskSpec};

/// How a revision's tasks run, as the client chose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    pub kind: crate::config::LocalDriver,
    /// Whether the stage file names it (`false`: chosen because an engine answers or not).
    pub configured: bool,
    /// Docker: `HOST/REPO@DIGEST` in the project's registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    /// The stage file, for the message when an app would switch driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_file: Option<String>,
}

/// What a client asks the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is it alive, and what does it run.
    Status,
    /// Register a revision. `secrets` holds the values of `env:NAME` references, resolved
    /// from the calling ferry's environment (where the model says they come from); `file:`
    /// references are read by the agent when each task starts, so rotations apply.
    Register {
        stage: String,
        spec: Box<RevisionSpec>,
        secrets: BTreeMap<String, String>,
        /// How its tasks run (absent: `process`, what every agent did before drivers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        driver: Option<Driver>,
    },
    /// Start a rollout. `owner` is the pid of the ferry that asked (a commit): should it die
    /// before the rollout completes, the agent rolls the app back, since nobody is left to
    /// judge the rollout or record it (absent: the rollout is finished whatever happens).
    Deploy {
        stage: String,
        app: String,
        revision: RevisionId,
        desired: u32,
        settings: DeploySettings,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<u32>,
    },
    /// The status of apps. With `changed_since` (the `version` of an earlier answer) it is a
    /// long poll: the agent holds the answer until it differs from that one, at most
    /// `wait_ms`, so a watcher learns of a change at once without polling fast.
    Observe {
        stage: String,
        apps: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        changed_since: Option<u64>,
        #[serde(default, skip_serializing_if = "is_zero")]
        wait_ms: u64,
        /// For a watcher: leave out tasks that stopped before the app's current rollout began
        /// (each app keeps its last ten stopped tasks for `ps`; a watch never needs them, and
        /// with many apps they are most of every answer).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        current: bool,
    },
    RollBack {
        stage: String,
        app: String,
        revision: RevisionId,
    },
    Scale {
        stage: String,
        app: String,
        desired: u32,
    },
    Remove {
        stage: String,
        app: String,
    },
    RunTask {
        stage: String,
        spec: Box<TaskSpec>,
    },
    StopTask {
        stage: String,
        app: String,
        task: TaskId,
    },
    /// Remove every app of a stage (every stage when `None`) and answer once their tasks
    /// are stopped.
    Down {
        stage: Option<String>,
    },
    /// Stop every task and exit.
    Shutdown,
}

/// What the agent answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Status(AgentStatus),
    Revision {
        id: RevisionId,
    },
    Rollout {
        id: RolloutId,
    },
    Services {
        services: Vec<ServiceStatus>,
        /// A fingerprint of `services`, for the next long poll (`None` from agents that
        /// predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    Task {
        id: TaskId,
    },
    Done,
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// The kind of a failed request, so the client can rebuild a [`RuntimeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    Invalid,
    Unavailable,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Reply {
    /// The error reply for a runtime error.
    pub fn error(e: RuntimeError) -> Reply {
        let kind = match &e {
            RuntimeError::NotFound(_) => ErrorKind::NotFound,
            RuntimeError::Invalid(_) => ErrorKind::Invalid,
            RuntimeError::Unavailable(_) | RuntimeError::Io(_) => ErrorKind::Unavailable,
        };
        Reply::Error { kind, message: e.to_string() }
    }

    /// Turn an error reply back into a [`RuntimeError`].
    pub fn into_result(self) -> Result<Reply, RuntimeError> {
        match self {
            Reply::Error { kind, message } => Err(match kind {
                ErrorKind::NotFound => RuntimeError::NotFound(message),
                ErrorKind::Invalid => RuntimeError::Invalid(message),
                ErrorKind::Unavailable => RuntimeError::Unavailable(message),
            }),
            other => Ok(other),
        }
    }
}

/// `ferry agent status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Stages with at least one app.
    pub stages: Vec<String>,
    /// Tasks not yet stopped.
    pub tasks: usize,
    /// Pids of task processes a killed agent left behind, which this agent killed when it
    /// started (see `leftovers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killed_leftovers: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_without_a_long_poll_is_the_old_request_and_reply() {
        let old_request = r#"{"op":"observe","stage":"dev","apps":["web"]}"#;
        match serde_json::from_str::<Request>(old_request).unwrap() {
            Request::Observe { changed_since, wait_ms, current, .. } => {
                assert_eq!((changed_since, wait_ms, current), (None, 0, false))
            }
            other => panic!("{other:?}"),
        }
        let plain = Request::Observe {
            stage: "dev".into(),
            apps: vec!["web".into()],
            changed_since: None,
            wait_ms: 0,
            current: false,
        };
        assert_eq!(serde_json::to_string(&plain).unwrap(), old_request, "what older agents understand");
        let old_reply = r#"{"reply":"services","services":[]}"#;
        match serde_json::from_str::<Reply>(old_reply).unwrap() {
            Reply::Services { services, version } => assert!(services.is_empty() && version.is_none()),
            other => panic!("{other:?}"),
        }
    }
}
