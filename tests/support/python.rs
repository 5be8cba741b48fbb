//! A Python virtual environment for tests that need an independent tool (the `jsonschema`
//! validator now, the `moto` AWS emulator later), created once under `target/py-venv`.
//!
//! Tests in this binary run in parallel and other test processes may share the `target/`
//! folder, so creation and every install run under an exclusive `flock` on
//! `target/py-venv.lock`. Installed requirements are remembered in the venv, so later calls
//! cost one file read. Anything that goes wrong panics with the command's output: a test
//! that needs Python must fail loudly, never skip.

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A ready virtual environment.
#[derive(Debug, Clone)]
pub struct PythonVenv {
    pub dir: PathBuf,
}

impl PythonVenv {
    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// A program installed in the venv (e.g. `moto_server`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// Run a Python script given as text, with arguments; returns its output.
    pub fn run_script(&self, script: &str, args: &[&str]) -> Output {
        Command::new(self.python())
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python().display()))
    }
}

/// The shared venv with `packages` (pip requirement strings) installed.
pub fn python_venv(packages: &[&str]) -> PythonVenv {
    let target = target_dir();
    fs::create_dir_all(&target).unwrap();
    let _lock = FileLock::acquire(&target.join("py-venv.lock"));
    let venv = PythonVenv { dir: target.join("py-venv") };
    if !venv.python().is_file() {
        // A half-made venv from an interrupted run: start again.
        let _ = fs::remove_dir_all(&venv.dir);
        let python = std::env::var("FERRY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&python).args(["-m", "venv"]).arg(&venv.dir),
            &format!("create a venv with `{python} -m venv` (on Debian: apt-get install python3-venv)"),
        );
    }
    let marker = venv.dir.join("ferry-installed.txt");
    let installed: Vec<String> = fs::read_to_string(&marker).unwrap_or_default().lines().map(str::to_string).collect();
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed.iter().any(|i| i == p)).collect();
    if !missing.is_empty() {
        run(
            Command::new(venv.python())
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(&missing),
            &format!("pip install {}", missing.join(" ")),
        );
        let mut all = installed;
        all.extend(missing.iter().map(|s| s.to_string()));
        fs::write(&marker, all.join("\n") + "\n").unwrap();
    }
    venv
}

/// `target/`: the test binary is `target/<profile>/deps/integration-…`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| crate::support::repo_root().join("target"))
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot {what}: {e}"));
    assert!(
        out.status.success(),
        "cannot {what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exclusive `flock`, released when dropped (or when the process dies).
struct FileLock(File);

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
        // SAFETY: flock on a file descriptor we own; it blocks until the lock is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}: {}", path.display(), std::io::Error::last_os_error());
        FileLock(file)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
