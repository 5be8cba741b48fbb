//! The ECS task definition and service keys of `[apps.NAME]`: sidecar containers, the
//! app's own task and execution roles, its log configuration (`awslogs` or `awsfirelens`),
//! CPU architecture, ephemeral storage, capacity provider strategy, ECS Exec and tags.
//! The file types (the schema's source) sit here beside their check, which locates every
//! problem and builds [`EcsTask`].

// `path![…]` builds a `Vec` (see validate.rs).
#![allow(clippy::useless_vec)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::diagnostic::Diagnostics;
use crate::config::file::AppSection;
use crate::config::model::{Runtime, SecretRef};
use crate::config::source::{PathSeg, SourceFile, Target};
use crate::path;

/// Fargate's ephemeral storage range in GiB (20 is what a task gets without asking).
pub const STORAGE_GIB: std::ops::RangeInclusive<i64> = 21..=200;

/// The container conditions ECS knows for `dependsOn`.
pub const CONDITIONS: [&str; 4] = ["START", "COMPLETE", "SUCCESS", "HEALTHY"];

/// `[apps.NAME.sidecars.X]`: a container beside the app's in every task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SidecarSection {
    /// The image, by digest (`REPO@sha256:…`, recommended) or by tag (`REPO:TAG`).
    pub image: String,
    /// Whether the task stops when this container stops. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    /// Command and arguments. Default: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Containers of the task (the app's name or another sidecar's) this one waits for,
    /// with the condition: `START`, `COMPLETE`, `SUCCESS` or `HEALTHY`. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, String>,
    /// Plain environment variables. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secrets: variable name = reference (`arn:aws:ssm:…:parameter/…` or
    /// `arn:aws:secretsmanager:…:secret:…`), never a value. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// A container port. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i64>,
    /// Container health check (`["CMD-SHELL", "…"]` or `["CMD", prog, args…]`), with ECS's
    /// timings. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_command: Option<Vec<String>>,
    /// This container is the task's FireLens log router: `fluentbit` or `fluentd`.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firelens: Option<String>,
}

/// `[apps.NAME.logging]`: where the app's container logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// `awslogs` (CloudWatch Logs) or `awsfirelens` (a FireLens sidecar routes the logs).
    /// Default: "awslogs".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// `awslogs`: the log group, created if missing. Default: the stage's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `awslogs`: the stream prefix (streams are `PREFIX/CONTAINER/TASK-ID`). Default:
    /// "ferry" (what `ferry logs` reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_prefix: Option<String>,
    /// `awsfirelens`: the log router's output options, e.g. `{ Name = "cloudwatch" }`.
    /// Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// One entry of `capacity_providers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityProviderSection {
    /// `FARGATE` or `FARGATE_SPOT`.
    pub provider: String,
    /// The share of tasks placed with this provider, relative to the others. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: Option<i64>,
    /// Tasks placed with this provider before weights apply. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub base: Option<i64>,
}

/// A sidecar, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sidecar {
    pub image: String,
    pub essential: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Container name → ECS condition (upper case).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firelens: Option<String>,
}

/// The app container's log configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "lowercase")]
pub enum Logging {
    /// CloudWatch Logs; `group` is created if missing.
    Awslogs { group: String, stream_prefix: String },
    /// Routed by the task's FireLens sidecar with these options.
    Awsfirelens { options: BTreeMap<String, String> },
}

/// One capacity provider of the service's strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapacityProvider {
    pub provider: String,
    pub weight: u32,
    pub base: u32,
}

/// The ECS task definition and service settings of an app beyond the one container. All
/// empty by default, and left out of state then, so config hashes recorded before these
/// keys existed still match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EcsTask {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sidecars: BTreeMap<String, Sidecar>,
    /// Sidecars the app's container waits for: name → condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_depends_on: BTreeMap<String, String>,
    /// Overrides `[runtime] task_role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role: Option<String>,
    /// Overrides `[runtime] execution_role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role: Option<String>,
    /// `None`: the stage's awslogs group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `X86_64` or `ARM64`; `None`: ECS's default (X86_64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// GiB; `None`: Fargate's 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_gib: Option<u32>,
    /// Empty: the FARGATE launch type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_providers: Vec<CapacityProvider>,
    /// ECS Exec (`enableExecuteCommand`) on the service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exec: bool,
    /// Tags of the service and the task definition (besides ferry's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `SERVICE`, `TASK_DEFINITION` or `NONE`; `None`: `SERVICE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<String>,
}

impl EcsTask {
    pub fn is_default(&self) -> bool {
        *self == EcsTask::default()
    }

    /// The plan diff's lines, one per setting that is set.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(&crate::render::escape_line(&v));
            out.push('\n');
        };
        for (k, v) in [("task_role", &self.task_role), ("execution_role", &self.execution_role)] {
            if let Some(v) = v {
                line(k, format!("{v:?}"));
            }
        }
        match &self.logging {
            Some(Logging::Awslogs { group, stream_prefix }) => {
                line("logging", format!("awslogs {{ group = {group:?}, stream_prefix = {stream_prefix:?} }}"))
            }
            Some(Logging::Awsfirelens { options }) => line("logging", format!("awsfirelens {options:?}")),
            None => {}
        }
        if let Some(a) = &self.architecture {
            line("architecture", a.clone());
        }
        if let Some(g) = self.ephemeral_storage_gib {
            line("ephemeral_storage", format!("{g} GiB"));
        }
        for c in &self.capacity_providers {
            line("capacity_provider", format!("{} weight {} base {}", c.provider, c.weight, c.base));
        }
        if self.exec {
            line("exec", "true".into());
        }
        for (k, v) in &self.tags {
            line(&format!("tag.{k}"), v.clone());
        }
        if let Some(p) = &self.propagate_tags {
            line("propagate_tags", p.clone());
        }
        for (name, condition) in &self.container_depends_on {
            line("container_depends_on", format!("{name} {condition}"));
        }
        for (name, s) in &self.sidecars {
            let p = format!("sidecar.{name}");
            line(&format!("{p}.image"), s.image.clone());
            line(&format!("{p}.essential"), s.essential.to_string());
            if !s.command.is_empty() {
                line(&format!("{p}.command"), format!("{:?}", s.command));
            }
            for (c, cond) in &s.depends_on {
                line(&format!("{p}.depends_on.{c}"), cond.clone());
            }
            for (k, v) in &s.env {
                line(&format!("{p}.env.{k}"), v.clone());
            }
            for (k, v) in &s.secrets {
                line(&format!("{p}.secrets.{k}"), v.reference());
            }
            if let Some(port) = s.port {
                line(&format!("{p}.port"), port.to_string());
            }
            if let Some(h) = &s.health_command {
                line(&format!("{p}.health_command"), format!("{h:?}"));
            }
            if let Some(f) = &s.firelens {
                line(&format!("{p}.firelens"), f.clone());
            }
        }
        out
    }
}

/// Check the ECS task keys of app `name`; `at` locates a path under the app.
pub(crate) fn check(
    src: &SourceFile,
    at: &dyn Fn(&[PathSeg]) -> Vec<PathSeg>,
    name: &str,
    a: &AppSection,
    runtime: &Runtime,
    diags: &mut Diagnostics,
) -> EcsTask {
    let key_at = |k: &str| at(&path![k]);
    if !matches!(runtime, Runtime::Ecs(_)) {
        let set = [
            ("sidecars", !a.sidecars.is_empty()),
            ("container_depends_on", !a.container_depends_on.is_empty()),
            ("task_role", a.task_role.is_some()),
            ("execution_role", a.execution_role.is_some()),
            ("logging", a.logging.is_some()),
            ("architecture", a.architecture.is_some()),
            ("ephemeral_storage", a.ephemeral_storage.is_some()),
            ("capacity_providers", !a.capacity_providers.is_empty()),
            ("exec", a.exec.is_some()),
            ("tags", !a.tags.is_empty()),
            ("propagate_tags", a.propagate_tags.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, on)| *on) {
            diags.push(
                src.diagnostic(&key_at(key), Target::Key, format!("`{key}` only applies to the ecs runtime"))
                    .with_hint("remove it, or set [runtime] kind = \"ecs\""),
            );
        }
        return EcsTask::default();
    }
    let mut out = EcsTask {
        task_role: a.task_role.clone(),
        execution_role: a.execution_role.clone(),
        exec: a.exec.unwrap_or(false),
        tags: a.tags.clone(),
        ..EcsTask::default()
    };
    for (key, role) in [("task_role", &a.task_role), ("execution_role", &a.execution_role)] {
        if let Some(role) = role {
            if !role.starts_with("arn:aws") || !role.contains(":role/") {
                diags.push(
                    src.diagnostic(&key_at(key), Target::Value, format!("`{role}` is not an IAM role ARN"))
                        .with_hint("use arn:aws:iam::ACCOUNT:role/NAME"),
                );
            }
        }
    }
    if let Some(arch) = &a.architecture {
        match arch.to_ascii_uppercase().as_str() {
            u @ ("X86_64" | "ARM64") => out.architecture = Some(u.to_string()),
            _ => diags.push(
                src.diagnostic(
                    &key_at("architecture"),
                    Target::Value,
                    format!("architecture `{arch}` is not one ECS runs"),
                )
                .with_hint("use \"X86_64\" or \"ARM64\""),
            ),
        }
    }
    if let Some(gib) = a.ephemeral_storage {
        if STORAGE_GIB.contains(&gib) {
            out.ephemeral_storage_gib = Some(gib as u32);
        } else {
            diags.push(
                src.diagnostic(
                    &key_at("ephemeral_storage"),
                    Target::Value,
                    format!("ephemeral_storage {gib} GiB is outside 21–200 GiB"),
                )
                .with_hint("Fargate gives 20 GiB without asking; ask for 21 to 200, or remove the key"),
            );
        }
    }
    if let Some(p) = &a.propagate_tags {
        match p.to_ascii_uppercase().as_str() {
            u @ ("SERVICE" | "TASK_DEFINITION" | "NONE") => out.propagate_tags = Some(u.to_string()),
            _ => diags.push(
                src.diagnostic(&key_at("propagate_tags"), Target::Value, format!("`{p}` is not a tag source"))
                    .with_hint("use \"service\", \"task_definition\" or \"none\""),
            ),
        }
    }
    for (k, v) in &a.tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") || k.starts_with("ferry:") {
            diags.push(
                src.diagnostic(&at(&path!["tags", k]), Target::Key, format!("tag `{k}` cannot be set"))
                    .with_hint("keys are 1–128 characters, values at most 256; `aws:` and `ferry:` are reserved"),
            );
        }
    }
    let mut providers = std::collections::BTreeSet::new();
    for (i, c) in a.capacity_providers.iter().enumerate() {
        let c_at = |k: &str| at(&path!["capacity_providers", i, k]);
        if !matches!(c.provider.as_str(), "FARGATE" | "FARGATE_SPOT") {
            diags.push(
                src.diagnostic(
                    &c_at("provider"),
                    Target::Value,
                    format!("`{}` is not a Fargate capacity provider", c.provider),
                )
                .with_hint("use \"FARGATE\" or \"FARGATE_SPOT\""),
            );
        } else if !providers.insert(c.provider.as_str()) {
            diags.push(
                src.diagnostic(&c_at("provider"), Target::Value, format!("`{}` is listed twice", c.provider))
                    .with_hint("give each provider once"),
            );
        }
        let weight = c.weight.unwrap_or(1);
        let base = c.base.unwrap_or(0);
        if !(0..=1000).contains(&weight) {
            diags.push(
                src.diagnostic(&c_at("weight"), Target::Value, format!("weight {weight} is outside 0–1000"))
                    .with_hint("ECS takes weights from 0 to 1000"),
            );
        }
        if !(0..=100_000).contains(&base) {
            diags.push(
                src.diagnostic(&c_at("base"), Target::Value, format!("base {base} is outside 0–100000"))
                    .with_hint("ECS takes a base from 0 to 100000"),
            );
        }
        out.capacity_providers.push(CapacityProvider {
            provider: c.provider.clone(),
            weight: weight.clamp(0, 1000) as u32,
            base: base.clamp(0, 100_000) as u32,
        });
    }
    if !a.capacity_providers.is_empty() && out.capacity_providers.iter().all(|c| c.weight == 0) {
        diags.push(
            src.diagnostic(&key_at("capacity_providers"), Target::Value, "every capacity provider has weight 0")
                .with_hint("give at least one provider a weight above 0"),
        );
    }
    if a.capacity_providers.iter().filter(|c| c.base.unwrap_or(0) > 0).count() > 1 {
        diags.push(
            src.diagnostic(&key_at("capacity_providers"), Target::Value, "more than one capacity provider has a base")
                .with_hint("ECS allows a base on one provider only"),
        );
    }

    // Containers: the app's own, then the sidecars.
    let containers: std::collections::BTreeSet<&str> =
        std::iter::once(name).chain(a.sidecars.keys().map(String::as_str)).collect();
    let condition = |path: Vec<PathSeg>, c: &str, diags: &mut Diagnostics| -> Option<String> {
        let upper = c.to_ascii_uppercase();
        if CONDITIONS.contains(&upper.as_str()) {
            Some(upper)
        } else {
            diags.push(
                src.diagnostic(&path, Target::Value, format!("`{c}` is not a container condition"))
                    .with_hint("use START, COMPLETE, SUCCESS or HEALTHY"),
            );
            None
        }
    };
    let mut firelens_router = false;
    for (sname, s) in &a.sidecars {
        let s_at = |rest: &[PathSeg]| {
            let mut p = path!["sidecars", sname];
            p.extend_from_slice(rest);
            at(&p)
        };
        if sname == name {
            diags.push(
                src.diagnostic(&s_at(&[]), Target::Key, format!("sidecar `{sname}` is named like the app"))
                    .with_hint("the app's container has the app's name: give the sidecar another"),
            );
        } else if !crate::config::names::is_dns_label(sname, 255) {
            diags.push(
                src.diagnostic(&s_at(&[]), Target::Key, format!("sidecar name `{sname}` is not a container name"))
                    .with_hint("use lowercase letters, digits and `-`"),
            );
        }
        check_image(src, &s_at(&path!["image"]), &s.image, diags);
        let mut depends_on = BTreeMap::new();
        for (c, cond) in &s.depends_on {
            let d_at = s_at(&path!["depends_on", c]);
            if c == sname {
                diags.push(
                    src.diagnostic(&d_at, Target::Key, format!("sidecar `{sname}` depends on itself"))
                        .with_hint("remove the entry"),
                );
            } else if !containers.contains(c.as_str()) {
                diags.push(
                    src.diagnostic(
                        &d_at,
                        Target::Key,
                        format!("depends_on names `{c}`, which is no container of this task"),
                    )
                    .with_hint(format!("containers are {}", containers.iter().copied().collect::<Vec<_>>().join(", "))),
                );
            } else if let Some(cond) = condition(d_at, cond, diags) {
                depends_on.insert(c.clone(), cond);
            }
        }
        let mut secrets = BTreeMap::new();
        for (k, v) in &s.secrets {
            match v.parse::<SecretRef>() {
                Ok(r @ (SecretRef::Ssm(_) | SecretRef::SecretsManager(_))) => {
                    secrets.insert(k.clone(), r);
                }
                _ => diags.push(
                    src.diagnostic(&s_at(&path!["secrets", k]), Target::Value, format!("secret `{k}` is not an SSM or Secrets Manager reference"))
                        .with_hint("secrets are references, never values: arn:aws:ssm:…:parameter/… or arn:aws:secretsmanager:…:secret:…"),
                ),
            }
        }
        let port = match s.port {
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            Some(p) => {
                diags.push(
                    src.diagnostic(&s_at(&path!["port"]), Target::Value, format!("port {p} is outside 1–65535"))
                        .with_hint("give the container's port"),
                );
                None
            }
            None => None,
        };
        if s.health_command
            .as_ref()
            .is_some_and(|c| c.is_empty() || (c.len() == 1 && (c[0] == "CMD" || c[0] == "CMD-SHELL")))
        {
            diags.push(
                src.diagnostic(&s_at(&path!["health_command"]), Target::Value, "`health_command` has nothing to run")
                    .with_hint("e.g. [\"CMD-SHELL\", \"curl -f http://localhost:9901/ready\"]"),
            );
        }
        if let Some(f) = &s.firelens {
            if !matches!(f.as_str(), "fluentbit" | "fluentd") {
                diags.push(
                    src.diagnostic(
                        &s_at(&path!["firelens"]),
                        Target::Value,
                        format!("`{f}` is not a FireLens router type"),
                    )
                    .with_hint("use \"fluentbit\" or \"fluentd\""),
                );
            }
            firelens_router = true;
        }
        out.sidecars.insert(
            sname.clone(),
            Sidecar {
                image: s.image.clone(),
                essential: s.essential.unwrap_or(false),
                command: s.command.clone().unwrap_or_default(),
                depends_on,
                env: s.env.clone(),
                secrets,
                port,
                health_command: s.health_command.as_ref().map(|cmd| health_form(cmd)),
                firelens: s.firelens.clone(),
            },
        );
    }
    for (c, cond) in &a.container_depends_on {
        let d_at = at(&path!["container_depends_on", c]);
        if !a.sidecars.contains_key(c) {
            diags.push(
                src.diagnostic(
                    &d_at,
                    Target::Key,
                    format!("container_depends_on names `{c}`, which is no sidecar of this app"),
                )
                .with_hint("name a sidecar declared under [apps.NAME.sidecars]"),
            );
        } else if let Some(cond) = condition(d_at, cond, diags) {
            out.container_depends_on.insert(c.clone(), cond);
        }
    }
    if let Some(l) = &a.logging {
        let l_at = |k: &str| at(&path!["logging", k]);
        match l.driver.as_deref().unwrap_or("awslogs") {
            "awslogs" => {
                if !l.options.is_empty() {
                    diags.push(
                        src.diagnostic(&l_at("options"), Target::Key, "`options` applies to the awsfirelens driver")
                            .with_hint("awslogs takes `group` and `stream_prefix`"),
                    );
                }
                let group = l.group.clone().unwrap_or_default();
                if l.group.as_ref().is_some_and(|g| g.is_empty() || g.len() > 512) {
                    diags.push(
                        src.diagnostic(&l_at("group"), Target::Value, "a log group name is 1 to 512 characters")
                            .with_hint("e.g. \"/shop/api\""),
                    );
                }
                out.logging = Some(Logging::Awslogs {
                    group,
                    stream_prefix: l.stream_prefix.clone().unwrap_or_else(|| "ferry".into()),
                });
            }
            "awsfirelens" => {
                for k in ["group", "stream_prefix"] {
                    let set = if k == "group" { l.group.is_some() } else { l.stream_prefix.is_some() };
                    if set {
                        diags.push(
                            src.diagnostic(&l_at(k), Target::Key, format!("`{k}` applies to the awslogs driver"))
                                .with_hint("awsfirelens takes `options` for the log router"),
                        );
                    }
                }
                if !firelens_router {
                    diags.push(
                        src.diagnostic(&l_at("driver"), Target::Value, "awsfirelens needs a log router sidecar")
                            .with_hint(
                                "add a sidecar with firelens = \"fluentbit\" (e.g. the aws-for-fluent-bit image)",
                            ),
                    );
                }
                out.logging = Some(Logging::Awsfirelens { options: l.options.clone() });
            }
            other => diags.push(
                src.diagnostic(
                    &l_at("driver"),
                    Target::Value,
                    format!("log driver `{other}` is not one ferry configures"),
                )
                .with_hint("use \"awslogs\" or \"awsfirelens\""),
            ),
        }
    }
    out
}

/// A sidecar image: `REPO@sha256:…` (64 hex digits) or `REPO[:TAG]`.
fn check_image(src: &SourceFile, path: &[PathSeg], image: &str, diags: &mut Diagnostics) {
    let bad = |why: String| src.diagnostic(path, Target::Value, why);
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        diags.push(bad(format!("`{image}` is not an image")).with_hint("write REPO@sha256:DIGEST or REPO:TAG"));
    } else if let Some((_, digest)) = image.split_once('@') {
        if digest.parse::<crate::config::Digest>().is_err() {
            diags.push(
                bad(format!("`{digest}` is not an image digest"))
                    .with_hint("a digest is sha256: followed by 64 lowercase hex digits"),
            );
        }
    }
}

/// ECS's form of a health command: `CMD`/`CMD-SHELL` first.
pub fn health_form(cmd: &[String]) -> Vec<String> {
    match cmd.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL" | "NONE") => cmd.to_vec(),
        _ => std::iter::once("CMD".to_string()).chain(cmd.iter().cloned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::source::{Format, SourceFile};

    const HEAD: &str =
        "[runtime]\nkind = \"ecs\"\nregion = \"eu-central-1\"\ncluster = \"c\"\nsubnets = [\"subnet-1\"]\n\n\
                        [apps.api]\nimage = \"1.dkr.ecr.eu-central-1.amazonaws.com/api\"\nport = 8080\n";

    /// `(line, column, message)` of every problem of a stage file of `HEAD` + `rest`.
    fn problems(rest: &str) -> Vec<(usize, usize, String)> {
        let text = format!("{HEAD}{rest}");
        let src = SourceFile::parse(Path::new("stages/p.toml"), text, Format::Toml).expect("parses");
        match crate::config::validate::check_stage(&src, "p") {
            Ok(_) => Vec::new(),
            Err(d) => d.0.into_iter().map(|d| (d.line, d.col, d.message)).collect(),
        }
    }

    fn app(rest: &str) -> crate::config::EcsTask {
        let text = format!("{HEAD}{rest}");
        let src = SourceFile::parse(Path::new("stages/p.toml"), text, Format::Toml).expect("parses");
        let stage = crate::config::validate::check_stage(&src, "p").expect("valid");
        *stage.apps["api"].config.deploy.ecs_task.clone()
    }

    #[test]
    fn every_key_is_read() {
        let t = app(&("architecture = \"arm64\"\nephemeral_storage = 21\nexec = true\ntags = { team = \"shop\" }\n\
             propagate_tags = \"task_definition\"\ntask_role = \"arn:aws:iam::1:role/t\"\n\
             capacity_providers = [{ provider = \"FARGATE_SPOT\", weight = 2 }]\n\
             container_depends_on = { log = \"start\" }\n\
             [apps.api.logging]\ndriver = \"awsfirelens\"\noptions = { Name = \"cloudwatch\" }\n\
             [apps.api.sidecars.log]\nimage = \"fluent/fluent-bit@sha256:"
            .to_string()
            + &"b".repeat(64)
            + "\"\nfirelens = \"fluentbit\"\nessential = true\n"));
        assert_eq!(t.architecture.as_deref(), Some("ARM64"));
        assert_eq!(t.ephemeral_storage_gib, Some(21));
        assert!(t.exec);
        assert_eq!(t.propagate_tags.as_deref(), Some("TASK_DEFINITION"));
        assert_eq!(
            t.capacity_providers,
            [super::CapacityProvider { provider: "FARGATE_SPOT".into(), weight: 2, base: 0 }]
        );
        assert_eq!(t.container_depends_on["log"], "START");
        assert!(t.sidecars["log"].essential);
        assert!(matches!(&t.logging, Some(super::Logging::Awsfirelens { options }) if options["Name"] == "cloudwatch"));
        assert!(app("").is_default(), "an app without the keys keeps the default (and old state hashes)");
    }

    #[test]
    fn an_architecture_ecs_does_not_run_is_located() {
        assert_eq!(
            problems("architecture = \"arm\"\n"),
            [(10, 16, "architecture `arm` is not one ECS runs".to_string())]
        );
    }

    #[test]
    fn ephemeral_storage_outside_21_to_200_is_located() {
        assert_eq!(
            problems("ephemeral_storage = 20\n"),
            [(10, 21, "ephemeral_storage 20 GiB is outside 21–200 GiB".to_string())]
        );
        assert_eq!(problems("ephemeral_storage = 201\n").len(), 1);
        assert_eq!(problems("ephemeral_storage = 200\n"), []);
    }

    #[test]
    fn a_depends_on_naming_an_unknown_container_is_located() {
        let found = problems("[apps.api.sidecars.envoy]\nimage = \"envoy:1\"\ndepends_on = { db = \"START\" }\n");
        assert_eq!(found, [(12, 16, "depends_on names `db`, which is no container of this task".to_string())]);
        let found = problems("container_depends_on = { db = \"START\" }\n");
        assert_eq!(found, [(10, 26, "container_depends_on names `db`, which is no sidecar of this app".to_string())]);
        let found = problems("[apps.api.sidecars.envoy]\nimage = \"envoy:1\"\ndepends_on = { api = \"READY\" }\n");
        assert_eq!(found, [(12, 22, "`READY` is not a container condition".to_string())]);
    }

    #[test]
    fn a_sidecar_named_like_the_app_is_located() {
        let found = problems("[apps.api.sidecars.api]\nimage = \"envoy:1\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].2.as_str()), (10, "sidecar `api` is named like the app"));
    }

    #[test]
    fn other_bad_values_are_located() {
        let found = problems(
            "capacity_providers = [{ provider = \"EC2\" }]\nexec = true\n[apps.api.logging]\ndriver = \"awsfirelens\"\n\
             [apps.api.sidecars.envoy]\nimage = \"envoy@sha256:abc\"\nsecrets = { T = \"plain\" }\n",
        );
        let mut messages: Vec<&str> = found.iter().map(|f| f.2.as_str()).collect();
        messages.sort_unstable();
        assert_eq!(
            messages,
            [
                "`EC2` is not a Fargate capacity provider",
                "`sha256:abc` is not an image digest",
                "awsfirelens needs a log router sidecar",
                "secret `T` is not an SSM or Secrets Manager reference",
            ]
        );
    }

    #[test]
    fn the_keys_need_the_ecs_runtime() {
        let text = "[apps.api]\nimage = \"api\"\nexec = true\n";
        let src = SourceFile::parse(Path::new("stages/p.toml"), text.into(), Format::Toml).expect("parses");
        let found = crate::config::validate::check_stage(&src, "p").unwrap_err();
        assert_eq!(found.0[0].message, "`exec` only applies to the ecs runtime");
    }
}
