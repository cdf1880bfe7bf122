//! Conformance: zone holders (release, listing a run's zones, the single-node
//! activation, reopening), ids beyond the signed range, limits and counters of the
//! cluster operations.

use std::time::Duration;

use zonemesh_store::{HeldZones, LeasedActivation, NodeRun, Store, limits};

use super::{Fixture, LONG, activated, assert_invalid, assert_too_large, held, lease};

/// Only the holder at the latest epoch releases; the zone is free at once and keeps
/// its epoch until the next activation.
pub(crate) async fn a_released_zone_is_free_at_once(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    lease(&*store, a, LONG).await;
    lease(&*store, b, LONG).await;
    assert_eq!(activated(store.activate_zone_leased(5, a, 1).await).0, 1);
    assert!(
        !store.release_zone(5, b, 1).await.expect("release"),
        "not the holder"
    );
    assert!(
        !store.release_zone(5, a, 2).await.expect("release"),
        "not its epoch"
    );
    assert!(!store.release_zone(5, a, u64::MAX).await.expect("release"));
    assert!(
        !store.release_zone(99, a, 1).await.expect("release"),
        "no such zone"
    );
    assert_eq!(held(store.activate_zone_leased(5, b, 1).await).0, a);
    assert!(store.release_zone(5, a, 1).await.expect("release"));
    assert_eq!(store.zone_epoch(5).await.expect("epoch"), Some(1));
    assert_eq!(store.zone_holder(5).await.expect("holder"), None);
    assert!(
        !store.release_zone(5, a, 1).await.expect("release"),
        "released once"
    );
    assert_eq!(activated(store.activate_zone_leased(5, b, 1).await).0, 2);
    // The old holder's repeat of its attempt is no repeat any more: it is held.
    assert_eq!(held(store.activate_zone_leased(5, a, 1).await).0, b);
}

/// `zones_held_by` lists exactly the zones a run holds, in order.
pub(crate) async fn zones_held_by_lists_exactly_the_held_zones(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    lease(&*store, a, LONG).await;
    lease(&*store, b, LONG).await;
    for zone in [30, 10, 20, u32::MAX] {
        activated(store.activate_zone_leased(zone, a, 1).await);
    }
    activated(store.activate_zone_leased(15, b, 1).await);
    store
        .activate_zone(40, "single-node")
        .await
        .expect("activate");
    assert!(store.release_zone(20, a, 1).await.expect("release"));
    let listed = store.zones_held_by(a).await.expect("list");
    assert_eq!(
        listed,
        HeldZones {
            zones: vec![10, 30, u32::MAX],
            truncated: false
        }
    );
    assert_eq!(store.zones_held_by(b).await.expect("list").zones, vec![15]);
    let nobody = store.zones_held_by(NodeRun::new(1, 2)).await.expect("list");
    assert_eq!(nobody, HeldZones::default());
}

/// A single-node `activate_zone` takes the next epoch and leaves the zone held by
/// no run, so leased activations need no lease check against it.
pub(crate) async fn a_single_node_activation_clears_the_holder(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    lease(&*store, a, LONG).await;
    lease(&*store, b, LONG).await;
    assert_eq!(activated(store.activate_zone_leased(8, a, 1).await).0, 1);
    let single = store
        .activate_zone(8, "single-node")
        .await
        .expect("activate");
    assert_eq!(single.epoch, 2);
    assert_eq!(store.zone_holder(8).await.expect("holder"), None);
    assert!(store.zones_held_by(a).await.expect("list").zones.is_empty());
    assert!(!store.release_zone(8, a, 1).await.expect("release"));
    assert_eq!(activated(store.activate_zone_leased(8, b, 1).await).0, 3);
}

/// Node ids, incarnations and attempts above `i64::MAX` work like any other, and
/// incarnations order as numbers across that boundary.
pub(crate) async fn ids_beyond_the_signed_range_roundtrip(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let top = 1u64 << 63;
    let run = NodeRun::new(u64::MAX - 1, top + 5);
    lease(&*store, run, LONG).await;
    let (epoch, _, _) = activated(store.activate_zone_leased(2, run, u64::MAX).await);
    assert_eq!(epoch, 1);
    assert_eq!(
        activated(store.activate_zone_leased(2, run, u64::MAX).await).0,
        1
    );
    assert_eq!(store.zone_holder(2).await.expect("holder"), Some((run, 1)));
    assert_eq!(store.zones_held_by(run).await.expect("list").zones, vec![2]);
    // Below the boundary is older, above it newer: ordered as u64, not as BIGINT.
    for older in [5, top + 4] {
        let refused = store.renew_lease(NodeRun::new(run.id, older), LONG).await;
        assert_eq!(refused.expect("renew"), None, "incarnation {older}");
    }
    let other = NodeRun::new(u64::MAX, 1);
    lease(&*store, other, LONG).await;
    assert_eq!(held(store.activate_zone_leased(2, other, 1).await).0, run);
    assert!(store.release_zone(2, run, 1).await.expect("release"));
    let newer = NodeRun::new(run.id, u64::MAX);
    lease(&*store, newer, LONG).await;
    assert_eq!(store.renew_lease(run, LONG).await.expect("renew"), None);
}

/// Leases and holders survive reopening the store.
pub(crate) async fn reopen_keeps_leases_and_holders(fixture: &impl Fixture) {
    let (a, b) = (NodeRun::new(1, 1), NodeRun::new(2, 1));
    {
        let store = fixture.open().await;
        lease(&*store, a, LONG).await;
        activated(store.activate_zone_leased(4, a, 9).await);
        let older = store.renew_lease(NodeRun::new(1, 0), LONG).await;
        assert_eq!(older.expect("renew"), None);
    }
    let store = fixture.open().await;
    assert_eq!(store.zone_holder(4).await.expect("holder"), Some((a, 1)));
    lease(&*store, b, LONG).await;
    assert_eq!(held(store.activate_zone_leased(4, b, 1).await).0, a);
    assert_eq!(activated(store.activate_zone_leased(4, a, 9).await).0, 1);
    assert_eq!(
        store
            .renew_lease(NodeRun::new(1, 0), LONG)
            .await
            .expect("renew"),
        None
    );
    assert_eq!(lease(&*store, a, LONG).await.generation, 0);
}

/// Lease durations are bounded; every cluster call is counted.
pub(crate) async fn lease_limits_and_cluster_stats(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let run = NodeRun::new(3, 1);
    let before = store.stats();
    assert_invalid(store.renew_lease(run, Duration::ZERO).await);
    let too_long = Duration::from_millis(limits::MAX_LEASE_MS + 1);
    assert_too_large(store.renew_lease(run, too_long).await, "lease duration ms");
    let refused = store.activate_zone_leased(1, run, 1).await;
    assert!(
        matches!(refused, Ok(LeasedActivation::NoLease)),
        "{refused:?}"
    );
    lease(&*store, run, LONG).await;
    activated(store.activate_zone_leased(1, run, 1).await);
    store.zone_holder(1).await.expect("holder");
    store.zones_held_by(run).await.expect("list");
    store.release_zone(1, run, 1).await.expect("release");
    let after = store.stats();
    assert_eq!(after.n_lease_renewals - before.n_lease_renewals, 3);
    assert_eq!(after.n_leased_activations - before.n_leased_activations, 2);
    assert_eq!(after.n_holder_reads - before.n_holder_reads, 1);
    assert_eq!(after.n_held_zone_reads - before.n_held_zone_reads, 1);
    assert_eq!(after.n_releases - before.n_releases, 1);
    assert_eq!(
        after.n_errors - before.n_errors,
        2,
        "the two refused durations"
    );
    assert_eq!(after.n_activations, before.n_activations);
}

/// Checks `zone` of a store written before clusters, at epoch 4 there, as this build
/// opened (or migrated) it: held by no run, then taken by a leased activation at
/// epoch 5. Returns the run now holding it.
pub(crate) async fn check_pre_cluster_zone(store: &dyn Store, zone: u32) -> NodeRun {
    assert_eq!(store.zone_epoch(zone).await.expect("epoch"), Some(4));
    assert_eq!(store.zone_holder(zone).await.expect("holder"), None);
    let run = NodeRun::new(u64::MAX, 1);
    lease(store, run, LONG).await;
    assert_eq!(
        activated(store.activate_zone_leased(zone, run, 1).await).0,
        5
    );
    assert_eq!(
        store.zone_holder(zone).await.expect("holder"),
        Some((run, 5))
    );
    run
}
