//! Reading live ECS services for `ferry import`: the cluster, the services (named, or all of
//! the cluster), each one's current task definition, its Application Auto Scaling targets
//! and policies, and the digest its image runs (a tag resolved through ECR). What is read
//! becomes stage-file keys through [`mapping::ECS_RULES`].

use aws_config::SdkConfig;
use aws_sdk_ecs::types::{Service, ServiceField, TaskDefinition, TaskDefinitionField};

use super::mapping::{self, EcsSource, Target};
use super::{app_name, ImportError, ImportedApp, ImportedStage, Warning};
use crate::config::file::{RuntimeKind, RuntimeSection};
use crate::config::Digest;
use crate::registry::{EcrRegistry, Registry};
use crate::state::AdoptedService;

/// DescribeServices takes at most this many services per call.
const SERVICES_PER_CALL: usize = 10;

/// What to import: services of `cluster` (named, or `all`) into `stage`.
#[derive(Debug, Clone)]
pub struct EcsRequest {
    pub stage: String,
    pub region: String,
    pub cluster: String,
    pub services: Vec<String>,
    pub all: bool,
}

/// Read the services `request` names and map them to a stage.
pub fn read(sdk: &SdkConfig, request: &EcsRequest) -> Result<ImportedStage, ImportError> {
    let ecs = aws_sdk_ecs::Client::from_conf(crate::runtime::ecs::ecs_config(sdk).build());
    let scaling = aws_sdk_applicationautoscaling::Client::new(sdk);
    let ecr = EcrRegistry::new(sdk);
    let live = crate::aws::block_on(read_services(&ecs, request))?;
    let mut stage = ImportedStage::default();
    let mut runtimes = Vec::new();
    for (service, task_definition) in live {
        let name = service.service_name().unwrap_or_default().to_string();
        let app = app_name(&name, &request.stage).map_err(|why| ImportError::Name { service: name.clone(), why })?;
        if let Some(other) = stage.apps.iter().find(|a| a.name == app) {
            let first = other.adopted.as_ref().map_or("?", |a| a.names.service.as_str()).to_string();
            return Err(ImportError::Name {
                service: name,
                why: format!("its app name `{app}` is also service {first}'s; import them into separate stages"),
            });
        }
        let container = main_container(&service, &task_definition);
        let image = task_definition.container_definitions()[container].image().unwrap_or_default().to_string();
        let (repository, digest) = resolve_image(&ecr, &name, &image)?;
        let (region, account) = arn_region_account(task_definition.task_definition_arn().unwrap_or_default());
        let mut warnings = Vec::new();
        let autoscaling = match crate::aws::block_on(autoscaling(&scaling, &request.cluster, &name)) {
            Ok(described) => described,
            Err(why) => {
                warnings.push(("autoscaling".to_string(), format!("could not be read ({why}); check it by hand")));
                None
            }
        };
        let source = EcsSource {
            service,
            task_definition,
            container,
            repository,
            digest,
            region,
            account,
            scaling: autoscaling,
            app: app.clone(),
        };
        let mut target = Target::default();
        warnings.extend(mapping::apply(mapping::ECS_RULES, &source, &mut target));
        stage.warnings.extend(warnings.into_iter().map(|(feature, detail)| Warning {
            source: format!("service {name}"),
            feature,
            detail,
        }));
        runtimes.push((app.clone(), target.runtime));
        stage.apps.push(ImportedApp {
            name: app,
            section: target.app,
            adopted: Some(super::Adoption {
                names: AdoptedService {
                    service: name,
                    family: source.task_definition.family().unwrap_or_default().to_string(),
                    container: source.main().name().unwrap_or_default().to_string(),
                    cpu_policy: target.cpu_policy,
                    memory_policy: target.memory_policy,
                },
                revision: source.task_definition.task_definition_arn().unwrap_or_default().to_string(),
                service_arn: source.service.service_arn().unwrap_or_default().to_string(),
            }),
        });
    }
    let (runtime, conflicts) = mapping::merge_runtime(&runtimes);
    stage.warnings.extend(conflicts.into_iter().map(|(app, key, why)| Warning {
        source: format!("app {app}"),
        feature: format!("[runtime] {key}"),
        detail: why,
    }));
    stage.runtime = RuntimeSection {
        kind: RuntimeKind::Ecs,
        region: Some(request.region.clone()),
        cluster: Some(request.cluster.clone()),
        ..runtime
    };
    Ok(stage)
}

/// The cluster's services `request` names, with their current task definitions.
async fn read_services(
    ecs: &aws_sdk_ecs::Client,
    request: &EcsRequest,
) -> Result<Vec<(Service, TaskDefinition)>, ImportError> {
    let aws = |what: String| move |e: String| ImportError::Aws(format!("{what}: {e}"));
    let clusters = ecs
        .describe_clusters()
        .clusters(&request.cluster)
        .send()
        .await
        .map_err(|e| aws("cannot describe the cluster".into())(crate::aws::error_text(&e)))?;
    if !clusters.clusters().iter().any(|c| c.status() == Some("ACTIVE")) {
        return Err(ImportError::ClusterNotFound { cluster: request.cluster.clone(), region: request.region.clone() });
    }
    let mut names = request.services.clone();
    if request.all {
        let mut pages = ecs.list_services().cluster(&request.cluster).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws("cannot list services".into())(crate::aws::error_text(&e)))?;
            for arn in page.service_arns() {
                let name = arn.rsplit('/').next().unwrap_or(arn).to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names.sort();
    }
    if names.is_empty() {
        return Err(ImportError::NoServices { cluster: request.cluster.clone() });
    }
    let mut services = Vec::new();
    for chunk in names.chunks(SERVICES_PER_CALL) {
        let out = ecs
            .describe_services()
            .cluster(&request.cluster)
            .set_services(Some(chunk.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await
            .map_err(|e| aws("cannot describe services".into())(crate::aws::error_text(&e)))?;
        for name in chunk {
            let found = out.services().iter().find(|s| {
                s.status() == Some("ACTIVE") && (s.service_name() == Some(name) || s.service_arn() == Some(name))
            });
            match found {
                Some(s) => services.push(s.clone()),
                None => {
                    return Err(ImportError::ServiceNotFound {
                        service: name.clone(),
                        cluster: request.cluster.clone(),
                    })
                }
            }
        }
    }
    let mut out = Vec::new();
    for service in services {
        let arn = service.task_definition().unwrap_or_default().to_string();
        let td = ecs
            .describe_task_definition()
            .task_definition(&arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| aws(format!("cannot describe task definition {arn}"))(crate::aws::error_text(&e)))?
            .task_definition()
            .cloned()
            .ok_or_else(|| ImportError::Aws(format!("ECS returned no task definition {arn}")))?;
        if td.container_definitions().is_empty() {
            return Err(ImportError::Aws(format!("task definition {arn} has no container")));
        }
        out.push((service, td));
    }
    Ok(out)
}

/// The index of the app's own container: the one a load balancer sends traffic to, else
/// the first essential one with a port, else the first essential one.
fn main_container(service: &Service, td: &TaskDefinition) -> usize {
    let containers = td.container_definitions();
    let balanced = service.load_balancers().iter().filter_map(|lb| lb.container_name()).collect::<Vec<_>>();
    let essential = |c: &aws_sdk_ecs::types::ContainerDefinition| c.essential().unwrap_or(true);
    containers
        .iter()
        .position(|c| c.name().is_some_and(|n| balanced.contains(&n)))
        .or_else(|| containers.iter().position(|c| essential(c) && !c.port_mappings().is_empty()))
        .or_else(|| containers.iter().position(essential))
        .unwrap_or(0)
}

/// `(repository, digest)` of an image reference: a digest as written, a tag (default
/// `latest`) resolved through ECR.
fn resolve_image(ecr: &EcrRegistry, service: &str, image: &str) -> Result<(String, Digest), ImportError> {
    let not_in_ecr =
        |why: String| ImportError::ImageNotInEcr { service: service.to_string(), image: image.to_string(), why };
    if let Some((repo, digest)) = image.split_once('@') {
        let digest = digest.parse::<Digest>().map_err(|e| not_in_ecr(e.to_string()))?;
        return Ok((repo.to_string(), digest));
    }
    // A `:` after the last `/` starts the tag (one before it is a registry port).
    let last = image.rsplit_once('/').map_or(image, |(_, name)| name);
    let (repo, tag) = match last.rsplit_once(':') {
        Some((_, tag)) => (&image[..image.len() - tag.len() - 1], tag),
        None => (image, "latest"),
    };
    let digest = ecr.resolve_tag(repo, tag).map_err(|e| not_in_ecr(e.to_string()))?;
    Ok((repo.to_string(), digest))
}

/// `(region, account)` of an ARN.
fn arn_region_account(arn: &str) -> (String, String) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        [_, _, _, region, account, _] => (region.to_string(), account.to_string()),
        _ => (String::new(), String::new()),
    }
}

/// The service's Application Auto Scaling target and its policies, or `None`.
async fn autoscaling(
    client: &aws_sdk_applicationautoscaling::Client,
    cluster: &str,
    service: &str,
) -> Result<Option<mapping::Scaling>, String> {
    use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
    let resource = crate::runtime::ecs::autoscaling::resource_id(cluster, service);
    let targets = client
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(&resource)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| crate::aws::error_text(&e))?;
    let Some(target) = targets.scalable_targets().first() else { return Ok(None) };
    let policies = client
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&resource)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| crate::aws::error_text(&e))?;
    Ok(Some(mapping::Scaling {
        min: target.min_capacity(),
        max: target.max_capacity(),
        policies: policies.scaling_policies().to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_give_region_and_account() {
        assert_eq!(
            arn_region_account("arn:aws:ecs:eu-central-1:123456789012:task-definition/web:3"),
            ("eu-central-1".into(), "123456789012".into())
        );
        assert_eq!(arn_region_account("nonsense"), (String::new(), String::new()));
    }
}
