//! The seeded cluster simulation as a test: a few hundred seeds with every fault kind
//! (the `cluster-sim` binary runs thousands), players crossing into zones on other
//! nodes, durable actions, the cold-zone race, and proof that the checker catches a
//! store that grants a zone twice, nodes that take over claims they should not,
//! crossings that break the transfer protocol's rules, nodes that acknowledge durable
//! actions before the store has them, and a store that commits a repeat anew.
//!
//! A failure prints its seed and the command that replays it.

use zonemesh_cluster::sim::{SimConfig, SimFailure, Violation, run};

/// Seeds run by the test suite; `cluster-sim --seeds 5000` runs more.
const N_SEEDS: u64 = 300;

#[test]
fn safety_and_liveness_hold_under_faults() {
    let mut n_crashes = 0;
    let mut n_cuts = 0;
    let mut crossings = [0u64; 5];
    let mut actions = [0u64; 4];
    for seed in 0..N_SEEDS {
        match run(SimConfig::with_faults(seed)) {
            Ok(report) => {
                n_crashes += report.n_crashes;
                n_cuts += report.n_cuts;
                let counts = [
                    report.n_offers,
                    report.n_clients_arrived,
                    report.n_arrivals_expired,
                    report.n_taken_back,
                    report.n_dropped,
                ];
                for (total, n) in crossings.iter_mut().zip(counts) {
                    *total += n;
                }
                let counts = [
                    report.n_actions,
                    report.n_action_sends,
                    report.n_actions_acked,
                    report.n_actions_refused,
                ];
                for (total, n) in actions.iter_mut().zip(counts) {
                    *total += n;
                }
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    // The faults really happened: a run without them proves nothing.
    assert!(n_crashes > N_SEEDS / 2, "only {n_crashes} crashes injected");
    assert!(n_cuts > N_SEEDS / 2, "only {n_cuts} links cut");
    // So did every way a crossing ends: moved, never claimed by its client, taken
    // back, and dropped because it could not be put back.
    let [n_offers, n_arrived, n_expired, n_taken_back, n_dropped] = crossings;
    assert!(n_offers > 10 * N_SEEDS, "only {n_offers} players offered");
    assert!(n_arrived > 5 * N_SEEDS, "only {n_arrived} clients arrived");
    assert!(n_expired > N_SEEDS / 2, "only {n_expired} arrivals expired");
    assert!(n_taken_back > N_SEEDS / 2, "only {n_taken_back} taken back");
    assert!(n_dropped > 0, "no player ever dropped on a take-back");
    // Durable actions were sent, resent (after Busy, silence or a reconnect) and
    // all acknowledged in the end (the run fails otherwise).
    let [n_actions, n_sends, n_acked, n_refused] = actions;
    assert!(n_actions > 20 * N_SEEDS, "only {n_actions} durable actions");
    assert!(
        n_sends > n_actions + N_SEEDS,
        "only {n_sends} sends of {n_actions}"
    );
    assert_eq!(n_acked, n_actions, "every action acknowledged once");
    assert!(n_refused > N_SEEDS / 2, "only {n_refused} refused busy");
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
fn the_checker_catches_nodes_taking_over_claims_of_nodes_they_cannot_see() {
    let caught = (0..300).find_map(|seed| {
        let config = SimConfig {
            take_over_unseen_claims: true,
            ..SimConfig::with_faults(seed)
        };
        run(config).err()
    });
    let failure =
        caught.expect("taking over unseen claims must put a player on two nodes for some seed");
    assert!(
        matches!(failure.violation, Violation::TwoEntities { .. }),
        "{failure}"
    );
}

/// The first failure among `seeds` with the fault runs' configuration changed by
/// `broken`.
fn first_failure_with(
    seeds: std::ops::Range<u64>,
    broken: impl Fn(&mut SimConfig),
) -> Option<SimFailure> {
    seeds.into_iter().find_map(|seed| {
        let mut config = SimConfig::with_faults(seed);
        broken(&mut config);
        run(config).err()
    })
}

#[test]
fn the_checker_catches_a_source_taking_players_back_before_the_hosts_copy_is_gone() {
    // Giving up after 2 s and taking the player back at once: the host may accept
    // the last repeat (or one whose answer is lost) and keep a copy waiting for 11 s.
    let caught = first_failure_with(0..300, |c| {
        c.crossing.take_back_at_once = true;
        c.crossing.offer_give_up_ms = 2_000;
    });
    let failure = caught.expect("an early take-back must put a player in two worlds for some seed");
    assert!(
        matches!(failure.violation, Violation::TwoEntities { .. }),
        "{failure}"
    );
}

#[test]
fn the_checker_catches_a_host_handling_repeated_offers_anew() {
    // Without the answer memory a repeat is admitted again and may be answered
    // differently (Busy after Accepted): the source takes back a player the host
    // keeps. Delays up to 300 ms, longer than the 250 ms between repeats, reorder
    // repeats and answers often (the protocol itself holds under them too).
    let caught = first_failure_with(0..300, |c| {
        c.crossing.answers_remembered = 0;
        c.net.max_delay_ms = 300;
    });
    let failure =
        caught.expect("a host without answer memory must put a player in two worlds for some seed");
    assert!(
        matches!(failure.violation, Violation::TwoEntities { .. }),
        "{failure}"
    );
}

#[test]
fn the_checker_catches_a_waiting_arrival_outliving_the_players_new_session() {
    // Without the rule: a client that never follows its redirect logs in anew, and
    // the copy waiting for it is neither ended by the login nor by the request to end
    // its session.
    let caught = first_failure_with(0..100, |c| c.crossing.sessions_end_arrivals = false);
    let failure =
        caught.expect("arrivals outliving sessions must put a player in two worlds for some seed");
    assert!(
        matches!(failure.violation, Violation::TwoEntities { .. }),
        "{failure}"
    );
}

#[test]
fn the_checker_catches_an_old_sessions_transfer_taking_a_newer_sessions_claim() {
    // Without the rule: a client that lost its connection mid-transfer logs in
    // anew; the old transfer's host takes the new session's claim over when it
    // accepts, or the old transfer's take-back claims it back, and the new session
    // lives on beside a second entity.
    let caught = first_failure_with(0..100, |c| c.crossing.guards_stale_sessions = false);
    let failure =
        caught.expect("unguarded stale sessions must put a player in two worlds for some seed");
    assert!(
        matches!(failure.violation, Violation::TwoEntities { .. }),
        "{failure}"
    );
}

#[test]
fn the_checker_catches_a_node_acknowledging_actions_before_the_store_has_them() {
    // The node answers `ActionCommitted` as it sends the action to the store: until
    // the store has it, a crash, a cut or a lost call loses an acknowledged action.
    let caught = first_failure_with(0..20, |c| c.acknowledges_before_commit = true);
    let failure = caught.expect("acknowledging before the commit must lose an action");
    assert!(
        matches!(failure.violation, Violation::LostAction { .. }),
        "{failure}"
    );
}

#[test]
fn the_checker_catches_a_store_committing_a_resent_action_anew() {
    // A client resends an action whose answer it did not hear (lost, or its node
    // crashed or it moved); a store without the id check commits it again.
    let caught = first_failure_with(0..20, |c| c.store_dedupes_actions = false);
    let failure = caught.expect("a store without the id check must commit some action twice");
    assert!(
        matches!(failure.violation, Violation::ActionCommittedTwice { .. }),
        "{failure}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(SimConfig::with_faults(42)).expect("seed 42 passes");
    let b = run(SimConfig::with_faults(42)).expect("seed 42 passes");
    assert_eq!(a, b);
}

#[test]
fn a_dead_nodes_zones_serve_again_and_a_join_moves_about_one_nth() {
    use zonemesh_cluster::sim::scale::{ScaleConfig, measure};
    let report = measure(ScaleConfig {
        seed: 7,
        n_nodes: 10,
        n_zones: 1_000,
        n_joins: 100,
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(report.n_zones_failed_over > 0, "{report:?}");
    assert!(
        report.detect_all_ms < 60_000,
        "the dead node was never detected: {report:?}"
    );
    assert!(
        report.failover_ms < 60_000,
        "its zones never served again: {report:?}"
    );
    assert!(
        report.failover_ms >= 4_000,
        "zones moved before the lease could run out: {report:?}"
    );
    assert!((0.03..0.2).contains(&report.moved_on_join), "{report:?}");
    assert!(report.gossip_bytes_per_node_s > 0.0);
}

#[test]
fn players_of_a_node_cut_off_from_the_store_are_served_elsewhere() {
    use zonemesh_cluster::Millis;
    use zonemesh_cluster::sim::World;
    for seed in 0..20 {
        let mut world = World::new(SimConfig::calm(seed, 4, 12, 40));
        world
            .run_until(Millis(10_000))
            .unwrap_or_else(|f| panic!("{f}"));
        assert!(
            world.all_players_served(),
            "seed {seed}: not served before the cut"
        );
        let victim = world.cut_from_store(1).expect("slot 1 runs");
        let held = world.zones_held_by(victim);
        // Safety is checked after every step while the victim's lease runs out and
        // its zones move; the cut is never healed.
        world
            .run_until(Millis(30_000))
            .unwrap_or_else(|f| panic!("{f}"));
        assert!(
            !world.accepts_any(victim),
            "seed {seed}: the cut-off node still accepts inputs"
        );
        assert!(
            world.all_players_served(),
            "seed {seed}: players of {held:?} not served elsewhere\n{}",
            world.dump(&held)
        );
    }
}
