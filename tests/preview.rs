//! `ferry preview` and deploy events end to end: the real binary, real Python app processes
//! run by the real local agent, 127.0.0.1 only, and for `[[notify]]` a real HTTP receiver
//! started by the test. Every agent is stopped by the fixture's guard and every background
//! `ferry` by its own, also when a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::commit::{app, get, wait_until, Project};
use crate::support::agent::free_port;

/// `[pipeline.preview]` over template `dev`, ports from `ports`.
fn preview_toml(ports: &str, extra: &str) -> String {
    format!(
        "[project]\nname = \"test\"\n\n[pipeline.preview]\ntemplate = \"dev\"\nname = \"pr-{{number}}\"\nports = \"{ports}\"\n\
         scale = 1\n\n[pipeline.preview.env]\nPUBLIC_URL = \"{{url}}\"\nBRANCH = \"{{branch}}\"\n{extra}"
    )
}

/// A range of 40 ports around a free one (busy ones inside are skipped by ferry).
fn port_range() -> String {
    let first = free_port().min(65_000);
    format!("{first}-{}", first + 40)
}

fn listening(url: &str) -> bool {
    let port: u16 = url.rsplit(':').next().unwrap().trim().parse().unwrap();
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_ok()
}

fn port_of(url: &str) -> u16 {
    url.trim().rsplit(':').next().unwrap().parse().unwrap()
}

fn list(p: &Project) -> Vec<Value> {
    let run = p.run(&["preview", "list", "--json"]);
    run.expect_code(0);
    let v: Value = serde_json::from_str(&run.stdout()).expect("list --json parses");
    v["previews"].as_array().cloned().unwrap()
}

/// A two-app template `dev` (web and api), never committed itself.
fn two_app_project(extra: &str) -> (Project, String, String) {
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let two = p.push("web", "two", &[]);
    let api_one = p.push("api", "one", &[]);
    let mut web = app("web", vec![(1, one.clone())], 1);
    let mut api = app("api", vec![(1, api_one)], 1);
    web.scale = 2;
    api.scale = 2;
    p.stage(&[web, api]);
    p.p.write("ferry.toml", &preview_toml(&port_range(), extra));
    (p, one, two)
}

#[test]
fn a_preview_is_its_own_stage_from_the_template_and_down_removes_all_of_it() {
    let (p, _one, two) = two_app_project("");
    let run = p.run(&["preview", "up", "12", "--branch", "feat/x", "--sha", "abc123", "--yes"]);
    run.expect_code(0);
    let url = run.stdout().trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(get(port_of(&url)).as_deref(), Ok("one"));

    // Its own state, from the template's file with the overrides; the template untouched,
    // no stage file per PR.
    let state: Value = serde_json::from_str(&p.p.read(".ferry/state/pr-12.json")).unwrap();
    let web = &state["apps"]["web"]["history"][0];
    assert_eq!(web["config"]["env"]["PUBLIC_URL"], url.as_str());
    assert_eq!(web["config"]["env"]["BRANCH"], "feat/x");
    assert_eq!(web["scale"], 1, "the preview's scale, not the template's 2");
    assert!(!p.p.path().join(".ferry/state/dev.json").exists(), "the template's state is never written");
    assert!(!p.p.path().join("stages/pr-12.toml").exists());
    // A real stage: other commands reach it by name.
    p.run(&["ps", "-s", "pr-12"]).expect_code(0);

    let rows = list(&p);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["pr"], 12);
    assert_eq!(rows[0]["stage"], "pr-12");
    assert_eq!(rows[0]["url"], url.as_str());
    assert_eq!(rows[0]["status"], "up");
    assert_eq!(rows[0]["branch"], "feat/x");

    // An update keeps the URL and rolls the new image out.
    let run = p.run(&["preview", "up", "12", "--release", &format!("web={two}"), "--yes"]);
    run.expect_code(0);
    assert_eq!(run.stdout().trim(), url);
    assert_eq!(get(port_of(&url)).as_deref(), Ok("two"));

    // A second preview gets other ports.
    let run = p.run(&["preview", "up", "13", "--yes"]);
    run.expect_code(0);
    let url13 = run.stdout().trim().to_string();
    assert_ne!(url13, url);
    assert_eq!(get(port_of(&url13)).as_deref(), Ok("one"));
    // `plan --all` plans the stage files and lists the previews apart.
    let plan = p.run(&["plan", "--all", "--offline"]);
    plan.expect_code(0);
    let out = plan.stdout();
    assert!(out.contains("Previews (from dev, not planned here"), "{out}");
    assert!(out.contains(&format!("PR 12 pr-12 up {url}")) && out.contains("PR 13 pr-13 up"), "{out}");

    let run = p.run(&["preview", "down", "12"]);
    run.expect_code(0);
    assert!(!listening(&url), "nothing listens on a removed preview's URL");
    for gone in
        [".ferry/state/pr-12.json", ".ferry/state/pr-12.json.previous", ".ferry/state/pr-12.lock", ".ferry/logs/pr-12"]
    {
        assert!(!p.p.path().join(gone).exists(), "{gone} is left");
    }
    let rows = list(&p);
    assert_eq!(rows.iter().map(|r| r["pr"].as_u64().unwrap()).collect::<Vec<_>>(), [13]);
    assert_eq!(get(port_of(&url13)).as_deref(), Ok("one"), "the other preview keeps serving");

    let again = p.run(&["preview", "down", "12"]);
    again.expect_code(0);
    assert!(again.stderr().contains("nothing to remove: PR 12 has no preview"), "{}", again.stderr());
    p.run(&["preview", "down", "13"]).expect_code(0);
    assert!(list(&p).is_empty());
}

#[test]
fn promote_from_a_preview_copies_its_digest_into_the_first_step() {
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let two = p.push("web", "two", &[]);
    p.stage(&[app("web", vec![(1, one.clone())], 1)]);
    p.p.write(
        "ferry.toml",
        &format!(
            "{}\n[[pipeline.steps]]\nname = \"development\"\nstages = [\"dev\"]\n",
            preview_toml(&port_range(), "")
        ),
    );
    p.run(&["preview", "up", "7", "--release", &two, "--yes"]).expect_code(0);
    let run = p.run(&["promote", "web", "--from", "pr-7"]);
    run.expect_code(0);
    let stage = p.p.read("stages/dev.toml");
    assert!(stage.contains(&two), "the preview's digest is declared in dev:\n{stage}\n{}", run.stderr());
    p.run(&["preview", "down", "7"]).expect_code(0);
}

#[test]
fn bad_input_is_refused_clearly_and_creates_nothing() {
    let (p, _one, _two) = two_app_project("");
    for bad in ["abc", "0", "-4"] {
        let run = p.run(&["preview", "up", bad, "--yes"]);
        assert_ne!(run.code(), 0);
        assert!(run.stderr().contains("not a pull request number: use a positive integer"), "{bad}: {}", run.stderr());
    }
    let run = p.run(&["preview", "down", "abc"]);
    assert!(run.stderr().contains("positive integer"), "{}", run.stderr());

    // Unknown template: located in ferry.toml.
    p.p.write("ferry.toml", &preview_toml(&port_range(), "").replace("template = \"dev\"", "template = \"nope\""));
    let run = p.run(&["preview", "up", "1", "--yes"]);
    assert_ne!(run.code(), 0);
    let err = run.stderr();
    assert!(err.contains("ferry.toml:") && err.contains("unknown template stage `nope`"), "{err}");

    // A name pattern that cannot name a stage.
    p.p.write("ferry.toml", &preview_toml(&port_range(), "").replace("pr-{number}", "PR_{number}"));
    let err = p.run(&["preview", "up", "1", "--yes"]).stderr();
    assert!(err.contains("ferry.toml:") && err.contains("is not a valid preview stage name"), "{err}");

    // A range of one port for two apps.
    let port = free_port();
    p.p.write("ferry.toml", &preview_toml(&format!("{port}-{port}"), ""));
    let run = p.run(&["preview", "up", "1", "--yes"]);
    assert_ne!(run.code(), 0);
    assert!(run.stderr().contains(&format!("port range {port}-{port} is exhausted")), "{}", run.stderr());
    assert!(list(&p).is_empty(), "nothing reserved");
    assert!(!p.p.path().join(".ferry/state/pr-1.json").exists());
    assert!(p.run(&["preview", "down", "1"]).stderr().contains("nothing to remove"));
}

#[test]
fn a_preview_killed_half_way_is_fully_removed_by_down() {
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let mut web = app("web", vec![(1, one)], 1);
    // Slow to listen: the kill lands while the rollout waits for health.
    web.start_delay = "30";
    web.timeout = "60s";
    web.grace = "60s";
    p.stage(&[web]);
    p.p.write("ferry.toml", &preview_toml(&port_range(), ""));
    let child = p.spawn(&["preview", "up", "5", "--yes"]);
    let url = std::cell::RefCell::new(String::new());
    wait_until("the preview is reserved and its port served", Duration::from_secs(60), || {
        // The record itself (cheaper than a `ferry` run per poll).
        let Ok(text) = std::fs::read_to_string(p.p.path().join(".ferry/previews.json")) else { return false };
        let Ok(record) = serde_json::from_str::<Value>(&text) else { return false };
        let Some(u) = record["previews"]["5"]["url"].as_str() else { return false };
        *url.borrow_mut() = u.to_string();
        p.p.path().join(".ferry/state/pr-5.lock").exists() && listening(u)
    });
    let url = url.into_inner();
    child.signal(libc::SIGKILL);
    drop(child);
    assert_eq!(list(&p)[0]["status"], "creating", "killed before its commit ended");

    let run = p.run(&["preview", "down", "5"]);
    run.expect_code(0);
    assert!(!listening(&url));
    assert!(!p.p.path().join(".ferry/state/pr-5.lock").exists());
    assert!(!p.p.path().join(".ferry/state/pr-5.json").exists());
    assert!(list(&p).is_empty());
    let ps = p.run(&["ps", "-s", "pr-5"]);
    assert_ne!(ps.code(), 0, "no such stage any more: {}", ps.stdout());
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 receiver on 127.0.0.1: answers `status` to every request (the first
/// `fail_first` get 500), records them, stops when dropped.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(status: u16, fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut served = 0usize;
            // Bounded: at most ten minutes of polling.
            for _ in 0..60_000 {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let code = if served < fail_first { 500 } else { status };
                        served += 1;
                        if let Some(r) = serve(stream, code) {
                            g.lock().unwrap().push(r);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { port, got, stop, thread: Some(thread) }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, code: u16) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length"))?.1.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let mut out = stream;
    let _ = write!(out, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some(Received { headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2_hmac::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

const SECRET_VALUE: &str = "s3cret-value-never-in-events";

/// A one-app stage `dev` with a secret, and `[[notify]]` entries for `receivers`.
fn notify_project(notify: &str) -> (Project, String) {
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let mut web = app("web", vec![(1, one.clone())], 1);
    web.scale = 1;
    p.stage(&[web]);
    let stage = p.p.read("stages/dev.toml") + "\n[apps.web.secrets]\nTOKEN = \"env:PREVIEW_TEST_TOKEN\"\n";
    p.p.write("stages/dev.toml", &stage);
    p.p.write("ferry.toml", &format!("{}{notify}", preview_toml(&port_range(), "")));
    (p, one)
}

#[test]
fn commit_events_go_to_a_file_and_signed_to_a_webhook_without_secret_values() {
    let rx = Receiver::start(200, 0);
    let slack = Receiver::start(200, 0);
    let (p, one) = notify_project(&format!(
        "\n[[notify]]\nurl = \"http://127.0.0.1:{}/hook\"\nsecret = \"env:PREVIEW_TEST_HOOK_KEY\"\n\n\
         [[notify]]\nurl = \"http://127.0.0.1:{}/slack\"\nformat = \"slack\"\nevents = [\"preview\"]\n",
        rx.port, slack.port
    ));
    let out =
        p.p.ferry()
            .env("PREVIEW_TEST_TOKEN", SECRET_VALUE)
            .env("PREVIEW_TEST_HOOK_KEY", "hook-key")
            .args(["commit", "--yes", "--events", "events.jsonl"])
            .output()
            .unwrap();
    crate::support::Run(out).expect_code(0);

    let lines: Vec<Value> =
        p.p.read("events.jsonl").lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let e = &lines[0];
    assert_eq!(e["kind"], "commit");
    assert_eq!(e["stage"], "dev");
    assert_eq!(e["app"], "web");
    assert_eq!(e["deployment"], 1);
    assert_eq!(e["release"], 1);
    assert_eq!(e["digest"], one.as_str());
    assert_eq!(e["outcome"], "succeeded");
    assert!(e["duration_ms"].is_u64());

    let got = rx.received();
    assert_eq!(got.len(), 1, "one request per event");
    let r = &got[0];
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap(), *e, "the webhook gets the same event");
    assert_eq!(r.header("x-ferry-event"), Some("commit"));
    assert_eq!(
        r.header("x-ferry-signature-256").map(str::to_string),
        Some(format!("sha256={}", hmac_hex(b"hook-key", r.body.as_bytes()))),
        "HMAC-SHA256 of the exact body"
    );
    assert!(slack.received().is_empty(), "the slack target only wants preview events");

    // Preview events reach the slack target as a one-line summary.
    let out =
        p.p.ferry()
            .env("PREVIEW_TEST_TOKEN", SECRET_VALUE)
            .env("PREVIEW_TEST_HOOK_KEY", "hook-key")
            .args(["preview", "up", "3", "--yes", "--events", "events.jsonl"])
            .output()
            .unwrap();
    crate::support::Run(out).expect_code(0);
    let texts: Vec<String> = slack
        .received()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("[preview] test/pr-3: up PR #3 succeeded"), "{}", texts[0]);
    p.run(&["preview", "down", "3"]).expect_code(0);

    let everything =
        p.p.read("events.jsonl") + &rx.received().iter().map(|r| r.body.clone()).collect::<String>() + &texts.concat();
    assert!(!everything.contains(SECRET_VALUE), "a secret value reached an event");
    assert!(!everything.contains("hook-key"));
}

#[test]
fn a_failing_webhook_is_retried_reported_and_never_fails_the_deploy() {
    let failing = Receiver::start(500, 0);
    let flaky = Receiver::start(200, 1);
    let (p, _one) = notify_project(&format!(
        "\n[[notify]]\nurl = \"http://127.0.0.1:{}/down\"\n\n[[notify]]\nurl = \"http://127.0.0.1:{}/flaky\"\n",
        failing.port, flaky.port
    ));
    let out = p.p.ferry().env("PREVIEW_TEST_TOKEN", SECRET_VALUE).args(["commit", "--yes"]).output().unwrap();
    let run = crate::support::Run(out);
    run.expect_code(0);
    let err = run.stderr();
    assert!(
        err.contains(&format!("warning: notify http://127.0.0.1:{}: 1 event(s) not delivered (HTTP 500", failing.port)),
        "{err}"
    );
    assert!(err.contains("the deploy is not affected"), "{err}");
    assert!(!err.contains("/down"), "reports name the webhook by host only: {err}");
    assert!(failing.received().len() > 1, "retried");
    assert_eq!(flaky.received().len(), 2, "a first failure is retried and then delivered");
    assert!(!err.contains(&format!("127.0.0.1:{}", flaky.port)), "{err}");
    assert_eq!(get(p_port(&p)).as_deref(), Ok("one"), "the deploy happened");
}

fn p_port(p: &Project) -> u16 {
    let stage = p.p.read("stages/dev.toml");
    stage.lines().find_map(|l| l.strip_prefix("port = ")).unwrap().trim().parse().unwrap()
}

#[test]
fn status_reports_and_release_creation_are_events_too() {
    let rx = Receiver::start(200, 0);
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let two = p.push("web", "two", &[]);
    p.stage(&[app("web", vec![(1, one)], 1)]);
    p.p.write(
        "ferry.toml",
        &format!("[project]\nname = \"test\"\n\n[[notify]]\nurl = \"http://127.0.0.1:{}/\"\n", rx.port),
    );
    p.run(&["status", "set", "web", &two, "ci/tests", "success"]).expect_code(0);
    p.run(&["release", "create", "web", &two]).expect_code(0);
    let events: Vec<Value> = rx.received().iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["status", "release"]);
    assert_eq!(events[0]["action"], "ci/tests: success");
    assert_eq!(events[0]["digest"], two.as_str());
    assert_eq!(events[1]["stage"], "dev");
    assert_eq!(events[1]["release"], 2);
    assert_eq!(events[1]["digest"], two.as_str());
}
