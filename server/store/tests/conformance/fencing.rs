//! Conformance: epochs and fencing (activation, stale and ungranted writes, races).

use std::sync::Arc;

use bytes::Bytes;
use zonemesh_store::{ActionCommit, Checkpoint, StoreError, ZoneRecord, ZoneSnapshot};

use super::{Fixture, action, assert_stale, player, snapshot, state_only};

/// Epochs start at 1 and grow by one per activation, per zone.
pub(crate) async fn activation_epochs_increase_by_one(fixture: &impl Fixture) {
    let store = fixture.open().await;
    assert_eq!(store.zone_epoch(7).await.expect("epoch"), None);
    let first = store.activate_zone(7, "node-a").await.expect("activate");
    assert_eq!(first.epoch, 1);
    assert_eq!(first.record, None);
    let second = store.activate_zone(7, "node-b").await.expect("activate");
    assert_eq!(second.epoch, 2);
    let other = store.activate_zone(8, "node-a").await.expect("activate");
    assert_eq!(other.epoch, 1, "epochs are per zone");
    assert_eq!(store.zone_epoch(7).await.expect("epoch"), Some(2));
    assert_eq!(store.zone_epoch(8).await.expect("epoch"), Some(1));
}

/// Eight racing activations get eight distinct epochs; only the newest may write.
pub(crate) async fn concurrent_activations_get_distinct_epochs(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.activate_zone(3, &format!("node-{i}")).await })
        })
        .collect();
    let mut epochs = Vec::new();
    for task in tasks {
        epochs.push(task.await.expect("join").expect("activate").epoch);
    }
    epochs.sort_unstable();
    assert_eq!(epochs, (1..=8).collect::<Vec<u64>>());
    assert_eq!(store.zone_epoch(3).await.expect("epoch"), Some(8));
    store
        .checkpoint(3, 8, state_only(1, b"newest"))
        .await
        .expect("newest epoch writes");
    for stale in 1..8 {
        assert_stale(
            store.checkpoint(3, stale, state_only(2, b"old")).await,
            3,
            8,
            stale,
        );
    }
    let record = store.load_zone(3).await.expect("load").expect("saved");
    assert_eq!(record.state, Bytes::from_static(b"newest"));
}

/// A checkpoint at an old epoch changes neither the zone state nor the players.
pub(crate) async fn stale_checkpoint_is_rejected_and_changes_nothing(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(1, "a").await.expect("activate");
    let original = Checkpoint {
        zone_state: Some(snapshot(10, b"A")),
        players: vec![player("p", 1, 1.0, b"one")],
    };
    store.checkpoint(1, 1, original).await.expect("checkpoint");
    store.activate_zone(1, "b").await.expect("activate");
    let stale = Checkpoint {
        zone_state: Some(snapshot(11, b"B")),
        players: vec![player("p", 1, 9.0, b"nine"), player("q", 1, 2.0, b"")],
    };
    assert_stale(store.checkpoint(1, 1, stale).await, 1, 2, 1);
    let zone = store.load_zone(1).await.expect("load").expect("saved");
    assert_eq!(
        (zone.epoch, zone.tick, zone.state.as_ref()),
        (1, 10, &b"A"[..])
    );
    let p = store.load_player("p").await.expect("load").expect("saved");
    assert_eq!((p.x, p.data.as_ref()), (1.0, &b"one"[..]));
    assert_eq!(store.load_player("q").await.expect("load"), None);
}

/// `save_players` at an old epoch changes nothing.
pub(crate) async fn stale_save_players_is_rejected_and_changes_nothing(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(2, "a").await.expect("activate");
    let saved = player("p", 2, 1.0, b"kept");
    store
        .save_players(2, 1, vec![saved.clone()])
        .await
        .expect("save");
    store.activate_zone(2, "b").await.expect("activate");
    let result = store
        .save_players(
            2,
            1,
            vec![player("p", 2, 5.0, b"lost"), player("new", 2, 0.0, b"")],
        )
        .await;
    assert_stale(result, 2, 2, 1);
    assert_eq!(store.load_player("p").await.expect("load"), Some(saved));
    assert_eq!(store.load_player("new").await.expect("load"), None);
}

/// `commit_action` at an old epoch commits nothing, even for a known id.
pub(crate) async fn stale_commit_action_is_rejected_and_changes_nothing(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(4, "a").await.expect("activate");
    store.activate_zone(4, "b").await.expect("activate");
    assert_stale(
        store.commit_action(4, 1, action(1, "p", 4, b"x")).await,
        4,
        2,
        1,
    );
    assert!(
        store
            .actions_for_player("p")
            .await
            .expect("read")
            .is_empty()
    );
    let committed = store.commit_action(4, 2, action(1, "p", 4, b"x")).await;
    assert_eq!(committed.expect("commit"), ActionCommit::Committed);
    assert_stale(
        store.commit_action(4, 1, action(1, "p", 4, b"x")).await,
        4,
        2,
        1,
    );
}

/// The handoff story: B takes the zone from A; A's late writes bounce off.
pub(crate) async fn stale_owner_cannot_overwrite_newer_owner(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let a = store.activate_zone(5, "node-a").await.expect("activate a");
    store
        .checkpoint(5, a.epoch, state_only(1, b"a1"))
        .await
        .expect("a writes");
    let b = store.activate_zone(5, "node-b").await.expect("activate b");
    assert_eq!(b.epoch, a.epoch + 1);
    let handed = b.record.expect("b loads a's state");
    assert_eq!((handed.epoch, handed.state.as_ref()), (a.epoch, &b"a1"[..]));
    store
        .checkpoint(5, b.epoch, state_only(2, b"b1"))
        .await
        .expect("b writes");
    assert_stale(
        store.checkpoint(5, a.epoch, state_only(3, b"a2")).await,
        5,
        b.epoch,
        a.epoch,
    );
    assert_stale(
        store
            .save_players(5, a.epoch, vec![player("p", 5, 0.0, b"")])
            .await,
        5,
        b.epoch,
        a.epoch,
    );
    let stored = store.load_zone(5).await.expect("load").expect("saved");
    assert_eq!(
        stored,
        ZoneRecord {
            epoch: b.epoch,
            tick: 2,
            saved_at_unix_ms: 1_700_000_000_002,
            state: Bytes::from_static(b"b1"),
        }
    );
}

/// A checkpoint racing an activation either lands before it (and the new owner loads
/// it) or is rejected as stale; it never lands after the new owner has loaded.
pub(crate) async fn racing_activation_and_checkpoint_linearize(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut epoch = store.activate_zone(80, "n0").await.expect("activate").epoch;
    for round in 0..20u64 {
        let state = Bytes::from(format!("round-{round}"));
        let checkpoint = Checkpoint {
            zone_state: Some(ZoneSnapshot {
                tick: round,
                saved_at_unix_ms: round,
                state: state.clone(),
            }),
            players: Vec::new(),
        };
        let writer = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.checkpoint(80, epoch, checkpoint).await })
        };
        let taker = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.activate_zone(80, "n1").await })
        };
        let written = writer.await.expect("join");
        let taken = taker.await.expect("join").expect("activate");
        let loaded = taken.record.map(|record| record.state);
        match written {
            Ok(_) => assert_eq!(loaded, Some(state), "round {round}: write after load"),
            Err(StoreError::StaleEpoch { .. }) => assert_ne!(loaded, Some(state)),
            Err(other) => panic!("round {round}: {other:?}"),
        }
        epoch = taken.epoch;
    }
}

/// Epochs never handed out (zone never activated, or ahead of the latest) are refused.
pub(crate) async fn ungranted_epochs_are_rejected(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let result = store.checkpoint(6, 1, state_only(1, b"x")).await;
    assert!(
        matches!(
            result,
            Err(StoreError::EpochNotGranted {
                zone: 6,
                current: None,
                attempted: 1
            })
        ),
        "{result:?}"
    );
    store.activate_zone(6, "a").await.expect("activate");
    let result = store.commit_action(6, 2, action(9, "p", 6, b"")).await;
    assert!(
        matches!(
            result,
            Err(StoreError::EpochNotGranted {
                current: Some(1),
                attempted: 2,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(store.load_zone(6).await.expect("load"), None);
    assert!(
        store
            .actions_for_player("p")
            .await
            .expect("read")
            .is_empty()
    );
}
