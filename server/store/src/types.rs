//! The records the store keeps: zone state, player records and durable actions, plus the
//! inputs and outputs of the fenced operations.

use std::fmt;

use bytes::Bytes;

/// A zone's saved state as read back from the store.
///
/// `state` is opaque to the store: the server encodes (and versions) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRecord {
    /// The epoch of the owner that wrote this record.
    pub epoch: u64,
    /// The zone's tick when the state was captured.
    pub tick: u64,
    /// Wall-clock time of the capture, milliseconds since the Unix epoch (informational).
    pub saved_at_unix_ms: u64,
    /// The encoded zone state, at most [`MAX_ZONE_STATE_BYTES`](crate::limits::MAX_ZONE_STATE_BYTES).
    pub state: Bytes,
}

/// A zone's state as handed to [`Store::checkpoint`](crate::Store::checkpoint).
///
/// It has no epoch of its own: the store stamps it with the epoch the write is fenced by,
/// so a record can never claim an epoch its writer did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSnapshot {
    /// The zone's tick when the state was captured.
    pub tick: u64,
    /// Wall-clock time of the capture, milliseconds since the Unix epoch (informational).
    pub saved_at_unix_ms: u64,
    /// The encoded zone state.
    pub state: Bytes,
}

impl ZoneSnapshot {
    /// The record this snapshot becomes when written at `epoch`.
    pub fn into_record(self, epoch: u64) -> ZoneRecord {
        ZoneRecord {
            epoch,
            tick: self.tick,
            saved_at_unix_ms: self.saved_at_unix_ms,
            state: self.state,
        }
    }
}

/// The durable part of one player: where it is and the game's opaque data.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayerRecord {
    /// The player's name (unique key), at most [`MAX_NAME_BYTES`](crate::limits::MAX_NAME_BYTES).
    pub player: String,
    /// The zone the player is in (`ZoneId` wire value). A fenced write of zone `z` may
    /// only carry records with `zone == z`.
    pub zone: u32,
    /// Position in world units; must be finite.
    pub x: f32,
    /// Position in world units; must be finite.
    pub y: f32,
    /// Opaque game data for the player.
    pub data: Bytes,
    /// Wall-clock time of the save, milliseconds since the Unix epoch (informational).
    pub updated_at_unix_ms: u64,
    /// Orders the records of one player: a write is applied only over a stored record
    /// with a strictly lower version (see [`Store`](crate::Store)), so a stale writer
    /// can never replace newer progress. The store gives it no meaning beyond the
    /// order; the server composes it from a session generation and a sequence. At most
    /// [`MAX_STORED_U64`](crate::limits::MAX_STORED_U64) (PostgreSQL keeps it in a
    /// `BIGINT`); records written before versions existed read back as 0.
    pub version: u64,
}

/// The identity of a durable action: committing the same id twice is a no-op.
///
/// Actions are listed in ascending id order, so time-ordered ids (ULID-style) list in
/// commit order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionId(pub u128);

impl ActionId {
    /// The id as 16 big-endian bytes (the order-preserving form stored in Postgres).
    pub fn to_be_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id from 16 big-endian bytes.
    pub fn from_be_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }
}

impl fmt::Debug for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionId({:032x})", self.0)
    }
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// An action the game marks durable: acknowledged to the player only after commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableAction {
    /// Idempotency key.
    pub id: ActionId,
    /// The player the action belongs to.
    pub player: String,
    /// The zone that committed it; must equal the zone the write is fenced by.
    pub zone: u32,
    /// Game-defined action kind.
    pub kind: u16,
    /// Game-defined payload, at most [`MAX_ACTION_PAYLOAD_BYTES`](crate::limits::MAX_ACTION_PAYLOAD_BYTES).
    pub payload: Bytes,
}

/// What [`Store::commit_action`](crate::Store::commit_action) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionCommit {
    /// The action was new and is now durable.
    Committed,
    /// An action with this id was committed before; nothing changed. Carries the
    /// original, which may differ from what was just submitted.
    AlreadyCommitted(DurableAction),
}

/// The result of taking ownership of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// The new epoch (previous + 1, starting at 1). Every write of this owner carries it.
    pub epoch: u64,
    /// The zone's saved state, if any, read in the same transaction as the epoch bump.
    pub record: Option<ZoneRecord>,
}

/// What a player-writing call ([`Store::checkpoint`](crate::Store::checkpoint),
/// [`Store::save_players`](crate::Store::save_players)) did with the records it was
/// given: every record was written except those listed here, which the store refused
/// because it already held a record of that player with an equal or higher version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveOutcome {
    /// Players whose record was refused as stale, in name order (empty when every
    /// record was written).
    pub stale_players: Vec<String>,
}

impl SaveOutcome {
    /// True when every record was written.
    pub fn is_complete(&self) -> bool {
        self.stale_players.is_empty()
    }
}

/// One atomic checkpoint of a zone: its state (optional) and its players.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// The zone state; `None` keeps the stored state as it is.
    pub zone_state: Option<ZoneSnapshot>,
    /// Player records to upsert, at most [`MAX_PLAYERS_PER_BATCH`](crate::limits::MAX_PLAYERS_PER_BATCH).
    pub players: Vec<PlayerRecord>,
}
