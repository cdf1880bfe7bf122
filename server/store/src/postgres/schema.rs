//! The PostgreSQL schema and its migrations.
//!
//! Each migration is idempotent DDL (`IF NOT EXISTS`) plus a row in
//! `zonemesh_schema_version`. A migration runs in a transaction that first claims its
//! version row with `INSERT ... ON CONFLICT DO NOTHING`: when two nodes start at once,
//! the second blocks on the first's row until it commits, then finds the version taken
//! and skips. No advisory locks or extensions, so any Postgres-wire database works.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::pool::OpError;
use crate::StoreError;

/// The newest schema version this build knows.
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// Version 1: epochs, zone state, players and durable actions.
const V1: &str = "
CREATE TABLE IF NOT EXISTS zone_epochs (
    zone BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    owner TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS zone_state (
    zone BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    tick BIGINT NOT NULL,
    saved_at_unix_ms BIGINT NOT NULL,
    state BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS players (
    player TEXT PRIMARY KEY,
    zone BIGINT NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    data BYTEA NOT NULL,
    updated_at_unix_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS actions (
    id BYTEA PRIMARY KEY,
    player TEXT NOT NULL,
    zone BIGINT NOT NULL,
    kind INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    epoch BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_player ON actions (player, id);
";

/// Version 2: player records carry a version; rows written before it read as 0, so
/// any versioned write replaces them.
const V2: &str = "
ALTER TABLE players ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
";

/// Version 3: the cluster contract. `node_incarnations` keeps the newest incarnation
/// of each node id (its row is also the lock that serializes the id's renewals);
/// `node_leases` keeps one lease per run; `zone_epochs` gains the holding run and its
/// attempt (NULL together: rows from before read as held by no run). Node ids,
/// incarnations and attempts are `u64` bit patterns (see `rows::to_bits`); lease
/// expiries are milliseconds since the Unix epoch by the database's clock.
const V3: &str = "
CREATE TABLE IF NOT EXISTS node_incarnations (
    node_id BIGINT PRIMARY KEY,
    incarnation BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS node_leases (
    node_id BIGINT NOT NULL,
    incarnation BIGINT NOT NULL,
    expires_at_unix_ms BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (node_id, incarnation)
);
ALTER TABLE zone_epochs ADD COLUMN IF NOT EXISTS holder_id BIGINT;
ALTER TABLE zone_epochs ADD COLUMN IF NOT EXISTS holder_incarnation BIGINT;
ALTER TABLE zone_epochs ADD COLUMN IF NOT EXISTS attempt BIGINT;
CREATE INDEX IF NOT EXISTS zones_by_holder
    ON zone_epochs (holder_id, holder_incarnation, zone);
";

/// Version 4: player claims, one row per claimed player naming the run and session
/// holding it (no row: claimed by no one). Node ids, incarnations and session ids are
/// `u64` bit patterns like those of version 3.
const V4: &str = "
CREATE TABLE IF NOT EXISTS player_claims (
    player TEXT PRIMARY KEY,
    node_id BIGINT NOT NULL,
    incarnation BIGINT NOT NULL,
    session BIGINT NOT NULL
);
";

/// Version 5: the membership table, one row per node id naming its run, when its
/// heartbeat runs out (milliseconds since the Unix epoch by the database's clock) and
/// its two addresses; and its generation, in a table of exactly one row (seeded at 0
/// here, so a heartbeat always finds the row to lock). Node ids and incarnations are
/// `u64` bit patterns like those of version 3.
const V5: &str = "
CREATE TABLE IF NOT EXISTS cluster_members (
    node_id BIGINT PRIMARY KEY,
    incarnation BIGINT NOT NULL,
    expires_at_unix_ms BIGINT NOT NULL,
    node_addr TEXT NOT NULL,
    client_addr TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_members_generation (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    generation BIGINT NOT NULL
);
INSERT INTO cluster_members_generation (singleton, generation) VALUES (TRUE, 0)
    ON CONFLICT (singleton) DO NOTHING;
";

/// Every migration, in order.
const MIGRATIONS: &[(i64, &str)] = &[(1, V1), (2, V2), (3, V3), (4, V4), (5, V5)];

/// Attempts of the whole migration when a concurrent migrator races our DDL.
const MAX_ATTEMPTS: u32 = 3;

/// Brings `schema` up to [`SCHEMA_VERSION`], retrying races with concurrent migrators.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<(), OpError> {
    let mut attempt = 1;
    loop {
        match migrate_once(client, schema).await {
            Err(OpError::Pg(error)) if attempt < MAX_ATTEMPTS && is_ddl_race(&error) => {
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// One pass: create the schema and version table, then apply missing migrations.
async fn migrate_once(client: &mut Client, schema: &str) -> Result<(), OpError> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS zonemesh_schema_version (version BIGINT PRIMARY KEY);"
        ))
        .await?;
    let row = client
        .query_one(
            "SELECT max(version) AS version FROM zonemesh_schema_version",
            &[],
        )
        .await?;
    let found: Option<i64> = super::rows::column(&row, "version")?;
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: super::rows::to_u64("schema version", found)?,
            supported: super::rows::to_u64("schema version", SCHEMA_VERSION)?,
        }
        .into());
    }
    for (version, ddl) in MIGRATIONS.iter().filter(|(version, _)| *version > found) {
        apply(client, *version, ddl).await?;
    }
    Ok(())
}

/// Applies one migration unless a concurrent migrator already has.
async fn apply(client: &mut Client, version: i64, ddl: &str) -> Result<(), OpError> {
    let tx = client.transaction().await?;
    let claimed = tx
        .execute(
            "INSERT INTO zonemesh_schema_version (version) VALUES ($1)
             ON CONFLICT (version) DO NOTHING",
            &[&version],
        )
        .await?;
    if claimed == 1 {
        tx.batch_execute(ddl).await?;
        tracing::info!(version, "applied store schema migration");
    }
    tx.commit().await?;
    Ok(())
}

/// Errors that concurrent `CREATE ... IF NOT EXISTS` statements can raise against each
/// other (they check the catalog before taking locks).
fn is_ddl_race(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::DUPLICATE_SCHEMA
            || *code == SqlState::DUPLICATE_TABLE
            || *code == SqlState::DUPLICATE_OBJECT
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_end_at_the_schema_version() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(version, _)| *version).collect();
        assert!(versions.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(versions.last(), Some(&SCHEMA_VERSION));
        for (_, ddl) in MIGRATIONS {
            // Idempotent DDL only: every CREATE and added column must be guarded.
            assert_eq!(
                ddl.matches("CREATE").count() + ddl.matches("ADD COLUMN").count(),
                ddl.matches("IF NOT EXISTS").count()
            );
        }
    }
}
