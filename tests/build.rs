//! Integration tests: `ferry release create APP --source …` builds with the real Docker
//! Engine and pushes to the tests' registry. No image can be pulled on the test machines,
//! so every image is built `FROM scratch` with a static busybox copied into the context;
//! each is labelled `ferry.test=1` and removed when the test ends, whatever happens.

use std::path::Path;
use std::process::Command;

use crate::support::{registry, Run, TestProject};

const STAGE: &str = "stages/development.toml";

/// Removes the engine's images of one test project (by its registry namespace) on drop,
/// and holds the lock that runs these tests one at a time: pruning the untagged images a
/// failed build leaves must not catch another test's build under way.
pub(crate) struct EngineImages(String, #[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

static ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl EngineImages {
    /// The guard of the project whose registry namespace is `namespace` (waits for the
    /// other building tests).
    pub(crate) fn of(namespace: &str) -> EngineImages {
        EngineImages(namespace.to_string(), ENGINE.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for EngineImages {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["image", "ls", "--filter", "label=ferry.test=1", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        if let Ok(out) = out {
            let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&self.0))
                .map(String::from)
                .collect();
            if !names.is_empty() {
                let _ = Command::new("docker").args(["image", "rm", "-f"]).args(&names).output();
            }
        }
        // Intermediate images of failed builds: untagged, labelled from the first step on.
        let _ = Command::new("docker").args(["image", "prune", "-f", "--filter", "label=ferry.test=1"]).output();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(ok.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&ok.stderr));
}

fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The python-web fixture with a source folder `src/` (a git checkout) that builds a
/// busybox image.
fn project(dockerfile: &str) -> (TestProject, EngineImages) {
    let p = TestProject::from_fixture("python-web");
    let guard = EngineImages::of(&p.registry_namespace);
    p.write("src/Dockerfile", dockerfile);
    p.write("src/index.html", "<h1>built</h1>\n");
    std::fs::copy("/bin/busybox", p.path().join("src/busybox")).expect("busybox-static must be installed");
    let src = p.path().join("src");
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "first"]);
    (p, guard)
}

const GOOD: &str = "FROM scratch\nLABEL ferry.test=1\nARG FERRY_GIT_SHA\nCOPY busybox /bin/busybox\n\
                    COPY index.html /srv/index.html\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $FERRY_GIT_SHA > /srv/sha\"]\n\
                    CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-h\", \"/srv\"]\n";

fn manifest_and_config(p: &TestProject, reference: &str) -> (String, serde_json::Value) {
    let ns = &p.registry_namespace;
    let (status, manifest) = registry::get(&format!("{ns}/web/manifests/{reference}"));
    assert_eq!(status, 200, "{manifest}");
    let parsed: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let (_, config) = registry::get(&format!("{ns}/web/blobs/{}", parsed["config"]["digest"].as_str().unwrap()));
    (manifest, serde_json::from_str(&config).unwrap())
}

#[test]
fn a_release_is_built_tagged_with_the_commit_pushed_and_recorded() {
    let (p, _images) = project(GOOD);
    let sha = git_out(&p.path().join("src"), &["rev-parse", "HEAD"]);
    let run = p.run(&["release", "create", "web", "--source", "src", "--activate"]);
    run.expect_code(0);
    let stderr = run.stderr();
    // Build output streams through, step by step.
    assert!(stderr.contains("Step 1/"), "{stderr}");
    assert!(stderr.contains(&format!(":{sha} (sha256:")), "{stderr}");

    // The tag is the commit; the digest recorded is the manifest the registry holds.
    let (manifest, config) = manifest_and_config(&p, &sha);
    let digest = ferry::registry::image::sha256(manifest.as_bytes()).to_string();
    let stage = p.read(STAGE);
    assert!(stage.contains(&format!("2 = \"{digest}\"")), "{stage}");
    assert!(stage.contains("active = 2"), "{stage}");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.revision"], sha.as_str());
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/busybox", "httpd", "-f", "-h", "/srv"]));

    // An uncommitted change: the tag says so.
    p.write("src/index.html", "<h1>changed</h1>\n");
    let run = p.run(&["release", "create", "web", "--source", "src"]);
    run.expect_code(0);
    let (_, config) = manifest_and_config(&p, &format!("{sha}-dirty"));
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.revision"], sha.as_str());
}

#[test]
fn a_failed_build_names_the_step_and_changes_nothing() {
    let (p, _images) =
        project("FROM scratch\nLABEL ferry.test=1\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"false\"]\n");
    let before = p.read(STAGE);
    let run = p.run(&["release", "create", "web", "--source", "src", "--activate"]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("error: the build failed at Step 4/5 : RUN [\"/bin/busybox\", \"false\"]"), "{stderr}");
    assert!(stderr.contains("returned a non-zero code: 1"), "{stderr}");
    assert_eq!(p.read(STAGE), before);
}

#[test]
fn bad_sources_are_one_clear_error_each() {
    let (p, _images) = project(GOOD);
    let before = p.read(STAGE);
    let expect = |run: Run, starts: &str| {
        run.expect_code(1);
        // Only a progress line ("building web from …") may come before the one error.
        let stderr = run.stderr();
        let error = stderr.find("error: ").unwrap_or_else(|| panic!("no error:\n{stderr}"));
        assert!(stderr[error..].starts_with(starts), "{stderr}");
        assert!(stderr[..error].lines().all(|l| l.starts_with("building ")), "{stderr}");
        assert!(run.stderr().contains("  hint: "), "{}", run.stderr());
    };
    expect(p.run(&["release", "create", "web", "--source", "nope"]), "error: source `nope` does not exist\n");
    expect(
        p.run(&["release", "create", "web", "--source", "src", "--dockerfile", "Missing.dockerfile"]),
        "error: the source has no Dockerfile `Missing.dockerfile` in its build context `.`\n",
    );
    let url = format!("file://{}", p.path().join("src").display());
    expect(
        p.run(&["release", "create", "web", "--source", &format!("{url}#no-such-ref")]),
        &format!("error: source `{url}#no-such-ref` names ref `no-such-ref`, which the repository does not have\n"),
    );
    // No engine: DOCKER_HOST pointing nowhere.
    let dead = p.path().join("no-docker.sock");
    let run = Run(p
        .ferry()
        .env("DOCKER_HOST", format!("unix://{}", dead.display()))
        .args(["release", "create", "web", "--source", "src"])
        .output()
        .unwrap());
    expect(run, "error: cannot reach the Docker Engine: ");
    assert_eq!(p.read(STAGE), before);
    assert!(
        !p.path().join(".ferry/build").exists()
            || std::fs::read_dir(p.path().join(".ferry/build")).unwrap().count() == 0
    );
}

#[test]
fn a_git_url_with_a_ref_is_cloned_and_built() {
    let (p, _images) = project(GOOD);
    let src = p.path().join("src");
    git(&src, &["tag", "v1"]);
    let sha = git_out(&src, &["rev-parse", "HEAD"]);
    let url = format!("file://{}", src.display());
    let run = p.run(&["release", "create", "web", "--source", &format!("{url}#v1")]);
    run.expect_code(0);
    let (_, config) = manifest_and_config(&p, &sha);
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.source"], url.as_str());
}

#[test]
fn the_apps_build_section_names_context_dockerfile_and_args() {
    let (p, _images) = project(GOOD);
    p.write(
        "src/svc/build.Dockerfile",
        "FROM scratch\nLABEL ferry.test=1\nARG GREETING\nARG EXTRA\nLABEL greeting=$GREETING extra=$EXTRA\nCOPY hello /hello\n",
    );
    p.write("src/svc/hello", "hi\n");
    let stage = p.read(STAGE);
    p.write(
        STAGE,
        &format!("{stage}\n[apps.web.build]\ncontext = \"svc\"\ndockerfile = \"build.Dockerfile\"\nargs = {{ GREETING = \"hello\", EXTRA = \"a\" }}\n"),
    );
    let run = p.run(&["release", "create", "web", "--source", "src", "--build-arg", "EXTRA=b"]);
    run.expect_code(0);
    let digest =
        run.stdout().lines().find_map(|l| l.strip_prefix("+2 = \"")).map(|d| d.trim_end_matches('"').to_string());
    let digest = digest.unwrap_or_else(|| panic!("no release 2 added:\n{}", run.stdout()));
    let (_, config) = manifest_and_config(&p, &digest);
    assert_eq!(config["config"]["Labels"]["greeting"], "hello");
    assert_eq!(config["config"]["Labels"]["extra"], "b", "--build-arg wins over the section");
}

#[test]
fn the_dockerignore_keeps_files_out_of_the_build_context() {
    // The build fails unless exactly what .dockerignore allows reached the engine.
    let (p, _images) = project(
        "FROM scratch\nLABEL ferry.test=1\nCOPY . /ctx\nRUN [\"/ctx/busybox\", \"sh\", \"-c\", \
         \"test ! -e /ctx/secret.txt && test ! -e /ctx/logs/drop.txt && test -e /ctx/logs/keep.txt && test ! -e /ctx/.git\"]\n",
    );
    p.write("src/.dockerignore", "# not for the image\n/secret.txt\nlogs\n!logs/keep.txt\n.git\n");
    p.write("src/secret.txt", "do not send\n");
    p.write("src/logs/drop.txt", "noise\n");
    p.write("src/logs/keep.txt", "kept\n");
    let run = p.run(&["release", "create", "web", "--source", "src"]);
    run.expect_code(0);

    // A pattern that is none: one error naming the file's line.
    p.write("src/.dockerignore", "logs\n[z-a]\n");
    let run = p.run(&["release", "create", "web", "--source", "src"]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("error: the build context's .dockerignore line 2: `[z-a]` is not a pattern"), "{stderr}");
}

/// A release built from sources records its commit, and the deployment that activates it
/// shows it in `ferry history` (text and JSON); uncommitted changes say `-dirty`. The
/// fixture's stage runs processes: its Python command serves the unpacked image's files.
#[test]
fn history_shows_the_commit_a_release_was_built_from() {
    let (p, _images) = project(GOOD);
    let _agent = crate::support::agent::AgentGuard { layout: ferry::runtime::local::Layout::new(p.path()) };
    let port = crate::support::agent::free_port();
    p.write(STAGE, &p.read(STAGE).replace("port = 18080", &format!("port = {port}")));
    let sha = git_out(&p.path().join("src"), &["rev-parse", "HEAD"]);

    p.run(&["release", "create", "web", "--source", "src", "--activate"]).expect_code(0);
    p.run(&["commit", "--yes"]).expect_code(0);
    let history = p.run(&["history", "web"]);
    history.expect_code(0);
    let newest = history.stdout().lines().next().unwrap_or_default().to_string();
    assert!(
        newest.starts_with("v1 ") && newest.contains(&format!("built from {}", &sha[..12])),
        "{}",
        history.stdout()
    );
    assert!(!newest.contains("-dirty"), "{newest}");
    let json: serde_json::Value = serde_json::from_str(&p.run(&["history", "web", "--json"]).stdout()).unwrap();
    let build = &json["deployments"][0]["build"];
    assert_eq!(build["commit"], sha.as_str(), "{json:#}");
    assert_eq!(build["tag"], sha.as_str(), "{json:#}");
    assert_eq!(build["dirty"], serde_json::Value::Null, "clean: left out");

    // Uncommitted changes: the next release says so.
    p.write("src/index.html", "<h1>changed</h1>\n");
    p.run(&["release", "create", "web", "--source", "src", "--activate"]).expect_code(0);
    p.run(&["commit", "--yes"]).expect_code(0);
    let history = p.run(&["history", "web"]);
    let newest = history.stdout().lines().next().unwrap_or_default().to_string();
    assert!(
        newest.starts_with("v2 ") && newest.contains(&format!("built from {}-dirty", &sha[..12])),
        "{}",
        history.stdout()
    );
    p.run(&["down"]).expect_code(0);
}
