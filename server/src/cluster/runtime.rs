//! A zone server in a cluster: the glue between the cluster driver ([`Cluster`]) and
//! the node's zones and sessions.
//!
//! - Zones: the node loads a zone only when the cluster holds it here
//!   ([`ZoneOwnership`]); when the cluster activates a zone here (a player asked, or
//!   its host died) the zone is loaded at once, and when the cluster loses one (its
//!   lease lapsed, another node took it) the zone sends its players away and leaves
//!   memory unsaved ([`ClusterEvents`]).
//! - Sessions: [`ClusterRuntime::admit`] answers where a player's zone lives, and
//!   redirect tokens are signed for the target and checked on arrival
//!   ([`RedirectDesk`]).
//!
//! The parts refer to each other (the zones need the cluster to load, the cluster
//! needs the zones to tell), so the runtime is built empty and attached to each once
//! they exist; before that it grants nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

use anyhow::Context;
use zonemesh_cluster::admission::Admission;
use zonemesh_cluster::node::NodeConfig as ClusterNodeConfig;
use zonemesh_shared::control::ErrorCode;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::redirect::{
    self, RedirectClaims, RedirectError, RedirectKeys, RedirectVerifier,
};
use zonemesh_shared::replay::ReplayGuard;
use zonemesh_shared::status::ClusterStatusReport;
use zonemesh_store::{Activation, PlayerClaim, PlayerRecord, Store};

use super::crossing::Crossings;
use super::drain::DrainState;
use super::driver::{Cluster, ClusterEvents, MembershipConfig};
use super::handoff::Handoffs;
use super::rebalance::RebalanceDriver;
use super::store_calls::{StoreAdapter, store_run};
use crate::net::resumption::SharedSessions;
use crate::persist::ZoneHost;
use crate::persist::lifecycle::ZonePhase;
use crate::persist::ownership::{AcquireError, OwnershipFuture, ZoneOwnership};
use zonemesh_cluster::crossing::CrossingMsg;
use zonemesh_cluster::load::NodeLoad;
use zonemesh_cluster::session_msg::{
    FORWARDED_DATA_MAX, ForwardedRecord, SessionMsg, SharedSession,
};

/// How long a redirect token stays valid: long enough for a client on a slow link to
/// reconnect, short enough that a captured token is soon worthless.
pub const REDIRECT_TOKEN_TTL: Duration = Duration::from_secs(10);
/// Redirect nonces remembered at once (each for at most [`REDIRECT_TOKEN_TTL`]); past
/// it arrivals are answered `Busy` until older tokens expire.
pub const REDIRECT_GUARD_CAPACITY: usize = 65_536;
/// Releases of claims without a session here, asked for by other nodes, in flight at
/// once; more requests are dropped until some finish.
pub const MAX_UNUSED_RELEASES: usize = 64;
/// The key id of the redirect key derived from the cluster secret.
const REDIRECT_KEY_ID: u32 = 1;

/// How a server joins its cluster.
#[derive(Debug, Clone)]
pub struct ClusterSetup {
    /// This node run (from the data directory, see `crate::identity`).
    pub me: NodeRef,
    /// Where the node-to-node endpoint listens.
    pub node_listen: SocketAddr,
    /// How other nodes reach the node endpoint; `None` for the address it is bound to.
    pub node_advertise: Option<SocketAddr>,
    /// The address other nodes send players to; `None` for the address the client
    /// endpoint is bound to (right on loopback, wrong behind NAT or on 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// Who is in the cluster.
    pub membership: MembershipConfig,
    /// The cluster secret: authenticates node links and signs redirect tokens. The
    /// same on every node, at least 16 bytes.
    pub secret: Vec<u8>,
    /// Lease timing and the cores' limits.
    pub node: ClusterNodeConfig,
    /// The rebalancer's settings; `None` turns it off.
    pub rebalance: Option<zonemesh_cluster::rebalance::RebalanceConfig>,
}

/// The cluster as the node's zones and sessions see it.
pub struct ClusterRuntime {
    cluster: OnceLock<Cluster>,
    host: OnceLock<Weak<ZoneHost>>,
    sessions: OnceLock<Box<dyn LocalSessions>>,
    /// Releases of claims without a session here in flight, at most
    /// [`MAX_UNUSED_RELEASES`].
    unused_releases: Arc<Semaphore>,
    adapter: StoreAdapter,
    store: Arc<dyn Store>,
    redirects: RedirectDesk,
    /// Players and ghosts crossing to and from other nodes.
    crossings: Crossings,
    /// Live zone handoffs to and from other nodes.
    handoffs: Handoffs,
    /// Moving every zone away before a stop.
    drain: DrainState,
    /// Moving hot zones to cooler nodes, when enabled.
    rebalancer: RebalanceDriver,
    /// The client endpoint's TLS sessions, shared with the other nodes.
    tls_sessions: Arc<SharedSessions>,
    /// This runtime, for the tasks it starts.
    this: Weak<ClusterRuntime>,
    /// The runtime the tasks run on (zones call in from their own threads).
    tokio: Option<tokio::runtime::Handle>,
    /// Each zone's total tick time at the last load report.
    tick_costs: Mutex<TickCosts>,
}

/// What each zone's ticks cost per second between two load reports, from the zones'
/// cumulative tick-time histograms.
#[derive(Debug, Default)]
struct TickCosts {
    /// When the last sample was taken, and each zone's total tick CPU time then (µs).
    last: Option<(std::time::Instant, std::collections::HashMap<ZoneId, f64>)>,
}

impl TickCosts {
    /// Each zone's tick CPU microseconds per second since the last sample (a zone seen
    /// for the first time, or reloaded since, counts from zero: its next report is
    /// right). CPU time rather than tick durations: on a busy machine a tick's
    /// duration includes the time its thread waited for a core, which says more
    /// about the other processes than about the zone.
    fn sample(&mut self, zones: &[crate::zone::ZoneStatus]) -> Vec<(ZoneId, u32)> {
        let now = std::time::Instant::now();
        let totals: std::collections::HashMap<ZoneId, f64> = zones
            .iter()
            .map(|z| (z.zone, z.tick_cpu_us as f64))
            .collect();
        let costs = match &self.last {
            Some((at, before)) => {
                let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
                totals
                    .iter()
                    .map(|(zone, total)| {
                        let spent = (total - before.get(zone).copied().unwrap_or(0.0)).max(0.0);
                        (*zone, (spent / secs).min(f64::from(u32::MAX)) as u32)
                    })
                    .collect()
            }
            None => totals.keys().map(|zone| (*zone, 0)).collect(),
        };
        self.last = Some((now, totals));
        costs
    }
}

/// The version of a player's record when its claim was made (`None`: no record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordVersion(pub Option<u64>);

impl std::fmt::Debug for ClusterRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRuntime")
            .field("cluster", &self.cluster.get())
            .finish_non_exhaustive()
    }
}

impl ClusterRuntime {
    /// A runtime over `store`, signing redirects with `secret`; attach the zones with
    /// [`Self::attach_host`] and the cluster with [`Self::attach_cluster`]. Call it
    /// inside the tokio runtime its tasks are to run on.
    pub fn new(store: Arc<dyn Store>, secret: &[u8], lease: Duration) -> anyhow::Result<Arc<Self>> {
        let redirects = RedirectDesk::new(secret)?;
        Ok(Arc::new_cyclic(|this| Self {
            cluster: OnceLock::new(),
            host: OnceLock::new(),
            sessions: OnceLock::new(),
            unused_releases: Arc::new(Semaphore::new(MAX_UNUSED_RELEASES)),
            adapter: StoreAdapter::new(Arc::clone(&store), lease),
            store,
            redirects,
            crossings: Crossings::default(),
            handoffs: Handoffs::default(),
            drain: DrainState::default(),
            rebalancer: RebalanceDriver::default(),
            tls_sessions: SharedSessions::clustered(),
            this: this.clone(),
            tokio: tokio::runtime::Handle::try_current().ok(),
            tick_costs: Mutex::new(TickCosts::default()),
        }))
    }

    /// Players and ghosts crossing between this node and others.
    pub fn crossings(&self) -> &Crossings {
        &self.crossings
    }

    pub(super) fn this(&self) -> Option<Arc<Self>> {
        self.this.upgrade()
    }

    pub(super) fn weak(&self) -> Weak<Self> {
        self.this.clone()
    }

    /// Live zone handoffs to and from other nodes.
    pub(super) fn handoffs(&self) -> &Handoffs {
        &self.handoffs
    }

    pub(super) fn drain_state(&self) -> &DrainState {
        &self.drain
    }

    pub(super) fn rebalancer(&self) -> &RebalanceDriver {
        &self.rebalancer
    }

    /// The last load each live member published (its default when none came yet).
    pub(super) fn member_loads(&self) -> Vec<(NodeRef, NodeLoad)> {
        self.cluster
            .get()
            .map_or_else(Vec::new, Cluster::member_loads)
    }

    pub(super) fn tokio(&self) -> Option<&tokio::runtime::Handle> {
        self.tokio.as_ref()
    }

    pub(super) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(super) fn zone_host(&self) -> Option<Arc<ZoneHost>> {
        self.host()
    }

    /// The store calls the cluster driver makes (they keep activations for the zones).
    pub fn store_calls(&self) -> StoreAdapter {
        self.adapter.clone()
    }

    /// Attaches the node's zones (once).
    pub fn attach_host(&self, host: &Arc<ZoneHost>) {
        let _ = self.host.set(Arc::downgrade(host));
    }

    /// The node's sessions, once attached.
    pub(super) fn sessions(&self) -> Option<&dyn LocalSessions> {
        self.sessions.get().map(|s| s.as_ref())
    }

    /// Attaches the node's sessions (once), so other nodes can end them.
    pub fn attach_sessions(&self, sessions: Box<dyn LocalSessions>) {
        if self.sessions.set(sessions).is_err() {
            tracing::error!("sessions attached twice; keeping the first");
        }
    }

    /// Claims `player` for session `session` on this node before letting it in, so no
    /// player is in two nodes' worlds at once. `Ok(Some(version))`: claimed, and the
    /// player's record had `version` then. `Ok(None)`: another run holds the player's
    /// session; if it is in this node's view it was asked to end it, and the player is
    /// to retry shortly. A run that is gone is never taken over from here: the store
    /// takes its claims over once its lease has lapsed (by then it accepts no input),
    /// while a run merely cut off from this node may still be serving the player.
    pub async fn claim_player(
        &self,
        player: &str,
        session: u64,
    ) -> anyhow::Result<Option<RecordVersion>> {
        let cluster = self
            .cluster
            .get()
            .context("node is still joining its cluster")?;
        let me = store_run(cluster.me());
        match self.store.claim_player(player, me, session, None).await? {
            PlayerClaim::Claimed { record_version } => Ok(Some(RecordVersion(record_version))),
            PlayerClaim::HeldBy { node, session: old } => {
                let holder = NodeRef::new(node.id, node.incarnation);
                let asked = cluster.send_end_session(holder, player, old);
                tracing::debug!(player, %holder, asked, "player's session is on another node");
                Ok(None)
            }
        }
    }

    /// Gives `player`'s claim back after its session `session` ended here and its
    /// record was saved (or could not be), so the next node reads the newest record.
    pub async fn release_player(&self, player: &str, session: u64) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let me = store_run(cluster.me());
        if let Err(e) = self.store.release_player(player, me, session).await {
            // The claim stays until another node takes it over from a dead run or
            // asks again; the player meanwhile waits, it is never let in twice.
            tracing::warn!(player, "cannot release the player's claim: {e}");
        }
    }

    /// Attaches the running cluster (once).
    pub fn attach_cluster(&self, cluster: Cluster) {
        let me = cluster.me();
        if self.cluster.set(cluster).is_err() {
            tracing::error!("cluster attached twice; keeping the first");
            return;
        }
        self.start_handoffs(me);
        self.start_rebalancer();
    }

    /// The running cluster, once attached.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    /// What to answer a player asking for `zone`; `redirected` when the player came
    /// with a redirect token.
    pub fn admit(&self, zone: ZoneId, redirected: bool) -> Admission {
        match self.cluster.get() {
            Some(cluster) => cluster.admit(zone, redirected),
            None => Admission::Busy {
                retry_after_ms: zonemesh_cluster::admission::LEASE_RETRY_MS,
            },
        }
    }

    /// The address players use to reach `node`, if it is a live member.
    pub fn client_addr_of(&self, node: NodeRef) -> Option<SocketAddr> {
        self.cluster.get()?.client_addr_of(node)
    }

    /// This node's view of its cluster, once attached. Redirects are the players this
    /// node sent elsewhere (the cores also answer the zone host's own questions).
    pub fn status(&self) -> Option<ClusterStatusReport> {
        let mut report = self.cluster.get()?.status();
        report.redirects = self.redirects.issued();
        report.crossings = self.crossings.report();
        report.draining = self.is_draining();
        report.drained = self.is_drained();
        Some(report)
    }

    /// Where redirect tokens are signed and checked.
    pub fn redirects(&self) -> &RedirectDesk {
        &self.redirects
    }

    /// Checks a redirect token presented to this node (everything but its use) and
    /// returns its claims, or the code to refuse it with and why.
    pub fn check_redirect(&self, token: &[u8]) -> Result<RedirectClaims, (ErrorCode, String)> {
        let me = self.cluster.get().map(Cluster::me).ok_or((
            ErrorCode::Busy,
            "node is still joining its cluster".to_owned(),
        ))?;
        self.redirects.check(token, me)
    }

    /// The TLS session store of this node's client endpoint: what it issues is shared
    /// with the other nodes, what they issue is kept here.
    pub fn tls_sessions(&self) -> &Arc<SharedSessions> {
        &self.tls_sessions
    }

    /// Sends `player`'s record, read here, to node run `to`, which this node just
    /// redirected the player to (a record too large for one message is not sent: `to`
    /// reads it from the store).
    pub fn forward_record(&self, to: NodeRef, player: &str, record: Option<&PlayerRecord>) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let record = match record {
            Some(r) if r.data.len() > FORWARDED_DATA_MAX => return,
            Some(r) => Some(ForwardedRecord {
                zone: r.zone,
                x: r.x,
                y: r.y,
                data: r.data.to_vec(),
                updated_at_unix_ms: r.updated_at_unix_ms,
                version: r.version,
            }),
            None => None,
        };
        let player = player.to_owned();
        cluster.send_session_msg(to, &SessionMsg::PlayerRecord { to, player, record });
    }

    /// Sends every TLS session waiting to be shared now, rather than when the sharing
    /// task next runs: called as a client is redirected, so the session it is about to
    /// resume is on its way to the other nodes before the `Redirect` is.
    pub fn flush_tls_sessions(&self) {
        loop {
            let batch = self.tls_sessions.take_queued();
            if batch.is_empty() {
                return;
            }
            self.share_sessions(batch);
        }
    }

    /// Sends TLS sessions this node issued to the other live members.
    pub fn share_sessions(&self, sessions: Vec<SharedSession>) {
        if let Some(cluster) = self.cluster.get() {
            cluster.share_tls_sessions(sessions);
        }
    }

    /// Uses up a checked token as the player is let in; a second use is refused.
    pub fn consume_redirect(&self, claims: &RedirectClaims) -> Result<(), (ErrorCode, String)> {
        self.redirects.consume(claims)
    }

    /// Leaves the cluster (after the zones' final saves, so their releases go out).
    pub async fn stop(&self) {
        if let Some(cluster) = self.cluster.get() {
            cluster.stop().await;
        }
    }

    fn host(&self) -> Option<Arc<ZoneHost>> {
        self.host.get()?.upgrade()
    }

    /// The zone's saved state for the activation at `epoch`: the one the activation
    /// call read if it is still kept, else a fresh read.
    async fn saved_state(&self, zone: ZoneId, epoch: u64) -> Result<Activation, AcquireError> {
        if let Some(kept) = self.adapter.take_activation(zone)
            && kept.epoch == epoch
        {
            return Ok(kept);
        }
        let record = self
            .store
            .load_zone(zone.0)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(Activation { epoch, record })
    }
}

impl ZoneOwnership for ClusterRuntime {
    fn acquire(&self, zone: ZoneId) -> OwnershipFuture<'_, Activation> {
        Box::pin(async move {
            match self.admit(zone, false) {
                Admission::Welcome { epoch } => self.saved_state(zone, epoch).await,
                other => Err(AcquireError::NotGranted(format!("{other:?}"))),
            }
        })
    }

    fn holds(&self, zone: ZoneId, epoch: u64) -> bool {
        self.cluster
            .get()
            .is_some_and(|c| c.active_zones().contains(&(zone, epoch)))
    }

    fn released(&self, zone: ZoneId) {
        if let Some(cluster) = self.cluster.get() {
            cluster.release(zone);
        }
    }
}

impl ClusterEvents for ClusterRuntime {
    fn tls_sessions(&self, sessions: Vec<SharedSession>) {
        self.tls_sessions.receive(sessions);
    }

    fn forwarded_record(&self, player: &str, record: Option<ForwardedRecord>) {
        let Some(host) = self.host() else {
            return;
        };
        let record = record.map(|r| PlayerRecord {
            player: player.to_owned(),
            zone: r.zone,
            x: r.x,
            y: r.y,
            data: r.data.into(),
            updated_at_unix_ms: r.updated_at_unix_ms,
            version: r.version,
        });
        host.players().provide(player, record);
    }

    /// Loads the zone now (it may have players waiting, or have lost its host), or
    /// retires an older activation of it still in memory.
    fn zone_active(&self, zone: ZoneId, epoch: u64) {
        if self.handoff_zone_active(zone, epoch) {
            return;
        }
        let Some(host) = self.host() else {
            return;
        };
        match host.directory().phase(zone) {
            Some(ZonePhase::Inactive) => {
                host.directory().request(zone);
            }
            Some(ZonePhase::Active { epoch: here }) if here != epoch => host.revoke(zone),
            _ => {}
        }
    }

    fn zone_lost(&self, zone: ZoneId) {
        if let Some(host) = self.host() {
            host.revoke(zone);
        }
    }

    /// Ends the player's session here if it is still on, which releases the claim once
    /// the record is saved; a claim without a session here (a join that did not
    /// finish) is released at once.
    fn end_session(&self, player: &str, session: u64) {
        if self.end_waiting(player, session) {
            return;
        }
        let ended = self
            .sessions
            .get()
            .is_some_and(|sessions| sessions.end(player, session));
        if ended {
            return;
        }
        let (Some(cluster), Ok(handle)) =
            (self.cluster.get(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        // Bounded: past the limit the request is dropped; the asking node asks
        // again on the player's next retry.
        let Ok(permit) = Arc::clone(&self.unused_releases).try_acquire_owned() else {
            return;
        };
        let me = store_run(cluster.me());
        let store = Arc::clone(&self.store);
        let player = player.to_owned();
        handle.spawn(async move {
            if let Err(e) = store.release_player(&player, me, session).await {
                tracing::warn!(player, "cannot release an unused claim: {e}");
            }
            drop(permit);
        });
    }

    fn crossing(&self, from: NodeRef, msg: CrossingMsg) {
        self.handle_crossing(from, msg);
    }

    fn handoff(&self, from: NodeRef, msg: zonemesh_cluster::handoff::HandoffMsg) {
        self.on_handoff(from, msg);
    }

    fn handoff_activation_refused(&self, zone: ZoneId) {
        ClusterRuntime::handoff_activation_refused(self, zone);
    }

    /// Zones in memory, their players and entities, the slowest zone's p99 tick, and
    /// what each zone's ticks cost since the last report.
    fn load(&self) -> NodeLoad {
        let Some(host) = self.host() else {
            return NodeLoad::default();
        };
        let zones = host.status();
        let sum = |f: fn(&crate::zone::ZoneStatus) -> usize| {
            u32::try_from(zones.iter().map(f).sum::<usize>()).unwrap_or(u32::MAX)
        };
        let tick_p99_us = zones
            .iter()
            .map(|z| z.tick_time_us.value_at_quantile(0.99))
            .max()
            .unwrap_or(0);
        let mut zone_costs = self
            .tick_costs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sample(&zones);
        let tick_us_per_s = zone_costs.iter().map(|(_, c)| u64::from(*c)).sum::<u64>();
        zone_costs.sort_by_key(|(zone, cost)| (std::cmp::Reverse(*cost), zone.0));
        zone_costs.truncate(zonemesh_cluster::load::ZONE_COSTS_MAX);
        NodeLoad {
            draining: self.is_draining(),
            zones: u32::try_from(zones.len()).unwrap_or(u32::MAX),
            players: sum(|z| z.players),
            entities: sum(|z| z.entities),
            tick_p99_us: u32::try_from(tick_p99_us).unwrap_or(u32::MAX),
            tick_us_per_s: u32::try_from(tick_us_per_s).unwrap_or(u32::MAX),
            zone_costs,
        }
    }

    fn superseded(&self) {
        tracing::error!(
            "a newer run of this node id is live (same data directory started twice?); this run admits no one"
        );
    }
}

/// The node's sessions as other nodes may touch them.
pub trait LocalSessions: Send + Sync {
    /// Ends `player`'s session `session` (the player logged in elsewhere); false if
    /// there is no such session here.
    fn end(&self, player: &str, session: u64) -> bool;
    /// Makes a player moved here from another node, waiting for its client, one of
    /// this node's sessions: a new login of the player here replaces it, and a request
    /// to end its session ends it. A different session of the player here is ended.
    fn register_arrival(&self, link: &Arc<crate::link::ClientLink>);
    /// Whether `player` has a live session here other than `session`.
    fn has_other_session(&self, player: &str, session: u64) -> bool;
}

/// Signs redirect tokens for other nodes and admits the ones presented here, each at
/// most once. A token is checked when presented but used up only when the player is
/// let in, so a client told `Loading` retries with the same token.
pub struct RedirectDesk {
    keys: RedirectKeys,
    verifier: Mutex<RedirectVerifier>,
    /// Tokens signed, since start.
    issued: AtomicU64,
}

impl std::fmt::Debug for RedirectDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedirectDesk")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedirectDesk {
    /// A desk keyed with the cluster secret.
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        let keys = || RedirectKeys::new(REDIRECT_KEY_ID, secret);
        Ok(Self {
            keys: keys()?,
            verifier: Mutex::new(RedirectVerifier::new(
                keys()?,
                ReplayGuard::new(REDIRECT_GUARD_CAPACITY),
            )),
            issued: AtomicU64::new(0),
        })
    }

    /// A token (text form) sending `player`'s session to `zone` on `target`.
    pub fn issue(
        &self,
        player: &str,
        session: u64,
        zone: ZoneId,
        target: NodeRef,
    ) -> anyhow::Result<String> {
        let claims = RedirectClaims {
            player: player.to_owned(),
            session,
            zone,
            target,
            // The issuer knows where the zone lives, not at which epoch.
            epoch: 0,
            expires_unix_ms: unix_ms().saturating_add(REDIRECT_TOKEN_TTL.as_millis() as u64),
            nonce: rand::random(),
        };
        let token = redirect::to_text(&redirect::sign(&self.keys, &claims)?);
        self.issued.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }

    /// Players sent to another node with a token, since start.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Checks a token presented to node run `me`: format, key, signature, expiry,
    /// target, and that it was not used already.
    pub fn check(&self, token: &[u8], me: NodeRef) -> Result<RedirectClaims, (ErrorCode, String)> {
        let verifier = self.verifier.lock().unwrap_or_else(|p| p.into_inner());
        let claims = redirect::verify(&verifier.keys, token, unix_ms(), me).map_err(refusal)?;
        if verifier.guard.contains(claims.nonce) {
            return Err(refusal(RedirectError::Replayed));
        }
        Ok(claims)
    }

    /// Remembers a checked token's nonce until it expires; refuses one already used.
    pub fn consume(&self, claims: &RedirectClaims) -> Result<(), (ErrorCode, String)> {
        let mut verifier = self.verifier.lock().unwrap_or_else(|p| p.into_inner());
        verifier
            .guard
            .check_and_remember(claims.nonce, claims.expires_unix_ms, unix_ms())
            .map_err(|e| refusal(RedirectError::from(e)))
    }
}

fn refusal(e: RedirectError) -> (ErrorCode, String) {
    (ErrorCode::from(&e), format!("redirect refused: {e}"))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
