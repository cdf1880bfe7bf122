//! The redb transactions behind each store operation. Synchronous: callers run them on
//! blocking threads.
//!
//! Fencing needs no extra locking here: redb runs one write transaction at a time, so
//! reading the zone's epoch, comparing it and writing happen with no activation in
//! between.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{self, EpochEntry};
use crate::types::{
    ActionCommit, ActionId, Activation, Checkpoint, DurableAction, PlayerRecord, SaveOutcome,
    ZoneRecord,
};
use crate::{StoreError, fence, limits};

/// Store-level metadata, e.g. the schema version.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// zone → encoded [`EpochEntry`].
pub(super) const ZONE_EPOCHS: TableDefinition<u32, &[u8]> = TableDefinition::new("zone_epochs");
/// zone → encoded [`ZoneRecord`].
pub(super) const ZONE_STATE: TableDefinition<u32, &[u8]> = TableDefinition::new("zone_state");
/// player name → encoded [`PlayerRecord`].
const PLAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("players");
/// action id → encoded [`DurableAction`].
const ACTIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("actions");
/// (player, action id) → (): the index behind `actions_for_player`.
const PLAYER_ACTIONS: TableDefinition<(&str, u128), ()> = TableDefinition::new("player_actions");

/// The key of the schema version in [`META`].
const SCHEMA_VERSION_KEY: &str = "schema_version";
/// The layout this build writes and understands. Version 2 writes player records
/// with a version (codec format 2); version 3 adds the node lease tables and writes
/// zone epoch entries with a holder (codec format 2); version 4 adds the player claim
/// table; version 5 adds the membership tables (rows and generation). Older files need
/// no rewrite (their player records read as version 0, their zones as held by no run,
/// their players as claimed by no one, their membership as empty at generation 0;
/// `init` creates the missing tables), so opening one just records version 5. The
/// bump is what keeps an older build from opening a file whose tables it would
/// ignore: a version-3 build would let a claimed player in a second time, and a
/// version-4 build would run without a membership row, invisible to the table's
/// readers.
pub(crate) const SCHEMA_VERSION: u64 = 5;

/// Maps any redb error: corruption becomes [`StoreError::Corrupt`], the rest
/// [`StoreError::Database`].
pub(crate) fn from_redb(error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::Corrupted(detail) => StoreError::Corrupt(detail),
        other => StoreError::Database {
            source: Box::new(other),
        },
    }
}

/// Creates every table and records (or checks) the schema version, so that later read
/// transactions never meet a missing table.
pub(crate) fn init(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    {
        let mut meta = txn.open_table(META).map_err(from_redb)?;
        let found = meta
            .get(SCHEMA_VERSION_KEY)
            .map_err(from_redb)?
            .map(|v| v.value());
        match found {
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(found) if found == SCHEMA_VERSION => {}
            Some(_) | None => {
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                    .map_err(from_redb)?;
            }
        }
        txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
        txn.open_table(ZONE_STATE).map_err(from_redb)?;
        txn.open_table(PLAYERS).map_err(from_redb)?;
        txn.open_table(ACTIONS).map_err(from_redb)?;
        txn.open_table(PLAYER_ACTIONS).map_err(from_redb)?;
        super::cluster_ops::create_tables(&txn)?;
    }
    txn.commit().map_err(from_redb)
}

/// Reads a zone's epoch entry from an open table.
pub(super) fn read_epoch(
    table: &impl ReadableTable<u32, &'static [u8]>,
    zone: u32,
) -> Result<Option<EpochEntry>, StoreError> {
    let Some(guard) = table.get(zone).map_err(from_redb)? else {
        return Ok(None);
    };
    codec::decode_epoch(guard.value()).map(Some)
}

/// Reads a zone record from an open table.
pub(super) fn read_zone(
    table: &impl ReadableTable<u32, &'static [u8]>,
    zone: u32,
) -> Result<Option<ZoneRecord>, StoreError> {
    let Some(guard) = table.get(zone).map_err(from_redb)? else {
        return Ok(None);
    };
    codec::decode_zone(guard.value()).map(Some)
}

/// Bumps the zone's epoch and reads its state, in one write transaction. The zone is
/// then held by no run (see the `Store` contract).
pub(crate) fn activate(db: &Database, zone: u32, node: &str) -> Result<Activation, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    let activation = {
        let mut epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
        let current = read_epoch(&epochs, zone)?.map(|entry| entry.epoch);
        let entry = EpochEntry {
            epoch: fence::next_epoch(current)?,
            owner: node.to_owned(),
            holder: None,
        };
        epochs
            .insert(zone, codec::encode_epoch(&entry).as_slice())
            .map_err(from_redb)?;
        let states = txn.open_table(ZONE_STATE).map_err(from_redb)?;
        Activation {
            epoch: entry.epoch,
            record: read_zone(&states, zone)?,
        }
    };
    txn.commit().map_err(from_redb)?;
    Ok(activation)
}

/// Checks the fence inside a write transaction. On error the caller drops the
/// transaction, which aborts it.
fn check_fence(txn: &WriteTransaction, zone: u32, epoch: u64) -> Result<(), StoreError> {
    let epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
    let current = read_epoch(&epochs, zone)?.map(|entry| entry.epoch);
    fence::check(zone, current, epoch)
}

/// Upserts player records inside a write transaction, each only over an older stored
/// version; returns the names skipped as stale, in name order.
fn put_players(
    txn: &WriteTransaction,
    players: &[PlayerRecord],
) -> Result<SaveOutcome, StoreError> {
    let mut table = txn.open_table(PLAYERS).map_err(from_redb)?;
    let mut stale_players = Vec::new();
    for record in players {
        let stored = match table.get(record.player.as_str()).map_err(from_redb)? {
            Some(guard) => Some(codec::decode_player(guard.value())?.version),
            None => None,
        };
        if stored.is_some_and(|stored| stored >= record.version) {
            stale_players.push(record.player.clone());
            continue;
        }
        table
            .insert(
                record.player.as_str(),
                codec::encode_player(record).as_slice(),
            )
            .map_err(from_redb)?;
    }
    stale_players.sort_unstable();
    Ok(SaveOutcome { stale_players })
}

/// Writes a checkpoint, fenced, in one transaction.
pub(crate) fn checkpoint(
    db: &Database,
    zone: u32,
    epoch: u64,
    checkpoint: Checkpoint,
) -> Result<SaveOutcome, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    check_fence(&txn, zone, epoch)?;
    if let Some(snapshot) = checkpoint.zone_state {
        let record = codec::encode_zone(&snapshot.into_record(epoch));
        let mut states = txn.open_table(ZONE_STATE).map_err(from_redb)?;
        states.insert(zone, record.as_slice()).map_err(from_redb)?;
    }
    let outcome = put_players(&txn, &checkpoint.players)?;
    txn.commit().map_err(from_redb)?;
    Ok(outcome)
}

/// Upserts player records, fenced, in one transaction.
pub(crate) fn save_players(
    db: &Database,
    zone: u32,
    epoch: u64,
    players: &[PlayerRecord],
) -> Result<SaveOutcome, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    check_fence(&txn, zone, epoch)?;
    let outcome = put_players(&txn, players)?;
    txn.commit().map_err(from_redb)?;
    Ok(outcome)
}

/// Commits an action once, fenced. A known id leaves the transaction uncommitted.
pub(crate) fn commit_action(
    db: &Database,
    zone: u32,
    epoch: u64,
    action: &DurableAction,
) -> Result<ActionCommit, StoreError> {
    let txn = db.begin_write().map_err(from_redb)?;
    check_fence(&txn, zone, epoch)?;
    {
        let mut actions = txn.open_table(ACTIONS).map_err(from_redb)?;
        if let Some(guard) = actions.get(action.id.0).map_err(from_redb)? {
            return codec::decode_action(guard.value()).map(ActionCommit::AlreadyCommitted);
        }
        actions
            .insert(action.id.0, codec::encode_action(action).as_slice())
            .map_err(from_redb)?;
        let mut index = txn.open_table(PLAYER_ACTIONS).map_err(from_redb)?;
        index
            .insert((action.player.as_str(), action.id.0), ())
            .map_err(from_redb)?;
    }
    txn.commit().map_err(from_redb)?;
    Ok(ActionCommit::Committed)
}

/// Reads a zone's record.
pub(crate) fn load_zone(db: &Database, zone: u32) -> Result<Option<ZoneRecord>, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let states = txn.open_table(ZONE_STATE).map_err(from_redb)?;
    read_zone(&states, zone)
}

/// Reads a zone's latest epoch.
pub(crate) fn zone_epoch(db: &Database, zone: u32) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let epochs = txn.open_table(ZONE_EPOCHS).map_err(from_redb)?;
    Ok(read_epoch(&epochs, zone)?.map(|entry| entry.epoch))
}

/// Reads a player's record.
pub(crate) fn load_player(db: &Database, player: &str) -> Result<Option<PlayerRecord>, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let players = txn.open_table(PLAYERS).map_err(from_redb)?;
    let Some(guard) = players.get(player).map_err(from_redb)? else {
        return Ok(None);
    };
    codec::decode_player(guard.value()).map(Some)
}

/// The version of a player's record, if it has one, read in `txn`.
pub(crate) fn player_version(
    txn: &WriteTransaction,
    player: &str,
) -> Result<Option<u64>, StoreError> {
    let players = txn.open_table(PLAYERS).map_err(from_redb)?;
    let Some(guard) = players.get(player).map_err(from_redb)? else {
        return Ok(None);
    };
    codec::decode_player(guard.value()).map(|record| Some(record.version))
}

/// Lists a player's actions in id order, through the index.
pub(crate) fn actions_for_player(
    db: &Database,
    player: &str,
) -> Result<Vec<DurableAction>, StoreError> {
    let txn = db.begin_read().map_err(from_redb)?;
    let index = txn.open_table(PLAYER_ACTIONS).map_err(from_redb)?;
    let actions = txn.open_table(ACTIONS).map_err(from_redb)?;
    let mut out = Vec::new();
    for entry in index
        .range((player, 0u128)..=(player, u128::MAX))
        .map_err(from_redb)?
    {
        let (key, _unit) = entry.map_err(from_redb)?;
        if out.len() == limits::MAX_ACTIONS_PER_READ {
            return Err(StoreError::too_large(
                "actions per read",
                out.len() + 1,
                limits::MAX_ACTIONS_PER_READ,
            ));
        }
        let id = ActionId(key.value().1);
        let Some(guard) = actions.get(id.0).map_err(from_redb)? else {
            return Err(StoreError::Corrupt(format!(
                "action index lists {id} for {player:?} but the action is missing"
            )));
        };
        out.push(codec::decode_action(guard.value())?);
    }
    Ok(out)
}
