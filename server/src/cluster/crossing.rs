//! Players and ghosts crossing into zones on other nodes: the runtime's half (the
//! wire messages are [`zonemesh_cluster::crossing`]).
//!
//! A player walking out of zone Z1 on node A into zone Z2 held by node B moves
//! make-before-break, and exactly once:
//! 1. Z1 takes the player out of its world into a transfer and hands it to the
//!    cluster ([`OtherNodes::send_player`]); from then on the player exists only in
//!    that transfer, as it does between two zones of one node.
//! 2. A offers it to B (`Offer{id}`), repeating the offer every [`OFFER_RESEND`] until
//!    B answers; B answers a repeat with its first answer (it remembers the last
//!    [`ANSWERS_REMEMBERED`]), so the player is taken at most once.
//! 3. B checks it holds Z2, takes the player's claim over from A in the store, puts the
//!    entity into Z2 (same `NetId`, inputs applied up to the same sequence number, the
//!    client's view continued from a summary of what the client holds) with a link no
//!    connection drives yet, and answers `Accepted`.
//! 4. A sends the client `Redirect{addr, token}` on its live connection; the SDK
//!    connects to B while still connected to A, presents the token, and B attaches
//!    the new connection to the waiting link and welcomes it with the same entity.
//!    Inputs the client sent meanwhile carry their sequence numbers: B applies only
//!    newer ones.
//! 5. A client that does not arrive within [`ARRIVAL_WAIT`] is treated as gone: its
//!    link closes, Z2 saves the player and the claim is released.
//!
//! When B refuses (not its zone, the player has another session there, busy), A
//! takes the player back at once. When B cannot be reached (gone from the view for
//! [`OFFER_PATIENCE`], or silent for [`OFFER_GIVE_UP`]), A stops offering but takes
//! the player back only once its last offer is older than [`ARRIVAL_WAIT`] plus a
//! second, so a copy B may have accepted is gone by then (an answer arriving
//! meanwhile still counts). Taking back: A claims the player again, gives its records
//! a new generation (above anything B could have saved from the transfer) and
//! returns it to Z1 at the border; if the client left meanwhile, A only saves it
//! (no claim: a newer session may hold it). A player refused once is not offered
//! again for [`REFUSED_BACKOFF`].
//!
//! Sessions stay single (the seeded simulation found each of these holes):
//! - a player waiting on B for its client is one of B's sessions: a new login of the
//!   player on B, or another node asking B to end the session, ends it (its zone
//!   saves it and the claim is released);
//! - while a transfer of a player is in flight from A, A lets no new session of that
//!   player in (it answers `Loading`), and B refuses an offer for a player that has
//!   another live session on B: a claim names a run, not a session, so an old
//!   session's transfer could otherwise take over a newer session's claim.
//!
//! Ghosts go the other way every tick, best effort ([`OtherNodes::send_ghosts`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use zonemesh_cluster::crossing::{
    CarriedPlayer, CrossingMsg, GhostBatch, GhostState, OfferOutcome,
};
use zonemesh_replication::{ClientView, ReplicatedState, ViewHandover, components_hash};
use zonemesh_shared::control::{ErrorCode, ServerControl};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::quant::Vec2;
use zonemesh_shared::redirect::RedirectClaims;
use zonemesh_shared::status::CrossingReport;
use zonemesh_store::PlayerClaim;

use super::runtime::{ClusterRuntime, REDIRECT_TOKEN_TTL};
use super::store_calls::store_run;
use crate::game::SessionId;
use crate::link::ClientLink;
use crate::persist::RecordVersions;
use crate::zone::elsewhere::{GhostOrigin, OtherNodes};
use crate::zone::{PlayerTransfer, ZoneMessage};

/// Players on their way to other nodes at once; more wait at the border.
pub const MAX_OFFERS_IN_FLIGHT: usize = 1024;
/// Players arrived from other nodes whose clients have not connected yet; more are
/// refused (`Busy`) and stay on their node.
pub const MAX_WAITING_ARRIVALS: usize = 4096;
/// How often an unanswered offer is repeated.
pub const OFFER_RESEND: Duration = Duration::from_millis(250);
/// How long an offer to a node gone from this node's view is kept up before the
/// player is taken back.
pub const OFFER_PATIENCE: Duration = Duration::from_secs(5);
/// How long an offer to a silent node is kept up at most.
pub const OFFER_GIVE_UP: Duration = Duration::from_secs(30);
/// How long an arrived player waits for its client (the redirect token's lifetime,
/// plus a margin for the token's last-moment use).
pub const ARRIVAL_WAIT: Duration = REDIRECT_TOKEN_TTL.saturating_add(Duration::from_secs(1));
/// Offers received being handled at once (each waits on the store); more are answered
/// `Busy` at once and the sender takes its player back.
pub const MAX_OFFERS_HANDLED: usize = 1024;
/// Offers whose answers are remembered, to answer repeats alike.
pub const ANSWERS_REMEMBERED: usize = 8192;
/// How long a player whose offer was refused stays at the border before the next.
pub const REFUSED_BACKOFF: Duration = Duration::from_millis(500);
/// How long after its last offer a player that got no answer is taken back: by then
/// a copy the other node may have accepted has expired there.
pub const TAKE_BACK_AFTER: Duration = ARRIVAL_WAIT.saturating_add(Duration::from_secs(1));
/// Players remembered as refused; past it the memory is cleared.
const REFUSED_REMEMBERED: usize = 4096;
/// Datagram size a waiting link assumes until its client connects: the largest a new
/// QUIC connection can send before it discovers its path's MTU, whatever its
/// connection ids. QUIC's smallest MTU, 1200 bytes, less a short header with the
/// longest connection id (1 + 20), the longest packet number (4), the AEAD tag (16)
/// and a datagram frame's header (1 + 8). The snapshot built while the client was on
/// its way is the first it gets; built for 1200-byte datagrams, its full ones were too
/// large for the new connection and were skipped, and the player waited a tick.
pub const WAITING_DATAGRAM_BYTES: u32 = 1200 - (1 + 20) - 4 - 16 - (1 + 8);

/// Counters of players and ghosts crossing between nodes, since start.
#[derive(Debug, Default)]
pub struct CrossingCounters {
    /// Players offered to other nodes (each offer once, however often repeated).
    pub offered: AtomicU64,
    /// Players another node accepted and whose clients were sent there.
    pub moved_out: AtomicU64,
    /// Players taken back after a refusal or an unreachable node.
    pub taken_back: AtomicU64,
    /// Players accepted from other nodes.
    pub moved_in: AtomicU64,
    /// Accepted players whose clients arrived.
    pub clients_arrived: AtomicU64,
    /// Accepted players whose clients never arrived (saved and let go).
    pub arrivals_expired: AtomicU64,
    /// Ghost batches sent to other nodes.
    pub ghost_batches_sent: AtomicU64,
    /// Ghost batches received from other nodes and handed to a zone.
    pub ghost_batches_received: AtomicU64,
}

/// A player waiting here for its client.
struct Waiting {
    link: Arc<ClientLink>,
}

/// What this node knows of offers it received.
#[derive(Default)]
struct AnswerMemory {
    /// `None` while the offer is being handled.
    answers: HashMap<(NodeRef, u64), Option<OfferOutcome>>,
    order: VecDeque<(NodeRef, u64)>,
}

/// What to do with an offer received.
enum Seen {
    New,
    InProgress,
    Answered(OfferOutcome),
}

impl AnswerMemory {
    fn begin(&mut self, key: (NodeRef, u64)) -> Seen {
        match self.answers.get(&key) {
            Some(Some(outcome)) => return Seen::Answered(*outcome),
            Some(None) => return Seen::InProgress,
            None => {}
        }
        if self.order.len() >= ANSWERS_REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.answers.remove(&oldest);
        }
        self.answers.insert(key, None);
        self.order.push_back(key);
        Seen::New
    }

    fn finish(&mut self, key: (NodeRef, u64), outcome: OfferOutcome) {
        if let Some(slot) = self.answers.get_mut(&key) {
            *slot = Some(outcome);
        }
    }
}

/// The crossing state of one node.
pub struct Crossings {
    next_offer: AtomicU64,
    /// Offers received being handled, at most [`MAX_OFFERS_HANDLED`].
    handling: Arc<tokio::sync::Semaphore>,
    offers: Mutex<HashMap<u64, oneshot::Sender<OfferOutcome>>>,
    answers: Mutex<AnswerMemory>,
    waiting: Mutex<HashMap<u64, Waiting>>,
    refused: Mutex<HashMap<String, Instant>>,
    /// Players on their way from this node (offered, or being taken back).
    in_transit: Mutex<HashMap<String, u32>>,
    counters: CrossingCounters,
}

impl std::fmt::Debug for Crossings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crossings")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Default for Crossings {
    fn default() -> Self {
        Self {
            next_offer: AtomicU64::new(0),
            handling: Arc::new(tokio::sync::Semaphore::new(MAX_OFFERS_HANDLED)),
            offers: Mutex::default(),
            answers: Mutex::default(),
            waiting: Mutex::default(),
            refused: Mutex::default(),
            in_transit: Mutex::default(),
            counters: CrossingCounters::default(),
        }
    }
}

impl Crossings {
    /// Counters since start.
    pub fn counters(&self) -> &CrossingCounters {
        &self.counters
    }

    /// The counters for the status document.
    pub fn report(&self) -> CrossingReport {
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        CrossingReport {
            players_out: load(&c.moved_out),
            players_in: load(&c.moved_in),
            players_taken_back: load(&c.taken_back),
            arrivals_expired: load(&c.arrivals_expired),
            ghost_batches_out: load(&c.ghost_batches_sent),
            ghost_batches_in: load(&c.ghost_batches_received),
        }
    }

    /// Whether a transfer of `player` from this node is in flight.
    pub fn in_transit(&self, player: &str) -> bool {
        lock(&self.in_transit).contains_key(player)
    }

    fn transit_started(&self, player: &str) {
        *lock(&self.in_transit).entry(player.to_owned()).or_default() += 1;
    }

    fn transit_ended(&self, player: &str) {
        let mut transit = lock(&self.in_transit);
        if let Some(n) = transit.get_mut(player) {
            *n -= 1;
            if *n == 0 {
                transit.remove(player);
            }
        }
    }

    /// Takes `player`'s link waiting here for its client in session `session`.
    fn take_waiting(&self, player: &str, session: u64) -> Option<Arc<ClientLink>> {
        let mut waiting = lock(&self.waiting);
        let found = waiting
            .get(&session)
            .is_some_and(|w| w.link.name() == player);
        found
            .then(|| waiting.remove(&session))
            .flatten()
            .map(|w| w.link)
    }

    fn refused_recently(&self, player: &str) -> bool {
        lock(&self.refused)
            .get(player)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn note_refused(&self, player: &str) {
        let mut refused = lock(&self.refused);
        if refused.len() >= REFUSED_REMEMBERED {
            refused.clear();
        }
        refused.insert(player.to_owned(), Instant::now() + REFUSED_BACKOFF);
    }
}

/// The player an offer carries.
fn link_name(offer: &CrossingMsg) -> &str {
    match offer {
        CrossingMsg::Offer { player, .. } => &player.name,
        _ => "",
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Short critical sections that leave the maps consistent at every step.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The wire form of a player in a transfer.
fn carry(transfer: &PlayerTransfer) -> CarriedPlayer {
    let view = transfer.view.handover().encode();
    CarriedPlayer {
        session: transfer.link.session().0,
        name: transfer.name.clone(),
        net_id: transfer.net_id,
        position: [transfer.position.x, transfer.position.y],
        velocity: [transfer.velocity.x, transfer.velocity.y],
        max_speed: transfer.max_speed,
        last_input_seq: transfer.last_input_seq,
        components: transfer.components.clone(),
        next_record_version: transfer.versions.peek_next(),
        view,
    }
}

impl OtherNodes for ClusterRuntime {
    fn host_elsewhere(&self, zone: ZoneId) -> Option<NodeRef> {
        let cluster = self.cluster()?;
        cluster.locate(zone).filter(|host| *host != cluster.me())
    }

    fn send_player(
        &self,
        zone: ZoneId,
        host: NodeRef,
        transfer: PlayerTransfer,
    ) -> Result<(), Box<PlayerTransfer>> {
        let crossings = self.crossings();
        let (Some(this), Some(handle)) = (self.this(), self.tokio()) else {
            return Err(Box::new(transfer));
        };
        if crossings.refused_recently(&transfer.name) {
            return Err(Box::new(transfer));
        }
        let id = crossings.next_offer.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut offers = lock(&crossings.offers);
            if offers.len() >= MAX_OFFERS_IN_FLIGHT {
                return Err(Box::new(transfer));
            }
            offers.insert(id, tx);
        }
        let offer = CrossingMsg::Offer {
            id,
            to: host,
            from_zone: transfer.link.zone(),
            zone,
            player: carry(&transfer),
        };
        count(&crossings.counters.offered);
        crossings.transit_started(&transfer.name);
        handle.spawn(async move { this.drive_offer(id, host, zone, offer, transfer, rx).await });
        Ok(())
    }

    fn send_ghosts(
        &self,
        host: NodeRef,
        origin: GhostOrigin,
        zone: ZoneId,
        states: &[ReplicatedState],
    ) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let batch = GhostBatch {
            to: host,
            from_zone: origin.zone,
            zone,
            epoch: origin.epoch,
            tick: origin.tick,
            states: states
                .iter()
                .map(|s| GhostState {
                    id: s.id,
                    kind: s.kind,
                    pos: s.pos,
                    components: s.components.to_vec(),
                })
                .collect(),
        };
        if cluster.send_crossing(host, &CrossingMsg::Ghosts(batch)) {
            count(&self.crossings().counters.ghost_batches_sent);
        }
    }
}

impl ClusterRuntime {
    /// Handles a crossing message from node run `from` (on the driver task: the work
    /// that waits on the store goes to a task of its own).
    pub(super) fn handle_crossing(&self, from: NodeRef, msg: CrossingMsg) {
        match msg {
            CrossingMsg::Offer {
                id, zone, player, ..
            } => self.on_offer(from, id, zone, player),
            CrossingMsg::Answer { id, outcome, .. } => {
                if let Some(waiter) = lock(&self.crossings().offers).remove(&id) {
                    let _ = waiter.send(outcome);
                }
            }
            CrossingMsg::Ghosts(batch) => self.on_ghosts(batch),
        }
    }

    /// The client of `claims` arriving with its redirect token: the link its player
    /// waits on here, if it was moved here from another node.
    pub fn take_arrival(&self, claims: &RedirectClaims) -> Option<Arc<ClientLink>> {
        let crossings = self.crossings();
        let mut waiting = lock(&crossings.waiting);
        let found = waiting
            .get(&claims.session)
            .is_some_and(|w| w.link.name() == claims.player);
        let link = found.then(|| waiting.remove(&claims.session))??.link;
        count(&crossings.counters.clients_arrived);
        Some(link)
    }

    async fn drive_offer(
        self: Arc<Self>,
        id: u64,
        host: NodeRef,
        zone: ZoneId,
        offer: CrossingMsg,
        transfer: PlayerTransfer,
        mut answer: oneshot::Receiver<OfferOutcome>,
    ) {
        let started = Instant::now();
        let mut last_sent = None;
        let mut out_of_view_since = None;
        let outcome = loop {
            let in_view = self
                .cluster()
                .is_some_and(|cluster| cluster.send_crossing(host, &offer));
            let now = Instant::now();
            if in_view {
                last_sent = Some(now);
                out_of_view_since = None;
            }
            let gone_for = now.duration_since(*out_of_view_since.get_or_insert(now));
            let unreachable = !in_view && (last_sent.is_none() || gone_for >= OFFER_PATIENCE);
            if unreachable || started.elapsed() >= OFFER_GIVE_UP {
                break self.last_chance(last_sent, &mut answer).await;
            }
            match tokio::time::timeout(OFFER_RESEND, &mut answer).await {
                Ok(Ok(outcome)) => break Some(outcome),
                Ok(Err(_)) => break None,
                Err(_) => {}
            }
        };
        lock(&self.crossings().offers).remove(&id);
        match outcome {
            Some(OfferOutcome::Accepted) => self.send_client_on(host, zone, &transfer.link),
            other => {
                tracing::debug!(player = transfer.name, %host, ?other, "player not taken by the other node; taking it back");
                self.take_back(host, transfer).await;
            }
        }
        self.crossings().transit_ended(link_name(&offer));
    }

    /// Offering stopped without an answer: waits until a copy the other node may have
    /// accepted from the last offer has expired there, taking an answer that still
    /// comes. Nothing sent means nothing to wait for.
    async fn last_chance(
        &self,
        last_sent: Option<Instant>,
        answer: &mut oneshot::Receiver<OfferOutcome>,
    ) -> Option<OfferOutcome> {
        let last_sent = last_sent?;
        let until = tokio::time::Instant::from_std(last_sent + TAKE_BACK_AFTER);
        match tokio::time::timeout_at(until, answer).await {
            Ok(Ok(outcome)) => Some(outcome),
            _ => None,
        }
    }

    /// Tells the client of a player another node took where to go.
    pub(super) fn send_client_on(&self, host: NodeRef, zone: ZoneId, link: &Arc<ClientLink>) {
        count(&self.crossings().counters.moved_out);
        link.mark_moved_away();
        let addr = self.client_addr_of(host);
        let token = self
            .redirects()
            .issue(link.name(), link.session().0, zone, host);
        match (addr, token) {
            (Some(addr), Ok(token)) => link.push_control(ServerControl::Redirect {
                addr: addr.to_string(),
                token,
            }),
            // The other node left the view in between: the player waits there until
            // it expires and is saved; the client reconnects and resumes from it.
            _ => link.kick(
                ErrorCode::ZoneMoved,
                "the player moved to another node; reconnect",
            ),
        }
    }

    /// Brings back a player the other node did not take (see the module docs).
    async fn take_back(&self, host: NodeRef, mut transfer: PlayerTransfer) {
        let crossings = self.crossings();
        crossings.note_refused(&transfer.name);
        count(&crossings.counters.taken_back);
        let link = Arc::clone(&transfer.link);
        if link.is_closed() {
            // The client left meanwhile: its zone only saves the player. No claim: a
            // newer session of the player may hold it by now.
        } else if self.claim_back(host, &link).await {
            // Above anything the other node could have saved from the transfer.
            transfer.versions = RecordVersions::after(Some(transfer.versions.peek_next()));
        } else {
            // Someone else holds the player now: save what it did here and let go.
            link.kick(ErrorCode::Replaced, "the player connected elsewhere");
            link.close();
        }
        let from_zone = link.zone();
        let Some(host_zones) = self.zone_host() else {
            return;
        };
        let directory = host_zones.directory();
        let sent = directory.reserve_arrival(from_zone)
            && match host_zones
                .context()
                .router
                .send(from_zone, ZoneMessage::TransferIn(Box::new(transfer)))
            {
                Ok(()) => true,
                Err(_) => {
                    directory.arrived(from_zone);
                    false
                }
            };
        if !sent {
            tracing::warn!(
                player = link.name(),
                zone = ?from_zone,
                "the zone the player left is gone; what it did since its last save is lost"
            );
            link.kick(ErrorCode::ZoneMoved, "the player's zone moved; reconnect");
        }
    }

    /// Claims a player back from `host` (which may have claimed it before answering).
    async fn claim_back(&self, host: NodeRef, link: &ClientLink) -> bool {
        let Some(cluster) = self.cluster() else {
            return false;
        };
        let me = store_run(cluster.me());
        let claim = self
            .store()
            .claim_player(link.name(), me, link.session().0, Some(store_run(host)))
            .await;
        match claim {
            Ok(PlayerClaim::Claimed { .. }) => true,
            Ok(PlayerClaim::HeldBy { .. }) => false,
            Err(e) => {
                tracing::warn!(player = link.name(), "cannot claim a player back: {e}");
                false
            }
        }
    }

    fn on_offer(&self, from: NodeRef, id: u64, zone: ZoneId, player: CarriedPlayer) {
        let seen = lock(&self.crossings().answers).begin((from, id));
        match seen {
            Seen::Answered(outcome) => self.answer(from, id, outcome),
            Seen::InProgress => {}
            Seen::New => {
                let permit = Arc::clone(&self.crossings().handling).try_acquire_owned();
                let (Some(this), Some(handle), Ok(permit)) = (self.this(), self.tokio(), permit)
                else {
                    lock(&self.crossings().answers).finish((from, id), OfferOutcome::Busy);
                    self.answer(from, id, OfferOutcome::Busy);
                    return;
                };
                handle.spawn(async move {
                    let outcome = this.admit_player(from, zone, player).await;
                    lock(&this.crossings().answers).finish((from, id), outcome);
                    this.answer(from, id, outcome);
                    drop(permit);
                });
            }
        }
    }

    fn answer(&self, to: NodeRef, id: u64, outcome: OfferOutcome) {
        if let Some(cluster) = self.cluster() {
            cluster.send_crossing(to, &CrossingMsg::Answer { id, to, outcome });
        }
    }

    /// Takes a player offered by node run `from` into `zone` (see the module docs).
    async fn admit_player(
        self: &Arc<Self>,
        from: NodeRef,
        zone: ZoneId,
        p: CarriedPlayer,
    ) -> OfferOutcome {
        let (Some(cluster), Some(host_zones)) = (self.cluster(), self.zone_host()) else {
            return OfferOutcome::Busy;
        };
        let held = cluster.active_zones().iter().any(|(z, _)| *z == zone);
        if !held || !host_zones.directory().is_active(zone) {
            return OfferOutcome::NotHere;
        }
        let Some(sessions) = self.sessions() else {
            return OfferOutcome::Busy;
        };
        if sessions.has_other_session(&p.name, p.session) {
            // A newer login of the player here: this transfer's session is stale.
            return OfferOutcome::Claimed;
        }
        if self.crossings().in_transit(&p.name) {
            // A session of the player is on its way from here; its claim may be
            // taken back here, so nothing else of the player comes in until then.
            return OfferOutcome::Busy;
        }
        if lock(&self.crossings().waiting).len() >= MAX_WAITING_ARRIVALS {
            return OfferOutcome::Busy;
        }
        let handover = match ViewHandover::decode(&p.view) {
            Ok(handover) => handover,
            Err(e) => {
                tracing::warn!(player = p.name, %from, "offered player's view unreadable: {e}");
                return OfferOutcome::Busy;
            }
        };
        let me = store_run(cluster.me());
        let claim = self
            .store()
            .claim_player(&p.name, me, p.session, Some(store_run(from)))
            .await;
        match claim {
            Ok(PlayerClaim::Claimed { .. }) => {}
            Ok(PlayerClaim::HeldBy { .. }) => return OfferOutcome::Claimed,
            Err(e) => {
                tracing::warn!(player = p.name, "cannot claim an offered player: {e}");
                return OfferOutcome::Busy;
            }
        }
        let link = Arc::new(ClientLink::new(
            SessionId(p.session),
            p.name.clone(),
            zone,
            WAITING_DATAGRAM_BYTES,
        ));
        link.wait_for_client();
        let ctx = host_zones.context();
        let transfer = PlayerTransfer {
            net_id: p.net_id,
            name: p.name,
            link: Arc::clone(&link),
            position: Vec2::new(p.position[0], p.position[1]),
            velocity: Vec2::new(p.velocity[0], p.velocity[1]),
            max_speed: p.max_speed,
            last_input_seq: p.last_input_seq,
            view: ClientView::resume(ctx.config.view.clone(), &handover),
            components: p.components,
            versions: RecordVersions::continuing_from(p.next_record_version),
            from_other_node: true,
        };
        let directory = host_zones.directory();
        if !directory.reserve_arrival(zone) {
            return OfferOutcome::NotHere;
        }
        if ctx
            .router
            .send(zone, ZoneMessage::TransferIn(Box::new(transfer)))
            .is_err()
        {
            directory.arrived(zone);
            return OfferOutcome::Busy;
        }
        count(&self.crossings().counters.moved_in);
        sessions.register_arrival(&link);
        self.wait_for_client(link);
        OfferOutcome::Accepted
    }

    /// Keeps an arrived player's link for its client, and lets the player go (saved by
    /// its zone, claim released) if the client does not come in time.
    pub(super) fn expect_client(&self, link: Arc<ClientLink>) {
        if let Some(this) = self.this() {
            this.wait_for_client(link);
        }
    }

    /// Forgets a player that waited here for its client without letting it go (its
    /// zone did not come here after all; the node it came from keeps it).
    pub(super) fn forget_arrival(&self, link: &Arc<ClientLink>) {
        let mut waiting = lock(&self.crossings().waiting);
        let same = waiting
            .get(&link.session().0)
            .is_some_and(|w| Arc::ptr_eq(&w.link, link));
        if same {
            waiting.remove(&link.session().0);
        }
    }

    fn wait_for_client(self: &Arc<Self>, link: Arc<ClientLink>) {
        let session = link.session().0;
        lock(&self.crossings().waiting).insert(
            session,
            Waiting {
                link: Arc::clone(&link),
            },
        );
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(ARRIVAL_WAIT).await;
            let expired = {
                let mut waiting = lock(&this.crossings().waiting);
                let same = waiting
                    .get(&session)
                    .is_some_and(|w| Arc::ptr_eq(&w.link, &link));
                same.then(|| waiting.remove(&session)).flatten().is_some()
            };
            if expired {
                count(&this.crossings().counters.arrivals_expired);
                tracing::debug!(player = link.name(), "moved player's client never came");
                link.close();
                crate::net::session::release_claim(Arc::clone(&this), link).await;
            }
        });
    }

    /// Ends `player`'s session `session` if it is a player waiting here for its
    /// client (another node lets the player in): its zone saves it, then the claim is
    /// released. False if there is no such player.
    pub(super) fn end_waiting(&self, player: &str, session: u64) -> bool {
        let Some(link) = self.crossings().take_waiting(player, session) else {
            return false;
        };
        link.close();
        if let (Some(this), Some(handle)) = (self.this(), self.tokio()) {
            handle.spawn(crate::net::session::release_claim(this, link));
        }
        true
    }

    fn on_ghosts(&self, batch: GhostBatch) {
        let Some(host_zones) = self.zone_host() else {
            return;
        };
        if !host_zones.directory().is_active(batch.zone) {
            return;
        }
        let states = batch
            .states
            .into_iter()
            .map(|g| {
                let components: Arc<[_]> = g.components.into();
                ReplicatedState {
                    id: g.id,
                    kind: g.kind,
                    pos: g.pos,
                    components_hash: components_hash(&components),
                    components,
                }
            })
            .collect();
        let msg = ZoneMessage::Ghosts {
            origin: GhostOrigin {
                zone: batch.from_zone,
                epoch: batch.epoch,
                tick: batch.tick,
            },
            states,
        };
        // A full inbox drops the batch; the next tick's replaces it anyway.
        if host_zones.context().router.send(batch.zone, msg).is_ok() {
            count(&self.crossings().counters.ghost_batches_received);
        }
    }
}
