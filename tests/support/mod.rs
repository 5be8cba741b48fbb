//! Shared test harness: run the real `ferry` binary in a temporary project.

#![allow(dead_code)]

pub mod moto;
pub mod python;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built `ferry` binary.
pub fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// The repository root (for `examples/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary project directory, removed on drop.
pub struct TestProject {
    pub dir: tempfile::TempDir,
    /// The project's namespace in the tests' shared registry: every command run through
    /// [`TestProject::ferry`] gets `FERRY_REGISTRY_URL=127.0.0.1:PORT/NAMESPACE`.
    pub registry_namespace: String,
}

impl TestProject {
    /// An empty directory.
    pub fn empty() -> Self {
        TestProject { dir: tempfile::tempdir().expect("tempdir"), registry_namespace: registry::namespace() }
    }

    /// A copy of `examples/NAME`.
    pub fn from_example(name: &str) -> Self {
        let p = Self::empty();
        copy_dir(&repo_root().join("examples").join(name), p.path());
        p
    }

    /// A copy of `tests/fixtures/NAME`.
    pub fn from_fixture(name: &str) -> Self {
        let p = Self::empty();
        copy_dir(&repo_root().join("tests/fixtures").join(name), p.path());
        p
    }

    /// `127.0.0.1:PORT/NAMESPACE`: this project's registry (started on first use).
    pub fn registry_url(&self) -> String {
        format!("{}/{}", registry::shared(), self.registry_namespace)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file (creating parent folders).
    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// A `ferry` command run in this project, with a clean, deterministic environment.
    pub fn ferry(&self) -> Command {
        let mut cmd = Command::new(ferry_bin());
        cmd.current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env("FERRY_REGISTRY_URL", self.registry_url())
            // The suite's apps are host commands (Python, shell) unless a stage file says
            // `driver = "docker"`; the machines have a Docker Engine, which would otherwise be
            // the default. Containers an agent starts for a test carry `ferry.test=1`.
            .env("FERRY_LOCAL_DRIVER", "process")
            .env("FERRY_CONTAINER_LABELS", "ferry.test=1");
        cmd
    }

    /// Run `ferry ARGS…` and return its output.
    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.ferry().args(args).output().expect("run ferry"))
    }
}

/// The output of one run, with readable accessors.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Assert the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        self
    }
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        // `.ferry/` holds a project's local state, registry and agent (e.g. after running the
        // quick start in place); a test starts from the checked-in files only.
        if entry.file_name() == ".ferry" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
pub mod agent;
pub mod failing_store;
pub mod ui;

/// Strings as the items of a TOML array (`"a", "b"`), for stage files the tests write.
pub fn toml_strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items.into_iter().map(|s| format!("{:?}", s.as_ref())).collect::<Vec<_>>().join(", ")
}

/// The strings of a JSON array (a boto3 answer) as the items of a TOML array.
pub fn toml_strings_of(v: &serde_json::Value) -> String {
    toml_strings(v.as_array().expect("a JSON array").iter().map(|s| s.as_str().expect("a string")))
}
