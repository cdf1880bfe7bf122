//! The seeded cluster simulation as a test: a few hundred seeds with every fault kind
//! (the `cluster-sim` binary runs thousands), the cold-zone race, and proof that the
//! checker catches a store that grants a zone twice.
//!
//! A failure prints its seed and the command that replays it.

use zonemesh_cluster::sim::{SimConfig, Violation, run};

/// Seeds run by the test suite; `cluster-sim --seeds 5000` runs more.
const N_SEEDS: u64 = 300;

#[test]
fn safety_and_liveness_hold_under_faults() {
    let mut n_crashes = 0;
    let mut n_cuts = 0;
    for seed in 0..N_SEEDS {
        match run(SimConfig::with_faults(seed)) {
            Ok(report) => {
                n_crashes += report.n_crashes;
                n_cuts += report.n_cuts;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    // The faults really happened: a run without them proves nothing.
    assert!(n_crashes > N_SEEDS / 2, "only {n_crashes} crashes injected");
    assert!(n_cuts > N_SEEDS / 2, "only {n_cuts} links cut");
}

#[test]
fn players_racing_for_cold_zones_cause_one_activation_each() {
    for seed in 0..20 {
        let report = run(SimConfig::calm(seed, 3, 10, 100)).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(report.n_activations, 10, "seed {seed}: {report:?}");
    }
}

#[test]
fn the_checker_catches_a_store_that_ignores_leases() {
    let caught = (0..200).find_map(|seed| {
        let config = SimConfig {
            store_respects_leases: false,
            ..SimConfig::with_faults(seed)
        };
        run(config).err()
    });
    let failure = caught.expect("a store without the holder check must break safety for some seed");
    assert!(
        matches!(
            failure.violation,
            Violation::TwoOwners { .. } | Violation::NotTheHolder { .. }
        ),
        "{failure}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(SimConfig::with_faults(42)).expect("seed 42 passes");
    let b = run(SimConfig::with_faults(42)).expect("seed 42 passes");
    assert_eq!(a, b);
}
