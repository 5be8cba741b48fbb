//! The distribution registry the tests push to: one `docker-registry` process per test
//! binary on 127.0.0.1 and a free port, storage under Cargo's target tmp folder. Each
//! `TestProject` gets its own namespace in it (`127.0.0.1:PORT/t<uuid>`), so tests running
//! at once never see each other's images.
//!
//! Clean-up: the registry is started with `PR_SET_PDEATHSIG` from a thread that lives as
//! long as the test binary, so the kernel kills it when the binary exits however it exits;
//! storage folders of test binaries that are gone are removed by the next one.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `HOST:PORT` of the shared registry, started on first use.
pub fn shared() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(start)
}

/// A fresh namespace for the shared registry: `t<uuid>`.
pub fn namespace() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

fn start() -> String {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ferry-test-registries");
    std::fs::create_dir_all(&base).unwrap();
    // Storage left by earlier test binaries (their registries died with them).
    for entry in std::fs::read_dir(&base).unwrap().flatten() {
        let pid: Option<u32> = entry.file_name().to_str().and_then(|n| n.parse().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    std::fs::create_dir_all(dir.join("storage")).unwrap();
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
             rootdirectory: {:?}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display().to_string()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // The death signal follows the thread that spawned the child, so that thread must live
    // as long as the test binary: it parks forever once the registry runs.
    std::thread::spawn(move || {
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn();
        tx.send(child.map(|c| c.id()).map_err(|e| e.to_string())).unwrap();
        loop {
            std::thread::park();
        }
    });
    rx.recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start docker-registry (install Debian's `docker-registry` package): {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {addr} within 20s; see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    format!("127.0.0.1:{port}")
}

/// `GET http://127.0.0.1:PORT/v2/PATH` on the shared registry: status code and body. Plain
/// HTTP/1.0 over a socket: the test asks the registry directly, not through ferry's client.
pub fn get(path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(shared()).unwrap();
    write!(
        stream,
        "GET /v2/{path} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
        shared()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
