//! Field-level comparison of app configs: which fields changed, key changes of env and
//! secrets, and canonical text renderings that renderers diff line by line. Sensitive env
//! values are masked here, once, so no renderer can leak them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{AppConfig, Digest};

/// What the mask of a sensitive env value reads.
pub const SENSITIVE: &str = "(sensitive)";
/// The mask of a sensitive value that changed: the reader learns that, and nothing more.
pub const SENSITIVE_CHANGED: &str = "(sensitive, changed)";

/// How a key of a map changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Changed,
    Removed,
}

impl Change {
    /// `+`, `~` or `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            Change::Added => "+",
            Change::Changed => "~",
            Change::Removed => "-",
        }
    }
}

/// One key of env or secrets that changed; values already masked when sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    pub name: String,
    pub change: Change,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One config field that changed, with canonical renderings of both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// `image`, `command`, `env`, `secrets`, `cpu`, `memory`, `port`, `health`, `deploy`,
    /// `release_tasks`, `sensitive_env`, `target_group`, `autoscaling`.
    pub field: &'static str,
    /// Canonical rendering before (empty for a new app).
    pub from: String,
    /// Canonical rendering after.
    pub to: String,
    /// Key changes, for `env` and `secrets`.
    pub keys: Vec<KeyChange>,
}

impl FieldChange {
    /// Whether a line diff reads better than `from → to`.
    pub fn is_multiline(&self) -> bool {
        self.from.contains('\n') || self.to.contains('\n')
    }
}

/// `sha256:2b51cd…`: enough to recognise a digest in prose.
pub fn short_digest(digest: &Digest) -> String {
    format!("{}…", &digest.as_str()[..digest.as_str().len().min(13)])
}

/// The fields that differ between two configs (and images), in a fixed order.
pub fn config_diff(old_image: &str, old: &AppConfig, new_image: &str, new: &AppConfig) -> Vec<FieldChange> {
    let sensitive: BTreeSet<&str> = old.sensitive_env.iter().chain(&new.sensitive_env).map(String::as_str).collect();
    let mut out = Vec::new();
    let mut push = |field: &'static str, from: String, to: String, keys: Vec<KeyChange>| {
        if from != to || !keys.is_empty() {
            out.push(FieldChange { field, from, to, keys });
        }
    };
    // Only fields whose values differ are rendered: equal values render equal, so this
    // skips nothing `push` would keep, and rendering is most of the cost of a diff.
    if old_image != new_image {
        push("image", old_image.to_string(), new_image.to_string(), vec![]);
    }
    if old.command != new.command {
        push("command", render_command(&old.command), render_command(&new.command), vec![]);
    }
    if old.env != new.env {
        let keys = map_changes(&old.env, &new.env, &sensitive);
        let (from, to) = render_env(old, new, &sensitive);
        push("env", from, to, keys);
    }
    if old.secrets != new.secrets {
        let refs = |c: &AppConfig| c.secrets.iter().map(|(k, v)| (k.clone(), v.reference())).collect();
        let (a, b): (BTreeMap<String, String>, BTreeMap<String, String>) = (refs(old), refs(new));
        push("secrets", render_map(&a), render_map(&b), map_changes(&a, &b, &BTreeSet::new()));
    }
    if old.cpu != new.cpu {
        push("cpu", old.cpu.to_string(), new.cpu.to_string(), vec![]);
    }
    if old.memory != new.memory {
        push("memory", old.memory.to_string(), new.memory.to_string(), vec![]);
    }
    if old.port != new.port {
        push("port", opt(old.port), opt(new.port), vec![]);
    }
    if old.health != new.health {
        push("health", render_health(old), render_health(new), vec![]);
    }
    if old.deploy != new.deploy {
        push("deploy", render_deploy(old), render_deploy(new), vec![]);
    }
    if old.release_tasks != new.release_tasks {
        push("release_tasks", render_tasks(old), render_tasks(new), vec![]);
    }
    if old.sensitive_env != new.sensitive_env {
        push("sensitive_env", list(&old.sensitive_env), list(&new.sensitive_env), vec![]);
    }
    if old.target_group != new.target_group {
        push("target_group", opt(old.target_group.as_ref()), opt(new.target_group.as_ref()), vec![]);
    }
    if old.deploy.ecs.target_groups != new.deploy.ecs.target_groups {
        let render = |c: &AppConfig| crate::config::render_target_groups(&c.deploy.ecs.target_groups);
        push("target_groups", render(old), render(new), vec![]);
    }
    if old.deploy.ecs_task != new.deploy.ecs_task {
        push("task", old.deploy.ecs_task.render(), new.deploy.ecs_task.render(), vec![]);
    }
    if old.deploy.autoscaling != new.deploy.autoscaling {
        push("autoscaling", render_autoscaling(old), render_autoscaling(new), vec![]);
    }
    out
}

/// `min..max` and the targets, or empty for a fixed count.
fn render_autoscaling(c: &AppConfig) -> String {
    let Some(a) = &c.deploy.autoscaling else { return String::new() };
    let mut out = format!("min = {}\nmax = {}\n", a.min, a.max);
    if let Some(t) = a.cpu_target {
        out.push_str(&format!("cpu_target = {t}\n"));
    }
    if let Some(t) = a.memory_target {
        out.push_str(&format!("memory_target = {t}\n"));
    }
    out
}

/// Canonical renderings of every field of a new app's config (diffed against nothing).
pub fn config_fields(image: &str, config: &AppConfig) -> Vec<FieldChange> {
    let empty = BTreeSet::new();
    let sensitive: BTreeSet<&str> = config.sensitive_env.iter().map(String::as_str).collect();
    let env: BTreeMap<String, String> = config
        .env
        .iter()
        .map(|(k, v)| (k.clone(), if sensitive.contains(k.as_str()) { SENSITIVE.into() } else { v.clone() }))
        .collect();
    let secrets: BTreeMap<String, String> = config.secrets.iter().map(|(k, v)| (k.clone(), v.reference())).collect();
    let mut out = vec![FieldChange { field: "image", from: String::new(), to: image.into(), keys: vec![] }];
    let mut add = |field: &'static str, to: String, keys: Vec<KeyChange>| {
        if !to.is_empty() {
            out.push(FieldChange { field, from: String::new(), to, keys });
        }
    };
    add("command", if config.command.is_empty() { String::new() } else { render_command(&config.command) }, vec![]);
    add("env", render_map(&env), map_changes(&BTreeMap::new(), &env, &empty));
    add("secrets", render_map(&secrets), map_changes(&BTreeMap::new(), &secrets, &empty));
    if config.health.command.is_some() || config.health.path.is_some() {
        add("health", render_health(config), vec![]);
    }
    add("autoscaling", render_autoscaling(config), vec![]);
    // The ECS task and service settings (sidecars, roles, logging, …): empty when none is set.
    add("task", config.deploy.ecs_task.render(), vec![]);
    out
}

/// `config` with the values of its `sensitive_env` keys masked, for output that shows a
/// whole config (`ferry history --json`).
pub fn mask_sensitive(config: &AppConfig) -> AppConfig {
    let mut masked = config.clone();
    for (key, value) in &mut masked.env {
        if config.sensitive_env.contains(key) {
            *value = SENSITIVE.to_string();
        }
    }
    masked
}

/// Key changes between two maps; values of `sensitive` keys masked.
fn map_changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    sensitive: &BTreeSet<&str>,
) -> Vec<KeyChange> {
    let mask = |k: &str, v: &String| if sensitive.contains(k) { SENSITIVE.to_string() } else { v.clone() };
    let mut out = Vec::new();
    for (k, v) in old {
        match new.get(k) {
            None => out.push(KeyChange { name: k.clone(), change: Change::Removed, from: Some(mask(k, v)), to: None }),
            Some(w) if w != v => out.push(KeyChange {
                name: k.clone(),
                change: Change::Changed,
                from: Some(mask(k, v)),
                to: Some(if sensitive.contains(k.as_str()) { SENSITIVE_CHANGED.into() } else { w.clone() }),
            }),
            Some(_) => {}
        }
    }
    for (k, w) in new {
        if !old.contains_key(k) {
            out.push(KeyChange { name: k.clone(), change: Change::Added, from: None, to: Some(mask(k, w)) });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Env as `NAME=value` lines; a sensitive value reads `(sensitive)`, or
/// `(sensitive, changed)` on the new side when it changed, so the line diff still shows it.
fn render_env(old: &AppConfig, new: &AppConfig, sensitive: &BTreeSet<&str>) -> (String, String) {
    let side = |c: &AppConfig, other: &AppConfig, is_new: bool| {
        render_entries(c.env.iter().map(|(k, v)| {
            let shown = if !sensitive.contains(k.as_str()) {
                v.as_str()
            } else if is_new && other.env.get(k).is_some_and(|o| o != v) {
                SENSITIVE_CHANGED
            } else {
                SENSITIVE
            };
            (k.as_str(), shown)
        }))
    };
    (side(old, new, false), side(new, old, true))
}

fn render_map(map: &BTreeMap<String, String>) -> String {
    render_entries(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `NAME=value` lines, written into one string: a plan of many apps renders thousands.
fn render_entries<'a>(entries: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> String {
    let mut out = String::with_capacity(entries.clone().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in entries {
        // One line per entry: a line break (or any control character) inside a value is
        // escaped, so a value cannot pass for a line of its own in the diff.
        out.push_str(&crate::render::escape_line(k));
        out.push('=');
        out.push_str(&crate::render::escape_line(v));
        out.push('\n');
    }
    out
}

/// One argument per line, so a changed flag is one changed line.
fn render_command(command: &[String]) -> String {
    if command.is_empty() {
        return "(the image's command)".into();
    }
    command.iter().map(|a| format!("{}\n", quote(a))).collect()
}

fn render_health(c: &AppConfig) -> String {
    let h = &c.health;
    let command = h
        .command
        .as_ref()
        .map_or("none".to_string(), |cmd| format!("[{}]", cmd.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ")));
    format!(
        "command = {command}\npath = {}\ninterval = {}\ntimeout = {}\nhealthy_threshold = {}\nunhealthy_threshold = {}\ngrace_period = {}\n",
        crate::render::escape_line(h.path.as_deref().unwrap_or("none")),
        h.interval,
        h.timeout,
        h.healthy_threshold,
        h.unhealthy_threshold,
        h.grace_period
    )
}

fn render_deploy(c: &AppConfig) -> String {
    let d = &c.deploy;
    format!(
        "max_surge = {}\nmin_healthy = {}\ntimeout = {}\ndrain = {}\nstop_timeout = {}\n",
        d.max_surge, d.min_healthy, d.timeout, d.drain, d.stop_timeout
    ) + &d.ecs.render()
}

fn render_tasks(c: &AppConfig) -> String {
    c.release_tasks
        .iter()
        .map(|t| {
            let cmd = t.command.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
            let run_on = match t.run_on {
                crate::config::RunOn::Release => "release",
                crate::config::RunOn::EveryDeploy => "every_deploy",
            };
            format!("{}: {cmd} (timeout {}, run_on {run_on})\n", t.name, t.timeout)
        })
        .collect()
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| s.to_string())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("none".into(), |v| v.to_string())
}

fn list(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// "Config change: +FEATURE_X ~RAILS_ENV, command": env and secret names with their change,
/// then the other fields by name.
pub fn describe_config_change(changes: &[FieldChange]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let keys: Vec<String> = changes
        .iter()
        .filter(|f| f.field == "env" || f.field == "secrets")
        .flat_map(|f| f.keys.iter().map(|k| format!("{}{}", k.change.symbol(), k.name)))
        .collect();
    if !keys.is_empty() {
        parts.push(keys.join(" "));
    }
    parts.extend(changes.iter().filter(|f| f.field != "env" && f.field != "secrets").map(|f| f.field.to_string()));
    format!("Config change: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeploySettings, Health};

    fn config(env: &[(&str, &str)]) -> AppConfig {
        AppConfig {
            cpu: 256,
            memory: 512,
            command: vec![],
            port: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            sensitive_env: BTreeSet::new(),
            secrets: BTreeMap::new(),
            health: Health::default(),
            deploy: DeploySettings::default(),
            release_tasks: vec![],
            target_group: None,
        }
    }

    #[test]
    fn equal_configs_have_no_changes() {
        let c = config(&[("A", "1")]);
        assert!(config_diff("img", &c, "img", &c).is_empty());
    }

    #[test]
    fn env_changes_are_described_by_key() {
        let old = config(&[("RAILS_ENV", "staging"), ("OLD", "x")]);
        let mut new = config(&[("RAILS_ENV", "production"), ("FEATURE_X", "1")]);
        new.cpu = 512;
        let changes = config_diff("img", &old, "img", &new);
        assert_eq!(changes.iter().map(|c| c.field).collect::<Vec<_>>(), ["env", "cpu"]);
        assert_eq!(describe_config_change(&changes), "Config change: +FEATURE_X -OLD ~RAILS_ENV, cpu");
        assert_eq!(changes[0].from, "OLD=x\nRAILS_ENV=staging\n");
        assert_eq!(changes[0].to, "FEATURE_X=1\nRAILS_ENV=production\n");
    }

    #[test]
    fn sensitive_values_never_appear() {
        let mut old = config(&[("TOKEN", "hunter2")]);
        let mut new = config(&[("TOKEN", "correct-horse")]);
        old.sensitive_env.insert("TOKEN".into());
        new.sensitive_env.insert("TOKEN".into());
        let changes = config_diff("img", &old, "img", &new);
        let text = serde_json::to_string(&changes).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("correct-horse"), "{text}");
        assert_eq!(changes[0].from, "TOKEN=(sensitive)\n");
        assert_eq!(changes[0].to, "TOKEN=(sensitive, changed)\n");
        assert!(!serde_json::to_string(&config_fields("img", &new)).unwrap().contains("correct-horse"));
    }

    #[test]
    fn short_digest_keeps_six_hex_digits() {
        let d: Digest = format!("sha256:2b51cd{}", "0".repeat(58)).parse().unwrap();
        assert_eq!(short_digest(&d), "sha256:2b51cd…");
    }
}
