//! New tasks healthy in their target groups (DescribeTargetHealth, Elastic Load Balancing
//! v2): a deployment ECS calls COMPLETED counts as done only once every new task's private
//! IP is a healthy target of each of the service's load balancers (in its target group, or
//! the alternate one blue/green moves the new tasks into); one unhealthy in any target group
//! fails it, naming that target group and the reason the load balancer gives.
//!
//! Asked only for a service with target groups whose primary deployment ECS has completed
//! and that the watch has not yet seen healthy: one DescribeTargetHealth per target group,
//! once or a few times per deploy.

use std::collections::HashMap;

use aws_sdk_ecs::types::{Service, Task};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;

use crate::runtime::{RolloutState, RolloutStatus, RuntimeResult};

/// The target group's name in its ARN (`…:targetgroup/NAME/ID`).
pub fn group_name(arn: &str) -> &str {
    arn.split(":targetgroup/").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or(arn)
}

/// The service's target groups: each load balancer's, and its alternate one.
pub fn target_groups(service: &Service) -> Vec<String> {
    let mut groups = Vec::new();
    for lb in service.load_balancers() {
        groups.extend(lb.target_group_arn().map(str::to_string));
        groups.extend(lb.advanced_configuration().and_then(|a| a.alternate_target_group_arn()).map(str::to_string));
    }
    groups.dedup();
    groups
}

/// The private IPv4 address of an awsvpc task.
pub fn task_ip(task: &Task) -> Option<&str> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
}

/// One target's health as the load balancer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    pub group: String,
    pub healthy: bool,
    pub state: String,
    /// `Target.FailedHealthChecks: Health checks failed`, when given.
    pub reason: Option<String>,
}

/// The health of every target of `groups`, by target id (the task IP for awsvpc).
pub async fn describe(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    groups: &[String],
) -> RuntimeResult<HashMap<String, Vec<TargetHealth>>> {
    let mut out: HashMap<String, Vec<TargetHealth>> = HashMap::new();
    for group in groups {
        let answer = elb.describe_target_health().target_group_arn(group).send().await.map_err(|e| {
            crate::runtime::RuntimeError::Unavailable(format!(
                "cannot describe the health of target group {}: {}",
                group_name(group),
                crate::aws::error_text(&e)
            ))
        })?;
        for d in answer.target_health_descriptions() {
            let Some(id) = d.target().and_then(|t| t.id()) else { continue };
            let health = d.target_health();
            let state = health.and_then(|h| h.state());
            let reason = health.and_then(|h| match (h.reason(), h.description()) {
                (Some(r), Some(d)) => Some(format!("{}: {d}", r.as_str())),
                (Some(r), None) => Some(r.as_str().to_string()),
                (None, d) => d.map(str::to_string),
            });
            out.entry(id.to_string()).or_default().push(TargetHealth {
                group: group.clone(),
                healthy: state == Some(&TargetHealthStateEnum::Healthy),
                state: state.map(|s| s.as_str().to_string()).unwrap_or_else(|| "unknown".into()),
                reason,
            });
        }
    }
    Ok(out)
}

/// Hold `rollout` (completed by ECS) to its new tasks' target health: still in progress
/// while one is not yet a healthy target in `groups` target groups (one per load balancer of
/// the service: each registers every task, in its own group or, blue/green, the alternate
/// one), failed when one is unhealthy in any of them.
pub fn apply(
    rollout: &mut RolloutStatus,
    new_tasks: &[&Task],
    health: &HashMap<String, Vec<TargetHealth>>,
    groups: usize,
) {
    if rollout.state != RolloutState::Completed {
        return;
    }
    let mut healthy = 0;
    let ips: Vec<&str> = new_tasks.iter().filter_map(|t| task_ip(t)).collect();
    for ip in &ips {
        let seen = health.get(*ip).map(Vec::as_slice).unwrap_or_default();
        let healthy_in: std::collections::BTreeSet<&str> =
            seen.iter().filter(|h| h.healthy).map(|h| h.group.as_str()).collect();
        if let Some(bad) = seen.iter().find(|h| h.state == "unhealthy") {
            rollout.state = RolloutState::Failed;
            rollout.reason = Some(format!(
                "target group {}: new task {ip} is unhealthy ({})",
                group_name(&bad.group),
                bad.reason.as_deref().unwrap_or("no reason given")
            ));
            return;
        } else if healthy_in.len() >= groups.max(1) {
            healthy += 1;
        }
    }
    if healthy < ips.len() || ips.len() < rollout.desired as usize {
        rollout.state = RolloutState::InProgress;
        rollout.reason = Some(format!("{healthy} of {} new tasks healthy in the target groups", rollout.desired));
    }
}

#[cfg(test)]
mod tests {
    use super::group_name;

    #[test]
    fn names_from_arns() {
        assert_eq!(group_name("arn:aws:elasticloadbalancing:eu-central-1:1:targetgroup/web-blue/8c1d3f5a"), "web-blue");
        assert_eq!(group_name("not-an-arn"), "not-an-arn");
    }
}
