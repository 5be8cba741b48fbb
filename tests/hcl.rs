//! HCL stage files: they load into the same model as TOML, and their problems are reported
//! located in the `.hcl` file, exactly as for TOML.

use std::path::Path;

use ferry::config::{self, source::Format, source::SourceFile, validate};

use crate::support::{repo_root, TestProject};

/// A one-stage project whose stage `production` is `stage_text` in HCL.
fn project_with_hcl(stage_text: &str) -> TestProject {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"shop\"\n");
    p.write("stages/production.hcl", stage_text);
    p
}

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/hcl").join(rel)).unwrap()
}

#[test]
fn hcl_example_and_its_toml_twin_load_to_the_same_model() {
    let root = repo_root().join("examples/hcl");
    let project = config::load_project(&root).expect("ferry.toml loads");
    let from_hcl = config::load_stage(&project, "production").expect("the HCL stage loads");
    assert_eq!(from_hcl.file, Path::new("stages/production.hcl"));

    let twin = Path::new("production.toml");
    let src = SourceFile::parse(twin, fixture("production.toml"), Format::Toml).unwrap();
    let mut from_toml = validate::check_stage(&src, "production").expect("the TOML twin loads");
    assert_eq!(from_toml.file, twin);
    from_toml.file = from_hcl.file.clone();

    assert_eq!(from_hcl, from_toml);
    // The comparison means something only if the example covers the model.
    assert_eq!(from_hcl.apps.len(), 3);
    let api = &from_hcl.apps["api"];
    assert_eq!(api.config.release_tasks.len(), 2);
    assert_eq!(api.config.secrets.len(), 2);
    assert_eq!(from_hcl.apps["web"].config.command[4], "${PORT}");
    assert!(matches!(from_hcl.runtime, config::Runtime::Ecs(_)));
}

#[test]
fn validate_passes_on_the_hcl_example() {
    let p = TestProject::from_example("hcl");
    let run = p.run(&["validate"]);
    run.expect_code(0);
    assert!(run.stderr().contains("1 stage (3 apps)"), "{}", run.stderr());
}

/// Run `ferry validate` on a broken stage and return what it printed.
fn validate_broken(name: &str) -> String {
    let p = project_with_hcl(&fixture(&format!("broken/{name}.hcl")));
    let run = p.run(&["validate"]);
    run.expect_code(1);
    assert_eq!(run.stdout(), "");
    run.stderr()
}

#[test]
fn hcl_syntax_error_is_located() {
    insta::assert_snapshot!("hcl_syntax_error", validate_broken("syntax"));
}

#[test]
fn hcl_unknown_block_is_located() {
    insta::assert_snapshot!("hcl_unknown_key", validate_broken("unknown_key"));
}

#[test]
fn hcl_bad_digest_and_more_are_all_reported() {
    insta::assert_snapshot!("hcl_bad_digest", validate_broken("bad_digest"));
}

#[test]
fn a_stage_written_both_as_toml_and_hcl_is_an_error() {
    let p = project_with_hcl("app \"web\" {\n  image = \"web\"\n}\n");
    p.write("stages/production.toml", "[apps.web]\nimage = \"web\"\n");
    let run = p.run(&["validate"]);
    run.expect_code(1);
    assert!(run.stderr().contains("stage `production` is written twice, as .toml and .hcl"), "{}", run.stderr());
}

#[test]
fn unknown_key_inside_an_object_is_located_in_the_hcl_file() {
    let p = project_with_hcl(
        "app \"web\" {\n  image = \"web\"\n  deploy {\n    max_surge = \"50%\"\n    timout = \"5m\"\n  }\n}\n",
    );
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("unknown key `timout`"), "{err}");
    assert!(err.contains("--> stages/production.hcl:5:5"), "{err}");
    assert!(err.contains("did you mean `timeout`?"), "{err}");
}
