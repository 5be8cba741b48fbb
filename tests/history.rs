//! Integration tests: `ferry history` and `ferry releases` through the real binary, against
//! state files written with the library's own types. `FERRY_NOW` pins "now" so relative
//! times are stable.

use chrono::{DateTime, Utc};
use ferry::config::{self, AppConfig, Digest};
use ferry::state::{
    config_hash, ActiveDeployment, AppState, Deployment, DeploymentKind, DeploymentStatus, LocalStateStore,
    ReleaseRecord, Source, StageState, StateStore,
};

use crate::support::{Run, TestProject};

/// "Now" for every test here.
pub const NOW: &str = "2025-03-10T12:00:00Z";

pub fn digest(n: u64) -> Digest {
    format!("sha256:{}", &format!("{n:x}").repeat(64)[..64]).parse().unwrap()
}

/// `web`'s config as the python-web fixture's stage file declares it now.
pub fn file_config(p: &TestProject) -> AppConfig {
    let project = config::load_project(p.path()).unwrap();
    config::load_stage(&project, "development").unwrap().apps["web"].config.clone()
}

/// One recorded deployment, `days_ago` days before [`NOW`].
pub struct Dep {
    pub release: u64,
    pub config: AppConfig,
    pub scale: u32,
    pub status: DeploymentStatus,
    pub description: &'static str,
    pub days_ago: i64,
    pub reason: Option<&'static str>,
}

impl Dep {
    pub fn ok(release: u64, config: &AppConfig, description: &'static str, days_ago: i64) -> Dep {
        Dep {
            release,
            config: config.clone(),
            scale: 2,
            status: DeploymentStatus::Succeeded,
            description,
            days_ago,
            reason: None,
        }
    }
    pub fn with(self, status: DeploymentStatus, reason: &'static str) -> Dep {
        Dep { status, reason: Some(reason), ..self }
    }
}

/// Record `deployments` of `web` (and `releases` ids seen) as the stage's state; the last
/// succeeded deployment is what runs.
pub fn record(p: &TestProject, releases: &[u64], deployments: Vec<Dep>) {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let mut app = AppState::default();
    for &id in releases {
        let first_deployed = deployments
            .iter()
            .filter(|d| d.release == id && d.status == DeploymentStatus::Succeeded)
            .map(|d| now - chrono::Duration::days(d.days_ago))
            .min();
        app.releases.insert(
            id,
            ReleaseRecord { digest: digest(id), first_seen: now - chrono::Duration::days(30), first_deployed },
        );
    }
    for (i, d) in deployments.into_iter().enumerate() {
        let started_at = now - chrono::Duration::days(d.days_ago);
        let deployment = Deployment {
            number: i as u64 + 1,
            kind: DeploymentKind::Activate,
            release: d.release,
            digest: digest(d.release),
            scale: d.scale,
            config_hash: config_hash(&d.config),
            config: d.config,
            revision: None,
            description: d.description.to_string(),
            source: Source {
                commit: Some(format!("{:07x}", 0xef5c71a + i as u64).repeat(6)),
                branch: Some("main".into()),
                author: Some(if i % 2 == 0 { "Ada Lovelace" } else { "octocat" }.into()),
                // A control character in a subject is shown escaped, never sent to the terminal.
                subject: Some(if i == 2 {
                    "Turn on FEATURE_X \u{1b}[2J".into()
                } else {
                    format!("Change number {}", i + 1)
                }),
                ..Source::default()
            },
            build: None,
            started_at,
            finished_at: Some(started_at + chrono::Duration::seconds(40)),
            status: d.status,
            reason: d.reason.map(str::to_string),
        };
        if deployment.status == DeploymentStatus::Succeeded {
            app.active = Some(ActiveDeployment {
                deployment: deployment.number,
                image: "web".into(),
                release: deployment.release,
                digest: deployment.digest.clone(),
                scale: deployment.scale,
                config: deployment.config.clone(),
                config_hash: deployment.config_hash.clone(),
                revision: None,
            });
        }
        app.history.push(deployment);
    }
    let mut state = StageState::new("development");
    state.apps.insert("web".into(), app);
    LocalStateStore::new(p.path().join(".ferry/state")).write(&mut state).unwrap();
}

pub fn ferry(p: &TestProject, args: &[&str]) -> Run {
    Run(p.ferry().env("FERRY_NOW", NOW).args(args).output().unwrap())
}

fn project_with_history() -> TestProject {
    let p = TestProject::from_fixture("python-web");
    let c = file_config(&p);
    let mut feature = c.clone();
    feature.env.insert("FEATURE_X".into(), "on".into());
    record(
        &p,
        &[1, 2, 3],
        vec![
            Dep::ok(1, &c, "Activate release 1 (sha256:111111…)", 20),
            Dep::ok(2, &c, "Activate release 2 (sha256:222222…)", 9),
            Dep::ok(2, &feature, "Config change: +FEATURE_X", 3),
            Dep::ok(3, &feature, "Activate release 3 (sha256:333333…)", 1)
                .with(DeploymentStatus::Failed, "new tasks not healthy within 30s\nlast check: GET / returned 502"),
            Dep { scale: 4, ..Dep::ok(2, &feature, "Scale 2 → 4", 0) },
        ],
    );
    p
}

#[test]
fn history_lists_newest_first_with_aligned_columns_and_failure_reasons() {
    let p = project_with_history();
    let run = ferry(&p, &["history", "web"]);
    run.expect_code(0);
    insta::assert_snapshot!(run.stdout());

    let two = ferry(&p, &["history", "web", "-n", "2"]);
    assert_eq!(two.stdout().lines().filter(|l| l.starts_with('v')).count(), 2);

    let json: serde_json::Value = serde_json::from_str(&ferry(&p, &["history", "web", "--json"]).stdout()).unwrap();
    let deployments = json["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 5);
    assert_eq!((deployments[0]["number"].as_u64(), deployments[0]["status"].as_str()), (Some(5), Some("succeeded")));
    assert_eq!(deployments[1]["reason"].as_str().unwrap().lines().count(), 2);
}

#[test]
fn history_of_an_app_never_deployed_and_of_an_unknown_app() {
    let p = TestProject::from_fixture("python-web");
    let run = ferry(&p, &["history", "web"]);
    run.expect_code(0);
    assert_eq!(run.stdout(), "web has no deployments in stage development yet\n");
    let run = ferry(&p, &["history", "nope"]);
    run.expect_code(1);
    assert!(run.stderr().starts_with("error: stage `development` has no app `nope`"), "{}", run.stderr());
}

#[test]
fn releases_marks_the_active_one_and_those_deleted_from_the_file() {
    let p = project_with_history();
    // The file declares release 1 (active) only; state has seen 1, 2 and 3.
    let run = ferry(&p, &["releases", "web"]);
    run.expect_code(0);
    insta::assert_snapshot!(run.stdout());

    let json: serde_json::Value = serde_json::from_str(&ferry(&p, &["releases", "web", "--json"]).stdout()).unwrap();
    let ids: Vec<(u64, bool, bool)> = json["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["declared"].as_bool().unwrap(), r["running"].as_bool().unwrap()))
        .collect();
    assert_eq!(ids, [(3, false, false), (2, false, true), (1, true, false)]);
}
