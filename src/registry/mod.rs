//! Image registries: where release digests are verified and tags resolved.
//!
//! [`Registry`] is the seam the planner and runtimes use: does this repository hold this
//! digest, and which digest does this tag name. [`LocalRegistry`] is the content-addressed
//! store of the local runtime under `.ferry/registry/` (filled by `ferry image push`);
//! [`EcrRegistry`] implements the same trait on ECR for ECS stages.
//!
//! Errors name the repository and digest; callers add the app and release, which only they
//! know.

mod archive;
pub mod ecr;
mod local;

pub use ecr::EcrRegistry;
pub use local::{LocalRegistry, Pushed};

use crate::config::Digest;

/// Result alias for registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// What a deploy needs from a registry. Synchronous like `StateStore`: callers on an async
/// runtime run it on a blocking thread.
pub trait Registry: Send + Sync {
    /// Succeeds when `repo` holds an image with `digest`.
    fn verify(&self, repo: &str, digest: &Digest) -> Result<()>;
    /// The digest `tag` currently names in `repo`.
    fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Digest>;
}

/// Everything that can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository does not hold this digest (or does not exist).
    #[error("repository `{repo}` has no image {digest}")]
    DigestNotFound { repo: String, digest: Digest },
    /// No image with this digest is stored at all.
    #[error("the local registry has no image {digest}")]
    BlobNotFound { digest: Digest },
    /// The repository has no such tag.
    #[error("repository `{repo}` has no tag `{tag}`")]
    TagNotFound { repo: String, tag: String },
    /// Not a repository name.
    #[error("`{0}` is not a valid repository name")]
    InvalidRepository(String),
    /// Not a tag.
    #[error("`{0}` is not a valid tag")]
    InvalidTag(String),
    /// An entry of the pushed folder or tarball cannot be stored safely.
    #[error("cannot store `{path}`: it {reason}")]
    UnsafePath { path: String, reason: String },
    /// A stored blob no longer matches its digest.
    #[error("stored image {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    /// A remote registry (ECR) could not be asked or gave an unusable answer.
    #[error("{0}")]
    Remote(String),
    /// The file system failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RegistryError::Io { context: context.into(), source }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::DigestNotFound { repo, .. } if repo.contains(".dkr.ecr.") => {
                Some(format!("push the image to ECR first (`docker push {repo}:TAG` prints its digest)"))
            }
            RegistryError::DigestNotFound { repo, .. } => {
                Some(format!("push the image first: `ferry image push DIR --repo {repo}` prints its digest"))
            }
            RegistryError::BlobNotFound { .. } => {
                Some("push the image first: `ferry image push DIR --repo NAME`".into())
            }
            RegistryError::TagNotFound { repo, tag } => {
                Some(format!("tag an image: `ferry image push DIR --repo {repo} --tag {tag}`"))
            }
            RegistryError::InvalidRepository(_) => {
                Some("use lowercase letters and digits, separated by `.`, `_`, `-` or `/` (e.g. `shop/web`)".into())
            }
            RegistryError::InvalidTag(_) => {
                Some("a tag is at most 128 letters, digits, `.`, `_` and `-`, not starting with `.` or `-`".into())
            }
            RegistryError::UnsafePath { .. } => Some(
                "images hold files, folders and symlinks that stay inside the image; remove or replace the entry"
                    .into(),
            ),
            RegistryError::Corrupt { .. } => Some("push the image again to restore it".into()),
            RegistryError::Io { .. } | RegistryError::Remote(_) => None,
        }
    }
}

/// Whether `name` is a repository name: lowercase alphanumeric components separated by one
/// `.`, `_` or `-` (or `__`), path segments separated by `/`; at most 255 characters. The same
/// rule as OCI distribution, so a name means the same locally and on ECR.
pub fn is_repository_name(name: &str) -> bool {
    name.len() <= 255
        && !name.is_empty()
        && name.split('/').all(|seg| {
            let b = seg.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
                && !seg.contains("..")
        })
}

/// Whether `tag` is an image tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_oci_rules() {
        for ok in ["web", "shop/web", "a.b_c-d", "x1/y2/z3"] {
            assert!(is_repository_name(ok), "{ok}");
        }
        for bad in ["", "Web", "/web", "web/", "a//b", "-web", "web-", "a..b", "a/../b", "we b"] {
            assert!(!is_repository_name(bad), "{bad}");
        }
        assert!(is_tag("v1.2.3") && is_tag("latest") && is_tag("_x"));
        assert!(!is_tag("") && !is_tag(".x") && !is_tag("-x") && !is_tag("a/b") && !is_tag(&"a".repeat(129)));
    }
}
