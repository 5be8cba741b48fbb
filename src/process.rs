//! Whether a process is running, asked two ways on purpose: [`alive`] for our own children
//! and helpers (a zombie counts as gone: it will never answer), [`is_gone`] for a lock or
//! temp file's owner (only `ESRCH` is certain; another user's process may be running).

use std::io;

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `Z` is a zombie.
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        // SAFETY: signal 0 only checks for existence.
        Err(_) => unsafe { libc::kill(pid as libc::pid_t, 0) == 0 },
    }
}

/// Whether `pid` is certainly not running on this host (`kill(pid, 0)` says `ESRCH`).
/// Another user's process (`EPERM`) is running.
pub fn is_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false; // 0 and negatives address process groups, not one process
    }
    // SAFETY: signal 0 only checks whether the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}
