//! Integration tests: every project under `examples/` is valid, and the quick start's
//! release digests are what `ferry image push` prints for its image folders.

use std::path::PathBuf;

use crate::support::{repo_root, TestProject};

/// Every example project: a folder of `examples/` holding `ferry.toml`.
fn example_projects() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("ferry.toml").is_file())
        .map(|p: PathBuf| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_project_validates() {
    let names = example_projects();
    for required in ["quickstart", "ecs"] {
        assert!(names.iter().any(|n| n == required), "examples/{required} is missing; found {names:?}");
    }
    for name in names {
        let project = TestProject::from_example(&name);
        let run = project.run(&["validate"]);
        assert_eq!(run.code(), 0, "examples/{name} does not validate:\n{}", run.stderr());
        assert!(run.stderr().starts_with("valid: ferry.toml and "), "examples/{name}: {}", run.stderr());
    }
}

#[test]
fn the_ecs_example_has_the_pipeline_the_docs_describe() {
    let run = TestProject::from_example("ecs").run(&["validate"]);
    run.expect_code(0);
    assert_eq!(run.stderr(), "valid: ferry.toml and 4 stages (12 apps)\n");
}

/// Release 1 of the quick start is exactly the image folder as pushed: if someone edits
/// `examples/quickstart/image/` they must update the digest (the test prints the new one).
#[test]
fn quickstart_release_digests_match_its_image_folders() {
    let project = TestProject::from_example("quickstart");
    let stage: toml::Table = toml::from_str(&project.read("stages/development.toml")).unwrap();
    let declared = stage["apps"]["web"]["releases"]["1"].as_str().unwrap().to_string();

    let run = project.run(&["image", "push", "image", "--repo", "web"]);
    run.expect_code(0);
    let pushed = run.stdout().trim().to_string();
    assert_eq!(
        pushed, declared,
        "examples/quickstart/image/ changed: set release 1 in stages/development.toml to {pushed}"
    );

    // The second image, named in a comment for the demo's second release.
    let run = project.run(&["image", "push", "image-v2", "--repo", "web"]);
    run.expect_code(0);
    let v2 = run.stdout().trim().to_string();
    assert_ne!(v2, pushed);
    assert!(
        project.read("stages/development.toml").contains(&v2),
        "examples/quickstart/image-v2/ changed: update its digest in the comment of stages/development.toml to {v2}"
    );
}
