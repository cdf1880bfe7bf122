//! The store conformance suite: one set of behaviours every backend must show, written
//! once and instantiated per backend with [`conformance_tests!`].
//!
//! A backend's test file provides a [`Fixture`] (fresh, isolated storage that can be
//! opened more than once) and a `make(test_name) -> Option<Fixture>` function that may
//! return `None` to skip (e.g. no database configured).

#![allow(dead_code)] // Each test binary uses the suite through the macro only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use zonemesh_store::{
    ActionId, Checkpoint, DurableAction, PlayerRecord, Store, StoreError, ZoneSnapshot,
};

mod claims;
mod fencing;
mod holders;
mod leases;
mod limits;
mod members;
mod records;
mod versions;

pub(crate) use claims::*;
pub(crate) use fencing::*;
pub(crate) use holders::*;
pub(crate) use leases::*;
pub(crate) use limits::*;
pub(crate) use members::*;
pub(crate) use records::*;
pub(crate) use versions::*;

/// A boxed future, for the fixture trait.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fresh storage for one test.
pub(crate) trait Fixture: Send + Sync {
    /// Opens a store on this fixture's storage; every call sees the same data. Callers
    /// drop the previous handle first (an embedded file admits one handle at a time).
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>>;

    /// Releases the storage (drops a database schema, ...).
    fn cleanup(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Instantiates every conformance test for a backend (`#[macro_use] mod conformance;`
/// then `conformance_tests!(make);`), where
/// `make: async fn(&'static str) -> Option<impl Fixture>`.
macro_rules! conformance_tests {
    ($make:path) => {
        conformance_tests!(
            $make;
            activation_epochs_increase_by_one,
            concurrent_activations_get_distinct_epochs,
            stale_checkpoint_is_rejected_and_changes_nothing,
            stale_save_players_is_rejected_and_changes_nothing,
            stale_commit_action_is_rejected_and_changes_nothing,
            stale_owner_cannot_overwrite_newer_owner,
            racing_activation_and_checkpoint_linearize,
            ungranted_epochs_are_rejected,
            checkpoint_round_trips,
            checkpoint_without_zone_state_keeps_stored_state,
            full_size_checkpoint_round_trips,
            player_round_trip_and_overwrite,
            action_commit_is_idempotent,
            concurrent_duplicate_actions_commit_once,
            actions_are_listed_per_player_in_id_order,
            reopen_keeps_committed_data,
            oversized_inputs_are_rejected_and_change_nothing,
            invalid_inputs_are_rejected,
            reads_do_not_bump_epochs_and_stats_count_calls,
            newer_player_versions_replace_older_ones,
            equal_and_older_versions_are_refused_and_reported,
            a_mixed_batch_commits_everything_but_the_stale_records,
            racing_saves_of_one_player_keep_the_highest_version,
            reopen_keeps_player_versions,
            versions_beyond_a_signed_column_are_invalid,
            lease_generations_grow_only_after_a_lapse,
            superseded_incarnations_get_no_lease,
            activation_without_a_live_lease_is_refused,
            a_zone_held_under_a_live_lease_is_refused,
            a_lapsed_holder_is_replaced_and_fenced,
            repeated_attempts_keep_the_epoch,
            racing_leased_activations_grant_exactly_one,
            a_released_zone_is_free_at_once,
            zones_held_by_lists_exactly_the_held_zones,
            a_single_node_activation_clears_the_holder,
            ids_beyond_the_signed_range_roundtrip,
            reopen_keeps_leases_and_holders,
            lease_limits_and_cluster_stats,
            an_unclaimed_player_is_claimed_and_its_run_reclaims_it,
            a_claim_reports_the_stored_record_version,
            a_claim_held_by_another_run_is_refused_unless_taken_over,
            a_claim_without_a_live_holder_lease_is_taken_over,
            only_the_claiming_session_releases,
            racing_claims_grant_exactly_one,
            claims_of_different_players_are_independent,
            a_takeover_claims_the_sources_players_and_leaves_the_rest,
            claim_names_are_validated_and_claims_counted,
            reopen_keeps_player_claims,
            a_heartbeat_lists_the_row_and_only_joins_bump_the_generation,
            a_newer_incarnation_replaces_the_row_and_an_older_one_is_refused,
            a_row_whose_ttl_ran_out_is_not_listed,
            leave_removes_only_the_exact_run,
            bad_member_inputs_are_refused_and_member_calls_counted,
            concurrent_member_joins_lose_no_generation_bump,
            reopen_keeps_member_rows,
        );
    };
    ($make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $make(stringify!($name)).await else {
                    return;
                };
                // Run the body as a task so a failing assertion still gets cleanup.
                let fixture = std::sync::Arc::new(fixture);
                let body = {
                    let fixture = std::sync::Arc::clone(&fixture);
                    tokio::spawn(async move { conformance::$name(&*fixture).await })
                };
                let outcome = body.await;
                conformance::Fixture::cleanup(&*fixture).await;
                if let Err(error) = outcome {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        )*
    };
}

// ---- builders -------------------------------------------------------------------

/// A player record in `zone` at `(x, -x)` with `data`, at version 1.
pub(crate) fn player(name: &str, zone: u32, x: f32, data: &'static [u8]) -> PlayerRecord {
    PlayerRecord {
        player: name.to_owned(),
        zone,
        x,
        y: -x,
        data: Bytes::from_static(data),
        updated_at_unix_ms: 1_700_000_000_000,
        version: 1,
    }
}

/// [`player`] at `version`.
pub(crate) fn versioned(name: &str, zone: u32, version: u64, data: &'static [u8]) -> PlayerRecord {
    PlayerRecord {
        version,
        ..player(name, zone, version as f32, data)
    }
}

/// A zone snapshot at `tick` holding `state`.
pub(crate) fn snapshot(tick: u64, state: &'static [u8]) -> ZoneSnapshot {
    ZoneSnapshot {
        tick,
        saved_at_unix_ms: 1_700_000_000_000 + tick,
        state: Bytes::from_static(state),
    }
}

/// A checkpoint of a zone state only.
pub(crate) fn state_only(tick: u64, state: &'static [u8]) -> Checkpoint {
    Checkpoint {
        zone_state: Some(snapshot(tick, state)),
        players: Vec::new(),
    }
}

/// A durable action of `player` in `zone`.
pub(crate) fn action(id: u128, player: &str, zone: u32, payload: &'static [u8]) -> DurableAction {
    DurableAction {
        id: ActionId(id),
        player: player.to_owned(),
        zone,
        kind: 3,
        payload: Bytes::from_static(payload),
    }
}

/// Asserts `result` is a `StaleEpoch` rejection with these epochs.
#[track_caller]
pub(crate) fn assert_stale<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    zone: u32,
    current: u64,
    attempted: u64,
) {
    match result {
        Err(StoreError::StaleEpoch {
            zone: z,
            current: c,
            attempted: a,
        }) => assert_eq!((z, c, a), (zone, current, attempted)),
        other => panic!("expected StaleEpoch, got {other:?}"),
    }
}

/// Asserts `result` is a `TooLarge` rejection about `what`.
#[track_caller]
pub(crate) fn assert_too_large<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::TooLarge { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected TooLarge({what}), got {other:?}"),
    }
}

/// Asserts `result` is an `InvalidInput` rejection.
#[track_caller]
pub(crate) fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::InvalidInput(_))),
        "expected InvalidInput, got {result:?}"
    );
}
