//! The network shell: a QUIC endpoint (quinn) whose connection tasks authenticate
//! players, route their inputs and events into zone inboxes, and carry snapshots and
//! reliable messages back out. Zones never wait on anything here.

mod registry;
pub mod resumption;
pub(crate) mod session;
pub(crate) mod transport;
pub(crate) mod udp;

mod actions;
pub mod limits;

pub use resumption::{SessionFigures, SharedSessions};
pub use transport::{NetLimits, server_config as quic_server_config};

use crate::cluster::driver::{Cluster, ClusterConfig};
use crate::cluster::runtime::{ClusterRuntime, ClusterSetup, LocalSessions};
use crate::dev::TlsIdentity;
use crate::game::Game;
use crate::game::SessionId;
use crate::node::{Node, NodeConfig};
use crate::persist::{KeepWarm, ZoneHost};
use crate::persist::{StoreOwnership, ZoneOwnership};
use crate::zone::{ZoneContext, ZoneStatus};
use anyhow::Context;
use registry::Sessions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zonemesh_shared::control::ErrorCode;
use zonemesh_shared::status::{ClusterStatusReport, TickTotals};
use zonemesh_store::Store;

/// Everything needed to run a server.
#[derive(Debug)]
pub struct ServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Certificate and key presented to clients.
    pub tls: TlsIdentity,
    /// Secret that session tokens are signed with.
    pub secret: Vec<u8>,
    /// Zones and their tuning.
    pub node: NodeConfig,
    /// Connection limits.
    pub limits: NetLimits,
    /// Where zones and players are saved.
    pub store: Arc<dyn Store>,
    /// Zones activated at start-up rather than on first use (single node only: in a
    /// cluster, zones are placed by the cluster when first used).
    pub keep_warm: KeepWarm,
    /// The cluster this node is part of; `None` for a single node.
    pub cluster: Option<ClusterSetup>,
}

/// What connection tasks share.
#[derive(Debug)]
struct Shared {
    zones: Arc<ZoneContext>,
    host: Arc<ZoneHost>,
    actions: actions::ActionDesk,
    secret: Vec<u8>,
    limits: NetLimits,
    sessions: Sessions,
    shutdown: watch::Receiver<bool>,
    /// The cluster, for a node in one.
    cluster: Option<Arc<ClusterRuntime>>,
}

/// A running server: zones ticking, endpoint accepting.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    node: Node,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    started: std::time::Instant,
}

/// Figures of a running server.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    /// Each zone's status (zones in memory).
    pub zones: Vec<ZoneStatus>,
    /// Tick figures over all zones since start.
    pub ticks: TickTotals,
    /// Simulation rate.
    pub tick_hz: u16,
    /// Zone worker threads.
    pub workers: usize,
    /// Time since the server started.
    pub uptime: Duration,
    /// Authenticated sessions.
    pub sessions: usize,
    /// Connections answered `Busy` because the server was full.
    pub busy_answers: u64,
    /// Inputs dropped because a zone inbox was full.
    pub inbox_input_drops: u64,
    /// Connections the server closed or refused, per reason (unused reasons left out).
    pub closes: Vec<(ErrorCode, u64)>,
    /// The node's view of its cluster; `None` for a single node.
    pub cluster: Option<ClusterStatusReport>,
}

impl ServerStatus {
    /// Connections the server closed with `code`.
    pub fn closes_with(&self, code: ErrorCode) -> u64 {
        self.closes
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| *n)
    }
}

/// Reads a running server's figures; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatusSource {
    shared: Arc<Shared>,
    host: Arc<ZoneHost>,
    started: std::time::Instant,
}

impl StatusSource {
    /// The node's cluster runtime, when it is in a cluster.
    pub fn cluster(&self) -> Option<&Arc<ClusterRuntime>> {
        self.shared.cluster.as_ref()
    }

    /// Current figures.
    pub fn status(&self) -> ServerStatus {
        let drops = self.shared.zones.router.drops();
        ServerStatus {
            zones: self.host.status(),
            ticks: self.host.tick_totals(),
            tick_hz: self.shared.zones.config.tick_hz,
            workers: self.host.workers(),
            uptime: self.started.elapsed(),
            sessions: self.shared.sessions.admitted(),
            busy_answers: self.shared.sessions.busy_answers(),
            inbox_input_drops: drops.inputs.load(std::sync::atomic::Ordering::Relaxed),
            closes: self.shared.sessions.closes(),
            cluster: self.shared.cluster.as_ref().and_then(|c| c.status()),
        }
    }
}

impl Server {
    /// Starts the zones and the endpoint. Must run inside a tokio runtime.
    pub async fn start(config: ServerConfig, game: &Game) -> anyhow::Result<Self> {
        config.limits.validate().map_err(anyhow::Error::msg)?;
        let node_tls = config.tls.clone_identity();
        let runtime = config
            .cluster
            .as_ref()
            .map(|setup| cluster_runtime(&config.store, setup))
            .transpose()?;
        let tls_sessions = runtime
            .as_ref()
            .map_or_else(SharedSessions::local, |r| Arc::clone(r.tls_sessions()));
        let endpoint = client_endpoint(
            config.tls,
            &config.limits,
            config.listen,
            Arc::clone(&tls_sessions),
        )?;
        let (ownership, keep_warm): (Arc<dyn ZoneOwnership>, _) = match &runtime {
            Some(runtime) => {
                if config.keep_warm != KeepWarm::None {
                    tracing::info!(
                        "in a cluster, zones load where the cluster places them on first use; keep-warm is not used"
                    );
                }
                (Arc::clone(runtime) as _, KeepWarm::None)
            }
            None => {
                let name = format!("node-{}", std::process::id());
                let ownership = StoreOwnership::new(Arc::clone(&config.store), name);
                (Arc::new(ownership) as _, config.keep_warm.clone())
            }
        };
        let other_nodes = runtime
            .as_ref()
            .map(|r| Arc::clone(r) as Arc<dyn crate::zone::elsewhere::OtherNodes>);
        let node = Node::start(
            config.node,
            game,
            config.store,
            &keep_warm,
            ownership,
            other_nodes,
        )?;
        if let (Some(runtime), Some(setup)) = (&runtime, config.cluster) {
            runtime.attach_host(node.host());
            let client_addr = match setup.advertise {
                Some(addr) => addr,
                None => endpoint.local_addr()?,
            };
            let cluster = Cluster::start(
                ClusterConfig {
                    me: setup.me,
                    node_listen: setup.node_listen,
                    node_advertise: setup.node_advertise,
                    client_addr,
                    membership: setup.membership,
                    secret: setup.secret,
                    tls: node_tls,
                    node: setup.node,
                },
                Arc::new(runtime.store_calls()),
                Arc::clone(runtime) as _,
            )?;
            runtime.attach_cluster(cluster);
            tokio::spawn(resumption::share(
                Arc::clone(&tls_sessions),
                Arc::downgrade(runtime),
            ));
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            zones: Arc::clone(node.context()),
            host: Arc::clone(node.host()),
            actions: actions::ActionDesk {
                store: Arc::clone(node.host().store()),
                directory: Arc::clone(node.host().directory()),
                router: Arc::clone(&node.context().router),
                kinds: Arc::new(game.durable_action_kinds()),
            },
            secret: config.secret,
            limits: config.limits,
            sessions: Sessions::default(),
            shutdown: shutdown_rx,
            cluster: runtime,
        });
        if let Some(runtime) = &shared.cluster {
            runtime.attach_sessions(Box::new(SessionEnder(Arc::downgrade(&shared))));
        }
        let accept = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        Ok(Self {
            endpoint,
            node,
            shared,
            shutdown: shutdown_tx,
            accept,
            started: std::time::Instant::now(),
        })
    }

    /// The store this server saves to.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.node.host().store()
    }

    /// The cluster driver, for a node in a cluster.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.shared.cluster.as_ref()?.cluster()
    }

    /// The server's side of its cluster (zones, sessions and crossings), if any.
    pub fn cluster_runtime(&self) -> Option<&Arc<ClusterRuntime>> {
        self.shared.cluster.as_ref()
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Current figures.
    pub fn status(&self) -> ServerStatus {
        self.status_source().status()
    }

    /// A handle that reads this server's figures, for tasks that outlive a borrow of
    /// the server (the admin endpoint).
    pub fn status_source(&self) -> StatusSource {
        StatusSource {
            shared: Arc::clone(&self.shared),
            host: Arc::clone(self.node.host()),
            started: self.started,
        }
    }

    /// Ends every session with `ServerShutdown` (new connections are refused from
    /// then on), waits briefly for them to end, saves and stops the zones, gives them
    /// back to the cluster and leaves it, and only then closes the endpoint.
    ///
    /// Why in that order: the players reconnect through another node at once, and it
    /// can take their zones only once they are saved and released here. Closing the
    /// endpoint and waiting for it to go idle first kept them answered `Loading` for
    /// seconds after a plain stop.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(3), async {
            while self.shared.sessions.connections() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("sessions still open after 3 s; stopping the zones anyway");
        }
        if let Some(cluster) = &self.shared.cluster {
            cluster
                .settle_handoffs_for_stop(HANDOFF_SETTLE_AT_STOP)
                .await;
        }
        self.node.stop().await;
        // After the final saves: the players' claims and the zones' releases go out
        // before the node leaves.
        if let Some(cluster) = &self.shared.cluster {
            let ended = self.shared.sessions.take_ended_at_stop();
            session::release_claims_at_stop(cluster, ended).await;
            cluster.stop().await;
        }
        self.endpoint.close(
            close_code(ErrorCode::ServerShutdown),
            b"server shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.accept.abort();
        let _ = (&mut self.accept).await;
    }
}

/// Longest a stopping node waits for the handoffs under way to end before it stops
/// its zones (a handoff's own timers end it within seconds).
const HANDOFF_SETTLE_AT_STOP: Duration = Duration::from_secs(3);

/// Ends this node's sessions when another node lets their player in.
struct SessionEnder(std::sync::Weak<Shared>);

impl LocalSessions for SessionEnder {
    fn end(&self, player: &str, session: u64) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        let Some(link) = shared.sessions.session_of(player, SessionId(session)) else {
            return false;
        };
        link.kick(ErrorCode::Replaced, "the player connected on another node");
        true
    }

    fn register_arrival(&self, link: &Arc<crate::link::ClientLink>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        if let Some(old) = shared.sessions.claim_name(link)
            && !Arc::ptr_eq(&old, link)
            && !old.is_left_behind_by(link)
        {
            old.kick(
                ErrorCode::Replaced,
                "the player moved here from another node",
            );
        }
    }

    fn has_other_session(&self, player: &str, session: u64) -> bool {
        self.0.upgrade().is_some_and(|shared| {
            shared
                .sessions
                .has_other_session(player, SessionId(session))
        })
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        if *shared.shutdown.borrow() {
            // Shutting down: the client hears it at once and tries another node.
            incoming.refuse();
            continue;
        }
        // Beyond the session limit plus the handshakes in flight, refuse at the QUIC
        // level: such a client would only be told `Busy` after costing a handshake.
        let ceiling = shared.limits.max_connections + shared.limits.max_pending_handshakes;
        if shared.sessions.connections() >= ceiling {
            incoming.refuse();
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let guard = shared.sessions.connection_opened();
            if let Some((conn, handshake)) = accept(incoming, &shared).await {
                session::run(conn, handshake, &shared).await;
            }
            drop(guard);
        });
    }
}

/// The zone runtime's side of the cluster `setup` describes.
fn cluster_runtime(
    store: &Arc<dyn Store>,
    setup: &ClusterSetup,
) -> anyhow::Result<Arc<ClusterRuntime>> {
    let lease = Duration::from_millis(setup.node.lease.duration_ms);
    let runtime = ClusterRuntime::new(Arc::clone(store), &setup.secret, lease)?;
    runtime.configure_rebalancer(setup.rebalance);
    Ok(runtime)
}

/// The endpoint players connect to, keeping its TLS sessions in `sessions`.
fn client_endpoint(
    tls: TlsIdentity,
    limits: &NetLimits,
    listen: SocketAddr,
    sessions: Arc<SharedSessions>,
) -> anyhow::Result<quinn::Endpoint> {
    let server_config = transport::server_config_with_sessions(tls, limits, sessions)?;
    udp::endpoint(listen, server_config).with_context(|| format!("cannot listen on {listen}"))
}

/// Accepts a connection without waiting for its handshake to complete, so a `Hello`
/// a resuming client sent with 0-RTT is read at once (the session decides what it may
/// do before the handshake completes); the returned future completes with it.
async fn accept(
    incoming: quinn::Incoming,
    shared: &Shared,
) -> Option<(quinn::Connection, session::Handshake)> {
    let connecting = incoming
        .accept()
        .inspect_err(|e| tracing::debug!(error = %e, "connection refused"))
        .ok()?;
    match connecting.into_0rtt() {
        Ok((conn, completed)) => Some((conn, session::Handshake::Pending(completed))),
        // quinn always allows this on a server; should that change, wait as before.
        Err(connecting) => {
            match tokio::time::timeout(shared.limits.handshake_timeout, connecting).await {
                Ok(Ok(conn)) => Some((conn, session::Handshake::Complete)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("handshake timed out");
                    None
                }
            }
        }
    }
}

/// The QUIC application close code for an error code.
pub(crate) fn close_code(code: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from_u32(u32::from(code as u16))
}
