//! Integration tests: `ferry release create/activate` and `ferry rollback` through the real
//! binary. Each edits a stage file; the tests check the file keeps its comments and layout,
//! that ids are never reused, the registry check, and every rollback refusal.

use std::path::Path;

use ferry::config;
use ferry::edit::StageEdit;
use ferry::state::DeploymentStatus;

use crate::history::{digest, ferry, file_config, record, Dep};
use crate::support::agent::{free_port, AgentGuard};
use crate::support::{Run, TestProject};
use ferry::runtime::local::Layout;

const STAGE: &str = "stages/development.toml";
/// What `ferry image push image-v2 --repo web` prints in the python-web fixture.
const V2: &str = "sha256:3a722590abfd484d536de7bb7b5ed997fda12a74d7494fccb8570ecb1c02c200";

fn web(p: &TestProject) -> config::App {
    let project = config::load_project(p.path()).unwrap();
    config::load_stage(&project, "development").unwrap().apps["web"].clone()
}

#[test]
fn create_verifies_the_digest_in_the_local_registry() {
    let p = TestProject::from_fixture("python-web");
    let before = p.read(STAGE);
    let run = p.run(&["release", "create", "web", V2, "--activate"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr(),
        format!(
            "error: cannot add {V2} to app `web`: repository `web` has no image {V2}\n  \
             hint: push the image first: `ferry image push DIR --repo web` prints its digest; or pass --no-verify\n"
        )
    );
    assert_eq!(p.read(STAGE), before, "a refused release changes nothing");

    p.run(&["image", "push", "image-v2", "--repo", "web"]).expect_code(0);
    let run = p.run(&["release", "create", "web", V2, "--activate"]);
    run.expect_code(0);
    insta::assert_snapshot!("create_activate_diff", run.stdout());
    insta::assert_snapshot!("create_activate_file", p.read(STAGE));
    let app = web(&p);
    assert_eq!((app.active, app.releases[&2].as_str()), (Some(2), V2));

    // The same digest again is not a new release; --activate activates the existing one.
    p.run(&["release", "activate", "web", "1"]).expect_code(0);
    let run = p.run(&["release", "create", "web", V2, "--activate"]);
    run.expect_code(0);
    assert!(run.stderr().starts_with(&format!("release 2 of web already is {V2}; not adding it again\n")));
    let added: Vec<String> =
        run.stdout().lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).map(String::from).collect();
    assert_eq!(added, ["+active = 2"], "only `active` changes:\n{}", run.stdout());
    assert_eq!((web(&p).active, web(&p).releases.len()), (Some(2), 2));
}

#[test]
fn ids_are_never_reused_after_a_release_is_deleted_from_the_file() {
    let p = TestProject::from_fixture("python-web");
    let c = file_config(&p);
    // State has seen releases 1 to 3; the file declares only 1.
    record(&p, &[1, 2, 3], vec![Dep::ok(1, &c, "Activate release 1", 5)]);
    let fresh = digest(9).to_string();
    p.run(&["release", "create", "web", &fresh, "--no-verify"]).expect_code(0);
    assert_eq!(web(&p).releases[&4].as_str(), fresh, "4, not 2");

    // A digest once declared comes back under its own id.
    let old = digest(2).to_string();
    let run = p.run(&["release", "create", "web", &old, "--no-verify"]);
    run.expect_code(0);
    assert!(run.stderr().starts_with("added release 2 of web back"), "{}", run.stderr());
    assert_eq!(web(&p).releases.keys().copied().collect::<Vec<_>>(), [1, 2, 4]);

    // Activating an id that only state remembers says what to do.
    let run = p.run(&["release", "activate", "web", "3"]);
    run.expect_code(1);
    assert!(run.stderr().starts_with("error: release 3 of web was deleted from stages/development.toml\n"));
    assert!(run.stderr().contains("`ferry rollback web vN`"), "{}", run.stderr());
}

#[test]
fn hcl_edits_keep_comments_and_layout_and_ecs_digests_are_verified_in_ecr() {
    let p = TestProject::from_example("hcl");
    let rel = "stages/production.hcl";
    let d = digest(0xa).to_string();
    // The ECS stage's digests are verified in ECR (the emulator, which has no such image).
    let mut cmd = p.ferry();
    crate::support::moto::Moto::shared().configure(&mut cmd);
    let run = Run(cmd.args(["release", "create", "web", &d, "--activate", "-s", "production"]).output().unwrap());
    run.expect_code(1);
    assert!(run.stderr().contains(&d), "the error names the digest: {}", run.stderr());
    assert!(run.stderr().contains("push the image to ECR first"), "{}", run.stderr());
    p.run(&["release", "create", "web", &d, "--activate", "-s", "production", "--no-verify"]).expect_code(0);
    insta::assert_snapshot!("hcl_create_activate_file", p.read(rel));
}

#[test]
fn commit_applies_the_edited_file_at_once() {
    let p = TestProject::from_fixture("python-web");
    let _agent = AgentGuard { layout: Layout::new(p.path()) };
    // The example's fixed port could be taken on a shared machine; the test takes a free one.
    let stage = p.read("stages/development.toml").replace("port = 18080", &format!("port = {}", free_port()));
    p.write("stages/development.toml", &stage);
    p.run(&["image", "push", "image-v2", "--repo", "web"]).expect_code(0);
    let run = p.run(&["release", "create", "web", V2, "--activate", "--commit"]);
    run.expect_code(0);
    assert!(web(&p).releases.contains_key(&2));
    let history = p.run(&["history", "web", "--json"]);
    history.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&history.stdout()).unwrap();
    let newest = &json["deployments"].as_array().expect("a list of deployments")[0];
    assert_eq!((newest["release"].as_u64(), newest["status"].as_str()), (Some(2), Some("succeeded")), "{json:#}");
}

/// The python-web fixture after release 2 shipped with other env and release 1 was deleted from the
/// file: v1 ran release 1 with GREETING=hello, v2 runs release 2 with GREETING=hi and
/// FEATURE_X, v3 (release 3) failed.
fn shipped_twice() -> TestProject {
    let p = TestProject::from_fixture("python-web");
    let mut v1 = file_config(&p);
    v1.env.insert("GREETING".into(), "hello".into());
    let text = p.read(STAGE);
    let mut edit = StageEdit::parse(Path::new(STAGE), &text).unwrap();
    edit.add_release("web", 2, &digest(2)).unwrap();
    edit.set_active("web", 2).unwrap();
    edit.remove_release("web", 1).unwrap();
    edit.set_env("web", "GREETING", Some("hi")).unwrap();
    edit.set_env("web", "FEATURE_X", Some("on")).unwrap();
    p.write(STAGE, &edit.to_string());
    let v2 = file_config(&p);
    record(
        &p,
        &[1, 2, 3],
        vec![
            Dep::ok(1, &v1, "Activate release 1", 3),
            Dep::ok(2, &v2, "Activate release 2", 2),
            Dep::ok(3, &v2, "Activate release 3", 1).with(DeploymentStatus::Failed, "health check failed"),
        ],
    );
    p
}

#[test]
fn rollback_restores_digest_and_env_of_the_last_good_deployment() {
    let p = shipped_twice();
    let run = ferry(&p, &["rollback", "web"]);
    run.expect_code(0);
    insta::assert_snapshot!("rollback_diff", run.stdout());
    assert!(run.stderr().starts_with("rolling web back to v1 (release 1, sha256:111111…)\n"), "{}", run.stderr());
    let app = web(&p);
    assert_eq!((app.active, app.active_digest()), (Some(1), Some(&digest(1))));
    assert_eq!(app.config.env.get("GREETING").map(String::as_str), Some("hello"));
    assert!(!app.config.env.contains_key("FEATURE_X"));

    // Rolling back again finds the file already declaring v1.
    let run = ferry(&p, &["rollback", "web", "v1"]);
    run.expect_code(0);
    assert!(run.stdout().is_empty());
    assert!(run.stderr().contains("already declares what v1"), "{}", run.stderr());
}

#[test]
fn rollback_refusals_say_why_and_what_to_do() {
    let p = shipped_twice();
    let before = p.read(STAGE);
    let cases = [
        (vec!["v3"], "error: cannot roll back web: v3 failed, so it never ran healthy and is no state to go back to (health check failed)\n  hint: pick a succeeded deployment from `ferry history web`, or run `ferry rollback web`, which picks what runs now (or the last good one before it)\n"),
        (vec!["v9"], "error: cannot roll back web: there is no deployment v9 (the latest is v3)\n  hint: `ferry history web` lists deployments\n"),
        (vec!["v2"], "error: cannot roll back web: v2 is what runs now\n  hint: nothing to roll back; `ferry history web` shows earlier deployments\n"),
    ];
    for (extra, stderr) in cases {
        let mut args = vec!["rollback", "web"];
        args.extend(extra);
        let run = ferry(&p, &args);
        run.expect_code(1);
        assert_eq!(run.stderr(), stderr);
    }
    assert_eq!(p.read(STAGE), before, "refusals change nothing");

    let fresh = TestProject::from_fixture("python-web");
    let run = ferry(&fresh, &["rollback", "web"]);
    run.expect_code(1);
    assert!(run.stderr().starts_with("error: cannot roll back web: no deployment has succeeded yet"));
    record(&fresh, &[1], vec![Dep::ok(1, &file_config(&fresh), "Activate release 1", 1)]);
    let run = ferry(&fresh, &["rollback", "web"]);
    run.expect_code(1);
    assert!(
        run.stderr().starts_with("error: cannot roll back web: only 1 deployment succeeded, and it is what runs now"),
        "{}",
        run.stderr()
    );
}
