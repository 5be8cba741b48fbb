//! Images built from sources with the Docker Engine API (`bollard`), for
//! `ferry release create APP --source …`.
//!
//! The build gets `FERRY_GIT_SHA`, `FERRY_GIT_BRANCH` and `FERRY_GIT_REPO` as build args
//! (as Akkeris passes `AKKERIS_GIT_*`), the OCI `org.opencontainers.image.revision` and
//! `…source` labels, and the tag `GITSHA` (`GITSHA-dirty` for a checkout with uncommitted
//! changes; `src-<hash of the context>` outside git). Its output streams live to stderr.
//! The built image is taken out of the engine as a `docker save` archive and pushed with
//! the one registry client ([`crate::registry::OciRegistry`]), so the same code pushes to
//! the local registry and to ECR, and the digest recorded is the pushed manifest's.

pub mod ignore;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use crate::config::Project;
use crate::history::GitCheckout;
use crate::pipeline::records::{load, open_records, update, RecordError};
use crate::registry::oci::innermost;
use crate::registry::{image, OciRegistry, Pushed, RegistryError};
use crate::state::BuildSource;

/// How many of a failed build's last output lines the error shows.
const FAILED_TAIL: usize = 10;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildSpec {
    /// The build context, relative to the source's root. Default: the root.
    pub context: Option<String>,
    /// The Dockerfile, relative to the context. Default: `Dockerfile`.
    pub dockerfile: Option<String>,
    /// The Dockerfile stage to build.
    pub target: Option<String>,
    /// Build args.
    pub args: BTreeMap<String, String>,
}

/// The project record (`pipeline::records`) of the sources each built image came from, by
/// digest: `release create --source` adds to it, `commit` records the entry of each image it
/// deploys in the deployment (`ferry history` shows it). A project record rather than state
/// or the stage file: a build edits only the stage file, and the stage is not locked then.
pub const BUILDS_RECORD: &str = "builds";

/// How many builds the record keeps (the newest): older images are rarely deployed again,
/// and their deployments then only miss the source line.
const BUILDS_KEPT: usize = 1000;

/// One entry of [`BUILDS_RECORD`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuildRecord {
    pub source: BuildSource,
    pub built_at: chrono::DateTime<chrono::Utc>,
}

impl Built {
    /// What the build came from, as deployments record it.
    pub fn source(&self) -> BuildSource {
        BuildSource {
            tag: self.tag.clone(),
            commit: self.git.sha.clone(),
            dirty: self.git.dirty,
            repo: self.git.repo.clone(),
        }
    }
}

/// Add `built` under its digest to the project's [`BUILDS_RECORD`].
pub fn record_build(project: &Project, built: &Built) -> Result<(), RecordError> {
    let store = open_records(project)?;
    let entry = BuildRecord { source: built.source(), built_at: chrono::Utc::now() };
    update(store.as_ref(), BUILDS_RECORD, |builds: &mut BTreeMap<String, BuildRecord>| {
        builds.insert(built.pushed.digest.to_string(), entry.clone());
        while builds.len() > BUILDS_KEPT {
            let oldest = builds.iter().min_by_key(|(_, b)| b.built_at).map(|(d, _)| d.clone());
            builds.remove(&oldest.expect("not empty"));
        }
    })
}

/// The sources of the project's built images, by digest (none when nothing was built).
pub fn load_builds(project: &Project) -> Result<BTreeMap<String, BuildSource>, RecordError> {
    let store = open_records(project)?;
    let builds: BTreeMap<String, BuildRecord> = load(store.as_ref(), BUILDS_RECORD)?;
    Ok(builds.into_iter().map(|(digest, b)| (digest, b.source)).collect())
}

/// What the source's git checkout says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    pub sha: Option<String>,
    pub branch: Option<String>,
    pub repo: Option<String>,
    pub dirty: bool,
}

/// A built and pushed image.
#[derive(Debug, Clone)]
pub struct Built {
    pub pushed: Pushed,
    /// The tag pushed (and given to the image in the engine).
    pub tag: String,
    pub git: GitInfo,
}

/// Everything that stops a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("source `{what}` {reason}")]
    Source { what: String, reason: String, hint: String },
    #[error("cannot reach the Docker Engine: {0}")]
    NoEngine(String),
    #[error("{0}")]
    NoDockerfile(String),
    #[error("the build failed{step}: {message}\n{tail}", step = .step.as_ref().map(|s| format!(" at {s}")).unwrap_or_default())]
    Failed { step: Option<String>, message: String, tail: String },
    #[error("the build context's {0}")]
    Ignore(String),
    #[error("the Docker Engine failed: {0}")]
    Engine(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Io(String),
}

impl BuildError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Source { hint, .. } => Some(hint.clone()),
            BuildError::NoEngine(_) => Some(
                "start Docker (`systemctl start docker`), or point DOCKER_HOST at a running engine; \
                 `ferry image push DIR` makes an image without Docker"
                    .into(),
            ),
            BuildError::NoDockerfile(_) => Some(
                "add a Dockerfile to the source, or name it with --dockerfile (or `dockerfile` under [apps.NAME.build])"
                    .into(),
            ),
            BuildError::Failed { .. } => Some("fix the failing step; the stage file was not changed".into()),
            BuildError::Ignore(_) => Some(
                "fix the pattern (Docker's .dockerignore syntax: `*`, `?`, `[…]`, `**`, `!` to keep)".into(),
            ),
            BuildError::Engine(_) | BuildError::Io(_) => None,
            BuildError::Registry(e) => e.hint(),
        }
    }
}

/// What git says about the checkout holding `dir` (none outside git).
pub fn git_info(dir: &Path, clone_url: Option<&str>) -> GitInfo {
    let Some(checkout) = GitCheckout::read(dir) else { return GitInfo::default() };
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let dirty = git(&["status", "--porcelain", "--untracked-files=normal", "--", "."]).is_some_and(|s| !s.is_empty());
    let repo =
        clone_url.map(str::to_string).or_else(|| git(&["remote", "get-url", "origin"]).filter(|s| !s.is_empty()));
    GitInfo { sha: Some(checkout.commit), branch: checkout.branch, repo: repo.map(|r| strip_credentials(&r)), dirty }
}

/// A URL without `user:password@`: it goes into labels and build args others can read.
fn strip_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !rest.split('/').next().unwrap_or("").is_empty() && rest.find('@') < rest.find('/') => {
                format!("{scheme}://{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Build `spec` from the folder `source` (with `git` facts about it), tag it, push it to
/// `repo` of `registry`, and return the pushed digest. Output goes to stderr as it comes.
pub fn build_and_push(
    source: &Path,
    spec: &BuildSpec,
    git: GitInfo,
    registry: &OciRegistry,
    repo: &str,
    extra_labels: &BTreeMap<String, String>,
) -> Result<Built, BuildError> {
    let context = match &spec.context {
        Some(c) => source.join(c),
        None => source.to_path_buf(),
    };
    if !context.is_dir() {
        return Err(BuildError::NoDockerfile(format!(
            "the build context `{}` is not a folder of the source",
            spec.context.as_deref().unwrap_or(".")
        )));
    }
    let dockerfile = spec.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
    if !context.join(&dockerfile).is_file() {
        return Err(BuildError::NoDockerfile(format!(
            "the source has no Dockerfile `{dockerfile}` in its build context `{}`",
            spec.context.as_deref().unwrap_or(".")
        )));
    }
    // What `.dockerignore` leaves out is never sent (as the Docker CLI does), but the
    // Dockerfile and the ignore file itself always are: the engine reads them.
    let ignore = ignore::Ignore::load(&context).map_err(BuildError::Ignore)?;
    let always = |rel: &str| rel == dockerfile || rel == ".dockerignore";
    let skip = |rel: &str| !always(rel) && ignore.excludes(rel);
    let tree = crate::registry::layer::Tree::from_dir_except(&context, &skip, ignore.walk_excluded())?;
    let context_tar = tree.write(Vec::new())?;
    let tag = match &git.sha {
        Some(sha) if git.dirty => format!("{sha}-dirty"),
        Some(sha) => sha.clone(),
        None => format!("src-{}", &image::sha256(&context_tar).hex()[..12]),
    };
    let local_name = format!("{}:{tag}", registry.image_name(repo));

    let mut args: HashMap<String, String> = spec.args.clone().into_iter().collect();
    args.insert("FERRY_GIT_SHA".into(), git.sha.clone().unwrap_or_default());
    args.insert("FERRY_GIT_BRANCH".into(), git.branch.clone().unwrap_or_default());
    args.insert("FERRY_GIT_REPO".into(), git.repo.clone().unwrap_or_default());
    let mut labels: HashMap<String, String> = extra_labels.clone().into_iter().collect();
    if let Some(sha) = &git.sha {
        labels.insert("org.opencontainers.image.revision".into(), sha.clone());
    }
    if let Some(repo) = &git.repo {
        labels.insert("org.opencontainers.image.source".into(), repo.clone());
    }

    let archive = crate::aws::block_on(async {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| BuildError::NoEngine(e.to_string()))?
            .negotiate_version()
            .await
            .map_err(|e| BuildError::NoEngine(innermost(&e)))?;
        let mut options = BuildImageOptionsBuilder::new().dockerfile(&dockerfile).t(&local_name).rm(true).forcerm(true);
        options = options.buildargs(&args).labels(&labels);
        if let Some(t) = &spec.target {
            options = options.target(t);
        }
        let mut stream =
            docker.build_image(options.build(), None, Some(bollard::body_full(bytes::Bytes::from(context_tar))));
        let mut tail: Vec<String> = Vec::new();
        let mut step: Option<String> = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => {
                    BuildError::Failed { step: step.clone(), message: error, tail: tail.join("\n") }
                }
                other => BuildError::Engine(innermost(&other)),
            })?;
            if let Some(text) = &info.stream {
                eprint!("{text}");
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if line.starts_with("Step ") || line.starts_with("#") {
                        step = Some(line.trim().to_string());
                    }
                    tail.push(line.to_string());
                }
                if tail.len() > FAILED_TAIL {
                    tail.drain(..tail.len() - FAILED_TAIL);
                }
            }
            if let Some(detail) = &info.error_detail {
                return Err(BuildError::Failed {
                    step,
                    message: detail.message.clone().unwrap_or_default(),
                    tail: tail.join("\n"),
                });
            }
        }
        let mut saved = Vec::new();
        let mut export = docker.export_image(&local_name);
        while let Some(chunk) = export.next().await {
            saved.extend_from_slice(&chunk.map_err(|e| BuildError::Engine(innermost(&e)))?);
        }
        Ok::<_, BuildError>(saved)
    })?;
    let image = image::from_archive_bytes(archive, "the built image")?;
    let pushed = registry.push(repo, &image, Some(&tag))?;
    Ok(Built { pushed, tag, git })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_labels() {
        assert_eq!(strip_credentials("https://user:tok@git.example.com/shop.git"), "https://git.example.com/shop.git");
        assert_eq!(strip_credentials("https://git.example.com/a@b.git"), "https://git.example.com/a@b.git");
        assert_eq!(strip_credentials("git@github.com:shop/web.git"), "git@github.com:shop/web.git");
    }
}
