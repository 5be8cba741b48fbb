//! Integration tests: every project under `examples/` is valid; the quick start builds,
//! pushes and serves its Dockerfile app as `scripts/quickstart` does; the python-web
//! fixture's release digests are what `ferry image push` prints for its image folders.

use std::path::PathBuf;
use std::time::Duration;

use ferry::runtime::local::{docker, Layout};

use crate::build::EngineImages;
use crate::commit::{get, wait_until};
use crate::local_docker::{containers, Containers};
use crate::support::agent::{free_port, AgentGuard};
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

/// Release 1 of the python-web fixture is exactly the image folder as pushed: if someone
/// edits `tests/fixtures/python-web/image/` they must update the digest (the test prints
/// the new one).
#[test]
fn python_web_release_digests_match_its_image_folders() {
    let project = TestProject::from_fixture("python-web");
    let stage: toml::Table = toml::from_str(&project.read("stages/development.toml")).unwrap();
    let declared = stage["apps"]["web"]["releases"]["1"].as_str().unwrap().to_string();

    let run = project.run(&["image", "push", "image", "--repo", "web"]);
    run.expect_code(0);
    let pushed = run.stdout().trim().to_string();
    assert_eq!(
        pushed, declared,
        "tests/fixtures/python-web/image/ changed: set release 1 in stages/development.toml to {pushed}"
    );

    // The second image, named in a comment for the demo's second release.
    let run = project.run(&["image", "push", "image-v2", "--repo", "web"]);
    run.expect_code(0);
    let v2 = run.stdout().trim().to_string();
    assert_ne!(v2, pushed);
    assert!(
        project.read("stages/development.toml").contains(&v2),
        "tests/fixtures/python-web/image-v2/ changed: update its digest in the comment of stages/development.toml to {v2}"
    );
}

/// `scripts/quickstart`'s walk on a copy of the example (on a free port, its image and
/// containers labelled `ferry.test=1`): the Dockerfile app is built with the Docker Engine,
/// pushed, added as release 1, committed as two containers, and serves its page; the same
/// walk again adds nothing and changes nothing. Whatever happens, the agent stops and the
/// project's containers and images are removed.
#[test]
fn the_quickstart_builds_its_app_and_serves_it_from_containers() {
    let p = TestProject::from_example("quickstart");
    let _images = EngineImages::of(&p.registry_namespace);
    let _agent = AgentGuard { layout: Layout::new(p.path()) };
    let _containers = Containers(docker::project_label(p.path()));
    let port = free_port();
    let stage_file = "stages/development.toml";
    let stage = p.read(stage_file);
    assert!(stage.contains("port = 18080"), "{stage}");
    p.write(stage_file, &stage.replace("port = 18080", &format!("port = {port}")));
    p.write("app/Dockerfile", &format!("{}LABEL ferry.test=1\n", p.read("app/Dockerfile")));
    std::fs::copy("/usr/bin/busybox", p.path().join("app/busybox")).expect("busybox-static must be installed");

    let create = p.run(&["release", "create", "web", "--source", "app", "--activate"]);
    create.expect_code(0);
    assert!(create.stderr().contains("added release 1 of web"), "{}", create.stderr());
    let stage = p.read(stage_file);
    assert!(stage.contains("1 = \"sha256:") && stage.contains("active = 1"), "{stage}");
    p.run(&["validate"]).expect_code(0);
    p.run(&["plan", "--detailed-exitcode"]).expect_code(2);
    p.run(&["commit", "--yes"]).expect_code(0);
    let ps = p.run(&["ps"]);
    ps.expect_code(0);
    assert!(ps.stdout().contains("web"), "{}", ps.stdout());
    let mut body = Err(String::new());
    wait_until("the quick start's page", Duration::from_secs(30), || {
        body = get(port);
        body.is_ok()
    });
    assert!(body.unwrap().contains("Hello from ferry"));
    let running = containers(&docker::project_label(p.path()), false);
    assert_eq!(running.len(), 2, "scale = 2: {running:?}");

    // Again, unchanged: the build is a cache hit with the same digest, already release 1.
    let again = p.run(&["release", "create", "web", "--source", "app", "--activate"]);
    again.expect_code(0);
    assert!(again.stderr().contains("release 1 of web already is sha256:"), "{}", again.stderr());
    assert_eq!(p.read(stage_file), stage);
    p.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    p.run(&["commit", "--yes"]).expect_code(0);
    assert!(get(port).unwrap().contains("Hello from ferry"));

    p.run(&["down"]).expect_code(0);
    assert!(containers(&docker::project_label(p.path()), false).is_empty());
}
