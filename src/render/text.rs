//! The human plan: count line, summary table, per-app details with Terraform-like symbols
//! and field diffs, then the changeset table. Colours only when asked (the CLI decides:
//! a terminal, no NO_COLOR, or `--color`).

use std::fmt::Write as _;

use console::Style;
use similar::{ChangeTag, TextDiff};

use super::view::{shorten_digests, Action, PlanView, StageView};

/// Render `view` as text; `color` turns on ANSI styling.
pub fn render(view: &PlanView, color: bool) -> String {
    let p = Painter { color };
    let mut out = String::new();
    if !view.has_changes() {
        for s in &view.stages {
            let _ = writeln!(out, "{}", s.no_changes_line());
        }
        return out;
    }
    let _ = writeln!(out, "{}", p.bold(&view.counts().line()));
    for stage in &view.stages {
        out.push('\n');
        render_stage(&mut out, stage, &p, view.stages.len() > 1);
    }
    out
}

/// One stage without colours (markdown embeds this); `with_count` adds its count line.
pub fn render_stage_plain(stage: &StageView, with_count: bool) -> String {
    let mut out = String::new();
    render_stage(&mut out, stage, &Painter { color: false }, with_count);
    out
}

fn render_stage(out: &mut String, stage: &StageView, p: &Painter, with_count: bool) {
    let file = stage.file.as_deref().map(|f| format!("{f}, ")).unwrap_or_default();
    let _ = writeln!(out, "{}", p.bold(&format!("Stage `{}` ({file}state serial {})", stage.stage, stage.serial)));
    if stage.operations.is_empty() {
        let _ = writeln!(out, "  {}", stage.no_changes_line());
        return;
    }
    if with_count {
        let _ = writeln!(out, "{}", stage.counts.line());
    }
    render_drift(out, stage, p);
    out.push('\n');
    let rows: Vec<Vec<String>> = stage
        .apps
        .iter()
        .map(|a| {
            vec![
                a.app.clone(),
                a.action.as_str().to_string(),
                a.release.text(),
                a.scale.text(),
                if a.changes.is_empty() { "–".into() } else { a.changes.join(", ") },
            ]
        })
        .collect();
    table(out, &["APP", "ACTION", "RELEASE", "SCALE", "CHANGES"], &rows, "  ");

    for app in &stage.apps {
        out.push('\n');
        let head = format!("{} {}: {}", app.symbol, app.app, app.description);
        let _ = writeln!(out, "{}", p.action(app.action, &head));
        for field in &app.fields {
            if app.action == Action::Add && !field.is_multiline() {
                let _ = writeln!(out, "    {}: {}", field.field, field.to);
            } else if field.is_multiline() {
                let _ = writeln!(out, "    {}:", field.field);
                for line in diff_lines(&field.from, &field.to) {
                    let _ = writeln!(out, "      {}", p.diff_line(&line));
                }
            } else {
                let _ = writeln!(out, "    {}: {} → {}", field.field, field.from, field.to);
            }
        }
        for id in &app.operations {
            let Some(op) = stage.operation(id) else { continue };
            let args: Vec<String> = op.arguments.iter().map(|(k, v)| format!("{k}={}", shorten_digests(v))).collect();
            let line = format!("{:<2} {:<17} {}", op.symbol, op.kind, args.join(" "));
            let _ = writeln!(out, "    {}", p.symbol(op.symbol, line.trim_end()));
        }
    }

    out.push('\n');
    let _ = writeln!(
        out,
        "Changeset: {} operation{}",
        stage.operations.len(),
        if stage.operations.len() == 1 { "" } else { "s" }
    );
    let rows: Vec<Vec<String>> = stage
        .operations
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let args: Vec<String> = op.arguments.iter().map(|(k, v)| format!("{k}={}", shorten_digests(v))).collect();
            vec![(i + 1).to_string(), op.id.clone(), op.kind.to_string(), args.join(" "), op.depends_on.join(", ")]
        })
        .collect();
    table(out, &["#", "OPERATION", "TYPE", "ARGUMENTS", "AFTER"], &rows, "  ");
}

/// The apps that drifted from recorded state (`--refresh`): what differs, recorded → live.
fn render_drift(out: &mut String, stage: &StageView, p: &Painter) {
    if stage.drifted().is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", p.bold("Drift: the runtime no longer runs what was recorded (planned back below)"));
    for d in stage.drifted() {
        let _ = writeln!(out, "  {}: {}", d.app, d.summary());
        if let Some(r) = &d.revision {
            let _ = writeln!(out, "    live revision: {r}");
        }
        for c in &d.changes {
            let show = |v: &str| if v.is_empty() { "(none)".to_string() } else { v.to_string() };
            let _ = writeln!(out, "    {}: {} → {}", c.field, show(&c.recorded), show(&c.live));
        }
    }
}

/// Line diff of two canonical renderings: `- old`, `+ new`, `  same`. A new field (empty
/// `from`) shows as all `+`.
fn diff_lines(from: &str, to: &str) -> Vec<String> {
    let diff = TextDiff::from_lines(from, to);
    let mut lines = Vec::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => "-",
            ChangeTag::Insert => "+",
            ChangeTag::Equal => " ",
        };
        lines.push(format!("{sign} {}", change.value().trim_end_matches('\n')));
    }
    lines
}

/// Left-aligned columns, widths by characters (the arrows and dashes are one wide).
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>], indent: &str) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(indent);
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 < widths.len() {
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&mut header.iter().copied()));
    for row in rows {
        let _ = writeln!(out, "{}", line(&mut row.iter().map(String::as_str)));
    }
}

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            style.force_styling(true).apply_to(text).to_string()
        } else {
            text.to_string()
        }
    }

    fn bold(&self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }

    fn symbol(&self, symbol: &str, text: &str) -> String {
        let style = match symbol {
            "+" => Style::new().green(),
            "-" => Style::new().red(),
            "~" | "±" => Style::new().yellow(),
            _ => Style::new().cyan(),
        };
        self.paint(style, text)
    }

    fn action(&self, action: Action, text: &str) -> String {
        self.paint(Style::new().bold(), &self.symbol(action.symbol(), text))
    }

    fn diff_line(&self, line: &str) -> String {
        match line.as_bytes().first() {
            Some(b'+') => self.paint(Style::new().green(), line),
            Some(b'-') => self.paint(Style::new().red(), line),
            _ => line.to_string(),
        }
    }
}
