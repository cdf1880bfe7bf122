//! Conformance: the membership table (heartbeats, the generation, newer and older
//! incarnations, rows running out, leaves, input checks, concurrent joins and
//! reopening).
//!
//! Where a row must run out, the test waits on the store's clock with a short ttl:
//! that is the behaviour under test, not a stand-in for synchronisation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zonemesh_store::limits::{MAX_ADDR_BYTES, MAX_LEASE_MS};
use zonemesh_store::{MemberRow, MemberTable, NodeRun, Store};

use super::{Fixture, assert_invalid, assert_too_large, wait_out};

/// A ttl long enough that no test outlives it.
const LIVE: Duration = Duration::from_secs(60);

/// `run`'s row with addresses derived from `host` (10.0.0.`host`).
pub(crate) fn member(run: NodeRun, host: u8) -> MemberRow {
    MemberRow {
        run,
        node_addr: format!("10.0.0.{host}:9000"),
        client_addr: format!("10.0.0.{host}:7000"),
    }
}

/// Heartbeats `row` for `ttl`, which must be written.
async fn beat(store: &dyn Store, row: &MemberRow, ttl: Duration) {
    let written = store.heartbeat_member(row, ttl).await.expect("heartbeat");
    assert!(written, "the heartbeat of {} was refused", row.run);
}

/// The membership table, which must be readable.
async fn table(store: &dyn Store) -> MemberTable {
    store.member_table().await.expect("member table")
}

/// A heartbeat makes its row visible with its addresses and bumps the generation; a
/// second one of the same run keeps it; a new node bumps it; rows are listed by node
/// id as unsigned numbers; new addresses of a run are a change of the view.
pub(crate) async fn a_heartbeat_lists_the_row_and_only_joins_bump_the_generation(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    let empty = table(&*store).await;
    assert_eq!((empty.generation, empty.members.len()), (0, 0));
    let a = member(NodeRun::new(7, 1), 1);
    beat(&*store, &a, LIVE).await;
    let first = table(&*store).await;
    assert_eq!(first.generation, 1);
    assert_eq!(first.members, vec![a.clone()]);
    beat(&*store, &a, LIVE).await;
    assert_eq!(table(&*store).await, first, "a plain heartbeat");
    // New nodes, with ids on both sides of `i64::MAX`.
    let top = member(NodeRun::new(u64::MAX, u64::MAX), 2);
    let high = member(NodeRun::new(1 << 63, 1), 3);
    let low = member(NodeRun::new(3, 1), 4);
    for (n, row) in [&top, &high, &low].into_iter().enumerate() {
        beat(&*store, row, LIVE).await;
        assert_eq!(table(&*store).await.generation, 2 + n as u64);
    }
    let listed = table(&*store).await;
    assert_eq!(listed.generation, 4);
    assert_eq!(listed.members, vec![low, a.clone(), high, top]);
    // The same run at new addresses changes the view.
    let moved = member(a.run, 9);
    beat(&*store, &moved, LIVE).await;
    let after = table(&*store).await;
    assert_eq!(after.generation, 5);
    assert!(after.members.contains(&moved) && !after.members.contains(&a));
}

/// A newer incarnation replaces the row of an older one and bumps the generation; an
/// older incarnation's heartbeat is then refused and writes nothing, nor does its
/// leave remove the newer row.
pub(crate) async fn a_newer_incarnation_replaces_the_row_and_an_older_one_is_refused(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    let old = member(NodeRun::new(5, 1), 1);
    let new = member(NodeRun::new(5, 2), 2);
    beat(&*store, &old, LIVE).await;
    beat(&*store, &new, LIVE).await;
    let replaced = table(&*store).await;
    assert_eq!(replaced.generation, 2);
    assert_eq!(replaced.members, vec![new.clone()]);
    let refused = store.heartbeat_member(&old, LIVE).await.expect("heartbeat");
    assert!(!refused, "an older incarnation than the row's");
    assert!(!store.leave_member(old.run).await.expect("leave"));
    assert_eq!(table(&*store).await, replaced, "nothing written");
    // Incarnations above `i64::MAX` order as unsigned numbers.
    let newest = member(NodeRun::new(5, 1 << 63), 3);
    beat(&*store, &newest, LIVE).await;
    assert!(!store.heartbeat_member(&new, LIVE).await.expect("heartbeat"));
    let listed = table(&*store).await;
    assert_eq!((listed.generation, listed.members), (3, vec![newest]));
}

/// A row whose ttl ran out by the store's clock is not listed, and running out bumps
/// nothing; the run's next heartbeat brings it back as a join. The run-out row still
/// refuses older incarnations.
pub(crate) async fn a_row_whose_ttl_ran_out_is_not_listed(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let stays = member(NodeRun::new(1, 1), 1);
    let lapses = member(NodeRun::new(2, 2), 2);
    beat(&*store, &stays, LIVE).await;
    let short = Duration::from_millis(50);
    beat(&*store, &lapses, short).await;
    let granted_by = Instant::now();
    let both = table(&*store).await;
    assert_eq!(both.generation, 2);
    assert_eq!(both.members.len(), 2, "still live: {both:?}");
    wait_out(granted_by, short).await;
    let ran_out = table(&*store).await;
    assert_eq!(ran_out.generation, 2, "running out writes nothing");
    assert_eq!(ran_out.members, vec![stays.clone()]);
    let older = member(NodeRun::new(2, 1), 3);
    assert!(
        !store
            .heartbeat_member(&older, LIVE)
            .await
            .expect("heartbeat")
    );
    beat(&*store, &lapses, LIVE).await;
    let back = table(&*store).await;
    assert_eq!(back.generation, 3, "back in the view");
    assert_eq!(back.members, vec![stays, lapses]);
}

/// A leave removes only the exact run's row, once, and bumps the generation; a wrong
/// incarnation or an unknown node leaves everything alone; the run may join again.
pub(crate) async fn leave_removes_only_the_exact_run(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let a = member(NodeRun::new(1, 4), 1);
    let b = member(NodeRun::new(2, 1), 2);
    beat(&*store, &a, LIVE).await;
    beat(&*store, &b, LIVE).await;
    let before = table(&*store).await;
    assert_eq!(before.generation, 2);
    for other in [
        NodeRun::new(1, 3),
        NodeRun::new(1, 5),
        NodeRun::new(3, 4),
        NodeRun::new(2, 4),
    ] {
        assert!(!store.leave_member(other).await.expect("leave"), "{other}");
    }
    assert_eq!(table(&*store).await, before);
    assert!(store.leave_member(a.run).await.expect("leave"));
    let left = table(&*store).await;
    assert_eq!((left.generation, left.members), (3, vec![b.clone()]));
    assert!(
        !store.leave_member(a.run).await.expect("leave"),
        "left once"
    );
    assert_eq!(table(&*store).await.generation, 3);
    beat(&*store, &a, LIVE).await;
    let back = table(&*store).await;
    assert_eq!((back.generation, back.members), (4, vec![a, b]));
}

/// Bad addresses and ttls are refused before any IO and write nothing; every member
/// call is counted, refusals and failures included.
pub(crate) async fn bad_member_inputs_are_refused_and_member_calls_counted(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let before = store.stats();
    let good = member(NodeRun::new(1, 1), 1);
    let too_long = format!("127.0.0.1:{}9000", "0".repeat(MAX_ADDR_BYTES));
    for bad in [
        "",
        "localhost:9000",
        "10.0.0.1",
        "10.0.0.1:65536",
        &too_long,
    ] {
        let bad_node = MemberRow {
            node_addr: bad.to_owned(),
            ..good.clone()
        };
        assert_invalid(store.heartbeat_member(&bad_node, LIVE).await);
        let bad_client = MemberRow {
            client_addr: bad.to_owned(),
            ..good.clone()
        };
        assert_invalid(store.heartbeat_member(&bad_client, LIVE).await);
    }
    assert_invalid(store.heartbeat_member(&good, Duration::ZERO).await);
    assert_invalid(
        store
            .heartbeat_member(&good, Duration::from_micros(999))
            .await,
    );
    let over = Duration::from_millis(MAX_LEASE_MS + 1);
    assert_too_large(
        store.heartbeat_member(&good, over).await,
        "lease duration ms",
    );
    let untouched = table(&*store).await;
    assert_eq!((untouched.generation, untouched.members.len()), (0, 0));
    // The bounds themselves are accepted: the longest address text and ttl.
    let longest = MemberRow {
        node_addr: "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535".into(),
        client_addr: "[::1]:7000".into(),
        ..good
    };
    assert_eq!(longest.node_addr.len(), MAX_ADDR_BYTES);
    let longest_ttl = Duration::from_millis(MAX_LEASE_MS);
    beat(&*store, &longest, longest_ttl).await;
    assert_eq!(table(&*store).await.members, vec![longest.clone()]);
    assert!(store.leave_member(longest.run).await.expect("leave"));
    let after = store.stats();
    assert_eq!(after.n_member_heartbeats - before.n_member_heartbeats, 14);
    assert_eq!(after.n_member_reads - before.n_member_reads, 2);
    assert_eq!(after.n_member_leaves - before.n_member_leaves, 1);
    assert_eq!(after.n_errors - before.n_errors, 13, "the refused inputs");
    assert_eq!(after.n_lease_renewals, before.n_lease_renewals);
}

/// Heartbeats `rows` all at once; returns how many were written.
async fn beat_all(store: &Arc<dyn Store>, rows: &[MemberRow]) -> u64 {
    let tasks: Vec<_> = rows
        .iter()
        .map(|row| {
            let (store, row) = (Arc::clone(store), row.clone());
            tokio::spawn(async move { store.heartbeat_member(&row, LIVE).await })
        })
        .collect();
    let mut written = 0;
    for task in tasks {
        if task.await.expect("join").expect("heartbeat") {
            written += 1;
        }
    }
    written
}

/// Concurrent joins of eight different new nodes give eight rows and eight bumps (no
/// bump is lost); so do eight newer incarnations replacing them, and eight leaves.
/// Racing first heartbeats of one new node id by eight incarnations end with the
/// newest one's row and one bump per heartbeat written.
pub(crate) async fn concurrent_member_joins_lose_no_generation_bump(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let start = table(&*store).await.generation;
    let first: Vec<MemberRow> = (1..=8).map(|id| member(NodeRun::new(id, 1), 1)).collect();
    assert_eq!(beat_all(&store, &first).await, 8);
    let joined = table(&*store).await;
    assert_eq!(joined.members, first);
    assert!(joined.generation >= start + 8, "{joined:?}");
    assert_eq!(joined.generation, start + 8, "one bump per join");
    let second: Vec<MemberRow> = (1..=8).map(|id| member(NodeRun::new(id, 2), 2)).collect();
    assert_eq!(beat_all(&store, &second).await, 8);
    let replaced = table(&*store).await;
    assert_eq!(replaced.members, second);
    assert_eq!(replaced.generation, start + 16);
    let leaves: Vec<_> = second
        .iter()
        .map(|row| {
            let (store, run) = (Arc::clone(&store), row.run);
            tokio::spawn(async move { store.leave_member(run).await })
        })
        .collect();
    for leave in leaves {
        assert!(leave.await.expect("join").expect("leave"));
    }
    let left = table(&*store).await;
    assert_eq!((left.generation, left.members.len()), (start + 24, 0));
    // One new node id, eight incarnations at once: the newest is never refused, and
    // after it every older one is.
    let racers: Vec<MemberRow> = (1..=8)
        .map(|inc| member(NodeRun::new(99, inc), 3))
        .collect();
    let written = beat_all(&store, &racers).await;
    assert!((1..=8).contains(&written), "{written}");
    let raced = table(&*store).await;
    assert_eq!(raced.members, vec![racers[7].clone()]);
    assert_eq!(raced.generation, start + 24 + written);
}

/// Rows, their expiries and the generation survive reopening the store.
pub(crate) async fn reopen_keeps_member_rows(fixture: &impl Fixture) {
    let a = member(NodeRun::new(1, 1), 1);
    let b = member(NodeRun::new(2, 1), 2);
    let kept = {
        let store = fixture.open().await;
        beat(&*store, &a, LIVE).await;
        beat(&*store, &b, LIVE).await;
        assert!(store.leave_member(b.run).await.expect("leave"));
        table(&*store).await
    };
    assert_eq!((kept.generation, kept.members.len()), (3, 1));
    let store = fixture.open().await;
    assert_eq!(table(&*store).await, kept);
    // Still live, so a plain heartbeat; the left run joins anew.
    beat(&*store, &a, LIVE).await;
    assert_eq!(table(&*store).await, kept);
    assert!(
        !store
            .heartbeat_member(&member(NodeRun::new(1, 0), 1), LIVE)
            .await
            .expect("heartbeat")
    );
    beat(&*store, &b, LIVE).await;
    assert_eq!(table(&*store).await.generation, 4);
}

/// Checks a store written before the membership table, as this build opened (or
/// migrated) it: an empty table at generation 0, and heartbeats work.
pub(crate) async fn check_pre_membership_store(store: &dyn Store) {
    let empty = table(store).await;
    assert_eq!((empty.generation, empty.members.len()), (0, 0));
    let row = member(NodeRun::new(1, 1), 1);
    beat(store, &row, LIVE).await;
    let joined = table(store).await;
    assert_eq!((joined.generation, joined.members), (1, vec![row]));
}
