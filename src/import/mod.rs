//! `ferry import`: adopt what already runs. Live ECS services ([`ecs`]) or an AWS Copilot
//! workspace ([`copilot`]) are read into stage-file terms through one table of features
//! ([`mapping`]); [`write`] puts them into the stage file with the format-preserving editor
//! (comments and layout kept, a re-import of an unchanged service changes nothing) and
//! records adopted services in state, so the first plan shows no changes and the first
//! commit updates the service in place.

pub mod copilot;
pub mod ecs;
pub mod mapping;
pub mod write;

use crate::config::file::{AppSection, RuntimeSection};
use crate::state::AdoptedService;

/// Why an import could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("cluster `{cluster}` not found in {region}")]
    ClusterNotFound { cluster: String, region: String },
    #[error("service `{service}` not found in cluster `{cluster}`")]
    ServiceNotFound { service: String, cluster: String },
    #[error("no services to import from cluster `{cluster}`")]
    NoServices { cluster: String },
    #[error("service `{service}` runs image `{image}`, which ferry cannot resolve in ECR: {why}")]
    ImageNotInEcr { service: String, image: String, why: String },
    #[error("service `{service}`: {why}")]
    Name { service: String, why: String },
    #[error("{0}")]
    Copilot(String),
    #[error("{0}")]
    Aws(String),
}

impl ImportError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ImportError::ClusterNotFound { .. } => "check the name with `aws ecs list-clusters`, and the region".into(),
            ImportError::ServiceNotFound { cluster, .. } => {
                format!("list the cluster's services with `aws ecs list-services --cluster {cluster}`")
            }
            ImportError::NoServices { .. } => "name services with --service NAME, or pass --all".into(),
            ImportError::ImageNotInEcr { .. } => {
                "ferry deploys images from ECR by digest: push the image to an ECR repository and point the \
                 service at it, or pin it by digest (REPO@sha256:…)"
                    .into()
            }
            _ => return None,
        })
    }
}

/// Something a source uses that the stage file does not (fully) say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What it is about: `service prod-web`, `copilot service api (environment test)`.
    pub source: String,
    /// The feature: `sidecar containers`, `autoscaling`, …
    pub feature: String,
    /// How it is used, and what import did about it.
    pub detail: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.feature, self.detail)
    }
}

/// A service adopted: its own names, the task definition it runs, its ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub names: AdoptedService,
    pub revision: String,
    pub service_arn: String,
}

/// One app as import read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedApp {
    pub name: String,
    /// Its `[apps.NAME]`, in the file's own types.
    pub section: AppSection,
    /// The live service (ECS import), recorded in state; `None` for a Copilot manifest.
    pub adopted: Option<Adoption>,
}

/// One stage as import read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportedStage {
    pub runtime: RuntimeSection,
    pub apps: Vec<ImportedApp>,
    pub warnings: Vec<Warning>,
}

/// The app name of service `service` in `stage`: without a `<stage>-` prefix (ferry's own
/// naming), lowercase, other characters as `-`, at most 32 characters.
pub fn app_name(service: &str, stage: &str) -> Result<String, String> {
    let base = service.strip_prefix(&format!("{stage}-")).filter(|s| !s.is_empty()).unwrap_or(service);
    let mut name: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    name.truncate(32);
    let name = name.trim_matches('-').to_string();
    if crate::config::validate::is_dns_label(&name, 32) {
        Ok(name)
    } else {
        Err(format!("no app name can be made of `{service}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_come_from_service_names() {
        assert_eq!(app_name("prod-web", "prod").unwrap(), "web");
        assert_eq!(app_name("Billing_API", "prod").unwrap(), "billing-api");
        assert_eq!(app_name("prod-", "prod").unwrap(), "prod");
        assert_eq!(app_name(&"x".repeat(40), "prod").unwrap(), "x".repeat(32));
        assert!(app_name("___", "prod").is_err());
    }
}
