//! Conformance: player claims (one session per player across a cluster): claiming,
//! re-claiming by the same run, refusals naming the holder, takeover of a run known
//! to be gone, takeover of a run without a live lease, releases by the exact session
//! only, races, independence of players, name limits, counters and reopening.
//!
//! A claim holds against other runs only while its run's lease is live by the store's
//! clock, so every run that must hold a claim against others renews a long lease
//! first ([`live`]); runs that only take claims, or whose claims must lapse, do not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zonemesh_store::limits::MAX_NAME_BYTES;
use zonemesh_store::{NodeRun, PlayerClaim, Store, StoreError};

use super::{Fixture, assert_invalid, assert_too_large, lease, versioned, wait_out};

/// A lease long enough that no test outlives it.
const HOLD: Duration = Duration::from_secs(60);

/// Gives every run in `runs` a live lease, so their claims hold against others.
async fn live(store: &dyn Store, runs: &[NodeRun]) {
    for run in runs {
        lease(store, *run, HOLD).await;
    }
}

/// Claims `player` for `(node, session)`, which must be granted.
#[track_caller]
fn claimed(outcome: Result<PlayerClaim, StoreError>) {
    match outcome {
        Ok(PlayerClaim::Claimed { .. }) => {}
        other => panic!("expected Claimed, got {other:?}"),
    }
}

/// A claim reports the version of the player's record as it stood then (no record:
/// `None`), so a caller holding that version need not read the record again.
pub(crate) async fn a_claim_reports_the_stored_record_version(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let a = NodeRun::new(1, 1);
    let none = PlayerClaim::Claimed {
        record_version: None,
    };
    let claim = |session| store.claim_player("carol", a, session, None);
    assert_eq!(claim(1).await.expect("claim"), none);
    let epoch = store.activate_zone(3, "a").await.expect("activate").epoch;
    store
        .save_players(3, epoch, vec![versioned("carol", 3, 7, b"seven")])
        .await
        .expect("save");
    let seven = PlayerClaim::Claimed {
        record_version: Some(7),
    };
    assert_eq!(claim(2).await.expect("claim"), seven);
    // Unchanged claims report it too.
    assert_eq!(claim(2).await.expect("claim"), seven);
}

/// The holder named by a `HeldBy` outcome.
#[track_caller]
fn held_by(outcome: Result<PlayerClaim, StoreError>) -> (NodeRun, u64) {
    match outcome {
        Ok(PlayerClaim::HeldBy { node, session }) => (node, session),
        other => panic!("expected HeldBy, got {other:?}"),
    }
}

/// An unclaimed player is claimed; the same run claims it again for another session
/// (it replaces its own sessions itself), and the claim then names the new session.
pub(crate) async fn an_unclaimed_player_is_claimed_and_its_run_reclaims_it(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let a = NodeRun::new(1, 1);
    assert_eq!(store.player_claim("alice").await.expect("read"), None);
    claimed(store.claim_player("alice", a, 10, None).await);
    assert_eq!(
        store.player_claim("alice").await.expect("read"),
        Some((a, 10))
    );
    // The same claim again is still the caller's.
    claimed(store.claim_player("alice", a, 10, None).await);
    claimed(store.claim_player("alice", a, 11, None).await);
    assert_eq!(
        store.player_claim("alice").await.expect("read"),
        Some((a, 11))
    );
    // Ids and sessions above `i64::MAX` round-trip like any other.
    let top = NodeRun::new(u64::MAX, (1 << 63) + 1);
    live(&*store, &[top]).await;
    claimed(store.claim_player("bob", top, u64::MAX, None).await);
    assert_eq!(
        store.player_claim("bob").await.expect("read"),
        Some((top, u64::MAX))
    );
    assert_eq!(
        held_by(store.claim_player("bob", a, 1, None).await),
        (top, u64::MAX)
    );
    assert!(
        store
            .release_player("bob", top, u64::MAX)
            .await
            .expect("release")
    );
}

/// Another run is refused while the holder's lease is live, the refusal naming the
/// holder, and nothing changes; a takeover naming the holder succeeds, one naming any
/// other run does not.
pub(crate) async fn a_claim_held_by_another_run_is_refused_unless_taken_over(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    let (a, b, c) = (NodeRun::new(1, 1), NodeRun::new(2, 1), NodeRun::new(3, 1));
    live(&*store, &[a, b, c]).await;
    claimed(store.claim_player("p", a, 7, None).await);
    assert_eq!(held_by(store.claim_player("p", b, 1, None).await), (a, 7));
    // A newer incarnation of the holder's node id is another run, too.
    let a_next = NodeRun::new(a.id, a.incarnation + 1);
    assert_eq!(
        held_by(store.claim_player("p", a_next, 1, None).await),
        (a, 7)
    );
    assert_eq!(
        held_by(store.claim_player("p", b, 1, Some(c)).await),
        (a, 7)
    );
    assert_eq!(
        held_by(store.claim_player("p", b, 1, Some(a_next)).await),
        (a, 7)
    );
    assert_eq!(store.player_claim("p").await.expect("read"), Some((a, 7)));
    claimed(store.claim_player("p", b, 2, Some(a)).await);
    assert_eq!(store.player_claim("p").await.expect("read"), Some((b, 2)));
    // The taken-over run is now refused in turn.
    assert_eq!(held_by(store.claim_player("p", a, 8, None).await), (b, 2));
}

/// A claim whose holder run has no live lease by the store's clock is taken over by
/// any run, without naming it: one that never had a lease, one whose other
/// incarnation has the live lease, one whose lease ran out. While the lease is live
/// the claim holds.
pub(crate) async fn a_claim_without_a_live_holder_lease_is_taken_over(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (never, b, c) = (NodeRun::new(1, 1), NodeRun::new(2, 1), NodeRun::new(3, 1));
    live(&*store, &[c]).await;
    claimed(store.claim_player("p", never, 1, None).await);
    claimed(store.claim_player("p", b, 2, None).await);
    assert_eq!(store.player_claim("p").await.expect("read"), Some((b, 2)));
    // Only the holder's exact run counts: a newer incarnation's lease is not its own.
    let b_next = NodeRun::new(b.id, b.incarnation + 1);
    live(&*store, &[b_next]).await;
    claimed(store.claim_player("p", c, 3, None).await);
    assert_eq!(store.player_claim("p").await.expect("read"), Some((c, 3)));
    // A live lease holds the claim against every other run.
    assert_eq!(
        held_by(store.claim_player("p", never, 4, None).await),
        (c, 3)
    );
    assert_eq!(
        held_by(store.claim_player("p", b_next, 4, None).await),
        (c, 3)
    );
    assert_eq!(store.player_claim("p").await.expect("read"), Some((c, 3)));
    // Until it runs out by the store's clock (1 ms is the shortest lease).
    let short = Duration::from_millis(1);
    lease(&*store, c, short).await;
    wait_out(Instant::now(), short).await;
    claimed(store.claim_player("p", b_next, 5, None).await);
    assert_eq!(
        store.player_claim("p").await.expect("read"),
        Some((b_next, 5))
    );
    // The lapsed run, renewed, is refused in turn: the claim is now `b_next`'s.
    live(&*store, &[c]).await;
    assert_eq!(
        held_by(store.claim_player("p", c, 6, None).await),
        (b_next, 5)
    );
}

/// A release by the wrong session or run does nothing; the holder's release ends the
/// claim once, and then another run claims the player.
pub(crate) async fn only_the_claiming_session_releases(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    claimed(store.claim_player("p", a, 3, None).await);
    assert!(
        !store.release_player("p", a, 4).await.expect("release"),
        "another session of the holder"
    );
    assert!(
        !store.release_player("p", b, 3).await.expect("release"),
        "another run with the same session id"
    );
    assert!(
        !store.release_player("nobody", a, 3).await.expect("release"),
        "an unclaimed player"
    );
    assert_eq!(store.player_claim("p").await.expect("read"), Some((a, 3)));
    assert!(store.release_player("p", a, 3).await.expect("release"));
    assert_eq!(store.player_claim("p").await.expect("read"), None);
    assert!(
        !store.release_player("p", a, 3).await.expect("release"),
        "released once"
    );
    claimed(store.claim_player("p", b, 1, None).await);
    // A late release of the replaced session leaves the new claim alone.
    assert!(!store.release_player("p", a, 3).await.expect("release"));
    claimed(store.claim_player("p", b, 2, None).await);
    assert!(!store.release_player("p", b, 1).await.expect("release"));
    assert_eq!(store.player_claim("p").await.expect("read"), Some((b, 2)));
}

/// Eight runs with live leases claiming one player at once: exactly one gets it, the
/// rest are told it is the holder (its lease is live, so they cannot take it over).
/// Raced for an unclaimed player, for a released one, as a takeover of a gone run by
/// every racer, and for a claim whose holder never had a lease.
pub(crate) async fn racing_claims_grant_exactly_one(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let runs: Vec<NodeRun> = (1..=8).map(|id| NodeRun::new(id, 1)).collect();
    live(&*store, &runs).await;
    let first = race(&store, &runs, None).await;
    assert!(
        store
            .release_player("racer", first.0, first.1)
            .await
            .expect("release")
    );
    let second = race(&store, &runs, None).await;
    let gone = NodeRun::new(99, 1);
    assert!(
        store
            .release_player("racer", second.0, second.1)
            .await
            .expect("release")
    );
    claimed(store.claim_player("racer", gone, 1, None).await);
    let third = race(&store, &runs, Some(gone)).await;
    assert_eq!(
        store.player_claim("racer").await.expect("read"),
        Some(third)
    );
    // `gone` never had a lease: every racer may take its claim over unnamed, and the
    // first to do so then holds against the rest.
    assert!(
        store
            .release_player("racer", third.0, third.1)
            .await
            .expect("release")
    );
    claimed(store.claim_player("racer", gone, 2, None).await);
    let fourth = race(&store, &runs, None).await;
    assert_eq!(
        store.player_claim("racer").await.expect("read"),
        Some(fourth)
    );
}

/// Every run in `runs` claims player "racer" at once (session: 100 + its id), naming
/// `takeover`; asserts one winner and returns it with its session.
async fn race(
    store: &Arc<dyn Store>,
    runs: &[NodeRun],
    takeover: Option<NodeRun>,
) -> (NodeRun, u64) {
    let tasks: Vec<_> = runs
        .iter()
        .map(|run| {
            let (store, run) = (Arc::clone(store), *run);
            let session = 100 + run.id;
            tokio::spawn(async move {
                let outcome = store.claim_player("racer", run, session, takeover).await;
                (run, session, outcome)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refusals = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            (run, session, Ok(PlayerClaim::Claimed { .. })) => winners.push((run, session)),
            (_, _, outcome) => refusals.push(held_by(outcome)),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(refusals.len(), runs.len() - 1);
    let winner = winners[0];
    assert!(
        refusals.iter().all(|holder| *holder == winner),
        "{refusals:?}"
    );
    assert_eq!(
        store.player_claim("racer").await.expect("read"),
        Some(winner)
    );
    winner
}

/// Claims of different players never interfere.
pub(crate) async fn claims_of_different_players_are_independent(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    live(&*store, &[a, b]).await;
    claimed(store.claim_player("p1", a, 1, None).await);
    claimed(store.claim_player("p2", b, 1, None).await);
    // Case matters: names are compared byte for byte.
    claimed(store.claim_player("P1", b, 1, None).await);
    assert_eq!(held_by(store.claim_player("p2", a, 2, None).await), (b, 1));
    assert!(store.release_player("p1", a, 1).await.expect("release"));
    assert!(!store.release_player("p2", a, 1).await.expect("release"));
    assert_eq!(store.player_claim("p1").await.expect("read"), None);
    assert_eq!(store.player_claim("p2").await.expect("read"), Some((b, 1)));
    assert_eq!(store.player_claim("P1").await.expect("read"), Some((b, 1)));
    // A takeover of `b` for one player takes only that one.
    claimed(store.claim_player("p2", a, 3, Some(b)).await);
    assert_eq!(store.player_claim("P1").await.expect("read"), Some((b, 1)));
}

/// Player names are validated like a player record's, before any IO; every claim
/// call is counted, refusals and failures included.
pub(crate) async fn claim_names_are_validated_and_claims_counted(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let a = NodeRun::new(1, 1);
    live(&*store, &[a]).await;
    let before = store.stats();
    let longest = "n".repeat(MAX_NAME_BYTES);
    claimed(store.claim_player(&longest, a, 1, None).await);
    let too_long = "n".repeat(MAX_NAME_BYTES + 1);
    assert_too_large(
        store.claim_player(&too_long, a, 1, None).await,
        "player name",
    );
    assert_too_large(store.release_player(&too_long, a, 1).await, "player name");
    assert_too_large(store.player_claim(&too_long).await, "player name");
    assert_invalid(store.claim_player("", a, 1, None).await);
    assert_invalid(store.claim_player("a\nb", a, 1, None).await);
    held_by(
        store
            .claim_player(&longest, NodeRun::new(2, 1), 1, None)
            .await,
    );
    assert_eq!(
        store.player_claim(&longest).await.expect("read"),
        Some((a, 1))
    );
    assert!(store.release_player(&longest, a, 1).await.expect("release"));
    let after = store.stats();
    assert_eq!(after.n_player_claims - before.n_player_claims, 5);
    assert_eq!(after.n_player_releases - before.n_player_releases, 2);
    assert_eq!(after.n_claim_reads - before.n_claim_reads, 2);
    assert_eq!(after.n_errors - before.n_errors, 5, "the refused names");
    assert_eq!(after.n_player_loads, before.n_player_loads);
    assert_eq!(after.n_releases, before.n_releases);
}

/// A handoff's takeover claims, in one call, every player that has no claim or whose
/// claim is the source's or the caller's own, and leaves the others as they were
/// (even one whose holder has no live lease: `claim_player` decides those).
pub(crate) async fn a_takeover_claims_the_sources_players_and_leaves_the_rest(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    let (source, target, other) = (NodeRun::new(1, 1), NodeRun::new(2, 1), NodeRun::new(3, 1));
    let unleased = NodeRun::new(4, 1);
    live(&*store, &[source, target, other]).await;
    claimed(store.claim_player("from-source", source, 1, None).await);
    claimed(store.claim_player("also-source", source, 2, None).await);
    claimed(store.claim_player("elsewhere", other, 3, None).await);
    claimed(store.claim_player("own", target, 4, None).await);
    claimed(store.claim_player("unleased", unleased, 5, None).await);
    let players: Vec<(String, u64)> = [
        ("from-source", 11),
        ("elsewhere", 13),
        ("unclaimed", 14),
        ("own", 15),
        ("also-source", 12),
        ("unleased", 16),
    ]
    .map(|(name, session)| (name.to_owned(), session))
    .to_vec();
    let before = store.stats();
    let taken = store
        .take_over_players(&players, target, source)
        .await
        .expect("takeover");
    assert_eq!(taken, vec![true, false, true, true, true, false]);
    for (name, expected) in [
        ("from-source", Some((target, 11))),
        ("also-source", Some((target, 12))),
        ("elsewhere", Some((other, 3))),
        ("unclaimed", Some((target, 14))),
        ("own", Some((target, 15))),
        ("unleased", Some((unleased, 5))),
    ] {
        assert_eq!(
            store.player_claim(name).await.expect("read"),
            expected,
            "{name}"
        );
    }
    // The source is refused its old players now.
    assert_eq!(
        held_by(store.claim_player("from-source", source, 1, None).await),
        (target, 11)
    );
    assert_eq!(
        store
            .take_over_players(&[], target, source)
            .await
            .expect("nothing to take over"),
        Vec::<bool>::new()
    );
    let twice = ["p", "p"].map(|n| (n.to_owned(), 1)).to_vec();
    assert_invalid(store.take_over_players(&twice, target, source).await);
    assert_invalid(
        store
            .take_over_players(&[(String::new(), 1)], target, source)
            .await,
    );
    let too_long = vec![("n".repeat(MAX_NAME_BYTES + 1), 1)];
    assert_too_large(
        store.take_over_players(&too_long, target, source).await,
        "player name",
    );
    assert_eq!(store.player_claim("p").await.expect("read"), None);
    let after = store.stats();
    assert_eq!(after.n_player_takeovers - before.n_player_takeovers, 5);
    assert_eq!(after.n_errors - before.n_errors, 3, "the refused inputs");
}

/// Claims (and the holder's lease that keeps them) survive reopening the store.
pub(crate) async fn reopen_keeps_player_claims(fixture: &impl Fixture) {
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    {
        let store = fixture.open().await;
        live(&*store, &[a]).await;
        claimed(store.claim_player("kept", a, 5, None).await);
        claimed(store.claim_player("released", a, 6, None).await);
        assert!(
            store
                .release_player("released", a, 6)
                .await
                .expect("release")
        );
    }
    let store = fixture.open().await;
    assert_eq!(
        store.player_claim("kept").await.expect("read"),
        Some((a, 5))
    );
    assert_eq!(store.player_claim("released").await.expect("read"), None);
    assert_eq!(
        held_by(store.claim_player("kept", b, 1, None).await),
        (a, 5)
    );
}

/// Checks a store written before player claims, as this build opened (or migrated)
/// it: no player is claimed, and claims work.
pub(crate) async fn check_pre_claim_store(store: &dyn Store, player: &str) {
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    live(store, &[a]).await;
    assert_eq!(store.player_claim(player).await.expect("read"), None);
    claimed(store.claim_player(player, a, 1, None).await);
    assert_eq!(
        held_by(store.claim_player(player, b, 1, None).await),
        (a, 1)
    );
    assert_eq!(
        store.player_claim(player).await.expect("read"),
        Some((a, 1))
    );
}
