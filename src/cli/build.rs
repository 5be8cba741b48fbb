//! `ferry release create APP --source …`: build the sources with the Docker Engine, push
//! the image to the app's registry (the project's for local stages, ECR for ECS ones) and
//! hand the pushed digest back to `release create`, which records it as a release.

use std::collections::BTreeMap;

use crate::build::source::{prepare, SourceSpec};
use crate::build::{build_and_push, git_info, BuildError, BuildSpec};
use crate::cli::{CliError, CliResult, Context};
use crate::config::{App, Digest, Project, Runtime, Stage};
use crate::registry::{serve, EcrRegistry, OciRegistry};

/// The build flags of `release create` (and `preview up`): they win over `[apps.NAME.build]`.
#[derive(Debug, Clone, Default)]
pub(super) struct BuildFlags {
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    /// `KEY=VALUE` pairs, checked here.
    pub build_args: Vec<String>,
}

/// Build `source` for `app` and push it; the pushed digest.
pub(super) fn build_release(
    ctx: &Context,
    project: &Project,
    stage: &Stage,
    app: &App,
    source: &str,
    flags: impl Into<BuildFlags>,
) -> CliResult<Digest> {
    let args = flags.into();
    // Flags win over `[apps.NAME.build]`; --build-arg adds to (and overrides) its args.
    let mut spec = BuildSpec {
        context: app.build.context.clone(),
        dockerfile: args.dockerfile.clone().or_else(|| app.build.dockerfile.clone()),
        target: args.target.clone().or_else(|| app.build.target.clone()),
        args: app.build.args.clone(),
    };
    for pair in &args.build_args {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                spec.args.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(CliError::with_hint(
                    format!("--build-arg `{}` is not KEY=VALUE", pair.escape_debug()),
                    "write each build arg as --build-arg KEY=VALUE",
                ))
            }
        }
    }
    let source_spec = SourceSpec::parse(source, &ctx.cwd).map_err(build_error)?;
    let (registry, repo) = push_registry(project, stage, &app.image)?;
    let prepared = prepare(&source_spec, &project.root.join(".ferry").join("build")).map_err(build_error)?;
    let git = git_info(&prepared.dir, prepared.git_url.as_deref());
    eprintln!(
        "building {} from {}{}",
        app.name,
        source.escape_debug(),
        git.sha
            .as_deref()
            .map(|s| format!(
                " (commit {}{})",
                &s[..s.len().min(12)],
                if git.dirty { ", uncommitted changes" } else { "" }
            ))
            .unwrap_or_default()
    );
    let built = build_and_push(&prepared.dir, &spec, git, &registry, &repo, &BTreeMap::new()).map_err(build_error)?;
    eprintln!(
        "{} {}:{} ({})",
        if built.pushed.new { "pushed" } else { "unchanged" },
        registry.image_name(&repo),
        built.tag,
        built.pushed.digest
    );
    // The image is pushed either way; without the record only history misses its commit.
    if let Err(e) = crate::build::record_build(project, &built) {
        eprintln!(
            "warning: cannot record the sources of {} ({e}); `ferry history` will not show them",
            built.pushed.digest
        );
    }
    Ok(built.pushed.digest)
}

/// Where an app's built image goes: the project's registry for a local stage, ECR (with the
/// basic auth `GetAuthorizationToken` gives) for an ECS one; and the repository in it.
fn push_registry(project: &Project, stage: &Stage, image: &str) -> CliResult<(OciRegistry, String)> {
    match &stage.runtime {
        Runtime::Local { .. } => {
            let registry = serve::for_project(project).map_err(super::image::registry_error)?;
            Ok((registry, image.to_string()))
        }
        Runtime::Ecs(ecs) => {
            let sdk = crate::aws::block_on(crate::runtime::ecs::load_sdk_config(&ecs.region));
            EcrRegistry::new(&sdk).push_registry(image).map_err(super::image::registry_error)
        }
    }
}

fn build_error(e: BuildError) -> CliError {
    match e.hint() {
        Some(h) => CliError::with_hint(e.to_string(), h),
        None => CliError::new(e.to_string()),
    }
}
