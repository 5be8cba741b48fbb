//! What `ferry import` carries over, as tables: one row per feature a live ECS service (or
//! an AWS Copilot manifest) can use. A row names the stage-file key it is written to and
//! how, or no key: then every service that uses the feature gets a warning saying so, and
//! nothing is silently dropped. A new stage-file key is supported by giving its row a key
//! and a writer, here and nowhere else ([`ECS_RULES`], [`COPILOT_RULES`]).

use aws_sdk_ecs::types::{ContainerDefinition, Service, TaskDefinition};

use crate::config::file::{AppSection, DeploySection, HealthSection, RuntimeSection, ScaleSection};
use crate::config::{Digest, SecretRef};

/// Where rows write: the app's section and the stage's `[runtime]` (shared by every app of
/// the stage; apps that disagree there are reported when merged, [`merge_runtime`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub app: AppSection,
    pub runtime: RuntimeSection,
}

/// One feature a source can use.
pub struct Rule<S> {
    /// What the source calls it, as warnings name it.
    pub feature: &'static str,
    /// The stage-file key it is written to (`runtime.X` for `[runtime]`), or `None`: the
    /// stage file cannot say it yet.
    pub key: Option<&'static str>,
    /// How the source uses it, in a few words; `None` when it does not.
    pub used: fn(&S) -> Option<String>,
    /// Write it (rows with a key); `Err(why)` for a use the key cannot express (reported).
    pub write: fn(&S, &mut Target) -> Result<(), String>,
}

/// What a row without a key writes: nothing.
fn nothing<S>(_: &S, _: &mut Target) -> Result<(), String> {
    Ok(())
}

/// Run every row of `rules` over `source` into `target`; returns `(feature, why)` of every
/// use not (fully) written.
pub fn apply<S>(rules: &[Rule<S>], source: &S, target: &mut Target) -> Vec<(String, String)> {
    let mut unwritten = Vec::new();
    for rule in rules {
        let Some(detail) = (rule.used)(source) else { continue };
        let why = match rule.key {
            None => Some(format!("{detail}: not imported, the stage file cannot say this yet")),
            Some(_) => (rule.write)(source, target).err().map(|why| format!("{detail}: {why}")),
        };
        if let Some(why) = why {
            unwritten.push((rule.feature.to_string(), why));
        }
    }
    unwritten
}

/// The app keys `rules` write (the first part of each key), which a re-import owns: one
/// the source no longer uses is removed from the file.
pub fn app_keys<S>(rules: &[Rule<S>]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = rules
        .iter()
        .filter_map(|r| r.key)
        .filter(|k| !k.starts_with("runtime.") && !matches!(*k, "image" | "releases" | "active"))
        .map(|k| k.split('.').next().unwrap_or(k))
        .collect();
    keys.dedup();
    keys
}

/// `[runtime]` of several apps as one: the first app's value of each key, and
/// `(key, why)` for every app whose value differs (that app would run with the first's).
pub fn merge_runtime(apps: &[(String, RuntimeSection)]) -> (RuntimeSection, Vec<(String, String, String)>) {
    let mut merged = serde_json::Map::new();
    let mut conflicts = Vec::new();
    for (app, runtime) in apps {
        let serde_json::Value::Object(values) = serde_json::to_value(runtime).expect("a runtime section serialises")
        else {
            continue;
        };
        for (key, value) in values {
            match merged.get(&key) {
                Some(first) if *first != value => conflicts.push((
                    app.clone(),
                    key.clone(),
                    format!("its {key} {value} differs from {first}, the stage's (one [runtime] per stage)"),
                )),
                Some(_) => {}
                None => drop(merged.insert(key, value)),
            }
        }
    }
    let runtime = serde_json::from_value(serde_json::Value::Object(merged)).expect("merged from runtime sections");
    (runtime, conflicts)
}

// ---------------------------------------------------------------------------------------
// Live ECS services

/// One live ECS service as import reads it.
#[derive(Debug, Clone)]
pub struct EcsSource {
    pub service: Service,
    pub task_definition: TaskDefinition,
    /// The index of the app's own container in the task definition (the others are sidecars).
    pub container: usize,
    /// The image repository of that container, without tag or digest.
    pub repository: String,
    /// The digest it runs (a tag resolved through ECR).
    pub digest: Digest,
    /// The task definition's region and account, for SSM parameters named without an ARN.
    pub region: String,
    pub account: String,
    /// Application Auto Scaling targets and policies of the service, described.
    pub autoscaling: Option<String>,
}

impl EcsSource {
    /// The app's container.
    pub fn main(&self) -> &ContainerDefinition {
        &self.task_definition.container_definitions()[self.container]
    }

    fn sidecars(&self) -> Vec<&str> {
        let main = self.container;
        self.task_definition
            .container_definitions()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != main)
            .map(|(_, c)| c.name().unwrap_or("?"))
            .collect()
    }
}

fn seconds(s: i32) -> String {
    format!("{s}s")
}

fn some_if(on: bool, text: impl FnOnce() -> String) -> Option<String> {
    on.then(text)
}

fn list<T: std::fmt::Debug>(items: &[T]) -> Option<String> {
    some_if(!items.is_empty(), || format!("{items:?}"))
}

/// The ECS task's cpu or memory (`256`, `0.25 vCPU`, `1 GB`) as the stage file's number.
fn task_size(value: Option<&str>, unit: &str) -> Option<i64> {
    crate::runtime::ecs::drift::units(value?, unit).parse().ok()
}

/// An ECS secret's `valueFrom` as ferry's reference: an ARN as it is; an SSM parameter named
/// without one (same region and account as the task) as its ARN.
pub fn secret_reference(value_from: &str, region: &str, account: &str) -> Result<SecretRef, String> {
    if value_from.starts_with("arn:") {
        return value_from.parse().map_err(|_| format!("`{value_from}` is not an SSM or Secrets Manager ARN"));
    }
    let name = value_from.trim_start_matches('/');
    format!("arn:aws:ssm:{region}:{account}:parameter/{name}")
        .parse()
        .map_err(|_| format!("`{value_from}` is not an SSM parameter name"))
}

/// Every feature of a live service and its task definition, and where it goes.
pub const ECS_RULES: &[Rule<EcsSource>] = &[
    Rule {
        feature: "image",
        key: Some("image"),
        used: |s| Some(format!("{}@{}", s.repository, s.digest)),
        write: |s, t| {
            t.app.image = s.repository.clone();
            t.app.releases.insert("1".into(), s.digest.to_string());
            t.app.active = Some(1);
            Ok(())
        },
    },
    Rule {
        feature: "desired count",
        key: Some("scale"),
        used: |s| Some(s.service.desired_count().to_string()),
        write: |s, t| {
            t.app.scale = Some(ScaleSection::Count(i64::from(s.service.desired_count())));
            Ok(())
        },
    },
    Rule {
        feature: "task cpu",
        key: Some("cpu"),
        used: |s| s.task_definition.cpu().map(str::to_string),
        write: |s, t| {
            t.app.cpu = Some(task_size(s.task_definition.cpu(), "vcpu").ok_or("not a number of CPU units")?);
            Ok(())
        },
    },
    Rule {
        feature: "task memory",
        key: Some("memory"),
        used: |s| s.task_definition.memory().map(str::to_string),
        write: |s, t| {
            t.app.memory = Some(task_size(s.task_definition.memory(), "gb").ok_or("not a number of MiB")?);
            Ok(())
        },
    },
    Rule {
        feature: "command",
        key: Some("command"),
        used: |s| some_if(!s.main().command().is_empty(), || format!("{:?}", s.main().command())),
        write: |s, t| {
            t.app.command = Some(s.main().command().to_vec());
            Ok(())
        },
    },
    Rule {
        feature: "port mappings",
        key: Some("port"),
        used: |s| list(s.main().port_mappings()),
        write: |s, t| {
            let ports: Vec<i32> = s.main().port_mappings().iter().filter_map(|p| p.container_port()).collect();
            t.app.port = ports.first().map(|&p| i64::from(p));
            match ports.as_slice() {
                [_] => Ok(()),
                [first, rest @ ..] => Err(format!("port {first} imported; ferry declares one port, not {rest:?}")),
                [] => Err("no container port".into()),
            }
        },
    },
    Rule {
        feature: "environment",
        key: Some("env"),
        used: |s| some_if(!s.main().environment().is_empty(), || format!("{} variables", s.main().environment().len())),
        write: |s, t| {
            for kv in s.main().environment() {
                t.app.env.insert(kv.name().unwrap_or_default().into(), kv.value().unwrap_or_default().into());
            }
            Ok(())
        },
    },
    Rule {
        feature: "secrets",
        key: Some("secrets"),
        used: |s| some_if(!s.main().secrets().is_empty(), || format!("{} secrets", s.main().secrets().len())),
        write: |s, t| {
            let mut refused = Vec::new();
            for secret in s.main().secrets() {
                match secret_reference(secret.value_from(), &s.region, &s.account) {
                    Ok(r) => drop(t.app.secrets.insert(secret.name().to_string(), r.reference())),
                    Err(why) => refused.push(format!("{}: {why}", secret.name())),
                }
            }
            if refused.is_empty() {
                Ok(())
            } else {
                Err(format!("not imported: {}", refused.join("; ")))
            }
        },
    },
    Rule {
        feature: "container health check",
        key: Some("health"),
        used: |s| s.main().health_check().map(|h| format!("{:?}", h.command())),
        write: |s, t| {
            let h = s.main().health_check().ok_or("none")?;
            // ECS's defaults when unset: 30 s, 5 s, 3 retries, no start period.
            t.app.health = Some(HealthSection {
                command: Some(h.command().to_vec()),
                interval: Some(seconds(h.interval().unwrap_or(30))),
                timeout: Some(seconds(h.timeout().unwrap_or(5))),
                unhealthy_threshold: Some(i64::from(h.retries().unwrap_or(3))),
                grace_period: Some(seconds(h.start_period().unwrap_or(0))),
                ..Default::default()
            });
            Ok(())
        },
    },
    Rule {
        feature: "rolling deployment percentages",
        key: Some("deploy.max_surge"),
        used: |s| {
            let c = s.service.deployment_configuration()?;
            // ECS's defaults (200 % / 100 %) are ferry's (100 % surge, 100 % healthy).
            let (max, min) = (c.maximum_percent().unwrap_or(200), c.minimum_healthy_percent().unwrap_or(100));
            some_if((max, min) != (200, 100), || format!("maximum {max} %, minimum healthy {min} %"))
        },
        write: |s, t| {
            let c = s.service.deployment_configuration().ok_or("none")?;
            let deploy = t.app.deploy.get_or_insert_with(DeploySection::default);
            let max = c.maximum_percent().unwrap_or(200);
            deploy.max_surge = Some(format!("{}%", (max - 100).max(0)));
            deploy.min_healthy = Some(format!("{}%", c.minimum_healthy_percent().unwrap_or(100)));
            Ok(())
        },
    },
    Rule {
        feature: "stop timeout",
        key: Some("deploy.stop_timeout"),
        used: |s| s.main().stop_timeout().map(seconds),
        write: |s, t| {
            let deploy = t.app.deploy.get_or_insert_with(DeploySection::default);
            deploy.stop_timeout = s.main().stop_timeout().map(seconds);
            Ok(())
        },
    },
    Rule {
        feature: "load balancer",
        key: Some("target_group"),
        used: |s| list(s.service.load_balancers()),
        write: |s, t| {
            let main = s.main().name().unwrap_or_default();
            let lbs = s.service.load_balancers();
            let ours = lbs.iter().find(|lb| lb.container_name() == Some(main) && lb.target_group_arn().is_some());
            t.app.target_group = ours.and_then(|lb| lb.target_group_arn()).map(str::to_string);
            match (ours, lbs.len()) {
                (Some(_), 1) => Ok(()),
                (Some(_), n) => Err(format!("one target group imported of {n}; ferry registers one per app")),
                (None, _) => Err("no target group of the app's container (a Classic Load Balancer?)".into()),
            }
        },
    },
    Rule {
        feature: "network",
        key: Some("runtime.subnets"),
        used: |s| s.service.network_configuration().and_then(|n| n.awsvpc_configuration()).map(|v| format!("{v:?}")),
        write: |s, t| {
            let vpc = s.service.network_configuration().and_then(|n| n.awsvpc_configuration()).ok_or("none")?;
            t.runtime.subnets = vpc.subnets().to_vec();
            t.runtime.security_groups = vpc.security_groups().to_vec();
            t.runtime.assign_public_ip =
                Some(vpc.assign_public_ip() == Some(&aws_sdk_ecs::types::AssignPublicIp::Enabled));
            Ok(())
        },
    },
    Rule {
        feature: "task execution role",
        key: Some("runtime.execution_role"),
        used: |s| s.task_definition.execution_role_arn().map(str::to_string),
        write: |s, t| {
            t.runtime.execution_role = s.task_definition.execution_role_arn().map(str::to_string);
            Ok(())
        },
    },
    Rule {
        feature: "task role",
        key: Some("runtime.task_role"),
        used: |s| s.task_definition.task_role_arn().map(str::to_string),
        write: |s, t| {
            t.runtime.task_role = s.task_definition.task_role_arn().map(str::to_string);
            Ok(())
        },
    },
    Rule {
        feature: "log configuration",
        key: Some("runtime.log_group"),
        used: |s| s.main().log_configuration().map(|l| format!("{:?} {:?}", l.log_driver(), l.options())),
        write: |s, t| {
            let log = s.main().log_configuration().ok_or("none")?;
            let group = log.options().and_then(|o| o.get("awslogs-group"));
            if log.log_driver() != &aws_sdk_ecs::types::LogDriver::Awslogs || group.is_none() {
                return Err("only the awslogs driver's group is imported; ferry's revisions log with awslogs".into());
            }
            t.runtime.log_group = group.cloned();
            match log.options().and_then(|o| o.get("awslogs-stream-prefix")).map(String::as_str) {
                Some(crate::runtime::ecs::revision::LOG_STREAM_PREFIX) => Ok(()),
                other => Err(format!(
                    "group imported; its stream prefix {other:?} becomes `{}` with ferry's first revision",
                    crate::runtime::ecs::revision::LOG_STREAM_PREFIX
                )),
            }
        },
    },
    // Rows the stage file cannot say yet: each is reported for every service using it.
    Rule { feature: "sidecar containers", key: None, used: |s| list(&s.sidecars()), write: nothing },
    Rule { feature: "autoscaling", key: None, used: |s| s.autoscaling.clone(), write: nothing },
    Rule {
        feature: "deployment alarms",
        key: None,
        used: |s| {
            let a = s.service.deployment_configuration()?.alarms()?;
            some_if(a.enable(), || format!("{:?}", a.alarm_names()))
        },
        write: nothing,
    },
    Rule {
        feature: "deployment circuit breaker",
        key: None,
        used: |s| {
            let b = s.service.deployment_configuration().and_then(|c| c.deployment_circuit_breaker());
            some_if(!b.is_some_and(|b| b.enable() && b.rollback()), || {
                "off or without rollback; ferry turns it on, with rollback, at its first deploy".into()
            })
        },
        write: nothing,
    },
    Rule {
        feature: "deployment controller",
        key: None,
        used: |s| {
            let kind = s.service.deployment_controller().map(|c| c.r#type().as_str().to_string())?;
            some_if(kind != "ECS", || kind)
        },
        write: nothing,
    },
    Rule {
        feature: "capacity provider strategy",
        key: None,
        used: |s| list(s.service.capacity_provider_strategy()),
        write: nothing,
    },
    Rule {
        feature: "launch type",
        key: None,
        used: |s| s.service.launch_type().filter(|l| l.as_str() != "FARGATE").map(|l| l.as_str().to_string()),
        write: nothing,
    },
    Rule { feature: "service discovery", key: None, used: |s| list(s.service.service_registries()), write: nothing },
    Rule {
        feature: "placement constraints",
        key: None,
        used: |s| list(s.service.placement_constraints()),
        write: nothing,
    },
    Rule { feature: "placement strategy", key: None, used: |s| list(s.service.placement_strategy()), write: nothing },
    Rule {
        feature: "health check grace period",
        key: None,
        used: |s| {
            let grace = s.service.health_check_grace_period_seconds()?;
            let start = s.main().health_check().and_then(|h| h.start_period()).unwrap_or(0);
            some_if(grace != start, || format!("{grace}s; ferry uses the health check's start period ({start}s)"))
        },
        write: nothing,
    },
    Rule {
        feature: "ECS Exec",
        key: None,
        used: |s| some_if(s.service.enable_execute_command(), || "enabled".into()),
        write: nothing,
    },
    Rule { feature: "volumes", key: None, used: |s| list(s.task_definition.volumes()), write: nothing },
    Rule { feature: "mount points", key: None, used: |s| list(s.main().mount_points()), write: nothing },
    Rule { feature: "entry point", key: None, used: |s| list(s.main().entry_point()), write: nothing },
    Rule {
        feature: "working directory",
        key: None,
        used: |s| s.main().working_directory().map(str::to_string),
        write: nothing,
    },
    Rule { feature: "user", key: None, used: |s| s.main().user().map(str::to_string), write: nothing },
    Rule { feature: "environment files", key: None, used: |s| list(s.main().environment_files()), write: nothing },
    Rule {
        feature: "docker labels",
        key: None,
        used: |s| s.main().docker_labels().map(|l| format!("{l:?}")),
        write: nothing,
    },
    Rule { feature: "ulimits", key: None, used: |s| list(s.main().ulimits()), write: nothing },
    Rule {
        feature: "linux parameters",
        key: None,
        used: |s| s.main().linux_parameters().map(|l| format!("{l:?}")),
        write: nothing,
    },
    Rule { feature: "container dependencies", key: None, used: |s| list(s.main().depends_on()), write: nothing },
    Rule {
        feature: "memory reservation",
        key: None,
        used: |s| s.main().memory_reservation().map(|m| format!("{m} MiB")),
        write: nothing,
    },
    Rule {
        feature: "runtime platform",
        key: None,
        used: |s| s.task_definition.runtime_platform().map(|p| format!("{p:?}")),
        write: nothing,
    },
    Rule {
        feature: "ephemeral storage",
        key: None,
        used: |s| s.task_definition.ephemeral_storage().map(|e| format!("{} GiB", e.size_in_gib())),
        write: nothing,
    },
    Rule {
        feature: "private registry credentials",
        key: None,
        used: |s| s.main().repository_credentials().map(|c| c.credentials_parameter().to_string()),
        write: nothing,
    },
];

// ---------------------------------------------------------------------------------------
// AWS Copilot manifests

use super::copilot::CopilotSource;
use serde_yaml::Value as Yaml;

/// A scalar of a manifest as text (Copilot accepts numbers and booleans as variables).
fn yaml_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_int(v: &Yaml) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// A command as Copilot takes it: a list, or a string split on white space.
fn yaml_command(v: &Yaml) -> Option<Vec<String>> {
    match v {
        Yaml::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        Yaml::Sequence(items) => items.iter().map(yaml_text).collect(),
        _ => None,
    }
}

/// A Copilot duration (`10s`, `1m30s` is not taken) in ferry's form.
fn yaml_duration(v: &Yaml) -> Option<String> {
    let text = yaml_text(v)?;
    text.parse::<crate::config::Duration>().is_ok().then_some(text)
}

fn used(s: &CopilotSource, path: &str) -> Option<String> {
    s.get(path).map(|v| serde_yaml::to_string(v).unwrap_or_default().trim().replace('\n', "; "))
}

/// Every Copilot manifest key import knows, and where it goes. A key no row names is
/// reported as it is (`copilot::read`).
pub const COPILOT_RULES: &[Rule<CopilotSource>] = &[
    Rule {
        feature: "image.location",
        key: Some("image"),
        used: |s| used(s, "image.location"),
        write: |s, t| {
            let location = s.get("image.location").and_then(Yaml::as_str).ok_or("not a string")?;
            if let Some((repo, digest)) = location.split_once('@') {
                t.app.image = repo.to_string();
                t.app.releases.insert("1".into(), digest.to_string());
                t.app.active = Some(1);
                return Ok(());
            }
            let last = location.rsplit_once('/').map_or(location, |(_, n)| n);
            let repo = match last.rsplit_once(':') {
                Some((_, tag)) => &location[..location.len() - tag.len() - 1],
                None => location,
            };
            t.app.image = repo.to_string();
            Err("repository imported; a tag names no digest offline: add the release with \
                 `ferry release create` (or import the running service with --cluster)"
                .into())
        },
    },
    Rule {
        feature: "image.build",
        key: Some("image"),
        used: |s| used(s, "image.build"),
        write: |s, t| {
            // Copilot pushes what it builds to the ECR repository `<application>/<service>`.
            t.app.image = format!("{}/{}", s.application.as_deref().unwrap_or("copilot"), s.service);
            Err(format!(
                "built by Copilot; image set to its repository name `{}`: write the repository URI, and build \
                 releases with `ferry release create --source`",
                t.app.image
            ))
        },
    },
    Rule {
        feature: "image.port",
        key: Some("port"),
        used: |s| used(s, "image.port"),
        write: |s, t| {
            t.app.port = Some(s.get("image.port").and_then(yaml_int).ok_or("not a number")?);
            Ok(())
        },
    },
    Rule {
        feature: "cpu",
        key: Some("cpu"),
        used: |s| used(s, "cpu"),
        write: |s, t| {
            t.app.cpu = Some(s.get("cpu").and_then(yaml_int).ok_or("not a number")?);
            Ok(())
        },
    },
    Rule {
        feature: "memory",
        key: Some("memory"),
        used: |s| used(s, "memory"),
        write: |s, t| {
            t.app.memory = Some(s.get("memory").and_then(yaml_int).ok_or("not a number")?);
            Ok(())
        },
    },
    Rule {
        feature: "count",
        key: Some("scale"),
        used: |s| used(s, "count"),
        write: |s, t| {
            let count = s.get("count").ok_or("none")?;
            if let Some(n) = yaml_int(count) {
                t.app.scale = Some(ScaleSection::Count(n));
                return Ok(());
            }
            // `count: {range: 1-10, cpu_percentage: 70}`: autoscaling; its floor is the scale.
            let min = count
                .get("range")
                .and_then(|r| yaml_text(r).or_else(|| r.get("min").and_then(yaml_text)))
                .and_then(|r| r.split('-').next().and_then(|m| m.trim().parse().ok()));
            t.app.scale = min.map(ScaleSection::Count);
            Err("autoscaling not imported (the stage file cannot say it yet); its minimum is the scale".into())
        },
    },
    Rule {
        feature: "command",
        key: Some("command"),
        used: |s| used(s, "command"),
        write: |s, t| {
            t.app.command = Some(s.get("command").and_then(yaml_command).ok_or("not a list or a string")?);
            Ok(())
        },
    },
    Rule {
        feature: "variables",
        key: Some("env"),
        used: |s| used(s, "variables"),
        write: |s, t| {
            let mut refused = Vec::new();
            for (k, v) in s.get("variables").and_then(Yaml::as_mapping).into_iter().flatten() {
                let key = yaml_text(k).unwrap_or_default();
                match yaml_text(v) {
                    Some(text) => drop(t.app.env.insert(key, text)),
                    None => refused.push(key),
                }
            }
            if refused.is_empty() {
                Ok(())
            } else {
                Err(format!("not imported (from CloudFormation outputs?): {}", refused.join(", ")))
            }
        },
    },
    Rule {
        feature: "secrets",
        key: Some("secrets"),
        used: |s| s.get("secrets").and_then(Yaml::as_mapping).map(|m| format!("{} secrets", m.len())),
        write: |s, t| {
            let mut refused = Vec::new();
            for (k, v) in s.get("secrets").and_then(Yaml::as_mapping).into_iter().flatten() {
                let key = yaml_text(k).unwrap_or_default();
                // `NAME: /ssm/parameter` or `NAME: {secretsmanager: NAME-or-ARN}`.
                let reference = v.as_str().or_else(|| v.get("secretsmanager").and_then(Yaml::as_str));
                match reference.map(|r| (r, r.parse::<SecretRef>())) {
                    Some((_, Ok(r))) if r.is_aws() => drop(t.app.secrets.insert(key, r.reference())),
                    Some((r, _)) => refused.push(format!(
                        "{key} ({r}: named without an ARN; write arn:aws:ssm:REGION:ACCOUNT:parameter/… or \
                         arn:aws:secretsmanager:REGION:ACCOUNT:secret:…)"
                    )),
                    None => refused.push(format!("{key} (from CloudFormation outputs?)")),
                }
            }
            if refused.is_empty() {
                Ok(())
            } else {
                Err(format!("not imported: {}", refused.join("; ")))
            }
        },
    },
    Rule {
        feature: "image.healthcheck",
        key: Some("health"),
        used: |s| used(s, "image.healthcheck"),
        write: |s, t| {
            let h = s.get("image.healthcheck").ok_or("none")?;
            let text = |k: &str| h.get(k).and_then(yaml_duration);
            t.app.health = Some(HealthSection {
                command: Some(h.get("command").and_then(yaml_command).ok_or("no command")?),
                interval: text("interval"),
                timeout: text("timeout"),
                unhealthy_threshold: h.get("retries").and_then(yaml_int),
                grace_period: text("start_period"),
                ..Default::default()
            });
            Ok(())
        },
    },
    // Copilot keys the stage file cannot say yet.
    Rule { feature: "http", key: None, used: |s| used(s, "http"), write: nothing },
    Rule { feature: "nlb", key: None, used: |s| used(s, "nlb"), write: nothing },
    Rule { feature: "sidecars", key: None, used: |s| used(s, "sidecars"), write: nothing },
    Rule { feature: "storage", key: None, used: |s| used(s, "storage"), write: nothing },
    Rule { feature: "network", key: None, used: |s| used(s, "network"), write: nothing },
    Rule { feature: "logging", key: None, used: |s| used(s, "logging"), write: nothing },
    Rule { feature: "exec", key: None, used: |s| used(s, "exec"), write: nothing },
    Rule { feature: "entrypoint", key: None, used: |s| used(s, "entrypoint"), write: nothing },
    Rule { feature: "platform", key: None, used: |s| used(s, "platform"), write: nothing },
    Rule { feature: "deployment", key: None, used: |s| used(s, "deployment"), write: nothing },
    Rule { feature: "taskdef_overrides", key: None, used: |s| used(s, "taskdef_overrides"), write: nothing },
    Rule { feature: "observability", key: None, used: |s| used(s, "observability"), write: nothing },
    Rule { feature: "publish", key: None, used: |s| used(s, "publish"), write: nothing },
    Rule { feature: "subscribe", key: None, used: |s| used(s, "subscribe"), write: nothing },
    Rule { feature: "env_file", key: None, used: |s| used(s, "env_file"), write: nothing },
    Rule { feature: "image.depends_on", key: None, used: |s| used(s, "image.depends_on"), write: nothing },
];
