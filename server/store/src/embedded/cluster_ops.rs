//! The redb transactions of the cluster operations: node leases, leased zone
//! activation, player claims and the membership table.
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
//! A membership heartbeat or leave is one write transaction reading the node id's row
//! and the clock and writing the row and, for a join or leave, the generation, so
//! every bump lands on the one before it; `member_table` reads the rows and the
//! generation from one read transaction's snapshot.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{self, EpochEntry};
use super::ops::{self, ZONE_EPOCHS, ZONE_STATE, from_redb, read_epoch, read_zone};
use crate::cluster::{
    self, ActivationView, ClaimDecision, ClaimRow, Decision, Heartbeat, HeldZones, LeaseGrant,
    LeaseRow, LeasedActivation, MemberRow, MemberTable, NodeRun, PlayerClaim, Renewal,
    StoredMember, ZoneRow,
};
use crate::{StoreError, limits};

/// node id → the newest incarnation of it that ever renewed.
const NODE_NEWEST: TableDefinition<u64, u64> = TableDefinition::new("node_newest");
/// (node id, incarnation) → encoded [`LeaseRow`].
const NODE_LEASES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("node_leases");
/// player name → encoded [`ClaimRow`] (schema version 4).
const PLAYER_CLAIMS: TableDefinition<&str, &[u8]> = TableDefinition::new("player_claims");
/// node id → encoded [`StoredMember`] (schema version 5).
const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("cluster_members");
/// The membership table's single counters (schema version 5): only
/// [`MEMBER_GENERATION_KEY`], 0 while absent.
const MEMBER_META: TableDefinition<&str, u64> = TableDefinition::new("cluster_member_meta");
/// The key of the membership generation in [`MEMBER_META`].
const MEMBER_GENERATION_KEY: &str = "generation";

/// Creates the cluster tables (called by `init`, so reads never meet a missing table).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(NODE_NEWEST).map_err(from_redb)?;
    txn.open_table(NODE_LEASES).map_err(from_redb)?;
    txn.open_table(PLAYER_CLAIMS).map_err(from_redb)?;
    txn.open_table(MEMBERS).map_err(from_redb)?;
    txn.open_table(MEMBER_META).map_err(from_redb)?;
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
        if let ClaimDecision::HeldBy { node, session } =
            cluster::decide_claim(current, node, takeover, holder_live)
        {
            // A refusal changes nothing; returning drops (aborts) `txn`.
            return Ok(PlayerClaim::HeldBy { node, session });
        }
        let record_version = ops::player_version(&txn, player)?;
        let wanted = ClaimRow { run: node, session };
        if current == Some(wanted) {
            return Ok(PlayerClaim::Claimed { record_version });
        }
        claims
            .insert(player, codec::encode_claim(&wanted).as_slice())
            .map_err(from_redb)?;
        drop(claims);
        txn.commit().map_err(from_redb)?;
        Ok(PlayerClaim::Claimed { record_version })
    }
}

/// Claims each of `players` for `node` where it has no claim or `node`'s or `from`'s,
/// in one transaction; whether each is claimed now.
pub(crate) fn take_over_players(
    db: &Database,
    players: &[(String, u64)],
    node: NodeRun,
    from: NodeRun,
) -> Result<Vec<bool>, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    let mut claimed = Vec::with_capacity(players.len());
    {
        let mut claims = txn.open_table(PLAYER_CLAIMS).map_err(from_redb)?;
        for (player, session) in players {
            let takes =
                read_claim(&claims, player)?.is_none_or(|row| row.run == node || row.run == from);
            if takes {
                let wanted = ClaimRow {
                    run: node,
                    session: *session,
                };
                claims
                    .insert(player.as_str(), codec::encode_claim(&wanted).as_slice())
                    .map_err(from_redb)?;
            }
            claimed.push(takes);
        }
    }
    txn.commit().map_err(from_redb)?;
    Ok(claimed)
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

/// Reads node id `id`'s membership row from an open table.
fn read_member(
    table: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<StoredMember>, StoreError> {
    let Some(guard) = table.get(id).map_err(from_redb)? else {
        return Ok(None);
    };
    codec::decode_member(id, guard.value()).map(Some)
}

/// Reads the membership generation from an open table.
fn read_member_generation(
    table: &impl ReadableTable<&'static str, u64>,
) -> Result<u64, StoreError> {
    Ok(table
        .get(MEMBER_GENERATION_KEY)
        .map_err(from_redb)?
        .map_or(0, |guard| guard.value()))
}

/// Bumps the membership generation inside `txn`.
fn bump_member_generation(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(MEMBER_META).map_err(from_redb)?;
    let next = cluster::next_member_generation(read_member_generation(&meta)?)?;
    meta.insert(MEMBER_GENERATION_KEY, next)
        .map_err(from_redb)?;
    Ok(())
}

/// Records a heartbeat of `row.run` lasting `ttl_ms` from the system clock's now, in
/// one transaction.
pub(crate) fn heartbeat_member(
    db: &Database,
    row: &MemberRow,
    ttl_ms: u64,
) -> Result<bool, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    let now_ms = cluster::system_now_ms()?;
    {
        let mut members = txn.open_table(MEMBERS).map_err(from_redb)?;
        let current = read_member(&members, row.run.id)?;
        let decision = cluster::heartbeat(now_ms, row, current.as_ref(), ttl_ms)?;
        // Superseded: nothing to write; returning drops (aborts) `txn`.
        let Heartbeat::Write {
            expires_unix_ms,
            joins,
        } = decision
        else {
            return Ok(false);
        };
        let stored = StoredMember {
            row: row.clone(),
            expires_unix_ms,
        };
        members
            .insert(row.run.id, codec::encode_member(&stored).as_slice())
            .map_err(from_redb)?;
        if joins {
            bump_member_generation(&txn)?;
        }
    }
    txn.commit().map_err(from_redb)?;
    Ok(true)
}

/// The rows live at the system clock's now and the generation, from one snapshot.
pub(crate) fn member_table(db: &Database) -> Result<MemberTable, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let now_ms = cluster::system_now_ms()?;
    let generation = read_member_generation(&txn.open_table(MEMBER_META).map_err(from_redb)?)?;
    let members = txn.open_table(MEMBERS).map_err(from_redb)?;
    let mut live = Vec::new();
    for entry in members.iter().map_err(from_redb)? {
        let (id, value) = entry.map_err(from_redb)?;
        let stored = codec::decode_member(id.value(), value.value())?;
        if stored.is_live(now_ms) {
            live.push(stored.row);
        }
        // One past the limit is enough to refuse the read.
        if live.len() > limits::MAX_MEMBERS_PER_READ {
            break;
        }
    }
    MemberTable::bounded(generation, live)
}

/// Removes `run`'s membership row if it is that exact run, bumping the generation.
pub(crate) fn leave_member(db: &Database, run: NodeRun) -> Result<bool, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    {
        let mut members = txn.open_table(MEMBERS).map_err(from_redb)?;
        let current = read_member(&members, run.id)?;
        if !current.is_some_and(|stored| cluster::may_leave(&stored, run)) {
            return Ok(false);
        }
        members.remove(run.id).map_err(from_redb)?;
        bump_member_generation(&txn)?;
    }
    txn.commit().map_err(from_redb)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use redb::backends::InMemoryBackend;

    use super::*;

    /// A fresh in-memory database with every table.
    fn database() -> Database {
        let db = redb::Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .expect("in-memory database");
        ops::init(&db).expect("init");
        db
    }

    /// Writes rows for node ids `ids` directly, all expiring at `expires_unix_ms`.
    fn write_rows(db: &Database, ids: std::ops::Range<u64>, expires_unix_ms: u64) {
        let txn = db.begin_write().expect("begin");
        {
            let mut members = txn.open_table(MEMBERS).expect("members");
            for id in ids {
                let stored = StoredMember {
                    row: MemberRow {
                        run: NodeRun::new(id, 1),
                        node_addr: "10.0.0.1:9000".into(),
                        client_addr: "10.0.0.1:7000".into(),
                    },
                    expires_unix_ms,
                };
                let value = codec::encode_member(&stored);
                members.insert(id, value.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    #[test]
    fn a_table_over_the_read_limit_is_refused_and_run_out_rows_do_not_count() {
        let db = database();
        let max = u64::try_from(limits::MAX_MEMBERS_PER_READ).expect("fits");
        let far = cluster::system_now_ms().expect("clock") + 3_600_000;
        write_rows(&db, 0..max, far);
        // Run-out rows past the limit are not listed and do not count.
        write_rows(&db, max..max + 5, 1);
        let table = member_table(&db).expect("exactly at the limit");
        assert_eq!(table.members.len(), limits::MAX_MEMBERS_PER_READ);
        write_rows(&db, max + 5..max + 6, far);
        let over = member_table(&db);
        assert!(
            matches!(
                over,
                Err(StoreError::TooLarge {
                    what: "live members per read",
                    ..
                })
            ),
            "{over:?}"
        );
    }
}
