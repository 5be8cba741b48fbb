//! The on-disk format of `ferry.toml` and of stage files, exactly as people type them.
//!
//! These types are what serde reads and what the JSON Schema in `schema/` is generated from.
//! They are deliberately loose (integers as `i64`, durations and digests as strings) so that
//! `config::validate` can report *every* problem with a location, instead of serde stopping at
//! the first one. The checked, typed model lives in `config::model`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use self::schema::*;

/// `ferry.toml`: the project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ferry project file (ferry.toml)")]
pub struct ProjectFile {
    /// The project itself.
    pub project: ProjectSection,
    /// Where recorded state lives. Default: local files under `.ferry/state/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_state")]
    pub state: Option<StateSection>,
    /// The ordered promotion path from stage to stage. Default: no pipeline (no promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_pipeline")]
    pub pipeline: Option<PipelineSection>,
    /// The image registry of stages on the local runtime. Default: a distribution registry
    /// ferry starts on 127.0.0.1 on demand, storing images under `.ferry/oci-registry/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySection>,
    /// Webhooks that deploy events are sent to (`[[notify]]`). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::events::notify::NotifySection>,
    /// `ferry ui`, the dashboard. Default: no token here (read-only unless `FERRY_UI_TOKEN`
    /// is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<UiSection>,
}

/// `[ui]`: the dashboard of `ferry ui`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UiSection {
    /// The bearer token that allows writes (`POST /api/status`), as a secret reference,
    /// never a value: `env:NAME` (ferry's environment) or `file:PATH` (a file inside the
    /// project). `FERRY_UI_TOKEN`, when set, wins over it. Default: none (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$"))]
    pub token: Option<String>,
}

/// `[registry]`: which OCI registry local stages push to and pull from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// A registry to use instead of starting one: `HOST[:PORT][/NAMESPACE]`, e.g.
    /// `127.0.0.1:5000` or `registry.example.com/shop`. Plain HTTP for 127.0.0.1 and
    /// `localhost`, HTTPS otherwise. Credentials come from `FERRY_REGISTRY_USER` and
    /// `FERRY_REGISTRY_PASSWORD`. Default: none (ferry starts a registry itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The port of the registry ferry starts on 127.0.0.1. Default: a free port, kept
    /// while the registry runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Where the registry ferry starts stores images, relative to the project. Default:
    /// `.ferry/oci-registry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

/// `[project]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    /// The project's name: a DNS label (lowercase letters, digits, `-`), at most 63 characters.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
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
    /// S3 bucket. Required for `s3`; no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket. Default: the project name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// AWS region of the bucket. Default: the standard AWS region chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Deployments per app kept in the state, which every commit rewrites; older ones are
    /// appended to `<stage>.history.jsonl` beside it and still listed by `ferry history`.
    /// Default: 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub keep_deployments: Option<u64>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Ordered steps; a release is promoted from one step to the next.
    #[serde(default)]
    pub steps: Vec<PipelineStepSection>,
    /// Preview stages per pull request, made from a template stage (`ferry preview`).
    /// Default: none (no previews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<crate::preview::settings::PreviewSection>,
}

/// `[[pipeline.steps]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineStepSection {
    /// The step's name, e.g. `production`.
    pub name: String,
    /// Stages of this step; more than one is a fan-out (one promotion reaches all).
    pub stages: Vec<String>,
    /// Status-check contexts (e.g. `ci/tests`) that must be `success` for a digest before it
    /// is promoted into this step. Default: none.
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
    #[schemars(default = "default_runtime")]
    pub runtime: Option<RuntimeSection>,
    /// The stage's apps, by name (a DNS label of at most 32 characters). Default: none.
    #[serde(default)]
    #[schemars(schema_with = "apps_schema")]
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

/// How the local runtime runs a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LocalDriver {
    /// A Docker container of `REPO@DIGEST`, pulled from the project's registry.
    Docker,
    /// A process on this machine, started in the image's unpacked files.
    Process,
}

impl LocalDriver {
    /// `docker` or `process`, as written in a stage file.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalDriver::Docker => "docker",
            LocalDriver::Process => "process",
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// `local` (default) or `ecs`.
    #[serde(default)]
    pub kind: RuntimeKind,
    /// Local runtime only: `docker` (tasks are containers) or `process` (tasks are host
    /// processes in the image's unpacked files). Default: `docker` when a Docker Engine
    /// answers, `process` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<LocalDriver>,
    /// AWS region, e.g. `eu-central-1`. Required for `ecs`; no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ECS cluster name. Required for `ecs`; no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Subnet ids for awsvpc networking (Fargate needs at least one). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Security group ids for awsvpc networking. Default: none (the VPC's default group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IP (needed in public subnets without a NAT gateway).
    /// Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_false")]
    pub assign_public_ip: Option<bool>,
    /// Task execution role ARN (pulls images, reads secrets, writes logs). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role: Option<String>,
    /// Task role ARN (what the app's own code may call). Default: none.
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
    /// Default: none.
    #[serde(default)]
    #[schemars(schema_with = "releases_schema")]
    pub releases: BTreeMap<String, String>,
    /// The id of the release that should run. Default: none: the app is declared but not
    /// deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active: Option<i64>,
    /// Number of tasks (0 stops the app but keeps it declared), or on ECS a range that
    /// Application Auto Scaling keeps the count in: `{ min = 2, max = 10, cpu_target = 60 }`.
    /// Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_scale")]
    pub scale: Option<ScaleSection>,
    /// CPU units (1024 = one vCPU). Default: 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_cpu", range(min = 1, max = 16384))]
    pub cpu: Option<i64>,
    /// Memory in MiB. Default: 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_memory", range(min = 1, max = 122880))]
    pub memory: Option<i64>,
    /// Command and arguments; `${PORT}` is replaced by the task's port. Default: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The app's port: on the local runtime the stable port on 127.0.0.1 that proxies to
    /// healthy tasks; on ECS the container port. Default: none (the app serves no traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i64>,
    /// Apps of this stage whose deploys must finish before this app's deploy starts.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Follow this registry tag (`ferry images sync` adds and activates what it names).
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub track: Option<String>,
    /// ECS only: ARN of a load balancer target group to register tasks with (the short form
    /// of `target_groups`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    /// ECS only: the load balancer target groups to register tasks with, each with the
    /// container and port (default: the app's). Not together with `target_group`.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_groups: Option<Vec<TargetGroupSection>>,
    /// Plain environment variables. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "env_schema")]
    pub env: BTreeMap<String, String>,
    /// Names of `env` variables whose values are masked in plans and logs. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_env: Vec<String>,
    /// Secrets: variable name = reference, never a value. `arn:aws:ssm:…:parameter/…`,
    /// `arn:aws:secretsmanager:…:secret:…`, or on the local runtime `env:NAME` / `file:PATH`.
    /// Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "secrets_schema")]
    pub secrets: BTreeMap<String, String>,
    /// Health checks that gate every rollout. Default: no container or network check (a
    /// task counts as healthy once it runs), with the timings below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSection>,
    /// How a rollout proceeds. Default: the settings below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySection>,
    /// One-off tasks run with a new release before it is activated (migrations). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_tasks: Vec<ReleaseTaskSection>,
    /// How `ferry release create NAME --source …` builds the app's image. Default: the
    /// source's `Dockerfile`, its whole tree as the context, no target, no extra args.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSection>,
    /// ECS only: containers beside the app's in every task (log routers, proxies, agents),
    /// by container name. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sidecars: BTreeMap<String, crate::config::ecs_task::SidecarSection>,
    /// ECS only: sidecars the app's container waits for, name = condition (`START`,
    /// `COMPLETE`, `SUCCESS` or `HEALTHY`). Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_depends_on: BTreeMap<String, String>,
    /// ECS only: the app's task role ARN, instead of `[runtime] task_role`. Default: the
    /// stage's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role: Option<String>,
    /// ECS only: the app's task execution role ARN, instead of `[runtime] execution_role`.
    /// Default: the stage's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role: Option<String>,
    /// ECS only: where the app's container logs. Default: awslogs to the stage's log group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<crate::config::ecs_task::LoggingSection>,
    /// ECS only: the CPU architecture, `X86_64` or `ARM64`. Default: "X86_64".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// ECS only: ephemeral storage per task in GiB, 21–200. Default: Fargate's 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 21, max = 200))]
    pub ephemeral_storage: Option<i64>,
    /// ECS only: the capacity provider strategy, e.g.
    /// `[{ provider = "FARGATE", weight = 1, base = 1 }, { provider = "FARGATE_SPOT", weight = 3 }]`.
    /// Default: none (the FARGATE launch type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_providers: Vec<crate::config::ecs_task::CapacityProviderSection>,
    /// ECS only: ECS Exec (`aws ecs execute-command`) into the app's tasks. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<bool>,
    /// ECS only: tags of the service and task definition. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// ECS only: which tags the tasks get: `service`, `task_definition` or `none`.
    /// Default: "service".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<String>,
}

/// `scale`: a fixed number of tasks, or an autoscaled range.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ScaleSection {
    /// A fixed number of tasks, from 0 to 1000.
    Count(#[schemars(range(min = 0, max = 1000))] i64),
    /// ECS only: Application Auto Scaling keeps the count between `min` and `max`, tracking
    /// a target. A deploy keeps the count it finds.
    Auto(AutoscaleSection),
}

/// By hand rather than `#[serde(untagged)]`: untagged says only "did not match any
/// variant", where a table's own problems (an unknown key, a missing `max`) should be named
/// at their key.
impl<'de> Deserialize<'de> for ScaleSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ScaleSection;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of tasks or a table { min, max, cpu_target }")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ScaleSection, E> {
                Ok(ScaleSection::Count(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ScaleSection, E> {
                Ok(ScaleSection::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ScaleSection, A::Error> {
                AutoscaleSection::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ScaleSection::Auto)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `scale = { min = …, max = …, cpu_target = … }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleSection {
    /// The fewest tasks; also the count a new service starts with.
    #[schemars(range(min = 0, max = 1000))]
    pub min: i64,
    /// The most tasks; at least `min`.
    #[schemars(range(min = 1, max = 1000))]
    pub max: i64,
    /// Average CPU utilisation (percent) the tasks are kept at. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub cpu_target: Option<i64>,
    /// Average memory utilisation (percent) the tasks are kept at. Default: none. With
    /// neither target, a target of 70% CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub memory_target: Option<i64>,
}

/// `[apps.NAME.build]`: building the app's image from sources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// The build context, a folder relative to the source's root. Default: the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The Dockerfile, relative to the context. Default: `Dockerfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The Dockerfile stage to build. Default: the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Build args (`--build-arg` adds to and overrides these). Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

/// `[apps.NAME.health]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Container check: healthy when it exits 0. `["CMD-SHELL", "…"]` runs through `sh -c`,
    /// `["CMD", prog, args…]` (or just `[prog, args…]`) runs directly. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Network check: HTTP GET of this path on the task's port; healthy on 2xx/3xx.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^/"))]
    pub path: Option<String>,
    /// Time between checks. Default: "5s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_interval", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
    /// Time a check may take; at most `interval`. Default: the shorter of "2s" and
    /// `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<String>,
    /// Consecutive passes before a task is healthy. Default: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_healthy_threshold", range(min = 1, max = 100))]
    pub healthy_threshold: Option<i64>,
    /// Consecutive failures before a task is unhealthy. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_unhealthy_threshold", range(min = 1, max = 100))]
    pub unhealthy_threshold: Option<i64>,
    /// Time after start during which failed checks do not count. Default: "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_grace_period", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub grace_period: Option<String>,
}

/// One entry of `target_groups = [{ arn = "…", container = "…", port = N }, …]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetGroupSection {
    /// ARN of the target group.
    pub arn: String,
    /// The container registered in it. Default: the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The container port registered in it. Default: the app's `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i64>,
}

/// `[apps.NAME.deploy]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploySection {
    /// Extra tasks started beside the old during a rollout, as a share of `scale`.
    /// Default: "100%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_percent_100", regex(pattern = r"^[0-9]+%$"))]
    pub max_surge: Option<String>,
    /// Share of `scale` that must stay healthy during a rollout. Default: "100%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_percent_100", regex(pattern = r"^[0-9]+%$"))]
    pub min_healthy: Option<String>,
    /// How long new tasks may take to turn healthy before the rollout fails. Default: "5m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_deploy_timeout", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<String>,
    /// How long old tasks keep finishing in-flight requests before they are stopped.
    /// Default: "5s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_drain", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub drain: Option<String>,
    /// Time between SIGTERM and SIGKILL when a task is stopped. Default: "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_stop_timeout", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub stop_timeout: Option<String>,
    /// ECS only: how ECS moves traffic to the new tasks — `rolling` (default), `blue_green`,
    /// `linear` or `canary`. The last three need `alternate_target_group`,
    /// `production_listener_rule` and `traffic_role`. Default: "rolling".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// ECS only: how long ECS watches the new tasks (and the alarms) after all traffic has
    /// moved, before the deployment is done; whole minutes, at most "24h". Default: "0m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(m|h)$"))]
    pub bake_time: Option<String>,
    /// `linear` only: the share of traffic moved at each step, 1–100%. Default: "10%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+%$"))]
    pub step_percent: Option<String>,
    /// `linear` only: the wait between steps; whole minutes, at most "24h". Default: "6m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(m|h)$"))]
    pub step_bake_time: Option<String>,
    /// `canary` only: the share of traffic the canary gets first, 1–100%. Default: "5%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+%$"))]
    pub canary_percent: Option<String>,
    /// `canary` only: how long the canary serves before the rest moves; whole minutes, at
    /// most "24h". Default: "10m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(m|h)$"))]
    pub canary_bake_time: Option<String>,
    /// ECS only: the deployment circuit breaker. Default: enabled, with rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerSection>,
    /// ECS only: CloudWatch alarm names; one in ALARM state during the deployment rolls it
    /// back. They must exist (checked at `plan --refresh` and `commit`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<Vec<String>>,
    /// ECS only, with target groups: how long ECS ignores the load balancer's failing health
    /// checks of a new task (`healthCheckGracePeriodSeconds`). Default: the container health
    /// check's `grace_period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub health_check_grace_period: Option<String>,
    /// `blue_green`, `linear`, `canary`: the second target group ECS moves traffic between;
    /// no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_target_group: Option<String>,
    /// `blue_green`, `linear`, `canary`: the listener rule ARN of production traffic; no
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_listener_rule: Option<String>,
    /// `blue_green`, `linear`, `canary`: the listener rule ARN of test traffic. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener_rule: Option<String>,
    /// `blue_green`, `linear`, `canary`: the IAM role ECS uses to change the listener rules;
    /// no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_role: Option<String>,
    /// ECS only: lifecycle hooks, `{ stages = ["post_scale_up"], lambda = "ARN", role = "ARN" }`
    /// or `{ stages = ["post_test_traffic_shift"], pause = true }` (released with
    /// `ferry continue`, rolled back with `ferry abort`). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookSection>,
}

/// An ECS deployment strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Tasks replaced in place (default).
    #[default]
    Rolling,
    /// A full new set of tasks, all traffic moved at once, then the bake time.
    BlueGreen,
    /// Traffic moved in equal steps.
    Linear,
    /// A share of traffic first, the rest after the canary bake time.
    Canary,
}

/// `circuit_breaker = { enable = true, rollback = true }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSection {
    /// Whether ECS fails a deployment whose tasks keep failing. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Whether ECS then returns to the previous task definition. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
}

/// One lifecycle hook of `[apps.NAME.deploy] hooks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookSection {
    /// The stages it runs at: `reconcile_service`, `pre_scale_up`, `post_scale_up`,
    /// `test_traffic_shift`, `post_test_traffic_shift`, `pre_production_traffic_shift`,
    /// `production_traffic_shift`, `post_production_traffic_shift`.
    pub stages: Vec<String>,
    /// The Lambda function ARN ECS invokes; no default (a hook is `lambda` or `pause`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<String>,
    /// The IAM role ECS invokes the Lambda function with; no default (required with `lambda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A manual gate: the deployment waits at the stage until `ferry continue`. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
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
    /// The task's name, e.g. `migrate`: a DNS label of at most 32 characters.
    pub name: String,
    /// Command and arguments, run with the new release's image and the app's config.
    pub command: Vec<String>,
    /// How long it may run. Default: "10m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_task_timeout", regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<String>,
    /// When it runs: `release` or `every_deploy`. Default: "release".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_run_on")]
    pub run_on: Option<RunOn>,
}

/// Schema-only pieces: the defaults shown to editors (the model applies the same ones in
/// `config::validate`), and the maps whose keys and values follow a pattern.
mod schema {
    use schemars::gen::SchemaGenerator;
    use schemars::schema::{InstanceType, ObjectValidation, Schema, SchemaObject, StringValidation};

    use super::*;

    pub fn default_state() -> Option<StateSection> {
        Some(StateSection::default())
    }
    pub fn default_pipeline() -> Option<PipelineSection> {
        Some(PipelineSection::default())
    }
    pub fn default_runtime() -> Option<RuntimeSection> {
        Some(RuntimeSection::default())
    }
    pub fn default_false() -> Option<bool> {
        Some(false)
    }
    pub fn default_scale() -> Option<ScaleSection> {
        Some(ScaleSection::Count(1))
    }
    pub fn default_cpu() -> Option<i64> {
        Some(256)
    }
    pub fn default_memory() -> Option<i64> {
        Some(512)
    }
    pub fn default_healthy_threshold() -> Option<i64> {
        Some(2)
    }
    pub fn default_unhealthy_threshold() -> Option<i64> {
        Some(3)
    }
    pub fn default_interval() -> Option<String> {
        Some("5s".into())
    }
    pub fn default_grace_period() -> Option<String> {
        Some("10s".into())
    }
    pub fn default_percent_100() -> Option<String> {
        Some("100%".into())
    }
    pub fn default_deploy_timeout() -> Option<String> {
        Some("5m".into())
    }
    pub fn default_drain() -> Option<String> {
        Some("5s".into())
    }
    pub fn default_stop_timeout() -> Option<String> {
        Some("10s".into())
    }
    pub fn default_task_timeout() -> Option<String> {
        Some("10m".into())
    }
    pub fn default_run_on() -> Option<RunOn> {
        Some(RunOn::Release)
    }

    fn pattern(p: &str) -> Schema {
        Schema::Object(SchemaObject {
            instance_type: Some(InstanceType::String.into()),
            string: Some(Box::new(StringValidation { pattern: Some(p.into()), ..Default::default() })),
            ..Default::default()
        })
    }

    /// An object whose keys match `keys` and whose values are `values`.
    fn map(keys: &str, values: Schema) -> Schema {
        Schema::Object(SchemaObject {
            instance_type: Some(InstanceType::Object.into()),
            object: Some(Box::new(ObjectValidation {
                property_names: Some(Box::new(pattern(keys))),
                additional_properties: Some(Box::new(values)),
                ..Default::default()
            })),
            ..Default::default()
        })
    }

    /// App names are DNS labels of at most 32 characters.
    pub fn apps_schema(gen: &mut SchemaGenerator) -> Schema {
        map(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", gen.subschema_for::<AppSection>())
    }

    /// Release ids are positive integers; digests are `sha256:` and 64 lowercase hex digits.
    pub fn releases_schema(_: &mut SchemaGenerator) -> Schema {
        map(r"^[1-9][0-9]*$", pattern(r"^sha256:[0-9a-f]{64}$"))
    }

    const ENV_NAME: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";

    pub fn env_schema(gen: &mut SchemaGenerator) -> Schema {
        map(ENV_NAME, gen.subschema_for::<String>())
    }

    /// Secrets are references, so a plain value fails in the editor already.
    pub fn secrets_schema(_: &mut SchemaGenerator) -> Schema {
        map(
            ENV_NAME,
            pattern(
                r"^(arn:[^:]+:ssm:[^:]*:[^:]*:parameter/.+|arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:.+|env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$",
            ),
        )
    }
}
