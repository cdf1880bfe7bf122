//! The redb transactions of the cluster operations: node leases, leased zone
//! activation and player claims.
//!
//! Every decision is made in a write transaction, and redb runs one at a time, so
//! concurrent renewals and activations serialize with each other and with fenced
//! writes. The store's clock is the system clock, read inside that transaction.
//! `zones_held_by` scans the zone table: an embedded file serves one process, whose
//! zones number in the thousands, so an index by holder would cost every activation
//! more than it saves. A player claim is one write transaction too, reading the
//! claim, the holder's lease and the clock together, so of racing claimants the first
//! to run finds the player free and every later one finds it held (and a renewal of
//! the holder's lease lands wholly before or wholly after the decision).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{self, EpochEntry};
use super::ops::{ZONE_EPOCHS, ZONE_STATE, from_redb, read_epoch, read_zone};
use crate::cluster::{
    self, ActivationView, ClaimRow, Decision, HeldZones, LeaseGrant, LeaseRow, LeasedActivation,
    NodeRun, PlayerClaim, Renewal, ZoneRow,
};
use crate::{StoreError, limits};

/// node id → the newest incarnation of it that ever renewed.
const NODE_NEWEST: TableDefinition<u64, u64> = TableDefinition::new("node_newest");
/// (node id, incarnation) → encoded [`LeaseRow`].
const NODE_LEASES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("node_leases");
/// player name → encoded [`ClaimRow`] (schema version 4).
const PLAYER_CLAIMS: TableDefinition<&str, &[u8]> = TableDefinition::new("player_claims");

/// Creates the cluster tables (called by `init`, so reads never meet a missing table).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(NODE_NEWEST).map_err(from_redb)?;
    txn.open_table(NODE_LEASES).map_err(from_redb)?;
    txn.open_table(PLAYER_CLAIMS).map_err(from_redb)?;
    Ok(())
}

/// Reads a run's lease from an open table.
fn read_lease(
    table: &impl ReadableTable<(u64, u64), &'static [u8]>,
    run: NodeRun,
) -> Result<Option<LeaseRow>, StoreError> {
    let Some(guard) = table.get((run.id, run.incarnation)).map_err(from_redb)? else {
        return Ok(None);
    };
    codec::decode_lease(guard.value()).map(Some)
}

/// The rules' view of a stored epoch entry.
fn zone_row(entry: &EpochEntry) -> ZoneRow {
    ZoneRow {
        epoch: entry.epoch,
        holder: entry.holder,
    }
}

/// Renews `run`'s lease for `duration_ms` from the system clock's now.
pub(crate) fn renew_lease(
    db: &Database,
    run: NodeRun,
    duration_ms: u64,
) -> Result<Option<LeaseGrant>, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    let now_ms = cluster::system_now_ms()?;
    let renewal = {
        let newest = txn.open_table(NODE_NEWEST).map_err(from_redb)?;
        let newest = newest.get(run.id).map_err(from_redb)?.map(|g| g.value());
        let leases = txn.open_table(NODE_LEASES).map_err(from_redb)?;
        cluster::renew(now_ms, run, newest, read_lease(&leases, run)?, duration_ms)?
    };
    // Superseded: nothing to write; dropping the transaction aborts it.
    let Renewal::Grant { row, newest } = renewal else {
        return Ok(None);
    };
    if newest {
        let mut table = txn.open_table(NODE_NEWEST).map_err(from_redb)?;
        table.insert(run.id, run.incarnation).map_err(from_redb)?;
        drop(table);
        forget_lapsed_runs(&txn, run, now_ms)?;
    }
    {
        let mut leases = txn.open_table(NODE_LEASES).map_err(from_redb)?;
        let key = (run.id, run.incarnation);
        leases
            .insert(key, codec::encode_lease(&row).as_slice())
            .map_err(from_redb)?;
    }
    txn.commit().map_err(from_redb)?;
    Ok(Some(LeaseGrant {
        duration_ms,
        generation: row.generation,
    }))
}

/// Deletes the run-out leases of `run`'s older incarnations, which can never be
/// renewed again: a missing lease and a run-out one mean the same to every rule, and
/// this keeps the table from growing by one row per restart.
fn forget_lapsed_runs(txn: &WriteTransaction, run: NodeRun, now_ms: u64) -> Result<(), StoreError> {
    let mut leases = txn.open_table(NODE_LEASES).map_err(from_redb)?;
    let mut lapsed = Vec::new();
    for entry in leases
        .range((run.id, 0)..(run.id, run.incarnation))
        .map_err(from_redb)?
    {
        let (key, value) = entry.map_err(from_redb)?;
        if !codec::decode_lease(value.value())?.is_live(now_ms) {
            lapsed.push(key.value());
        }
    }
    for key in lapsed {
        leases.remove(key).map_err(from_redb)?;
    }
    Ok(())
}

/// Activates `zone` for `caller` if the lease rules allow it, in one transaction.
pub(crate) fn activate_leased(
    db: &Database,
    zone: u32,
    caller: NodeRun,
    attempt: u64,
) -> Result<LeasedActivation, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    let now_ms = cluster::system_now_ms()?;
    let decision = {
        let epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
        let leases = txn.open_table(NODE_LEASES).map_err(from_redb)?;
        let zone_row = read_epoch(&epochs, zone)?.as_ref().map(zone_row);
        let holder = zone_row.and_then(|row| row.holder);
        let view = ActivationView {
            now_ms,
            own_lease: read_lease(&leases, caller)?,
            zone: zone_row,
            holder_lease: holder
                .map(|h| read_lease(&leases, h.run))
                .transpose()?
                .flatten(),
        };
        cluster::decide_activation(&view, caller, attempt)?
    };
    if let Decision::Take { epoch, .. } = decision {
        let entry = EpochEntry {
            epoch,
            owner: caller.to_string(),
            holder: Some(cluster::Holder {
                run: caller,
                attempt,
            }),
        };
        let mut epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
        epochs
            .insert(zone, codec::encode_epoch(&entry).as_slice())
            .map_err(from_redb)?;
    }
    let record = if decision.grants() {
        read_zone(&txn.open_table(ZONE_STATE).map_err(from_redb)?, zone)?
    } else {
        None
    };
    // Only a new epoch is a change; other outcomes end by dropping (aborting) `txn`.
    if matches!(decision, Decision::Take { .. }) {
        txn.commit().map_err(from_redb)?;
    }
    Ok(cluster::answer(decision, record))
}

/// Clears `zone`'s holder if `node` holds it at `epoch`.
pub(crate) fn release_zone(
    db: &Database,
    zone: u32,
    node: NodeRun,
    epoch: u64,
) -> Result<bool, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    {
        let mut epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
        let entry = read_epoch(&epochs, zone)?;
        let Some(entry) = entry.filter(|e| cluster::may_release(&zone_row(e), node, epoch)) else {
            return Ok(false);
        };
        let released = EpochEntry {
            holder: None,
            ..entry
        };
        epochs
            .insert(zone, codec::encode_epoch(&released).as_slice())
            .map_err(from_redb)?;
    }
    txn.commit().map_err(from_redb)?;
    Ok(true)
}

/// Lists the zones `node` holds, in zone order, one past the read limit at most.
pub(crate) fn zones_held_by(db: &Database, node: NodeRun) -> Result<HeldZones, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
    let mut zones = Vec::new();
    for entry in epochs.iter().map_err(from_redb)? {
        let (zone, value) = entry.map_err(from_redb)?;
        let held = codec::decode_epoch(value.value())?.holder;
        if held.is_some_and(|holder| holder.run == node) {
            zones.push(zone.value());
        }
        if zones.len() > limits::MAX_ZONES_PER_HOLDER_READ {
            break;
        }
    }
    Ok(HeldZones::bounded(zones))
}

/// The run holding `zone` and the zone's epoch.
pub(crate) fn zone_holder(db: &Database, zone: u32) -> Result<Option<(NodeRun, u64)>, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
    let entry = read_epoch(&epochs, zone)?;
    Ok(entry.and_then(|e| e.holder.map(|holder| (holder.run, e.epoch))))
}

/// Reads a player's claim from an open table.
fn read_claim(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    player: &str,
) -> Result<Option<ClaimRow>, StoreError> {
    let Some(guard) = table.get(player).map_err(from_redb)? else {
        return Ok(None);
    };
    codec::decode_claim(guard.value()).map(Some)
}

/// Claims `player` for `(node, session)` if the claim rule allows it, in one
/// transaction that also reads the holder's lease and the store's now.
pub(crate) fn claim_player(
    db: &Database,
    player: &str,
    node: NodeRun,
    session: u64,
    takeover: Option<NodeRun>,
) -> Result<PlayerClaim, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    {
        let mut claims = txn.open_table(PLAYER_CLAIMS).map_err(from_redb)?;
        let current = read_claim(&claims, player)?;
        let holder_live = match current {
            Some(row) => {
                let now_ms = cluster::system_now_ms()?;
                let leases = txn.open_table(NODE_LEASES).map_err(from_redb)?;
                read_lease(&leases, row.run)?.is_some_and(|lease| lease.is_live(now_ms))
            }
            None => false,
        };
        let decision = cluster::decide_claim(current, node, takeover, holder_live);
        let wanted = ClaimRow { run: node, session };
        // A refusal, or a claim already exactly as asked, changes nothing; returning
        // drops (aborts) `txn`.
        if decision != PlayerClaim::Claimed || current == Some(wanted) {
            return Ok(decision);
        }
        claims
            .insert(player, codec::encode_claim(&wanted).as_slice())
            .map_err(from_redb)?;
    }
    txn.commit().map_err(from_redb)?;
    Ok(PlayerClaim::Claimed)
}

/// Ends `player`'s claim if it is `(node, session)`.
pub(crate) fn release_player(
    db: &Database,
    player: &str,
    node: NodeRun,
    session: u64,
) -> Result<bool, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    {
        let mut claims = txn.open_table(PLAYER_CLAIMS).map_err(from_redb)?;
        let current = read_claim(&claims, player)?;
        if !current.is_some_and(|row| cluster::may_release_claim(&row, node, session)) {
            return Ok(false);
        }
        claims.remove(player).map_err(from_redb)?;
    }
    txn.commit().map_err(from_redb)?;
    Ok(true)
}

/// The claim on `player`: the run and its session.
pub(crate) fn player_claim(
    db: &Database,
    player: &str,
) -> Result<Option<(NodeRun, u64)>, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let claims = txn.open_table(PLAYER_CLAIMS).map_err(from_redb)?;
    Ok(read_claim(&claims, player)?.map(|row| (row.run, row.session)))
}
