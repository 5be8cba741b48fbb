//! The view model every format renders: built once from a changeset, so text, JSON,
//! markdown and DOT cannot disagree about what a plan does. Values are already masked here
//! (see `plan::diff`), so no renderer can show a sensitive one.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::plan::diff::{config_diff, config_fields, short_digest, FieldChange};
use crate::plan::{Changeset, DeployKind, Drift, Operation};

/// Version of the JSON plan format (`docs/PLAN_JSON.md`).
pub const JSON_FORMAT_VERSION: u32 = 1;

/// What happens to an app, as the summary counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// First deploy.
    Add,
    /// New tasks replace the running ones: another release, or a new config.
    Deploy,
    /// More or fewer tasks of what runs.
    Scale,
    /// Stop every task.
    Remove,
    /// Only old revisions are deregistered.
    Prune,
}

impl Action {
    /// `add`, `deploy`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Deploy => "deploy",
            Action::Scale => "scale",
            Action::Remove => "remove",
            Action::Prune => "prune",
        }
    }

    /// Terraform-like: `+` create, `±` replace, `~` in place, `-` destroy.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Add => "+",
            Action::Deploy => "±",
            Action::Scale => "~",
            Action::Remove | Action::Prune => "-",
        }
    }
}

/// A value before and after; `None` where there is none (before a first deploy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromTo<T> {
    pub from: Option<T>,
    pub to: Option<T>,
}

impl<T: PartialEq + std::fmt::Display> FromTo<T> {
    /// `2 → 3`, `2` when equal, `– → 1` when new.
    pub fn text(&self) -> String {
        let show = |v: &Option<T>| v.as_ref().map_or("–".to_string(), T::to_string);
        if self.from == self.to {
            show(&self.to)
        } else {
            format!("{} → {}", show(&self.from), show(&self.to))
        }
    }
}

/// Counts per action, as in the first line of every format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub add: usize,
    pub deploy: usize,
    pub scale: usize,
    pub remove: usize,
    pub prune: usize,
}

impl Counts {
    /// "Plan: 2 to deploy, 1 to scale, 1 to add, 0 to remove." (and prunes when any).
    pub fn line(&self) -> String {
        let mut s = format!(
            "Plan: {} to deploy, {} to scale, {} to add, {} to remove",
            self.deploy, self.scale, self.add, self.remove
        );
        if self.prune > 0 {
            s.push_str(&format!(", {} to prune", self.prune));
        }
        s.push('.');
        s
    }

    fn add_up(&mut self, other: &Counts) {
        self.add += other.add;
        self.deploy += other.deploy;
        self.scale += other.scale;
        self.remove += other.remove;
        self.prune += other.prune;
    }

    /// Whether anything changes.
    pub fn any(&self) -> bool {
        *self != Counts::default()
    }
}

/// One app's row of the summary and its details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppView {
    pub app: String,
    pub action: Action,
    pub symbol: &'static str,
    pub description: String,
    pub release: FromTo<u64>,
    pub digest: FromTo<String>,
    pub scale: FromTo<u32>,
    /// Names of the other things that change: config fields, `new app`, `removed`, …
    pub changes: Vec<String>,
    /// Field changes with canonical renderings (masked).
    pub fields: Vec<FieldChange>,
    /// Ids of this app's operations.
    pub operations: Vec<String>,
}

/// One operation as shown in the changeset table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationView {
    pub id: String,
    pub app: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub symbol: &'static str,
    /// Arguments, in a fixed order (`release`, `digest`, …), as strings; a JSON object.
    #[serde(serialize_with = "as_map")]
    pub arguments: Vec<(String, String)>,
    /// Ids of the operations that must finish first.
    pub depends_on: Vec<String>,
}

/// The plan of one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageView {
    pub stage: String,
    /// The stage file, relative to the project root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub lineage: String,
    pub serial: u64,
    pub counts: Counts,
    pub apps: Vec<AppView>,
    pub operations: Vec<OperationView>,
    /// Whether the plan was made against what the runtime runs (`--refresh`); only then in
    /// JSON, so plans without it read as before.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refreshed: bool,
    /// Apps whose live service drifted from recorded state, by app: `None` without `--refresh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Vec<Drift>>,
}

/// Everything a renderer needs: one or more stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanView {
    pub stages: Vec<StageView>,
}

/// Escape the control characters of `s` in place ([`super::escape`]); `keep_newlines` for
/// the multi-line renderings of a field, whose values have their own line breaks escaped.
fn escape_in_place(s: &mut String, keep_newlines: bool) {
    let escaped = if keep_newlines { super::escape_controls(s) } else { super::escape_line(s) };
    if let std::borrow::Cow::Owned(e) = escaped {
        *s = e;
    }
}

impl PlanView {
    /// A copy for a terminal or a markdown page: every string a stage file, state or a
    /// runtime put in it, with control characters escaped (the text and markdown renderers
    /// print this; JSON escapes them itself).
    pub fn escaped(&self) -> PlanView {
        let mut view = self.clone();
        for stage in &mut view.stages {
            escape_in_place(&mut stage.stage, false);
            if let Some(f) = &mut stage.file {
                escape_in_place(f, false);
            }
            for app in &mut stage.apps {
                for s in [&mut app.app, &mut app.description].into_iter().chain(&mut app.changes) {
                    escape_in_place(s, false);
                }
                for s in [&mut app.digest.from, &mut app.digest.to].into_iter().flatten() {
                    escape_in_place(s, false);
                }
                for field in &mut app.fields {
                    escape_in_place(&mut field.from, true);
                    escape_in_place(&mut field.to, true);
                    for key in &mut field.keys {
                        escape_in_place(&mut key.name, false);
                        for s in [&mut key.from, &mut key.to].into_iter().flatten() {
                            escape_in_place(s, false);
                        }
                    }
                }
                app.operations.iter_mut().for_each(|s| escape_in_place(s, false));
            }
            for op in &mut stage.operations {
                escape_in_place(&mut op.id, false);
                escape_in_place(&mut op.app, false);
                for (k, v) in &mut op.arguments {
                    escape_in_place(k, false);
                    escape_in_place(v, false);
                }
                op.depends_on.iter_mut().for_each(|s| escape_in_place(s, false));
            }
            for drift in stage.drift.iter_mut().flatten() {
                escape_in_place(&mut drift.app, false);
                if let Some(r) = &mut drift.revision {
                    escape_in_place(r, false);
                }
                for c in &mut drift.changes {
                    for s in [&mut c.field, &mut c.recorded, &mut c.live] {
                        escape_in_place(s, false);
                    }
                }
            }
        }
        view
    }
}

impl PlanView {
    /// The counts of every stage together.
    pub fn counts(&self) -> Counts {
        let mut total = Counts::default();
        for s in &self.stages {
            total.add_up(&s.counts);
        }
        total
    }

    /// Whether any stage changes.
    pub fn has_changes(&self) -> bool {
        self.stages.iter().any(|s| !s.operations.is_empty())
    }
}

impl StageView {
    /// The operation with this id. Operation ids are `APP/…` and operations are grouped by
    /// app, so a binary search on the app narrows it to a handful.
    pub fn operation(&self, id: &str) -> Option<&OperationView> {
        self.operation_index(id).map(|i| &self.operations[i])
    }

    /// The position of the operation with this id in [`StageView::operations`].
    pub fn operation_index(&self, id: &str) -> Option<usize> {
        let app = id.split('/').next().unwrap_or(id);
        let start = self.operations.partition_point(|o| o.app.as_str() < app);
        self.operations[start..]
            .iter()
            .take_while(|o| o.app == app)
            .position(|o| o.id == id)
            .map(|i| start + i)
            .or_else(|| self.operations.iter().position(|o| o.id == id))
    }

    /// The view of `changeset`, made against state `lineage`/`serial`, from `file`.
    pub fn build(changeset: &Changeset, lineage: &str, serial: u64, file: Option<&str>) -> StageView {
        // Indexes built once: a stage of 1,000 apps has thousands of operations and edges,
        // and scanning them per app or per operation would be quadratic.
        let mut by_app: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
        for op in &changeset.operations {
            by_app.entry(op.app()).or_default().push(op);
        }
        let mut deps: HashMap<&str, Vec<String>> = HashMap::new();
        for e in &changeset.edges {
            deps.entry(e.to.as_str()).or_default().push(e.from.clone());
        }
        let mut apps: Vec<AppView> = Vec::with_capacity(by_app.len());
        let mut counts = Counts::default();
        for (name, ops) in &by_app {
            let view = app_view(name, ops);
            match view.action {
                Action::Add => counts.add += 1,
                Action::Deploy => counts.deploy += 1,
                Action::Scale => counts.scale += 1,
                Action::Remove => counts.remove += 1,
                Action::Prune => counts.prune += 1,
            }
            apps.push(view);
        }
        let operations = changeset
            .operations
            .iter()
            .map(|op| {
                let id = op.id();
                let depends_on = deps.get(id.as_str()).cloned().unwrap_or_default();
                OperationView {
                    app: op.app().to_string(),
                    kind: op.kind_name(),
                    symbol: op.symbol(),
                    arguments: arguments(op, &by_app[op.app()]),
                    depends_on,
                    id,
                }
            })
            .collect();
        StageView {
            stage: changeset.stage.clone(),
            file: file.map(str::to_string),
            lineage: lineage.to_string(),
            serial,
            counts,
            apps,
            operations,
            refreshed: changeset.refreshed,
            drift: changeset.refreshed.then(|| changeset.drift.clone()),
        }
    }

    /// The apps that drifted (none without `--refresh`).
    pub fn drifted(&self) -> &[Drift] {
        self.drift.as_deref().unwrap_or_default()
    }

    /// `matches recorded state`, and with `--refresh` `and what runs`.
    pub fn no_changes_line(&self) -> String {
        let what = if self.refreshed { "recorded state and what runs" } else { "recorded state" };
        format!("No changes. Stage `{}` matches {what}.", self.stage)
    }
}

fn app_view(name: &str, ops: &[&Operation]) -> AppView {
    let mut view = AppView {
        app: name.to_string(),
        action: Action::Prune,
        symbol: "",
        description: String::new(),
        release: FromTo { from: None, to: None },
        digest: FromTo { from: None, to: None },
        scale: FromTo { from: None, to: None },
        changes: Vec::new(),
        fields: Vec::new(),
        operations: ops.iter().map(|o| o.id()).collect(),
    };
    for op in ops {
        match op {
            Operation::Deploy { kind, from, to, description, .. } => {
                view.description = description.clone();
                view.release = FromTo { from: from.as_ref().map(|f| f.release), to: Some(to.release) };
                view.digest =
                    FromTo { from: from.as_ref().map(|f| f.digest.to_string()), to: Some(to.digest.to_string()) };
                view.scale = FromTo { from: from.as_ref().map(|f| f.scale), to: Some(to.scale) };
                match from {
                    None => {
                        view.action = Action::Add;
                        view.changes.push("new app".into());
                        view.fields = config_fields(&to.image, &to.config);
                    }
                    Some(f) => {
                        view.action = Action::Deploy;
                        view.fields = config_diff(&f.image, &f.config, &to.image, &to.config);
                        if *kind == DeployKind::Activate && f.release == to.release {
                            view.changes.push("digest".into());
                        }
                        view.changes.extend(view.fields.iter().map(|c| c.field.to_string()));
                    }
                }
            }
            Operation::Scale { running, from, to, description, .. } => {
                view.action = Action::Scale;
                view.description = description.clone();
                view.release = FromTo { from: Some(running.release), to: Some(running.release) };
                view.digest = FromTo { from: Some(running.digest.to_string()), to: Some(running.digest.to_string()) };
                view.scale = FromTo { from: Some(*from), to: Some(*to) };
            }
            Operation::RemoveApp { running, .. } => {
                view.action = Action::Remove;
                view.description = "Remove app: stop every task".into();
                view.changes.push("removed".into());
                if let Some(r) = running {
                    view.release = FromTo { from: Some(r.release), to: None };
                    view.digest = FromTo { from: Some(r.digest.to_string()), to: None };
                    view.scale = FromTo { from: Some(r.scale), to: None };
                }
            }
            Operation::PruneRevisions { ids, .. } => {
                let what = format!("prune {} revision{}", ids.len(), if ids.len() == 1 { "" } else { "s" });
                if view.description.is_empty() {
                    view.description = format!("Prune {}", &what["prune ".len()..]);
                }
                view.changes.push(what);
            }
            _ => {}
        }
    }
    view.symbol = view.action.symbol();
    view
}

fn arguments(op: &Operation, app_ops: &[&Operation]) -> Vec<(String, String)> {
    let kv = |k: &str, v: String| (k.to_string(), v);
    match op {
        Operation::VerifyImage { release, image, digest, .. } => {
            vec![kv("release", release.to_string()), kv("image", image.clone()), kv("digest", digest.to_string())]
        }
        Operation::RegisterRevision { release, digest, config_hash, .. } => vec![
            kv("release", release.to_string()),
            kv("digest", digest.to_string()),
            kv("config", config_hash[..config_hash.len().min(12)].to_string()),
        ],
        Operation::RunReleaseTask { app, task, release, .. } => {
            let mut args = vec![kv("task", task.clone()), kv("release", release.to_string())];
            // The task's definition lives in the deploy's target config.
            let def = app_ops.iter().find_map(|o| match o {
                Operation::Deploy { app: a, to, .. } if a == app => {
                    to.config.release_tasks.iter().find(|t| &t.name == task).cloned()
                }
                _ => None,
            });
            if let Some(t) = def {
                args.push(kv("command", t.command.join(" ")));
                args.push(kv("timeout", t.timeout.to_string()));
            }
            args
        }
        Operation::Deploy { from, to, kind, .. } => {
            let release = FromTo { from: from.as_ref().map(|f| f.release), to: Some(to.release) };
            let scale = FromTo { from: from.as_ref().map(|f| f.scale), to: Some(to.scale) };
            vec![
                kv("kind", if *kind == DeployKind::Activate { "activate" } else { "config" }.into()),
                kv("release", release.text()),
                kv("digest", to.digest.to_string()),
                kv("scale", scale.text()),
            ]
        }
        Operation::Scale { running, from, to, .. } => {
            vec![kv("release", running.release.to_string()), kv("scale", format!("{from} → {to}"))]
        }
        Operation::RemoveApp { running, .. } => match running {
            Some(r) => vec![kv("release", r.release.to_string()), kv("scale", format!("{} → 0", r.scale))],
            None => vec![],
        },
        Operation::PruneRevisions { ids, .. } => vec![kv("revisions", ids.join(", "))],
    }
}

/// Shorten full digests inside a value for human formats.
pub fn shorten_digests(value: &str) -> String {
    let mut out = String::new();
    write_shortened(&mut out, value);
    out
}

/// [`shorten_digests`], appended to `out`.
pub fn write_shortened(out: &mut String, value: &str) {
    match value.parse::<crate::config::Digest>() {
        Ok(d) => out.push_str(&short_digest(&d)),
        Err(_) => out.push_str(value),
    }
}

fn as_map<S: serde::Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}
