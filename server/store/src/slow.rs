//! A fault knob: a store wrapper that waits a fixed time before every operation, to
//! demonstrate and test slow loads (`--store-latency-ms`).

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{
    HeldZones, LeaseGrant, LeasedActivation, MemberRow, MemberTable, NodeRun, PlayerClaim,
};
use crate::types::{
    ActionCommit, Activation, Checkpoint, DurableAction, PlayerRecord, SaveOutcome, ZoneRecord,
};
use crate::{Store, StoreFuture, StoreStats};

/// Wraps a store and sleeps `delay` before forwarding each operation. The delay is a
/// timer, not a blocked thread, so it costs nothing but time. Statistics are the inner
/// store's.
#[derive(Debug)]
pub struct SlowStore<S: ?Sized> {
    inner: Arc<S>,
    delay: Duration,
}

impl<S: Store + ?Sized> SlowStore<S> {
    /// Wraps `inner`, adding `delay` before every operation.
    pub fn new(inner: Arc<S>, delay: Duration) -> Self {
        Self { inner, delay }
    }

    /// The delay added to every operation.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Waits the delay, then starts `call` (only then, so the inner store counts the
    /// call when it really starts, as if the store itself were slow).
    fn delayed<'a, T: 'a>(
        &'a self,
        call: impl FnOnce() -> StoreFuture<'a, T> + Send + 'a,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            call().await
        })
    }
}

impl<S: Store + ?Sized> Store for SlowStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn activate_zone<'a>(&'a self, zone: u32, node: &'a str) -> StoreFuture<'a, Activation> {
        self.delayed(move || self.inner.activate_zone(zone, node))
    }

    fn checkpoint(
        &self,
        zone: u32,
        epoch: u64,
        checkpoint: Checkpoint,
    ) -> StoreFuture<'_, SaveOutcome> {
        self.delayed(move || self.inner.checkpoint(zone, epoch, checkpoint))
    }

    fn save_players(
        &self,
        zone: u32,
        epoch: u64,
        players: Vec<PlayerRecord>,
    ) -> StoreFuture<'_, SaveOutcome> {
        self.delayed(move || self.inner.save_players(zone, epoch, players))
    }

    fn commit_action(
        &self,
        zone: u32,
        epoch: u64,
        action: DurableAction,
    ) -> StoreFuture<'_, ActionCommit> {
        self.delayed(move || self.inner.commit_action(zone, epoch, action))
    }

    fn load_zone(&self, zone: u32) -> StoreFuture<'_, Option<ZoneRecord>> {
        self.delayed(move || self.inner.load_zone(zone))
    }

    fn load_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<PlayerRecord>> {
        self.delayed(move || self.inner.load_player(player))
    }

    fn actions_for_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Vec<DurableAction>> {
        self.delayed(move || self.inner.actions_for_player(player))
    }

    fn zone_epoch(&self, zone: u32) -> StoreFuture<'_, Option<u64>> {
        self.delayed(move || self.inner.zone_epoch(zone))
    }

    fn renew_lease(
        &self,
        node: NodeRun,
        duration: Duration,
    ) -> StoreFuture<'_, Option<LeaseGrant>> {
        self.delayed(move || self.inner.renew_lease(node, duration))
    }

    fn activate_zone_leased(
        &self,
        zone: u32,
        node: NodeRun,
        attempt: u64,
    ) -> StoreFuture<'_, LeasedActivation> {
        self.delayed(move || self.inner.activate_zone_leased(zone, node, attempt))
    }

    fn release_zone(&self, zone: u32, node: NodeRun, epoch: u64) -> StoreFuture<'_, bool> {
        self.delayed(move || self.inner.release_zone(zone, node, epoch))
    }

    fn zones_held_by(&self, node: NodeRun) -> StoreFuture<'_, HeldZones> {
        self.delayed(move || self.inner.zones_held_by(node))
    }

    fn zone_holder(&self, zone: u32) -> StoreFuture<'_, Option<(NodeRun, u64)>> {
        self.delayed(move || self.inner.zone_holder(zone))
    }

    fn claim_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
        takeover: Option<NodeRun>,
    ) -> StoreFuture<'a, PlayerClaim> {
        self.delayed(move || self.inner.claim_player(player, node, session, takeover))
    }

    fn take_over_players<'a>(
        &'a self,
        players: &'a [(String, u64)],
        node: NodeRun,
        from: NodeRun,
    ) -> StoreFuture<'a, Vec<bool>> {
        self.delayed(move || self.inner.take_over_players(players, node, from))
    }

    fn release_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
    ) -> StoreFuture<'a, bool> {
        self.delayed(move || self.inner.release_player(player, node, session))
    }

    fn player_claim<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<(NodeRun, u64)>> {
        self.delayed(move || self.inner.player_claim(player))
    }

    fn heartbeat_member<'a>(&'a self, row: &'a MemberRow, ttl: Duration) -> StoreFuture<'a, bool> {
        self.delayed(move || self.inner.heartbeat_member(row, ttl))
    }

    fn member_table(&self) -> StoreFuture<'_, MemberTable> {
        self.delayed(move || self.inner.member_table())
    }

    fn leave_member(&self, run: NodeRun) -> StoreFuture<'_, bool> {
        self.delayed(move || self.inner.leave_member(run))
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::RedbStore;

    #[tokio::test]
    async fn every_operation_waits_and_is_forwarded() {
        let inner = Arc::new(RedbStore::in_memory().expect("in-memory store"));
        let delay = Duration::from_millis(30);
        let slow = SlowStore::new(Arc::clone(&inner), delay);
        let started = Instant::now();
        let activation = slow.activate_zone(5, "node").await.expect("activate");
        assert!(started.elapsed() >= delay);
        assert_eq!(activation.epoch, 1);
        let started = Instant::now();
        assert_eq!(slow.zone_epoch(5).await.ok(), Some(Some(1)));
        assert!(started.elapsed() >= delay);
        assert_eq!(slow.stats().n_activations, 1);
        let started = Instant::now();
        let run = NodeRun::new(1, 1);
        let grant = slow.renew_lease(run, Duration::from_secs(5)).await;
        assert!(started.elapsed() >= delay);
        assert_eq!(grant.ok().flatten().map(|g| g.generation), Some(0));
        assert_eq!(slow.zone_holder(5).await.ok(), Some(None));
        assert_eq!(slow.stats().n_lease_renewals, 1);
        let started = Instant::now();
        let claim = slow.claim_player("p", run, 7, None).await;
        assert!(started.elapsed() >= delay);
        assert_eq!(
            claim.ok(),
            Some(PlayerClaim::Claimed {
                record_version: None
            })
        );
        assert_eq!(slow.player_claim("p").await.ok(), Some(Some((run, 7))));
        let started = Instant::now();
        assert_eq!(slow.release_player("p", run, 7).await.ok(), Some(true));
        assert!(started.elapsed() >= delay);
        let stats = slow.stats();
        let claim_calls = (
            stats.n_player_claims,
            stats.n_player_releases,
            stats.n_claim_reads,
        );
        assert_eq!(claim_calls, (1, 1, 1));
        let row = MemberRow {
            run,
            node_addr: "127.0.0.1:9000".into(),
            client_addr: "127.0.0.1:7000".into(),
        };
        let started = Instant::now();
        let written = slow.heartbeat_member(&row, Duration::from_secs(5)).await;
        assert!(started.elapsed() >= delay);
        assert_eq!(written.ok(), Some(true));
        let started = Instant::now();
        let table = slow.member_table().await.expect("member table");
        assert!(started.elapsed() >= delay);
        assert_eq!((table.generation, table.members), (1, vec![row]));
        let started = Instant::now();
        assert_eq!(slow.leave_member(run).await.ok(), Some(true));
        assert!(started.elapsed() >= delay);
        let stats = slow.stats();
        let member_calls = (
            stats.n_member_heartbeats,
            stats.n_member_reads,
            stats.n_member_leaves,
        );
        assert_eq!(member_calls, (1, 1, 1));
        assert_eq!(slow.stats(), inner.stats());
        assert_eq!(slow.backend(), "redb");
        // The wrapper also takes the trait object the server holds.
        let shared: Arc<dyn Store> = inner;
        let wrapped: Arc<dyn Store> = Arc::new(SlowStore::new(shared, Duration::ZERO));
        assert_eq!(wrapped.zone_epoch(5).await.ok(), Some(Some(1)));
    }
}
