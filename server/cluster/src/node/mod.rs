//! [`NodeCore`]: one node's cluster brain. It folds membership events into its view and
//! ring, keeps its directory partition, tracks the zones it hosts and its lease, answers
//! players ([`NodeCore::admit`]) and says whether it may accept inputs for a zone
//! ([`NodeCore::accepts_inputs`]).
//!
//! Driving contract: after any `handle_*`, `admit` or `release` call, drain
//! [`poll_message`](NodeCore::poll_message) (envelopes to other nodes),
//! [`poll_store_call`](NodeCore::poll_store_call) (calls the driver makes on the store,
//! answering with [`handle_store_reply`](NodeCore::handle_store_reply)) and
//! [`poll_event`](NodeCore::poll_event); then call
//! [`handle_timeout`](NodeCore::handle_timeout) no later than
//! [`poll_timeout`](NodeCore::poll_timeout). Messages to itself are handled inside.
//!
//! Safety rests on the store and the lease, not on the directory: the store grants a
//! zone to a run only if no other run holds it with a live lease, and a node accepts
//! inputs only for zones it holds while its own lease is live by its own clock. The
//! directory only makes finding the holder fast; when it is wrong (views differ, a
//! message was lost) the store's `Held` answer corrects it.

mod handlers;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use crate::Millis;
use crate::admission::{Admission, AdmissionFacts, NextStep, ZoneHere, decide};
use crate::directory::{Directory, DirectoryConfig};
use crate::lease::{Lease, LeaseConfig};
use crate::load::{LOAD_MAX_AGE_MS, NodeLoad};
use crate::membership::{Member, View};
use crate::msg::{Envelope, NodeMsg, StoreCall};
use crate::ring::{Ring, RingConfig};

/// Timing and limits of a node core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeConfig {
    /// Ring shape.
    pub ring: RingConfig,
    /// Directory partition settings.
    pub directory: DirectoryConfig,
    /// Lease timing.
    pub lease: LeaseConfig,
    /// Lookup, cache and retry limits.
    pub limits: NodeLimits,
}

/// Bounds on what a node core keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// A lookup unanswered for this long is sent again.
    pub lookup_timeout_ms: u64,
    /// After `NotOwner` or `Retry`, wait this long before asking again.
    pub lookup_retry_ms: u64,
    /// Lookups in flight at once; beyond it players are answered `Busy`.
    pub max_lookups: usize,
    /// How long a cached "zone lives there" is trusted.
    pub cache_ttl_ms: u64,
    /// Cached locations kept; when full the cache is emptied (it refills on demand).
    pub max_cache: usize,
    /// Wait before retrying an activation the store refused for lack of a lease or
    /// could not answer.
    pub activation_retry_ms: u64,
    /// An activation call unanswered for this long is made again (the store treats a
    /// repeat from the holder as a new activation of its own zone).
    pub activation_timeout_ms: u64,
    /// Store calls waiting for a retry; beyond it the oldest is dropped (each is
    /// repeated by the timer or the next player anyway).
    pub max_deferred_calls: usize,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            lookup_timeout_ms: 1_000,
            lookup_retry_ms: 200,
            max_lookups: 4_096,
            cache_ttl_ms: 5_000,
            max_cache: 65_536,
            activation_retry_ms: 500,
            activation_timeout_ms: 2_000,
            max_deferred_calls: 1_024,
        }
    }
}

/// Something the driver (and the zone runtime) must know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEvent {
    /// The zone is now held here at `epoch`: load it and serve it.
    ZoneActive {
        /// The zone.
        zone: ZoneId,
        /// Its epoch.
        epoch: u64,
    },
    /// The zone is no longer held here (lease lapsed, or released): stop serving it.
    ZoneLost {
        /// The zone.
        zone: ZoneId,
    },
    /// A newer run of this node exists: stop serving altogether.
    Superseded,
    /// An activation asked for with [`NodeCore::activate_handed_over`] was not
    /// granted (another run holds the zone, or this run has no live lease).
    HandoffActivationRefused {
        /// The zone.
        zone: ZoneId,
    },
}

/// A zone this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ActiveZone {
    epoch: u64,
    /// The lease generation it was granted under; a lapse to another generation
    /// drops it.
    lease_generation: u64,
    /// The activation attempt that made it ours.
    attempt: u64,
}

/// A store activation under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activating {
    /// When to ask the store (again). While a call is out this is its timeout: an
    /// unanswered call (lost, or its reply lost) is made again then.
    retry_at: Millis,
    /// The attempt's number; repeats of the call carry it so the store can tell.
    attempt: u64,
    /// Times the store answered that a node alive in our view holds the zone.
    n_held_live: u32,
    /// Asked for by a live handoff: a refusal ends it at once (reported with
    /// [`NodeEvent::HandoffActivationRefused`]) instead of being retried.
    handoff: bool,
}

/// A lookup in flight or waiting to be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingLookup {
    /// When to send it (again).
    resend_at: Millis,
    /// Times sent; after [`MAX_LOOKUP_ATTEMPTS`] it is dropped (the next player asking
    /// starts a new one).
    attempts: u32,
}

/// How often [`NodeCore::locate`] asks again about a zone nobody was known to hold.
pub const PEEK_INTERVAL_MS: u64 = 1_000;

/// Sends of one lookup before it is given up.
const MAX_LOOKUP_ATTEMPTS: u32 = 10;

/// Counters of a node core since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeCounters {
    /// Lookups sent to other nodes.
    pub n_lookups_sent: u64,
    /// Players redirected to another node.
    pub n_redirects: u64,
    /// Store activations asked for.
    pub n_activations_asked: u64,
    /// Messages dropped because they named another run as receiver.
    pub n_misaddressed: u64,
}

/// One node's cluster core. See the module docs for the driving contract.
#[derive(Debug)]
pub struct NodeCore {
    me: NodeRef,
    config: NodeConfig,
    view: View,
    ring: Ring,
    lease: Lease,
    directory: Directory,
    active: BTreeMap<ZoneId, ActiveZone>,
    /// Zones whose store activation is under way.
    activating: BTreeMap<ZoneId, Activating>,
    /// Zones this node is handing to another node: no longer held (their inputs
    /// are frozen and the store is releasing them), but players asking for them here
    /// are told to wait rather than sent anywhere, until the handoff ends.
    moving: BTreeMap<ZoneId, u64>,
    next_attempt: u64,
    cache: HashMap<ZoneId, (NodeRef, Millis)>,
    lookups: BTreeMap<ZoneId, PendingLookup>,
    /// When each zone's directory owner was last asked where it lives ([`Self::locate`]).
    peeks: HashMap<ZoneId, Millis>,
    /// The load each live member (this one included) published last, and when.
    loads: HashMap<NodeRef, (NodeLoad, Millis)>,
    deferred: VecDeque<(Millis, StoreCall)>,
    outbox: VecDeque<Envelope>,
    local: VecDeque<Envelope>,
    store_calls: VecDeque<StoreCall>,
    events: VecDeque<NodeEvent>,
    stopping: bool,
    counters: NodeCounters,
}

impl NodeCore {
    /// The core of node run `me`, knowing only itself.
    pub fn new(me: Member, config: NodeConfig) -> Self {
        let view = View::new(me);
        let ring = Ring::new(view.members().map(|m| m.node), config.ring);
        Self {
            me: me.node,
            config,
            view,
            ring,
            lease: Lease::new(config.lease),
            directory: Directory::new(config.directory),
            active: BTreeMap::new(),
            activating: BTreeMap::new(),
            moving: BTreeMap::new(),
            next_attempt: 1,
            cache: HashMap::new(),
            lookups: BTreeMap::new(),
            peeks: HashMap::new(),
            loads: HashMap::new(),
            deferred: VecDeque::new(),
            outbox: VecDeque::new(),
            local: VecDeque::new(),
            store_calls: VecDeque::new(),
            events: VecDeque::new(),
            stopping: false,
            counters: NodeCounters::default(),
        }
    }

    /// What to answer a player asking for `zone`. `redirected` says the player was sent
    /// here by another node: then a cached location elsewhere is not trusted (the
    /// sender believed otherwise) and the zone is looked up afresh.
    pub fn admit(&mut self, now: Millis, zone: ZoneId, redirected: bool) -> Admission {
        if redirected && self.cached_host(now, zone).is_some_and(|h| h != self.me) {
            self.cache.remove(&zone);
        }
        let facts = AdmissionFacts {
            me: self.me,
            here: self.zone_here(zone),
            lease_valid: self.lease.is_valid(now),
            known_host: self.cached_host(now, zone),
            stopping: self.stopping,
            lookups_full: self.lookups.len() >= self.config.limits.max_lookups,
        };
        let (answer, step) = decide(facts);
        match step {
            NextStep::Nothing => {}
            NextStep::Lookup => self.start_lookup(now, zone),
            NextStep::Activate => self.start_activation(now, zone),
        }
        if matches!(answer, Admission::Redirect { .. }) {
            self.counters.n_redirects += 1;
        }
        self.drain_local(now);
        answer
    }

    /// Where `zone` lives as far as this node knows, without activating it anywhere:
    /// this node if it holds it, else a fresh cached location. When neither, the
    /// zone's directory owner is asked (at most once per [`PEEK_INTERVAL_MS`] per
    /// zone, oldest asks forgotten past [`NodeLimits::max_lookups`]); its answer fills
    /// the cache, so a
    /// caller asking every tick learns the host within a round trip. Used for ghosts:
    /// a zone shows its neighbours' border entities only if they are held somewhere.
    pub fn locate(&mut self, now: Millis, zone: ZoneId) -> Option<NodeRef> {
        if self.active.contains_key(&zone) {
            return Some(self.me);
        }
        if let Some(host) = self.cached_host(now, zone) {
            return Some(host);
        }
        if let Some((host, _)) = self.peek_directory(now, zone) {
            self.remember_host(now, zone, host);
            return Some(host);
        }
        let asked_recently = self
            .peeks
            .get(&zone)
            .is_some_and(|at| now.since(*at).as_millis() < u128::from(PEEK_INTERVAL_MS));
        if !asked_recently {
            if self.peeks.len() >= self.config.limits.max_lookups {
                self.peeks.clear();
            }
            self.peeks.insert(zone, now);
            self.send_to_owner(zone, NodeMsg::Peek { zone });
            self.drain_local(now);
        }
        None
    }

    /// Publishes this node's load to every live member (the driver calls this every
    /// [`crate::load::LOAD_INTERVAL_MS`]); least-loaded placement decides from it.
    pub fn publish_load(&mut self, now: Millis, load: NodeLoad) {
        self.record_load(now, self.me, load.clone());
        let others: Vec<NodeRef> = self
            .view
            .members()
            .map(|m| m.node)
            .filter(|n| *n != self.me)
            .collect();
        for node in others {
            self.send(node, NodeMsg::Load { load: load.clone() });
        }
    }

    /// The last load each live member published (this node's included), if fresh.
    pub fn loads(&self, now: Millis) -> impl Iterator<Item = (NodeRef, NodeLoad)> + '_ {
        self.loads.iter().filter_map(move |(node, (load, at))| {
            let fresh = now.since(*at).as_millis() < u128::from(LOAD_MAX_AGE_MS);
            (fresh && self.view.is_live(*node)).then(|| (*node, load.clone()))
        })
    }

    pub(super) fn record_load(&mut self, now: Millis, node: NodeRef, load: NodeLoad) {
        if !self.view.is_live(node) {
            return;
        }
        if self.loads.len() >= self.config.limits.max_lookups {
            self.loads.retain(|n, _| self.view.is_live(*n));
        }
        self.directory.set_load(now, node, load.units());
        self.directory.set_draining(node, load.draining);
        self.loads.insert(node, (load, now));
    }

    /// Whether this node may apply inputs to `zone` now: it holds the zone and its lease
    /// is live by its own clock. The invariant the cluster keeps: at any moment at most
    /// one node answers `true` for a zone.
    pub fn accepts_inputs(&self, now: Millis, zone: ZoneId) -> bool {
        !self.stopping && self.lease.is_valid(now) && self.active.contains_key(&zone)
    }

    /// Whether this node's lease is live by its own clock.
    pub fn lease_valid(&self, now: Millis) -> bool {
        self.lease.is_valid(now)
    }

    /// Gives `zone` up (it went idle and its final checkpoint is written).
    pub fn release(&mut self, now: Millis, zone: ZoneId) {
        if let Some(ActiveZone { epoch, .. }) = self.active.remove(&zone) {
            self.store_calls
                .push_back(StoreCall::Release { zone, epoch });
            self.send_to_owner(
                zone,
                NodeMsg::Unregister {
                    zone,
                    host: self.me,
                    epoch,
                },
            );
            self.events.push_back(NodeEvent::ZoneLost { zone });
        }
        self.drain_local(now);
    }

    /// The next message for another node.
    pub fn poll_message(&mut self) -> Option<Envelope> {
        self.outbox.pop_front()
    }

    /// The next call for the store.
    pub fn poll_store_call(&mut self) -> Option<StoreCall> {
        self.store_calls.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// This node run.
    pub fn me(&self) -> NodeRef {
        self.me
    }

    /// The current view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The current ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The directory partition.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Zones held here (active), with their epochs.
    pub fn active_zones(&self) -> impl Iterator<Item = (ZoneId, u64)> + '_ {
        self.active
            .iter()
            .map(|(zone, active)| (*zone, active.epoch))
    }

    /// Counters since start.
    pub fn counters(&self) -> NodeCounters {
        self.counters
    }

    /// Whether this run stopped serving (superseded).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// One line on what this node knows of `zone`, for failure reports and logs.
    pub fn describe_zone(&self, now: Millis, zone: ZoneId) -> String {
        format!(
            "{}: owner {:?} entry {:?} here {:?} cached {:?} lookup {:?} lease {}",
            zone.0,
            self.ring.owner(zone).map(|o| o.id),
            self.directory.entry(zone).map(|e| (e.host, e.epoch)),
            self.zone_here(zone),
            self.cache.get(&zone),
            self.lookups.get(&zone),
            self.lease.is_valid(now),
        )
    }

    fn zone_here(&self, zone: ZoneId) -> ZoneHere {
        let pending = self.activating.contains_key(&zone) || self.moving.contains_key(&zone);
        match (self.active.get(&zone), pending) {
            (Some(active), _) => ZoneHere::Active {
                epoch: active.epoch,
            },
            (None, true) => ZoneHere::Activating,
            (None, false) => ZoneHere::NotHosted,
        }
    }

    /// A live handoff of `zone` away from this node froze it and is about to release
    /// it in the store: it is no longer held here (no inputs), and players asking for
    /// it wait until [`Self::handoff_ended`]. Returns the epoch it was held at.
    pub fn handoff_started(&mut self, zone: ZoneId) -> Option<u64> {
        let active = self.active.remove(&zone)?;
        self.moving.insert(zone, active.epoch);
        Some(active.epoch)
    }

    /// The handoff of `zone` away from here ended with the zone on `host` (`None`:
    /// it did not move, and [`Self::activate_handed_over`] takes it back here).
    pub fn handoff_ended(&mut self, now: Millis, zone: ZoneId, host: Option<NodeRef>) {
        self.moving.remove(&zone);
        if let Some(host) = host {
            self.remember_host(now, zone, host);
        }
    }

    /// Zones being handed away from this node, with the epoch each was held at.
    pub fn moving_zones(&self) -> impl Iterator<Item = (ZoneId, u64)> + '_ {
        self.moving.iter().map(|(zone, epoch)| (*zone, *epoch))
    }

    /// Asks the store to activate `zone` here for a live handoff: the target taking
    /// a zone another node released, or the source taking back one that did not
    /// move. Granted, it is announced like any activation ([`NodeEvent::ZoneActive`],
    /// registered with the directory); refused, it is not retried but reported
    /// ([`NodeEvent::HandoffActivationRefused`]). False if an activation of the zone
    /// is already under way or it is held here.
    pub fn activate_handed_over(&mut self, now: Millis, zone: ZoneId) -> bool {
        if self.active.contains_key(&zone) || self.activating.contains_key(&zone) || self.stopping {
            return false;
        }
        self.moving.remove(&zone);
        self.start_activation(now, zone);
        if let Some(activating) = self.activating.get_mut(&zone) {
            activating.handoff = true;
        }
        self.drain_local(now);
        true
    }

    fn cached_host(&self, now: Millis, zone: ZoneId) -> Option<NodeRef> {
        let (host, at) = *self.cache.get(&zone)?;
        let fresh = now.since(at).as_millis() < u128::from(self.config.limits.cache_ttl_ms);
        (fresh && self.view.is_live(host)).then_some(host)
    }

    fn remember_host(&mut self, now: Millis, zone: ZoneId, host: NodeRef) {
        if self.cache.len() >= self.config.limits.max_cache {
            self.cache.clear();
        }
        self.cache.insert(zone, (host, now));
    }

    fn start_lookup(&mut self, now: Millis, zone: ZoneId) {
        if self.lookups.contains_key(&zone) || self.lookups.len() >= self.config.limits.max_lookups
        {
            return;
        }
        self.lookups.insert(
            zone,
            PendingLookup {
                resend_at: now,
                attempts: 0,
            },
        );
        self.send_lookup(now, zone);
    }

    fn send_lookup(&mut self, now: Millis, zone: ZoneId) {
        let resend_at = now + self.config.limits.lookup_timeout_ms;
        let Some(pending) = self.lookups.get_mut(&zone) else {
            return;
        };
        if pending.attempts >= MAX_LOOKUP_ATTEMPTS {
            self.lookups.remove(&zone);
            return;
        }
        pending.attempts += 1;
        pending.resend_at = resend_at;
        if self.ring.owner(zone) != Some(self.me) {
            self.counters.n_lookups_sent += 1;
        }
        self.send_to_owner(zone, NodeMsg::Lookup { zone });
    }

    fn start_activation(&mut self, now: Millis, zone: ZoneId) {
        if self.active.contains_key(&zone) || self.activating.contains_key(&zone) || self.stopping {
            return;
        }
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        self.activating.insert(
            zone,
            Activating {
                retry_at: now,
                attempt,
                n_held_live: 0,
                handoff: false,
            },
        );
        self.ask_store_to_activate(now, zone);
    }

    fn ask_store_to_activate(&mut self, now: Millis, zone: ZoneId) {
        let Some(activating) = self.activating.get_mut(&zone) else {
            return;
        };
        if now < activating.retry_at {
            return;
        }
        activating.retry_at = now + self.config.limits.activation_timeout_ms;
        let attempt = activating.attempt;
        self.counters.n_activations_asked += 1;
        self.store_calls
            .push_back(StoreCall::Activate { zone, attempt });
    }

    /// Sends `msg` to the directory owner of `zone` (handled inside if that is us).
    fn send_to_owner(&mut self, zone: ZoneId, msg: NodeMsg) {
        if let Some(owner) = self.ring.owner(zone) {
            self.send(owner, msg);
        }
    }

    fn send(&mut self, to: NodeRef, msg: NodeMsg) {
        let envelope = Envelope {
            from: self.me,
            to,
            msg,
        };
        if to == self.me {
            self.local.push_back(envelope);
        } else {
            self.outbox.push_back(envelope);
        }
    }

    /// Handles messages this node sent itself. Local chains end after two hops (a
    /// lookup, then its answer), so this settles; the bound guards against a logic
    /// error turning into a hang.
    fn drain_local(&mut self, now: Millis) {
        let mut budget = 1usize << 20;
        while let Some(envelope) = self.local.pop_front() {
            assert!(budget > 0, "local message loop did not settle");
            budget -= 1;
            self.dispatch(now, envelope);
        }
    }
}
