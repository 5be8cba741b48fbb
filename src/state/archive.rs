//! Deployment history beyond what the state keeps. Every deployment is recorded in state,
//! which every commit rewrites; so that it does not grow without bound (~1.5 KB per app per
//! deploy), a commit keeps the newest `[state] keep_deployments` per app there and appends
//! the older ones to the stage's archive (`StateStore::append_archive`: JSON Lines, one
//! `{"app", "deployment"}` per line), which is never rewritten. `ferry history` and
//! `ferry rollback` read both ([`with_archived`]).
//!
//! The archive is appended before the state drops what it holds, so a crash between the two
//! leaves a deployment in both; readers keep one copy per number.

use serde::{Deserialize, Serialize};

use super::store::Result;
use super::{AppState, Deployment, LockedStage, StateStore};

pub use crate::config::model::DEFAULT_KEEP_DEPLOYMENTS;

/// One line of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedDeployment {
    pub app: String,
    pub deployment: Deployment,
}

/// Move every app's deployments beyond the newest `keep` (at least one) from the session's
/// state to the archive. Returns how many moved.
pub fn prune(session: &mut LockedStage, keep: usize) -> Result<usize> {
    let keep = keep.max(1);
    let mut lines = Vec::new();
    let mut moved = 0;
    for (app, state) in &session.state().apps {
        let old = state.history.len().saturating_sub(keep);
        for deployment in &state.history[..old] {
            let line = ArchivedDeployment { app: app.clone(), deployment: deployment.clone() };
            serde_json::to_writer(&mut lines, &line).expect("a deployment serialises");
            lines.push(b'\n');
            moved += 1;
        }
    }
    if moved == 0 {
        return Ok(0);
    }
    let stage = session.state().stage.clone();
    session.store().append_archive(&stage, &lines)?;
    session.update(|s| {
        for app in s.apps.values_mut() {
            let old = app.history.len().saturating_sub(keep);
            app.history.drain(..old);
        }
    })?;
    Ok(moved)
}

/// `app` (as the state of `stage` holds it) with its archived deployments put back before
/// the ones the state keeps, oldest first. Lines that do not parse (a torn last line after a
/// crash) are skipped.
pub fn with_archived(store: &dyn StateStore, stage: &str, app: &str, mut state: AppState) -> Result<AppState> {
    let Some(bytes) = store.read_archive(stage)? else { return Ok(state) };
    let kept_from = state.history.first().map_or(u64::MAX, |d| d.number);
    let mut archived: Vec<Deployment> = bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<ArchivedDeployment>(line).ok())
        .filter(|a| a.app == app && a.deployment.number < kept_from)
        .map(|a| a.deployment)
        .collect();
    archived.sort_by_key(|d| d.number);
    // A crash between archiving and pruning archives the same deployment twice.
    archived.dedup_by_key(|d| d.number);
    archived.append(&mut state.history);
    state.history = archived;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixture;
    use crate::state::{InMemoryStateStore, LockInfo, StageLock};

    fn session(store: &InMemoryStateStore) -> LockedStage {
        let lock = StageLock::acquire(
            Box::new(store.clone()),
            "dev",
            LockInfo::for_this_process("test"),
            std::time::Duration::ZERO,
        )
        .unwrap();
        LockedStage::read(lock).unwrap()
    }

    #[test]
    fn keeps_the_newest_in_state_and_reads_the_rest_back() {
        let store = InMemoryStateStore::new();
        let mut s = session(&store);
        let applied = fixture::applied(&fixture::stage("dev", [fixture::app("web", 1)]));
        let d = applied.apps["web"].history[0].clone();
        s.update(|state| {
            let app = state.apps.entry("web".into()).or_default();
            for n in 1..=5 {
                app.history.push(Deployment { number: n, ..d.clone() });
            }
            state.apps.entry("api".into()).or_default().history.push(Deployment { number: 1, ..d.clone() });
        })
        .unwrap();

        assert_eq!(prune(&mut s, 2).unwrap(), 3);
        let numbers = |a: &AppState| a.history.iter().map(|d| d.number).collect::<Vec<_>>();
        assert_eq!(numbers(&s.state().apps["web"]), [4, 5]);
        assert_eq!(numbers(&s.state().apps["api"]), [1]);
        assert_eq!(prune(&mut s, 2).unwrap(), 0, "nothing more to move");

        // A crash after archiving, before pruning: the next prune archives v3 again.
        store.append_archive("dev", store.read_archive("dev").unwrap().unwrap().as_slice()).unwrap();
        store.append_archive("dev", b"{\"app\": \"web\", \"depl").unwrap();
        let web = with_archived(&store, "dev", "web", s.state().apps["web"].clone()).unwrap();
        assert_eq!(numbers(&web), [1, 2, 3, 4, 5]);
        let api = with_archived(&store, "dev", "api", s.state().apps["api"].clone()).unwrap();
        assert_eq!(numbers(&api), [1]);
    }
}
