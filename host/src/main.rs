use clap::Parser;

// The request path allocates many small, short-lived objects; mimalloc
// serves them markedly cheaper than glibc malloc (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use todo_host::cli::Cli;

/// mimalloc advises transparent huge pages on its arena (`MADV_HUGEPAGE`),
/// so each 2 MiB of it the heap touches at all becomes resident whole: idle,
/// 46 of the arena's 56 resident MiB were huge pages. The kernel's flag,
/// not mimalloc's own switch (`MIMALLOC_ALLOW_THP=0`, read before `main`),
/// is what can still be set here; it covers the arena already advised.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes no pointers; where the kernel lacks
    // it, the call fails and nothing changes.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() -> std::process::ExitCode {
    // Before the runtime's threads first touch the heap.
    disable_transparent_huge_pages();
    serve()
}

#[tokio::main]
async fn serve() -> std::process::ExitCode {
    let cli = Cli::parse();
    todo_host::telemetry::init(cli.log_format);
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "todo-host stopped");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
