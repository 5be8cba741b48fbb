//! Deploy events: what a command did, as one structured record each (`Event`), written as
//! JSON lines (`ferry commit --events FILE`) and sent to the `[[notify]]` webhooks of
//! `ferry.toml` (`notify`). Events carry names, numbers, digests and reasons, never a secret
//! value: reasons are the same texts the summaries print, and env values are not part of any
//! event.
//!
//! Emitting is best effort by design: a failing sink is reported on stderr and never changes
//! a command's outcome or exit code.

pub mod notify;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Project;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A deployment of `ferry commit` (and of the commits promote, rollback and preview run).
    Commit,
    /// `ferry release create`.
    Release,
    /// `ferry promote`.
    Promote,
    /// `ferry rollback`.
    Rollback,
    /// `ferry abort`.
    Abort,
    /// `ferry status report`.
    Status,
    /// `ferry preview up` / `down` (see `action`).
    Preview,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Commit,
        EventKind::Release,
        EventKind::Promote,
        EventKind::Rollback,
        EventKind::Abort,
        EventKind::Status,
        EventKind::Preview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Commit => "commit",
            EventKind::Release => "release",
            EventKind::Promote => "promote",
            EventKind::Rollback => "rollback",
            EventKind::Abort => "abort",
            EventKind::Status => "status",
            EventKind::Preview => "preview",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Aborted,
    /// A request that was made (an abort request, a status report, a pending promotion).
    Requested,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
            Outcome::Requested => "requested",
        }
    }
}

/// One deploy event. Fields a kind has no value for are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// `up` or `down` for previews; the status context for status checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// RFC 3339, UTC.
    pub at: chrono::DateTime<chrono::Utc>,
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// N of the deployment vN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The git commit ferry ran from (or `--sha` of a preview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The preview's pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    /// The preview's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Event {
    /// An event of `kind` in `project`, now, with nothing else set.
    pub fn new(kind: EventKind, project: &str, outcome: Outcome) -> Event {
        Event {
            kind,
            action: None,
            at: crate::history::now(),
            project: project.to_string(),
            stage: None,
            app: None,
            release: None,
            deployment: None,
            digest: None,
            source_commit: None,
            outcome,
            reason: None,
            duration_ms: None,
            pr: None,
            url: None,
        }
    }

    pub fn stage(mut self, stage: &str) -> Event {
        self.stage = Some(stage.to_string());
        self
    }

    pub fn app(mut self, app: &str) -> Event {
        self.app = Some(app.to_string());
        self
    }

    pub fn duration(mut self, d: Duration) -> Event {
        self.duration_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// One compact JSON object (no line breaks).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }

    /// A readable one-line summary, e.g. for Slack: "shop/production: web v12 release 7
    /// (sha256:…) succeeded in 41s".
    pub fn summary(&self) -> String {
        let mut s = format!("[{}] {}", self.kind.as_str(), self.project);
        if let Some(stage) = &self.stage {
            s.push('/');
            s.push_str(stage);
        }
        s.push(':');
        if let Some(action) = &self.action {
            s.push_str(&format!(" {action}"));
        }
        if let Some(pr) = self.pr {
            s.push_str(&format!(" PR #{pr}"));
        }
        if let Some(app) = &self.app {
            s.push_str(&format!(" {app}"));
        }
        if let Some(n) = self.deployment {
            s.push_str(&format!(" v{n}"));
        }
        if let Some(r) = self.release {
            s.push_str(&format!(" release {r}"));
        }
        if let Some(d) = &self.digest {
            s.push_str(&format!(" ({})", &d[..d.len().min(19)]));
        }
        s.push(' ');
        s.push_str(self.outcome.as_str());
        if let Some(ms) = self.duration_ms {
            s.push_str(&format!(" in {:.1}s", ms as f64 / 1000.0));
        }
        if let Some(url) = &self.url {
            s.push_str(&format!(" {url}"));
        }
        if let Some(reason) = &self.reason {
            s.push_str(&format!(": {}", reason.lines().next().unwrap_or("")));
        }
        crate::render::escape_line(&s).into_owned()
    }
}

/// Append `events` to `path` as JSON lines (created when missing).
pub fn write_jsonl(path: &Path, events: &[Event]) -> std::io::Result<()> {
    let mut text = String::new();
    for e in events {
        text.push_str(&e.to_json());
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    f.flush()
}

/// Where a command's events go: the `[[notify]]` webhooks and, when given, a JSON-lines file.
pub struct Emitter {
    pub file: Option<PathBuf>,
    pub targets: Vec<notify::NotifyTarget>,
    pub root: PathBuf,
}

impl Emitter {
    pub fn new(project: &Project, file: Option<PathBuf>) -> Emitter {
        Emitter { file, targets: project.notify.clone(), root: project.root.clone() }
    }

    /// Write and send `events`; every failure is reported on stderr, none is returned.
    pub fn emit(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        if let Some(path) = &self.file {
            if let Err(e) = write_jsonl(path, events) {
                eprintln!("warning: could not write events to {}: {e}", path.display());
            }
        }
        if self.targets.is_empty() {
            return;
        }
        for report in notify::deliver_all(&self.root, &self.targets, events, &notify::Policy::default()) {
            if let Some(line) = report.failure_line() {
                eprintln!("{line}");
            }
        }
    }
}

/// Emit `events` for `project` to its `[[notify]]` targets only (commands without `--events`).
pub fn emit(project: &Project, events: &[Event]) {
    Emitter::new(project, None).emit(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_compact_line_and_leave_unset_fields_out() {
        let mut e = Event::new(EventKind::Commit, "shop", Outcome::Failed).stage("dev").app("web");
        e.deployment = Some(3);
        e.reason = Some("health check failed\nsecond line".into());
        let json = e.to_json();
        assert!(!json.contains('\n'), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["kind"], "commit");
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["deployment"], 3);
        assert!(v.get("digest").is_none(), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(e.summary(), "[commit] shop/dev: web v3 failed: health check failed");
    }

    #[test]
    fn kinds_parse_back_from_their_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("deploy"), None);
    }

    #[test]
    fn jsonl_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let e = Event::new(EventKind::Abort, "p", Outcome::Requested);
        write_jsonl(&path, std::slice::from_ref(&e)).unwrap();
        write_jsonl(&path, &[e.clone(), e]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|l| serde_json::from_str::<Event>(l).is_ok()));
    }
}
