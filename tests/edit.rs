//! Stage file edits on a real example: the edited file still loads, with exactly the change.

use std::path::Path;

use ferry::config;
use ferry::edit::StageEdit;

use crate::support::TestProject;

#[test]
fn an_edited_hcl_example_loads_with_the_new_release_active() {
    let p = TestProject::from_example("hcl");
    let project = config::load_project(p.path()).unwrap();
    let before = config::load_stage(&project, "production").unwrap();

    let rel = "stages/production.hcl";
    let mut edit = StageEdit::parse(Path::new(rel), &p.read(rel)).unwrap();
    let digest: config::Digest =
        "sha256:3333333333333333333333333333333333333333333333333333333333333333".parse().unwrap();
    edit.add_release("web", 4, &digest).unwrap();
    edit.set_active("web", 4).unwrap();
    let diff = edit.diff(false);
    assert!(diff.contains("+    4 = \"sha256:3333"), "{diff}");
    assert!(diff.contains("-  active       = 3"), "{diff}");
    p.write(rel, &edit.to_string());

    let after = config::load_stage(&project, "production").unwrap();
    let mut expected = before.clone();
    let web = expected.apps.get_mut("web").unwrap();
    web.releases.insert(4, digest);
    web.active = Some(4);
    assert_eq!(after, expected);
}
