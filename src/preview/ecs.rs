//! ECS previews: what a preview of an ECS template stage needs besides its services.
//!
//! The services themselves are made by the commit of the rendered stage, as for any ECS
//! stage: `<stage>-<app>` (the runtime's own names), or the `[pipeline.preview.ecs] service`
//! pattern, told to the runtime the way `ferry import` tells it an adopted service's names.
//! What this module makes, before that commit, is each app's own target group (named by
//! the `target_group` pattern, copied from the template app's target group, so a preview's
//! tasks never receive the template's traffic) and, with `listener` and `host`, one
//! host-header listener rule forwarding `pr-N.example.com` to the preview's URL app.
//!
//! Everything is found again by name and host rather than by recorded ARN, so `down` also
//! removes what a `preview up` killed before recording it made, and is safe twice.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, ProtocolEnum, Rule, RuleCondition,
};
use serde::{Deserialize, Serialize};

use super::settings::{substitute, PreviewEcs, Vars};
use crate::config::Stage;

/// What an ECS preview made, kept in its record for `preview list` and the rendering.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EcsMade {
    /// Target group ARN by app.
    #[serde(default)]
    pub target_groups: BTreeMap<String, String>,
    /// The host-header rule's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// The service name of `app` in preview `stage` of PR `pr`.
pub fn service_name(settings: &PreviewEcs, pr: u64, stage: &str, app: &str) -> String {
    substitute(&settings.service, &Vars { number: pr, stage, app, ..Default::default() })
}

/// The target group name of `app` in the preview of PR `pr`.
pub fn target_group_name(settings: &PreviewEcs, pr: u64, app: &str) -> String {
    substitute(&settings.target_group, &Vars { number: pr, app, ..Default::default() })
}

/// The host of PR `pr`'s rule, when rules are made.
pub fn host(settings: &PreviewEcs, pr: u64) -> Option<String> {
    settings.listener.as_ref()?;
    settings.host.as_ref().map(|h| substitute(h, &Vars { number: pr, ..Default::default() }))
}

/// The app the host rule forwards to: `web` when it has a target group, else the first one
/// (by name) with one.
pub fn url_app(made: &EcsMade) -> Option<(&str, &str)> {
    made.target_groups
        .get_key_value("web")
        .or_else(|| made.target_groups.iter().next())
        .map(|(a, t)| (a.as_str(), t.as_str()))
}

fn elb_error<E, R>(what: &str, e: aws_sdk_elasticloadbalancingv2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    format!("{what}: {}", crate::aws::error_text(&e))
}

fn is_code<E, R>(e: &aws_sdk_elasticloadbalancingv2::error::SdkError<E, R>, code: &str) -> bool
where
    E: aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata,
{
    aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata::code(e) == Some(code)
}

/// The target group named `name`, if there is one.
async fn target_group_by_name(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
) -> Result<Option<aws_sdk_elasticloadbalancingv2::types::TargetGroup>, String> {
    match elb.describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) if is_code(&e, "TargetGroupNotFound") => Ok(None),
        Err(e) => Err(elb_error(&format!("cannot look for target group {name}"), e)),
    }
}

/// The rules of `listener` whose host-header condition is `host`.
async fn rules_for_host(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
    host: &str,
) -> Result<(Vec<Rule>, Vec<i32>), String> {
    let out = elb
        .describe_rules()
        .listener_arn(listener)
        .send()
        .await
        .map_err(|e| elb_error(&format!("cannot read the rules of listener {listener}"), e))?;
    let priorities = out.rules().iter().filter_map(|r| r.priority()?.parse().ok()).collect();
    let matching = out
        .rules()
        .iter()
        .filter(|r| {
            r.conditions().iter().any(|c| {
                c.field() == Some("host-header")
                    && (c.values().iter().any(|v| v == host)
                        || c.host_header_config().is_some_and(|h| h.values().iter().any(|v| v == host)))
            })
        })
        .cloned()
        .collect();
    Ok((matching, priorities))
}

/// The target group a preview copies for `app`: its `target_group`, or the entry of its
/// `target_groups` that registers the app's own container (a sidecar's entry names another
/// container and port, which the preview's one group would not match). `None`: the app is
/// behind no load balancer, and so is its preview (no group is made for it).
pub fn template_group(app: &crate::config::App) -> Option<&str> {
    app.config.target_group.as_deref().or_else(|| {
        let groups = &app.config.deploy.ecs.target_groups;
        groups.iter().find(|t| t.container.as_deref().is_none_or(|c| c == app.name)).map(|t| t.arn.as_str())
    })
}

/// Make (or find) each app's target group and the host rule of PR `pr`. `template` is the
/// template stage: each app with a target group (see [`template_group`]) gets one of its
/// own, copied from it.
pub async fn up(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    settings: &PreviewEcs,
    pr: u64,
    template: &Stage,
) -> Result<EcsMade, String> {
    let mut made = EcsMade::default();
    for app in template.apps.values() {
        let Some(template_group) = template_group(app) else { continue };
        let name = target_group_name(settings, pr, &app.name);
        let arn = match target_group_by_name(elb, &name).await? {
            Some(existing) => existing.target_group_arn().unwrap_or_default().to_string(),
            None => {
                let out = elb.describe_target_groups().target_group_arns(template_group).send().await.map_err(|e| {
                    elb_error(&format!("app {}: cannot read target group {template_group}", app.name), e)
                })?;
                let from = out.target_groups().first().ok_or_else(|| {
                    format!("app {}: the template's target group {template_group} does not exist", app.name)
                })?;
                let out = elb
                    .create_target_group()
                    .name(&name)
                    .set_protocol(from.protocol().cloned())
                    .set_port(from.port())
                    .set_vpc_id(from.vpc_id().map(str::to_string))
                    .set_target_type(from.target_type().cloned())
                    .set_health_check_protocol(from.health_check_protocol().cloned())
                    .set_health_check_path(from.health_check_path().map(str::to_string))
                    .set_health_check_interval_seconds(from.health_check_interval_seconds())
                    .set_health_check_timeout_seconds(from.health_check_timeout_seconds())
                    .set_healthy_threshold_count(from.healthy_threshold_count())
                    .set_unhealthy_threshold_count(from.unhealthy_threshold_count())
                    .set_matcher(from.matcher().cloned())
                    .send()
                    .await
                    .map_err(|e| elb_error(&format!("app {}: cannot create target group {name}", app.name), e))?;
                out.target_groups()
                    .first()
                    .and_then(|t| t.target_group_arn())
                    .ok_or_else(|| format!("app {}: target group {name} was created without an ARN", app.name))?
                    .to_string()
            }
        };
        made.target_groups.insert(app.name.clone(), arn);
    }
    let (Some(listener), Some(host)) = (&settings.listener, host(settings, pr)) else { return Ok(made) };
    let Some((_, group)) = url_app(&made) else {
        return Err(format!(
            "no app of the template stage `{}` has a target_group: the host rule for {host} has nowhere to forward",
            template.name
        ));
    };
    let group = group.to_string();
    let (existing, priorities) = rules_for_host(elb, listener, &host).await?;
    if let Some(rule) = existing.first() {
        let forwards_here = rule.actions().iter().any(|a| a.target_group_arn() == Some(group.as_str()));
        if !forwards_here {
            elb.modify_rule()
                .rule_arn(rule.rule_arn().unwrap_or_default())
                .actions(forward(&group))
                .send()
                .await
                .map_err(|e| elb_error(&format!("cannot point the rule for {host} at {group}"), e))?;
        }
        made.rule = rule.rule_arn().map(str::to_string);
        return Ok(made);
    }
    // The lowest priority no rule of the listener has: rules of several previews coexist.
    let priority = (1..=50_000).find(|p| !priorities.contains(p)).ok_or("the listener has 50000 rules")?;
    let condition = RuleCondition::builder()
        .field("host-header")
        .host_header_config(HostHeaderConditionConfig::builder().values(&host).build())
        .build();
    let out = elb
        .create_rule()
        .listener_arn(listener)
        .priority(priority)
        .conditions(condition)
        .actions(forward(&group))
        .send()
        .await
        .map_err(|e| elb_error(&format!("cannot add the rule for host {host} to listener {listener}"), e))?;
    made.rule = out.rules().first().and_then(|r| r.rule_arn()).map(str::to_string);
    Ok(made)
}

fn forward(group: &str) -> Action {
    Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(group).build()
}

/// The URL of PR `pr`'s preview: `https://HOST` when the listener speaks HTTPS, else
/// `http://HOST`; `None` without a host rule.
pub async fn url(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    settings: &PreviewEcs,
    pr: u64,
) -> Result<Option<String>, String> {
    let (Some(listener), Some(host)) = (&settings.listener, host(settings, pr)) else { return Ok(None) };
    let out = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .map_err(|e| elb_error(&format!("cannot read listener {listener}"), e))?;
    let https = out.listeners().first().and_then(|l| l.protocol()) == Some(&ProtocolEnum::Https);
    Ok(Some(format!("{}://{host}", if https { "https" } else { "http" })))
}

/// Remove PR `pr`'s host rule and the target groups of `apps`; what is already gone is
/// skipped. Rules go first: ELB refuses to delete a target group a rule forwards to.
pub async fn down(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    settings: &PreviewEcs,
    pr: u64,
    apps: &[String],
) -> Result<Vec<String>, String> {
    let mut removed = Vec::new();
    if let (Some(listener), Some(host)) = (&settings.listener, host(settings, pr)) {
        for rule in rules_for_host(elb, listener, &host).await?.0 {
            let arn = rule.rule_arn().unwrap_or_default();
            match elb.delete_rule().rule_arn(arn).send().await {
                Ok(_) => removed.push(format!("listener rule for {host}")),
                Err(e) if is_code(&e, "RuleNotFound") => {}
                Err(e) => return Err(elb_error(&format!("cannot delete the rule for {host}"), e)),
            }
        }
    }
    for app in apps {
        let name = target_group_name(settings, pr, app);
        let Some(group) = target_group_by_name(elb, &name).await? else { continue };
        match elb.delete_target_group().target_group_arn(group.target_group_arn().unwrap_or_default()).send().await {
            Ok(_) => removed.push(format!("target group {name}")),
            Err(e) if is_code(&e, "TargetGroupNotFound") => {}
            Err(e) => return Err(elb_error(&format!("cannot delete target group {name}"), e)),
        }
    }
    Ok(removed)
}

/// How long `preview up` waits for ECS to finish deleting the services of an earlier
/// `preview down` of the same PR. ECS keeps a deleted service DRAINING while its tasks
/// deregister and stop (the target group's deregistration delay, 300 s by default, and the
/// container's stop timeout), and refuses to create one of the same name until then.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

/// Wait until no service of `apps` is DRAINING, saying once what it waits for: a
/// `preview down` followed at once by `preview up` of the same PR (a PR closed and
/// reopened) finds its old services still being deleted. Gives up at `within`.
pub async fn wait_for_deleted(
    runtime: &crate::runtime::ecs::EcsRuntime,
    apps: &[String],
    within: Duration,
    say: impl Fn(&str),
) -> Result<(), String> {
    let mut poll = crate::poll::Poll::new(Duration::from_millis(500), Duration::from_secs(10)).within(within);
    let mut told = false;
    loop {
        let draining = runtime.draining_services(apps).await.map_err(|e| e.to_string())?;
        if draining.is_empty() {
            return Ok(());
        }
        if !told {
            say(&format!(
                "waiting for ECS to finish deleting service {} (DRAINING since an earlier `preview down`), at most {}s",
                draining.join(", "),
                within.as_secs()
            ));
            told = true;
        }
        if !poll.wait().await {
            return Err(format!(
                "service {} is still DRAINING after {}s: ECS has not finished deleting it, and cannot create it \
                 again until it has",
                draining.join(", "),
                within.as_secs()
            ));
        }
    }
}

/// The preview's rendering on ECS: each app in its own target group (none for an app that
/// has none in the template), deployed rolling: the template's blue/green or canary keys
/// and its `target_groups` name the template's own groups and rules, which a preview must
/// not move. Only the health check grace period is kept: the preview's tasks start as
/// slowly as the template's.
pub fn render_apps(stage: &mut Stage, made: &EcsMade) {
    for app in stage.apps.values_mut() {
        app.config.target_group = made.target_groups.get(&app.name).cloned();
        let grace = app.config.deploy.ecs.health_check_grace_period_s;
        *app.config.deploy.ecs = crate::config::EcsDeploy { health_check_grace_period_s: grace, ..Default::default() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PreviewEcs {
        PreviewEcs {
            service: "{stage}-{app}".into(),
            target_group: "pr-{number}-{app}".into(),
            listener: Some("arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/x/1/2".into()),
            host: Some("pr-{number}.example.com".into()),
        }
    }

    #[test]
    fn names_per_preview() {
        let s = settings();
        assert_eq!(service_name(&s, 12, "pr-12", "web"), "pr-12-web");
        assert_eq!(target_group_name(&s, 12, "api"), "pr-12-api");
        assert_eq!(host(&s, 12).as_deref(), Some("pr-12.example.com"));
        let no_listener = PreviewEcs { listener: None, ..s };
        assert_eq!(host(&no_listener, 12), None, "no rule without a listener");
    }

    #[test]
    fn the_group_copied_is_the_app_s_own_in_either_form_or_none() {
        let tg = |arn: &str, container: Option<&str>| crate::config::TargetGroup {
            arn: arn.into(),
            container: container.map(str::to_string),
            port: None,
        };
        let mut app = crate::plan::fixture::app("web", 1);
        assert_eq!(template_group(&app), None, "no load balancer, no group");
        app.config.deploy.ecs.target_groups = vec![tg("tg-sidecar", Some("envoy")), tg("tg-web", Some("web"))];
        assert_eq!(template_group(&app), Some("tg-web"), "the entry of the app's container");
        app.config.deploy.ecs.target_groups = vec![tg("tg-sidecar", Some("envoy"))];
        assert_eq!(template_group(&app), None, "only a sidecar's group: nothing the app's tasks would match");
        app.config.deploy.ecs.target_groups = vec![tg("tg-any", None)];
        assert_eq!(template_group(&app), Some("tg-any"));
        app.config.target_group = Some("tg-short".into());
        assert_eq!(template_group(&app), Some("tg-short"));
    }

    #[test]
    fn rendering_keeps_the_made_groups_and_the_grace_period_only() {
        let mut stage = crate::plan::fixture::stage(
            "pr-1",
            vec![crate::plan::fixture::app("web", 1), crate::plan::fixture::app("worker", 1)],
        );
        for app in stage.apps.values_mut() {
            app.config.target_group = Some("tg-template".into());
            app.config.deploy.ecs.health_check_grace_period_s = Some(90);
            app.config.deploy.ecs.alternate_target_group = Some("tg-green".into());
        }
        let mut made = EcsMade::default();
        made.target_groups.insert("web".into(), "tg-pr-web".into());
        render_apps(&mut stage, &made);
        let (web, worker) = (&stage.apps["web"].config, &stage.apps["worker"].config);
        assert_eq!(web.target_group.as_deref(), Some("tg-pr-web"));
        assert_eq!(worker.target_group, None, "never the template's group");
        assert_eq!(web.deploy.ecs.alternate_target_group, None, "rolling, not the template's blue/green");
        assert_eq!(web.deploy.ecs.health_check_grace_period_s, Some(90));
    }

    #[test]
    fn the_rule_forwards_to_web_or_the_first_app() {
        let mut made = EcsMade::default();
        made.target_groups.insert("api".into(), "tg-api".into());
        assert_eq!(url_app(&made), Some(("api", "tg-api")));
        made.target_groups.insert("web".into(), "tg-web".into());
        assert_eq!(url_app(&made), Some(("web", "tg-web")));
    }
}
