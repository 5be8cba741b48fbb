//! Rollback targets: which deployment `ferry rollback` restores (or why it refuses), and
//! how the apply engine recognises that an applied change restores an earlier deployment.

use std::fmt;

use crate::state::{AppState, Deployment, DeploymentStatus};

/// Why there is nothing to roll back to. `Display` says why; [`hint`](Self::hint) says
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackRefusal {
    /// Rolling back needs something known-good besides what runs now.
    TooFewSucceeded { count: usize },
    /// No deployment vN was ever recorded.
    NoSuchDeployment { number: u64, latest: Option<u64> },
    /// vN failed, was aborted or never finished: it never ran healthy.
    NotSucceeded { number: u64, status: DeploymentStatus, reason: Option<String> },
    /// vN is what runs now (same release, config and scale).
    AlreadyRunning { number: u64, running: u64 },
}

impl fmt::Display for RollbackRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackRefusal::TooFewSucceeded { count: 0 } => {
                write!(f, "no deployment has succeeded yet, so there is nothing to go back to")
            }
            RollbackRefusal::TooFewSucceeded { count } => {
                write!(f, "only {count} deployment succeeded, and it is what runs now; a rollback needs an earlier one")
            }
            RollbackRefusal::NoSuchDeployment { number, latest: Some(latest) } => {
                write!(f, "there is no deployment v{number} (the latest is v{latest})")
            }
            RollbackRefusal::NoSuchDeployment { number, latest: None } => {
                write!(f, "there is no deployment v{number}: nothing was deployed yet")
            }
            RollbackRefusal::NotSucceeded { number, status, reason } => {
                let what = match status {
                    DeploymentStatus::Failed => "failed",
                    DeploymentStatus::Aborted => "was aborted",
                    DeploymentStatus::InProgress => "never finished",
                    DeploymentStatus::Succeeded => "succeeded",
                };
                write!(f, "v{number} {what}, so it never ran healthy and is no state to go back to")?;
                match reason {
                    Some(r) => write!(f, " ({})", r.lines().next().unwrap_or_default()),
                    None => Ok(()),
                }
            }
            RollbackRefusal::AlreadyRunning { number, running } if number == running => {
                write!(f, "v{number} is what runs now")
            }
            RollbackRefusal::AlreadyRunning { number, running } => {
                write!(f, "v{number} ran the same release, config and scale as what runs now (v{running})")
            }
        }
    }
}

impl RollbackRefusal {
    /// What to do instead, for app `app`.
    pub fn hint(&self, app: &str) -> String {
        match self {
            RollbackRefusal::TooFewSucceeded { .. } => format!(
                "to change what runs, edit the stage file or use `ferry release activate {app} ID`; \
                 `ferry history {app}` lists deployments"
            ),
            RollbackRefusal::NoSuchDeployment { .. } => format!("`ferry history {app}` lists deployments"),
            RollbackRefusal::NotSucceeded { .. } => format!(
                "pick a succeeded deployment from `ferry history {app}`, or run `ferry rollback {app}`, which \
                 picks what runs now (or the last good one before it)"
            ),
            RollbackRefusal::AlreadyRunning { .. } => {
                format!("nothing to roll back; `ferry history {app}` shows earlier deployments")
            }
        }
    }
}

/// The deployment `ferry rollback` restores: vN when `requested`; else, when the latest
/// deployment failed or was aborted, the one that runs now (the stage file still asks for
/// what failed, and the next commit would try it again); else the last succeeded deployment
/// before the one that runs now.
pub fn rollback_target(app: &AppState, requested: Option<u64>) -> Result<&Deployment, RollbackRefusal> {
    if requested.is_none() {
        if let Some(running) = running_after_failure(app) {
            return Ok(running);
        }
    }
    earlier_target(app, requested)
}

/// The deployment that runs now, when a later one failed or was aborted: the stage file may
/// still ask for what failed.
pub fn running_after_failure(app: &AppState) -> Option<&Deployment> {
    let (latest, active) = (app.history.last()?, app.active.as_ref()?);
    let failed = matches!(latest.status, DeploymentStatus::Failed | DeploymentStatus::Aborted);
    (failed && latest.number > active.deployment).then(|| app.deployment(active.deployment)).flatten()
}

/// [`rollback_target`] without the rule for a failed latest deployment: vN when `requested`,
/// else the last succeeded deployment before the one that runs now.
pub fn earlier_target(app: &AppState, requested: Option<u64>) -> Result<&Deployment, RollbackRefusal> {
    let succeeded = || app.history.iter().filter(|d| d.status == DeploymentStatus::Succeeded);
    let count = succeeded().count();
    if count < 2 {
        return Err(RollbackRefusal::TooFewSucceeded { count });
    }
    let running = app.active.as_ref().map(|a| a.deployment);
    let target = match requested {
        Some(number) => {
            let d = app
                .deployment(number)
                .ok_or(RollbackRefusal::NoSuchDeployment { number, latest: app.history.last().map(|d| d.number) })?;
            if d.status != DeploymentStatus::Succeeded {
                return Err(RollbackRefusal::NotSucceeded { number, status: d.status, reason: d.reason.clone() });
            }
            d
        }
        // With nothing running (the app was removed), the last good one is the target.
        None => app
            .history
            .iter()
            .rev()
            .find(|d| d.status == DeploymentStatus::Succeeded && running.is_none_or(|r| d.number < r))
            .ok_or(RollbackRefusal::TooFewSucceeded { count: 1 })?,
    };
    if let Some(active) = &app.active {
        let same = target.release == active.release
            && target.config_hash == active.config_hash
            && target.scale == active.scale;
        if target.number == active.deployment || same {
            return Err(RollbackRefusal::AlreadyRunning { number: target.number, running: active.deployment });
        }
    }
    Ok(target)
}

/// The deployment vN an applied `(release, config_hash)` restores, so the apply engine can
/// record it as "Rollback to vN" whoever edited the file (`ferry rollback` or a hand-made
/// revert): the newest succeeded deployment that ran exactly this release and config. `None`
/// when that is what runs now (a scale change or redeploy is no rollback) or nothing
/// matches.
pub fn rollback_target_matching(app: &AppState, release: u64, config_hash: &str) -> Option<u64> {
    if app.active.as_ref().is_some_and(|a| a.release == release && a.config_hash == config_hash) {
        return None;
    }
    app.history
        .iter()
        .rev()
        .find(|d| d.status == DeploymentStatus::Succeeded && d.release == release && d.config_hash == config_hash)
        .map(|d| d.number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::describe::tests::config;
    use crate::state::{config_hash, ActiveDeployment, DeploymentKind, Source};

    /// An app with deployments of `(release, status)`, config differing by release; the
    /// last succeeded one is active.
    pub(crate) fn app(deployments: &[(u64, DeploymentStatus)]) -> AppState {
        let mut app = AppState::default();
        for (i, (release, status)) in deployments.iter().enumerate() {
            let mut c = config();
            c.env.insert("RELEASE".into(), release.to_string());
            let digest = format!("sha256:{}", release.to_string().repeat(64)).parse().unwrap();
            let d = Deployment {
                number: i as u64 + 1,
                kind: DeploymentKind::Activate,
                release: *release,
                digest,
                scale: 2,
                config_hash: config_hash(&c),
                config: c,
                revision: None,
                description: format!("Activate release {release}"),
                source: Source::default(),
                build: None,
                started_at: chrono::DateTime::UNIX_EPOCH,
                finished_at: None,
                status: *status,
                reason: (*status == DeploymentStatus::Failed).then(|| "health check failed\nlog".into()),
            };
            if d.status == DeploymentStatus::Succeeded {
                app.active = Some(ActiveDeployment {
                    deployment: d.number,
                    image: "web".into(),
                    release: d.release,
                    digest: d.digest.clone(),
                    scale: d.scale,
                    config: d.config.clone(),
                    config_hash: d.config_hash.clone(),
                    revision: None,
                });
            }
            app.history.push(d);
        }
        app
    }

    use DeploymentStatus::{Aborted, Failed, Succeeded};

    #[test]
    fn default_target_is_the_last_good_one_before_what_runs() {
        let a = app(&[(1, Succeeded), (2, Succeeded), (3, Failed), (3, Succeeded)]);
        assert_eq!(rollback_target(&a, None).unwrap().number, 2);
        // After an aborted deployment the file still asks for it: what runs now (v4) is the
        // target, not the one before it.
        let a = app(&[(1, Succeeded), (2, Succeeded), (3, Failed), (3, Succeeded), (4, Aborted)]);
        assert_eq!(rollback_target(&a, None).unwrap().number, 4);
        assert_eq!(rollback_target(&a, Some(1)).unwrap().number, 1);
    }

    #[test]
    fn after_a_failed_deployment_the_default_target_is_what_runs_now() {
        let a = app(&[(1, Succeeded), (2, Failed)]);
        assert_eq!(rollback_target(&a, None).unwrap().number, 1, "one succeeded is enough");
        let a = app(&[(1, Succeeded), (2, Succeeded), (3, Aborted)]);
        assert_eq!(rollback_target(&a, None).unwrap().number, 2);
        // A failure before what runs now changes nothing: the last good one before it.
        let a = app(&[(1, Succeeded), (2, Failed), (2, Succeeded)]);
        assert_eq!(rollback_target(&a, None).unwrap().number, 1);
        // Nothing runs after a failed first deploy: nothing to go back to.
        assert!(rollback_target(&app(&[(1, Failed)]), None).is_err());
    }

    #[test]
    fn refusals_say_why() {
        let a = app(&[(1, Succeeded), (2, Failed), (2, Aborted), (3, Succeeded)]);
        let refused = |a: &AppState, n| rollback_target(a, n).unwrap_err();
        assert_eq!(
            refused(&a, Some(2)).to_string(),
            "v2 failed, so it never ran healthy and is no state to go back to (health check failed)"
        );
        assert!(matches!(refused(&a, Some(3)), RollbackRefusal::NotSucceeded { status: Aborted, .. }));
        assert_eq!(refused(&a, Some(9)).to_string(), "there is no deployment v9 (the latest is v4)");
        assert_eq!(refused(&a, Some(4)).to_string(), "v4 is what runs now");
        let one = app(&[(1, Succeeded)]);
        assert_eq!(refused(&one, None), RollbackRefusal::TooFewSucceeded { count: 1 });
        assert_eq!(refused(&AppState::default(), None), RollbackRefusal::TooFewSucceeded { count: 0 });
        // v1 and v3 ran the same thing: going back to v1 would change nothing.
        let same = app(&[(1, Succeeded), (2, Succeeded), (1, Succeeded)]);
        assert_eq!(
            refused(&same, Some(1)).to_string(),
            "v1 ran the same release, config and scale as what runs now (v3)"
        );
    }

    #[test]
    fn matching_finds_the_newest_good_deployment_of_a_release_and_config() {
        let a = app(&[(1, Succeeded), (2, Succeeded), (1, Succeeded), (2, Failed), (3, Succeeded)]);
        let hash = |n: u64| a.history.iter().find(|d| d.release == n).unwrap().config_hash.clone();
        assert_eq!(rollback_target_matching(&a, 1, &hash(1)), Some(3));
        assert_eq!(rollback_target_matching(&a, 2, &hash(2)), Some(2));
        assert_eq!(rollback_target_matching(&a, 3, &hash(3)), None, "what runs now");
        assert_eq!(rollback_target_matching(&a, 1, &hash(2)), None, "another config");
    }
}
