//! Conformance: node leases and leased activation (generations, superseded runs,
//! refusals, takeover after a lapse with fencing, repeated attempts, races).
//!
//! Where a lease must run out, the test waits on the store's clock with a short
//! lease: that is the behaviour under test, not a stand-in for synchronisation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zonemesh_store::{
    Activation, LeaseGrant, LeasedActivation, NodeRun, Store, StoreError, ZoneRecord,
};

use super::{Fixture, action, assert_stale, player, state_only};

/// A lease long enough that no test outlives it.
pub(crate) const LONG: Duration = Duration::from_secs(30);

/// Renews `run`'s lease, which must be granted.
pub(crate) async fn lease(store: &dyn Store, run: NodeRun, duration: Duration) -> LeaseGrant {
    store
        .renew_lease(run, duration)
        .await
        .expect("renew")
        .unwrap_or_else(|| panic!("{run} was refused a lease"))
}

/// Waits until a lease of `duration` granted before `granted_by` has run out by the
/// store's clock (the store granted it before the call returned, on this machine's
/// clock; 20 ms more covers rounding to milliseconds).
pub(crate) async fn wait_out(granted_by: Instant, duration: Duration) {
    let over = granted_by + duration + Duration::from_millis(20);
    tokio::time::sleep_until(over.into()).await;
}

/// The epoch, lease generation and saved state of an `Activated` outcome.
#[track_caller]
pub(crate) fn activated(
    outcome: Result<LeasedActivation, StoreError>,
) -> (u64, u64, Option<ZoneRecord>) {
    match outcome {
        Ok(LeasedActivation::Activated {
            activation: Activation { epoch, record },
            lease_generation,
        }) => (epoch, lease_generation, record),
        other => panic!("expected Activated, got {other:?}"),
    }
}

/// The holder, epoch and lease left of a `Held` outcome.
#[track_caller]
pub(crate) fn held(outcome: Result<LeasedActivation, StoreError>) -> (NodeRun, u64, u64) {
    match outcome {
        Ok(LeasedActivation::Held {
            holder,
            epoch,
            lease_left_ms,
        }) => (holder, epoch, lease_left_ms),
        other => panic!("expected Held, got {other:?}"),
    }
}

/// A run's first lease has generation 0; renewing before it runs out keeps it; the
/// first renewal after it ran out bumps it once.
pub(crate) async fn lease_generations_grow_only_after_a_lapse(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let run = NodeRun::new(11, 1);
    let first = lease(&*store, run, Duration::from_millis(300)).await;
    assert_eq!(
        first,
        LeaseGrant {
            duration_ms: 300,
            generation: 0
        }
    );
    assert_eq!(
        lease(&*store, run, Duration::from_millis(300))
            .await
            .generation,
        0
    );
    // Still live from the last grant, so a short one keeps the generation too.
    let short = Duration::from_millis(60);
    assert_eq!(lease(&*store, run, short).await.generation, 0);
    let granted_by = Instant::now();
    wait_out(granted_by, short).await;
    let after = lease(&*store, run, LONG).await;
    assert_eq!(after.generation, 1, "renewed after the lapse");
    assert_eq!(lease(&*store, run, LONG).await.generation, 1);
    // Another run's lease is its own.
    assert_eq!(
        lease(&*store, NodeRun::new(12, 1), LONG).await.generation,
        0
    );
}

/// Once a newer incarnation of a node id renewed, older ones get no lease, for good.
pub(crate) async fn superseded_incarnations_get_no_lease(fixture: &impl Fixture) {
    let store = fixture.open().await;
    lease(&*store, NodeRun::new(5, 2), LONG).await;
    assert_eq!(
        store
            .renew_lease(NodeRun::new(5, 1), LONG)
            .await
            .expect("renew"),
        None
    );
    lease(&*store, NodeRun::new(5, 2), LONG).await;
    lease(&*store, NodeRun::new(5, 3), LONG).await;
    for older in [1, 2] {
        let refused = store.renew_lease(NodeRun::new(5, older), LONG).await;
        assert_eq!(refused.expect("renew"), None, "incarnation {older}");
    }
    // Other ids are untouched.
    lease(&*store, NodeRun::new(6, 1), LONG).await;
}

/// Without a live lease of its own a run gets `NoLease`, and nothing changes.
pub(crate) async fn activation_without_a_live_lease_is_refused(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let run = NodeRun::new(1, 1);
    let never = store.activate_zone_leased(4, run, 1).await;
    assert_eq!(never.expect("activate"), LeasedActivation::NoLease);
    let short = Duration::from_millis(30);
    lease(&*store, run, short).await;
    wait_out(Instant::now(), short).await;
    let lapsed = store.activate_zone_leased(4, run, 1).await;
    assert_eq!(lapsed.expect("activate"), LeasedActivation::NoLease);
    assert_eq!(store.zone_epoch(4).await.expect("epoch"), None);
    assert_eq!(store.zone_holder(4).await.expect("holder"), None);
}

/// A zone held under a live lease is refused to every other run, naming the holder.
pub(crate) async fn a_zone_held_under_a_live_lease_is_refused(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    let holder_lease = Duration::from_secs(20);
    lease(&*store, a, holder_lease).await;
    lease(&*store, b, LONG).await;
    assert_eq!(activated(store.activate_zone_leased(9, a, 1).await).0, 1);
    let (holder, epoch, left_ms) = held(store.activate_zone_leased(9, b, 1).await);
    assert_eq!((holder, epoch), (a, 1));
    assert!(
        left_ms > 10_000 && left_ms <= 20_000,
        "lease left {left_ms} ms"
    );
    // A newer incarnation of the holder's node id is another run, too.
    let a_next = NodeRun::new(1, 2);
    lease(&*store, a_next, LONG).await;
    assert_eq!(held(store.activate_zone_leased(9, a_next, 1).await).0, a);
    assert_eq!(store.zone_epoch(9).await.expect("epoch"), Some(1));
    assert_eq!(store.zone_holder(9).await.expect("holder"), Some((a, 1)));
}

/// After the holder's lease runs out another run takes the zone at the next epoch,
/// and every write of the old holder is fenced.
pub(crate) async fn a_lapsed_holder_is_replaced_and_fenced(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    let short = Duration::from_millis(150);
    lease(&*store, a, short).await;
    let granted_by = Instant::now();
    assert_eq!(activated(store.activate_zone_leased(3, a, 1).await).0, 1);
    store
        .checkpoint(3, 1, state_only(1, b"a"))
        .await
        .expect("holder writes");
    lease(&*store, b, LONG).await;
    wait_out(granted_by, short).await;
    let (epoch, _, record) = activated(store.activate_zone_leased(3, b, 1).await);
    assert_eq!(epoch, 2);
    assert_eq!(record.map(|r| r.state.to_vec()), Some(b"a".to_vec()));
    assert_stale(store.checkpoint(3, 1, state_only(2, b"x")).await, 3, 2, 1);
    let players = vec![player("p", 3, 1.0, b"")];
    assert_stale(store.save_players(3, 1, players).await, 3, 2, 1);
    assert_stale(
        store.commit_action(3, 1, action(1, "p", 3, b"")).await,
        3,
        2,
        1,
    );
    store
        .checkpoint(3, 2, state_only(3, b"b"))
        .await
        .expect("new holder writes");
    assert_eq!(store.zone_holder(3).await.expect("holder"), Some((b, 2)));
    // The old run's next lease says it lapsed.
    assert_eq!(lease(&*store, a, LONG).await.generation, 1);
}

/// A repeat of the attempt that made a run the holder gets the same epoch and the
/// saved state; another attempt of the same run takes the next epoch.
pub(crate) async fn repeated_attempts_keep_the_epoch(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let a = NodeRun::new(1, 1);
    lease(&*store, a, LONG).await;
    assert_eq!(activated(store.activate_zone_leased(6, a, 7).await).0, 1);
    store
        .checkpoint(6, 1, state_only(4, b"saved"))
        .await
        .expect("checkpoint");
    let (epoch, generation, record) = activated(store.activate_zone_leased(6, a, 7).await);
    assert_eq!((epoch, generation), (1, 0));
    assert_eq!(record.map(|r| (r.epoch, r.tick)), Some((1, 4)));
    assert_eq!(activated(store.activate_zone_leased(6, a, 8).await).0, 2);
    assert_eq!(activated(store.activate_zone_leased(6, a, 8).await).0, 2);
    // Attempt 7 is no longer the one that made `a` the holder.
    assert_eq!(activated(store.activate_zone_leased(6, a, 7).await).0, 3);
    assert_eq!(store.zone_epoch(6).await.expect("epoch"), Some(3));
}

/// Sixteen live runs racing for one zone: exactly one gets it, the rest see it held.
/// Raced twice: for a zone never activated (no row yet) and for a released one.
pub(crate) async fn racing_leased_activations_grant_exactly_one(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let runs: Vec<NodeRun> = (1..=16).map(|id| NodeRun::new(id, 1)).collect();
    for run in &runs {
        lease(&*store, *run, LONG).await;
    }
    let first = race(&store, &runs, 21).await;
    assert_eq!(first.1, 1);
    assert!(store.release_zone(21, first.0, 1).await.expect("release"));
    let second = race(&store, &runs, 21).await;
    assert_eq!(second.1, 2);
    assert_eq!(store.zone_holder(21).await.expect("holder"), Some(second));
}

/// Every run in `runs` activates `zone` at once; asserts one winner and returns it
/// with its epoch.
async fn race(store: &Arc<dyn Store>, runs: &[NodeRun], zone: u32) -> (NodeRun, u64) {
    let tasks: Vec<_> = runs
        .iter()
        .map(|run| {
            let (store, run) = (Arc::clone(store), *run);
            tokio::spawn(async move { (run, store.activate_zone_leased(zone, run, 1).await) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refusals = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            (run, Ok(LeasedActivation::Activated { activation, .. })) => {
                winners.push((run, activation.epoch));
            }
            (_, outcome) => refusals.push(held(outcome)),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(refusals.len(), runs.len() - 1);
    let winner = winners[0];
    assert!(
        refusals
            .iter()
            .all(|(holder, epoch, _)| (*holder, *epoch) == winner)
    );
    winner
}
