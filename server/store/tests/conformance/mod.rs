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
use zonemesh_store::limits::{
    MAX_ACTION_PAYLOAD_BYTES, MAX_NAME_BYTES, MAX_PLAYER_DATA_BYTES, MAX_PLAYERS_PER_BATCH,
    MAX_ZONE_STATE_BYTES,
};
use zonemesh_store::{
    ActionCommit, ActionId, Checkpoint, DurableAction, PlayerRecord, Store, StoreError,
    ZoneRecord, ZoneSnapshot,
};

/// A boxed future, for the fixture trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fresh storage for one test.
pub trait Fixture: Send + Sync {
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
        );
    };
    ($make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $make(stringify!($name)).await else {
                    return;
                };
                conformance::$name(&fixture).await;
                conformance::Fixture::cleanup(&fixture).await;
            }
        )*
    };
}

// ---- builders -------------------------------------------------------------------

/// A player record in `zone` at `(x, 0)` with `data`.
pub fn player(name: &str, zone: u32, x: f32, data: &'static [u8]) -> PlayerRecord {
    PlayerRecord {
        player: name.to_owned(),
        zone,
        x,
        y: -x,
        data: Bytes::from_static(data),
        updated_at_unix_ms: 1_700_000_000_000,
    }
}

/// A zone snapshot at `tick` holding `state`.
pub fn snapshot(tick: u64, state: &'static [u8]) -> ZoneSnapshot {
    ZoneSnapshot {
        tick,
        saved_at_unix_ms: 1_700_000_000_000 + tick,
        state: Bytes::from_static(state),
    }
}

/// A checkpoint of a zone state only.
pub fn state_only(tick: u64, state: &'static [u8]) -> Checkpoint {
    Checkpoint {
        zone_state: Some(snapshot(tick, state)),
        players: Vec::new(),
    }
}

/// A durable action of `player` in `zone`.
pub fn action(id: u128, player: &str, zone: u32, payload: &'static [u8]) -> DurableAction {
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
pub fn assert_stale<T: std::fmt::Debug>(
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
pub fn assert_too_large<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::TooLarge { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected TooLarge({what}), got {other:?}"),
    }
}

/// Asserts `result` is an `InvalidInput` rejection.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::InvalidInput(_))),
        "expected InvalidInput, got {result:?}"
    );
}

// ---- epochs ---------------------------------------------------------------------

/// Epochs start at 1 and grow by one per activation, per zone.
pub async fn activation_epochs_increase_by_one(fixture: &impl Fixture) {
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
pub async fn concurrent_activations_get_distinct_epochs(fixture: &impl Fixture) {
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
        assert_stale(store.checkpoint(3, stale, state_only(2, b"old")).await, 3, 8, stale);
    }
    let record = store.load_zone(3).await.expect("load").expect("saved");
    assert_eq!(record.state, Bytes::from_static(b"newest"));
}

/// A checkpoint at an old epoch changes neither the zone state nor the players.
pub async fn stale_checkpoint_is_rejected_and_changes_nothing(fixture: &impl Fixture) {
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
    assert_eq!((zone.epoch, zone.tick, zone.state.as_ref()), (1, 10, &b"A"[..]));
    let p = store.load_player("p").await.expect("load").expect("saved");
    assert_eq!((p.x, p.data.as_ref()), (1.0, &b"one"[..]));
    assert_eq!(store.load_player("q").await.expect("load"), None);
}

/// `save_players` at an old epoch changes nothing.
pub async fn stale_save_players_is_rejected_and_changes_nothing(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(2, "a").await.expect("activate");
    let saved = player("p", 2, 1.0, b"kept");
    store
        .save_players(2, 1, vec![saved.clone()])
        .await
        .expect("save");
    store.activate_zone(2, "b").await.expect("activate");
    let result = store
        .save_players(2, 1, vec![player("p", 2, 5.0, b"lost"), player("new", 2, 0.0, b"")])
        .await;
    assert_stale(result, 2, 2, 1);
    assert_eq!(store.load_player("p").await.expect("load"), Some(saved));
    assert_eq!(store.load_player("new").await.expect("load"), None);
}

/// `commit_action` at an old epoch commits nothing, even for a known id.
pub async fn stale_commit_action_is_rejected_and_changes_nothing(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(4, "a").await.expect("activate");
    store.activate_zone(4, "b").await.expect("activate");
    assert_stale(
        store.commit_action(4, 1, action(1, "p", 4, b"x")).await,
        4,
        2,
        1,
    );
    assert!(store.actions_for_player("p").await.expect("read").is_empty());
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
pub async fn stale_owner_cannot_overwrite_newer_owner(fixture: &impl Fixture) {
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

/// Epochs never handed out (zone never activated, or ahead of the latest) are refused.
pub async fn ungranted_epochs_are_rejected(fixture: &impl Fixture) {
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
    assert!(store.actions_for_player("p").await.expect("read").is_empty());
}

// ---- round trips ----------------------------------------------------------------

/// A checkpoint's zone state and players read back exactly, also through activation.
pub async fn checkpoint_round_trips(fixture: &impl Fixture) {
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
    store.checkpoint(10, epoch, checkpoint).await.expect("checkpoint");
    let expected = snapshot(42, b"\x00zone\xffstate").into_record(epoch);
    assert_eq!(store.load_zone(10).await.expect("load"), Some(expected.clone()));
    for record in &players {
        let loaded = store.load_player(&record.player).await.expect("load");
        assert_eq!(loaded.as_ref(), Some(record));
    }
    let next = store.activate_zone(10, "b").await.expect("activate");
    assert_eq!(next.record, Some(expected));
}

/// A checkpoint without zone state writes players and leaves the state alone.
pub async fn checkpoint_without_zone_state_keeps_stored_state(fixture: &impl Fixture) {
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
    store.checkpoint(11, 1, players_only).await.expect("checkpoint");
    let zone = store.load_zone(11).await.expect("load").expect("saved");
    assert_eq!((zone.tick, zone.state.as_ref()), (1, &b"kept"[..]));
    assert!(store.load_player("p").await.expect("load").is_some());
}

/// The largest allowed batch (10 000 players) and zone state (64 MiB) round-trip.
pub async fn full_size_checkpoint_round_trips(fixture: &impl Fixture) {
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
    store.checkpoint(12, 1, checkpoint).await.expect("checkpoint");
    let zone = store.load_zone(12).await.expect("load").expect("saved");
    assert!(zone.state == state, "64 MiB state differs after round trip");
    let last = store.load_player("p09999").await.expect("load").expect("saved");
    assert_eq!(last.x, 9999.0);
}

/// A player's record reads back, is replaced by a newer save, and may move zones.
pub async fn player_round_trip_and_overwrite(fixture: &impl Fixture) {
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
        ..player("dana", 21, 7.5, b"v2")
    };
    store
        .save_players(21, 1, vec![moved.clone()])
        .await
        .expect("save");
    assert_eq!(store.load_player("dana").await.expect("load"), Some(moved));
    assert_eq!(store.load_player("nobody").await.expect("load"), None);
    store.save_players(20, 1, Vec::new()).await.expect("empty batch is fine");
}

// ---- actions --------------------------------------------------------------------

/// Committing an id twice stores it once and returns the original the second time.
pub async fn action_commit_is_idempotent(fixture: &impl Fixture) {
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
pub async fn concurrent_duplicate_actions_commit_once(fixture: &impl Fixture) {
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
pub async fn actions_are_listed_per_player_in_id_order(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(32, "a").await.expect("activate");
    let big = u128::MAX - 1;
    for (id, who) in [(30, "gus"), (big, "gus"), (10, "gus"), (15, "hal"), (20, "gus")] {
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
    assert!(store.actions_for_player("gu").await.expect("read").is_empty());
}

// ---- durability -----------------------------------------------------------------

/// Everything committed through one handle is there through the next.
pub async fn reopen_keeps_committed_data(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(40, "a").await.expect("activate");
    let checkpoint = Checkpoint {
        zone_state: Some(snapshot(9, b"durable")),
        players: vec![player("ivy", 40, 4.0, b"bag")],
    };
    store.checkpoint(40, 1, checkpoint).await.expect("checkpoint");
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
    assert_eq!(store.actions_for_player("ivy").await.expect("read").len(), 1);
    let activation = store.activate_zone(40, "b").await.expect("activate");
    assert_eq!(activation.epoch, 2);
    assert_eq!(activation.record, Some(snapshot(9, b"durable").into_record(1)));
}

// ---- limits and validation ------------------------------------------------------

/// Inputs over the limits fail with `TooLarge` and write nothing.
pub async fn oversized_inputs_are_rejected_and_change_nothing(fixture: &impl Fixture) {
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
    assert_too_large(store.save_players(50, 1, too_many).await, "players per batch");
    let huge_state = Checkpoint {
        zone_state: Some(ZoneSnapshot {
            tick: 1,
            saved_at_unix_ms: 1,
            state: Bytes::from(vec![0; MAX_ZONE_STATE_BYTES + 1]),
        }),
        players: Vec::new(),
    };
    assert_too_large(store.checkpoint(50, 1, huge_state).await, "zone state bytes");
    let fat = PlayerRecord {
        data: Bytes::from(vec![0; MAX_PLAYER_DATA_BYTES + 1]),
        ..player("fat", 50, 0.0, b"")
    };
    assert_too_large(store.save_players(50, 1, vec![fat]).await, "player data bytes");
    let long_name = "n".repeat(MAX_NAME_BYTES + 1);
    let named = player(&long_name, 50, 0.0, b"");
    assert_too_large(store.save_players(50, 1, vec![named]).await, "player name");
    let heavy = DurableAction {
        payload: Bytes::from(vec![0; MAX_ACTION_PAYLOAD_BYTES + 1]),
        ..action(1, "p", 50, b"")
    };
    assert_too_large(store.commit_action(50, 1, heavy).await, "action payload bytes");
    assert_too_large(store.activate_zone(51, &long_name).await, "node name");

    assert_eq!(store.load_zone(50).await.expect("load"), None);
    assert_eq!(store.load_player("p0").await.expect("load"), None);
    assert!(store.actions_for_player("p").await.expect("read").is_empty());
    assert_eq!(store.zone_epoch(51).await.expect("epoch"), None);
}

/// Malformed inputs fail with `InvalidInput` and write nothing.
pub async fn invalid_inputs_are_rejected(fixture: &impl Fixture) {
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
pub async fn reads_do_not_bump_epochs_and_stats_count_calls(fixture: &impl Fixture) {
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
    assert!(store.checkpoint(70, 0, Checkpoint::default()).await.is_err());
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
