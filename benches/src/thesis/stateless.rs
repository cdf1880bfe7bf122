//! The stateless baseline server: the same QUIC transport and control framing as a
//! ZoneMesh server, but no state in memory. Every `EVENT_ADD_COIN` request loads the
//! player's record from the store, adds one coin, saves the record, then answers with
//! the new count, the way a classic stateless game backend works.
//!
//! A connection's requests are served one after another: a player's read-modify-write
//! must not race with itself (two concurrent ones would lose an update), so
//! concurrency comes from many players, as it would in production.
//!
//! The same server without a store ([`Backing::Memory`]: the count lives in the
//! connection task) is the benchmark's **transport floor**: the latency of the QUIC
//! round trip and framing alone, below which no server over this transport can answer.

use anyhow::{Context, bail};
use bytes::Bytes;
use quinn::{RecvStream, SendStream, VarInt};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use zonemesh_server::demo::EVENT_ADD_COIN;
use zonemesh_server::dev::load_or_create;
use zonemesh_server::net::{NetLimits, quic_server_config};
use zonemesh_shared::control::{ClientControl, ErrorCode, FrameDecoder, ServerControl};
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::token;
use zonemesh_store::{PlayerRecord, Store};

/// The zone the stateless server writes under (activated once at start for an epoch).
const ZONE: ZoneId = ZoneId::grid(1000, 1000);
/// Time allowed for the control stream and `Hello` of a new connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the coin count lives.
#[derive(Debug)]
pub(crate) enum Backing {
    /// In the store: load, modify, save per request (the stateless baseline).
    Store(Arc<dyn Store>),
    /// In the connection task's memory, never saved (the transport floor).
    Memory,
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    /// The store and the epoch of the zone it writes under; `None` for the floor.
    store: Option<(Arc<dyn Store>, u64)>,
    secret: Vec<u8>,
    errors: AtomicU64,
}

/// A running stateless server.
#[derive(Debug)]
pub(crate) struct StatelessServer {
    endpoint: quinn::Endpoint,
    accept: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl StatelessServer {
    /// Starts on `listen` with the dev identity under `data`, keeping counts in
    /// `backing`.
    pub(crate) async fn start(
        listen: SocketAddr,
        data: &Path,
        backing: Backing,
    ) -> anyhow::Result<Self> {
        let identity = load_or_create(data)?;
        // The very transport the ZoneMesh server listens with (same TLS, ALPN, limits).
        let config = quic_server_config(identity.tls, &NetLimits::default())?;
        let store = match backing {
            Backing::Store(store) => {
                let activation = store
                    .activate_zone(ZONE.0, "thesis-stateless")
                    .await
                    .context("cannot activate the stateless server's zone")?;
                Some((store, activation.epoch))
            }
            Backing::Memory => None,
        };
        let shared = Arc::new(Shared {
            store,
            secret: identity.secret,
            errors: AtomicU64::new(0),
        });
        let endpoint = quinn::Endpoint::server(config, listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        let accept = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        Ok(Self {
            endpoint,
            accept,
            shared,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.endpoint.local_addr().context("no local address")
    }

    /// Player records saved so far (none for the floor).
    pub(crate) fn player_saves(&self) -> u64 {
        self.shared
            .store
            .as_ref()
            .map_or(0, |(store, _)| store.stats().n_player_saves)
    }

    /// Stops accepting, closes every connection, returns the count of failed requests.
    pub(crate) async fn shutdown(self) -> u64 {
        self.endpoint
            .close(VarInt::from_u32(ErrorCode::ServerShutdown as u32), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.accept).await;
        self.shared.errors.load(Ordering::Relaxed)
    }
}

/// Accepts connections until the endpoint is closed.
async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(error) = serve(incoming, &shared).await {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("stateless connection failed: {error:#}");
            }
        });
    }
}

/// One connection: `Hello`, `Welcome`, then requests until the client leaves.
async fn serve(incoming: quinn::Incoming, shared: &Shared) -> anyhow::Result<()> {
    let conn = incoming.await.context("handshake failed")?;
    let (mut send, recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .context("no control stream in time")?
        .context("connection lost before its control stream")?;
    let mut reader = Frames::new(recv);
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.next())
        .await
        .context("no Hello in time")??;
    let player = authenticate(hello, &shared.secret)?;
    let mut coins = Coins::open(shared, &player).await?;
    let welcome = ServerControl::Welcome {
        player: NetId::new(ZONE, 1),
        zone: ZONE,
        tick_hz: 20,
    };
    if !write(&mut send, &welcome).await? {
        return Ok(());
    }
    // Ends when the client says goodbye or the connection closes (idle timeout 10 s).
    while let Some(msg) = reader.next().await? {
        match msg {
            ClientControl::GameEvent { kind, .. } if kind == EVENT_ADD_COIN => {
                let count = coins.add_one().await?;
                let answer = ServerControl::GameEvent {
                    kind,
                    payload: count.to_le_bytes().to_vec(),
                };
                if !write(&mut send, &answer).await? {
                    return Ok(());
                }
            }
            ClientControl::Goodbye => break,
            other => bail!("unexpected request {other:?}"),
        }
    }
    conn.close(VarInt::from_u32(ErrorCode::Normal as u32), b"goodbye");
    Ok(())
}

/// The player named by a valid `Hello` token.
fn authenticate(hello: Option<ClientControl>, secret: &[u8]) -> anyhow::Result<String> {
    let Some(ClientControl::Hello { token, .. }) = hello else {
        bail!("the first frame was not Hello");
    };
    let claims = token::verify(secret, &token, unix_ms() / 1000).context("bad token")?;
    Ok(claims.player)
}

/// One connected player's coin count, wherever it lives.
enum Coins<'a> {
    /// Loaded, modified and saved per request.
    Stored {
        store: &'a dyn Store,
        epoch: u64,
        player: String,
    },
    /// Kept by the connection task.
    InMemory(u32),
}

impl<'a> Coins<'a> {
    /// Creates the player's record (0 coins) on first sight: not part of the measured
    /// request, just as the stateful server loads the player when it connects.
    async fn open(shared: &'a Shared, player: &str) -> anyhow::Result<Self> {
        let Some((store, epoch)) = &shared.store else {
            return Ok(Self::InMemory(0));
        };
        let (store, epoch) = (store.as_ref(), *epoch);
        let existing = store
            .load_player(player)
            .await
            .context("cannot load the player")?;
        if existing.is_none() {
            // Refused only if another connection of the player created it first: the
            // record exists either way.
            save(store, epoch, new_record(player)).await?;
        }
        Ok(Self::Stored {
            store,
            epoch,
            player: player.to_owned(),
        })
    }

    /// The request: add one coin and return the new count (stored: load, add, save).
    async fn add_one(&mut self) -> anyhow::Result<u32> {
        match self {
            Self::InMemory(count) => {
                *count = count.saturating_add(1);
                Ok(*count)
            }
            Self::Stored {
                store,
                epoch,
                player,
            } => add_coin(*store, *epoch, player).await,
        }
    }
}

fn new_record(player: &str) -> PlayerRecord {
    PlayerRecord {
        player: player.to_owned(),
        zone: ZONE.0,
        x: 0.0,
        y: 0.0,
        data: Bytes::copy_from_slice(&0u32.to_le_bytes()),
        updated_at_unix_ms: unix_ms(),
        version: 1,
    }
}

/// Load, add one coin, save; returns the new count.
async fn add_coin(store: &dyn Store, epoch: u64, player: &str) -> anyhow::Result<u32> {
    let mut record = store
        .load_player(player)
        .await
        .context("cannot load the player")?
        .context("the player has no record")?;
    let held: [u8; 4] = record
        .data
        .as_ref()
        .try_into()
        .context("the record does not hold a coin count")?;
    let coins = u32::from_le_bytes(held).saturating_add(1);
    record.data = Bytes::copy_from_slice(&coins.to_le_bytes());
    record.zone = ZONE.0;
    record.updated_at_unix_ms = unix_ms();
    record.version = record.version.saturating_add(1);
    if !save(store, epoch, record).await? {
        bail!("a concurrent save of the player won; the coin was not added");
    }
    Ok(coins)
}

/// Saves `record`; false if the store refused it for holding a newer version.
async fn save(store: &dyn Store, epoch: u64, record: PlayerRecord) -> anyhow::Result<bool> {
    let outcome = store
        .save_players(ZONE.0, epoch, vec![record])
        .await
        .context("cannot save the player")?;
    Ok(outcome.is_complete())
}

/// Writes a message; `false` if the client has gone (after the measurement a client
/// leaves without waiting for its last answers, which it counts as unanswered).
async fn write(send: &mut SendStream, msg: &ServerControl) -> anyhow::Result<bool> {
    match send.write_all(&msg.to_frame()).await {
        Ok(()) => Ok(true),
        Err(quinn::WriteError::ConnectionLost(_)) => Ok(false),
        Err(error) => Err(error).context("cannot write to the client"),
    }
}

fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Control frames read from a client's stream.
struct Frames {
    recv: RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl Frames {
    fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::default(),
            buf: vec![0; 4096],
        }
    }

    /// The next message; `None` when the client finished its stream.
    async fn next(&mut self) -> anyhow::Result<Option<ClientControl>> {
        loop {
            if let Some(frame) = self.decoder.next_frame().context("bad frame")? {
                let msg = ClientControl::decode(&frame).context("bad message")?;
                return Ok(Some(msg));
            }
            match self.recv.read(&mut self.buf).await {
                Ok(Some(n)) => self.decoder.push(&self.buf[..n]),
                Ok(None) => return Ok(None),
                Err(quinn::ReadError::ConnectionLost(_)) => return Ok(None),
                Err(e) => return Err(e).context("cannot read the control stream"),
            }
        }
    }
}
