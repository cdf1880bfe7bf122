//! The `zonemesh-swarm` binary: parses flags, sets up logging and the runtime, and hands
//! over to the library (`zonemesh_swarm::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

// Thousands of sessions allocate and free buffers from many threads; only binaries
// choose the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Quiet by default so the progress line and table stay readable; RUST_LOG overrides.
    // Logs go to stderr (stdout is the report), coloured only on a terminal without
    // NO_COLOR.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .init();
    let invocation = zonemesh_swarm::cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(zonemesh_swarm::cli::execute(invocation)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
