//! `ferry plan --json`: the view model as versioned JSON (`docs/PLAN_JSON.md`). Field names
//! are part of ferry's interface: add fields, never rename or remove them without raising
//! [`JSON_FORMAT_VERSION`].

use serde::Serialize;

use super::view::{Counts, PlanView, StageView, JSON_FORMAT_VERSION};

#[derive(Serialize)]
struct Document<'a> {
    format_version: u32,
    changes: bool,
    summary: Summary,
    stages: &'a [StageView],
}

#[derive(Serialize)]
struct Summary {
    #[serde(flatten)]
    counts: Counts,
    text: String,
}

/// Render `view` as pretty JSON with a trailing newline.
pub fn render(view: &PlanView) -> String {
    let counts = view.counts();
    let doc = Document {
        format_version: JSON_FORMAT_VERSION,
        changes: view.has_changes(),
        summary: Summary { counts, text: summary_text(view) },
        stages: &view.stages,
    };
    let mut text = serde_json::to_string_pretty(&doc).expect("the view serialises");
    text.push('\n');
    text
}

/// The first line of the human formats.
pub fn summary_text(view: &PlanView) -> String {
    if view.has_changes() {
        view.counts().line()
    } else {
        let names: Vec<String> = view.stages.iter().map(|s| format!("`{}`", s.stage)).collect();
        let what = if view.stages.iter().all(|s| s.refreshed) && !view.stages.is_empty() {
            "recorded state and what runs"
        } else {
            "recorded state"
        };
        format!("No changes. Stage {} matches {what}.", names.join(", "))
    }
}
