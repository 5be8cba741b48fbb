//! The archive store of ferry before OCI images (`.ferry/registry/blobs/sha256/<hex>`,
//! `.ferry/registry/repos/…`). It is no longer read: its digests are digests of tar archives,
//! not of image manifests, so no registry holds them. A digest found there is reported as
//! [`RegistryError::Legacy`](super::RegistryError::Legacy) — with how to move — rather than
//! as a plain "not found" that would leave the user guessing.

use std::path::{Path, PathBuf};

use crate::config::Digest;

/// The old store of a project, if it still has one.
#[derive(Debug, Clone)]
pub struct LegacyStore {
    root: PathBuf,
}

impl LegacyStore {
    /// The old store under `<project>/.ferry/registry/`, when that folder holds one.
    pub fn find(project_root: &Path) -> Option<LegacyStore> {
        let root = project_root.join(".ferry").join("registry");
        root.join("blobs").join("sha256").is_dir().then_some(LegacyStore { root })
    }

    /// Whether the old store holds `digest`.
    pub fn holds(&self, digest: &Digest) -> bool {
        self.root.join("blobs").join("sha256").join(digest.hex()).is_file()
    }
}
