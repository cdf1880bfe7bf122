//! Wire protocol, identifiers, codec, session and redirect tokens shared by the ZoneMesh server,
//! the client SDK and the tools. This crate does no IO and depends on no runtime.
//!
//! The protocol has two channels over one QUIC connection negotiated with [`ALPN`]:
//! a reliable bidirectional *control stream* opened by the client, carrying
//! length-prefixed [`control`] frames, and unreliable QUIC *datagrams* carrying
//! inputs from the client and snapshots from the server ([`datagram`]).
//!
//! Connection contract:
//! 1. The client opens the control stream and sends [`control::ClientControl::Hello`].
//! 2. The server answers with exactly one of `Welcome`, `Redirect`, `Loading`, `Busy` or
//!    `Error`. Anything but `Welcome` is followed by the server closing the connection;
//!    `Loading`/`Busy` carry a `retry_after_ms` hint for the client's backoff.
//! 3. After `Welcome` the server sends snapshots as datagrams and `ZoneChanged` /
//!    `GameEvent` / `Error` on the control stream; the client sends inputs (with snapshot
//!    acknowledgements) as datagrams and `GameEvent` / `Goodbye` on the control stream.

pub mod codec;
pub mod control;
pub mod datagram;
pub mod ids;
pub mod node;
pub mod quant;
pub mod redirect;
pub mod replay;
pub mod status;
pub mod token;

/// ALPN protocol name; the version is part of it so incompatible peers fail the handshake.
pub const ALPN: &[u8] = b"zonemesh/1";
/// Protocol version carried in `Hello`; bumped on any incompatible wire change.
pub const PROTOCOL_VERSION: u16 = 1;

/// File names `zonemesh dev` writes under its data directory, read by the SDK's
/// `from_dev_data` helpers and the tools so they agree without configuration.
pub mod dev_files {
    /// The self-signed development certificate (PEM) clients pin.
    pub const CERT: &str = "dev-cert.pem";
    /// The certificate's private key (PEM); only the server reads it.
    pub const KEY: &str = "dev-key.pem";
    /// The token-signing secret, hex encoded; whoever holds it can mint sessions.
    pub const SECRET: &str = "dev-secret.hex";
}
