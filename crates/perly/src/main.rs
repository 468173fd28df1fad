//! `perly`: one binary for the server, the demo, administration and benchmarks.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of glibc's malloc. glibc keeps a heap (arena) per
/// thread that ever allocated and gives little back; with tokio's and
/// SQLite's threads each freeing rows and request bodies, ingest at 100,000
/// customers peaked at 530–550 MB RSS (server and load generator) instead
/// of 376 MB with jemalloc, and malloc/free were ~9 % of the ingest profile.
/// Measured in BENCHMARKS.md (issue 17); mimalloc gave 448 MB. SQLite's own
/// page caches still use the C library's malloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = perly::cli::Cli::parse();
    match perly::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
