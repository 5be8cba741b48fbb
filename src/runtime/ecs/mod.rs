//! The ECS runtime: [`Runtime`] on AWS ECS (Fargate, awsvpc), with logs from CloudWatch.
//!
//! One stage is one [`EcsRuntime`]: its region, cluster and network settings. Per app:
//!
//! * revisions are task definitions of family `<stage>-<app>` ([`revision`]), tagged
//!   `ferry:stage`, `ferry:app`, `ferry:release`, `ferry:deployment` and `ferry:spec` (a
//!   hash of everything in it, so an identical revision is found and reused);
//! * the service is named `<stage>-<app>` too, tagged `ferry:stage` and `ferry:app`, with
//!   the deployment circuit breaker (with rollback) always on;
//! * a service ferry adopted (`ferry import`, recorded in state and told through
//!   [`Runtime::adopt`]) keeps its own service name, family and container name instead;
//! * a rollout is an ECS deployment; observing maps deployments and tasks ([`status`]);
//! * one-off tasks are RunTask with `startedBy = ferry`; logs are the awslogs streams
//!   `ferry/<app>/<task-id>` in the stage's log group, or the app's own group and stream
//!   prefix (`[apps.NAME.logging]`, told through [`EcsRuntime::tell_logging`]) ([`logs`]).
//!
//! Like every runtime it only starts, stops and reports: polling, timeouts and rollback
//! decisions are the apply engine's. What it does to stay cheap under that polling:
//!
//! * the engine's watch (`observe_changes`) first looks when the watched rollouts should be
//!   done by how long each service's previous one took (UpdateService's answer holds it:
//!   [`expected_done`]; 2 s after they start for a new service, never later than the
//!   deploy's timeout or 2 minutes), then at a pace its deployments' progress gives ([`pace`]: as long again as a deployment without a
//!   running task has taken, when the rest should run for one part-way, soon once all run;
//!   2 s to 15 s); each look is ⌈services/10⌉ DescribeServices, plus — only once a
//!   service's primary deployment has tasks running, has failed tasks or has ended — one
//!   ListTasks of desired RUNNING tasks (of the family for one service; of the cluster for
//!   several when one page holds the cluster's tasks, else one per family) and ⌈tasks/100⌉
//!   DescribeTasks; stopped tasks are listed only when a deployment counts
//!   failed tasks or a task of the primary revision seen at the last look is gone;
//! * a deploy makes no look of its own: UpdateService's answer names the deployment it
//!   made, and recorded state names the revision serving before ([`Runtime::register_recorded`]);
//! * revisions state recorded are reused after one DescribeTaskDefinition (still ACTIVE,
//!   same `ferry:spec`), or none for the one serving now; a spec state never saw is registered
//!   at once, with its `ferry:deployment` tag, and the family is searched only when state
//!   knows no revision of the app;
//! * task definitions are described once per process (they are immutable), and throttled
//!   calls are retried by the SDK's standard strategy (exponential backoff with full jitter)
//!   with more attempts than its default.

pub mod alarms;
pub mod autoscaling;
pub mod deployment;
pub mod drift;
pub mod images;
pub mod load_balancer;
pub mod logs;
pub mod revision;
pub mod service;
pub mod status;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, KeyValuePair, LaunchType,
    NetworkConfiguration, Service, TaskDefinitionField, TaskOverride,
};

use crate::config::{self, DeploySettings};
use crate::runtime::live::LiveService;
use crate::runtime::{
    LogQuery, LogStream, RecordedRevisions, RevisionId, RevisionSpec, RolloutId, Runtime, RuntimeError, RuntimeResult,
    ServiceStatus, TaskId, TaskSpec,
};
use revision::{family, tag, Rendered, StageSettings, TAG_APP, TAG_DEPLOYMENT, TAG_SPEC, TAG_STAGE, TAG_TASK};

/// DescribeServices takes at most this many services per call.
const SERVICES_PER_CALL: usize = 10;
/// DescribeTasks takes at most this many tasks per call.
const TASKS_PER_CALL: usize = 100;
/// How many of a family's newest ACTIVE revisions are compared before registering a new one.
const REUSE_WINDOW: usize = 10;
/// Who starts one-off tasks.
pub const STARTED_BY: &str = "ferry";
/// The engine's watch paces itself for the local agent (200 ms, backing off to 1 s); ECS is
/// a metered API whose rollouts take minutes, so it is looked at this many times slower…
const POLL_PACE: u32 = 10;
/// …within these bounds: about 2 s at first, 10 s at most.
const POLL_FIRST: Duration = Duration::from_secs(2);
const POLL_MAX: Duration = Duration::from_secs(10);

/// What ferry remembers about a registered task definition (immutable, so cached forever).
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionInfo {
    pub release: u64,
    pub app: String,
    pub has_health_check: bool,
    pub port: Option<u16>,
    pub target_group: Option<String>,
    pub grace_period_s: i32,
    /// The `ferry:spec` hash it was registered with (`None`: not registered by ferry, or
    /// taken from recorded state unchecked).
    pub spec: Option<String>,
    /// Whether it is ACTIVE (an INACTIVE one is never reused).
    pub active: bool,
    /// Its `ferry:deployment` tag, as far as this process knows.
    pub label: Option<String>,
}

/// The ECS runtime of one stage.
pub struct EcsRuntime {
    stage: String,
    settings: config::EcsRuntime,
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    revisions: Mutex<HashMap<String, RevisionInfo>>,
    /// Application Auto Scaling, for apps with an autoscaled `scale` (`None`: a runtime
    /// built from clients without it, which refuses autoscaling).
    autoscaling: Option<aws_sdk_applicationautoscaling::Client>,
    /// The wait before the next watch look, from the progress of the deployments the last
    /// look saw, with the apps it looked at (see [`pace`]).
    pace: Mutex<Option<(Vec<String>, Duration)>>,
    /// When each app's deployment made by this process should be done, by the pace of the
    /// service's previous rollout (see [`expected_done`]): the first look waits for it.
    expected: Mutex<HashMap<String, std::time::SystemTime>>,
    /// Each app's `[apps.NAME.logging]`, where `logs` reads (see [`EcsRuntime::tell_logging`]);
    /// an app not here logs to the stage's group.
    logging: Mutex<HashMap<String, Option<crate::config::ecs_task::Logging>>>,
    /// Tasks of services' primary revisions seen desired RUNNING at the last watch look, by
    /// ARN with their family: one missing from the next look of its family stopped, and the
    /// stopped tasks are listed then.
    watched_tasks: Mutex<HashMap<String, String>>,
    /// Adopted services by app: their own names instead of `<stage>-<app>`.
    adopted: Mutex<HashMap<String, crate::state::AdoptedService>>,
    /// When the watch first saw each staged deployment in its bake time.
    bake_clock: Mutex<deployment::BakeClock>,
    /// Elastic Load Balancing, for the new tasks' target health (`None`: not checked).
    elb: Option<aws_sdk_elasticloadbalancingv2::Client>,
    /// Deployments whose new tasks were seen healthy in their target groups.
    targets_healthy: Mutex<std::collections::HashSet<String>>,
    /// By app: the revision recorded state names as serving, and the tags its release
    /// declared (what a deploy's tag reconciliation starts from, see [`service`]).
    serving: Mutex<service::ServingTags>,
}

/// The ECS client configuration ferry uses on top of `sdk`: up to 8 attempts with jittered
/// exponential backoff from 200 ms, since a poll loop over many services can meet throttling.
/// Public so tests can add an interceptor before building.
pub fn ecs_config(sdk: &SdkConfig) -> aws_sdk_ecs::config::Builder {
    aws_sdk_ecs::config::Builder::from(sdk).retry_config(
        RetryConfig::standard()
            .with_max_attempts(8)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(10)),
    )
}

/// The SDK configuration for a stage in `region`: the standard credential chain, with
/// `AWS_ENDPOINT_URL` honoured (see [`crate::aws`]).
pub async fn load_sdk_config(region: &str) -> SdkConfig {
    crate::aws::load_config(&crate::aws::AwsSettings { region: Some(region.to_string()), ..Default::default() }).await
}

impl EcsRuntime {
    /// The runtime of `stage` with clients built from `sdk`.
    pub fn new(stage: &str, settings: &config::EcsRuntime, sdk: &SdkConfig) -> Self {
        Self::from_clients(
            stage,
            settings,
            aws_sdk_ecs::Client::from_conf(ecs_config(sdk).build()),
            aws_sdk_cloudwatchlogs::Client::new(sdk),
        )
        .with_elb(crate::aws::elbv2_client(sdk))
        .with_autoscaling(crate::aws::autoscaling_client(sdk))
    }

    /// This runtime, holding completed deployments to their new tasks' target health.
    pub fn with_elb(mut self, elb: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        self.elb = Some(elb);
        self
    }

    /// This runtime with `client` for Application Auto Scaling.
    pub fn with_autoscaling(mut self, client: aws_sdk_applicationautoscaling::Client) -> Self {
        self.autoscaling = Some(client);
        self
    }

    /// The runtime of `stage` with the given clients (tests wrap the ECS one).
    pub fn from_clients(
        stage: &str,
        settings: &config::EcsRuntime,
        ecs: aws_sdk_ecs::Client,
        logs: aws_sdk_cloudwatchlogs::Client,
    ) -> Self {
        EcsRuntime {
            stage: stage.to_string(),
            settings: settings.clone(),
            ecs,
            logs,
            revisions: Mutex::default(),
            autoscaling: None,
            pace: Mutex::default(),
            expected: Mutex::default(),
            logging: Mutex::default(),
            watched_tasks: Mutex::default(),
            adopted: Mutex::default(),
            bake_clock: Mutex::default(),
            elb: None,
            targets_healthy: Mutex::default(),
            serving: Mutex::default(),
        }
    }

    /// Where `app`'s container logs (`[apps.NAME.logging]`; `None`: the stage's log group),
    /// so that [`Runtime::logs`] reads its own group and stream prefix.
    pub fn tell_logging(&self, app: &str, logging: Option<&crate::config::ecs_task::Logging>) {
        self.logging.lock().expect("app logging").insert(app.to_string(), logging.cloned());
    }

    /// The service name of `app`: `<stage>-<app>`, or an adopted service's own.
    pub fn service_name(&self, app: &str) -> String {
        self.adopted_names(app).map_or_else(|| family(&self.stage, app), |a| a.service)
    }

    /// The task definition family of `app`: `<stage>-<app>`, or an adopted service's own.
    pub fn family_name(&self, app: &str) -> String {
        self.adopted_names(app).map_or_else(|| family(&self.stage, app), |a| a.family)
    }

    /// The name of the container that runs `app`: the app's, or an adopted service's own.
    pub fn container_name(&self, app: &str) -> String {
        self.adopted_names(app).map_or_else(|| app.to_string(), |a| a.container)
    }

    fn adopted_names(&self, app: &str) -> Option<crate::state::AdoptedService> {
        self.adopted.lock().expect("adopted services").get(app).cloned()
    }

    /// `spec` rendered for this stage, in an adopted service's family and container.
    pub fn render(&self, spec: &RevisionSpec) -> Rendered {
        let mut rendered = Rendered::new(spec, &self.stage_settings());
        if let Some(a) = self.adopted_names(&spec.app) {
            // A sidecar waiting for the app's container names it as the file does, by the
            // app's name: in the task it has the adopted container's.
            for sidecar in rendered.sidecars.values_mut() {
                if let Some(condition) = sidecar.depends_on.remove(&spec.app) {
                    sidecar.depends_on.insert(a.container.clone(), condition);
                }
            }
            rendered.family = a.family;
            rendered.container = a.container;
        }
        rendered
    }

    fn stage_settings(&self) -> StageSettings<'_> {
        StageSettings {
            stage: &self.stage,
            region: &self.settings.region,
            execution_role: self.settings.execution_role.as_deref(),
            task_role: self.settings.task_role.as_deref(),
            log_group: self.settings.log_group.as_deref(),
        }
    }

    /// The stage's log group.
    pub fn log_group(&self) -> String {
        revision::log_group(&self.stage, self.settings.log_group.as_deref())
    }

    fn network(&self) -> RuntimeResult<NetworkConfiguration> {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.settings.subnets.clone()))
            .set_security_groups(Some(self.settings.security_groups.clone()))
            .assign_public_ip(if self.settings.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
    }

    /// What ferry knows about a task definition; described (with tags) on first use.
    pub async fn revision_info(&self, arn: &str) -> RuntimeResult<RevisionInfo> {
        if let Some(info) = self.revisions.lock().expect("revision cache").get(arn) {
            return Ok(info.clone());
        }
        let out = self.describe_task_definition(arn).await?;
        let td = out.task_definition().ok_or_else(|| RuntimeError::NotFound(format!("no task definition {arn}")))?;
        let container = td.container_definitions().first();
        let info = RevisionInfo {
            release: revision::tag_value(out.tags(), revision::TAG_RELEASE).and_then(|r| r.parse().ok()).unwrap_or(0),
            app: revision::tag_value(out.tags(), TAG_APP)
                .map(str::to_string)
                .or_else(|| container.and_then(|c| c.name()).map(str::to_string))
                .unwrap_or_default(),
            has_health_check: container.is_some_and(|c| c.health_check().is_some()),
            port: container
                .and_then(|c| c.port_mappings().first())
                .and_then(|p| p.container_port())
                .and_then(|p| u16::try_from(p).ok()),
            target_group: revision::tag_value(out.tags(), revision::TAG_TARGET_GROUP).map(str::to_string),
            grace_period_s: container.and_then(|c| c.health_check()).and_then(|h| h.start_period()).unwrap_or(0),
            spec: revision::tag_value(out.tags(), TAG_SPEC).map(str::to_string),
            active: td.status() != Some(&aws_sdk_ecs::types::TaskDefinitionStatus::Inactive),
            label: revision::tag_value(out.tags(), TAG_DEPLOYMENT).map(str::to_string),
        };
        let arn = td.task_definition_arn().unwrap_or(arn).to_string();
        self.revisions.lock().expect("revision cache").insert(arn, info.clone());
        Ok(info)
    }

    /// DescribeTaskDefinition of `arn`, with its tags.
    async fn describe_task_definition(
        &self,
        arn: &str,
    ) -> RuntimeResult<aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput> {
        self.ecs
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| match sdk_error(&format!("cannot describe task definition {arn}"), e) {
                // ECS answers a task definition it does not have with a ClientException
                // ("Unable to describe task definition"): for this call, that is a revision
                // the runtime never issued, as the local runtime reports it.
                RuntimeError::Invalid(text) => RuntimeError::NotFound(text),
                other => other,
            })
    }

    /// Remember `arn` as the revision of `r`: `hash` when its `ferry:spec` is known to be
    /// that, `label` its `ferry:deployment` tag when known. A label already known is kept.
    fn remember(&self, arn: &str, r: &Rendered, hash: Option<&str>, label: Option<String>) {
        let mut cache = self.revisions.lock().expect("revision cache");
        let label = label.or_else(|| cache.get(arn).and_then(|i| i.label.clone()));
        let info = RevisionInfo {
            release: r.release,
            app: r.app.clone(),
            has_health_check: r.health_command.is_some(),
            port: r.port,
            target_group: r.target_group.clone(),
            grace_period_s: r.health_start_period_s,
            spec: hash.map(str::to_string),
            active: true,
            label,
        };
        cache.insert(arn.to_string(), info);
    }

    /// A revision of the family this process registered or checked whose `ferry:spec` is `hash`.
    fn seen(&self, family: &str, hash: &str) -> Option<String> {
        self.revisions.lock().expect("revision cache").iter().find_map(|(arn, info)| {
            (info.spec.as_deref() == Some(hash) && info.active && revision::arn_family(arn) == Some(family))
                .then(|| arn.clone())
        })
    }

    /// An ACTIVE revision of the family whose `ferry:spec` tag is `hash`, looking at the
    /// newest [`REUSE_WINDOW`] only — or one this process already saw.
    async fn find_registered(&self, family: &str, hash: &str) -> RuntimeResult<Option<String>> {
        if let Some(seen) = self.seen(family, hash) {
            return Ok(Some(seen));
        }
        let mut arns: Vec<String> = Vec::new();
        let mut pages = self
            .ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("cannot list task definitions", e))?;
            // familyPrefix is a prefix: `prod-web` also lists `prod-web-worker`.
            arns.extend(
                page.task_definition_arns().iter().filter(|a| revision::arn_family(a) == Some(family)).cloned(),
            );
        }
        arns.sort_by_key(|a| std::cmp::Reverse(revision::revision_number(a)));
        // Described once per process (and not at all when registered by it): a deploy looks
        // for both its target and the previous revision.
        for arn in arns.into_iter().take(REUSE_WINDOW) {
            if self.revision_info(&arn).await?.spec.as_deref() == Some(hash) {
                return Ok(Some(arn));
            }
        }
        Ok(None)
    }

    /// What ferry knows about `arn` with its `ferry:spec` checked: described unless this
    /// process registered or described it (an entry taken from state unchecked is not enough).
    async fn checked_info(&self, arn: &str) -> RuntimeResult<RevisionInfo> {
        let cached = self.revisions.lock().expect("revision cache").get(arn).cloned();
        if let Some(info) = cached.filter(|i| i.spec.is_some()) {
            return Ok(info);
        }
        self.revisions.lock().expect("revision cache").remove(arn);
        self.revision_info(arn).await
    }

    /// The services of `names` (each `None` when missing or INACTIVE), ⌈n/10⌉ calls.
    async fn describe_services(&self, names: &[String]) -> RuntimeResult<Vec<Option<Service>>> {
        let mut found: HashMap<String, Service> = HashMap::new();
        for chunk in names.chunks(SERVICES_PER_CALL) {
            let out = self
                .ecs
                .describe_services()
                .cluster(&self.settings.cluster)
                .set_services(Some(chunk.to_vec()))
                .include(aws_sdk_ecs::types::ServiceField::Tags)
                .send()
                .await
                .map_err(|e| sdk_error("cannot describe services", e))?;
            for s in out.services() {
                if s.status() != Some("INACTIVE") {
                    if let Some(name) = s.service_name() {
                        found.insert(name.to_string(), s.clone());
                    }
                }
            }
        }
        Ok(names.iter().map(|n| found.remove(n)).collect())
    }

    /// The services of `apps` that ECS is still deleting (DRAINING): a service of that name
    /// cannot be created until they are INACTIVE.
    pub async fn draining_services(&self, apps: &[String]) -> RuntimeResult<Vec<String>> {
        let names: Vec<String> = apps.iter().map(|a| self.service_name(a)).collect();
        let found = self.describe_services(&names).await?;
        Ok(names
            .into_iter()
            .zip(found)
            .filter(|(_, s)| s.as_ref().and_then(|s| s.status()) == Some("DRAINING"))
            .map(|(n, _)| n)
            .collect())
    }

    /// Every service of the cluster that belongs to this stage, by app.
    async fn stage_services(&self) -> RuntimeResult<Vec<(String, Service)>> {
        let mut arns = Vec::new();
        let mut pages = self.ecs.list_services().cluster(&self.settings.cluster).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("cannot list services", e))?;
            // `…:service/<cluster>/<name>`: describe by name, as `describe_services` maps them.
            arns.extend(page.service_arns().iter().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()));
        }
        let described = self.describe_services(&arns).await?;
        let adopted: HashMap<String, String> = self
            .adopted
            .lock()
            .expect("adopted services")
            .iter()
            .map(|(app, a)| (a.service.clone(), app.clone()))
            .collect();
        Ok(described
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let app = match adopted.get(s.service_name().unwrap_or_default()) {
                    Some(app) => app.clone(),
                    None if revision::tag_value(s.tags(), TAG_STAGE) == Some(self.stage.as_str()) => {
                        revision::tag_value(s.tags(), TAG_APP)?.to_string()
                    }
                    None => return None,
                };
                Some((app, s))
            })
            .collect())
    }

    /// Current and recently stopped tasks: of one family, or of the whole cluster.
    async fn tasks(&self, family: Option<&str>) -> RuntimeResult<Vec<aws_sdk_ecs::types::Task>> {
        let mut arns = self.list_tasks(family, DesiredStatus::Running).await?;
        let stopped = self.list_tasks(family, DesiredStatus::Stopped).await?;
        // A task that stopped between the two listings is in both.
        let mut unique: std::collections::HashSet<String> = arns.iter().cloned().collect();
        arns.extend(stopped.into_iter().filter(|a| unique.insert(a.clone())));
        self.describe_tasks(&arns).await
    }

    /// The ARNs of tasks of `family` (or of the whole cluster) whose desired status is `desired`.
    async fn list_tasks(&self, family: Option<&str>, desired: DesiredStatus) -> RuntimeResult<Vec<String>> {
        let mut arns = Vec::new();
        let mut pages = self
            .ecs
            .list_tasks()
            .cluster(&self.settings.cluster)
            .set_family(family.map(str::to_string))
            .desired_status(desired)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            arns.extend(page.map_err(|e| sdk_error("cannot list tasks", e))?.task_arns().iter().cloned());
        }
        Ok(arns)
    }

    /// The ARNs of the tasks of the `busy` services' families whose desired status is
    /// `desired`: of the family for one; for several, of the cluster when one page holds them
    /// all (one request), else family by family — in a big cluster most tasks are others',
    /// and describing them all would cost far more than a listing per family.
    async fn list_watched(&self, busy: &[String], desired: DesiredStatus) -> RuntimeResult<Vec<String>> {
        if let [one] = busy {
            return self.list_tasks(Some(one.as_str()), desired).await;
        }
        let page = self
            .ecs
            .list_tasks()
            .cluster(&self.settings.cluster)
            .desired_status(desired.clone())
            .send()
            .await
            .map_err(|e| sdk_error("cannot list tasks", e))?;
        if page.next_token().is_none() {
            return Ok(page.task_arns().to_vec());
        }
        let mut arns = Vec::new();
        for family in busy {
            arns.extend(self.list_tasks(Some(family.as_str()), desired.clone()).await?);
        }
        Ok(arns)
    }

    /// The tasks of `arns`, ⌈n/100⌉ calls.
    async fn describe_tasks(&self, arns: &[String]) -> RuntimeResult<Vec<aws_sdk_ecs::types::Task>> {
        let mut tasks = Vec::new();
        for chunk in arns.chunks(TASKS_PER_CALL) {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(&self.settings.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .include(aws_sdk_ecs::types::TaskField::Tags)
                .send()
                .await
                .map_err(|e| sdk_error("cannot describe tasks", e))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }

    /// The statuses of `apps` from their services and the tasks listed (by family).
    async fn statuses(
        &self,
        services: Vec<(String, Option<Service>)>,
        tasks: &[aws_sdk_ecs::types::Task],
    ) -> RuntimeResult<Vec<ServiceStatus>> {
        let mut out = Vec::with_capacity(services.len());
        let staged = self.service_deployments(&services).await?;
        for (app, service) in services {
            let family = self.family_name(&app);
            let of_app: Vec<&aws_sdk_ecs::types::Task> =
                tasks.iter().filter(|t| status::task_family(t) == Some(family.as_str())).collect();
            let mut st = status::service_status(self, &app, service.as_ref(), &of_app).await?;
            // A deployment ECS runs in stages: its stage, or ECS's rollback, on the primary rollout.
            let sd = service.as_ref().and_then(|s| staged.get(s.current_service_deployment()?));
            if let Some(sd) = sd {
                let mut clock = self.bake_clock.lock().expect("bake clock");
                // The deployment(s) it concerns: those not completed (ECS's rollback to the
                // previous revision is a completed one beside the failed deployment).
                for rollout in st.rollouts.iter_mut().filter(|r| r.state != crate::runtime::RolloutState::Completed) {
                    deployment::apply(rollout, sd, &self.stage, &app, &mut clock, std::time::Instant::now());
                }
            }
            if let Some(service) = &service {
                self.hold_to_target_health(service, &mut st, &of_app).await?;
            }
            out.push(st);
        }
        Ok(out)
    }

    /// A primary deployment ECS completed counts once its new tasks are healthy targets
    /// ([`load_balancer`]); asked until seen so, for services with target groups only.
    async fn hold_to_target_health(
        &self,
        service: &Service,
        st: &mut ServiceStatus,
        tasks: &[&aws_sdk_ecs::types::Task],
    ) -> RuntimeResult<()> {
        let Some(elb) = &self.elb else { return Ok(()) };
        let groups = load_balancer::target_groups(service);
        let Some(rollout) = st.rollouts.iter_mut().find(|r| r.primary) else { return Ok(()) };
        if groups.is_empty()
            || rollout.state != crate::runtime::RolloutState::Completed
            || self.targets_healthy.lock().expect("target health").contains(rollout.id.as_str())
        {
            return Ok(());
        }
        let new: Vec<&aws_sdk_ecs::types::Task> = tasks
            .iter()
            .copied()
            .filter(|t| {
                t.task_definition_arn() == Some(rollout.revision.as_str()) && t.desired_status() == Some("RUNNING")
            })
            .collect();
        let health = load_balancer::describe(elb, &groups).await?;
        load_balancer::apply(rollout, &new, &health, service.load_balancers().len());
        if rollout.state == crate::runtime::RolloutState::Completed {
            self.targets_healthy.lock().expect("target health").insert(rollout.id.to_string());
        }
        Ok(())
    }

    /// One look of the engine's watch at `apps` (see the module doc): their services, and
    /// their tasks only where the primary deployment's counts say they matter.
    async fn watch_look(&self, apps: &[String]) -> RuntimeResult<Vec<ServiceStatus>> {
        let names: Vec<String> = apps.iter().map(|a| self.service_name(a)).collect();
        let services: Vec<(String, Option<Service>)> =
            apps.iter().cloned().zip(self.describe_services(&names).await?).collect();
        let primary = |s: &Service| s.deployments().iter().find(|d| d.status() == Some("PRIMARY")).cloned();
        let deployments: Vec<aws_sdk_ecs::types::Deployment> =
            services.iter().filter_map(|(_, s)| s.as_ref()).filter_map(primary).collect();
        *self.pace.lock().expect("pace") = pace(&deployments, std::time::SystemTime::now()).map(|p| (apps.to_vec(), p));
        // Before a primary deployment runs a task, counts one failed or ends, its tasks
        // change no verdict: nothing new can be healthy or have stopped.
        // By task definition family, which tasks are listed and matched by.
        let busy: Vec<String> = services
            .iter()
            .filter(|(_, s)| {
                s.as_ref().is_some_and(|s| {
                    primary(s).is_none_or(|d| {
                        d.running_count() > 0
                            || d.failed_tasks() > 0
                            || d.rollout_state().is_some_and(|r| r.as_str() != "IN_PROGRESS")
                    })
                })
            })
            .map(|(app, _)| self.family_name(app))
            .collect();
        if busy.is_empty() {
            return self.statuses(services, &[]).await;
        }
        let mut arns = self.list_watched(&busy, DesiredStatus::Running).await?;
        // Failed tasks of any deployment not completed: ECS may have rolled back before the
        // first look (its new PRIMARY is the previous revision again), and the failed
        // deployment's stopped tasks say why.
        let failing = services.iter().filter_map(|(_, s)| s.as_ref()).any(|s| {
            s.deployments()
                .iter()
                .any(|d| d.failed_tasks() > 0 && d.rollout_state().is_none_or(|r| r.as_str() != "COMPLETED"))
        });
        let gone = {
            let listed: std::collections::HashSet<&String> = arns.iter().collect();
            let seen = self.watched_tasks.lock().expect("watched tasks");
            seen.iter().any(|(arn, of)| busy.contains(of) && !listed.contains(arn))
        };
        if failing || gone {
            let stopped = self.list_watched(&busy, DesiredStatus::Stopped).await?;
            // A task that stopped between the two listings is in both.
            arns.extend(stopped.into_iter().filter(|a| !arns.contains(a)).collect::<Vec<_>>());
        }
        let tasks = self.describe_tasks(&arns).await?;
        let on_primary: std::collections::HashSet<String> =
            services.iter().filter_map(|(_, s)| s.as_ref()?.task_definition().map(str::to_string)).collect();
        *self.watched_tasks.lock().expect("watched tasks") = tasks
            .iter()
            .filter(|t| t.desired_status() == Some("RUNNING"))
            .filter(|t| t.task_definition_arn().is_some_and(|d| on_primary.contains(d)))
            .filter_map(|t| Some((t.task_arn()?.to_string(), status::task_family(t)?.to_string())))
            .collect();
        self.statuses(services, &tasks).await
    }

    /// The service deployments (DescribeServiceDeployments, ⌈n/20⌉ calls) of the services
    /// whose deployment ECS runs in stages and is in progress ([`deployment::watched`]).
    async fn service_deployments(
        &self,
        services: &[(String, Option<Service>)],
    ) -> RuntimeResult<HashMap<String, aws_sdk_ecs::types::ServiceDeployment>> {
        let arns: Vec<String> =
            services.iter().filter_map(|(_, s)| deployment::watched(s.as_ref()?)).map(str::to_string).collect();
        let mut found = HashMap::new();
        for chunk in arns.chunks(deployment::DEPLOYMENTS_PER_CALL) {
            let out = self
                .ecs
                .describe_service_deployments()
                .set_service_deployment_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_error("cannot describe service deployments", e))?;
            for sd in out.service_deployments() {
                if let Some(arn) = sd.service_deployment_arn() {
                    found.insert(arn.to_string(), sd.clone());
                }
            }
        }
        Ok(found)
    }
}

/// The slowest pace of the watch: the AWS CLI's `services-stable` waiter looks every 15 s.
const POLL_SLOWEST: Duration = Duration::from_secs(15);

/// The wait before the next look at `deployments` (the services' primary ones), from how
/// far each got (`None`: none is rolling out). One that runs no task yet is looked at again
/// after as long as it has taken so far (Fargate takes tens of seconds to start a task, and
/// a look every 2 s of a 5-minute rollout would cost 150 requests); one part-way through,
/// when its pace says the rest will run; one whose tasks all run (health checks, draining)
/// soon. The soonest of them, between [`POLL_FIRST`] and [`POLL_SLOWEST`].
fn pace(deployments: &[aws_sdk_ecs::types::Deployment], now: std::time::SystemTime) -> Option<Duration> {
    let now = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    deployments
        .iter()
        .filter(|d| d.rollout_state().is_none_or(|r| r.as_str() == "IN_PROGRESS"))
        .map(|d| {
            let (desired, running) = (d.desired_count().max(0) as f64, d.running_count().max(0) as f64);
            let elapsed = d.created_at().map_or(0.0, |t| (now - t.as_secs_f64()).max(0.0));
            let wait = if running >= desired {
                0.0
            } else if running == 0.0 {
                elapsed
            } else {
                elapsed * (desired - running) / running
            };
            Duration::from_secs_f64(wait.min(POLL_SLOWEST.as_secs_f64())).clamp(POLL_FIRST, POLL_SLOWEST)
        })
        .min()
}

/// When the PRIMARY deployment of `service` (as UpdateService answers) should be done: as
/// long after it was made as the service's previous deployment took from creation to its
/// last update (COMPLETED, the old tasks stopped), and a quarter more, at least a second —
/// a look just before the end costs another, and timestamps may be whole seconds — but
/// never after `limit` (the deploy's timeout, judged at a look) nor [`FIRST_LOOK_MAX`]. A
/// service's rollouts take about as long each time (the same image, start-up, health checks
/// and draining). `None` without a completed previous deployment (a new service, or one
/// whose last rollout failed).
fn expected_done(service: &Service, limit: Duration) -> Option<std::time::SystemTime> {
    let made = service.deployments().iter().find(|d| d.status() == Some("PRIMARY"))?.created_at()?;
    let previous = service
        .deployments()
        .iter()
        .find(|d| d.status() != Some("PRIMARY") && d.rollout_state().is_some_and(|r| r.as_str() == "COMPLETED"))?;
    let took = (previous.updated_at()?.as_secs_f64() - previous.created_at()?.as_secs_f64()).max(0.0);
    let wait = Duration::from_secs_f64(took + (took / 4.0).max(1.0)).min(limit).min(FIRST_LOOK_MAX);
    Some(std::time::UNIX_EPOCH + Duration::from_secs_f64(made.as_secs_f64().max(0.0)) + wait)
}

/// The longest wait before the first look at a rollout: past it, a look shows how it goes.
const FIRST_LOOK_MAX: Duration = Duration::from_secs(120);

/// The wait before the first look at `apps`: until every one of them with an expected end
/// ([`expected_done`]) should be done — an earlier look only finds rollouts under way, and
/// ECS's circuit breaker, not the watch, stops one that fails — at least [`POLL_FIRST`].
/// `None` when none has one.
fn first_look(
    expected: &HashMap<String, std::time::SystemTime>,
    apps: &[String],
    now: std::time::SystemTime,
) -> Option<Duration> {
    let last = apps.iter().filter_map(|a| expected.get(a)).max()?;
    Some(last.duration_since(now).unwrap_or_default().max(POLL_FIRST))
}

/// The PRIMARY deployment of a service as a rollout id.
fn primary_rollout(service: Option<&Service>, what: &str) -> RuntimeResult<RolloutId> {
    service
        .and_then(|s| s.deployments().iter().find(|d| d.status() == Some("PRIMARY")))
        .and_then(|d| d.id())
        .map(|id| RolloutId(id.to_string()))
        .ok_or_else(|| RuntimeError::Unavailable(format!("ECS returned no primary deployment after {what}")))
}

/// An SDK error as a [`RuntimeError`]: not-found and invalid-request codes keep their
/// meaning; the rest (network, throttling after every retry, server errors) is unavailable.
pub(crate) fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> RuntimeError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = e.code().map(str::to_string);
    let text = format!("{what}: {}", crate::aws::error_text(&e));
    match code.as_deref() {
        Some(
            "ClusterNotFoundException"
            | "ServiceNotFoundException"
            | "ServiceNotActiveException"
            | "ResourceNotFoundException"
            | "TaskDefinitionNotFoundException",
        ) => RuntimeError::NotFound(text),
        Some(
            "InvalidParameterException" | "ClientException" | "AccessDeniedException" | "PlatformUnknownException",
        ) => RuntimeError::Invalid(text),
        _ => RuntimeError::Unavailable(text),
    }
}

#[async_trait::async_trait]
impl Runtime for EcsRuntime {
    /// ECS never restarts a task: one that stops is gone, and the service starts another.
    fn restarts_in_place(&self) -> bool {
        false
    }

    fn observe_is_cheap(&self) -> bool {
        false
    }

    fn adopt(&self, adopted: &std::collections::BTreeMap<String, crate::state::AdoptedService>) {
        let mut names = self.adopted.lock().expect("adopted services");
        names.extend(adopted.iter().map(|(app, a)| (app.clone(), a.clone())));
    }

    async fn register_revision(&self, spec: &RevisionSpec) -> RuntimeResult<RevisionId> {
        self.register_recorded(spec, &RecordedRevisions::default()).await
    }

    async fn register_recorded(&self, spec: &RevisionSpec, recorded: &RecordedRevisions) -> RuntimeResult<RevisionId> {
        if let Some(serving) = recorded.matching.first().filter(|_| recorded.serving) {
            self.note_serving(&spec.app, serving.as_str(), &spec.config.deploy.ecs_task.tags);
        }
        let rendered = self.render(spec);
        let hash = rendered.hash();
        if let Some(arn) = self.seen(&rendered.family, &hash) {
            return Ok(RevisionId(arn));
        }
        // The revision serving now, to return to: it ran until now, take it as is.
        if let Some(serving) = recorded.matching.first().filter(|_| recorded.serving) {
            self.remember(serving.as_str(), &rendered, None, None);
            return Ok(serving.clone());
        }
        // One state recorded for this spec: still ACTIVE and identical (the stage's roles or
        // log group may have changed since)?
        for arn in &recorded.matching {
            if let Ok(info) = self.checked_info(arn.as_str()).await {
                if info.active && info.spec.as_deref() == Some(hash.as_str()) {
                    return Ok(arn.clone());
                }
            }
        }
        // State knows the app's revisions but none for this spec: ferry never registered
        // it, so there is nothing to search for.
        if !recorded.any {
            if let Some(arn) = self.find_registered(&rendered.family, &hash).await? {
                self.remember(&arn, &rendered, Some(&hash), None);
                return Ok(RevisionId(arn));
            }
        }
        if let Some(config::Logging::Awslogs { group, .. }) = &spec.config.deploy.ecs_task.logging {
            if !group.is_empty() {
                logs::ensure_group(&self.logs, group).await?;
            }
        }
        let label = recorded.deployment.map(|n| format!("v{n}"));
        let out = rendered
            .register(&self.ecs)?
            .set_tags(Some(
                rendered.tags().into_iter().chain(label.as_deref().map(|l| tag(TAG_DEPLOYMENT, l))).collect(),
            ))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot register a task definition for {}", spec.app), e))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| RuntimeError::Unavailable("ECS returned no task definition ARN".into()))?
            .to_string();
        self.remember(&arn, &rendered, Some(&hash), label);
        Ok(RevisionId(arn))
    }

    async fn deploy(
        &self,
        app: &str,
        revision: &RevisionId,
        desired_count: u32,
        settings: &DeploySettings,
    ) -> RuntimeResult<RolloutId> {
        let info = self.revision_info(revision.as_str()).await?;
        let name = self.service_name(app);
        let container = self.container_name(app);
        let balancing = service::Balancing {
            app,
            container: &container,
            target_group: info.target_group.as_deref(),
            port: info.port,
            health_start_period_s: info.grace_period_s,
        };
        let (load_balancers, grace) = service::load_balancers(&balancing, settings)?;
        let configuration = deployment::configuration(settings)?;
        let desired = i32::try_from(desired_count).map_err(|_| RuntimeError::Invalid("scale too large".into()))?;
        // Most deploys update a service that exists: try that first, and describe only
        // when ECS says there is none to update (one request less per app and deploy).
        // Under autoscaling the count is the autoscaler's: an update keeps the one it finds.
        let updated = self
            .ecs
            .update_service()
            .cluster(&self.settings.cluster)
            .service(&name)
            .task_definition(revision.as_str())
            .set_desired_count(settings.autoscaling.is_none().then_some(desired))
            .deployment_configuration(configuration.clone())
            .network_configuration(self.network()?)
            // An update with an empty list removes a target group the app no longer has.
            .set_load_balancers(Some(load_balancers.clone().unwrap_or_default()))
            .set_health_check_grace_period_seconds(grace)
            .set_capacity_provider_strategy(service::capacity_providers(&settings.ecs_task))
            .enable_execute_command(settings.ecs_task.exec)
            .propagate_tags(service::propagate_tags(&settings.ecs_task))
            .send()
            .await;
        match updated {
            // (moto updates a deleted, INACTIVE service instead of refusing: create it anew.)
            Ok(out) if out.service().and_then(|s| s.status()) != Some("INACTIVE") => {
                let known = self.serving_tags(app);
                let known = match &known {
                    Some((serving, _)) if serving == revision.as_str() => service::KnownTags::Reverting,
                    Some((_, tags)) => service::KnownTags::Serving(tags),
                    None => service::KnownTags::Unknown,
                };
                let arn = service::arn_of(out.service())?;
                service::reconcile_tags(&self.ecs, arn, &settings.ecs_task.tags, known).await?;
                let mut expected = self.expected.lock().expect("expected rollouts");
                match out.service().and_then(|s| expected_done(s, Duration::from_millis(settings.timeout.as_millis())))
                {
                    Some(at) => expected.insert(app.to_string(), at),
                    None => expected.remove(app),
                };
                drop(expected);
                return primary_rollout(out.service(), "UpdateService");
            }
            Ok(_) => {}
            Err(e) if matches!(e.code(), Some("ServiceNotFoundException" | "ServiceNotActiveException")) => {}
            Err(e) => return Err(sdk_error(&format!("cannot update service {name}"), e)),
        }
        let existing = self.describe_services(std::slice::from_ref(&name)).await?.pop().flatten();
        if existing.is_some_and(|s| s.status() == Some("DRAINING")) {
            return Err(RuntimeError::Unavailable(format!(
                "service {name} is being deleted; deploy again once ECS has removed it"
            )));
        }
        let out = self
            .ecs
            .create_service()
            .cluster(&self.settings.cluster)
            .service_name(&name)
            .task_definition(revision.as_str())
            .desired_count(desired)
            // A capacity provider strategy replaces the launch type.
            .set_launch_type(settings.ecs_task.capacity_providers.is_empty().then_some(LaunchType::Fargate))
            .set_capacity_provider_strategy(service::capacity_providers(&settings.ecs_task))
            .deployment_configuration(configuration.clone())
            .network_configuration(self.network()?)
            .set_load_balancers(load_balancers)
            .set_health_check_grace_period_seconds(grace)
            .propagate_tags(service::propagate_tags(&settings.ecs_task))
            .enable_execute_command(settings.ecs_task.exec)
            .enable_ecs_managed_tags(true)
            .set_tags(Some(service::tags(&self.stage, app, &settings.ecs_task)))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot create service {name}"), e))?;
        primary_rollout(out.service(), "CreateService")
    }

    /// The task definition's `ferry:deployment` tag: given at registration to a new one, so
    /// a TagResource only for a reused one labelled otherwise. The service is not tagged:
    /// state records which deployment it runs, and its task definition says so too.
    async fn label_deployment(&self, _app: &str, revision: &RevisionId, deployment: u64) -> RuntimeResult<()> {
        let label = format!("v{deployment}");
        if self.revision_info(revision.as_str()).await?.label.as_deref() == Some(label.as_str()) {
            return Ok(());
        }
        self.ecs
            .tag_resource()
            .resource_arn(revision.as_str())
            .tags(tag(TAG_DEPLOYMENT, &label))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot tag {revision}"), e))?;
        if let Some(info) = self.revisions.lock().expect("revision cache").get_mut(revision.as_str()) {
            info.label = Some(label);
        }
        Ok(())
    }

    async fn observe(&self, apps: &[String]) -> RuntimeResult<Vec<ServiceStatus>> {
        let services: Vec<(String, Option<Service>)> = if apps.is_empty() {
            self.stage_services().await?.into_iter().map(|(a, s)| (a, Some(s))).collect()
        } else {
            let names: Vec<String> = apps.iter().map(|a| self.service_name(a)).collect();
            apps.iter().cloned().zip(self.describe_services(&names).await?).collect()
        };
        let only = match apps {
            [one] => Some(self.family_name(one)),
            _ => None,
        };
        let tasks = self.tasks(only.as_deref()).await?;
        self.statuses(services, &tasks).await
    }

    /// The engine's watch: after the wait ECS's pace gives `within`, one cheap look.
    async fn observe_changes(&self, apps: &[String], within: Duration) -> RuntimeResult<Vec<ServiceStatus>> {
        // The pace the last look's progress gave, for the same apps; else the engine's.
        // Before the first look at these apps: when their previous rollouts' pace says
        // the new ones are done (one look for a rollout as quick as the last), else the
        // engine's.
        let paced = self.pace.lock().expect("pace").take().filter(|(looked, _)| looked == apps).map(|(_, p)| p);
        let first =
            || first_look(&self.expected.lock().expect("expected rollouts"), apps, std::time::SystemTime::now());
        let wait = paced.or_else(first).unwrap_or_else(|| (within * POLL_PACE).clamp(POLL_FIRST, POLL_MAX));
        tokio::time::sleep(wait).await;
        self.watch_look(apps).await
    }

    async fn roll_back(&self, app: &str, to_revision: &RevisionId) -> RuntimeResult<RolloutId> {
        // A deployment ECS runs in stages (blue/green, canary, a bake time, a pause) is
        // stopped with rollback first: ECS returns traffic to the old tasks itself.
        self.stop_staged(app).await?;
        // An update back to the previous task definition: ECS starts its tasks beside the
        // abandoned deployment's and stops those, and old tasks still serving keep serving.
        let name = self.service_name(app);
        let out = self
            .ecs
            .update_service()
            .cluster(&self.settings.cluster)
            .service(&name)
            .task_definition(to_revision.as_str())
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot roll service {name} back"), e))?;
        // The failure report says the previous revision serves: hold ECS to it.
        let now = out.service().and_then(|s| s.task_definition()).unwrap_or_default();
        if now != to_revision.as_str() {
            return Err(RuntimeError::Unavailable(format!(
                "service {name} runs {now} after the rollback, not {to_revision}"
            )));
        }
        primary_rollout(out.service(), "the rollback")
    }

    async fn scale(&self, app: &str, desired_count: u32) -> RuntimeResult<()> {
        let name = self.service_name(app);
        let desired = i32::try_from(desired_count).map_err(|_| RuntimeError::Invalid("scale too large".into()))?;
        self.ecs
            .update_service()
            .cluster(&self.settings.cluster)
            .service(&name)
            .desired_count(desired)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot scale service {name}"), e))?;
        Ok(())
    }

    async fn autoscale(&self, app: &str, range: Option<&config::Autoscaling>) -> RuntimeResult<()> {
        let Some(client) = &self.autoscaling else {
            return match range {
                None => Ok(()),
                Some(_) => Err(RuntimeError::Invalid(format!("app {app}: no Application Auto Scaling client"))),
            };
        };
        let adopted = self.adopted_names(app);
        let names = autoscaling::PolicyNames::of(adopted.as_ref());
        autoscaling::apply(client, &self.settings.cluster, &self.service_name(app), range, names).await
    }

    async fn remove(&self, app: &str) -> RuntimeResult<()> {
        let name = self.service_name(app);
        let found = self.describe_services(std::slice::from_ref(&name)).await?.pop().flatten();
        // DRAINING: deleted already, ECS is stopping its tasks.
        if found.is_none_or(|s| s.status() == Some("DRAINING")) {
            return Ok(());
        }
        // force: ECS drains and stops the tasks itself; the service turns INACTIVE after.
        self.ecs
            .delete_service()
            .cluster(&self.settings.cluster)
            .service(&name)
            .force(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot delete service {name}"), e))?;
        Ok(())
    }

    async fn run_task(&self, spec: &TaskSpec) -> RuntimeResult<TaskId> {
        let info = self.revision_info(spec.revision.as_str()).await?;
        let port = info.port.map(|p| p.to_string());
        let mut container = ContainerOverride::builder().name(self.container_name(&spec.app));
        if let Some(cmd) = &spec.command {
            container = container.set_command(Some(
                cmd.iter().map(|a| port.as_ref().map_or_else(|| a.clone(), |p| a.replace("${PORT}", p))).collect(),
            ));
        }
        for (k, v) in &spec.env {
            container = container.environment(KeyValuePair::builder().name(k).value(v).build());
        }
        let out = self
            .ecs
            .run_task()
            .cluster(&self.settings.cluster)
            .task_definition(spec.revision.as_str())
            .launch_type(LaunchType::Fargate)
            .count(1)
            .started_by(STARTED_BY)
            .network_configuration(self.network()?)
            .overrides(TaskOverride::builder().container_overrides(container.build()).build())
            .tags(tag(TAG_STAGE, &self.stage))
            .tags(tag(TAG_APP, &spec.app))
            .tags(tag(TAG_TASK, &spec.name))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot start task {} of {}", spec.name, spec.app), e))?;
        if let Some(task) = out.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(TaskId(status::task_id(task).to_string()));
        }
        let why: Vec<String> = out
            .failures()
            .iter()
            .map(|f| format!("{} {}", f.reason().unwrap_or("failed"), f.detail().unwrap_or_default()))
            .collect();
        Err(RuntimeError::Unavailable(format!("ECS did not start task {}: {}", spec.name, why.join("; "))))
    }

    async fn stop_task(&self, _app: &str, task: &TaskId) -> RuntimeResult<()> {
        self.ecs
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(task.as_str())
            .reason("stopped by ferry")
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot stop task {task}"), e))?;
        Ok(())
    }

    async fn logs(&self, app: &str, query: &LogQuery) -> RuntimeResult<LogStream> {
        let logging = self.logging.lock().expect("app logging").get(app).cloned().flatten();
        let Some((group, prefix)) = revision::awslogs(&self.stage_settings(), logging.as_ref()) else {
            return Err(RuntimeError::Invalid(format!(
                "app {app} logs through its FireLens sidecar ([apps.{app}.logging] driver = \"awsfirelens\"), not to \
                 CloudWatch Logs as awslogs: read its output where the log router sends it"
            )));
        };
        Ok(logs::stream(self.logs.clone(), group, prefix, self.container_name(app), query.clone()))
    }

    async fn live(&self, recorded: &[crate::runtime::live::RecordedService]) -> RuntimeResult<Vec<LiveService>> {
        drift::live(self, recorded).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState};

    fn deployment(desired: i32, running: i32, age_s: u64, now: std::time::SystemTime) -> Deployment {
        let created = now - Duration::from_secs(age_s);
        let secs = created.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        Deployment::builder()
            .status("PRIMARY")
            .desired_count(desired)
            .running_count(running)
            .rollout_state(DeploymentRolloutState::InProgress)
            .created_at(aws_sdk_ecs::primitives::DateTime::from_secs(secs))
            .build()
    }

    #[test]
    fn the_watch_paces_itself_by_each_deployments_progress() {
        let now = std::time::SystemTime::now();
        let at = |d: &[Deployment]| pace(d, now).map(|p| p.as_secs());
        // Nothing rolling out: the engine's pace.
        assert_eq!(at(&[]), None);
        // No task running yet: again after as long as it has taken, 2 s to 15 s.
        assert_eq!(at(&[deployment(2, 0, 1, now)]), Some(2));
        assert_eq!(at(&[deployment(2, 0, 8, now)]), Some(8));
        assert_eq!(at(&[deployment(2, 0, 300, now)]), Some(15));
        // A quarter running after 12 s: the rest in about 36 s, looked at within 15.
        assert_eq!(at(&[deployment(4, 1, 12, now)]), Some(15));
        assert_eq!(at(&[deployment(4, 3, 12, now)]), Some(4));
        // All running (health checks, draining): soon; the soonest of several wins.
        assert_eq!(at(&[deployment(2, 0, 60, now), deployment(2, 2, 60, now)]), Some(2));
        let done = Deployment::builder().rollout_state(DeploymentRolloutState::Completed).build();
        assert_eq!(at(&[done]), None);
    }

    #[test]
    fn the_first_look_waits_as_long_as_the_services_last_rollout_took() {
        use aws_sdk_ecs::primitives::DateTime;
        let at = |secs: i64| DateTime::from_secs(secs);
        let service = |previous: Option<(i64, i64, DeploymentRolloutState)>| {
            let new = Deployment::builder().status("PRIMARY").created_at(at(1_000)).build();
            let old = previous.map(|(made, updated, state)| {
                Deployment::builder()
                    .status("ACTIVE")
                    .created_at(at(made))
                    .updated_at(at(updated))
                    .rollout_state(state)
                    .build()
            });
            Service::builder().set_deployments(Some(std::iter::once(new).chain(old).collect())).build()
        };
        let epoch = |s: u64| std::time::UNIX_EPOCH + Duration::from_secs(s);
        let minutes = Duration::from_secs(600);
        let done = |previous, limit| expected_done(&service(previous), limit);
        // The last rollout took 3 s: this one should be done 3 s after it was made, and a
        // second more for the clock's grain; 60 s, and 15 more.
        assert_eq!(done(Some((500, 503, DeploymentRolloutState::Completed)), minutes), Some(epoch(1_004)));
        assert_eq!(done(Some((500, 560, DeploymentRolloutState::Completed)), minutes), Some(epoch(1_075)));
        // Never past the deploy's timeout, nor two minutes; a failed one or none tells nothing.
        let slow = Some((0, 600, DeploymentRolloutState::Completed));
        assert_eq!(done(slow.clone(), Duration::from_secs(30)), Some(epoch(1_030)));
        assert_eq!(done(slow, minutes), Some(epoch(1_000) + FIRST_LOOK_MAX));
        assert_eq!(done(Some((500, 503, DeploymentRolloutState::Failed)), minutes), None);
        assert_eq!(done(None, minutes), None);

        // The first look at several apps comes when the last of them should be done.
        let apps = ["a", "b", "new"].map(String::from);
        let expected: HashMap<String, std::time::SystemTime> =
            [("a".to_string(), epoch(1_003)), ("b".to_string(), epoch(1_004))].into();
        assert_eq!(first_look(&expected, &apps, epoch(1_000)), Some(Duration::from_secs(4)));
        // At least 2 s; none for apps without an expected end.
        assert_eq!(first_look(&expected, &apps, epoch(1_010)), Some(POLL_FIRST));
        assert_eq!(first_look(&expected, &apps, epoch(950)), Some(Duration::from_secs(54)));
        assert_eq!(first_look(&expected, &apps[2..], epoch(1_000)), None);
    }
}
