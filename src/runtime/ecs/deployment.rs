//! ECS-native deployments (the 2025 deployment APIs): what UpdateService asks for
//! (`deploymentConfiguration`: strategy, bake times, linear and canary steps, circuit breaker,
//! alarms, lifecycle hooks; `loadBalancers[].advancedConfiguration` for the second target
//! group), and what ferry shows and concludes while ECS runs it (DescribeServiceDeployments:
//! the lifecycle stage, the traffic shift, bake time left, a hook waiting, the alarm that
//! fired, a rollback).
//!
//! The watch asks DescribeServiceDeployments only about services whose deployment ECS runs
//! in stages (a strategy other than rolling, a bake time, alarms or hooks), and only while
//! their primary deployment is in progress: a plain rolling deploy costs no request more.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AdvancedConfiguration, CanaryConfiguration, DeploymentAlarms, DeploymentCircuitBreaker, DeploymentConfiguration,
    DeploymentLifecycleHook, DeploymentLifecycleHookStage, DeploymentLifecycleHookStatus,
    DeploymentLifecycleHookTargetType, DeploymentStrategy, LinearConfiguration, LoadBalancer, Service,
    ServiceDeployment, ServiceDeploymentStatus,
};

use crate::config::{DeploySettings, EcsDeploy, HookTarget, Strategy, TargetGroup};
use crate::runtime::{DeploymentStage, RolloutState, RolloutStatus, RuntimeError, RuntimeResult};

/// DescribeServiceDeployments takes at most this many ARNs per call.
pub const DEPLOYMENTS_PER_CALL: usize = 20;

/// The deployment configuration UpdateService and CreateService send for `settings`. The
/// strategy, alarms and hooks are always sent, so that going back to a plain rolling
/// deployment takes them away on ECS too.
pub fn configuration(settings: &DeploySettings) -> RuntimeResult<DeploymentConfiguration> {
    let e = &settings.ecs;
    let minutes = |m: u32| i32::try_from(m).unwrap_or(i32::MAX);
    let mut b = DeploymentConfiguration::builder()
        .minimum_healthy_percent(i32::from(settings.min_healthy.0))
        .maximum_percent(100 + i32::from(settings.max_surge.0))
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder().enable(e.circuit_breaker).rollback(e.circuit_breaker_rollback).build(),
        )
        .strategy(strategy(e.strategy))
        .bake_time_in_minutes(minutes(e.bake_minutes))
        .alarms(
            DeploymentAlarms::builder()
                .set_alarm_names(Some(e.alarms.clone()))
                .enable(!e.alarms.is_empty())
                .rollback(!e.alarms.is_empty())
                .build()
                .map_err(|err| RuntimeError::Invalid(format!("deployment alarms: {err}")))?,
        )
        .set_lifecycle_hooks(Some(e.hooks.iter().map(hook).collect()));
    match e.strategy {
        Strategy::Linear => {
            b = b.linear_configuration(
                LinearConfiguration::builder()
                    .step_percent(f64::from(e.step_percent.0))
                    .step_bake_time_in_minutes(minutes(e.step_bake_minutes))
                    .build(),
            )
        }
        Strategy::Canary => {
            b = b.canary_configuration(
                CanaryConfiguration::builder()
                    .canary_percent(f64::from(e.canary_percent.0))
                    .canary_bake_time_in_minutes(minutes(e.canary_bake_minutes))
                    .build(),
            )
        }
        Strategy::Rolling | Strategy::BlueGreen => {}
    }
    Ok(b.build())
}

fn strategy(s: Strategy) -> DeploymentStrategy {
    match s {
        Strategy::Rolling => DeploymentStrategy::Rolling,
        Strategy::BlueGreen => DeploymentStrategy::BlueGreen,
        Strategy::Linear => DeploymentStrategy::Linear,
        Strategy::Canary => DeploymentStrategy::Canary,
    }
}

fn hook(h: &crate::config::LifecycleHook) -> DeploymentLifecycleHook {
    let stages = h.stages.iter().map(|s| DeploymentLifecycleHookStage::from(s.as_str())).collect();
    let b = DeploymentLifecycleHook::builder().set_lifecycle_stages(Some(stages));
    match &h.target {
        HookTarget::Pause => b.target_type(DeploymentLifecycleHookTargetType::Pause).build(),
        HookTarget::Lambda { arn, role } => {
            b.target_type(DeploymentLifecycleHookTargetType::AwsLambda).hook_target_arn(arn).role_arn(role).build()
        }
    }
}

/// The service's load balancers: each target group with its container and port (the app's
/// unless the entry says otherwise), and for blue/green, linear and canary on the first the
/// alternate target group and listener rules.
pub fn load_balancers(
    app: &str,
    container: &str,
    target_groups: &[TargetGroup],
    port: Option<u16>,
    e: &EcsDeploy,
) -> RuntimeResult<Option<Vec<LoadBalancer>>> {
    if target_groups.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(target_groups.len());
    for (i, tg) in target_groups.iter().enumerate() {
        let port = tg.port.or(port).ok_or_else(|| {
            RuntimeError::Invalid(format!(
                "app {app} has target group {} but no port to register",
                crate::runtime::ecs::load_balancer::group_name(&tg.arn)
            ))
        })?;
        let mut lb = LoadBalancer::builder()
            .target_group_arn(&tg.arn)
            .container_name(tg.container.as_deref().unwrap_or(container))
            .container_port(i32::from(port));
        if i == 0 && e.strategy != Strategy::Rolling {
            lb = lb.advanced_configuration(
                AdvancedConfiguration::builder()
                    .set_alternate_target_group_arn(e.alternate_target_group.clone())
                    .set_production_listener_rule(e.production_listener_rule.clone())
                    .set_test_listener_rule(e.test_listener_rule.clone())
                    .set_role_arn(e.traffic_role.clone())
                    .build(),
            );
        }
        out.push(lb.build());
    }
    Ok(Some(out))
}

/// Whether ECS runs this service's deployments in stages ferry should follow with
/// DescribeServiceDeployments: a strategy other than rolling, a bake time, alarms or hooks.
pub fn staged(service: &Service) -> bool {
    service.deployment_configuration().is_some_and(|c| {
        c.strategy().is_some_and(|s| *s != DeploymentStrategy::Rolling)
            || c.bake_time_in_minutes().unwrap_or(0) > 0
            || c.alarms().is_some_and(|a| a.enable())
            || !c.lifecycle_hooks().is_empty()
    })
}

/// The service deployment a watch should follow: the service's current one while ECS runs
/// the service's deployments in stages and one of them has not completed (in progress, or
/// failed and rolled back — its reason and the alarm that fired are in the service
/// deployment only).
pub fn watched(service: &Service) -> Option<&str> {
    let unfinished = service.deployments().iter().any(|d| d.rollout_state().is_none_or(|r| r.as_str() != "COMPLETED"));
    (unfinished && staged(service)).then_some(service.current_service_deployment()?)
}

/// When the watch first saw a deployment in its bake time (ECS does not say when a stage
/// began), by service deployment ARN.
#[derive(Debug, Default)]
pub struct BakeClock(HashMap<String, Instant>);

impl BakeClock {
    fn began(&mut self, arn: &str, now: Instant) -> Instant {
        *self.0.entry(arn.to_string()).or_insert(now)
    }
}

/// How `sd` changes the rollout ferry watches: the stage shown, and — when ECS rolled it back
/// or stopped it — the failure with ECS's reason and the alarm that fired.
pub fn apply(
    rollout: &mut RolloutStatus,
    sd: &ServiceDeployment,
    stage_name: &str,
    app: &str,
    clock: &mut BakeClock,
    now: Instant,
) {
    let reason = sd.status_reason().unwrap_or("no reason given");
    let fired: Vec<&str> =
        sd.alarms().map(|a| a.triggered_alarm_names().iter().map(String::as_str).collect()).unwrap_or_default();
    let alarm = if fired.is_empty() { String::new() } else { format!(" (alarm {} in ALARM)", fired.join(", ")) };
    match sd.status() {
        Some(
            ServiceDeploymentStatus::RollbackRequested
            | ServiceDeploymentStatus::RollbackInProgress
            | ServiceDeploymentStatus::RollbackSuccessful
            | ServiceDeploymentStatus::RollbackFailed,
        ) => {
            rollout.state = RolloutState::Failed;
            rollout.reason = Some(format!("ECS rolled the deployment back{alarm}: {reason}"));
            return;
        }
        Some(ServiceDeploymentStatus::Stopped | ServiceDeploymentStatus::StopRequested) => {
            rollout.state = RolloutState::Failed;
            rollout.reason = Some(format!("ECS stopped the deployment{alarm}: {reason}"));
            return;
        }
        _ => {}
    }
    let Some(stage) = sd.lifecycle_stage() else { return };
    let started = !matches!(stage.as_str(), "RECONCILE_SERVICE" | "PRE_SCALE_UP" | "SCALE_UP");
    let waiting = sd.lifecycle_hook_details().iter().find(|h| {
        h.status() == Some(&DeploymentLifecycleHookStatus::AwaitingAction)
            && h.target_type() == Some(&DeploymentLifecycleHookTargetType::Pause)
    });
    let words = stage.as_str().to_ascii_lowercase();
    let text = if waiting.is_some() {
        format!(
            "paused at {words}: release it with `ferry continue -s {stage_name} {app}`, or roll back with `ferry abort -s {stage_name}`"
        )
    } else {
        let weight = sd.target_service_revision().and_then(|r| r.requested_production_traffic_weight());
        match stage.as_str() {
            "BAKE_TIME" => {
                let bake = sd.deployment_configuration().and_then(|c| c.bake_time_in_minutes()).unwrap_or(0);
                let total = Duration::from_secs(u64::try_from(bake).unwrap_or(0) * 60);
                let left = total.saturating_sub(
                    now.saturating_duration_since(clock.began(sd.service_deployment_arn().unwrap_or_default(), now)),
                );
                format!("bake time, {} left", minutes_seconds(left))
            }
            "PRODUCTION_TRAFFIC_SHIFT" | "POST_PRODUCTION_TRAFFIC_SHIFT" | "TEST_TRAFFIC_SHIFT" => match weight {
                Some(w) => format!("{words}: {w:.0}% of production traffic on the new tasks"),
                None => words,
            },
            _ => words,
        }
    };
    rollout.stage = Some(DeploymentStage { text, tasks_started: started });
}

/// `3m 20s`, `45s`.
fn minutes_seconds(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl super::EcsRuntime {
    /// The service deployment of `app` ECS runs in stages and has not finished, if any.
    async fn staged_deployment(&self, app: &str) -> RuntimeResult<Option<ServiceDeployment>> {
        let name = self.service_name(app);
        let Some(service) = self.describe_services(std::slice::from_ref(&name)).await?.pop().flatten() else {
            return Err(RuntimeError::NotFound(format!("app {app} has no service {name}")));
        };
        let Some(arn) = watched(&service) else { return Ok(None) };
        let out = self
            .ecs
            .describe_service_deployments()
            .service_deployment_arns(arn)
            .send()
            .await
            .map_err(|e| super::sdk_error(&format!("cannot describe the deployment of service {name}"), e))?;
        Ok(out.service_deployments().first().cloned())
    }

    /// Release the pause hook `app`'s deployment waits at (ContinueServiceDeployment, action
    /// CONTINUE); the stage it was paused at.
    pub async fn continue_deployment(&self, app: &str) -> RuntimeResult<String> {
        let sd = self.staged_deployment(app).await?;
        let hook = sd.as_ref().and_then(|sd| {
            sd.lifecycle_hook_details().iter().find(|h| {
                h.status() == Some(&DeploymentLifecycleHookStatus::AwaitingAction)
                    && h.target_type() == Some(&DeploymentLifecycleHookTargetType::Pause)
            })
        });
        let (Some(sd), Some(hook)) = (sd.as_ref(), hook) else {
            return Err(RuntimeError::Invalid(format!("no deployment of app {app} waits at a pause hook")));
        };
        self.ecs
            .continue_service_deployment()
            .set_service_deployment_arn(sd.service_deployment_arn().map(str::to_string))
            .set_hook_id(hook.hook_id().map(str::to_string))
            .action(aws_sdk_ecs::types::DeploymentLifecycleHookAction::Continue)
            .send()
            .await
            .map_err(|e| super::sdk_error(&format!("cannot continue the deployment of app {app}"), e))?;
        Ok(sd.lifecycle_stage().map(|s| s.as_str().to_ascii_lowercase()).unwrap_or_default())
    }

    /// Ask ECS to roll back `app`'s staged deployment in progress (StopServiceDeployment,
    /// stopType ROLLBACK); whether there was one. One that ended meanwhile is not an error.
    pub(super) async fn stop_staged(&self, app: &str) -> RuntimeResult<bool> {
        let Some(sd) = self.staged_deployment(app).await? else { return Ok(false) };
        let stopped = self
            .ecs
            .stop_service_deployment()
            .set_service_deployment_arn(sd.service_deployment_arn().map(str::to_string))
            .stop_type(aws_sdk_ecs::types::StopServiceDeploymentStopType::Rollback)
            .send()
            .await;
        match stopped {
            Ok(_) => Ok(true),
            Err(e) if aws_sdk_ecs::error::ProvideErrorMetadata::code(&e) == Some("ConflictException") => Ok(false),
            Err(e) => Err(super::sdk_error(&format!("cannot stop the deployment of app {app}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LifecycleHook, Percent};

    /// A canary with a Lambda hook and a pause: what UpdateService gets.
    #[test]
    fn a_canary_with_lambda_and_pause_hooks_is_sent_as_ecs_takes_it() {
        let mut settings = DeploySettings::default();
        let e = &mut settings.ecs;
        e.strategy = Strategy::Canary;
        e.canary_percent = Percent(20);
        e.canary_bake_minutes = 15;
        e.bake_minutes = 5;
        e.alarms = vec!["web-5xx".into()];
        e.hooks = vec![
            LifecycleHook {
                stages: vec!["PRE_SCALE_UP".into(), "POST_TEST_TRAFFIC_SHIFT".into()],
                target: HookTarget::Lambda {
                    arn: "arn:aws:lambda:eu-central-1:1:function:smoke".into(),
                    role: "arn:aws:iam::1:role/hooks".into(),
                },
            },
            LifecycleHook { stages: vec!["POST_PRODUCTION_TRAFFIC_SHIFT".into()], target: HookTarget::Pause },
        ];
        let c = configuration(&settings).unwrap();
        assert_eq!(c.strategy(), Some(&DeploymentStrategy::Canary));
        assert_eq!(c.bake_time_in_minutes(), Some(5));
        let canary = c.canary_configuration().unwrap();
        assert_eq!((canary.canary_percent(), canary.canary_bake_time_in_minutes()), (Some(20.0), Some(15)));
        let alarms = c.alarms().unwrap();
        assert_eq!(
            (alarms.alarm_names(), alarms.enable(), alarms.rollback()),
            (&["web-5xx".to_string()][..], true, true)
        );
        let [lambda, pause] = c.lifecycle_hooks() else { panic!("two hooks: {:?}", c.lifecycle_hooks()) };
        assert_eq!(lambda.target_type(), Some(&DeploymentLifecycleHookTargetType::AwsLambda));
        assert_eq!(lambda.hook_target_arn(), Some("arn:aws:lambda:eu-central-1:1:function:smoke"));
        assert_eq!(lambda.role_arn(), Some("arn:aws:iam::1:role/hooks"));
        assert_eq!(
            lambda.lifecycle_stages(),
            [DeploymentLifecycleHookStage::PreScaleUp, DeploymentLifecycleHookStage::PostTestTrafficShift]
        );
        assert_eq!(pause.target_type(), Some(&DeploymentLifecycleHookTargetType::Pause));
        assert_eq!(pause.hook_target_arn(), None);

        // Back to rolling: the alarms and hooks go too (empty, sent), no canary settings.
        let c = configuration(&DeploySettings::default()).unwrap();
        assert_eq!(c.strategy(), Some(&DeploymentStrategy::Rolling));
        assert!(c.lifecycle_hooks().is_empty() && c.canary_configuration().is_none());
        assert!(!c.alarms().unwrap().enable());
    }
}
