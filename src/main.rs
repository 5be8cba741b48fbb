//! The `ferry` binary: parse arguments, run, map the result to an exit code.

fn main() -> std::process::ExitCode {
    tune_allocator();
    ferry::cli::run()
}

/// glibc grows a thread's heap a page at a time, an `mprotect` each (≈ 2,400 calls when a
/// 1,000-app stage file is parsed on several threads, each a shootdown of the other cores'
/// TLBs), and trims freed memory back just as eagerly. A 64 MiB top pad makes it grow and
/// trim in big steps; pages never touched cost no memory. Large blocks stay on the heap too
/// (up to 32 MiB) instead of an `mmap` and its page faults each time a buffer grows.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets the allocator's parameters; no thread has started yet.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
