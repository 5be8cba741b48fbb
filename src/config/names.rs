//! What makes a name or a path valid, with nothing else to depend on: the state stores, the
//! local runtime's secrets and the checks of every file ask here.

use std::path::Path;

/// Whether `name` is a DNS label: lowercase letters, digits and `-`, not starting or ending
/// with `-`, at most `max` characters.
pub fn is_dns_label(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` can name a stage: stage names become file names (`.ferry/state/NAME.json`,
/// `.ferry/logs/NAME/`), so letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn is_stage_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether the path of a `file:` secret stays inside the project: relative, without `..`.
/// (The local runtime also refuses a path that leaves the project through a symlink.)
pub fn is_inside_project(path: &str) -> bool {
    let path = Path::new(path);
    !path.is_absolute() && !path.components().any(|c| matches!(c, std::path::Component::ParentDir))
}
