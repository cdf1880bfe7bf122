//! What the SDK tells the game: [`Event`]s, why a session ended ([`DisconnectReason`]),
//! and the bounded queue events wait in until the game takes them.

use std::collections::VecDeque;
use std::fmt;
use zonemesh_shared::control::ErrorCode;
use zonemesh_shared::ids::{NetId, ZoneId};

/// Something that happened to the session or the replicated world.
///
/// Entity events are hints: the [`Replica`](crate::Replica) is always the authority on
/// what is visible, so a game that drops or ignores them can still render correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An entity came into view.
    Spawned {
        /// Its network id.
        id: NetId,
        /// Its game-defined kind.
        kind: u16,
    },
    /// A visible entity's position or components changed.
    Updated {
        /// Its network id.
        id: NetId,
    },
    /// An entity left the view (or the world).
    Despawned {
        /// Its network id.
        id: NetId,
    },
    /// The player moved into another zone: on the same connection, or with a move to
    /// the node serving that zone (see [`Client`](crate::Client#moving-between-nodes)).
    ZoneChanged {
        /// The zone the player is now in.
        zone: ZoneId,
    },
    /// A reliable game event from the server.
    GameEvent {
        /// Game-defined kind.
        kind: u16,
        /// Game-defined payload.
        payload: Vec<u8>,
    },
    /// A durable action sent with
    /// [`Client::send_durable_action`](crate::Client::send_durable_action) is stored on
    /// the server: it will not be lost, whatever happens next.
    ActionCommitted {
        /// The action's id.
        id: u128,
    },
    /// A durable action was not stored and had no effect. With code `Busy` the same
    /// action may be sent again (same id) later.
    ActionRejected {
        /// The action's id.
        id: u128,
        /// Why.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// The session ended and the client started a new one by itself
    /// ([`ClientConfig::auto_reconnects`](crate::ClientConfig::auto_reconnects)): the
    /// replica starts over and the player may have a new id; the old session's
    /// `Disconnected` came just before.
    Reconnected {
        /// The player's entity in the new session.
        player: NetId,
        /// The zone it is in.
        zone: ZoneId,
    },
    /// The session ended; the last event unless a `Reconnected` follows.
    Disconnected(DisconnectReason),
}

/// Who or what ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectKind {
    /// The server ended it (an `Error` frame or an application close).
    Server,
    /// This client ended it (`close`, a dropped client, or a protocol error it detected).
    Local,
    /// Nothing was heard from the server for the idle timeout.
    TimedOut,
    /// The transport failed (reset, QUIC-level error).
    Lost,
    /// The session's node handed the player to another node, and following it there
    /// failed: the new node refused (the reason's code says why) or did not welcome
    /// the player in time ([`ClientConfig::move_deadline`](crate::ClientConfig::move_deadline)),
    /// or the redirects passed the hop limit (code [`ErrorCode::ZoneMoved`] then). The
    /// player is safe on the servers: a new session ([`Client::reconnect`](crate::Client::reconnect))
    /// brings it back from its last save.
    MoveFailed,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectReason {
    /// The server's code; [`ErrorCode::Internal`] when the transport failed without one.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// Who or what ended the session.
    pub kind: DisconnectKind,
}

impl DisconnectReason {
    /// A reason with the given parts.
    pub fn new(code: ErrorCode, message: impl Into<String>, kind: DisconnectKind) -> Self {
        Self {
            code,
            message: message.into(),
            kind,
        }
    }

    /// Whether connecting again may well succeed: the node went away or stopped, the
    /// zone moved to another node, a move to another node failed, or the transport
    /// failed. Not for a refusal of this client (authentication, a flood, a protocol
    /// violation, being replaced by a newer session of the same player) or an end this
    /// client asked for.
    pub fn can_reconnect(&self) -> bool {
        match self.kind {
            DisconnectKind::Local => false,
            DisconnectKind::TimedOut | DisconnectKind::Lost | DisconnectKind::MoveFailed => true,
            DisconnectKind::Server => matches!(
                self.code,
                ErrorCode::ZoneMoved
                    | ErrorCode::ServerShutdown
                    | ErrorCode::Internal
                    | ErrorCode::Busy
            ),
        }
    }

    /// Maps how quinn saw the connection end. An application close carries the
    /// server's [`ErrorCode`] as its code and a reason text.
    pub fn from_connection_error(error: &quinn::ConnectionError) -> Self {
        use quinn::ConnectionError as E;
        match error {
            E::ApplicationClosed(close) => Self::new(
                close_code(close.error_code),
                String::from_utf8_lossy(&close.reason),
                DisconnectKind::Server,
            ),
            E::LocallyClosed => {
                Self::new(ErrorCode::Normal, "closed locally", DisconnectKind::Local)
            }
            E::TimedOut => Self::new(
                ErrorCode::Internal,
                "no answer from the server within the idle timeout",
                DisconnectKind::TimedOut,
            ),
            other => Self::new(ErrorCode::Internal, other.to_string(), DisconnectKind::Lost),
        }
    }
}

/// The [`ErrorCode`] for a QUIC application close code; unknown or oversized codes map
/// to [`ErrorCode::Internal`].
pub(crate) fn close_code(code: quinn::VarInt) -> ErrorCode {
    u16::try_from(code.into_inner()).map_or(ErrorCode::Internal, ErrorCode::from_u16)
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?})", self.code, self.kind)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// The bounded queue of events waiting for the game.
///
/// Policy when full (every drop is counted in [`EventQueue::dropped`]):
/// 1. the oldest queued `Updated` goes first (the replica still holds the state);
/// 2. if none is queued and the new event is an `Updated`, the new event is dropped;
/// 3. otherwise the oldest event goes.
///
/// `Disconnected` is never dropped and never makes room: it may exceed the capacity
/// by one, and nothing is queued after it.
#[derive(Debug)]
pub(crate) struct EventQueue {
    events: VecDeque<Event>,
    capacity: usize,
    dropped: u64,
    closed: bool,
}

impl EventQueue {
    /// An empty queue holding at most `capacity` events (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            events: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            dropped: 0,
            closed: false,
        }
    }

    /// Queues an event, applying the overflow policy.
    pub(crate) fn push(&mut self, event: Event) {
        if self.closed {
            return;
        }
        if matches!(event, Event::Disconnected(_)) {
            self.closed = true;
            self.events.push_back(event);
            return;
        }
        if self.events.len() >= self.capacity && !self.make_room(&event) {
            self.dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    /// Frees one slot for `incoming`; false when `incoming` itself should be dropped.
    fn make_room(&mut self, incoming: &Event) -> bool {
        let victim = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Updated { .. }));
        match victim {
            Some(i) => {
                self.events.remove(i);
            }
            None if matches!(incoming, Event::Updated { .. }) => return false,
            None => {
                self.events.pop_front();
            }
        }
        self.dropped += 1;
        true
    }

    /// The oldest queued event.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Events queued now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Events dropped by the overflow policy so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// True once `Disconnected` was queued.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn updated(n: u64) -> Event {
        Event::Updated { id: NetId(n) }
    }

    fn game(n: u16) -> Event {
        Event::GameEvent {
            kind: n,
            payload: vec![],
        }
    }

    fn bye() -> Event {
        Event::Disconnected(DisconnectReason::new(
            ErrorCode::Normal,
            "bye",
            DisconnectKind::Server,
        ))
    }

    fn drain(q: &mut EventQueue) -> Vec<Event> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn overflow_drops_oldest_updated_first() {
        let mut q = EventQueue::new(3);
        q.push(updated(1));
        q.push(game(1));
        q.push(updated(2));
        q.push(game(2));
        assert_eq!(q.dropped(), 1);
        assert_eq!(drain(&mut q), vec![game(1), updated(2), game(2)]);
    }

    #[test]
    fn overflow_without_updates_drops_new_update_or_oldest_event() {
        let mut q = EventQueue::new(2);
        q.push(game(1));
        q.push(game(2));
        q.push(updated(9));
        assert_eq!(q.dropped(), 1);
        q.push(game(3));
        assert_eq!(q.dropped(), 2);
        assert_eq!(drain(&mut q), vec![game(2), game(3)]);
    }

    #[test]
    fn disconnected_is_never_dropped_and_ends_the_queue() {
        let mut q = EventQueue::new(2);
        q.push(updated(1));
        q.push(updated(2));
        q.push(bye());
        q.push(updated(3));
        assert!(q.is_closed());
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 0);
        assert_eq!(drain(&mut q), vec![updated(1), updated(2), bye()]);
    }

    #[test]
    fn close_codes_map_to_error_codes() {
        assert_eq!(
            close_code(quinn::VarInt::from_u32(4)),
            ErrorCode::AuthFailed
        );
        assert_eq!(
            close_code(quinn::VarInt::from_u32(70_000)),
            ErrorCode::Internal
        );
        let closed = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(11),
            reason: bytes::Bytes::from_static(b"again"),
        });
        let reason = DisconnectReason::from_connection_error(&closed);
        assert_eq!(reason.code, ErrorCode::Replaced);
        assert_eq!(reason.message, "again");
        assert_eq!(reason.kind, DisconnectKind::Server);
        let timed_out = DisconnectReason::from_connection_error(&quinn::ConnectionError::TimedOut);
        assert_eq!(timed_out.kind, DisconnectKind::TimedOut);
    }
}
