//! [`BlockingClient`]: the SDK for game loops that are not async. It owns a small tokio
//! runtime whose single worker thread runs QUIC (timers, keep-alives, sending and
//! receiving UDP) while the game thread polls without blocking.

use crate::client::{Client, ClientStats};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::events::{DisconnectReason, Event};
use crate::replica::Replica;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::runtime::Runtime;
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::Vec2;

/// How long [`BlockingClient::send_game_event`] may wait for flow control.
const GAME_EVENT_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Client`] with its own runtime, for non-async game loops.
///
/// Call [`BlockingClient::poll`] (or [`BlockingClient::poll_events`]) once per frame:
/// it processes what arrived, sends due acknowledgements and returns the events,
/// without blocking. Do not create, use or drop one from inside an async runtime.
pub struct BlockingClient {
    // Declared before `runtime` so it is dropped (closing the connection) first.
    client: Client,
    runtime: Runtime,
}

impl BlockingClient {
    /// Starts a one-worker runtime and connects (blocking until welcomed or failed).
    pub fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            // A multi-thread runtime even with one worker: QUIC must keep running
            // while the game thread is busy between polls.
            .worker_threads(1)
            .thread_name("zonemesh-client")
            .enable_all()
            .build()
            .map_err(|e| ClientError::io("cannot start the client runtime", e))?;
        let client = runtime.block_on(Client::connect(config))?;
        Ok(Self { client, runtime })
    }

    /// Every event ready now (non-blocking).
    pub fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.poll_events(&mut out);
        out
    }

    /// Appends every event ready now to `out` (non-blocking); returns how many. Reuse
    /// `out` across frames to avoid allocating.
    pub fn poll_events(&mut self, out: &mut Vec<Event>) -> usize {
        let _guard = self.runtime.enter();
        self.client.drain_events(out)
    }

    /// Waits up to `timeout` for the next event; `None` on timeout or after
    /// `Disconnected` was returned.
    pub fn wait_event(&mut self, timeout: Duration) -> Option<Event> {
        let client = &mut self.client;
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, client.next_event()).await })
            .ok()
            .flatten()
    }

    /// Sends an input; see [`Client::send_input`]. Never blocks.
    pub fn send_input(&mut self, velocity: Vec2, buttons: u8) -> Result<u32, ClientError> {
        let _guard = self.runtime.enter();
        self.client.send_input(velocity, buttons)
    }

    /// Sends a reliable game event, blocking only while the server's flow control is
    /// full or a move to another node finishes (at most 5 s, then
    /// [`ClientError::Timeout`]; the move goes on).
    pub fn send_game_event(&mut self, kind: u16, payload: Vec<u8>) -> Result<(), ClientError> {
        let client = &mut self.client;
        self.runtime.block_on(async {
            tokio::time::timeout(
                GAME_EVENT_SEND_TIMEOUT,
                client.send_game_event(kind, payload),
            )
            .await
            .map_err(|_| ClientError::Timeout(GAME_EVENT_SEND_TIMEOUT))?
        })
    }

    /// Sends a durable action; see [`Client::send_durable_action`].
    pub fn send_durable_action(
        &mut self,
        kind: u16,
        payload: Vec<u8>,
    ) -> Result<u128, ClientError> {
        let client = &mut self.client;
        self.runtime.block_on(async {
            tokio::time::timeout(
                GAME_EVENT_SEND_TIMEOUT,
                client.send_durable_action(kind, payload),
            )
            .await
            .map_err(|_| ClientError::Timeout(GAME_EVENT_SEND_TIMEOUT))?
        })
    }

    /// The replicated world as of the last poll.
    pub fn replica(&self) -> &Replica {
        self.client.replica()
    }

    /// See [`Client::render_tick`].
    pub fn render_tick(&self) -> Option<f64> {
        self.client.render_tick()
    }

    /// quinn's round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.client.rtt()
    }

    /// The session's counters.
    pub fn stats(&self) -> ClientStats {
        self.client.stats()
    }

    /// The server address the session is on; see [`Client::remote_address`].
    pub fn remote_address(&self) -> SocketAddr {
        self.client.remote_address()
    }

    /// Redirects followed while connecting; see [`Client::redirects_followed`].
    pub fn redirects_followed(&self) -> u32 {
        self.client.redirects_followed()
    }

    /// Moves to another node, while connecting or mid-session; see
    /// [`Client::node_changes`].
    pub fn node_changes(&self) -> u32 {
        self.client.node_changes()
    }

    /// Mid-session moves to another node completed; see [`Client::moves`]. A move is
    /// driven by [`BlockingClient::poll`] and the other calls, once per frame.
    pub fn moves(&self) -> u32 {
        self.client.moves()
    }

    /// Whether the session is moving to another node now; see [`Client::is_moving`].
    pub fn is_moving(&self) -> bool {
        self.client.is_moving()
    }

    /// Starts a new session after this one ended, blocking until welcomed or refused;
    /// see [`Client::reconnect`].
    pub fn reconnect(&mut self) -> Result<(), ClientError> {
        self.runtime.block_on(self.client.reconnect())
    }

    /// Sessions started after the first; see [`Client::reconnects`].
    pub fn reconnects(&self) -> u32 {
        self.client.reconnects()
    }

    /// The player's own entity.
    pub fn player(&self) -> NetId {
        self.client.player()
    }

    /// The zone the player is in now.
    pub fn zone(&self) -> ZoneId {
        self.client.zone()
    }

    /// The server's simulation rate.
    pub fn tick_hz(&self) -> u16 {
        self.client.tick_hz()
    }

    /// Why the session ended, once it has.
    pub fn disconnect_reason(&self) -> Option<&DisconnectReason> {
        self.client.disconnect_reason()
    }

    /// The async client inside, for calls this facade does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the session politely (blocks for at most about a second).
    pub fn close(self) {
        let Self { client, runtime } = self;
        runtime.block_on(client.close());
    }
}

impl fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingClient")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}
