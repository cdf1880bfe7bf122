//! One node's partition of the zone directory: `zone → (host, epoch)` for the zones
//! whose ring range this node owns in its current view.
//!
//! - A lookup of a zone nobody holds *places* it (see [`placement`](crate::placement))
//!   and remembers the choice as a pending entry (epoch 0), so every other lookup of
//!   that zone gets the same answer: many players racing for a cold zone cause one
//!   activation.
//! - Registering is compare-and-set on the epoch: an entry is replaced only by a
//!   higher epoch (or the same host confirming), so a late registration of a lost
//!   activation cannot overwrite its successor.
//! - When the ring changes, entries of ranges this node lost are dropped (their hosts
//!   re-register with the new owner), and for a while after any change, lookups of
//!   unknown zones answer `Retry` instead of placing, to give hosts time to
//!   re-register. Correctness does not rest on this: the store grants a zone to one
//!   live node only, and a node told to activate a zone held elsewhere registers the
//!   real holder instead.
//! - Entries whose host left the view are removed and reported, so the caller can
//!   bring those zones back elsewhere.

use std::collections::BTreeMap;

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use crate::Millis;
use crate::load::LOAD_MAX_AGE_MS;
use crate::membership::View;
use crate::msg::LookupAnswer;
use crate::placement::{Candidate, PlacementPolicy, place};
use crate::ring::Ring;

/// Directory timing and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// How long a placement may stay unconfirmed before the zone is placed again.
    pub placing_timeout_ms: u64,
    /// After a view change, how long lookups of unknown zones answer `Retry`.
    pub reregister_grace_ms: u64,
    /// Most entries one partition holds; beyond it lookups of new zones answer `Retry`
    /// (the ring spreads zones, so reaching it means the cluster is undersized).
    pub max_entries: usize,
    /// How first activations are placed.
    pub placement: PlacementPolicy,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            placing_timeout_ms: 10_000,
            reregister_grace_ms: 1_000,
            max_entries: 1 << 20,
            placement: PlacementPolicy::default(),
        }
    }
}

/// One directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry {
    /// The node holding (or chosen to activate) the zone.
    pub host: NodeRef,
    /// The registered epoch; 0 while the chosen node activates.
    pub epoch: u64,
    /// When the entry was written.
    pub since: Millis,
}

/// One node's directory partition.
#[derive(Debug, Clone)]
pub struct Directory {
    config: DirectoryConfig,
    entries: BTreeMap<ZoneId, DirEntry>,
    grace_until: Millis,
    /// Placements made per node since its last load report: added to the report, so
    /// placements between two reports still spread.
    n_placed: BTreeMap<NodeRef, u64>,
    /// Each member's last published load ([`crate::load::NodeLoad::units`]) and when
    /// it arrived.
    published: BTreeMap<NodeRef, (u64, Millis)>,
    /// Members whose last report said they are draining.
    draining: std::collections::BTreeSet<NodeRef>,
}

/// Draining members remembered at most; past it the set is cleared (reports refill it
/// within a second).
const MAX_DRAINING: usize = 4096;

impl Directory {
    /// An empty partition.
    pub fn new(config: DirectoryConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
            grace_until: Millis(0),
            n_placed: BTreeMap::new(),
            published: BTreeMap::new(),
            draining: std::collections::BTreeSet::new(),
        }
    }

    /// Answers a lookup of `zone` from `requester`, placing the zone if nobody holds
    /// it. The caller has checked that this node owns the zone's range.
    pub fn lookup(
        &mut self,
        now: Millis,
        zone: ZoneId,
        requester: NodeRef,
        view: &View,
    ) -> LookupAnswer {
        if let Some(entry) = self.live_entry(now, zone, view) {
            return LookupAnswer::Host {
                host: entry.host,
                epoch: entry.epoch,
            };
        }
        if now < self.grace_until || self.entries.len() >= self.config.max_entries {
            return LookupAnswer::Retry;
        }
        match self.place(now, zone, Some(requester), view) {
            Some(host) => LookupAnswer::Host { host, epoch: 0 },
            None => LookupAnswer::Retry,
        }
    }

    /// The live host of `zone` and its epoch, if one registered (a zone placed but not
    /// yet activated has no host to show). Never places anything.
    pub fn peek(&self, now: Millis, zone: ZoneId, view: &View) -> Option<(NodeRef, u64)> {
        self.live_entry(now, zone, view)
            .filter(|e| e.epoch > 0)
            .map(|e| (e.host, e.epoch))
    }

    /// Places `zone` on a live member and records the choice.
    pub fn place(
        &mut self,
        now: Millis,
        zone: ZoneId,
        requester: Option<NodeRef>,
        view: &View,
    ) -> Option<NodeRef> {
        self.place_excluding(now, zone, requester, view, None)
    }

    /// Places `zone` on a live member other than `excluded` (a node reported dead that
    /// this view still lists) and records the choice.
    pub fn place_excluding(
        &mut self,
        now: Millis,
        zone: ZoneId,
        requester: Option<NodeRef>,
        view: &View,
        excluded: Option<NodeRef>,
    ) -> Option<NodeRef> {
        let live: Vec<Candidate> = view
            .members()
            .filter(|m| Some(m.node) != excluded)
            .map(|m| Candidate {
                node: m.node,
                load: self.load_of(now, m.node),
            })
            .collect();
        // A draining node gets nothing new, unless every node is draining.
        let open: Vec<Candidate> = live
            .iter()
            .filter(|c| !self.draining.contains(&c.node))
            .copied()
            .collect();
        let candidates = if open.is_empty() { live } else { open };
        let host = place(self.config.placement, zone, requester, &candidates)?;
        *self.n_placed.entry(host).or_default() += 1;
        self.entries.insert(
            zone,
            DirEntry {
                host,
                epoch: 0,
                since: now,
            },
        );
        Some(host)
    }

    /// Records `node`'s published load (in placement units) at `now`.
    pub fn set_load(&mut self, now: Millis, node: NodeRef, units: u64) {
        self.published.insert(node, (units, now));
        self.n_placed.remove(&node);
    }

    /// Whether `node` is draining, as its last report said: placement skips it.
    pub fn set_draining(&mut self, node: NodeRef, draining: bool) {
        if draining {
            if self.draining.len() >= MAX_DRAINING {
                self.draining.clear();
            }
            self.draining.insert(node);
        } else {
            self.draining.remove(&node);
        }
    }

    /// What placement counts for `node`: its last fresh report plus the zones placed
    /// there since.
    pub fn load_of(&self, now: Millis, node: NodeRef) -> u64 {
        let published = self
            .published
            .get(&node)
            .filter(|(_, at)| now.since(*at).as_millis() < u128::from(LOAD_MAX_AGE_MS))
            .map_or(0, |(units, _)| *units);
        published + self.n_placed.get(&node).copied().unwrap_or(0)
    }

    fn live_entry(&self, now: Millis, zone: ZoneId, view: &View) -> Option<DirEntry> {
        let entry = *self.entries.get(&zone)?;
        let expired = entry.epoch == 0
            && now.since(entry.since).as_millis() >= u128::from(self.config.placing_timeout_ms);
        (view.is_live(entry.host) && !expired).then_some(entry)
    }

    /// Compare-and-set registration; returns the entry now in place.
    pub fn register(&mut self, now: Millis, zone: ZoneId, host: NodeRef, epoch: u64) -> DirEntry {
        let accept = match self.entries.get(&zone) {
            None => true,
            Some(current) => {
                epoch > current.epoch || (epoch == current.epoch && host == current.host)
            }
        };
        if accept {
            self.entries.insert(
                zone,
                DirEntry {
                    host,
                    epoch,
                    since: now,
                },
            );
        }
        self.entries[&zone]
    }

    /// Removes the entry if it is still `host` at `epoch`.
    pub fn unregister(&mut self, zone: ZoneId, host: NodeRef, epoch: u64) {
        if self
            .entries
            .get(&zone)
            .is_some_and(|e| e.host == host && e.epoch == epoch)
        {
            self.entries.remove(&zone);
        }
    }

    /// Adapts to a new view: drops entries of ranges `me` no longer owns, starts the
    /// re-registration grace, and removes entries whose host left, returning their
    /// zones (to be brought back elsewhere).
    pub fn on_view_change(
        &mut self,
        now: Millis,
        me: NodeRef,
        view: &View,
        ring: &Ring,
    ) -> Vec<ZoneId> {
        self.grace_until = now + self.config.reregister_grace_ms;
        self.entries.retain(|zone, _| ring.owner(*zone) == Some(me));
        self.n_placed.retain(|node, _| view.is_live(*node));
        self.published.retain(|node, _| view.is_live(*node));
        let orphaned: Vec<ZoneId> = self
            .entries
            .iter()
            .filter(|(_, e)| !view.is_live(e.host))
            .map(|(zone, _)| *zone)
            .collect();
        for zone in &orphaned {
            self.entries.remove(zone);
        }
        orphaned
    }

    /// The entry for `zone`, if any.
    pub fn entry(&self, zone: ZoneId) -> Option<DirEntry> {
        self.entries.get(&zone).copied()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the partition is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::membership::{Member, MembershipEvent};

    fn view_of(ids: &[u64]) -> View {
        let member = |id: u64| Member {
            node: NodeRef::new(id, 1),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16)),
            client_addr: SocketAddr::from(([127, 0, 0, 1], 8000 + id as u16)),
        };
        let mut view = View::new(member(ids[0]));
        for &id in &ids[1..] {
            view.apply(MembershipEvent::Up(member(id)));
        }
        view
    }

    #[test]
    fn racing_lookups_get_one_placement() {
        let view = view_of(&[1, 2, 3]);
        let mut dir = Directory::new(DirectoryConfig::default());
        let first = dir.lookup(Millis(0), ZoneId(5), NodeRef::new(2, 1), &view);
        assert_eq!(
            first,
            LookupAnswer::Host {
                host: NodeRef::new(2, 1),
                epoch: 0
            }
        );
        for requester in [1, 3, 2] {
            let again = dir.lookup(Millis(10), ZoneId(5), NodeRef::new(requester, 1), &view);
            assert_eq!(
                again, first,
                "later requesters are sent to the first choice"
            );
        }
    }

    #[test]
    fn least_loaded_placement_follows_published_load_and_spreads_between_reports() {
        let view = view_of(&[1, 2, 3]);
        let config = DirectoryConfig {
            placement: PlacementPolicy::LeastLoaded,
            ..DirectoryConfig::default()
        };
        let mut dir = Directory::new(config);
        let (a, b, c) = (NodeRef::new(1, 1), NodeRef::new(2, 1), NodeRef::new(3, 1));
        let now = Millis(100);
        dir.set_load(now, a, 50);
        dir.set_load(now, b, 3);
        dir.set_load(now, c, 10);
        // b is least loaded until the zones placed there since its report make it
        // as busy as c; then they alternate.
        let hosts: Vec<NodeRef> = (0..12)
            .map(|z| dir.place(now, ZoneId(z), None, &view).expect("placed"))
            .collect();
        assert!(hosts[..7].iter().all(|h| *h == b), "{hosts:?}");
        assert!(hosts.contains(&c), "{hosts:?}");
        assert!(
            !hosts.contains(&a),
            "the busiest node gets nothing: {hosts:?}"
        );
        // A new report replaces the estimate; a stale one counts as nothing.
        dir.set_load(now, b, 100);
        assert_eq!(dir.load_of(now, b), 100);
        let later = now + LOAD_MAX_AGE_MS;
        assert_eq!(dir.load_of(later, a), 0);
    }

    #[test]
    fn a_draining_node_gets_no_new_zone_unless_all_drain() {
        let (a, b) = (NodeRef::new(1, 1), NodeRef::new(2, 1));
        let view = view_of(&[1, 2]);
        let mut dir = Directory::new(DirectoryConfig::default());
        let now = Millis(0);
        dir.set_draining(a, true);
        for z in 0..4 {
            assert_eq!(dir.place(now, ZoneId(z), Some(a), &view), Some(b));
        }
        dir.set_draining(b, true);
        assert!(
            dir.place(now, ZoneId(9), Some(a), &view).is_some(),
            "someone takes it"
        );
        dir.set_draining(a, false);
        dir.set_draining(b, false);
        assert_eq!(dir.place(now, ZoneId(10), Some(a), &view), Some(a));
    }

    #[test]
    fn entries_of_a_dead_host_are_reported() {
        let mut view = view_of(&[1, 2]);
        let me = NodeRef::new(1, 1);
        let ring = Ring::new([me], Default::default());
        let mut dir = Directory::new(DirectoryConfig::default());
        dir.register(Millis(0), ZoneId(7), NodeRef::new(2, 1), 1);
        view.apply(MembershipEvent::Down(NodeRef::new(2, 1)));
        assert_eq!(
            dir.on_view_change(Millis(5), me, &view, &ring),
            vec![ZoneId(7)]
        );
        assert!(dir.is_empty());
        assert_eq!(
            dir.lookup(Millis(6), ZoneId(8), me, &view),
            LookupAnswer::Retry,
            "grace"
        );
    }
}
