//! The PostgreSQL backend, for clusters (and any Postgres-wire database: plain SQL,
//! no advisory locks, no LISTEN/NOTIFY, no extensions).
//!
//! Tables live in one schema (default `zonemesh`), selected with `search_path` on every
//! connection and created or migrated on connect. Connections are plain TCP (`NoTls`);
//! run the database on a private network or behind a TLS-terminating proxy.

mod cluster_ops;
mod ops;
mod pool;
mod rows;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

use self::pool::{OpFuture, Pool, PoolConfig};
use crate::cluster::{
    HeldZones, LeaseGrant, LeasedActivation, MemberRow, MemberTable, NodeRun, PlayerClaim,
};
use crate::store::{Counters, Op};
use crate::types::{
    ActionCommit, Activation, Checkpoint, DurableAction, PlayerRecord, SaveOutcome, ZoneRecord,
};
use crate::{Store, StoreError, StoreFuture, StoreStats, limits};

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "zonemesh";
/// The largest allowed connection pool.
pub const MAX_POOL_SIZE: usize = 64;

/// Options of [`PostgresStore::connect_with`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema holding the tables: lowercase ASCII letters, digits and `_`, not
    /// starting with a digit, at most 63 bytes. Created if missing.
    pub schema: String,
    /// Connections in the pool, 1 to [`MAX_POOL_SIZE`].
    pub pool_size: usize,
    /// Longest wait for a connection to open (TCP, startup and authentication).
    pub connect_timeout: Duration,
    /// Longest time one operation may take on its connection before it fails with
    /// [`StoreError::Timeout`] and the connection is dropped.
    pub op_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(30),
        }
    }
}

/// The PostgreSQL [`Store`].
#[derive(Debug)]
pub struct PostgresStore {
    pool: Pool,
    counters: Counters,
}

impl PostgresStore {
    /// Connects with default options and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects to `url` (`postgres://` or `postgresql://`), opens the first pooled
    /// connection and creates or migrates the schema. Fails with
    /// [`StoreError::InvalidSpec`] for a bad URL or option and
    /// [`StoreError::Unreachable`] when the database cannot be reached.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let config = parse_url(url)?;
        validate_options(&options)?;
        let settings = PoolConfig {
            target: redacted_target(&config),
            config: with_application_name(config),
            schema: options.schema,
            connect_timeout: options.connect_timeout,
            op_timeout: options.op_timeout,
        };
        let store = Self {
            pool: Pool::new(settings, options.pool_size),
            counters: Counters::default(),
        };
        let schema = store.pool.schema().to_owned();
        store
            .pool
            .run(move |client: &mut Client| -> OpFuture<'_, ()> {
                let schema = schema.clone();
                Box::pin(async move { schema::migrate(client, &schema).await })
            })
            .await?;
        Ok(store)
    }

    /// The schema this store works in.
    pub fn schema(&self) -> &str {
        self.pool.schema()
    }
}

/// Parses a Postgres URL, refusing key=value strings and other schemes so that the
/// spec's meaning is never guessed.
fn parse_url(url: &str) -> Result<Config, StoreError> {
    let invalid = |reason: String| StoreError::InvalidSpec {
        spec: "<postgres url>".into(),
        reason,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(
            "expected a postgres:// or postgresql:// URL".into(),
        ));
    }
    let config: Config = url
        .parse()
        .map_err(|error| invalid(format!("unparseable URL: {error}")))?;
    if config.get_hosts().is_empty() {
        return Err(invalid("the URL names no host".into()));
    }
    Ok(config)
}

/// Checks the pool size and schema name (the name is spliced into SQL, so only a
/// conservative identifier is accepted).
fn validate_options(options: &PostgresOptions) -> Result<(), StoreError> {
    if !(1..=MAX_POOL_SIZE).contains(&options.pool_size) {
        return Err(StoreError::InvalidInput(format!(
            "pool size {} is not within 1..={MAX_POOL_SIZE}",
            options.pool_size
        )));
    }
    if !is_plain_identifier(&options.schema) {
        return Err(StoreError::InvalidInput(format!(
            "schema name {:?} must be 1-63 lowercase letters, digits or '_', not starting with a digit",
            options.schema
        )));
    }
    Ok(())
}

/// Lowercase ASCII letters, digits and `_`, not starting with a digit, ≤ 63 bytes.
fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Names our connections in `pg_stat_activity` unless the URL already does.
fn with_application_name(mut config: Config) -> Config {
    if config.get_application_name().is_none() {
        config.application_name("zonemesh");
    }
    config
}

/// `host:port/dbname` of a config, without user or password, for errors and logs.
pub(crate) fn redacted_target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = config.get_ports().get(i).or(config.get_ports().first());
            port.map_or(name.clone(), |port| format!("{name}:{port}"))
        })
        .collect();
    format!("{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn activate_zone<'a>(&'a self, zone: u32, node: &'a str) -> StoreFuture<'a, Activation> {
        self.counters.counted(Op::Activate, async move {
            limits::validate_name("node name", node)?;
            let node = node.to_owned();
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, Activation> {
                    let node = node.clone();
                    Box::pin(async move { ops::activate(client, zone, &node).await })
                })
                .await
        })
    }

    fn checkpoint(
        &self,
        zone: u32,
        epoch: u64,
        checkpoint: Checkpoint,
    ) -> StoreFuture<'_, SaveOutcome> {
        self.counters.counted_save(Op::Checkpoint, async move {
            limits::validate_checkpoint(zone, &checkpoint)?;
            let checkpoint = Arc::new(checkpoint);
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, SaveOutcome> {
                    let checkpoint = Arc::clone(&checkpoint);
                    Box::pin(async move { ops::checkpoint(client, zone, epoch, &checkpoint).await })
                })
                .await
        })
    }

    fn save_players(
        &self,
        zone: u32,
        epoch: u64,
        players: Vec<PlayerRecord>,
    ) -> StoreFuture<'_, SaveOutcome> {
        self.counters.counted_save(Op::SavePlayers, async move {
            limits::validate_player_batch(zone, &players)?;
            let players = Arc::new(players);
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, SaveOutcome> {
                    let players = Arc::clone(&players);
                    Box::pin(async move { ops::save_players(client, zone, epoch, &players).await })
                })
                .await
        })
    }

    fn commit_action(
        &self,
        zone: u32,
        epoch: u64,
        action: DurableAction,
    ) -> StoreFuture<'_, ActionCommit> {
        self.counters.counted(Op::CommitAction, async move {
            limits::validate_action(zone, &action)?;
            let action = Arc::new(action);
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, ActionCommit> {
                    let action = Arc::clone(&action);
                    Box::pin(async move { ops::commit_action(client, zone, epoch, &action).await })
                })
                .await
        })
    }

    fn load_zone(&self, zone: u32) -> StoreFuture<'_, Option<ZoneRecord>> {
        self.counters.counted(Op::LoadZone, async move {
            self.pool
                .run(|client: &mut Client| -> OpFuture<'_, Option<ZoneRecord>> {
                    Box::pin(ops::load_zone(client, zone))
                })
                .await
        })
    }

    fn load_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<PlayerRecord>> {
        self.counters.counted(Op::LoadPlayer, async move {
            // Owned per attempt: a retried attempt's future may not borrow the caller.
            let player = player.to_owned();
            self.pool
                .run(
                    move |client: &mut Client| -> OpFuture<'_, Option<PlayerRecord>> {
                        let player = player.clone();
                        Box::pin(async move { ops::load_player(client, &player).await })
                    },
                )
                .await
        })
    }

    fn actions_for_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Vec<DurableAction>> {
        self.counters.counted(Op::ActionsForPlayer, async move {
            // Owned per attempt: a retried attempt's future may not borrow the caller.
            let player = player.to_owned();
            self.pool
                .run(
                    move |client: &mut Client| -> OpFuture<'_, Vec<DurableAction>> {
                        let player = player.clone();
                        Box::pin(async move { ops::actions_for_player(client, &player).await })
                    },
                )
                .await
        })
    }

    fn zone_epoch(&self, zone: u32) -> StoreFuture<'_, Option<u64>> {
        self.counters.counted(Op::ZoneEpoch, async move {
            self.pool
                .run(|client: &mut Client| -> OpFuture<'_, Option<u64>> {
                    Box::pin(ops::zone_epoch(client, zone))
                })
                .await
        })
    }

    fn renew_lease(
        &self,
        node: NodeRun,
        duration: Duration,
    ) -> StoreFuture<'_, Option<LeaseGrant>> {
        self.counters.counted(Op::RenewLease, async move {
            let duration_ms = limits::validate_lease(duration)?;
            self.pool
                .run(
                    move |client: &mut Client| -> OpFuture<'_, Option<LeaseGrant>> {
                        Box::pin(cluster_ops::renew_lease(client, node, duration_ms))
                    },
                )
                .await
        })
    }

    fn activate_zone_leased(
        &self,
        zone: u32,
        node: NodeRun,
        attempt: u64,
    ) -> StoreFuture<'_, LeasedActivation> {
        self.counters.counted(Op::ActivateLeased, async move {
            self.pool
                .run(
                    move |client: &mut Client| -> OpFuture<'_, LeasedActivation> {
                        Box::pin(cluster_ops::activate_leased(client, zone, node, attempt))
                    },
                )
                .await
        })
    }

    fn release_zone(&self, zone: u32, node: NodeRun, epoch: u64) -> StoreFuture<'_, bool> {
        self.counters.counted(Op::ReleaseZone, async move {
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, bool> {
                    Box::pin(cluster_ops::release_zone(client, zone, node, epoch))
                })
                .await
        })
    }

    fn zones_held_by(&self, node: NodeRun) -> StoreFuture<'_, HeldZones> {
        self.counters.counted(Op::ZonesHeldBy, async move {
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, HeldZones> {
                    Box::pin(cluster_ops::zones_held_by(client, node))
                })
                .await
        })
    }

    fn zone_holder(&self, zone: u32) -> StoreFuture<'_, Option<(NodeRun, u64)>> {
        self.counters.counted(Op::ZoneHolder, async move {
            self.pool
                .run(
                    move |client: &mut Client| -> OpFuture<'_, Option<(NodeRun, u64)>> {
                        Box::pin(cluster_ops::zone_holder(client, zone))
                    },
                )
                .await
        })
    }

    fn claim_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
        takeover: Option<NodeRun>,
    ) -> StoreFuture<'a, PlayerClaim> {
        self.counters.counted(Op::ClaimPlayer, async move {
            limits::validate_name("player name", player)?;
            // Owned per attempt: a retried attempt's future may not borrow the caller.
            let player = player.to_owned();
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, PlayerClaim> {
                    let player = player.clone();
                    Box::pin(async move {
                        cluster_ops::claim_player(client, &player, node, session, takeover).await
                    })
                })
                .await
        })
    }

    fn take_over_players<'a>(
        &'a self,
        players: &'a [(String, u64)],
        node: NodeRun,
        from: NodeRun,
    ) -> StoreFuture<'a, Vec<bool>> {
        self.counters.counted(Op::TakeOverPlayers, async move {
            limits::validate_takeover(players)?;
            // Owned per attempt: a retried attempt's future may not borrow the caller.
            let players = players.to_vec();
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, Vec<bool>> {
                    let players = players.clone();
                    Box::pin(async move {
                        cluster_ops::take_over_players(client, &players, node, from).await
                    })
                })
                .await
        })
    }

    fn release_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
    ) -> StoreFuture<'a, bool> {
        self.counters.counted(Op::ReleasePlayer, async move {
            limits::validate_name("player name", player)?;
            // Owned per attempt: a retried attempt's future may not borrow the caller.
            let player = player.to_owned();
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, bool> {
                    let player = player.clone();
                    Box::pin(async move {
                        cluster_ops::release_player(client, &player, node, session).await
                    })
                })
                .await
        })
    }

    fn player_claim<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<(NodeRun, u64)>> {
        self.counters.counted(Op::PlayerClaim, async move {
            limits::validate_name("player name", player)?;
            // Owned per attempt: a retried attempt's future may not borrow the caller.
            let player = player.to_owned();
            self.pool
                .run(
                    move |client: &mut Client| -> OpFuture<'_, Option<(NodeRun, u64)>> {
                        let player = player.clone();
                        Box::pin(async move { cluster_ops::player_claim(client, &player).await })
                    },
                )
                .await
        })
    }

    fn heartbeat_member<'a>(&'a self, row: &'a MemberRow, ttl: Duration) -> StoreFuture<'a, bool> {
        self.counters.counted(Op::HeartbeatMember, async move {
            limits::validate_member(row)?;
            let ttl_ms = limits::validate_lease(ttl)?;
            // Owned per attempt: a retried attempt's future may not borrow the caller.
            let row = Arc::new(row.clone());
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, bool> {
                    let row = Arc::clone(&row);
                    Box::pin(
                        async move { cluster_ops::heartbeat_member(client, &row, ttl_ms).await },
                    )
                })
                .await
        })
    }

    fn member_table(&self) -> StoreFuture<'_, MemberTable> {
        self.counters.counted(Op::MemberTable, async move {
            self.pool
                .run(|client: &mut Client| -> OpFuture<'_, MemberTable> {
                    Box::pin(cluster_ops::member_table(client))
                })
                .await
        })
    }

    fn leave_member(&self, run: NodeRun) -> StoreFuture<'_, bool> {
        self.counters.counted(Op::LeaveMember, async move {
            self.pool
                .run(move |client: &mut Client| -> OpFuture<'_, bool> {
                    Box::pin(cluster_ops::leave_member(client, run))
                })
                .await
        })
    }

    fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_postgres_urls_with_a_host() {
        assert!(parse_url("postgres://u@127.0.0.1:5432/db").is_ok());
        assert!(parse_url("postgresql://h/db").is_ok());
        assert!(matches!(
            parse_url("host=h dbname=db"),
            Err(StoreError::InvalidSpec { .. })
        ));
        assert!(matches!(
            parse_url("postgres://h:notaport/db"),
            Err(StoreError::InvalidSpec { .. })
        ));
    }

    #[test]
    fn targets_hide_credentials() {
        let config = parse_url("postgres://user:hunter2@db.example:6543/game").expect("parses");
        assert_eq!(redacted_target(&config), "db.example:6543/game");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(is_plain_identifier("zonemesh"));
        assert!(is_plain_identifier("zm_test_0a9"));
        assert!(!is_plain_identifier(""));
        assert!(!is_plain_identifier("9lives"));
        assert!(!is_plain_identifier("Zonemesh"));
        assert!(!is_plain_identifier("a\"; DROP TABLE x; --"));
        assert!(!is_plain_identifier(&"a".repeat(64)));
        let options = PostgresOptions {
            pool_size: 0,
            ..PostgresOptions::default()
        };
        assert!(matches!(
            validate_options(&options),
            Err(StoreError::InvalidInput(_))
        ));
    }
}
