//! `ferry.toml`: the project file's sections — stages, registry, state, UI token — checked.

use super::*;
/// Load and check `ferry.toml`.
pub fn load_project(root: &Path) -> Result<Project, Diagnostics> {
    let src = read_source(root, Path::new(PROJECT_FILE)).map_err(|d| Diagnostics(vec![d]))?;
    let stages: Vec<String> = stage_refs(root).into_iter().map(|r| r.name).collect();
    check_project(root, &src, &stages)
}

/// `[registry]`: a usable url, or the port and storage of the registry ferry starts.
pub(super) fn check_registry(
    src: &SourceFile,
    section: file::RegistrySection,
    diags: &mut Diagnostics,
) -> RegistrySettings {
    let mut settings = RegistrySettings::default();
    if let Some(url) = section.url {
        match crate::registry::RegistryUrl::parse(&url) {
            Ok(_) => settings.url = Some(url),
            Err(why) => diags.push(
                src.diagnostic(&path!["registry", "url"], Target::Value, format!("registry url `{url}` {why}"))
                    .with_hint("write HOST[:PORT][/NAMESPACE], e.g. `127.0.0.1:5000` or `registry.example.com/shop`"),
            ),
        }
        for (key, set) in [("port", section.port.is_some()), ("storage", section.storage.is_some())] {
            if set {
                diags.push(
                    src.diagnostic(
                        &path!["registry", key],
                        Target::Key,
                        format!("`{key}` applies to the registry ferry starts, not to one named by `url`"),
                    )
                    .with_hint("remove it, or remove `url`"),
                );
            }
        }
    }
    if let Some(port) = section.port {
        match u16::try_from(port) {
            Ok(p) if p > 0 => settings.port = Some(p),
            _ => diags.push(
                src.diagnostic(&path!["registry", "port"], Target::Value, format!("port {port} is out of range"))
                    .with_hint("use a port from 1 to 65535, or leave it out for a free one"),
            ),
        }
    }
    if let Some(storage) = section.storage {
        let path = std::path::PathBuf::from(&storage);
        if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            diags.push(
                src.diagnostic(
                    &path!["registry", "storage"],
                    Target::Value,
                    format!("storage `{storage}` is outside the project"),
                )
                .with_hint("use a folder relative to the project, e.g. `.ferry/oci-registry`"),
            );
        } else {
            settings.storage = Some(path);
        }
    }
    settings
}

/// `[ui] token`: a reference `ferry ui` can read on this machine — `env:NAME` or a
/// `file:PATH` inside the project. AWS references would need SSM and Secrets Manager
/// clients on the dashboard's machine; a plain value is reported without being echoed.
pub(super) fn check_ui_token(src: &SourceFile, token: Option<&str>, diags: &mut Diagnostics) -> Option<SecretRef> {
    let token = token?;
    let at = path!["ui", "token"];
    match token.parse::<SecretRef>() {
        Ok(r @ SecretRef::Env(_)) => Some(r),
        Ok(SecretRef::File(p)) if is_inside_project(&p) => Some(SecretRef::File(p)),
        Ok(SecretRef::File(p)) => {
            diags.push(
                src.diagnostic(&at, Target::Value, format!("`[ui] token` file `{p}` is outside the project"))
                    .with_hint("use a path relative to the project root, without `..`"),
            );
            None
        }
        Ok(_) => {
            diags.push(
                src.diagnostic(&at, Target::Value, "`[ui] token` cannot be an AWS reference".to_string()).with_hint(
                    "use env:NAME or file:PATH (the dashboard reads it on this machine), or set FERRY_UI_TOKEN",
                ),
            );
            None
        }
        Err(_) => {
            // Never echo the value, not even in the quoted source line: it may be the token.
            let mut d = src
                .diagnostic(&at, Target::Key, "`[ui] token` is a plain value, not a reference".to_string())
                .with_hint("write env:NAME or file:PATH; remove the value from the file and from its history");
            if !token.is_empty() {
                d.source_line = d.source_line.replace(token, &"*".repeat(token.chars().count()));
            }
            diags.push(d);
            None
        }
    }
}

/// Check a parsed project file against the stage names that exist.
pub fn check_project(root: &Path, src: &SourceFile, stages: &[String]) -> Result<Project, Diagnostics> {
    let mut diags = Diagnostics::default();
    let file: ProjectFile = deserialize(src, &[], src.root().to_json()).map_err(|d| Diagnostics(vec![d]))?;

    if !is_dns_label(&file.project.name, 63) {
        diags.push(
            src.diagnostic(
                &path!["project", "name"],
                Target::Value,
                format!("project name `{}` is not a DNS label", file.project.name),
            )
            .with_hint("use lowercase letters, digits and `-`, at most 63 characters"),
        );
    }

    let keep_deployments = match file.state.as_ref().and_then(|s| s.keep_deployments) {
        None => DEFAULT_KEEP_DEPLOYMENTS,
        Some(n) if (1..=100_000).contains(&n) => n as usize,
        Some(n) => {
            diags.push(
                src.diagnostic(
                    &path!["state", "keep_deployments"],
                    Target::Value,
                    format!("`keep_deployments` is {n}, not between 1 and 100000"),
                )
                .with_hint("older deployments are archived beside the state and still listed by `ferry history`"),
            );
            DEFAULT_KEEP_DEPLOYMENTS
        }
    };
    let state = match file.state.clone().unwrap_or_default() {
        file::StateSection { backend: file::StateBackendKind::Local, bucket, prefix, region, .. } => {
            for (key, set) in [("bucket", bucket.is_some()), ("prefix", prefix.is_some()), ("region", region.is_some())]
            {
                if set {
                    diags.push(
                        src.diagnostic(
                            &path!["state", key],
                            Target::Key,
                            format!("`{key}` only applies to the s3 backend"),
                        )
                        .with_hint("remove it, or set `backend = \"s3\"`"),
                    );
                }
            }
            StateBackend::Local
        }
        file::StateSection { backend: file::StateBackendKind::S3, bucket, prefix, region, .. } => {
            if bucket.is_none() {
                diags.push(
                    src.diagnostic(&path!["state"], Target::Key, "the s3 state backend needs a `bucket`")
                        .with_hint("add `bucket = \"my-ferry-state\"` under [state]"),
                );
            }
            StateBackend::S3 {
                bucket: bucket.unwrap_or_default(),
                prefix: prefix.unwrap_or_else(|| file.project.name.clone()),
                region,
            }
        }
    };

    let mut pipeline = Vec::new();
    let mut seen_stage: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen_step: BTreeSet<&str> = BTreeSet::new();
    let steps = file.pipeline.as_ref().map(|p| p.steps.as_slice()).unwrap_or_default();
    for (i, step) in steps.iter().enumerate() {
        if !seen_step.insert(&step.name) {
            diags.push(
                src.diagnostic(
                    &path!["pipeline", "steps", i, "name"],
                    Target::Value,
                    format!("pipeline step `{}` is declared twice", step.name),
                )
                .with_hint("give every step its own name"),
            );
        }
        if step.stages.is_empty() {
            diags.push(
                src.diagnostic(
                    &path!["pipeline", "steps", i, "stages"],
                    Target::Value,
                    format!("pipeline step `{}` has no stages", step.name),
                )
                .with_hint("list at least one stage of `stages/`"),
            );
        }
        for (j, stage) in step.stages.iter().enumerate() {
            let at = path!["pipeline", "steps", i, "stages", j];
            if !stages.iter().any(|s| s == stage) {
                let known = if stages.is_empty() { "none".to_string() } else { stages.join(", ") };
                diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        format!("pipeline step `{}` names unknown stage `{stage}`", step.name),
                    )
                    .with_hint(format!("create {STAGES_DIR}/{stage}.toml, or use a known stage ({known})")),
                );
            }
            if let Some(prev) = seen_stage.insert(stage, i) {
                diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        format!("stage `{stage}` is in two pipeline steps: `{}` and `{}`", steps[prev].name, step.name),
                    )
                    .with_hint("a stage belongs to one step; remove it from one of them"),
                );
            }
        }
        pipeline.push(PipelineStep {
            name: step.name.clone(),
            stages: step.stages.clone(),
            required_checks: step.required_checks.clone(),
        });
    }

    let registry = check_registry(src, file.registry.clone().unwrap_or_default(), &mut diags);
    let preview = crate::preview::settings::check(
        src,
        file.pipeline.as_ref().and_then(|p| p.preview.as_ref()),
        stages,
        &mut diags,
    );
    let notify = crate::events::notify::check_all(src, &file.notify, &mut diags);
    let ui_token = check_ui_token(src, file.ui.as_ref().and_then(|u| u.token.as_deref()), &mut diags);

    if diags.is_empty() {
        Ok(Project {
            root: root.to_path_buf(),
            name: file.project.name,
            state,
            pipeline,
            keep_deployments,
            registry,
            preview,
            notify,
            ui_token,
        })
    } else {
        diags.sort();
        Err(diags)
    }
}
