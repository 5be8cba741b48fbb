//! The `ferry` binary: parse arguments, run, map the result to an exit code.

mod allocator_options;

/// mimalloc rather than the system allocator. `ferry plan` of a large stage allocates
/// hundreds of thousands of small blocks on several threads and frees many of them on
/// another; glibc's malloc spent a good share of the run on page faults (each thread's
/// arena is touched a 4 KiB page at a time) and on freeing across arenas. mimalloc keeps a
/// heap per thread, frees to another thread's heap without a lock, and backs its arenas with
/// transparent huge pages where the kernel allows them. Its 2.x line: 3.x keeps much more
/// memory resident for the same run.
///
/// Which of its settings a run uses is chosen from the command line before the first
/// allocation (`allocator_options`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferry::cli::run()
}
