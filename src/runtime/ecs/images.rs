//! Sidecar images in ECR exist: ECS would otherwise accept the task definition and only fail
//! when its tasks cannot pull the image, minutes into a rollout (and with the circuit
//! breaker's rollback, as "tasks failed to start"). Checked at `plan --refresh` and `commit`,
//! never at a plain `plan`, which needs no AWS access — as the app's own image is verified
//! by the commit's verify step, through the same [`EcrRegistry`]: digests of one repository
//! are announced together ([`Registry::expect`]) and asked in one DescribeImages; a tag is
//! resolved (one DescribeImages each), since a tag that names nothing fails the pull as well.
//!
//! Only images of a private ECR repository (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME`) are
//! ECR's to answer for, each asked in the region of its URI; other registries (Docker Hub,
//! `public.ecr.aws`, ghcr.io) are pulled by ECS with no account of ferry's.

use std::collections::BTreeMap;

use crate::config::{Digest, Runtime, Stage};
use crate::registry::{EcrRegistry, Registry, RegistryError};

/// A sidecar image ECR does not hold.
#[derive(Debug)]
pub struct MissingImage {
    pub app: String,
    pub sidecar: String,
    /// As the stage file gives it.
    pub image: String,
    /// What ECR said: no such digest, tag or repository.
    pub error: RegistryError,
}

/// How a sidecar names its image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference {
    Digest(Digest),
    Tag(String),
}

/// A sidecar image to ask ECR about.
struct Wanted<'a> {
    app: &'a str,
    sidecar: &'a str,
    /// As the stage file gives it.
    image: &'a str,
    repo: String,
    reference: Reference,
}

/// `(repository URI, region, reference)` of an image in a private ECR repository; `None`
/// for an image of another registry, or one the stage file check let through unparsed.
fn ecr_image(image: &str) -> Option<(String, String, Reference)> {
    let (host, _) = image.split_once('/')?;
    let (_, rest) = host.split_once(".dkr.ecr.")?;
    let region = rest.split('.').next().filter(|r| !r.is_empty())?.to_string();
    if let Some((repo, digest)) = image.split_once('@') {
        return Some((repo.to_string(), region, Reference::Digest(digest.parse().ok()?)));
    }
    // A tag follows the last `:` after the host (a port has none here: ECR has none).
    let name_at = host.len();
    match image[name_at..].rsplit_once(':') {
        Some((path, tag)) => Some((format!("{host}{path}"), region, Reference::Tag(tag.to_string()))),
        None => Some((image.to_string(), region, Reference::Tag("latest".into()))),
    }
}

/// The sidecar images of `stage`'s apps that ECR does not hold (none for a local stage).
/// `registry` gives the ECR registry of a region. An error is ECR failing to answer.
pub fn missing(stage: &Stage, registry: &dyn Fn(&str) -> EcrRegistry) -> Result<Vec<MissingImage>, RegistryError> {
    if !matches!(stage.runtime, Runtime::Ecs(_)) {
        return Ok(Vec::new());
    }
    let mut by_region: BTreeMap<String, Vec<Wanted<'_>>> = BTreeMap::new();
    for (app, a) in &stage.apps {
        for (sidecar, s) in &a.config.deploy.ecs_task.sidecars {
            if let Some((repo, region, reference)) = ecr_image(&s.image) {
                by_region.entry(region).or_default().push(Wanted { app, sidecar, image: &s.image, repo, reference });
            }
        }
    }
    let mut out = Vec::new();
    for (region, images) in by_region {
        let ecr = registry(&region);
        let mut digests: BTreeMap<&str, Vec<Digest>> = BTreeMap::new();
        for w in &images {
            if let Reference::Digest(d) = &w.reference {
                digests.entry(w.repo.as_str()).or_default().push(d.clone());
            }
        }
        for (repo, digests) in &digests {
            ecr.expect(repo, digests);
        }
        for Wanted { app, sidecar, image, repo, reference } in images {
            let checked = match &reference {
                Reference::Digest(d) => ecr.verify(&repo, d),
                Reference::Tag(t) => ecr.resolve_tag(&repo, t).map(|_| ()),
            };
            match checked {
                Ok(()) => {}
                Err(e @ (RegistryError::DigestNotFound { .. } | RegistryError::TagNotFound { .. })) => {
                    out.push(MissingImage {
                        app: app.to_string(),
                        sidecar: sidecar.to_string(),
                        image: image.to_string(),
                        error: e,
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_ecr_images_are_ecrs_to_check() {
        let uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/envoy";
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            ecr_image(&format!("{uri}@{digest}")),
            Some((uri.to_string(), "eu-west-1".to_string(), Reference::Digest(digest.parse().unwrap())))
        );
        assert_eq!(
            ecr_image(&format!("{uri}:v1.2")),
            Some((uri.to_string(), "eu-west-1".to_string(), Reference::Tag("v1.2".into())))
        );
        assert_eq!(ecr_image(uri), Some((uri.to_string(), "eu-west-1".to_string(), Reference::Tag("latest".into()))));
        for other in ["public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29", "fluent/fluent-bit:3", "envoy", "ghcr.io/a/b:1"]
        {
            assert_eq!(ecr_image(other), None, "{other}");
        }
    }
}
