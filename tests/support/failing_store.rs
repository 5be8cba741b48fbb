//! A fault-injection double: a real state store whose writes fail with "No space left on
//! device" once the disk is declared full. No real part can fill the disk on cue, so this
//! wraps the project's own `LocalStateStore` and changes nothing else about it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ferry::state::{LocalStateStore, LockInfo, Restored, StageState, StateError, StateStore};

/// A rule for the moment the disk fills: the first write of a state it holds for.
pub type FillWhen = fn(&StageState) -> bool;

/// `LocalStateStore` with a switchable full disk. Clones share the switch.
#[derive(Debug, Clone)]
pub struct FullDiskStore {
    pub inner: LocalStateStore,
    full: Arc<AtomicBool>,
    fill_when: Arc<Mutex<Option<FillWhen>>>,
}

impl FullDiskStore {
    pub fn new(inner: LocalStateStore) -> Self {
        FullDiskStore { inner, full: Arc::new(AtomicBool::new(false)), fill_when: Arc::default() }
    }

    /// From now on every write fails (`true`), or succeeds again (`false`).
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// The disk fills at the first write of a state `rule` holds for: that write and every
    /// one after it fail.
    pub fn fill_when(&self, rule: FillWhen) {
        self.set_full(false);
        *self.fill_when.lock().unwrap() = Some(rule);
    }
}

impl StateStore for FullDiskStore {
    fn location(&self, stage: &str) -> String {
        self.inner.location(stage)
    }
    fn try_lock(&self, stage: &str, info: &LockInfo) -> Result<(), StateError> {
        self.inner.try_lock(stage, info)
    }
    fn unlock(&self, stage: &str, id: &str) -> Result<(), StateError> {
        self.inner.unlock(stage, id)
    }
    fn force_unlock(&self, stage: &str, id: &str) -> Result<(), StateError> {
        self.inner.force_unlock(stage, id)
    }
    fn lock_holder(&self, stage: &str) -> Result<Option<LockInfo>, StateError> {
        self.inner.lock_holder(stage)
    }
    fn read(&self, stage: &str) -> Result<Option<StageState>, StateError> {
        self.inner.read(stage)
    }
    fn write(&self, state: &mut StageState) -> Result<(), StateError> {
        if self.fill_when.lock().unwrap().is_some_and(|rule| rule(state)) {
            self.set_full(true);
        }
        if self.full.load(Ordering::SeqCst) {
            let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(StateError::Backend { location: self.location(&state.stage), message: enospc.to_string() });
        }
        self.inner.write(state)
    }
    fn read_previous(&self, stage: &str) -> Result<Option<StageState>, StateError> {
        self.inner.read_previous(stage)
    }
    fn restore_previous(&self, stage: &str) -> Result<Restored, StateError> {
        self.inner.restore_previous(stage)
    }
}
