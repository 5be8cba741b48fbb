//! The service-level settings of `[apps.NAME]` on ECS (`config::ecs_task`, and the load
//! balancers of `[apps.NAME.deploy]`): load balancers and their health check grace period,
//! capacity provider strategy, ECS Exec, propagated tags and the app's own tags — as
//! CreateService and UpdateService take them, and as `plan --refresh` compares them with
//! what DescribeServices answers ([`expected`], [`described`]: both sides flattened to
//! `service.FIELD → value` text with ECS's defaults filled in, so an untouched service shows
//! no difference).
//!
//! Tags are the app's exactly: ferry's own (`ferry:…`) and AWS's (`aws:…`) are never touched,
//! every other tag on the service is the file's. UpdateService takes no tags, so a deploy
//! reconciles them with ListTagsForResource, TagResource and UntagResource
//! ([`reconcile_tags`]) — and only when there may be something to do: the app declares tags,
//! its release serving until now did (or ferry does not know what that declared), or the
//! deploy puts back the revision serving now (`commit --refresh` reverting drift).

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{CapacityProviderStrategyItem, LoadBalancer, PropagateTags, Service};

use super::revision::{tag, TAG_APP, TAG_STAGE};
use super::sdk_error;
use crate::config::{DeploySettings, EcsTask};
use crate::runtime::live::SERVICE_FIELD;
use crate::runtime::{RuntimeError, RuntimeResult};

/// Tags with these prefixes are never the app's: ferry's own, and AWS's (which no API call
/// may change).
const RESERVED_TAG_PREFIXES: [&str; 2] = ["ferry:", "aws:"];

/// The strategy, or `None` for the FARGATE launch type.
pub fn capacity_providers(t: &EcsTask) -> Option<Vec<CapacityProviderStrategyItem>> {
    if t.capacity_providers.is_empty() {
        return None;
    }
    t.capacity_providers
        .iter()
        .map(|c| {
            CapacityProviderStrategyItem::builder()
                .capacity_provider(&c.provider)
                .weight(c.weight as i32)
                .base(c.base as i32)
                .build()
                .ok()
        })
        .collect()
}

/// Where tasks take their tags from: the service unless the file says otherwise.
pub fn propagate_tags(t: &EcsTask) -> PropagateTags {
    t.propagate_tags.as_deref().map_or(PropagateTags::Service, PropagateTags::from)
}

/// The tags of a new service: ferry's, then the app's own.
pub fn tags(stage: &str, app: &str, t: &EcsTask) -> Vec<aws_sdk_ecs::types::Tag> {
    [tag(TAG_STAGE, stage), tag(TAG_APP, app)].into_iter().chain(t.tags.iter().map(|(k, v)| tag(k, v))).collect()
}

/// What the service's load balancers are made of.
pub struct Balancing<'a> {
    pub app: &'a str,
    /// The container the app runs in (an adopted service's own name).
    pub container: &'a str,
    /// The short form's one target group (`target_group = "ARN"`, carried by the revision).
    pub target_group: Option<&'a str>,
    /// The app's port, registered unless a target group names another.
    pub port: Option<u16>,
    /// The container health check's grace period: the service's when the file sets none.
    pub health_start_period_s: i32,
}

/// The service's load balancers (`None`: none) and, with them, the health check grace
/// period, as CreateService and UpdateService send them for `settings`.
pub fn load_balancers(
    b: &Balancing<'_>,
    settings: &DeploySettings,
) -> RuntimeResult<(Option<Vec<LoadBalancer>>, Option<i32>)> {
    // `target_groups` (the long form) travels with the deploy settings; the short form's
    // one target group with the revision.
    let target_groups = if settings.ecs.target_groups.is_empty() {
        let short = b.target_group.iter();
        short.map(|arn| crate::config::TargetGroup { arn: arn.to_string(), container: None, port: None }).collect()
    } else {
        settings.ecs.target_groups.clone()
    };
    let lbs = super::deployment::load_balancers(b.app, b.container, &target_groups, b.port, &settings.ecs)?;
    let grace = lbs.as_ref().map(|_| {
        settings
            .ecs
            .health_check_grace_period_s
            .map_or(b.health_start_period_s, |s| i32::try_from(s).unwrap_or(i32::MAX))
    });
    Ok((lbs, grace))
}

/// The service-level fields ferry sets for `settings`, flattened as [`described`] flattens
/// a live service.
pub fn expected(b: &Balancing<'_>, settings: &DeploySettings) -> RuntimeResult<BTreeMap<String, String>> {
    let (lbs, grace) = load_balancers(b, settings)?;
    let t = &settings.ecs_task;
    let mut f = Fields::default();
    f.load_balancers(lbs.as_deref().unwrap_or_default());
    if let Some(g) = grace {
        f.put("healthCheckGracePeriodSeconds", g.to_string());
    }
    f.capacity_providers(capacity_providers(t).as_deref().unwrap_or_default());
    f.put("enableExecuteCommand", t.exec.to_string());
    f.put("propagateTags", propagate_tags(t).as_str().to_string());
    for (k, v) in &t.tags {
        f.put(&format!("tags.{k}"), v.clone());
    }
    Ok(f.0)
}

/// A live service's fields as [`expected`] renders them, with ECS's defaults: no grace
/// period is 0 (compared only where ferry sets one: `with_grace`, the app has load
/// balancers), no Exec is false, no tag source is NONE; ferry's and AWS's tags left out.
pub fn described(s: &Service, with_grace: bool) -> BTreeMap<String, String> {
    let mut f = Fields::default();
    f.load_balancers(s.load_balancers());
    if with_grace {
        f.put("healthCheckGracePeriodSeconds", s.health_check_grace_period_seconds().unwrap_or(0).to_string());
    }
    f.capacity_providers(s.capacity_provider_strategy());
    f.put("enableExecuteCommand", s.enable_execute_command().to_string());
    f.put("propagateTags", s.propagate_tags().map_or("NONE", |p| p.as_str()).to_string());
    for t in s.tags() {
        if let (Some(k), Some(v)) = (t.key(), t.value()) {
            if !reserved_tag(k) {
                f.put(&format!("tags.{k}"), v.to_string());
            }
        }
    }
    f.0
}

/// `service.FIELD → value`; nothing for an empty value.
#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Fields {
    fn put(&mut self, k: &str, v: String) {
        if !v.is_empty() {
            self.0.insert(format!("{SERVICE_FIELD}{k}"), v);
        }
    }

    /// One entry per target group, in order of ARN: `ARN (container:port)`.
    fn load_balancers(&mut self, lbs: &[LoadBalancer]) {
        let mut lines: Vec<String> = lbs
            .iter()
            .map(|lb| {
                format!(
                    "{} ({}:{})",
                    lb.target_group_arn().or(lb.load_balancer_name()).unwrap_or_default(),
                    lb.container_name().unwrap_or_default(),
                    lb.container_port().unwrap_or(0)
                )
            })
            .collect();
        lines.sort();
        self.put("loadBalancers", lines.join(", "));
    }

    /// `FARGATE weight 1 base 1, FARGATE_SPOT weight 3 base 0`, by provider; ECS fills in
    /// the base (0) and weight (0) left out.
    fn capacity_providers(&mut self, items: &[CapacityProviderStrategyItem]) {
        let mut lines: Vec<String> = items
            .iter()
            .map(|c| format!("{} weight {} base {}", c.capacity_provider(), c.weight(), c.base()))
            .collect();
        lines.sort();
        self.put("capacityProviderStrategy", lines.join(", "));
    }
}

/// Whether tag `key` is ferry's or AWS's, never the app's.
pub fn reserved_tag(key: &str) -> bool {
    RESERVED_TAG_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// What a deploy knows of the app's tags on the service before it.
pub enum KnownTags<'a> {
    /// The release serving until now declared these (ferry set them).
    Serving(&'a BTreeMap<String, String>),
    /// The deploy puts back the revision serving now: whatever is on the service may have
    /// been changed behind ferry's back.
    Reverting,
    /// Nothing known (no release recorded as serving was told).
    Unknown,
}

/// Make the app's tags on service `arn` exactly `declared`: those missing or different are
/// set (TagResource), those no longer declared removed (UntagResource); ferry's and AWS's
/// are never touched. Costs nothing when neither the file nor the release serving until now
/// declared any; otherwise one ListTagsForResource, and one request per kind of change.
pub async fn reconcile_tags(
    client: &aws_sdk_ecs::Client,
    arn: &str,
    declared: &BTreeMap<String, String>,
    known: KnownTags<'_>,
) -> RuntimeResult<()> {
    if declared.is_empty() && matches!(known, KnownTags::Serving(before) if before.is_empty()) {
        return Ok(());
    }
    let listed = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| sdk_error(&format!("cannot list the tags of {arn}"), e))?;
    let live: BTreeMap<&str, &str> = listed
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
        .filter(|(k, _)| !reserved_tag(k))
        .collect();
    let (set, unset) = tag_changes(declared, &live);
    if !set.is_empty() {
        client
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot tag {arn}"), e))?;
    }
    if !unset.is_empty() {
        client
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(unset))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("cannot remove tags from {arn}"), e))?;
    }
    Ok(())
}

/// The tags to set and the keys to remove so that the app's tags `live` become `declared`.
fn tag_changes(
    declared: &BTreeMap<String, String>,
    live: &BTreeMap<&str, &str>,
) -> (Vec<aws_sdk_ecs::types::Tag>, Vec<String>) {
    let set = declared.iter().filter(|(k, v)| live.get(k.as_str()) != Some(&v.as_str())).map(|(k, v)| tag(k, v));
    let unset = live.keys().filter(|k| !reserved_tag(k) && !declared.contains_key(**k)).map(|k| k.to_string());
    (set.collect(), unset.collect())
}

/// The ARN UpdateService answered with.
pub fn arn_of(service: Option<&Service>) -> RuntimeResult<&str> {
    service
        .and_then(|s| s.service_arn())
        .ok_or_else(|| RuntimeError::Unavailable("UpdateService returned no service ARN".into()))
}

/// By app: the revision recorded state names as serving, and the tags its release declared.
pub(super) type ServingTags = std::collections::HashMap<String, (String, BTreeMap<String, String>)>;

impl super::EcsRuntime {
    /// Note that recorded state names `revision` as serving `app`, its release declaring `tags`.
    pub(super) fn note_serving(&self, app: &str, revision: &str, tags: &BTreeMap<String, String>) {
        let mut serving = self.serving.lock().expect("serving revisions");
        serving.insert(app.to_string(), (revision.to_string(), tags.clone()));
    }

    /// The revision noted as serving `app` and its release's tags.
    pub(super) fn serving_tags(&self, app: &str) -> Option<(String, BTreeMap<String, String>)> {
        self.serving.lock().expect("serving revisions").get(app).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CapacityProvider, TargetGroup};
    use aws_sdk_ecs::types::Tag;

    const TG: &str = "arn:aws:elasticloadbalancing:eu-central-1:1:targetgroup/web/1";

    fn balancing() -> Balancing<'static> {
        Balancing { app: "web", container: "web", target_group: Some(TG), port: Some(8080), health_start_period_s: 30 }
    }

    fn settings() -> DeploySettings {
        let mut s = DeploySettings::default();
        s.ecs_task.capacity_providers = vec![
            CapacityProvider { provider: "FARGATE_SPOT".into(), weight: 3, base: 0 },
            CapacityProvider { provider: "FARGATE".into(), weight: 1, base: 1 },
        ];
        s.ecs_task.exec = true;
        s.ecs_task.tags = BTreeMap::from([("team".into(), "shop".into())]);
        s
    }

    /// The service as ECS describes it after CreateService with `settings()`: strategy in
    /// another order, ferry's and AWS's tags beside the app's.
    fn as_described() -> Service {
        let item =
            |p: &str, w, b| CapacityProviderStrategyItem::builder().capacity_provider(p).weight(w).base(b).build();
        Service::builder()
            .load_balancers(
                LoadBalancer::builder().target_group_arn(TG).container_name("web").container_port(8080).build(),
            )
            .health_check_grace_period_seconds(30)
            .capacity_provider_strategy(item("FARGATE", 1, 1).unwrap())
            .capacity_provider_strategy(item("FARGATE_SPOT", 3, 0).unwrap())
            .enable_execute_command(true)
            .propagate_tags(PropagateTags::Service)
            .tags(tag("ferry:stage", "prod"))
            .tags(tag("aws:cloudformation:stack-name", "x"))
            .tags(tag("team", "shop"))
            .build()
    }

    #[test]
    fn an_untouched_service_shows_no_difference() {
        let expected = expected(&balancing(), &settings()).unwrap();
        assert_eq!(expected, described(&as_described(), true));
        assert_eq!(
            expected["service.capacityProviderStrategy"],
            "FARGATE weight 1 base 1, FARGATE_SPOT weight 3 base 0"
        );
        assert_eq!(expected["service.loadBalancers"], format!("{TG} (web:8080)"));
    }

    #[test]
    fn defaults_left_out_by_ecs_are_filled_in() {
        // No load balancer: no grace period compared; no Exec, tag source or strategy stated.
        let b = Balancing { target_group: None, ..balancing() };
        let mut s = DeploySettings::default();
        s.ecs_task.propagate_tags = Some("NONE".into());
        let bare = Service::builder().build();
        assert_eq!(expected(&b, &s).unwrap(), described(&bare, false));
        assert_eq!(
            described(&bare, false),
            BTreeMap::from([
                ("service.enableExecuteCommand".to_string(), "false".to_string()),
                ("service.propagateTags".to_string(), "NONE".to_string()),
            ])
        );
        // The grace period comes from the file when it says one.
        let mut with = settings();
        with.ecs.health_check_grace_period_s = Some(90);
        assert_eq!(expected(&balancing(), &with).unwrap()["service.healthCheckGracePeriodSeconds"], "90");
        with.ecs.target_groups =
            vec![TargetGroup { arn: TG.into(), container: Some("envoy".into()), port: Some(9901) }];
        assert_eq!(expected(&balancing(), &with).unwrap()["service.loadBalancers"], format!("{TG} (envoy:9901)"));
    }

    #[test]
    fn tags_are_set_and_removed_but_ferrys_and_aws_never_touched() {
        let declared = BTreeMap::from([("team".to_string(), "shop".to_string()), ("tier".into(), "web".into())]);
        let live = BTreeMap::from([("team", "other"), ("cost-center", "42"), ("ferry:app", "web"), ("aws:x", "y")]);
        let (set, unset) = tag_changes(&declared, &live);
        let set: Vec<(&str, &str)> = set.iter().map(|t: &Tag| (t.key().unwrap(), t.value().unwrap())).collect();
        assert_eq!(set, [("team", "shop"), ("tier", "web")]);
        assert_eq!(unset, ["cost-center"]);
        let same = BTreeMap::from([("team", "shop"), ("tier", "web")]);
        assert_eq!(tag_changes(&declared, &same), (vec![], vec![]));
    }
}
