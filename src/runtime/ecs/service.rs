//! The service-level settings of `[apps.NAME]` on ECS (`config::ecs_task`): capacity
//! provider strategy, propagated tags and the app's own tags, as CreateService and
//! UpdateService take them.

use aws_sdk_ecs::types::{CapacityProviderStrategyItem, PropagateTags, Service};

use super::revision::{tag, TAG_APP, TAG_STAGE};
use super::sdk_error;
use crate::config::EcsTask;
use crate::runtime::{RuntimeError, RuntimeResult};

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

/// UpdateService takes no tags: the app's own go on with TagResource, once per deploy
/// that has any. (A tag removed from the file stays on the service.)
pub async fn tag_service(client: &aws_sdk_ecs::Client, service: Option<&Service>, t: &EcsTask) -> RuntimeResult<()> {
    if t.tags.is_empty() {
        return Ok(());
    }
    let arn = service
        .and_then(|s| s.service_arn())
        .ok_or_else(|| RuntimeError::Unavailable("UpdateService returned no service ARN".into()))?;
    client
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(t.tags.iter().map(|(k, v)| super::revision::tag(k, v)).collect()))
        .send()
        .await
        .map_err(|e| sdk_error(&format!("cannot tag {arn}"), e))?;
    Ok(())
}
