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

/// Tables whose every entry an import owns: a variable the source no longer has is removed.
const WHOLE_TABLES: &[&str] = &["env", "secrets"];

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("file types serialise")
}

/// App keys written as sections of their own (`[apps.NAME.deploy]`), set key by key; any
/// other table (`scale = { min, max }`) is one value.
const SECTIONS: &[&str] = &["health", "deploy", "env", "secrets", "build"];

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
        for key in owned {
            let (n, o) = (new.get(*key), old.get(*key));
            if n == o {
                continue;
            }
            match (n, o) {
                (Some(Value::Object(n)), o) if SECTIONS.contains(key) => {
                    let o = o.and_then(Value::as_object);
                    for (sub, value) in n {
                        if o.and_then(|o| o.get(sub)) != Some(value) {
                            edit.set_section_value(name, key, sub, file_value(value).as_ref())?;
                        }
                    }
                    if WHOLE_TABLES.contains(key) {
                        for sub in o.into_iter().flatten().map(|(k, _)| k).filter(|k| !n.contains_key(*k)) {
                            edit.set_section_value(name, key, sub, None)?;
                        }
                    }
                }
                (None, Some(Value::Object(o))) if WHOLE_TABLES.contains(key) => {
                    for sub in o.keys() {
                        edit.set_section_value(name, key, sub, None)?;
                    }
                }
                (None, Some(Value::Object(_))) if SECTIONS.contains(key) => {}
                (n, _) => edit.set_app_value(name, key, n.and_then(file_value).as_ref())?,
            }
        }
    }
    Ok(())
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
