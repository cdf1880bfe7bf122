//! Conformance: versioned player records. A write replaces a stored record only when
//! its version is strictly higher; refused records are skipped, reported and counted,
//! and the rest of the call commits.

use std::sync::Arc;

use bytes::Bytes;
use zonemesh_store::limits::MAX_STORED_U64;
use zonemesh_store::{Checkpoint, PlayerRecord, SaveOutcome, Store};

use super::{Fixture, assert_invalid, snapshot, versioned};

/// The outcome of a call that refused `names`.
fn refused(names: &[&str]) -> SaveOutcome {
    SaveOutcome {
        stale_players: names.iter().map(|name| (*name).to_owned()).collect(),
    }
}

/// The stored version of `player`, `None` if it has no record.
async fn stored_version(store: &Arc<dyn Store>, player: &str) -> Option<u64> {
    let record = store.load_player(player).await.expect("load");
    record.map(|record| record.version)
}

/// Checks a record written before versions existed, as `store` reads it back: it has
/// version 0, an unversioned (version 0) write does not replace it, version 1 does.
/// Returns the record now stored. For the backends' tests of their old formats.
pub(crate) async fn check_pre_version_record(
    store: &Arc<dyn Store>,
    old: PlayerRecord,
) -> PlayerRecord {
    assert_eq!(old.version, 0, "{old:?}");
    let epoch = store
        .activate_zone(old.zone, "a")
        .await
        .expect("activate")
        .epoch;
    let same = PlayerRecord {
        data: Bytes::from_static(b"same version"),
        ..old.clone()
    };
    let outcome = store.save_players(old.zone, epoch, vec![same]).await;
    assert_eq!(outcome.expect("save"), refused(&[&old.player]));
    let newer = PlayerRecord { version: 1, ..old };
    let outcome = store.save_players(newer.zone, epoch, vec![newer.clone()]);
    assert!(outcome.await.expect("save").is_complete());
    let stored = store.load_player(&newer.player).await.expect("load");
    assert_eq!(stored.as_ref(), Some(&newer));
    newer
}

/// Each higher version replaces the stored record, through both write calls.
pub(crate) async fn newer_player_versions_replace_older_ones(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(90, "a").await.expect("activate");
    let first = versioned("vera", 90, 5, b"first");
    let saved = store.save_players(90, 1, vec![first.clone()]).await;
    assert_eq!(saved.expect("save"), SaveOutcome::default());
    assert_eq!(store.load_player("vera").await.expect("load"), Some(first));

    let second = versioned("vera", 90, 6, b"second");
    let checkpoint = Checkpoint {
        zone_state: None,
        players: vec![second.clone()],
    };
    let written = store
        .checkpoint(90, 1, checkpoint)
        .await
        .expect("checkpoint");
    assert!(written.is_complete());
    assert_eq!(store.load_player("vera").await.expect("load"), Some(second));

    // Versions need not be consecutive, only higher.
    let far = versioned("vera", 90, 7 << 32, b"next session");
    let saved = store.save_players(90, 1, vec![far.clone()]).await;
    assert_eq!(saved.expect("save"), SaveOutcome::default());
    assert_eq!(store.load_player("vera").await.expect("load"), Some(far));
    assert_eq!(store.stats().n_stale_player_records, 0);
}

/// A record whose version equals or is below the stored one is skipped, reported,
/// counted, and leaves the stored record exactly as it was.
pub(crate) async fn equal_and_older_versions_are_refused_and_reported(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(91, "a").await.expect("activate");
    let kept = versioned("otto", 91, 10, b"kept");
    store
        .save_players(91, 1, vec![kept.clone()])
        .await
        .expect("save");
    let before = store.stats();

    let equal = versioned("otto", 91, 10, b"equal");
    let outcome = store.save_players(91, 1, vec![equal]).await.expect("save");
    assert_eq!(outcome, refused(&["otto"]));
    assert!(!outcome.is_complete());

    let older = Checkpoint {
        zone_state: None,
        players: vec![versioned("otto", 91, 3, b"older")],
    };
    let outcome = store.checkpoint(91, 1, older).await.expect("checkpoint");
    assert_eq!(outcome, refused(&["otto"]));

    assert_eq!(store.load_player("otto").await.expect("load"), Some(kept));
    let after = store.stats();
    assert_eq!(
        after.n_stale_player_records - before.n_stale_player_records,
        2
    );
    assert_eq!(after.n_errors, before.n_errors, "a refusal is not an error");
}

/// One checkpoint with stale and fresh players: the zone state and the fresh players
/// are written, the stale ones are reported in name order and keep their records.
pub(crate) async fn a_mixed_batch_commits_everything_but_the_stale_records(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(92, "a").await.expect("activate");
    let held = [
        versioned("zed", 92, 9, b"zed-9"),
        versioned("amy", 92, 4, b"amy-4"),
        versioned("kim", 92, 2, b"kim-2"),
    ];
    store
        .save_players(92, 1, held.to_vec())
        .await
        .expect("save");

    let batch = Checkpoint {
        zone_state: Some(snapshot(5, b"mixed")),
        players: vec![
            versioned("zed", 92, 8, b"zed-8"),
            versioned("kim", 92, 3, b"kim-3"),
            versioned("amy", 92, 4, b"amy-4 again"),
            versioned("new", 92, 1, b"new-1"),
        ],
    };
    let outcome = store.checkpoint(92, 1, batch).await.expect("checkpoint");
    assert_eq!(outcome, refused(&["amy", "zed"]));

    let zone = store.load_zone(92).await.expect("load").expect("saved");
    assert_eq!((zone.tick, zone.state.as_ref()), (5, &b"mixed"[..]));
    let load = |name: &'static str| {
        let store = Arc::clone(&store);
        async move { store.load_player(name).await.expect("load") }
    };
    assert_eq!(load("zed").await, Some(held[0].clone()));
    assert_eq!(load("amy").await, Some(held[1].clone()));
    assert_eq!(load("kim").await, Some(versioned("kim", 92, 3, b"kim-3")));
    assert_eq!(load("new").await, Some(versioned("new", 92, 1, b"new-1")));
}

/// Saves of one player racing from two zones (a player who crossed a border, or a
/// stale node) end with the highest version stored, whatever order they commit in.
pub(crate) async fn racing_saves_of_one_player_keep_the_highest_version(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(93, "a").await.expect("activate");
    store.activate_zone(94, "b").await.expect("activate");
    let tasks: Vec<_> = (1..=16u64)
        .map(|version| {
            let store = Arc::clone(&store);
            let zone = 93 + u32::from(version % 2 == 0);
            let record = versioned("racer", zone, version, b"");
            tokio::spawn(async move { store.save_players(zone, 1, vec![record]).await })
        })
        .collect();
    let mut n_refused = 0;
    for task in tasks {
        let outcome = task.await.expect("join").expect("save");
        n_refused += outcome.stale_players.len();
    }
    assert_eq!(stored_version(&store, "racer").await, Some(16));
    let record = store
        .load_player("racer")
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(
        (record.zone, record.x),
        (94, 16.0),
        "the whole record is v16's"
    );
    assert!(n_refused < 16, "the first save to land is always accepted");
    assert_eq!(store.stats().n_stale_player_records, n_refused as u64);
}

/// Versions survive a reopen, and still refuse what they refused before.
pub(crate) async fn reopen_keeps_player_versions(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(95, "a").await.expect("activate");
    let high = versioned("ruth", 95, (3 << 32) | 7, b"high");
    store
        .save_players(95, 1, vec![high.clone()])
        .await
        .expect("save");
    drop(store);

    let store = fixture.open().await;
    assert_eq!(
        store.load_player("ruth").await.expect("load"),
        Some(high.clone())
    );
    let stale = versioned("ruth", 95, 3 << 32, b"stale");
    let outcome = store.save_players(95, 1, vec![stale]).await.expect("save");
    assert_eq!(outcome, refused(&["ruth"]));
    assert_eq!(store.load_player("ruth").await.expect("load"), Some(high));
}

/// A version beyond `i64::MAX` fails the whole call before any IO, on every backend.
pub(crate) async fn versions_beyond_a_signed_column_are_invalid(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store.activate_zone(96, "a").await.expect("activate");
    let largest = versioned("max", 96, MAX_STORED_U64, b"");
    let saved = store.save_players(96, 1, vec![largest]).await;
    assert!(saved.expect("save").is_complete());
    let beyond = versioned("beyond", 96, MAX_STORED_U64 + 1, b"");
    let fresh = versioned("fresh", 96, 1, b"");
    assert_invalid(store.save_players(96, 1, vec![fresh.clone(), beyond]).await);
    let huge = Checkpoint {
        zone_state: Some(snapshot(1, b"never")),
        players: vec![fresh, versioned("huge", 96, u64::MAX, b"")],
    };
    assert_invalid(store.checkpoint(96, 1, huge).await);
    for name in ["beyond", "fresh", "huge"] {
        assert_eq!(stored_version(&store, name).await, None, "{name}");
    }
    assert_eq!(store.load_zone(96).await.expect("load"), None);
    assert_eq!(stored_version(&store, "max").await, Some(MAX_STORED_U64));
}
