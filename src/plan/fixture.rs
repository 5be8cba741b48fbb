//! Builders of stages and states for tests and benchmarks: small apps with defaults, a large
//! generated stage (the benchmark's 1,000 apps × 20 releases), and "the state after applying
//! this stage". Public so integration tests and benches share one generator.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};

use super::{plan, record, Outcome, PlanOptions};
use crate::config::{App, AppConfig, DeploySettings, Digest, Health, Runtime, Stage};
use crate::state::StageState;

/// A fixed time for deterministic states and snapshots: 2024-05-01 12:00:00 UTC.
pub fn fixed_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).single().expect("a valid time")
}

/// The digest of release `release` of `app`, the same every time.
pub fn digest(app: &str, release: u64) -> Digest {
    Digest::of_bytes(format!("{app}/{release}").as_bytes())
}

/// A config with every default and nothing set.
pub fn config() -> AppConfig {
    AppConfig {
        cpu: 256,
        memory: 512,
        command: Vec::new(),
        port: None,
        env: BTreeMap::new(),
        sensitive_env: BTreeSet::new(),
        secrets: BTreeMap::new(),
        health: Health::default(),
        deploy: DeploySettings::default(),
        release_tasks: Vec::new(),
        target_group: None,
    }
}

/// An app with releases `1..=releases`, the last one active, scale 1.
pub fn app(name: &str, releases: u64) -> App {
    App {
        name: name.to_string(),
        image: name.to_string(),
        releases: (1..=releases).map(|r| (r, digest(name, r))).collect(),
        active: (releases > 0).then_some(releases),
        scale: 1,
        track: None,
        depends_on: Vec::new(),
        config: config(),
        build: Default::default(),
    }
}

/// A local-runtime stage of these apps.
pub fn stage(name: &str, apps: impl IntoIterator<Item = App>) -> Stage {
    Stage {
        name: name.to_string(),
        file: PathBuf::from(format!("stages/{name}.toml")),
        runtime: Runtime::Local { driver: None },
        apps: apps.into_iter().map(|a| (a.name.clone(), a)).collect(),
    }
}

/// The benchmark's stage: `apps` apps of `releases` releases each, with some env, a
/// command, a health check and a release task, and every tenth app depending on the one
/// before, so the graph has cross-app edges.
pub fn large_stage(apps: usize, releases: u64) -> Stage {
    let all = (0..apps).map(|i| {
        let name = format!("app-{i:04}");
        let mut a = app(&name, releases);
        a.scale = 2;
        a.config.port = Some(10_000 + i as u16);
        a.config.command = vec!["serve".into(), "--port".into(), "${PORT}".into()];
        a.config.env = (0..5).map(|k| (format!("VAR_{k}"), format!("value-{i}-{k}"))).collect();
        a.config.health.path = Some("/health".into());
        a.config.release_tasks = vec![crate::config::ReleaseTask {
            name: "migrate".into(),
            command: vec!["migrate".into()],
            timeout: crate::config::Duration::from_millis(600_000),
            run_on: crate::config::RunOn::Release,
        }];
        if i % 10 != 0 {
            a.depends_on = vec![format!("app-{:04}", i - 1)];
        }
        a
    });
    stage("bench", all)
}

/// The state after applying `desired` to a fresh state, every operation succeeding at
/// [`fixed_time`], with a fixed lineage.
pub fn applied(desired: &Stage) -> StageState {
    let mut state = StageState::new(&desired.name);
    state.lineage = "00000000-0000-4000-8000-000000000000".into();
    apply(desired, &mut state);
    state
}

/// Plan `desired` against `state` (removals allowed) and record every operation's success.
pub fn apply(desired: &Stage, state: &mut StageState) {
    let cs = plan(desired, state, &PlanOptions { allow_remove: true }).expect("a plannable stage");
    for op in cs.apply_order().expect("an acyclic plan") {
        record(op, state, &Outcome::succeeded(fixed_time()));
    }
    state.serial += 1;
}

/// A stage as a TOML stage file, for the fields the generators set.
pub fn stage_toml(stage: &Stage) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let list = |v: &[String]| format!("[{}]", v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "));
    let mut out = String::from("[runtime]\nkind = \"local\"\n");
    for (name, a) in &stage.apps {
        let _ = write!(out, "\n[apps.{name}]\nimage = {}\nscale = {}\n", q(&a.image), a.scale);
        if let Some(r) = a.active {
            let _ = writeln!(out, "active = {r}");
        }
        if let Some(p) = a.config.port {
            let _ = writeln!(out, "port = {p}");
        }
        if !a.config.command.is_empty() {
            let _ = writeln!(out, "command = {}", list(&a.config.command));
        }
        if !a.depends_on.is_empty() {
            let _ = writeln!(out, "depends_on = {}", list(&a.depends_on));
        }
        let _ = writeln!(out, "\n[apps.{name}.releases]");
        for (id, d) in &a.releases {
            let _ = writeln!(out, "{id} = {}", q(d.as_str()));
        }
        if !a.config.env.is_empty() {
            let _ = writeln!(out, "\n[apps.{name}.env]");
            for (k, v) in &a.config.env {
                let _ = writeln!(out, "{k} = {}", q(v));
            }
        }
        if let Some(p) = &a.config.health.path {
            let _ = writeln!(out, "\n[apps.{name}.health]\npath = {}", q(p));
        }
        for t in &a.config.release_tasks {
            let _ =
                writeln!(out, "\n[[apps.{name}.release_tasks]]\nname = {}\ncommand = {}", q(&t.name), list(&t.command));
        }
    }
    out
}
