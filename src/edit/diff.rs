//! Unified diffs of a file before and after a change, as `ferry fmt --check` and the commands
//! that edit stage files print them.

use similar::{ChangeTag, TextDiff};

/// A unified diff of `old` and `new` (the contents of `path`), with three lines of context;
/// empty when they are equal. Coloured (red removals, green additions) only when `color`.
pub fn unified_diff(path: &str, old: &str, new: &str, color: bool) -> String {
    if old == new {
        return String::new();
    }
    let diff = TextDiff::from_lines(old, new);
    let mut out = String::new();
    let paint = |line: String, tag: Option<ChangeTag>| -> String {
        if !color {
            return line;
        }
        let style = match tag {
            Some(ChangeTag::Delete) => console::Style::new().red(),
            Some(ChangeTag::Insert) => console::Style::new().green(),
            Some(ChangeTag::Equal) => return line,
            None => console::Style::new().cyan(),
        };
        style.force_styling(true).apply_to(line).to_string()
    };
    out.push_str(&paint(format!("--- a/{path}"), Some(ChangeTag::Delete)));
    out.push('\n');
    out.push_str(&paint(format!("+++ b/{path}"), Some(ChangeTag::Insert)));
    out.push('\n');
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        out.push_str(&paint(hunk.header().to_string(), None));
        out.push('\n');
        for change in hunk.iter_changes() {
            let sign = match change.tag() {
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
                ChangeTag::Equal => ' ',
            };
            let text = change.value();
            let line = format!("{sign}{}", text.strip_suffix('\n').unwrap_or(text));
            out.push_str(&paint(line, Some(change.tag())));
            out.push('\n');
            if change.missing_newline() {
                out.push_str("\\ No newline at end of file\n");
            }
        }
    }
    out
}

/// `diff` with the value of each sensitive env var `(key, value)` replaced by
/// `(sensitive)` on every line that sets that key, as plans mask them. The value is looked
/// for as written and as TOML and HCL escape it in a quoted string; only after the key, so a
/// short value does not blank out the rest of the diff.
pub fn mask_sensitive_lines(diff: &str, sensitive: &[(String, String)]) -> String {
    if sensitive.is_empty() {
        return diff.to_string();
    }
    let mut out = String::with_capacity(diff.len());
    for line in diff.split_inclusive('\n') {
        let mut line = line.to_string();
        for (key, value) in sensitive.iter().filter(|(_, v)| !v.is_empty()) {
            let Some(at) = line.find(key.as_str()) else { continue };
            let after = at + key.len();
            let escaped = serde_json::to_string(value).expect("a string serialises");
            let escaped = &escaped[1..escaped.len() - 1];
            let mut rest = line[after..].to_string();
            for form in [value.as_str(), escaped] {
                rest = rest.replace(form, crate::plan::diff::SENSITIVE);
            }
            line.replace_range(after.., &rest);
        }
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_sensitive_values_on_their_lines() {
        let diff = "-TOKEN = \"old\\\"secret\"\n+TOKEN = \"new-secret\"\n OTHER = \"old\"\n+env = { TOKEN = \"new-secret\" }\n";
        let sensitive =
            [("TOKEN".to_string(), "old\"secret".to_string()), ("TOKEN".to_string(), "new-secret".to_string())];
        let masked = mask_sensitive_lines(diff, &sensitive);
        assert!(!masked.contains("secret"), "{masked}");
        assert_eq!(masked.matches("(sensitive)").count(), 3, "{masked}");
        // Another key's value stays, even when it equals part of a sensitive one.
        assert!(masked.contains(" OTHER = \"old\""), "{masked}");
    }

    #[test]
    fn shows_changed_lines_with_context() {
        let old = "a\nb\nc\n";
        let new = "a\nB\nc\n";
        assert_eq!(
            unified_diff("f.toml", old, new, false),
            "--- a/f.toml\n+++ b/f.toml\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
    }

    #[test]
    fn equal_texts_have_no_diff_and_colour_is_opt_in() {
        assert_eq!(unified_diff("f", "x\n", "x\n", true), "");
        let coloured = unified_diff("f", "x\n", "y\n", true);
        assert!(coloured.contains("\u{1b}["), "{coloured:?}");
        assert!(!unified_diff("f", "x\n", "y\n", false).contains('\u{1b}'));
    }
}
