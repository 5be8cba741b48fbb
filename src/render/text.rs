//! The human plan: count line, summary table, per-app details with Terraform-like symbols
//! and field diffs, then the changeset table. Colours only when asked (the CLI decides:
//! a terminal, no NO_COLOR, or `--color`).

use std::borrow::Cow;
use std::fmt::Write as _;

use console::Style;
use similar::{ChangeTag, TextDiff};

use super::view::{write_shortened, Action, OperationView, PlanView, StageView};

/// Render `view` as text; `color` turns on ANSI styling. Control characters in its values
/// are escaped ([`PlanView::escaped`]).
pub fn render(view: &PlanView, color: bool) -> String {
    let view = &view.escaped();
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

/// One stage without colours (markdown embeds this, from an escaped view); `with_count`
/// adds its count line.
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
    let rows: Vec<[Cow<'_, str>; 5]> = stage
        .apps
        .iter()
        .map(|a| {
            [
                Cow::Borrowed(a.app.as_str()),
                Cow::Borrowed(a.action.as_str()),
                Cow::Owned(a.release.text()),
                Cow::Owned(a.scale.text()),
                if a.changes.is_empty() { Cow::Borrowed("–") } else { Cow::Owned(a.changes.join(", ")) },
            ]
        })
        .collect();
    table(out, &["APP", "ACTION", "RELEASE", "SCALE", "CHANGES"], &rows, "  ");

    // Each operation's arguments, written once for its app's details and for the changeset.
    let arguments: Vec<String> = stage.operations.iter().map(arguments_text).collect();
    for app in &stage.apps {
        out.push('\n');
        let head = format!("{} {}: {}", app.symbol, app.app, app.description);
        p.write_action(out, app.action, &head);
        out.push('\n');
        for field in &app.fields {
            if app.action == Action::Add && !field.is_multiline() {
                let _ = writeln!(out, "    {}: {}", field.field, field.to);
            } else if field.is_multiline() {
                let _ = writeln!(out, "    {}:", field.field);
                write_diff(out, p, &field.from, &field.to);
            } else {
                let _ = writeln!(out, "    {}: {} → {}", field.field, field.from, field.to);
            }
        }
        for id in &app.operations {
            let Some(i) = stage.operation_index(id) else { continue };
            let op = &stage.operations[i];
            out.push_str("    ");
            p.write_symbol(out, op.symbol, |out| {
                let start = out.len();
                let _ = write!(out, "{:<2} {:<17} {}", op.symbol, op.kind, arguments[i]);
                trim_end_from(out, start);
            });
            out.push('\n');
        }
    }

    out.push('\n');
    let _ = writeln!(
        out,
        "Changeset: {} operation{}",
        stage.operations.len(),
        if stage.operations.len() == 1 { "" } else { "s" }
    );
    let rows: Vec<[Cow<'_, str>; 5]> = stage
        .operations
        .iter()
        .zip(&arguments)
        .enumerate()
        .map(|(i, (op, args))| {
            [
                Cow::Owned((i + 1).to_string()),
                Cow::Borrowed(op.id.as_str()),
                Cow::Borrowed(op.kind),
                Cow::Borrowed(args.as_str()),
                Cow::Owned(op.depends_on.join(", ")),
            ]
        })
        .collect();
    table(out, &["#", "OPERATION", "TYPE", "ARGUMENTS", "AFTER"], &rows, "  ");
}

/// `key=value key=value`, digests shortened.
fn arguments_text(op: &OperationView) -> String {
    let mut s = String::new();
    for (i, (k, v)) in op.arguments.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(k);
        s.push('=');
        write_shortened(&mut s, v);
    }
    s
}

/// Remove the whitespace at the end of `out` after byte `from`, as `str::trim_end` would.
fn trim_end_from(out: &mut String, from: usize) {
    let kept = out[from..].trim_end().len();
    out.truncate(from + kept);
}

/// The apps that drifted from recorded state (`--refresh`): what differs, recorded → live.
fn render_drift(out: &mut String, stage: &StageView, p: &Painter) {
    if stage.drifted().is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", p.bold("Drift: the runtime no longer runs what was recorded (planned back below)"));
    for d in stage.drifted() {
        let _ = writeln!(out, "  {}: {}", d.app, d.summary());
        if let Some(cause) = &d.cause {
            let _ = writeln!(out, "    {cause}");
        }
        if let Some(r) = &d.revision {
            let _ = writeln!(out, "    live revision: {r}");
        }
        for c in &d.changes {
            let show = |v: &str| if v.is_empty() { "(none)".to_string() } else { v.to_string() };
            let _ = writeln!(out, "    {}: {} → {}", c.field, show(&c.recorded), show(&c.live));
        }
    }
}

/// Line diff of two canonical renderings, one line each under a field: `- old`, `+ new`,
/// `  same`. A new field (empty `from`) shows as all `+`, a removed one as all `-`, without
/// running the diff.
fn write_diff(out: &mut String, p: &Painter, from: &str, to: &str) {
    let mut line = |sign: &str, value: &str| {
        out.push_str("      ");
        p.write_diff_line(out, sign, value.trim_end_matches('\n'));
        out.push('\n');
    };
    if from.is_empty() || to.is_empty() {
        let (sign, text) = if from.is_empty() { ("+", to) } else { ("-", from) };
        for value in text.split_inclusive('\n') {
            line(sign, value);
        }
        return;
    }
    let diff = TextDiff::from_lines(from, to);
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => "-",
            ChangeTag::Insert => "+",
            ChangeTag::Equal => " ",
        };
        line(sign, change.value());
    }
}

/// Left-aligned columns ([`super::table`]).
fn table<C: AsRef<str>, R: AsRef<[C]>>(out: &mut String, header: &[&str], rows: &[R], indent: &str) {
    let all: Vec<Vec<&str>> = std::iter::once(header.to_vec())
        .chain(rows.iter().map(|r| r.as_ref().iter().map(AsRef::as_ref).collect()))
        .collect();
    out.push_str(&super::table::table(&all, indent));
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

    fn symbol_style(symbol: &str) -> Style {
        match symbol {
            "+" => Style::new().green(),
            "-" => Style::new().red(),
            "~" | "±" => Style::new().yellow(),
            _ => Style::new().cyan(),
        }
    }

    /// Append what `write` writes, in the colour of `symbol`.
    fn write_symbol(&self, out: &mut String, symbol: &str, write: impl FnOnce(&mut String)) {
        if self.color {
            let mut text = String::new();
            write(&mut text);
            out.push_str(&self.paint(Self::symbol_style(symbol), &text));
        } else {
            write(out);
        }
    }

    /// Append `text` in the colour of `action`, bold.
    fn write_action(&self, out: &mut String, action: Action, text: &str) {
        if self.color {
            let coloured = self.paint(Self::symbol_style(action.symbol()), text);
            out.push_str(&self.paint(Style::new().bold(), &coloured));
        } else {
            out.push_str(text);
        }
    }

    /// Append `sign value`, green for `+`, red for `-`.
    fn write_diff_line(&self, out: &mut String, sign: &str, value: &str) {
        let style = match sign {
            "+" => Style::new().green(),
            "-" => Style::new().red(),
            _ => {
                let _ = write!(out, "{sign} {value}");
                return;
            }
        };
        if self.color {
            out.push_str(&self.paint(style, &format!("{sign} {value}")));
        } else {
            let _ = write!(out, "{sign} {value}");
        }
    }
}
