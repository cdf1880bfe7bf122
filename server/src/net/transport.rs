//! quinn and rustls settings. Every limit is chosen on purpose so that one client
//! cannot make the server hold much memory: one control stream, no unidirectional
//! streams, small flow-control windows, bounded datagram buffers, an idle timeout and a
//! cap on handshakes in flight.

use super::limits::RateLimit;
use super::resumption::SharedSessions;
use crate::dev::TlsIdentity;
use anyhow::Context;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use std::sync::Arc;
use std::time::Duration;
use zonemesh_shared::ALPN;
use zonemesh_shared::control::CONTROL_FRAME_MAX;

/// Per-stream receive window: four maximum control frames.
const STREAM_RECEIVE_WINDOW: u32 = 4 * CONTROL_FRAME_MAX as u32;
/// Connection receive window: the control stream plus datagrams in flight.
const CONNECTION_RECEIVE_WINDOW: u32 = 256 * 1024;
/// Send window per connection: a few ticks of snapshots at the default budget.
const SEND_WINDOW: u64 = 512 * 1024;
/// Received datagrams buffered per connection before quinn drops the oldest.
const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;
/// Datagrams queued for sending per connection before quinn drops the oldest.
pub(crate) const DATAGRAM_SEND_BUFFER: usize = 64 * 1024;

/// Connection limits and timeouts of a server.
#[derive(Debug, Clone)]
pub struct NetLimits {
    /// Authenticated sessions at once; more get `Busy`.
    pub max_connections: usize,
    /// QUIC handshakes in progress at once; more are refused by quinn.
    pub max_pending_handshakes: usize,
    /// Time from the first packet to a complete `Hello`.
    pub handshake_timeout: Duration,
    /// A connection silent this long is dropped.
    pub idle_timeout: Duration,
    /// The retry hint sent with `Busy`.
    pub busy_retry_after: Duration,
    /// Input datagrams per client.
    pub input_rate: RateLimit,
    /// Reliable game events per client.
    pub event_rate: RateLimit,
    /// Continuous congestion tolerated before `SlowClient`.
    pub slow_client_grace: Duration,
    /// Longest a reliable message may wait for the client's flow control.
    pub control_write_timeout: Duration,
}

impl Default for NetLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_pending_handshakes: 256,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            busy_retry_after: Duration::from_millis(500),
            // Clients send inputs at their frame rate plus acks; 120/s leaves room
            // for 60 fps input with every packet duplicated by the network.
            input_rate: RateLimit {
                per_second: 120.0,
                burst: 120.0,
                flood_after: 240,
            },
            event_rate: RateLimit {
                per_second: 30.0,
                burst: 60.0,
                flood_after: 60,
            },
            slow_client_grace: Duration::from_secs(5),
            control_write_timeout: Duration::from_secs(5),
        }
    }
}

impl NetLimits {
    /// Checks the values a user can set.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max connections must be at least 1".into());
        }
        if self.max_pending_handshakes == 0 {
            return Err("max pending handshakes must be at least 1".into());
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err("idle timeout must be at least 1 s".into());
        }
        for (name, r) in [("input", self.input_rate), ("event", self.event_rate)] {
            if !(r.per_second > 0.0 && r.burst >= 1.0 && r.flood_after >= 1) {
                return Err(format!("{name} rate limit must allow at least one message"));
            }
        }
        Ok(())
    }
}

/// Builds quinn's server configuration from the identity and limits: what the server
/// listens with, public so baselines and tools can serve the same transport. TLS
/// sessions are kept for this endpoint alone.
pub fn server_config(tls: TlsIdentity, limits: &NetLimits) -> anyhow::Result<quinn::ServerConfig> {
    server_config_with_sessions(tls, limits, SharedSessions::local())
}

/// [`server_config`] with TLS sessions kept in `sessions` (shared by a cluster's
/// nodes), resumable with 0-RTT; see [`super::resumption`].
pub(crate) fn server_config_with_sessions(
    tls: TlsIdentity,
    limits: &NetLimits,
    sessions: Arc<SharedSessions>,
) -> anyhow::Result<quinn::ServerConfig> {
    let mut crypto = tls_crypto(tls, ALPN)?;
    crypto.session_storage = sessions;
    // QUIC allows only 0 (no early data) or this value.
    crypto.max_early_data_size = u32::MAX;
    // One ticket per connection: a client uses one per redirect or move, and gets a
    // fresh one from each node it reaches; every ticket is shared with every node.
    crypto.send_tls13_tickets = 1;
    let mut config = quic_config(crypto)?;
    config.transport_config(Arc::new(transport(limits)?));
    config.max_incoming(limits.max_pending_handshakes);
    config.incoming_buffer_size(16 * 1024);
    config.incoming_buffer_size_total(
        u64::try_from(limits.max_pending_handshakes).unwrap_or(u64::MAX) * 16 * 1024,
    );
    Ok(config)
}

/// A QUIC server configuration with TLS 1.3 (ring), `tls` as identity, no client
/// certificates and the one ALPN `alpn`; the caller adds its transport limits.
pub(crate) fn tls_server(tls: TlsIdentity, alpn: &[u8]) -> anyhow::Result<quinn::ServerConfig> {
    quic_config(tls_crypto(tls, alpn)?)
}

fn tls_crypto(tls: TlsIdentity, alpn: &[u8]) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 unavailable")?
        .with_no_client_auth()
        .with_single_cert(tls.certs, tls.key)
        .context("certificate and key do not form a usable TLS identity")?;
    crypto.alpn_protocols = vec![alpn.to_vec()];
    Ok(crypto)
}

fn quic_config(crypto: rustls::ServerConfig) -> anyhow::Result<quinn::ServerConfig> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .context("TLS configuration unusable for QUIC")?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

fn transport(limits: &NetLimits) -> anyhow::Result<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        .max_idle_timeout(Some(
            IdleTimeout::try_from(limits.idle_timeout).context("idle timeout too large")?,
        ))
        // Clients send keep-alives; the server only answers.
        .keep_alive_interval(None);
    Ok(t)
}
