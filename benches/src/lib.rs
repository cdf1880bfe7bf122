//! Support crate for ZoneMesh's criterion benchmarks (in `benches/benches/`); the
//! scenario runner of the benchmark suite lives here as it grows.
