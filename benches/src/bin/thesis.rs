//! `thesis`: the stateful-vs-stateless benchmark recorded in BENCHMARKS.md ("Stateful
//! vs stateless"). The code lives in `benches/src/thesis/`; see its module docs.
//!
//! ```sh
//! cargo run --release -p zonemesh-benches --bin thesis -- --runs 3
//! ```

#[path = "../thesis/mod.rs"]
mod thesis;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    thesis::main()
}
