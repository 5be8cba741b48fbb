//! One writer of a project's stage files at a time. A command that edits a stage file reads
//! it, works out the edit from what it read (the next release id, say) and writes it back;
//! two of them at once would both read the same file and the second write would drop the
//! first one's edit (six parallel `release create` lost a release and printed one id
//! twice). Each holds [`EditLock`] from its read to its write, so the next one reads the
//! file with the edit in it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file, under the project root.
pub const EDIT_LOCK_FILE: &str = ".ferry/stage-edit.lock";

/// An exclusive `flock` on [`EDIT_LOCK_FILE`]: released when dropped, or when the process
/// dies (so a killed ferry never leaves it held). `flock` through the libc crate, as the
/// state store's own lock does: std's `File::lock` needs Rust 1.89, above this crate's
/// `rust-version`.
#[derive(Debug)]
pub struct EditLock {
    _file: File,
}

impl EditLock {
    /// Wait for and take the lock of the project at `root`.
    pub fn take(root: &Path) -> io::Result<EditLock> {
        let path: PathBuf = root.join(EDIT_LOCK_FILE);
        if let Some(dir) = path.parent() {
            crate::private_files::create_dir_all(dir)?;
        }
        let file = crate::private_files::open_write(&path)?;
        loop {
            // SAFETY: flock on a descriptor we own; released when `file` is closed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(EditLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
