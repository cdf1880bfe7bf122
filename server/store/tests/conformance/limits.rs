//! Conformance: limits, input validation and operation statistics.

use bytes::Bytes;
use zonemesh_store::limits::{
    MAX_ACTION_PAYLOAD_BYTES, MAX_NAME_BYTES, MAX_PLAYER_DATA_BYTES, MAX_PLAYERS_PER_BATCH,
    MAX_ZONE_STATE_BYTES,
};
use zonemesh_store::{Checkpoint, DurableAction, PlayerRecord, ZoneSnapshot};

use super::{Fixture, action, assert_invalid, assert_too_large, player, snapshot};

/// Inputs over the limits fail with `TooLarge` and write nothing.
pub(crate) async fn oversized_inputs_are_rejected_and_change_nothing(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(50, "a").await.expect("activate");
    let too_many: Vec<_> = (0..=MAX_PLAYERS_PER_BATCH)
        .map(|i| player(&format!("p{i}"), 50, 0.0, b""))
        .collect();
    let batch = Checkpoint {
        zone_state: Some(snapshot(1, b"x")),
        players: too_many.clone(),
    };
    assert_too_large(store.checkpoint(50, 1, batch).await, "players per batch");
    assert_too_large(
        store.save_players(50, 1, too_many).await,
        "players per batch",
    );
    let huge_state = Checkpoint {
        zone_state: Some(ZoneSnapshot {
            tick: 1,
            saved_at_unix_ms: 1,
            state: Bytes::from(vec![0; MAX_ZONE_STATE_BYTES + 1]),
        }),
        players: Vec::new(),
    };
    assert_too_large(
        store.checkpoint(50, 1, huge_state).await,
        "zone state bytes",
    );
    let fat = PlayerRecord {
        data: Bytes::from(vec![0; MAX_PLAYER_DATA_BYTES + 1]),
        ..player("fat", 50, 0.0, b"")
    };
    assert_too_large(
        store.save_players(50, 1, vec![fat]).await,
        "player data bytes",
    );
    let long_name = "n".repeat(MAX_NAME_BYTES + 1);
    let named = player(&long_name, 50, 0.0, b"");
    assert_too_large(store.save_players(50, 1, vec![named]).await, "player name");
    let heavy = DurableAction {
        payload: Bytes::from(vec![0; MAX_ACTION_PAYLOAD_BYTES + 1]),
        ..action(1, "p", 50, b"")
    };
    assert_too_large(
        store.commit_action(50, 1, heavy).await,
        "action payload bytes",
    );
    assert_too_large(store.activate_zone(51, &long_name).await, "node name");

    assert_eq!(store.load_zone(50).await.expect("load"), None);
    assert_eq!(store.load_player("p0").await.expect("load"), None);
    assert!(
        store
            .actions_for_player("p")
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(store.zone_epoch(51).await.expect("epoch"), None);
}

/// Malformed inputs fail with `InvalidInput` and write nothing.
pub(crate) async fn invalid_inputs_are_rejected(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(60, "a").await.expect("activate");
    let mut nan = player("nan", 60, 0.0, b"");
    nan.y = f32::NAN;
    assert_invalid(store.save_players(60, 1, vec![nan]).await);
    let elsewhere = player("elsewhere", 61, 0.0, b"");
    assert_invalid(store.save_players(60, 1, vec![elsewhere]).await);
    let twice = vec![player("twin", 60, 0.0, b""), player("twin", 60, 1.0, b"")];
    assert_invalid(store.save_players(60, 1, twice).await);
    assert_invalid(store.commit_action(60, 1, action(1, "p", 61, b"")).await);
    assert_invalid(store.commit_action(60, 1, action(1, "", 60, b"")).await);
    assert_invalid(store.activate_zone(62, "").await);
    let mut late = player("late", 60, 0.0, b"");
    late.updated_at_unix_ms = u64::MAX;
    assert_invalid(store.save_players(60, 1, vec![late]).await);
    for name in ["nan", "elsewhere", "twin", "late"] {
        assert_eq!(store.load_player(name).await.expect("load"), None);
    }
    assert_eq!(store.zone_epoch(62).await.expect("epoch"), None);
}

/// Reads never bump an epoch; `stats` counts every call by kind.
pub(crate) async fn reads_do_not_bump_epochs_and_stats_count_calls(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let before = store.stats();
    store.activate_zone(70, "a").await.expect("activate");
    for _ in 0..3 {
        store.load_zone(70).await.expect("load");
    }
    store.load_player("x").await.expect("load");
    store.actions_for_player("x").await.expect("read");
    assert_eq!(store.zone_epoch(70).await.expect("epoch"), Some(1));
    store
        .checkpoint(70, 1, Checkpoint::default())
        .await
        .expect("empty checkpoint");
    assert!(
        store
            .checkpoint(70, 0, Checkpoint::default())
            .await
            .is_err()
    );
    assert_invalid(store.activate_zone(70, "").await);
    assert_eq!(store.zone_epoch(70).await.expect("epoch"), Some(1));

    let after = store.stats();
    assert_eq!(after.n_activations - before.n_activations, 2);
    assert_eq!(after.n_zone_loads - before.n_zone_loads, 3);
    assert_eq!(after.n_player_loads - before.n_player_loads, 1);
    assert_eq!(after.n_action_reads - before.n_action_reads, 1);
    assert_eq!(after.n_epoch_reads - before.n_epoch_reads, 2);
    assert_eq!(after.n_checkpoints - before.n_checkpoints, 2);
    assert_eq!(after.n_fencing_rejections - before.n_fencing_rejections, 1);
    assert_eq!(after.n_errors - before.n_errors, 1);
    assert_eq!(after.n_player_saves, before.n_player_saves);
    assert_eq!(after.n_action_commits, before.n_action_commits);
}
