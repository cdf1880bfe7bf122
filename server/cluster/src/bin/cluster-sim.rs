//! `cluster-sim`: runs the seeded cluster simulation over many seeds (or replays one)
//! and prints a summary; exits non-zero on the first failing seed, printing it.
//!
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --seeds 5000`
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --seed 1234`

use std::process::ExitCode;

use zonemesh_cluster::sim::{SimConfig, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (first, count) = match (value("--seed"), value("--seeds")) {
        (Some(seed), _) => (seed, 1),
        (None, Some(n)) => (value("--from").unwrap_or(0), n),
        (None, None) => {
            eprintln!("usage: cluster-sim (--seed N | --seeds COUNT [--from FIRST])");
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
