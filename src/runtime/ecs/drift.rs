//! Drift on ECS (`plan --refresh`): what each service runs compared with what the recorded
//! release renders to.
//!
//! Live facts cost ⌈apps/10⌉ DescribeServices, and one DescribeTaskDefinition per service
//! whose task definition is not the recorded one (task definitions are immutable, so the
//! recorded ARN needs no look). Such a task definition is compared with the one the recorded
//! release and config render to ([`Rendered`]), field by field after [`normalise`]: ECS
//! answers with server-side defaults filled in (task cpu and memory as strings, possibly in
//! `vCPU`/`GB` units, `essential` true, protocol `tcp`, the host port of awsvpc, empty lists
//! for what was never set, `revision`, `status`, `registeredAt`, `compatibilities`,
//! `requiresAttributes`…), and both sides get the same defaults before comparing, so an
//! untouched service never shows a permanent diff and an equivalent task definition
//! registered by hand is no drift either.
//!
//! The service's own settings — load balancers, health check grace period, capacity
//! provider strategy, ECS Exec, propagated tags and the app's tags — are compared on every
//! look, from the DescribeServices answer (with its tags) already made: `service.…` fields,
//! normalised the same way ([`service::expected`], [`service::described`]). A deploy sends
//! them all, so the deploy that puts drift back restores them too.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};

use super::revision::Rendered;
use super::{service, EcsRuntime};
use crate::runtime::live::{DefinitionChange, LiveService, RecordedService, SERVICE_FIELD};
use crate::runtime::{RevisionId, RuntimeError, RuntimeResult};

/// ECS's own defaults for a container health check.
const HEALTH_INTERVAL_S: i32 = 30;
const HEALTH_TIMEOUT_S: i32 = 5;
const HEALTH_RETRIES: i32 = 3;

/// What runs for each of `recorded`, in order.
pub(super) async fn live(rt: &EcsRuntime, recorded: &[RecordedService]) -> RuntimeResult<Vec<LiveService>> {
    let names: Vec<String> = recorded.iter().map(|r| rt.service_name(&r.spec.app)).collect();
    let services = rt.describe_services(&names).await?;
    let mut out = Vec::with_capacity(recorded.len());
    for (r, service) in recorded.iter().zip(services) {
        let app = r.spec.app.clone();
        // DRAINING: being deleted, as good as gone.
        let Some(s) = service.filter(|s| s.status() == Some("ACTIVE")) else {
            out.push(LiveService {
                app,
                present: false,
                revision: None,
                desired: 0,
                changes: Vec::new(),
                running: None,
                cause: None,
            });
            continue;
        };
        let revision = s.task_definition().map(|t| RevisionId(t.to_string()));
        let rendered = rt.render(&r.spec);
        let mut changes = match &revision {
            Some(live) if Some(live) != r.revision.as_ref() => {
                differences(&expected_definition(&rendered)?, &describe(rt, live.as_str()).await?)
            }
            _ => Vec::new(),
        };
        changes.extend(service_differences(&rendered, &r.spec.config.deploy, &s)?);
        out.push(LiveService {
            app,
            present: true,
            revision,
            desired: u32::try_from(s.desired_count()).unwrap_or(0),
            changes,
            running: None,
            cause: None,
        });
    }
    Ok(out)
}

async fn describe(rt: &EcsRuntime, arn: &str) -> RuntimeResult<TaskDefinition> {
    let out = rt.describe_task_definition(arn).await?;
    out.task_definition().cloned().ok_or_else(|| RuntimeError::NotFound(format!("no task definition {arn}")))
}

/// The task definition `rendered` registers, as ECS would describe it before defaults.
pub fn expected_definition(rendered: &Rendered) -> RuntimeResult<TaskDefinition> {
    Ok(TaskDefinition::builder()
        .family(&rendered.family)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu(rendered.cpu.to_string())
        .memory(rendered.memory.to_string())
        .set_execution_role_arn(rendered.execution_role.clone())
        .set_task_role_arn(rendered.task_role.clone())
        .set_container_definitions(Some(rendered.container_definitions()?))
        .set_runtime_platform(rendered.runtime_platform())
        .set_ephemeral_storage(rendered.ephemeral_storage())
        .build())
}

/// Where the service's own settings (load balancers, grace period, capacity providers, Exec,
/// tags) differ from those the recorded release's deploy settings give: `service.…` fields.
fn service_differences(
    rendered: &Rendered,
    settings: &crate::config::DeploySettings,
    live: &aws_sdk_ecs::types::Service,
) -> RuntimeResult<Vec<DefinitionChange>> {
    let balancing = service::Balancing {
        app: &rendered.app,
        container: &rendered.container,
        target_group: rendered.target_group.as_deref(),
        port: rendered.port,
        health_start_period_s: rendered.health_start_period_s,
    };
    let expected = service::expected(&balancing, settings)?;
    let with_grace = expected.contains_key(&format!("{SERVICE_FIELD}healthCheckGracePeriodSeconds"));
    Ok(compare(&expected, &service::described(live, with_grace)))
}

/// Where `live` differs from `expected`, field by field after [`normalise`].
pub fn differences(expected: &TaskDefinition, live: &TaskDefinition) -> Vec<DefinitionChange> {
    compare(&normalise(expected), &normalise(live))
}

/// The fields whose values differ between `a` (recorded) and `b` (live), in order.
fn compare(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<DefinitionChange> {
    let mut fields: Vec<&String> = a.keys().chain(b.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| a.get(*f) != b.get(*f))
        .map(|f| DefinitionChange {
            field: f.clone(),
            recorded: a.get(f).cloned().unwrap_or_default(),
            live: b.get(f).cloned().unwrap_or_default(),
        })
        .collect()
}

/// A task definition as flat `field → value` text with ECS's defaults applied, leaving out
/// what ECS computes (ARN, revision, status, times, compatibilities, required attributes),
/// unset values and empty lists.
pub fn normalise(td: &TaskDefinition) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let mut put = |k: String, v: String| {
        if !v.is_empty() {
            f.insert(k, v);
        }
    };
    put("family".into(), td.family().unwrap_or_default().to_string());
    put("networkMode".into(), td.network_mode().map_or("bridge", |m| m.as_str()).to_string());
    let mut compat: Vec<&str> = td.requires_compatibilities().iter().map(|c| c.as_str()).collect();
    compat.sort_unstable();
    put("requiresCompatibilities".into(), compat.join(","));
    put("cpu".into(), td.cpu().map(|c| units(c, "vcpu")).unwrap_or_default());
    put("memory".into(), td.memory().map(|m| units(m, "gb")).unwrap_or_default());
    put("executionRoleArn".into(), td.execution_role_arn().unwrap_or_default().to_string());
    put("taskRoleArn".into(), td.task_role_arn().unwrap_or_default().to_string());
    put("pidMode".into(), td.pid_mode().map(|m| m.as_str().to_string()).unwrap_or_default());
    put("ipcMode".into(), td.ipc_mode().map(|m| m.as_str().to_string()).unwrap_or_default());
    put("volumes".into(), debug_list(td.volumes()));
    put("placementConstraints".into(), debug_list(td.placement_constraints()));
    put("proxyConfiguration".into(), td.proxy_configuration().map(|p| format!("{p:?}")).unwrap_or_default());
    // Fargate's default ephemeral storage is 20 GiB whether stated or not.
    put(
        "ephemeralStorage".into(),
        td.ephemeral_storage().map(|e| e.size_in_gib()).filter(|&g| g != 20).map(|g| g.to_string()).unwrap_or_default(),
    );
    // No platform stated is Linux on X86_64.
    let platform = td.runtime_platform();
    put(
        "runtimePlatform.cpuArchitecture".into(),
        platform.and_then(|p| p.cpu_architecture()).map_or("X86_64", |a| a.as_str()).to_string(),
    );
    put(
        "runtimePlatform.operatingSystemFamily".into(),
        platform.and_then(|p| p.operating_system_family()).map_or("LINUX", |o| o.as_str()).to_string(),
    );
    let mut names: Vec<&str> = td.container_definitions().iter().map(|c| c.name().unwrap_or_default()).collect();
    names.sort_unstable();
    put("containers".into(), names.join(","));
    for c in td.container_definitions() {
        container(c, &mut put);
    }
    f
}

fn container(c: &ContainerDefinition, put: &mut impl FnMut(String, String)) {
    let p = format!("container.{}", c.name().unwrap_or_default());
    let mut put = |k: &str, v: String| put(format!("{p}.{k}"), v);
    put("image", c.image().unwrap_or_default().to_string());
    put("command", json_list(c.command()));
    put("entryPoint", json_list(c.entry_point()));
    put("workingDirectory", c.working_directory().unwrap_or_default().to_string());
    put("user", c.user().unwrap_or_default().to_string());
    for kv in c.environment() {
        put(&format!("environment.{}", kv.name().unwrap_or_default()), kv.value().unwrap_or_default().to_string());
    }
    for s in c.secrets() {
        put(&format!("secrets.{}", s.name()), s.value_from().to_string());
    }
    put("essential", c.essential().unwrap_or(true).to_string());
    put("cpu", if c.cpu() == 0 { String::new() } else { c.cpu().to_string() });
    put("memory", c.memory().map(|m| m.to_string()).unwrap_or_default());
    put("memoryReservation", c.memory_reservation().map(|m| m.to_string()).unwrap_or_default());
    put("stopTimeout", c.stop_timeout().map(|t| t.to_string()).unwrap_or_default());
    put("startTimeout", c.start_timeout().map(|t| t.to_string()).unwrap_or_default());
    let mut ports: Vec<String> = c
        .port_mappings()
        .iter()
        .map(|m| {
            let container = m.container_port().unwrap_or(0);
            let protocol = m.protocol().map_or("tcp", |p| p.as_str());
            // awsvpc: the host port is the container port, whether stated or not.
            match m.host_port().filter(|&h| h != 0 && h != container) {
                Some(host) => format!("{container}/{protocol} (host {host})"),
                None => format!("{container}/{protocol}"),
            }
        })
        .collect();
    ports.sort();
    put("portMappings", ports.join(", "));
    if let Some(h) = c.health_check() {
        put("healthCheck.command", json_list(h.command()));
        put("healthCheck.interval", h.interval().unwrap_or(HEALTH_INTERVAL_S).to_string());
        put("healthCheck.timeout", h.timeout().unwrap_or(HEALTH_TIMEOUT_S).to_string());
        put("healthCheck.retries", h.retries().unwrap_or(HEALTH_RETRIES).to_string());
        put("healthCheck.startPeriod", h.start_period().unwrap_or(0).to_string());
    }
    if let Some(log) = c.log_configuration() {
        put("logConfiguration.logDriver", log.log_driver().as_str().to_string());
        for (k, v) in log.options().into_iter().flatten() {
            put(&format!("logConfiguration.options.{k}"), v.clone());
        }
        for s in log.secret_options() {
            put(&format!("logConfiguration.secretOptions.{}", s.name()), s.value_from().to_string());
        }
    }
    put("mountPoints", debug_list(c.mount_points()));
    put("volumesFrom", debug_list(c.volumes_from()));
    for d in c.depends_on() {
        put(&format!("dependsOn.{}", d.container_name()), d.condition().as_str().to_string());
    }
    if let Some(f) = c.firelens_configuration() {
        put("firelensConfiguration.type", f.r#type().as_str().to_string());
        for (k, v) in f.options().into_iter().flatten() {
            put(&format!("firelensConfiguration.options.{k}"), v.clone());
        }
    }
    put("links", json_list(c.links()));
    put("ulimits", debug_list(c.ulimits()));
    put("systemControls", debug_list(c.system_controls()));
    put("linuxParameters", c.linux_parameters().map(|l| format!("{l:?}")).unwrap_or_default());
    for (k, v) in c.docker_labels().into_iter().flatten() {
        put(&format!("dockerLabels.{k}"), v.clone());
    }
    for (name, on) in [("privileged", c.privileged()), ("readonlyRootFilesystem", c.readonly_root_filesystem())] {
        put(name, if on == Some(true) { "true".into() } else { String::new() });
    }
}

/// Task cpu or memory as a number: ECS accepts `1 vCPU` and `2 GB` and may answer so.
pub(crate) fn units(value: &str, unit: &str) -> String {
    let lower = value.trim().to_ascii_lowercase();
    match lower.strip_suffix(unit).map(str::trim).and_then(|n| n.parse::<f64>().ok()) {
        Some(n) => ((n * 1024.0).round() as u64).to_string(),
        None => value.trim().to_string(),
    }
}

fn json_list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        serde_json::to_string(items).expect("strings serialise")
    }
}

fn debug_list<T: std::fmt::Debug>(items: &[T]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{items:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ecs::revision::tests::{prod, spec};
    use aws_sdk_ecs::types::{Compatibility, KeyValuePair, TransportProtocol};

    fn rendered() -> Rendered {
        Rendered::new(&spec(), &prod())
    }

    /// The task definition as ECS describes it back: every default filled in.
    fn as_described(td: &TaskDefinition) -> TaskDefinition {
        let mut c = td.container_definitions()[0].clone();
        c.cpu = 0;
        c.essential = Some(true);
        for m in c.port_mappings.iter_mut().flatten() {
            m.host_port = m.container_port;
            m.protocol = Some(TransportProtocol::Tcp);
        }
        c.mount_points = Some(vec![]);
        c.volumes_from = Some(vec![]);
        c.system_controls = Some(vec![]);
        let mut td = td.clone();
        td.task_definition_arn = Some("arn:aws:ecs:eu-central-1:1:task-definition/prod-web:7".into());
        td.revision = 7;
        td.status = Some(aws_sdk_ecs::types::TaskDefinitionStatus::Active);
        td.registered_at = Some(aws_sdk_ecs::primitives::DateTime::from_secs(1_700_000_000));
        td.compatibilities = Some(vec![Compatibility::Ec2, Compatibility::Fargate]);
        td.cpu = Some("0.25 vCPU".into());
        td.memory = Some("0.5 GB".into());
        td.volumes = Some(vec![]);
        td.placement_constraints = Some(vec![]);
        td.container_definitions = Some(vec![c]);
        td
    }

    #[test]
    fn an_untouched_task_definition_shows_no_difference() {
        let expected = expected_definition(&rendered()).unwrap();
        assert_eq!(differences(&expected, &as_described(&expected)), []);
    }

    #[test]
    fn changed_fields_are_named_with_both_values() {
        let expected = expected_definition(&rendered()).unwrap();
        let mut live = as_described(&expected);
        let c = &mut live.container_definitions.as_mut().unwrap()[0];
        c.environment.get_or_insert_with(Vec::new).push(KeyValuePair::builder().name("DEBUG").value("1").build());
        c.image = Some("1.dkr.ecr.eu-central-1.amazonaws.com/web:latest".into());
        live.memory = Some("1 GB".into());
        let changes: Vec<(String, String, String)> =
            differences(&expected, &live).into_iter().map(|c| (c.field, c.recorded, c.live)).collect();
        assert_eq!(
            changes,
            [
                ("container.web.environment.DEBUG".to_string(), String::new(), "1".to_string()),
                (
                    "container.web.image".to_string(),
                    format!("123.dkr.ecr.eu-central-1.amazonaws.com/shop/web@sha256:{}", "a".repeat(64)),
                    "1.dkr.ecr.eu-central-1.amazonaws.com/web:latest".to_string()
                ),
                ("memory".to_string(), "512".to_string(), "1024".to_string()),
            ]
        );
    }

    #[test]
    fn units_are_normalised() {
        assert_eq!(units("0.25 vCPU", "vcpu"), "256");
        assert_eq!(units("1 vcpu", "vcpu"), "1024");
        assert_eq!(units("2 GB", "gb"), "2048");
        assert_eq!(units("512", "gb"), "512");
    }
}
