//! The SQL of the cluster operations: node leases, leased zone activation, player
//! claims and the membership table, one transaction per call; the decisions
//! themselves are [`crate::cluster`]'s rules.
//!
//! Serialization: a renewal first locks its node id's `node_incarnations` row
//! (`INSERT ... ON CONFLICT DO NOTHING`, then `SELECT ... FOR UPDATE`), so the renewals
//! of one id run one at a time and an older incarnation cannot renew after a newer
//! one was recorded. An activation locks the zone's `zone_epochs` row `FOR UPDATE`,
//! the row `activate_zone` upserts and every fenced write reads `FOR SHARE`, so
//! activations of a zone serialize with each other and with its writes. A zone never
//! activated has no row to lock: the activation inserts it with `ON CONFLICT DO
//! NOTHING`, and when a racing activation inserted it first (no row inserted), it
//! decides again on the row, now visible (READ COMMITTED: every statement sees what
//! committed before it started).
//!
//! A player claim is an upsert whose `DO UPDATE ... WHERE` is the claim rule without
//! leases (own run or named takeover). Its `ON CONFLICT` serializes racing claimants
//! on the player's row (or on the unique index, for a player not yet claimed: a racing
//! insert waits for the first to commit and then takes the conflict path), and the
//! conflicting row stays locked even when the rule refuses, so the holder read next in
//! the same transaction is the claim that refused us. The lease part of the rule is
//! then decided on that locked holder: the claim locks the holder's node id row in
//! `node_incarnations` `FOR SHARE` (renewals hold it `FOR UPDATE` from before they
//! read the clock until they commit, so none of that id is half done meanwhile), then
//! reads the clock and the holder's lease. A lapsed holder is taken over by the same
//! upsert naming it as takeover, which matches the row this transaction holds locked.
//! Lock order is always claim row, then node id row; renewals never touch claims, so
//! the two cannot deadlock.
//!
//! A membership heartbeat locks its node id's `cluster_members` row `FOR UPDATE` (a
//! node id without a row first inserts a placeholder, run out and visible to no one
//! before commit, through an upsert that locks the row a racing first heartbeat
//! inserted instead), then reads the clock and decides; a join then locks the one
//! `cluster_members_generation` row `FOR UPDATE` to bump it, so concurrent joins of
//! different nodes bump it one after the other and none is lost. A leave deletes the
//! exact run's row (locking it) and bumps the same way. Lock order is always the
//! member row, then the generation row. `member_table` reads the clock, the generation
//! and the rows in one read-only `REPEATABLE READ` transaction, one snapshot, so a
//! join never shows its generation without its row or the reverse.
//!
//! Time: `clock_timestamp()`, read after the locks are held, so a transaction that
//! waited for a lock never decides with a time from before it waited (`now()` would
//! be the transaction's start).

use tokio_postgres::{Client, GenericClient, IsolationLevel, Transaction};

use super::ops::read_zone;
use super::pool::OpError;
use super::rows::{self, run_params, to_bits};
use crate::StoreError;
use crate::cluster::{
    self, ActivationView, ClaimDecision, Decision, Heartbeat, HeldZones, LeaseGrant, LeaseRow,
    LeasedActivation, MemberRow, MemberTable, NodeRun, PlayerClaim, Renewal, StoredMember, ZoneRow,
};
use crate::limits::{MAX_MEMBERS_PER_READ, MAX_ZONES_PER_HOLDER_READ};

/// The database clock in whole milliseconds since the Unix epoch.
const NOW_MS: &str = "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms";
/// Columns of a zone row with its holder.
const ZONE_ROW_COLUMNS: &str = "epoch, holder_id, holder_incarnation, attempt";
/// Columns of a membership row.
const MEMBER_COLUMNS: &str = "node_id, incarnation, expires_at_unix_ms, node_addr, client_addr";

/// Reads the store's clock.
async fn store_now(client: &impl GenericClient) -> Result<u64, OpError> {
    let row = client.query_one(NOW_MS, &[]).await?;
    let millis: i64 = rows::column(&row, "now_ms")?;
    Ok(cluster::clock_ms(i128::from(millis))?)
}

/// Reads a run's lease.
async fn read_lease(
    client: &impl GenericClient,
    run: NodeRun,
) -> Result<Option<LeaseRow>, OpError> {
    let (id, incarnation) = run_params(run);
    let row = client
        .query_opt(
            "SELECT expires_at_unix_ms, generation FROM node_leases
             WHERE node_id = $1 AND incarnation = $2",
            &[&id, &incarnation],
        )
        .await?;
    Ok(row.as_ref().map(rows::lease_row).transpose()?)
}

/// Renews `run`'s lease for `duration_ms` from the database clock's now.
pub(crate) async fn renew_lease(
    client: &mut Client,
    run: NodeRun,
    duration_ms: u64,
) -> Result<Option<LeaseGrant>, OpError> {
    let tx = client.transaction().await?;
    let newest = lock_newest_incarnation(&tx, run).await?;
    let now_ms = store_now(&tx).await?;
    let current = read_lease(&tx, run).await?;
    let renewal = cluster::renew(now_ms, run, Some(newest), current, duration_ms)?;
    let Renewal::Grant { row, newest } = renewal else {
        tx.rollback().await?;
        return Ok(None);
    };
    if newest {
        record_newest_incarnation(&tx, run, now_ms).await?;
    }
    write_lease(&tx, run, row).await?;
    tx.commit().await?;
    Ok(Some(LeaseGrant {
        duration_ms,
        generation: row.generation,
    }))
}

/// Locks the node id's row (creating it with `run`'s incarnation on its first renewal)
/// and returns the newest incarnation recorded.
async fn lock_newest_incarnation(tx: &Transaction<'_>, run: NodeRun) -> Result<u64, OpError> {
    let (id, incarnation) = run_params(run);
    tx.execute(
        "INSERT INTO node_incarnations (node_id, incarnation) VALUES ($1, $2)
         ON CONFLICT (node_id) DO NOTHING",
        &[&id, &incarnation],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT incarnation FROM node_incarnations WHERE node_id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    Ok(rows::from_bits(rows::column(&row, "incarnation")?))
}

/// Records `run` as its id's newest incarnation and deletes the run-out leases of the
/// older ones, which can never be renewed again (a missing lease and a run-out one
/// mean the same to every rule; this keeps one row per restart from piling up).
async fn record_newest_incarnation(
    tx: &Transaction<'_>,
    run: NodeRun,
    now_ms: u64,
) -> Result<(), OpError> {
    let (id, incarnation) = run_params(run);
    tx.execute(
        "UPDATE node_incarnations SET incarnation = $2 WHERE node_id = $1",
        &[&id, &incarnation],
    )
    .await?;
    // Every other incarnation of the id is older now; `<>` because the bit patterns
    // do not order like the numbers.
    tx.execute(
        "DELETE FROM node_leases
         WHERE node_id = $1 AND incarnation <> $2 AND expires_at_unix_ms <= $3",
        &[&id, &incarnation, &rows::to_i64("store time", now_ms)?],
    )
    .await?;
    Ok(())
}

/// Upserts a run's lease.
async fn write_lease(tx: &Transaction<'_>, run: NodeRun, row: LeaseRow) -> Result<(), OpError> {
    let (id, incarnation) = run_params(run);
    tx.execute(
        "INSERT INTO node_leases (node_id, incarnation, expires_at_unix_ms, generation)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (node_id, incarnation) DO UPDATE
         SET expires_at_unix_ms = EXCLUDED.expires_at_unix_ms,
             generation = EXCLUDED.generation",
        &[
            &id,
            &incarnation,
            &rows::to_i64("lease expiry", row.expires_unix_ms)?,
            &rows::to_i64("lease generation", row.generation)?,
        ],
    )
    .await?;
    Ok(())
}

/// Activates `zone` for `caller` if the lease rules allow it, in one transaction.
pub(crate) async fn activate_leased(
    client: &mut Client,
    zone: u32,
    caller: NodeRun,
    attempt: u64,
) -> Result<LeasedActivation, OpError> {
    let tx = client.transaction().await?;
    // A second pass only follows a racing activation that created the zone's row;
    // rows are never deleted, so that pass finds it and decides.
    for _pass in 0..2 {
        if let Some(answer) = try_activate(&tx, zone, caller, attempt).await? {
            tx.commit().await?;
            return Ok(answer);
        }
    }
    Err(StoreError::Corrupt(format!(
        "zone {zone}'s epoch row was inserted and then vanished"
    ))
    .into())
}

/// One decision on the locked zone row; `None` when a racing activation created the
/// row first.
async fn try_activate(
    tx: &Transaction<'_>,
    zone: u32,
    caller: NodeRun,
    attempt: u64,
) -> Result<Option<LeasedActivation>, OpError> {
    let zone_row = lock_zone(tx, zone).await?;
    let holder = zone_row.and_then(|row| row.holder);
    // Before the clock is read: a renewal of the holder's lease is then either
    // committed (and seen) or not yet begun (and starts after this decision).
    if let Some(holder) = holder {
        hold_off_renewals(tx, holder.run).await?;
    }
    let now_ms = store_now(tx).await?;
    let holder_lease = match holder {
        Some(holder) => read_lease(tx, holder.run).await?,
        None => None,
    };
    let view = ActivationView {
        now_ms,
        own_lease: read_lease(tx, caller).await?,
        zone: zone_row,
        holder_lease,
    };
    let decision = cluster::decide_activation(&view, caller, attempt)?;
    if let Decision::Take { epoch, .. } = decision {
        let holder = Holding {
            zone,
            epoch,
            run: caller,
            attempt,
        };
        if !write_holder(tx, &holder, zone_row.is_some()).await? {
            return Ok(None);
        }
    }
    let record = if decision.grants() {
        read_zone(tx, zone).await?
    } else {
        None
    };
    Ok(Some(cluster::answer(decision, record)))
}

/// Locks and reads the zone's row, `None` when the zone was never activated.
async fn lock_zone(tx: &Transaction<'_>, zone: u32) -> Result<Option<ZoneRow>, OpError> {
    let row = tx
        .query_opt(
            &format!("SELECT {ZONE_ROW_COLUMNS} FROM zone_epochs WHERE zone = $1 FOR UPDATE"),
            &[&i64::from(zone)],
        )
        .await?;
    Ok(row.as_ref().map(rows::zone_row).transpose()?)
}

/// A zone granted to a run at an epoch.
struct Holding {
    zone: u32,
    epoch: u64,
    run: NodeRun,
    attempt: u64,
}

/// Writes the new epoch and holder: updates the locked row, or inserts the first one.
/// Returns false when a racing activation inserted the row first (nothing written).
async fn write_holder(
    tx: &Transaction<'_>,
    holding: &Holding,
    row_exists: bool,
) -> Result<bool, OpError> {
    let sql = if row_exists {
        "UPDATE zone_epochs SET epoch = $2, owner = $3, holder_id = $4,
             holder_incarnation = $5, attempt = $6
         WHERE zone = $1"
    } else {
        "INSERT INTO zone_epochs (zone, epoch, owner, holder_id, holder_incarnation, attempt)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (zone) DO NOTHING"
    };
    let (id, incarnation) = run_params(holding.run);
    let written = tx
        .execute(
            sql,
            &[
                &i64::from(holding.zone),
                &rows::to_i64("epoch", holding.epoch)?,
                &holding.run.to_string(),
                &id,
                &incarnation,
                &to_bits(holding.attempt),
            ],
        )
        .await?;
    Ok(written == 1)
}

/// Clears `zone`'s holder if `node` holds it at `epoch`: the rule of
/// `cluster::may_release`, as one statement (and so atomic by itself).
pub(crate) async fn release_zone(
    client: &mut Client,
    zone: u32,
    node: NodeRun,
    epoch: u64,
) -> Result<bool, OpError> {
    // Stored epochs fit a BIGINT, so a larger one names no grant.
    let Ok(epoch) = i64::try_from(epoch) else {
        return Ok(false);
    };
    let (id, incarnation) = run_params(node);
    let released = client
        .execute(
            "UPDATE zone_epochs SET holder_id = NULL, holder_incarnation = NULL, attempt = NULL
             WHERE zone = $1 AND epoch = $2 AND holder_id = $3 AND holder_incarnation = $4",
            &[&i64::from(zone), &epoch, &id, &incarnation],
        )
        .await?;
    Ok(released == 1)
}

/// Lists the zones `node` holds, in zone order, through the holder index.
pub(crate) async fn zones_held_by(
    client: &mut Client,
    node: NodeRun,
) -> Result<HeldZones, OpError> {
    let (id, incarnation) = run_params(node);
    // One row past the limit tells "exactly at the limit" from "more".
    let fetch = i64::try_from(MAX_ZONES_PER_HOLDER_READ + 1).unwrap_or(i64::MAX);
    let found = client
        .query(
            "SELECT zone FROM zone_epochs WHERE holder_id = $1 AND holder_incarnation = $2
             ORDER BY zone LIMIT $3",
            &[&id, &incarnation, &fetch],
        )
        .await?;
    let zones = found
        .iter()
        .map(|row| rows::to_zone(rows::column(row, "zone")?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HeldZones::bounded(zones))
}

/// The run holding `zone` and the zone's epoch.
pub(crate) async fn zone_holder(
    client: &mut Client,
    zone: u32,
) -> Result<Option<(NodeRun, u64)>, OpError> {
    let row = client
        .query_opt(
            &format!("SELECT {ZONE_ROW_COLUMNS} FROM zone_epochs WHERE zone = $1"),
            &[&i64::from(zone)],
        )
        .await?;
    let Some(row) = row.as_ref().map(rows::zone_row).transpose()? else {
        return Ok(None);
    };
    Ok(row.holder.map(|holder| (holder.run, row.epoch)))
}

/// Claims `player` for `(node, session)`: the rule of `cluster::decide_claim`, its
/// lease-free part as the `WHERE` of an upsert, in a transaction that then reads the
/// refusing claim and its holder's lease and takes the claim over if that lease is
/// not live.
pub(crate) async fn claim_player(
    client: &mut Client,
    player: &str,
    node: NodeRun,
    session: u64,
    takeover: Option<NodeRun>,
) -> Result<PlayerClaim, OpError> {
    let tx = client.transaction().await?;
    // The run the upsert may replace besides `node`'s own claims: first the caller's
    // `takeover`, then a holder found without a live lease.
    let mut replaceable = takeover;
    // Every pass but the last ends in an answer, or meets a claim row that vanished
    // after refusing us, or finds the refusing holder's lease not live and names that
    // holder for the next pass. On PostgreSQL the refusing row stays locked by this
    // transaction (`ON CONFLICT DO UPDATE` locks it even when the `WHERE` is false),
    // so it neither vanishes nor changes: the pass after a takeover meets the same row,
    // now matching, and two passes always suffice. The third only bounds Postgres-wire
    // databases that lock less (one vanished row, then one takeover).
    for _pass in 0..3 {
        if upsert_claim(&tx, player, node, session, replaceable).await? {
            let record_version = player_version(&tx, player).await?;
            tx.commit().await?;
            return Ok(PlayerClaim::Claimed { record_version });
        }
        // Refused: the row that refused us is locked by this transaction until it ends.
        let Some(holder) = read_claim(&tx, player).await? else {
            continue;
        };
        let holder_live = holder_lease_live(&tx, holder.run).await?;
        match cluster::decide_claim(Some(holder), node, takeover, holder_live) {
            ClaimDecision::Claim => replaceable = Some(holder.run),
            ClaimDecision::HeldBy { node, session } => {
                tx.rollback().await?;
                return Ok(PlayerClaim::HeldBy { node, session });
            }
        }
    }
    Err(StoreError::Corrupt(format!(
        "player {player:?}'s claim kept changing although its row was locked"
    ))
    .into())
}

/// The end of a claim upsert: an existing claim is replaced only when it is the run
/// `($2, $3)`'s own or the replaceable run `($5, $6)`'s (NULLs there: none); the
/// claimed names are returned.
const CLAIM_CONFLICT: &str = "ON CONFLICT (player) DO UPDATE
         SET node_id = EXCLUDED.node_id, incarnation = EXCLUDED.incarnation,
             session = EXCLUDED.session
         WHERE (player_claims.node_id = $2 AND player_claims.incarnation = $3)
            OR (player_claims.node_id = $5 AND player_claims.incarnation = $6)
         RETURNING player";

/// Claims each of `players` for `node` where it has no claim or `node`'s or `from`'s:
/// one upsert of them all (one statement, so one transaction); whether each is
/// claimed now, in the order given.
pub(crate) async fn take_over_players(
    client: &mut Client,
    players: &[(String, u64)],
    node: NodeRun,
    from: NodeRun,
) -> Result<Vec<bool>, OpError> {
    let (id, incarnation) = run_params(node);
    let (from_id, from_incarnation) = run_params(from);
    let names: Vec<&str> = players.iter().map(|(name, _)| name.as_str()).collect();
    let sessions: Vec<i64> = players
        .iter()
        .map(|(_, session)| to_bits(*session))
        .collect();
    let statement = format!(
        "INSERT INTO player_claims (player, node_id, incarnation, session)
         SELECT claim.player, $2, $3, claim.session
         FROM UNNEST($1::TEXT[], $4::BIGINT[]) AS claim(player, session)
         {CLAIM_CONFLICT}"
    );
    let rows = client
        .query(
            &statement,
            &[
                &names,
                &id,
                &incarnation,
                &sessions,
                &from_id,
                &from_incarnation,
            ],
        )
        .await?;
    let mut taken = std::collections::HashSet::with_capacity(rows.len());
    for row in &rows {
        taken.insert(row.try_get::<_, String>(0)?);
    }
    Ok(names.iter().map(|name| taken.contains(*name)).collect())
}

/// The version of `player`'s record, read in `tx` (`None`: no record).
async fn player_version(tx: &Transaction<'_>, player: &str) -> Result<Option<u64>, OpError> {
    let row = tx
        .query_opt("SELECT version FROM players WHERE player = $1", &[&player])
        .await?;
    row.map(|row| {
        let version: i64 = row.try_get(0)?;
        u64::try_from(version).map_err(|_| {
            StoreError::Corrupt(format!("player {player:?} has version {version}")).into()
        })
    })
    .transpose()
}

/// The upsert of a claim: inserts it, or replaces the claim when it is `node`'s own
/// or `replaceable`'s. Returns whether the claim is now `(node, session)`; when not,
/// the conflicting row stays locked by `tx`.
async fn upsert_claim(
    tx: &Transaction<'_>,
    player: &str,
    node: NodeRun,
    session: u64,
    replaceable: Option<NodeRun>,
) -> Result<bool, OpError> {
    let (id, incarnation) = run_params(node);
    // No replaceable run: NULLs, which equal nothing.
    let (other_id, other_incarnation) = replaceable.map(run_params).unzip();
    let statement = format!(
        "INSERT INTO player_claims (player, node_id, incarnation, session)
         VALUES ($1, $2, $3, $4)
         {CLAIM_CONFLICT}"
    );
    let claimed = tx
        .query_opt(
            &statement,
            &[
                &player,
                &id,
                &incarnation,
                &to_bits(session),
                &other_id,
                &other_incarnation,
            ],
        )
        .await?;
    Ok(claimed.is_some())
}

/// Whether `run`'s lease is live by the store's clock. Locks the run's node id row
/// `FOR SHARE` first, so no renewal of that id is between its clock reading and its
/// commit while the clock and the lease are read (a renewal that committed meanwhile
/// is seen, one that starts later reads a later clock). A node id that never renewed
/// has no row to lock and no lease.
async fn holder_lease_live(tx: &Transaction<'_>, run: NodeRun) -> Result<bool, OpError> {
    hold_off_renewals(tx, run).await?;
    let now_ms = store_now(tx).await?;
    let lease = read_lease(tx, run).await?;
    Ok(lease.is_some_and(|lease| lease.is_live(now_ms)))
}

/// Locks `run`'s node id row `FOR SHARE` until the transaction ends. A renewal holds
/// that row `FOR UPDATE` from before it reads the clock until it commits, so after
/// this no renewal of the run is half done: a decision on its lease cannot be undone
/// by a renewal that read an earlier clock and commits later. Lock order is always
/// the claim or zone row first, then the node id row; renewals take no other row, so
/// this cannot deadlock.
async fn hold_off_renewals(tx: &Transaction<'_>, run: NodeRun) -> Result<(), OpError> {
    let (id, _) = run_params(run);
    tx.query_opt(
        "SELECT 1 FROM node_incarnations WHERE node_id = $1 FOR SHARE",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Reads `player`'s claim row.
async fn read_claim(
    client: &impl GenericClient,
    player: &str,
) -> Result<Option<cluster::ClaimRow>, OpError> {
    let row = client
        .query_opt(
            "SELECT node_id, incarnation, session FROM player_claims WHERE player = $1",
            &[&player],
        )
        .await?;
    Ok(row.as_ref().map(rows::claim_row).transpose()?)
}

/// Ends `player`'s claim if it is `(node, session)`: the rule of
/// `cluster::may_release_claim`, as one statement (and so atomic by itself).
pub(crate) async fn release_player(
    client: &mut Client,
    player: &str,
    node: NodeRun,
    session: u64,
) -> Result<bool, OpError> {
    let (id, incarnation) = run_params(node);
    let released = client
        .execute(
            "DELETE FROM player_claims
             WHERE player = $1 AND node_id = $2 AND incarnation = $3 AND session = $4",
            &[&player, &id, &incarnation, &to_bits(session)],
        )
        .await?;
    Ok(released == 1)
}

/// The claim on `player`: the run and its session.
pub(crate) async fn player_claim(
    client: &mut Client,
    player: &str,
) -> Result<Option<(NodeRun, u64)>, OpError> {
    let row = read_claim(&*client, player).await?;
    Ok(row.map(|row| (row.run, row.session)))
}

/// Records a heartbeat of `row.run` lasting `ttl_ms` from the database clock's now:
/// the rule of `cluster::heartbeat` on the node id's locked row, in one transaction.
pub(crate) async fn heartbeat_member(
    client: &mut Client,
    row: &MemberRow,
    ttl_ms: u64,
) -> Result<bool, OpError> {
    let tx = client.transaction().await?;
    let current = lock_member(&tx, row).await?;
    let now_ms = store_now(&tx).await?;
    let decision = cluster::heartbeat(now_ms, row, current.as_ref(), ttl_ms)?;
    let Heartbeat::Write {
        expires_unix_ms,
        joins,
    } = decision
    else {
        tx.rollback().await?;
        return Ok(false);
    };
    let (id, incarnation) = run_params(row.run);
    tx.execute(
        "UPDATE cluster_members
         SET incarnation = $2, expires_at_unix_ms = $3, node_addr = $4, client_addr = $5
         WHERE node_id = $1",
        &[
            &id,
            &incarnation,
            &rows::to_i64("member expiry", expires_unix_ms)?,
            &row.node_addr,
            &row.client_addr,
        ],
    )
    .await?;
    if joins {
        bump_member_generation(&tx).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Locks node id `row.run.id`'s membership row until the transaction ends and returns
/// it as it was, `None` when there was none: then the row locked is a placeholder this
/// transaction inserted (run out, and visible to no one before it commits), for the
/// heartbeat to overwrite.
async fn lock_member(
    tx: &Transaction<'_>,
    row: &MemberRow,
) -> Result<Option<StoredMember>, OpError> {
    let (id, incarnation) = run_params(row.run);
    // On PostgreSQL two passes always suffice: a placeholder insert that meets a row a
    // racing first heartbeat committed leaves that row locked by this transaction
    // (`ON CONFLICT DO UPDATE` locks the conflicting row even when its `WHERE` is
    // false), so the next pass reads it. The third only bounds Postgres-wire databases
    // that lock less (the row deleted by a leave in between, then inserted again).
    for _pass in 0..3 {
        let found = tx
            .query_opt(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM cluster_members WHERE node_id = $1 FOR UPDATE"
                ),
                &[&id],
            )
            .await?;
        if let Some(found) = found {
            return Ok(Some(rows::member_row(&found)?));
        }
        let inserted = tx
            .query_opt(
                "INSERT INTO cluster_members
                     (node_id, incarnation, expires_at_unix_ms, node_addr, client_addr)
                 VALUES ($1, $2, 0, $3, $4)
                 ON CONFLICT (node_id) DO UPDATE SET incarnation = cluster_members.incarnation
                 WHERE FALSE
                 RETURNING node_id",
                &[&id, &incarnation, &row.node_addr, &row.client_addr],
            )
            .await?;
        if inserted.is_some() {
            return Ok(None);
        }
    }
    Err(StoreError::Corrupt(format!(
        "node {:016x}'s member row kept changing although it was locked",
        row.run.id
    ))
    .into())
}

/// Bumps the membership generation, holding its row locked until the transaction
/// ends (a concurrent bump waits, then reads the committed value: none is lost).
async fn bump_member_generation(tx: &Transaction<'_>) -> Result<(), OpError> {
    let row = tx
        .query_opt(
            "SELECT generation FROM cluster_members_generation FOR UPDATE",
            &[],
        )
        .await?;
    let current = read_member_generation(row.as_ref())?;
    let next = cluster::next_member_generation(current)?;
    tx.execute(
        "UPDATE cluster_members_generation SET generation = $1",
        &[&rows::to_i64("member generation", next)?],
    )
    .await?;
    Ok(())
}

/// The generation from its row, which migration 5 created and nothing deletes.
fn read_member_generation(row: Option<&tokio_postgres::Row>) -> Result<u64, StoreError> {
    let row =
        row.ok_or_else(|| StoreError::Corrupt("the membership generation row is missing".into()))?;
    rows::to_u64("member generation", rows::column(row, "generation")?)
}

/// The rows live at the database clock's now and the generation, from one snapshot.
pub(crate) async fn member_table(client: &mut Client) -> Result<MemberTable, OpError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let now_ms = store_now(&tx).await?;
    let generation = tx
        .query_opt("SELECT generation FROM cluster_members_generation", &[])
        .await?;
    let generation = read_member_generation(generation.as_ref())?;
    // One row past the limit tells "exactly at the limit" from "over it". Ids are bit
    // patterns, so the rows are ordered in Rust.
    let fetch = i64::try_from(MAX_MEMBERS_PER_READ + 1).unwrap_or(i64::MAX);
    let found = tx
        .query(
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM cluster_members
                 WHERE expires_at_unix_ms > $1 LIMIT $2"
            ),
            &[&rows::to_i64("store time", now_ms)?, &fetch],
        )
        .await?;
    tx.commit().await?;
    let members = found
        .iter()
        .map(|row| rows::member_row(row).map(|stored| stored.row))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MemberTable::bounded(generation, members)?)
}

/// Removes `run`'s membership row if it is that exact run (the rule of
/// `cluster::may_leave` as the delete's `WHERE`), bumping the generation when it did.
pub(crate) async fn leave_member(client: &mut Client, run: NodeRun) -> Result<bool, OpError> {
    let tx = client.transaction().await?;
    let (id, incarnation) = run_params(run);
    let removed = tx
        .execute(
            "DELETE FROM cluster_members WHERE node_id = $1 AND incarnation = $2",
            &[&id, &incarnation],
        )
        .await?;
    if removed == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    bump_member_generation(&tx).await?;
    tx.commit().await?;
    Ok(true)
}
