//! The ZoneMesh client SDK: connect to a ZoneMesh server over QUIC, authenticate with
//! a session token, follow redirects (while connecting and mid-session) and ride out
//! busy servers, keep a replica of the visible world from snapshot datagrams, and send
//! inputs and game events.
//!
//! # Usage
//!
//! ```no_run
//! use zonemesh_client::{Client, ClientConfig, Event, Vec2};
//!
//! # async fn run() -> Result<(), zonemesh_client::ClientError> {
//! // Development: pin the dev certificate and mint a token from the dev secret that
//! // `zonemesh dev --data ./zonemesh-data` wrote.
//! let server = "127.0.0.1:4433".parse().expect("address");
//! let config = ClientConfig::from_dev_data(server, "./zonemesh-data".as_ref(), "alice")?;
//! let mut client = Client::connect(config).await?;
//! println!("I am {} in {}", client.player(), client.zone());
//!
//! client.send_input(Vec2::new(4.0, 0.0), 0)?;
//! while let Some(event) = client.next_event().await {
//!     match event {
//!         Event::Spawned { id, kind } => println!("{id} (kind {kind}) came into view"),
//!         Event::Updated { id } => {
//!             let position = client.replica().get(id).map(|e| e.position);
//!             println!("{id} is at {position:?}");
//!         }
//!         Event::Disconnected(reason) => println!("disconnected: {reason}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Game loops that are not async use [`BlockingClient`]: the same calls, with
//! [`BlockingClient::poll`] once per frame instead of `next_event().await`.
//!
//! # How it fits together
//!
//! - [`ClientConfig`] / [`Trust`]: where to connect and how to trust the server
//!   (a pinned certificate, a CA file, or — explicitly, for development only — any).
//! - [`Client::connect`]: attempts until welcomed or `connect_deadline` passes. `Busy`
//!   and `Loading` answers and transient failures are retried with exponential
//!   backoff and full jitter ([`Backoff`]); `Redirect` is followed (at most
//!   `max_redirects` times, then [`ClientError::TooManyRedirects`]); an `Error`
//!   answer fails at once with [`ClientError::Rejected`]. How the session got there
//!   stays observable: [`Client::remote_address`], [`Client::redirects_followed`] and
//!   [`Client::node_changes`].
//! - After `Welcome`, every reading call processes what arrived: snapshots update the
//!   [`Replica`] (delta decoding with per-entity baselines, reordering and sequence
//!   wraparound handled, interpolation samples kept) and queue [`Event`]s; the client
//!   acknowledges the snapshots it applied in every input datagram, and on its own at
//!   least every 100 ms while it owes one.
//! - Inputs carry the newest input plus the previous unacknowledged ones (up to
//!   `input_redundancy`), so a lost datagram costs nothing.
//! - Mid-session redirects: in a cluster, a player who walks into a zone served by
//!   another node is handed to that node by the servers, and its node sends `Redirect`
//!   after `Welcome`. The client connects to the new node while keeping the old
//!   connection (make-before-break) and, once the new node welcomes the same player,
//!   switches to it: same session, same [`Replica`], inputs and acknowledgements;
//!   [`Event::ZoneChanged`] if the zone differs, and [`Client::moves`] and
//!   [`Client::node_changes`] count one more. `Loading`/`Busy` answers are retried and
//!   further redirects followed within [`ClientConfig::move_deadline`] (10 s) and
//!   `max_redirects`. The game keeps calling the client as usual meanwhile: there is no
//!   background task, the calls that process incoming data drive the move. A failed
//!   move ends the session with [`DisconnectKind::MoveFailed`], which
//!   [`ClientConfig::auto_reconnects`] and [`Client::reconnect`] answer with a new
//!   session from the last save. Details: [`Client`](Client#moving-between-nodes).
//!
//! # Bounded queues
//!
//! - Received datagrams: quinn's buffer of `datagram_receive_buffer_bytes` (default
//!   256 KiB); oldest dropped when the game does not poll. Dropped snapshots are simply
//!   not acknowledged, so the server falls back to older baselines.
//! - Control messages: the stream's flow-control window; a client that never reads is
//!   eventually disconnected by the server (`SlowClient`).
//! - Events: `event_queue_capacity` (default 1024); when full the oldest `Updated`
//!   events are dropped first and counted in [`ClientStats::events_dropped`];
//!   `Disconnected` is never dropped.
//! - Per entity: [`POSITION_HISTORY`] baselines, [`INTERPOLATION_SAMPLES`] samples,
//!   and at most one record's worth of components (32).
//! - Moves: one at a time (a `Redirect` on the old connection during a move is
//!   ignored), at most `move_deadline` long and 32 connection attempts; the old
//!   connection is read, with the limits above, until the switch.
//!
//! Nothing the network sends can make the SDK panic: malformed datagrams and records
//! are counted in [`ClientStats::decode_errors`] and skipped; malformed control frames
//! end the session with a [`DisconnectReason`].

mod backoff;
mod blocking;
mod client;
mod config;
mod connect;
mod error;
mod events;
mod history;
mod input;
mod moving;
mod replica;
mod route;
mod seq;
mod session;
mod tls;

pub use backoff::Backoff;
pub use blocking::BlockingClient;
pub use client::{Client, ClientStats, MoveTiming};
pub use config::{ClientConfig, DEV_TOKEN_TTL, ReplicaScope, Trust, mint_token, read_dev_secret};
pub use error::ClientError;
pub use events::{DisconnectKind, DisconnectReason, Event};
pub use replica::{
    DEFAULT_INTERPOLATION_DELAY_TICKS, INTERPOLATION_SAMPLES, POSITION_HISTORY, RemoteEntity,
    Replica, STALE_SNAPSHOT_WINDOW,
};

/// quinn, re-exported so [`Client::connect_with`] callers use the same version.
pub use quinn;
/// The certificate type [`Trust::PinnedCert`] holds.
pub use rustls::pki_types::CertificateDer;
/// Protocol types that appear in this crate's API.
pub use zonemesh_shared::{
    control::ErrorCode,
    datagram::ComponentValue,
    ids::{NetId, ZoneId},
    quant::{QPos, Vec2},
};

// Clients move into spawned tasks (a bot swarm runs one per task): keep them `Send`.
const _: fn() = || {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Client>();
    assert_send::<BlockingClient>();
};

// `&Client` may be shared between threads for reading the replica and counters.
const _: fn() = || {
    fn assert_sync<T: Sync>() {}
    assert_sync::<Client>();
};
