//! What the fuzz targets share: after a reader accepts an input, everything ferry does next
//! with what it read (plan it, render the plan in every format, look at its history) must
//! not panic either.

use std::path::Path;

use ferry::config::validate::load_stage_text;
use ferry::config::Stage;
use ferry::plan::{plan, Changeset, PlanOptions};
use ferry::render::{self, PlanView, StageView};
use ferry::state::StageState;

/// The stage the state and saved-plan targets plan against: the python-web test fixture's
/// (the quick start before it built from a Dockerfile; its releases match fuzz/seeds/).
const QUICKSTART: &str = include_str!("../../tests/fixtures/python-web/stages/development.toml");

/// Load a stage file's text as `stages/development.<ext>`; a rejected file's diagnostics
/// are rendered (they quote the file and underline spans in it).
pub fn load_stage(data: &[u8], ext: &str) -> Option<Stage> {
    let text = std::str::from_utf8(data).ok()?;
    let path = format!("stages/development.{ext}");
    match load_stage_text(Path::new(&path), text.to_string(), "development") {
        Ok(stage) => Some(stage),
        Err(diagnostics) => {
            let _ = diagnostics.to_string();
            None
        }
    }
}

/// Format a stage file's text as `ferry fmt` does (`stages/development.<ext>`), then format
/// what it wrote again: neither may panic or overflow, and (TOML) the second pass changes
/// nothing.
pub fn format_twice(data: &[u8], ext: &str) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = format!("stages/development.{ext}");
    let path = Path::new(&path);
    match ferry::edit::format_file(path, text, ferry::edit::FileKind::Stage) {
        Ok(formatted) => {
            let again = ferry::edit::format_file(path, &formatted, ferry::edit::FileKind::Stage);
            // What `ferry fmt` writes is canonical: formatting it again changes nothing.
            // Asserted for TOML; HCL not yet (docs/FUZZING.md: an object whose keys are
            // expressions can be laid out into a file that no longer parses).
            if ext == "toml" {
                let again = again.expect("a formatted file parses");
                assert_eq!(again, formatted, "formatting a formatted file changed it");
            }
        }
        Err(diagnostic) => {
            let _ = diagnostic.to_string();
        }
    }
}

/// The python-web fixture's stage.
pub fn quickstart() -> Stage {
    load_stage_text(Path::new("stages/development.toml"), QUICKSTART.to_string(), "development")
        .expect("the python-web fixture's stage loads")
}

/// Plan `desired` against `recorded` and render the changeset.
pub fn plan_and_render(desired: &Stage, recorded: &StageState) {
    for allow_remove in [false, true] {
        match plan(desired, recorded, &PlanOptions { allow_remove }) {
            Ok(changeset) => render_all(&changeset, &recorded.lineage, recorded.serial),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

/// Render a changeset as text, JSON, markdown and DOT.
pub fn render_all(changeset: &Changeset, lineage: &str, serial: u64) {
    let stage = StageView::build(changeset, lineage, serial, Some("stages/development.toml"));
    let _ = render::dot::render(&stage);
    let view = PlanView { stages: vec![stage] };
    let _ = render::text::render(&view, true);
    let _ = render::json::render(&view);
    let _ = render::markdown::render(&view);
}

/// What `ferry history` and `ferry rollback` read of a recorded state.
pub fn read_history(state: &StageState) {
    let now = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    for app in state.apps.values() {
        let _ = ferry::history::rollback_target(app, None);
        for d in &app.history {
            let _ = ferry::history::relative_time(d.started_at, now);
            let _ = ferry::history::rollback_target(app, Some(d.number));
        }
    }
}
