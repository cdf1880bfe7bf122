//! [`Client`]: the async session handle. It owns the QUIC connection and the sans-IO
//! [`ClientCore`], and moves bytes between them.
//!
//! There is no background task. quinn's own buffers are the bounded queues between the
//! network and the game: received datagrams wait in quinn's datagram buffer
//! ([`ClientConfig::datagram_receive_buffer_bytes`], oldest dropped when full) and
//! control frames in the stream's flow-control window (the server is slowed down, then
//! disconnects a client that never reads). Every call that reads (`next_event`,
//! `try_next_event`, `drain_events`, `update`, `wait_snapshot`) first processes
//! whatever has arrived, so the replica, the events and the acknowledgements always
//! describe exactly what the game has processed, and `replica()` is a plain borrow.
//!
//! A move to another node mid-session (`client_move.rs`) keeps that design: the move's
//! connection attempts are one stored future that every pumping call polls, so a move
//! advances exactly when the game calls the client, and cancelling a call loses nothing.

use crate::config::ClientConfig;
use crate::connect::{self, Established, READ_CHUNK};
use crate::error::ClientError;
use crate::events::{DisconnectReason, Event};
use crate::replica::Replica;
use crate::route::RouteStats;
use crate::session::ClientCore;
use bytes::Bytes;
use quinn::{Connection, ReadError, RecvStream, SendDatagramError, SendStream, VarInt};
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use zonemesh_shared::codec::DecodeError;
use zonemesh_shared::control::{
    ClientControl, ErrorCode, FrameDecoder, GAME_EVENT_MAX, ServerControl,
};
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::Vec2;

#[path = "client_move.rs"]
mod moving;

use moving::Moving;

/// Most datagrams processed per call, so one call never runs unbounded while a flood
/// arrives; the rest wait for the next call.
const DATAGRAMS_PER_PUMP_MAX: usize = 1024;
/// Most control-stream reads per call (each up to [`READ_CHUNK`] bytes).
const CONTROL_READS_PER_PUMP_MAX: usize = 64;
/// How long `close` waits for the server to take the `Goodbye`, and then for the
/// endpoint to send the close.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Snapshot datagrams applied (fully or partly).
    pub snapshots: u64,
    /// Snapshot datagrams dropped whole as too old.
    pub stale_snapshots: u64,
    /// Datagrams received and processed.
    pub datagrams_received: u64,
    /// Datagrams sent (inputs and ack-only).
    pub datagrams_sent: u64,
    /// Inputs sent (each counted once, however many datagrams repeated it).
    pub inputs_sent: u64,
    /// The newest input sequence number the server reported applied.
    pub last_input_ack: u32,
    /// Undecodable datagrams, skipped records and out-of-place messages.
    pub decode_errors: u64,
    /// Events dropped by the queue's overflow policy.
    pub events_dropped: u64,
    /// UDP payload bytes received on this connection (QUIC overhead included). A move
    /// to another node starts a new connection, and these over.
    pub bytes_down: u64,
    /// UDP payload bytes sent on this connection (QUIC overhead included).
    pub bytes_up: u64,
}

/// A reader of a new connection's control stream, with the frames already read.
fn control_reader(recv: RecvStream, decoder: FrameDecoder) -> ControlReader {
    ControlReader {
        recv,
        decoder,
        buf: vec![0; READ_CHUNK].into_boxed_slice(),
        open: true,
    }
}

/// The receiving half of the control stream.
struct ControlReader {
    recv: RecvStream,
    decoder: FrameDecoder,
    buf: Box<[u8]>,
    /// False once the stream ended or failed.
    open: bool,
}

/// What woke a waiting client.
enum Wake {
    Datagram(Result<Bytes, quinn::ConnectionError>),
    Control(Result<Option<usize>, ReadError>),
    AckDue,
    Moved(Box<Result<Established, ClientError>>),
}

/// A connected session with a ZoneMesh server.
///
/// Call [`Client::next_event`] (async) or [`Client::drain_events`] /
/// [`Client::try_next_event`] (each frame) to process what arrived; they also send the
/// snapshot acknowledgements the server needs. Dropping a client closes the
/// connection; [`Client::close`] does so politely.
///
/// # Moving between nodes
///
/// In a cluster, the servers may move a session to another node (the player walked
/// into a zone served elsewhere): the node sends `Redirect` on the control stream. The
/// client then connects to the new node while keeping the old connection
/// (make-before-break), and the calls that pump drive that move; in the meantime the
/// game goes on as usual (inputs keep their sequence numbers, snapshots from the old
/// node are still applied, [`Client::is_moving`] is true). When the new node welcomes
/// the same player the session switches to it: the replica, inputs, acknowledgements
/// and events carry on, [`Event::ZoneChanged`] is reported if the zone differs,
/// [`Client::moves`] and [`Client::node_changes`] count it, and the old connection is
/// closed. `Loading`/`Busy` answers are retried and further redirects followed within
/// [`ClientConfig::move_deadline`] and [`ClientConfig::max_redirects`]. If the move
/// fails, the session ends with a [`DisconnectKind::MoveFailed`](crate::DisconnectKind::MoveFailed) reason, which
/// [`ClientConfig::auto_reconnects`] and [`Client::reconnect`] treat as worth a new
/// session. Reliable sends ([`Client::send_game_event`], durable actions) wait for the
/// move to finish, so they reach the node that holds the player.
pub struct Client {
    conn: Connection,
    send: SendStream,
    control: ControlReader,
    core: ClientCore,
    /// How the connect got to this server.
    route: RouteStats,
    /// The endpoint this client created, drained on `close`; `None` when shared.
    owned_endpoint: Option<quinn::Endpoint>,
    /// The endpoint connections go out on (the owned one or the shared one).
    endpoint: quinn::Endpoint,
    /// How this client connects, for [`Client::reconnect`].
    config: ClientConfig,
    /// The QUIC and TLS configuration every connection of this client uses: it keeps
    /// the TLS sessions nodes issued, which later connections resume with 0-RTT.
    quic: quinn::ClientConfig,
    /// Sessions after the first (see [`Client::reconnect`]).
    reconnects: u32,
    /// Automatic reconnects since a session last showed the player.
    auto_reconnects_in_a_row: u32,
    /// A `Reconnected` to report after the `Disconnected` just returned.
    reconnected: Option<Event>,
    /// The TLS name of the node the session is on, for a move's redirects.
    server_name: String,
    /// False once the connection ended while a move was under way: nothing is read
    /// from or sent on it until the switch.
    conn_open: bool,
    /// The move to another node under way.
    moving: Option<Moving>,
    /// Mid-session moves completed.
    moves: u32,
    /// When the last completed move began and ended.
    last_move: Option<MoveTiming>,
}

/// When a completed mid-session move began and ended, by this client's clock: for a
/// game's telemetry of how long its players wait while their zone changes node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveTiming {
    /// The old node's `Redirect` was read and the client began connecting to the new one.
    pub redirected: Instant,
    /// The new node welcomed the player and the session switched to it. The first
    /// snapshot from the new node comes after.
    pub welcomed: Instant,
}

impl Client {
    /// Connects on a new endpoint of its own (bound to an ephemeral port), retrying and
    /// following redirects as [`ClientConfig`] allows. Must run inside a tokio runtime.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = Self::bind_endpoint(config.server)?;
        let quic = connect::quic_client_config(&config)?;
        let established = connect::establish(&endpoint, &config, &quic, None).await;
        let established = match established {
            Ok(e) => e,
            Err(e) => {
                endpoint.close(VarInt::from_u32(ErrorCode::Normal as u32), b"gave up");
                return Err(e);
            }
        };
        Ok(Self::from_established(
            established,
            config,
            quic,
            endpoint,
            true,
        ))
    }

    /// Connects over a shared endpoint, so many clients (a bot swarm) can use a few UDP
    /// sockets. The endpoint needs no default client configuration.
    pub async fn connect_with(
        endpoint: &quinn::Endpoint,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let quic = connect::quic_client_config(&config)?;
        let established = connect::establish(endpoint, &config, &quic, None).await?;
        Ok(Self::from_established(
            established,
            config,
            quic,
            endpoint.clone(),
            false,
        ))
    }

    /// A client endpoint on an ephemeral port of the same address family as `server`.
    pub fn bind_endpoint(server: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
        let bind: SocketAddr = if server.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        quinn::Endpoint::client(bind)
            .map_err(|e| ClientError::io(format!("cannot bind UDP socket {bind}"), e))
    }

    fn from_established(
        e: Established,
        config: ClientConfig,
        quic: quinn::ClientConfig,
        endpoint: quinn::Endpoint,
        owns_endpoint: bool,
    ) -> Self {
        let core = ClientCore::new(e.welcome, config.core_config(), Instant::now());
        tracing::debug!(player = %e.welcome.player, zone = %e.welcome.zone, "welcomed");
        let mut client = Self {
            conn: e.conn,
            send: e.send,
            control: control_reader(e.recv, e.decoder),
            core,
            route: e.route,
            owned_endpoint: owns_endpoint.then(|| endpoint.clone()),
            endpoint,
            config,
            quic,
            reconnects: 0,
            auto_reconnects_in_a_row: 0,
            reconnected: None,
            server_name: e.server_name,
            conn_open: true,
            moving: None,
            moves: 0,
            last_move: None,
        };
        // Frames that arrived in the same read as `Welcome`.
        client.dispatch_frames();
        client
    }

    /// Starts a new session for the same player after this one ended, as
    /// [`Client::connect`] does: the node it was on first, then the others it knows
    /// ([`ClientConfig::other_servers`]), following redirects, within the connect
    /// deadline. Meant for a session whose [`DisconnectReason::can_reconnect`] holds
    /// (its node stopped or died, or its zone moved to another node): the player comes
    /// back from its last saved state, wherever its zone is served now.
    ///
    /// The new session starts a new replica: what the old one showed is gone, and the
    /// player's entity may have a new [`NetId`] ([`Client::player`]). Durable actions
    /// whose answer did not arrive can be sent again with their ids. Refused while the
    /// session is still open.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        if self.core.disconnect_reason().is_none() {
            return Err(ClientError::InvalidInput(
                "the session is still open; reconnect after it ended".into(),
            ));
        }
        let mut config = self.config.clone();
        let here = self.conn.remote_address();
        if here != config.server {
            // The node the session was on goes first, the entry node after it.
            config.other_servers.retain(|a| *a != here);
            config.other_servers.insert(0, config.server);
            config.server = here;
        }
        let e = connect::establish(&self.endpoint, &config, &self.quic, Some(here)).await?;
        tracing::debug!(player = %e.welcome.player, zone = %e.welcome.zone, "welcomed again");
        self.core = ClientCore::new(e.welcome, self.config.core_config(), Instant::now());
        self.conn = e.conn;
        self.send = e.send;
        self.control = control_reader(e.recv, e.decoder);
        self.server_name = e.server_name;
        self.conn_open = true;
        self.moving = None;
        self.route.add(e.route);
        self.reconnects += 1;
        self.dispatch_frames();
        Ok(())
    }

    /// Sessions this client started after its first one ([`Client::reconnect`]).
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// The player's own entity.
    pub fn player(&self) -> NetId {
        self.core.welcome().player
    }

    /// The zone the player is in now.
    pub fn zone(&self) -> ZoneId {
        self.core.welcome().zone
    }

    /// The server's simulation rate, in ticks per second.
    pub fn tick_hz(&self) -> u16 {
        self.core.welcome().tick_hz
    }

    /// The replicated world, as of the last call that processed incoming data.
    pub fn replica(&self) -> &Replica {
        self.core.replica()
    }

    /// The tick to render now, advancing smoothly between snapshots (see
    /// [`Replica::render_tick_after`]).
    pub fn render_tick(&self) -> Option<f64> {
        let since = self
            .core
            .newest_snapshot_at()
            .map_or(Duration::ZERO, |t| t.elapsed());
        self.replica().render_tick_after(since, self.tick_hz())
    }

    /// quinn's current round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// The server address this session is connected to (after redirects): the node
    /// the session is on now.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// `Redirect` answers this client followed while connecting, over all its
    /// attempts, plus those of its completed mid-session moves (the `Redirect` that
    /// starts a move counts). At most [`ClientConfig::max_redirects`] per connect or
    /// move: one more ends a connect with [`ClientError::TooManyRedirects`] and fails a
    /// move.
    pub fn redirects_followed(&self) -> u32 {
        self.route.redirects_followed
    }

    /// How many times the session moved to another node, while connecting or in a
    /// completed mid-session move: each completed QUIC handshake with a different server
    /// address than the previous completed handshake counts once (a redirect or a
    /// retry that lands elsewhere). The first server reached does not count, nor does a
    /// redirect back to the same address or to an address that never answered. So a
    /// redirect from an entry node to the zone's owner gives `redirects_followed() == 1`
    /// and `node_changes() == 1`, and so does a move from one node to another.
    pub fn node_changes(&self) -> u32 {
        self.route.node_changes
    }

    /// Connections of this client (attempts of connects, reconnects and moves) whose
    /// `Hello` went in the first packet and the server took it: a TLS session from an
    /// earlier connection was resumed with 0-RTT. Nodes of a cluster share their TLS
    /// sessions, so the connection a `Redirect` or a move opens to another node is
    /// normally one of these, and is answered one round trip after its first packet
    /// (a redirect token is single-use, so the server answers at once); a `Hello` with
    /// a session token is answered once the handshake completed, as without 0-RTT.
    /// The first attempt of a client never resumes.
    pub fn zero_rtt_answers(&self) -> u32 {
        self.route.zero_rtt_answers
    }

    /// Mid-session moves to another node completed (see
    /// [`Client`](Client#moving-between-nodes)): sessions that went on on another
    /// connection with the same player and replica. Not counted in
    /// [`Client::reconnects`].
    pub fn moves(&self) -> u32 {
        self.moves
    }

    /// When the last completed mid-session move began (its `Redirect` read) and ended
    /// (the new node's `Welcome`); `None` before the first.
    pub fn last_move(&self) -> Option<MoveTiming> {
        self.last_move
    }

    /// Whether the session is moving to another node now: the old node sent
    /// `Redirect` and the new node has not welcomed the player yet. The game may go on
    /// as usual meanwhile.
    pub fn is_moving(&self) -> bool {
        self.moving.is_some()
    }

    /// Why the session ended, once it has.
    pub fn disconnect_reason(&self) -> Option<&DisconnectReason> {
        self.core.disconnect_reason()
    }

    /// Sequence number of the newest input the server has applied (as of the latest
    /// snapshot). Cheaper than [`Self::stats`], which also reads the transport's
    /// counters: meant for per-snapshot use, such as timing input round trips.
    pub fn last_input_ack(&self) -> u32 {
        self.core.counters().last_input_ack
    }

    /// The session's counters.
    pub fn stats(&self) -> ClientStats {
        let c = self.core.counters();
        let quic = self.conn.stats();
        ClientStats {
            snapshots: c.snapshots,
            stale_snapshots: c.stale_snapshots,
            datagrams_received: c.datagrams_received,
            datagrams_sent: c.datagrams_sent,
            inputs_sent: c.inputs_sent,
            last_input_ack: c.last_input_ack,
            decode_errors: c.decode_errors,
            events_dropped: self.core.events_dropped(),
            bytes_down: quic.udp_rx.bytes,
            bytes_up: quic.udp_tx.bytes,
        }
    }

    /// The next event, waiting for one; `None` after `Disconnected` was returned (and
    /// no automatic reconnect followed, see [`ClientConfig::auto_reconnects`]).
    /// Cancel-safe, except while it reconnects by itself: dropping it then drops the
    /// new connection, and the session stays ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        if let Some(event) = self.reconnected.take() {
            return Some(event);
        }
        loop {
            self.update();
            if let Some(event) = self.core.pop_event() {
                self.note_progress(&event);
                if let Event::Disconnected(reason) = &event
                    && self.should_reconnect(reason)
                {
                    self.reconnect_by_itself().await;
                }
                return Some(event);
            }
            if self.core.disconnect_reason().is_some() {
                return None;
            }
            self.wait_for_input().await;
        }
    }

    /// A session that showed the player counts as working: the automatic reconnects
    /// in a row start over.
    fn note_progress(&mut self, event: &Event) {
        if matches!(event, Event::Spawned { id, .. } if *id == self.player()) {
            self.auto_reconnects_in_a_row = 0;
        }
    }

    fn should_reconnect(&self, reason: &DisconnectReason) -> bool {
        reason.can_reconnect() && self.auto_reconnects_in_a_row < self.config.auto_reconnects
    }

    /// Starts a new session after the one that just ended; on success the
    /// `Reconnected` event is reported after the `Disconnected` being returned.
    async fn reconnect_by_itself(&mut self) {
        self.auto_reconnects_in_a_row += 1;
        match self.reconnect().await {
            Ok(()) => {
                self.reconnected = Some(Event::Reconnected {
                    player: self.player(),
                    zone: self.zone(),
                });
            }
            Err(e) => tracing::debug!(error = %e, "automatic reconnect failed"),
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.update();
        self.core.pop_event()
    }

    /// Appends every ready event to `out` without waiting; returns how many.
    pub fn drain_events(&mut self, out: &mut Vec<Event>) -> usize {
        self.update();
        let before = out.len();
        out.extend(std::iter::from_fn(|| self.core.pop_event()));
        out.len() - before
    }

    /// Processes everything received so far (replica updated, events queued), drives
    /// a move to another node, and sends a due acknowledgement. Never waits.
    pub fn update(&mut self) {
        let now = Instant::now();
        self.drive_move();
        self.read_ready_datagrams(now);
        self.read_ready_control();
        // A `Redirect` just read starts its move at once.
        self.drive_move();
        self.flush_ack(now);
    }

    /// Waits until at least one more snapshot has been applied; events stay queued.
    /// Cancel-safe.
    pub async fn wait_snapshot(&mut self) -> Result<(), ClientError> {
        let before = self.core.counters().snapshots;
        loop {
            self.update();
            if self.core.counters().snapshots > before {
                return Ok(());
            }
            self.core.ensure_open()?;
            self.wait_for_input().await;
        }
    }

    /// Sends a new input (desired velocity in world units per second, game-defined
    /// buttons) with the unacknowledged inputs before it and the current snapshot
    /// acknowledgement. Returns the input's sequence number. Never waits.
    pub fn send_input(&mut self, velocity: Vec2, buttons: u8) -> Result<u32, ClientError> {
        let (seq, datagram) = self
            .core
            .input_datagram(Instant::now(), velocity, buttons)?;
        self.send_datagram(datagram)?;
        Ok(seq)
    }

    /// Sends a reliable game event. Waits only if the server's flow control is full, or
    /// for a move to another node to finish (at most [`ClientConfig::move_deadline`]),
    /// so the event reaches the node that holds the player. Not cancel-safe:
    /// cancelling mid-write leaves a partial frame, which the server treats as a
    /// protocol violation (cancelling while a move is awaited is harmless).
    pub async fn send_game_event(
        &mut self,
        kind: u16,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.send_control(ClientControl::GameEvent { kind, payload })
            .await
    }

    /// Sends a game action that must not be lost (a trade, a loot pickup) and returns
    /// its id. The server stores it before applying it; [`Event::ActionCommitted`] with
    /// this id says it is stored, [`Event::ActionRejected`] that it had no effect. If
    /// neither arrives (the session ended, or moved to another node while the old one
    /// was refusing actions because the player was leaving), send it again with
    /// [`Self::send_durable_action_with_id`] and the same id: it is applied once.
    pub async fn send_durable_action(
        &mut self,
        kind: u16,
        payload: Vec<u8>,
    ) -> Result<u128, ClientError> {
        let id: u128 = rand::random();
        self.send_durable_action_with_id(id, kind, payload).await?;
        Ok(id)
    }

    /// Sends (or re-sends) durable action `id`; see [`Self::send_durable_action`].
    pub async fn send_durable_action_with_id(
        &mut self,
        id: u128,
        kind: u16,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.send_control(ClientControl::DurableAction { id, kind, payload })
            .await
    }

    async fn send_control(&mut self, msg: ClientControl) -> Result<(), ClientError> {
        // The old node no longer holds the player: what it received would be lost.
        self.settle_move().await;
        self.core.ensure_open()?;
        let payload_len = match &msg {
            ClientControl::GameEvent { payload, .. }
            | ClientControl::DurableAction { payload, .. } => payload.len(),
            ClientControl::Hello { .. } | ClientControl::Goodbye => 0,
        };
        if payload_len > GAME_EVENT_MAX {
            return Err(ClientError::InvalidInput(format!(
                "payload is {payload_len} bytes; at most {GAME_EVENT_MAX}"
            )));
        }
        match self.send.write_all(&msg.to_frame()).await {
            Ok(()) => Ok(()),
            Err(quinn::WriteError::ConnectionLost(e)) => Err(self.connection_lost(&e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the session politely: `Goodbye`, a short wait for the server to take it,
    /// then a `Normal` close; an owned endpoint is given a moment to send the close.
    /// A move to another node that has not finished is abandoned (the new node ends
    /// the session it held when the client does not come).
    pub async fn close(mut self) {
        self.drive_move();
        self.moving = None;
        if self.core.disconnect_reason().is_none() {
            let goodbye = ClientControl::Goodbye.to_frame();
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                self.send.write_all(&goodbye).await.ok()?;
                self.send.finish().ok()?;
                // The server answers Goodbye by closing; waiting lets the frame arrive.
                self.conn.closed().await;
                Some(())
            })
            .await;
        }
        self.conn.close(normal_code(), b"goodbye");
        if let Some(endpoint) = &self.owned_endpoint {
            let _ = tokio::time::timeout(CLOSE_LINGER, endpoint.wait_idle()).await;
        }
    }

    /// Waits until a datagram or control bytes arrive, or an acknowledgement is due,
    /// and processes what woke it.
    async fn wait_for_input(&mut self) {
        let ack_due = self.core.ack_deadline().map(tokio::time::Instant::from_std);
        let control_open = self.control.open;
        let conn_open = self.conn_open;
        let Self {
            conn,
            control,
            moving,
            ..
        } = self;
        let wake = tokio::select! {
            d = conn.read_datagram(), if conn_open => Wake::Datagram(d),
            r = control.recv.read(&mut control.buf), if control_open => Wake::Control(r),
            m = moving::outcome(moving) => Wake::Moved(Box::new(m)),
            () = sleep_until(ack_due) => Wake::AckDue,
        };
        match wake {
            Wake::Datagram(Ok(bytes)) => self.core.handle_datagram(Instant::now(), &bytes),
            Wake::Datagram(Err(e)) => {
                self.connection_lost(&e);
            }
            Wake::Control(result) => self.on_control_read(result),
            Wake::Moved(result) => self.finish_move(*result),
            // `update` at the top of the caller's loop sends it.
            Wake::AckDue => {}
        }
    }

    fn read_ready_datagrams(&mut self, now: Instant) {
        for _ in 0..DATAGRAMS_PER_PUMP_MAX {
            if !self.conn_open || self.core.disconnect_reason().is_some() {
                return;
            }
            match poll_once(self.conn.read_datagram()) {
                None => return,
                Some(Ok(bytes)) => self.core.handle_datagram(now, &bytes),
                Some(Err(e)) => {
                    self.connection_lost(&e);
                    return;
                }
            }
        }
    }

    fn read_ready_control(&mut self) {
        for _ in 0..CONTROL_READS_PER_PUMP_MAX {
            if !self.control.open || self.core.disconnect_reason().is_some() {
                return;
            }
            let control = &mut self.control;
            match poll_once(control.recv.read(&mut control.buf)) {
                None => return,
                Some(result) => self.on_control_read(result),
            }
        }
    }

    fn on_control_read(&mut self, result: Result<Option<usize>, ReadError>) {
        match result {
            Ok(Some(n)) => {
                let chunk = &self.control.buf[..n.min(self.control.buf.len())];
                self.control.decoder.push(chunk);
                self.dispatch_frames();
            }
            Ok(None) => self.control_ended("server finished the control stream"),
            Err(ReadError::ConnectionLost(e)) => {
                self.control.open = false;
                self.connection_lost(&e);
            }
            Err(e) => self.control_ended(&format!("control stream: {e}")),
        }
    }

    /// The server ended the control stream without closing the connection: a protocol
    /// violation, unless a move is under way (the old node may end its side first).
    fn control_ended(&mut self, why: &str) {
        self.control.open = false;
        if self.core.is_moving() {
            tracing::debug!(why, "old control stream ended during a move");
            return;
        }
        self.fail(ErrorCode::ProtocolViolation, why);
    }

    /// Hands every complete control frame to the core. Bounded: each frame consumes
    /// buffered bytes.
    fn dispatch_frames(&mut self) {
        loop {
            if self.core.disconnect_reason().is_some() {
                return;
            }
            let body = match self.control.decoder.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => return,
                Err(e) => return self.fail(frame_error_code(&e), &e.to_string()),
            };
            match ServerControl::decode(&body) {
                Ok(msg) => self.core.handle_control(msg),
                Err(e) => return self.fail(ErrorCode::ProtocolViolation, &e.to_string()),
            }
            self.start_requested_move();
        }
    }

    /// Ends the session because the server broke the protocol.
    fn fail(&mut self, code: ErrorCode, message: &str) {
        tracing::warn!(
            ?code,
            message,
            "closing connection: server broke the protocol"
        );
        self.conn
            .close(VarInt::from_u32(code as u32), message.as_bytes());
        self.core.protocol_violation(code, message.to_owned());
        // The session is over: a move under way has nothing left to move.
        self.moving = None;
    }

    /// Records the end of the connection, which ends the session unless a move is
    /// under way; returns the error for the caller.
    fn connection_lost(&mut self, error: &quinn::ConnectionError) -> ClientError {
        self.control.open = false;
        self.conn_open = false;
        self.core
            .handle_connection_lost(DisconnectReason::from_connection_error(error));
        self.closed_error()
    }

    fn closed_error(&self) -> ClientError {
        match self.core.ensure_open() {
            Err(e) => e,
            Ok(()) => ClientError::UnexpectedMessage("connection lost".into()),
        }
    }

    fn flush_ack(&mut self, now: Instant) {
        if let Some(datagram) = self.core.poll_ack(now)
            && let Err(e) = self.send_datagram(datagram)
        {
            tracing::debug!(error = %e, "acknowledgement not sent");
        }
    }

    /// Sends on the current connection. While a move is under way a datagram the old
    /// connection cannot take is not an error: its inputs go out again on the new one.
    fn send_datagram(&mut self, datagram: Vec<u8>) -> Result<(), ClientError> {
        if !self.conn_open {
            return Ok(());
        }
        match self.conn.send_datagram(Bytes::from(datagram)) {
            Ok(()) => Ok(()),
            Err(SendDatagramError::ConnectionLost(e)) => {
                let error = self.connection_lost(&e);
                if self.core.is_moving() {
                    return Ok(());
                }
                Err(error)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Tell the server at once instead of leaving it to the idle timeout.
        self.conn.close(normal_code(), b"client dropped");
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("remote", &self.conn.remote_address())
            .field("player", &self.player())
            .field("zone", &self.zone())
            .field("entities", &self.replica().len())
            .field("disconnect", &self.core.disconnect_reason())
            .field("moving", &self.moving.is_some())
            .field("owns_endpoint", &self.owned_endpoint.is_some())
            .finish_non_exhaustive()
    }
}

fn normal_code() -> VarInt {
    VarInt::from_u32(ErrorCode::Normal as u32)
}

fn frame_error_code(e: &DecodeError) -> ErrorCode {
    match e {
        DecodeError::TooLong { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::ProtocolViolation,
    }
}

/// Polls a cancel-safe future once, without a real waker: `Some` if it was ready.
/// quinn's reads only take data when they complete, so dropping a pending one loses
/// nothing.
fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
