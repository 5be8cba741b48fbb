//! Putting an import into a stage file and into recorded state.
//!
//! The file is changed through the format-preserving editor ([`StageEdit`]): only values
//! that differ from what the file says are set, so comments and layout stay, and importing
//! an unchanged service again changes nothing. Recorded state gets what the planner would
//! record had ferry deployed the file itself ([`plan::record`]), with the live task
//! definition as the revision serving and the service's own names ([`AdoptedService`]).

use serde_json::Value;

use super::{ImportedStage, Warning};
use crate::config::{self, Digest};
use crate::edit::{EditResult, FileValue, StageEdit};
use crate::plan::{self, Operation, Outcome, PlanOptions};
use crate::state::StageState;

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("file types serialise")
}

/// App keys written as sections of their own (`[apps.NAME.deploy]`), set key by key; any
/// other table (`scale = { min, max }`) is one value.
const SECTIONS: &[&str] = &["health", "deploy", "env", "secrets", "build", "sidecars", "logging"];

/// A JSON value of the file types as a value the editor writes.
fn file_value(v: &Value) -> Option<FileValue> {
    let table = |o: &serde_json::Map<String, Value>| -> Option<Vec<(String, FileValue)>> {
        o.iter().map(|(k, v)| Some((k.clone(), file_value(v)?))).collect()
    };
    match v {
        Value::Number(n) => n.as_i64().map(FileValue::Int),
        Value::String(s) => Some(FileValue::Str(s.clone())),
        Value::Bool(b) => Some(FileValue::Bool(*b)),
        Value::Object(o) => table(o).map(FileValue::Table),
        Value::Array(items) if items.iter().all(Value::is_object) => {
            items.iter().map(|i| table(i.as_object()?)).collect::<Option<_>>().map(FileValue::Tables)
        }
        Value::Array(items) => {
            items.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<_>>().map(FileValue::List)
        }
        _ => None,
    }
}

/// Change `edit` (whose parsed tree is `current`, `{}` for a new file) to say what
/// `imported` found. `owned` are the app keys the import's mapping writes.
pub fn apply(edit: &mut StageEdit, current: &Value, imported: &ImportedStage, owned: &[&str]) -> EditResult {
    let old_runtime = current.get("runtime");
    if let Value::Object(runtime) = json(&imported.runtime) {
        for (key, value) in &runtime {
            if old_runtime.and_then(|r| r.get(key)) != Some(value) {
                edit.set_runtime_value(key, file_value(value).as_ref())?;
            }
        }
    }
    let empty = Value::Object(Default::default());
    for app in &imported.apps {
        let name = app.name.as_str();
        let old = current.get("apps").and_then(|a| a.get(name));
        if old.is_none() {
            edit.add_app(name, &app.section.image)?;
        }
        let old = old.unwrap_or(&empty);
        let new = json(&app.section);
        if old.get("image") != new.get("image") {
            edit.set_app_value(name, "image", new.get("image").and_then(file_value).as_ref())?;
        }
        // The running digest: a release the file already declares, or the next id.
        if let Some(digest) = app.section.releases.get("1").and_then(|d| d.parse::<Digest>().ok()) {
            let releases = old.get("releases").and_then(Value::as_object);
            let declared = releases
                .and_then(|r| r.iter().find(|(_, d)| d.as_str() == Some(digest.as_str())))
                .and_then(|(id, _)| id.parse::<u64>().ok());
            let id = match declared {
                Some(id) => id,
                None => {
                    let next = releases.into_iter().flatten().filter_map(|(id, _)| id.parse::<u64>().ok()).max();
                    let id = next.map_or(1, |n| n + 1);
                    edit.add_release(name, id, &digest)?;
                    id
                }
            };
            if old.get("active").and_then(Value::as_u64) != Some(id) {
                edit.set_active(name, id)?;
            }
        }
        for (key, whole, subs) in ownership(owned) {
            let (n, o) = (new.get(key), old.get(key));
            if n == o {
                continue;
            }
            if !SECTIONS.contains(&key) {
                edit.set_app_value(name, key, n.and_then(file_value).as_ref())?;
                continue;
            }
            let (n, o) = (n.and_then(Value::as_object), o.and_then(Value::as_object));
            for (sub, value) in n.into_iter().flatten() {
                if o.and_then(|o| o.get(sub)) != Some(value) {
                    edit.set_section_value(name, key, sub, file_value(value).as_ref())?;
                }
            }
            // What the source stopped using goes; the team's own keys of the section stay.
            let gone =
                o.into_iter().flatten().map(|(k, _)| k.as_str()).filter(|k| n.is_none_or(|n| !n.contains_key(*k)));
            for sub in gone.filter(|k| whole || subs.contains(k)).collect::<Vec<_>>() {
                edit.set_section_value(name, key, sub, None)?;
            }
        }
    }
    Ok(())
}

/// `owned` (`mapping::app_keys`) by app key: whether the whole value is owned, else which
/// of its keys.
fn ownership<'a>(owned: &[&'a str]) -> Vec<(&'a str, bool, Vec<&'a str>)> {
    let mut out: Vec<(&str, bool, Vec<&str>)> = Vec::new();
    for key in owned {
        let (top, sub) = key.split_once('.').map_or((*key, None), |(t, s)| (t, Some(s)));
        let i = match out.iter().position(|(t, _, _)| *t == top) {
            Some(i) => i,
            None => {
                out.push((top, false, Vec::new()));
                out.len() - 1
            }
        };
        match sub {
            Some(sub) => out[i].2.push(sub),
            None => out[i].1 = true,
        }
    }
    out
}

/// Record in `state` that the adopted apps of `imported` run what `stage` (the file as
/// written) declares for them: the deployment a commit would have recorded, with the live
/// task definition serving it, described as an import. Other apps are left alone.
pub fn record(
    state: &mut StageState,
    stage: &config::Stage,
    imported: &ImportedStage,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let changeset = plan::plan(stage, state, &PlanOptions::default()).map_err(|e| e.to_string())?;
    for app in &imported.apps {
        let Some(adoption) = &app.adopted else { continue };
        let before = state.apps.get(&app.name).map_or(0, |a| a.history.len());
        for op in changeset.operations.iter().filter(|op| op.app() == app.name) {
            let outcome = match op {
                Operation::RegisterRevision { .. } => Outcome::succeeded(now).with_revision(&adoption.revision),
                _ => Outcome::succeeded(now),
            };
            plan::record(op, state, &outcome);
        }
        let recorded = state.apps.entry(app.name.clone()).or_default();
        recorded.adopted = Some(adoption.names.clone());
        if recorded.history.len() > before {
            if let Some(last) = recorded.history.last_mut() {
                last.description = format!(
                    "Import of ECS service {} ({})",
                    adoption.names.service,
                    adoption.revision.rsplit('/').next().unwrap_or(&adoption.revision)
                );
            }
        }
    }
    // An adopted service needs the newer state format (`state::STATE_FORMAT_VERSION`).
    state.version = state.format_version();
    Ok(())
}

/// Warnings as lines for stderr, control characters made visible.
pub fn warning_lines(warnings: &[Warning]) -> String {
    warnings.iter().map(|w| format!("warning: {}\n", crate::render::escape_line(&w.to_string()))).collect()
}
