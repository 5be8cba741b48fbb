//! A new user's first run: `ferry init && ferry plan && ferry commit --yes` (the example in
//! `ferry --help`) deploys something real, and `.ferry/` is kept out of git.

use std::time::Duration;

use ferry::runtime::local::Layout;

use crate::commit::{get, wait_until};
use crate::support::agent::AgentGuard;
use crate::support::TestProject;

/// The port `ferry init` gave the example app, read from the stage file it wrote.
fn app_port(p: &TestProject) -> u16 {
    let stage = p.read("stages/development.toml");
    let line = stage.lines().find(|l| l.starts_with("port = ")).unwrap_or_else(|| panic!("no port:\n{stage}"));
    line["port = ".len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn init_plan_commit_deploys_the_example_app() {
    let p = TestProject::empty();
    // Declared before any command runs: whatever fails below, the agent and its tasks stop.
    let _guard = AgentGuard { layout: Layout::new(p.path()) };
    let init = p.run(&["init", "--name", "first"]);
    init.expect_code(0);
    assert!(init.stderr().contains("ferry plan"), "says what to do next: {}", init.stderr());
    p.run(&["validate"]).expect_code(0);

    let plan = p.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(plan.stdout().contains("hello"), "the plan deploys the example app:\n{}", plan.stdout());

    p.run(&["commit", "--yes"]).expect_code(0);
    let port = app_port(&p);
    let mut body = Err(String::new());
    wait_until("the example app to answer", Duration::from_secs(30), || {
        body = get(port);
        body.is_ok()
    });
    assert!(body.unwrap().contains("hello from ferry"));
    p.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    p.run(&["down"]).expect_code(0);
}

#[test]
fn init_keeps_ferry_state_out_of_git() {
    let p = TestProject::empty();
    p.run(&["init"]).expect_code(0);
    assert_eq!(p.read(".gitignore").lines().filter(|l| *l == ".ferry/").count(), 1, "{}", p.read(".gitignore"));
    // The example image is in the project's registry (here the tests' shared one, under the
    // project's namespace), by the digest the stage file declares.
    let stage = p.read("stages/development.toml");
    let digest = stage.split('"').find(|s| s.starts_with("sha256:")).expect("a digest in the stage file");
    let (status, _) = crate::support::registry::get(&format!("{}/hello/manifests/{digest}", p.registry_namespace));
    assert_eq!(status, 200, "the example image {digest} is in the registry");

    // An existing .gitignore is appended to, once.
    let q = TestProject::empty();
    q.write(".gitignore", "target/");
    q.run(&["init", "--name", "q"]).expect_code(0);
    assert!(q.read(".gitignore").starts_with("target/\n"), "{}", q.read(".gitignore"));
    assert!(q.read(".gitignore").lines().any(|l| l == ".ferry/"), "{}", q.read(".gitignore"));
    let r = TestProject::empty();
    r.write(".gitignore", "/.ferry\n");
    r.run(&["init", "--name", "r"]).expect_code(0);
    assert_eq!(r.read(".gitignore"), "/.ferry\n", "already ignored: left alone");
}
