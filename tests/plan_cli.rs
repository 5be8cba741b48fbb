//! `ferry plan` and `ferry graph` end to end: snapshots of every format for the fixtures in
//! tests/fixtures/plan (a first-ever deploy; a mixed change), exit codes, refused removals,
//! and saved plans going stale.

use std::path::Path;

use ferry::config;
use ferry::plan::{fixture, Moved, SavedPlan};

use crate::support::{copy_dir, repo_root, TestProject};

/// A copy of tests/fixtures/plan/NAME.
fn fixture_project(name: &str) -> TestProject {
    let p = TestProject::empty();
    copy_dir(&repo_root().join("tests/fixtures/plan").join(name), p.path());
    p
}

/// The mixed fixture with its recorded state: `applied/production.toml` planned and
/// recorded (fixed time and lineage), then the current file put back.
fn mixed() -> TestProject {
    let p = fixture_project("mixed");
    record_applied(&p, &p.read("applied/production.toml"));
    p
}

/// Write state as if `applied` (a production stage file) had been committed.
fn record_applied(p: &TestProject, applied: &str) {
    let current = p.read("stages/production.toml");
    p.write("stages/production.toml", applied);
    let project = config::load_project(p.path()).unwrap();
    let stage = config::load_stage(&project, "production").unwrap();
    let state = fixture::applied(&stage);
    p.write(".ferry/state/production.json", &serde_json::to_string_pretty(&state).unwrap());
    p.write("stages/production.toml", &current);
}

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "fixtures/plan/snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

/// Replace the random lineage of a never-applied stage, so snapshots are stable.
fn pin_lineage(text: &str, p: &TestProject, stage: &str) -> String {
    let out = p.run(&["plan", "--offline", "-s", stage, "--json"]).stdout();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lineage = json["stages"][0]["lineage"].as_str().unwrap().to_string();
    text.replace(&lineage, "[lineage]")
}

#[test]
fn first_deploy_snapshots() {
    let p = fixture_project("first");
    let text = p.run(&["plan", "--offline"]).expect_code(0).stdout();
    snapshot!("first_text", text);
    snapshot!("first_markdown", p.run(&["plan", "--offline", "--markdown"]).expect_code(0).stdout());
    let json = p.run(&["plan", "--offline", "--json"]).expect_code(0).stdout();
    // A fresh state's lineage is random: the second run's differs from the first's.
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut json = json;
    json["stages"][0]["lineage"] = "[lineage]".into();
    snapshot!("first_json", serde_json::to_string_pretty(&json).unwrap());
    let _ = pin_lineage;
}

#[test]
fn mixed_change_snapshots() {
    let p = mixed();
    let text = p.run(&["plan", "--offline"]).expect_code(0).stdout();
    assert!(text.starts_with("Plan: 2 to deploy, 1 to scale, 1 to add, 0 to remove.\n"), "{text}");
    snapshot!("mixed_text", text);
    snapshot!("mixed_markdown", p.run(&["plan", "--offline", "--markdown"]).expect_code(0).stdout());
    snapshot!("mixed_json", p.run(&["plan", "--offline", "--json"]).expect_code(0).stdout());
    snapshot!("mixed_dot", p.run(&["graph"]).expect_code(0).stdout());
}

#[test]
fn sensitive_values_appear_in_no_format() {
    let p = mixed();
    for args in
        [&["plan", "--offline"][..], &["plan", "--offline", "--json"], &["plan", "--offline", "--markdown"], &["graph"]]
    {
        let out = p.run(args).expect_code(0).stdout();
        for secret in ["hunter2", "correct-horse"] {
            assert!(!out.contains(secret), "`ferry {}` shows a sensitive value:\n{out}", args.join(" "));
        }
        if args.len() > 1 || args[0] == "plan" {
            assert!(out.contains("(sensitive"), "`ferry {}` does not mark the masked value:\n{out}", args.join(" "));
        }
    }
}

#[test]
fn exit_codes() {
    let p = mixed();
    p.run(&["plan", "--offline", "--detailed-exitcode"]).expect_code(2);
    p.run(&["plan", "--offline"]).expect_code(0);
    p.run(&["plan", "--offline", "-s", "nope"]).expect_code(1);
    record_applied(&p, &p.read("stages/production.toml"));
    let run = p.run(&["plan", "--offline", "--detailed-exitcode"]);
    run.expect_code(0);
    assert_eq!(run.stdout(), "No changes. Stage `production` matches recorded state.\n");
    let json = p.run(&["plan", "--offline", "--json", "--detailed-exitcode"]).expect_code(0).stdout();
    assert!(json.contains("\"changes\": false"), "{json}");
}

#[test]
fn removal_is_refused_without_allow_remove() {
    let p = mixed();
    let current = p.read("stages/production.toml");
    let without_worker = current.split("[apps.worker]").next().unwrap().to_string()
        + "[apps.cron]"
        + current.split("[apps.cron]").nth(1).unwrap();
    p.write("stages/production.toml", &without_worker);
    let run = p.run(&["plan", "--offline"]);
    run.expect_code(1);
    assert!(run.stdout().is_empty());
    let err = run.stderr();
    assert!(err.starts_with("error: app `worker` runs in stage `production` but is no longer in its file\n"), "{err}");
    assert!(err.contains("--> stages/production.toml\n") && err.contains("pass --allow-remove"), "{err}");
    let out = p.run(&["plan", "--offline", "--allow-remove"]).expect_code(0).stdout();
    assert!(out.starts_with("Plan: 2 to deploy, 0 to scale, 1 to add, 1 to remove."), "{out}");
    assert!(out.contains("- worker: Remove app"), "{out}");
}

#[test]
fn several_stages_need_a_choice() {
    let p = mixed();
    p.write("stages/staging.toml", "[runtime]\nkind = \"local\"\n");
    let err = p.run(&["plan", "--offline"]).expect_code(1).stderr();
    assert!(err.contains("2 stages: production, staging") && err.contains("--all"), "{err}");
    let out = p.run(&["plan", "--offline", "--all"]).expect_code(0).stdout();
    assert!(out.contains("Stage `production`") && out.contains("Stage `staging`"), "{out}");
    p.run(&["plan", "--offline", "--all", "-o", "plan.json"]).expect_code(1);
}

#[test]
fn a_saved_plan_goes_stale_when_state_or_inputs_move() {
    let p = mixed();
    let run = p.run(&["plan", "--offline", "-o", "plan.json", "--json"]);
    run.expect_code(0);
    assert!(run.stderr().contains("saved the plan of stage `production` to plan.json"), "{}", run.stderr());
    let saved = SavedPlan::read(&p.path().join("plan.json")).unwrap();
    assert_eq!(saved.stage, "production");
    assert_eq!(saved.changeset.operations.len(), 11, "{:#?}", saved.changeset.operations);

    let inputs = |p: &TestProject| {
        let bytes = |f: &str| std::fs::read(p.path().join(f)).unwrap();
        ferry::plan::input_hash(&bytes("stages/production.toml"), &bytes("ferry.toml"))
    };
    saved.check_fresh(&saved.lineage, saved.serial, &inputs(&p)).unwrap();
    let stale = saved.check_fresh(&saved.lineage, saved.serial + 1, &inputs(&p)).unwrap_err();
    assert_eq!(stale.moved, vec![Moved::Serial { planned: 1, now: 2 }]);
    assert!(stale.to_string().contains("serial 1 when planned, 2 now"), "{stale}");

    p.write("stages/production.toml", &(p.read("stages/production.toml") + "\n# a comment\n"));
    let stale = saved.check_fresh("other", saved.serial, &inputs(&p)).unwrap_err();
    assert_eq!(stale.moved.len(), 2);
    assert!(matches!(stale.moved[0], Moved::Lineage { .. }) && stale.moved[1] == Moved::Inputs);

    p.write("bad.json", "{\"format_version\": 7}");
    let err = SavedPlan::read(Path::new(&p.path().join("bad.json"))).unwrap_err().to_string();
    assert!(err.contains("bad.json") && err.contains("version 7"), "{err}");
}
