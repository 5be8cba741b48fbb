//! The ECR registry: release digests verified with DescribeImages, tags resolved the same
//! way. Synchronous like every [`Registry`]: each call runs its request on the shared AWS
//! runtime ([`crate::aws::block_on`]).
//!
//! Image names are ECR repository URIs (`123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web`):
//! the account becomes the registry id and the path the repository name. A bare name
//! (`shop/web`) means a repository of the caller's own account.

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::ImageIdentifier;

use super::{is_repository_name, is_tag, Registry, RegistryError, Result};
use crate::config::Digest;

/// ECR through one client.
#[derive(Debug, Clone)]
pub struct EcrRegistry {
    client: aws_sdk_ecr::Client,
}

/// `(registry id, repository name)` of an image name.
pub fn parse_repository(image: &str) -> Result<(Option<String>, String)> {
    let (registry, name) = match image.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') => {
            let account = host.split_once(".dkr.ecr.").map(|(a, _)| a.to_string());
            match account {
                Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => (Some(a), rest),
                _ => return Err(RegistryError::InvalidRepository(image.to_string())),
            }
        }
        _ => (None, image),
    };
    if !is_repository_name(name) {
        return Err(RegistryError::InvalidRepository(image.to_string()));
    }
    Ok((registry, name.to_string()))
}

impl EcrRegistry {
    /// The registry reached through `sdk` (region, credentials, endpoint).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        EcrRegistry { client: aws_sdk_ecr::Client::new(sdk) }
    }

    /// The registry reached through `client`.
    pub fn from_client(client: aws_sdk_ecr::Client) -> Self {
        EcrRegistry { client }
    }

    /// The digest of the one image `id` names in `repo`; `Ok(None)` when there is none.
    fn describe(&self, repo: &str, id: ImageIdentifier) -> Result<Option<Digest>> {
        let (registry_id, name) = parse_repository(repo)?;
        let request = self.client.describe_images().set_registry_id(registry_id).repository_name(name).image_ids(id);
        match crate::aws::block_on(request.send()) {
            Ok(out) => Ok(out
                .image_details()
                .iter()
                .find_map(|d| d.image_digest())
                .map(|d| d.parse().map_err(|e| RegistryError::Remote(format!("ECR returned {e}"))))
                .transpose()?),
            Err(e) if matches!(e.code(), Some("ImageNotFoundException" | "RepositoryNotFoundException")) => Ok(None),
            Err(e) => Err(remote(repo, e)),
        }
    }
}

fn remote<E, R>(repo: &str, e: SdkError<E, R>) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    RegistryError::Remote(format!("cannot ask ECR about `{repo}`: {}", DisplayErrorContext(&e)))
}

impl Registry for EcrRegistry {
    fn verify(&self, repo: &str, digest: &Digest) -> Result<()> {
        match self.describe(repo, ImageIdentifier::builder().image_digest(digest.as_str()).build())? {
            Some(found) if &found == digest => Ok(()),
            _ => Err(RegistryError::DigestNotFound { repo: repo.to_string(), digest: digest.clone() }),
        }
    }

    fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Digest> {
        if !is_tag(tag) {
            return Err(RegistryError::InvalidTag(tag.to_string()));
        }
        self.describe(repo, ImageIdentifier::builder().image_tag(tag).build())?
            .ok_or_else(|| RegistryError::TagNotFound { repo: repo.to_string(), tag: tag.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_uris_split_into_account_and_name() {
        assert_eq!(
            parse_repository("123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web").unwrap(),
            (Some("123456789012".into()), "shop/web".into())
        );
        assert_eq!(parse_repository("shop/web").unwrap(), (None, "shop/web".into()));
        assert!(parse_repository("ghcr.io/shop/web").is_err());
        assert!(parse_repository("Shop").is_err());
    }
}
