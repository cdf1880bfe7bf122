//! Conformance: round trips of zone state, players and actions, idempotency, reopen.

use std::sync::Arc;

use bytes::Bytes;
use zonemesh_store::limits::{MAX_PLAYERS_PER_BATCH, MAX_ZONE_STATE_BYTES};
use zonemesh_store::{
    ActionCommit, ActionId, Checkpoint, DurableAction, PlayerRecord, ZoneSnapshot,
};

use super::{Fixture, action, player, snapshot, state_only};

/// A checkpoint's zone state and players read back exactly, also through activation.
pub(crate) async fn checkpoint_round_trips(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let epoch = store.activate_zone(10, "a").await.expect("activate").epoch;
    let players = vec![
        player("alice", 10, 1.5, b"sword"),
        player("bob", 10, -3.25, b""),
        player("carol", 10, 1e6, &[0, 255, 7]),
    ];
    let checkpoint = Checkpoint {
        zone_state: Some(snapshot(42, b"\x00zone\xffstate")),
        players: players.clone(),
    };
    store
        .checkpoint(10, epoch, checkpoint)
        .await
        .expect("checkpoint");
    let expected = snapshot(42, b"\x00zone\xffstate").into_record(epoch);
    assert_eq!(
        store.load_zone(10).await.expect("load"),
        Some(expected.clone())
    );
    for record in &players {
        let loaded = store.load_player(&record.player).await.expect("load");
        assert_eq!(loaded.as_ref(), Some(record));
    }
    let next = store.activate_zone(10, "b").await.expect("activate");
    assert_eq!(next.record, Some(expected));
}

/// A checkpoint without zone state writes players and leaves the state alone.
pub(crate) async fn checkpoint_without_zone_state_keeps_stored_state(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(11, "a").await.expect("activate");
    store
        .checkpoint(11, 1, state_only(1, b"kept"))
        .await
        .expect("checkpoint");
    let players_only = Checkpoint {
        zone_state: None,
        players: vec![player("p", 11, 2.0, b"")],
    };
    store
        .checkpoint(11, 1, players_only)
        .await
        .expect("checkpoint");
    let zone = store.load_zone(11).await.expect("load").expect("saved");
    assert_eq!((zone.tick, zone.state.as_ref()), (1, &b"kept"[..]));
    assert!(store.load_player("p").await.expect("load").is_some());
}

/// The largest allowed batch (10 000 players) and zone state (64 MiB) round-trip.
pub(crate) async fn full_size_checkpoint_round_trips(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(12, "a").await.expect("activate");
    let players: Vec<_> = (0..MAX_PLAYERS_PER_BATCH)
        .map(|i| player(&format!("p{i:05}"), 12, i as f32, b"data"))
        .collect();
    let state: Bytes = (0..MAX_ZONE_STATE_BYTES).map(|i| (i % 251) as u8).collect();
    let checkpoint = Checkpoint {
        zone_state: Some(ZoneSnapshot {
            tick: 1,
            saved_at_unix_ms: 2,
            state: state.clone(),
        }),
        players,
    };
    store
        .checkpoint(12, 1, checkpoint)
        .await
        .expect("checkpoint");
    let zone = store.load_zone(12).await.expect("load").expect("saved");
    assert!(zone.state == state, "64 MiB state differs after round trip");
    let last = store
        .load_player("p09999")
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(last.x, 9999.0);
}

/// A player's record reads back, is replaced by a newer save, and may move zones.
pub(crate) async fn player_round_trip_and_overwrite(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(20, "a").await.expect("activate");
    store.activate_zone(21, "a").await.expect("activate");
    let first = player("dana", 20, 1.0, b"v1");
    store
        .save_players(20, 1, vec![first.clone()])
        .await
        .expect("save");
    assert_eq!(store.load_player("dana").await.expect("load"), Some(first));
    let moved = PlayerRecord {
        updated_at_unix_ms: 1_700_000_000_500,
        version: 2,
        ..player("dana", 21, 7.5, b"v2")
    };
    store
        .save_players(21, 1, vec![moved.clone()])
        .await
        .expect("save");
    assert_eq!(store.load_player("dana").await.expect("load"), Some(moved));
    assert_eq!(store.load_player("nobody").await.expect("load"), None);
    store
        .save_players(20, 1, Vec::new())
        .await
        .expect("empty batch is fine");
}

/// Committing an id twice stores it once and returns the original the second time.
pub(crate) async fn action_commit_is_idempotent(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(30, "a").await.expect("activate");
    let original = action(77, "erin", 30, b"buy sword");
    let first = store.commit_action(30, 1, original.clone()).await;
    assert_eq!(first.expect("commit"), ActionCommit::Committed);
    let retry = action(77, "erin", 30, b"different payload");
    let second = store.commit_action(30, 1, retry).await.expect("commit");
    assert_eq!(second, ActionCommit::AlreadyCommitted(original.clone()));
    assert_eq!(
        store.actions_for_player("erin").await.expect("read"),
        vec![original]
    );
}

/// Racing commits of one id: exactly one `Committed`, the rest `AlreadyCommitted`.
pub(crate) async fn concurrent_duplicate_actions_commit_once(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(31, "a").await.expect("activate");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.commit_action(31, 1, action(5, "f", 31, b"x")).await })
        })
        .collect();
    let mut n_committed = 0;
    for task in tasks {
        match task.await.expect("join").expect("commit") {
            ActionCommit::Committed => n_committed += 1,
            ActionCommit::AlreadyCommitted(original) => assert_eq!(original.id, ActionId(5)),
        }
    }
    assert_eq!(n_committed, 1);
    assert_eq!(store.actions_for_player("f").await.expect("read").len(), 1);
}

/// Actions list per player, in ascending id order.
pub(crate) async fn actions_are_listed_per_player_in_id_order(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(32, "a").await.expect("activate");
    let big = u128::MAX - 1;
    for (id, who) in [
        (30, "gus"),
        (big, "gus"),
        (10, "gus"),
        (15, "hal"),
        (20, "gus"),
    ] {
        store
            .commit_action(32, 1, action(id, who, 32, b""))
            .await
            .expect("commit");
    }
    let ids = |actions: Vec<DurableAction>| actions.into_iter().map(|a| a.id.0).collect::<Vec<_>>();
    let gus = store.actions_for_player("gus").await.expect("read");
    assert_eq!(ids(gus), vec![10, 20, 30, big]);
    let hal = store.actions_for_player("hal").await.expect("read");
    assert_eq!(ids(hal), vec![15]);
    assert!(
        store
            .actions_for_player("gu")
            .await
            .expect("read")
            .is_empty()
    );
}

/// Everything committed through one handle is there through the next.
pub(crate) async fn reopen_keeps_committed_data(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(40, "a").await.expect("activate");
    let checkpoint = Checkpoint {
        zone_state: Some(snapshot(9, b"durable")),
        players: vec![player("ivy", 40, 4.0, b"bag")],
    };
    store
        .checkpoint(40, 1, checkpoint)
        .await
        .expect("checkpoint");
    store
        .commit_action(40, 1, action(1, "ivy", 40, b"quest"))
        .await
        .expect("commit");
    drop(store);

    let store = fixture.open().await;
    assert_eq!(store.zone_epoch(40).await.expect("epoch"), Some(1));
    assert_eq!(
        store.load_player("ivy").await.expect("load"),
        Some(player("ivy", 40, 4.0, b"bag"))
    );
    assert_eq!(
        store.actions_for_player("ivy").await.expect("read").len(),
        1
    );
    let activation = store.activate_zone(40, "b").await.expect("activate");
    assert_eq!(activation.epoch, 2);
    assert_eq!(
        activation.record,
        Some(snapshot(9, b"durable").into_record(1))
    );
}
