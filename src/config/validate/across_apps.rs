//! What only the whole stage shows: `depends_on` names and cycles, target groups and
//! local ports claimed twice.

use super::*;
/// Checks that involve more than one app: `depends_on` targets and cycles, port clashes,
/// target groups claimed twice.
pub(super) fn check_across_apps(src: &SourceFile, file: &StageFile, runtime: &Runtime, diags: &mut Diagnostics) {
    // A target group registers one service's tasks: a second claim (in another app, or
    // again in the same one) is an error where it is written.
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, app) in &file.apps {
        let short = app.target_group.iter().map(|tg| (tg.as_str(), path!["apps", name, "target_group"]));
        let long = app
            .target_groups
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, tg)| (tg.arn.as_str(), path!["apps", name, "target_groups", i, "arn"]));
        for (arn, at) in short.chain(long) {
            match claimed.get(arn) {
                None => {
                    claimed.insert(arn, name);
                }
                Some(first) => diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        if *first == name.as_str() {
                            format!("app `{name}` lists target group `{arn}` twice")
                        } else {
                            format!("target group `{arn}` is already app `{first}`'s")
                        },
                    )
                    .with_hint("a target group registers the tasks of one service: give each app its own"),
                ),
            }
        }
    }
    for (name, app) in &file.apps {
        for (i, dep) in app.depends_on.iter().enumerate() {
            let at = path!["apps", name, "depends_on", i];
            if dep == name {
                diags.push(
                    src.diagnostic(&at, Target::Value, format!("app `{name}` depends on itself"))
                        .with_hint("remove it from depends_on"),
                );
            } else if !file.apps.contains_key(dep) {
                let known: Vec<&str> = file.apps.keys().map(String::as_str).filter(|k| k != name).collect();
                diags.push(
                    src.diagnostic(
                        &at,
                        Target::Value,
                        format!("app `{name}` depends on `{dep}`, which this stage does not declare"),
                    )
                    .with_hint(if known.is_empty() {
                        "declare it, or remove it from depends_on".to_string()
                    } else {
                        format!("apps in this stage: {}", known.join(", "))
                    }),
                );
            }
        }
    }
    // Cycles: report each once, at the edge that closes it, printing the whole cycle. Looking
    // for one from an app costs a walk, so only from apps that are on one.
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let on_cycles = apps_on_cycles(file);
    for start in file.apps.keys().filter(|name| on_cycles.contains(name.as_str())) {
        if let Some(cycle) = find_cycle(file, start) {
            let mut key = cycle.clone();
            key.sort();
            if reported.insert(key) {
                let last = &cycle[cycle.len() - 1];
                let idx = file.apps[last].depends_on.iter().position(|d| d == &cycle[0]).unwrap_or(0);
                let mut shown = cycle.clone();
                shown.push(cycle[0].clone());
                diags.push(
                    src.diagnostic(
                        &path!["apps", last, "depends_on", idx],
                        Target::Value,
                        format!("depends_on forms a cycle: {}", shown.join(" → ")),
                    )
                    .with_hint("deploy order must be a chain; remove one of these dependencies"),
                );
            }
        }
    }
    if matches!(runtime, Runtime::Local { .. }) {
        // In file order, so the clash is reported at the port written second.
        // Sorting needs each app's place in the file; only a clash makes it matter.
        let mut apps: Vec<(&String, &AppSection)> = file.apps.iter().collect();
        let mut seen = BTreeSet::new();
        if apps.iter().filter_map(|(_, app)| app.port).any(|p| !seen.insert(p)) {
            apps.sort_by_cached_key(|(name, _)| src.span_of(&path!["apps", *name], Target::Key).start);
        }
        let mut ports: BTreeMap<i64, &str> = BTreeMap::new();
        for (name, app) in apps {
            if let Some(p) = app.port {
                if let Some(other) = ports.get(&p) {
                    let other_line = line_of(src, &path!["apps", *other, "port"], Target::Value);
                    diags.push(
                        src.diagnostic(
                            &path!["apps", name, "port"],
                            Target::Value,
                            format!("apps `{other}` and `{name}` both use port {p}"),
                        )
                        .with_hint(format!(
                            "on the local runtime every app needs its own port; `{other}` has {p} on line {other_line}"
                        )),
                    );
                } else {
                    ports.insert(p, name);
                }
            }
        }
    }
}

/// The apps on a `depends_on` cycle, leaving aside an app that depends on itself and names
/// of apps that do not exist (both reported on their own): the members of the graph's
/// strongly connected components of more than one app, in linear time.
pub(super) fn apps_on_cycles(file: &StageFile) -> BTreeSet<&str> {
    let mut graph = petgraph::graphmap::DiGraphMap::<&str, ()>::new();
    for (name, app) in &file.apps {
        graph.add_node(name.as_str());
        for dep in app.depends_on.iter().filter(|dep| *dep != name && file.apps.contains_key(*dep)) {
            graph.add_edge(name.as_str(), dep.as_str(), ());
        }
    }
    petgraph::algo::tarjan_scc(&graph).into_iter().filter(|scc| scc.len() > 1).flatten().collect()
}

/// A cycle through `start` in the depends_on graph, as the list of apps from `start`.
pub(super) fn find_cycle(file: &StageFile, start: &str) -> Option<Vec<String>> {
    fn dfs(file: &StageFile, node: &str, start: &str, stack: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        let Some(app) = file.apps.get(node) else { return false };
        for dep in &app.depends_on {
            if dep == node {
                continue;
            }
            if dep == start {
                return true;
            }
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
                if dfs(file, dep, start, stack, seen) {
                    return true;
                }
                stack.pop();
            }
        }
        false
    }
    let mut stack = vec![start.to_string()];
    let mut seen = BTreeSet::from([start.to_string()]);
    dfs(file, start, start, &mut stack, &mut seen).then_some(stack)
}
