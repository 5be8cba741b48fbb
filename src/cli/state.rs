//! `ferry state show` and `ferry state restore`: look at the recorded state of stages, and
//! bring back the copy kept from before the last write (after a bad write or a damaged
//! file).

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::{print_out, CliError, CliResult, Context};
use crate::config;
use crate::state::{command_line, open_store, LockInfo, StageLock, StageState, StateError};

/// Inspect or repair recorded state.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ferry state show -s production\n  ferry state restore -s production")]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
}

/// `ferry state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    Show(ShowArgs),
    Restore(RestoreArgs),
}

/// Show each stage's recorded state: serial, lineage, lock, and per app what runs.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ferry state show\n  ferry state show -s production --json | jq '.stages[0].serial'"
)]
pub struct ShowArgs {
    /// Only this stage. Default: every stage of the project.
    #[arg(short, long)]
    pub stage: Option<String>,
    /// Print JSON: `{"stages": [...]}`.
    #[arg(long)]
    pub json: bool,
}

/// Bring back the copy of a stage's state kept from before its last write. The replaced
/// state becomes the kept copy (so a restore can be undone); a damaged file is set aside.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ferry state restore -s production")]
pub struct RestoreArgs {
    /// The stage to restore.
    #[arg(short, long)]
    pub stage: String,
}

pub fn run(ctx: &Context, args: StateArgs) -> CliResult {
    match args.command {
        StateCommand::Show(a) => show(ctx, a),
        StateCommand::Restore(a) => restore(ctx, a),
    }
}

fn show(ctx: &Context, args: ShowArgs) -> CliResult {
    let project = ctx.project()?;
    let store = open_store(&project)?;
    let stages = match args.stage {
        Some(s) => vec![s],
        None => config::stage_refs(&project.root).into_iter().map(|r| r.name).collect(),
    };
    let mut views = Vec::new();
    for stage in &stages {
        // Reading needs no lock: writes are atomic, so this is one consistent state.
        let state = store.read(stage)?;
        let lock = match store.lock_holder(stage) {
            Ok(h) => LockView::Held(h),
            Err(StateError::LockUnreadable { location, id, .. }) => LockView::Unreadable { location, id },
            Err(e) => return Err(e.into()),
        };
        views.push(StageView { stage: stage.clone(), location: store.location(stage), state, lock });
    }
    if args.json {
        let doc = json!({ "stages": views.iter().map(StageView::json).collect::<Vec<_>>() });
        print_out(&format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON")))
    } else if views.is_empty() {
        print_out("no stages in this project\n")
    } else {
        print_out(&views.iter().map(StageView::text).collect::<Vec<_>>().join("\n"))
    }
}

enum LockView {
    Held(Option<LockInfo>),
    Unreadable { location: String, id: String },
}

struct StageView {
    stage: String,
    location: String,
    state: Option<StageState>,
    lock: LockView,
}

impl StageView {
    fn text(&self) -> String {
        let mut out = String::new();
        let Some(state) = &self.state else {
            let _ = writeln!(out, "stage {}: no state recorded yet ({})", self.stage, self.location);
            self.lock_text(&mut out);
            return out;
        };
        let _ = writeln!(out, "stage {} ({})", self.stage, self.location);
        let _ = writeln!(out, "  serial {}, lineage {}, format {}", state.serial, state.lineage, state.version);
        self.lock_text(&mut out);
        if state.apps.is_empty() {
            let _ = writeln!(out, "  no apps recorded");
            return out;
        }
        let mut rows = vec![["app", "active", "release", "digest", "scale", "last deployment"].map(String::from)];
        for (name, app) in &state.apps {
            let last = app.history.last().map_or("-".into(), |d| format!("v{} {}", d.number, d.status.as_str()));
            rows.push(match &app.active {
                Some(a) => [
                    name.clone(),
                    format!("v{}", a.deployment),
                    a.release.to_string(),
                    a.digest.short().to_string(),
                    a.scale.to_string(),
                    last,
                ],
                None => [name.clone(), "-".into(), "-".into(), "-".into(), "-".into(), last],
            });
        }
        out.push_str(&crate::render::table::table(&rows, "  "));
        out
    }

    /// The lock line, when the stage is locked.
    fn lock_text(&self, out: &mut String) {
        match &self.lock {
            LockView::Held(None) => {}
            LockView::Held(Some(h)) => {
                let _ = writeln!(out, "  locked by {} with id {}", h.describe(), h.id);
            }
            LockView::Unreadable { location, id } => {
                let _ = writeln!(out, "  locked by an unreadable lock {location} with id {id}");
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        let lock = match &self.lock {
            LockView::Held(h) => serde_json::to_value(h).expect("JSON"),
            LockView::Unreadable { location, id } => json!({ "id": id, "unreadable": location }),
        };
        let Some(state) = &self.state else {
            return json!({ "stage": self.stage, "location": self.location, "recorded": false, "lock": lock });
        };
        let apps: serde_json::Map<String, serde_json::Value> = state
            .apps
            .iter()
            .map(|(name, app)| {
                let active = app.active.as_ref().map(|a| {
                    json!({ "deployment": a.deployment, "release": a.release, "digest": a.digest.as_str(),
                            "scale": a.scale, "revision": a.revision, "config_hash": a.config_hash })
                });
                let last = app.history.last().map(|d| {
                    json!({ "number": d.number, "status": d.status.as_str(), "release": d.release,
                            "description": d.description })
                });
                let releases: Vec<u64> = app.releases.keys().copied().collect();
                (name.clone(), json!({ "active": active, "last_deployment": last, "releases": releases }))
            })
            .collect();
        json!({
            "stage": self.stage, "location": self.location, "recorded": true, "version": state.version,
            "serial": state.serial, "lineage": state.lineage, "lock": lock, "apps": apps,
        })
    }
}

fn restore(ctx: &Context, args: RestoreArgs) -> CliResult {
    let project = ctx.project()?;
    let stage = args.stage;
    let lock = StageLock::acquire(
        open_store(&project)?,
        &stage,
        LockInfo::for_this_process(&command_line()),
        ctx.lock_timeout,
    )?;
    let store = lock.store();
    let Some(previous) = store.read_previous(&stage)? else {
        return Err(CliError::with_hint(
            StateError::NoPrevious { location: store.location(&stage) }.to_string(),
            "a copy is kept from the second write of a stage on; nothing was changed",
        ));
    };
    let current = match store.read(&stage) {
        Ok(Some(s)) => format!("serial {}", s.serial),
        Ok(None) => "no state".into(),
        Err(e @ StateError::Corrupt { .. }) => format!("unreadable ({e})"),
        Err(e) => return Err(e.into()),
    };
    eprintln!("stage `{stage}`: current state {current}; kept previous copy serial {}", previous.serial);
    let restored = store.restore_previous(&stage)?;
    if let Some(aside) = &restored.set_aside {
        eprintln!("the unreadable state file was kept as {aside}");
    }
    eprintln!(
        "restored stage `{stage}` to the state of serial {}, written as serial {} ({})",
        restored.from_serial,
        restored.serial,
        store.location(&stage)
    );
    lock.unlock()?;
    Ok(())
}
