//! `ferry ui` as a test runs it: the real binary on a free 127.0.0.1 port (`--listen
//! 127.0.0.1:0`, the URL read from its stdout), killed when the test ends, and a small
//! HTTP client for its API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `ferry ui`, stopped on drop.
pub struct UiServer {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
}

impl UiServer {
    /// Start `cmd` (a `ferry` command in the project) as `ferry ui --listen 127.0.0.1:0`
    /// and wait, up to 30 s, for the URL it prints.
    pub fn start(mut cmd: Command) -> UiServer {
        cmd.args(["ui", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start ferry ui");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("http://127.0.0.1:") => line,
            other => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("ferry ui printed no URL ({other:?}); stderr:\n{}", String::from_utf8_lossy(&out.stderr));
            }
        };
        UiServer { child, base: line.trim().trim_end_matches('/').to_string() }
    }

    /// `GET PATH`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        answer(agent().get(format!("{}{path}", self.base)).call())
    }

    /// `POST PATH` with a JSON body and an optional bearer token.
    pub fn post_json(&self, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
        let mut req = agent().post(format!("{}{path}", self.base)).header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        answer(req.send(body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut response = r.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap_or_default())
}

impl Drop for UiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
