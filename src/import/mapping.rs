//! What `ferry import` carries over, as tables: one row per feature a live ECS service (or
//! an AWS Copilot manifest) can use. A row names the stage-file key it is written to and
//! how, or no key: then every service that uses the feature gets a warning saying so, and
//! nothing is silently dropped. A new stage-file key is supported by giving its row a key
//! and a writer, here and nowhere else ([`ECS_RULES`], [`COPILOT_RULES`]).

use aws_sdk_applicationautoscaling::types::{MetricType, ScalingPolicy};
use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentConfiguration, DeploymentLifecycleHookTargetType, DeploymentStrategy, LoadBalancer,
    Service, TaskDefinition,
};

use crate::config::file::{
    AppSection, AutoscaleSection, CircuitBreakerSection, DeploySection, HealthSection, HookSection, RuntimeSection,
    ScaleSection, Strategy,
};
use crate::config::{Digest, SecretRef};
use crate::runtime::ecs::autoscaling::{CPU_POLICY, MEMORY_POLICY};

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
    let mut keys: Vec<&'static str> = Vec::new();
    let app = rules.iter().filter_map(|r| r.key).filter(|k| !k.starts_with("runtime."));
    for key in app.map(|k| k.split('.').next().unwrap_or(k)) {
        // Several rows write `scale` and `deploy`, not one after the other.
        if !matches!(key, "image" | "releases" | "active") && !keys.contains(&key) {
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
/// tracking policies of average CPU and memory ferry can say (its own `ferry-cpu` and
/// `ferry-memory`, or anyone's on those metrics), and what it cannot.
fn scale_of(scaling: &Scaling) -> (AutoscaleSection, Vec<String>) {
    let mut auto = AutoscaleSection {
        min: i64::from(scaling.min),
        max: i64::from(scaling.max),
        cpu_target: None,
        memory_target: None,
    };
    let mut notes = Vec::new();
    for p in &scaling.policies {
        let name = p.policy_name();
        let tracking = p.target_tracking_scaling_policy_configuration();
        let metric = tracking.and_then(|c| c.predefined_metric_specification()).map(|m| m.predefined_metric_type());
        let (slot, ours, key) = match metric {
            Some(MetricType::EcsServiceAverageCpuUtilization) => (&mut auto.cpu_target, CPU_POLICY, "cpu_target"),
            Some(MetricType::EcsServiceAverageMemoryUtilization) => {
                (&mut auto.memory_target, MEMORY_POLICY, "memory_target")
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
            notes.push(format!(
                "policy {name} imported as {key} = {value}; ferry keeps its own policy `{ours}` and puts it when it \
                 sets autoscaling: then delete {name} (ferry leaves policies it did not make)"
            ));
        }
        if tracking.is_some_and(|c| c.disable_scale_in() == Some(true)) {
            notes.push(format!("policy {name} does not scale in; ferry's `{ours}` does"));
        }
    }
    if auto.cpu_target.is_none() && auto.memory_target.is_none() {
        notes.push(format!(
            "no CPU or memory target: ferry tracks 70% CPU with a policy `{CPU_POLICY}` when it sets autoscaling"
        ));
    }
    (auto, notes)
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

/// The service's tags other than ferry's and AWS's: the app's `tags`.
fn app_tags(service: &Service) -> std::collections::BTreeMap<String, String> {
    service
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .filter(|(k, _)| !crate::runtime::ecs::service::reserved_tag(k))
        .collect()
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
        feature: "deployment strategy",
        key: Some("deploy.strategy"),
        used: |s| s.strategy().filter(|k| **k != DeploymentStrategy::Rolling).map(|k| k.as_str().to_string()),
        write: |s, t| {
            let kind = s.strategy().ok_or("none")?;
            deploy(t).strategy = Some(strategy_of(kind).ok_or("a strategy ferry does not know")?);
            Ok(())
        },
    },
    Rule {
        feature: "bake time",
        key: Some("deploy.bake_time"),
        used: |s| s.deployment()?.bake_time_in_minutes().filter(|m| *m > 0).map(minutes),
        write: |s, t| {
            deploy(t).bake_time = s.deployment().and_then(|c| c.bake_time_in_minutes()).map(minutes);
            Ok(())
        },
    },
    Rule {
        feature: "linear steps",
        key: Some("deploy.step_percent"),
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
        key: Some("deploy.canary_percent"),
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
        key: Some("deploy.circuit_breaker"),
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
        key: Some("deploy.alarms"),
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
        key: Some("deploy.alternate_target_group"),
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
        key: Some("deploy.hooks"),
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
        key: Some("scale"),
        used: |s| s.scaling.as_ref().map(Scaling::describe),
        write: |s, t| {
            let (auto, notes) = scale_of(s.scaling.as_ref().ok_or("none")?);
            t.app.scale = Some(ScaleSection::Auto(auto));
            if notes.is_empty() {
                Ok(())
            } else {
                Err(format!("scale imported; {}", notes.join("; ")))
            }
        },
    },
    Rule {
        feature: "load balancer",
        key: Some("target_group"),
        used: |s| list(s.service.load_balancers()),
        write: |s, t| {
            let lbs = s.service.load_balancers();
            let ours = s.load_balancer();
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
        key: Some("capacity_providers"),
        used: |s| list(s.service.capacity_provider_strategy()),
        write: |s, t| {
            t.app.capacity_providers = s
                .service
                .capacity_provider_strategy()
                .iter()
                .map(|c| crate::config::ecs_task::CapacityProviderSection {
                    provider: c.capacity_provider().to_string(),
                    weight: Some(i64::from(c.weight())),
                    base: Some(i64::from(c.base())).filter(|&b| b != 0),
                })
                .collect();
            Ok(())
        },
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
    // With load balancers ferry always sends a grace period (the file's, else the health
    // check's start period): the service's own is written, so that none changes.
    Rule {
        feature: "health check grace period",
        key: Some("deploy.health_check_grace_period"),
        used: |s| {
            s.load_balancer()?;
            Some(format!("{}s", s.service.health_check_grace_period_seconds().unwrap_or(0)))
        },
        write: |s, t| {
            let grace = s.service.health_check_grace_period_seconds().unwrap_or(0);
            deploy(t).health_check_grace_period = Some(format!("{grace}s"));
            Ok(())
        },
    },
    Rule {
        feature: "ECS Exec",
        key: Some("exec"),
        used: |s| some_if(s.service.enable_execute_command(), || "enabled".into()),
        write: |_, t| {
            t.app.exec = Some(true);
            Ok(())
        },
    },
    Rule {
        feature: "tags",
        key: Some("tags"),
        used: |s| {
            let tags = app_tags(&s.service);
            some_if(!tags.is_empty(), || format!("{tags:?}"))
        },
        write: |s, t| {
            t.app.tags = app_tags(&s.service);
            Ok(())
        },
    },
    // ferry's default is SERVICE: another source is written.
    Rule {
        feature: "tag propagation",
        key: Some("propagate_tags"),
        used: |s| {
            let p = s.service.propagate_tags().map_or("NONE", |p| p.as_str());
            some_if(p != "SERVICE", || p.to_string())
        },
        write: |s, t| {
            t.app.propagate_tags = Some(s.service.propagate_tags().map_or("NONE", |p| p.as_str()).to_ascii_lowercase());
            Ok(())
        },
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
        key: Some("deploy.max_surge"),
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
        key: Some("deploy.alarms"),
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
    Rule { feature: "taskdef_overrides", key: None, used: |s| used(s, "taskdef_overrides"), write: nothing },
    Rule { feature: "observability", key: None, used: |s| used(s, "observability"), write: nothing },
    Rule { feature: "publish", key: None, used: |s| used(s, "publish"), write: nothing },
    Rule { feature: "subscribe", key: None, used: |s| used(s, "subscribe"), write: nothing },
    Rule { feature: "env_file", key: None, used: |s| used(s, "env_file"), write: nothing },
    Rule { feature: "image.depends_on", key: None, used: |s| used(s, "image.depends_on"), write: nothing },
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
        let (auto, notes) = scale_of(&scaling);
        assert_eq!(auto, AutoscaleSection { min: 2, max: 8, cpu_target: Some(60), memory_target: Some(75) });
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0]
            .starts_with("policy mem imported as memory_target = 75; ferry keeps its own policy `ferry-memory`"));
        assert_eq!(notes[1], "policy requests (TargetTrackingScaling) not imported");

        // A fraction, a second policy on a metric: reported, not guessed.
        let scaling = Scaling {
            min: 1,
            max: 3,
            policies: vec![
                tracking("a", MetricType::EcsServiceAverageCpuUtilization, 55.5),
                tracking("b", MetricType::EcsServiceAverageMemoryUtilization, 50.0),
                tracking(MEMORY_POLICY, MetricType::EcsServiceAverageMemoryUtilization, 60.0),
            ],
        };
        let (auto, notes) = scale_of(&scaling);
        assert_eq!((auto.cpu_target, auto.memory_target), (None, Some(50)));
        assert!(notes.iter().any(|n| n.starts_with("policy a (target 55.5) not imported")), "{notes:?}");
        assert!(notes.iter().any(|n| n.starts_with("policy ferry-memory (target 60) not imported")), "{notes:?}");

        let (auto, notes) = scale_of(&Scaling { min: 1, max: 2, policies: vec![] });
        assert_eq!((auto.cpu_target, auto.memory_target), (None, None));
        assert!(notes[0].starts_with("no CPU or memory target: ferry tracks 70% CPU"), "{notes:?}");
    }

    #[test]
    fn percents_are_whole() {
        assert_eq!(percent(20.0).as_deref(), Some("20%"));
        assert_eq!(percent(12.5), None);
        assert_eq!(strategy_of(&DeploymentStrategy::Canary), Some(Strategy::Canary));
    }
}
