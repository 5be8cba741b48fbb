//! Image registries: where release digests are verified, tags resolved, images pushed and
//! pulled.
//!
//! [`Registry`] is the seam the planner and runtimes use: does this repository hold this
//! digest, and which digest does this tag name. [`OciRegistry`] speaks the OCI Distribution
//! API (through `oci-client`) to any registry: the distribution registry ferry starts for
//! local stages ([`serve`]), one the user names in `[registry] url`, or ECR for pushes and
//! pulls. [`EcrRegistry`] answers digest and tag questions on ECR through the ECR API.
//! A digest is always the image's *manifest* digest, as `docker inspect` and ECR show it.
//!
//! [`image`] makes images: a single-layer OCI image from a folder or tarball (`layer`
//! writes the deterministic layer), or the images of a `docker save` / OCI-layout archive.
//! [`legacy`] recognises the archive store of ferry before OCI images, to say how to move.
//!
//! Errors name the repository and digest; callers add the app and release, which only they
//! know.

pub mod ecr;
pub mod image;
pub(crate) mod layer;
pub mod legacy;
pub mod oci;
pub mod serve;

pub use ecr::EcrRegistry;
pub use image::ImageBlobs;
pub use oci::{OciRegistry, Pushed};
pub use serve::ProjectRegistry;

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
    /// `digests` of `repo` will be verified soon: a registry that checks several digests in
    /// one request may ask for them all with the first (ECR). By default nothing.
    fn expect(&self, repo: &str, digests: &[Digest]) {
        let _ = (repo, digests);
    }
}

/// Where a registry is: `HOST[:PORT]` and an optional namespace every repository lives
/// under (`registry.example.com/shop` puts `web` at `shop/web`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    /// `HOST[:PORT]`, as in an image reference.
    pub host: String,
    /// Path prefix of every repository, without slashes at either end.
    pub namespace: Option<String>,
}

impl RegistryUrl {
    /// Parse `HOST[:PORT][/NAMESPACE]` (an `http://` or `https://` prefix is accepted and
    /// ignored: the scheme follows from the host). The error says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<RegistryUrl, String> {
        let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).unwrap_or(text);
        let rest = rest.trim_end_matches('/');
        let (host, namespace) = match rest.split_once('/') {
            Some((h, ns)) => (h, Some(ns)),
            None => (rest, None),
        };
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b)) {
            return Err("has no host name".into());
        }
        if let Some(p) = port {
            if p.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("has port `{p}`, which is not a port number"));
            }
        }
        if let Some(ns) = namespace {
            if !is_repository_name(ns) {
                return Err(format!("has namespace `{ns}`, which is not a repository path"));
            }
        }
        Ok(RegistryUrl { host: host.to_string(), namespace: namespace.map(str::to_string) })
    }

    /// The registry's name for repository `repo`.
    pub fn repository(&self, repo: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{repo}"),
            None => repo.to_string(),
        }
    }

    /// Whether the registry is on this machine, reached over plain HTTP (as Docker does for
    /// 127.0.0.0/8); every other registry is reached over HTTPS.
    pub fn is_loopback(&self) -> bool {
        let name = self.host.rsplit_once(':').map_or(self.host.as_str(), |(n, _)| n);
        name == "localhost" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Everything that can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository does not hold this digest (or does not exist).
    #[error("repository `{repo}` has no image {digest}")]
    DigestNotFound { repo: String, digest: Digest },
    /// The registry cannot be reached.
    #[error("cannot reach the image registry at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The registry answered, but refused or did not follow the protocol.
    #[error("the image registry at {url} {reason}")]
    Refused { url: String, reason: String },
    /// The digest is in ferry's old archive store, which is no longer read.
    #[error("image {digest} is in ferry's old archive store (.ferry/registry/), which this version no longer reads")]
    Legacy { digest: Digest },
    /// The registry ferry starts on demand cannot be started.
    #[error("cannot start the local image registry: {0}")]
    CannotStart(String),
    /// A file is not an image ferry can push.
    #[error("{path} {reason}")]
    NotAnImage { path: String, reason: String },
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
    /// A pulled blob does not match its digest.
    #[error("image content {digest} is corrupt: it hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    /// ECR could not be asked or gave an unusable answer.
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
            RegistryError::Unreachable { .. } => Some(
                "start the registry, or check `[registry] url` in ferry.toml (without it, ferry starts one itself)"
                    .into(),
            ),
            RegistryError::Refused { .. } => {
                Some("check the registry's address and credentials (FERRY_REGISTRY_USER, FERRY_REGISTRY_PASSWORD)".into())
            }
            RegistryError::Legacy { .. } => Some(
                "push the image folder again with `ferry image push DIR --repo NAME` (an OCI image: its digest \
                 differs), put the new digest in the stage file with `ferry release create`, then delete .ferry/registry/"
                    .into(),
            ),
            RegistryError::CannotStart(_) => Some(
                "install the CNCF distribution registry (Debian: `apt install docker-registry`; or a `registry` \
                 binary on PATH), or name a running one with `[registry] url = \"HOST:PORT\"` in ferry.toml"
                    .into(),
            ),
            RegistryError::NotAnImage { .. } => Some(
                "push a folder, a tarball of files, or a `docker save` / OCI-layout archive".into(),
            ),
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
