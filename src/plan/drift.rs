//! Drift (`plan --refresh`): an app whose live service no longer matches its recorded
//! active deployment — changed outside ferry (console, CLI, autoscaling) or gone — and the
//! operations that put it back. Pure like the rest of the planner: the live facts
//! ([`LiveStage`]) are gathered by the caller before planning.
//!
//! What counts: a service that is missing, a task definition or service settings whose
//! fields differ from the recorded release's (the runtime compares them, with its
//! server-side defaults normalised), and a desired count other than the recorded scale. A task definition drift
//! (or a missing service) is planned back as a deploy of the recorded release and config; a
//! count drift alone as a scale. When the stage file changes the app anyway, its deploy puts
//! everything back and nothing is added; a scale the file asks for starts from the live count.

use serde::{Deserialize, Serialize};

use super::diff::short_digest;
use super::operation::{DeployKind, Operation, Running};
use crate::config::App;
use crate::runtime::live::{DefinitionChange, LiveService, SERVICE_FIELD};
use crate::state::AppState;

/// A desired count that differs from the recorded scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountDrift {
    pub recorded: u32,
    pub live: u32,
}

/// Tasks that should run and do not, where the runtime counts them (the local agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskShortfall {
    pub running: u32,
    /// The recorded scale.
    pub expected: u32,
}

/// One app whose live service differs from recorded state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub app: String,
    /// The runtime has no service for the app.
    #[serde(default)]
    pub missing: bool,
    /// The desired count, when it is not the recorded scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<CountDrift>,
    /// The revision the service runs, when its definition differs from the recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The fields of the live revision that differ (values of `sensitive_env` masked), then
    /// those of the service's own settings (`service.…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DefinitionChange>,
    /// Of a missing service, how many tasks run of the recorded scale, where the runtime
    /// counts tasks (the local agent: `0 of 2 tasks running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TaskShortfall>,
    /// Why the service is missing, when the runtime can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl Drift {
    /// The drift of an app recorded as running `state`'s active deployment, from `live`;
    /// `None` when what runs is what was recorded.
    pub fn detect(state: &AppState, live: &LiveService) -> Option<Drift> {
        let active = state.active.as_ref()?;
        let mut drift = Drift {
            app: live.app.clone(),
            missing: !live.present,
            desired: None,
            revision: None,
            changes: vec![],
            tasks: None,
            cause: None,
        };
        if !live.present {
            if let Some(running) = live.running {
                // A service that runs nothing by design is not missed.
                if active.scale == 0 {
                    return None;
                }
                drift.tasks = Some(TaskShortfall { running, expected: active.scale });
            }
            drift.cause = live.cause.clone();
        } else {
            // Autoscaling moves the count within its range: only a count outside it drifted.
            let allowed = match &active.config.deploy.autoscaling {
                Some(auto) => auto.allows(live.desired),
                None => live.desired == active.scale,
            };
            if !allowed {
                drift.desired = Some(CountDrift { recorded: active.scale, live: live.desired });
            }
            if !live.changes.is_empty() {
                // The live revision is news only when it is not the recorded one.
                if live.changes.iter().any(|c| !c.field.starts_with(SERVICE_FIELD)) {
                    drift.revision = live.revision.as_ref().map(|r| r.to_string());
                }
                drift.changes = live.changes.iter().map(|c| mask(c, &active.config.sensitive_env)).collect();
            }
        }
        (drift.missing || drift.desired.is_some() || !drift.changes.is_empty()).then_some(drift)
    }

    /// Whether putting it back takes a deploy (not only a scale).
    pub fn redeploys(&self) -> bool {
        self.missing || !self.changes.is_empty()
    }

    /// `service missing` (`0 of 2 tasks running` where the runtime counts tasks), `desired
    /// count 1 → 3`, `task definition: 2 fields differ`, `service: 1 setting differs`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match (self.missing, self.tasks) {
            (true, Some(t)) => {
                parts.push(format!("{} of {} task{} running", t.running, t.expected, plural(t.expected as usize)))
            }
            (true, None) => parts.push("service missing".to_string()),
            _ => {}
        }
        if let Some(d) = self.desired {
            parts.push(format!("desired count {} → {}", d.recorded, d.live));
        }
        let service = self.changes.iter().filter(|c| c.field.starts_with(SERVICE_FIELD)).count();
        let definition = self.changes.len() - service;
        if definition > 0 {
            let n = definition;
            parts.push(format!("task definition: {n} field{} differ{}", plural(n), if n == 1 { "s" } else { "" }));
        }
        if service > 0 {
            let n = service;
            parts.push(format!("service: {n} setting{} differ{}", plural(n), if n == 1 { "s" } else { "" }));
        }
        parts.join("; ")
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Values of env vars named in `sensitive_env` never reach a plan.
fn mask(c: &DefinitionChange, sensitive: &std::collections::BTreeSet<String>) -> DefinitionChange {
    let name = c.field.rsplit_once(".environment.").map(|(_, n)| n);
    if !name.is_some_and(|n| sensitive.contains(n)) {
        return c.clone();
    }
    let hide = |v: &str| if v.is_empty() { String::new() } else { "(sensitive)".to_string() };
    let live = if c.live.is_empty() || c.recorded.is_empty() { hide(&c.live) } else { "(sensitive, changed)".into() };
    DefinitionChange { field: c.field.clone(), recorded: hide(&c.recorded), live }
}

/// Put `app` back where `drift` says the runtime moved away from `state`'s active
/// deployment: `ops[from..]` are the app's operations planned from the file so far.
/// Returns whether the app now deploys.
pub(super) fn plan_back(app: &App, state: &AppState, drift: &Drift, ops: &mut Vec<Operation>, from: usize) -> bool {
    let Some(active) = state.active.as_ref() else { return false };
    if ops[from..].iter().any(|op| matches!(op, Operation::Deploy { .. })) {
        return true;
    }
    let scale = ops[from..].iter().position(|op| matches!(op, Operation::Scale { .. })).map(|i| from + i);
    if drift.redeploys() {
        if let Some(i) = scale {
            ops.remove(i);
        }
        let recorded = Running::of(active);
        let to = Running { scale: app.scale, ..recorded.clone() };
        let mut description = format!("Revert drift: {}", drift.summary());
        if app.scale != active.scale {
            description.push_str(&format!("; scale {} → {}", active.scale, app.scale));
        }
        ops.push(Operation::VerifyImage {
            app: app.name.clone(),
            release: to.release,
            image: to.image.clone(),
            digest: to.digest.clone(),
        });
        ops.push(Operation::RegisterRevision {
            app: app.name.clone(),
            release: to.release,
            image: to.image.clone(),
            digest: to.digest.clone(),
            config_hash: to.config_hash.clone(),
            config: to.config.clone(),
        });
        ops.push(Operation::Deploy {
            app: app.name.clone(),
            kind: DeployKind::Config,
            from: Some(recorded),
            to,
            description,
            record_as: None,
        });
        return true;
    }
    let Some(count) = drift.desired else { return false };
    match scale.map(|i| &mut ops[i]) {
        Some(Operation::Scale { from, to, description, .. }) => {
            *from = count.live;
            *description = format!("Scale {} → {to} (the live count drifted from {})", count.live, count.recorded);
        }
        _ => ops.push(Operation::Scale {
            app: app.name.clone(),
            running: Running::of(active),
            from: count.live,
            to: app.scale,
            description: format!(
                "Revert drift: desired count {} → {} (release {}, {})",
                count.live,
                app.scale,
                active.release,
                short_digest(&active.digest)
            ),
        }),
    }
    false
}
