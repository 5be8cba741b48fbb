//! Edits and canonical formatting of TOML files, with `toml_edit` so comments (kept in each
//! key's and table's decor) travel with the key they describe.

use std::cmp::Ordering;
use std::path::Path;

use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use crate::config::diagnostic::Diagnostic;
use crate::config::model::Digest;
use crate::edit::order::{self, rank};
use crate::edit::{AppAt, EditResult, FileKind, FileValue};

/// Parse an editable document; a syntax error is located like the loader's.
pub(super) fn parse(path: &Path, text: &str) -> Result<DocumentMut, Diagnostic> {
    text.parse::<DocumentMut>().map_err(|_| match crate::config::toml_source::parse(path, text) {
        Err(d) => d,
        // Both parsers come from toml_edit and agree; this is only a fallback.
        Ok(_) => Diagnostic::whole_file(path, "TOML syntax error"),
    })
}

fn app_mut<'a>(doc: &'a mut DocumentMut, at: &AppAt) -> EditResult<&'a mut Item> {
    doc.get_mut("apps")
        .and_then(Item::as_table_like_mut)
        .and_then(|apps| apps.get_mut(&at.app))
        .filter(|app| app.is_table_like())
        .ok_or_else(|| at.unknown())
}

/// The table `key` of an app, created where `fmt` would put it when missing: a `[apps.X.key]`
/// section right after the sections that precede it, or an inline table in an inline app.
fn sub_table<'a>(app: &'a mut Item, at: &AppAt, key: &str) -> EditResult<&'a mut dyn TableLike> {
    if let Some(table) = app.as_table_mut() {
        if !table.contains_key(key) {
            let mut new = Table::new();
            if let Some(pos) = position_after(table, key) {
                new.set_position(pos);
            }
            table.insert(key, Item::Table(new));
        }
    } else if let Some(t) = app.as_table_like_mut() {
        if !t.contains_key(key) {
            t.insert(key, Item::Value(Value::InlineTable(InlineTable::new())));
        }
    }
    app.as_table_like_mut()
        .and_then(|t| t.get_mut(key))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| at.not_a_table(key))
}

/// A document position for a new section `key` of `app`: the same as the last section that
/// precedes it canonically. toml_edit sorts sections stably by position, and the new one is
/// visited after those, so it lands right behind them.
fn position_after(app: &Table, key: &str) -> Option<usize> {
    let mut pos = app.position()?;
    for (k, item) in app.iter() {
        if rank(order::APP, k) >= rank(order::APP, key) {
            continue;
        }
        let tables: Vec<&Table> = match item {
            Item::Table(t) => vec![t],
            Item::ArrayOfTables(a) => a.iter().collect(),
            _ => vec![],
        };
        pos = tables.iter().filter_map(|t| t.position()).fold(pos, usize::max);
    }
    Some(pos)
}

/// Set `key` to `value`, keeping the old value's decor (its trailing comment); a new key goes
/// after the keys that precede it canonically.
fn set_value(table: &mut dyn TableLike, key: &str, mut value: Value, order: &[&str]) {
    if let Some(Item::Value(old)) = table.get_mut(key) {
        *value.decor_mut() = old.decor().clone();
        *old = value;
        return;
    }
    table.insert(key, Item::Value(value));
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
    let Some(after) = keys.iter().rposition(|k| k != key && rank(order, k) <= rank(order, key)) else {
        // Nothing precedes it: it goes first.
        move_to_end(table, keys.iter().filter(|k| *k != key));
        return;
    };
    move_to_end(table, keys[after + 1..].iter().filter(|k| *k != key));
}

/// Re-insert `keys` at the end, in order, keeping each key's formatting and comments.
fn move_to_end<'k>(table: &mut dyn TableLike, keys: impl Iterator<Item = &'k String>) {
    let keys: Vec<&String> = keys.collect();
    for k in keys {
        let Some(key) = table.key(k).cloned() else { continue };
        if let Some(item) = table.remove(k) {
            table.entry_format(&key).or_insert(item);
        }
    }
}

pub(super) fn add_release(doc: &mut DocumentMut, at: &AppAt, id: u64, digest: &Digest) -> EditResult {
    let app = app_mut(doc, at)?;
    let releases = sub_table(app, at, "releases")?;
    let key = id.to_string();
    if releases.contains_key(&key) {
        return Err(at.release_exists(id));
    }
    releases.insert(&key, toml_edit::value(digest.to_string()));
    Ok(())
}

pub(super) fn remove_release(doc: &mut DocumentMut, at: &AppAt, id: u64) -> EditResult {
    let app = app_mut(doc, at)?;
    let releases = app.as_table_like_mut().and_then(|t| t.get_mut("releases")).and_then(Item::as_table_like_mut);
    match releases.and_then(|r| r.remove(&id.to_string())) {
        Some(_) => Ok(()),
        None => Err(at.unknown_release(id)),
    }
}

pub(super) fn set_active(doc: &mut DocumentMut, at: &AppAt, id: u64) -> EditResult {
    let app = app_mut(doc, at)?;
    let table = app.as_table_like_mut().ok_or_else(|| at.unknown())?;
    set_value(table, "active", Value::from(id as i64), order::APP);
    Ok(())
}

pub(super) fn set_env(doc: &mut DocumentMut, at: &AppAt, key: &str, value: Option<&str>) -> EditResult {
    let app = app_mut(doc, at)?;
    match value {
        Some(v) => {
            let env = sub_table(app, at, "env")?;
            // Keep the variables in the order the team wrote them; a new one goes last.
            set_value(env, key, Value::from(v), &[]);
        }
        None => {
            let Some(t) = app.as_table_like_mut() else { return Err(at.unknown()) };
            let emptied = match t.get_mut("env").and_then(Item::as_table_like_mut) {
                Some(env) => {
                    env.remove(key);
                    env.is_empty()
                }
                None => false,
            };
            if emptied {
                t.remove("env");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Canonical formatting

/// Format `rest` (the part of `full` after its header comment).
pub(super) fn format(path: &Path, full: &str, rest: &str, kind: FileKind) -> Result<String, Diagnostic> {
    let mut doc = rest.parse::<DocumentMut>().map_err(|_| match parse(path, full) {
        Err(d) => d,
        Ok(_) => Diagnostic::whole_file(path, "TOML syntax error"),
    })?;
    let root = doc.as_table_mut();
    match kind {
        FileKind::Stage => format_stage(root),
        FileKind::Project => format_project(root),
    }
    let mut next = 0;
    assign_positions(root, &mut next);
    layout_table(root);
    // The first section starts the file; every other one follows a blank line.
    let mut first = root.iter().all(|(_, item)| !item.is_value());
    visit_headers(root, &mut |decor| {
        let comments = order::comment_lines(decor.prefix().and_then(|p| p.as_str()).unwrap_or(""));
        let mut prefix = if first { String::new() } else { "\n".to_string() };
        first = false;
        for c in comments {
            prefix.push_str(c);
            prefix.push('\n');
        }
        decor.set_prefix(prefix);
    });
    let trailing = order::comment_lines(doc.trailing().as_str().unwrap_or(""));
    doc.set_trailing(if trailing.is_empty() { String::new() } else { format!("\n{}\n", trailing.join("\n")) });
    let mut out = doc.to_string();
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed);
    let out = out.trim_start_matches('\n').to_string();
    Ok(if out.is_empty() { out } else { out + "\n" })
}

fn format_stage(root: &mut Table) {
    sort_keys(root, by_order(order::STAGE));
    if let Some(rt) = root.get_mut("runtime").and_then(Item::as_table_like_mut) {
        sort_keys(rt, by_order(order::RUNTIME));
    }
    let Some(apps) = root.get_mut("apps").and_then(Item::as_table_like_mut) else { return };
    sort_keys(apps, |a, b| a.cmp(b));
    for (_, app) in apps.iter_mut() {
        let Some(app) = app.as_table_like_mut() else { continue };
        sort_keys(app, by_order(order::APP));
        for (key, item) in app.iter_mut() {
            match key.get() {
                "releases" => sort_item(item, order::release_ids),
                "secrets" => sort_item(item, |a, b| a.cmp(b)),
                "health" => sort_item(item, by_order(order::HEALTH)),
                "deploy" => sort_item(item, by_order(order::DEPLOY)),
                "release_tasks" => each_table(item, |t| sort_keys(t, by_order(order::RELEASE_TASK))),
                _ => {}
            }
        }
    }
}

fn format_project(root: &mut Table) {
    sort_keys(root, by_order(order::PROJECT));
    for (key, item) in root.iter_mut() {
        match key.get() {
            "project" => sort_item(item, by_order(order::PROJECT_SECTION)),
            "state" => sort_item(item, by_order(order::STATE)),
            "pipeline" => {
                sort_item(item, by_order(order::PIPELINE));
                if let Some(steps) = item.as_table_like_mut().and_then(|p| p.get_mut("steps")) {
                    each_table(steps, |t| sort_keys(t, by_order(order::PIPELINE_STEP)));
                }
            }
            _ => {}
        }
    }
}

fn by_order(order: &'static [&'static str]) -> impl Fn(&str, &str) -> Ordering {
    move |a, b| rank(order, a).cmp(&rank(order, b))
}

fn sort_item(item: &mut Item, cmp: impl Fn(&str, &str) -> Ordering) {
    if let Some(t) = item.as_table_like_mut() {
        sort_keys(t, cmp);
    }
}

/// Apply `f` to every table of an array of tables (or of an array of inline tables).
fn each_table(item: &mut Item, mut f: impl FnMut(&mut dyn TableLike)) {
    match item {
        Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| f(t)),
        Item::Value(Value::Array(a)) => {
            a.iter_mut().filter_map(Value::as_inline_table_mut).for_each(|t| f(t));
        }
        _ => {}
    }
}

/// Sort a table's keys (stably), keeping every key's comments and formatting.
fn sort_keys(table: &mut dyn TableLike, cmp: impl Fn(&str, &str) -> Ordering) {
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| cmp(a, b));
    if sorted != keys {
        move_to_end(table, sorted.iter());
    }
}

/// Number sections in tree order, so the file lists them in the order just sorted.
fn assign_positions(table: &mut Table, next: &mut usize) {
    table.set_position(*next);
    *next += 1;
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => assign_positions(t, next),
            Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| assign_positions(t, next)),
            _ => {}
        }
    }
}

/// `key = value` with single spaces, no indentation, no blank lines between keys; comments
/// kept, each on its own line before its key or after its value.
fn layout_table(table: &mut Table) {
    let keys: Vec<(String, bool)> = table.iter().map(|(k, item)| (k.to_string(), item.is_value())).collect();
    for (k, is_value) in &keys {
        if let Some(mut key) = table.key_mut(k) {
            // A key that names a section is written in its header, `[apps.web]`, unspaced.
            layout_key(key.leaf_decor_mut(), if *is_value { " " } else { "" });
            key.dotted_decor_mut().clear();
        }
    }
    for (_, item) in table.iter_mut() {
        match item {
            Item::Value(v) => layout_value(v),
            Item::Table(t) => layout_table(t),
            Item::ArrayOfTables(a) => a.iter_mut().for_each(layout_table),
            Item::None => {}
        }
    }
}

fn layout_key(decor: &mut toml_edit::Decor, suffix: &str) {
    let comments = order::comment_lines(decor.prefix().and_then(|p| p.as_str()).unwrap_or(""));
    let mut prefix = String::new();
    for c in comments {
        prefix.push_str(c);
        prefix.push('\n');
    }
    decor.set_prefix(prefix);
    decor.set_suffix(suffix);
}

fn layout_value(v: &mut Value) {
    let suffix = v.decor().suffix().and_then(|s| s.as_str()).unwrap_or("").trim().to_string();
    match v {
        // Inline tables cannot hold comments; toml_edit's own layout is `{ k = v, … }`.
        Value::InlineTable(t) => t.fmt(),
        // A one-line array gets `[a, b]`; a multi-line one may hold comments and stays.
        Value::Array(a) if !a.to_string().contains('\n') => a.fmt(),
        _ => {}
    }
    let decor = v.decor_mut();
    decor.set_prefix(" ");
    decor.set_suffix(if suffix.is_empty() { String::new() } else { format!(" {suffix}") });
}

fn visit_headers(table: &mut Table, f: &mut impl FnMut(&mut toml_edit::Decor)) {
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => {
                if !t.is_implicit() && !t.is_dotted() {
                    f(t.decor_mut());
                }
                visit_headers(t, f);
            }
            Item::ArrayOfTables(a) => {
                for t in a.iter_mut() {
                    f(t.decor_mut());
                    visit_headers(t, f);
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Edits of any app value (rollback restores a deployment's whole config this way)

fn to_value(v: &FileValue) -> Value {
    match v {
        FileValue::Int(n) => Value::from(*n),
        FileValue::Bool(b) => Value::from(*b),
        FileValue::Str(s) => Value::from(s.as_str()),
        FileValue::List(items) => Value::Array(items.iter().map(String::as_str).collect()),
        FileValue::Table(entries) => Value::InlineTable(inline_table(entries)),
        FileValue::Tables(tables) => Value::Array(tables.iter().map(|t| inline_table(t)).collect()),
    }
}

fn inline_table(entries: &[(String, FileValue)]) -> toml_edit::InlineTable {
    let mut table = toml_edit::InlineTable::new();
    for (key, value) in entries {
        table.insert(key.as_str(), to_value(value));
    }
    table.fmt();
    table
}

/// Declare `[apps.NAME]` with its `image` (`ferry import`); an existing app keeps its table.
pub(super) fn add_app(doc: &mut DocumentMut, at: &AppAt, image: &str) -> EditResult {
    if !doc.contains_key("apps") {
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert("apps", Item::Table(t));
    }
    let apps = doc.get_mut("apps").and_then(Item::as_table_like_mut).ok_or_else(|| at.not_a_table("apps"))?;
    if apps.get(&at.app).is_none() {
        let mut app = Table::new();
        app.insert("image", toml_edit::value(image));
        apps.insert(&at.app, Item::Table(app));
    }
    Ok(())
}

/// Set or remove `key` of `[runtime]`, created when missing (`ferry import`).
pub(super) fn set_runtime_value(doc: &mut DocumentMut, at: &AppAt, key: &str, value: Option<&FileValue>) -> EditResult {
    if value.is_none() && doc.get("runtime").is_none() {
        return Ok(());
    }
    if doc.get("runtime").is_none() {
        let mut t = Table::new();
        // Before the apps, where `fmt` puts it.
        t.set_position(0);
        doc.insert("runtime", Item::Table(t));
    }
    let runtime = doc.get_mut("runtime").and_then(Item::as_table_like_mut).ok_or_else(|| at.not_a_table("runtime"))?;
    match value {
        Some(v) => set_value(runtime, key, to_value(v), order::RUNTIME),
        None => drop(runtime.remove(key)),
    }
    Ok(())
}

pub(super) fn set_app_value(doc: &mut DocumentMut, at: &AppAt, key: &str, value: Option<&FileValue>) -> EditResult {
    let app = app_mut(doc, at)?;
    let table = app.as_table_like_mut().ok_or_else(|| at.unknown())?;
    match value {
        Some(v) => set_value(table, key, to_value(v), order::APP),
        None => drop(table.remove(key)),
    }
    Ok(())
}

/// Set or remove `key` of the app's table `section` (`health`, `deploy`, `env`, `secrets`).
/// A missing table is created where `fmt` would put it; one emptied by a removal goes away.
pub(super) fn set_section_value(
    doc: &mut DocumentMut,
    at: &AppAt,
    section: &str,
    key: &str,
    value: Option<&FileValue>,
) -> EditResult {
    let app = app_mut(doc, at)?;
    let order = match section {
        "health" => order::HEALTH,
        "deploy" => order::DEPLOY,
        // Maps keep the order the team wrote them in; a new key goes last.
        _ => &[],
    };
    match value {
        Some(v) => set_value(sub_table(app, at, section)?, key, to_value(v), order),
        None => {
            let Some(t) = app.as_table_like_mut() else { return Err(at.unknown()) };
            let emptied = match t.get_mut(section) {
                Some(item) => {
                    let table = item.as_table_like_mut().ok_or_else(|| at.not_a_table(section))?;
                    table.remove(key);
                    table.is_empty()
                }
                None => false,
            };
            if emptied {
                t.remove(section);
            }
        }
    }
    Ok(())
}

/// Replace the app's `[[apps.NAME.release_tasks]]` sections with `tasks` (see
/// `StageEdit::set_release_tasks`). An app written as an inline table holds them inline.
pub(super) fn set_release_tasks(doc: &mut DocumentMut, at: &AppAt, tasks: &[crate::config::ReleaseTask]) -> EditResult {
    let app = app_mut(doc, at)?;
    let task_table = |t: &crate::config::ReleaseTask| {
        let mut table = Table::new();
        table.insert("name", Item::Value(Value::from(t.name.as_str())));
        table.insert("command", Item::Value(Value::Array(t.command.iter().map(String::as_str).collect())));
        table.insert("timeout", Item::Value(Value::from(t.timeout.to_string())));
        if t.run_on != crate::config::RunOn::default() {
            table.insert("run_on", Item::Value(Value::from("every_deploy")));
        }
        table
    };
    if let Some(table) = app.as_table_mut() {
        table.remove("release_tasks");
        if tasks.is_empty() {
            return Ok(());
        }
        let position = position_after(table, "release_tasks");
        let mut array = ArrayOfTables::new();
        for t in tasks {
            let mut section = task_table(t);
            if let Some(p) = position {
                section.set_position(p);
            }
            array.push(section);
        }
        table.insert("release_tasks", Item::ArrayOfTables(array));
        return Ok(());
    }
    let table = app.as_table_like_mut().ok_or_else(|| at.unknown())?;
    table.remove("release_tasks");
    if !tasks.is_empty() {
        let inline: toml_edit::Array = tasks.iter().map(|t| task_table(t).into_inline_table()).collect();
        set_value(table, "release_tasks", Value::Array(inline), order::APP);
    }
    Ok(())
}
