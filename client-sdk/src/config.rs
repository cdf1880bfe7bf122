//! [`ClientConfig`] and [`Trust`]: where to connect, how to trust the server, which
//! token to present, and the timing and queue limits of a session. Also the helpers
//! that build a development configuration from a `zonemesh dev` data directory.

use crate::error::ClientError;
use crate::replica::DEFAULT_INTERPOLATION_DELAY_TICKS;
use crate::session::CoreConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zonemesh_shared::control::TOKEN_MAX;
use zonemesh_shared::datagram::{DATAGRAM_MAX, INPUTS_PER_DATAGRAM_MAX};
use zonemesh_shared::dev_files;
use zonemesh_shared::token::{self, Claims, SECRET_MIN};

/// How long tokens minted by [`ClientConfig::from_dev_data`] stay valid.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How the client decides the server's certificate is genuine.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Accept exactly these end-entity certificates (compared byte for byte), whatever
    /// their issuer, names or dates. The handshake signature is still verified, so
    /// only the holder of the pinned certificate's key gets through.
    PinnedCert(Vec<CertificateDer<'static>>),
    /// Verify normally (chain, validity, server name) against the CA certificates in
    /// this PEM file.
    CaFile(PathBuf),
    /// Accept any certificate. Only for development against a server whose certificate
    /// you cannot get; anyone on the path can impersonate the server. Never a default.
    InsecureDev,
}

impl Trust {
    /// Pins the certificates in a PEM file (such as `zonemesh dev`'s `dev-cert.pem`).
    pub fn pinned_pem_file(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let certs = read_pem_certs(path)?;
        Ok(Self::PinnedCert(certs))
    }
}

/// Reads every certificate in a PEM file; an empty file is an error.
pub(crate) fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ClientError::bad_dev_data(path, format!("not a readable PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::bad_dev_data(path, "holds no certificate"));
    }
    Ok(certs)
}

/// Everything [`Client::connect`](crate::Client::connect) needs. Build it with
/// [`ClientConfig::new`] or [`ClientConfig::from_dev_data`], then adjust fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The server (or any node; redirects are followed).
    pub server: SocketAddr,
    /// Other nodes of the same cluster. When an attempt fails in a way worth retrying
    /// (no answer, `Busy`, a node shutting down), the next attempt goes to the next
    /// address in `server`, then these, round and round; a node that redirected the
    /// client is tried with the session token, not the redirect's. Empty for a single
    /// server.
    pub other_servers: Vec<SocketAddr>,
    /// TLS server name (SNI, and the name checked with [`Trust::CaFile`]).
    pub server_name: String,
    /// How the server's certificate is verified.
    pub trust: Trust,
    /// The session token presented in `Hello`.
    pub token: String,
    /// Overall time allowed for connecting, retries and redirects included.
    pub connect_deadline: Duration,
    /// Time allowed for one attempt: QUIC handshake, `Hello` and the server's answer.
    pub attempt_timeout: Duration,
    /// First retry delay ceiling (full jitter below it).
    pub backoff_initial: Duration,
    /// Largest retry delay ceiling.
    pub backoff_max: Duration,
    /// Redirects followed before giving up: per connect, and per mid-session move
    /// (where the `Redirect` that starts the move counts too, so 0 follows none and a
    /// move then fails at once).
    pub max_redirects: u32,
    /// Time allowed for a mid-session move (the old node's `Redirect` to a `Welcome`
    /// from the new node), redirects and `Loading`/`Busy` retries included. Past it the
    /// move has failed (see [`Client`](crate::Client#moving-between-nodes)). The
    /// default, 10 s, is the lifetime of the redirect token the old node sends.
    pub move_deadline: Duration,
    /// How many times in a row [`Client::next_event`](crate::Client::next_event)
    /// starts a new session by itself when one ends in a way worth retrying
    /// ([`DisconnectReason::can_reconnect`](crate::DisconnectReason::can_reconnect):
    /// the node stopped or died, the zone moved), reporting `Disconnected` then
    /// `Reconnected`. The count starts over once a new session shows the player. 0
    /// (the default) leaves reconnecting to the game ([`Client::reconnect`](crate::Client::reconnect)).
    pub auto_reconnects: u32,
    /// Datagrams each input travels in at most: the newest input plus up to
    /// `input_redundancy - 1` older unacknowledged ones per datagram (1..=8).
    pub input_redundancy: usize,
    /// Events queued for the game before the overflow policy drops some: oldest
    /// `Updated` first, and `Disconnected` never (see [`Event`](crate::Event)).
    pub event_queue_capacity: usize,
    /// How far behind the newest snapshot rendering happens, in server ticks.
    pub interpolation_delay_ticks: f64,
    /// QUIC keep-alive interval: keeps NAT bindings and the idle timer alive while
    /// the game sends nothing.
    pub keep_alive_interval: Duration,
    /// The connection is considered dead after this long without hearing the server.
    pub idle_timeout: Duration,
    /// Bytes of received datagrams quinn buffers before dropping the oldest; snapshots
    /// beyond this while the game is not polling are lost (and not acknowledged).
    pub datagram_receive_buffer_bytes: usize,
    /// Which entities the replica keeps (see [`ReplicaScope`]); everything by default.
    pub replica_scope: ReplicaScope,
}

/// Which entities a client's [`Replica`](crate::Replica) keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplicaScope {
    /// Every entity the server shows the player: what a game renders.
    #[default]
    Everything,
    /// Only the player's own entity. Records of other entities are decoded (a
    /// snapshot is checked as a whole) but not applied, and raise no events; the
    /// snapshot is acknowledged as if they were held, so the server goes on sending
    /// deltas exactly as to a full client. For bots and headless clients that need
    /// their own position, the input acknowledgement and the tick, not the world: in
    /// a crowd, keeping every entity is most of a client's CPU.
    OwnEntity,
}

impl ClientConfig {
    /// A configuration with default timings and limits.
    pub fn new(server: SocketAddr, trust: Trust, token: impl Into<String>) -> Self {
        Self {
            server,
            other_servers: Vec::new(),
            server_name: "localhost".to_owned(),
            trust,
            token: token.into(),
            connect_deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            max_redirects: 5,
            move_deadline: Duration::from_secs(10),
            auto_reconnects: 0,
            input_redundancy: 4,
            event_queue_capacity: 1024,
            interpolation_delay_ticks: DEFAULT_INTERPOLATION_DELAY_TICKS,
            keep_alive_interval: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            datagram_receive_buffer_bytes: 256 * 1024,
            replica_scope: ReplicaScope::Everything,
        }
    }

    /// A development configuration from a `zonemesh dev --data DIR` directory: pins
    /// `DIR/dev-cert.pem` and mints a token for `player` from `DIR/dev-secret.hex`,
    /// valid for [`DEV_TOKEN_TTL`].
    pub fn from_dev_data(
        server: SocketAddr,
        dir: &Path,
        player: &str,
    ) -> Result<Self, ClientError> {
        let trust = Trust::pinned_pem_file(dir.join(dev_files::CERT))?;
        let secret = read_dev_secret(&dir.join(dev_files::SECRET))?;
        let token = mint_token(&secret, player, DEV_TOKEN_TTL)?;
        Ok(Self::new(server, trust, token))
    }

    /// The quinn client configuration the SDK connects with (TLS for [`Self::trust`],
    /// ALPN, transport limits), for tools that need a bare QUIC connection to the same
    /// server, such as transport baselines and protocol conformance tests.
    pub fn quic_client_config(&self) -> Result<quinn::ClientConfig, ClientError> {
        crate::connect::quic_client_config(self)
    }

    /// Checks values that would otherwise fail obscurely later.
    pub fn validate(&self) -> Result<(), ClientError> {
        let fail = |msg: &str| Err(ClientError::Config(msg.to_owned()));
        if self.token.len() > TOKEN_MAX {
            return fail("token longer than the protocol allows");
        }
        if self.attempt_timeout.is_zero() || self.connect_deadline.is_zero() {
            return fail("attempt timeout and connect deadline must be positive");
        }
        if self.move_deadline.is_zero() {
            return fail("move deadline must be positive");
        }
        if !(1..=INPUTS_PER_DATAGRAM_MAX).contains(&self.input_redundancy) {
            return fail("input redundancy must be 1 to 8");
        }
        if self.event_queue_capacity == 0 {
            return fail("event queue capacity must be at least 1");
        }
        if self.idle_timeout < Duration::from_secs(1) || self.keep_alive_interval.is_zero() {
            return fail("idle timeout must be at least 1 s and keep-alive positive");
        }
        if self.keep_alive_interval >= self.idle_timeout {
            return fail("keep-alive interval must be shorter than the idle timeout");
        }
        if self.datagram_receive_buffer_bytes < DATAGRAM_MAX {
            return fail("datagram receive buffer must hold at least one datagram");
        }
        Ok(())
    }

    pub(crate) fn core_config(&self) -> CoreConfig {
        CoreConfig {
            input_redundancy: self.input_redundancy,
            event_queue_capacity: self.event_queue_capacity,
            interpolation_delay_ticks: self.interpolation_delay_ticks,
            replica_scope: self.replica_scope,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential: never print it.
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .field("trust", &self.trust)
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .field("connect_deadline", &self.connect_deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("max_redirects", &self.max_redirects)
            .field("move_deadline", &self.move_deadline)
            .field("input_redundancy", &self.input_redundancy)
            .field("event_queue_capacity", &self.event_queue_capacity)
            .field("interpolation_delay_ticks", &self.interpolation_delay_ticks)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field(
                "datagram_receive_buffer_bytes",
                &self.datagram_receive_buffer_bytes,
            )
            .field("replica_scope", &self.replica_scope)
            .finish()
    }
}

/// Reads a hex-encoded token secret (`dev-secret.hex`).
pub fn read_dev_secret(path: &Path) -> Result<Vec<u8>, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::bad_dev_data(path, format!("cannot read: {e}")))?;
    let secret = hex::decode(text.trim())
        .map_err(|e| ClientError::bad_dev_data(path, format!("not hex: {e}")))?;
    if secret.len() < SECRET_MIN {
        return Err(ClientError::bad_dev_data(
            path,
            format!(
                "secret is {} bytes; at least {SECRET_MIN} required",
                secret.len()
            ),
        ));
    }
    Ok(secret)
}

/// Mints a session token for `player`, valid for `ttl`, signed with `secret` (what a
/// login service does; tools and tests use it with the dev secret).
pub fn mint_token(secret: &[u8], player: &str, ttl: Duration) -> Result<String, ClientError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        player: player.to_owned(),
        expires_unix_s: now.saturating_add(ttl.as_secs()),
        nonce: rand::random(),
    };
    Ok(token::sign(secret, &claims)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonemesh_shared::token::TokenError;

    const SECRET_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn dev_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        std::fs::write(dir.path().join(dev_files::CERT), cert.cert.pem()).expect("write");
        std::fs::write(
            dir.path().join(dev_files::SECRET),
            format!("{SECRET_HEX}\n"),
        )
        .expect("write");
        dir
    }

    #[test]
    fn dev_data_pins_the_certificate_and_mints_a_valid_token() {
        let dir = dev_dir();
        let addr = "127.0.0.1:4433".parse().expect("addr");
        let config = ClientConfig::from_dev_data(addr, dir.path(), "alice").expect("config");
        assert!(matches!(&config.trust, Trust::PinnedCert(certs) if certs.len() == 1));
        let secret = hex::decode(SECRET_HEX).expect("hex");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims = token::verify(&secret, &config.token, now).expect("token verifies");
        assert_eq!(claims.player, "alice");
        assert!(claims.expires_unix_s > now + 23 * 3600);
        config.validate().expect("defaults are valid");
        assert!(!format!("{config:?}").contains(&config.token));
    }

    #[test]
    fn bad_dev_data_is_reported_with_the_file() {
        let dir = dev_dir();
        let addr = "127.0.0.1:1".parse().expect("addr");
        std::fs::write(dir.path().join(dev_files::SECRET), "abcd").expect("write");
        let err = ClientConfig::from_dev_data(addr, dir.path(), "bob").expect_err("short");
        assert!(
            matches!(&err, ClientError::BadDevData { path, .. } if path.ends_with(dev_files::SECRET))
        );
        std::fs::remove_file(dir.path().join(dev_files::CERT)).expect("rm");
        let err = ClientConfig::from_dev_data(addr, dir.path(), "bob").expect_err("no cert");
        assert!(
            matches!(&err, ClientError::BadDevData { path, .. } if path.ends_with(dev_files::CERT))
        );
        std::fs::write(dir.path().join(dev_files::CERT), "not pem").expect("write");
        assert!(Trust::pinned_pem_file(dir.path().join(dev_files::CERT)).is_err());
    }

    #[test]
    fn invalid_player_name_is_a_token_error() {
        let secret = hex::decode(SECRET_HEX).expect("hex");
        let err = mint_token(&secret, "no spaces", DEV_TOKEN_TTL).expect_err("bad name");
        assert!(matches!(
            err,
            ClientError::Token(TokenError::BadPlayerName(_))
        ));
    }

    #[test]
    fn validation_catches_out_of_range_values() {
        let base = ClientConfig::new(
            "127.0.0.1:1".parse().expect("addr"),
            Trust::InsecureDev,
            "t",
        );
        let mut c = base.clone();
        c.input_redundancy = 9;
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.keep_alive_interval = c.idle_timeout;
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.event_queue_capacity = 0;
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.move_deadline = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = base;
        c.token = "x".repeat(TOKEN_MAX + 1);
        assert!(c.validate().is_err());
    }
}
