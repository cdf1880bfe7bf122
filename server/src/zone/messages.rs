//! What flows into a zone's bounded inbox, and the router that finds a zone's inbox.
//!
//! Send policies (the inbox never blocks a sender):
//! - `GameEvent`: refused when full; a reliable event must not vanish silently, so the
//!   connection ends the session with `Busy` and the client knows it was not processed.
//! - `Input`, `Ghosts`: dropped when the inbox is full (inputs are sent redundantly and
//!   ghosts are re-sent every tick, so the next one repairs the loss); drops are counted.
//! - `Join`: refused when full; the connection answers `Busy` so the client retries.
//! - `TransferIn`: refused when full; the sending zone keeps the player and retries on
//!   its next tick, so a player is never lost in between.

use crate::game::SessionId;
use crate::link::{ActionInFlight, ClientLink};
use crate::persist::RecordVersions;
use crate::zone::elsewhere::GhostOrigin;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use zonemesh_replication::{ClientView, ReplicatedState};
use zonemesh_shared::datagram::{Ack, ComponentValue, InputFrame};
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::Vec2;

/// A player moving between zones, with everything needed to continue seamlessly.
#[derive(Debug)]
pub struct PlayerTransfer {
    /// Stable network id (kept across zones).
    pub net_id: NetId,
    /// Player name.
    pub name: String,
    /// The session's link (re-routed to the target before sending).
    pub link: Arc<ClientLink>,
    /// Position and velocity at hand-over.
    pub position: Vec2,
    /// Velocity at hand-over.
    pub velocity: Vec2,
    /// Max speed.
    pub max_speed: f32,
    /// Newest input applied.
    pub last_input_seq: u32,
    /// The client's replication state: ids are stable, so deltas simply continue.
    pub view: ClientView,
    /// The player's replicated components (restored through the game's registry).
    pub components: Vec<ComponentValue>,
    /// The versions of the player's saved records: the target zone continues the
    /// sequence, so its saves are newer than any the source zone made.
    pub versions: RecordVersions,
    /// The player comes from another node: its client connects here anew and is
    /// welcomed (with its entity's id) instead of told of a zone change.
    pub from_other_node: bool,
}

/// A message for a zone.
#[derive(Debug)]
pub enum ZoneMessage {
    /// A new session wants a player entity at `spawn`.
    Join {
        /// The session's link; the zone answers with `Welcome` on it.
        link: Arc<ClientLink>,
        /// Where the player appears (clamped into the zone).
        spawn: Vec2,
        /// The player's saved game data (persistent components), if any.
        saved: Option<bytes::Bytes>,
        /// The versions this session gives the player's records (a generation above
        /// the record it loaded).
        versions: RecordVersions,
    },
    /// Inputs and acknowledgements from a player's datagram.
    Input {
        /// Which session sent them.
        session: SessionId,
        /// Snapshot acknowledgement.
        ack: Ack,
        /// Inputs, newest first.
        inputs: Vec<InputFrame>,
    },
    /// A player crossing in from a neighbour.
    TransferIn(Box<PlayerTransfer>),
    /// A reliable game event from a player.
    GameEvent {
        /// Which session sent it.
        session: SessionId,
        /// Game-defined kind.
        kind: u16,
        /// Game-defined payload.
        payload: Vec<u8>,
    },
    /// A durable action already committed to the store, for the game to apply to
    /// the player's entity.
    DurableAction {
        /// The acting player's session (followed if the player changed zone).
        link: Arc<ClientLink>,
        /// The action.
        action: CommittedAction,
        /// Times this message was forwarded after the player moved on.
        hops: u8,
        /// Keeps the player from crossing to another node until the action is
        /// applied (dropped with the message).
        in_flight: ActionInFlight,
    },
    /// A neighbour's entities near the shared border, replacing its previous batch.
    Ghosts {
        /// The neighbour, its epoch and tick (on this node or another).
        origin: GhostOrigin,
        /// Its entities within the ghost margin.
        states: Vec<ReplicatedState>,
    },
}

/// A committed durable action's game-visible parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedAction {
    /// Its id.
    pub id: u128,
    /// Game-defined kind.
    pub kind: u16,
    /// Game-defined payload.
    pub payload: Vec<u8>,
}

/// Counts of messages refused because an inbox was full.
#[derive(Debug, Default)]
pub struct InboxDrops {
    /// Inputs dropped.
    pub inputs: AtomicU64,
    /// Ghost batches dropped.
    pub ghosts: AtomicU64,
    /// Joins refused.
    pub joins: AtomicU64,
    /// Transfers deferred.
    pub transfers: AtomicU64,
}

/// Finds each zone's inbox. Built once at start; cheap to share.
#[derive(Debug)]
pub struct ZoneRouter {
    inboxes: HashMap<ZoneId, SyncSender<ZoneMessage>>,
    drops: InboxDrops,
    /// The worker ticking each active zone, to wake for messages that should not wait
    /// for the next tick.
    wakers: std::sync::Mutex<HashMap<ZoneId, WorkerWaker>>,
}

/// Wakes one zone worker between ticks.
#[derive(Debug, Clone)]
pub struct WorkerWaker {
    /// The worker's thread.
    pub thread: std::thread::Thread,
    /// Set before unparking: the worker handles pending messages, then sleeps on.
    pub pending: Arc<std::sync::atomic::AtomicBool>,
}

impl WorkerWaker {
    /// Asks the worker to handle its zones' pending messages now.
    pub fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Why a message could not be delivered.
#[derive(Debug)]
pub enum SendError {
    /// No such zone on this node.
    UnknownZone(ZoneMessage),
    /// The zone's inbox is full.
    Full(ZoneMessage),
    /// The zone has stopped.
    Stopped(ZoneMessage),
}

impl ZoneRouter {
    /// Creates an inbox of `capacity` messages for each zone.
    pub fn new(
        zones: impl IntoIterator<Item = ZoneId>,
        capacity: usize,
    ) -> (Self, HashMap<ZoneId, Receiver<ZoneMessage>>) {
        let mut inboxes = HashMap::new();
        let mut receivers = HashMap::new();
        for z in zones {
            let (tx, rx) = sync_channel(capacity);
            inboxes.insert(z, tx);
            receivers.insert(z, rx);
        }
        let router = Self {
            inboxes,
            drops: InboxDrops::default(),
            wakers: std::sync::Mutex::default(),
        };
        (router, receivers)
    }

    /// Records which worker ticks `zone` (when it is handed to one).
    pub fn set_waker(&self, zone: ZoneId, waker: WorkerWaker) {
        crate::link::lock(&self.wakers).insert(zone, waker);
    }

    /// Wakes `zone`'s worker so the zone looks at its inbox and status before its next
    /// tick (a handoff asking it to freeze).
    pub fn wake(&self, zone: ZoneId) {
        if let Some(waker) = crate::link::lock(&self.wakers).get(&zone) {
            waker.wake();
        }
    }

    /// Like [`Self::send`], then wakes the zone's worker so the message is handled
    /// before the next tick (requests a player is waiting on).
    pub fn send_now(&self, zone: ZoneId, msg: ZoneMessage) -> Result<(), SendError> {
        self.send(zone, msg)?;
        self.wake(zone);
        Ok(())
    }

    /// Delivers `msg` to `zone` without blocking, counting refusals by kind.
    pub fn send(&self, zone: ZoneId, msg: ZoneMessage) -> Result<(), SendError> {
        let Some(tx) = self.inboxes.get(&zone) else {
            return Err(SendError::UnknownZone(msg));
        };
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msg)) => {
                self.count_drop(&msg);
                Err(SendError::Full(msg))
            }
            Err(TrySendError::Disconnected(msg)) => Err(SendError::Stopped(msg)),
        }
    }

    fn count_drop(&self, msg: &ZoneMessage) {
        let counter = match msg {
            ZoneMessage::Input { .. }
            | ZoneMessage::GameEvent { .. }
            | ZoneMessage::DurableAction { .. } => &self.drops.inputs,
            ZoneMessage::Ghosts { .. } => &self.drops.ghosts,
            ZoneMessage::Join { .. } => &self.drops.joins,
            ZoneMessage::TransferIn(_) => &self.drops.transfers,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusal counters.
    pub fn drops(&self) -> &InboxDrops {
        &self.drops
    }
}
