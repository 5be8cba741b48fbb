//! mimalloc's settings for this run, chosen from its command line before the first allocation.
//!
//! mimalloc commits its arenas eagerly where the kernel overcommits. With transparent huge
//! pages that counts in 2 MiB steps, which is what cut `ferry plan`'s page faults (7,104 →
//! about 410 for the benchmark stage) but raised the peak of a 20-app `ferry commit` from
//! 13–15 MB to 80 MB and the agent's from 12–14 MB to 39 MB (docs/PERFORMANCE.md). So the
//! commands that read a whole project at once (`plan`, `validate`, `graph`) keep the eager
//! commit, and every other command, the long-running agent above all, commits on demand.
//!
//! The choice must be made before mimalloc reserves its first arena, that is before the
//! first allocation, so it runs as an ELF constructor: glibc passes `argc`/`argv` to the
//! functions in `.init_array`, which run before `main` (and before anything allocates
//! through the global allocator). Nothing here allocates. An explicit
//! `MIMALLOC_ARENA_EAGER_COMMIT` in the environment always wins.

use std::ffi::{c_char, c_int, CStr};

/// mimalloc's `mi_option_arena_eager_commit` (`mimalloc.h`, 2.x line).
const MI_OPTION_ARENA_EAGER_COMMIT: c_int = 4;

/// The commands that read a whole project at once and gain from eager commit.
const EAGER_COMMANDS: [&[u8]; 3] = [b"plan", b"validate", b"graph"];

/// Global options that take a value in the next argument (`src/cli/mod.rs`).
const GLOBAL_OPTIONS_WITH_VALUE: [&[u8]; 4] = [b"-C", b"--chdir", b"--color", b"--lock-timeout"];

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
#[link_section = ".init_array"]
static CHOOSE_AT_START: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = choose_at_start;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn choose_at_start(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    // SAFETY: getenv with a NUL-terminated name; nothing else runs yet to change the environment.
    if unsafe { !libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() } {
        return;
    }
    if argv.is_null() || argc < 1 {
        return;
    }
    // SAFETY: glibc passes the process's argv: `argc` pointers to NUL-terminated strings.
    let args = (1..argc as usize).map(|i| unsafe { CStr::from_ptr(*argv.add(i)) }.to_bytes());
    if !eager_commit_suits(args) {
        // SAFETY: a plain option store; mimalloc reads it when it reserves an arena.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
}

/// Whether the command in these arguments (the program name left out) is one that reads a
/// whole project at once: the first argument that is neither an option nor an option's value.
pub fn eager_commit_suits<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> bool {
    while let Some(arg) = args.next() {
        if GLOBAL_OPTIONS_WITH_VALUE.contains(&arg) {
            args.next();
        } else if arg.starts_with(b"-") {
            continue;
        } else {
            return EAGER_COMMANDS.contains(&arg);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::eager_commit_suits;

    fn suits(line: &str) -> bool {
        eager_commit_suits(line.split_whitespace().map(str::as_bytes))
    }

    #[test]
    fn plan_validate_and_graph_commit_eagerly_whatever_the_global_options() {
        assert!(suits("plan"));
        assert!(suits("-C examples/quickstart plan --all"));
        assert!(suits("--color never --lock-timeout 5s validate"));
        assert!(suits("--chdir=dir graph -s production"));
    }

    #[test]
    fn every_other_command_commits_on_demand() {
        assert!(!suits("commit --yes"));
        assert!(!suits("-C plan commit"), "the value of -C is not the command");
        assert!(!suits("agent --root /tmp/x"));
        assert!(!suits(""));
        assert!(!suits("--help"));
    }
}
