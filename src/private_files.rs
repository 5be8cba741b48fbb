//! Files and folders only their owner may read or write. Everything ferry keeps under a
//! project's `.ferry/` (state, the registry, unpacked releases, the agent's socket, pid, lock
//! and log, task logs, abort requests, status records) is private: folders 0700, files 0600,
//! whatever the umask. Task logs hold the app's output, which may carry secrets it was given.
//!
//! A mode given at creation only applies to a new file or folder, so each helper also sets
//! it on one that already existed (left by an older ferry, or created by hand).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of private folders.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` and its missing parents, each 0700; `dir` is made 0700 if it existed.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Open `path` for appending, creating it 0600 (or making an existing one 0600).
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).mode(FILE_MODE).open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Open `path` for writing without truncating it (a lock file), creating it 0600.
pub fn open_write(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).mode(FILE_MODE).open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Write `bytes` to `path` (replacing what it held), a 0600 file.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).mode(FILE_MODE).open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_existing_files_and_folders_become_private() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        for dir in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&tmp.path().join(dir)), 0o700, "{dir}");
        }

        // Left open by an older version or by hand.
        let open_dir = tmp.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        fs::set_permissions(&open_dir, Permissions::from_mode(0o755)).unwrap();
        create_dir_all(&open_dir).unwrap();
        assert_eq!(mode(&open_dir), 0o700);

        let log = deep.join("x.log");
        fs::write(&log, "old\n").unwrap();
        fs::set_permissions(&log, Permissions::from_mode(0o644)).unwrap();
        writeln!(open_append(&log).unwrap(), "new").unwrap();
        assert_eq!((mode(&log), fs::read_to_string(&log).unwrap().as_str()), (0o600, "old\nnew\n"));

        let pid = deep.join("x.pid");
        write(&pid, b"12\n").unwrap();
        assert_eq!((mode(&pid), fs::read(&pid).unwrap()), (0o600, b"12\n".to_vec()));
        let lock = deep.join("x.lock");
        open_write(&lock).unwrap();
        assert_eq!(mode(&lock), 0o600);
    }
}
