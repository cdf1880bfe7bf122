//! The node-to-node transport: one QUIC endpoint per node (its own UDP port and ALPN
//! [`NODE_ALPN`]) that both accepts and dials, authenticates every peer with the
//! cluster secret ([`super::auth`]) before anything else, and then carries gossip and
//! node messages as QUIC datagrams. Both are loss-tolerant by design (SWIM and the
//! directory protocol retry), so nothing here retransmits or orders. A packet too big
//! for one datagram (a player crossing with its client's view, a large ghost batch)
//! goes on a unidirectional stream of its own instead, with the same best-effort
//! contract: the protocols above repeat what matters.
//!
//! Bounds and policies:
//! - received packets go to one bounded channel ([`TransportConfig::inbox_capacity`]);
//!   when it is full the packet is dropped and counted;
//! - packets sent while a connection is being set up wait in a queue of
//!   [`PENDING_PER_PEER`], oldest dropped first;
//! - at most [`TransportConfig::max_peers`] peers at once; packets to more are dropped;
//! - a failed dial backs off for [`DIAL_BACKOFF`], dropping packets meanwhile;
//! - packets sent on streams: at most [`STREAM_SENDS_MAX`] in flight per node (more
//!   are dropped), each at most [`STREAM_PACKET_MAX`] bytes (larger ones are dropped
//!   by the sender and refused by the receiver);
//! - a peer that fails authentication is closed with [`CLOSE_AUTH_FAILED`] and a
//!   reason, and logged once per address (not once per packet).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use quinn::{Connection, Endpoint, IdleTimeout, VarInt};
use tokio::sync::mpsc;
use zonemesh_shared::node::NodeRef;

use super::auth::{AuthError, EXPORTER_LABEL, EXPORTER_LEN, HELLO_LEN, Hello, Role};
use crate::dev::TlsIdentity;

/// ALPN of node-to-node connections; a game client (ALPN `zonemesh/1`) cannot open one.
/// Bytes of datagrams a peer connection queues before sending; when that much is
/// free again, everything queued has gone out.
const DATAGRAM_SEND_BUFFER: usize = 256 * 1024;
/// Longest a stopping node waits for its queued datagrams to go out.
const SHUTDOWN_FLUSH_WAIT: Duration = Duration::from_millis(200);

pub const NODE_ALPN: &[u8] = b"zonemesh-node/1";
/// QUIC close code for a peer that failed the cluster-secret handshake.
pub const CLOSE_AUTH_FAILED: u32 = 0x4e41;
/// QUIC close code when a node shuts its transport down.
pub const CLOSE_SHUTDOWN: u32 = 0x4e00;
/// Packets queued per peer while its connection is being set up.
pub const PENDING_PER_PEER: usize = 64;
/// How long sends to a peer that could not be reached are dropped before a new dial.
pub const DIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest a connection and handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Packets on streams in flight at once; more are dropped and counted.
pub const STREAM_SENDS_MAX: usize = 256;
/// Largest packet sent on a stream, but for handoffs.
pub const STREAM_PACKET_MAX: usize = 1024 * 1024;
/// Largest handoff packet (a frozen zone's complete state).
pub const HANDOFF_PACKET_MAX: usize = zonemesh_cluster::handoff::SNAPSHOT_BYTES_MAX + 1024;
/// Streams a peer may have open towards this node at once.
const PEER_STREAMS_MAX: u32 = 64;
/// Longest a stream send may take before it is abandoned.
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Addresses remembered for "logged once"; when full the memory is cleared.
const MAX_LOGGED: usize = 1024;

const KIND_GOSSIP: u8 = 1;
const KIND_MESSAGE: u8 = 2;
const KIND_PROBE: u8 = 3;
const KIND_SESSION: u8 = 4;
const KIND_CROSSING: u8 = 5;
const KIND_HANDOFF: u8 = 6;

/// What travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePacket {
    /// A SWIM packet.
    Gossip(Bytes),
    /// An encoded node message (`zonemesh_cluster::msg::Envelope`).
    Message(Bytes),
    /// A health probe of the static membership provider.
    Probe(Bytes),
    /// A message about a player's session
    /// (`zonemesh_cluster::session_msg::SessionMsg`).
    Session(Bytes),
    /// A player or ghosts crossing to a zone on another node
    /// (`zonemesh_cluster::crossing::CrossingMsg`).
    Crossing(Bytes),
    /// A live zone handoff (`zonemesh_cluster::handoff::HandoffMsg`); its `State`
    /// carries a whole zone, up to [`HANDOFF_PACKET_MAX`] bytes.
    Handoff(Bytes),
}

impl NodePacket {
    fn frame(&self) -> Bytes {
        let (kind, body) = match self {
            NodePacket::Gossip(b) => (KIND_GOSSIP, b),
            NodePacket::Message(b) => (KIND_MESSAGE, b),
            NodePacket::Probe(b) => (KIND_PROBE, b),
            NodePacket::Session(b) => (KIND_SESSION, b),
            NodePacket::Crossing(b) => (KIND_CROSSING, b),
            NodePacket::Handoff(b) => (KIND_HANDOFF, b),
        };
        let mut out = BytesMut::with_capacity(1 + body.len());
        out.put_u8(kind);
        out.put_slice(body);
        out.freeze()
    }

    fn parse(mut frame: Bytes) -> Option<Self> {
        if frame.is_empty() {
            return None;
        }
        let kind = frame.split_to(1)[0];
        match kind {
            KIND_GOSSIP => Some(NodePacket::Gossip(frame)),
            KIND_MESSAGE => Some(NodePacket::Message(frame)),
            KIND_PROBE => Some(NodePacket::Probe(frame)),
            KIND_SESSION => Some(NodePacket::Session(frame)),
            KIND_CROSSING => Some(NodePacket::Crossing(frame)),
            KIND_HANDOFF => Some(NodePacket::Handoff(frame)),
            _ => None,
        }
    }
}

/// The largest packet of `kind` (its first byte) a stream may carry.
fn stream_limit(kind: u8) -> usize {
    if kind == KIND_HANDOFF {
        HANDOFF_PACKET_MAX
    } else {
        STREAM_PACKET_MAX
    }
}

/// Handoff packets read at once (each may be a whole zone); more wait.
const HANDOFF_READS_MAX: usize = 2;

/// A packet from an authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The peer run, as it proved in the handshake.
    pub from: NodeRef,
    /// The peer's address.
    pub addr: SocketAddr,
    /// What it sent.
    pub packet: NodePacket,
}

/// How a node's transport is set up.
#[derive(Debug)]
pub struct TransportConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// This node run.
    pub me: NodeRef,
    /// The cluster secret every node holds.
    pub secret: Vec<u8>,
    /// This node's TLS certificate and key (not checked by peers; encryption only).
    pub tls: TlsIdentity,
    /// Received packets buffered before new ones are dropped.
    pub inbox_capacity: usize,
    /// Peers connected or being connected at once.
    pub max_peers: usize,
}

/// Counters of a transport since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Packets handed to QUIC.
    pub n_sent: u64,
    /// Packets received from authenticated peers.
    pub n_received: u64,
    /// Bytes of the packets sent (datagram payloads, without QUIC's overhead).
    pub n_bytes_sent: u64,
    /// Bytes of the packets received from authenticated peers.
    pub n_bytes_received: u64,
    /// Packets dropped: inbox full, queue full, peer backing off or too many peers.
    pub n_dropped: u64,
    /// Peers that failed authentication (either way).
    pub n_auth_failures: u64,
}

enum Peer {
    Dialing(VecDeque<Bytes>),
    Connected { conn: Connection, node: NodeRef },
    Backoff(Instant),
}

struct Inner {
    me: NodeRef,
    secret: Vec<u8>,
    max_peers: usize,
    peers: Mutex<HashMap<SocketAddr, Peer>>,
    logged: Mutex<HashSet<SocketAddr>>,
    inbox: mpsc::Sender<Received>,
    n_sent: AtomicU64,
    n_received: AtomicU64,
    n_bytes_sent: AtomicU64,
    n_bytes_received: AtomicU64,
    n_dropped: AtomicU64,
    n_auth_failures: AtomicU64,
    /// Handoff packets being read, at most [`HANDOFF_READS_MAX`].
    handoff_reads: tokio::sync::Semaphore,
    /// Stream sends in flight, at most [`STREAM_SENDS_MAX`].
    stream_sends: Arc<tokio::sync::Semaphore>,
    /// The runtime the transport's tasks run on: [`NodeTransport::send`] is also
    /// called from zone worker threads, which are not tokio threads.
    runtime: tokio::runtime::Handle,
}

impl Inner {
    /// Counts one packet of `len` bytes handed to QUIC.
    fn count_sent(&self, len: u64) {
        self.n_sent.fetch_add(1, Ordering::Relaxed);
        self.n_bytes_sent.fetch_add(len, Ordering::Relaxed);
    }
}

/// A running node transport.
#[derive(Clone)]
pub struct NodeTransport {
    endpoint: Endpoint,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTransport")
            .field("me", &self.inner.me)
            .finish()
    }
}

impl NodeTransport {
    /// Binds the endpoint and starts accepting peers; returns the transport and the
    /// channel of received packets. Must run inside a tokio runtime.
    pub fn start(config: TransportConfig) -> anyhow::Result<(Self, mpsc::Receiver<Received>)> {
        if config.secret.len() < zonemesh_shared::token::SECRET_MIN {
            anyhow::bail!("{}", AuthError::WeakSecret);
        }
        let server = server_config(config.tls)?;
        let mut endpoint = crate::net::udp::endpoint(config.listen, server)
            .with_context(|| format!("cannot bind the node endpoint on {}", config.listen))?;
        endpoint.set_default_client_config(client_config()?);
        let (inbox, received) = mpsc::channel(config.inbox_capacity.max(1));
        let inner = Arc::new(Inner {
            me: config.me,
            secret: config.secret,
            max_peers: config.max_peers.max(1),
            peers: Mutex::new(HashMap::new()),
            logged: Mutex::new(HashSet::new()),
            inbox,
            n_sent: AtomicU64::new(0),
            n_received: AtomicU64::new(0),
            n_bytes_sent: AtomicU64::new(0),
            n_bytes_received: AtomicU64::new(0),
            n_dropped: AtomicU64::new(0),
            n_auth_failures: AtomicU64::new(0),
            stream_sends: Arc::new(tokio::sync::Semaphore::new(STREAM_SENDS_MAX)),
            handoff_reads: tokio::sync::Semaphore::new(HANDOFF_READS_MAX),
            runtime: tokio::runtime::Handle::current(),
        });
        let transport = Self { endpoint, inner };
        tokio::spawn(transport.clone().accept_loop());
        Ok((transport, received))
    }

    /// The bound address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Sends `packet` to the node at `to`, connecting first if needed. Never waits,
    /// and may be called from any thread; see the module docs for what is dropped
    /// when.
    pub fn send(&self, to: SocketAddr, packet: &NodePacket) {
        let frame = packet.frame();
        let mut peers = lock(&self.inner.peers);
        let full = peers.len() >= self.inner.max_peers && !peers.contains_key(&to);
        match peers.get_mut(&to) {
            Some(Peer::Connected { conn, .. }) => {
                if !self.send_frame(conn, frame) {
                    peers.remove(&to);
                }
            }
            Some(Peer::Dialing(queue)) => {
                if queue.len() == PENDING_PER_PEER {
                    queue.pop_front();
                    self.inner.n_dropped.fetch_add(1, Ordering::Relaxed);
                }
                queue.push_back(frame);
            }
            Some(Peer::Backoff(until)) if Instant::now() < *until => {
                self.inner.n_dropped.fetch_add(1, Ordering::Relaxed);
            }
            _ if full => {
                self.inner.n_dropped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                peers.insert(to, Peer::Dialing(VecDeque::from([frame])));
                self.inner.runtime.spawn(self.clone().dial(to));
            }
        }
    }

    /// The peers connected and authenticated now.
    pub fn connected_peers(&self) -> Vec<(SocketAddr, NodeRef)> {
        lock(&self.inner.peers)
            .iter()
            .filter_map(|(addr, peer)| match peer {
                Peer::Connected { node, .. } => Some((*addr, *node)),
                _ => None,
            })
            .collect()
    }

    /// Counters since start.
    pub fn stats(&self) -> TransportStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            n_sent: load(&self.inner.n_sent),
            n_received: load(&self.inner.n_received),
            n_bytes_sent: load(&self.inner.n_bytes_sent),
            n_bytes_received: load(&self.inner.n_bytes_received),
            n_dropped: load(&self.inner.n_dropped),
            n_auth_failures: load(&self.inner.n_auth_failures),
        }
    }

    /// Closes every connection and the endpoint.
    pub async fn shutdown(&self) {
        self.flush_datagrams(SHUTDOWN_FLUSH_WAIT).await;
        self.endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"node shutting down");
        self.endpoint.wait_idle().await;
    }

    /// Waits (at most `wait`) until every peer connection has sent the datagrams it
    /// queued. Closing an endpoint drops what it has not sent yet, and the last
    /// frames a stopping node queues are its goodbyes: the SWIM leave, without which
    /// the others keep sending its players to it until they suspect it dead.
    async fn flush_datagrams(&self, wait: Duration) {
        let conns: Vec<Connection> = lock(&self.inner.peers)
            .values()
            .filter_map(|peer| match peer {
                Peer::Connected { conn, .. } => Some(conn.clone()),
                _ => None,
            })
            .collect();
        let _ = tokio::time::timeout(wait, async {
            while conns.iter().any(|c| {
                c.close_reason().is_none() && c.datagram_send_buffer_space() < DATAGRAM_SEND_BUFFER
            }) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    async fn accept_loop(self) {
        while let Some(incoming) = self.endpoint.accept().await {
            let transport = self.clone();
            tokio::spawn(async move {
                let addr = incoming.remote_address();
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                    let conn = incoming.await?;
                    let node = transport.authenticate(&conn, Role::Acceptor).await?;
                    anyhow::Ok((conn, node))
                })
                .await;
                match accepted {
                    Ok(Ok((conn, node))) => transport.connected(addr, conn, node),
                    Ok(Err(e)) => transport
                        .log_once(addr, &format!("node connection from {addr} failed: {e:#}")),
                    Err(_) => {
                        transport.log_once(addr, &format!("node handshake from {addr} timed out"))
                    }
                }
            });
        }
    }

    async fn dial(self, to: SocketAddr) {
        let dialed = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let conn = self.endpoint.connect(to, "zonemesh-node")?.await?;
            let node = self.authenticate(&conn, Role::Dialer).await?;
            anyhow::Ok((conn, node))
        })
        .await;
        match dialed {
            Ok(Ok((conn, node))) => self.connected(to, conn, node),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => "timed out".to_owned(),
                };
                self.log_once(to, &format!("cannot reach node at {to}: {why}"));
                lock(&self.inner.peers).insert(to, Peer::Backoff(Instant::now() + DIAL_BACKOFF));
            }
        }
    }

    /// Runs the handshake in `role`; on a bad proof closes the connection with
    /// [`CLOSE_AUTH_FAILED`] and a reason.
    async fn authenticate(&self, conn: &Connection, role: Role) -> anyhow::Result<NodeRef> {
        let mut exporter = [0u8; EXPORTER_LEN];
        conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
            .map_err(|_| anyhow::anyhow!("TLS exporter unavailable"))?;
        let (mut send, mut recv) = match role {
            Role::Dialer => conn.open_bi().await?,
            Role::Acceptor => conn.accept_bi().await?,
        };
        let mine = Hello::sign(&self.inner.secret, role, &exporter, self.inner.me)?;
        let theirs_role = match role {
            Role::Dialer => Role::Acceptor,
            Role::Acceptor => Role::Dialer,
        };
        if role == Role::Dialer {
            send.write_all(&mine.encode()).await?;
        }
        let mut buf = [0u8; HELLO_LEN];
        recv.read_exact(&mut buf)
            .await
            .map_err(|e| match conn.close_reason() {
                Some(reason) => anyhow::anyhow!("peer closed the connection: {reason}"),
                None => anyhow::anyhow!("reading the peer's hello: {e}"),
            })?;
        let theirs = Hello::decode(&buf).and_then(|h| {
            h.verify(&self.inner.secret, theirs_role, &exporter)
                .map(|()| h)
        });
        let theirs = match theirs {
            Ok(hello) => hello,
            Err(e) => {
                self.inner.n_auth_failures.fetch_add(1, Ordering::Relaxed);
                conn.close(
                    VarInt::from_u32(CLOSE_AUTH_FAILED),
                    e.to_string().as_bytes(),
                );
                return Err(e.into());
            }
        };
        if role == Role::Acceptor {
            send.write_all(&mine.encode()).await?;
        }
        // Both hellos are in; the stream has no further use.
        let _ = send.finish();
        Ok(theirs.node)
    }

    fn connected(&self, addr: SocketAddr, conn: Connection, node: NodeRef) {
        let previous = lock(&self.inner.peers).insert(
            addr,
            Peer::Connected {
                conn: conn.clone(),
                node,
            },
        );
        if let Some(Peer::Dialing(queue)) = previous {
            for frame in queue {
                self.send_frame(&conn, frame);
            }
        }
        lock(&self.inner.logged).remove(&addr);
        tokio::spawn(self.clone().read_streams(addr, conn.clone(), node));
        tokio::spawn(self.clone().read_loop(addr, conn, node));
    }

    /// Sends one frame on `conn`: as a datagram if it fits, else on a stream of its
    /// own. False when the connection cannot take datagrams any more.
    fn send_frame(&self, conn: &Connection, frame: Bytes) -> bool {
        let len = frame.len() as u64;
        let fits = conn
            .max_datagram_size()
            .is_some_and(|max| frame.len() <= max);
        if !fits {
            self.send_on_stream(conn, frame);
            return true;
        }
        let sent = conn.send_datagram(frame).is_ok();
        if sent {
            self.inner.count_sent(len);
        } else {
            self.inner.n_dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Sends a frame too big for a datagram on a new unidirectional stream, within
    /// the bounds in the module docs.
    fn send_on_stream(&self, conn: &Connection, frame: Bytes) {
        let permit = Arc::clone(&self.inner.stream_sends).try_acquire_owned();
        let (Ok(permit), true) = (permit, frame.len() <= stream_limit(frame[0])) else {
            self.inner.n_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (conn, inner) = (conn.clone(), Arc::clone(&self.inner));
        self.inner.runtime.spawn(async move {
            let len = frame.len() as u64;
            let sent = tokio::time::timeout(STREAM_SEND_TIMEOUT, async {
                let mut stream = conn.open_uni().await?;
                stream.write_all(&frame).await?;
                stream.finish()?;
                anyhow::Ok(())
            })
            .await;
            match sent {
                Ok(Ok(())) => inner.count_sent(len),
                _ => {
                    inner.n_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
    }

    /// Takes packets the peer sent on streams (see [`Self::send_on_stream`]).
    async fn read_streams(self, addr: SocketAddr, conn: Connection, node: NodeRef) {
        while let Ok(mut stream) = conn.accept_uni().await {
            let transport = self.clone();
            tokio::spawn(async move {
                let read = tokio::time::timeout(STREAM_SEND_TIMEOUT, async {
                    let mut kind = [0u8; 1];
                    stream.read_exact(&mut kind).await?;
                    // Whole zones travel one or two at a time, not 64.
                    let _big = if kind[0] == KIND_HANDOFF {
                        Some(transport.inner.handoff_reads.acquire().await?)
                    } else {
                        None
                    };
                    let rest = stream.read_to_end(stream_limit(kind[0]) - 1).await?;
                    let mut frame = Vec::with_capacity(1 + rest.len());
                    frame.push(kind[0]);
                    frame.extend_from_slice(&rest);
                    anyhow::Ok(frame)
                })
                .await;
                match read {
                    Ok(Ok(frame)) => transport.deliver(addr, node, Bytes::from(frame)),
                    _ => {
                        transport.inner.n_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }

    /// Hands a received frame to the inbox, counting it.
    fn deliver(&self, addr: SocketAddr, node: NodeRef, frame: Bytes) {
        let len = frame.len() as u64;
        let Some(packet) = NodePacket::parse(frame) else {
            return;
        };
        let received = Received {
            from: node,
            addr,
            packet,
        };
        if self.inner.inbox.try_send(received).is_ok() {
            self.inner.n_received.fetch_add(1, Ordering::Relaxed);
            self.inner
                .n_bytes_received
                .fetch_add(len, Ordering::Relaxed);
        } else {
            self.inner.n_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn read_loop(self, addr: SocketAddr, conn: Connection, node: NodeRef) {
        while let Ok(frame) = conn.read_datagram().await {
            self.deliver(addr, node, frame);
        }
        let mut peers = lock(&self.inner.peers);
        let same = matches!(peers.get(&addr), Some(Peer::Connected { conn: c, .. }) if c.stable_id() == conn.stable_id());
        if same {
            peers.remove(&addr);
        }
    }

    fn log_once(&self, addr: SocketAddr, message: &str) {
        let mut logged = lock(&self.inner.logged);
        if logged.len() >= MAX_LOGGED {
            logged.clear();
        }
        if logged.insert(addr) {
            tracing::warn!("{message}");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the maps in a state
    // worse than "one entry missing", so a poisoned lock is used as is.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn transport_config() -> anyhow::Result<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(PEER_STREAMS_MAX))
        .datagram_receive_buffer_size(Some(256 * 1024))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        .keep_alive_interval(Some(Duration::from_secs(2)))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(Duration::from_secs(10)).context("idle timeout")?,
        ));
    Ok(t)
}

fn server_config(tls: TlsIdentity) -> anyhow::Result<quinn::ServerConfig> {
    let mut config = crate::net::transport::tls_server(tls, NODE_ALPN)?;
    config.transport_config(Arc::new(transport_config()?));
    Ok(config)
}

fn client_config() -> anyhow::Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 unavailable")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![NODE_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .context("TLS configuration unusable for QUIC")?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()?));
    Ok(config)
}

/// Accepts any server certificate (signatures still checked): node authentication is
/// the cluster-secret handshake bound to this TLS session, not the certificate.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
