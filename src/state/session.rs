//! [`LockedStage`]: how commands work with state. Open the project's store, take the
//! stage's lock (waiting up to `--lock-timeout`), read the state (or start a fresh one),
//! write each change as a conditional write (journaling: a crash loses at most the step in
//! flight), and let go of the lock when dropped — on success, error or panic alike.

use std::time::Duration;

use crate::config::{Project, StateBackend};

use super::local::LocalStateStore;
use super::model::StageState;
use super::s3::S3StateStore;
use super::store::{LockInfo, Result, StateError, StateStore};

/// The folder under the project root holding the local store's files.
pub const LOCAL_STATE_DIR: &str = ".ferry/state";

/// The state store a project's `ferry.toml` names.
pub fn open_store(project: &Project) -> Result<Box<dyn StateStore>> {
    match &project.state {
        StateBackend::Local => Ok(Box::new(LocalStateStore::new(project.root.join(LOCAL_STATE_DIR)))),
        StateBackend::S3 { bucket, prefix, region } => {
            Ok(Box::new(S3StateStore::connect(bucket, prefix, region.as_deref())?))
        }
    }
}

/// How this process was started, for lock holder info: `ferry commit -s production`.
pub fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| std::path::Path::new(&p).file_name().map_or(p.clone(), |n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "ferry".into());
    std::iter::once(program).chain(args).collect::<Vec<_>>().join(" ")
}

/// A stage's lock, held until dropped (or [`unlock`](Self::unlock)ed). For commands that
/// must not read the state first, like `state restore` of a corrupt file; everything else
/// uses [`LockedStage`].
pub struct StageLock {
    store: Box<dyn StateStore>,
    stage: String,
    info: LockInfo,
    held: bool,
}

impl std::fmt::Debug for StageLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageLock").field("stage", &self.stage).field("id", &self.info.id).finish()
    }
}

impl StageLock {
    /// Take `stage`'s lock in `store` as `info`, waiting up to `timeout`.
    pub fn acquire(store: Box<dyn StateStore>, stage: &str, info: LockInfo, timeout: Duration) -> Result<StageLock> {
        store.lock(stage, &info, timeout)?;
        Ok(StageLock { store, stage: stage.to_string(), info, held: true })
    }

    /// The store the lock is in.
    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    /// The locked stage.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// What the lock says about its holder (this process).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Let go of the lock now, reporting a failure (drop can only ignore it).
    pub fn unlock(mut self) -> Result<()> {
        self.held = false;
        self.store.unlock(&self.stage, &self.info.id)
    }
}

impl Drop for StageLock {
    fn drop(&mut self) {
        if self.held {
            // Best effort: if this fails the lock stays and is reported (stale once this
            // process is gone), which is the safe side.
            let _ = self.store.unlock(&self.stage, &self.info.id);
        }
    }
}

/// A stage's state, held under its lock until dropped.
#[derive(Debug)]
pub struct LockedStage {
    lock: StageLock,
    state: StageState,
    /// Whether a state has been stored (a fresh state is only in memory until written).
    stored: bool,
}

impl LockedStage {
    /// Lock `stage` of `project` for `command` (see [`command_line`]), waiting up to
    /// `timeout`, and read its state.
    pub fn open(project: &Project, stage: &str, command: &str, timeout: Duration) -> Result<LockedStage> {
        LockedStage::acquire(open_store(project)?, stage, LockInfo::for_this_process(command), timeout)
    }

    /// Lock `stage` of `store` as `lock`, waiting up to `timeout`, and read its state.
    pub fn acquire(store: Box<dyn StateStore>, stage: &str, lock: LockInfo, timeout: Duration) -> Result<LockedStage> {
        LockedStage::read(StageLock::acquire(store, stage, lock, timeout)?)
    }

    /// Read the state under a lock already held. A stage never written starts as
    /// [`StageState::new`] (serial 0). On error the lock is dropped, so released.
    pub fn read(lock: StageLock) -> Result<LockedStage> {
        match lock.store.read(&lock.stage)? {
            Some(state) => Ok(LockedStage { lock, state, stored: true }),
            None => Ok(LockedStage { state: StageState::new(&lock.stage), lock, stored: false }),
        }
    }

    /// The state as last read or written.
    pub fn state(&self) -> &StageState {
        &self.state
    }

    /// Whether the stage has stored state (false: never applied, `state()` is fresh).
    pub fn is_stored(&self) -> bool {
        self.stored
    }

    /// The lock this session holds.
    pub fn lock_info(&self) -> &LockInfo {
        &self.lock.info
    }

    /// The store, e.g. for its `location`.
    pub fn store(&self) -> &dyn StateStore {
        self.lock.store()
    }

    /// Write `new_state` (normally a changed clone of [`state`](Self::state)), conditional
    /// on the serial and lineage it carries still being the stored ones. On success it
    /// becomes `state()`, with the new serial.
    pub fn write(&mut self, mut new_state: StageState) -> Result<()> {
        if new_state.stage != self.state.stage {
            return Err(StateError::Backend {
                location: self.store().location(&self.state.stage),
                message: format!("a state of stage `{}` cannot be written here", new_state.stage),
            });
        }
        self.lock.store.write(&mut new_state)?;
        self.state = new_state;
        self.stored = true;
        Ok(())
    }

    /// Change the state with `change` and write it: one journal entry.
    pub fn update(&mut self, change: impl FnOnce(&mut StageState)) -> Result<()> {
        let mut next = self.state.clone();
        change(&mut next);
        self.write(next)
    }

    /// Let go of the lock now, reporting a failure (drop can only ignore it).
    pub fn unlock(self) -> Result<()> {
        self.lock.unlock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::InMemoryStateStore;

    fn acquire(store: &InMemoryStateStore, cmd: &str) -> Result<LockedStage> {
        LockedStage::acquire(Box::new(store.clone()), "dev", LockInfo::for_this_process(cmd), Duration::ZERO)
    }

    #[test]
    fn locks_reads_journals_and_unlocks_on_drop() {
        let store = InMemoryStateStore::new();
        {
            let mut session = acquire(&store, "ferry commit").unwrap();
            assert!(!session.is_stored());
            assert_eq!(session.state().serial, 0);
            let err = acquire(&store, "ferry plan").unwrap_err();
            assert!(err.to_string().contains("`ferry commit`"), "{err}");
            session.update(|s| drop(s.apps.insert("web".into(), Default::default()))).unwrap();
            session.update(|s| drop(s.apps.insert("api".into(), Default::default()))).unwrap();
            assert_eq!(session.state().serial, 2);
            assert_eq!(store.read("dev").unwrap().unwrap().serial, 2, "every step is written");
        }
        assert_eq!(store.lock_holder("dev").unwrap(), None, "dropped: unlocked");
        let session = acquire(&store, "ferry plan").unwrap();
        assert!(session.is_stored());
        assert_eq!(session.state().apps.len(), 2);
        session.unlock().unwrap();
        assert_eq!(store.lock_holder("dev").unwrap(), None);
    }

    #[test]
    fn unlocks_after_a_panic_and_after_a_failed_read() {
        let store = InMemoryStateStore::new();
        let s2 = store.clone();
        let result = std::panic::catch_unwind(move || {
            let _session = acquire(&s2, "ferry commit").unwrap();
            panic!("boom");
        });
        assert!(result.is_err());
        assert_eq!(store.lock_holder("dev").unwrap(), None);

        store.put_raw("dev", b"{");
        assert!(matches!(acquire(&store, "ferry plan"), Err(StateError::Corrupt { .. })));
        assert_eq!(store.lock_holder("dev").unwrap(), None, "no lock left behind");
    }

    #[test]
    fn a_stale_snapshot_is_refused() {
        let store = InMemoryStateStore::new();
        let mut session = acquire(&store, "ferry commit").unwrap();
        let old = session.state().clone();
        session.update(|_| {}).unwrap();
        assert!(matches!(session.write(old), Err(StateError::Conflict { expected: 0, found: 1, .. })));
        assert_eq!(session.state().serial, 1);
    }
}
