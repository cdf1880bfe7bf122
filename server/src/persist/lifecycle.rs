//! The life of each zone on this node, sans-IO: inactive → loading → active →
//! deactivating (saving) → inactive. The driver ([`super::host`]) does the loading and
//! saving and reports back; this core only decides.
//!
//! Policies:
//! - one load per zone at a time: concurrent requests for a loading zone share it
//!   (they are told to retry), so a crowd of first connections cannot stampede the store;
//! - a zone being saved on deactivation is not reloaded until the save is committed,
//!   so the next activation always reads the newest state;
//! - a failed load puts the zone back to inactive; the next request retries it;
//! - a zone leaves memory only when no player is on the way to it: whoever sends a
//!   player in (a join, a border crossing) reserves an arrival first, and the zone
//!   releases it when the player is in. So no player is ever sent to a zone that is
//!   leaving.

use std::collections::HashMap;
use std::time::Duration;
use zonemesh_shared::ids::ZoneId;

/// Where a zone is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZonePhase {
    /// Not in memory.
    Inactive,
    /// Being read from the store and built.
    Loading,
    /// Ticking, owning `epoch`.
    Active {
        /// The epoch this activation holds in the store.
        epoch: u64,
    },
    /// Writing its final checkpoint before leaving memory.
    Deactivating,
}

/// The answer to "I need this zone".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneRequest {
    /// Active: send the player in.
    Ready {
        /// Its current epoch.
        epoch: u64,
    },
    /// Not ready; the caller started nothing and should retry later.
    Wait,
    /// Not ready, and the caller must start loading it now (it is now `Loading`).
    StartLoad,
}

/// Every zone's phase on this node.
#[derive(Debug)]
pub struct Lifecycle {
    phases: HashMap<ZoneId, ZonePhase>,
    arrivals: HashMap<ZoneId, u32>,
    /// What clients are told to wait before retrying a zone that is not ready.
    pub retry_after: Duration,
}

impl Lifecycle {
    /// All `zones` inactive.
    pub fn new(zones: impl IntoIterator<Item = ZoneId>, retry_after: Duration) -> Self {
        Self {
            phases: zones
                .into_iter()
                .map(|z| (z, ZonePhase::Inactive))
                .collect(),
            arrivals: HashMap::new(),
            retry_after,
        }
    }

    /// The phase of `zone` (`None` if this node does not host it).
    pub fn phase(&self, zone: ZoneId) -> Option<ZonePhase> {
        self.phases.get(&zone).copied()
    }

    /// Someone needs `zone`: says whether it is ready and whether to start its load.
    pub fn request(&mut self, zone: ZoneId) -> Option<ZoneRequest> {
        let phase = self.phases.get_mut(&zone)?;
        Some(match *phase {
            ZonePhase::Active { epoch } => ZoneRequest::Ready { epoch },
            ZonePhase::Loading | ZonePhase::Deactivating => ZoneRequest::Wait,
            ZonePhase::Inactive => {
                *phase = ZonePhase::Loading;
                ZoneRequest::StartLoad
            }
        })
    }

    /// Like [`Self::request`], and if the zone is ready, reserves the arrival of one
    /// player (released with [`Self::arrived`]) so it cannot leave memory meanwhile.
    pub fn reserve_arrival(&mut self, zone: ZoneId) -> Option<ZoneRequest> {
        let answer = self.request(zone)?;
        if let ZoneRequest::Ready { .. } = answer {
            *self.arrivals.entry(zone).or_default() += 1;
        }
        Some(answer)
    }

    /// A reserved arrival happened (or was abandoned).
    pub fn arrived(&mut self, zone: ZoneId) {
        if let Some(n) = self.arrivals.get_mut(&zone) {
            *n = n.saturating_sub(1);
        }
    }

    /// The load of `zone` finished: it is active with `epoch`.
    pub fn loaded(&mut self, zone: ZoneId, epoch: u64) {
        self.set_if(zone, ZonePhase::Loading, ZonePhase::Active { epoch });
    }

    /// The load of `zone` failed; a later request retries it.
    pub fn load_failed(&mut self, zone: ZoneId) {
        self.set_if(zone, ZonePhase::Loading, ZonePhase::Inactive);
    }

    /// The zone wants to leave memory. True if it may (it is active and no player is
    /// on the way); from now on requests wait until [`Self::deactivated`].
    pub fn begin_deactivation(&mut self, zone: ZoneId) -> bool {
        if self.arrivals.get(&zone).is_some_and(|n| *n > 0) {
            return false;
        }
        match self.phases.get_mut(&zone) {
            Some(phase @ ZonePhase::Active { .. }) => {
                *phase = ZonePhase::Deactivating;
                true
            }
            _ => false,
        }
    }

    /// A zone handed over from another node is being built here from the state it
    /// shipped: `Inactive` → `Loading` without a load from the store. False if the
    /// zone is not inactive here.
    pub fn begin_restore(&mut self, zone: ZoneId) -> bool {
        match self.phases.get_mut(&zone) {
            Some(phase @ ZonePhase::Inactive) => {
                *phase = ZonePhase::Loading;
                true
            }
            _ => false,
        }
    }

    /// A zone frozen for a handoff (`Deactivating`) stays here after all, at `epoch`.
    pub fn resumed(&mut self, zone: ZoneId, epoch: u64) {
        self.set_if(zone, ZonePhase::Deactivating, ZonePhase::Active { epoch });
    }

    /// The zone's final checkpoint is committed (or given up on): it is inactive.
    pub fn deactivated(&mut self, zone: ZoneId) {
        self.set_if(zone, ZonePhase::Deactivating, ZonePhase::Inactive);
    }

    /// Zones currently active, with their epochs.
    pub fn active(&self) -> impl Iterator<Item = (ZoneId, u64)> + '_ {
        self.phases.iter().filter_map(|(z, p)| match p {
            ZonePhase::Active { epoch } => Some((*z, *epoch)),
            _ => None,
        })
    }

    fn set_if(&mut self, zone: ZoneId, from: ZonePhase, to: ZonePhase) {
        if let Some(phase) = self.phases.get_mut(&zone) {
            if *phase == from {
                *phase = to;
            } else {
                tracing::warn!(?zone, ?phase, ?to, "zone lifecycle event out of order");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle() -> (Lifecycle, ZoneId) {
        let z = ZoneId::grid(0, 0);
        (Lifecycle::new([z], Duration::from_millis(100)), z)
    }

    #[test]
    fn concurrent_requests_share_one_load() {
        let (mut l, z) = lifecycle();
        assert_eq!(l.request(z), Some(ZoneRequest::StartLoad));
        for _ in 0..100 {
            assert_eq!(l.request(z), Some(ZoneRequest::Wait));
        }
        l.loaded(z, 7);
        assert_eq!(l.request(z), Some(ZoneRequest::Ready { epoch: 7 }));
    }

    #[test]
    fn failed_load_is_retried_by_the_next_request() {
        let (mut l, z) = lifecycle();
        assert_eq!(l.request(z), Some(ZoneRequest::StartLoad));
        l.load_failed(z);
        assert_eq!(l.phase(z), Some(ZonePhase::Inactive));
        assert_eq!(l.request(z), Some(ZoneRequest::StartLoad));
    }

    #[test]
    fn a_deactivating_zone_is_not_reloaded_before_its_save() {
        let (mut l, z) = lifecycle();
        l.request(z);
        l.loaded(z, 1);
        assert!(l.begin_deactivation(z));
        assert!(!l.begin_deactivation(z), "only once");
        assert_eq!(l.request(z), Some(ZoneRequest::Wait));
        l.deactivated(z);
        assert_eq!(l.request(z), Some(ZoneRequest::StartLoad));
    }

    #[test]
    fn a_zone_with_a_player_on_the_way_stays() {
        let (mut l, z) = lifecycle();
        l.request(z);
        l.loaded(z, 1);
        assert_eq!(l.reserve_arrival(z), Some(ZoneRequest::Ready { epoch: 1 }));
        assert!(!l.begin_deactivation(z), "a player is on the way");
        l.arrived(z);
        assert!(l.begin_deactivation(z));
        assert_eq!(
            l.reserve_arrival(z),
            Some(ZoneRequest::Wait),
            "leaving: no arrivals"
        );
    }

    #[test]
    fn unknown_zones_and_stray_events_change_nothing() {
        let (mut l, z) = lifecycle();
        assert_eq!(l.request(ZoneId::grid(5, 5)), None);
        l.loaded(z, 3); // Never requested: ignored.
        assert_eq!(l.phase(z), Some(ZonePhase::Inactive));
        assert!(!l.begin_deactivation(z));
        assert_eq!(l.active().count(), 0);
    }
}
