//! Integration tests: `ferry image push` through the real binary, into a real distribution
//! registry (the tests' shared `docker-registry`).

use std::os::unix::fs::symlink;

use crate::support::{registry, TestProject};

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
    let stderr = run.stderr();
    assert!(stderr.starts_with(&format!("pushed shop/web@{digest} (2 files, ")), "{stderr}");
    assert!(stderr.ends_with(" bytes)\ntagged shop/web:v1\n"), "{stderr}");
    // The registry holds the manifest under its digest and the tag, and the digest is the
    // manifest's own (what `docker inspect` shows).
    let ns = &p.registry_namespace;
    let (status, manifest) = registry::get(&format!("{ns}/shop/web/manifests/{digest}"));
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(ferry::registry::image::sha256(manifest.as_bytes()).to_string(), digest);
    let (status, tags) = registry::get(&format!("{ns}/shop/web/tags/list"));
    assert_eq!((status, tags.contains("\"v1\"")), (200, true), "{tags}");

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

#[test]
fn push_makes_a_runnable_config_and_imports_an_image_archive() {
    let p = project();
    let run = p.run(&[
        "image",
        "push",
        "site",
        "--repo",
        "web",
        "--cmd",
        r#"["/bin/httpd", "-f"]"#,
        "--env",
        "MODE=prod",
        "--workdir",
        "/srv",
    ]);
    run.expect_code(0);
    let digest = run.stdout().trim().to_string();
    let ns = &p.registry_namespace;
    let (_, manifest) = registry::get(&format!("{ns}/web/manifests/{digest}"));
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let (status, config) = registry::get(&format!("{ns}/web/blobs/{config_digest}"));
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/httpd", "-f"]));
    assert_eq!(config["config"]["Env"], serde_json::json!(["MODE=prod"]));
    assert_eq!(config["config"]["WorkingDir"], "/srv");

    // A bad --env names itself.
    let run = p.run(&["image", "push", "site", "--repo", "web", "--env", "NOPE"]);
    run.expect_code(1);
    assert!(run.stderr().starts_with("error: --env `NOPE` is not KEY=VALUE\n"), "{}", run.stderr());
}

#[test]
fn an_unreachable_registry_is_one_clear_error() {
    let p = project();
    let port = crate::support::agent::free_port();
    let run = p
        .ferry()
        .env("FERRY_REGISTRY_URL", format!("127.0.0.1:{port}"))
        .args(["image", "push", "site", "--repo", "web"])
        .output()
        .unwrap();
    let run = crate::support::Run(run);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(stderr.starts_with(&format!("error: cannot reach the image registry at 127.0.0.1:{port}: ")), "{stderr}");
    assert!(stderr.contains("hint: start the registry, or check `[registry] url`"), "{stderr}");
    assert!(run.stdout().is_empty());
}

/// Without `[registry] url`, ferry starts the distribution registry itself, reuses it, and
/// `ferry image registry --stop` stops it.
#[test]
fn the_project_registry_starts_on_demand_and_stops() {
    let p = project();
    let ferry =
        |args: &[&str]| crate::support::Run(p.ferry().env_remove("FERRY_REGISTRY_URL").args(args).output().unwrap());
    let first = ferry(&["image", "push", "site", "--repo", "web", "--tag", "v1"]);
    first.expect_code(0);
    let served: serde_json::Value = serde_json::from_str(&p.read(".ferry/oci-registry/serve.json")).unwrap();
    let (pid, port) = (served["pid"].as_u64().unwrap(), served["port"].as_u64().unwrap());
    // Stopped however the test ends.
    struct Stop(u64);
    impl Drop for Stop {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _stop = Stop(pid);
    let url = ferry(&["image", "registry"]);
    assert_eq!(url.expect_code(0).stdout(), format!("127.0.0.1:{port}\n"));
    let again = ferry(&["image", "push", "site", "--repo", "web"]);
    assert!(again.expect_code(0).stderr().starts_with("unchanged "), "{}", again.stderr());
    assert_eq!(again.stdout(), first.stdout());
    assert!(p.path().join(".ferry/oci-registry/storage/docker/registry/v2/repositories/web").is_dir());
    let stop = ferry(&["image", "registry", "--stop"]);
    assert_eq!(stop.expect_code(0).stderr(), format!("stopped the registry on 127.0.0.1:{port} (pid {pid})\n"));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z")
    );
}

/// A digest of ferry's old archive store gets a migration message, not a bare "not found".
#[test]
fn a_digest_of_the_old_archive_store_says_how_to_move() {
    let p = crate::support::TestProject::from_fixture("python-web");
    let old = format!("sha256:{}", "ab".repeat(32));
    let old = old.as_str();
    p.write(&format!(".ferry/registry/blobs/sha256/{}", &old[7..]), "old archive");
    let run = p.run(&["release", "create", "web", old]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!(
            "image {old} is in ferry's old archive store (.ferry/registry/), which this version no longer reads"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("push the image folder again with `ferry image push DIR --repo NAME`"), "{stderr}");
}
