//! Handler tests: every endpoint called on the router (`tower::ServiceExt::oneshot`, no
//! socket) over a temporary project with recorded deployments (succeeded, failed, aborted),
//! status checks, and planted secret values that must never come back.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::config::{self, Project};
use crate::pipeline::{open_records, CheckState, StatusReport, StatusStore};
use crate::plan::fixture;
use crate::state::{open_store, DeploymentStatus, LockInfo, StageState};

const ENV_SECRET: &str = "planted-sensitive-env-5b1d";
const FILE_SECRET: &str = "planted-file-secret-91c3";
const TOKEN: &str = "planted-ui-token-77aa";

/// A project `shop`: steps development (dev) → production (prod, requiring ci/tests and
/// qa/signoff); app `web` in both, with a sensitive env value and a `file:` secret.
struct Fixture {
    dir: tempfile::TempDir,
    project: Project,
}

fn stage_file(active: u64, releases: &[u64]) -> String {
    let mut s = format!(
        "[apps.web]\nimage = \"web\"\nactive = {active}\nscale = 2\nport = 18080\nsensitive_env = [\"API_KEY\"]\n\n\
         [apps.web.releases]\n"
    );
    for r in releases {
        s.push_str(&format!("{r} = \"{}\"\n", fixture::digest("web", *r)));
    }
    s.push_str(&format!(
        "\n[apps.web.env]\nAPI_KEY = \"{ENV_SECRET}\"\nMODE = \"demo\"\n\n[apps.web.secrets]\nDB_PASSWORD = \
         \"file:secrets/db\"\n"
    ));
    s
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("stages")).unwrap();
        std::fs::create_dir_all(root.join("secrets")).unwrap();
        std::fs::write(
            root.join("ferry.toml"),
            "[project]\nname = \"shop\"\n\n[[pipeline.steps]]\nname = \"development\"\nstages = [\"dev\"]\n\n\
             [[pipeline.steps]]\nname = \"production\"\nstages = [\"prod\"]\nrequired_checks = [\"ci/tests\", \
             \"qa/signoff\"]\n",
        )
        .unwrap();
        std::fs::write(root.join("secrets/db"), format!("{FILE_SECRET}\n")).unwrap();
        std::fs::write(root.join("stages/prod.toml"), stage_file(1, &[1])).unwrap();
        // dev: v1 activates release 1, v2 (release 2) failed, v3 (release 2) aborted; the file
        // now asks for release 3.
        std::fs::write(root.join("stages/dev.toml"), stage_file(1, &[1, 2])).unwrap();
        let project = config::load_project(root).unwrap();
        let store = open_store(&project).unwrap();
        let dev = config::load_stage(&project, "dev").unwrap();
        let mut state = StageState::new("dev");
        fixture::apply(&dev, &mut state);
        let web = state.apps.get_mut("web").unwrap();
        let mut failed = web.history[0].clone();
        failed.number = 2;
        failed.release = 2;
        failed.digest = fixture::digest("web", 2);
        failed.description = "Activate release 2".into();
        failed.status = DeploymentStatus::Failed;
        failed.reason = Some("task 1a2b exited with code 3\nlast line: boom".into());
        failed.source.commit = Some("ef5c71a0123456789".into());
        failed.source.author = Some("Ada Lovelace".into());
        let mut aborted = failed.clone();
        aborted.number = 3;
        aborted.status = DeploymentStatus::Aborted;
        aborted.reason = Some("aborted by `ferry abort`".into());
        web.history.push(failed);
        web.history.push(aborted);
        state.serial = 0;
        store.write(&mut state).unwrap();
        // …and another MODE, so the plan shows the env (with the sensitive value masked).
        let next = stage_file(3, &[1, 2, 3]).replace("MODE = \"demo\"", "MODE = \"live\"");
        std::fs::write(root.join("stages/dev.toml"), next).unwrap();
        let prod = config::load_stage(&project, "prod").unwrap();
        let mut prod_state = StageState::new("prod");
        fixture::apply(&prod, &mut prod_state);
        prod_state.serial = 0;
        store.write(&mut prod_state).unwrap();
        StatusStore::new(open_records(&project).unwrap())
            .set(
                "web",
                StatusReport {
                    digest: fixture::digest("web", 3),
                    context: "ci/tests".into(),
                    state: CheckState::Success,
                    description: Some("412 tests".into()),
                    url: None,
                    at: chrono::Utc::now(),
                },
            )
            .unwrap();
        Fixture { dir, project }
    }

    fn router(&self, token: Option<&str>) -> axum::Router {
        router(UiState::new(self.project.clone(), token.and_then(Token::new)))
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn call(router: &axum::Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn get(router: &axum::Router, path: &str) -> Answer {
    call(router, Request::get(path).body(Body::empty()).unwrap()).await
}

fn post_status(body: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::post("/api/status").header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).unwrap()
}

fn valid_report(state: &str) -> String {
    serde_json::json!({
        "app": "web", "digest": fixture::digest("web", 3).to_string(), "context": "qa/signoff", "state": state,
        "description": "signed off", "url": "https://qa.example/42"
    })
    .to_string()
}

#[tokio::test]
async fn the_overview_shows_every_stage_by_step_with_its_apps() {
    let f = Fixture::new();
    let r = f.router(None);
    let api = get(&r, "/api/stages").await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let doc = api.json();
    assert_eq!(doc["project"], "shop");
    let stages = doc["stages"].as_array().unwrap();
    assert_eq!(stages.iter().map(|s| s["name"].as_str().unwrap()).collect::<Vec<_>>(), ["dev", "prod"]);
    assert_eq!(stages[0]["step"], "development");
    let web = &stages[0]["apps"][0];
    assert_eq!(web["release"], 3);
    assert_eq!(web["deployed_release"], 1);
    assert_eq!(web["health"], "not running");
    assert_eq!(web["last_deployment"]["number"], 3);
    assert_eq!(web["last_deployment"]["status"], "aborted");
    assert_eq!(stages[1]["apps"][0]["last_deployment"]["status"], "succeeded");

    let page = get(&r, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    for expected in [
        "Step development",
        "Step production",
        "Stage dev",
        "href=\"/stages/dev/apps/web\"",
        fixture::digest("web", 3).short(),
        "(runs 1)",
        "⊘ aborted",
        "0 / 0",
    ] {
        assert!(page.body.contains(expected), "{expected} in\n{}", page.body);
    }
    assert!(page.body.find("Stage dev").unwrap() < page.body.find("Stage prod").unwrap());
}

#[tokio::test]
async fn the_app_page_lists_deployments_with_failures_marked_releases_and_tasks() {
    let f = Fixture::new();
    let r = f.router(None);
    let api = get(&r, "/api/stages/dev/apps/web").await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let doc = api.json();
    let numbers: Vec<u64> =
        doc["deployments"].as_array().unwrap().iter().map(|d| d["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [3, 2, 1], "newest first");
    assert_eq!(doc["deployments"][1]["source"]["author"], "Ada Lovelace");
    assert_eq!(doc["releases"][0]["id"], 3);
    assert_eq!(doc["releases"][0]["note"], "active, not applied yet");
    assert!(doc["deployments"][0].get("config").is_none(), "no config snapshot");

    let page = get(&r, "/stages/dev/apps/web").await;
    assert_eq!(page.status, StatusCode::OK);
    for expected in [
        "<tr class=\"deployment status-failed\">",
        "<tr class=\"deployment status-aborted\">",
        "✗ failed",
        "⊘ aborted",
        "✓ succeeded",
        "ef5c71a",
        "Ada Lovelace",
        "task 1a2b exited with code 3",
        "active, not applied yet",
        "The runtime runs nothing of this app.",
    ] {
        assert!(page.body.contains(expected), "{expected} in\n{}", page.body);
    }
}

#[tokio::test]
async fn the_history_answer_is_every_deployment_newest_first() {
    let f = Fixture::new();
    let r = f.router(None);
    let doc = get(&r, "/api/stages/dev/apps/web/history").await.json();
    assert_eq!(doc["stage"], "dev");
    let statuses: Vec<&str> =
        doc["deployments"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["aborted", "failed", "succeeded"]);
    assert_eq!(doc["deployments"][1]["reason"], "task 1a2b exited with code 3\nlast line: boom");
}

#[tokio::test]
async fn the_pipeline_says_which_checks_block_a_promotion() {
    let f = Fixture::new();
    let r = f.router(None);
    let doc = get(&r, "/api/pipeline").await.json();
    assert_eq!(doc["steps"][1]["required_checks"], serde_json::json!(["ci/tests", "qa/signoff"]));
    let p = &doc["promotions"][0];
    assert_eq!(
        (p["stage"].as_str(), p["app"].as_str(), p["to_step"].as_str()),
        (Some("dev"), Some("web"), Some("production"))
    );
    assert_eq!(p["checks"][0]["state"], "success");
    assert!(p["checks"][1]["state"].is_null());
    assert_eq!(p["promotable"], false);
    assert_eq!(p["note"], "qa/signoff: missing (no status reported)");

    let page = get(&r, "/pipeline").await;
    for expected in
        ["1. development", "2. production", "requires: ci/tests, qa/signoff", "qa/signoff: missing", "check-ok"]
    {
        assert!(page.body.contains(expected), "{expected} in\n{}", page.body);
    }

    // Reported, the check lets it through.
    let token_router = f.router(Some(TOKEN));
    let set = call(&token_router, post_status(&valid_report("success"), Some(TOKEN))).await;
    assert_eq!(set.status, StatusCode::CREATED, "{}", set.body);
    let doc = get(&r, "/api/pipeline").await.json();
    assert_eq!(doc["promotions"][0]["promotable"], true, "{doc}");
    assert_eq!(doc["promotions"][0]["note"], "ferry promote web --from dev");
}

#[tokio::test]
async fn the_plan_shows_the_working_tree_as_the_text_plan_does() {
    let f = Fixture::new();
    let r = f.router(None);
    let page = get(&r, "/plan").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Plan: 1 to deploy, 0 to scale, 0 to add, 0 to remove."), "{}", page.body);
    assert!(page.body.contains("Stage `dev`") && page.body.contains("Stage `prod`"), "{}", page.body);
    let table = page.body.find("APP  ").expect("the per-app table");
    assert!(table < page.body.find("Changeset:").unwrap(), "per-app table first");
    let doc = get(&r, "/api/plan").await.json();
    assert_eq!(doc["summary"]["deploy"], 1, "{doc}");
}

#[tokio::test]
async fn writes_need_a_configured_token_and_the_right_one() {
    let f = Fixture::new();
    let read_only = f.router(None);
    let r = call(&read_only, post_status(&valid_report("success"), Some(TOKEN))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("read-only"));

    let r_tok = f.router(Some(TOKEN));
    let missing = call(&r_tok, post_status(&valid_report("success"), None)).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer");
    let wrong = call(&r_tok, post_status(&valid_report("success"), Some("guess"))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.body.contains("guess"), "the offered token is not echoed");
    let log = StatusStore::new(open_records(&f.project).unwrap()).log("web").unwrap();
    assert_eq!(log.reports.len(), 1, "refused writes stored nothing");

    let ok = call(&r_tok, post_status(&valid_report("failure"), Some(TOKEN))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.json()["state"], "failure");
    let log = StatusStore::new(open_records(&f.project).unwrap()).log("web").unwrap();
    let latest = log.latest(&fixture::digest("web", 3));
    let r = latest["qa/signoff"];
    assert_eq!(
        (r.state, r.description.as_deref(), r.url.as_deref()),
        (CheckState::Failure, Some("signed off"), Some("https://qa.example/42"))
    );
}

#[tokio::test]
async fn a_bad_request_gets_a_json_error() {
    let f = Fixture::new();
    let r = f.router(Some(TOKEN));
    let cases: Vec<(String, StatusCode, &str)> = vec![
        ("{".into(), StatusCode::BAD_REQUEST, "JSON"),
        (valid_report("success").replace("\"qa/signoff\"", "\"\""), StatusCode::BAD_REQUEST, "context"),
        (valid_report("green"), StatusCode::BAD_REQUEST, "not a check state"),
        (valid_report("success").replace("sha256:", "md5:"), StatusCode::BAD_REQUEST, "digest"),
        (valid_report("success").replace("\"url\"", "\"colour\""), StatusCode::UNPROCESSABLE_ENTITY, "colour"),
        (r#"{"app": "web"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "missing field"),
        (format!("{{\"app\": \"{}\"}}", "w".repeat(BODY_LIMIT)), StatusCode::PAYLOAD_TOO_LARGE, "length limit"),
    ];
    for (body, status, says) in cases {
        let a = call(&r, post_status(&body, Some(TOKEN))).await;
        assert_eq!(a.status, status, "{body:.80}: {}", a.body);
        let error = a.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{says} in {error}");
    }
    let no_type = call(
        &r,
        Request::post("/api/status")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from(valid_report("success")))
            .unwrap(),
    )
    .await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(no_type.json()["error"].is_string());

    for (path, status) in [
        ("/api/stages/nope/apps/web", StatusCode::NOT_FOUND),
        ("/api/stages/dev/apps/nope", StatusCode::NOT_FOUND),
        ("/api/stages/dev/apps/nope/history", StatusCode::NOT_FOUND),
        ("/api/stages/nope/events", StatusCode::NOT_FOUND),
        ("/api/nothing", StatusCode::NOT_FOUND),
        ("/api/status", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let a = get(&r, path).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert!(a.json()["error"].is_string(), "{path}");
    }
    let page = get(&r, "/stages/dev/apps/nope").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("stage `dev` has no app `nope`"), "{}", page.body);
}

#[tokio::test]
async fn pages_run_only_their_own_script() {
    let f = Fixture::new();
    let r = f.router(None);
    let page = get(&r, "/stages/dev/live").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(page.body.contains("data-events=\"/api/stages/dev/events\""), "{}", page.body);
    assert!(page.body.contains("<script src=\"/assets/live.js\">"));
    let js = get(&r, "/assets/live.js").await;
    assert!(js.body.contains("new EventSource") && !js.body.contains("innerHTML"));
    assert!(get(&r, "/assets/ferry.css").await.body.contains(".status-failed"));
}

/// The first events of a stream, read for up to `wait`.
async fn first_events(router: &axum::Router, path: &str, wait: Duration) -> (StatusCode, String) {
    let response = router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let mut body = response.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Some(data) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(data));
        }
        if text.contains("event: plan") && text.contains("event: deployment") {
            break;
        }
    }
    (status, text)
}

#[tokio::test]
async fn the_event_stream_tells_a_commit_its_plan_and_deployments_in_progress() {
    let f = Fixture::new();
    let store = open_store(&f.project).unwrap();
    let mut state = store.read("dev").unwrap().unwrap();
    let mut started = state.apps["web"].history[0].clone();
    started.number = 4;
    started.release = 3;
    started.status = DeploymentStatus::InProgress;
    started.description = "Activate release 3".into();
    started.finished_at = None;
    state.apps.get_mut("web").unwrap().history.push(started);
    store.write(&mut state).unwrap();
    store.try_lock("dev", &LockInfo::for_this_process("ferry commit --yes")).unwrap();
    let (status, text) = first_events(&f.router(None), "/api/stages/dev/events", Duration::from_secs(10)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("event: commit") && text.contains("commit started: `ferry commit --yes`"), "{text}");
    assert!(text.contains("event: plan") && text.contains("\"web/deploy\""), "{text}");
    assert!(text.contains("event: deployment") && text.contains("web v4 started: Activate release 3"), "{text}");
    assert!(!text.contains("web v2"), "settled deployments are not news: {text}");
}

#[test]
fn deployments_and_tasks_become_events_when_they_change() {
    let stage = fixture::stage("dev", [fixture::app("web", 1)]);
    let before = fixture::applied(&stage);
    let mut after = before.clone();
    let mut d = after.apps["web"].history[0].clone();
    d.number = 2;
    d.status = DeploymentStatus::Failed;
    d.reason = Some("unhealthy\nmore".into());
    d.description = "Scale 1 → 2".into();
    after.apps.get_mut("web").unwrap().history.push(d);
    let events = live::deployment_events(Some(&before), &after);
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        live::LiveEvent::Deployment { number, text, .. } => {
            assert_eq!(*number, 2);
            assert_eq!(text, "web v2 failed: Scale 1 → 2 — unhealthy");
        }
        other => panic!("{other:?}"),
    }
    assert!(live::deployment_events(Some(&after), &after).is_empty());
}

#[tokio::test]
async fn no_page_or_answer_holds_a_secret_value() {
    let f = Fixture::new();
    let r = f.router(Some(TOKEN));
    let store = open_store(&f.project).unwrap();
    store.try_lock("dev", &LockInfo::for_this_process("ferry commit")).unwrap();
    let mut answers = Vec::new();
    for path in [
        "/",
        "/stages/dev/apps/web",
        "/stages/prod/apps/web",
        "/stages/dev/live",
        "/pipeline",
        "/plan",
        "/api/stages",
        "/api/stages/dev/apps/web",
        "/api/stages/dev/apps/web/history",
        "/api/pipeline",
        "/api/plan",
        "/api/nothing",
        "/nothing",
        "/assets/live.js",
    ] {
        let a = get(&r, path).await;
        answers.push((path.to_string(), a.body));
    }
    answers.push(("events".into(), first_events(&r, "/api/stages/dev/events", Duration::from_secs(3)).await.1));
    let set = call(&r, post_status(&valid_report("success"), Some(TOKEN))).await;
    answers.push(("POST /api/status".into(), set.body));
    let wrong = call(&r, post_status(&valid_report("success"), Some("nope"))).await;
    answers.push(("POST /api/status (401)".into(), wrong.body));
    // The value state keeps is the one that must not come back.
    let recorded = std::fs::read_to_string(f.dir.path().join(".ferry/state/dev.json")).unwrap();
    assert!(recorded.contains(ENV_SECRET), "the fixture keeps a sensitive value in state");
    assert!(answers.iter().any(|(_, body)| body.contains("API_KEY")), "the plan names the variable");
    for (path, body) in &answers {
        for secret in [ENV_SECRET, FILE_SECRET, TOKEN] {
            assert!(!body.contains(secret), "{secret} leaked into {path}:\n{body}");
        }
    }
}
