//! One client for the OCI Distribution API (through `oci-client`): resolve tags and
//! digests, check a digest exists, list tags, push and pull. The same code reaches the
//! registry ferry starts for local stages, a registry named in `[registry] url`, and ECR
//! (with the basic auth `GetAuthorizationToken` gives).
//!
//! Synchronous like every [`Registry`]: each call runs on the shared runtime
//! ([`crate::aws::block_on`]). Registries on 127.0.0.1 and `localhost` are spoken to over
//! plain HTTP, as Docker does; every other one over HTTPS.

use std::fs;
use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

use super::image::{sha256, ImageBlobs, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::layer::{create_private_dir, Applier};
use super::legacy::LegacyStore;
use super::{is_repository_name, is_tag, Registry, RegistryError, RegistryUrl, Result};
use crate::config::Digest;

/// The result of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The image's manifest digest.
    pub digest: Digest,
    /// Regular files in the image (when ferry made it from files).
    pub files: Option<usize>,
    /// Bytes of manifest, config and layers.
    pub size: u64,
    /// Whether the repository did not hold the image before.
    pub new: bool,
}

/// A registry spoken to over the OCI Distribution API.
#[derive(Clone)]
pub struct OciRegistry {
    client: Client,
    url: RegistryUrl,
    auth: RegistryAuth,
    legacy: Option<LegacyStore>,
}

impl std::fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The auth holds a password: never printed.
        f.debug_struct("OciRegistry").field("url", &self.url).finish_non_exhaustive()
    }
}

impl OciRegistry {
    /// The registry at `url`, with `auth` (anonymous, or basic for ECR and private ones).
    pub fn new(url: RegistryUrl, auth: RegistryAuth) -> Self {
        let protocol = if url.is_loopback() { ClientProtocol::Http } else { ClientProtocol::Https };
        let client = Client::new(ClientConfig { protocol, ..ClientConfig::default() });
        OciRegistry { client, url, auth, legacy: None }
    }

    /// The registry at `url`, without credentials.
    pub fn anonymous(url: RegistryUrl) -> Self {
        Self::new(url, RegistryAuth::Anonymous)
    }

    /// Credentials from `FERRY_REGISTRY_USER` / `FERRY_REGISTRY_PASSWORD`, when both are set.
    pub fn auth_from_env() -> RegistryAuth {
        match (std::env::var("FERRY_REGISTRY_USER"), std::env::var("FERRY_REGISTRY_PASSWORD")) {
            (Ok(user), Ok(password)) if !user.is_empty() => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        }
    }

    /// Also recognise digests of the old archive store of the project at `root`.
    pub fn with_legacy_store(mut self, project_root: &Path) -> Self {
        self.legacy = LegacyStore::find(project_root);
        self
    }

    /// Where the registry is.
    pub fn url(&self) -> &RegistryUrl {
        &self.url
    }

    /// The full name of `repo`'s image `name@digest` or `name:tag`, as Docker writes it.
    pub fn image_name(&self, repo: &str) -> String {
        format!("{}/{}", self.url.host, self.url.repository(repo))
    }

    fn reference(&self, repo: &str, at: At<'_>) -> Result<Reference> {
        if !is_repository_name(repo) {
            return Err(RegistryError::InvalidRepository(repo.to_string()));
        }
        let (host, path) = (self.url.host.clone(), self.url.repository(repo));
        Ok(match at {
            At::Tag(t) => {
                if !is_tag(t) {
                    return Err(RegistryError::InvalidTag(t.to_string()));
                }
                Reference::with_tag(host, path, t.to_string())
            }
            At::Digest(d) => Reference::with_digest(host, path, d.to_string()),
        })
    }

    /// The digest `at` names in `repo`; `None` when there is no such manifest.
    fn manifest_digest(&self, repo: &str, at: At<'_>) -> Result<Option<Digest>> {
        let reference = self.reference(repo, at)?;
        match crate::aws::block_on(self.client.fetch_manifest_digest(&reference, &self.auth)) {
            Ok(d) => d.parse().map(Some).map_err(|e| self.refused(format!("returned a bad digest: {e}"))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Every tag of `repo` (empty for a repository the registry does not know).
    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let reference = self.reference(repo, At::Tag("latest"))?;
        let mut tags = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page = crate::aws::block_on(self.client.list_tags(&reference, &self.auth, Some(1000), last.as_deref()));
            match page {
                Ok(page) => {
                    let done = page.tags.len() < 1000;
                    tags.extend(page.tags);
                    if done {
                        break;
                    }
                }
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(self.error(e)),
            }
        }
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// Push `image` to `repo` (blobs the registry lacks, then the manifest by digest and,
    /// with `tag`, by tag).
    pub fn push(&self, repo: &str, image: &ImageBlobs, tag: Option<&str>) -> Result<Pushed> {
        let digest = image.digest();
        let by_digest = self.reference(repo, At::Digest(&digest))?;
        let by_tag = tag.map(|t| self.reference(repo, At::Tag(t))).transpose()?;
        let new = self.manifest_digest(repo, At::Digest(&digest))?.is_none();
        crate::aws::block_on(async {
            if new {
                for blob in image.layers.iter().chain([&image.config]) {
                    if !self.client.blob_exists(&by_digest, blob.digest.as_str()).await? {
                        self.client.push_blob(&by_digest, blob.data.clone(), blob.digest.as_str()).await?;
                    }
                }
            }
            let content_type = image.manifest_media_type.parse().expect("media types are header values");
            if new {
                self.client.push_manifest_raw(&by_digest, image.manifest.clone(), content_type).await?;
            }
            if let Some(by_tag) = &by_tag {
                let content_type = image.manifest_media_type.parse().expect("media types are header values");
                self.client.push_manifest_raw(by_tag, image.manifest.clone(), content_type).await?;
            }
            Ok::<_, OciDistributionError>(())
        })
        .map_err(|e| self.error(e))?;
        Ok(Pushed { digest, files: image.files, size: image.size(), new })
    }

    /// Pull image `digest` of `repo` and apply its layers to the folder `dest`, which must
    /// not exist yet (an existing `dest` is taken as done: content-addressed folders never
    /// change). Atomic: the layers land in a temporary sibling folder, renamed to `dest`
    /// once all are applied and checked; a reader never sees half a release.
    pub fn unpack(&self, repo: &str, digest: &Digest, dest: &Path) -> Result<()> {
        if dest.is_dir() {
            return Ok(());
        }
        let layers = self.pull_layers(repo, digest)?;
        let parent = dest.parent().unwrap_or(Path::new("."));
        crate::private_files::create_dir_all(parent)
            .map_err(|e| RegistryError::io(format!("cannot create {}", parent.display()), e))?;
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("release");
        let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        let result = (|| {
            create_private_dir(&tmp).map_err(|e| RegistryError::io(format!("cannot create {}", tmp.display()), e))?;
            let mut applier = Applier::new(&tmp);
            for layer in &layers {
                if layer.starts_with(&[0x1f, 0x8b]) {
                    applier.apply(flate2::read::GzDecoder::new(layer.as_slice()))?;
                } else {
                    applier.apply(layer.as_slice())?;
                }
            }
            match fs::rename(&tmp, dest) {
                Ok(()) => Ok(()),
                // Someone else unpacked the same release meanwhile: theirs is as good.
                Err(_) if dest.is_dir() => Ok(()),
                Err(e) => Err(RegistryError::io(format!("cannot create {}", dest.display()), e)),
            }
        })();
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// The layers of image `digest`, bottom first, each checked against its digest.
    fn pull_layers(&self, repo: &str, digest: &Digest) -> Result<Vec<Vec<u8>>> {
        let reference = self.reference(repo, At::Digest(digest))?;
        let accepted = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];
        let pulled = crate::aws::block_on(self.client.pull_manifest_raw(&reference, &self.auth, &accepted));
        let (bytes, _) = match pulled {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => return Err(self.not_found(repo, digest)),
            Err(e) => return Err(self.error(e)),
        };
        let actual = sha256(&bytes);
        if &actual != digest {
            return Err(RegistryError::Corrupt { digest: digest.clone(), actual });
        }
        let manifest: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.refused(format!("returned an unreadable manifest: {e}")))?;
        if manifest["manifests"].is_array() {
            return Err(self.refused(format!(
                "holds {digest} as a multi-platform index; name the digest of one platform's image"
            )));
        }
        let mut layers = Vec::new();
        for layer in manifest["layers"].as_array().cloned().unwrap_or_default() {
            let media_type = layer["mediaType"].as_str().unwrap_or_default();
            if media_type.contains("zstd") {
                return Err(self.refused(format!("holds a zstd layer in {digest}, which ferry cannot unpack yet")));
            }
            let descriptor: oci_client::manifest::OciDescriptor = serde_json::from_value(layer)
                .map_err(|e| self.refused(format!("returned a manifest with a bad layer: {e}")))?;
            let mut data = Vec::new();
            crate::aws::block_on(self.client.pull_blob(&reference, &descriptor, &mut data))
                .map_err(|e| self.error(e))?;
            let actual = sha256(&data);
            if actual.as_str() != descriptor.digest {
                return Err(RegistryError::Corrupt {
                    digest: descriptor.digest.parse().unwrap_or(actual.clone()),
                    actual,
                });
            }
            layers.push(data);
        }
        Ok(layers)
    }

    fn not_found(&self, repo: &str, digest: &Digest) -> RegistryError {
        if self.legacy.as_ref().is_some_and(|l| l.holds(digest)) {
            return RegistryError::Legacy { digest: digest.clone() };
        }
        RegistryError::DigestNotFound { repo: repo.to_string(), digest: digest.clone() }
    }

    fn refused(&self, reason: String) -> RegistryError {
        RegistryError::Refused { url: self.url.to_string(), reason }
    }

    fn error(&self, e: OciDistributionError) -> RegistryError {
        match e {
            OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => RegistryError::Unreachable {
                url: self.url.to_string(),
                reason: std::error::Error::source(&e).map_or_else(|| e.to_string(), innermost),
            },
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                self.refused("refused the credentials (not authorized)".into())
            }
            other => self.refused(format!("failed: {other}")),
        }
    }
}

/// The deepest cause of an error: "Connection refused" rather than a chain of wrappers.
pub(crate) fn innermost(mut e: &(dyn std::error::Error + 'static)) -> String {
    while let Some(s) = e.source() {
        e = s;
    }
    e.to_string()
}

/// Where in a repository: a tag or a digest.
#[derive(Clone, Copy)]
enum At<'a> {
    Tag(&'a str),
    Digest(&'a Digest),
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::BlobUnknown)
        }),
        _ => false,
    }
}

impl Registry for OciRegistry {
    fn verify(&self, repo: &str, digest: &Digest) -> Result<()> {
        match self.manifest_digest(repo, At::Digest(digest))? {
            Some(_) => Ok(()),
            None => Err(self.not_found(repo, digest)),
        }
    }

    fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Digest> {
        self.manifest_digest(repo, At::Tag(tag))?
            .ok_or_else(|| RegistryError::TagNotFound { repo: repo.to_string(), tag: tag.to_string() })
    }
}
