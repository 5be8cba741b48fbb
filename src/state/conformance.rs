//! The conformance suite every [`StateStore`] must pass, written once. A backend's tests
//! implement [`Backend`] (fresh clients onto one shared storage, and raw access to plant
//! damage) and expand [`state_store_conformance!`](crate::state_store_conformance), which
//! makes one `#[test]` per check:
//!
//! ```ignore
//! mod conformance_tests {
//!     ferry::state_store_conformance!(MyFixture::new());
//! }
//! ```
//!
//! Public (not `cfg(test)`) so the S3 store's emulator tests and integration tests can call
//! it; the checks panic like any test assertion. Waiting checks use short timeouts and only
//! assert lower bounds on elapsed time, so a loaded machine makes them slower, never red.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::model::{AppState, ReleaseRecord, StageState, STATE_FORMAT_VERSION};
use super::store::{InMemoryStateStore, LockInfo, StateError, StateStore};

/// What the suite needs from a backend under test.
pub trait Backend {
    /// A new client onto the same storage (another process, as far as the store can tell).
    fn client(&self) -> Box<dyn StateStore>;
    /// Store raw bytes as a stage's state, bypassing the store.
    fn put_raw(&self, stage: &str, bytes: &[u8]);
    /// The stage's stored bytes, read bypassing the store.
    fn get_raw(&self, stage: &str) -> Option<Vec<u8>>;
}

impl Backend for InMemoryStateStore {
    fn client(&self) -> Box<dyn StateStore> {
        Box::new(self.clone())
    }
    fn put_raw(&self, stage: &str, bytes: &[u8]) {
        InMemoryStateStore::put_raw(self, stage, bytes)
    }
    fn get_raw(&self, stage: &str) -> Option<Vec<u8>> {
        InMemoryStateStore::get_raw(self, stage)
    }
}

/// Expand to one `#[test]` per conformance check, each on a fresh backend from `$make`.
#[macro_export]
macro_rules! state_store_conformance {
    ($make:expr) => {
        $crate::state_store_conformance!(@each $make;
            round_trip, serial_conflict, concurrent_writers_one_wins, lineage_mismatch,
            lock_is_exclusive, unlock_with_wrong_id_is_refused, force_unlock_removes_the_lock,
            lock_timeout_waits_then_names_the_holder, lock_waits_for_a_holder_to_let_go,
            corrupt_state_is_refused_and_left_alone, newer_version_is_refused_and_left_alone,
            archive_appends, exhausted_serial_is_refused, delete_removes_the_stage);
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let backend = $make;
                $crate::state::conformance::$check(&backend);
            }
        )*
    };
}

/// A state with some content, so a round trip proves more than the header.
pub fn sample(stage: &str) -> StageState {
    let mut s = StageState::new(stage);
    let mut app = AppState::default();
    let digest = format!("sha256:{}", "ab".repeat(32)).parse().expect("digest");
    app.releases.insert(3, ReleaseRecord { digest, first_seen: Utc::now(), first_deployed: None });
    s.apps.insert("web".into(), app);
    s
}

/// Written state reads back equal; every write moves the serial by one.
pub fn round_trip(b: &dyn Backend) {
    let store = b.client();
    assert_eq!(store.read("dev").expect("read"), None, "nothing stored yet");
    let mut s = sample("dev");
    store.write(&mut s).expect("first write");
    assert_eq!(s.serial, 1);
    assert_eq!(store.read("dev").expect("read"), Some(s.clone()));
    s.apps.insert("api".into(), AppState::default());
    store.write(&mut s).expect("second write");
    assert_eq!(s.serial, 2);
    assert_eq!(b.client().read("dev").expect("read from another client"), Some(s.clone()));
    assert_eq!(store.read("other").expect("read"), None, "stages are separate");
}

/// Two writers from the same serial: the first wins, the second gets `Conflict` and the
/// first one's write is kept; after re-reading, the second writes on top of it.
pub fn serial_conflict(b: &dyn Backend) {
    let (one, two) = (b.client(), b.client());
    let mut base = sample("dev");
    one.write(&mut base).expect("create");

    let mut a = one.read("dev").unwrap().unwrap();
    let mut c = two.read("dev").unwrap().unwrap();
    a.apps.insert("from-a".into(), AppState::default());
    c.apps.insert("from-c".into(), AppState::default());
    one.write(&mut a).expect("first writer wins");
    match two.write(&mut c) {
        Err(StateError::Conflict { stage, expected: 1, found: 2 }) => assert_eq!(stage, "dev"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(c.serial, 1, "a refused write leaves the caller's serial alone");
    assert_eq!(two.read("dev").unwrap(), Some(a.clone()), "the winner's write is kept");

    let mut c = two.read("dev").unwrap().unwrap();
    c.apps.insert("from-c".into(), AppState::default());
    two.write(&mut c).expect("write after re-reading");
    let stored = one.read("dev").unwrap().unwrap();
    assert!(stored.apps.contains_key("from-a") && stored.apps.contains_key("from-c"), "nothing lost");
    assert_eq!(stored.serial, 3);

    // Creating: two writers from serial 0.
    let (mut x, mut y) = (sample("new"), sample("new"));
    one.write(&mut x).expect("first create");
    assert!(matches!(two.write(&mut y), Err(StateError::Conflict { expected: 0, found: 1, .. })));
}

/// Many clients writing from the same serial at the same moment: exactly one succeeds.
pub fn concurrent_writers_one_wins(b: &dyn Backend) {
    let mut base = sample("dev");
    b.client().write(&mut base).expect("create");
    let clients: Vec<_> = (0..6).map(|_| b.client()).collect();
    let barrier = std::sync::Barrier::new(clients.len());
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (barrier, mut s) = (&barrier, base.clone());
                scope.spawn(move || {
                    s.apps.insert(format!("writer-{i}"), AppState::default());
                    barrier.wait();
                    store.write(&mut s).map(|()| s)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer thread")).collect()
    });
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StateError::Conflict { expected: 1, found: 2, .. }), "{e:?}");
        }
    }
    assert_eq!(b.client().read("dev").unwrap().as_ref(), Some(winners[0]));
}

/// A write from another lineage is refused and changes nothing.
pub fn lineage_mismatch(b: &dyn Backend) {
    let store = b.client();
    let mut s = sample("dev");
    store.write(&mut s).expect("create");
    let before = b.get_raw("dev");
    let mut other = sample("dev");
    other.serial = s.serial;
    match store.write(&mut other) {
        Err(StateError::LineageMismatch { expected, found, .. }) => {
            assert_eq!((expected, found), (other.lineage.clone(), s.lineage.clone()))
        }
        r => panic!("expected a lineage mismatch, got {r:?}"),
    }
    assert_eq!(b.get_raw("dev"), before, "nothing written");
}

/// One holder at a time per stage; the refusal names the holder; stages lock separately.
pub fn lock_is_exclusive(b: &dyn Backend) {
    let (one, two) = (b.client(), b.client());
    let a = LockInfo::for_this_process("ferry commit -s dev");
    let c = LockInfo::for_this_process("ferry plan -s dev");
    assert_eq!(one.lock_holder("dev").unwrap(), None);
    one.try_lock("dev", &a).expect("free lock");
    match two.try_lock("dev", &c) {
        Err(StateError::Locked { stage, holder, stale: false }) => {
            assert_eq!(stage, "dev");
            assert_eq!(*holder, a);
        }
        r => panic!("expected Locked, got {r:?}"),
    }
    assert!(matches!(one.try_lock("dev", &a), Err(StateError::Locked { .. })), "not re-entrant");
    assert_eq!(two.lock_holder("dev").unwrap(), Some(a.clone()));
    two.try_lock("prod", &c).expect("another stage is free");
    one.unlock("dev", &a.id).expect("holder unlocks");
    assert_eq!(two.lock_holder("dev").unwrap(), None);
    two.try_lock("dev", &c).expect("free again");
}

/// Unlocking with an id that is not the holder's is refused and leaves the lock held.
pub fn unlock_with_wrong_id_is_refused(b: &dyn Backend) {
    let store = b.client();
    let a = LockInfo::for_this_process("ferry commit");
    assert!(matches!(store.unlock("dev", &a.id), Err(StateError::LockMismatch { held_by: None, .. })));
    store.try_lock("dev", &a).unwrap();
    match store.unlock("dev", "not-the-id") {
        Err(StateError::LockMismatch { id, held_by: Some(h), .. }) => {
            assert_eq!(id, "not-the-id");
            assert_eq!(*h, a);
        }
        r => panic!("expected LockMismatch, got {r:?}"),
    }
    assert_eq!(store.lock_holder("dev").unwrap(), Some(a));
}

/// Another client removes a lock given its id; a wrong id is refused.
pub fn force_unlock_removes_the_lock(b: &dyn Backend) {
    let (holder, rescuer) = (b.client(), b.client());
    let a = LockInfo::for_this_process("ferry commit");
    holder.try_lock("dev", &a).unwrap();
    assert!(matches!(rescuer.force_unlock("dev", "wrong"), Err(StateError::LockMismatch { held_by: Some(_), .. })));
    assert_eq!(rescuer.lock_holder("dev").unwrap(), Some(a.clone()));
    rescuer.force_unlock("dev", &a.id).expect("force-unlock with the holder's id");
    assert_eq!(rescuer.lock_holder("dev").unwrap(), None);
    rescuer.try_lock("dev", &LockInfo::for_this_process("ferry plan")).expect("free after force-unlock");
    assert!(matches!(holder.unlock("dev", &a.id), Err(StateError::LockMismatch { .. })), "old holder lost it");
}

/// `lock` with a timeout waits that long, then fails naming the holder.
pub fn lock_timeout_waits_then_names_the_holder(b: &dyn Backend) {
    let (one, two) = (b.client(), b.client());
    let a = LockInfo::for_this_process("ferry commit -s dev");
    one.try_lock("dev", &a).unwrap();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    match two.lock("dev", &LockInfo::for_this_process("ferry plan"), timeout) {
        Err(e @ StateError::Locked { .. }) => {
            assert!(started.elapsed() >= timeout, "gave up after {:?}", started.elapsed());
            let text = e.to_string();
            assert!(text.contains("`ferry commit -s dev`") && text.contains(&format!("pid {}", a.pid)), "{text}");
            assert!(e.hint().unwrap_or_default().contains(&format!("ferry force-unlock {}", a.id)));
        }
        r => panic!("expected Locked after waiting, got {r:?}"),
    }
}

/// `lock` with a timeout gets the lock once the holder lets go.
pub fn lock_waits_for_a_holder_to_let_go(b: &dyn Backend) {
    let (one, two) = (b.client(), b.client());
    let a = LockInfo::for_this_process("ferry commit");
    one.try_lock("dev", &a).unwrap();
    let c = LockInfo::for_this_process("ferry plan");
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| two.lock("dev", &c, Duration::from_secs(60)));
        // Give the waiter time to meet the lock (usually); if it is slower than that it
        // simply finds the lock free, which must work too. No outcome depends on timing.
        std::thread::sleep(Duration::from_millis(150));
        assert!(!waiter.is_finished(), "the waiter cannot have the lock while it is held");
        one.unlock("dev", &a.id).unwrap();
        waiter.join().expect("waiter").expect("lock after the holder let go");
    });
    assert_eq!(one.lock_holder("dev").unwrap(), Some(c));
}

/// A stored state that does not parse is refused by read and write, naming where it is,
/// and is left byte for byte as it was.
pub fn corrupt_state_is_refused_and_left_alone(b: &dyn Backend) {
    let store = b.client();
    let location = store.location("dev");
    for junk in [&b"{\"version\": 1, \"lineage\": "[..], b"", b"not json at all\n"] {
        b.put_raw("dev", junk);
        match store.read("dev") {
            Err(StateError::Corrupt { location: l, .. }) => assert_eq!(l, location),
            r => panic!("expected Corrupt, got {r:?}"),
        }
        for serial in [0, 1] {
            let mut s = sample("dev");
            s.serial = serial;
            assert!(matches!(store.write(&mut s), Err(StateError::Corrupt { .. })), "write refused");
        }
        assert_eq!(b.get_raw("dev").as_deref(), Some(junk), "left byte-identical");
    }
}

/// A state of a newer format version is refused by read and write and left alone.
pub fn newer_version_is_refused_and_left_alone(b: &dyn Backend) {
    let store = b.client();
    let newer = format!(
        "{{\"version\": {}, \"lineage\": \"l\", \"serial\": 4, \"stage\": \"dev\", \"added_later\": [1]}}",
        STATE_FORMAT_VERSION + 1
    );
    b.put_raw("dev", newer.as_bytes());
    match store.read("dev") {
        Err(e @ StateError::NewerVersion { .. }) => {
            assert!(e.to_string().contains(&store.location("dev")), "{e}");
        }
        r => panic!("expected NewerVersion, got {r:?}"),
    }
    let mut s = sample("dev");
    s.serial = 4;
    s.lineage = "l".into();
    assert!(matches!(store.write(&mut s), Err(StateError::NewerVersion { .. })));
    assert_eq!(b.get_raw("dev").as_deref(), Some(newer.as_bytes()));
}

/// The deployment archive only grows: each append lands after what is there, seen by every
/// client; a stage never archived has none.
pub fn archive_appends(b: &dyn Backend) {
    let (one, two) = (b.client(), b.client());
    assert_eq!(one.read_archive("dev").unwrap(), None);
    one.append_archive("dev", b"{\"a\":1}\n").unwrap();
    two.append_archive("dev", b"{\"a\":2}\n").unwrap();
    assert_eq!(one.read_archive("dev").unwrap().as_deref(), Some(&b"{\"a\":1}\n{\"a\":2}\n"[..]));
    assert_eq!(two.read_archive("other").unwrap(), None);
}

/// A state at serial `u64::MAX` cannot count another write: refused, the stored state kept.
pub fn exhausted_serial_is_refused(b: &dyn Backend) {
    let mut state = sample("dev");
    state.serial = u64::MAX;
    let bytes = super::codec::encode(&state);
    b.put_raw("dev", &bytes);
    let mut read = b.client().read("dev").unwrap().unwrap();
    let err = b.client().write(&mut read).unwrap_err();
    assert!(matches!(err, StateError::SerialExhausted { .. }), "{err}");
    assert_eq!(b.get_raw("dev").unwrap(), bytes);
}

/// `delete` removes the state, its previous copy and its archive, leaves other stages, and
/// removing a stage that is not there succeeds; the stage can then start again from nothing.
pub fn delete_removes_the_stage(b: &dyn Backend) {
    let store = b.client();
    let mut state = sample("pr-1");
    store.write(&mut state).unwrap();
    store.write(&mut state).unwrap();
    store.append_archive("pr-1", b"{\"a\":1}\n").unwrap();
    let mut other = sample("dev");
    store.write(&mut other).unwrap();
    store.delete("pr-1").unwrap();
    assert_eq!(b.client().read("pr-1").unwrap(), None);
    assert_eq!(b.client().read_previous("pr-1").unwrap(), None);
    assert_eq!(b.client().read_archive("pr-1").unwrap(), None);
    assert!(b.client().read("dev").unwrap().is_some(), "other stages stay");
    store.delete("pr-1").unwrap();
    store.delete("never").unwrap();
    let mut again = sample("pr-1");
    store.write(&mut again).unwrap();
    assert_eq!(again.serial, 1);
}
