//! `file:PATH` secrets, read by the agent each time a task starts (so a rotated file
//! applies). The path is the project's: validation already refuses absolute paths and `..`
//! (`config::names::is_inside_project`); here the file's real location is checked too, so
//! a symlink inside the project cannot hand a task a file from outside it. Errors name the
//! reference, never the value.

use std::path::Path;

/// The value of secret `name`, `file:PATH` in the project at `root`: the file's text without
/// its final line break.
pub fn read_file(root: &Path, name: &str, path: &str) -> Result<String, String> {
    let cannot = |why: String| format!("secret {name}: cannot read file:{path}: {why}");
    if !crate::config::names::is_inside_project(path) {
        return Err(cannot(
            "the path leaves the project; use a path relative to the project root, without `..`".into(),
        ));
    }
    let root = root.canonicalize().map_err(|e| cannot(format!("the project root: {e}")))?;
    let real = root.join(path).canonicalize().map_err(|e| cannot(e.to_string()))?;
    if !real.starts_with(&root) {
        return Err(cannot(format!("it is a link to {}, outside the project", real.display())));
    }
    let value = std::fs::read_to_string(&real).map_err(|e| cannot(e.to_string()))?;
    Ok(value.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_project_files_and_refuses_to_leave_the_project() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("key"), "outside-value\n").unwrap();
        let project = tempfile::tempdir().unwrap();
        let root = project.path();
        std::fs::create_dir(root.join("secrets")).unwrap();
        std::fs::write(root.join("secrets/db"), "s3cret\r\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("key"), root.join("secrets/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("elsewhere")).unwrap();
        // A link that stays inside the project is fine.
        std::os::unix::fs::symlink(root.join("secrets/db"), root.join("db-link")).unwrap();

        assert_eq!(read_file(root, "DB", "secrets/db").unwrap(), "s3cret");
        assert_eq!(read_file(root, "DB", "db-link").unwrap(), "s3cret");
        for (path, why) in [
            ("secrets/link", "outside the project"),
            ("elsewhere/key", "outside the project"),
            ("../key", "leaves the project"),
            ("/etc/hostname", "leaves the project"),
            ("secrets/missing", "No such file"),
        ] {
            let err = read_file(root, "DB", path).unwrap_err();
            assert!(err.starts_with(&format!("secret DB: cannot read file:{path}: ")), "{err}");
            assert!(err.contains(why), "{path}: {err}");
            assert!(!err.contains("outside-value"), "{err}");
        }
    }
}
