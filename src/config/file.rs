//! The on-disk format of `ferry.toml` and of stage files, exactly as people type them.
//!
//! These types are what serde reads and what the JSON Schema in `schema/` is generated from.
//! They are deliberately loose (integers as `i64`, durations and digests as strings) so that
//! `config::validate` can report *every* problem with a location, instead of serde stopping at
//! the first one. The checked, typed model lives in `config::model`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `ferry.toml`: the project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ferry project file (ferry.toml)")]
pub struct ProjectFile {
    /// The project itself.
    pub project: ProjectSection,
    /// Where recorded state lives. Default: local files under `.ferry/state/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSection>,
    /// The ordered promotion path from stage to stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineSection>,
}

/// `[project]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    /// The project's name: a DNS label (lowercase letters, digits, `-`).
    pub name: String,
}

/// Which state store backend to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateBackendKind {
    /// JSON files under `.ferry/state/` with a lock file beside them.
    #[default]
    Local,
    /// Objects in an S3 bucket, locked and written with conditional requests.
    S3,
}

/// `[state]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// `local` (default) or `s3`.
    #[serde(default)]
    pub backend: StateBackendKind,
    /// S3 bucket (required for `s3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket. Default: the project name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// AWS region of the bucket. Default: the standard AWS region chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Ordered steps; a release is promoted from one step to the next.
    #[serde(default)]
    pub steps: Vec<PipelineStepSection>,
}

/// `[[pipeline.steps]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineStepSection {
    /// The step's name, e.g. `production`.
    pub name: String,
    /// Stages of this step; more than one is a fan-out (one promotion reaches all).
    pub stages: Vec<String>,
    /// Status-check contexts that must be `success` for a digest before it is promoted
    /// into this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_checks: Vec<String>,
}

/// `stages/NAME.toml` (or `.hcl`): one environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ferry stage file (stages/NAME.toml)")]
pub struct StageFile {
    /// Where this stage runs. Default: the local runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSection>,
    /// The stage's apps, by name (a DNS label of at most 32 characters).
    #[serde(default)]
    pub apps: BTreeMap<String, AppSection>,
}

/// Which runtime a stage deploys to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// The embedded local runtime: an agent on this machine runs tasks as processes.
    #[default]
    Local,
    /// AWS ECS (Fargate), images in ECR.
    Ecs,
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// `local` (default) or `ecs`.
    #[serde(default)]
    pub kind: RuntimeKind,
    /// AWS region (required for `ecs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ECS cluster name (required for `ecs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Subnet ids for awsvpc networking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Security group ids for awsvpc networking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IP. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_public_ip: Option<bool>,
    /// Task execution role ARN (pulls images, reads secrets, writes logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role: Option<String>,
    /// Task role ARN (what the app's own code may call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role: Option<String>,
    /// CloudWatch Logs group for task output. Default: `/ferry/<project>/<stage>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
}

/// `[apps.NAME]`: one long-running service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// Image repository (an ECR repository URI, or a local registry repository name).
    pub image: String,
    /// Releases: id (a positive integer, never reused) = image digest (`sha256:` + 64 hex).
    #[serde(default)]
    pub releases: BTreeMap<String, String>,
    /// The id of the release that should run. Absent: the app is declared but not deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<i64>,
    /// Number of tasks. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i64>,
    /// CPU units (1024 = one vCPU). Default: 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    /// Memory in MiB. Default: 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Command and arguments; `${PORT}` is replaced by the task's port. Default: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The app's port: on the local runtime the stable port on 127.0.0.1 that proxies to
    /// healthy tasks; on ECS the container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Apps whose deploys must finish before this app's deploy starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Follow this registry tag (`ferry images sync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// ECS only: ARN of a load balancer target group to register tasks with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    /// Plain environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Names of `env` variables whose values are masked in plans and logs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_env: Vec<String>,
    /// Secrets: variable name = reference, never a value. `arn:aws:ssm:…`,
    /// `arn:aws:secretsmanager:…`, or on the local runtime `env:NAME` / `file:PATH`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Health checks that gate every rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSection>,
    /// How a rollout proceeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySection>,
    /// One-off tasks run with a new release before it is activated (migrations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_tasks: Vec<ReleaseTaskSection>,
}

/// `[apps.NAME.health]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Container check: healthy when it exits 0. `["CMD-SHELL", "…"]` runs through `sh -c`,
    /// `["CMD", prog, args…]` (or just `[prog, args…]`) runs directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Network check: HTTP GET of this path on the task's port; healthy on 2xx/3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between checks. Default: "5s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time a check may take. Default: "2s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Consecutive passes before a task is healthy. Default: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<i64>,
    /// Consecutive failures before a task is unhealthy. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<i64>,
    /// Time after start during which failed checks do not count. Default: "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<String>,
}

/// `[apps.NAME.deploy]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploySection {
    /// Extra tasks started beside the old during a rollout, as a share of `scale`.
    /// Default: "100%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<String>,
    /// Share of `scale` that must stay healthy during a rollout. Default: "100%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy: Option<String>,
    /// How long new tasks may take to turn healthy before the rollout fails. Default: "5m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How long old tasks keep finishing in-flight requests before they are stopped.
    /// Default: "5s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
    /// Time between SIGTERM and SIGKILL when a task is stopped. Default: "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<String>,
}

/// When a release task runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOn {
    /// Only when a new release is activated (default).
    #[default]
    Release,
    /// Before every deploy of the app, config changes included.
    EveryDeploy,
}

/// `[[apps.NAME.release_tasks]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTaskSection {
    /// The task's name, e.g. `migrate`.
    pub name: String,
    /// Command and arguments, run with the new release's image and the app's config.
    pub command: Vec<String>,
    /// How long it may run. Default: "10m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `release` (default) or `every_deploy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_on: Option<RunOn>,
}
