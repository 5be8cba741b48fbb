//! The canonical order of keys in project and stage files, shared by `ferry fmt` (which sorts
//! whole files) and by edits (which insert a missing key where `fmt` would put it).
//!
//! It follows the reference example in the docs: what an app runs first (image, release,
//! size, command), then its releases and config, then health, deploy and release tasks.

use std::cmp::Ordering;

/// Top-level keys of a stage file.
pub const STAGE: &[&str] = &["runtime", "apps"];
/// Keys of `[runtime]`.
pub const RUNTIME: &[&str] = &[
    "kind",
    "region",
    "cluster",
    "subnets",
    "security_groups",
    "assign_public_ip",
    "execution_role",
    "task_role",
    "log_group",
];
/// Keys of an app.
pub const APP: &[&str] = &[
    "image",
    "active",
    "scale",
    "cpu",
    "memory",
    "command",
    "port",
    "depends_on",
    "track",
    "target_group",
    "target_groups",
    "releases",
    "env",
    "sensitive_env",
    "secrets",
    "health",
    "deploy",
    "release_tasks",
];
/// Keys of `health`.
pub const HEALTH: &[&str] =
    &["command", "path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "grace_period"];
/// Keys of `deploy`.
pub const DEPLOY: &[&str] = &["max_surge", "min_healthy", "timeout", "drain", "stop_timeout"];
/// Keys of a release task.
pub const RELEASE_TASK: &[&str] = &["name", "command", "timeout", "run_on"];

/// Top-level keys of `ferry.toml`.
pub const PROJECT: &[&str] = &["project", "state", "pipeline"];
/// Keys of `[project]`.
pub const PROJECT_SECTION: &[&str] = &["name"];
/// Keys of `[state]`.
pub const STATE: &[&str] = &["backend", "bucket", "prefix", "region"];
/// Keys of `[pipeline]`.
pub const PIPELINE: &[&str] = &["steps"];
/// Keys of a pipeline step.
pub const PIPELINE_STEP: &[&str] = &["name", "stages", "required_checks"];

/// Where `key` goes in `order`; unknown keys go last (a stable sort keeps their order).
pub fn rank(order: &[&str], key: &str) -> usize {
    order.iter().position(|k| *k == key).unwrap_or(order.len())
}

/// Release ids numerically (`2` before `10`); anything that is not a number after them.
pub fn release_ids(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Comment lines found in a run of whitespace and comments, trimmed; blank lines dropped.
pub fn comment_lines(decor: &str) -> Vec<&str> {
    decor.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// Split a leading block of comment lines that is followed by a blank line (a file header,
/// which belongs to the file, not to whatever key comes first) from the rest of `text`.
pub fn split_header(text: &str) -> (&str, &str) {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('#') || t.starts_with("//") {
            end += line.len();
        } else if t.is_empty() && end > 0 {
            return (&text[..end], &text[end..]);
        } else {
            break;
        }
    }
    ("", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_sort_numerically() {
        let mut ids = vec!["10", "2", "x", "1"];
        ids.sort_by(|a, b| release_ids(a, b));
        assert_eq!(ids, ["1", "2", "10", "x"]);
    }

    #[test]
    fn a_header_needs_a_blank_line_after_it() {
        assert_eq!(split_header("# a\n# b\n\n[x]\n"), ("# a\n# b\n", "\n[x]\n"));
        assert_eq!(split_header("# about x\n[x]\n"), ("", "# about x\n[x]\n"));
        assert_eq!(split_header("[x]\n"), ("", "[x]\n"));
    }
}
