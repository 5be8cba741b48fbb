//! The registry of local stages: the CNCF distribution registry (`docker-registry` from
//! Debian's package of that name, or `registry` as upstream names it), started on demand on
//! 127.0.0.1 with its storage under the project (`.ferry/oci-registry/` unless
//! `[registry] storage` says otherwise), or a registry the user names.
//!
//! ```text
//! .ferry/oci-registry/
//!   config.yml     the registry's configuration (written by ferry)
//!   serve.json     {"pid": …, "port": …} of the registry ferry started
//!   serve.lock     held while one ferry checks or starts the registry
//!   registry.log   its output
//!   storage/       its blobs and repositories
//! ```
//!
//! The registry runs detached in its own session, so it outlives the ferry that started it
//! and serves every later command (and the agent's pulls); `ferry image registry --stop`
//! stops it. A registry that stopped (killed, machine restarted) is started again on the
//! same port when it was configured, or on a free one.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{OciRegistry, RegistryError, RegistryUrl, Result};
use crate::config::{Project, RegistrySettings};
use crate::poll::Poll;

/// Environment variable naming a registry (`HOST[:PORT][/NAMESPACE]`) that wins over
/// `ferry.toml`: for CI machines that run one registry for many checkouts.
pub const REGISTRY_URL_ENV: &str = "FERRY_REGISTRY_URL";

/// How long a starting registry may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// What `serve.json` records about the registry ferry started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub pid: u32,
    pub port: u16,
}

/// The registry of a project's local stages: the one `FERRY_REGISTRY_URL` or
/// `[registry] url` names, or the one ferry runs (started now if it does not run).
pub fn for_project(project: &Project) -> Result<OciRegistry> {
    let url = match url_from_env()? {
        Some(url) => url,
        None => match &project.registry.url {
            // Checked when the project file was loaded.
            Some(url) => {
                RegistryUrl::parse(url).map_err(|why| RegistryError::Refused { url: url.clone(), reason: why })?
            }
            None => {
                let served = ensure_running(&project.root, &project.registry)?;
                RegistryUrl { host: format!("127.0.0.1:{}", served.port), namespace: None }
            }
        },
    };
    Ok(OciRegistry::new(url, OciRegistry::auth_from_env()).with_legacy_store(&project.root))
}

/// The registry `FERRY_REGISTRY_URL` names, if it is set.
pub fn url_from_env() -> Result<Option<RegistryUrl>> {
    match std::env::var(REGISTRY_URL_ENV).ok().filter(|u| !u.is_empty()) {
        Some(url) => RegistryUrl::parse(&url).map(Some).map_err(|why| RegistryError::Refused {
            url: url.clone(),
            reason: format!("is not a registry address ({REGISTRY_URL_ENV}): it {why}"),
        }),
        None => Ok(None),
    }
}

/// The registry of a project's local stages, found — and started — on first use: a command
/// that needs no image (a scale, a `ps`) never starts one.
#[derive(Debug)]
pub struct ProjectRegistry {
    root: PathBuf,
    project: Option<Project>,
    found: std::sync::Mutex<Option<OciRegistry>>,
}

impl ProjectRegistry {
    /// The registry of `project`.
    pub fn new(project: &Project) -> Self {
        ProjectRegistry { root: project.root.clone(), project: Some(project.clone()), found: Default::default() }
    }

    /// The registry of the project at `root` (its `ferry.toml` is read on first use).
    pub fn at_root(root: &Path) -> Self {
        ProjectRegistry { root: root.to_path_buf(), project: None, found: Default::default() }
    }

    /// Always `registry` (for tests and embedders that pick one).
    pub fn fixed(registry: OciRegistry) -> Self {
        ProjectRegistry { root: PathBuf::new(), project: None, found: std::sync::Mutex::new(Some(registry)) }
    }

    /// The registry, found (and started) now if this is the first use.
    pub fn get(&self) -> Result<OciRegistry> {
        let mut found = self.found.lock().expect("registry");
        if let Some(r) = &*found {
            return Ok(r.clone());
        }
        let project = match &self.project {
            Some(p) => p.clone(),
            None => crate::config::load_project(&self.root)
                .map_err(|e| RegistryError::CannotStart(format!("cannot read ferry.toml: {e}")))?,
        };
        let registry = for_project(&project)?;
        *found = Some(registry.clone());
        Ok(registry)
    }
}

impl super::Registry for ProjectRegistry {
    fn verify(&self, repo: &str, digest: &crate::config::Digest) -> Result<()> {
        self.get()?.verify(repo, digest)
    }

    fn resolve_tag(&self, repo: &str, tag: &str) -> Result<crate::config::Digest> {
        self.get()?.resolve_tag(repo, tag)
    }
}

/// The folder of the registry ferry runs for the project at `root`.
pub fn registry_dir(root: &Path, settings: &RegistrySettings) -> PathBuf {
    root.join(settings.storage.clone().unwrap_or_else(|| PathBuf::from(".ferry/oci-registry")))
}

/// The registry ferry runs for the project, started unless it answers already.
pub fn ensure_running(root: &Path, settings: &RegistrySettings) -> Result<Served> {
    let dir = registry_dir(root, settings);
    let io = |what: &str, p: &Path, e| RegistryError::io(format!("cannot {what} {}", p.display()), e);
    crate::private_files::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    // One ferry at a time checks and starts: two commands run at once share one registry.
    let lock_path = dir.join("serve.lock");
    let lock = crate::private_files::open_write(&lock_path).map_err(|e| io("open", &lock_path, e))?;
    let _held = FileLock::acquire(&lock).map_err(|e| io("lock", &lock_path, e))?;

    if let Some(served) = running(&dir) {
        if settings.port.is_none_or(|p| p == served.port) {
            return Ok(served);
        }
        // The configured port changed: move the registry there.
        stop_served(&dir, served);
    }
    let program = find_program()
        .ok_or_else(|| RegistryError::CannotStart("neither `docker-registry` nor `registry` is on PATH".into()))?;
    let port = match settings.port {
        Some(p) => p,
        None => free_port().map_err(|e| RegistryError::CannotStart(format!("cannot find a free port: {e}")))?,
    };
    let storage = dir.join("storage");
    crate::private_files::create_dir_all(&storage).map_err(|e| io("create", &storage, e))?;
    let config = dir.join("config.yml");
    crate::private_files::write(&config, config_yaml(&storage, port).as_bytes())
        .map_err(|e| io("write", &config, e))?;
    let log_path = dir.join("registry.log");
    let log = crate::private_files::open_append(&log_path).map_err(|e| io("open", &log_path, e))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("serve")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| io("open", &log_path, e))?)
        .stderr(log);
    // SAFETY: setsid and umask are async-signal-safe. setsid detaches the registry from our
    // session and terminal, so it outlives this command and ignores its Ctrl-C (as the agent
    // does); umask 077 keeps the images it stores private, like everything under `.ferry/`.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::umask(0o077);
            Ok(())
        });
    }
    let mut child =
        cmd.spawn().map_err(|e| RegistryError::CannotStart(format!("cannot run {}: {e}", program.display())))?;
    let served = Served { pid: child.id(), port };
    let mut poll = Poll::new(Duration::from_millis(10), Duration::from_millis(100)).within(START_TIMEOUT);
    loop {
        if answers(port) {
            break;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || !poll.wait_blocking() {
            if exited.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let tail = fs::read(&log_path).ok().map(|b| last_lines(&b[(log_start as usize).min(b.len())..], 5));
            return Err(RegistryError::CannotStart(format!(
                "{} on 127.0.0.1:{port} {}{}",
                program.display(),
                if exited.is_some() { "exited" } else { "did not answer within 15s" },
                tail.filter(|t| !t.is_empty()).map(|t| format!(":\n{t}")).unwrap_or_default()
            )));
        }
    }
    // Reap it whenever it exits, so a long-lived starter (a test) keeps no zombie.
    std::thread::spawn(move || child.wait());
    let record = dir.join("serve.json");
    crate::atomic_file::write(&record, &serde_json::to_vec(&served).expect("JSON"), crate::atomic_file::Mode::Private)
        .map_err(|e| io("write", &record, e))?;
    Ok(served)
}

/// Stop the registry ferry runs for the project; `None` when none ran.
pub fn stop(root: &Path, settings: &RegistrySettings) -> Option<Served> {
    let dir = registry_dir(root, settings);
    let served = running(&dir)?;
    stop_served(&dir, served);
    Some(served)
}

fn stop_served(dir: &Path, served: Served) {
    // SAFETY: plain kill(2) of the registry's own pid, recorded when ferry started it.
    unsafe { libc::kill(served.pid as i32, libc::SIGTERM) };
    let mut poll = Poll::new(Duration::from_millis(20), Duration::from_millis(200)).within(Duration::from_secs(5));
    while crate::process::alive(served.pid) && poll.wait_blocking() {}
    if crate::process::alive(served.pid) {
        // SAFETY: as above.
        unsafe { libc::kill(served.pid as i32, libc::SIGKILL) };
    }
    let _ = fs::remove_file(dir.join("serve.json"));
}

/// The registry `serve.json` records, when it runs and answers.
fn running(dir: &Path) -> Option<Served> {
    let served: Served = serde_json::from_slice(&fs::read(dir.join("serve.json")).ok()?).ok()?;
    (crate::process::alive(served.pid) && answers(served.port)).then_some(served)
}

/// The registry binary: `docker-registry` (Debian) or `registry` (upstream) on PATH.
fn find_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["docker-registry", "registry"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Whether a distribution registry answers `GET /v2/` on 127.0.0.1:`port`. A raw HTTP/1.0
/// request rather than an HTTP client: this one probe needs no TLS, pool or runtime.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    // The distribution registry answers 200 (or 401 with auth on) and names its API version.
    head.starts_with("HTTP/1.")
        && (head[8..].trim_start().starts_with("200") || head[8..].trim_start().starts_with("401"))
}

fn config_yaml(storage: &Path, port: u16) -> String {
    // JSON strings are valid YAML scalars: the path is quoted whatever it holds.
    let storage = serde_json::to_string(&storage.display().to_string()).expect("JSON");
    format!(
        "# Written by ferry: the registry of this project's local stages.\n\
         version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n"
    )
}

fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock<'a>(&'a fs::File);

impl<'a> FileLock<'a> {
    fn acquire(file: &'a fs::File) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own for the lock's lifetime.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as in `acquire`.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_once_answers_and_stops() {
        if find_program().is_none() {
            panic!("the distribution registry (`docker-registry`) must be installed for this test");
        }
        let root = tempfile::tempdir().unwrap();
        let settings = RegistrySettings::default();
        let first = ensure_running(root.path(), &settings).unwrap();
        let again = ensure_running(root.path(), &settings).unwrap();
        assert_eq!(first, again, "a running registry is reused");
        assert!(answers(first.port));
        let config = fs::read_to_string(root.path().join(".ferry/oci-registry/config.yml")).unwrap();
        assert!(config.contains(&format!("addr: 127.0.0.1:{}", first.port)), "{config}");
        assert_eq!(stop(root.path(), &settings), Some(first));
        assert!(!answers(first.port));
        assert!(stop(root.path(), &settings).is_none());
    }
}
