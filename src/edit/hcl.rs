//! Edits and canonical formatting of HCL stage files, with `hcl-edit` so comments (kept in
//! each structure's decor) travel with the attribute or block they describe.

use std::cmp::Ordering;
use std::path::Path;

use hcl_edit::expr::{Expression, Object, ObjectKey, ObjectValue, ObjectValueTerminator};
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use hcl_edit::{Decorate, Decorated, Ident, Number};

use crate::config::diagnostic::Diagnostic;
use crate::config::model::Digest;
use crate::edit::order::{self, rank};
use crate::edit::{AppAt, EditResult, FileValue};

fn app_block<'a>(body: &'a mut Body, at: &AppAt) -> EditResult<&'a mut Block> {
    body.blocks_mut()
        .find(|b| b.has_ident("app") && b.labels.len() == 1 && b.labels[0].as_str() == at.app)
        .ok_or_else(|| at.unknown())
}

/// The TOML key a structure stands for, for ordering.
fn structure_key(s: &Structure) -> &str {
    match s {
        Structure::Attribute(a) => a.key.as_str(),
        Structure::Block(b) if b.has_ident("release_task") => "release_tasks",
        Structure::Block(b) if b.has_ident("app") => "apps",
        Structure::Block(b) => b.ident.as_str(),
    }
}

fn attr_index(body: &Body, key: &str) -> Option<usize> {
    body.iter().position(|s| s.as_attribute().is_some_and(|a| a.has_key(key)))
}

fn attr_value<'a>(body: &'a mut Body, key: &str) -> Option<&'a mut Expression> {
    let i = attr_index(body, key)?;
    body.get_mut(i).and_then(Structure::as_attribute_mut).map(|a| &mut a.value)
}

/// The indentation of a block's structures.
fn child_indent(block: &Block) -> String {
    let own = block.decor().prefix().map(|p| after_newline(p)).unwrap_or_default();
    block
        .body
        .iter()
        .find_map(|s| s.decor().prefix().map(|p| after_newline(p)))
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| format!("{own}  "))
}

fn raw(r: Option<&hcl_edit::RawString>) -> &str {
    r.map(|r| &**r).unwrap_or("")
}

fn after_newline(s: &str) -> String {
    s.rsplit('\n').next().unwrap_or("").to_string()
}

/// Insert `structure` into `body` after the structures that precede it canonically.
fn insert_in_order(body: &mut Body, structure: Structure, indent: &str) {
    insert_ordered(body, structure, indent, order::APP);
}

/// Insert `structure` into `body` after the structures that precede it in `order`.
fn insert_ordered(body: &mut Body, structure: Structure, indent: &str, order: &[&str]) {
    let mut structure = structure;
    // A multi-line attribute gets a blank line before it, as `fmt` lays it out.
    let blank = if structure.as_attribute().is_some_and(|a| a.value.to_string().contains('\n')) { "\n" } else { "" };
    structure.decor_mut().set_prefix(format!("{blank}{indent}"));
    let r = rank(order, structure_key(&structure));
    let ranks: Vec<usize> = body.iter().map(|s| rank(order, structure_key(s))).collect();
    let at = ranks.iter().rposition(|k| *k <= r).map_or(0, |i| i + 1);
    body.insert(at, structure);
}

fn key_name(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Ident(i) => i.as_str().to_string(),
        ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
        ObjectKey::Expression(e) => key_name_text(&ObjectKey::Expression(e.clone())),
    }
}

fn find_key(object: &Object, name: &str) -> Option<ObjectKey> {
    object.iter().find(|(k, _)| key_name(k) == name).map(|(k, _)| k.clone())
}

/// Append `key = value` to an object, laid out like its last entry.
fn append_entry(object: &mut Object, key: ObjectKey, value: Expression, indent: &str) {
    let mut key = key;
    let mut value = ObjectValue::new(value);
    let last = object.iter_mut().last();
    match last {
        None => {
            key.decor_mut().set_prefix(format!("\n{indent}  "));
            value.set_terminator(ObjectValueTerminator::Newline);
            object.set_trailing(indent.to_string());
        }
        Some((last_key, last_value)) => {
            let prefix = raw(last_key.decor().prefix()).to_string();
            let ws = after_newline(&prefix);
            let newline = last_value.terminator() != ObjectValueTerminator::Newline && prefix.contains('\n');
            key.decor_mut().set_prefix(if newline { format!("\n{ws}") } else { ws });
            if last_value.terminator() == ObjectValueTerminator::None {
                last_value.set_terminator(ObjectValueTerminator::Comma);
                value.set_terminator(ObjectValueTerminator::None);
            } else {
                value.set_terminator(last_value.terminator());
            }
        }
    }
    key.decor_mut().set_suffix(" ");
    value.expr_mut().decor_mut().set_prefix(" ");
    object.insert(key, value);
}

/// A new multi-line attribute `key = { name = value }`, as text parsed by hcl-edit.
fn new_object_attr(key: &str, name: &str, value: &str, indent: &str) -> Structure {
    let text = format!("{key} = {{\n{indent}  {name} = {value}\n{indent}}}\n");
    let body = hcl_edit::parser::parse_body(&text).expect("generated HCL parses");
    body.into_iter().next().expect("one attribute")
}

fn object_key(name: &str) -> ObjectKey {
    if let Ok(n) = name.parse::<u64>() {
        return ObjectKey::Expression(Expression::from(Number::from(n)));
    }
    match Ident::try_new(name) {
        Ok(i) => ObjectKey::Ident(Decorated::new(i)),
        Err(_) => ObjectKey::Expression(Expression::from(name)),
    }
}

fn quoted(s: &str) -> String {
    Expression::from(s).to_string()
}

pub(super) fn add_release(body: &mut Body, at: &AppAt, id: u64, digest: &Digest) -> EditResult {
    let block = app_block(body, at)?;
    let indent = child_indent(block);
    let digest = digest.to_string();
    match attr_value(&mut block.body, "releases") {
        Some(value) => {
            let object = value.as_object_mut().ok_or_else(|| at.not_a_table("releases"))?;
            if find_key(object, &id.to_string()).is_some() {
                return Err(at.release_exists(id));
            }
            append_entry(object, object_key(&id.to_string()), Expression::from(digest), &indent);
        }
        None => {
            let attr = new_object_attr("releases", &id.to_string(), &quoted(&digest), &indent);
            insert_in_order(&mut block.body, attr, &indent);
        }
    }
    Ok(())
}

pub(super) fn remove_release(body: &mut Body, at: &AppAt, id: u64) -> EditResult {
    let block = app_block(body, at)?;
    let object = attr_value(&mut block.body, "releases").and_then(Expression::as_object_mut);
    let Some(object) = object else { return Err(at.unknown_release(id)) };
    let key = find_key(object, &id.to_string()).ok_or_else(|| at.unknown_release(id))?;
    object.remove(&key);
    Ok(())
}

pub(super) fn set_active(body: &mut Body, at: &AppAt, id: u64) -> EditResult {
    let block = app_block(body, at)?;
    let indent = child_indent(block);
    let mut new = Expression::from(Number::from(id));
    match attr_value(&mut block.body, "active") {
        Some(old) => {
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        None => insert_in_order(&mut block.body, Attribute::new(Ident::new("active"), new).into(), &indent),
    }
    Ok(())
}

pub(super) fn set_env(body: &mut Body, at: &AppAt, key: &str, value: Option<&str>) -> EditResult {
    let block = app_block(body, at)?;
    let indent = child_indent(block);
    let Some(env) = attr_value(&mut block.body, "env") else {
        if let Some(v) = value {
            let attr = new_object_attr("env", &key_text(key), &quoted(v), &indent);
            insert_in_order(&mut block.body, attr, &indent);
        }
        return Ok(());
    };
    let object = env.as_object_mut().ok_or_else(|| at.not_a_table("env"))?;
    let existing = find_key(object, key);
    match (value, existing) {
        (Some(v), Some(k)) => {
            if let Some(slot) = object.get_mut(&k) {
                let mut new = Expression::from(v);
                *new.decor_mut() = slot.expr().decor().clone();
                *slot.expr_mut() = new;
            }
        }
        (Some(v), None) => append_entry(object, object_key(key), Expression::from(v), &indent),
        (None, Some(k)) => {
            object.remove(&k);
            if object.is_empty() {
                if let Some(i) = attr_index(&block.body, "env") {
                    block.body.remove(i);
                }
            }
        }
        (None, None) => {}
    }
    Ok(())
}

fn key_text(key: &str) -> String {
    key_name_text(&object_key(key))
}

// ---------------------------------------------------------------------------------------
// Edits of any app value (rollback restores a deployment's whole config this way)

/// `value` as an HCL expression, laid out as `fmt` writes it.
fn to_expr(value: &FileValue) -> Expression {
    let text = expr_text(value);
    let body = hcl_edit::parser::parse_body(&format!("x = {text}\n")).expect("generated HCL parses");
    let attr = body.into_iter().next().and_then(|s| s.into_attribute().ok()).expect("one attribute");
    let mut expr = attr.value;
    expr.decor_mut().clear();
    expr
}

fn expr_text(value: &FileValue) -> String {
    let object = |entries: &[(String, FileValue)]| {
        let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{} = {}", key_text(k), expr_text(v))).collect();
        format!("{{ {} }}", inner.join(", "))
    };
    match value {
        FileValue::Int(n) => n.to_string(),
        FileValue::Bool(b) => b.to_string(),
        FileValue::Str(s) => literal(s),
        FileValue::List(items) => format!("[{}]", items.iter().map(|i| literal(i)).collect::<Vec<_>>().join(", ")),
        FileValue::Table(entries) => object(entries),
        FileValue::Tables(tables) => format!("[{}]", tables.iter().map(|t| object(t)).collect::<Vec<_>>().join(", ")),
    }
}

/// `s` as an HCL string literal. `${…}` stays as written, not escaped to `$${…}`: ferry
/// reads strings as text and never evaluates templates, so `"${PORT}"` in an HCL file means
/// what it means in TOML. JSON's escapes (`\"`, `\\`, `\n`, `\uXXXX`) are HCL's too.
fn literal(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Set (keeping its trailing comment) or remove attribute `key` of `body`, a new one going
/// where `order` puts it. Returns whether `body` is now empty.
fn set_attr(body: &mut Body, key: &str, value: Option<&FileValue>, indent: &str, order: &[&str]) -> bool {
    match (value, attr_value(body, key)) {
        (Some(v), Some(old)) => {
            let mut new = to_expr(v);
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        (Some(v), None) => {
            let mut attr = Attribute::new(Ident::new(key), to_expr(v));
            attr.value.decor_mut().set_prefix(" ");
            insert_ordered(body, attr.into(), indent, order);
            align_new(body, key);
        }
        (None, _) => {
            if let Some(i) = attr_index(body, key) {
                body.remove(i);
            }
        }
    }
    body.is_empty()
}

/// Line the `=` of the new attribute `key` up with a one-line neighbour's, as `fmt` (and
/// most hand-written files) align runs of attributes, so the new line fits in. Only the new
/// line changes: a longer key than its neighbours' stays unaligned rather than re-padding
/// lines the edit is not about.
fn align_new(body: &mut Body, key: &str) {
    let Some(i) = attr_index(body, key) else { return };
    let one_line = |s: &Structure| {
        s.as_attribute().filter(|a| !a.value.to_string().contains('\n')).map(|a| {
            let pad = raw(a.key.decor().suffix()).len().max(1);
            a.key.as_str().len() + pad
        })
    };
    // A neighbour counts when no blank line separates it from the new attribute.
    let blank = |s: &Structure| raw(s.decor().prefix()).matches('\n').count() > 1;
    let before = i.checked_sub(1).and_then(|j| body.get(j)).and_then(one_line);
    let after = body.get(i + 1).filter(|s| !blank(s)).and_then(one_line);
    let Some(column) = before.or(after) else { return };
    if let Some(attr) = body.get_mut(i).and_then(Structure::as_attribute_mut) {
        let pad = column.saturating_sub(key.len()).max(1);
        attr.key.decor_mut().set_suffix(" ".repeat(pad));
    }
}

pub(super) fn set_app_value(body: &mut Body, at: &AppAt, key: &str, value: Option<&FileValue>) -> EditResult {
    let block = app_block(body, at)?;
    let indent = child_indent(block);
    set_attr(&mut block.body, key, value, &indent, order::APP);
    Ok(())
}

/// Set or remove `key` of the app's `section`: an object attribute (`env`, `secrets`) or an
/// unlabelled block (`health`, `deploy`). A missing one is created where `fmt` would put it;
/// one emptied by a removal goes away.
pub(super) fn set_section_value(
    body: &mut Body,
    at: &AppAt,
    section: &str,
    key: &str,
    value: Option<&FileValue>,
) -> EditResult {
    if matches!(section, "env" | "secrets") {
        return set_object_entry(body, at, section, key, value);
    }
    let order = match section {
        "health" => order::HEALTH,
        "deploy" => order::DEPLOY,
        _ => &[],
    };
    let block = app_block(body, at)?;
    let indent = child_indent(block);
    let index =
        block.body.iter().position(|s| s.as_block().is_some_and(|b| b.has_ident(section) && b.labels.is_empty()));
    match (index, value) {
        (Some(i), _) => {
            let Some(sub) = block.body.get_mut(i).and_then(Structure::as_block_mut) else { return Ok(()) };
            let inner = child_indent(sub);
            if set_attr(&mut sub.body, key, value, &inner, order) {
                block.body.remove(i);
            }
        }
        (None, Some(v)) => {
            let text = format!("{section} {{\n{indent}  {key} = {}\n{indent}}}\n", to_expr(v));
            let new = hcl_edit::parser::parse_body(&text).expect("generated HCL parses");
            let new = new.into_iter().next().expect("one block");
            insert_in_order(&mut block.body, new, &indent);
            // A block is set off by a blank line, as `fmt` lays it out.
            if let Some(mut s) = block.body.iter_mut().find(|s| s.as_block().is_some_and(|b| b.has_ident(section))) {
                s.decor_mut().set_prefix(format!("\n{indent}"));
            }
        }
        (None, None) => {}
    }
    Ok(())
}

/// Set or remove entry `key` of the app's object attribute `attr` (`env`, `secrets`).
fn set_object_entry(body: &mut Body, at: &AppAt, attr: &str, key: &str, value: Option<&FileValue>) -> EditResult {
    let block = app_block(body, at)?;
    let indent = child_indent(block);
    let Some(object) = attr_value(&mut block.body, attr) else {
        if let Some(v) = value {
            let attr = new_object_attr(attr, &key_text(key), &to_expr(v).to_string(), &indent);
            insert_in_order(&mut block.body, attr, &indent);
        }
        return Ok(());
    };
    let object = object.as_object_mut().ok_or_else(|| at.not_a_table(attr))?;
    match (value, find_key(object, key)) {
        (Some(v), Some(k)) => {
            if let Some(slot) = object.get_mut(&k) {
                let mut new = to_expr(v);
                *new.decor_mut() = slot.expr().decor().clone();
                *slot.expr_mut() = new;
            }
        }
        (Some(v), None) => append_entry(object, object_key(key), to_expr(v), &indent),
        (None, Some(k)) => {
            object.remove(&k);
            if object.is_empty() {
                if let Some(i) = attr_index(&block.body, attr) {
                    block.body.remove(i);
                }
            }
        }
        (None, None) => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Canonical formatting

/// Format `rest` (the part of `full` after its header comment).
pub(super) fn format(path: &Path, full: &str, rest: &str) -> Result<String, Diagnostic> {
    crate::config::hcl_source::check_depth(path, full)?;
    let mut body = match hcl_edit::parser::parse_body(rest) {
        Ok(b) => b,
        Err(_) => {
            return Err(match crate::config::hcl_source::parse_body(path, full) {
                Err(d) => d,
                Ok(_) => Diagnostic::whole_file(path, "HCL syntax error"),
            })
        }
    };
    sort_body(&mut body, |a, b| {
        let group = |s: &Structure| match s {
            Structure::Block(b) if b.has_ident("runtime") => (0, String::new()),
            Structure::Block(b) if b.has_ident("app") => {
                (1, b.labels.first().map(|l| l.as_str().to_string()).unwrap_or_default())
            }
            _ => (2, String::new()),
        };
        group(a).cmp(&group(b))
    });
    for block in body.blocks_mut() {
        if block.has_ident("runtime") {
            sort_body(&mut block.body, by_order(order::RUNTIME));
        } else if block.has_ident("app") {
            format_app(&mut block.body);
        }
    }
    layout_body(&mut body, 0);
    // Comments outside every structure (a file of comments only, or comments after the last
    // structure) are laid out as in TOML files: one per line, a blank line before trailing
    // ones, so that blank lines between them do not make a second pass change the file.
    let lead: String = comments_of(body.decor(), true).iter().map(|c| format!("{c}\n")).collect();
    let trail = comments_of(body.decor(), false);
    body.decor_mut().set_prefix(lead);
    body.decor_mut().set_suffix(if trail.is_empty() { String::new() } else { format!("\n{}\n", trail.join("\n")) });
    let out = body.to_string();
    let out = out.trim_matches('\n');
    Ok(if out.is_empty() { String::new() } else { format!("{out}\n") })
}

fn format_app(body: &mut Body) {
    sort_body(body, by_order(order::APP));
    for i in 0..body.len() {
        let Some(attr) = body.get_mut(i).and_then(Structure::as_attribute_mut) else { continue };
        let key = attr.key.as_str().to_string();
        {
            if let Some(object) = attr.value.as_object_mut() {
                match key.as_str() {
                    "releases" => sort_object(object, order::release_ids),
                    "secrets" => sort_object(object, |a, b| a.cmp(b)),
                    _ => {}
                }
            }
        }
    }
    for block in body.blocks_mut() {
        match block.ident.as_str() {
            "health" => sort_body(&mut block.body, by_order(order::HEALTH)),
            "deploy" => sort_body(&mut block.body, by_order(order::DEPLOY)),
            "release_task" => sort_body(&mut block.body, by_order(order::RELEASE_TASK)),
            _ => {}
        }
    }
}

fn by_order(order: &'static [&'static str]) -> impl Fn(&Structure, &Structure) -> Ordering {
    move |a, b| rank(order, structure_key(a)).cmp(&rank(order, structure_key(b)))
}

fn sort_body(body: &mut Body, cmp: impl Fn(&Structure, &Structure) -> Ordering) {
    let decor = body.decor().clone();
    let omit = body.prefer_omit_trailing_newline();
    let mut items: Vec<Structure> = std::mem::take(body).into_iter().collect();
    items.sort_by(|a, b| cmp(a, b));
    *body = items.into_iter().collect();
    *body.decor_mut() = decor;
    body.set_prefer_omit_trailing_newline(omit);
}

fn sort_object(object: &mut Object, cmp: impl Fn(&str, &str) -> Ordering) {
    let decor = object.decor().clone();
    let trailing = object.trailing().clone();
    let mut items: Vec<(ObjectKey, ObjectValue)> = std::mem::take(object).into_iter().collect();
    items.sort_by(|a, b| cmp(&key_name(&a.0), &key_name(&b.0)));
    *object = items.into_iter().collect();
    *object.decor_mut() = decor;
    object.set_trailing(trailing);
}

fn comments_of(decor: &hcl_edit::Decor, prefix: bool) -> Vec<String> {
    let raw = if prefix { decor.prefix() } else { decor.suffix() };
    order::comment_lines(self::raw(raw)).into_iter().map(str::to_string).collect()
}

/// The trailing comment of a value, as ` # …`, or nothing.
fn trailing_comment(decor: &hcl_edit::Decor) -> String {
    let c = comments_of(decor, false);
    if c.is_empty() {
        String::new()
    } else {
        format!(" {}", c.join(" "))
    }
}

fn prefix_with(comments: &[String], indent: &str, blank: bool) -> String {
    let mut p = if blank { "\n".to_string() } else { String::new() };
    for c in comments {
        p.push_str(indent);
        p.push_str(c);
        p.push('\n');
    }
    p.push_str(indent);
    p
}

/// Two-space indentation per level, `key = value` aligned in runs of one-line attributes,
/// a blank line around blocks and multi-line attributes, comments kept.
fn layout_body(body: &mut Body, level: usize) {
    let indent = "  ".repeat(level);
    let mut prev_multi = false;
    let mut first = true;
    for mut s in body.iter_mut() {
        let comments = comments_of(s.decor(), true);
        let suffix = trailing_comment(s.decor());
        if let Some(block) = s.as_block_mut() {
            block.ident.decor_mut().set_prefix("");
            block.ident.decor_mut().set_suffix(" ");
            for label in &mut block.labels {
                label.decor_mut().set_prefix("");
                label.decor_mut().set_suffix(" ");
            }
            block.body.set_prefer_oneline(false);
            layout_body(&mut block.body, level + 1);
            let inner = comments_of(block.body.decor(), true);
            let closing = comments_of(block.body.decor(), false);
            let prefix = if inner.is_empty() { String::new() } else { format!(" {}", inner.join(" ")) };
            block.body.decor_mut().set_prefix(prefix);
            block.body.decor_mut().set_suffix(prefix_with(&closing, &format!("{indent}  "), false)[2..].to_string());
        } else if let Some(mut attr) = s.as_attribute_mut() {
            attr.key_decor_mut().set_prefix("");
            attr.key_decor_mut().set_suffix(" ");
            let value = attr.value_mut();
            layout_expr(value, level);
            let c = trailing_comment(value.decor());
            value.decor_mut().set_prefix(" ");
            value.decor_mut().set_suffix(c);
        }
        let multi = s.as_block().is_some() || s.as_attribute().is_some_and(|a| a.value.to_string().contains('\n'));
        let blank = !first && (multi || prev_multi);
        s.decor_mut().set_prefix(prefix_with(&comments, &indent, blank));
        s.decor_mut().set_suffix(suffix);
        prev_multi = multi;
        first = false;
    }
    align(body);
}

/// Pad keys so the `=` of consecutive one-line attributes line up (as `terraform fmt` does).
fn align(body: &mut Body) {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for (i, s) in body.iter().enumerate() {
        let prefix = raw(s.decor().prefix());
        let single = s.as_attribute().is_some_and(|a| !a.value.to_string().contains('\n'));
        if !single || prefix.contains('\n') {
            runs.push(std::mem::take(&mut current));
        }
        if single {
            current.push(i);
        }
    }
    runs.push(current);
    for run in runs {
        let width = run.iter().filter_map(|i| body.get(*i)?.as_attribute()).map(|a| a.key.as_str().len()).max();
        for i in run {
            if let Some(attr) = body.get_mut(i).and_then(Structure::as_attribute_mut) {
                let pad = width.unwrap_or(0) - attr.key.as_str().len() + 1;
                attr.key.decor_mut().set_suffix(" ".repeat(pad));
            }
        }
    }
}

fn layout_expr(expr: &mut Expression, level: usize) {
    let multi = expr.to_string().contains('\n');
    match expr {
        Expression::Object(object) => {
            let n = object.len();
            // Comments after the last entry (or in an empty object) stay, one per line; an
            // object with neither entries nor comments is `{}` however it was spread out, so
            // that formatting settles in one pass.
            let closing: Vec<String> =
                order::comment_lines(object.trailing()).into_iter().map(str::to_string).collect();
            let multi = multi && (n > 0 || !closing.is_empty());
            let inner = "  ".repeat(level + 1);
            let width = object.iter().map(|(k, _)| key_name_text(k).len()).max().unwrap_or(0);
            for (i, (mut key, value)) in object.iter_mut().enumerate() {
                let comments = comments_of(key.decor(), true);
                let pad = width - key_name_text(key.get()).len() + 1;
                let expr = value.expr_mut();
                layout_expr(expr, level + 1);
                let c = trailing_comment(expr.decor());
                expr.decor_mut().set_prefix(" ");
                expr.decor_mut().set_suffix(c);
                if multi {
                    let mut prefix = if i == 0 { "\n".to_string() } else { String::new() };
                    prefix.push_str(&prefix_with(&comments, &inner, false));
                    key.decor_mut().set_prefix(prefix);
                    key.decor_mut().set_suffix(" ".repeat(pad));
                    value.set_terminator(ObjectValueTerminator::Newline);
                } else {
                    key.decor_mut().set_prefix(" ");
                    key.decor_mut().set_suffix(" ");
                    value.set_terminator(if i + 1 == n {
                        ObjectValueTerminator::None
                    } else {
                        ObjectValueTerminator::Comma
                    });
                }
            }
            let trailing = if multi {
                let mut t = if n == 0 { "\n".to_string() } else { String::new() };
                for c in &closing {
                    t.push_str(&inner);
                    t.push_str(c);
                    t.push('\n');
                }
                t + &"  ".repeat(level)
            } else if n == 0 {
                String::new()
            } else {
                " ".to_string()
            };
            object.set_trailing(trailing);
        }
        Expression::Array(array) if !multi => {
            for (i, item) in array.iter_mut().enumerate() {
                layout_expr(item, level + 1);
                item.decor_mut().set_prefix(if i == 0 { "" } else { " " });
                item.decor_mut().set_suffix("");
            }
            array.set_trailing_comma(false);
            array.set_trailing("");
        }
        _ => {}
    }
}

fn key_name_text(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Ident(i) => i.as_str().to_string(),
        ObjectKey::Expression(e) => {
            let mut e = e.clone();
            e.decor_mut().clear();
            e.to_string()
        }
    }
}

/// Replace the app's `release_task "NAME"` blocks with `tasks` (see
/// `StageEdit::set_release_tasks`).
pub(super) fn set_release_tasks(body: &mut Body, at: &AppAt, tasks: &[crate::config::ReleaseTask]) -> EditResult {
    let block = app_block(body, at)?;
    let indent = child_indent(block);
    let is_task = |s: &Structure| s.as_block().is_some_and(|b| b.has_ident("release_task"));
    loop {
        let Some(i) = block.body.iter().position(is_task) else { break };
        block.body.remove(i);
    }
    for t in tasks {
        let mut text = format!(
            "release_task {} {{\n{indent}  command = {}\n{indent}  timeout = {}\n",
            literal(&t.name),
            to_expr(&FileValue::List(t.command.clone())),
            literal(&t.timeout.to_string())
        );
        if t.run_on != crate::config::RunOn::default() {
            text.push_str(&format!("{indent}  run_on  = \"every_deploy\"\n"));
        }
        text.push_str(&format!("{indent}}}\n"));
        let new = hcl_edit::parser::parse_body(&text).expect("generated HCL parses");
        let new = new.into_iter().next().expect("one block");
        insert_in_order(&mut block.body, new, &indent);
        // A block is set off by a blank line, as `fmt` lays it out.
        if let Some(i) = block.body.iter().enumerate().filter(|(_, s)| is_task(s)).map(|(i, _)| i).last() {
            if let Some(s) = block.body.get_mut(i) {
                s.decor_mut().set_prefix(format!("\n{indent}"));
            }
        }
    }
    Ok(())
}
