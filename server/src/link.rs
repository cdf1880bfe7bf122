//! The bridge between a connection task (async, network side) and the zone that hosts
//! the player (sync, tick side). Both sides only ever make non-blocking calls on it.
//!
//! Bounds and policies:
//! - snapshots: one batch (one tick's datagrams); a newer batch replaces an unsent one
//!   (newest wins) and the replacement is counted so the connection can spot a client
//!   that never keeps up;
//! - control messages: at most [`CONTROL_OUTBOX_MAX`]; overflow kicks the client with
//!   `SlowClient`, because reliable messages cannot be dropped silently.

use crate::game::SessionId;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use zonemesh_shared::control::{ErrorCode, ServerControl};
use zonemesh_shared::ids::ZoneId;

/// Most reliable messages queued for one client before it is considered stuck.
pub const CONTROL_OUTBOX_MAX: usize = 256;

/// One tick's snapshot datagrams for one client.
#[derive(Debug, Default)]
pub struct SnapshotBatch {
    /// Tick the snapshot describes.
    pub tick: u64,
    /// Encoded datagrams, each within the client's path MTU.
    pub datagrams: Vec<Vec<u8>>,
}

/// Why and how a session must end, set by whichever side decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    /// Reason sent to the client and used as the close code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// Shared state of one player session.
#[derive(Debug)]
pub struct ClientLink {
    session: SessionId,
    name: String,
    zone: AtomicU32,
    /// Set by the connection task when the session ends; zones drop the player when
    /// they see it (this replaces a "leave" message that could be lost or misrouted).
    closed: AtomicBool,
    /// The player went on to another node (its entity, claim and next saves are
    /// there): ending this connection must neither wait for a save nor free a claim.
    moved_away: AtomicBool,
    /// A player moved here from another node whose client has not connected yet: no
    /// connection task drives the link, so ending the session closes it at once.
    waiting_for_client: AtomicBool,
    max_datagram_bytes: AtomicU32,
    snapshot: Mutex<Option<SnapshotBatch>>,
    control: Mutex<VecDeque<ServerControl>>,
    kick: Mutex<Option<Kick>>,
    snapshots_replaced: AtomicU64,
    wake: Notify,
    /// The save of the player's record when it left its zone, once the zone made it.
    final_save: Mutex<Option<FinalSave>>,
    final_save_made: Notify,
    /// Durable actions of this session being committed or on their way to the zone
    /// ([`ActionInFlight`]).
    actions_in_flight: AtomicU32,
    /// The zone wants to hand the player to another node: new durable actions are
    /// refused until the player has gone, or stays.
    holding_for_crossing: AtomicBool,
}

/// One durable action of a session between the start of its commit and the moment
/// its zone applied it (or gave up on it): while any is, the player does not cross to
/// another node, so no committed action's effect is left behind. Dropping it ends it.
#[derive(Debug)]
pub struct ActionInFlight(Arc<ClientLink>);

impl Drop for ActionInFlight {
    fn drop(&mut self) {
        self.0.actions_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The store's answer to a leaving player's save (see [`ClientLink::final_save`]).
pub type FinalSave = tokio::sync::oneshot::Receiver<Result<(), String>>;

impl ClientLink {
    /// A link for `session` of player `name`, routed to `zone`.
    pub fn new(session: SessionId, name: String, zone: ZoneId, max_datagram_bytes: u32) -> Self {
        Self {
            session,
            name,
            zone: AtomicU32::new(zone.0),
            closed: AtomicBool::new(false),
            moved_away: AtomicBool::new(false),
            waiting_for_client: AtomicBool::new(false),
            max_datagram_bytes: AtomicU32::new(max_datagram_bytes),
            snapshot: Mutex::new(None),
            control: Mutex::new(VecDeque::new()),
            kick: Mutex::new(None),
            snapshots_replaced: AtomicU64::new(0),
            wake: Notify::new(),
            final_save: Mutex::new(None),
            final_save_made: Notify::new(),
            actions_in_flight: AtomicU32::new(0),
            holding_for_crossing: AtomicBool::new(false),
        }
    }

    /// Starts a durable action of this session, or `None` while its zone is handing
    /// the player to another node (the client sends it again after the move).
    pub fn begin_action(self: &Arc<Self>) -> Option<ActionInFlight> {
        // Counted before the hold is read, and the zone sets the hold before it reads
        // the count (all sequentially consistent): either the zone sees this action
        // and waits for it, or this action sees the hold and is refused.
        self.actions_in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = ActionInFlight(Arc::clone(self));
        (!self.holding_for_crossing.load(Ordering::SeqCst)).then_some(in_flight)
    }

    /// The zone is about to hand the player to another node: refuses new durable
    /// actions and says whether none is in flight (the player may go now).
    pub fn hold_for_crossing(&self) -> bool {
        self.holding_for_crossing.store(true, Ordering::SeqCst);
        self.actions_in_flight.load(Ordering::SeqCst) == 0
    }

    /// The player stays (it turned back, or came back from a crossing that failed):
    /// durable actions are taken again.
    pub fn release_crossing_hold(&self) {
        self.holding_for_crossing.store(false, Ordering::SeqCst);
    }

    /// Hands over the save of the player's record made as it left its zone (the zone
    /// calls this when it takes the player out after the session closed).
    pub fn set_final_save(&self, save: FinalSave) {
        *lock(&self.final_save) = Some(save);
        self.final_save_made.notify_one();
    }

    /// Waits up to `within` for the zone to take the player out and its record to be
    /// saved. True when the store confirmed the save; false on a failed save, or when
    /// none was made in time (the player's zone was lost, or it was between zones).
    pub async fn final_save(&self, within: std::time::Duration) -> bool {
        let waited = tokio::time::timeout(within, async {
            loop {
                let made = self.final_save_made.notified();
                let save = lock(&self.final_save).take();
                if let Some(save) = save {
                    return save.await.is_ok_and(|r| r.is_ok());
                }
                made.await;
            }
        })
        .await;
        waited.unwrap_or(false)
    }

    /// The session this link belongs to.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The player's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone the player's inputs go to.
    pub fn zone(&self) -> ZoneId {
        ZoneId(self.zone.load(Ordering::SeqCst))
    }

    /// Re-routes the player's inputs (called by a zone handing the player over).
    pub fn set_zone(&self, zone: ZoneId) {
        self.zone.store(zone.0, Ordering::SeqCst);
    }

    /// Marks the session ended; zones drop the player on their next tick.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Marks the link as waiting for its client (a player moved here from another
    /// node): until [`Self::client_arrived`], a kick closes it.
    pub fn wait_for_client(&self) {
        self.waiting_for_client.store(true, Ordering::SeqCst);
    }

    /// A connection now drives the link.
    pub fn client_arrived(&self) {
        self.waiting_for_client.store(false, Ordering::SeqCst);
    }

    /// Records that the player went on to another node.
    pub fn mark_moved_away(&self) {
        self.moved_away.store(true, Ordering::SeqCst);
    }

    /// True once the player went on to another node.
    pub fn moved_away(&self) -> bool {
        self.moved_away.load(Ordering::SeqCst)
    }

    /// True if this is an earlier link of `arriving`'s session that was sent on to
    /// another node and still waits for its client to follow (a slow client, whose
    /// zone came back here meanwhile). Such a link carries the `Redirect` the client
    /// has yet to read: closing it would end a session that is on its way. The client
    /// follows the redirect, is sent back here and takes `arriving` over.
    pub fn is_left_behind_by(&self, arriving: &ClientLink) -> bool {
        self.session == arriving.session && self.moved_away() && !self.is_closed()
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Largest datagram the connection can send now (path MTU minus overheads).
    pub fn max_datagram_bytes(&self) -> usize {
        self.max_datagram_bytes.load(Ordering::Relaxed) as usize
    }

    /// Updates the datagram size limit as the path MTU is discovered.
    pub fn set_max_datagram_bytes(&self, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.max_datagram_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Offers a tick's snapshot; an unsent older one is replaced (newest wins).
    pub fn push_snapshot(&self, batch: SnapshotBatch) {
        let replaced = lock(&self.snapshot).replace(batch).is_some();
        if replaced {
            self.snapshots_replaced.fetch_add(1, Ordering::Relaxed);
        }
        self.wake.notify_one();
    }

    /// Takes the pending snapshot, if any.
    pub fn take_snapshot(&self) -> Option<SnapshotBatch> {
        lock(&self.snapshot).take()
    }

    /// Snapshots dropped because a newer one replaced them before they were sent.
    pub fn snapshots_replaced(&self) -> u64 {
        self.snapshots_replaced.load(Ordering::Relaxed)
    }

    /// Queues a reliable message; a full queue kicks the client as too slow.
    pub fn push_control(&self, msg: ServerControl) {
        let overflow = {
            let mut q = lock(&self.control);
            if q.len() >= CONTROL_OUTBOX_MAX {
                true
            } else {
                q.push_back(msg);
                false
            }
        };
        if overflow {
            self.kick(ErrorCode::SlowClient, "reliable message queue overflowed");
        }
        self.wake.notify_one();
    }

    /// Takes every queued reliable message.
    pub fn drain_control(&self) -> Vec<ServerControl> {
        lock(&self.control).drain(..).collect()
    }

    /// Asks the connection task to end the session (first reason wins).
    pub fn kick(&self, code: ErrorCode, message: &str) {
        let mut k = lock(&self.kick);
        if k.is_none() {
            *k = Some(Kick {
                code,
                message: message.to_owned(),
            });
        }
        drop(k);
        if self.waiting_for_client.load(Ordering::SeqCst) {
            // No connection task will act on the kick: end the session here.
            self.close();
        }
        self.wake.notify_one();
    }

    /// The reason the session must end, if one was set.
    pub fn kicked(&self) -> Option<Kick> {
        lock(&self.kick).clone()
    }

    /// Resolves when there may be something new to send or a kick.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every value
/// behind these locks is valid after any single operation.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> ClientLink {
        ClientLink::new(SessionId(1), "p".into(), ZoneId::grid(0, 0), 1200)
    }

    #[test]
    fn newer_snapshot_replaces_unsent_one() {
        let l = link();
        l.push_snapshot(SnapshotBatch {
            tick: 1,
            datagrams: vec![],
        });
        l.push_snapshot(SnapshotBatch {
            tick: 2,
            datagrams: vec![],
        });
        assert_eq!(l.take_snapshot().map(|b| b.tick), Some(2));
        assert_eq!(l.snapshots_replaced(), 1);
        assert!(l.take_snapshot().is_none());
    }

    #[test]
    fn control_overflow_kicks_as_slow_client() {
        let l = link();
        for _ in 0..=CONTROL_OUTBOX_MAX {
            l.push_control(ServerControl::Busy { retry_after_ms: 1 });
        }
        assert_eq!(l.kicked().map(|k| k.code), Some(ErrorCode::SlowClient));
        assert_eq!(l.drain_control().len(), CONTROL_OUTBOX_MAX);
    }

    #[test]
    fn first_kick_reason_wins() {
        let l = link();
        l.kick(ErrorCode::InputFlood, "a");
        l.kick(ErrorCode::SlowClient, "b");
        assert_eq!(l.kicked().map(|k| k.code), Some(ErrorCode::InputFlood));
    }
}
