//! `ferry plan --markdown`: a pull-request comment. One summary line, a table per stage,
//! and the full text plan folded into `<details>` so the comment stays short.

use std::fmt::Write as _;

use super::json::summary_text;
use super::text::render_stage_plain;
use super::view::PlanView;

/// Render `view` as GitHub-flavoured markdown.
pub fn render(view: &PlanView) -> String {
    // Control characters escaped: a reviewer may read it in a terminal too.
    let view = &view.escaped();
    let mut out = String::new();
    let _ = writeln!(out, "**ferry plan:** {}", summary_text(view));
    for stage in &view.stages {
        let _ = writeln!(out, "\n### Stage `{}`\n", stage.stage);
        if stage.operations.is_empty() {
            let _ = writeln!(out, "{}", stage.no_changes_line());
            continue;
        }
        let several = view.stages.len() > 1;
        if several {
            let _ = writeln!(out, "{}\n", stage.counts.line());
        }
        if !stage.drifted().is_empty() {
            let _ = writeln!(out, "**Drift** (the runtime no longer runs what was recorded; planned back):\n");
            for d in stage.drifted() {
                let _ = writeln!(out, "- `{}`: {}", d.app, d.summary());
                if let Some(cause) = &d.cause {
                    let _ = writeln!(out, "  - {}", cell(cause));
                }
                for c in &d.changes {
                    let _ = writeln!(out, "  - `{}`: `{}` → `{}`", c.field, cell(&c.recorded), cell(&c.live));
                }
            }
            out.push('\n');
        }
        let _ = writeln!(out, "| | App | Action | Release | Scale | Changes |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for a in &stage.apps {
            let changes = if a.changes.is_empty() { "–".to_string() } else { a.changes.join(", ") };
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} | {} | {} |",
                a.symbol,
                cell(&a.app),
                a.action.as_str(),
                a.release.text(),
                a.scale.text(),
                cell(&changes)
            );
        }
        let _ = writeln!(out, "\n<details><summary>Details: {} operations</summary>\n", stage.operations.len());
        let _ = writeln!(out, "```text\n{}```\n\n</details>", render_stage_plain(stage, several).replace("```", "'''"));
    }
    out
}

/// A table cell: pipes would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
