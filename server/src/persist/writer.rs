//! Writes checkpoints to the store off the tick. Zones hand over what to save with a
//! non-blocking call; one task per node writes it.
//!
//! Policy (bounded by construction): at most one pending checkpoint per zone. A newer
//! zone state replaces an unwritten older one (newest wins: the older one is a subset
//! of history nobody needs); player records merge by name, the higher version wins
//! (the store would refuse the lower one anyway). So the queue holds at most one zone
//! state per zone and one record per player, however far the store falls behind.
//! Records handed over but not yet committed are still found by
//! [`CheckpointWriter::unsaved_player`], so a player who reconnects at once gets the
//! position it just left, not an older stored one.
//!
//! Records the store refuses as stale (it holds a newer version: the player moved on
//! to another zone or session) are not failures: the rest of the checkpoint commits,
//! and the refusal is counted and logged once per write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot};
use zonemesh_shared::ids::ZoneId;
use zonemesh_store::{Checkpoint, PlayerRecord, SaveOutcome, Store, StoreError, ZoneSnapshot};

/// Most refused player names one log line lists.
const STALE_NAMES_LOGGED: usize = 5;

/// What one zone wants saved.
#[derive(Debug)]
pub struct CheckpointJob {
    /// The zone.
    pub zone: ZoneId,
    /// The epoch it holds.
    pub epoch: u64,
    /// Its state, if this is a zone checkpoint (player-only saves leave it out).
    pub state: Option<ZoneSnapshot>,
    /// Player records to save.
    pub players: Vec<PlayerRecord>,
}

/// A zone's pending writes.
#[derive(Debug, Default)]
struct Pending {
    epoch: u64,
    state: Option<ZoneSnapshot>,
    players: HashMap<String, PlayerRecord>,
    done: Vec<oneshot::Sender<Result<(), String>>>,
}

/// Counters for status pages and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Checkpoints committed.
    pub committed: u64,
    /// Checkpoints the store refused or failed.
    pub failed: u64,
    /// Zone states replaced before they were written (newest wins).
    pub superseded: u64,
    /// Player records the store refused because it held a newer version.
    pub stale_players: u64,
}

/// The node's checkpoint queue and writer.
#[derive(Debug)]
pub struct CheckpointWriter {
    store: Arc<dyn Store>,
    pending: Mutex<HashMap<ZoneId, Pending>>,
    in_flight: Mutex<HashMap<String, PlayerRecord>>,
    stats: Mutex<WriterStats>,
    wake: Notify,
}

impl CheckpointWriter {
    /// A writer for `store`; call [`Self::run`] on a task.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            pending: Mutex::default(),
            in_flight: Mutex::default(),
            stats: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Queues `job` (never blocks: a short lock, then the writer is woken).
    pub fn submit(&self, job: CheckpointJob) {
        self.merge(job, None);
    }

    /// Queues `job` and returns a receiver told when it is committed (or failed).
    pub fn submit_and_wait(&self, job: CheckpointJob) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        self.merge(job, Some(tx));
        rx
    }

    fn merge(&self, job: CheckpointJob, done: Option<oneshot::Sender<Result<(), String>>>) {
        {
            let mut pending = crate::link::lock(&self.pending);
            let entry = pending.entry(job.zone).or_default();
            if entry.epoch != job.epoch {
                // A new activation's writes replace an older one's (which would be fenced).
                *entry = Pending {
                    epoch: job.epoch,
                    ..Pending::default()
                };
            }
            if let Some(state) = job.state
                && entry.state.replace(state).is_some()
            {
                crate::link::lock(&self.stats).superseded += 1;
            }
            for p in job.players {
                let newer = entry
                    .players
                    .get(&p.player)
                    .is_none_or(|old| old.version < p.version);
                if newer {
                    entry.players.insert(p.player.clone(), p);
                }
            }
            entry.done.extend(done);
        }
        self.wake.notify_one();
    }

    /// The newest record of `player` handed over but not yet committed, if any.
    pub fn unsaved_player(&self, player: &str) -> Option<PlayerRecord> {
        let pending = crate::link::lock(&self.pending);
        let queued = pending.values().filter_map(|p| p.players.get(player));
        let in_flight = crate::link::lock(&self.in_flight);
        queued
            .chain(in_flight.get(player))
            .max_by_key(|r| r.version)
            .cloned()
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        *crate::link::lock(&self.stats)
    }

    /// Writes whatever is pending, forever (until the task is aborted).
    pub async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            self.flush().await;
        }
    }

    /// Writes everything pending now, one store call per zone.
    pub async fn flush(&self) {
        let batch = std::mem::take(&mut *crate::link::lock(&self.pending));
        for (zone, pending) in batch {
            self.write(zone, pending).await;
        }
    }

    async fn write(&self, zone: ZoneId, pending: Pending) {
        let players: Vec<PlayerRecord> = pending.players.into_values().collect();
        {
            let mut in_flight = crate::link::lock(&self.in_flight);
            for p in &players {
                in_flight.insert(p.player.clone(), p.clone());
            }
        }
        let names: Vec<String> = players.iter().map(|p| p.player.clone()).collect();
        let checkpoint = Checkpoint {
            zone_state: pending.state,
            players,
        };
        let result = self
            .store
            .checkpoint(zone.0, pending.epoch, checkpoint)
            .await;
        {
            let mut in_flight = crate::link::lock(&self.in_flight);
            for n in &names {
                in_flight.remove(n);
            }
        }
        self.record(zone, &result);
        for done in pending.done {
            let _ = done.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        }
    }

    fn record(&self, zone: ZoneId, result: &Result<SaveOutcome, StoreError>) {
        let mut stats = crate::link::lock(&self.stats);
        match result {
            Ok(outcome) => {
                stats.committed += 1;
                stats.stale_players += outcome.stale_players.len() as u64;
                log_stale(zone, outcome);
            }
            Err(e) => {
                stats.failed += 1;
                tracing::error!(?zone, error = %e, "checkpoint not saved");
            }
        }
    }
}

/// One warning per write that had player records refused, naming a few of them.
fn log_stale(zone: ZoneId, outcome: &SaveOutcome) {
    if outcome.is_complete() {
        return;
    }
    let n_stale = outcome.stale_players.len();
    let shown = &outcome.stale_players[..n_stale.min(STALE_NAMES_LOGGED)];
    tracing::warn!(
        ?zone,
        n_stale,
        players = ?shown,
        "store kept newer records of these players; this zone's older ones were skipped"
    );
}
