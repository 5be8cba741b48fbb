//! The seam between ferry and where state is kept. A [`StateStore`] holds one state
//! document and one lock per stage. Every implementation passes the same conformance suite
//! ([`crate::state::conformance`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::codec;
pub use super::error::{hostname, LockInfo, Result, StateError};
use super::model::StageState;
use crate::poll::Poll;

/// Where state is kept. All methods are per stage; implementations must be safe to use
/// from several processes at once (the lock is the only coordination).
pub trait StateStore: Send + Sync {
    /// Where a stage's state lives, for messages (a path or an `s3://` URL).
    fn location(&self, stage: &str) -> String;

    /// Take the stage's lock now, or fail with [`StateError::Locked`] naming the holder.
    fn try_lock(&self, stage: &str, info: &LockInfo) -> Result<()>;

    /// Release a lock this run holds. Fails with [`StateError::LockMismatch`] when the lock is
    /// held by another id.
    fn unlock(&self, stage: &str, id: &str) -> Result<()>;

    /// Remove a lock whatever holds it, given its id (`ferry force-unlock ID`).
    fn force_unlock(&self, stage: &str, id: &str) -> Result<()>;

    /// The current holder of the stage's lock, if any.
    fn lock_holder(&self, stage: &str) -> Result<Option<LockInfo>>;

    /// The stage's state; `None` when it has never been written.
    fn read(&self, stage: &str) -> Result<Option<StageState>>;

    /// Write `state` if the stored serial is still `state.serial` (or nothing is stored and
    /// `state.serial` is 0) and the lineage matches; on success `state.serial` is
    /// incremented to the stored value. Atomic: a reader sees the old or the new state.
    fn write(&self, state: &mut StageState) -> Result<()>;

    /// Append `lines` (JSON Lines, see `state::archive`) to the stage's deployment archive:
    /// the deployments pruned from its state, which `ferry history` still shows. The caller
    /// holds the lock. Stores without an archive refuse, and nothing is pruned.
    fn append_archive(&self, stage: &str, lines: &[u8]) -> Result<()> {
        let _ = lines;
        Err(StateError::Backend { location: self.location(stage), message: "this store keeps no archive".into() })
    }

    /// The stage's deployment archive; `None` when nothing was ever archived.
    fn read_archive(&self, stage: &str) -> Result<Option<Vec<u8>>> {
        let _ = stage;
        Ok(None)
    }

    /// Remove the stage's state, its previous copy and its archive, for good (the caller holds
    /// the lock): `ferry preview down` leaves nothing of a preview. Removing what is not there
    /// succeeds. Stores that cannot refuse, and nothing is removed.
    fn delete(&self, stage: &str) -> Result<()> {
        Err(StateError::Backend { location: self.location(stage), message: "this store cannot remove a stage".into() })
    }

    /// Where a stage's lock lives, for messages.
    fn lock_location(&self, stage: &str) -> String {
        format!("the lock of {}", self.location(stage))
    }

    /// The kept copy from before the last write, when the store keeps one.
    fn read_previous(&self, stage: &str) -> Result<Option<StageState>> {
        let _ = stage;
        Ok(None)
    }

    /// Bring back the kept previous copy (the caller holds the lock). It is written as a new
    /// serial above the one it replaces, so saved plans made against either are refused; a
    /// current state that does not parse is set aside, never deleted.
    fn restore_previous(&self, stage: &str) -> Result<Restored> {
        Err(StateError::NoPrevious { location: self.location(stage) })
    }

    /// Take the lock, waiting up to `timeout` for another holder to let go (zero: fail at
    /// once). Polling is written once here for every store. A stale holder is not waited
    /// for: it is gone and will never let go.
    fn lock(&self, stage: &str, info: &LockInfo, timeout: Duration) -> Result<()> {
        let mut poll = Poll::new(Duration::from_millis(50), Duration::from_secs(1)).growing(2, 1).within(timeout);
        loop {
            match self.try_lock(stage, info) {
                Err(StateError::Locked { stale: false, .. } | StateError::LockUnreadable { .. })
                    if poll.wait_blocking() => {}
                other => return other,
            }
        }
    }
}

/// What [`StateStore::restore_previous`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Serial of the previous copy that was brought back.
    pub from_serial: u64,
    /// Serial of the state it replaced, when that one was readable.
    pub replaced_serial: Option<u64>,
    /// Serial the restored state was written as.
    pub serial: u64,
    /// Where an unreadable current state was kept.
    pub set_aside: Option<String>,
}

/// The compare-and-swap rule every store applies before writing `state` over `stored`:
/// same lineage, and the serial the writer read is still the stored one (0 when nothing is
/// stored). Serial 0 against a stored state is a conflict, whatever its lineage.
pub fn check_write(stored: Option<&StageState>, state: &StageState) -> Result<()> {
    let stage = || state.stage.clone();
    // The write would give it serial + 1, which would wrap to 0 (and then every later write
    // conflicts): refuse, so stores increment the serial knowing it fits.
    if state.serial == u64::MAX {
        return Err(StateError::SerialExhausted { stage: stage() });
    }
    match stored {
        // A writer creating the state (serial 0) read nothing, so its fresh lineage cannot
        // mismatch anything: someone else created it first.
        Some(stored) if state.serial == 0 => {
            Err(StateError::Conflict { stage: stage(), expected: 0, found: stored.serial })
        }
        Some(stored) if stored.lineage != state.lineage => Err(StateError::LineageMismatch {
            stage: stage(),
            expected: state.lineage.clone(),
            found: stored.lineage.clone(),
        }),
        Some(stored) if stored.serial != state.serial => {
            Err(StateError::Conflict { stage: stage(), expected: state.serial, found: stored.serial })
        }
        None if state.serial != 0 => Err(StateError::Conflict { stage: stage(), expected: state.serial, found: 0 }),
        _ => Ok(()),
    }
}

/// A strict in-memory store for unit tests: same semantics as the real ones, one process.
/// It keeps encoded bytes, not values, so it decodes (and refuses) exactly like the others.
/// Clones share the same storage, like two clients of one bucket.
#[derive(Debug, Default, Clone)]
pub struct InMemoryStateStore {
    inner: Arc<Mutex<InMemoryInner>>,
}

#[derive(Debug, Default)]
struct InMemoryInner {
    states: BTreeMap<String, Vec<u8>>,
    locks: BTreeMap<String, LockInfo>,
    archives: BTreeMap<String, Vec<u8>>,
}

impl InMemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Store raw bytes as a stage's state, bypassing every check (tests plant damage so).
    pub fn put_raw(&self, stage: &str, bytes: &[u8]) {
        self.inner().states.insert(stage.into(), bytes.to_vec());
    }

    /// The stage's stored bytes.
    pub fn get_raw(&self, stage: &str) -> Option<Vec<u8>> {
        self.inner().states.get(stage).cloned()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, InMemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decode(&self, stage: &str, bytes: Option<&Vec<u8>>) -> Result<Option<StageState>> {
        bytes.map(|b| codec::decode(&self.location(stage), stage, b)).transpose()
    }
}

impl StateStore for InMemoryStateStore {
    fn location(&self, stage: &str) -> String {
        format!("memory:{stage}")
    }

    fn try_lock(&self, stage: &str, info: &LockInfo) -> Result<()> {
        let mut inner = self.inner();
        if let Some(holder) = inner.locks.get(stage) {
            return Err(StateError::Locked { stage: stage.into(), holder: Box::new(holder.clone()), stale: false });
        }
        inner.locks.insert(stage.into(), info.clone());
        Ok(())
    }

    fn unlock(&self, stage: &str, id: &str) -> Result<()> {
        let mut inner = self.inner();
        match inner.locks.get(stage) {
            Some(h) if h.id == id => {
                inner.locks.remove(stage);
                Ok(())
            }
            held_by => Err(StateError::LockMismatch {
                stage: stage.into(),
                id: id.into(),
                held_by: held_by.cloned().map(Box::new),
            }),
        }
    }

    fn delete(&self, stage: &str) -> Result<()> {
        let mut inner = self.inner();
        inner.states.remove(stage);
        inner.archives.remove(stage);
        Ok(())
    }

    fn force_unlock(&self, stage: &str, id: &str) -> Result<()> {
        self.unlock(stage, id)
    }

    fn lock_holder(&self, stage: &str) -> Result<Option<LockInfo>> {
        Ok(self.inner().locks.get(stage).cloned())
    }

    fn read(&self, stage: &str) -> Result<Option<StageState>> {
        let bytes = self.inner().states.get(stage).cloned();
        self.decode(stage, bytes.as_ref())
    }

    fn write(&self, state: &mut StageState) -> Result<()> {
        // One guard over check and store: the compare-and-swap is atomic.
        let mut inner = self.inner();
        let stored = self.decode(&state.stage, inner.states.get(&state.stage))?;
        check_write(stored.as_ref(), state)?;
        let mut next = state.clone();
        next.serial += 1;
        inner.states.insert(next.stage.clone(), codec::encode(&next));
        state.serial = next.serial;
        Ok(())
    }

    fn append_archive(&self, stage: &str, lines: &[u8]) -> Result<()> {
        self.inner().archives.entry(stage.to_string()).or_default().extend_from_slice(lines);
        Ok(())
    }

    fn read_archive(&self, stage: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner().archives.get(stage).cloned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn in_memory_store_enforces_serial_and_lock() {
        let store = InMemoryStateStore::new();
        let mut s = StageState::new("dev");
        store.write(&mut s).unwrap();
        assert_eq!(s.serial, 1);
        let mut stale = s.clone();
        stale.serial = 0;
        assert!(matches!(store.write(&mut stale), Err(StateError::Conflict { .. })));
        let a = LockInfo::for_this_process("a");
        let b = LockInfo::for_this_process("b");
        store.try_lock("dev", &a).unwrap();
        assert!(matches!(store.lock("dev", &b, Duration::from_millis(120)), Err(StateError::Locked { .. })));
        assert!(store.unlock("dev", &b.id).is_err());
        store.unlock("dev", &a.id).unwrap();
        store.try_lock("dev", &b).unwrap();
    }

    #[test]
    fn lock_does_not_wait_for_a_stale_holder() {
        // A store whose only lock is stale: waiting could never succeed.
        struct Stale;
        impl StateStore for Stale {
            fn location(&self, stage: &str) -> String {
                stage.into()
            }
            fn try_lock(&self, stage: &str, _: &LockInfo) -> Result<()> {
                Err(StateError::Locked {
                    stage: stage.into(),
                    holder: Box::new(LockInfo::for_this_process("x")),
                    stale: true,
                })
            }
            fn unlock(&self, _: &str, _: &str) -> Result<()> {
                Ok(())
            }
            fn force_unlock(&self, _: &str, _: &str) -> Result<()> {
                Ok(())
            }
            fn lock_holder(&self, _: &str) -> Result<Option<LockInfo>> {
                Ok(None)
            }
            fn read(&self, _: &str) -> Result<Option<StageState>> {
                Ok(None)
            }
            fn write(&self, _: &mut StageState) -> Result<()> {
                Ok(())
            }
        }
        let started = Instant::now();
        let err = Stale.lock("dev", &LockInfo::for_this_process("y"), Duration::from_secs(60)).unwrap_err();
        assert!(matches!(err, StateError::Locked { stale: true, .. }));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

/// The conformance suite, run against the in-memory store.
#[cfg(test)]
mod conformance_tests {
    use super::InMemoryStateStore;

    crate::state_store_conformance!(InMemoryStateStore::new());
}
