//! [`RecordStore`]: project-level records kept beside the stages' state — status checks,
//! image imports, pending promotions — as small JSON documents updated by compare-and-swap.
//!
//! Unlike a stage's state these records have no lock of their own: every change is a short
//! read-modify-write, so a conditional write ([`RecordStore::write`] with the version that
//! was read) is all the coordination needed, and [`update`] retries on a conflict.
//!
//! [`LocalRecordStore`] keeps `<project>/.ferry/<key>.json` (e.g. `.ferry/status/web.json`)
//! with the discipline of the local state store: the compare-and-swap runs under `flock(2)`
//! on the directory, and the file is replaced atomically (temp file, fsync, rename, fsync
//! the directory), so a reader sees the old or the new document.
//!
//! [`S3RecordStore`] keeps `s3://<bucket>/<prefix>/records/<key>.json` beside the stages'
//! state objects, through the S3 state store's own requests: a document is created with
//! `If-None-Match: *` and replaced with `If-Match` of the ETag that was read, so S3 decides
//! which of two writers wins and the other re-reads; a write carries a random attempt id as
//! metadata, so a request the SDK retried after a lost answer recognises its own success.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::config::{Project, StateBackend};
use crate::state::s3::{Failure, RETRIES};
use crate::state::{S3StateStore, StateError};

/// Result alias for record operations.
pub type Result<T, E = RecordError> = std::result::Result<T, E>;

/// Everything that can go wrong with project records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The document changed between read and write (another writer won).
    #[error("{location} changed while it was being updated")]
    Precondition { location: String },
    /// The stored document does not parse.
    #[error("{location} is not a valid record file: {message}")]
    Corrupt { location: String, message: String },
    /// A key that could leave the store's directory.
    #[error("`{0}` is not a valid record name")]
    InvalidKey(String),
    /// The backend failed (disk, network, permissions), or is not available.
    #[error("{location}: {message}")]
    Backend { location: String, message: String },
}

/// A stored document's version, as the backend identifies it (local: a content hash; S3:
/// the ETag). Writes are conditional on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

/// Where project records are kept. Keys are `/`-separated names such as `status/web`.
pub trait RecordStore: Send + Sync {
    /// Where a key lives, for messages.
    fn location(&self, key: &str) -> String;
    /// The document and its version; `None` when it has never been written.
    fn read(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>>;
    /// Store `bytes` if the stored version is still `expected` (`None`: nothing stored yet);
    /// otherwise [`RecordError::Precondition`]. Atomic.
    fn write(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<()>;
}

/// The record store of a project's `[state]` backend.
pub fn open_records(project: &Project) -> Result<Box<dyn RecordStore>> {
    match &project.state {
        StateBackend::Local => Ok(Box::new(LocalRecordStore::new(project.root.join(".ferry")))),
        StateBackend::S3 { bucket, prefix, region } => {
            let objects = S3StateStore::connect(bucket, prefix, region.as_deref()).map_err(backend_error)?;
            Ok(Box::new(S3RecordStore::new(objects)))
        }
    }
}

/// A state store's backend failure as a record store's.
fn backend_error(e: StateError) -> RecordError {
    match e {
        StateError::Backend { location, message } => RecordError::Backend { location, message },
        other => RecordError::Backend { location: "state store".into(), message: other.to_string() },
    }
}

/// Read `key` as `T` (its default when never written).
pub fn load<T: DeserializeOwned + Default>(store: &dyn RecordStore, key: &str) -> Result<T> {
    Ok(load_versioned(store, key)?.0)
}

fn load_versioned<T: DeserializeOwned + Default>(store: &dyn RecordStore, key: &str) -> Result<(T, Option<Version>)> {
    match store.read(key)? {
        None => Ok((T::default(), None)),
        Some((bytes, version)) => serde_json::from_slice(&bytes)
            .map(|doc| (doc, Some(version)))
            .map_err(|e| RecordError::Corrupt { location: store.location(key), message: e.to_string() }),
    }
}

/// Read `key`, change it with `change`, and write it back conditionally, retrying when
/// another writer got there first. Returns what `change` returned on the attempt that won.
pub fn update<T, R>(store: &dyn RecordStore, key: &str, mut change: impl FnMut(&mut T) -> R) -> Result<R>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut attempts = 0;
    loop {
        let (mut doc, version) = load_versioned::<T>(store, key)?;
        let result = change(&mut doc);
        let mut bytes = serde_json::to_vec_pretty(&doc).expect("records serialise");
        bytes.push(b'\n');
        match store.write(key, &bytes, version.as_ref()) {
            Err(RecordError::Precondition { .. }) if attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10 * attempts));
            }
            other => return other.map(|()| result),
        }
    }
}

/// Keys become paths: plain names separated by `/`, nothing that leaves the directory.
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(RecordError::InvalidKey(key.to_string()))
    }
}

fn version_of(bytes: &[u8]) -> Version {
    Version(hex::encode(Sha256::digest(bytes)))
}

/// JSON files under one directory, normally `<project>/.ferry`.
#[derive(Debug, Clone)]
pub struct LocalRecordStore {
    dir: PathBuf,
}

impl LocalRecordStore {
    /// A store keeping `<dir>/<key>.json`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalRecordStore { dir: dir.into() }
    }

    /// The file of `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn backend(path: &Path, e: impl std::fmt::Display) -> RecordError {
        RecordError::Backend { location: path.display().to_string(), message: e.to_string() }
    }

    /// Hold `flock(LOCK_EX)` on `dir` while the returned file lives.
    fn exclusive(dir: &Path) -> Result<File> {
        let f = File::open(dir).map_err(|e| Self::backend(dir, e))?;
        loop {
            // SAFETY: flock on a descriptor we own; released when `f` is closed.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(f);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(Self::backend(dir, e));
            }
        }
    }

    fn read_path(path: &Path) -> Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::backend(path, e)),
        }
    }
}

impl RecordStore for LocalRecordStore {
    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn read(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>> {
        check_key(key)?;
        Ok(Self::read_path(&self.path(key))?.map(|b| {
            let v = version_of(&b);
            (b, v)
        }))
    }

    fn write(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<()> {
        check_key(key)?;
        let path = self.path(key);
        let dir = path.parent().expect("a key has a parent directory").to_path_buf();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| Self::backend(&dir, e))?;
        let _exclusive = Self::exclusive(&dir)?;
        let stored = Self::read_path(&path)?.map(|b| version_of(&b));
        if stored.as_ref() != expected {
            return Err(RecordError::Precondition { location: path.display().to_string() });
        }
        crate::atomic_file::remove_leftovers(&dir);
        crate::atomic_file::write(&path, bytes, crate::atomic_file::Mode::Private).map_err(|e| Self::backend(&path, e))
    }
}

/// JSON objects under `<prefix>/records/` of the project's S3 state bucket.
#[derive(Debug, Clone)]
pub struct S3RecordStore {
    /// The state store of the same bucket and prefix, for its conditional requests.
    objects: S3StateStore,
}

impl S3RecordStore {
    /// Records beside the state objects of `objects`.
    pub fn new(objects: S3StateStore) -> Self {
        S3RecordStore { objects }
    }

    /// The object key of `key`: `<prefix>/records/<key>.json`.
    pub fn object_key(&self, key: &str) -> String {
        self.objects.key(&format!("records/{key}.json"))
    }
}

impl RecordStore for S3RecordStore {
    fn location(&self, key: &str) -> String {
        self.objects.url(&self.object_key(key))
    }

    fn read(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>> {
        check_key(key)?;
        let object = self.objects.get(&self.object_key(key)).map_err(backend_error)?;
        Ok(object.map(|o| (o.bytes, Version(o.etag))))
    }

    fn write(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<()> {
        check_key(key)?;
        let object_key = self.object_key(key);
        let expected = expected.map(|v| v.0.as_str());
        let attempt = uuid::Uuid::new_v4().to_string();
        for _ in 0..RETRIES {
            match self.objects.put_if(&object_key, bytes, expected, Some(&attempt)) {
                Ok(()) => return Ok(()),
                // Refused, or (409) another conditional write in flight: look at what is stored.
                Err(failure @ (Failure::Precondition | Failure::NotFound | Failure::InFlight)) => {
                    let stored = self.objects.get(&object_key).map_err(backend_error)?;
                    let unchanged = stored.as_ref().map(|o| o.etag.as_str()) == expected;
                    match stored {
                        // An earlier attempt of this write took effect; its answer was lost.
                        Some(o) if o.attempt.as_deref() == Some(attempt.as_str()) => return Ok(()),
                        // S3 asks to read again and retry while the version is still ours.
                        _ if matches!(failure, Failure::InFlight) && unchanged => {}
                        _ => return Err(RecordError::Precondition { location: self.location(key) }),
                    }
                }
                Err(failure) => return Err(backend_error(self.objects.unexpected(&object_key, failure))),
            }
        }
        Err(RecordError::Backend {
            location: self.location(key),
            message: "S3 kept reporting a conflicting write in flight; try again".into(),
        })
    }
}

/// Records in memory, for tests; clones share the documents.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRecordStore {
    docs: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl RecordStore for InMemoryRecordStore {
    fn location(&self, key: &str) -> String {
        format!("memory:{key}")
    }

    fn read(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>> {
        check_key(key)?;
        let docs = self.docs.lock().expect("record store poisoned");
        Ok(docs.get(key).map(|b| (b.clone(), version_of(b))))
    }

    fn write(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<()> {
        check_key(key)?;
        let mut docs = self.docs.lock().expect("record store poisoned");
        if docs.get(key).map(|b| version_of(b)).as_ref() != expected {
            return Err(RecordError::Precondition { location: self.location(key) });
        }
        docs.insert(key.to_string(), bytes.to_vec());
        Ok(())
    }
}

/// The behaviour every [`RecordStore`] must show; called from each backend's tests.
#[doc(hidden)]
pub fn conformance(store: &dyn RecordStore) {
    assert!(store.read("status/web").unwrap().is_none());
    store.write("status/web", b"1", None).unwrap();
    let (bytes, v1) = store.read("status/web").unwrap().unwrap();
    assert_eq!(bytes, b"1");
    assert!(matches!(store.write("status/web", b"x", None), Err(RecordError::Precondition { .. })));
    store.write("status/web", b"2", Some(&v1)).unwrap();
    assert!(matches!(store.write("status/web", b"3", Some(&v1)), Err(RecordError::Precondition { .. })));
    assert_eq!(store.read("status/web").unwrap().unwrap().0, b"2");
    for bad in ["", "../x", "status/../x", "a//b", ".hidden"] {
        assert!(matches!(store.read(bad), Err(RecordError::InvalidKey(_))), "{bad}");
    }
    // Racing read-modify-writes lose nothing.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    update(store, "counter", |n: &mut u64| *n += 1).unwrap();
                }
            });
        }
    });
    assert_eq!(load::<u64>(store, "counter").unwrap(), 40);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_store_conforms() {
        conformance(&InMemoryRecordStore::default());
    }

    #[test]
    fn local_store_conforms_and_writes_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalRecordStore::new(dir.path());
        conformance(&store);
        assert!(dir.path().join("status/web.json").is_file());
        assert_eq!(fs::read_to_string(dir.path().join("counter.json")).unwrap(), "40\n");
    }
}
