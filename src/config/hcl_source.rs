//! HCL stage files to [`SourceNode`], with spans, via `hcl-edit`.
//!
//! The HCL form holds exactly the TOML model (see `docs/HCL.md`); this module only maps HCL's
//! shapes onto the tree `toml_source` builds, so serde and every check in `validate` work
//! unchanged and point into the `.hcl` file:
//!
//! - `key = value` is the entry `key`; an unlabelled block `health { … }` is the table `health`;
//! - `app "web" { … }` is the table `apps.web`;
//! - `release_task "migrate" { … }` is the element `release_tasks[i]` with `name = "migrate"`;
//! - object keys may be identifiers, strings or numbers (`releases = { 2 = "sha256:…" }`).
//!
//! ferry does not evaluate HCL expressions: `"${PORT}"` stays the text `${PORT}`, as in TOML,
//! and anything that would need evaluating (variables, functions, operators) is an error.

use std::ops::Range;
use std::path::Path;

use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::template::Element;
use hcl_edit::Span;

use crate::config::diagnostic::Diagnostic;
use crate::config::source_tree::{SourceNode, SourceValue};

/// Labelled blocks and the TOML key they stand for.
const APP_BLOCK: &str = "app";
const RELEASE_TASK_BLOCK: &str = "release_task";

/// Parse an HCL stage file.
pub fn parse(path: &Path, text: &str) -> Result<SourceNode, Diagnostic> {
    let body = parse_body(path, text)?;
    Converter { path, text }.body(&body, None, 0..text.len())
}

/// Parse HCL text into an editable `hcl-edit` body; a syntax error is a located diagnostic.
pub fn parse_body(path: &Path, text: &str) -> Result<Body, Diagnostic> {
    check_depth(path, text)?;
    hcl_edit::parser::parse_body(text).map_err(|e| {
        let at = e.location().offset();
        // hcl-edit's message is its own excerpt plus "expected …"; keep the message line and
        // let our renderer draw the location.
        let msg = e.message().lines().next().unwrap_or("invalid HCL").trim().to_string();
        Diagnostic::at(path, text, at..at + 1, format!("HCL syntax: {msg}")).with_hint(
            "fix the syntax at the caret; ferry's HCL form is described in docs/HCL.md \
             (attributes `key = value`, blocks `name { … }`, `app \"NAME\" { … }`)",
        )
    })
}

/// Refuse HCL nested deeper than hcl-edit's parser can recurse; every caller of
/// `hcl_edit::parser` checks this first.
pub fn check_depth(path: &Path, text: &str) -> Result<(), Diagnostic> {
    let Some(at) = too_deep(text) else { return Ok(()) };
    Err(Diagnostic::at(path, text, at..at + 1, format!("HCL nested more than {MAX_DEPTH} levels deep")).with_hint(
        "a stage file nests a few levels and writes at most one `-` before a number: close the brackets and braces \
         opened before this one, or remove the extra `-` and `!`",
    ))
}

/// How deep brackets, braces, parentheses, `${…}` and unary operators (`-`, `!`) may nest.
/// hcl-edit's parser recurses once per level without a limit of its own, so a few thousand
/// `[` or `-` overflow the stack (found by the `stage_hcl` fuzz target and by hand); a real
/// stage file nests a handful of levels.
const MAX_DEPTH: usize = 128;

/// The byte offset of the first opening that nests deeper than [`MAX_DEPTH`], if any. Skips
/// comments and the text of strings, but counts `${` inside them. A unary operator is a level
/// that stays open until the term it applies to ends: `-[-[1]]` is four levels.
fn too_deep(text: &str) -> Option<usize> {
    #[derive(PartialEq)]
    enum Open {
        Code,
        Interpolation,
    }
    let bytes = text.as_bytes();
    // Each opening with the unary operators written right before it (they close with it).
    let mut stack: Vec<(Open, usize)> = Vec::new();
    // Operators of the stack, operators waiting for their term, and those before the string
    // being read (its `${` keeps them open).
    let (mut operators, mut pending, mut before_string) = (0usize, 0usize, 0usize);
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if in_string {
            match (b, next) {
                (b'\\', _) => i += 1,
                (b'"', _) => in_string = false,
                (b'$' | b'%', Some(b'{')) => {
                    stack.push((Open::Interpolation, before_string));
                    operators += before_string;
                    before_string = 0;
                    in_string = false;
                    i += 1;
                    if stack.len() + operators > MAX_DEPTH {
                        return Some(i - 1);
                    }
                }
                (b'\n', _) => in_string = false,
                _ => {}
            }
        } else {
            match (b, next) {
                (b'"', _) => {
                    in_string = true;
                    before_string = std::mem::take(&mut pending);
                }
                (b'#', _) | (b'/', Some(b'/')) => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                (b'/', Some(b'*')) => {
                    i += 2;
                    while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                        i += 1;
                    }
                    i += 1;
                }
                (b'[' | b'{' | b'(', _) => {
                    stack.push((Open::Code, pending));
                    operators += std::mem::take(&mut pending);
                    if stack.len() + operators > MAX_DEPTH {
                        return Some(i);
                    }
                }
                (b'-' | b'!', _) => {
                    pending += 1;
                    if stack.len() + operators + pending > MAX_DEPTH {
                        return Some(i);
                    }
                }
                // An identifier (which may hold `-`) or a number (`1e-5`) ends the operators
                // before it.
                (c, _) if c.is_ascii_alphanumeric() || c == b'_' => {
                    pending = 0;
                    while i + 1 < bytes.len()
                        && matches!(bytes[i + 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.')
                    {
                        i += 1;
                    }
                }
                (b']' | b')', _) => {
                    pending = 0;
                    if let Some((_, n)) = stack.pop() {
                        operators -= n;
                    }
                }
                // Closing `${…}` goes back into its string.
                (b'}', _) => {
                    pending = 0;
                    let closed = stack.pop();
                    if let Some((_, n)) = &closed {
                        operators -= n;
                    }
                    in_string = closed.is_some_and(|(open, _)| open == Open::Interpolation);
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

struct Converter<'a> {
    path: &'a Path,
    text: &'a str,
}

fn span_of(s: &impl Span) -> Range<usize> {
    s.span().unwrap_or(0..0)
}

impl Converter<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>, hint: &str) -> Diagnostic {
        Diagnostic::at(self.path, self.text, span, message).with_hint(hint)
    }

    /// A table node from a body: attributes and blocks in file order.
    fn body(&self, body: &Body, key_span: Option<Range<usize>>, span: Range<usize>) -> Result<SourceNode, Diagnostic> {
        let mut entries: Vec<(String, SourceNode)> = Vec::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attr) => {
                    let key = attr.key.as_str().to_string();
                    let key_span = span_of(&attr.key);
                    self.unique(&entries, &key, key_span.clone())?;
                    entries.push((key, self.expr(&attr.value, Some(key_span))?));
                }
                Structure::Block(block) => self.block(block, &mut entries)?,
            }
        }
        Ok(SourceNode { key_span, span, value: SourceValue::Table(entries) })
    }

    fn unique(&self, entries: &[(String, SourceNode)], key: &str, at: Range<usize>) -> Result<(), Diagnostic> {
        if entries.iter().any(|(k, _)| k == key) {
            return Err(self.error(at, format!("`{key}` is set twice"), "keep one of the two"));
        }
        Ok(())
    }

    fn block(&self, block: &Block, entries: &mut Vec<(String, SourceNode)>) -> Result<(), Diagnostic> {
        let ident = block.ident.as_str();
        let ident_span = span_of(&block.ident);
        let labelled = ident == APP_BLOCK || ident == RELEASE_TASK_BLOCK;
        if !labelled {
            if let Some(label) = block.labels.first() {
                return Err(self.error(
                    span_of(label),
                    format!("block `{ident}` takes no label"),
                    "only `app \"NAME\"` and `release_task \"NAME\"` blocks are labelled",
                ));
            }
            self.unique(entries, ident, ident_span.clone())?;
            let node = self.body(&block.body, Some(ident_span), span_of(block))?;
            entries.push((ident.to_string(), node));
            return Ok(());
        }
        let [label] = block.labels.as_slice() else {
            let what = if ident == APP_BLOCK { "the app's name" } else { "the task's name" };
            return Err(self.error(
                ident_span,
                format!("a `{ident}` block takes one label: {what}"),
                &format!("write `{ident} \"NAME\" {{ … }}`"),
            ));
        };
        let name = label.as_str().to_string();
        let label_span = span_of(label);
        // The plural key is created by the first block of its kind and points at it.
        let plural = if ident == APP_BLOCK { "apps" } else { "release_tasks" };
        if !entries.iter().any(|(k, _)| k == plural) {
            let value =
                if ident == APP_BLOCK { SourceValue::Table(Vec::new()) } else { SourceValue::Array(Vec::new()) };
            entries.push((
                plural.to_string(),
                SourceNode { key_span: Some(ident_span.clone()), span: span_of(block), value },
            ));
        }
        let Some((_, group)) = entries.iter_mut().find(|(k, _)| k == plural) else { unreachable!() };
        match &mut group.value {
            SourceValue::Table(apps) => {
                if apps.iter().any(|(k, _)| *k == name) {
                    return Err(self.error(
                        label_span,
                        format!("app `{name}` is declared twice"),
                        "merge the two `app` blocks into one",
                    ));
                }
                let node = self.body(&block.body, Some(label_span), span_of(block))?;
                apps.push((name, node));
            }
            SourceValue::Array(tasks) => {
                let mut node = self.body(&block.body, Some(label_span.clone()), span_of(block))?;
                if let SourceValue::Table(fields) = &mut node.value {
                    if let Some((_, set)) = fields.iter().find(|(k, _)| k == "name") {
                        return Err(self.error(
                            set.key_span.clone().unwrap_or(label_span),
                            "a release task's name is its block label",
                            "remove the `name` attribute",
                        ));
                    }
                    let name_node = SourceNode {
                        key_span: Some(label_span.clone()),
                        span: label_span,
                        value: SourceValue::String(name),
                    };
                    fields.insert(0, ("name".to_string(), name_node));
                }
                tasks.push(node);
            }
            // `apps = …` or `release_tasks = …` was also written as an attribute.
            _ => {
                return Err(self.error(
                    ident_span,
                    format!("`{plural}` is set both as an attribute and with `{ident}` blocks"),
                    &format!("use `{ident}` blocks only"),
                ))
            }
        }
        Ok(())
    }

    fn expr(&self, expr: &Expression, key_span: Option<Range<usize>>) -> Result<SourceNode, Diagnostic> {
        let span = span_of(expr);
        let value = match expr {
            Expression::Bool(b) => SourceValue::Bool(*b.value()),
            Expression::Number(_) => self.number(span.clone())?,
            Expression::String(s) => SourceValue::String(s.value().clone()),
            Expression::StringTemplate(t) => {
                let mut out = String::new();
                for element in t.iter() {
                    match element {
                        Element::Literal(s) => out.push_str(s.value()),
                        Element::Interpolation(i) if i.expr.is_variable() => {
                            out.push_str("${");
                            out.push_str(i.expr.as_variable().map(|v| v.as_str()).unwrap_or_default());
                            out.push('}');
                        }
                        _ => return Err(self.not_evaluated(span)),
                    }
                }
                SourceValue::String(out)
            }
            Expression::Array(items) => {
                SourceValue::Array(items.iter().map(|e| self.expr(e, None)).collect::<Result<_, _>>()?)
            }
            Expression::Object(object) => {
                self.check_no_lost_entries(object, span.clone())?;
                let mut entries: Vec<(String, SourceNode)> = Vec::new();
                for (key, value) in object.iter() {
                    let key_span = span_of(key);
                    let name = match key {
                        ObjectKey::Ident(i) => i.as_str().to_string(),
                        ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
                        ObjectKey::Expression(Expression::Number(_)) => self.text[key_span.clone()].trim().to_string(),
                        ObjectKey::Expression(_) => {
                            return Err(self.error(
                                key_span,
                                "an object key must be a name, a quoted string or a number",
                                "write e.g. `2 = \"sha256:…\"` or `RAILS_ENV = \"production\"`",
                            ))
                        }
                    };
                    self.unique(&entries, &name, key_span.clone())?;
                    entries.push((name, self.expr(value.expr(), Some(key_span))?));
                }
                SourceValue::Table(entries)
            }
            Expression::Parenthesis(p) => return self.expr(p.inner(), key_span),
            // hcl-edit reads `-5` as the number -5 itself; an operator left over is a second
            // `-` (`--5`, which it would negate again) or a `!`.
            Expression::UnaryOp(_) => {
                return Err(self.error(
                    span,
                    "a number takes at most one `-`, and `!` is not a value",
                    "write the number itself, e.g. `-1` or `1`",
                ))
            }
            Expression::Null(_) => {
                return Err(self.error(span, "`null` is not a value here", "remove the attribute to use its default"))
            }
            Expression::HeredocTemplate(_) => {
                return Err(self.error(span, "heredocs are not supported", "write a quoted string"))
            }
            _ => return Err(self.not_evaluated(span)),
        };
        Ok(SourceNode { key_span, span, value })
    }

    /// hcl-edit keeps objects in a map, so `{ A = "1", A = "2" }` silently keeps only the
    /// second `A`. Find such a lost entry: between the spans of the entries it kept, the text
    /// holds only separators and comments, unless an entry was dropped there.
    fn check_no_lost_entries(&self, object: &hcl_edit::expr::Object, span: Range<usize>) -> Result<(), Diagnostic> {
        let mut gaps = Vec::new();
        let mut from = span.start + 1;
        for (key, value) in object.iter() {
            let (k, v) = (span_of(key), span_of(value.expr()));
            gaps.push(from..k.start);
            from = v.end;
        }
        gaps.push(from..span.end.saturating_sub(1));
        for gap in gaps {
            let Some(text) = self.text.get(gap.clone()) else { continue };
            let mut offset = gap.start;
            for line in text.split_inclusive('\n') {
                let code = line.split("//").next().unwrap_or("").split('#').next().unwrap_or("");
                if let Some(eq) = code.find(['=', ':']) {
                    let key = code[..eq].trim().trim_matches([',', ' ', '"']);
                    let start = offset + code.find(|c: char| !c.is_whitespace() && c != ',').unwrap_or(0);
                    return Err(self.error(
                        start..start + key.len().max(1),
                        format!("`{key}` is set twice in this object"),
                        "keep one of the two",
                    ));
                }
                offset += line.len();
            }
        }
        Ok(())
    }

    /// The number written at `span`, read from its text as TOML reads numbers: an integer
    /// is exact (hcl-edit would turn `1.0` into the integer 1 and an integer beyond i64
    /// into an approximate float), and anything with a fraction or exponent is a float.
    fn number(&self, span: Range<usize>) -> Result<SourceValue, Diagnostic> {
        let literal: String = self.text[span.clone()].chars().filter(|c| !c.is_whitespace()).collect();
        if literal.contains(['.', 'e', 'E']) {
            return match literal.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(SourceValue::Float(f)),
                _ => Err(self.error(span, format!("`{literal}` is not a finite number"), "write a smaller number")),
            };
        }
        literal.parse::<i64>().map(SourceValue::Integer).map_err(|_| {
            self.error(
                span,
                format!("`{literal}` is out of range for an integer"),
                "integers go from -9223372036854775808 to 9223372036854775807",
            )
        })
    }

    fn not_evaluated(&self, span: Range<usize>) -> Diagnostic {
        self.error(
            span,
            "ferry does not evaluate HCL expressions",
            "write a literal value; `${NAME}` inside a string is kept as written",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::{Format, SourceFile, Target};
    use crate::path;

    fn src(text: &str) -> SourceFile {
        SourceFile::parse(Path::new("stages/p.hcl"), text.to_string(), Format::Hcl).unwrap()
    }

    fn err(text: &str) -> Diagnostic {
        SourceFile::parse(Path::new("stages/p.hcl"), text.to_string(), Format::Hcl).unwrap_err()
    }

    const TEXT: &str = r#"runtime {
  kind = "local"
}

app "web" {
  image   = "web"
  command = ["serve", "${PORT}"]
  releases = {
    2 = "sha256:aa"
    "10" = "sha256:bb"
  }
  env = { RAILS_ENV = "production" }
  scale = -1
  health {
    path = "/health"
  }
  release_task "migrate" {
    command = ["migrate"]
  }
}
"#;

    #[test]
    fn maps_blocks_onto_the_toml_tree() {
        let s = src(TEXT);
        let json = s.root().to_json();
        assert_eq!(json["runtime"]["kind"], "local");
        assert_eq!(json["apps"]["web"]["command"][1], "${PORT}");
        assert_eq!(json["apps"]["web"]["releases"]["2"], "sha256:aa");
        assert_eq!(json["apps"]["web"]["releases"]["10"], "sha256:bb");
        assert_eq!(json["apps"]["web"]["env"]["RAILS_ENV"], "production");
        assert_eq!(json["apps"]["web"]["scale"], -1);
        assert_eq!(json["apps"]["web"]["health"]["path"], "/health");
        assert_eq!(json["apps"]["web"]["release_tasks"][0]["name"], "migrate");
        assert_eq!(json["apps"]["web"]["release_tasks"][0]["command"][0], "migrate");
    }

    #[test]
    fn spans_point_into_the_hcl_text() {
        let s = src(TEXT);
        let at = |p: Vec<crate::config::source_tree::PathSeg>, t| &TEXT[s.span_of(&p, t)];
        assert_eq!(at(path!["apps", "web"], Target::Key), "\"web\"");
        assert_eq!(at(path!["apps", "web", "releases", "2"], Target::Value), "\"sha256:aa\"");
        assert_eq!(at(path!["apps", "web", "releases", "2"], Target::Key), "2");
        assert_eq!(at(path!["apps", "web", "health", "path"], Target::Key), "path");
        assert_eq!(at(path!["apps", "web", "release_tasks", 0, "name"], Target::Value), "\"migrate\"");
        // A missing key points at the block that should hold it.
        assert_eq!(at(path!["runtime", "region"], Target::Key), "runtime");
    }

    #[test]
    fn syntax_errors_are_located() {
        let d = err("app \"web\" {\n  image = \n}\n");
        // The value is missing right after `=`.
        assert_eq!((d.line, d.col, d.file.to_str()), (2, 11, Some("stages/p.hcl")), "{d}");
        assert!(d.message.starts_with("HCL syntax: "), "{}", d.message);
        assert!(d.hint.is_some());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Found by the stage_hcl fuzz target: hcl-edit recursed until the stack overflowed.
        for text in [
            format!("x = {}\n", "[".repeat(20_000)),
            format!("x = {}1{}\n", "(".repeat(20_000), ")".repeat(20_000)),
            format!("x = \"{}\"\n", "${\"".repeat(5_000)),
            format!("{}\n", "a {\n".repeat(5_000)),
        ] {
            let d = err(&text);
            assert!(d.message.contains("nested more than 128 levels"), "{}", d.message);
        }
        // Brackets in strings and comments do not count; moderate nesting still parses.
        let text = format!(
            "# {}\napp \"a\" {{\n  command = [\"{}\"]\n  env = {{ A = \"${{X}}\" }}\n}}\n",
            "[".repeat(500),
            "[(".repeat(500)
        );
        assert!(SourceFile::parse(Path::new("stages/p.hcl"), text, Format::Hcl).is_ok());
        assert!(too_deep(&format!("x = {}{}\n", "[".repeat(128), "]".repeat(128))).is_none());
    }

    #[test]
    fn unary_operators_count_as_nesting() {
        // `active = ` then 5,000 `-` overflowed hcl-edit's stack (exit 134).
        for text in [
            format!("active = {}1\n", "-".repeat(5_000)),
            format!("active = {}1\n", "- ".repeat(5_000)),
            format!("active = {}true\n", "!".repeat(5_000)),
            format!("x = {}1{}\n", "-[".repeat(100), "]".repeat(100)),
        ] {
            let d = err(&text);
            assert!(d.message.contains("nested more than 128 levels"), "{}", d.message);
        }
        // `-` inside identifiers and numbers is no operator.
        assert!(too_deep(&format!("{} = 1e-5\n", "a-".repeat(500) + "b")).is_none());
    }

    #[test]
    fn numbers_are_exact_and_take_one_minus() {
        let value = |text: &str| src(text).root().to_json()["x"].clone();
        assert_eq!(value("x = -9223372036854775808\n"), serde_json::json!(i64::MIN));
        assert_eq!(value("x = - 5\n"), serde_json::json!(-5));
        // `1.0` is a float, as in TOML (hcl-edit would make it the integer 1).
        assert!(value("x = 1.0\n").is_f64());
        assert!(value("x = 2e3\n").is_f64());
        for (text, message) in [
            // Read as 1 and as a wrapped i64::MIN before.
            ("x = ---1\n", "at most one `-`"),
            ("x = --1\n", "at most one `-`"),
            ("x = --9223372036854775808\n", "at most one `-`"),
            ("x = !true\n", "at most one `-`"),
            // An approximate float before.
            ("x = 9223372036854775808\n", "out of range"),
            ("x = -9223372036854775809\n", "out of range"),
        ] {
            let d = err(text);
            assert!(d.message.contains(message), "{text}: {}", d.message);
            assert_eq!(d.line, 1, "{text}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_map() {
        let cases = [
            ("app \"a\" {\n  image = var.x\n}\n", "does not evaluate", 2),
            ("app {\n}\n", "takes one label", 1),
            ("health \"x\" {\n}\n", "takes no label", 1),
            ("app \"a\" {\n}\napp \"a\" {\n}\n", "declared twice", 3),
            ("app \"a\" {\n  port = 1\n  port = 2\n}\n", "redefined attribute", 3),
            ("app \"a\" {\n  env = { A = \"1\", A = \"2\" }\n}\n", "set twice", 2),
            ("health {\n}\nhealth {\n}\n", "set twice", 3),
            ("app \"a\" {\n  port = null\n}\n", "null", 2),
        ];
        for (text, message, line) in cases {
            let d = err(text);
            assert!(d.message.contains(message), "{text}: {}", d.message);
            assert_eq!(d.line, line, "{text}");
        }
    }
}
