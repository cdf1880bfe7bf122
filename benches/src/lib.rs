//! Support crate for ZoneMesh's benchmarks: the criterion micro-benchmarks live in
//! `benches/benches/`, the scenario runner (server and swarm as pinned child processes,
//! with a raw quinn baseline) in `src/bin/scenarios/`.
