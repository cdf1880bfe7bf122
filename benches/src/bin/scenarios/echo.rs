//! The raw quinn baseline: an echo server (`scenarios echo-server`) and a load client
//! (`scenarios echo-client`) that exchange datagrams of the scenario's sizes at its
//! rates over QUIC with TLS 1.3 (self-signed certificate, pinned by the client through
//! the SDK's own `quic_client_config`), with no game at all. Each runs as its own
//! process so the runner can pin it and read its CPU time like the server's.

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zonemesh_client::{ClientConfig, Trust};

/// Largest datagram the baseline sends (the protocol's own maximum).
const DATAGRAM_BYTES_MAX: usize = 1500;
/// Connect timeout per connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `scenarios echo-server`.
#[derive(Debug, Args)]
pub(crate) struct EchoServerArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: SocketAddr,
    /// Where to write the self-signed certificate (PEM) for the client to pin.
    #[arg(long)]
    pub(crate) cert_out: PathBuf,
    /// Exit after this many seconds whatever happens (the runner kills it earlier).
    #[arg(long, default_value_t = 600)]
    pub(crate) max_secs: u64,
}

/// `scenarios echo-client`.
#[derive(Debug, Args, Clone)]
pub(crate) struct EchoClientArgs {
    /// Echo server address.
    #[arg(long)]
    pub(crate) server: SocketAddr,
    /// The server's certificate (PEM) to pin.
    #[arg(long)]
    pub(crate) cert: PathBuf,
    /// Connections (like bots).
    #[arg(long)]
    pub(crate) conns: u32,
    /// Datagrams per connection per second, each answered by one.
    #[arg(long)]
    pub(crate) rate_hz: f64,
    /// Payload bytes of each datagram sent (like an input datagram).
    #[arg(long)]
    pub(crate) up_bytes: usize,
    /// Payload bytes of each answer (like a snapshot datagram).
    #[arg(long)]
    pub(crate) down_bytes: usize,
    /// Seconds the run lasts.
    #[arg(long)]
    pub(crate) secs: f64,
    /// Seconds over which connections start.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) ramp_secs: f64,
    /// Answers are counted in the window from here (seconds since start)...
    #[arg(long)]
    pub(crate) window_start: f64,
    /// ...to here.
    #[arg(long)]
    pub(crate) window_end: f64,
    /// Client endpoints (UDP sockets) shared round-robin, like the swarm's.
    #[arg(long, default_value_t = 4)]
    pub(crate) endpoints: u16,
}

/// What the echo client prints (one JSON line) at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EchoCounts {
    /// Connections established.
    pub(crate) connected: u64,
    /// Connections that failed to establish.
    pub(crate) failed: u64,
    /// Datagrams sent.
    pub(crate) sent: u64,
    /// Answers received.
    pub(crate) received: u64,
    /// Answers received inside the window.
    pub(crate) received_in_window: u64,
}

/// Quinn transport settings of the server under test (`server/src/net/transport.rs`),
/// so the baseline pays for the same buffers and timers.
fn server_transport() -> anyhow::Result<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(64 * 1024))
        .receive_window(VarInt::from_u32(256 * 1024))
        .send_window(512 * 1024)
        .datagram_receive_buffer_size(Some(64 * 1024))
        .datagram_send_buffer_size(64 * 1024)
        .max_idle_timeout(Some(IdleTimeout::try_from(Duration::from_secs(10))?))
        .keep_alive_interval(None);
    Ok(t)
}

/// A self-signed identity for `localhost`: the PEM certificate and a quinn server
/// configuration (TLS 1.3, ring, the ZoneMesh ALPN).
fn self_signed() -> anyhow::Result<(String, quinn::ServerConfig)> {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .context("cannot generate a certificate")?;
    let pem = key.cert.pem();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivatePkcs8KeyDer::from(key.key_pair.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 unavailable")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], private.into())
        .context("unusable certificate")?;
    tls.alpn_protocols = vec![zonemesh_shared::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("TLS configuration unusable for QUIC")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(server_transport()?));
    Ok((pem, config))
}

/// Runs the echo server until `max_secs` pass (or it is killed).
pub(crate) fn serve(args: &EchoServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (pem, config) = self_signed()?;
        std::fs::write(&args.cert_out, pem)
            .with_context(|| format!("cannot write {}", args.cert_out.display()))?;
        let endpoint = quinn::Endpoint::server(config, args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!("echo server listening on {}", endpoint.local_addr()?);
        let pad = Bytes::from(vec![0x5a; DATAGRAM_BYTES_MAX]);
        let deadline = tokio::time::sleep(Duration::from_secs(args.max_secs));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => { tokio::spawn(echo_connection(incoming, pad.clone())); }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        anyhow::Ok(())
    })
}

/// Answers every datagram with one of the size its first two bytes ask for.
async fn echo_connection(incoming: quinn::Incoming, pad: Bytes) {
    let Ok(conn) = incoming.await else { return };
    while let Ok(datagram) = conn.read_datagram().await {
        let size = requested_size(&datagram, conn.max_datagram_size().unwrap_or(0));
        if conn.send_datagram(pad.slice(..size)).is_err() {
            return;
        }
    }
}

/// The answer size a datagram asks for (little-endian `u16` prefix), at most `limit`
/// and [`DATAGRAM_BYTES_MAX`]; 1 byte when there is no prefix.
pub(crate) fn requested_size(datagram: &[u8], limit: usize) -> usize {
    let asked = match datagram {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => 1,
    };
    asked.clamp(1, limit.clamp(1, DATAGRAM_BYTES_MAX))
}

/// The request datagram: `up_bytes` long (at least the 2-byte prefix) asking for
/// `down_bytes`.
pub(crate) fn request(up_bytes: usize, down_bytes: usize) -> Bytes {
    let mut v = vec![0xa5; up_bytes.clamp(2, DATAGRAM_BYTES_MAX)];
    let down = u16::try_from(down_bytes.min(DATAGRAM_BYTES_MAX)).unwrap_or(u16::MAX);
    v[..2].copy_from_slice(&down.to_le_bytes());
    Bytes::from(v)
}

/// Shared counters of the client's connections.
#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    received_in_window: AtomicU64,
}

/// Runs the load client and prints its [`EchoCounts`] as JSON.
pub(crate) fn load(args: &EchoClientArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate_hz > 0.0 && args.rate_hz <= 1000.0,
        "rate must be in (0, 1000]"
    );
    anyhow::ensure!(
        args.secs > 0.0 && args.secs <= 3600.0,
        "secs must be in (0, 3600]"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let counts = runtime.block_on(run_load(args.clone()))?;
    println!("{}", serde_json::to_string(&counts)?);
    Ok(())
}

async fn run_load(args: EchoClientArgs) -> anyhow::Result<EchoCounts> {
    let trust = Trust::pinned_pem_file(&args.cert).context("cannot pin the echo certificate")?;
    let quic = ClientConfig::new(args.server, trust, "echo")
        .quic_client_config()
        .context("cannot build the QUIC client configuration")?;
    let mut endpoints = Vec::new();
    for _ in 0..args.endpoints.max(1) {
        let mut e = quinn::Endpoint::client("127.0.0.1:0".parse()?)
            .context("cannot open a client endpoint")?;
        e.set_default_client_config(quic.clone());
        endpoints.push(e);
    }
    let start = Instant::now();
    let counters = Arc::new(Counters::default());
    let args = Arc::new(args);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.conns {
        let endpoint = endpoints[i as usize % endpoints.len()].clone();
        let offset = args.ramp_secs * f64::from(i) / f64::from(args.conns.max(1));
        let job = Job {
            args: Arc::clone(&args),
            counters: Arc::clone(&counters),
            start,
            offset: Duration::from_secs_f64(offset),
        };
        tasks.spawn(job.run(endpoint));
    }
    let bound = Duration::from_secs_f64(args.secs) + CONNECT_TIMEOUT + Duration::from_secs(5);
    // Bounded: connections end at `secs`; anything later is aborted.
    let _ = tokio::time::timeout(bound, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    Ok(EchoCounts {
        connected: counters.connected.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        sent: counters.sent.load(Ordering::Relaxed),
        received: counters.received.load(Ordering::Relaxed),
        received_in_window: counters.received_in_window.load(Ordering::Relaxed),
    })
}

/// One connection of the load client.
struct Job {
    args: Arc<EchoClientArgs>,
    counters: Arc<Counters>,
    start: Instant,
    offset: Duration,
}

impl Job {
    async fn run(self, endpoint: quinn::Endpoint) {
        tokio::time::sleep_until((self.start + self.offset).into()).await;
        let connecting = endpoint.connect(self.args.server, "localhost");
        let conn = match connecting {
            Ok(c) => tokio::time::timeout(CONNECT_TIMEOUT, c).await,
            Err(_) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Ok(Ok(conn)) = conn else {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.connected.fetch_add(1, Ordering::Relaxed);
        self.exchange(&conn).await;
        conn.close(VarInt::from_u32(0), b"done");
    }

    /// Sends on a fixed schedule and counts answers until the run's end.
    async fn exchange(&self, conn: &quinn::Connection) {
        let end = self.start + Duration::from_secs_f64(self.args.secs);
        let window = (
            self.start + Duration::from_secs_f64(self.args.window_start),
            self.start + Duration::from_secs_f64(self.args.window_end),
        );
        let payload = request(self.args.up_bytes, self.args.down_bytes);
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / self.args.rate_hz));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let stop = tokio::time::sleep_until(end.into());
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticker.tick() => {
                    if conn.send_datagram(payload.clone()).is_err() { return; }
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                d = conn.read_datagram() => {
                    if d.is_err() { return; }
                    self.count_answer(window);
                }
            }
        }
    }

    fn count_answer(&self, window: (Instant, Instant)) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if now >= window.0 && now <= window.1 {
            self.counters
                .received_in_window
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_the_answer_size() {
        let r = request(40, 700);
        assert_eq!(r.len(), 40);
        assert_eq!(requested_size(&r, 1200), 700);
    }

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(request(0, 10).len(), 2);
        assert_eq!(request(9000, 10).len(), DATAGRAM_BYTES_MAX);
        assert_eq!(requested_size(&request(8, 1400), 1100), 1100);
        assert_eq!(requested_size(&request(8, 0), 1100), 1);
        assert_eq!(requested_size(&[7], 1100), 1);
        assert_eq!(requested_size(&request(8, 900), 0), 1);
    }
}
