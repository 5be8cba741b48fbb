//! `ferry graph`: the changeset as Graphviz DOT, one cluster per app, edges as the apply
//! engine will honour them.

use std::fmt::Write as _;

use super::view::{shorten_digests, StageView};

/// Render one stage's operations as a DOT digraph.
pub fn render(stage: &StageView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&format!("ferry plan: {}", stage.stage)));
    let _ = writeln!(out, "  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];");
    for app in &stage.apps {
        let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{}", app.app)));
        let _ = writeln!(out, "    label={};", quote(&format!("{} {} ({})", app.symbol, app.app, app.action.as_str())));
        for id in &app.operations {
            let Some(op) = stage.operation(id) else { continue };
            let args: Vec<String> = op.arguments.iter().map(|(k, v)| format!("{k}={}", shorten_digests(v))).collect();
            let label = format!("{} {}\\n{}", op.symbol, op.id, args.join("\\n"));
            let _ = writeln!(out, "    {} [label={}];", quote(&op.id), quote_label(&label));
        }
        let _ = writeln!(out, "  }}");
    }
    for op in &stage.operations {
        for dep in &op.depends_on {
            let _ = writeln!(out, "  {} -> {};", quote(dep), quote(&op.id));
        }
    }
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Like `quote`, keeping the `\n` line breaks DOT understands in labels.
fn quote_label(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}
