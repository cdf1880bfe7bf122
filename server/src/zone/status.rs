//! What a zone reports about itself: tick-time histogram, missed ticks, population and
//! the counters operators and tests read. Written by the zone's worker once per tick,
//! read by anyone through [`ZoneStatusCell::snapshot`].

use crate::link::lock;
use hdrhistogram::Histogram;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zonemesh_shared::ids::ZoneId;

/// Highest tick time the histogram resolves (longer ticks are recorded as this).
const TICK_TIME_MAX_US: u64 = 60_000_000;

/// A zone's published figures.
#[derive(Debug, Clone)]
pub struct ZoneStatus {
    /// The zone.
    pub zone: ZoneId,
    /// Ticks simulated.
    pub ticks: u64,
    /// Deadlines missed because ticks overran (see [`super::clock`]).
    pub missed_ticks: u64,
    /// Tick durations in microseconds.
    pub tick_time_us: Histogram<u64>,
    /// CPU time its ticks used on their worker thread, microseconds in all: unlike
    /// the tick durations, not inflated while the thread waited for a core. What the
    /// rebalancer compares.
    pub tick_cpu_us: u64,
    /// Connected players in the zone.
    pub players: usize,
    /// Entities with a network identity in the zone (players included).
    pub entities: usize,
    /// Names of the players in the zone, for invariant checks.
    pub player_names: Vec<String>,
    /// Inputs applied over the zone's life (see `ZoneCounters`).
    pub inputs_applied: u64,
    /// Inputs superseded by a newer one of the same player, over the zone's life.
    pub inputs_superseded: u64,
    /// Inputs clamped to the player's max speed.
    pub inputs_clamped: u64,
    /// Inputs with non-finite values (treated as standing still).
    pub inputs_invalid: u64,
    /// Players that crossed out of this zone.
    pub transfers_out: u64,
    /// Transfers that could not be delivered yet (neighbour inbox full) and were retried.
    pub transfers_deferred: u64,
    /// Snapshot bytes built for clients.
    pub snapshot_bytes: u64,
    /// Entity changes deferred by clients' byte budgets.
    pub records_deferred: u64,
}

impl ZoneStatus {
    fn new(zone: ZoneId) -> Self {
        Self {
            zone,
            ticks: 0,
            missed_ticks: 0,
            tick_time_us: new_tick_histogram(),
            tick_cpu_us: 0,
            players: 0,
            entities: 0,
            player_names: Vec::new(),
            inputs_applied: 0,
            inputs_superseded: 0,
            inputs_clamped: 0,
            inputs_invalid: 0,
            transfers_out: 0,
            transfers_deferred: 0,
            snapshot_bytes: 0,
            records_deferred: 0,
        }
    }

    /// Records one tick's duration.
    pub(crate) fn record_tick_time(&mut self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.tick_time_us
            .saturating_record(us.clamp(1, TICK_TIME_MAX_US));
    }
}

/// A histogram for tick times: 1 µs .. 60 s at 3 significant digits.
pub fn new_tick_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts: not reachable from input.
    Histogram::new_with_bounds(1, TICK_TIME_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Shared cell holding a zone's latest status, and the one notice that travels the
/// other way: that the node lost the zone (see [`ZoneStatusCell::revoke`]).
#[derive(Debug)]
pub struct ZoneStatusCell {
    inner: Mutex<ZoneStatus>,
    /// Set when this node lost the zone (the cell belongs to one activation).
    revoked: AtomicBool,
    /// Set while a live handoff wants the zone frozen at its next tick boundary.
    freeze: AtomicBool,
}

impl ZoneStatusCell {
    /// A cell for `zone` with everything at zero.
    pub fn new(zone: ZoneId) -> Self {
        Self {
            inner: Mutex::new(ZoneStatus::new(zone)),
            revoked: AtomicBool::new(false),
            freeze: AtomicBool::new(false),
        }
    }

    /// Asks the zone to freeze at its next tick boundary for a live handoff (`true`),
    /// or no longer (`false`: the handoff was given up before the zone froze).
    pub fn request_freeze(&self, freeze: bool) {
        self.freeze.store(freeze, Ordering::Release);
    }

    /// Whether a handoff wants the zone frozen.
    pub(crate) fn freeze_requested(&self) -> bool {
        self.freeze.load(Ordering::Acquire)
    }

    /// Tells the zone that this node no longer holds it. A flag rather than an inbox
    /// message, so a full inbox can never lose the notice; the zone reads it at its
    /// next tick.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    /// Whether the zone was revoked.
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> ZoneStatus {
        lock(&self.inner).clone()
    }

    /// Applies `f` to the status under the lock (the zone's worker, once per tick).
    pub(crate) fn update(&self, f: impl FnOnce(&mut ZoneStatus)) {
        f(&mut lock(&self.inner));
    }
}
