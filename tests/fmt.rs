//! `ferry fmt`: canonical order and layout, comments kept, idempotent, never changing what a
//! file means; `--check` prints a diff and exits 1; broken files are reported and untouched.

use ferry::config;

use crate::support::{repo_root, TestProject};

fn messy_project(ext: &str) -> TestProject {
    let p = TestProject::empty();
    p.write("ferry.toml", "[state]\nbackend = \"local\"\n\n[project]\nname = \"shop\"\n");
    let text = std::fs::read_to_string(repo_root().join(format!("tests/fixtures/fmt/messy.{ext}"))).unwrap();
    p.write(&format!("stages/development.{ext}"), &text);
    p
}

fn load(p: &TestProject) -> config::Stage {
    let project = config::load_project(p.path()).unwrap();
    config::load_stage(&project, "development").unwrap()
}

fn formats_and_keeps_the_model(ext: &str) {
    let p = messy_project(ext);
    let before = load(&p);
    let stage_file = format!("stages/development.{ext}");

    let check = p.run(&["fmt", "--check"]);
    check.expect_code(1);
    assert!(check.stdout().contains(&format!("--- a/{stage_file}")), "{}", check.stdout());
    assert!(check.stdout().contains("--- a/ferry.toml"), "{}", check.stdout());
    assert!(check.stderr().contains("2 files are not formatted"), "{}", check.stderr());

    let run = p.run(&["fmt"]);
    run.expect_code(0);
    assert_eq!(run.stdout(), format!("formatted ferry.toml\nformatted {stage_file}\n"));
    let formatted = p.read(&stage_file);
    insta::assert_snapshot!(format!("fmt_{ext}"), formatted);
    assert_eq!(p.read("ferry.toml"), "[project]\nname = \"shop\"\n\n[state]\nbackend = \"local\"\n");

    assert_eq!(load(&p), before, "fmt must not change the model");
    p.run(&["fmt", "--check"]).expect_code(0);
    let again = p.run(&["fmt"]);
    again.expect_code(0);
    assert_eq!(again.stdout(), "", "a formatted file is left alone");
    assert_eq!(p.read(&stage_file), formatted);
}

#[test]
fn fmt_toml() {
    formats_and_keeps_the_model("toml");
}

#[test]
fn fmt_hcl() {
    formats_and_keeps_the_model("hcl");
}

#[test]
fn the_hcl_example_is_formatted() {
    let p = TestProject::from_example("hcl");
    p.run(&["fmt", "--check"]).expect_code(0);
}

#[test]
fn a_broken_file_is_reported_and_left_untouched() {
    let p = messy_project("hcl");
    let broken = "app \"web\" {\n  image = \n}\n";
    p.write("stages/broken.hcl", broken);
    let run = p.run(&["fmt", "-s", "broken"]);
    run.expect_code(1);
    assert!(run.stderr().contains("--> stages/broken.hcl:2:11"), "{}", run.stderr());
    assert_eq!(p.read("stages/broken.hcl"), broken);
    // `-s` formats only that stage: the messy one is untouched.
    assert!(p.read("stages/development.hcl").contains("    port = 8080 # the port"));
}
