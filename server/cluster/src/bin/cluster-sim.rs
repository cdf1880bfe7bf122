//! `cluster-sim`: runs the seeded cluster simulation over many seeds (or replays one)
//! and prints a summary; exits non-zero on the first failing seed, printing it.
//!
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --seeds 5000`
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --seed 1234`
//! `cargo run -p zonemesh-cluster --release --bin cluster-sim -- --scale 1000 --zones 100000`
//! (scaling figures of one large simulated cluster; see SCALING.md)

use std::process::ExitCode;

use zonemesh_cluster::sim::scale::{ScaleConfig, measure};
use zonemesh_cluster::sim::{SimConfig, SimReport, run};

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
    let mut total = SimReport::default();
    for seed in first..first + count {
        match run(SimConfig::with_faults(seed)) {
            Ok(report) => add(&mut total, &report),
            Err(failure) => {
                eprintln!("{failure}");
                return ExitCode::FAILURE;
            }
        }
    }
    let t = &total;
    println!(
        "{count} seeds from {first} passed: {} steps, {} crashes, {} cut links, {} activations",
        t.n_steps, t.n_crashes, t.n_cuts, t.n_activations
    );
    println!(
        "crossings: {} local moves, {} players offered to other nodes ({} offer messages and answers), \
         {} accepted, {} clients arrived, {} arrivals expired, {} taken back ({} of them dropped)",
        t.n_local_moves,
        t.n_offers,
        t.n_crossing_messages,
        t.n_accepted,
        t.n_clients_arrived,
        t.n_arrivals_expired,
        t.n_taken_back,
        t.n_dropped
    );
    println!(
        "durable actions: {} started, {} sends (with resends), {} committed, {} acknowledged, \
         {} refused busy",
        t.n_actions,
        t.n_action_sends,
        t.n_actions_committed,
        t.n_actions_acked,
        t.n_actions_refused
    );
    ExitCode::SUCCESS
}

/// Adds one run's counts to `total`.
fn add(total: &mut SimReport, r: &SimReport) {
    total.n_steps += r.n_steps;
    total.n_activations += r.n_activations;
    total.n_crashes += r.n_crashes;
    total.n_cuts += r.n_cuts;
    total.n_crossing_messages += r.n_crossing_messages;
    total.n_local_moves += r.n_local_moves;
    total.n_offers += r.n_offers;
    total.n_accepted += r.n_accepted;
    total.n_clients_arrived += r.n_clients_arrived;
    total.n_arrivals_expired += r.n_arrivals_expired;
    total.n_taken_back += r.n_taken_back;
    total.n_dropped += r.n_dropped;
    total.n_actions += r.n_actions;
    total.n_action_sends += r.n_action_sends;
    total.n_actions_acked += r.n_actions_acked;
    total.n_actions_refused += r.n_actions_refused;
    total.n_actions_committed += r.n_actions_committed;
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
