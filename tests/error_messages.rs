//! Integration tests: the exact messages `ferry validate` prints for broken projects.
//!
//! Each folder of `tests/fixtures/broken/` is a small project with one class of problem
//! (`many-problems` has several). The real binary runs on a copy of it; its stderr is
//! compared with the snapshot in `tests/snapshots/error_messages/`. Every message must name
//! `file:line:col`, show the line with a caret under the offending text, and give a hint.
//! After a deliberate change: `INSTA_UPDATE=always cargo test error_messages`, then read the
//! new `.snap` files before committing them.

use crate::support::{copy_dir, repo_root, TestProject};

/// Run `ferry validate` on a copy of `tests/fixtures/broken/NAME`, check the general shape
/// of what it prints, and return stderr.
fn validate(name: &str) -> String {
    let project = TestProject::empty();
    copy_dir(&repo_root().join("tests/fixtures/broken").join(name), project.path());
    let run = project.run(&["validate"]);
    run.expect_code(1);
    assert_eq!(run.stdout(), "", "errors go to stderr only");
    let stderr = run.stderr();
    let errors = stderr.matches("error: ").count();
    assert!(errors > 0, "{name}: no error printed:\n{stderr}");
    // Each problem is located, drawn with a caret and explained.
    assert_eq!(stderr.matches("--> ").count(), errors, "{name}: an error without a location:\n{stderr}");
    assert_eq!(stderr.matches("= hint: ").count(), errors, "{name}: an error without a hint:\n{stderr}");
    assert!(stderr.lines().filter(|l| l.trim_start().starts_with('|') && l.contains('^')).count() >= errors);
    let footer = if errors == 1 { "1 problem found\n".to_string() } else { format!("{errors} problems found\n") };
    assert!(stderr.ends_with(&footer), "{name}: missing `{footer}`:\n{stderr}");
    stderr
}

macro_rules! error_message_tests {
    ($($test:ident => $fixture:literal,)*) => {
        /// Every fixture folder has a test below, so none is silently left out.
        const FIXTURES: &[&str] = &[$($fixture),*];

        $(
            #[test]
            fn $test() {
                let stderr = validate($fixture);
                insta::with_settings!({
                    snapshot_path => "snapshots/error_messages",
                    prepend_module_to_snapshot => false,
                    description => concat!("ferry validate in tests/fixtures/broken/", $fixture),
                    omit_expression => true,
                }, {
                    insta::assert_snapshot!($fixture, stderr);
                });
            }
        )*
    };
}

error_message_tests! {
    bad_digest => "bad-digest",
    duplicate_release_id => "duplicate-release-id",
    non_positive_release_id => "non-positive-release-id",
    active_not_declared => "active-not-declared",
    bad_app_name => "bad-app-name",
    app_name_too_long => "app-name-too-long",
    port_out_of_range => "port-out-of-range",
    port_clash_on_the_local_runtime => "port-clash",
    depends_on_missing_app => "depends-on-missing",
    depends_on_cycle => "depends-on-cycle",
    secret_given_as_plain_value => "secret-plain-value",
    threshold_zero => "threshold-zero",
    ecs_runtime_missing_region_and_cluster => "ecs-missing-region-cluster",
    ecs_autoscaled_scale_out_of_range => "ecs-scale-range",
    pipeline_names_unknown_stage => "pipeline-unknown-stage",
    stage_in_two_pipeline_steps => "stage-in-two-steps",
    toml_syntax_error => "toml-syntax-error",
    unknown_key_with_did_you_mean => "unknown-key",
    many_problems_all_reported_in_file_order => "many-problems",
    project_and_stage_problems_reported_together => "project-and-stage",
}

#[test]
fn every_fixture_has_a_snapshot_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join("tests/fixtures/broken"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
    tested.sort();
    assert_eq!(on_disk, tested, "add a line to error_message_tests! for each fixture folder");
}

/// A secret's value must never be printed, not even in the quoted source line: validate
/// output ends up in CI logs.
#[test]
fn plain_secret_values_are_never_printed() {
    for (fixture, value) in [("secret-plain-value", "sk_live_51HxQ2EXAMPLE"), ("many-problems", "hunter2")] {
        let stderr = validate(fixture);
        assert!(!stderr.contains(value), "{fixture}: the secret is printed:\n{stderr}");
    }
}

/// Snapshot `stderr` as `name` beside the validate snapshots.
fn assert_error_snapshot(name: &str, description: &str, stderr: &str) {
    insta::with_settings!({
        snapshot_path => "snapshots/error_messages",
        prepend_module_to_snapshot => false,
        description => description,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, stderr);
    });
}

/// Problems found after a stage file loaded — by the planner, by an edit — name
/// `file:line:col` too: a release id bound to another digest than the one recorded.
#[test]
fn a_rebound_release_id_is_located_in_the_stage_file() {
    use crate::history::{ferry, file_config, record, Dep};
    let p = TestProject::from_fixture("python-web");
    // State recorded release 1 with another digest than the file's.
    record(&p, &[1], vec![]);
    for command in ["plan", "graph"] {
        let run = ferry(&p, &[command]);
        run.expect_code(1);
        assert_eq!(run.stdout(), "");
        assert_error_snapshot(
            "rebound-release-id",
            "ferry plan (and graph) with release 1 recorded under another digest",
            &run.stderr(),
        );
    }

    let config = file_config(&p);
    std::fs::remove_dir_all(p.path().join(".ferry/state")).unwrap();
    record(
        &p,
        &[1],
        vec![Dep::ok(1, &config, "Activate release 1", 2), Dep { scale: 4, ..Dep::ok(1, &config, "Scale", 1) }],
    );
    let run = ferry(&p, &["rollback", "web", "v1"]);
    run.expect_code(1);
    assert_error_snapshot(
        "rollback-rebound-release-id",
        "ferry rollback to a deployment whose release id the file binds to another digest",
        &run.stderr(),
    );
}

/// `image push` says what it reads when given something else.
#[test]
fn image_push_of_a_zip_or_a_url_says_what_it_reads() {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"p\"\n");
    p.write("site.zip", "PK\u{3}\u{4} rest of a zip archive");
    let run = p.run(&["image", "push", "site.zip", "--repo", "web"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr(),
        "error: site.zip is a zip archive; ferry image push reads a folder or a tarball (.tar, .tar.gz, .tgz)\n  \
         hint: unzip it into a folder (`unzip FILE -d DIR`), then push the result\n"
    );
    let run = p.run(&["image", "push", "https://example.com/site.tar.gz", "--repo", "web"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr(),
        "error: `https://example.com/site.tar.gz` is a URL, and ferry image push does not fetch URLs\n  \
         hint: download it first (e.g. `curl -fLO URL`), then push the folder or .tar/.tar.gz/.tgz file\n"
    );
    assert!(!p.path().join(".ferry/registry").exists(), "nothing stored");
}
