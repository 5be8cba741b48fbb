//! Replacing a file's contents so that a reader (or a crash) sees the old contents or the
//! new, never a mix: the one way ferry writes a whole file, from state and records to stage
//! files that `fmt`, `release` and `rollback` edit.
//!
//! The new contents go to a temp file of a unique name beside the file (`tempfile`'s
//! `NamedTempFile`), which is fsynced, renamed over the file (`persist`), and the folder
//! fsynced so the rename survives a power cut. A file that existed keeps its permission
//! bits, and a symlink stays a symlink: its target is what gets replaced.
//!
//! A temp file left by a killed writer is named `.NAME.tmp-PID-RANDOM`;
//! [`remove_leftovers`] deletes those whose writer is gone.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How many links [`resolve_links`] follows before it gives up (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// What a new file is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600, also when the file existed with another mode (everything under `.ferry/`,
    /// see `private_files`).
    Private,
    /// The mode of the file when it exists; else `0o666` less the umask, as any editor
    /// would create it (stage files, `ferry.toml`).
    Keep,
}

/// Replace the contents of `path` (or of the file it links to) with `bytes`.
pub fn write(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let path = resolve_links(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let permissions = match (mode, fs::metadata(&path)) {
        (Mode::Private, _) => Permissions::from_mode(crate::private_files::FILE_MODE),
        (Mode::Keep, Ok(existing)) => Permissions::from_mode(existing.permissions().mode() & 0o7777),
        (Mode::Keep, Err(e)) if e.kind() == io::ErrorKind::NotFound => Permissions::from_mode(new_file_mode()),
        (Mode::Keep, Err(e)) => return Err(e),
    };
    let mut tmp = tempfile::Builder::new().prefix(&temp_prefix(&name)).tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    // Set after creation: a mode given to open() would be cut by the umask.
    tmp.as_file().set_permissions(permissions)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    File::open(&dir)?.sync_all()
}

/// `path` with every symlink of its last component followed, so a write replaces the
/// target and keeps the link. A link to a missing file resolves to that file.
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&path)?;
                path = match path.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("{}: too many levels of symbolic links", path.display())))
}

/// `0o666` less the process's umask. The umask can only be read by setting it, so set it
/// back at once; ferry sets it nowhere else.
fn new_file_mode() -> u32 {
    // SAFETY: umask has no failure mode; it is set back to the value read.
    let mask = unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask
    };
    // `mode_t` is u32 here but u16 on other Unixes: the conversion is for them.
    #[allow(clippy::useless_conversion)]
    let mask = u32::from(mask);
    0o666 & !mask
}

/// `.NAME.tmp-PID-`: the random part `tempfile` appends makes it unique, the pid lets
/// [`remove_leftovers`] tell a live writer's file from a dead one's.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-{}-", std::process::id())
}

/// Delete the temp files in `dir` that writers killed before their rename left behind
/// (`.NAME.tmp-PID-…` of a process that no longer runs). Returns how many went.
pub fn remove_leftovers(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(leftover_pid) else { continue };
        if crate::process::is_gone(pid)
            && entry.file_type().is_ok_and(|t| t.is_file())
            && fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The writer's pid of a temp file name `.NAME.tmp-PID-RANDOM`.
fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, after) = rest.rsplit_once(".tmp-")?;
    let (pid, random) = after.split_once('-')?;
    (!random.is_empty()).then_some(())?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keeps_the_mode_and_the_link() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real.toml");
        fs::write(&real, "old").unwrap();
        fs::set_permissions(&real, Permissions::from_mode(0o600)).unwrap();
        let link = tmp.path().join("link.toml");
        symlink("real.toml", &link).unwrap();

        write(&link, b"new", Mode::Keep).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(mode_of(&real), 0o600);

        fs::set_permissions(&real, Permissions::from_mode(0o640)).unwrap();
        write(&real, b"newer", Mode::Keep).unwrap();
        assert_eq!((mode_of(&real), fs::read_to_string(&real).unwrap().as_str()), (0o640, "newer"));
        write(&real, b"private", Mode::Private).unwrap();
        assert_eq!(mode_of(&real), 0o600);

        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temp file is left: {names:?}");
    }

    #[test]
    fn creates_new_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new.json");
        write(&path, b"{}", Mode::Private).unwrap();
        assert_eq!((mode_of(&path), fs::read(&path).unwrap()), (0o600, b"{}".to_vec()));
        let path = tmp.path().join("stage.toml");
        write(&path, b"x", Mode::Keep).unwrap();
        assert_eq!(mode_of(&path), new_file_mode());
    }

    #[test]
    fn removes_only_leftovers_of_dead_writers() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid that ran and exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let leftover = tmp.path().join(format!(".dev.json.tmp-{dead}-a1b2c3"));
        let live = tmp.path().join(format!(".dev.json.tmp-{}-d4e5f6", std::process::id()));
        let other = tmp.path().join("dev.json");
        for f in [&leftover, &live, &other] {
            fs::write(f, "x").unwrap();
        }
        assert_eq!(remove_leftovers(tmp.path()), 1);
        assert!(!leftover.exists() && live.exists() && other.exists());
        assert_eq!(leftover_pid(".a.b.tmp-12-x"), Some(12));
        assert_eq!(leftover_pid("a.tmp-12-x"), None);
        assert_eq!(leftover_pid(".a.tmp-12-"), None);
    }
}
