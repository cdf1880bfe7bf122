//! `cluster-sim`: runs the seeded cluster simulation over many seeds (or replays one)
//! and prints a summary; exits non-zero on the first failing seed, printing it.
//!
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --seeds 5000`
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --seed 1234`
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --scale 1000 --zones 100000`
//! (scaling figures of one large simulated cluster; see SCALING.md)

use std::process::ExitCode;

use zonemesh_cluster::sim::scale::{ScaleConfig, measure};
use zonemesh_cluster::sim::{SimConfig, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(n_nodes) = value("--scale") {
        return scale(ScaleConfig {
            seed: value("--seed").unwrap_or(1),
            n_nodes: n_nodes as usize,
            n_zones: value("--zones").unwrap_or(n_nodes * 100) as u32,
            n_joins: value("--joins").unwrap_or(1_000) as usize,
        });
    }
    let (first, count) = match (value("--seed"), value("--seeds")) {
        (Some(seed), _) => (seed, 1),
        (None, Some(n)) => (value("--from").unwrap_or(0), n),
        (None, None) => {
            eprintln!(
                "usage: cluster-sim (--seed N | --seeds COUNT [--from FIRST] | --scale NODES [--zones Z] [--joins J] [--seed N])"
            );
            return ExitCode::from(2);
        }
    };
    let (mut n_activations, mut n_crashes, mut n_cuts, mut n_steps) = (0, 0, 0, 0);
    for seed in first..first + count {
        match run(SimConfig::with_faults(seed)) {
            Ok(report) => {
                n_activations += report.n_activations;
                n_crashes += report.n_crashes;
                n_cuts += report.n_cuts;
                n_steps += report.n_steps;
            }
            Err(failure) => {
                eprintln!("{failure}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{count} seeds from {first} passed: {n_steps} steps, {n_crashes} crashes, {n_cuts} cut links, {n_activations} activations"
    );
    ExitCode::SUCCESS
}

fn scale(config: ScaleConfig) -> ExitCode {
    match measure(config) {
        Ok(r) => {
            println!(
                "nodes {} zones {}: gossip {:.0} B/node/s; {:.2} directory messages per join; \
                 {} per death; ring moves {:.2}% on join, {:.2}% on leave; \
                 detection first {} ms, all {} ms; failover of {} zones {} ms",
                r.n_nodes,
                r.n_zones,
                r.gossip_bytes_per_node_s,
                r.messages_per_join,
                r.messages_per_death,
                r.moved_on_join * 100.0,
                r.moved_on_leave * 100.0,
                r.detect_first_ms,
                r.detect_all_ms,
                r.n_zones_failed_over,
                r.failover_ms,
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}
