//! The node's view of its zones' lifecycle, shared by connections, zones and the host:
//! a lock around the sans-IO [`Lifecycle`], a notification when anything changes, and
//! the queue of loads to start. Every call is short and non-blocking, so zones may
//! call it from a tick.

use super::lifecycle::{Lifecycle, ZonePhase, ZoneRequest};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use zonemesh_shared::ids::ZoneId;

/// Zone phases plus the load queue.
#[derive(Debug)]
pub struct ZoneDirectory {
    lifecycle: Mutex<Lifecycle>,
    changed: Notify,
    loads: mpsc::Sender<ZoneId>,
}

impl ZoneDirectory {
    /// A directory over `lifecycle`; zones to load are sent to `loads`, which must
    /// have room for every zone (a zone is queued only when it turns `Loading`).
    pub fn new(lifecycle: Lifecycle, loads: mpsc::Sender<ZoneId>) -> Self {
        Self {
            lifecycle: Mutex::new(lifecycle),
            changed: Notify::new(),
            loads,
        }
    }

    /// What clients are told to wait before retrying a zone that is not ready.
    pub fn retry_after(&self) -> Duration {
        crate::link::lock(&self.lifecycle).retry_after
    }

    /// Asks for `zone`, queueing its load if it is inactive.
    pub fn request(&self, zone: ZoneId) -> Option<ZoneRequest> {
        let mut lifecycle = crate::link::lock(&self.lifecycle);
        let answer = lifecycle.request(zone)?;
        if answer == ZoneRequest::StartLoad && self.loads.try_send(zone).is_err() {
            // The loader is gone (shutting down): leave the zone as it was.
            lifecycle.load_failed(zone);
        }
        Some(answer)
    }

    /// Reserves the arrival of one player in `zone` if it is active (true), queueing
    /// its load if it is inactive. Release with [`Self::arrived`].
    pub fn reserve_arrival(&self, zone: ZoneId) -> bool {
        let mut lifecycle = crate::link::lock(&self.lifecycle);
        match lifecycle.reserve_arrival(zone) {
            Some(ZoneRequest::Ready { .. }) => true,
            Some(ZoneRequest::StartLoad) => {
                if self.loads.try_send(zone).is_err() {
                    lifecycle.load_failed(zone);
                }
                false
            }
            Some(ZoneRequest::Wait) | None => false,
        }
    }

    /// A reserved arrival in `zone` happened or was abandoned.
    pub fn arrived(&self, zone: ZoneId) {
        crate::link::lock(&self.lifecycle).arrived(zone);
    }

    /// Lets `zone` leave memory if it is active and no player is on the way.
    pub fn begin_deactivation(&self, zone: ZoneId) -> bool {
        let began = crate::link::lock(&self.lifecycle).begin_deactivation(zone);
        if began {
            self.changed.notify_waiters();
        }
        began
    }

    /// True if `zone` is active here.
    pub fn is_active(&self, zone: ZoneId) -> bool {
        matches!(
            crate::link::lock(&self.lifecycle).phase(zone),
            Some(ZonePhase::Active { .. })
        )
    }

    /// The phase of `zone`.
    pub fn phase(&self, zone: ZoneId) -> Option<ZonePhase> {
        crate::link::lock(&self.lifecycle).phase(zone)
    }

    /// Zones active now, with their epochs.
    pub fn active(&self) -> Vec<(ZoneId, u64)> {
        crate::link::lock(&self.lifecycle).active().collect()
    }

    /// Requests `zone` and waits up to `wait` for it to be active; true if it is, and
    /// then one arrival is reserved (release it with [`Self::arrived`]).
    pub async fn reserve_arrival_within(&self, zone: ZoneId, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            if self.reserve_arrival(zone) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    /// Applies a lifecycle event and wakes everyone waiting on a zone.
    pub(crate) fn update(&self, f: impl FnOnce(&mut Lifecycle)) {
        f(&mut crate::link::lock(&self.lifecycle));
        self.changed.notify_waiters();
    }
}
