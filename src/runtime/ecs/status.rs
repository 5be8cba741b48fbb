//! From ECS's view to ferry's: services and deployments become [`ServiceStatus`] and
//! [`RolloutStatus`], tasks become [`TaskStatus`].
//!
//! Deliberately literal, because the engine's "done" is strict: a rollout's state is the
//! deployment's `rolloutState`; a deployment that is no longer PRIMARY while still
//! IN_PROGRESS was superseded and is reported FAILED; `failed_tasks` is ECS's own count. A
//! task counts as HEALTHY only when ECS says so — or, for a revision without a container
//! health check (where ECS reports UNKNOWN forever), once it is RUNNING.

use chrono::{DateTime, Utc};

use aws_sdk_ecs::types::{Deployment, HealthStatus, Service, Task};

use super::{revision, EcsRuntime};
use crate::runtime::{
    Health, Lifecycle, RevisionId, RolloutId, RolloutState, RolloutStatus, RuntimeResult, ServiceEvent, ServiceState,
    ServiceStatus, TaskId, TaskKind, TaskStatus,
};

/// The task id at the end of a task ARN.
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The family of the task's task definition.
pub fn task_family(t: &Task) -> Option<&str> {
    revision::arn_family(t.task_definition_arn()?)
}

fn time(t: Option<&aws_sdk_ecs::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn lifecycle(s: Option<&str>) -> Lifecycle {
    match s.unwrap_or("PROVISIONING") {
        "PROVISIONING" => Lifecycle::Provisioning,
        "PENDING" => Lifecycle::Pending,
        "ACTIVATING" => Lifecycle::Activating,
        "RUNNING" => Lifecycle::Running,
        "DEACTIVATING" => Lifecycle::Deactivating,
        "STOPPING" => Lifecycle::Stopping,
        "DEPROVISIONING" => Lifecycle::Deprovisioning,
        "STOPPED" | "DELETED" => Lifecycle::Stopped,
        _ => Lifecycle::Pending,
    }
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// One task as ferry reports it; `app` names the essential container.
pub async fn task_status(rt: &EcsRuntime, app: &str, t: &Task) -> RuntimeResult<TaskStatus> {
    let revision = t.task_definition_arn().unwrap_or_default().to_string();
    let info = rt.revision_info(&revision).await?;
    let last_status = lifecycle(t.last_status());
    let health = match t.health_status() {
        Some(HealthStatus::Healthy) => Health::Healthy,
        Some(HealthStatus::Unhealthy) => Health::Unhealthy,
        // Without a health check ECS says UNKNOWN, and so does ferry: such a task counts
        // once it runs (`TaskStatus::is_ready`), without claiming it is healthy.
        _ => Health::Unknown,
    };
    let name = rt.container_name(app);
    let container = t.containers().iter().find(|c| c.name() == Some(name.as_str())).or_else(|| t.containers().first());
    let kind = if t.group().is_some_and(|g| g.starts_with("service:")) { TaskKind::Service } else { TaskKind::OneOff };
    let ready = last_status == Lifecycle::Running
        && (health == Health::Healthy || !info.has_health_check && health == Health::Unknown);
    Ok(TaskStatus {
        id: TaskId(task_id(t.task_arn().unwrap_or_default()).to_string()),
        kind,
        name: revision::tag_value(t.tags(), revision::TAG_TASK).map(str::to_string),
        revision: RevisionId(revision),
        release: info.release,
        last_status,
        desired_status: lifecycle(t.desired_status()),
        health,
        in_service: ready,
        started_at: time(t.started_at()),
        stopped_at: time(t.stopped_at()),
        exit_code: container.and_then(|c| c.exit_code()),
        stopped_reason: t
            .stopped_reason()
            .map(str::to_string)
            .or_else(|| container.and_then(|c| c.reason()).map(str::to_string)),
        restarts: 0,
        last_check: None,
        has_health_check: info.has_health_check,
        port: None,
        pid: None,
    })
}

/// One deployment as a rollout; `tasks` are the app's tasks, for the healthy count.
pub async fn rollout_status(rt: &EcsRuntime, d: &Deployment, tasks: &[TaskStatus]) -> RuntimeResult<RolloutStatus> {
    let revision = RevisionId(d.task_definition().unwrap_or_default().to_string());
    let info = rt.revision_info(revision.as_str()).await?;
    let primary = d.status() == Some("PRIMARY");
    let (state, reason) = match d.rollout_state().map(|s| s.as_str()) {
        Some("COMPLETED") => (RolloutState::Completed, None),
        Some("FAILED") => {
            (RolloutState::Failed, Some(d.rollout_state_reason().unwrap_or("ECS failed the deployment").to_string()))
        }
        _ if !primary => (RolloutState::Failed, Some("superseded by a newer deployment".to_string())),
        _ => (RolloutState::InProgress, d.rollout_state_reason().map(str::to_string)),
    };
    let healthy =
        tasks.iter().filter(|t| t.kind == TaskKind::Service && t.revision == revision && t.is_ready()).count() as u32;
    let created = time(d.created_at()).unwrap_or_default();
    Ok(RolloutStatus {
        id: RolloutId(d.id().unwrap_or_default().to_string()),
        revision,
        release: info.release,
        primary,
        state,
        reason,
        desired: count(d.desired_count()),
        running: count(d.running_count()),
        pending: count(d.pending_count()),
        healthy,
        failed_tasks: count(d.failed_tasks()),
        created_at: created,
        updated_at: time(d.updated_at()).unwrap_or(created),
        stage: None,
    })
}

/// The status of `app`: its service (`None`: missing) and its tasks.
pub async fn service_status(
    rt: &EcsRuntime,
    app: &str,
    service: Option<&Service>,
    tasks: &[&Task],
) -> RuntimeResult<ServiceStatus> {
    let mut task_statuses = Vec::with_capacity(tasks.len());
    for t in tasks {
        task_statuses.push(task_status(rt, app, t).await?);
    }
    task_statuses.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| a.id.cmp(&b.id)));
    let Some(s) = service else {
        let mut missing = ServiceStatus::missing(app);
        missing.tasks = task_statuses;
        return Ok(missing);
    };
    let mut rollouts = Vec::with_capacity(s.deployments().len());
    for d in s.deployments() {
        rollouts.push(rollout_status(rt, d, &task_statuses).await?);
    }
    rollouts.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    Ok(ServiceStatus {
        app: app.to_string(),
        state: if s.status() == Some("DRAINING") { ServiceState::Draining } else { ServiceState::Active },
        revision: s.task_definition().map(|t| RevisionId(t.to_string())),
        desired: count(s.desired_count()),
        running: count(s.running_count()),
        pending: count(s.pending_count()),
        port: None,
        rollouts,
        tasks: task_statuses,
        events: s
            .events()
            .iter()
            .map(|e| ServiceEvent {
                id: e.id().unwrap_or_default().to_string(),
                time: time(e.created_at()).unwrap_or_default(),
                message: e.message().unwrap_or_default().to_string(),
            })
            .collect(),
    })
}
