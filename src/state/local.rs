//! [`LocalStateStore`]: state as JSON files under `.ferry/state/` of the project.
//!
//! Per stage: `<stage>.json` (the state, mode 0600), `<stage>.json.previous` (the copy
//! before the last write), `<stage>.lock` (the lock, holding the holder's [`LockInfo`]);
//! the directory is 0700.
//!
//! - The lock is published with `link(2)`: the holder info is written and fsynced to a
//!   private temp file, then hard-linked to `<stage>.lock`, which fails with `EEXIST` when
//!   the lock exists, exactly like `O_EXCL`, but a reader can never see a lock without its
//!   content. (Where hard links are not supported, `O_EXCL` create-then-write is used.) A
//!   lock file that still does not parse, say from a crash or a full disk, is reported with
//!   its path as [`StateError::LockUnreadable`] and removed by `ferry force-unlock`.
//! - A lock whose pid is no longer running on this host is reported `stale`, never taken
//!   over silently: a person decides with `ferry force-unlock`.
//! - Writes are atomic: temp file in the same directory, write, fsync, the current file is
//!   hard-linked to `.previous`, rename over, fsync the directory. A reader sees the old or
//!   the new file, and a crash leaves one of them. The compare-and-swap (read serial, check,
//!   rename) runs under `flock(2)` on the directory so it holds between processes even
//!   without the stage lock; the kernel drops that lock when a process dies. Taking,
//!   checking and removing the lock file happen under it too, so an unlock can never remove
//!   a lock someone else took between its check and its unlink.
//! - A stored file that does not parse, or has a newer format version, is refused and
//!   never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::codec;
use super::model::StageState;
use super::store::{check_write, hostname, LockInfo, Restored, Result, StateError, StateStore};

/// JSON files under one directory, normally `<project>/.ferry/state`.
#[derive(Debug, Clone)]
pub struct LocalStateStore {
    dir: PathBuf,
}

impl LocalStateStore {
    /// A store keeping its files in `dir` (created, 0700, on first write or lock).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalStateStore { dir: dir.into() }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<stage>.json`.
    pub fn state_path(&self, stage: &str) -> PathBuf {
        self.dir.join(format!("{stage}.json"))
    }

    /// `<dir>/<stage>.json.previous`: the state before the last write.
    pub fn previous_path(&self, stage: &str) -> PathBuf {
        self.dir.join(format!("{stage}.json.previous"))
    }

    /// `<dir>/<stage>.history.jsonl`: deployments pruned from the state, appended.
    pub fn archive_path(&self, stage: &str) -> PathBuf {
        self.dir.join(format!("{stage}.history.jsonl"))
    }

    /// `<dir>/<stage>.lock`.
    pub fn lock_path(&self, stage: &str) -> PathBuf {
        self.dir.join(format!("{stage}.lock"))
    }

    fn backend_error(path: &Path, e: impl std::fmt::Display) -> StateError {
        StateError::Backend { location: path.display().to_string(), message: e.to_string() }
    }

    /// Stage names become file names: refuse anything that could leave the directory.
    fn check_stage(&self, stage: &str) -> Result<()> {
        if crate::config::names::is_stage_name(stage) {
            Ok(())
        } else {
            Err(Self::backend_error(&self.dir, format!("`{stage}` is not a valid stage name for a state file")))
        }
    }

    fn ensure_dir(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Self::backend_error(&self.dir, e))
    }

    /// Make renames and unlinks in the directory durable.
    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| Self::backend_error(&self.dir, e))
    }

    /// A unique name in the directory for a file being prepared.
    fn temp_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()))
    }

    /// Create `path` (must not exist) with mode 0600, write `bytes`, fsync.
    fn create_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    /// Hold `flock(LOCK_EX)` on the directory while the guard lives.
    fn exclusive(&self) -> Result<File> {
        let dir = File::open(&self.dir).map_err(|e| Self::backend_error(&self.dir, e))?;
        loop {
            // SAFETY: flock on a file descriptor we own; released when `dir` is closed.
            if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(dir);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(Self::backend_error(&self.dir, e));
            }
        }
    }

    fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::backend_error(path, e)),
        }
    }

    fn decode_at(path: &Path, stage: &str, bytes: Vec<u8>) -> Result<StageState> {
        codec::decode_vec(&path.display().to_string(), stage, bytes)
    }

    /// The lock file's holder: `None` when there is none, [`StateError::LockUnreadable`]
    /// when it does not parse.
    fn holder(&self, stage: &str) -> Result<Option<LockInfo>> {
        let path = self.lock_path(stage);
        let Some(bytes) = Self::read_file(&path)? else { return Ok(None) };
        match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(info) => Ok(Some(info)),
            Err(e) => Err(StateError::LockUnreadable {
                stage: stage.into(),
                location: path.display().to_string(),
                id: unreadable_lock_id(&bytes),
                message: if bytes.is_empty() { "the file is empty".into() } else { e.to_string() },
            }),
        }
    }

    fn locked_error(&self, stage: &str, holder: LockInfo) -> StateError {
        let stale = holder.host == hostname() && process_is_gone(holder.pid);
        StateError::Locked { stage: stage.into(), holder: Box::new(holder), stale }
    }

    /// Publish the lock file with `info`; `Ok(false)` when a lock file already exists.
    fn publish_lock(&self, stage: &str, info: &LockInfo) -> Result<bool> {
        let lock = self.lock_path(stage);
        let bytes = serde_json::to_vec_pretty(info).expect("LockInfo serialises");
        let tmp = self.temp_path(&format!("{stage}.lock"));
        Self::create_file(&tmp, &bytes).map_err(|e| Self::backend_error(&tmp, e))?;
        let linked = fs::hard_link(&tmp, &lock);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            // No hard links here (some network and FUSE file systems): O_EXCL, then write.
            Err(_) => match Self::create_file(&lock, &bytes) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(Self::backend_error(&lock, e)),
            },
        }
        self.sync_dir()?;
        Ok(true)
    }

    /// Remove the lock file if it has `id` (or, forced, is unreadable with that token).
    fn remove_lock(&self, stage: &str, id: &str, accept_unreadable: bool) -> Result<()> {
        if !self.dir.is_dir() {
            return Err(StateError::LockMismatch { stage: stage.into(), id: id.into(), held_by: None });
        }
        let _exclusive = self.exclusive()?;
        let held_by = match self.holder(stage) {
            Ok(h) => h,
            Err(StateError::LockUnreadable { id: token, .. }) if accept_unreadable && token == id => {
                return self.unlink_lock(stage);
            }
            Err(e) => return Err(e),
        };
        match held_by {
            Some(h) if h.id == id => self.unlink_lock(stage),
            held_by => {
                Err(StateError::LockMismatch { stage: stage.into(), id: id.into(), held_by: held_by.map(Box::new) })
            }
        }
    }

    fn unlink_lock(&self, stage: &str) -> Result<()> {
        let path = self.lock_path(stage);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) => Err(Self::backend_error(&path, e)),
        }
    }

    /// Keep the current file as `.previous` without a moment where the current file is
    /// missing: link it to a temp name, rename that over `.previous`.
    fn keep_previous(&self, stage: &str) -> Result<()> {
        let (current, previous) = (self.state_path(stage), self.previous_path(stage));
        let tmp = self.temp_path(&format!("{stage}.json.previous"));
        if fs::hard_link(&current, &tmp).is_err() {
            fs::copy(&current, &tmp).map_err(|e| Self::backend_error(&current, e))?;
        }
        fs::rename(&tmp, &previous).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Self::backend_error(&previous, e)
        })
    }

    /// Write `bytes` as the stage's state atomically (temp file, fsync, rename over, fsync
    /// directory), first removing temp files killed writers left.
    fn replace_state(&self, stage: &str, bytes: &[u8]) -> Result<()> {
        let path = self.state_path(stage);
        crate::atomic_file::remove_leftovers(&self.dir);
        crate::atomic_file::write(&path, bytes, crate::atomic_file::Mode::Private)
            .map_err(|e| Self::backend_error(&path, e))
    }
}

/// The id `force-unlock` takes for a lock file that does not parse: derived from its bytes,
/// so it removes exactly the file that was reported and not a lock taken since.
pub(super) fn unreadable_lock_id(bytes: &[u8]) -> String {
    format!("unreadable-{}", &hex::encode(Sha256::digest(bytes))[..12])
}

pub(super) use crate::process::is_gone as process_is_gone;

impl StateStore for LocalStateStore {
    fn location(&self, stage: &str) -> String {
        self.state_path(stage).display().to_string()
    }

    fn lock_location(&self, stage: &str) -> String {
        self.lock_path(stage).display().to_string()
    }

    fn try_lock(&self, stage: &str, info: &LockInfo) -> Result<()> {
        self.check_stage(stage)?;
        self.ensure_dir()?;
        let _exclusive = self.exclusive()?;
        // Under the directory lock nobody lets go between our failed link and reading the
        // holder, unless the file is removed by hand: then try again.
        for _ in 0..5 {
            if self.publish_lock(stage, info)? {
                return Ok(());
            }
            if let Some(holder) = self.holder(stage)? {
                return Err(self.locked_error(stage, holder));
            }
        }
        Err(Self::backend_error(&self.lock_path(stage), "the lock keeps changing hands; try again"))
    }

    fn unlock(&self, stage: &str, id: &str) -> Result<()> {
        self.check_stage(stage)?;
        self.remove_lock(stage, id, false)
    }

    fn force_unlock(&self, stage: &str, id: &str) -> Result<()> {
        self.check_stage(stage)?;
        self.remove_lock(stage, id, true)
    }

    fn lock_holder(&self, stage: &str) -> Result<Option<LockInfo>> {
        self.check_stage(stage)?;
        self.holder(stage)
    }

    fn read(&self, stage: &str) -> Result<Option<StageState>> {
        self.check_stage(stage)?;
        let path = self.state_path(stage);
        Self::read_file(&path)?.map(|b| Self::decode_at(&path, stage, b)).transpose()
    }

    fn write(&self, state: &mut StageState) -> Result<()> {
        let stage = state.stage.clone();
        self.check_stage(&stage)?;
        self.ensure_dir()?;
        let _exclusive = self.exclusive()?;
        // Refuses a corrupt or newer file before anything is touched.
        let stored = self.read(&stage)?;
        check_write(stored.as_ref(), state)?;
        let mut next = state.clone();
        next.serial += 1;
        if stored.is_some() {
            self.keep_previous(&stage)?;
        }
        self.replace_state(&stage, &codec::encode(&next))?;
        state.serial = next.serial;
        Ok(())
    }

    fn append_archive(&self, stage: &str, lines: &[u8]) -> Result<()> {
        self.check_stage(stage)?;
        self.ensure_dir()?;
        let path = self.archive_path(stage);
        // Appended, never rewritten: a crash mid-append leaves at most one torn last line,
        // which readers skip.
        crate::private_files::open_append(&path)
            .and_then(|mut f| f.write_all(lines).and_then(|()| f.sync_all()))
            .map_err(|e| Self::backend_error(&path, e))
    }

    fn read_archive(&self, stage: &str) -> Result<Option<Vec<u8>>> {
        self.check_stage(stage)?;
        Self::read_file(&self.archive_path(stage))
    }

    fn delete(&self, stage: &str) -> Result<()> {
        self.check_stage(stage)?;
        if !self.dir.is_dir() {
            return Ok(());
        }
        let _exclusive = self.exclusive()?;
        for path in [self.state_path(stage), self.previous_path(stage), self.archive_path(stage)] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Self::backend_error(&path, e)),
                _ => {}
            }
        }
        self.sync_dir()
    }

    fn read_previous(&self, stage: &str) -> Result<Option<StageState>> {
        self.check_stage(stage)?;
        let path = self.previous_path(stage);
        Self::read_file(&path)?.map(|b| Self::decode_at(&path, stage, b)).transpose()
    }

    fn restore_previous(&self, stage: &str) -> Result<Restored> {
        self.check_stage(stage)?;
        self.ensure_dir()?;
        let _exclusive = self.exclusive()?;
        let mut restored =
            self.read_previous(stage)?.ok_or_else(|| StateError::NoPrevious { location: self.location(stage) })?;
        let from_serial = restored.serial;
        let (replaced_serial, set_aside) = match self.read(stage) {
            Ok(Some(current)) => (Some(current.serial), None),
            Ok(None) => (None, None),
            // Newer: restoring would downgrade what a newer ferry wrote; refuse.
            Err(e @ StateError::NewerVersion { .. }) => return Err(e),
            Err(StateError::Corrupt { .. }) => {
                // Set the damaged file aside (never delete it) before replacing it.
                let aside =
                    self.dir.join(format!("{stage}.json.corrupt-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
                fs::rename(self.state_path(stage), &aside).map_err(|e| Self::backend_error(&aside, e))?;
                (None, Some(aside.display().to_string()))
            }
            Err(e) => return Err(e),
        };
        // A fresh serial above both: a saved plan made against either is refused. When the
        // current file was unreadable its serial is unknown; it was written after the
        // previous copy, so skip one past that.
        restored.serial = match replaced_serial {
            Some(s) => s.max(from_serial) + 1,
            None => from_serial + 2,
        };
        if replaced_serial.is_some() {
            self.keep_previous(stage)?;
        }
        self.replace_state(stage, &codec::encode(&restored))?;
        Ok(Restored { from_serial, replaced_serial, serial: restored.serial, set_aside })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use crate::state::conformance::{sample, Backend};

    /// A temporary directory; every client is a separate `LocalStateStore` on it.
    pub struct Fixture {
        tmp: tempfile::TempDir,
    }

    impl Fixture {
        pub fn new() -> Self {
            Fixture { tmp: tempfile::tempdir().expect("tempdir") }
        }
        fn store(&self) -> LocalStateStore {
            LocalStateStore::new(self.tmp.path().join(".ferry/state"))
        }
    }

    impl Backend for Fixture {
        fn client(&self) -> Box<dyn StateStore> {
            Box::new(self.store())
        }
        fn put_raw(&self, stage: &str, bytes: &[u8]) {
            let store = self.store();
            store.ensure_dir().unwrap();
            fs::write(store.state_path(stage), bytes).unwrap();
        }
        fn get_raw(&self, stage: &str) -> Option<Vec<u8>> {
            fs::read(self.store().state_path(stage)).ok()
        }
    }

    mod conformance {
        crate::state_store_conformance!(super::Fixture::new());
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn files_are_private_and_the_previous_copy_is_kept() {
        let f = Fixture::new();
        let store = f.store();
        let mut s = sample("dev");
        store.write(&mut s).unwrap();
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.state_path("dev")), 0o600);
        assert_eq!(store.read_previous("dev").unwrap(), None, "nothing before the first write");

        let first = s.clone();
        s.apps.clear();
        store.write(&mut s).unwrap();
        assert_eq!(store.read_previous("dev").unwrap(), Some(first));
        assert_eq!(mode(&store.previous_path("dev")), 0o600);
        assert_eq!(entries(store.dir()), ["dev.json", "dev.json.previous"], "no temp files left");

        store.try_lock("dev", &LockInfo::for_this_process("ferry commit")).unwrap();
        assert_eq!(mode(&store.lock_path("dev")), 0o600);
    }

    #[test]
    fn lock_file_holds_the_holder() {
        let f = Fixture::new();
        let store = f.store();
        let info = LockInfo::for_this_process("ferry commit -s dev");
        store.try_lock("dev", &info).unwrap();
        let text = fs::read_to_string(store.lock_path("dev")).unwrap();
        assert_eq!(serde_json::from_str::<LockInfo>(&text).unwrap(), info);
        assert_eq!(entries(store.dir()), ["dev.lock"], "the temp file is gone");
        store.unlock("dev", &info.id).unwrap();
        assert!(!store.lock_path("dev").exists());
    }

    #[test]
    fn a_lock_of_a_dead_process_is_reported_stale_not_taken() {
        let f = Fixture::new();
        let store = f.store();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap(); // reaped: the pid no longer names a process
        let mut holder = LockInfo::for_this_process("ferry commit");
        holder.pid = dead_pid;
        store.try_lock("dev", &holder).unwrap();

        let err = store.lock("dev", &LockInfo::for_this_process("ferry plan"), Duration::from_secs(30)).unwrap_err();
        assert!(matches!(&err, StateError::Locked { stale: true, .. }), "{err:?}");
        assert!(err.to_string().contains("stale lock"), "{err}");
        assert!(err.hint().unwrap().contains(&format!("ferry force-unlock {}", holder.id)));
        assert_eq!(store.lock_holder("dev").unwrap(), Some(holder.clone()), "still there");

        // The same pid on another host says nothing about this one.
        let mut remote = holder.clone();
        remote.host = "elsewhere.example".into();
        store.force_unlock("dev", &holder.id).unwrap();
        store.try_lock("dev", &remote).unwrap();
        let err = store.try_lock("dev", &LockInfo::for_this_process("ferry plan")).unwrap_err();
        assert!(matches!(err, StateError::Locked { stale: false, .. }), "{err:?}");
    }

    #[test]
    fn a_torn_lock_is_reported_with_its_path_and_can_be_forced() {
        let f = Fixture::new();
        let store = f.store();
        store.ensure_dir().unwrap();
        for torn in [&b""[..], b"{\"id\": \"abc\", \"pid\": 12"] {
            fs::write(store.lock_path("dev"), torn).unwrap();
            let err = store.try_lock("dev", &LockInfo::for_this_process("ferry plan")).unwrap_err();
            let StateError::LockUnreadable { location, id, .. } = &err else { panic!("{err:?}") };
            assert_eq!(location, &store.lock_path("dev").display().to_string());
            assert!(err.to_string().contains(location.as_str()), "{err}");
            assert!(err.hint().unwrap().contains(&format!("ferry force-unlock {id}")));
            assert!(store.unlock("dev", id).is_err(), "plain unlock does not remove it");
            assert!(store.force_unlock("dev", "unreadable-000000000000").is_err(), "another id");
            store.force_unlock("dev", id).unwrap();
            assert!(!store.lock_path("dev").exists());
        }
    }

    #[test]
    fn restore_brings_back_the_previous_copy_under_a_new_serial() {
        let f = Fixture::new();
        let store = f.store();
        assert!(matches!(store.restore_previous("dev"), Err(StateError::NoPrevious { .. })));
        let mut s = sample("dev");
        store.write(&mut s).unwrap(); // 1
        let good = s.clone();
        s.apps.clear();
        store.write(&mut s).unwrap(); // 2

        let r = store.restore_previous("dev").unwrap();
        assert_eq!(r, Restored { from_serial: 1, replaced_serial: Some(2), serial: 3, set_aside: None });
        let now = store.read("dev").unwrap().unwrap();
        assert_eq!((now.serial, &now.apps, &now.lineage), (3, &good.apps, &good.lineage));
        assert_eq!(store.read_previous("dev").unwrap().unwrap().serial, 2, "the restore can be undone");

        // A corrupt current file is set aside byte for byte, not deleted.
        fs::write(store.state_path("dev"), b"{garbage").unwrap();
        let r = store.restore_previous("dev").unwrap();
        assert_eq!((r.from_serial, r.replaced_serial, r.serial), (2, None, 4));
        assert_eq!(fs::read(r.set_aside.unwrap()).unwrap(), b"{garbage");
        assert_eq!(store.read("dev").unwrap().unwrap().serial, 4);
    }

    #[test]
    fn stage_names_cannot_leave_the_directory() {
        let f = Fixture::new();
        let store = f.store();
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(store.read(bad).is_err(), "{bad}");
            assert!(store.try_lock(bad, &LockInfo::for_this_process("x")).is_err(), "{bad}");
        }
    }
}
