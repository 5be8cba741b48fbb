//! `ferry ui` against a project with committed deployments on the local runtime: the real
//! binary on a free 127.0.0.1 port, asked over HTTP what a person and a CI system would ask.

use ferry::runtime::local::Layout;

use crate::support::agent::{free_port, AgentGuard};
use crate::support::ui::UiServer;
use crate::support::TestProject;

/// The app: prints its version, then serves 200 on every path.
pub const APP_PY: &str = r#"
import http.server, os
port = int(os.environ["PORT"])
print("hello from version", os.environ.get("VERSION", "?"), flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, fmt, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// A project `shop` with one stage `dev` of one app `web` (release 1 of a pushed image),
/// committed on the local runtime; its agent is stopped when the value is dropped.
pub struct DeployedProject {
    pub _guard: AgentGuard,
    pub p: TestProject,
    pub digest: String,
    pub port: u16,
}

impl DeployedProject {
    pub fn deploy() -> DeployedProject {
        let p = TestProject::empty();
        p.write("ferry.toml", "[project]\nname = \"shop\"\n");
        p.write("image/app.py", APP_PY);
        let guard = AgentGuard { layout: Layout::new(p.path()) };
        let digest = p.run(&["image", "push", "image", "--repo", "web"]).expect_code(0).stdout().trim().to_string();
        let project = DeployedProject { _guard: guard, p, digest, port: free_port() };
        project.write_stage(1, "1");
        project.p.run(&["commit", "--yes"]).expect_code(0);
        project
    }

    /// The stage file with `active` as the active release of `web` and `VERSION=version`.
    pub fn write_stage(&self, active: u64, version: &str) {
        self.p.write(
            "stages/dev.toml",
            &format!(
                "[apps.web]\nimage = \"web\"\nactive = {active}\nscale = 1\ncommand = [\"python3\", \"app.py\"]\n\
                 port = {port}\n\n[apps.web.releases]\n1 = \"{digest}\"\n\n[apps.web.env]\nVERSION = \"{version}\"\n\n\
                 [apps.web.health]\npath = \"/\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\nhealthy_threshold = 1\n\n\
                 [apps.web.deploy]\ntimeout = \"30s\"\ndrain = \"200ms\"\nstop_timeout = \"2s\"\n",
                port = self.port,
                digest = self.digest,
            ),
        );
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn ui_serves_the_overview_app_and_history_of_committed_deployments() {
    let project = DeployedProject::deploy();
    let ui = UiServer::start(project.p.ferry());

    let (status, body) = ui.get("/api/stages");
    assert_eq!(status, 200, "{body}");
    let web = &json(&body)["stages"][0]["apps"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["release"], 1);
    assert_eq!((web["running"].as_u64(), web["desired"].as_u64()), (Some(1), Some(1)), "{web}");
    assert_eq!(web["health"], "healthy", "{web}");
    assert_eq!(web["last_deployment"]["number"], 1);
    assert_eq!(web["last_deployment"]["status"], "succeeded");

    let (status, page) = ui.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("Stage dev") && page.contains("✓ succeeded") && page.contains("1 / 1"), "{page}");

    let (_, app) = ui.get("/api/stages/dev/apps/web");
    let app = json(&app);
    assert_eq!(app["service"]["tasks"][0]["last_status"], "RUNNING", "{app}");
    assert!(app["logs"].as_array().unwrap().iter().any(|l| l["text"] == "hello from version 1"), "{app}");
    let (_, page) = ui.get("/stages/dev/apps/web");
    for expected in ["RUNNING", "HEALTHY", "hello from version 1", "v1", "Health Status"] {
        assert!(page.contains(expected), "{expected} in\n{page}");
    }

    let (status, history) = ui.get("/api/stages/dev/apps/web/history");
    assert_eq!(status, 200);
    assert_eq!(json(&history)["deployments"][0]["status"], "succeeded");

    // Read-only: the server was started without a token.
    let report = format!(r#"{{"app":"web","digest":"{}","context":"ci/tests","state":"success"}}"#, project.digest);
    assert_eq!(ui.post_json("/api/status", &report, Some("anything")).0, 403);
    project.p.run(&["down"]).expect_code(0);
}

#[test]
fn a_ci_system_reports_a_status_check_with_the_token() {
    let project = DeployedProject::deploy();
    let token = format!("token-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = project.p.ferry();
    cmd.env("FERRY_UI_TOKEN", &token);
    let ui = UiServer::start(cmd);
    let report = format!(
        r#"{{"app":"web","digest":"{}","context":"ci/tests","state":"success","description":"412 tests"}}"#,
        project.digest
    );
    assert_eq!(ui.post_json("/api/status", &report, Some("wrong")).0, 401);
    let (status, body) = ui.post_json("/api/status", &report, Some(&token));
    assert_eq!(status, 201, "{body}");
    let listed = project.p.run(&["status", "list", "web", &project.digest]);
    assert!(listed.expect_code(0).stdout().contains("ci/tests  success"), "{}", listed.stdout());
    let (status, body) = ui.post_json("/api/status", "{\"app\": ", Some(&token));
    assert_eq!(status, 400);
    assert!(json(&body)["error"].as_str().unwrap().contains("JSON"), "{body}");
    project.p.run(&["down"]).expect_code(0);
}

/// `[ui] token` in ferry.toml: a reference read at start, never a value; the environment
/// variable wins over it.
#[test]
fn the_token_comes_from_a_reference_in_ferry_toml_and_the_variable_wins() {
    let p = TestProject::empty();
    let token = format!("file-token-{}", uuid::Uuid::new_v4().simple());
    p.write("ferry.toml", "[project]\nname = \"shop\"\n\n[ui]\ntoken = \"file:secrets/ui-token\"\n");
    p.write("secrets/ui-token", &format!("{token}\n"));
    let digest = format!("sha256:{}", "b".repeat(64));
    p.write("stages/dev.toml", &format!("[apps.web]\nimage = \"web\"\n\n[apps.web.releases]\n1 = \"{digest}\"\n"));
    let report = format!(r#"{{"app":"web","digest":"{digest}","context":"ci/tests","state":"success"}}"#);
    {
        let ui = UiServer::start(p.ferry());
        assert_eq!(ui.post_json("/api/status", &report, Some("wrong")).0, 401);
        let (status, body) = ui.post_json("/api/status", &report, Some(&token));
        assert_eq!(status, 201, "{body}");
        assert!(!body.contains(&token), "{body}");
    }
    // FERRY_UI_TOKEN wins: the file's token no longer writes.
    let mut cmd = p.ferry();
    cmd.env("FERRY_UI_TOKEN", "from-the-environment");
    let ui = UiServer::start(cmd);
    assert_eq!(ui.post_json("/api/status", &report, Some(&token)).0, 401);
    assert_eq!(ui.post_json("/api/status", &report, Some("from-the-environment")).0, 201);
}

/// A reference that cannot be read stops `ferry ui` with an error naming it; a plain value
/// or an AWS reference in `[ui] token` is a located error that never echoes the value.
#[test]
fn a_bad_ui_token_is_a_located_error_without_the_value() {
    let p = TestProject::empty();
    p.write("ferry.toml", "[project]\nname = \"shop\"\n\n[ui]\ntoken = \"env:FERRY_TEST_UNSET_TOKEN\"\n");
    let run = p.run(&["ui", "--listen", "127.0.0.1:0"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("error: [ui] token: env:FERRY_TEST_UNSET_TOKEN is not set in ferry's environment"),
        "{}",
        run.stderr()
    );

    p.write("ferry.toml", "[project]\nname = \"shop\"\n\n[ui]\ntoken = \"hunter2-plain-value\"\n");
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("error: `[ui] token` is a plain value, not a reference"), "{err}");
    assert!(err.contains("--> ferry.toml:5:1"), "{err}");
    assert!(!err.contains("hunter2"), "the value is never printed: {err}");

    p.write("ferry.toml", "[project]\nname = \"shop\"\n\n[ui]\ntoken = \"arn:aws:ssm:eu-central-1:1:parameter/ui\"\n");
    let run = p.run(&["validate"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("error: `[ui] token` cannot be an AWS reference"), "{err}");
    assert!(err.contains("--> ferry.toml:5:9"), "{err}");
}
