//! A fault knob: a store wrapper that waits a fixed time before every operation, to
//! demonstrate and test slow loads (`--store-latency-ms`).

use std::sync::Arc;
use std::time::Duration;

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
}

impl<S: Store + ?Sized> Store for SlowStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn activate_zone<'a>(&'a self, zone: u32, node: &'a str) -> StoreFuture<'a, Activation> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.activate_zone(zone, node).await
        })
    }

    fn checkpoint(
        &self,
        zone: u32,
        epoch: u64,
        checkpoint: Checkpoint,
    ) -> StoreFuture<'_, SaveOutcome> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.checkpoint(zone, epoch, checkpoint).await
        })
    }

    fn save_players(
        &self,
        zone: u32,
        epoch: u64,
        players: Vec<PlayerRecord>,
    ) -> StoreFuture<'_, SaveOutcome> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.save_players(zone, epoch, players).await
        })
    }

    fn commit_action(
        &self,
        zone: u32,
        epoch: u64,
        action: DurableAction,
    ) -> StoreFuture<'_, ActionCommit> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.commit_action(zone, epoch, action).await
        })
    }

    fn load_zone(&self, zone: u32) -> StoreFuture<'_, Option<ZoneRecord>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.load_zone(zone).await
        })
    }

    fn load_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<PlayerRecord>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.load_player(player).await
        })
    }

    fn actions_for_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Vec<DurableAction>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.actions_for_player(player).await
        })
    }

    fn zone_epoch(&self, zone: u32) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.zone_epoch(zone).await
        })
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
        assert_eq!(slow.stats(), inner.stats());
        assert_eq!(slow.backend(), "redb");
        // The wrapper also takes the trait object the server holds.
        let shared: Arc<dyn Store> = inner;
        let wrapped: Arc<dyn Store> = Arc::new(SlowStore::new(shared, Duration::ZERO));
        assert_eq!(wrapped.zone_epoch(5).await.ok(), Some(Some(1)));
    }
}
