//! The `Store` trait every backend implements, and the operation counters behind
//! [`Store::stats`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::StoreError;
use crate::cluster::{
    HeldZones, LeaseGrant, LeasedActivation, MemberRow, MemberTable, NodeRun, PlayerClaim,
};
use crate::types::{
    ActionCommit, Activation, Checkpoint, DurableAction, PlayerRecord, SaveOutcome, ZoneRecord,
};

/// The future every store operation returns. Boxed so that `Store` stays object safe
/// (the server holds an `Arc<dyn Store>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The durable state of a ZoneMesh deployment, with epoch fencing.
///
/// Contract, shared by every backend and checked by one conformance suite:
/// - [`activate_zone`](Self::activate_zone) takes epoch = latest + 1 atomically; two
///   concurrent activations get distinct epochs and exactly one holds the newest.
/// - Every write carries `(zone, epoch)` and succeeds only if `epoch` is the zone's
///   latest; otherwise it fails with [`StoreError::StaleEpoch`] (older) or
///   [`StoreError::EpochNotGranted`] (never handed out) and changes nothing. The check
///   and the write are one transaction, and an activation cannot interleave with it.
/// - A call either commits entirely or not at all; inputs over the
///   [`limits`](crate::limits) are rejected before any IO.
/// - Reads (`load_*`, `zone_epoch`, `actions_for_player`) never bump an epoch.
/// - A write is durable once its future resolves `Ok` (redb: committed and fsynced;
///   PostgreSQL: committed). Dropping the future instead leaves it unknown whether the
///   write happened; so does [`StoreError::ConnectionLost`] or [`StoreError::Timeout`].
/// - Player records are versioned ([`PlayerRecord::version`]), because the fence
///   orders the writes of one zone, not those of a player who moved between zones or
///   reconnected elsewhere. Every player record a write carries (in `checkpoint` and
///   `save_players`) is applied only if the store holds no record of that player or
///   holds one with a strictly lower version; otherwise that record alone is skipped
///   and the rest of the call still commits (a zone checkpoint must not fail because
///   one of its players has moved on). Skipped players are reported in the returned
///   [`SaveOutcome`] and counted in [`StoreStats::n_stale_player_records`]. The
///   comparison and the write are atomic per record, so racing writers of one player
///   end with the highest version stored, whatever the order they commit in.
///
/// Cluster operations (the contract of the cluster crate's store model, `SimStore`):
/// - Leases belong to a run ([`NodeRun`]: node id and incarnation).
///   [`renew_lease`](Self::renew_lease) sets the run's lease to expire at the store's
///   now + duration; once a newer incarnation of the same id has renewed, older ones
///   get `None` for good. A run's first lease has generation 0; a renewal after the
///   lease ran out (expiry is exclusive) bumps the generation by one.
/// - [`activate_zone_leased`](Self::activate_zone_leased) grants a zone, in one
///   transaction, only while the caller's own lease is live and no other run holds
///   the zone under a live lease; it takes epoch = latest + 1 like `activate_zone` and
///   records the caller as holder with the attempt number. A repeat of the attempt
///   that made the caller the holder returns the same epoch (a retried call must not
///   move the epoch past the one the node uses). Concurrent activations serialize.
/// - [`release_zone`](Self::release_zone) clears the holder only for the holder at
///   the zone's latest epoch, and never bumps the epoch.
/// - The store's own clock decides every lease (redb: the system clock read in the
///   write transaction; PostgreSQL: `clock_timestamp()` in the transaction), so nodes
///   never compare clocks with each other.
/// - Epoch fencing of writes is the same for both activations. An `activate_zone`
///   (the single-node path) clears the holder: the holder always names the run
///   holding the zone's latest epoch, or no one.
///
/// Player claims (one session per player across the cluster):
/// - A node claims a player ([`claim_player`](Self::claim_player)) before letting it
///   in. The claim names the run and the session. It is granted when no claim exists,
///   when the claim is the caller's own run's (any session: a node replaces its own
///   sessions itself), when it is by the run the caller names as `takeover` (the
///   caller knows that run is gone), or when the holding run has no live lease by the
///   store's clock (no lease for that exact run, or one run out). Otherwise the caller
///   learns who holds the player and nothing changes.
/// - A claim by another live run is ended by asking that run to end the session (the
///   caller's business, not the store's); that run saves the player's final record and
///   only then [`release_player`](Self::release_player)s, so the next session reads the
///   newest record. A release ends only the exact `(run, session)` claimed: a late
///   release of a replaced or taken-over session frees nothing.
/// - A run whose lease lapsed has stopped accepting inputs (nodes stop early by their
///   own clock), so taking its claims over never puts a player into two worlds that
///   accept inputs; and a node cut off from the store, unable to release, loses its
///   players once its lease lapses. A run holds claims against others only while its
///   lease is live: claim after renewing. A dead run's claims stay until whoever next
///   needs the player takes them over (no sweep).
/// - Each claim and release is one atomic step (redb: one write transaction;
///   PostgreSQL: one transaction holding the player's claim row locked, and the
///   holder's node id locked against renewals while its lease is read), so of racing
///   claimants for an unclaimed player exactly one gets [`PlayerClaim::Claimed`] (the
///   others are refused while the winner's lease is live).
///
/// The membership table (one consistent view of a cluster's nodes, for deployments
/// that want it instead of gossip):
/// - Each node id has at most one row: a run, its two addresses and when its heartbeat
///   runs out. [`heartbeat_member`](Self::heartbeat_member) writes the row to run out
///   at the store's now + ttl; a newer incarnation replaces an older one's row, and an
///   older incarnation than the row's is refused (`false`, nothing written), as leases
///   refuse superseded runs. The comparison is with the row only: once the newest
///   incarnation left (its row removed), any incarnation may join again.
/// - [`member_table`](Self::member_table) lists the rows live at the store's now and
///   the generation, from one consistent snapshot. The generation is bumped by every
///   join (a run's row appearing in the view: a new node id, a newer incarnation, a
///   run back after its row ran out, or new addresses) and every
///   [`leave_member`](Self::leave_member) that removed a row; a plain heartbeat leaves
///   it alone. A row running out bumps nothing (nothing is written then).
/// - Each heartbeat and leave is one atomic step (redb: one write transaction;
///   PostgreSQL: one transaction holding the node id's row locked, then the generation
///   row), so concurrent joins of different nodes each bump the generation once and
///   none is lost. Rows never heartbeat again stay (not listed) until their node id's
///   next heartbeat or leave: there is no sweep.
///
/// The cluster operations are part of this trait, not a second one, because every
/// backend must carry them (there is no partial backend) and the server holds one
/// `Arc<dyn Store>` for both its zones and its cluster driver.
pub trait Store: Send + Sync + fmt::Debug {
    /// A short name of the backend ("redb", "postgres"), for logs.
    fn backend(&self) -> &'static str;

    /// Takes ownership of `zone` for `node`: bumps its epoch and returns the new epoch
    /// with the zone's saved state.
    fn activate_zone<'a>(&'a self, zone: u32, node: &'a str) -> StoreFuture<'a, Activation>;

    /// Writes a zone's state (if given) and player records in one transaction, fenced
    /// by `(zone, epoch)`. Player records older than the stored ones are skipped and
    /// reported in the outcome.
    fn checkpoint(
        &self,
        zone: u32,
        epoch: u64,
        checkpoint: Checkpoint,
    ) -> StoreFuture<'_, SaveOutcome>;

    /// Upserts player records (e.g. on disconnect), fenced by `(zone, epoch)`. Records
    /// older than the stored ones are skipped and reported in the outcome.
    fn save_players(
        &self,
        zone: u32,
        epoch: u64,
        players: Vec<PlayerRecord>,
    ) -> StoreFuture<'_, SaveOutcome>;

    /// Commits a durable action, fenced by `(zone, epoch)`. Idempotent by id: a second
    /// commit returns [`ActionCommit::AlreadyCommitted`] with the original and changes
    /// nothing. The fence is checked first, so a stale owner gets `StaleEpoch` even for
    /// an id that exists.
    fn commit_action(
        &self,
        zone: u32,
        epoch: u64,
        action: DurableAction,
    ) -> StoreFuture<'_, ActionCommit>;

    /// Reads a zone's saved state without taking ownership.
    fn load_zone(&self, zone: u32) -> StoreFuture<'_, Option<ZoneRecord>>;

    /// Reads one player's record.
    fn load_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<PlayerRecord>>;

    /// Lists a player's committed actions in ascending id order (for tests and tools);
    /// more than [`MAX_ACTIONS_PER_READ`](crate::limits::MAX_ACTIONS_PER_READ) is an error.
    fn actions_for_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Vec<DurableAction>>;

    /// The zone's latest epoch, `None` if it was never activated.
    fn zone_epoch(&self, zone: u32) -> StoreFuture<'_, Option<u64>>;

    /// Renews `node`'s lease for `duration` (whole milliseconds, 1 ms to
    /// [`MAX_LEASE_MS`](crate::limits::MAX_LEASE_MS)) from the store's now. `None`
    /// when a newer incarnation of the node id has renewed: this run is superseded.
    fn renew_lease(&self, node: NodeRun, duration: Duration)
    -> StoreFuture<'_, Option<LeaseGrant>>;

    /// Takes `zone` for `node` if its lease is live and no other run holds the zone
    /// under a live lease; `attempt` names the attempt so that a repeat of it returns
    /// the same epoch. See [`LeasedActivation`].
    fn activate_zone_leased(
        &self,
        zone: u32,
        node: NodeRun,
        attempt: u64,
    ) -> StoreFuture<'_, LeasedActivation>;

    /// Gives `zone` up: clears its holder if `node` holds it at `epoch`, the zone's
    /// latest. Returns whether it did. The epoch stays; the next activation bumps it.
    fn release_zone(&self, zone: u32, node: NodeRun, epoch: u64) -> StoreFuture<'_, bool>;

    /// The zones `node` holds, in ascending order, bounded by
    /// [`MAX_ZONES_PER_HOLDER_READ`](crate::limits::MAX_ZONES_PER_HOLDER_READ)
    /// (truncated past it, see [`HeldZones`]). Held is held: the lease is not checked.
    fn zones_held_by(&self, node: NodeRun) -> StoreFuture<'_, HeldZones>;

    /// The run holding `zone` and the zone's epoch, `None` when no run holds it (for
    /// tools and tests).
    fn zone_holder(&self, zone: u32) -> StoreFuture<'_, Option<(NodeRun, u64)>>;

    /// Claims `player` for session `session` on run `node`. Succeeds when no claim
    /// exists, when the existing claim is by the same run `node` (any session: a node
    /// replaces its own sessions itself), when the existing claim is by run
    /// `takeover` (the caller knows that run is gone), or when the run holding the
    /// existing claim has no live lease by the store's clock (no lease row for that
    /// exact run, or one that ran out; decided in the same transaction as the claim).
    /// Otherwise returns who holds it. `node`'s own lease is not checked.
    /// The name is validated like a player record's (at most
    /// [`MAX_NAME_BYTES`](crate::limits::MAX_NAME_BYTES)).
    fn claim_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
        takeover: Option<NodeRun>,
    ) -> StoreFuture<'a, PlayerClaim>;

    /// Claims each of `players` (name, session) for run `node`, taking them over from
    /// run `from`, in one transaction: a player is claimed when it has no claim, when
    /// its claim is `node`'s own, or when it is `from`'s. Returns, in the order given,
    /// whether each player is now claimed as asked; one that is not was left as it
    /// was ([`claim_player`](Self::claim_player) then says who holds it, and applies
    /// the lease rule this call leaves out). A live handoff takes a zone's players over
    /// from its source with one call rather than one per player. At most
    /// [`MAX_CLAIMS_PER_CALL`](crate::limits::MAX_CLAIMS_PER_CALL) players, each name
    /// valid as in `claim_player`, none twice.
    fn take_over_players<'a>(
        &'a self,
        players: &'a [(String, u64)],
        node: NodeRun,
        from: NodeRun,
    ) -> StoreFuture<'a, Vec<bool>>;

    /// Ends `player`'s claim if it is `(node, session)`; returns whether it did. A
    /// claim since taken by another session or run is left alone. Release only after
    /// the session's final player record is saved, so the next claimant reads it.
    /// The name is validated as in `claim_player`.
    fn release_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
    ) -> StoreFuture<'a, bool>;

    /// The claim on `player`, if any (for tools and tests): the run and its session.
    /// The name is validated as in `claim_player`, so every backend refuses the same
    /// names.
    fn player_claim<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<(NodeRun, u64)>>;

    /// Records a heartbeat of `row.run`: its row lives until `ttl` (1 ms to
    /// [`MAX_LEASE_MS`](crate::limits::MAX_LEASE_MS), whole milliseconds, checked like
    /// a lease duration) after the store's now. A newer incarnation of the node id
    /// replaces the row of an older one; a heartbeat of an older incarnation than the
    /// row's is refused (returns false, writes nothing), as leases refuse superseded
    /// runs. Returns whether the row was written. Both addresses must be `SocketAddr`
    /// text of at most [`MAX_ADDR_BYTES`](crate::limits::MAX_ADDR_BYTES) (otherwise
    /// [`StoreError::InvalidInput`], before any IO). See [`MemberTable::generation`]
    /// for when it bumps the generation.
    fn heartbeat_member<'a>(&'a self, row: &'a MemberRow, ttl: Duration) -> StoreFuture<'a, bool>;

    /// The live rows (heartbeat not run out at the store's now), ordered by node id,
    /// and the generation, read together. More than
    /// [`MAX_MEMBERS_PER_READ`](crate::limits::MAX_MEMBERS_PER_READ) live rows is
    /// [`StoreError::TooLarge`].
    fn member_table(&self) -> StoreFuture<'_, MemberTable>;

    /// Removes `run`'s row if it is that exact run (a node leaving cleanly); returns
    /// whether it did. Bumps the generation when it did (also for a row that had
    /// already run out).
    fn leave_member(&self, run: NodeRun) -> StoreFuture<'_, bool>;

    /// A snapshot of how many operations of each kind this handle has been asked to do.
    fn stats(&self) -> StoreStats;
}

/// Operation counts of one store handle since it was opened. Every call is counted
/// when it starts, whether it then succeeds or fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// `activate_zone` calls.
    pub n_activations: u64,
    /// `checkpoint` calls.
    pub n_checkpoints: u64,
    /// `save_players` calls.
    pub n_player_saves: u64,
    /// `commit_action` calls.
    pub n_action_commits: u64,
    /// `load_zone` calls.
    pub n_zone_loads: u64,
    /// `load_player` calls.
    pub n_player_loads: u64,
    /// `actions_for_player` calls.
    pub n_action_reads: u64,
    /// `zone_epoch` calls.
    pub n_epoch_reads: u64,
    /// `renew_lease` calls.
    pub n_lease_renewals: u64,
    /// `activate_zone_leased` calls.
    pub n_leased_activations: u64,
    /// `release_zone` calls.
    pub n_releases: u64,
    /// `zones_held_by` calls.
    pub n_held_zone_reads: u64,
    /// `zone_holder` calls.
    pub n_holder_reads: u64,
    /// `claim_player` calls.
    pub n_player_claims: u64,
    /// `take_over_players` calls.
    pub n_player_takeovers: u64,
    /// `release_player` calls.
    pub n_player_releases: u64,
    /// `player_claim` calls.
    pub n_claim_reads: u64,
    /// `heartbeat_member` calls.
    pub n_member_heartbeats: u64,
    /// `member_table` calls.
    pub n_member_reads: u64,
    /// `leave_member` calls.
    pub n_member_leaves: u64,
    /// Writes rejected by fencing (`StaleEpoch` or `EpochNotGranted`).
    pub n_fencing_rejections: u64,
    /// Player records skipped because the store held an equal or newer version (each
    /// refused record counts once; the calls carrying them succeeded).
    pub n_stale_player_records: u64,
    /// Calls that failed for any other reason.
    pub n_errors: u64,
}

/// The kinds of operation counted in [`StoreStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Activate,
    Checkpoint,
    SavePlayers,
    CommitAction,
    LoadZone,
    LoadPlayer,
    ActionsForPlayer,
    ZoneEpoch,
    RenewLease,
    ActivateLeased,
    ReleaseZone,
    ZonesHeldBy,
    ZoneHolder,
    ClaimPlayer,
    TakeOverPlayers,
    ReleasePlayer,
    PlayerClaim,
    HeartbeatMember,
    MemberTable,
    LeaveMember,
}

/// One counter per [`Op`]; the last variant fixes the count.
const N_OPS: usize = Op::LeaveMember as usize + 1;

/// Lock-free counters behind [`Store::stats`], one set per store handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: [AtomicU64; N_OPS],
    fencing_rejections: AtomicU64,
    stale_player_records: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    /// Wraps `op`'s future so that the call and its failure, if any, are counted.
    pub(crate) fn counted<'a, T: 'a>(
        &'a self,
        op: Op,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'a,
    ) -> StoreFuture<'a, T> {
        self.calls[op as usize].fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let result = work.await;
            if let Err(error) = &result {
                let counter = if error.is_fencing() {
                    &self.fencing_rejections
                } else {
                    &self.errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }

    /// Like [`Self::counted`] for a player-writing call, also counting the records its
    /// outcome reports as stale.
    pub(crate) fn counted_save<'a>(
        &'a self,
        op: Op,
        work: impl Future<Output = Result<SaveOutcome, StoreError>> + Send + 'a,
    ) -> StoreFuture<'a, SaveOutcome> {
        self.counted(op, async move {
            let outcome = work.await?;
            let n_stale = u64::try_from(outcome.stale_players.len()).unwrap_or(u64::MAX);
            self.stale_player_records
                .fetch_add(n_stale, Ordering::Relaxed);
            Ok(outcome)
        })
    }

    /// The current counts.
    pub(crate) fn snapshot(&self) -> StoreStats {
        let calls = |op: Op| self.calls[op as usize].load(Ordering::Relaxed);
        StoreStats {
            n_activations: calls(Op::Activate),
            n_checkpoints: calls(Op::Checkpoint),
            n_player_saves: calls(Op::SavePlayers),
            n_action_commits: calls(Op::CommitAction),
            n_zone_loads: calls(Op::LoadZone),
            n_player_loads: calls(Op::LoadPlayer),
            n_action_reads: calls(Op::ActionsForPlayer),
            n_epoch_reads: calls(Op::ZoneEpoch),
            n_lease_renewals: calls(Op::RenewLease),
            n_leased_activations: calls(Op::ActivateLeased),
            n_releases: calls(Op::ReleaseZone),
            n_held_zone_reads: calls(Op::ZonesHeldBy),
            n_holder_reads: calls(Op::ZoneHolder),
            n_player_claims: calls(Op::ClaimPlayer),
            n_player_takeovers: calls(Op::TakeOverPlayers),
            n_player_releases: calls(Op::ReleasePlayer),
            n_claim_reads: calls(Op::PlayerClaim),
            n_member_heartbeats: calls(Op::HeartbeatMember),
            n_member_reads: calls(Op::MemberTable),
            n_member_leaves: calls(Op::LeaveMember),
            n_fencing_rejections: self.fencing_rejections.load(Ordering::Relaxed),
            n_stale_player_records: self.stale_player_records.load(Ordering::Relaxed),
            n_errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_and_failures_are_counted() {
        let counters = Counters::default();
        let ok = counters.counted(Op::LoadZone, async { Ok(()) }).await;
        assert!(ok.is_ok());
        let stale = counters
            .counted(Op::Checkpoint, async {
                Err::<(), _>(StoreError::StaleEpoch {
                    zone: 1,
                    current: 2,
                    attempted: 1,
                })
            })
            .await;
        assert!(stale.is_err());
        let failed = counters
            .counted(Op::Checkpoint, async {
                Err::<(), _>(StoreError::Corrupt("x".into()))
            })
            .await;
        assert!(failed.is_err());
        let stats = counters.snapshot();
        assert_eq!(stats.n_zone_loads, 1);
        assert_eq!(stats.n_checkpoints, 2);
        assert_eq!(stats.n_fencing_rejections, 1);
        assert_eq!(stats.n_errors, 1);
        assert_eq!(stats.n_activations, 0);
        assert_eq!(stats.n_stale_player_records, 0);
        // The last kind has its own counter too.
        let left = counters.counted(Op::LeaveMember, async { Ok(()) }).await;
        assert!(left.is_ok());
        let stats = counters.snapshot();
        assert_eq!(stats.n_member_leaves, 1);
        assert_eq!((stats.n_member_heartbeats, stats.n_member_reads), (0, 0));
    }

    #[tokio::test]
    async fn stale_player_records_are_counted_per_record() {
        let counters = Counters::default();
        let outcome = SaveOutcome {
            stale_players: vec!["a".into(), "b".into()],
        };
        let saved = counters
            .counted_save(Op::SavePlayers, async { Ok(outcome) })
            .await;
        assert_eq!(saved.map(|o| o.stale_players.len()).ok(), Some(2));
        let stats = counters.snapshot();
        assert_eq!(stats.n_stale_player_records, 2);
        assert_eq!(stats.n_player_saves, 1);
        assert_eq!((stats.n_errors, stats.n_fencing_rejections), (0, 0));
    }
}
