//! The SQL behind each store operation, one transaction per call.
//!
//! Fencing: activation bumps the epoch with one `INSERT ... ON CONFLICT DO UPDATE`,
//! which locks the zone's epoch row. Every fenced write first reads that row with
//! `SELECT ... FOR SHARE`, so an activation cannot commit between the check and the
//! write: it waits for the write to commit (and then reads its result), or the write
//! waits for the activation and sees the new epoch. Plain SQL only; under
//! SERIALIZABLE databases (CockroachDB) the same conflict surfaces as a serialization
//! failure, which the pool retries.
//!
//! Player versions: the upsert's `DO UPDATE ... WHERE players.version <
//! EXCLUDED.version` compares against the row as it is when the statement locks it
//! (the newest committed version, even one committed after the transaction began), so
//! racing writers of one player end with the highest version stored. Rows it leaves
//! alone are not in its `RETURNING` list; that is how skipped players are found.

use std::collections::HashSet;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Transaction};

use super::pool::OpError;
use super::rows::{self, to_i64};
use crate::types::{
    ActionCommit, Activation, Checkpoint, DurableAction, PlayerRecord, SaveOutcome, ZoneRecord,
    ZoneSnapshot,
};
use crate::{StoreError, fence, limits};

/// Rows per multi-row `INSERT` of players: [`PLAYER_PARAMS`] parameters each, far
/// below the protocol's 65535-parameter limit, and few statements even for a full
/// batch.
const PLAYER_ROWS_PER_STATEMENT: usize = 1000;

/// Columns of a `zone_state` read.
const ZONE_COLUMNS: &str = "epoch, tick, saved_at_unix_ms, state";
/// Columns of a `players` read or write, in parameter order.
const PLAYER_COLUMNS: &str = "player, zone, x, y, data, updated_at_unix_ms, version";
/// Parameters per player row: one per column of [`PLAYER_COLUMNS`].
const PLAYER_PARAMS: usize = 7;
/// Columns of an `actions` read.
const ACTION_COLUMNS: &str = "id, player, zone, kind, payload";

/// Bumps the zone's epoch and reads its state in one transaction. The zone is then
/// held by no run (see the `Store` contract).
pub(crate) async fn activate(
    client: &mut Client,
    zone: u32,
    node: &str,
) -> Result<Activation, OpError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "INSERT INTO zone_epochs (zone, epoch, owner) VALUES ($1, 1, $2)
             ON CONFLICT (zone) DO UPDATE
             SET epoch = zone_epochs.epoch + 1, owner = EXCLUDED.owner,
                 holder_id = NULL, holder_incarnation = NULL, attempt = NULL
             RETURNING epoch",
            &[&i64::from(zone), &node],
        )
        .await?;
    let epoch = rows::to_u64("zone epoch", rows::column(&row, "epoch")?)?;
    let record = read_zone(&tx, zone).await?;
    tx.commit().await?;
    Ok(Activation { epoch, record })
}

/// Checks the fence inside `tx`, holding the epoch row against activations until the
/// transaction ends.
async fn check_fence(tx: &Transaction<'_>, zone: u32, epoch: u64) -> Result<(), OpError> {
    let row = tx
        .query_opt(
            "SELECT epoch FROM zone_epochs WHERE zone = $1 FOR SHARE",
            &[&i64::from(zone)],
        )
        .await?;
    let current = match row {
        Some(row) => Some(rows::to_u64("zone epoch", rows::column(&row, "epoch")?)?),
        None => None,
    };
    fence::check(zone, current, epoch)?;
    Ok(())
}

/// Writes a checkpoint, fenced, in one transaction.
pub(crate) async fn checkpoint(
    client: &mut Client,
    zone: u32,
    epoch: u64,
    checkpoint: &Checkpoint,
) -> Result<SaveOutcome, OpError> {
    let tx = client.transaction().await?;
    check_fence(&tx, zone, epoch).await?;
    if let Some(snapshot) = &checkpoint.zone_state {
        write_zone(&tx, zone, epoch, snapshot).await?;
    }
    let outcome = write_players(&tx, &checkpoint.players).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Upserts players, fenced, in one transaction.
pub(crate) async fn save_players(
    client: &mut Client,
    zone: u32,
    epoch: u64,
    players: &[PlayerRecord],
) -> Result<SaveOutcome, OpError> {
    let tx = client.transaction().await?;
    check_fence(&tx, zone, epoch).await?;
    let outcome = write_players(&tx, players).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Upserts the zone's state row, stamped with the fencing epoch.
async fn write_zone(
    tx: &Transaction<'_>,
    zone: u32,
    epoch: u64,
    snapshot: &ZoneSnapshot,
) -> Result<(), OpError> {
    let state: &[u8] = &snapshot.state;
    tx.execute(
        "INSERT INTO zone_state (zone, epoch, tick, saved_at_unix_ms, state)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (zone) DO UPDATE SET epoch = EXCLUDED.epoch, tick = EXCLUDED.tick,
             saved_at_unix_ms = EXCLUDED.saved_at_unix_ms, state = EXCLUDED.state",
        &[
            &i64::from(zone),
            &to_i64("epoch", epoch)?,
            &to_i64("zone tick", snapshot.tick)?,
            &to_i64("zone saved_at_unix_ms", snapshot.saved_at_unix_ms)?,
            &state,
        ],
    )
    .await?;
    Ok(())
}

/// One player as SQL parameters.
struct PlayerParams<'a> {
    player: &'a str,
    zone: i64,
    x: f32,
    y: f32,
    data: &'a [u8],
    updated_at_unix_ms: i64,
    version: i64,
}

impl<'a> PlayerParams<'a> {
    fn new(record: &'a PlayerRecord) -> Result<Self, StoreError> {
        Ok(Self {
            player: &record.player,
            zone: i64::from(record.zone),
            x: record.x,
            y: record.y,
            data: &record.data,
            updated_at_unix_ms: to_i64("player updated_at_unix_ms", record.updated_at_unix_ms)?,
            version: to_i64("player version", record.version)?,
        })
    }

    /// The parameters in [`PLAYER_COLUMNS`] order.
    fn push_into<'p>(&'p self, params: &mut Vec<&'p (dyn ToSql + Sync)>) {
        params.push(&self.player);
        params.push(&self.zone);
        params.push(&self.x);
        params.push(&self.y);
        params.push(&self.data);
        params.push(&self.updated_at_unix_ms);
        params.push(&self.version);
    }
}

/// Upserts players with multi-row statements, in name order so that concurrent
/// batches lock rows in the same order. Each row replaces only an older version;
/// returns the players whose row was left alone, in name order.
async fn write_players(
    tx: &Transaction<'_>,
    players: &[PlayerRecord],
) -> Result<SaveOutcome, OpError> {
    let mut sorted: Vec<&PlayerRecord> = players.iter().collect();
    sorted.sort_unstable_by(|a, b| a.player.cmp(&b.player));
    let mut stale_players = Vec::new();
    for chunk in sorted.chunks(PLAYER_ROWS_PER_STATEMENT) {
        let rows = chunk
            .iter()
            .map(|record| PlayerParams::new(record))
            .collect::<Result<Vec<_>, _>>()?;
        let mut params = Vec::with_capacity(rows.len() * PLAYER_PARAMS);
        for row in &rows {
            row.push_into(&mut params);
        }
        let written = tx.query(&players_upsert_sql(rows.len()), &params).await?;
        let written = written
            .iter()
            .map(|row| rows::column::<String>(row, "player"))
            .collect::<Result<HashSet<_>, _>>()?;
        let skipped = chunk.iter().filter(|r| !written.contains(&r.player));
        stale_players.extend(skipped.map(|r| r.player.clone()));
    }
    Ok(SaveOutcome { stale_players })
}

/// `INSERT INTO players ... VALUES (...), ... ON CONFLICT DO UPDATE ... WHERE older
/// RETURNING player` for `n_rows` rows.
pub(crate) fn players_upsert_sql(n_rows: usize) -> String {
    let mut sql = format!("INSERT INTO players ({PLAYER_COLUMNS}) VALUES ");
    for row in 0..n_rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let base = row * PLAYER_PARAMS;
        let placeholders: Vec<String> = (1..=PLAYER_PARAMS)
            .map(|i| format!("${}", base + i))
            .collect();
        sql.push_str(&format!("({})", placeholders.join(", ")));
    }
    sql.push_str(
        " ON CONFLICT (player) DO UPDATE SET zone = EXCLUDED.zone, x = EXCLUDED.x,
          y = EXCLUDED.y, data = EXCLUDED.data,
          updated_at_unix_ms = EXCLUDED.updated_at_unix_ms, version = EXCLUDED.version
          WHERE players.version < EXCLUDED.version
          RETURNING player",
    );
    sql
}

/// Commits an action once, fenced. A known id rolls back and returns the original.
pub(crate) async fn commit_action(
    client: &mut Client,
    zone: u32,
    epoch: u64,
    action: &DurableAction,
) -> Result<ActionCommit, OpError> {
    let tx = client.transaction().await?;
    check_fence(&tx, zone, epoch).await?;
    let id = action.id.to_be_bytes();
    let id: &[u8] = &id;
    let payload: &[u8] = &action.payload;
    let inserted = tx
        .execute(
            "INSERT INTO actions (id, player, zone, kind, payload, epoch)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            &[
                &id,
                &action.player,
                &i64::from(action.zone),
                &i32::from(action.kind),
                &payload,
                &to_i64("epoch", epoch)?,
            ],
        )
        .await?;
    if inserted == 1 {
        tx.commit().await?;
        return Ok(ActionCommit::Committed);
    }
    let row = tx
        .query_one(
            &format!("SELECT {ACTION_COLUMNS} FROM actions WHERE id = $1"),
            &[&id],
        )
        .await?;
    let original = rows::durable_action(&row)?;
    tx.rollback().await?;
    Ok(ActionCommit::AlreadyCommitted(original))
}

/// Reads a zone's state row through any client or transaction.
pub(super) async fn read_zone(
    client: &impl GenericClient,
    zone: u32,
) -> Result<Option<ZoneRecord>, OpError> {
    let row = client
        .query_opt(
            &format!("SELECT {ZONE_COLUMNS} FROM zone_state WHERE zone = $1"),
            &[&i64::from(zone)],
        )
        .await?;
    Ok(row.as_ref().map(rows::zone_record).transpose()?)
}

/// Reads a zone's state.
pub(crate) async fn load_zone(
    client: &mut Client,
    zone: u32,
) -> Result<Option<ZoneRecord>, OpError> {
    read_zone(&*client, zone).await
}

/// Reads a zone's latest epoch.
pub(crate) async fn zone_epoch(client: &mut Client, zone: u32) -> Result<Option<u64>, OpError> {
    let row = client
        .query_opt(
            "SELECT epoch FROM zone_epochs WHERE zone = $1",
            &[&i64::from(zone)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(rows::to_u64(
        "zone epoch",
        rows::column(&row, "epoch")?,
    )?))
}

/// Reads a player's record.
pub(crate) async fn load_player(
    client: &mut Client,
    player: &str,
) -> Result<Option<PlayerRecord>, OpError> {
    let row = client
        .query_opt(
            &format!("SELECT {PLAYER_COLUMNS} FROM players WHERE player = $1"),
            &[&player],
        )
        .await?;
    Ok(row.as_ref().map(rows::player_record).transpose()?)
}

/// Lists a player's actions in id order, failing past the read limit.
pub(crate) async fn actions_for_player(
    client: &mut Client,
    player: &str,
) -> Result<Vec<DurableAction>, OpError> {
    let max = limits::MAX_ACTIONS_PER_READ;
    // One row past the limit tells "exactly at the limit" from "over it".
    let fetch = i64::try_from(max + 1).unwrap_or(i64::MAX);
    let found = client
        .query(
            &format!("SELECT {ACTION_COLUMNS} FROM actions WHERE player = $1 ORDER BY id LIMIT $2"),
            &[&player, &fetch],
        )
        .await?;
    if found.len() > max {
        return Err(StoreError::too_large("actions per read", found.len(), max).into());
    }
    Ok(found
        .iter()
        .map(rows::durable_action)
        .collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_upsert_numbers_every_parameter_once() {
        let sql = players_upsert_sql(2);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)"));
        assert!(!sql.contains("$15"));
        assert!(sql.contains("ON CONFLICT (player) DO UPDATE"));
        assert!(sql.contains("WHERE players.version < EXCLUDED.version"));
        assert!(sql.contains("RETURNING player"));
        let full = players_upsert_sql(PLAYER_ROWS_PER_STATEMENT);
        let last = PLAYER_ROWS_PER_STATEMENT * PLAYER_PARAMS;
        assert!(full.contains(&format!("${last})")));
        assert!(!full.contains(&format!("${}", last + 1)));
    }
}
