//! Application Auto Scaling of ECS services: `scale = { min, max, cpu_target }` becomes a
//! scalable target on the service's desired count and one target-tracking policy per target
//! (`ferry-cpu`, `ferry-memory`).
//!
//! Setting up costs one DescribeScalingPolicies, one RegisterScalableTarget (it updates the
//! range of an existing one) and a PutScalingPolicy per target; a policy of a target the file
//! no longer names is deleted. Taking autoscaling back (`scale = N` again) deletes ferry's
//! policies and deregisters the target. The deploy itself keeps the count it finds
//! while autoscaling is declared (`EcsRuntime::deploy`), so a rollout never undoes a
//! scale-out.

use aws_sdk_applicationautoscaling::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace,
    TargetTrackingScalingPolicyConfiguration,
};

use crate::config::Autoscaling;
use crate::runtime::{RuntimeError, RuntimeResult};

/// The policy ferry puts for the CPU target.
pub const CPU_POLICY: &str = "ferry-cpu";
/// The policy ferry puts for the memory target.
pub const MEMORY_POLICY: &str = "ferry-memory";

/// Application Auto Scaling's name of a service: `service/<cluster>/<service>`.
pub fn resource_id(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

/// The names of a service's CPU and memory policies: ferry's own, or those of an adopted
/// service (`ferry import` adopts a policy the service tracked CPU or memory with, so that
/// ferry puts that one and no second policy beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyNames<'a> {
    pub cpu: &'a str,
    pub memory: &'a str,
}

impl Default for PolicyNames<'_> {
    fn default() -> Self {
        PolicyNames { cpu: CPU_POLICY, memory: MEMORY_POLICY }
    }
}

impl<'a> PolicyNames<'a> {
    /// An adopted service's names, ferry's where it recorded none.
    pub fn of(adopted: Option<&'a crate::state::AdoptedService>) -> Self {
        PolicyNames {
            cpu: adopted.and_then(|a| a.cpu_policy.as_deref()).unwrap_or(CPU_POLICY),
            memory: adopted.and_then(|a| a.memory_policy.as_deref()).unwrap_or(MEMORY_POLICY),
        }
    }
}

/// The target-tracking policies `range` asks for: (policy name, metric, target percent).
pub fn policies<'a>(range: &Autoscaling, names: PolicyNames<'a>) -> Vec<(&'a str, MetricType, u32)> {
    let mut out = Vec::new();
    if let Some(t) = range.cpu_target {
        out.push((names.cpu, MetricType::EcsServiceAverageCpuUtilization, t));
    }
    if let Some(t) = range.memory_target {
        out.push((names.memory, MetricType::EcsServiceAverageMemoryUtilization, t));
    }
    out
}

/// Make the service's autoscaling what `range` says (`None`: none).
pub async fn apply(
    client: &aws_sdk_applicationautoscaling::Client,
    cluster: &str,
    service: &str,
    range: Option<&Autoscaling>,
    names: PolicyNames<'_>,
) -> RuntimeResult<()> {
    let id = resource_id(cluster, service);
    let existing = client
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| error(&format!("cannot read the scaling policies of {service}"), e))?;
    let wanted = range.map(|r| policies(r, names)).unwrap_or_default();
    // Ferry's own policies (and adopted ones) whose target the file dropped (all of them when
    // autoscaling is taken back: deregistering the target deletes them on AWS, but not on
    // every emulator); policies others made are theirs.
    let managed = [CPU_POLICY, MEMORY_POLICY, names.cpu, names.memory];
    for policy in existing.scaling_policies() {
        let name = policy.policy_name();
        if managed.contains(&name) && !wanted.iter().any(|(w, _, _)| *w == name) {
            client
                .delete_scaling_policy()
                .policy_name(name)
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| error(&format!("cannot delete scaling policy {name} of {service}"), e))?;
        }
    }
    let Some(range) = range else {
        return match client
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .send()
            .await
        {
            // Nothing registered: nothing to take back (AWS says ObjectNotFoundException;
            // moto a ValidationException naming the missing target).
            Err(e)
                if e.code() == Some("ObjectNotFoundException")
                    || (e.code() == Some("ValidationException")
                        && e.message().is_some_and(|m| m.contains("No scalable target"))) =>
            {
                Ok(())
            }
            other => other.map(|_| ()).map_err(|e| error(&format!("cannot stop autoscaling {service}"), e)),
        };
    };
    client
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(range.min as i32)
        .max_capacity(range.max as i32)
        .send()
        .await
        .map_err(|e| error(&format!("cannot register {service} with Application Auto Scaling"), e))?;
    for (name, metric, target) in &wanted {
        let metric = PredefinedMetricSpecification::builder()
            .predefined_metric_type(metric.clone())
            .build()
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let config = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(f64::from(*target))
            .predefined_metric_specification(metric)
            .build()
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        client
            .put_scaling_policy()
            .policy_name(*name)
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&id)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(config)
            .send()
            .await
            .map_err(|e| error(&format!("cannot put scaling policy {name} of {service}"), e))?;
    }
    Ok(())
}

fn error<E, R>(what: &str, e: SdkError<E, R>) -> RuntimeError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let text = format!("{what}: {}", crate::aws::error_text(&e));
    match e.code() {
        Some("ValidationException" | "AccessDeniedException") => RuntimeError::Invalid(text),
        Some("ObjectNotFoundException") => RuntimeError::NotFound(text),
        _ => RuntimeError::Unavailable(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_policy_per_target() {
        let range = Autoscaling { min: 2, max: 10, cpu_target: Some(60), memory_target: Some(80) };
        let names: Vec<(&str, u32)> =
            policies(&range, PolicyNames::default()).into_iter().map(|(n, _, t)| (n, t)).collect();
        assert_eq!(names, [(CPU_POLICY, 60), (MEMORY_POLICY, 80)]);
        let adopted = crate::state::AdoptedService { cpu_policy: Some("cpu70".into()), ..Default::default() };
        let names: Vec<&str> =
            policies(&range, PolicyNames::of(Some(&adopted))).into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, ["cpu70", MEMORY_POLICY], "an adopted policy is put under its own name");
        assert_eq!(resource_id("prod", "prod-web"), "service/prod/prod-web");
        assert!(range.allows(2) && range.allows(10) && !range.allows(1) && !range.allows(11));
    }
}
