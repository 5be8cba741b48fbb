//! Judging a rollout from one observation: still waiting (and for what), succeeded, or
//! failed. Pure, so the rules are unit-tested without processes; the engine's single poll
//! loop calls [`judge`] for every in-flight app after each batched `observe`.
//!
//! A deploy succeeds only when the rollout ferry created is COMPLETED, the service's primary
//! revision is the planned one and the planned number of its tasks are RUNNING and HEALTHY
//! (or RUNNING, for tasks without a health check: [`TaskStatus::is_ready`]).
//! It fails fast — without waiting out `deploy.timeout` — when the runtime reports the
//! rollout FAILED, or when new tasks die before they ever turn healthy. How many deaths that
//! takes depends on the runtime ([`Runtime::restarts_in_place`]): the local agent restarts a
//! crashed task in place, so a few restarts may be transient and each desired task may fail
//! [`RESTART_BUDGET`] times; on ECS a stopped task is final (ECS starts a new one, and its
//! circuit breaker counts), so the first new task that stops fails the rollout — at once,
//! while ECS still remembers the task's stop reason, exit code and logs.
//!
//! [`Runtime::restarts_in_place`]: crate::runtime::Runtime::restarts_in_place

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::runtime::{
    Health, Lifecycle, RevisionId, RolloutId, RolloutState, RolloutStatus, ServiceEvent, ServiceState, ServiceStatus,
    TaskId, TaskKind, TaskStatus,
};

/// How many times each desired task may die (exit or fail its checks) before turning healthy
/// before the rollout is failed. Small: a release that crashes at start crashes again, and
/// waiting out a five-minute timeout for it only delays the report.
pub const RESTART_BUDGET: u32 = 2;

/// What is watched: a deploy to a new revision, or a scale of the running one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// The rollout `deploy` returned.
    Deploy { rollout: RolloutId },
    /// A scale: there is no rollout id, the service's own counts tell.
    Scale,
}

/// One in-flight rollout as the engine watches it.
#[derive(Debug, Clone)]
pub struct RolloutWatch {
    pub app: String,
    pub watched: Watched,
    /// The revision that must end up primary.
    pub target: RevisionId,
    pub desired: u32,
    pub started: Instant,
    /// `deploy.timeout` from the start.
    pub deadline: Instant,
    /// Tasks that existed before the rollout: neither new nor its failures.
    pub old_tasks: BTreeSet<TaskId>,
    /// The watched rollout's failed-task count when the watch began (a scale watches the
    /// primary rollout, whose earlier failures are not the scale's).
    pub failed_before: u32,
    /// [`Runtime::restarts_in_place`](crate::runtime::Runtime::restarts_in_place) of the
    /// runtime: tolerate a few restarts, or fail at the first new task that stops.
    pub restarts_in_place: bool,
}

/// Where a rollout stands, for progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What it waits for, in words: `starting tasks`, `waiting for health`, `draining old tasks`…
    pub phase: String,
    pub desired: u32,
    /// New tasks RUNNING.
    pub running: u32,
    /// New tasks not yet RUNNING.
    pub pending: u32,
    /// New tasks RUNNING and HEALTHY.
    pub healthy: u32,
    /// Other tasks still alive (old revision, draining).
    pub old: u32,
    /// New tasks that died before turning healthy.
    pub failed: u32,
    pub elapsed: Duration,
}

impl Progress {
    /// `waiting for health · 1/2 healthy, 1 pending`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{}/{} healthy", self.healthy, self.desired)];
        if self.pending > 0 {
            parts.push(format!("{} pending", self.pending));
        }
        if self.old > 0 {
            parts.push(format!("{} old", self.old));
        }
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        format!("{} · {} · {:.1}s", self.phase, parts.join(", "), self.elapsed.as_secs_f64())
    }
}

/// The verdict of one observation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Waiting(Progress),
    Succeeded(Progress),
    /// Why, and the new task that best explains it (for its check output, exit code, logs).
    Failed {
        reason: String,
        task: Option<Box<TaskStatus>>,
    },
}

fn alive(t: &TaskStatus) -> bool {
    t.kind == TaskKind::Service && t.last_status != Lifecycle::Stopped && t.desired_status != Lifecycle::Stopped
}

/// The scheduler events of `status` that belong to a rollout and were not `shown` yet,
/// oldest first: those newer than `before` (the newest event before it started; events
/// come newest first, and ids rather than times tell, so clock skew cannot hide one). When
/// the engine did not look before the rollout (`before` is `None` on a runtime where a look
/// costs requests), those from `since` on, the rollout's start as the runtime's own clock
/// gives it ([`rollout_began`]).
pub fn new_events<'a>(
    status: &'a ServiceStatus,
    before: Option<&str>,
    since: Option<DateTime<Utc>>,
    shown: &[ServiceEvent],
) -> Vec<&'a ServiceEvent> {
    let mut fresh: Vec<&ServiceEvent> = status
        .events
        .iter()
        .take_while(|e| Some(e.id.as_str()) != before)
        .filter(|e| before.is_some() || since.is_none_or(|s| e.time >= s))
        .filter(|e| !shown.iter().any(|s| s.id == e.id))
        .collect();
    fresh.reverse();
    fresh
}

/// When the watched rollout began, by the runtime's clock (`None` for a scale, or when the
/// runtime no longer reports it).
pub fn rollout_began(watch: &RolloutWatch, status: &ServiceStatus) -> Option<DateTime<Utc>> {
    match &watch.watched {
        Watched::Deploy { rollout } => status.rollout(rollout).map(|r| r.created_at),
        Watched::Scale => None,
    }
}

/// Whether task `t` predates the rollout `r`: it started or stopped before the runtime
/// created the rollout (both times from the runtime's clock). Such a task of the target
/// revision (drained by an earlier deploy that is now returned to) is not the rollout's.
fn predates(t: &TaskStatus, r: Option<&RolloutStatus>) -> bool {
    r.is_some_and(|r| t.started_at.is_some_and(|s| s < r.created_at) || t.stopped_at.is_some_and(|s| s < r.created_at))
}

/// Judge `watch` against `status` (the app's service) at `now`.
pub fn judge(watch: &RolloutWatch, status: &ServiceStatus, now: Instant) -> Verdict {
    let new: Vec<&TaskStatus> = status.tasks.iter().filter(|t| alive(t) && t.revision == watch.target).collect();
    let old = status
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Service && t.last_status != Lifecycle::Stopped && t.revision != watch.target)
        .count() as u32;
    let running = new.iter().filter(|t| t.last_status == Lifecycle::Running).count() as u32;
    let healthy = new.iter().filter(|t| t.is_ready()).count() as u32;
    let pending = new.iter().filter(|t| t.last_status.is_pending()).count() as u32;
    let rollout = match &watch.watched {
        Watched::Deploy { rollout } => status.rollout(rollout),
        Watched::Scale => status.primary(),
    };
    let failed = rollout.map_or(0, |r| r.failed_tasks).saturating_sub(watch.failed_before);
    let mut progress = Progress {
        phase: String::new(),
        desired: watch.desired,
        running,
        pending,
        healthy,
        old,
        failed,
        elapsed: now.saturating_duration_since(watch.started),
    };
    let of_target = || {
        status.tasks.iter().filter(|t| {
            t.kind == TaskKind::Service
                && t.revision == watch.target
                && !watch.old_tasks.contains(&t.id)
                && !predates(t, rollout)
        })
    };
    // A new task that stopped (on a runtime where stopping is final, one is a failure).
    let stopped = || of_target().find(|t| t.last_status == Lifecycle::Stopped);
    // The task that explains a failure best: a new one that stopped, died or is unhealthy,
    // else any new one.
    let culprit = || {
        stopped()
            .or_else(|| of_target().find(|t| t.exit_code.is_some() || t.restarts > 0 || t.health == Health::Unhealthy))
            .or_else(|| of_target().next())
            .map(|t| Box::new(t.clone()))
    };

    if status.state == ServiceState::Missing {
        return Verdict::Failed {
            reason: format!("the runtime no longer knows app {} (was the agent stopped?)", watch.app),
            task: None,
        };
    }
    match (&watch.watched, rollout) {
        (Watched::Deploy { rollout }, None) => {
            return Verdict::Failed {
                reason: format!("the runtime no longer knows rollout {rollout} of app {}", watch.app),
                task: culprit(),
            }
        }
        (_, Some(r)) if r.state == RolloutState::Failed => {
            let why = r.reason.clone().unwrap_or_else(|| "no reason given".into());
            return Verdict::Failed { reason: format!("the runtime failed the rollout: {why}"), task: culprit() };
        }
        _ => {}
    }
    if !watch.restarts_in_place {
        if let Some(t) = stopped() {
            return Verdict::Failed {
                reason: format!(
                    "new task {} stopped before the rollout was healthy: {}",
                    t.id,
                    t.stopped_reason.as_deref().unwrap_or("no reason given")
                ),
                task: culprit(),
            };
        }
    }
    let budget = if watch.restarts_in_place { RESTART_BUDGET * watch.desired.max(1) } else { 0 };
    if failed > budget {
        return Verdict::Failed {
            reason: format!(
                "new tasks keep dying before turning healthy ({failed} failures for {} desired task{})",
                watch.desired,
                if watch.desired == 1 { "" } else { "s" }
            ),
            task: culprit(),
        };
    }
    let primary_ok = status.revision.as_ref() == Some(&watch.target);
    let rollout_done = match &watch.watched {
        Watched::Deploy { .. } => rollout.is_some_and(|r| r.state == RolloutState::Completed),
        Watched::Scale => new.len() as u32 == watch.desired,
    };
    if rollout_done && primary_ok && healthy >= watch.desired && old == 0 {
        progress.phase = "done".into();
        return Verdict::Succeeded(progress);
    }
    // The deploy timeout bounds how long new tasks take to turn healthy; once the runtime's
    // own deployment has them running and moves on (traffic shifts, bake time, a pause),
    // it decides the outcome, and its stage is the phase shown.
    let runtime_stage = rollout.and_then(|r| r.stage.as_ref());
    if now >= watch.deadline && !runtime_stage.is_some_and(|s| s.tasks_started) {
        let waited = watch.deadline.saturating_duration_since(watch.started);
        return Verdict::Failed {
            reason: format!(
                "not healthy within the deploy timeout ({}s): {healthy} of {} new tasks healthy",
                waited.as_secs(),
                watch.desired
            ),
            task: culprit(),
        };
    }
    progress.phase = if let Some(stage) = runtime_stage.filter(|s| s.tasks_started) {
        stage.text.clone()
    } else if !primary_ok {
        "waiting for the runtime to take the new revision".into()
    } else if (new.len() as u32) < watch.desired || new.iter().any(|t| t.last_status < Lifecycle::Activating) {
        "starting new tasks".into()
    } else if healthy < watch.desired {
        "waiting for health checks".into()
    } else if old > 0 {
        "draining old tasks".into()
    } else if (new.len() as u32) > watch.desired {
        "stopping extra tasks".into()
    } else {
        "completing".into()
    };
    Verdict::Waiting(progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::TaskId;

    fn task(id: &str, rev: &str, last: Lifecycle, health: Health) -> TaskStatus {
        TaskStatus {
            id: TaskId(id.into()),
            kind: TaskKind::Service,
            name: None,
            revision: RevisionId(rev.into()),
            release: 1,
            last_status: last,
            desired_status: Lifecycle::Running,
            health,
            in_service: false,
            started_at: None,
            stopped_at: None,
            exit_code: None,
            stopped_reason: None,
            restarts: 0,
            last_check: None,
            has_health_check: true,
            port: None,
            pid: None,
        }
    }

    fn service(state: RolloutState, failed: u32, tasks: Vec<TaskStatus>) -> ServiceStatus {
        let mut s = ServiceStatus::missing("web");
        s.state = ServiceState::Active;
        s.revision = Some(RevisionId("v2".into()));
        s.desired = 2;
        s.rollouts = vec![RolloutStatus {
            id: RolloutId("ro".into()),
            revision: RevisionId("v2".into()),
            release: 2,
            primary: true,
            state,
            reason: None,
            desired: 2,
            running: 0,
            pending: 0,
            healthy: 0,
            failed_tasks: failed,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            stage: None,
        }];
        s.tasks = tasks;
        s
    }

    fn watch(now: Instant) -> RolloutWatch {
        RolloutWatch {
            app: "web".into(),
            watched: Watched::Deploy { rollout: RolloutId("ro".into()) },
            target: RevisionId("v2".into()),
            desired: 2,
            started: now,
            deadline: now + Duration::from_secs(30),
            old_tasks: BTreeSet::new(),
            failed_before: 0,
            restarts_in_place: true,
        }
    }

    #[test]
    fn waits_until_completed_primary_and_healthy() {
        let now = Instant::now();
        let w = watch(now);
        let starting = service(
            RolloutState::InProgress,
            0,
            vec![
                task("a", "v2", Lifecycle::Pending, Health::Unknown),
                task("b", "v2", Lifecycle::Running, Health::Healthy),
                task("o", "v1", Lifecycle::Running, Health::Healthy),
            ],
        );
        match judge(&w, &starting, now) {
            Verdict::Waiting(p) => {
                assert_eq!((p.healthy, p.pending, p.old), (1, 1, 1));
                assert_eq!(p.phase, "starting new tasks");
            }
            other => panic!("{other:?}"),
        }
        let draining = service(
            RolloutState::InProgress,
            0,
            vec![
                task("a", "v2", Lifecycle::Running, Health::Healthy),
                task("b", "v2", Lifecycle::Running, Health::Healthy),
                task("o", "v1", Lifecycle::Deactivating, Health::Healthy),
            ],
        );
        assert!(matches!(judge(&w, &draining, now), Verdict::Waiting(p) if p.phase == "draining old tasks"));
        let done = service(
            RolloutState::Completed,
            0,
            vec![
                task("a", "v2", Lifecycle::Running, Health::Healthy),
                task("b", "v2", Lifecycle::Running, Health::Healthy),
            ],
        );
        assert!(matches!(judge(&w, &done, now), Verdict::Succeeded(_)));
        // Completed but another revision primary (someone deployed over us): not ours.
        let mut other = done.clone();
        other.revision = Some(RevisionId("v3".into()));
        assert!(matches!(judge(&w, &other, now), Verdict::Waiting(_)));
    }

    #[test]
    fn fails_fast_on_crash_loops_and_on_timeout() {
        let now = Instant::now();
        let w = watch(now);
        let mut crashed = task("a", "v2", Lifecycle::Pending, Health::Unknown);
        crashed.exit_code = Some(3);
        crashed.restarts = 3;
        let looping = service(RolloutState::InProgress, 5, vec![crashed]);
        match judge(&w, &looping, now) {
            Verdict::Failed { reason, task } => {
                assert!(reason.contains("keep dying"), "{reason}");
                assert_eq!(task.unwrap().exit_code, Some(3));
            }
            other => panic!("{other:?}"),
        }
        let slow = service(RolloutState::InProgress, 0, vec![task("a", "v2", Lifecycle::Activating, Health::Unknown)]);
        assert!(matches!(judge(&w, &slow, now + Duration::from_secs(5)), Verdict::Waiting(_)));
        match judge(&w, &slow, now + Duration::from_secs(31)) {
            Verdict::Failed { reason, .. } => assert!(reason.contains("deploy timeout (30s)"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let failed = service(RolloutState::Failed, 0, vec![]);
        assert!(matches!(judge(&w, &failed, now), Verdict::Failed { .. }));
    }

    #[test]
    fn where_a_stop_is_final_the_first_new_task_that_stops_fails_the_rollout() {
        let now = Instant::now();
        let w =
            RolloutWatch { restarts_in_place: false, old_tasks: BTreeSet::from([TaskId("old".into())]), ..watch(now) };
        let mut dead = task("a", "v2", Lifecycle::Stopped, Health::Unknown);
        dead.exit_code = Some(1);
        dead.stopped_reason = Some("Essential container in task exited".into());
        // ECS has not counted it yet (failedTasks 0): the stopped task is enough.
        let s = service(RolloutState::InProgress, 0, vec![task("b", "v2", Lifecycle::Running, Health::Healthy), dead]);
        match judge(&w, &s, now) {
            Verdict::Failed { reason, task } => {
                assert!(reason.contains("new task a stopped") && reason.contains("Essential container"), "{reason}");
                assert_eq!(task.unwrap().exit_code, Some(1));
            }
            other => panic!("{other:?}"),
        }
        // The same observation on a runtime that restarts in place is within the budget.
        assert!(matches!(judge(&watch(now), &s, now), Verdict::Waiting(_)));
        // One failure counted by the runtime is enough too.
        let counted = service(RolloutState::InProgress, 1, vec![task("b", "v2", Lifecycle::Pending, Health::Unknown)]);
        assert!(matches!(judge(&w, &counted, now), Verdict::Failed { .. }));
        // A task of the revision that stopped before the rollout (drained by an earlier
        // deploy, now rolled back to) is not a failure of this one.
        let mut earlier = task("old", "v2", Lifecycle::Stopped, Health::Unknown);
        earlier.stopped_reason = Some("Scaling activity initiated by deployment".into());
        let back =
            service(RolloutState::InProgress, 0, vec![earlier, task("b", "v2", Lifecycle::Pending, Health::Unknown)]);
        assert!(matches!(judge(&w, &back, now), Verdict::Waiting(_)));
        // The same without a look before the rollout (ECS): its stop time tells it is older.
        let unlisted = RolloutWatch { old_tasks: BTreeSet::new(), ..w.clone() };
        let mut back = back;
        let began = back.rollouts[0].created_at;
        back.tasks[0].stopped_at = Some(began - chrono::Duration::seconds(30));
        assert!(matches!(judge(&unlisted, &back, now), Verdict::Waiting(_)));
        back.tasks[0].stopped_at = Some(began + chrono::Duration::seconds(1));
        assert!(matches!(judge(&unlisted, &back, now), Verdict::Failed { .. }), "stopped after it began: a failure");
    }

    #[test]
    fn a_scale_does_not_inherit_earlier_failures_of_its_rollout() {
        let now = Instant::now();
        let w = RolloutWatch { watched: Watched::Scale, failed_before: 5, ..watch(now) };
        let s = service(RolloutState::Completed, 6, vec![task("a", "v2", Lifecycle::Pending, Health::Unknown)]);
        assert!(matches!(judge(&w, &s, now), Verdict::Waiting(_)));
        let s = service(RolloutState::Completed, 10, vec![task("a", "v2", Lifecycle::Pending, Health::Unknown)]);
        assert!(matches!(judge(&w, &s, now), Verdict::Failed { .. }));
    }

    #[test]
    fn only_events_after_the_rollout_began_are_new_and_each_once() {
        let event = |id: &str| ServiceEvent { id: id.into(), time: Utc::now(), message: format!("event {id}") };
        let mut s = service(RolloutState::InProgress, 0, vec![]);
        s.events = vec![event("3"), event("2"), event("1")];
        let ids = |v: Vec<&ServiceEvent>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(new_events(&s, Some("1"), None, &[])), ["2", "3"], "oldest first, none from before");
        assert_eq!(ids(new_events(&s, Some("1"), None, &[event("2")])), ["3"]);
        assert_eq!(ids(new_events(&s, None, None, &[])), ["1", "2", "3"], "a new service: all are its own");
        // Not looked at before (ECS): the rollout's start time tells.
        let began = Utc::now();
        s.events[0].time = began + chrono::Duration::seconds(2);
        s.events[1].time = began;
        s.events[2].time = began - chrono::Duration::seconds(5);
        assert_eq!(ids(new_events(&s, None, Some(began), &[])), ["2", "3"], "none from before the rollout began");
    }
}
