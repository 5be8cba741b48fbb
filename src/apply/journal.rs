//! Writing deployments into state as they happen: `in_progress` when a rollout starts,
//! settled (`succeeded`, `failed`, `aborted`) when it ends, each a journal entry of its own,
//! so state read at any moment — also after a crash — tells the truth.
//!
//! **Interrupted deployments.** A commit killed mid-rollout leaves its deployment
//! `in_progress`. The next commit, once it holds the stage's lock (so the writer is known to
//! be gone), settles every such entry as `aborted` with the reason "interrupted", before it
//! plans. `aborted` rather than a guess from the runtime: nobody saw the health gate pass, so
//! the deployment did not succeed as far as ferry can vouch, and the active deployment stays
//! the last one that did. The plan that follows still differs from state, so the commit
//! deploys again and the stage converges; the runtime supersedes the orphaned rollout.

use chrono::{DateTime, Utc};

use crate::plan::{record, Changeset, Operation, Outcome};
use crate::state::{Deployment, DeploymentStatus, StageState};

/// The deployment `op` (a deploy or scale) will record, as `in_progress`, built by
/// `plan::record` on a scratch copy so both agree on every field.
pub fn in_progress(op: &Operation, state: &StageState, outcome: &Outcome) -> Option<Deployment> {
    if !op.is_rollout() {
        return None;
    }
    let mut scratch = state.clone();
    let mut ok = outcome.clone();
    ok.status = DeploymentStatus::Failed;
    record(op, &mut scratch, &ok);
    let mut d = scratch.apps.get(op.app())?.history.last()?.clone();
    d.status = DeploymentStatus::InProgress;
    d.finished_at = None;
    d.reason = None;
    Some(d)
}

/// Record `op` ended with `outcome`, replacing its `in_progress` entry (same number) when
/// there is one. Returns the deployment number it recorded, for rollouts.
pub fn finish(op: &Operation, state: &mut StageState, outcome: &Outcome, in_progress: Option<u64>) -> Option<u64> {
    if let (Some(n), Some(app)) = (in_progress, state.apps.get_mut(op.app())) {
        app.history.retain(|d| !(d.number == n && d.status == DeploymentStatus::InProgress));
    }
    record(op, state, outcome);
    if op.is_rollout() {
        state.apps.get(op.app()).and_then(|a| a.history.last()).map(|d| d.number)
    } else {
        None
    }
}

/// Whether applying `changeset` can count its journal entries: the state's serial and each
/// app's deployment numbers must not pass `u64::MAX`, where they would wrap (the serial to
/// 0, leaving a stage no write is accepted for; a deployment to v0). Checked before anything
/// reaches the runtime; the message says which counter is exhausted.
pub fn check_counters(state: &StageState, changeset: &Changeset) -> Result<(), String> {
    // Each operation writes state at most twice (`in_progress`, then settled); settling
    // interrupted deployments, forgetting lost apps and archiving old deployments write
    // once each.
    let ops = u64::try_from(changeset.operations.len()).unwrap_or(u64::MAX);
    let writes = ops.saturating_mul(2).saturating_add(3);
    if state.serial.checked_add(writes).is_none() {
        return Err(format!("the state's serial {} cannot count the {writes} writes this commit makes", state.serial));
    }
    for op in &changeset.operations {
        let last = state.apps.get(op.app()).and_then(|a| a.history.last()).map_or(0, |d| d.number);
        if last.checked_add(ops).is_none() {
            return Err(format!("app `{}` has deployment v{last}: the next number would pass u64::MAX", op.app()));
        }
    }
    Ok(())
}

/// The `(app, vN)` of every deployment left `in_progress`.
pub fn interrupted(state: &StageState) -> Vec<(String, u64)> {
    state
        .apps
        .iter()
        .flat_map(|(app, a)| {
            a.history.iter().filter(|d| d.status == DeploymentStatus::InProgress).map(|d| (app.clone(), d.number))
        })
        .collect()
}

/// Settle every `in_progress` deployment as `aborted` (see the module docs).
pub fn settle_interrupted(state: &mut StageState, now: DateTime<Utc>) {
    for app in state.apps.values_mut() {
        for d in app.history.iter_mut().filter(|d| d.status == DeploymentStatus::InProgress) {
            d.status = DeploymentStatus::Aborted;
            d.finished_at = Some(now);
            d.reason = Some(
                "interrupted: the commit that started it ended before the rollout finished; settled by the next \
                 commit"
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stage;
    use crate::plan::fixture;

    fn first_deploy() -> (Stage, StageState) {
        (fixture::stage("dev", [fixture::app("web", 1)]), StageState::new("dev"))
    }

    #[test]
    fn in_progress_then_settled_keeps_one_entry_with_its_number() {
        let (desired, mut state) = first_deploy();
        let cs = crate::plan::plan(&desired, &state, &Default::default()).unwrap();
        let deploy = cs.operations.iter().find(|o| matches!(o, Operation::Deploy { .. })).unwrap();
        let now = Utc::now();
        let d = in_progress(deploy, &state, &Outcome::succeeded(now)).unwrap();
        assert_eq!((d.number, d.status), (1, DeploymentStatus::InProgress));
        state.apps.entry(deploy.app().into()).or_default().history.push(d);
        assert_eq!(interrupted(&state), vec![(deploy.app().to_string(), 1)]);
        assert!(state.apps[deploy.app()].active.is_none(), "in progress is not active");
        let n = finish(deploy, &mut state, &Outcome::succeeded(now), Some(1));
        assert_eq!(n, Some(1));
        let app = &state.apps[deploy.app()];
        assert_eq!(app.history.len(), 1);
        assert_eq!(app.history[0].status, DeploymentStatus::Succeeded);
        assert_eq!(app.active.as_ref().unwrap().deployment, 1);
    }

    #[test]
    fn settling_marks_leftovers_aborted() {
        let (desired, mut state) = first_deploy();
        let cs = crate::plan::plan(&desired, &state, &Default::default()).unwrap();
        let deploy = cs.operations.iter().find(|o| matches!(o, Operation::Deploy { .. })).unwrap();
        let d = in_progress(deploy, &state, &Outcome::succeeded(Utc::now())).unwrap();
        state.apps.entry(deploy.app().into()).or_default().history.push(d);
        settle_interrupted(&mut state, Utc::now());
        assert!(interrupted(&state).is_empty());
        let d = &state.apps[deploy.app()].history[0];
        assert_eq!(d.status, DeploymentStatus::Aborted);
        assert!(d.reason.as_deref().unwrap().starts_with("interrupted"));
    }
}
