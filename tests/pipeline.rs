//! Pipelines end to end with the real binary: promotion with fan-out, required status
//! checks, config staying per stage, `promote --commit` on the local runtime, `images sync`
//! following a tag, and the CI examples parsing with the real command line.

use std::io::Write;
use std::path::Path;

use clap::Parser;
use ferry::runtime::local::Layout;
use serde_json::Value;

use crate::support::agent::{free_port, AgentGuard, APP_PY};
use crate::support::{repo_root, TestProject};

/// A project with development → production (production-eu, production-us), its agent
/// guard dropped first.
struct Pipeline {
    _guard: AgentGuard,
    p: TestProject,
}

const PROJECT: &str = r#"[project]
name = "shop"

[[pipeline.steps]]
name = "development"
stages = ["development"]

[[pipeline.steps]]
name = "production"
stages = ["production-eu", "production-us"]
required_checks = ["ci/tests", "qa/signoff"]
"#;

impl Pipeline {
    fn new() -> Pipeline {
        let p = TestProject::empty();
        p.write("ferry.toml", PROJECT);
        Pipeline { _guard: AgentGuard { layout: Layout::new(p.path()) }, p }
    }

    /// Push an image of the test app answering `version`; returns its digest.
    fn push(&self, version: &str, tag: Option<&str>) -> String {
        let dir = format!("images/{version}");
        self.p.write(&format!("{dir}/app.py"), APP_PY);
        self.p.write(&format!("{dir}/VERSION"), version);
        let mut args = vec!["image", "push", &dir, "--repo", "web"];
        if let Some(t) = tag {
            args.extend(["--tag", t]);
        }
        let run = self.p.run(&args);
        run.expect_code(0);
        run.stdout().trim().to_string()
    }

    /// A stage file: app `web` with `releases`, `active`, its own env and scale.
    fn stage(&self, name: &str, releases: &[(u64, &str)], active: u64, extra: &str) {
        let mut text = format!(
            "# {name}: reviewed by the {name} team\n[apps.web]\nimage = \"web\"\nactive = {active}  # keep this comment\n\
             scale = 1\ncommand = [\"python3\", \"app.py\"]\nport = {port}\n{extra}\n[apps.web.releases]\n",
            port = free_port()
        );
        for (id, d) in releases {
            text.push_str(&format!("{id} = \"{d}\"\n"));
        }
        text.push_str(&format!(
            "\n[apps.web.env]\nVERSION = \"{name}\"\n\n[apps.web.health]\npath = \"/health\"\ninterval = \"300ms\"\n\
             timeout = \"250ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\ngrace_period = \"3s\"\n\n\
             [apps.web.deploy]\ntimeout = \"30s\"\ndrain = \"200ms\"\nstop_timeout = \"2s\"\n"
        ));
        self.p.write(&format!("stages/{name}.toml"), &text);
    }

    fn run(&self, args: &[&str]) -> crate::support::Run {
        self.p.run(args)
    }

    fn state(&self, stage: &str) -> Value {
        serde_json::from_str(&self.p.read(&format!(".ferry/state/{stage}.json"))).expect("state parses")
    }
}

#[test]
fn promotion_fans_out_after_required_checks_and_keeps_each_stages_config() {
    let t = Pipeline::new();
    let (d1, d2) = (t.push("one", None), t.push("two", None));
    t.stage("development", &[(1, &d1), (2, &d2)], 2, "");
    t.stage("production-eu", &[(1, &d1)], 1, "");
    // production-us already declares the digest (as release 5): it is re-activated.
    t.stage("production-us", &[(1, &d1), (5, &d2)], 1, "");
    let eu_before = t.p.read("stages/production-eu.toml");

    // Both checks missing: refused, nothing edited.
    let run = t.run(&["promote", "web", "--from", "development"]);
    run.expect_code(1);
    assert!(run.stderr().contains("ci/tests: missing"), "{}", run.stderr());
    assert!(run.stderr().contains("qa/signoff: missing"), "{}", run.stderr());
    assert_eq!(t.p.read("stages/production-eu.toml"), eu_before);

    // One failed: refused with its description and URL.
    t.run(&["status", "set", "web", &d2, "ci/tests", "success"]).expect_code(0);
    t.run(&["status", "set", "web", &d2, "qa/signoff", "failure", "-d", "checkout broken", "-u", "https://qa/7"])
        .expect_code(0);
    let run = t.run(&["promote", "web", "--from", "development"]);
    run.expect_code(1);
    assert!(run.stderr().contains("qa/signoff: failure — checkout broken (https://qa/7)"), "{}", run.stderr());
    assert!(!run.stderr().contains("ci/tests"), "ci/tests passed: {}", run.stderr());
    assert_eq!(t.p.read("stages/production-eu.toml"), eu_before);

    // The latest report per context counts.
    t.run(&["status", "set", "web", &d2, "qa/signoff", "success"]).expect_code(0);
    let list = t.run(&["status", "list", "web", &d2, "--json"]);
    let doc: Value = serde_json::from_str(&list.expect_code(0).stdout()).unwrap();
    assert_eq!(doc["latest"].as_array().unwrap().len(), 2);
    assert_eq!(doc["history"].as_array().unwrap().len(), 3);

    let run = t.run(&["promote", "web", "--from", "development"]);
    run.expect_code(0);
    let eu = t.p.read("stages/production-eu.toml");
    assert!(eu.contains(&format!("2 = \"{d2}\"")), "{eu}");
    assert!(eu.contains("active = 2  # keep this comment"), "{eu}");
    assert!(eu.contains("VERSION = \"production-eu\""), "config is the stage's own: {eu}");
    let us = t.p.read("stages/production-us.toml");
    assert!(us.contains("active = 5  # keep this comment"), "{us}");
    assert_eq!(us.matches(&d2).count(), 1, "not duplicated: {us}");
    assert!(us.contains("VERSION = \"production-us\""), "{us}");
    assert!(run.stdout().contains("+2 = \""), "prints the diffs: {}", run.stdout());
    assert!(run.stderr().contains("production-us: re-activated release 5"), "{}", run.stderr());

    // The plan names the promotion; promoting again changes nothing.
    let plan = t.run(&["plan", "-s", "production-eu"]);
    assert!(plan.stdout().contains("Promotion from development (release 2)"), "{}", plan.stdout());
    let again = t.run(&["promote", "web", "--from", "development"]);
    again.expect_code(0);
    assert!(again.stderr().contains("production-eu: already runs it as release 2"), "{}", again.stderr());
    assert_eq!(t.p.read("stages/production-eu.toml"), eu);

    let show: Value = serde_json::from_str(&t.run(&["pipeline", "show", "--json"]).expect_code(0).stdout()).unwrap();
    let prod = &show["steps"][1];
    assert_eq!(prod["required_checks"], serde_json::json!(["ci/tests", "qa/signoff"]));
    assert_eq!(prod["stages"][0]["differs_from_previous"], false);
    assert_eq!(prod["stages"][0]["apps"][0]["digest"], d2.as_str());
    let checks = t.run(&["pipeline", "checks", "production"]);
    assert_eq!(checks.expect_code(0).stdout(), "ci/tests\nqa/signoff\n");
}

/// `ferry status set --json -` reads the check from stdin, so any CI can pipe its result;
/// a bad document is refused with where and what to send.
#[test]
fn status_set_reads_a_check_as_json_on_stdin() {
    let t = Pipeline::new();
    let d = t.push("one", None);
    for stage in ["development", "production-eu", "production-us"] {
        t.stage(stage, &[(1, &d)], 1, "");
    }
    let set = |stdin: &str| {
        let mut child =
            t.p.ferry()
                .args(["status", "set", "--json", "-"])
                .env_remove("CI")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        crate::support::Run(child.wait_with_output().unwrap())
    };
    let check = format!(
        r#"{{"app": "web", "digest": "{d}", "context": "ci/tests", "state": "failure",
            "description": "2 failed", "url": "https://ci/9"}}"#
    );
    set(&check).expect_code(0);
    let list = t.run(&["status", "list", "web", &d, "--json"]);
    let doc: Value = serde_json::from_str(&list.expect_code(0).stdout()).unwrap();
    let latest = &doc["latest"][0];
    assert_eq!((latest["context"].as_str(), latest["state"].as_str()), (Some("ci/tests"), Some("failure")), "{doc}");
    assert_eq!((latest["description"].as_str(), latest["url"].as_str()), (Some("2 failed"), Some("https://ci/9")));

    let bad = set(&format!(r#"{{"app": "web", "digest": "{d}", "context": "ci/tests", "state": "green"}}"#));
    bad.expect_code(1);
    assert!(bad.stderr().starts_with("error: <stdin>:1:"), "{}", bad.stderr());
    assert!(bad.stderr().contains("unknown variant `green`"), "{}", bad.stderr());
    assert!(!bad.stderr().contains(" at line "), "the position is said once: {}", bad.stderr());
    assert!(bad.stderr().contains("hint: send one JSON object"), "{}", bad.stderr());
    // Arguments and --json do not mix.
    t.run(&["status", "set", "web", "--json", "-"]).expect_code(2);
}

/// With the local backend, a refusal for a missing check says that checks do not travel
/// between CI jobs, and points to the S3 backend; `status set` in CI says so too.
#[test]
fn a_refusal_with_the_local_backend_says_checks_stay_on_this_machine() {
    let t = Pipeline::new();
    let (d1, d) = (t.push("one", None), t.push("two", None));
    t.stage("development", &[(1, &d1), (2, &d)], 2, "");
    t.stage("production-eu", &[(1, &d1)], 1, "");
    t.stage("production-us", &[(1, &d1)], 1, "");
    let run = t.run(&["promote", "web", "--from", "development"]);
    run.expect_code(1);
    assert!(run.stderr().contains("ci/tests: missing"), "{}", run.stderr());
    assert!(
        run.stderr().contains("checks reported by another CI job or machine are not seen here"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("[state] backend = \"s3\""), "{}", run.stderr());

    let in_ci = crate::support::Run(
        t.p.ferry().args(["status", "set", "web", &d, "ci/tests", "success"]).env("CI", "true").output().unwrap(),
    );
    in_ci.expect_code(0);
    assert!(
        in_ci.stderr().contains("note: this project keeps state and status checks in .ferry/"),
        "{}",
        in_ci.stderr()
    );
}

#[test]
fn promote_commit_deploys_every_target_stage_as_a_promotion() {
    let t = Pipeline::new();
    let (d1, d2) = (t.push("one", None), t.push("two", None));
    t.stage("development", &[(1, &d1), (2, &d2)], 2, "");
    t.stage("production-eu", &[(1, &d1)], 1, "");
    t.stage("production-us", &[(1, &d1)], 1, "");
    for stage in ["production-eu", "production-us"] {
        t.run(&["commit", "-s", stage, "--yes", "--progress", "plain"]).expect_code(0);
    }
    for context in ["ci/tests", "qa/signoff"] {
        t.run(&["status", "set", "web", &d2, context, "success"]).expect_code(0);
    }
    let run = t.run(&["promote", "web", "--from", "development", "--commit"]);
    run.expect_code(0);
    assert!(run.stdout().contains("production-eu: succeeded"), "{}", run.stdout());
    assert!(run.stdout().contains("production-us: succeeded"), "{}", run.stdout());
    for stage in ["production-eu", "production-us"] {
        let state = t.state(stage);
        let web = &state["apps"]["web"];
        let last = web["history"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["description"], "Promotion from development (release 2)", "{stage}");
        assert_eq!(last["kind"], "promotion");
        assert_eq!(last["status"], "succeeded");
        assert_eq!(web["active"]["digest"], d2.as_str());
        assert_eq!(web["active"]["config"]["env"]["VERSION"], stage, "config not promoted");
    }
    // Concurrently: each stage's deployment started before the other's finished.
    let span = |stage: &str| {
        let last = t.state(stage)["apps"]["web"]["history"].as_array().unwrap().last().unwrap().clone();
        let at = |k: &str| chrono::DateTime::parse_from_rfc3339(last[k].as_str().unwrap()).unwrap();
        (at("started_at"), at("finished_at"))
    };
    let (eu, us) = (span("production-eu"), span("production-us"));
    assert!(eu.0 < us.1 && us.0 < eu.1, "rollouts did not overlap: {eu:?} {us:?}");
    // Applied: a later plan has nothing to do, and the label does not stick to it.
    let plan = t.run(&["plan", "-s", "production-eu", "--detailed-exitcode"]);
    plan.expect_code(0);
}

/// `--to-app` promotes into an app of another name in the target stages, labelled with the
/// app it came from; by default the target is the app of the same name.
#[test]
fn promote_to_an_app_of_another_name() {
    let t = Pipeline::new();
    let (d1, d2) = (t.push("one", None), t.push("two", None));
    t.stage("development", &[(1, &d1), (2, &d2)], 2, "");
    for stage in ["production-eu", "production-us"] {
        t.stage(stage, &[(1, &d1)], 1, "");
        let file = format!("stages/{stage}.toml");
        t.p.write(&file, &t.p.read(&file).replace("[apps.web", "[apps.shop"));
    }
    for context in ["ci/tests", "qa/signoff"] {
        t.run(&["status", "set", "web", &d2, context, "success"]).expect_code(0);
    }
    let same_name = t.run(&["promote", "web", "--from", "development"]);
    same_name.expect_code(1);
    assert!(same_name.stderr().contains("stage `production-eu` has no app `web`"), "{}", same_name.stderr());
    assert!(same_name.stderr().contains("--to-app"), "the hint names the way: {}", same_name.stderr());

    let run = t.run(&["promote", "web", "--from", "development", "--to-app", "shop"]);
    run.expect_code(0);
    assert!(run.stderr().contains("as app shop"), "{}", run.stderr());
    let eu = t.p.read("stages/production-eu.toml");
    assert!(eu.contains(&format!("2 = \"{d2}\"")) && eu.contains("active = 2  # keep this comment"), "{eu}");
    assert!(!eu.contains("[apps.web"), "{eu}");
    let plan = t.run(&["plan", "-s", "production-eu", "--offline"]).expect_code(0).stdout();
    assert!(plan.contains("shop: Promotion from development (web release 2)"), "{plan}");
}

#[test]
fn images_sync_follows_a_tracked_tag_and_commit_deploys_it() {
    let t = Pipeline::new();
    let d1 = t.push("one", Some("prod"));
    t.stage("development", &[(1, &d1)], 1, "track = \"prod\"\n");
    t.stage("production-eu", &[(1, &d1)], 1, "");
    t.stage("production-us", &[(1, &d1)], 1, "");
    t.run(&["commit", "-s", "development", "--yes", "--progress", "plain"]).expect_code(0);
    let quiet = t.run(&["images", "sync"]);
    quiet.expect_code(0);
    assert!(quiet.stdout().is_empty(), "{}", quiet.stdout());

    let d2 = t.push("two", Some("prod"));
    let dry = t.run(&["images", "sync", "--dry-run"]);
    dry.expect_code(0);
    assert!(dry.stdout().contains("new release 2"), "{}", dry.stdout());
    assert!(!t.p.read("stages/development.toml").contains(&d2), "dry run edits nothing");

    let run = t.run(&["images", "sync"]);
    run.expect_code(0);
    let short2 = &d2[..19];
    assert!(run.stdout().contains(&format!("development: web follows tag `prod`: {} → {short2}", &d1[..19])));
    let file = t.p.read("stages/development.toml");
    assert!(file.contains(&format!("2 = \"{d2}\"")) && file.contains("active = 2  # keep this comment"), "{file}");
    assert!(!t.p.read("stages/production-eu.toml").contains(&d2), "untracked stages stay");

    let history = t.run(&["images", "history", "web", "--json"]);
    let imports: Value = serde_json::from_str(&history.expect_code(0).stdout()).unwrap();
    assert_eq!(imports[0]["tag"], "prod");
    assert_eq!(imports[0]["from"], d1.as_str());
    assert_eq!(imports[0]["to"], d2.as_str());
    assert_eq!(imports[0]["release"], 2);

    t.run(&["commit", "-s", "development", "--yes", "--progress", "plain"]).expect_code(0);
    let state = t.state("development");
    assert_eq!(state["apps"]["web"]["active"]["release"], 2);
    assert_eq!(state["apps"]["web"]["active"]["digest"], d2.as_str());
}

/// Every `ferry …` command in `run:` steps of the CI examples.
fn ferry_commands(script: &str) -> Vec<Vec<String>> {
    // GitHub expressions are filled in by Actions: any word will do for parsing.
    let mut text = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        text.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed expression") + start + 2;
        text.push_str("EXPR");
        rest = &rest[end..];
    }
    text.push_str(rest);

    let mut commands = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || " \t\n(;&|!".contains(chars[i - 1]);
        if starts_word && chars[i..].starts_with(&['f', 'e', 'r', 'r', 'y', ' ']) {
            let (words, end) = shell_words(&chars, i);
            commands.push(words);
            i = end;
        } else {
            i += 1;
        }
    }
    commands
}

/// Words from `from` to the end of the simple command (newline, `;`, `&&`, `||`, `|`,
/// `)`, `>` outside quotes), with quotes removed.
fn shell_words(chars: &[char], from: usize) -> (Vec<String>, usize) {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None::<char>, false);
    let mut i = from;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if "\n;&|)>".contains(c) => break,
            None if c == ' ' || c == '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    if in_word {
        words.push(word);
    }
    (words, i)
}

#[test]
fn every_ferry_command_in_the_ci_examples_parses() {
    let dir = repo_root().join("examples/ci/.github/workflows");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let doc: yaml_serde::Value = yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let jobs = doc["jobs"].as_mapping().unwrap_or_else(|| panic!("{}: no jobs", path.display()));
        for job in jobs.values() {
            for step in job["steps"].as_sequence().expect("steps") {
                let Some(script) = step["run"].as_str() else { continue };
                for words in ferry_commands(script) {
                    if let Err(e) = ferry::cli::Cli::try_parse_from(&words) {
                        panic!("{}: `{}` does not parse:\n{e}", name(&path), words.join(" "));
                    }
                    seen.push(words.join(" "));
                }
            }
        }
    }
    // ferry is not on crates.io: every job installs it from its repository.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| l.contains("cargo install")) {
            assert!(
                line.contains("--git") || line.contains("--path"),
                "{}: installs a crate not published: {line}",
                name(&path)
            );
        }
    }
    let has = |needle: &str| seen.iter().any(|c| c.contains(needle));
    for needle in [
        "ferry plan --all --markdown --detailed-exitcode",
        "ferry commit -s",
        "ferry images sync",
        "ferry status set",
        "ferry status set --json -",
        "ferry promote",
        "--commit",
        "ferry preview up EXPR --source .",
        "ferry preview down EXPR",
    ] {
        assert!(has(needle), "no `{needle}` among {seen:#?}");
    }
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}
