//! The dashboard in a real browser: Debian's headless Chromium driven through WebDriver
//! (`chromedriver`, with the fantoccini client) opens the overview, an app page and the
//! live view of a deploy, checks what a person sees there, and saves screenshots under
//! `target/ui-screenshots/` for a reviewer. Without Chromium the test fails under CI
//! (`CI=true`) and says it did not run elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::agent::free_port;
use crate::support::ui::UiServer;
use crate::ui::DeployedProject;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `chromedriver` on a free 127.0.0.1 port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = ureq::get(format!("{}/status", driver.url)).call().ok().and_then(|mut r| {
                r.body_mut()
                    .read_to_string()
                    .ok()
                    .filter(|b| b.contains("\"ready\":true") || b.contains("\"ready\": true"))
            });
            if ready.is_some() {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the browser is installed; under CI its absence is a failure, not a skip.
fn browser_installed() -> bool {
    let installed = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{CHROMIUM} and {CHROMEDRIVER} are needed for the browser tests (apt-get install chromium chromium-driver)"
        );
        eprintln!("NOT RUN: the browser test needs {CHROMIUM} and {CHROMEDRIVER}");
    }
    installed
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn browser(driver: &Driver) -> Client {
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
        }
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a browser session")
}

/// The visible text of the element at `css`.
async fn text(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

/// Wait (up to `within`) until the element at `css` shows `expected`.
async fn wait_for_text(client: &Client, css: &str, expected: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let seen = match client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if seen.contains(expected) {
            return seen;
        }
        if Instant::now() > deadline {
            let _ = save(client, "failure").await;
            panic!("`{expected}` never showed in {css}; it shows:\n{seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn save(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("a screenshot");
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

#[test]
fn a_person_sees_the_overview_an_app_and_a_deploy_as_it_happens() {
    if !browser_installed() {
        return;
    }
    let project = DeployedProject::deploy();
    let ui = UiServer::start(project.p.ferry());
    let driver = Driver::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = rt.block_on(async {
        let client = browser(&driver).await;
        let outcome = async {
            client.goto(&format!("{}/", ui.base)).await.unwrap();
            let stage = text(&client, "section#stage-dev").await;
            for expected in ["Stage dev", "web", "healthy", "1 / 1", "✓ succeeded"] {
                assert!(stage.contains(expected), "the overview shows {expected}:\n{stage}");
            }
            assert_eq!(text(&client, "h2.step").await, "Not in the pipeline");
            save(&client, "overview").await;

            client.find(Locator::LinkText("web")).await.unwrap().click().await.unwrap();
            wait_for_text(&client, "h1", "web in stage dev", Duration::from_secs(10)).await;
            let tasks = text(&client, "table.tasks").await;
            assert!(tasks.contains("RUNNING") && tasks.contains("HEALTHY"), "{tasks}");
            assert!(text(&client, "pre.logs").await.contains("hello from version 1"));
            assert!(text(&client, "table.history").await.contains("v1"));
            save(&client, "app").await;

            client.goto(&format!("{}/stages/dev/live", ui.base)).await.unwrap();
            wait_for_text(&client, "#connection", "live: watching for deploys", Duration::from_secs(10)).await;
            project.write_stage(1, "2");
            let mut commit = tokio::process::Command::from(project.p.ferry());
            let commit = commit.args(["commit", "--yes"]).output().await.expect("run ferry commit");
            assert!(commit.status.success(), "{}", String::from_utf8_lossy(&commit.stderr));
            wait_for_text(&client, "#timeline", "web v2 started", Duration::from_secs(10)).await;
            wait_for_text(&client, "#timeline", "web v2 succeeded", Duration::from_secs(10)).await;
            wait_for_text(&client, "#operations", "web/deploy", Duration::from_secs(10)).await;
            wait_for_text(&client, "#logs", "hello from version 2", Duration::from_secs(10)).await;
            wait_for_text(&client, "#operations", "done", Duration::from_secs(10)).await;
            let logs = text(&client, "#logs").await;
            assert!(!logs.contains("replaced by a new revision"), "only the new task's output:\n{logs}");
            save(&client, "live").await;
        };
        // The session is closed (and its browser with it) whether the checks passed or not.
        let checked = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
        client.close().await.ok();
        checked
    });
    project.p.run(&["down"]).expect_code(0);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
