//! `ferry validate`: check the project file and stage files, reporting every problem.

use clap::Args;

use crate::cli::{CliResult, Context};
use std::collections::BTreeMap;

use crate::config::source::Target;
use crate::config::{self, Diagnostics, Project, Runtime, Stage};

/// Check ferry.toml and the stage files; exit 0 when valid, 1 with every problem located.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry validate\n  ferry validate -s production")]
pub struct ValidateArgs {
    /// Check only this stage (and ferry.toml).
    #[arg(short, long)]
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: ValidateArgs) -> CliResult {
    // Stage files are checked even when ferry.toml has problems, so one run reports every
    // problem of the project, not just the first file's.
    let root = ctx.root()?;
    let (project, mut problems) = match config::load_project(&root) {
        Ok(p) => (p, Diagnostics::default()),
        Err(d) => (Project::unchecked(&root), d),
    };
    let stages = match &args.stage {
        Some(name) => config::load_stage(&project, name).map(|s| vec![s]),
        None => config::load_stages(&project),
    };
    // Local stages share this machine's ports: compared with every other stage that loads.
    let stages = stages.and_then(|checked| {
        let all = if args.stage.is_some() { config::load_stages(&project).unwrap_or_default() } else { Vec::new() };
        let clashes = port_clashes(&project, &checked, &all);
        if clashes.is_empty() {
            Ok(checked)
        } else {
            Err(clashes)
        }
    });
    let stages = match stages {
        Ok(stages) if problems.is_empty() => stages,
        Ok(_) => return Err(problems.into()),
        Err(d) => {
            problems.0.extend(d.0);
            problems.sort();
            return Err(problems.into());
        }
    };
    let apps: usize = stages.iter().map(|s| s.apps.len()).sum();
    eprintln!(
        "valid: {} and {} stage{} ({apps} app{})",
        config::PROJECT_FILE,
        stages.len(),
        if stages.len() == 1 { "" } else { "s" },
        if apps == 1 { "" } else { "s" }
    );
    Ok(())
}

/// An app port that two local stages both use: on one machine only one of them can listen
/// on it, and the second stage's commit would fail. Reported at the `port` of a checked
/// stage: the later one by name, or the checked one when `others` (the project's other
/// stages, loaded for `-s`) holds the first.
fn port_clashes(project: &Project, checked: &[Stage], others: &[Stage]) -> Diagnostics {
    let mut stages: Vec<&Stage> = others.iter().filter(|o| !checked.iter().any(|c| c.name == o.name)).collect();
    stages.sort_by(|a, b| a.name.cmp(&b.name));
    let mut mine: Vec<&Stage> = checked.iter().collect();
    mine.sort_by(|a, b| a.name.cmp(&b.name));
    stages.extend(mine);
    stages.retain(|s| matches!(s.runtime, Runtime::Local { .. }));
    let mut taken: BTreeMap<u16, (&str, &str)> = BTreeMap::new();
    let mut problems = Diagnostics::default();
    for stage in stages {
        for (app, declared) in &stage.apps {
            let Some(port) = declared.config.port else { continue };
            match taken.get(&port) {
                // Two apps of one stage are the stage's own check.
                Some((other_stage, _)) if *other_stage == stage.name => {}
                Some((other_stage, other_app)) if checked.iter().any(|c| c.name == stage.name) => {
                    let at = crate::path!["apps", app.as_str(), "port"];
                    let message = format!(
                        "port {port} of app `{app}` is also the port of app `{other_app}` in local stage `{other_stage}`"
                    );
                    let hint = "local stages run on this one machine, where only one app can listen on a port: \
                                give each its own";
                    match config::validate::read_source(&project.root, &stage.file) {
                        Ok(src) => problems.push(src.diagnostic(&at, Target::Value, message).with_hint(hint)),
                        Err(d) => problems.push(d),
                    }
                }
                Some(_) => {}
                None => {
                    taken.insert(port, (stage.name.as_str(), app.as_str()));
                }
            }
        }
    }
    problems
}
