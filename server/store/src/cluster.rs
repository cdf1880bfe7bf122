//! The store's cluster contract: node leases by run and leased zone activation, as
//! public types and as pure rules both backends apply inside their transactions.
//!
//! The rules are those of the cluster crate's store model (`SimStore`): a run renews
//! its lease; a newer incarnation of the same node id supersedes every older one; a
//! lease that ran out (expiry is exclusive) comes back with the next generation; a
//! zone is granted to a run only while that run's lease is live and no other run
//! holds the zone under a live lease; a repeat of the attempt that made a run the
//! holder gets the same epoch back. Every time is the *store's* clock in milliseconds
//! since the Unix epoch, read inside the transaction, so nodes never compare clocks
//! with each other.
//!
//! Player claims keep one session per player across the cluster: a node claims a
//! player (for one of its sessions) before letting it in. A claim by the same run is
//! the run's own business (it replaces its own sessions itself); a claim by a run the
//! caller knows is gone, or by a run with no live lease by the store's clock, is taken
//! over; any other claim is refused, naming its holder. A run stops accepting inputs
//! before its lease runs out (by its own clock, early), so taking over the claims of a
//! run whose lease lapsed never lets a player into two worlds that accept inputs, and
//! a node cut off from the store loses its players once its lease lapses. A dead run's
//! claims stay until whoever next needs the player takes them over, so no sweep is
//! needed.
//!
//! The membership table is one consistent view of a cluster's nodes, for deployments
//! that want it instead of gossip: each run heartbeats its row (its addresses and an
//! expiry by the store's clock), one row per node id, where a newer incarnation
//! replaces an older one and an older one is refused, as leases refuse superseded
//! runs. A generation counter is bumped by every join (a run's row appearing in the
//! live view: new, replacing another incarnation, back after it ran out, or with new
//! addresses) and every leave, so a reader tells a new view from the same one.
//!
//! Keeping the rules here, free of IO, is what makes the two backends agree: each only
//! reads the rows, asks these functions, and writes what they decided.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::limits::{MAX_MEMBERS_PER_READ, MAX_STORED_U64, MAX_ZONES_PER_HOLDER_READ};
use crate::types::{Activation, ZoneRecord};
use crate::{StoreError, fence};

/// One run of one node: its stable id and which start of it this is. The store's own
/// plain form of the cluster's `NodeRef` (the store crate does not depend on the
/// shared crate), converted by the caller. Every `u64` is valid, including those
/// above `i64::MAX` (PostgreSQL keeps them bit for bit in `BIGINT`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRun {
    /// The node's stable id (random).
    pub id: u64,
    /// Which start of that node; a higher one supersedes every lower one.
    pub incarnation: u64,
}

impl NodeRun {
    /// The `incarnation`-th run of node `id`.
    pub const fn new(id: u64, incarnation: u64) -> Self {
        Self { id, incarnation }
    }
}

impl fmt::Display for NodeRun {
    /// The form the cluster logs use (`NodeRef`'s): 16 hex digits, `/`, incarnation.
    /// The store also writes it as the zone's owner name for tools.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}/{}", self.id, self.incarnation)
    }
}

/// A granted lease (the answer to [`Store::renew_lease`](crate::Store::renew_lease)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Lease length from the moment the store granted it.
    pub duration_ms: u64,
    /// 0 for a run's first lease; grows by one every time the run renewed after its
    /// lease had run out. Zones activated under an older generation may have been
    /// taken by others meanwhile.
    pub generation: u64,
}

/// What [`Store::activate_zone_leased`](crate::Store::activate_zone_leased) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeasedActivation {
    /// The zone is the caller's: a new epoch, or the same one for a repeated attempt.
    Activated {
        /// The epoch and the zone's saved state, as [`Store::activate_zone`](crate::Store::activate_zone) returns them.
        activation: Activation,
        /// The generation of the caller's lease the activation was made under.
        lease_generation: u64,
    },
    /// Another run holds the zone under a live lease; nothing changed.
    Held {
        /// The run holding it.
        holder: NodeRun,
        /// The epoch it holds.
        epoch: u64,
        /// How long the holder's lease runs if not renewed (ms from the store's now).
        lease_left_ms: u64,
    },
    /// The caller's own lease is not live (never granted or run out); nothing changed.
    NoLease,
}

/// The zones one run holds (the answer to [`Store::zones_held_by`](crate::Store::zones_held_by)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldZones {
    /// Held zones in ascending order, at most
    /// [`MAX_ZONES_PER_HOLDER_READ`](crate::limits::MAX_ZONES_PER_HOLDER_READ).
    pub zones: Vec<u32>,
    /// True when the run holds more than were listed (the lowest ones are listed).
    /// Zones the caller then activates elsewhere stop being the run's, so asking
    /// again lists the rest.
    pub truncated: bool,
}

impl HeldZones {
    /// The answer from the ascending held zones a backend read, one past the limit at
    /// most (that one only tells "more" from "exactly at the limit").
    pub(crate) fn bounded(mut zones: Vec<u32>) -> Self {
        let truncated = zones.len() > MAX_ZONES_PER_HOLDER_READ;
        zones.truncate(MAX_ZONES_PER_HOLDER_READ);
        Self { zones, truncated }
    }
}

/// What [`Store::claim_player`](crate::Store::claim_player) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerClaim {
    /// The player's session is now `(node, session)` as asked.
    Claimed {
        /// The version of the player's record as it stood when the claim was made
        /// (read in the same transaction; `None`: no record). A caller holding a
        /// record of this version has the newest one and need not read it again.
        record_version: Option<u64>,
    },
    /// Another claim holds the player; nothing changed.
    HeldBy {
        /// The run holding it.
        node: NodeRun,
        /// Its session id.
        session: u64,
    },
}

/// What the claim rule ([`decide_claim`]) allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimDecision {
    /// The caller gets the player.
    Claim,
    /// Another run keeps it.
    HeldBy {
        /// The run holding it.
        node: NodeRun,
        /// Its session id.
        session: u64,
    },
}

/// A player's claim as stored: the run and its session holding the player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClaimRow {
    /// The run whose session holds the player.
    pub(crate) run: NodeRun,
    /// That run's session id.
    pub(crate) session: u64,
}

/// The claim rule: `node` gets the player when no claim exists, when the claim is
/// its own (any session: a node replaces its own sessions itself), when the claim is
/// by `takeover`, a run the caller knows is gone, or when the holder run has no live
/// lease (`holder_live`: the holder's lease row, for that exact run, exists and runs
/// past the store's now; ignored without a claim). Otherwise the holder is named.
pub(crate) fn decide_claim(
    current: Option<ClaimRow>,
    node: NodeRun,
    takeover: Option<NodeRun>,
    holder_live: bool,
) -> ClaimDecision {
    match current {
        Some(row) if holder_live && row.run != node && Some(row.run) != takeover => {
            ClaimDecision::HeldBy {
                node: row.run,
                session: row.session,
            }
        }
        _ => ClaimDecision::Claim,
    }
}

/// Whether a release by `(node, session)` ends the claim `row`: only that exact
/// session, so a late release of a replaced or taken-over session frees nothing.
pub(crate) fn may_release_claim(row: &ClaimRow, node: NodeRun, session: u64) -> bool {
    row.run == node && row.session == session
}

/// A node's row in the membership table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    /// The node run.
    pub run: NodeRun,
    /// Where its node-to-node endpoint is reached (`SocketAddr` text, at most
    /// [`MAX_ADDR_BYTES`](crate::limits::MAX_ADDR_BYTES) bytes).
    pub node_addr: String,
    /// Where its players connect (`SocketAddr` text, at most
    /// [`MAX_ADDR_BYTES`](crate::limits::MAX_ADDR_BYTES) bytes).
    pub client_addr: String,
}

/// The live rows and the table's generation (the answer to
/// [`Store::member_table`](crate::Store::member_table)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberTable {
    /// Bumped whenever a run joins (a new run's first heartbeat, which also replaces an
    /// older incarnation of the same node id) or leaves; unchanged by plain heartbeats.
    /// Lets a reader tell a new view from the same one. A run whose row had run out
    /// (and so was not listed) joins again with its next heartbeat, and a heartbeat
    /// that changes a run's addresses also bumps it. A row running out is no write and
    /// bumps nothing: a reader comparing views also compares the rows.
    pub generation: u64,
    /// Rows whose heartbeat has not run out by the store's clock, ordered by node id
    /// (as `u64`), at most [`MAX_MEMBERS_PER_READ`](crate::limits::MAX_MEMBERS_PER_READ).
    pub members: Vec<MemberRow>,
}

impl MemberTable {
    /// The answer from the live rows a backend read, in any order and one past the
    /// limit at most (that one only tells "over the limit" from "exactly at it", and
    /// makes the read an error).
    pub(crate) fn bounded(
        generation: u64,
        mut members: Vec<MemberRow>,
    ) -> Result<Self, StoreError> {
        if members.len() > MAX_MEMBERS_PER_READ {
            return Err(StoreError::too_large(
                "live members per read",
                members.len(),
                MAX_MEMBERS_PER_READ,
            ));
        }
        members.sort_unstable_by_key(|row| row.run.id);
        Ok(Self {
            generation,
            members,
        })
    }
}

/// A node id's membership row as stored: the row and when its heartbeat runs out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredMember {
    pub(crate) row: MemberRow,
    /// Store time the row runs out at (exclusive, like a lease's expiry).
    pub(crate) expires_unix_ms: u64,
}

impl StoredMember {
    /// Whether the row is live (listed) at store time `now_ms`.
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expires_unix_ms > now_ms
    }
}

/// What a membership heartbeat does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    /// The node id's row is a newer incarnation's: nothing written.
    Superseded,
    /// Write the row to run out at `expires_unix_ms`; bump the generation when
    /// `joins`.
    Write { expires_unix_ms: u64, joins: bool },
}

/// The heartbeat rule for `row` lasting `ttl_ms` from store time `now_ms`; `current`
/// is the node id's stored row. The heartbeat joins (bumps the generation) unless it
/// only extends the same run's live row with the same addresses.
pub(crate) fn heartbeat(
    now_ms: u64,
    row: &MemberRow,
    current: Option<&StoredMember>,
    ttl_ms: u64,
) -> Result<Heartbeat, StoreError> {
    if current.is_some_and(|stored| stored.row.run.incarnation > row.run.incarnation) {
        return Ok(Heartbeat::Superseded);
    }
    let expires_unix_ms = now_ms
        .checked_add(ttl_ms)
        .filter(|expires| *expires <= MAX_STORED_U64)
        .ok_or_else(|| StoreError::Clock(format!("member expiry past {MAX_STORED_U64} ms")))?;
    let plain = current.is_some_and(|stored| stored.is_live(now_ms) && stored.row == *row);
    Ok(Heartbeat::Write {
        expires_unix_ms,
        joins: !plain,
    })
}

/// Whether a leave by `run` removes the node id's row `stored`: only that exact run's.
pub(crate) fn may_leave(stored: &StoredMember, run: NodeRun) -> bool {
    stored.row.run == run
}

/// The membership generation after a bump of `current`.
pub(crate) fn next_member_generation(current: u64) -> Result<u64, StoreError> {
    current
        .checked_add(1)
        .filter(|next| *next <= MAX_STORED_U64)
        .ok_or_else(|| StoreError::Corrupt(format!("member generation {current} cannot grow")))
}

/// A run's lease as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseRow {
    /// Store time the lease runs out at (exclusive: at this instant it is over).
    pub(crate) expires_unix_ms: u64,
    /// See [`LeaseGrant::generation`].
    pub(crate) generation: u64,
}

impl LeaseRow {
    /// Whether the lease is live at store time `now_ms`.
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expires_unix_ms > now_ms
    }
}

/// The run holding a zone, as stored next to the zone's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The run.
    pub(crate) run: NodeRun,
    /// The activation attempt that made it the holder.
    pub(crate) attempt: u64,
}

/// A zone's epoch row: its latest epoch and holder, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ZoneRow {
    pub(crate) epoch: u64,
    pub(crate) holder: Option<Holder>,
}

/// What a renewal does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// A newer incarnation of the node id has renewed: no lease, nothing written.
    Superseded,
    /// Write `row` as the run's lease. When `newest` is set the run is the node id's
    /// newest incarnation for the first time and the backend records it.
    Grant { row: LeaseRow, newest: bool },
}

/// The renewal rule. `newest` is the newest incarnation of `run.id` that ever renewed,
/// `current` the run's stored lease.
pub(crate) fn renew(
    now_ms: u64,
    run: NodeRun,
    newest: Option<u64>,
    current: Option<LeaseRow>,
    duration_ms: u64,
) -> Result<Renewal, StoreError> {
    if newest.is_some_and(|newest| newest > run.incarnation) {
        return Ok(Renewal::Superseded);
    }
    let expires_unix_ms = now_ms
        .checked_add(duration_ms)
        .filter(|expires| *expires <= MAX_STORED_U64)
        .ok_or_else(|| StoreError::Clock(format!("lease expiry past {MAX_STORED_U64} ms")))?;
    // A lease that ran out may have let others take this run's zones: the new grant
    // gets a new generation so the run drops them. A first lease is generation 0.
    let generation = match current {
        None => 0,
        Some(row) if row.is_live(now_ms) => row.generation,
        Some(row) => row.generation.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!("lease generation {} cannot grow", row.generation))
        })?,
    };
    Ok(Renewal::Grant {
        row: LeaseRow {
            expires_unix_ms,
            generation,
        },
        newest: newest.is_none_or(|newest| newest < run.incarnation),
    })
}

/// Everything an activation decision reads, at one store time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActivationView {
    /// The store's now.
    pub(crate) now_ms: u64,
    /// The caller's lease.
    pub(crate) own_lease: Option<LeaseRow>,
    /// The zone's row, `None` if it was never activated.
    pub(crate) zone: Option<ZoneRow>,
    /// The lease of the zone's holder (only read when the holder is another run).
    pub(crate) holder_lease: Option<LeaseRow>,
}

/// What an activation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Refuse: the caller's lease is not live.
    NoLease,
    /// Refuse: another run holds the zone under a live lease.
    Held {
        holder: NodeRun,
        epoch: u64,
        lease_left_ms: u64,
    },
    /// A repeat of the attempt that made the caller the holder: same epoch, no write.
    Repeat { epoch: u64, lease_generation: u64 },
    /// Write epoch `epoch` with the caller as holder.
    Take { epoch: u64, lease_generation: u64 },
}

impl Decision {
    /// Whether the caller gets the zone (and so the zone's saved state is read).
    pub(crate) fn grants(&self) -> bool {
        matches!(self, Self::Repeat { .. } | Self::Take { .. })
    }
}

/// The answer to the caller for `decision`; `record` is the zone's saved state, read
/// in the same transaction when the decision grants the zone.
pub(crate) fn answer(decision: Decision, record: Option<ZoneRecord>) -> LeasedActivation {
    match decision {
        Decision::NoLease => LeasedActivation::NoLease,
        Decision::Held {
            holder,
            epoch,
            lease_left_ms,
        } => LeasedActivation::Held {
            holder,
            epoch,
            lease_left_ms,
        },
        Decision::Repeat {
            epoch,
            lease_generation,
        }
        | Decision::Take {
            epoch,
            lease_generation,
        } => LeasedActivation::Activated {
            activation: Activation { epoch, record },
            lease_generation,
        },
    }
}

/// The activation rule for `caller`'s attempt `attempt`.
pub(crate) fn decide_activation(
    view: &ActivationView,
    caller: NodeRun,
    attempt: u64,
) -> Result<Decision, StoreError> {
    let Some(own) = view.own_lease.filter(|l| l.is_live(view.now_ms)) else {
        return Ok(Decision::NoLease);
    };
    let lease_generation = own.generation;
    let holder = view.zone.and_then(|row| row.holder);
    if let (Some(row), Some(holder)) = (view.zone, holder) {
        if holder.run == caller && holder.attempt == attempt {
            return Ok(Decision::Repeat {
                epoch: row.epoch,
                lease_generation,
            });
        }
        let live = view.holder_lease.filter(|l| l.is_live(view.now_ms));
        if let Some(lease) = live.filter(|_| holder.run != caller) {
            return Ok(Decision::Held {
                holder: holder.run,
                epoch: row.epoch,
                lease_left_ms: lease.expires_unix_ms - view.now_ms,
            });
        }
    }
    Ok(Decision::Take {
        epoch: fence::next_epoch(view.zone.map(|row| row.epoch))?,
        lease_generation,
    })
}

/// Whether a release by `node` at `epoch` clears the zone's holder: only the holder,
/// and only at the zone's latest epoch (a stale release must not free a newer grant).
pub(crate) fn may_release(row: &ZoneRow, node: NodeRun, epoch: u64) -> bool {
    row.epoch == epoch && row.holder.is_some_and(|holder| holder.run == node)
}

/// A store clock reading in milliseconds since the Unix epoch, checked to fit every
/// backend's columns.
pub(crate) fn clock_ms(millis: i128) -> Result<u64, StoreError> {
    u64::try_from(millis)
        .ok()
        .filter(|ms| *ms <= MAX_STORED_U64)
        .ok_or_else(|| StoreError::Clock(format!("{millis} ms since the Unix epoch")))
}

/// The local system clock as store time (the embedded backend's clock).
pub(crate) fn system_now_ms() -> Result<u64, StoreError> {
    let millis = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i128::try_from(since.as_millis()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_millis()).unwrap_or(i128::MAX),
    };
    clock_ms(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeRun = NodeRun::new(u64::MAX, 2);
    const B: NodeRun = NodeRun::new(7, 1);

    fn lease(expires_unix_ms: u64, generation: u64) -> Option<LeaseRow> {
        Some(LeaseRow {
            expires_unix_ms,
            generation,
        })
    }

    fn granted(renewal: Result<Renewal, StoreError>) -> (LeaseRow, bool) {
        match renewal {
            Ok(Renewal::Grant { row, newest }) => (row, newest),
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    #[test]
    fn leases_start_at_generation_zero_and_grow_only_after_a_lapse() {
        let (first, newest) = granted(renew(1_000, A, None, None, 100));
        assert_eq!(
            (first.expires_unix_ms, first.generation, newest),
            (1_100, 0, true)
        );
        let (kept, newest) = granted(renew(1_099, A, Some(2), Some(first), 100));
        assert_eq!(
            (kept.expires_unix_ms, kept.generation, newest),
            (1_199, 0, false)
        );
        // Expiry is exclusive: renewing exactly at it is after the lapse.
        let (lapsed, _) = granted(renew(1_199, A, Some(2), Some(kept), 100));
        assert_eq!(lapsed.generation, 1);
    }

    #[test]
    fn an_older_incarnation_is_superseded_and_a_newer_one_recorded() {
        assert_eq!(
            renew(5, A, Some(3), None, 10).ok(),
            Some(Renewal::Superseded)
        );
        let (_, newest) = granted(renew(5, A, Some(1), None, 10));
        assert!(newest);
    }

    #[test]
    fn expiries_beyond_the_stored_range_are_clock_errors() {
        let result = renew(MAX_STORED_U64, A, None, None, 1);
        assert!(matches!(result, Err(StoreError::Clock(_))), "{result:?}");
    }

    fn view(
        own: Option<LeaseRow>,
        zone: Option<ZoneRow>,
        holder: Option<LeaseRow>,
    ) -> ActivationView {
        ActivationView {
            now_ms: 100,
            own_lease: own,
            zone,
            holder_lease: holder,
        }
    }

    fn held_by(run: NodeRun, epoch: u64, attempt: u64) -> Option<ZoneRow> {
        Some(ZoneRow {
            epoch,
            holder: Some(Holder { run, attempt }),
        })
    }

    #[test]
    fn activation_needs_a_live_own_lease() {
        let expired = view(lease(100, 0), None, None);
        assert_eq!(
            decide_activation(&expired, A, 1).ok(),
            Some(Decision::NoLease)
        );
        let none = view(None, None, None);
        assert_eq!(decide_activation(&none, A, 1).ok(), Some(Decision::NoLease));
        let live = view(lease(101, 3), None, None);
        assert_eq!(
            decide_activation(&live, A, 1).ok(),
            Some(Decision::Take {
                epoch: 1,
                lease_generation: 3
            })
        );
    }

    #[test]
    fn another_runs_live_lease_holds_the_zone_until_it_runs_out() {
        let held = view(lease(500, 0), held_by(B, 4, 9), lease(130, 0));
        assert_eq!(
            decide_activation(&held, A, 1).ok(),
            Some(Decision::Held {
                holder: B,
                epoch: 4,
                lease_left_ms: 30
            })
        );
        let lapsed = view(lease(500, 0), held_by(B, 4, 9), lease(100, 0));
        assert_eq!(
            decide_activation(&lapsed, A, 1).ok(),
            Some(Decision::Take {
                epoch: 5,
                lease_generation: 0
            })
        );
    }

    #[test]
    fn the_holder_repeating_its_attempt_keeps_the_epoch_and_a_new_attempt_bumps_it() {
        let mine = view(lease(500, 2), held_by(A, 4, 9), lease(500, 2));
        assert_eq!(
            decide_activation(&mine, A, 9).ok(),
            Some(Decision::Repeat {
                epoch: 4,
                lease_generation: 2
            })
        );
        assert_eq!(
            decide_activation(&mine, A, 10).ok(),
            Some(Decision::Take {
                epoch: 5,
                lease_generation: 2
            })
        );
    }

    #[test]
    fn only_the_holder_at_the_latest_epoch_releases() {
        let row = held_by(A, 4, 9).expect("row");
        assert!(may_release(&row, A, 4));
        assert!(!may_release(&row, A, 3));
        assert!(!may_release(&row, B, 4));
        let free = ZoneRow {
            epoch: 4,
            holder: None,
        };
        assert!(!may_release(&free, A, 4));
    }

    #[test]
    fn clock_readings_must_fit_the_stored_range() {
        assert_eq!(clock_ms(1_700_000_000_000).ok(), Some(1_700_000_000_000));
        assert!(matches!(clock_ms(-1), Err(StoreError::Clock(_))));
        assert!(matches!(
            clock_ms(i128::from(MAX_STORED_U64) + 1),
            Err(StoreError::Clock(_))
        ));
        assert!(system_now_ms().is_ok_and(|now| now > 1_600_000_000_000));
    }

    #[test]
    fn held_zone_lists_are_truncated_past_the_limit() {
        let all: Vec<u32> = (0..=u32::try_from(MAX_ZONES_PER_HOLDER_READ).expect("fits")).collect();
        let listed = HeldZones::bounded(all.clone());
        assert!(listed.truncated);
        assert_eq!(listed.zones, all[..MAX_ZONES_PER_HOLDER_READ]);
        let exact = HeldZones::bounded(all[..MAX_ZONES_PER_HOLDER_READ].to_vec());
        assert!(!exact.truncated);
        assert_eq!(exact.zones.len(), MAX_ZONES_PER_HOLDER_READ);
    }

    #[test]
    fn claims_go_to_the_free_the_own_run_and_a_takeover_of_the_holder() {
        let held_by_b = Some(ClaimRow { run: B, session: 4 });
        // The holder's lease is live throughout: only these three cases claim.
        assert_eq!(decide_claim(None, A, None, true), ClaimDecision::Claim);
        assert_eq!(decide_claim(held_by_b, B, None, true), ClaimDecision::Claim);
        assert_eq!(
            decide_claim(held_by_b, A, Some(B), true),
            ClaimDecision::Claim
        );
        let refused = ClaimDecision::HeldBy {
            node: B,
            session: 4,
        };
        assert_eq!(decide_claim(held_by_b, A, None, true), refused);
        assert_eq!(decide_claim(held_by_b, A, Some(A), true), refused);
        // Another incarnation of the holder's node id is another run.
        let b_next = NodeRun::new(B.id, B.incarnation + 1);
        assert_eq!(decide_claim(held_by_b, b_next, None, true), refused);
        assert_eq!(decide_claim(held_by_b, A, Some(b_next), true), refused);
    }

    #[test]
    fn a_claim_whose_holder_has_no_live_lease_is_taken_over() {
        let held_by_b = Some(ClaimRow { run: B, session: 4 });
        // Without a live holder lease any run claims, with or without a takeover.
        assert_eq!(
            decide_claim(held_by_b, A, None, false),
            ClaimDecision::Claim
        );
        assert_eq!(
            decide_claim(held_by_b, A, Some(A), false),
            ClaimDecision::Claim
        );
        let b_next = NodeRun::new(B.id, B.incarnation + 1);
        assert_eq!(
            decide_claim(held_by_b, b_next, None, false),
            ClaimDecision::Claim
        );
        // The cases that claim anyway still do.
        assert_eq!(decide_claim(None, A, None, false), ClaimDecision::Claim);
        assert_eq!(
            decide_claim(held_by_b, B, None, false),
            ClaimDecision::Claim
        );
        assert_eq!(
            decide_claim(held_by_b, A, Some(B), false),
            ClaimDecision::Claim
        );
    }

    #[test]
    fn only_the_claiming_session_releases() {
        let row = ClaimRow { run: A, session: 9 };
        assert!(may_release_claim(&row, A, 9));
        assert!(!may_release_claim(&row, A, 8));
        assert!(!may_release_claim(&row, B, 9));
    }

    fn member(run: NodeRun, node_addr: &str) -> MemberRow {
        MemberRow {
            run,
            node_addr: node_addr.into(),
            client_addr: "127.0.0.1:7000".into(),
        }
    }

    fn stored(row: MemberRow, expires_unix_ms: u64) -> StoredMember {
        StoredMember {
            row,
            expires_unix_ms,
        }
    }

    #[test]
    fn only_a_plain_heartbeat_of_a_live_row_keeps_the_generation() {
        let row = member(A, "10.0.0.1:9000");
        let write = |expires_unix_ms, joins| {
            Some(Heartbeat::Write {
                expires_unix_ms,
                joins,
            })
        };
        assert_eq!(heartbeat(100, &row, None, 50).ok(), write(150, true));
        let live = stored(row.clone(), 101);
        assert_eq!(
            heartbeat(100, &row, Some(&live), 50).ok(),
            write(150, false)
        );
        // Expiry is exclusive: at it the row has run out, and coming back is a join.
        let lapsed = stored(row.clone(), 100);
        assert_eq!(
            heartbeat(100, &row, Some(&lapsed), 50).ok(),
            write(150, true)
        );
        let moved = member(A, "10.0.0.2:9000");
        assert_eq!(
            heartbeat(100, &moved, Some(&live), 50).ok(),
            write(150, true)
        );
        let older = stored(member(NodeRun::new(A.id, 1), "10.0.0.1:9000"), 500);
        assert_eq!(
            heartbeat(100, &row, Some(&older), 50).ok(),
            write(150, true)
        );
    }

    #[test]
    fn an_older_incarnation_than_the_rows_is_refused_even_after_it_ran_out() {
        let newer = stored(member(NodeRun::new(A.id, 3), "10.0.0.1:9000"), 0);
        let row = member(A, "10.0.0.1:9000");
        assert_eq!(
            heartbeat(100, &row, Some(&newer), 50).ok(),
            Some(Heartbeat::Superseded)
        );
        assert!(may_leave(&newer, NodeRun::new(A.id, 3)));
        assert!(!may_leave(&newer, A));
        assert!(!may_leave(&newer, NodeRun::new(B.id, 3)));
    }

    #[test]
    fn member_expiries_and_generations_stay_in_the_stored_range() {
        let row = member(A, "10.0.0.1:9000");
        let result = heartbeat(MAX_STORED_U64, &row, None, 1);
        assert!(matches!(result, Err(StoreError::Clock(_))), "{result:?}");
        assert_eq!(next_member_generation(7).ok(), Some(8));
        let result = next_member_generation(MAX_STORED_U64);
        assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
    }

    #[test]
    fn member_tables_are_sorted_by_unsigned_id_and_bounded() {
        let ids = [u64::MAX, 1, 1 << 63, 5];
        let rows = ids.map(|id| member(NodeRun::new(id, 1), "10.0.0.1:9000"));
        let table = MemberTable::bounded(4, rows.to_vec()).expect("within the limit");
        let sorted: Vec<u64> = table.members.iter().map(|row| row.run.id).collect();
        assert_eq!(sorted, [1, 5, 1 << 63, u64::MAX]);
        assert_eq!(table.generation, 4);
        let id = |i: usize| u64::try_from(i).expect("fits");
        let many: Vec<MemberRow> = (0..=MAX_MEMBERS_PER_READ)
            .map(|i| member(NodeRun::new(id(i), 1), "10.0.0.1:9000"))
            .collect();
        let over = MemberTable::bounded(0, many.clone());
        assert!(
            matches!(
                over,
                Err(StoreError::TooLarge {
                    what: "live members per read",
                    size: 10_001,
                    max: 10_000
                })
            ),
            "{over:?}"
        );
        let exact = MemberTable::bounded(0, many[..MAX_MEMBERS_PER_READ].to_vec());
        assert_eq!(
            exact.map(|t| t.members.len()).ok(),
            Some(MAX_MEMBERS_PER_READ)
        );
    }

    #[test]
    fn runs_print_like_node_refs() {
        assert_eq!(NodeRun::new(0xab, 3).to_string(), "00000000000000ab/3");
    }
}
