//! What `ferry import` carries over, as tables: one row per feature a live ECS service (or
//! an AWS Copilot manifest) can use. A row names the stage-file key it is written to and
//! how, or no key: then every service that uses the feature gets a warning saying so, and
//! nothing is silently dropped. A new stage-file key is supported by giving its row a key
//! and a writer, here and nowhere else ([`ECS_RULES`], [`COPILOT_RULES`]).

use aws_sdk_applicationautoscaling::types::{MetricType, ScalingPolicy};
use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentConfiguration, DeploymentLifecycleHookTargetType, DeploymentStrategy, LoadBalancer,
    LogDriver, Service, TaskDefinition,
};

use std::collections::BTreeMap;

use crate::config::ecs_task::{CapacityProviderSection, LoggingSection, SidecarSection};
use crate::config::file::{
    AppSection, AutoscaleSection, CircuitBreakerSection, DeploySection, HealthSection, HookSection, RuntimeSection,
    ScaleSection, Strategy, TargetGroupSection,
};
use crate::config::{Digest, SecretRef};
use crate::runtime::ecs::autoscaling::{CPU_POLICY, MEMORY_POLICY};
use crate::runtime::ecs::revision::LOG_STREAM_PREFIX;

/// Where rows write: the app's section and the stage's `[runtime]` (shared by every app of
/// the stage; apps that disagree there are reported when merged, [`merge_runtime`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub app: AppSection,
    pub runtime: RuntimeSection,
    /// Target-tracking policies of other names that track the CPU and memory targets of
    /// `scale`: adopted, so ferry puts them under their own names (recorded in state) rather
    /// than adding `ferry-cpu` / `ferry-memory` beside them.
    pub cpu_policy: Option<String>,
    pub memory_policy: Option<String>,
}

/// The health check keys an import writes (a team's HTTP `path` stays theirs).
const HEALTH_KEYS: &[&str] =
    &["health.command", "health.interval", "health.timeout", "health.unhealthy_threshold", "health.grace_period"];

/// One feature a source can use.
pub struct Rule<S> {
    /// What the source calls it, as warnings name it.
    pub feature: &'static str,
    /// The stage-file keys it writes (`runtime.X` for `[runtime]`, `SECTION.X` for one key of
    /// an app's section such as `deploy`), or none: the stage file cannot say it yet. A
    /// re-import owns these keys: one the source no longer uses is removed from the file.
    pub keys: &'static [&'static str],
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
        let why = match rule.keys {
            [] => Some(format!("{detail}: not imported, the stage file cannot say this yet")),
            _ => (rule.write)(source, target).err().map(|why| format!("{detail}: {why}")),
        };
        if let Some(why) = why {
            unwritten.push((rule.feature.to_string(), why));
        }
    }
    unwritten
}

/// The app keys `rules` write, which a re-import owns: `deploy.bake_time` (one key of a
/// section; the section's other keys are the team's) or `sidecars` (the whole value or
/// section). `image`, `releases` and `active` are written apart (a new release per digest).
pub fn app_keys<S>(rules: &[Rule<S>]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    let app = rules.iter().flat_map(|r| r.keys.iter().copied()).filter(|k| !k.starts_with("runtime."));
    for key in app {
        let top = key.split('.').next().unwrap_or(key);
        if !matches!(top, "image" | "releases" | "active") && !keys.contains(&key) {
            keys.push(key);
        }
    }
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
    /// The service's Application Auto Scaling target and policies, when it has a target.
    pub scaling: Option<Scaling>,
    /// The app's name in the stage file (a sidecar waiting for the app's container names it).
    pub app: String,
}

/// A service's scalable target (its desired count) and the scaling policies on it.
#[derive(Debug, Clone)]
pub struct Scaling {
    pub min: i32,
    pub max: i32,
    pub policies: Vec<ScalingPolicy>,
}

impl Scaling {
    fn describe(&self) -> String {
        let policies: Vec<String> = self
            .policies
            .iter()
            .map(|p| {
                let target = p
                    .target_tracking_scaling_policy_configuration()
                    .map(|c| format!(" target {}", c.target_value()))
                    .unwrap_or_default();
                format!("{} ({}{target})", p.policy_name(), p.policy_type().as_str())
            })
            .collect();
        let policies = if policies.is_empty() { String::new() } else { format!("; policies: {}", policies.join(", ")) };
        format!("min {}, max {}{policies}", self.min, self.max)
    }
}

/// `scale = { min, max, cpu_target, memory_target }` of a scalable target: the target
/// tracking policies of average CPU and memory ferry can say, and what it cannot. A policy of
/// another name on one of those metrics is adopted (its name returned, for the CPU and the
/// memory target): ferry then manages it under that name, so a commit never adds its own
/// `ferry-cpu` beside it and the service is not scaled by two policies of one metric.
fn scale_of(scaling: &Scaling) -> (AutoscaleSection, [Option<String>; 2], Vec<String>) {
    let mut auto = AutoscaleSection {
        min: i64::from(scaling.min),
        max: i64::from(scaling.max),
        cpu_target: None,
        memory_target: None,
    };
    let mut adopted = [None, None];
    let mut notes = Vec::new();
    // Ferry's own policies first: with one of them and another on the same metric, ferry's
    // is the one imported.
    let mut policies: Vec<&ScalingPolicy> = scaling.policies.iter().collect();
    policies.sort_by_key(|p| ![CPU_POLICY, MEMORY_POLICY].contains(&p.policy_name()));
    for p in policies {
        let name = p.policy_name();
        let tracking = p.target_tracking_scaling_policy_configuration();
        let metric = tracking.and_then(|c| c.predefined_metric_specification()).map(|m| m.predefined_metric_type());
        let (slot, adopted, ours) = match metric {
            Some(MetricType::EcsServiceAverageCpuUtilization) => (&mut auto.cpu_target, &mut adopted[0], CPU_POLICY),
            Some(MetricType::EcsServiceAverageMemoryUtilization) => {
                (&mut auto.memory_target, &mut adopted[1], MEMORY_POLICY)
            }
            _ => {
                notes.push(format!("policy {name} ({}) not imported", p.policy_type().as_str()));
                continue;
            }
        };
        let value = tracking.map(|c| c.target_value()).unwrap_or_default();
        if slot.is_some() || value.fract() != 0.0 || !(1.0..=100.0).contains(&value) {
            notes.push(format!(
                "policy {name} (target {value}) not imported: ferry tracks one whole percent per metric"
            ));
            continue;
        }
        *slot = Some(value as i64);
        if name != ours {
            *adopted = Some(name.to_string());
        }
        // PutScalingPolicy replaces the whole configuration: what ferry does not say goes.
        let mut reset = Vec::new();
        if tracking.is_some_and(|c| c.disable_scale_in() == Some(true)) {
            reset.push("it does not scale in".to_string());
        }
        for (what, secs) in tracking
            .map(|c| [("scale-in", c.scale_in_cooldown()), ("scale-out", c.scale_out_cooldown())])
            .into_iter()
            .flatten()
        {
            if let Some(secs) = secs {
                reset.push(format!("{what} cooldown {secs}s"));
            }
        }
        if !reset.is_empty() {
            notes.push(format!(
                "policy {name} imported; ferry puts it with its own settings when it sets autoscaling, \
                 which scale in with Application Auto Scaling's default cooldowns ({})",
                reset.join(", ")
            ));
        }
    }
    if auto.cpu_target.is_none() && auto.memory_target.is_none() {
        notes.push(format!(
            "no CPU or memory target: ferry tracks 70% CPU with a policy `{CPU_POLICY}` when it sets autoscaling"
        ));
    }
    (auto, adopted, notes)
}

/// The file's strategy of an ECS deployment strategy.
fn strategy_of(s: &DeploymentStrategy) -> Option<Strategy> {
    Some(match s {
        DeploymentStrategy::Rolling => Strategy::Rolling,
        DeploymentStrategy::BlueGreen => Strategy::BlueGreen,
        DeploymentStrategy::Linear => Strategy::Linear,
        DeploymentStrategy::Canary => Strategy::Canary,
        _ => return None,
    })
}

/// ECS's percent (a float) as the file's `N%`; `None` for a fraction.
fn percent(p: f64) -> Option<String> {
    (p.fract() == 0.0 && (0.0..=100.0).contains(&p)).then(|| format!("{p:.0}%"))
}

fn minutes(m: i32) -> String {
    format!("{m}m")
}

fn deploy(t: &mut Target) -> &mut DeploySection {
    t.app.deploy.get_or_insert_with(DeploySection::default)
}

impl EcsSource {
    /// The app's container.
    pub fn main(&self) -> &ContainerDefinition {
        &self.task_definition.container_definitions()[self.container]
    }

    fn deployment(&self) -> Option<&DeploymentConfiguration> {
        self.service.deployment_configuration()
    }

    /// The deployment's strategy, when ECS says one (none: rolling).
    fn strategy(&self) -> Option<&DeploymentStrategy> {
        self.deployment()?.strategy()
    }

    /// The load balancer entry of the app's own container.
    fn load_balancer(&self) -> Option<&LoadBalancer> {
        let main = self.main().name().unwrap_or_default();
        self.service
            .load_balancers()
            .iter()
            .find(|lb| lb.container_name() == Some(main) && lb.target_group_arn().is_some())
    }

    /// The one target group of the app's container at the app's port: `target_group`, the
    /// short form; `None` when the service has none, several, or another shape.
    fn short_target_group(&self) -> Option<&str> {
        let [lb] = self.service.load_balancers() else { return None };
        let port = self.main().port_mappings().first().and_then(|p| p.container_port());
        let main = lb.container_name() == self.main().name();
        (main && lb.container_port() == port).then(|| lb.target_group_arn()).flatten()
    }

    /// The service's own tags (not AWS's `aws:` ones, nor ferry's `ferry:` ones).
    fn own_tags(&self) -> BTreeMap<String, String> {
        self.service
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
            .filter(|(k, _)| !crate::runtime::ecs::service::reserved_tag(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The other containers of the task as `[apps.NAME.sidecars.X]`, and what of them the
    /// file cannot say (kept out, or not written). A sidecar whose name the file cannot take
    /// is left out; what waits for it then says so.
    pub fn sidecar_sections(&self) -> (BTreeMap<String, SidecarSection>, Vec<String>) {
        let main = self.main().name().unwrap_or_default();
        let mut notes = Vec::new();
        let containers = self.task_definition.container_definitions();
        let taken = |name: &str| name != self.app && crate::config::validate::is_dns_label(name, 255);
        // The app's awslogs group and prefix, which ferry gives its sidecars too.
        let app_log = self.main().log_configuration().filter(|l| *l.log_driver() == LogDriver::Awslogs).and_then(|l| {
            let o = l.options()?;
            Some((o.get("awslogs-group")?.clone(), o.get("awslogs-stream-prefix").cloned()))
        });
        let mut out = BTreeMap::new();
        for (i, c) in containers.iter().enumerate() {
            let name = c.name().unwrap_or_default();
            if i == self.container {
                continue;
            }
            if !taken(name) {
                notes.push(format!(
                    "{name} not imported: a sidecar is named in lowercase letters, digits and `-`, not like the app"
                ));
                continue;
            }
            let mut unsaid = unsaid(c);
            let mut depends_on = BTreeMap::new();
            for d in c.depends_on() {
                let on = d.container_name();
                let on = if on == main { self.app.as_str() } else { on };
                if on == self.app || containers.iter().any(|c| c.name() == Some(on) && taken(on)) {
                    depends_on.insert(on.to_string(), d.condition().as_str().to_string());
                } else {
                    unsaid.push(format!("its wait for {on}"));
                }
            }
            let mut secrets = BTreeMap::new();
            for secret in c.secrets() {
                match secret_reference(secret.value_from(), &self.region, &self.account) {
                    Ok(r) => drop(secrets.insert(secret.name().to_string(), r.reference())),
                    Err(why) => unsaid.push(format!("secret {}: {why}", secret.name())),
                }
            }
            if let Some(log) = c.log_configuration() {
                let o = log.options();
                let same = *log.log_driver() == LogDriver::Awslogs
                    && app_log.as_ref().is_some_and(|(group, prefix)| {
                        o.and_then(|o| o.get("awslogs-group")) == Some(group)
                            && o.and_then(|o| o.get("awslogs-stream-prefix")) == prefix.as_ref()
                    });
                if !same {
                    unsaid.push(format!(
                        "its log configuration ({}), which becomes the app's awslogs",
                        log.log_driver().as_str()
                    ));
                }
            }
            let firelens = c.firelens_configuration();
            if let Some(options) = firelens.and_then(|f| f.options()).filter(|o| !o.is_empty()) {
                unsaid.push(format!("FireLens options {options:?}"));
            }
            if !unsaid.is_empty() {
                notes.push(format!("{name} imported without {}", unsaid.join(", ")));
            }
            out.insert(
                name.to_string(),
                SidecarSection {
                    image: c.image().unwrap_or_default().to_string(),
                    // ECS's default is essential, the file's not.
                    essential: c.essential().unwrap_or(true).then_some(true),
                    command: (!c.command().is_empty()).then(|| c.command().to_vec()),
                    depends_on,
                    env: c
                        .environment()
                        .iter()
                        .map(|kv| {
                            (kv.name().unwrap_or_default().to_string(), kv.value().unwrap_or_default().to_string())
                        })
                        .collect(),
                    secrets,
                    port: c.port_mappings().first().and_then(|p| p.container_port()).map(i64::from),
                    health_command: c.health_check().map(|h| h.command().to_vec()),
                    firelens: firelens.map(|f| f.r#type().as_str().to_string()),
                },
            );
        }
        (out, notes)
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

/// What of sidecar `c` the stage file cannot say: ferry's revisions leave it out.
fn unsaid(c: &ContainerDefinition) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |on: bool, what: String| {
        if on {
            out.push(what);
        }
    };
    note(c.cpu() != 0, format!("cpu {}", c.cpu()));
    note(c.memory().is_some(), format!("memory {} MiB", c.memory().unwrap_or(0)));
    note(c.memory_reservation().is_some(), format!("memory reservation {} MiB", c.memory_reservation().unwrap_or(0)));
    note(!c.entry_point().is_empty(), format!("entry point {:?}", c.entry_point()));
    note(c.working_directory().is_some(), "working directory".into());
    note(c.user().is_some(), "user".into());
    note(!c.mount_points().is_empty() || !c.volumes_from().is_empty(), "volumes".into());
    note(!c.environment_files().is_empty(), "environment files".into());
    note(c.docker_labels().is_some_and(|l| !l.is_empty()), "docker labels".into());
    note(
        !c.ulimits().is_empty() || c.linux_parameters().is_some() || !c.system_controls().is_empty(),
        "kernel settings".into(),
    );
    note(c.repository_credentials().is_some(), "registry credentials".into());
    note(c.stop_timeout().is_some() || c.start_timeout().is_some(), "start/stop timeouts".into());
    note(
        c.privileged() == Some(true) || c.readonly_root_filesystem() == Some(true),
        "privileged/read-only root".into(),
    );
    let ports = c.port_mappings();
    let odd = |p: &aws_sdk_ecs::types::PortMapping| {
        p.host_port().is_some_and(|h| h != 0 && Some(h) != p.container_port())
            || p.protocol().is_some_and(|t| t.as_str() != "tcp")
    };
    note(ports.len() > 1 || ports.iter().any(odd), format!("ports {ports:?} beyond the first TCP port"));
    // ferry's sidecar health checks take ECS's timings.
    let timed = c.health_check().is_some_and(|h| {
        h.interval().unwrap_or(30) != 30
            || h.timeout().unwrap_or(5) != 5
            || h.retries().unwrap_or(3) != 3
            || h.start_period().unwrap_or(0) != 0
    });
    note(timed, "health check timings (ECS's defaults apply)".into());
    out
}

/// The stop timeout ferry's revisions state when the file names none.
fn ferry_stop_timeout_ms() -> i64 {
    crate::config::DeploySettings::default().stop_timeout.as_millis() as i64
}

/// The stop timeout the service's tasks get: the container's, else ECS's default of 30 s.
fn live_stop_timeout(s: &EcsSource) -> i32 {
    s.main().stop_timeout().unwrap_or(ECS_DEFAULT_STOP_TIMEOUT_S)
}

/// What ECS gives a container that states no `stopTimeout` (Fargate, and the EC2 agent's
/// `ECS_CONTAINER_STOP_TIMEOUT` default).
const ECS_DEFAULT_STOP_TIMEOUT_S: i32 = 30;

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
        keys: &["image"],
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
        keys: &["scale"],
        used: |s| Some(s.service.desired_count().to_string()),
        write: |s, t| {
            t.app.scale = Some(ScaleSection::Count(i64::from(s.service.desired_count())));
            Ok(())
        },
    },
    Rule {
        feature: "task cpu",
        keys: &["cpu"],
        used: |s| s.task_definition.cpu().map(str::to_string),
        write: |s, t| {
            t.app.cpu = Some(task_size(s.task_definition.cpu(), "vcpu").ok_or("not a number of CPU units")?);
            Ok(())
        },
    },
    Rule {
        feature: "task memory",
        keys: &["memory"],
        used: |s| s.task_definition.memory().map(str::to_string),
        write: |s, t| {
            t.app.memory = Some(task_size(s.task_definition.memory(), "gb").ok_or("not a number of MiB")?);
            Ok(())
        },
    },
    Rule {
        feature: "command",
        keys: &["command"],
        used: |s| some_if(!s.main().command().is_empty(), || format!("{:?}", s.main().command())),
        write: |s, t| {
            t.app.command = Some(s.main().command().to_vec());
            Ok(())
        },
    },
    Rule {
        feature: "port mappings",
        keys: &["port"],
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
        keys: &["env"],
        used: |s| some_if(!s.main().environment().is_empty(), || format!("{} variables", s.main().environment().len())),
        write: |s, t| {
            // Ferry's revisions give the app `PORT` (its port) unless the file says otherwise:
            // one it set, or that says the same, is left out.
            let port = s.main().port_mappings().first().and_then(|p| p.container_port()).map(|p| p.to_string());
            for kv in s.main().environment() {
                let (name, value) = (kv.name().unwrap_or_default(), kv.value().unwrap_or_default());
                if name != "PORT" || Some(value) != port.as_deref() {
                    t.app.env.insert(name.into(), value.into());
                }
            }
            Ok(())
        },
    },
    Rule {
        feature: "secrets",
        keys: &["secrets"],
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
        keys: HEALTH_KEYS,
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
        keys: &["deploy.max_surge", "deploy.min_healthy"],
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
        keys: &["deploy.stop_timeout"],
        // Ferry's default (10 s) is what its revisions state: left out, as a commit wrote it.
        // A container that states none gets ECS's 30 s, which is written, so that adopting
        // the service does not shorten the time its tasks are given to stop.
        used: |s| Some(live_stop_timeout(s)).filter(|t| i64::from(*t) * 1000 != ferry_stop_timeout_ms()).map(seconds),
        write: |s, t| {
            let deploy = t.app.deploy.get_or_insert_with(DeploySection::default);
            deploy.stop_timeout = Some(seconds(live_stop_timeout(s)));
            Ok(())
        },
    },
    Rule {
        feature: "deployment strategy",
        keys: &["deploy.strategy"],
        used: |s| s.strategy().filter(|k| **k != DeploymentStrategy::Rolling).map(|k| k.as_str().to_string()),
        write: |s, t| {
            let kind = s.strategy().ok_or("none")?;
            deploy(t).strategy = Some(strategy_of(kind).ok_or("a strategy ferry does not know")?);
            Ok(())
        },
    },
    Rule {
        feature: "bake time",
        keys: &["deploy.bake_time"],
        used: |s| s.deployment()?.bake_time_in_minutes().filter(|m| *m > 0).map(minutes),
        write: |s, t| {
            deploy(t).bake_time = s.deployment().and_then(|c| c.bake_time_in_minutes()).map(minutes);
            Ok(())
        },
    },
    Rule {
        feature: "linear steps",
        keys: &["deploy.step_percent", "deploy.step_bake_time"],
        used: |s| {
            let linear = s.deployment()?.linear_configuration()?;
            some_if(s.strategy() == Some(&DeploymentStrategy::Linear), || format!("{linear:?}"))
        },
        write: |s, t| {
            let linear = s.deployment().and_then(|c| c.linear_configuration()).ok_or("none")?;
            let d = deploy(t);
            d.step_bake_time = linear.step_bake_time_in_minutes().map(minutes);
            d.step_percent = match linear.step_percent() {
                Some(p) => Some(percent(p).ok_or(format!("step of {p}%: ferry steps by whole percents"))?),
                None => None,
            };
            Ok(())
        },
    },
    Rule {
        feature: "canary",
        keys: &["deploy.canary_percent", "deploy.canary_bake_time"],
        used: |s| {
            let canary = s.deployment()?.canary_configuration()?;
            some_if(s.strategy() == Some(&DeploymentStrategy::Canary), || format!("{canary:?}"))
        },
        write: |s, t| {
            let canary = s.deployment().and_then(|c| c.canary_configuration()).ok_or("none")?;
            let d = deploy(t);
            d.canary_bake_time = canary.canary_bake_time_in_minutes().map(minutes);
            d.canary_percent = match canary.canary_percent() {
                Some(p) => Some(percent(p).ok_or(format!("canary of {p}%: ferry takes whole percents"))?),
                None => None,
            };
            Ok(())
        },
    },
    Rule {
        feature: "deployment circuit breaker",
        keys: &["deploy.circuit_breaker"],
        // Ferry's default is ECS's breaker on, with rollback: only another setting is written.
        used: |s| {
            let b = s.deployment()?.deployment_circuit_breaker();
            let (enable, rollback) = b.map_or((false, false), |b| (b.enable(), b.rollback()));
            some_if((enable, rollback) != (true, true), || format!("enable {enable}, rollback {rollback}"))
        },
        write: |s, t| {
            let b = s.deployment().and_then(|c| c.deployment_circuit_breaker());
            let (enable, rollback) = b.map_or((false, false), |b| (b.enable(), b.rollback()));
            deploy(t).circuit_breaker = Some(CircuitBreakerSection { enable: Some(enable), rollback: Some(rollback) });
            Ok(())
        },
    },
    Rule {
        feature: "deployment alarms",
        keys: &["deploy.alarms"],
        used: |s| {
            let a = s.deployment()?.alarms()?;
            some_if(!a.alarm_names().is_empty(), || {
                format!("{:?} (enable {}, rollback {})", a.alarm_names(), a.enable(), a.rollback())
            })
        },
        write: |s, t| {
            let a = s.deployment().and_then(|c| c.alarms()).ok_or("none")?;
            if !a.enable() {
                return Err("turned off: not imported, ferry watches every alarm it lists".into());
            }
            deploy(t).alarms = Some(a.alarm_names().to_vec());
            if a.rollback() {
                Ok(())
            } else {
                Err("imported; ECS only fails such a deployment, ferry's rolls back too".into())
            }
        },
    },
    Rule {
        feature: "traffic shifting target group",
        keys: &[
            "deploy.alternate_target_group",
            "deploy.production_listener_rule",
            "deploy.test_listener_rule",
            "deploy.traffic_role",
        ],
        used: |s| s.load_balancer()?.advanced_configuration().map(|a| format!("{a:?}")),
        write: |s, t| {
            let a = s.load_balancer().and_then(|lb| lb.advanced_configuration()).ok_or("none")?;
            let d = deploy(t);
            d.alternate_target_group = a.alternate_target_group_arn().map(str::to_string);
            d.production_listener_rule = a.production_listener_rule().map(str::to_string);
            d.test_listener_rule = a.test_listener_rule().map(str::to_string);
            d.traffic_role = a.role_arn().map(str::to_string);
            Ok(())
        },
    },
    Rule {
        feature: "lifecycle hooks",
        keys: &["deploy.hooks"],
        used: |s| list(s.deployment()?.lifecycle_hooks()),
        write: |s, t| {
            let mut refused = Vec::new();
            let mut hooks = Vec::new();
            for h in s.deployment().map(|c| c.lifecycle_hooks()).unwrap_or_default() {
                let stages = h.lifecycle_stages().iter().map(|st| st.as_str().to_ascii_lowercase()).collect();
                match h.target_type() {
                    Some(DeploymentLifecycleHookTargetType::Pause) => {
                        hooks.push(HookSection { stages, pause: Some(true), ..Default::default() })
                    }
                    Some(DeploymentLifecycleHookTargetType::AwsLambda) | None if h.hook_target_arn().is_some() => hooks
                        .push(HookSection {
                            stages,
                            lambda: h.hook_target_arn().map(str::to_string),
                            role: h.role_arn().map(str::to_string),
                            ..Default::default()
                        }),
                    other => refused.push(format!("{other:?} at {stages:?}")),
                }
            }
            deploy(t).hooks = hooks;
            if refused.is_empty() {
                Ok(())
            } else {
                Err(format!("not imported: {}", refused.join("; ")))
            }
        },
    },
    Rule {
        feature: "autoscaling",
        keys: &["scale"],
        used: |s| s.scaling.as_ref().map(Scaling::describe),
        write: |s, t| {
            let (auto, [cpu, memory], notes) = scale_of(s.scaling.as_ref().ok_or("none")?);
            t.app.scale = Some(ScaleSection::Auto(auto));
            (t.cpu_policy, t.memory_policy) = (cpu, memory);
            if notes.is_empty() {
                Ok(())
            } else {
                Err(format!("scale imported; {}", notes.join("; ")))
            }
        },
    },
    Rule {
        feature: "load balancer",
        keys: &["target_group"],
        used: |s| s.short_target_group().map(str::to_string),
        write: |s, t| {
            t.app.target_group = s.short_target_group().map(str::to_string);
            Ok(())
        },
    },
    Rule {
        feature: "target groups",
        keys: &["target_groups"],
        used: |s| some_if(s.short_target_group().is_none(), || format!("{:?}", s.service.load_balancers())),
        write: |s, t| {
            let main = s.main().name().unwrap_or_default();
            let port = s.main().port_mappings().first().and_then(|p| p.container_port());
            let sidecars = s.sidecar_sections().0;
            let mut refused = Vec::new();
            let mut groups = Vec::new();
            // The one with traffic shifting first: ferry gives the first its advanced configuration.
            let mut lbs: Vec<&LoadBalancer> = s.service.load_balancers().iter().collect();
            lbs.sort_by_key(|lb| lb.advanced_configuration().is_none());
            for lb in lbs {
                let (Some(arn), Some(container)) = (lb.target_group_arn(), lb.container_name()) else {
                    refused.push(format!("{:?} (a Classic Load Balancer?)", lb.load_balancer_name()));
                    continue;
                };
                if container != main && !sidecars.contains_key(container) {
                    refused.push(format!("{arn} (container {container} is not imported)"));
                    continue;
                }
                groups.push(TargetGroupSection {
                    arn: arn.to_string(),
                    container: (container != main).then(|| container.to_string()),
                    port: lb.container_port().filter(|p| container != main || Some(*p) != port).map(i64::from),
                });
            }
            t.app.target_groups = (!groups.is_empty()).then_some(groups);
            match refused.is_empty() {
                true => Ok(()),
                false => Err(format!("not imported: {}", refused.join("; "))),
            }
        },
    },
    Rule {
        feature: "health check grace period",
        keys: &["deploy.health_check_grace_period"],
        used: |s| {
            let grace = s.service.health_check_grace_period_seconds()?;
            // Without the key ferry sends the container health check's start period.
            let start = s.main().health_check().and_then(|h| h.start_period()).unwrap_or(0);
            some_if(grace != start, || seconds(grace))
        },
        write: |s, t| {
            if !s.service.load_balancers().iter().any(|lb| lb.target_group_arn().is_some()) {
                return Err("not imported: it applies to target groups' health checks, and the service has none".into());
            }
            deploy(t).health_check_grace_period = s.service.health_check_grace_period_seconds().map(seconds);
            Ok(())
        },
    },
    Rule {
        feature: "network",
        keys: &["runtime.subnets", "runtime.security_groups", "runtime.assign_public_ip"],
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
    // Roles per app: apps of one stage often run with roles of their own, and the stage's
    // `[runtime]` would give an app without a task role another app's.
    Rule {
        feature: "task execution role",
        keys: &["execution_role"],
        used: |s| s.task_definition.execution_role_arn().map(str::to_string),
        write: |s, t| {
            t.app.execution_role = s.task_definition.execution_role_arn().map(str::to_string);
            Ok(())
        },
    },
    Rule {
        feature: "task role",
        keys: &["task_role"],
        used: |s| s.task_definition.task_role_arn().map(str::to_string),
        write: |s, t| {
            t.app.task_role = s.task_definition.task_role_arn().map(str::to_string);
            Ok(())
        },
    },
    Rule {
        feature: "log configuration",
        keys: &["logging"],
        used: |s| s.main().log_configuration().map(|l| format!("{} {:?}", l.log_driver().as_str(), l.options())),
        write: |s, t| {
            let log = s.main().log_configuration().ok_or("none")?;
            let options: BTreeMap<String, String> =
                log.options().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
            let mut notes: Vec<String> =
                log.secret_options().iter().map(|o| format!("secret option {} not imported", o.name())).collect();
            match log.log_driver() {
                LogDriver::Awslogs => {
                    let group = options.get("awslogs-group").ok_or("awslogs without a group: not imported")?;
                    for (k, v) in &options {
                        let known = ["awslogs-group", "awslogs-stream-prefix", "awslogs-create-group"];
                        if k == "awslogs-region" && *v != s.region {
                            notes.push(format!("region {v} becomes the stage's, {}", s.region));
                        } else if k != "awslogs-region" && !known.contains(&k.as_str()) {
                            notes.push(format!("option {k} = {v:?} not imported"));
                        }
                    }
                    let prefix = options.get("awslogs-stream-prefix").filter(|p| *p != LOG_STREAM_PREFIX);
                    t.app.logging = Some(LoggingSection {
                        group: Some(group.clone()),
                        stream_prefix: prefix.cloned(),
                        ..Default::default()
                    });
                }
                LogDriver::Awsfirelens => {
                    if !s.sidecar_sections().0.values().any(|c| c.firelens.is_some()) {
                        return Err("not imported: its FireLens log router is not an imported sidecar".into());
                    }
                    t.app.logging =
                        Some(LoggingSection { driver: Some("awsfirelens".into()), options, ..Default::default() });
                }
                other => {
                    return Err(format!(
                        "the {} driver: not imported; ferry's revisions log with awslogs or awsfirelens",
                        other.as_str()
                    ))
                }
            }
            match notes.is_empty() {
                true => Ok(()),
                false => Err(format!("imported; {}", notes.join("; "))),
            }
        },
    },
    Rule {
        feature: "sidecar containers",
        keys: &["sidecars"],
        used: |s| list(&s.sidecars()),
        write: |s, t| {
            let (sidecars, notes) = s.sidecar_sections();
            t.app.sidecars = sidecars;
            match notes.is_empty() {
                true => Ok(()),
                false => Err(notes.join("; ")),
            }
        },
    },
    Rule {
        feature: "container dependencies",
        keys: &["container_depends_on"],
        used: |s| list(s.main().depends_on()),
        write: |s, t| {
            let sidecars = s.sidecar_sections().0;
            let mut refused = Vec::new();
            for d in s.main().depends_on() {
                match sidecars.contains_key(d.container_name()) {
                    true => drop(
                        t.app.container_depends_on.insert(d.container_name().into(), d.condition().as_str().into()),
                    ),
                    false => refused.push(d.container_name().to_string()),
                }
            }
            match refused.is_empty() {
                true => Ok(()),
                false => Err(format!("not imported, no imported sidecar: {}", refused.join(", "))),
            }
        },
    },
    Rule {
        feature: "runtime platform",
        keys: &["architecture"],
        used: |s| {
            let p = s.task_definition.runtime_platform()?;
            let arch = p.cpu_architecture().map_or("X86_64", |a| a.as_str());
            let os = p.operating_system_family().map_or("LINUX", |o| o.as_str());
            // No platform stated is Linux on X86_64 (as drift normalises it).
            some_if((arch, os) != ("X86_64", "LINUX"), || format!("{os} on {arch}"))
        },
        write: |s, t| {
            let p = s.task_definition.runtime_platform().ok_or("none")?;
            if let Some(os) = p.operating_system_family().filter(|o| o.as_str() != "LINUX") {
                return Err(format!("not imported: ferry runs Linux tasks, not {}", os.as_str()));
            }
            t.app.architecture = p.cpu_architecture().map(|a| a.as_str().to_string()).filter(|a| a != "X86_64");
            Ok(())
        },
    },
    Rule {
        feature: "ephemeral storage",
        keys: &["ephemeral_storage"],
        // Fargate's 20 GiB is what a task has without asking.
        used: |s| {
            s.task_definition
                .ephemeral_storage()
                .filter(|e| e.size_in_gib() > 20)
                .map(|e| format!("{} GiB", e.size_in_gib()))
        },
        write: |s, t| {
            t.app.ephemeral_storage = s.task_definition.ephemeral_storage().map(|e| i64::from(e.size_in_gib()));
            Ok(())
        },
    },
    Rule {
        feature: "capacity provider strategy",
        keys: &["capacity_providers"],
        used: |s| list(s.service.capacity_provider_strategy()),
        write: |s, t| {
            let strategy = s.service.capacity_provider_strategy();
            let other: Vec<&str> = strategy
                .iter()
                .map(|c| c.capacity_provider())
                .filter(|p| !matches!(*p, "FARGATE" | "FARGATE_SPOT"))
                .collect();
            if !other.is_empty() {
                // Half a strategy would place tasks otherwise: all of it or none.
                return Err(format!(
                    "not imported: ferry places tasks on FARGATE and FARGATE_SPOT, not {}",
                    other.join(", ")
                ));
            }
            t.app.capacity_providers = strategy
                .iter()
                .map(|c| CapacityProviderSection {
                    provider: c.capacity_provider().to_string(),
                    // ECS's defaults are weight 0, base 0; the file's weight 1, base 0.
                    weight: Some(i64::from(c.weight())).filter(|w| *w != 1),
                    base: Some(i64::from(c.base())).filter(|b| *b != 0),
                })
                .collect();
            Ok(())
        },
    },
    Rule {
        feature: "ECS Exec",
        keys: &["exec"],
        used: |s| some_if(s.service.enable_execute_command(), || "enabled".into()),
        write: |s, t| {
            t.app.exec = s.service.enable_execute_command().then_some(true);
            Ok(())
        },
    },
    Rule {
        feature: "tags",
        keys: &["tags"],
        used: |s| some_if(!s.own_tags().is_empty(), || format!("{:?}", s.own_tags())),
        write: |s, t| {
            t.app.tags = s.own_tags();
            Ok(())
        },
    },
    Rule {
        feature: "propagated tags",
        keys: &["propagate_tags"],
        // ECS's default is NONE, ferry's SERVICE: anything but SERVICE is written.
        used: |s| {
            let from = s.service.propagate_tags().map_or("NONE", |p| p.as_str());
            some_if(from != "SERVICE", || from.to_string())
        },
        write: |s, t| {
            let from = s.service.propagate_tags().map_or("NONE", |p| p.as_str());
            t.app.propagate_tags = Some(from.to_ascii_lowercase());
            Ok(())
        },
    },
    // Rows the stage file cannot say yet: each is reported for every service using it.
    Rule {
        feature: "deployment controller",
        keys: &[],
        used: |s| {
            let kind = s.service.deployment_controller().map(|c| c.r#type().as_str().to_string())?;
            some_if(kind != "ECS", || kind)
        },
        write: nothing,
    },
    Rule {
        feature: "launch type",
        keys: &[],
        used: |s| s.service.launch_type().filter(|l| l.as_str() != "FARGATE").map(|l| l.as_str().to_string()),
        write: nothing,
    },
    Rule { feature: "service discovery", keys: &[], used: |s| list(s.service.service_registries()), write: nothing },
    Rule {
        feature: "placement constraints",
        keys: &[],
        used: |s| list(s.service.placement_constraints()),
        write: nothing,
    },
    Rule { feature: "placement strategy", keys: &[], used: |s| list(s.service.placement_strategy()), write: nothing },
    Rule { feature: "volumes", keys: &[], used: |s| list(s.task_definition.volumes()), write: nothing },
    Rule { feature: "mount points", keys: &[], used: |s| list(s.main().mount_points()), write: nothing },
    Rule { feature: "entry point", keys: &[], used: |s| list(s.main().entry_point()), write: nothing },
    Rule {
        feature: "working directory",
        keys: &[],
        used: |s| s.main().working_directory().map(str::to_string),
        write: nothing,
    },
    Rule { feature: "user", keys: &[], used: |s| s.main().user().map(str::to_string), write: nothing },
    Rule { feature: "environment files", keys: &[], used: |s| list(s.main().environment_files()), write: nothing },
    Rule {
        feature: "docker labels",
        keys: &[],
        used: |s| s.main().docker_labels().filter(|l| !l.is_empty()).map(|l| format!("{l:?}")),
        write: nothing,
    },
    Rule { feature: "ulimits", keys: &[], used: |s| list(s.main().ulimits()), write: nothing },
    Rule {
        feature: "linux parameters",
        keys: &[],
        used: |s| s.main().linux_parameters().map(|l| format!("{l:?}")),
        write: nothing,
    },
    Rule {
        feature: "memory reservation",
        keys: &[],
        used: |s| s.main().memory_reservation().map(|m| format!("{m} MiB")),
        write: nothing,
    },
    Rule {
        feature: "container memory",
        keys: &[],
        used: |s| {
            let task = task_size(s.task_definition.memory(), "gb");
            let own = s.main().memory().map(i64::from).filter(|m| Some(*m) != task)?;
            Some(format!(
                "{own} MiB of the task's {} MiB; ferry gives the app's container the task's",
                task.unwrap_or(0)
            ))
        },
        write: nothing,
    },
    Rule {
        feature: "private registry credentials",
        keys: &[],
        used: |s| s.main().repository_credentials().map(|c| c.credentials_parameter().to_string()),
        write: nothing,
    },
];

// ---------------------------------------------------------------------------------------
// AWS Copilot manifests

use super::copilot::CopilotSource;
use yaml_serde::Value as Yaml;

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
    s.get(path).map(|v| yaml_serde::to_string(v).unwrap_or_default().trim().replace('\n', "; "))
}

/// Every Copilot manifest key import knows, and where it goes. A key no row names is
/// reported as it is (`copilot::read`).
pub const COPILOT_RULES: &[Rule<CopilotSource>] = &[
    Rule {
        feature: "image.location",
        keys: &["image"],
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
        keys: &["image"],
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
        keys: &["port"],
        used: |s| used(s, "image.port"),
        write: |s, t| {
            t.app.port = Some(s.get("image.port").and_then(yaml_int).ok_or("not a number")?);
            Ok(())
        },
    },
    Rule {
        feature: "cpu",
        keys: &["cpu"],
        used: |s| used(s, "cpu"),
        write: |s, t| {
            t.app.cpu = Some(s.get("cpu").and_then(yaml_int).ok_or("not a number")?);
            Ok(())
        },
    },
    Rule {
        feature: "memory",
        keys: &["memory"],
        used: |s| used(s, "memory"),
        write: |s, t| {
            t.app.memory = Some(s.get("memory").and_then(yaml_int).ok_or("not a number")?);
            Ok(())
        },
    },
    Rule {
        feature: "count",
        keys: &["scale"],
        used: |s| used(s, "count"),
        write: |s, t| {
            let count = s.get("count").ok_or("none")?;
            if let Some(n) = yaml_int(count) {
                t.app.scale = Some(ScaleSection::Count(n));
                return Ok(());
            }
            // `count: {range: 1-10, cpu_percentage: 70}` (or `range: {min, max}`): autoscaling.
            let range = count.get("range").ok_or("no `range`: not imported")?;
            let (min, max) = match yaml_text(range) {
                Some(text) => {
                    let (min, max) = text.split_once('-').ok_or(format!("range `{text}` is not MIN-MAX"))?;
                    (min.trim().parse().ok(), max.trim().parse().ok())
                }
                None => (range.get("min").and_then(yaml_int), range.get("max").and_then(yaml_int)),
            };
            let (Some(min), Some(max)) = (min, max) else { return Err("range without a minimum and maximum".into()) };
            // A percentage is a number, or `{value: N, cooldown: …}`.
            let target = |k: &str| count.get(k).and_then(|v| yaml_int(v).or_else(|| v.get("value").and_then(yaml_int)));
            let auto = AutoscaleSection {
                min,
                max,
                cpu_target: target("cpu_percentage"),
                memory_target: target("memory_percentage"),
            };
            let mut notes: Vec<String> = count
                .as_mapping()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.as_str())
                .filter(|k| !["range", "cpu_percentage", "memory_percentage"].contains(k))
                .map(|k| format!("count.{k} not imported"))
                .collect();
            if range.get("spot_from").is_some() {
                notes.push("range.spot_from not imported (Fargate Spot)".into());
            }
            if auto.cpu_target.is_none() && auto.memory_target.is_none() {
                notes.push(format!("no CPU or memory percentage: ferry tracks 70% CPU ({CPU_POLICY})"));
            }
            t.app.scale = Some(ScaleSection::Auto(auto));
            if notes.is_empty() {
                Ok(())
            } else {
                Err(format!("scale imported; {}", notes.join("; ")))
            }
        },
    },
    Rule {
        feature: "deployment.rolling",
        keys: &["deploy.max_surge", "deploy.min_healthy"],
        used: |s| used(s, "deployment.rolling"),
        write: |s, t| {
            match s.get("deployment.rolling").and_then(Yaml::as_str) {
                // Copilot's default is ECS's: 100 % healthy, 200 % at most, ferry's too.
                Some("default") => Ok(()),
                // All old tasks stopped before new ones start.
                Some("recreate") => {
                    let d = t.app.deploy.get_or_insert_with(DeploySection::default);
                    d.max_surge = Some("0%".into());
                    d.min_healthy = Some("0%".into());
                    Ok(())
                }
                _ => Err("not `default` or `recreate`: not imported".into()),
            }
        },
    },
    Rule {
        feature: "deployment.rollback_alarms",
        keys: &["deploy.alarms"],
        used: |s| used(s, "deployment.rollback_alarms"),
        write: |s, t| {
            // Names of alarms that exist; Copilot's `{cpu_utilization: …}` makes alarms of
            // its own, which ferry does not.
            let names = s
                .get("deployment.rollback_alarms")
                .and_then(Yaml::as_sequence)
                .and_then(|items| items.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
                .ok_or(
                    "alarms Copilot creates (cpu_utilization, memory_utilization) are not imported: \
                        create them and list their names in `[apps.NAME.deploy] alarms`",
                )?;
            t.app.deploy.get_or_insert_with(DeploySection::default).alarms = Some(names);
            Ok(())
        },
    },
    Rule {
        feature: "command",
        keys: &["command"],
        used: |s| used(s, "command"),
        write: |s, t| {
            t.app.command = Some(s.get("command").and_then(yaml_command).ok_or("not a list or a string")?);
            Ok(())
        },
    },
    Rule {
        feature: "variables",
        keys: &["env"],
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
        keys: &["secrets"],
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
        keys: HEALTH_KEYS,
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
    Rule {
        feature: "exec",
        keys: &["exec"],
        used: |s| used(s, "exec"),
        write: |s, t| {
            let on = s.get("exec").and_then(Yaml::as_bool).ok_or("not true or false: not imported")?;
            t.app.exec = on.then_some(true);
            Ok(())
        },
    },
    Rule {
        feature: "platform",
        keys: &["architecture"],
        used: |s| used(s, "platform"),
        write: |s, t| {
            let p = s.get("platform").ok_or("none")?;
            // `linux/arm64`, or `{osfamily: linux, architecture: arm64}`.
            let (os, arch) = match yaml_text(p) {
                Some(text) => {
                    let (os, arch) = text.split_once('/').ok_or(format!("`{text}` is not OS/ARCHITECTURE"))?;
                    (os.to_string(), arch.to_string())
                }
                None => (
                    p.get("osfamily").and_then(yaml_text).unwrap_or_else(|| "linux".into()),
                    p.get("architecture").and_then(yaml_text).unwrap_or_else(|| "x86_64".into()),
                ),
            };
            if !os.eq_ignore_ascii_case("linux") {
                return Err(format!("not imported: ferry runs Linux tasks, not {os}"));
            }
            match arch.to_ascii_lowercase().as_str() {
                "arm64" => t.app.architecture = Some("ARM64".into()),
                "x86_64" | "amd64" => {}
                other => return Err(format!("architecture {other}: not imported")),
            }
            Ok(())
        },
    },
    Rule {
        feature: "storage.ephemeral",
        keys: &["ephemeral_storage"],
        used: |s| used(s, "storage.ephemeral"),
        write: |s, t| {
            let gib = s.get("storage.ephemeral").and_then(yaml_int).ok_or("not a number")?;
            // Fargate's 20 GiB is what a task has without asking.
            t.app.ephemeral_storage = (gib > 20).then_some(gib);
            Ok(())
        },
    },
    // Copilot keys the stage file cannot say yet.
    Rule { feature: "http", keys: &[], used: |s| used(s, "http"), write: nothing },
    Rule { feature: "nlb", keys: &[], used: |s| used(s, "nlb"), write: nothing },
    Rule { feature: "sidecars", keys: &[], used: |s| used(s, "sidecars"), write: nothing },
    Rule { feature: "network", keys: &[], used: |s| used(s, "network"), write: nothing },
    Rule { feature: "logging", keys: &[], used: |s| used(s, "logging"), write: nothing },
    Rule { feature: "entrypoint", keys: &[], used: |s| used(s, "entrypoint"), write: nothing },
    Rule { feature: "taskdef_overrides", keys: &[], used: |s| used(s, "taskdef_overrides"), write: nothing },
    Rule { feature: "observability", keys: &[], used: |s| used(s, "observability"), write: nothing },
    Rule { feature: "publish", keys: &[], used: |s| used(s, "publish"), write: nothing },
    Rule { feature: "subscribe", keys: &[], used: |s| used(s, "subscribe"), write: nothing },
    Rule { feature: "env_file", keys: &[], used: |s| used(s, "env_file"), write: nothing },
    Rule { feature: "image.depends_on", keys: &[], used: |s| used(s, "image.depends_on"), write: nothing },
];

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_applicationautoscaling::types::{
        PolicyType, PredefinedMetricSpecification, TargetTrackingScalingPolicyConfiguration,
    };

    fn tracking(name: &str, metric: MetricType, target: f64) -> ScalingPolicy {
        let spec = PredefinedMetricSpecification::builder().predefined_metric_type(metric).build().unwrap();
        let config = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(target)
            .predefined_metric_specification(spec)
            .build()
            .unwrap();
        ScalingPolicy::builder()
            .policy_arn(format!("arn:{name}"))
            .policy_name(name)
            .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
            .resource_id("service/c/s")
            .scalable_dimension(aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount)
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(config)
            .creation_time(aws_sdk_applicationautoscaling::primitives::DateTime::from_secs(0))
            .build()
            .unwrap()
    }

    #[test]
    fn target_tracking_policies_become_scale_targets() {
        let scaling = Scaling {
            min: 2,
            max: 8,
            policies: vec![
                tracking(CPU_POLICY, MetricType::EcsServiceAverageCpuUtilization, 60.0),
                tracking("mem", MetricType::EcsServiceAverageMemoryUtilization, 75.0),
                tracking("requests", MetricType::AlbRequestCountPerTarget, 1000.0),
            ],
        };
        let (auto, adopted, notes) = scale_of(&scaling);
        assert_eq!(auto, AutoscaleSection { min: 2, max: 8, cpu_target: Some(60), memory_target: Some(75) });
        // A policy of another name is adopted: ferry puts it, and no `ferry-memory` beside it.
        assert_eq!(adopted, [None, Some("mem".to_string())]);
        assert_eq!(notes, ["policy requests (TargetTrackingScaling) not imported"]);

        // A fraction, a second policy on a metric: reported, not guessed; ferry's own policy
        // is the one imported of two on a metric, whatever their order.
        let scaling = Scaling {
            min: 1,
            max: 3,
            policies: vec![
                tracking("a", MetricType::EcsServiceAverageCpuUtilization, 55.5),
                tracking("b", MetricType::EcsServiceAverageMemoryUtilization, 50.0),
                tracking(MEMORY_POLICY, MetricType::EcsServiceAverageMemoryUtilization, 60.0),
            ],
        };
        let (auto, adopted, notes) = scale_of(&scaling);
        assert_eq!((auto.cpu_target, auto.memory_target), (None, Some(60)));
        assert_eq!(adopted, [None, None]);
        assert!(notes.iter().any(|n| n.starts_with("policy a (target 55.5) not imported")), "{notes:?}");
        assert!(notes.iter().any(|n| n.starts_with("policy b (target 50) not imported")), "{notes:?}");

        let (auto, _, notes) = scale_of(&Scaling { min: 1, max: 2, policies: vec![] });
        assert_eq!((auto.cpu_target, auto.memory_target), (None, None));
        assert!(notes[0].starts_with("no CPU or memory target: ferry tracks 70% CPU"), "{notes:?}");
    }

    #[test]
    fn sidecars_wait_for_the_app_by_its_name_and_what_the_file_cannot_name_is_reported() {
        use aws_sdk_ecs::types::{ContainerCondition, ContainerDependency};
        let wait = |on: &str| {
            ContainerDependency::builder().container_name(on).condition(ContainerCondition::Healthy).build().unwrap()
        };
        let td = TaskDefinition::builder()
            .container_definitions(ContainerDefinition::builder().name("app").image("web@sha256:x").build())
            .container_definitions(
                ContainerDefinition::builder()
                    .name("envoy")
                    .image("envoy:1")
                    .memory(128)
                    .depends_on(wait("app"))
                    .depends_on(wait("Agent_X"))
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder().name("Agent_X").image("agent:2").essential(false).build(),
            )
            .build();
        let source = EcsSource {
            service: Service::builder().build(),
            task_definition: td,
            container: 0,
            repository: "web".into(),
            digest: format!("sha256:{}", "a".repeat(64)).parse().unwrap(),
            region: "eu-central-1".into(),
            account: "1".into(),
            scaling: None,
            app: "web".into(),
        };
        let (sidecars, notes) = source.sidecar_sections();
        assert_eq!(sidecars.keys().collect::<Vec<_>>(), ["envoy"]);
        let envoy = &sidecars["envoy"];
        // The app's container is `app` in the task, `web` in the file (the runtime maps it back).
        assert_eq!(envoy.depends_on, BTreeMap::from([("web".to_string(), "HEALTHY".to_string())]));
        assert_eq!(envoy.essential, Some(true), "ECS's default is essential");
        assert_eq!(
            notes,
            [
                "envoy imported without memory 128 MiB, its wait for Agent_X",
                "Agent_X not imported: a sidecar is named in lowercase letters, digits and `-`, not like the app",
            ]
        );
    }

    #[test]
    fn percents_are_whole() {
        assert_eq!(percent(20.0).as_deref(), Some("20%"));
        assert_eq!(percent(12.5), None);
        assert_eq!(strategy_of(&DeploymentStrategy::Canary), Some(Strategy::Canary));
    }
}
