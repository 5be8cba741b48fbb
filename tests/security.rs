//! Security of what ferry keeps on this machine: everything under `.ferry/` is private to
//! its owner, a secret's value never shows up in ferry's output or files, and a stage file
//! cannot make the local runtime read outside the project. The real binary on a temp project
//! of a small Python app on 127.0.0.1; every test stops its agent through a guard.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry::runtime::local::Layout;

use crate::support::agent::{free_port, AgentGuard};
use crate::support::{Run, TestProject};

/// The app: writes the values of its two secrets into `$SEEN_DIR` (outside the project, so
/// the test can tell they arrived), then serves 200 on every path. It prints nothing of them.
const APP_PY: &str = r#"
import http.server, os
seen = os.environ["SEEN_DIR"]
for name in ["API_TOKEN", "DB_PASSWORD"]:
    with open(os.path.join(seen, name), "w") as f:
        f.write(os.environ[name])
port = int(os.environ["PORT"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, fmt, *args):
        pass
print("listening on", port, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// The variable of ferry's environment that the `env:` secret names.
const TOKEN_VAR: &str = "FERRY_SECURITY_TEST_TOKEN";

/// A project of one app with an `env:` and a `file:` secret, whose ferry runs under umask 0
/// (so anything created without an explicit private mode would be world-readable).
struct Project {
    _guard: AgentGuard,
    p: TestProject,
    /// The project root: `p`'s folder, or a folder deep inside it.
    root: PathBuf,
    /// Where the app writes the secret values it received.
    seen: tempfile::TempDir,
    env_secret: String,
    file_secret: String,
}

impl Project {
    fn new() -> Project {
        Project::in_folder("")
    }

    /// A project whose root is `sub` inside the temp folder (`""`: the folder itself).
    fn in_folder(sub: &str) -> Project {
        let p = TestProject::empty();
        let root = p.path().join(sub);
        let seen = tempfile::tempdir().unwrap();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let (env_secret, file_secret) = (format!("planted-env-{unique}"), format!("planted-file-{unique}"));
        let prefix = if sub.is_empty() { String::new() } else { format!("{sub}/") };
        p.write(&format!("{prefix}ferry.toml"), "[project]\nname = \"sec\"\n");
        p.write(&format!("{prefix}secrets/db-password"), &format!("{file_secret}\n"));
        p.write(&format!("{prefix}image/app.py"), APP_PY);
        let _guard = AgentGuard { layout: Layout::new(&root) };
        let project = Project { _guard, p, root, seen, env_secret, file_secret };
        let digest =
            project.run(&["image", "push", "image", "--repo", "web"]).expect_code(0).stdout().trim().to_string();
        let stage = project.stage(&digest, "file:secrets/db-password");
        std::fs::create_dir_all(project.root.join("stages")).unwrap();
        std::fs::write(project.root.join("stages/dev.toml"), stage).unwrap();
        project
    }

    /// The stage file, with `db_password` as the reference of DB_PASSWORD.
    fn stage(&self, digest: &str, db_password: &str) -> String {
        format!(
            "[apps.web]\nimage = \"web\"\nactive = 1\nscale = 1\ncommand = [\"python3\", \"app.py\"]\nport = {port}\n\n\
             [apps.web.releases]\n1 = \"{digest}\"\n\n[apps.web.env]\nSEEN_DIR = \"{seen}\"\n\n\
             [apps.web.secrets]\nAPI_TOKEN = \"env:{TOKEN_VAR}\"\nDB_PASSWORD = \"{db_password}\"\n\n\
             [apps.web.health]\npath = \"/\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nhealthy_threshold = 1\n\n\
             [apps.web.deploy]\ntimeout = \"30s\"\ndrain = \"200ms\"\nstop_timeout = \"2s\"\n",
            port = free_port(),
            seen = self.seen.path().display(),
        )
    }

    /// `ferry ARGS…` with the token in its environment, under umask 0. The project's own
    /// registry (started by ferry under `.ferry/oci-registry/`, stopped on drop) rather than
    /// the tests' shared one: its storage is under `.ferry/` too and must be private.
    fn ferry(&self, args: &[&str]) -> Command {
        let mut cmd = self.p.ferry();
        cmd.current_dir(&self.root).args(args).env(TOKEN_VAR, &self.env_secret).env_remove("FERRY_REGISTRY_URL");
        // SAFETY: umask is async-signal-safe; it only affects the child about to exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run(self.ferry(args).output().expect("run ferry"))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.ferry(&["image", "registry", "--stop"]).output();
    }
}

impl Project {
    /// [`Project::run`], killed after 60 s: a client that talks to a planted listener would
    /// wait for its answer forever, and the test must fail rather than hang.
    fn run_bounded(&self, args: &[&str]) -> Run {
        let mut child = self
            .ferry(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run ferry");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        Run(child.wait_with_output().unwrap())
    }

    fn dot_ferry(&self) -> PathBuf {
        self.root.join(".ferry")
    }
}

/// Every file, folder, socket and link under `dir`, depth first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

#[test]
fn everything_under_dot_ferry_is_private_to_its_owner() {
    let p = Project::new();
    p.run(&["commit", "--yes"]).expect_code(0);
    let digest = p.p.read("stages/dev.toml").split('"').find(|s| s.starts_with("sha256:")).unwrap().to_string();
    p.run(&["status", "set", "web", &digest, "ci/tests", "success"]).expect_code(0);
    p.run(&["logs", "web"]).expect_code(0);

    let root = p.dot_ferry();
    let mut seen_kinds = std::collections::BTreeSet::new();
    let mut open = Vec::new();
    for path in std::iter::once(root.clone()).chain(walk(&root)) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let rel = path.strip_prefix(p.p.path()).unwrap().display().to_string();
        let in_release = rel.starts_with(".ferry/releases/");
        let kind = meta.file_type();
        let ok = if kind.is_dir() {
            mode == 0o700
        } else if in_release && kind.is_file() {
            // An unpacked image keeps its executables executable, by the owner only.
            mode == 0o600 || mode == 0o700
        } else {
            (kind.is_file() || kind.is_socket()) && mode == 0o600
        };
        if !ok {
            open.push(format!("{mode:o} {rel}"));
        }
        let top = rel.split('/').nth(1).unwrap_or("").to_string();
        seen_kinds.insert(if kind.is_socket() { "socket".to_string() } else { top });
    }
    assert!(open.is_empty(), "not private to the owner (want folders 0700, files 0600):\n{}", open.join("\n"));
    // The walk covered what a push and a commit leave, so the assertion above means something.
    for expected in ["agent", "logs", "oci-registry", "releases", "state", "status", "socket"] {
        assert!(seen_kinds.contains(expected), "nothing of {expected} under .ferry: {seen_kinds:?}");
    }
    p.run(&["down"]).expect_code(0);
}

#[test]
fn a_planted_secret_never_appears_in_ferry_output_or_files() {
    let p = Project::new();
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut record = |what: &str, run: &Run| {
        outputs.push((format!("{what} (stdout)"), run.stdout()));
        outputs.push((format!("{what} (stderr)"), run.stderr()));
    };

    record("validate", p.run(&["validate"]).expect_code(0));
    record("plan", p.run(&["plan"]).expect_code(0));
    record("plan --json", p.run(&["plan", "--json"]).expect_code(0));
    record("plan --markdown", p.run(&["plan", "--markdown"]).expect_code(0));
    record("graph", p.run(&["graph"]).expect_code(0));
    record("plan -o", p.run(&["plan", "-o", "plan.json"]).expect_code(0));
    record("commit plan.json", p.run(&["commit", "plan.json"]).expect_code(0));

    // The task got both values: the test is about where else they go.
    for (name, value) in [("API_TOKEN", &p.env_secret), ("DB_PASSWORD", &p.file_secret)] {
        let got = std::fs::read_to_string(p.seen.path().join(name)).unwrap_or_default();
        assert_eq!(&got, value, "the task's {name}");
    }

    record("ps", p.run(&["ps"]).expect_code(0));
    record("ps --json", p.run(&["ps", "--json"]).expect_code(0));
    record("history", p.run(&["history", "web"]).expect_code(0));
    record("history --json", p.run(&["history", "web", "--json"]).expect_code(0));
    record("state show", p.run(&["state", "show"]).expect_code(0));
    record("state show --json", p.run(&["state", "show", "--json"]).expect_code(0));
    record("logs", p.run(&["logs", "web"]).expect_code(0));
    record("agent status", p.run(&["agent", "status"]).expect_code(0));
    record("releases", p.run(&["releases", "web"]).expect_code(0));
    // Errors: a one-off task that fails, and a secret written as a plain value.
    let failed = p.run(&["task", "run", "web", "--", "python3", "-c", "import sys; sys.exit(3)"]);
    record("task run (fails)", failed.expect_code(3));
    record("task list", p.run(&["task", "list", "web"]).expect_code(0));
    let stage = p.p.read("stages/dev.toml");
    let digest = stage.split('"').find(|s| s.starts_with("sha256:")).unwrap().to_string();
    p.p.write("stages/dev.toml", &p.stage(&digest, &p.file_secret));
    record("validate (plain value)", p.run(&["validate"]).expect_code(1));
    record("plan (plain value)", p.run(&["plan"]).expect_code(1));
    p.p.write("stages/dev.toml", &stage);
    record("down", p.run(&["down"]).expect_code(0));

    let mut files = vec![p.p.path().join("plan.json")];
    files.extend(walk(&p.dot_ferry()).into_iter().filter(|f| std::fs::symlink_metadata(f).unwrap().is_file()));
    let mut leaks = Vec::new();
    for secret in [&p.env_secret, &p.file_secret] {
        for (what, text) in &outputs {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{what}:\n{text}"));
            }
        }
        for file in &files {
            let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
            let rel = file.strip_prefix(p.p.path()).unwrap().display().to_string();
            // A task's log is its own output (the app's business); ferry's notes in it are ours.
            let text: String = if rel.starts_with(".ferry/logs/") {
                text.lines().filter(|l| l.split_once(' ').is_some_and(|(_, l)| l.starts_with("ferry: "))).collect()
            } else {
                text
            };
            if text.contains(secret.as_str()) {
                leaks.push(format!("file {rel}"));
            }
        }
    }
    assert!(leaks.is_empty(), "a secret's value leaked into:\n{}", leaks.join("\n"));
    // The check covered the state, the agent's log and a task log.
    for must in [".ferry/state/dev.json", ".ferry/agent/agent.log", ".ferry/logs/dev/web/"] {
        assert!(
            files.iter().any(|f| f.strip_prefix(p.p.path()).unwrap().to_string_lossy().starts_with(must)),
            "{must}"
        );
    }
}

#[test]
fn a_stage_file_cannot_point_the_local_runtime_outside_the_project() {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"sec\"\n");
    let digest = format!("sha256:{}", "a".repeat(64));
    p.write(
        "stages/dev.toml",
        &format!(
            "[apps.web]\nimage = \"web\"\nactive = 1\n\n[apps.web.releases]\n1 = \"{digest}\"\n\n[apps.web.secrets]\n\
             UP = \"file:../outside/key\"\nABS = \"file:/etc/passwd\"\nDEEP = \"file:secrets/../../key\"\n\
             OK = \"file:secrets/key\"\n"
        ),
    );
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    for (key, path, line) in
        [("ABS", "/etc/passwd", 10), ("DEEP", "secrets/../../key", 11), ("UP", "../outside/key", 9)]
    {
        let located = format!("stages/dev.toml:{line}:");
        assert!(err.contains(&format!("secret `{key}`: `{path}` is outside the project")), "{key}: {err}");
        assert!(err.contains(&located), "{key} at {located}: {err}");
    }
    assert!(err.contains("use a path relative to the project root, without `..`"), "{err}");
    assert!(err.contains("3 problems found"), "only the three escaping paths: {err}");

    // A stage's name becomes file names under .ferry/: one that could not be is refused.
    p.write("stages/dev.toml", "");
    p.write("stages/.hidden.toml", "");
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("stages/.hidden.toml") && err.contains("`.hidden` is not a valid stage name"), "{err}");
    assert!(err.contains("hint: rename the file"), "{err}");
}

/// A project deep enough that its agent's socket lives under the shared temp dir, in a folder
/// whose name anyone can compute.
fn deep_project() -> (Project, PathBuf) {
    let p = Project::in_folder(&"deep-".repeat(20));
    let dir = Layout::new(&p.root).temp_socket_dir().expect("the socket falls back to the temp dir");
    let _ = std::fs::remove_dir_all(&dir);
    (p, dir)
}

/// Whether this test runs as root (needed to plant a folder or a listener of another user).
fn must_be_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test plants files of another user (uid 65534): run it as root");
}

/// Removes a planted folder on drop, even when the test fails.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_planted_socket_folder_under_the_temp_dir_is_refused_before_any_request() {
    let (p, dir) = deep_project();
    let _cleanup = RemoveDir(dir.clone());
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.join("agent.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();

    let open = p.run_bounded(&["commit", "--yes"]);
    open.expect_code(1);
    let err = open.stderr();
    assert!(err.contains("refusing the agent's socket folder") && err.contains("0777"), "{err}");
    assert!(!err.contains(&p.env_secret), "{err}");
    let accepted = listener.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(accepted, Err(std::io::ErrorKind::WouldBlock), "the client connected to the planted socket");
    // The agent refuses it too, and leaves its mode alone.
    let agent = p.run_bounded(&["agent", "run"]);
    assert_ne!(agent.code(), 0, "the agent ran with a planted folder");
    assert!(agent.stderr().contains("refusing the agent's socket folder"), "{}", agent.stderr());
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o777);

    // Private, but another user's.
    must_be_root();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let theirs = p.run_bounded(&["commit", "--yes"]);
    theirs.expect_code(1);
    assert!(theirs.stderr().contains("it belongs to uid 65534, not to you (uid 0)"), "{}", theirs.stderr());
    assert_eq!(listener.accept().map(|_| ()).map_err(|e| e.kind()), Err(std::io::ErrorKind::WouldBlock));

    // Without a planted folder, ferry makes its own, 0700, and deploys.
    drop(listener);
    std::fs::remove_dir_all(&dir).unwrap();
    p.run_bounded(&["commit", "--yes"]).expect_code(0);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    p.run(&["down"]).expect_code(0);
}

/// Binds `PATH`, then becomes uid 65534 and listens (the kernel records the listener's
/// credentials at `listen`), prints `ready`, and prints what the first connection sent.
const OTHER_USER_LISTENER_PY: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
os.setgid(65534)
os.setuid(65534)
s.listen(8)
print("ready", flush=True)
s.settimeout(60)
conn, _ = s.accept()
conn.settimeout(20)
data = b""
while b"\n" not in data:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
print("received %d bytes: %r" % (len(data), data), flush=True)
"#;

/// Kills a child process on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_client_refuses_a_listener_of_another_user_and_sends_it_nothing() {
    must_be_root();
    let (p, dir) = deep_project();
    let _cleanup = RemoveDir(dir.clone());
    // The folder passes every check (ours, 0700); the process listening in it is not ours.
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = dir.join("agent.sock");
    let mut listener = KillOnDrop(
        Command::new("python3")
            .args(["-c", OTHER_USER_LISTENER_PY])
            .arg(&socket)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(listener.0.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let refused = p.run_bounded(&["commit", "--yes"]);
    refused.expect_code(1);
    let err = refused.stderr();
    assert!(err.contains("it runs as uid 65534, not as you (uid 0)"), "{err}");
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "received 0 bytes: b''", "the listener of another user got a request");
}

#[test]
fn the_agent_answers_no_other_user_even_through_an_opened_socket() {
    must_be_root();
    let p = Project::new();
    p.run(&["agent", "start"]).expect_code(0);
    // Open the way to the socket for everyone, as a careless chmod would.
    let socket = Layout::new(&p.root).socket();
    for dir in [p.root.clone(), p.dot_ferry(), socket.parent().unwrap().to_path_buf()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ask = r#"
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
data = b""
try:
    # The agent may have closed the connection already: then there is nothing to read.
    s.sendall(b'{"op":"status"}\n')
    s.settimeout(20)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except (BrokenPipeError, ConnectionResetError):
    pass
print("answer: %r" % data)
"#;
    let out = Command::new("python3").args(["-c", ask]).arg(&socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), "answer: b''", "{text}{}", String::from_utf8_lossy(&out.stderr));
    // The owner is still answered.
    p.run(&["agent", "status"]).expect_code(0);
    let log = std::fs::read_to_string(Layout::new(&p.root).agent_log()).unwrap();
    assert!(log.contains("it runs as uid 65534"), "{log}");
}

#[test]
fn an_edited_plan_file_is_refused_and_plan_files_are_private() {
    let p = Project::new();
    p.run(&["plan", "-o", "plan.json"]).expect_code(0);
    let path = p.root.join("plan.json");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "written under umask 0");
    let reviewed = std::fs::read_to_string(&path).unwrap();

    // The command changed by hand, the rest (hash included) left as it was.
    let edited = reviewed.replacen("\"app.py\"", "\"evil.py\"", 1);
    assert_ne!(edited, reviewed);
    std::fs::write(&path, &edited).unwrap();
    let refused = p.run(&["commit", "plan.json"]);
    refused.expect_code(1);
    assert!(refused.stderr().contains("does not match its sha256"), "{}", refused.stderr());

    // Sealed again by someone who knows the format: planning again tells.
    let mut resealed: ferry::plan::SavedPlan = serde_json::from_str(&edited).unwrap();
    resealed.seal();
    std::fs::write(&path, resealed.to_json()).unwrap();
    let refused = p.run(&["commit", "plan.json"]);
    refused.expect_code(1);
    assert!(refused.stderr().contains("holds other changes than ferry plans"), "{}", refused.stderr());
    assert!(!p.dot_ferry().join("state/dev.json").exists(), "nothing was applied");

    std::fs::write(&path, &reviewed).unwrap();
    p.run(&["commit", "plan.json"]).expect_code(0);
    p.run(&["down"]).expect_code(0);
}

#[test]
fn parallel_release_creates_each_get_their_own_id_and_none_is_lost() {
    let p = crate::commit::Project::new();
    p.p.write("stages/dev.toml", "[apps.web]\nimage = \"web\"\ncommand = [\"true\"]\n");
    let digests: Vec<String> = (1..=6).map(|i| format!("sha256:{}", i.to_string().repeat(64))).collect();
    let runs: Vec<_> =
        digests.iter().map(|d| p.spawn(&["release", "create", "web", d.as_str(), "--no-verify"])).collect();
    let mut ids = Vec::new();
    for run in runs {
        let (code, out, err) = run.wait(std::time::Duration::from_secs(60));
        assert_eq!(code, 0, "{out}\n{err}");
        let id: u64 = err
            .strip_prefix("added release ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no id in: {err}"));
        ids.push(id);
    }
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6], "each run its own id");
    let stage = p.p.read("stages/dev.toml");
    for d in &digests {
        assert!(stage.contains(d.as_str()), "{d} was lost:\n{stage}");
    }
    p.run(&["validate"]).expect_code(0);
}

#[test]
fn control_characters_in_values_are_escaped_in_human_output() {
    let p = Project::new();
    let stage = p.p.read("stages/dev.toml");
    // Clears the screen, moves the cursor home, returns the carriage and starts a fake line.
    let hostile = r#"BANNER = "\u001b[2J\u001b[H\rcommand: harmless\n+ fake line\u202e""#;
    p.p.write("stages/dev.toml", &stage.replace("[apps.web.env]\n", &format!("[apps.web.env]\n{hostile}\n")));
    let escaped = r"BANNER=\u{1b}[2J\u{1b}[H\rcommand: harmless\n+ fake line\u{202e}";
    for args in [&["plan"][..], &["plan", "--markdown"], &["commit"]] {
        let run = p.run(args);
        let out = run.stdout();
        assert!(out.contains(escaped), "{args:?}:\n{out}");
        assert!(!out.contains(['\x1b', '\r', '\u{202e}']), "{args:?}: a raw control character:\n{out:?}");
        assert!(!out.contains("\n+ fake line"), "{args:?}: a value made a line of its own:\n{out}");
    }
    // JSON keeps the value exactly (its own escapes are safe).
    let json: serde_json::Value = serde_json::from_str(&p.run(&["plan", "--json"]).stdout()).unwrap();
    assert!(json.to_string().contains(r"\u001b[2J\u001b[H\rcommand: harmless\n+ fake line"), "{json}");

    // Errors quoting what was typed.
    let run = p.run(&["plan", "-s", "dev\x1b[2Jx"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains(r"\u{1b}[2Jx") && !err.contains('\x1b'), "{err:?}");
}

#[test]
fn a_planted_secret_never_appears_in_the_dashboard_or_its_api() {
    let p = Project::new();
    p.run(&["commit", "--yes"]).expect_code(0);
    // The write token is a secret too: it must never come back either.
    let token = format!("planted-token-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = p.ferry(&[]);
    cmd.env("FERRY_UI_TOKEN", &token);
    let ui = crate::support::ui::UiServer::start(cmd);
    let digest = p.p.read("stages/dev.toml").split('"').find(|s| s.starts_with("sha256:")).unwrap().to_string();
    let mut answers = Vec::new();
    for path in [
        "/",
        "/stages/dev/apps/web",
        "/stages/dev/live",
        "/pipeline",
        "/plan",
        "/api/stages",
        "/api/stages/dev/apps/web",
        "/api/stages/dev/apps/web/history",
        "/api/pipeline",
        "/api/plan",
        "/api/stages/dev/apps/nope",
        "/nothing",
    ] {
        let (status, body) = ui.get(path);
        answers.push((format!("GET {path} ({status})"), body));
    }
    let report = format!(r#"{{"app":"web","digest":"{digest}","context":"ci/tests","state":"success"}}"#);
    for offered in [Some(token.as_str()), Some("wrong"), None] {
        let (status, body) = ui.post_json("/api/status", &report, offered);
        answers.push((format!("POST /api/status ({status})"), body));
    }
    let (_, app) = ui.get("/api/stages/dev/apps/web");
    assert!(app.contains("\"RUNNING\""), "the app runs, so its tasks and logs were shown: {app}");
    let mut leaks = Vec::new();
    for secret in [&p.env_secret, &p.file_secret, &token] {
        for (what, body) in &answers {
            if body.contains(secret.as_str()) {
                leaks.push(format!("{what}:\n{body}"));
            }
        }
    }
    assert!(leaks.is_empty(), "a secret's value leaked into:\n{}", leaks.join("\n"));
    p.run(&["down"]).expect_code(0);
}

// ---- Items 7 to 12 of issue #18 (hostile stage files, masking, counters, file writes,
// growth, early checks). ----

/// A python-web fixture project whose `web` marks `TOKEN` sensitive, with two deployments recorded
/// that ran different TOKEN values: `(project, old value, value in the file now)`.
fn project_with_sensitive_history() -> (TestProject, String, String) {
    use crate::history::{file_config, record, Dep};
    let p = TestProject::from_fixture("python-web");
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (old, new) = (format!("old-token-{unique}"), format!("new-token-{unique}"));
    let stage = p
        .read("stages/development.toml")
        .replace("port = 18080", "sensitive_env = [\"TOKEN\"]\nport = 18080")
        .replace("[apps.web.env]\n", &format!("[apps.web.env]\nTOKEN = \"{new}\"\n"));
    p.write("stages/development.toml", &stage);
    let now = file_config(&p);
    let mut then = now.clone();
    then.env.insert("TOKEN".into(), old.clone());
    // Release 2 (not the file's release 1, whose digest differs): the rollback re-declares it.
    record(&p, &[2], vec![Dep::ok(2, &then, "Activate release 2", 3), Dep::ok(2, &now, "Config change: ~TOKEN", 1)]);
    (p, old, new)
}

#[test]
fn sensitive_env_values_are_masked_in_history_and_rollback_diffs() {
    let (p, old, new) = project_with_sensitive_history();
    let history = crate::history::ferry(&p, &["history", "web", "--json"]);
    history.expect_code(0);
    let out = history.stdout();
    assert!(!out.contains(&old) && !out.contains(&new), "history --json shows a sensitive value:\n{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["deployments"][1]["config"]["env"]["TOKEN"], "(sensitive)");

    // Rolling back to v1 writes the old value into the file; the diff does not show either.
    let rollback = crate::history::ferry(&p, &["rollback", "web", "v1"]);
    rollback.expect_code(0);
    let (out, err) = (rollback.stdout(), rollback.stderr());
    assert!(p.read("stages/development.toml").contains(&old), "the rollback restores the old value");
    assert!(out.contains("(sensitive)"), "the diff shows the TOKEN line masked:\n{out}");
    for shown in [&out, &err] {
        assert!(!shown.contains(&old) && !shown.contains(&new), "the rollback shows a sensitive value:\n{shown}");
    }
}

/// A project of one stage file `stages/dev.<ext>` holding `text`.
fn project_with_stage(ext: &str, text: &str) -> TestProject {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"hostile\"\n");
    p.write(&format!("stages/dev.{ext}"), text);
    p
}

#[test]
fn hostile_nesting_is_a_located_error_in_validate_plan_and_fmt() {
    let minus = format!("app \"web\" {{\n  image  = \"web\"\n  active = {}1\n}}\n", "-".repeat(5_000));
    let nested =
        format!("app \"web\" {{\n  image   = \"web\"\n  command = {}1{}\n}}\n", "[".repeat(2_000), "]".repeat(2_000));
    for (what, text) in [("5,000 `-`", minus), ("2,000 `[`", nested)] {
        let p = project_with_stage("hcl", &text);
        for args in [&["validate"][..], &["plan"], &["fmt", "--check"], &["fmt"]] {
            let run = p.run(args);
            // Was exit 134: the parser overflowed the stack.
            assert_eq!(run.code(), 1, "{what}, ferry {args:?}: {}", run.stderr());
            assert!(run.stderr().contains("stages/dev.hcl:3:"), "{what}, ferry {args:?}: {}", run.stderr());
            assert!(run.stderr().contains("nested more than 128 levels"), "{what}, ferry {args:?}: {}", run.stderr());
        }
        assert_eq!(p.read("stages/dev.hcl"), text, "fmt left the file as it was");
    }
}

#[test]
fn numbers_are_exact_and_read_alike_in_toml_and_hcl() {
    let toml = |v: &str| format!("[apps.web]\nimage = \"web\"\nscale = {v}\n");
    let hcl = |v: &str| format!("app \"web\" {{\n  image = \"web\"\n  scale = {v}\n}}\n");
    // Each was accepted by the HCL reader: `1.0` as 1, `---1` as 1, the rest wrapped or rounded.
    for value in ["1.0", "---1", "--9223372036854775808", "18446744073709551617", "1e0"] {
        let (t, h) = (project_with_stage("toml", &toml(value)), project_with_stage("hcl", &hcl(value)));
        let (t, h) = (t.run(&["validate"]), h.run(&["validate"]));
        assert_eq!((t.code(), h.code()), (1, 1), "`scale = {value}`:\n{}\n{}", t.stderr(), h.stderr());
        assert!(h.stderr().contains("stages/dev.hcl:3:"), "`scale = {value}`: {}", h.stderr());
    }
    // What TOML accepts, HCL reads as the same value.
    for value in ["2", "0"] {
        let (t, h) = (project_with_stage("toml", &toml(value)), project_with_stage("hcl", &hcl(value)));
        t.run(&["validate"]).expect_code(0);
        h.run(&["validate"]).expect_code(0);
    }
}

#[test]
fn stage_file_writes_are_atomic_and_keep_mode_and_symlink() {
    use std::os::unix::fs::{symlink, MetadataExt};
    let p = TestProject::from_fixture("python-web");
    let stage = p.path().join("stages/development.toml");
    // The real file lives elsewhere and is private; the stage file links to it.
    let real = p.path().join("private-development.toml");
    std::fs::rename(&stage, &real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&real, &stage).unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));

    p.run(&["release", "create", "web", &digest, "--no-verify"]).expect_code(0);
    let check = |what: &str| {
        assert!(std::fs::symlink_metadata(&stage).unwrap().file_type().is_symlink(), "{what} replaced the symlink");
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600, "{what} changed the mode");
        assert!(std::fs::read_to_string(&real).unwrap().contains(&digest), "{what} did not edit the target");
    };
    check("release create");

    // `fmt` replaces the file by a rename (a new inode), never rewrites it in place, so a
    // kill mid-write leaves the old contents whole.
    std::fs::write(&real, std::fs::read_to_string(&real).unwrap().replace("scale = 2", "scale    =    2")).unwrap();
    let inode = std::fs::metadata(&real).unwrap().ino();
    p.run(&["fmt"]).expect_code(0);
    assert!(std::fs::read_to_string(&real).unwrap().contains("scale = 2"), "fmt formatted the target");
    assert_ne!(std::fs::metadata(&real).unwrap().ino(), inode, "fmt wrote the file in place");
    check("fmt");
    let leftovers: Vec<_> = std::fs::read_dir(p.path())
        .unwrap()
        .chain(std::fs::read_dir(p.path().join("stages")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.ends_with(".ferry-edit"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// Edit the recorded state of the python-web fixture's `development` stage as JSON.
fn edit_state(p: &TestProject, change: impl FnOnce(&mut serde_json::Value)) {
    let path = p.path().join(".ferry/state/development.json");
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    change(&mut state);
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
}

#[test]
fn exhausted_counters_refuse_the_commit_before_the_runtime_is_touched() {
    use crate::history::{file_config, record, Dep};
    type StateChange = fn(&mut serde_json::Value);
    let cases: [(&str, StateChange); 2] = [
        ("serial", |s| s["serial"] = serde_json::json!(u64::MAX - 1)),
        ("deployment v", |s| {
            s["apps"]["web"]["history"][0]["number"] = serde_json::json!(u64::MAX);
            s["apps"]["web"]["active"]["deployment"] = serde_json::json!(u64::MAX);
        }),
    ];
    for (what, change) in cases {
        let p = TestProject::from_fixture("python-web");
        let _guard = AgentGuard { layout: Layout::new(p.path()) };
        record(&p, &[2], vec![Dep::ok(2, &file_config(&p), "Activate release 2", 1)]);
        edit_state(&p, change);
        // The file says release 1, state says release 2 runs: the commit has work to do.
        let run = p.run(&["commit", "--yes"]);
        assert_eq!(run.code(), 1, "{what}: {}", run.stderr());
        assert!(run.stderr().contains(what) && run.stderr().contains("cannot commit"), "{what}: {}", run.stderr());
        assert!(!p.path().join(".ferry/agent").exists(), "{what}: the commit reached the local runtime");
        assert!(!p.path().join(".ferry/releases").exists(), "{what}: the commit unpacked a release");
    }
}

#[test]
fn what_would_fail_at_commit_fails_at_validate_with_a_location() {
    let cases: [(&str, String, &str, &str); 4] = [
        ("image path", "[apps.web]\nimage = \"../../etc\"\n".into(), "stages/dev.toml:2:", "not a repository name"),
        (
            "NUL",
            "[apps.web]\nimage = \"web\"\n\n[apps.web.env]\nA = \"x\\u0000y\"\n".into(),
            "stages/dev.toml:5:",
            "NUL",
        ),
        (
            "128 KiB",
            format!("[apps.web]\nimage = \"web\"\n\n[apps.web.env]\nBIG = \"{}\"\n", "x".repeat(128 * 1024)),
            "stages/dev.toml:5:",
            "128 KiB",
        ),
        ("not UTF-8", "[apps.web]\nimage = \"caf\u{e9}\"\n".into(), "stages/dev.toml:2:", "not UTF-8"),
    ];
    for (what, text, at, message) in cases {
        let p = project_with_stage("toml", &text);
        if what == "not UTF-8" {
            // Saved as Latin-1: é is the one byte 0xe9.
            let latin1: Vec<u8> = text.chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect();
            std::fs::write(p.path().join("stages/dev.toml"), latin1).unwrap();
        }
        // `fmt` reads the file too: it gets the same location and hint.
        let commands: &[&[&str]] =
            if what == "not UTF-8" { &[&["validate"], &["fmt", "--check"]] } else { &[&["validate"]] };
        for args in commands {
            let run = p.run(args);
            let err = run.stderr();
            assert_eq!(run.code(), 1, "{what}, ferry {args:?}: {err}");
            assert!(err.contains(at) && err.contains(message), "{what}, ferry {args:?}: {err}");
            assert!(!err.contains("ferry init"), "{what}: a wrong hint: {err}");
        }
    }
}

#[test]
fn a_port_used_by_two_local_stages_fails_validate() {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"ports\"\n");
    p.write("stages/alpha.toml", "[apps.web]\nimage = \"web\"\nport = 18123\n");
    p.write("stages/beta.toml", "[apps.api]\nimage = \"api\"\nport = 18123\n");
    let run = p.run(&["validate"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.stderr().contains("stages/beta.toml:3:"), "{}", run.stderr());
    assert!(run.stderr().contains("app `web` in local stage `alpha`"), "{}", run.stderr());
    // Checking one stage compares it with the others too.
    let run = p.run(&["validate", "-s", "alpha"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.stderr().contains("stages/alpha.toml:3:"), "{}", run.stderr());
    // An ECS stage's port is not on this machine.
    p.write(
        "stages/beta.toml",
        "[runtime]\nkind = \"ecs\"\nregion = \"eu-west-1\"\ncluster = \"c\"\nsubnets = [\"subnet-1\"]\n\n\
         [apps.api]\nimage = \"api\"\nport = 18123\n",
    );
    let run = p.run(&["validate"]);
    assert!(!run.stderr().contains("also the port"), "{}", run.stderr());
}

#[test]
fn a_task_killed_by_a_signal_reports_128_plus_the_signal() {
    let p = Project::new();
    p.run(&["commit", "--yes"]).expect_code(0);
    let killed = p.run(&[
        "task",
        "run",
        "web",
        "--",
        "python3",
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
    ]);
    // Was 1, as for any failure.
    assert_eq!(killed.code(), 128 + 15, "{}", killed.stderr());
    assert!(killed.stderr().contains("exited with code 143"), "{}", killed.stderr());
    p.run(&["down"]).expect_code(0);
}

#[test]
fn state_keeps_the_newest_deployments_and_history_still_lists_all() {
    let p = Project::new();
    p.p.write("ferry.toml", "[project]\nname = \"sec\"\n\n[state]\nkeep_deployments = 2\n");
    let stage = p.p.read("stages/dev.toml");
    for scale in [1, 2, 1] {
        p.p.write("stages/dev.toml", &stage.replace("scale = 1", &format!("scale = {scale}")));
        p.run(&["commit", "--yes"]).expect_code(0);
    }
    let state: serde_json::Value =
        serde_json::from_str(&p.p.read(".ferry/state/dev.json")).expect("the state file is JSON");
    let kept: Vec<u64> =
        state["apps"]["web"]["history"].as_array().unwrap().iter().map(|d| d["number"].as_u64().unwrap()).collect();
    // Was every deployment ever made, rewritten by every commit.
    assert_eq!(kept, [2, 3]);
    let archive = p.p.read(".ferry/state/dev.history.jsonl");
    assert_eq!(archive.lines().count(), 1, "{archive}");
    let history: serde_json::Value = serde_json::from_str(&p.run(&["history", "web", "--json"]).stdout()).unwrap();
    let listed: Vec<u64> =
        history["deployments"].as_array().unwrap().iter().map(|d| d["number"].as_u64().unwrap()).collect();
    assert_eq!(listed, [3, 2, 1]);
    p.run(&["down"]).expect_code(0);

    // A temp file a killed writer left beside the state goes with the next write.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let leftover = p.dot_ferry().join(format!("state/.dev.json.tmp-{dead}-x1y2z3"));
    std::fs::write(&leftover, "{").unwrap();
    p.p.write("ferry.toml", "[project]\nname = \"sec\"\n");
    p.run(&["commit", "--yes"]).expect_code(0);
    assert!(!leftover.exists(), "the leftover temp file is still there");
    p.run(&["down"]).expect_code(0);
}
