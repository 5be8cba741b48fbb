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

fn list(p: &crate::support::TestProject) -> Vec<Value> {
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

    let rows = list(&p.p);
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
    let rows = list(&p.p);
    assert_eq!(rows.iter().map(|r| r["pr"].as_u64().unwrap()).collect::<Vec<_>>(), [13]);
    assert_eq!(get(port_of(&url13)).as_deref(), Ok("one"), "the other preview keeps serving");

    let again = p.run(&["preview", "down", "12"]);
    again.expect_code(0);
    assert!(again.stderr().contains("nothing to remove: PR 12 has no preview"), "{}", again.stderr());
    p.run(&["preview", "down", "13"]).expect_code(0);
    assert!(list(&p.p).is_empty());
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

    // A host rule needs a host and a listener: either alone is refused where it is written.
    let listener = "arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/x/1/2";
    for (section, key, says) in [
        ("host = \"pr-{number}.example.com\"\n".to_string(), "host", "`host` is set without `listener`"),
        (format!("listener = \"{listener}\"\n"), "listener", "`listener` is set without `host`"),
    ] {
        let toml = preview_toml(&port_range(), &format!("\n[pipeline.preview.ecs]\n{section}"));
        p.p.write("ferry.toml", &toml);
        let line = toml.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        for args in [&["validate"][..], &["preview", "up", "1", "--yes"]] {
            let run = p.run(args);
            assert_ne!(run.code(), 0, "{args:?}");
            let err = run.stderr();
            assert!(err.contains(&format!("ferry.toml:{line}:1")) && err.contains(says), "{args:?}: {err}");
        }
    }

    // A range of one port for two apps.
    let port = free_port();
    p.p.write("ferry.toml", &preview_toml(&format!("{port}-{port}"), ""));
    let run = p.run(&["preview", "up", "1", "--yes"]);
    assert_ne!(run.code(), 0);
    assert!(run.stderr().contains(&format!("port range {port}-{port} is exhausted")), "{}", run.stderr());
    assert!(list(&p.p).is_empty(), "nothing reserved");
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
    assert_eq!(list(&p.p)[0]["status"], "creating", "killed before its commit ended");

    let run = p.run(&["preview", "down", "5"]);
    run.expect_code(0);
    assert!(!listening(&url));
    assert!(!p.p.path().join(".ferry/state/pr-5.lock").exists());
    assert!(!p.p.path().join(".ferry/state/pr-5.json").exists());
    assert!(list(&p.p).is_empty());
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

/// The events a receiver got, parsed.
fn received_events(rx: &Receiver) -> Vec<Value> {
    rx.received().iter().map(|r| serde_json::from_str(&r.body).expect("one JSON object per request")).collect()
}

/// `ferry.toml` with one signed JSON `[[notify]]` to `json` and a Slack one to `slack`. The
/// HMAC key is a `file:` reference (`hook.key`, written by `write_hook_key`), so background
/// runs need no environment of their own.
fn notify_both(json: &Receiver, slack: &Receiver) -> String {
    format!(
        "\n[[notify]]\nurl = \"http://127.0.0.1:{}/hook\"\nsecret = \"file:hook.key\"\n\n\
         [[notify]]\nurl = \"http://127.0.0.1:{}/slack\"\nformat = \"slack\"\n",
        json.port, slack.port
    )
}

/// Every JSON request is signed with the key; every Slack request is `{"text": …}` whose
/// text starts with `[KIND]`.
fn assert_signed_and_summarised(json: &Receiver, slack: &Receiver, kinds: &[&str]) {
    for r in json.received() {
        assert_eq!(
            r.header("x-ferry-signature-256").map(str::to_string),
            Some(format!("sha256={}", hmac_hex(b"hook-key", r.body.as_bytes()))),
            "{}",
            r.body
        );
    }
    let texts: Vec<String> = slack
        .received()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    let slack_kinds: Vec<&str> =
        texts.iter().map(|t| t.strip_prefix('[').and_then(|t| t.split(']').next()).unwrap()).collect();
    assert_eq!(slack_kinds, kinds, "{texts:?}");
}

fn ferry_with_key(p: &Project, args: &[&str]) -> crate::support::Run {
    p.p.write("hook.key", "hook-key");
    p.run(args)
}

#[test]
fn preview_up_and_down_are_events_in_the_file_and_at_both_webhooks() {
    let json = Receiver::start(200, 0);
    let slack = Receiver::start(200, 0);
    let (p, one, _two) = two_app_project(&notify_both(&json, &slack));
    let up = ferry_with_key(&p, &["preview", "up", "8", "--sha", "abc123", "--yes", "--events", "events.jsonl"]);
    up.expect_code(0);
    let url = up.stdout().trim().to_string();
    ferry_with_key(&p, &["preview", "down", "8", "--events", "events.jsonl"]).expect_code(0);

    let lines: Vec<Value> = p.p.read("events.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The preview's commit (one event per deployment), then up, then down.
    let kinds: Vec<(&str, Option<&str>)> =
        lines.iter().map(|e| (e["kind"].as_str().unwrap(), e["action"].as_str())).collect();
    assert_eq!(
        kinds,
        [("commit", None), ("commit", None), ("preview", Some("up")), ("preview", Some("down"))],
        "{lines:?}"
    );
    assert!(lines[..2].iter().all(|e| e["stage"] == "pr-8" && e["outcome"] == "succeeded"));
    let up_event = &lines[2];
    assert_eq!(up_event["pr"], 8);
    assert_eq!(up_event["stage"], "pr-8");
    assert_eq!(up_event["url"], url.as_str());
    assert_eq!(up_event["source_commit"], "abc123");
    assert_eq!(up_event["outcome"], "succeeded");
    assert!(up_event["duration_ms"].is_u64());
    let down_event = &lines[3];
    assert_eq!((down_event["pr"].as_u64(), down_event["outcome"].as_str()), (Some(8), Some("succeeded")));
    let _ = one;

    assert_eq!(received_events(&json), lines, "the webhook gets the same events as the file");
    assert_signed_and_summarised(&json, &slack, &["commit", "commit", "preview", "preview"]);
}

#[test]
fn promote_is_an_event_at_the_webhooks() {
    let json = Receiver::start(200, 0);
    let slack = Receiver::start(200, 0);
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let two = p.push("web", "two", &[]);
    p.stage(&[app("web", vec![(1, one)], 1)]);
    p.p.write(
        "ferry.toml",
        &format!(
            "{}\n[[pipeline.steps]]\nname = \"development\"\nstages = [\"dev\"]\n",
            preview_toml(&port_range(), &notify_both(&json, &slack))
        ),
    );
    ferry_with_key(&p, &["preview", "up", "7", "--release", &two, "--yes"]).expect_code(0);
    let before = json.received().len();
    ferry_with_key(&p, &["promote", "web", "--from", "pr-7"]).expect_code(0);
    let events = received_events(&json);
    let promoted = &events[before..];
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    let e = &promoted[0];
    assert_eq!(e["kind"], "promote");
    assert_eq!(e["stage"], "dev");
    assert_eq!(e["app"], "web");
    assert_eq!(e["digest"], two.as_str());
    assert_eq!(e["outcome"], "requested");
    assert_eq!(e["action"], "from pr-7 into step development");
    let slack_texts: Vec<Value> = slack.received().iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    let last = slack_texts.last().unwrap()["text"].as_str().unwrap().to_string();
    assert!(last.starts_with("[promote] test/dev: from pr-7 into step development web"), "{last}");
    assert_signed_and_summarised(&json, &slack, &["commit", "preview", "promote"]);
    p.run(&["preview", "down", "7"]).expect_code(0);
}

#[test]
fn rollback_is_an_event_and_its_commit_too() {
    let json = Receiver::start(200, 0);
    let slack = Receiver::start(200, 0);
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let two = p.push("web", "two", &[]);
    let mut web = app("web", vec![(1, one.clone())], 1);
    p.stage(&[web.clone()]);
    p.p.write("ferry.toml", &format!("[project]\nname = \"test\"\n{}", notify_both(&json, &slack)));
    ferry_with_key(&p, &["commit", "--yes"]).expect_code(0);
    web.releases.push((2, two));
    web.active = 2;
    p.stage(&[web.clone()]);
    ferry_with_key(&p, &["commit", "--yes"]).expect_code(0);
    let run = ferry_with_key(&p, &["rollback", "web", "--commit"]);
    run.expect_code(0);
    assert_eq!(get(web.port).as_deref(), Ok("one"), "{}", run.stderr());

    let events = received_events(&json);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["commit", "commit", "rollback", "commit"], "{events:?}");
    let rollback = &events[2];
    assert_eq!(rollback["stage"], "dev");
    assert_eq!(rollback["app"], "web");
    assert_eq!(rollback["deployment"], 1, "back to v1");
    assert_eq!(rollback["release"], 1);
    assert_eq!(rollback["digest"], one.as_str());
    assert_eq!(events[3]["deployment"], 3);
    assert_eq!(events[3]["release"], 1);
    assert_signed_and_summarised(&json, &slack, &["commit", "commit", "rollback", "commit"]);
}

#[test]
fn abort_is_an_event_and_the_aborted_commit_says_so() {
    let json = Receiver::start(200, 0);
    let slack = Receiver::start(200, 0);
    let p = Project::new();
    let one = p.push("web", "one", &[]);
    let bad = p.push("web", "bad", &["unhealthy"]);
    let mut web = app("web", vec![(1, one)], 1);
    p.stage(&[web.clone()]);
    p.p.write("ferry.toml", &format!("[project]\nname = \"test\"\n{}", notify_both(&json, &slack)));
    ferry_with_key(&p, &["commit", "--yes"]).expect_code(0);
    web.releases.push((2, bad));
    web.active = 2;
    web.timeout = "60s";
    p.stage(&[web.clone()]);
    let commit = p.spawn(&["commit", "--yes", "--events", "events.jsonl"]);
    wait_until("the deployment in progress", Duration::from_secs(15), || crate::commit::in_progress(&p, "web"));
    ferry_with_key(&p, &["abort"]).expect_code(0);
    let (code, out, err) = commit.wait(Duration::from_secs(30));
    assert_eq!(code, 130, "{out}\n{err}");

    let events = received_events(&json);
    let kinds: Vec<(&str, &str)> =
        events.iter().map(|e| (e["kind"].as_str().unwrap(), e["outcome"].as_str().unwrap())).collect();
    // The abort command reports once the stage is unlocked, which the commit does before
    // it sends its own event: both orders are real.
    assert_eq!(kinds[0], ("commit", "succeeded"));
    let mut rest = kinds[1..].to_vec();
    rest.sort();
    assert_eq!(rest, [("abort", "succeeded"), ("commit", "aborted")], "{events:?}");
    let aborted = events.iter().find(|e| e["outcome"] == "aborted").unwrap();
    assert_eq!((aborted["stage"].as_str(), aborted["deployment"].as_u64()), (Some("dev"), Some(2)));
    assert!(aborted["reason"].as_str().is_some_and(|r| r.contains("abort")), "{aborted}");
    let file: Vec<Value> = p.p.read("events.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(file, std::slice::from_ref(aborted), "the commit's --events file has its own event");
    let mut slack_kinds: Vec<String> = slack
        .received()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["text"].as_str().unwrap().to_string())
        .map(|t| t[1..t.find(']').unwrap()].to_string())
        .collect();
    slack_kinds.sort();
    assert_eq!(slack_kinds, ["abort", "commit", "commit"]);
}

#[test]
fn a_preview_killed_between_its_reservation_and_its_commit_is_fully_removed_by_down() {
    let (p, _one, _two) = two_app_project("");
    // Another run holds the preview's lock (this test, through the library), so `preview up`
    // reserves the preview and then waits for the lock: killed there, it has reserved ports
    // and a record, and has no lock, state or task.
    let project = ferry::config::load_project(p.p.path()).expect("the project loads");
    let held = ferry::state::LockedStage::open(&project, "pr-6", "ferry commit -s pr-6", Duration::ZERO).unwrap();
    let child = p.spawn(&["--lock-timeout", "120s", "preview", "up", "6", "--yes"]);
    wait_until("the preview is reserved", Duration::from_secs(60), || {
        let Ok(text) = std::fs::read_to_string(p.p.path().join(".ferry/previews.json")) else { return false };
        serde_json::from_str::<Value>(&text).is_ok_and(|r| r["previews"]["6"]["status"] == "creating")
    });
    child.signal(libc::SIGKILL);
    let _ = child.wait(Duration::from_secs(10));
    held.unlock().unwrap();
    let rows = list(&p.p);
    assert_eq!((rows.len(), rows[0]["status"].as_str()), (1, Some("creating")), "{rows:?}");
    let url = rows[0]["url"].as_str().unwrap().to_string();
    assert!(!p.p.path().join(".ferry/state/pr-6.json").exists(), "killed before its commit wrote anything");

    let run = p.run(&["preview", "down", "6"]);
    run.expect_code(0);
    assert!(run.stderr().contains("removed the preview of PR 6"), "{}", run.stderr());
    assert!(list(&p.p).is_empty(), "the record and its ports are gone");
    for gone in [".ferry/state/pr-6.json", ".ferry/state/pr-6.lock", ".ferry/logs/pr-6"] {
        assert!(!p.p.path().join(gone).exists(), "{gone} is left");
    }
    assert!(!listening(&url));
    assert!(p.run(&["preview", "down", "6"]).stderr().contains("nothing to remove"), "safe twice");
    // The PR can have a preview again.
    p.run(&["preview", "up", "6", "--yes"]).expect_code(0);
    p.run(&["preview", "down", "6"]).expect_code(0);
}

/// `preview up --source` on the Docker driver: the image built from a Dockerfile `FROM
/// scratch` (static busybox, as in tests/build.rs) by the real engine, pushed to the tests'
/// registry, run as a labelled container behind the preview's URL; `down` leaves nothing
/// listening and no container of the project.
#[test]
fn preview_up_from_sources_builds_and_serves_a_container_and_down_removes_it() {
    use crate::local_docker::{containers, Containers};
    use ferry::runtime::local::{docker, Layout};

    let p = crate::support::TestProject::empty();
    let _images = crate::build::EngineImages::of(&p.registry_namespace);
    let label = docker::project_label(p.path());
    // Dropped first: the agent stops the containers, then the guard removes what is left.
    let _containers = Containers(label.clone());
    let _agent = crate::support::agent::AgentGuard { layout: Layout::new(p.path()) };
    p.write(
        "ferry.toml",
        &format!(
            "[project]\nname = \"docker-preview\"\n\n[state]\nbackend = \"local\"\n\n[pipeline.preview]\ntemplate = \"dev\"\n\
             ports = \"{}\"\n\n[pipeline.preview.env]\nPUBLIC_URL = \"{{url}}\"\n",
            port_range()
        ),
    );
    // The template: never committed itself, no release yet; the preview builds its own.
    p.write(
        "stages/dev.toml",
        "[runtime]\nkind = \"local\"\ndriver = \"docker\"\n\n[apps.web]\nimage = \"web\"\nport = 18080\n\
         command = [\"/bin/busybox\", \"sh\", \"-c\", \"echo $PUBLIC_URL > /srv/url; exec /bin/busybox httpd -f -v -p $PORT -h /srv\"]\n\n\
         [apps.web.health]\npath = \"/\"\ninterval = \"200ms\"\ngrace_period = \"2s\"\n\n\
         [apps.web.deploy]\ntimeout = \"60s\"\ndrain = \"500ms\"\nstop_timeout = \"2s\"\n",
    );
    p.write(
        "src/Dockerfile",
        "FROM scratch\nLABEL ferry.test=1\nCOPY busybox /bin/busybox\nCOPY index.html /srv/index.html\n\
         CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-h\", \"/srv\"]\n",
    );
    p.write("src/index.html", "built for the preview\n");
    std::fs::copy("/bin/busybox", p.path().join("src/busybox")).expect("busybox-static must be installed");

    let up = p.run(&["preview", "up", "31", "--source", "src", "--branch", "feat/docker", "--yes"]);
    up.expect_code(0);
    let url = up.stdout().trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}\n{}", up.stderr());
    let port = port_of(&url);
    assert_ne!(port, 18080, "the preview's port comes from the range, not the template's");
    assert_eq!(get(port).as_deref(), Ok("built for the preview\n"));
    assert_eq!(crate::commit::get_path(port, "/url").as_deref().map(str::trim), Ok(url.as_str()), "{{url}} in env");

    // One container (the preview's scale), of the image built and pushed.
    let running = containers(&label, false);
    assert_eq!(running.len(), 1, "{running:?}");
    let rows = list(&p);
    let release = rows[0]["release"][0].as_str().unwrap().to_string();
    assert!(release.starts_with("web@sha256:"), "{rows:?}");
    let image = crate::local_docker::inspect(&running[0], "{{.Config.Image}}");
    assert!(image.contains(&format!("{}/web@sha256:", p.registry_namespace)), "{image}");
    assert!(!p.path().join(".ferry/state/dev.json").exists(), "the template is never committed");

    let down = p.run(&["preview", "down", "31"]);
    down.expect_code(0);
    assert!(!listening(&url), "nothing listens on {url} after down");
    assert!(containers(&label, true).is_empty(), "no container of the project is left");
    assert!(list(&p).is_empty());
}
