//! The pipeline as `ferry pipeline show` draws it: steps in order, their stages, each app's
//! active release and digest per stage (from the stage files, with what was last deployed
//! from recorded state), required checks, and which stages differ from the step before.
//! One view model, rendered as text or JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{Digest, Project, Stage};
use crate::state::StageState;

/// The whole pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineView {
    pub steps: Vec<StepView>,
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub name: String,
    pub required_checks: Vec<String>,
    pub stages: Vec<StageView>,
}

/// One stage of a step.
#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    pub name: String,
    /// Whether any app runs a digest none of the previous step's stages declares active.
    /// Always false in the first step.
    pub differs_from_previous: bool,
    pub apps: Vec<AppView>,
}

/// One app of a stage.
#[derive(Debug, Clone, Serialize)]
pub struct AppView {
    pub name: String,
    /// The stage file's active release and its digest.
    pub release: Option<u64>,
    pub digest: Option<Digest>,
    /// The release of the last succeeded deployment (recorded state), when any.
    pub deployed_release: Option<u64>,
    /// Whether this app's digest differs from the previous step's.
    pub differs_from_previous: bool,
}

impl PipelineView {
    /// Build from the project, its loaded stages and their recorded states (by stage name).
    pub fn build(project: &Project, stages: &[Stage], recorded: &BTreeMap<String, StageState>) -> PipelineView {
        let by_name: BTreeMap<&str, &Stage> = stages.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut previous: Option<BTreeMap<String, BTreeSet<Digest>>> = None;
        let mut steps = Vec::new();
        for step in &project.pipeline {
            let mut here: BTreeMap<String, BTreeSet<Digest>> = BTreeMap::new();
            let mut views = Vec::new();
            for name in &step.stages {
                let mut apps = Vec::new();
                if let Some(stage) = by_name.get(name.as_str()) {
                    for (app_name, app) in &stage.apps {
                        let digest = app.active_digest().cloned();
                        if let Some(d) = &digest {
                            here.entry(app_name.clone()).or_default().insert(d.clone());
                        }
                        let differs = previous.as_ref().is_some_and(|prev| match (&digest, prev.get(app_name)) {
                            (Some(d), Some(ds)) => !ds.contains(d),
                            (None, None) => false,
                            _ => true,
                        });
                        let deployed_release = recorded
                            .get(name)
                            .and_then(|s| s.apps.get(app_name))
                            .and_then(|a| a.active.as_ref())
                            .map(|a| a.release);
                        apps.push(AppView {
                            name: app_name.clone(),
                            release: app.active,
                            digest,
                            deployed_release,
                            differs_from_previous: differs,
                        });
                    }
                }
                let differs = apps.iter().any(|a| a.differs_from_previous);
                views.push(StageView { name: name.clone(), differs_from_previous: differs, apps });
            }
            steps.push(StepView {
                name: step.name.clone(),
                required_checks: step.required_checks.clone(),
                stages: views,
            });
            previous = Some(here);
        }
        PipelineView { steps }
    }

    /// Human text: one block per step, an arrow between steps.
    pub fn render_text(&self, color: bool) -> String {
        let style = |s: &str, f: fn(console::StyledObject<&str>) -> console::StyledObject<&str>| {
            if color {
                f(console::style(s)).to_string()
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        if self.steps.is_empty() {
            out.push_str("no pipeline: add [[pipeline.steps]] to ferry.toml\n");
            return out;
        }
        let width =
            self.steps.iter().flat_map(|s| &s.stages).flat_map(|s| &s.apps).map(|a| a.name.len()).max().unwrap_or(0);
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                out.push_str("   │\n   ▼\n");
            }
            let _ = write!(out, "{}. {}", i + 1, style(&step.name, |s| s.bold()));
            if !step.required_checks.is_empty() {
                let _ = write!(out, "   requires: {}", step.required_checks.join(", "));
            }
            out.push('\n');
            for stage in &step.stages {
                let mark = if stage.differs_from_previous {
                    style("  (differs from previous step)", |s| s.yellow())
                } else {
                    String::new()
                };
                let _ = writeln!(out, "   {}{mark}", stage.name);
                if stage.apps.is_empty() {
                    out.push_str("     (no apps)\n");
                }
                for app in &stage.apps {
                    let release = app.release.map_or("-".to_string(), |r| format!("release {r}"));
                    let digest = app.digest.as_ref().map_or("", |d| d.short());
                    let deployed = match (app.deployed_release, app.release) {
                        (None, Some(_)) => "  not deployed".to_string(),
                        (Some(d), Some(r)) if d != r => format!("  deployed: release {d}"),
                        _ => String::new(),
                    };
                    let star = if app.differs_from_previous { style(" *", |s| s.yellow()) } else { String::new() };
                    let _ = writeln!(out, "     {:width$}  {release:<11} {digest}{star}{deployed}", app.name);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PipelineStep, StateBackend};
    use crate::plan::fixture::{app, applied, stage};

    #[test]
    fn marks_what_differs_from_the_step_before() {
        let step = |name: &str, stages: &[&str]| PipelineStep {
            name: name.into(),
            stages: stages.iter().map(|s| s.to_string()).collect(),
            required_checks: vec!["ci/tests".into()],
        };
        let project = Project {
            root: "/nowhere".into(),
            name: "shop".into(),
            state: StateBackend::Local,
            pipeline: vec![step("development", &["dev"]), step("production", &["eu", "us"])],
            keep_deployments: 50,
            registry: Default::default(),
            preview: None,
            notify: Vec::new(),
            ui_token: None,
        };
        let stages = [stage("dev", [app("web", 2)]), stage("eu", [app("web", 2)]), stage("us", [app("web", 1)])];
        let recorded = BTreeMap::from([("eu".to_string(), applied(&stage("eu", [app("web", 1)])))]);
        let view = PipelineView::build(&project, &stages, &recorded);
        let prod = &view.steps[1];
        assert!(!view.steps[0].stages[0].differs_from_previous);
        assert!(!prod.stages[0].differs_from_previous && prod.stages[1].differs_from_previous);
        assert_eq!(prod.stages[0].apps[0].deployed_release, Some(1));
        let text = view.render_text(false);
        assert!(text.contains("2. production   requires: ci/tests"), "{text}");
        assert!(text.contains("   us  (differs from previous step)"), "{text}");
        assert!(text.contains("deployed: release 1"), "{text}");
    }
}
