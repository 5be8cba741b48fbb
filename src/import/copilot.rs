//! Reading an AWS Copilot workspace for `ferry import --copilot DIR`: every
//! `copilot/<service>/manifest.yml`, once per environment (the folders of
//! `copilot/environments/` and the keys of each manifest's `environments:`), with that
//! environment's overrides merged over the manifest as Copilot merges them (maps key by
//! key, anything else replaced). Each becomes an app of the stage named after the
//! environment, through [`mapping::COPILOT_RULES`]; every other key is reported.
//!
//! yaml_serde reads the manifests; nothing is asked of AWS, so
//! images named by tag get no release (there is no digest to pin without a registry).

use std::collections::BTreeMap;
use std::path::Path;

use yaml_serde::Value;

use super::mapping::{self, Target};
use super::{app_name, ImportError, ImportedApp, ImportedStage, Warning};
use crate::config::file::{RuntimeKind, RuntimeSection};

/// Service types that run as an ECS service (the others are App Runner or scheduled tasks).
const ECS_SERVICE_TYPES: &[&str] = &["Load Balanced Web Service", "Backend Service", "Worker Service"];

/// One service of the workspace in one environment.
#[derive(Debug, Clone)]
pub struct CopilotSource {
    /// The Copilot application (`copilot/.workspace`), when named.
    pub application: Option<String>,
    pub service: String,
    pub environment: String,
    /// The manifest with the environment's overrides merged in, `environments` removed.
    pub manifest: Value,
}

impl CopilotSource {
    /// The value at a dotted path (`image.port`).
    pub fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.manifest, |v, key| v.get(key))
    }
}

/// The stages of the workspace at `dir` (the folder holding `copilot/`), by environment.
pub fn read(dir: &Path, region: &str) -> Result<BTreeMap<String, ImportedStage>, ImportError> {
    let root = dir.join("copilot");
    let err = |what: String| ImportError::Copilot(what);
    if !root.is_dir() {
        return Err(err(format!("{} holds no copilot/ folder", dir.display())));
    }
    let application = std::fs::read_to_string(root.join(".workspace"))
        .ok()
        .and_then(|t| yaml_serde::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("application").and_then(Value::as_str).map(str::to_string));
    let mut manifests: Vec<(String, Value)> = Vec::new();
    let mut environments: Vec<String> = Vec::new();
    let entries = std::fs::read_dir(&root).map_err(|e| err(format!("cannot read {}: {e}", root.display())))?;
    let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    for name in names {
        let path = root.join(&name);
        if name == "environments" {
            let envs = std::fs::read_dir(&path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
            environments
                .extend(envs.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()));
            continue;
        }
        let manifest = path.join("manifest.yml");
        if name.starts_with('.') || !manifest.is_file() {
            continue;
        }
        let text =
            std::fs::read_to_string(&manifest).map_err(|e| err(format!("cannot read {}: {e}", manifest.display())))?;
        let value: Value = yaml_serde::from_str(&text).map_err(|e| err(located(&manifest, &e)))?;
        if let Some(envs) = value.get("environments").and_then(Value::as_mapping) {
            environments.extend(envs.keys().filter_map(Value::as_str).map(str::to_string));
        }
        manifests.push((value.get("name").and_then(Value::as_str).unwrap_or(&name).to_string(), value));
    }
    environments.sort();
    environments.dedup();
    if manifests.is_empty() {
        return Err(err(format!("{} holds no copilot/<service>/manifest.yml", dir.display())));
    }
    if environments.is_empty() {
        return Err(err(format!(
            "{}: no environments (copilot/environments/<env>/ or `environments:` in a manifest)",
            dir.display()
        )));
    }
    let mut stages = BTreeMap::new();
    for env in &environments {
        let mut stage = ImportedStage::default();
        for (service, manifest) in &manifests {
            let source_name = format!("copilot service {service} (environment {env})");
            let kind = manifest.get("type").and_then(Value::as_str).unwrap_or("Load Balanced Web Service");
            if !ECS_SERVICE_TYPES.contains(&kind) {
                stage.warnings.push(Warning {
                    source: source_name,
                    feature: "type".into(),
                    detail: format!("{kind}: not an ECS service; not imported"),
                });
                continue;
            }
            let source = CopilotSource {
                application: application.clone(),
                service: service.clone(),
                environment: env.clone(),
                manifest: merged(manifest, env),
            };
            let app = app_name(service, env).map_err(|why| ImportError::Name { service: service.clone(), why })?;
            let mut target = Target::default();
            let mut unwritten = mapping::apply(mapping::COPILOT_RULES, &source, &mut target);
            unwritten.extend(unknown_keys(&source.manifest));
            stage.warnings.extend(unwritten.into_iter().map(|(feature, detail)| Warning {
                source: source_name.clone(),
                feature,
                detail,
            }));
            stage.apps.push(ImportedApp { name: app, section: target.app, adopted: None });
        }
        let cluster = format!("{}-{env}", application.as_deref().unwrap_or("copilot"));
        stage.warnings.push(Warning {
            source: format!("copilot environment {env}"),
            feature: "cluster".into(),
            detail: format!(
                "Copilot names it {cluster}-Cluster-…; `[runtime] cluster = \"{cluster}\"` is a placeholder: set the \
                 cluster's name (and subnets, security groups, roles)"
            ),
        });
        stage.runtime = RuntimeSection {
            kind: RuntimeKind::Ecs,
            region: Some(region.to_string()),
            cluster: Some(cluster),
            ..Default::default()
        };
        stages.insert(env.clone(), stage);
    }
    Ok(stages)
}

/// A YAML error as `FILE:LINE:COL: what`, the way ferry names places in its own files.
fn located(path: &Path, e: &yaml_serde::Error) -> String {
    let text = e.to_string();
    match e.location() {
        // The error's own text says "at line L column C" of that place: said once, in front
        // (a context's place, "while parsing … at line …", stays).
        Some(at) => {
            let what = text.replacen(&format!(" at line {} column {}", at.line(), at.column()), "", 1);
            format!("{}:{}:{}: {what}", path.display(), at.line(), at.column())
        }
        None => format!("{}: {text}", path.display()),
    }
}

/// Every key of `manifest` (and of its maps one level down) no row of
/// [`mapping::COPILOT_RULES`] names, so nothing is dropped without a word.
fn unknown_keys(manifest: &Value) -> Vec<(String, String)> {
    let features: Vec<&str> = mapping::COPILOT_RULES.iter().map(|r| r.feature).collect();
    let text = |v: &Value| yaml_serde::to_string(v).unwrap_or_default().trim().replace('\n', "; ");
    let mut unknown = Vec::new();
    for (key, value) in manifest.as_mapping().into_iter().flatten() {
        let key = key.as_str().unwrap_or_default();
        if features.contains(&key) || ["name", "type"].contains(&key) {
            continue;
        }
        let prefix = format!("{key}.");
        if !features.iter().any(|f| f.starts_with(&prefix)) {
            unknown.push((key.to_string(), format!("{}: not imported", text(value))));
            continue;
        }
        for (sub, value) in value.as_mapping().into_iter().flatten() {
            let path = format!("{prefix}{}", sub.as_str().unwrap_or_default());
            if !features.contains(&path.as_str()) {
                unknown.push((path, format!("{}: not imported", text(value))));
            }
        }
    }
    unknown
}

/// `manifest` with `environments.<env>` merged over it, `environments` removed.
fn merged(manifest: &Value, env: &str) -> Value {
    let mut base = manifest.clone();
    let overrides = manifest.get("environments").and_then(|e| e.get(env)).cloned();
    if let Some(map) = base.as_mapping_mut() {
        map.remove("environments");
    }
    if let Some(o) = overrides {
        merge(&mut base, o);
    }
    base
}

/// Copilot's override rule: maps merge key by key, anything else is replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => drop(b.insert(k, v)),
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_yaml_is_located() {
        let e = yaml_serde::from_str::<Value>("name: api\nimage:\n  port: [8080\n").unwrap_err();
        let text = located(Path::new("copilot/api/manifest.yml"), &e);
        assert!(text.starts_with("copilot/api/manifest.yml:4:1: "), "{text}");
        assert!(!text.contains(" at line 4 column 1"), "{text}");
    }

    #[test]
    fn environment_overrides_merge_maps_and_replace_the_rest() {
        let manifest: Value = yaml_serde::from_str(
            "name: api\ncount: 1\nvariables:\n  A: one\n  B: two\ncommand: [a, b]\nenvironments:\n  prod:\n    count: 3\n    \
             variables:\n      B: three\n    command: [c]\n",
        )
        .unwrap();
        let prod = merged(&manifest, "prod");
        assert_eq!(prod.get("count"), Some(&Value::from(3)));
        assert_eq!(prod.get("variables").unwrap().get("A"), Some(&Value::from("one")));
        assert_eq!(prod.get("variables").unwrap().get("B"), Some(&Value::from("three")));
        assert_eq!(prod.get("command").unwrap().as_sequence().unwrap().len(), 1);
        assert!(prod.get("environments").is_none());
        assert_eq!(merged(&manifest, "test").get("count"), Some(&Value::from(1)));
    }
}
