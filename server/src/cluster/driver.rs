//! The tokio driver of one node's cluster cores: it owns the SWIM core and the node
//! transport, shares the node core (behind a short lock) with the connection tasks
//! that ask it where players go, carries the core's store calls out through
//! [`StoreCalls`], and tells the zone runtime what changed through [`ClusterEvents`].
//!
//! One task, one loop: wait for a packet, a store reply, a wake-up from
//! [`Cluster::admit`] or the next deadline; handle it; move every output on.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use zonemesh_cluster::admission::Admission;
use zonemesh_cluster::crossing::CrossingMsg;
use zonemesh_cluster::handoff::HandoffMsg;
use zonemesh_cluster::load::{LOAD_INTERVAL_MS, NodeLoad};
use zonemesh_cluster::membership::static_list::{Probe, StaticConfig, StaticMembership};
use zonemesh_cluster::membership::swim::{Swim, SwimConfig};
use zonemesh_cluster::membership::table::{TableCall, TableConfig, TableMembership};
use zonemesh_cluster::membership::{Member, MembershipEvent};
use zonemesh_cluster::msg::{Envelope, StoreCall, StoreReply};
use zonemesh_cluster::node::{NodeConfig, NodeCore, NodeEvent};
use zonemesh_cluster::session_msg::{ForwardedRecord, SessionMsg, SharedSession};
use zonemesh_cluster::{Millis, ZoneId};
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::status::{
    ClusterStatusReport, HeldZoneReport, LoadReport, MemberReport, ZoneCostReport,
};

use super::transport::{NodePacket, NodeTransport, Received, TransportConfig};
use crate::dev::TlsIdentity;

/// Store calls in flight at once; more are answered `Unavailable` at once (the core
/// retries them).
pub const MAX_STORE_CALLS: usize = 64;
/// Longest a stopping driver waits for its store calls in flight.
pub const STOP_CALLS_WAIT: Duration = Duration::from_secs(2);
/// Longest the driver sleeps without a deadline (a guard, not a timer).
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Carries the core's store calls out (the cluster operations of the real store).
pub trait StoreCalls: Send + Sync + 'static {
    /// Makes `call` for node run `node`; failures come back as
    /// [`StoreReply::Unavailable`].
    fn call(
        &self,
        node: NodeRef,
        call: StoreCall,
    ) -> Pin<Box<dyn Future<Output = StoreReply> + Send>>;

    /// Makes a membership-table call for member `me` (the table provider,
    /// [`MembershipConfig::Table`]); failures come back as the failed reply of the
    /// call (see [`TableReply`]). Store calls without a membership table answer every
    /// call as failed, so a table-provider node over them sees only itself.
    fn table_call(
        &self,
        me: Member,
        call: TableCall,
    ) -> Pin<Box<dyn Future<Output = TableReply> + Send>> {
        let _ = me;
        Box::pin(async move { TableReply::failed(call) })
    }
}

/// The answer to a [`TableCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableReply {
    /// The heartbeat was written (`Some(true)`), refused for a newer run of the node
    /// id (`Some(false)`), or failed (`None`).
    Heartbeat(Option<bool>),
    /// The table's generation and live members, or `None` when the read failed.
    Table(Option<(u64, Vec<Member>)>),
    /// The leave was made (or failed: the row then runs out by itself).
    Left,
}

impl TableReply {
    /// The reply of a call that failed.
    pub fn failed(call: TableCall) -> Self {
        match call {
            TableCall::Heartbeat { .. } => Self::Heartbeat(None),
            TableCall::Read => Self::Table(None),
            TableCall::Leave => Self::Left,
        }
    }
}

/// What the zone runtime hears from the cluster. Called on the driver task: must not
/// block (hand the work to another task).
pub trait ClusterEvents: Send + Sync + 'static {
    /// `zone` is held here at `epoch` (again, with a newer epoch, after a repeat).
    fn zone_active(&self, zone: ZoneId, epoch: u64);
    /// `zone` is no longer held here.
    fn zone_lost(&self, zone: ZoneId);
    /// A newer run of this node exists; stop serving.
    fn superseded(&self);
    /// Another node is letting `player` in: end its session `session` here, if it is
    /// still on this node.
    fn end_session(&self, player: &str, session: u64);
    /// A player or ghosts crossing from node run `from` into a zone here. Nodes without
    /// zones (the driver's own tests) drop them.
    fn crossing(&self, from: NodeRef, msg: CrossingMsg) {
        let _ = (from, msg);
    }
    /// The record of `player`, whom another node just redirected here. Nodes without
    /// zones drop it.
    fn forwarded_record(&self, player: &str, record: Option<ForwardedRecord>) {
        let _ = (player, record);
    }
    /// A live-handoff message from node run `from`. Nodes without zones drop it.
    fn handoff(&self, from: NodeRef, msg: HandoffMsg) {
        let _ = (from, msg);
    }
    /// The store did not grant an activation asked for by a live handoff
    /// ([`Cluster::activate_handed_over`]).
    fn handoff_activation_refused(&self, zone: ZoneId) {
        let _ = zone;
    }
    /// TLS sessions another node issued to its clients, for resuming them here.
    /// Nodes without a client endpoint drop them.
    fn tls_sessions(&self, sessions: Vec<SharedSession>) {
        let _ = sessions;
    }
    /// This node's load, published to the others every
    /// [`LOAD_INTERVAL_MS`](zonemesh_cluster::load::LOAD_INTERVAL_MS). Nodes without
    /// zones publish none.
    fn load(&self) -> NodeLoad {
        NodeLoad::default()
    }
}

/// How a node joins its cluster.
#[derive(Debug)]
pub struct ClusterConfig {
    /// This node run.
    pub me: NodeRef,
    /// Where the node endpoint listens.
    pub node_listen: SocketAddr,
    /// How other nodes reach the node endpoint; `None` for the address it is bound to
    /// (right on loopback and for a specific address, not for 0.0.0.0 or behind NAT).
    pub node_advertise: Option<SocketAddr>,
    /// Where players connect to this node (published to the others for redirects).
    pub client_addr: SocketAddr,
    /// Who is in the cluster, and how that is found out.
    pub membership: MembershipConfig,
    /// The cluster secret.
    pub secret: Vec<u8>,
    /// TLS identity of the node endpoint.
    pub tls: TlsIdentity,
    /// The cores' settings.
    pub node: NodeConfig,
}

/// The membership provider.
#[derive(Debug, Clone)]
pub enum MembershipConfig {
    /// SWIM gossip (the default for clusters): announce to the seeds, learn the rest.
    Swim {
        /// Node addresses to announce to (any live members; the node's own is skipped).
        seeds: Vec<SocketAddr>,
        /// Failure-detector settings.
        config: SwimConfig,
    },
    /// A fixed list of node addresses, each marked up or down by health probes.
    Static {
        /// Every node's node-endpoint address (this node's own may be listed).
        peers: Vec<SocketAddr>,
        /// Probe timing.
        config: StaticConfig,
    },
    /// A table in the store: each node writes heartbeats and reads the live rows.
    Table {
        /// Heartbeat and read timing.
        config: TableConfig,
    },
}

/// The running membership provider.
enum Provider {
    Swim(Box<Swim>),
    Static(StaticMembership),
    Table(TableMembership),
}

impl Provider {
    fn start(config: MembershipConfig, me: Member) -> anyhow::Result<Self> {
        Ok(match config {
            MembershipConfig::Swim { seeds, config } => {
                let mut swim = Swim::new(me, config, rand::random());
                let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| *s != me.addr).collect();
                swim.join(Millis(0), &seeds)?;
                Provider::Swim(Box::new(swim))
            }
            MembershipConfig::Static { peers, config } => {
                Provider::Static(StaticMembership::new(me.addr, &peers, config))
            }
            MembershipConfig::Table { config } => Provider::Table(TableMembership::new(me, config)),
        })
    }

    fn poll_timeout(&self) -> Option<Millis> {
        match self {
            Provider::Swim(swim) => swim.poll_timeout(),
            Provider::Static(fixed) => fixed.poll_timeout(),
            Provider::Table(table) => table.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Millis) {
        match self {
            Provider::Swim(swim) => swim.handle_timeout(now),
            Provider::Static(fixed) => fixed.handle_timeout(now),
            Provider::Table(table) => table.handle_timeout(now),
        }
    }

    fn poll_event(&mut self) -> Option<MembershipEvent> {
        match self {
            Provider::Swim(swim) => swim.poll_event(),
            Provider::Static(fixed) => fixed.poll_event(),
            Provider::Table(table) => table.poll_event(),
        }
    }

    /// Sends what the provider wants sent.
    fn transmit(&mut self, transport: &NodeTransport) {
        match self {
            Provider::Swim(swim) => {
                while let Some((addr, bytes)) = swim.poll_transmit() {
                    transport.send(addr, &NodePacket::Gossip(bytes));
                }
            }
            Provider::Static(fixed) => {
                while let Some((addr, probe)) = fixed.poll_probe() {
                    transport.send(addr, &NodePacket::Probe(Bytes::from(probe.encode())));
                }
            }
            // Its calls go to the store, not the network (`Driver::flush_table`).
            Provider::Table(_) => {}
        }
    }
}

struct Shared {
    core: Mutex<NodeCore>,
    wake: Notify,
    stop: Notify,
    origin: Instant,
}

impl Shared {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn core(&self) -> MutexGuard<'_, NodeCore> {
        // The core is only touched through its own methods, which keep it consistent
        // at every return; a panic elsewhere while holding the lock leaves it usable.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running cluster membership and directory for one node.
pub struct Cluster {
    shared: Arc<Shared>,
    transport: NodeTransport,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("transport", &self.transport)
            .finish()
    }
}

impl Cluster {
    /// Binds the node endpoint, announces to the seeds and starts the driver task.
    /// Must run inside a tokio runtime.
    pub fn start(
        config: ClusterConfig,
        store: Arc<dyn StoreCalls>,
        events: Arc<dyn ClusterEvents>,
    ) -> anyhow::Result<Self> {
        let (transport, inbox) = NodeTransport::start(TransportConfig {
            listen: config.node_listen,
            me: config.me,
            secret: config.secret,
            tls: config.tls,
            inbox_capacity: 8_192,
            max_peers: 4_096,
        })?;
        let me = Member {
            node: config.me,
            addr: match config.node_advertise {
                Some(addr) => addr,
                None => transport.local_addr()?,
            },
            client_addr: config.client_addr,
        };
        let origin = Instant::now();
        let membership = Provider::start(config.membership, me)?;
        let shared = Arc::new(Shared {
            core: Mutex::new(NodeCore::new(me, config.node)),
            wake: Notify::new(),
            stop: Notify::new(),
            origin,
        });
        let driver = Driver {
            shared: Arc::clone(&shared),
            me,
            membership,
            transport: transport.clone(),
            store,
            events,
            calls: JoinSet::new(),
            table_calls: JoinSet::new(),
            next_load_at: Millis(0),
        };
        let task = tokio::spawn(driver.run(inbox));
        Ok(Self {
            shared,
            transport,
            task: Mutex::new(Some(task)),
        })
    }

    /// What to answer a player asking for `zone` (see
    /// [`NodeCore::admit`](zonemesh_cluster::node::NodeCore::admit)).
    pub fn admit(&self, zone: ZoneId, redirected: bool) -> Admission {
        let answer = self
            .shared
            .core()
            .admit(self.shared.now(), zone, redirected);
        self.shared.wake.notify_one();
        answer
    }

    /// Gives `zone` up: it left memory here and its final checkpoint is written (or
    /// given up on). The store's holder is cleared so another node may take it at once.
    pub fn release(&self, zone: ZoneId) {
        self.shared.core().release(self.shared.now(), zone);
        self.shared.wake.notify_one();
    }

    /// Asks node run `to` to end `player`'s session `session`; false when `to` is not
    /// a live member (then it cannot hold a session any more). Not acknowledged: the
    /// asker asks again until the player's claim is free.
    pub fn send_end_session(&self, to: NodeRef, player: &str, session: u64) -> bool {
        let msg = SessionMsg::EndSession {
            to,
            player: player.to_owned(),
            session,
        };
        self.send_session_msg(to, &msg)
    }

    /// Shares TLS sessions this node issued with every other live member (best
    /// effort: a lost one costs a client a full handshake).
    pub fn share_tls_sessions(&self, sessions: Vec<SharedSession>) {
        let packet =
            NodePacket::Session(Bytes::from(SessionMsg::TlsSessions { sessions }.encode()));
        let me = self.me();
        let others: Vec<SocketAddr> = self
            .members()
            .into_iter()
            .filter(|m| m.node != me)
            .map(|m| m.addr)
            .collect();
        for addr in others {
            self.transport.send(addr, &packet);
        }
    }

    /// Sends a message about a player's session to node run `to`; false when `to` is
    /// not a live member.
    pub fn send_session_msg(&self, to: NodeRef, msg: &SessionMsg) -> bool {
        let Some(addr) = self.live_member(to).map(|m| m.addr) else {
            return false;
        };
        self.transport
            .send(addr, &NodePacket::Session(Bytes::from(msg.encode())));
        true
    }

    /// Sends a crossing message to node run `to`; false when `to` is not a live member.
    pub fn send_crossing(&self, to: NodeRef, msg: &CrossingMsg) -> bool {
        let Some(addr) = self.live_member(to).map(|m| m.addr) else {
            return false;
        };
        self.transport
            .send(addr, &NodePacket::Crossing(Bytes::from(msg.encode())));
        true
    }

    /// The last load each live member published (its default when none came yet).
    pub fn member_loads(&self) -> Vec<(NodeRef, NodeLoad)> {
        let now = self.shared.now();
        let core = self.shared.core();
        let loads: std::collections::HashMap<NodeRef, NodeLoad> = core.loads(now).collect();
        core.view()
            .members()
            .map(|m| (m.node, loads.get(&m.node).cloned().unwrap_or_default()))
            .collect()
    }

    /// Sends a live-handoff message to its `to`; false when that is not a live member.
    pub fn send_handoff(&self, msg: &HandoffMsg) -> bool {
        let Some(addr) = self.live_member(msg.to()).map(|m| m.addr) else {
            return false;
        };
        self.transport
            .send(addr, &NodePacket::Handoff(Bytes::from(msg.encode())));
        true
    }

    /// A handoff froze `zone` to give it away: it is no longer held here (see
    /// [`zonemesh_cluster::node::NodeCore::handoff_started`]); its epoch.
    pub fn handoff_started(&self, zone: ZoneId) -> Option<u64> {
        self.shared.core().handoff_started(zone)
    }

    /// The handoff of `zone` away from here ended, the zone on `host` (or not moved).
    pub fn handoff_ended(&self, zone: ZoneId, host: Option<NodeRef>) {
        self.shared
            .core()
            .handoff_ended(self.shared.now(), zone, host);
    }

    /// Asks the store to activate `zone` here for a handoff (see
    /// [`zonemesh_cluster::node::NodeCore::activate_handed_over`]).
    pub fn activate_handed_over(&self, zone: ZoneId) -> bool {
        let started = self
            .shared
            .core()
            .activate_handed_over(self.shared.now(), zone);
        self.shared.wake.notify_one();
        started
    }

    /// Where `zone` lives, if known, without activating it (see
    /// [`zonemesh_cluster::node::NodeCore::locate`]).
    pub fn locate(&self, zone: ZoneId) -> Option<NodeRef> {
        let host = self.shared.core().locate(self.shared.now(), zone);
        if host.is_none() {
            // A question to the zone's directory owner may be waiting to go out.
            self.shared.wake.notify_one();
        }
        host
    }

    /// Whether this node may apply inputs to `zone` now.
    pub fn accepts_inputs(&self, zone: ZoneId) -> bool {
        self.shared.core().accepts_inputs(self.shared.now(), zone)
    }

    /// The live members as this node sees them, itself included.
    pub fn members(&self) -> Vec<Member> {
        self.shared.core().view().members().copied().collect()
    }

    /// The address players use to reach `node`, if it is a live member.
    pub fn client_addr_of(&self, node: NodeRef) -> Option<SocketAddr> {
        self.live_member(node).map(|m| m.client_addr)
    }

    /// `node` as a member, if that very run is live in this node's view.
    pub fn live_member(&self, node: NodeRef) -> Option<Member> {
        let core = self.shared.core();
        core.view()
            .member(node.id)
            .filter(|m| m.node == node)
            .copied()
    }

    /// This node's view of the cluster, for the status document.
    pub fn status(&self) -> ClusterStatusReport {
        let traffic = self.transport.stats();
        let now = self.shared.now();
        let core = self.shared.core();
        let loads: std::collections::HashMap<NodeRef, NodeLoad> = core.loads(now).collect();
        let mut held_zones: Vec<HeldZoneReport> = core
            .active_zones()
            .map(|(zone, epoch)| HeldZoneReport {
                zone: zone.0,
                epoch,
            })
            .collect();
        held_zones.sort_by_key(|z| z.zone);
        ClusterStatusReport {
            node: core.me().to_string(),
            lease_valid: core.lease_valid(now),
            members: core
                .view()
                .members()
                .map(|m| MemberReport {
                    node: m.node.to_string(),
                    node_addr: m.addr.to_string(),
                    client_addr: m.client_addr.to_string(),
                    load: loads.get(&m.node).map(|l| LoadReport {
                        zones: l.zones,
                        players: l.players,
                        entities: l.entities,
                        tick_p99_us: l.tick_p99_us,
                        tick_us_per_s: l.tick_us_per_s,
                        draining: l.draining,
                        costliest_zones: l
                            .zone_costs
                            .iter()
                            .map(|(zone, cost)| ZoneCostReport {
                                zone: zone.0,
                                us_per_s: *cost,
                            })
                            .collect(),
                    }),
                })
                .collect(),
            held_zones,
            // What the core answered `Redirect`, the zone host's questions included.
            redirects: core.counters().n_redirects,
            node_bytes_sent: traffic.n_bytes_sent,
            node_bytes_received: traffic.n_bytes_received,
            // The runtime fills these in (it owns the crossings and the drain).
            crossings: Default::default(),
            draining: false,
            drained: false,
        }
    }

    /// Zones held here with their epochs.
    pub fn active_zones(&self) -> Vec<(ZoneId, u64)> {
        self.shared.core().active_zones().collect()
    }

    /// This node run.
    pub fn me(&self) -> NodeRef {
        self.shared.core().me()
    }

    /// Where the node endpoint listens.
    pub fn node_addr(&self) -> anyhow::Result<SocketAddr> {
        self.transport.local_addr()
    }

    /// The node transport (counters, peers).
    pub fn transport(&self) -> &NodeTransport {
        &self.transport
    }

    /// Leaves the cluster (announcing it, so others need not wait to detect it),
    /// finishes the store calls in flight (releases of the zones just saved, above
    /// all) for at most [`STOP_CALLS_WAIT`], and stops the driver and the endpoint.
    /// A second call does nothing.
    pub async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(task) = task else {
            return;
        };
        self.shared.stop.notify_one();
        // A join error means the driver panicked, which tokio has already reported.
        let _ = task.await;
        self.transport.shutdown().await;
    }
}

struct Driver {
    shared: Arc<Shared>,
    me: Member,
    membership: Provider,
    transport: NodeTransport,
    store: Arc<dyn StoreCalls>,
    events: Arc<dyn ClusterEvents>,
    calls: JoinSet<StoreReply>,
    /// The table provider's store calls (at most three at once: heartbeat, read, leave).
    table_calls: JoinSet<TableReply>,
    /// When this node publishes its load next.
    next_load_at: Millis,
}

impl Driver {
    async fn run(mut self, mut inbox: mpsc::Receiver<Received>) {
        loop {
            self.flush();
            let deadline = self.next_deadline();
            tokio::select! {
                () = self.shared.stop.notified() => break,
                received = inbox.recv() => match received {
                    Some(received) => self.handle_received(received),
                    None => break,
                },
                Some(reply) = self.calls.join_next() => {
                    if let Ok(reply) = reply {
                        let now = self.shared.now();
                        self.shared.core().handle_store_reply(now, reply);
                    }
                }
                Some(Ok(reply)) = self.table_calls.join_next() => self.handle_table_reply(reply),
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => self.fire_timers(),
            }
        }
        self.finish_calls().await;
        match &mut self.membership {
            // Leaving fails only for an oversized packet, which a leave is not.
            Provider::Swim(swim) => {
                let _ = swim.leave(self.shared.now());
            }
            Provider::Table(table) => table.leave(),
            Provider::Static(_) => {}
        }
        self.flush();
        self.finish_table_calls().await;
    }

    /// Hands a membership-table answer to the table provider.
    fn handle_table_reply(&mut self, reply: TableReply) {
        let Provider::Table(table) = &mut self.membership else {
            return;
        };
        match reply {
            TableReply::Heartbeat(written) => table.handle_heartbeat(written),
            TableReply::Table(rows) => table.handle_table(rows),
            TableReply::Left => {}
        }
    }

    /// Starts the table provider's store calls.
    fn flush_table(&mut self) {
        let Provider::Table(table) = &mut self.membership else {
            return;
        };
        let me = table.me();
        while let Some(call) = table.poll_call() {
            self.table_calls.spawn(self.store.table_call(me, call));
        }
    }

    /// Waits (within [`STOP_CALLS_WAIT`]) for the table calls in flight: the leave,
    /// above all, so the others drop this node at their next read.
    async fn finish_table_calls(&mut self) {
        let deadline = tokio::time::Instant::now() + STOP_CALLS_WAIT;
        while let Ok(Some(_)) =
            tokio::time::timeout_at(deadline, self.table_calls.join_next()).await
        {}
        self.table_calls.abort_all();
    }

    /// Carries out the store calls queued or in flight (zone releases on shutdown),
    /// within [`STOP_CALLS_WAIT`]; what does not finish lapses with the lease.
    async fn finish_calls(&mut self) {
        let deadline = tokio::time::Instant::now() + STOP_CALLS_WAIT;
        self.flush();
        while !self.calls.is_empty() {
            match tokio::time::timeout_at(deadline, self.calls.join_next()).await {
                Ok(Some(Ok(reply))) => {
                    let now = self.shared.now();
                    self.shared.core().handle_store_reply(now, reply);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.calls.abort_all();
    }

    fn next_deadline(&self) -> tokio::time::Instant {
        let core = self.shared.core().poll_timeout();
        let next = [
            core,
            self.membership.poll_timeout(),
            Some(self.next_load_at),
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = next.map_or(IDLE_WAKE, |at| at.since(self.shared.now()).min(IDLE_WAKE));
        tokio::time::Instant::now() + wait
    }

    fn fire_timers(&mut self) {
        let now = self.shared.now();
        self.membership.handle_timeout(now);
        self.shared.core().handle_timeout(now);
        if now >= self.next_load_at {
            self.next_load_at = now + LOAD_INTERVAL_MS;
            let load = self.events.load();
            self.shared.core().publish_load(now, load);
        }
    }

    fn handle_received(&mut self, received: Received) {
        let now = self.shared.now();
        match received.packet {
            NodePacket::Gossip(bytes) => {
                if let Provider::Swim(swim) = &mut self.membership
                    && let Err(e) = swim.handle_data(now, &bytes)
                {
                    tracing::debug!(from = %received.from, "gossip packet dropped: {e}");
                }
            }
            NodePacket::Probe(bytes) => self.handle_probe(&received.from, received.addr, &bytes),
            NodePacket::Session(bytes) => match SessionMsg::decode(&bytes) {
                Ok(SessionMsg::EndSession {
                    to,
                    player,
                    session,
                }) if to == self.me.node => self.events.end_session(&player, session),
                Ok(SessionMsg::TlsSessions { sessions }) => self.events.tls_sessions(sessions),
                Ok(SessionMsg::PlayerRecord { to, player, record }) if to == self.me.node => {
                    self.events.forwarded_record(&player, record);
                }
                Ok(_) => {
                    tracing::debug!(from = %received.from, "session message for another run dropped")
                }
                Err(e) => {
                    tracing::debug!(from = %received.from, "malformed session message dropped: {e}")
                }
            },
            NodePacket::Handoff(bytes) => match HandoffMsg::decode(&bytes) {
                Ok(msg) if msg.to() == self.me.node => self.events.handoff(received.from, msg),
                Ok(_) => {
                    tracing::debug!(from = %received.from, "handoff message for another run dropped")
                }
                Err(e) => {
                    tracing::debug!(from = %received.from, "malformed handoff message dropped: {e}")
                }
            },
            NodePacket::Crossing(bytes) => match CrossingMsg::decode(&bytes) {
                Ok(msg) if msg.to() == self.me.node => self.events.crossing(received.from, msg),
                Ok(_) => {
                    tracing::debug!(from = %received.from, "crossing message for another run dropped")
                }
                Err(e) => {
                    tracing::debug!(from = %received.from, "malformed crossing message dropped: {e}")
                }
            },
            NodePacket::Message(bytes) => match Envelope::decode(&bytes) {
                // The sender proved its identity in the handshake; a message claiming
                // another sender is dropped.
                Ok(envelope) if envelope.from == received.from => {
                    self.shared.core().handle_message(now, envelope);
                }
                Ok(_) => {
                    tracing::debug!(from = %received.from, "node message with a foreign sender dropped")
                }
                Err(e) => {
                    tracing::debug!(from = %received.from, "malformed node message dropped: {e}")
                }
            },
        }
    }

    /// Answers a ping (whatever this node's provider: probing is cheap) and feeds a
    /// pong to the static provider. The pong's run is the one the transport
    /// authenticated, never a claim in the packet.
    fn handle_probe(&mut self, from: &NodeRef, addr: SocketAddr, bytes: &[u8]) {
        match Probe::decode(bytes) {
            Ok(Probe::Ping { seq }) => {
                let pong = Probe::Pong {
                    seq,
                    client_addr: self.me.client_addr,
                };
                self.transport
                    .send(addr, &NodePacket::Probe(Bytes::from(pong.encode())));
            }
            Ok(Probe::Pong { seq, client_addr }) => {
                if let Provider::Static(fixed) = &mut self.membership {
                    let member = Member {
                        node: *from,
                        addr,
                        client_addr,
                    };
                    fixed.handle_pong(seq, member);
                }
            }
            Err(e) => tracing::debug!(%from, "malformed probe dropped: {e}"),
        }
    }

    /// Moves every output: membership events into the core, gossip and messages onto
    /// the transport, store calls onto tasks, events to the runtime.
    fn flush(&mut self) {
        self.flush_table();
        let now = self.shared.now();
        let events: Vec<_> = std::iter::from_fn(|| self.membership.poll_event()).collect();
        let mut core = self.shared.core();
        if !events.is_empty() {
            core.handle_membership_batch(now, events);
        }
        self.membership.transmit(&self.transport);
        while let Some(envelope) = core.poll_message() {
            match core.view().member(envelope.to.id) {
                Some(member) => self.transport.send(
                    member.addr,
                    &NodePacket::Message(Bytes::from(envelope.encode())),
                ),
                None => {
                    tracing::debug!(to = %envelope.to, "message to a node not in the view dropped")
                }
            }
        }
        let me = core.me();
        let mut refused = Vec::new();
        while let Some(call) = core.poll_store_call() {
            if self.calls.len() >= MAX_STORE_CALLS {
                refused.push(StoreReply::Unavailable { call });
            } else {
                self.calls.spawn(self.store.call(me, call));
            }
        }
        for reply in refused {
            core.handle_store_reply(now, reply);
        }
        let node_events: Vec<NodeEvent> = std::iter::from_fn(|| core.poll_event()).collect();
        drop(core);
        for event in node_events {
            match event {
                NodeEvent::ZoneActive { zone, epoch } => self.events.zone_active(zone, epoch),
                NodeEvent::ZoneLost { zone } => self.events.zone_lost(zone),
                NodeEvent::Superseded => self.events.superseded(),
                NodeEvent::HandoffActivationRefused { zone } => {
                    self.events.handoff_activation_refused(zone);
                }
            }
        }
    }
}
