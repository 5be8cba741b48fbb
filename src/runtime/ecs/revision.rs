//! Revisions on ECS: how a [`RevisionSpec`] becomes a task definition, and how ferry tells
//! whether an identical one is already registered.
//!
//! Everything that goes into the task definition is first rendered into [`Rendered`], a
//! plain value whose SHA-256 is stored as the `ferry:spec` tag. Registering looks for an
//! ACTIVE revision of the family carrying the same hash and reuses it, so re-registering the
//! previous release (which every deploy does, to know what to roll back to) adds nothing.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, CpuArchitecture, EphemeralStorage,
    FirelensConfiguration, FirelensConfigurationType, HealthCheck, KeyValuePair, LogConfiguration, LogDriver,
    NetworkMode, OsFamily, PortMapping, RuntimePlatform, Secret, Tag, TransportProtocol,
};
use serde::Serialize;

use crate::config::{Logging, Sidecar};
use crate::runtime::{RevisionSpec, RuntimeError, RuntimeResult};

/// Tag names ferry puts on what it creates.
pub const TAG_STAGE: &str = "ferry:stage";
pub const TAG_APP: &str = "ferry:app";
pub const TAG_RELEASE: &str = "ferry:release";
pub const TAG_SPEC: &str = "ferry:spec";
pub const TAG_TARGET_GROUP: &str = "ferry:target-group";
pub const TAG_TASK: &str = "ferry:task";
/// The deployment (`vN`) that last deployed a task definition: given at registration, and
/// set with TagResource when a later deployment reuses the revision.
pub const TAG_DEPLOYMENT: &str = "ferry:deployment";

/// Everything a task definition holds, in ferry's terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rendered {
    pub family: String,
    pub container: String,
    pub image: String,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    pub port: Option<u16>,
    /// ECS form: `["CMD-SHELL", "…"]` or `["CMD", …]`.
    pub health_command: Option<Vec<String>>,
    pub health_interval_s: i32,
    pub health_timeout_s: i32,
    pub health_retries: i32,
    pub health_start_period_s: i32,
    pub cpu: u32,
    pub memory: u32,
    pub stop_timeout_s: i32,
    pub execution_role: Option<String>,
    pub task_role: Option<String>,
    pub log_group: String,
    pub log_create_group: bool,
    pub region: String,
    pub stage: String,
    pub app: String,
    pub release: u64,
    pub target_group: Option<String>,
    // What `[apps.NAME]` adds on ECS (`config::ecs_task`): left out of the hash while
    // unset, so revisions registered before these keys existed are still reused.
    /// The awslogs stream prefix; `None`: [`LOG_STREAM_PREFIX`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream_prefix: Option<String>,
    /// The app logs through the FireLens sidecar with these options, not awslogs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firelens_options: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sidecars: BTreeMap<String, Sidecar>,
    /// Sidecars the app's container waits for: name → condition.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub container_depends_on: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage_gib: Option<u32>,
    /// The app's own tags (besides ferry's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// What the stage's `[runtime]` adds to every revision.
pub struct StageSettings<'a> {
    pub stage: &'a str,
    pub region: &'a str,
    pub execution_role: Option<&'a str>,
    pub task_role: Option<&'a str>,
    /// `None`: `/ferry/<stage>`, created by the awslogs driver on first use.
    pub log_group: Option<&'a str>,
}

/// The task definition family, service name and container name of an app: `<stage>-<app>`
/// (the container is named after the app).
pub fn family(stage: &str, app: &str) -> String {
    format!("{stage}-{app}")
}

/// The log group of a stage.
pub fn log_group(stage: &str, configured: Option<&str>) -> String {
    configured.map_or_else(|| format!("/ferry/{stage}"), str::to_string)
}

/// The awslogs stream prefix; streams are `<prefix>/<container>/<task-id>`.
pub const LOG_STREAM_PREFIX: &str = "ferry";

/// Where the awslogs driver writes an app's output (`logging` as `[apps.NAME.logging]`
/// gives it): the log group and stream prefix, streams being `PREFIX/CONTAINER/TASK-ID` —
/// the app's own, else the stage's group and `ferry`. `None`: the app logs through FireLens.
pub fn awslogs(stage: &StageSettings<'_>, logging: Option<&Logging>) -> Option<(String, String)> {
    match logging {
        Some(Logging::Awslogs { group, stream_prefix }) => {
            let group = if group.is_empty() { log_group(stage.stage, stage.log_group) } else { group.clone() };
            Some((group, stream_prefix.clone()))
        }
        Some(Logging::Awsfirelens { .. }) => None,
        None => Some((log_group(stage.stage, stage.log_group), LOG_STREAM_PREFIX.to_string())),
    }
}

fn secs(d: crate::config::Duration, min: i32, max: i32) -> i32 {
    ((d.as_millis() / 1000).min(i32::MAX as u64) as i32).clamp(min, max)
}

impl Rendered {
    /// Render `spec` for `stage`.
    pub fn new(spec: &RevisionSpec, stage: &StageSettings<'_>) -> Rendered {
        let c = &spec.config;
        let port_text = c.port.map(|p| p.to_string());
        let command = c
            .command
            .iter()
            .map(|a| match &port_text {
                Some(p) => a.replace("${PORT}", p),
                None => a.clone(),
            })
            .collect();
        let mut environment = c.env.clone();
        if let Some(p) = &port_text {
            environment.entry("PORT".into()).or_insert_with(|| p.clone());
        }
        let health_command = c.health.command.as_deref().map(crate::config::ecs_task::health_form);
        let t = &c.deploy.ecs_task;
        // An app's own awslogs group is created by ferry before registering (CreateLogGroup),
        // so the task needs no `awslogs-create-group` (nor the permission it takes).
        let (log_group, log_stream_prefix) = awslogs(stage, t.logging.as_ref())
            .unwrap_or_else(|| (log_group(stage.stage, stage.log_group), LOG_STREAM_PREFIX.to_string()));
        let own_group = matches!(&t.logging, Some(Logging::Awslogs { group, .. }) if !group.is_empty());
        let log_create_group = !own_group && stage.log_group.is_none();
        let log_stream_prefix = Some(log_stream_prefix).filter(|p| p != LOG_STREAM_PREFIX);
        Rendered {
            family: family(stage.stage, &spec.app),
            container: spec.app.clone(),
            image: format!("{}@{}", spec.image, spec.digest),
            command,
            environment,
            secrets: c.secrets.iter().map(|(k, v)| (k.clone(), v.reference())).collect(),
            port: c.port,
            health_command,
            health_interval_s: secs(c.health.interval, 5, 300),
            health_timeout_s: secs(c.health.timeout, 2, 60),
            health_retries: c.health.unhealthy_threshold.clamp(1, 10) as i32,
            health_start_period_s: secs(c.health.grace_period, 0, 300),
            cpu: c.cpu,
            memory: c.memory,
            stop_timeout_s: secs(c.deploy.stop_timeout, 2, 120),
            execution_role: t.execution_role.clone().or_else(|| stage.execution_role.map(str::to_string)),
            task_role: t.task_role.clone().or_else(|| stage.task_role.map(str::to_string)),
            log_group,
            log_create_group,
            region: stage.region.to_string(),
            stage: stage.stage.to_string(),
            app: spec.app.clone(),
            release: spec.release,
            target_group: c.target_group.clone(),
            log_stream_prefix,
            firelens_options: match &t.logging {
                Some(Logging::Awsfirelens { options }) => Some(options.clone()),
                _ => None,
            },
            sidecars: t.sidecars.clone(),
            container_depends_on: t.container_depends_on.clone(),
            architecture: t.architecture.clone(),
            ephemeral_storage_gib: t.ephemeral_storage_gib,
            tags: t.tags.clone(),
        }
    }

    /// The hash stored as `ferry:spec`: equal hashes mean identical task definitions.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a rendered revision serialises");
        crate::config::Digest::of_bytes(&json).hex().to_string()
    }

    /// The tags of the task definition.
    pub fn tags(&self) -> Vec<Tag> {
        let mut tags = vec![
            tag(TAG_STAGE, &self.stage),
            tag(TAG_APP, &self.app),
            tag(TAG_RELEASE, &self.release.to_string()),
            tag(TAG_SPEC, &self.hash()),
        ];
        if let Some(tg) = &self.target_group {
            tags.push(tag(TAG_TARGET_GROUP, tg));
        }
        tags.extend(self.tags.iter().map(|(k, v)| tag(k, v)));
        tags
    }

    /// The one container.
    pub fn container_definition(&self) -> RuntimeResult<ContainerDefinition> {
        let mut b = ContainerDefinition::builder()
            .name(&self.container)
            .image(&self.image)
            .essential(true)
            // Container-level memory as well as the task's: a hard limit the container cannot
            // exceed (and what RunTask needs on EC2 capacity).
            .memory(self.memory as i32)
            .stop_timeout(self.stop_timeout_s)
            .set_command((!self.command.is_empty()).then(|| self.command.clone()))
            .set_environment(Some(environment(&self.environment)))
            .set_secrets(Some(secrets(self.secrets.iter().map(|(k, v)| (k, v.as_str())))?));
        if let Some(port) = self.port {
            b = b.port_mappings(port_mapping(port));
        }
        if let Some(cmd) = &self.health_command {
            b = b.health_check(
                HealthCheck::builder()
                    .set_command(Some(cmd.clone()))
                    .interval(self.health_interval_s)
                    .timeout(self.health_timeout_s)
                    .retries(self.health_retries)
                    .start_period(self.health_start_period_s)
                    .build()
                    .map_err(invalid)?,
            );
        }
        b = b.set_depends_on(depends_on(&self.container_depends_on)?);
        let log = match &self.firelens_options {
            Some(options) => {
                let mut log = LogConfiguration::builder().log_driver(LogDriver::Awsfirelens);
                for (k, v) in options {
                    log = log.options(k, v);
                }
                log.build().map_err(invalid)?
            }
            None => self.awslogs()?,
        };
        Ok(b.log_configuration(log).build())
    }

    /// The awslogs configuration of the app's group, which sidecars share.
    fn awslogs(&self) -> RuntimeResult<LogConfiguration> {
        let mut log = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &self.log_group)
            .options("awslogs-region", &self.region)
            .options("awslogs-stream-prefix", self.log_stream_prefix.as_deref().unwrap_or(LOG_STREAM_PREFIX));
        if self.log_create_group {
            log = log.options("awslogs-create-group", "true");
        }
        log.build().map_err(invalid)
    }

    /// Every container of the task: the app's first, then the sidecars by name.
    pub fn container_definitions(&self) -> RuntimeResult<Vec<ContainerDefinition>> {
        let mut out = vec![self.container_definition()?];
        for (name, s) in &self.sidecars {
            let mut b = ContainerDefinition::builder()
                .name(name)
                .image(&s.image)
                .essential(s.essential)
                .set_command((!s.command.is_empty()).then(|| s.command.clone()))
                .set_environment(Some(environment(&s.env)))
                .set_secrets(Some(secrets(s.secrets.iter().map(|(k, v)| (k, v.reference())))?))
                .set_depends_on(depends_on(&s.depends_on)?)
                // Sidecars log with awslogs to the app's group (a log router cannot route
                // its own output).
                .log_configuration(self.awslogs()?);
            if let Some(port) = s.port {
                b = b.port_mappings(port_mapping(port));
            }
            if let Some(cmd) = &s.health_command {
                b = b.health_check(HealthCheck::builder().set_command(Some(cmd.clone())).build().map_err(invalid)?);
            }
            if let Some(kind) = &s.firelens {
                b = b.firelens_configuration(
                    FirelensConfiguration::builder()
                        .r#type(FirelensConfigurationType::from(kind.as_str()))
                        .build()
                        .map_err(invalid)?,
                );
            }
            out.push(b.build());
        }
        Ok(out)
    }

    /// The runtime platform, when the file names an architecture.
    pub fn runtime_platform(&self) -> Option<RuntimePlatform> {
        self.architecture.as_deref().map(|a| {
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::from(a))
                .operating_system_family(OsFamily::Linux)
                .build()
        })
    }

    /// Ephemeral storage, when the file asks for more than Fargate's 20 GiB.
    pub fn ephemeral_storage(&self) -> Option<EphemeralStorage> {
        self.ephemeral_storage_gib.map(|g| EphemeralStorage::builder().size_in_gib(g as i32).build())
    }

    /// A RegisterTaskDefinition request for this revision (Fargate, awsvpc).
    pub fn register(
        &self,
        client: &aws_sdk_ecs::Client,
    ) -> RuntimeResult<aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder>
    {
        Ok(client
            .register_task_definition()
            .family(&self.family)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu(self.cpu.to_string())
            .memory(self.memory.to_string())
            .set_execution_role_arn(self.execution_role.clone())
            .set_task_role_arn(self.task_role.clone())
            .set_container_definitions(Some(self.container_definitions()?))
            .set_runtime_platform(self.runtime_platform())
            .set_ephemeral_storage(self.ephemeral_storage())
            .set_tags(Some(self.tags())))
    }
}

/// `dependsOn` of a container: name → condition; `None` when it waits for nothing.
fn depends_on(on: &BTreeMap<String, String>) -> RuntimeResult<Option<Vec<ContainerDependency>>> {
    if on.is_empty() {
        return Ok(None);
    }
    on.iter()
        .map(|(name, condition)| {
            ContainerDependency::builder()
                .container_name(name)
                .condition(ContainerCondition::from(condition.as_str()))
                .build()
                .map_err(invalid)
        })
        .collect::<RuntimeResult<Vec<_>>>()
        .map(Some)
}

/// The family of a task definition ARN (`…:task-definition/<family>:<revision>`).
pub fn arn_family(arn: &str) -> Option<&str> {
    arn.rsplit_once('/').and_then(|(_, fr)| fr.rsplit_once(':')).map(|(f, _)| f)
}

/// A tag.
pub fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The value of `key` among `tags`.
pub fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

fn invalid(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Invalid(e.to_string())
}

/// The revision number at the end of a task definition ARN (`…:task-definition/fam:12`).
pub fn revision_number(arn: &str) -> u64 {
    arn.rsplit(':').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// A container's environment, in ECS's shape.
fn environment(env: &BTreeMap<String, String>) -> Vec<KeyValuePair> {
    env.iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()).collect()
}

/// A container's secrets: variable name and the reference ECS resolves.
fn secrets<'a>(refs: impl Iterator<Item = (&'a String, impl Into<String>)>) -> RuntimeResult<Vec<Secret>> {
    refs.map(|(k, v)| Secret::builder().name(k).value_from(v).build().map_err(invalid)).collect()
}

/// A TCP port on the task's network interface (awsvpc: container port = host port).
fn port_mapping(port: u16) -> PortMapping {
    PortMapping::builder()
        .container_port(i32::from(port))
        .host_port(i32::from(port))
        .protocol(TransportProtocol::Tcp)
        .build()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{AppConfig, Health, SecretRef};

    /// A revision spec with every kind of field.
    pub(crate) fn spec() -> RevisionSpec {
        let mut env = BTreeMap::new();
        env.insert("RAILS_ENV".into(), "production".into());
        let mut secrets = BTreeMap::new();
        secrets.insert("DB".into(), SecretRef::Ssm("arn:aws:ssm:eu-central-1:123456789012:parameter/db".into()));
        RevisionSpec {
            app: "web".into(),
            release: 3,
            image: "123.dkr.ecr.eu-central-1.amazonaws.com/shop/web".into(),
            digest: format!("sha256:{}", "a".repeat(64)).parse().unwrap(),
            config: AppConfig {
                cpu: 256,
                memory: 512,
                command: vec!["puma".into(), "-p".into(), "${PORT}".into()],
                port: Some(8080),
                env,
                sensitive_env: Default::default(),
                secrets,
                health: Health { command: Some(vec!["curl".into(), "-f".into(), "x".into()]), ..Health::default() },
                deploy: Default::default(),
                release_tasks: vec![],
                target_group: None,
            },
            local_dir: None,
        }
    }

    /// Stage `prod` with no roles and the default log group.
    pub(crate) fn prod() -> StageSettings<'static> {
        StageSettings { stage: "prod", region: "eu-central-1", execution_role: None, task_role: None, log_group: None }
    }

    #[test]
    fn renders_what_ecs_needs() {
        let stage = prod();
        let r = Rendered::new(&spec(), &stage);
        assert_eq!(r.family, "prod-web");
        assert_eq!(r.image, format!("123.dkr.ecr.eu-central-1.amazonaws.com/shop/web@sha256:{}", "a".repeat(64)));
        assert_eq!(r.command, ["puma", "-p", "8080"]);
        assert_eq!(r.environment.get("PORT").map(String::as_str), Some("8080"));
        assert_eq!(r.health_command.as_deref().unwrap()[0], "CMD");
        assert_eq!(r.log_group, "/ferry/prod");
        assert_eq!(r.hash(), Rendered::new(&spec(), &stage).hash());
        let mut other = spec();
        other.release = 4;
        assert_ne!(r.hash(), Rendered::new(&other, &stage).hash());
        let c = r.container_definition().unwrap();
        assert_eq!(c.secrets()[0].value_from(), "arn:aws:ssm:eu-central-1:123456789012:parameter/db");
        assert_eq!(revision_number("arn:aws:ecs:r:1:task-definition/prod-web:12"), 12);
    }
}
