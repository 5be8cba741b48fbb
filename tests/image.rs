//! Integration tests: `ferry image push` through the real binary.

use std::os::unix::fs::symlink;

use crate::support::TestProject;

fn project() -> TestProject {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"demo\"\n");
    p.write("site/index.html", "<h1>hi</h1>\n");
    p.write("site/css/app.css", "h1 { color: teal }\n");
    p
}

#[test]
fn push_prints_the_digest_on_stdout_and_tags() {
    let p = project();
    let run = p.run(&["image", "push", "site", "--repo", "shop/web", "--tag", "v1"]);
    run.expect_code(0);
    let digest = run.stdout().trim().to_string();
    assert!(digest.parse::<ferry::config::Digest>().is_ok(), "{digest}");
    assert_eq!(run.stderr(), format!("pushed shop/web@{digest} (2 files, 3584 bytes)\ntagged shop/web:v1\n"));
    let hex = digest.trim_start_matches("sha256:");
    assert!(p.path().join(".ferry/registry/blobs/sha256").join(hex).is_file());
    assert_eq!(p.read(".ferry/registry/repos/shop+web/tags/v1"), format!("{digest}\n"));

    // Same content again, from a fresh copy with new mtimes: same digest, nothing new stored.
    crate::support::copy_dir(&p.path().join("site"), &p.path().join("copy"));
    let again = p.run(&["image", "push", "copy", "--repo", "shop/web"]);
    again.expect_code(0);
    assert_eq!(again.stdout().trim(), digest);
    assert!(again.stderr().starts_with("unchanged "), "{}", again.stderr());
}

#[test]
fn push_refuses_a_symlink_out_of_the_folder() {
    let p = project();
    symlink("/etc/hostname", p.path().join("site/host")).unwrap();
    let run = p.run(&["image", "push", "site", "--repo", "web"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr(),
        "error: cannot store `host`: it is a symlink to the absolute path `/etc/hostname`, outside the image\n  \
         hint: images hold files, folders and symlinks that stay inside the image; remove or replace the entry\n"
    );
    assert!(run.stdout().is_empty());
}

#[test]
fn push_rejects_bad_names_and_missing_paths() {
    let p = project();
    let run = p.run(&["image", "push", "site", "--repo", "Web"]);
    run.expect_code(1);
    assert!(run.stderr().starts_with("error: `Web` is not a valid repository name\n  hint: "), "{}", run.stderr());
    let run = p.run(&["image", "push", "site", "--repo", "web", "--tag", "a/b"]);
    run.expect_code(1);
    assert!(run.stderr().starts_with("error: `a/b` is not a valid tag\n"), "{}", run.stderr());
    let run = p.run(&["image", "push", "nope", "--repo", "web"]);
    run.expect_code(1);
    assert!(run.stderr().starts_with("error: nope does not exist\n"), "{}", run.stderr());
}
