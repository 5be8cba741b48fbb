//! Progress reporting: the engine tells a [`Hook`] what happens (as Terraform's walker does
//! with its PreApply/PostApply hooks), and the hook decides how to show it. [`HumanHook`]
//! writes to stderr — a live line per in-flight app on a terminal, plain lines otherwise —
//! and [`JsonHook`] writes one JSON object per event for machines.

use crate::render::{escape_controls, escape_line};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::json;

use super::rollout::Progress;
use crate::plan::Operation;
use crate::runtime::{LogLine, ServiceEvent};
use crate::state::DeploymentStatus;

/// A step of the whole command, before and around the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Initializing,
    Planning,
    /// Walking a changeset of this many operations.
    Applying {
        total: usize,
    },
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OpOutcome {
    Succeeded {
        detail: Option<String>,
    },
    /// Failed or aborted, with why (possibly several lines: check output, log lines).
    Failed {
        status: DeploymentStatus,
        reason: String,
    },
    /// Not run: what it waited for did not succeed.
    Skipped {
        because: String,
    },
}

impl OpOutcome {
    /// Whether the operation did what it was for.
    pub fn is_success(&self) -> bool {
        matches!(self, OpOutcome::Succeeded { .. })
    }
}

/// Receives the engine's events. Every method has a default that ignores the event.
pub trait Hook {
    /// A step of the command starts.
    fn step(&mut self, _step: Step) {}
    /// An operation starts.
    fn started(&mut self, _op: &Operation) {}
    /// A rollout (deploy or scale) made progress or changed phase.
    fn progress(&mut self, _op: &Operation, _progress: &Progress) {}
    /// An operation ended; `done` of `total` operations have ended.
    fn finished(&mut self, _op: &Operation, _outcome: &OpOutcome, _elapsed: Duration, _done: usize, _total: usize) {}
    /// The runtime's scheduler said something about a rollout's service (an ECS service event).
    fn service_event(&mut self, _op: &Operation, _event: &ServiceEvent) {}
    /// A line of a new task's output (`commit --logs`).
    fn log(&mut self, _app: &str, _line: &LogLine) {}
    /// Something to tell the user: an abort starting, a settled deployment.
    fn note(&mut self, _text: &str) {}
}

/// A hook that shows nothing (library callers, tests).
#[derive(Debug, Default)]
pub struct SilentHook;

impl Hook for SilentHook {}

/// Human progress on stderr.
pub struct HumanHook {
    term: console::Term,
    live: bool,
    /// In-flight rollouts' lines by app, redrawn under the permanent output on a terminal.
    lines: BTreeMap<String, String>,
    drawn: usize,
    /// Last phase printed per app in plain mode, so plain output has one line per change.
    printed: BTreeMap<String, String>,
}

impl HumanHook {
    /// Live lines when stderr is a terminal (and `plain` is not asked for).
    pub fn new(plain: bool) -> Self {
        let term = console::Term::stderr();
        let live = !plain && term.is_term();
        HumanHook { term, live, lines: BTreeMap::new(), drawn: 0, printed: BTreeMap::new() }
    }

    /// Print permanent text above the live block.
    fn say(&mut self, text: &str) {
        if self.live && self.drawn > 0 {
            let _ = self.term.clear_last_lines(self.drawn);
            self.drawn = 0;
        }
        let _ = writeln!(&self.term, "{text}");
        self.redraw();
    }

    fn redraw(&mut self) {
        if !self.live {
            return;
        }
        if self.drawn > 0 {
            let _ = self.term.clear_last_lines(self.drawn);
        }
        let width = usize::from(self.term.size().1).max(20);
        for (app, line) in &self.lines {
            let text = format!("  {} {line}", console::style(app).bold());
            let _ = writeln!(&self.term, "{}", console::truncate_str(&text, width - 1, "…"));
        }
        self.drawn = self.lines.len();
    }
}

fn describe_op(op: &Operation) -> String {
    match op {
        Operation::Deploy { description, .. } | Operation::Scale { description, .. } => {
            format!("{} ({description})", op.id())
        }
        _ => op.id(),
    }
}

impl Hook for HumanHook {
    fn step(&mut self, step: Step) {
        let text = match step {
            Step::Initializing => "Initializing…".to_string(),
            Step::Planning => "Planning…".to_string(),
            Step::Applying { total } => format!("Applying… (0/{total})"),
        };
        self.say(&console::style(text).bold().to_string());
    }

    fn started(&mut self, op: &Operation) {
        if op.is_rollout() {
            self.lines.insert(op.app().to_string(), "starting…".into());
            if !self.live {
                self.say(&format!("  {}: starting {}", op.app(), describe_op(op)));
            } else {
                self.redraw();
            }
        }
    }

    fn progress(&mut self, op: &Operation, progress: &Progress) {
        // What the runtime says (task reasons, check output) is escaped here and below: it
        // goes to a terminal between ferry's own styled text.
        let line = escape_line(&progress.describe()).into_owned();
        if self.live {
            self.lines.insert(op.app().to_string(), line);
            self.redraw();
        } else if self.printed.get(op.app()) != Some(&progress.phase) {
            self.printed.insert(op.app().to_string(), progress.phase.clone());
            self.say(&format!("  {}: {line}", op.app()));
        }
    }

    fn finished(&mut self, op: &Operation, outcome: &OpOutcome, elapsed: Duration, done: usize, total: usize) {
        self.lines.remove(op.app());
        let counter = format!("({done}/{total})");
        let secs = format!("{:.1}s", elapsed.as_secs_f64());
        let text = match outcome {
            OpOutcome::Succeeded { detail } => {
                let detail = detail.as_deref().map(|d| format!(" {}", escape_controls(d))).unwrap_or_default();
                format!(
                    "{counter} {} {}{detail} {}",
                    console::style("✓").green(),
                    describe_op(op),
                    console::style(secs).dim()
                )
            }
            OpOutcome::Failed { status, reason } => {
                let mark = console::style("✗").red().bold();
                let mut text = format!("{counter} {mark} {} {} after {secs}", describe_op(op), status.as_str());
                for line in reason.lines() {
                    text.push_str(&format!("\n      {}", escape_line(line)));
                }
                text
            }
            OpOutcome::Skipped { because } => {
                let because = escape_controls(because);
                format!("{counter} {} {} skipped: {because}", console::style("-").yellow(), op.id())
            }
        };
        self.say(&text);
    }

    fn service_event(&mut self, op: &Operation, event: &ServiceEvent) {
        self.say(&format!("  {}: {} {}", op.app(), console::style("event").dim(), escape_line(&event.message)));
    }

    fn log(&mut self, app: &str, line: &LogLine) {
        let (task, text) = (escape_line(&line.task.0), escape_line(&line.text));
        self.say(&format!("  {} {} {text}", console::style(app).cyan(), console::style(task).dim()));
    }

    fn note(&mut self, text: &str) {
        self.say(&console::style(escape_controls(text)).yellow().to_string());
    }
}

impl Drop for HumanHook {
    fn drop(&mut self) {
        if self.live && self.drawn > 0 {
            let _ = self.term.clear_last_lines(self.drawn);
        }
    }
}

/// One JSON object per line on stderr (`ferry commit --progress json`).
#[derive(Debug, Default)]
pub struct JsonHook;

impl JsonHook {
    fn emit(&self, value: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
    }
}

impl Hook for JsonHook {
    fn step(&mut self, step: Step) {
        let (name, total) = match step {
            Step::Initializing => ("initializing", None),
            Step::Planning => ("planning", None),
            Step::Applying { total } => ("applying", Some(total)),
        };
        self.emit(json!({"event": "step", "step": name, "total": total}));
    }
    fn started(&mut self, op: &Operation) {
        self.emit(json!({"event": "started", "operation": op.id(), "app": op.app()}));
    }
    fn progress(&mut self, op: &Operation, p: &Progress) {
        self.emit(json!({
            "event": "progress", "operation": op.id(), "app": op.app(), "phase": p.phase,
            "desired": p.desired, "running": p.running, "pending": p.pending, "healthy": p.healthy,
            "old": p.old, "failed": p.failed, "elapsed_ms": p.elapsed.as_millis() as u64,
        }));
    }
    fn finished(&mut self, op: &Operation, outcome: &OpOutcome, elapsed: Duration, done: usize, total: usize) {
        let (status, text) = match outcome {
            OpOutcome::Succeeded { detail } => ("succeeded", detail.clone()),
            OpOutcome::Failed { status, reason } => (status.as_str(), Some(reason.clone())),
            OpOutcome::Skipped { because } => ("skipped", Some(because.clone())),
        };
        self.emit(json!({
            "event": "finished", "operation": op.id(), "app": op.app(), "status": status, "detail": text,
            "elapsed_ms": elapsed.as_millis() as u64, "done": done, "total": total,
        }));
    }
    fn service_event(&mut self, op: &Operation, event: &ServiceEvent) {
        self.emit(json!({
            "event": "service_event", "operation": op.id(), "app": op.app(), "id": event.id,
            "time": event.time, "message": event.message,
        }));
    }
    fn log(&mut self, app: &str, line: &LogLine) {
        self.emit(json!({"event": "log", "app": app, "task": line.task, "time": line.time, "text": line.text}));
    }
    fn note(&mut self, text: &str) {
        self.emit(json!({"event": "note", "text": text}));
    }
}
