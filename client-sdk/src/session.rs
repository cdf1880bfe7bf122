//! The sans-IO session core: everything a connected client decides, with no IO and
//! time passed in.
//!
//! Driving contract (what [`Client`](crate::Client) does):
//! - feed every received datagram to [`ClientCore::handle_datagram`], every control
//!   message to [`ClientCore::handle_control`], and the end of the connection to
//!   [`ClientCore::handle_disconnect`];
//! - send what [`ClientCore::input_datagram`] returns when the game has an input;
//! - whenever [`ClientCore::ack_deadline`] has passed, send what
//!   [`ClientCore::poll_ack`] returns, so the server learns which snapshots arrived
//!   even when the game sends no input;
//! - hand [`ClientCore::pop_event`] results to the game;
//! - when [`ClientCore::poll_move`] returns a request (the node sent `Redirect`
//!   mid-session), connect to the new node, feeding the old connection's data as
//!   before, then report [`ClientCore::handle_moved`] (and send the datagram it
//!   returns on the new connection) or [`ClientCore::handle_move_failed`].
//!
//! While a move is under way the old connection ending, or its node's `Error`, does not
//! end the session: the old node closes its side once it has handed the player over,
//! and the move decides how the session goes on.
//!
//! A snapshot is acknowledged only once it was applied completely: the server uses
//! acknowledged snapshots as delta baselines, so acknowledging one the replica does not
//! fully hold would make later deltas undecodable.

use crate::config::ReplicaScope;
use crate::error::ClientError;
use crate::events::{DisconnectKind, DisconnectReason, Event, EventQueue};
use crate::input::InputRing;
use crate::replica::Replica;
use std::fmt;
use std::time::{Duration, Instant};
use zonemesh_shared::control::{ErrorCode, ServerControl};
use zonemesh_shared::datagram::{Ack, ClientDatagram, Snapshot};
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::Vec2;

/// Longest the client stays silent while it has an acknowledgement the server has not
/// seen: without acks the server keeps sending deltas against old baselines.
pub(crate) const ACK_INTERVAL: Duration = Duration::from_millis(100);

/// What the server's `Welcome` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Welcome {
    /// The player's own entity.
    pub(crate) player: NetId,
    /// The zone the player is in (updated by `ZoneChanged`).
    pub(crate) zone: ZoneId,
    /// The server's simulation rate.
    pub(crate) tick_hz: u16,
}

/// A `Redirect` received after `Welcome`: the servers handed the player to the node at
/// `addr`, which waits for this client with `token`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MoveRequest {
    /// The new node, `host:port` or `ip:port`.
    pub(crate) addr: String,
    /// The token to present there.
    pub(crate) token: String,
}

impl fmt::Debug for MoveRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential: never print it.
        f.debug_struct("MoveRequest")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Whether the session is between nodes.
#[derive(Debug)]
enum MoveState {
    /// On one node.
    Settled,
    /// A `Redirect` arrived; the driver has not taken it yet.
    Requested(MoveRequest),
    /// The driver is connecting to the new node.
    Underway,
}

/// Tuning the core takes from the client configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreConfig {
    /// Inputs per datagram (newest plus unacknowledged older ones).
    pub(crate) input_redundancy: usize,
    /// Events queued before the overflow policy applies.
    pub(crate) event_queue_capacity: usize,
    /// Interpolation delay, in ticks.
    pub(crate) interpolation_delay_ticks: f64,
    /// Which entities the replica keeps.
    pub(crate) replica_scope: ReplicaScope,
}

/// Counters the core keeps; [`crate::ClientStats`] is built from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) datagrams_received: u64,
    pub(crate) snapshots: u64,
    pub(crate) stale_snapshots: u64,
    pub(crate) decode_errors: u64,
    pub(crate) datagrams_sent: u64,
    pub(crate) inputs_sent: u64,
    pub(crate) last_input_ack: u32,
}

/// One session's state after `Welcome`.
#[derive(Debug)]
pub(crate) struct ClientCore {
    welcome: Welcome,
    replica: Replica,
    events: EventQueue,
    inputs: InputRing,
    /// Snapshots received and applied completely.
    ack: Ack,
    /// The acknowledgement carried by the last datagram sent.
    ack_sent: Ack,
    last_sent_at: Instant,
    newest_snapshot_at: Option<Instant>,
    counters: Counters,
    disconnect: Option<DisconnectReason>,
    /// A move to another node, requested or under way.
    moving: MoveState,
}

impl ClientCore {
    /// A core for a session welcomed at `now`.
    pub(crate) fn new(welcome: Welcome, config: CoreConfig, now: Instant) -> Self {
        let mut replica = Replica::new(config.interpolation_delay_ticks);
        if config.replica_scope == ReplicaScope::OwnEntity {
            replica.keep_only(welcome.player);
        }
        Self {
            welcome,
            replica,
            events: EventQueue::new(config.event_queue_capacity),
            inputs: InputRing::new(config.input_redundancy),
            ack: Ack::default(),
            ack_sent: Ack::default(),
            last_sent_at: now,
            newest_snapshot_at: None,
            counters: Counters::default(),
            disconnect: None,
            moving: MoveState::Settled,
        }
    }

    /// Decodes and applies a snapshot datagram. Malformed bytes are counted, never fatal:
    /// a datagram is one lost packet's worth of state.
    pub(crate) fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        if self.disconnect.is_some() {
            return;
        }
        self.counters.datagrams_received += 1;
        let snapshot = match Snapshot::decode(bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable snapshot datagram");
                self.counters.decode_errors += 1;
                return;
            }
        };
        let report = self.replica.apply(&snapshot, &mut self.events);
        self.counters.decode_errors += u64::from(report.errors);
        if !report.accepted {
            self.counters.stale_snapshots += 1;
            return;
        }
        self.counters.snapshots += 1;
        if report.newest {
            self.newest_snapshot_at = Some(now);
            self.counters.last_input_ack = snapshot.header.input_ack;
            self.inputs.acknowledge(snapshot.header.input_ack);
        }
        if report.complete {
            self.ack.record(snapshot.header.seq);
        }
    }

    /// Handles a control message received after `Welcome`.
    pub(crate) fn handle_control(&mut self, msg: ServerControl) {
        if self.disconnect.is_some() {
            return;
        }
        match msg {
            ServerControl::ZoneChanged { zone } => {
                self.welcome.zone = zone;
                self.events.push(Event::ZoneChanged { zone });
            }
            ServerControl::GameEvent { kind, payload } => {
                self.events.push(Event::GameEvent { kind, payload });
            }
            ServerControl::ActionCommitted { id } => {
                self.events.push(Event::ActionCommitted { id });
            }
            ServerControl::ActionRejected { id, code, message } => {
                self.events
                    .push(Event::ActionRejected { id, code, message });
            }
            ServerControl::Error { code, message } => self.handle_server_error(code, message),
            ServerControl::Redirect { addr, token } => self.handle_redirect(addr, token),
            other @ (ServerControl::Welcome { .. }
            | ServerControl::Loading { .. }
            | ServerControl::Busy { .. }) => {
                // Handshake answers have no meaning mid-session; ignore rather than drop
                // a working session over a server quirk.
                tracing::warn!(?other, "ignoring handshake message received mid-session");
                self.counters.decode_errors += 1;
            }
        }
    }

    /// The node's `Error`: the session ends, unless a move is under way.
    fn handle_server_error(&mut self, code: ErrorCode, message: String) {
        if self.is_moving() {
            // The old node may say goodbye once it has handed the player over.
            tracing::debug!(?code, message, "old node ended its side during a move");
            return;
        }
        let reason = DisconnectReason::new(code, message, DisconnectKind::Server);
        self.handle_disconnect(reason);
    }

    /// A `Redirect` after `Welcome`: the servers moved the player to another node.
    fn handle_redirect(&mut self, addr: String, token: String) {
        if self.is_moving() {
            // One move at a time; the one under way follows the redirects it is given.
            tracing::debug!(
                addr,
                "ignoring a redirect on the old connection during a move"
            );
            return;
        }
        tracing::debug!(addr, "the node moved the player elsewhere");
        self.moving = MoveState::Requested(MoveRequest { addr, token });
    }

    /// The move to start, once: the driver connects to the new node and later reports
    /// [`ClientCore::handle_moved`] or [`ClientCore::handle_move_failed`].
    pub(crate) fn poll_move(&mut self) -> Option<MoveRequest> {
        match std::mem::replace(&mut self.moving, MoveState::Underway) {
            MoveState::Requested(request) => Some(request),
            other => {
                self.moving = other;
                None
            }
        }
    }

    /// Whether a move to another node is requested or under way.
    pub(crate) fn is_moving(&self) -> bool {
        !matches!(self.moving, MoveState::Settled)
    }

    /// The connection to the node ended. The session ends with it, unless a move is
    /// under way: the old node closes its side once it has handed the player over.
    pub(crate) fn handle_connection_lost(&mut self, reason: DisconnectReason) {
        if self.is_moving() {
            tracing::debug!(%reason, "old connection ended during a move");
            return;
        }
        self.handle_disconnect(reason);
    }

    /// The new node welcomed the player: the session goes on there with the same
    /// replica, inputs and acknowledgements (the new node continues the snapshot
    /// sequence and knows what this client holds). Queues `ZoneChanged` if the zone
    /// differs. Returns the first datagram for the new node: the acknowledgement and
    /// the unacknowledged inputs, so it has them before the game's next input.
    pub(crate) fn handle_moved(&mut self, now: Instant, welcome: Welcome) -> Option<Vec<u8>> {
        // Ending the session settles any move, so a move never completes after it.
        assert!(
            matches!(self.moving, MoveState::Underway),
            "a move completed that was not under way"
        );
        assert_eq!(
            welcome.player, self.welcome.player,
            "a move must keep the player"
        );
        self.moving = MoveState::Settled;
        if welcome.zone != self.welcome.zone {
            self.events.push(Event::ZoneChanged { zone: welcome.zone });
        }
        self.welcome = welcome;
        let inputs = self.inputs.datagram_inputs();
        if inputs.is_empty() && !self.ack.any {
            return None;
        }
        let datagram = ClientDatagram::Input {
            ack: self.ack,
            inputs,
        };
        self.mark_sent(now);
        Some(datagram.encode())
    }

    /// The move failed: the session ends for `reason`.
    pub(crate) fn handle_move_failed(&mut self, reason: DisconnectReason) {
        assert!(
            matches!(self.moving, MoveState::Underway),
            "a move failed that was not under way"
        );
        self.handle_disconnect(reason);
    }

    /// Records the end of the session (only the first reason counts). A move under way
    /// is over too.
    pub(crate) fn handle_disconnect(&mut self, reason: DisconnectReason) {
        self.moving = MoveState::Settled;
        if self.disconnect.is_some() {
            return;
        }
        tracing::debug!(%reason, "session ended");
        self.events.push(Event::Disconnected(reason.clone()));
        self.disconnect = Some(reason);
    }

    /// Numbers a new input and encodes the datagram carrying it, the unacknowledged
    /// inputs before it, and the current acknowledgement.
    pub(crate) fn input_datagram(
        &mut self,
        now: Instant,
        velocity: Vec2,
        buttons: u8,
    ) -> Result<(u32, Vec<u8>), ClientError> {
        self.ensure_open()?;
        if !velocity.is_finite() {
            return Err(ClientError::InvalidInput(format!(
                "velocity must be finite, got {velocity:?}"
            )));
        }
        let frame = self.inputs.push(velocity, buttons);
        let datagram = ClientDatagram::Input {
            ack: self.ack,
            inputs: self.inputs.datagram_inputs(),
        };
        self.counters.inputs_sent += 1;
        self.mark_sent(now);
        Ok((frame.seq, datagram.encode()))
    }

    /// An ack-only datagram if one is due at `now` (see [`ClientCore::ack_deadline`]).
    pub(crate) fn poll_ack(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.ack_deadline().is_none_or(|deadline| now < deadline) {
            return None;
        }
        let datagram = ClientDatagram::Input {
            ack: self.ack,
            inputs: Vec::new(),
        };
        self.mark_sent(now);
        Some(datagram.encode())
    }

    /// When an ack-only datagram is due: [`ACK_INTERVAL`] after the last datagram, if
    /// the acknowledgement changed since it was sent; `None` if nothing is owed.
    pub(crate) fn ack_deadline(&self) -> Option<Instant> {
        let owed = self.disconnect.is_none() && self.ack.any && self.ack != self.ack_sent;
        owed.then(|| self.last_sent_at + ACK_INTERVAL)
    }

    fn mark_sent(&mut self, now: Instant) {
        self.ack_sent = self.ack;
        self.last_sent_at = now;
        self.counters.datagrams_sent += 1;
    }

    /// `Err(Closed)` once the session has ended.
    pub(crate) fn ensure_open(&self) -> Result<(), ClientError> {
        match &self.disconnect {
            Some(reason) => Err(ClientError::Closed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The oldest event waiting for the game.
    pub(crate) fn pop_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Why the session ended, once it has.
    pub(crate) fn disconnect_reason(&self) -> Option<&DisconnectReason> {
        self.disconnect.as_ref()
    }

    /// Closes the session locally for a protocol error the client detected.
    pub(crate) fn protocol_violation(&mut self, code: ErrorCode, message: String) {
        self.handle_disconnect(DisconnectReason::new(code, message, DisconnectKind::Local));
    }

    pub(crate) fn welcome(&self) -> Welcome {
        self.welcome
    }

    pub(crate) fn replica(&self) -> &Replica {
        &self.replica
    }

    pub(crate) fn counters(&self) -> Counters {
        self.counters
    }

    pub(crate) fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }

    /// When the newest snapshot arrived.
    pub(crate) fn newest_snapshot_at(&self) -> Option<Instant> {
        self.newest_snapshot_at
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
