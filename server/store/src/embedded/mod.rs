//! The embedded backend: one redb file in the data directory, so a single node runs
//! with nothing else installed.
//!
//! redb is synchronous, so every transaction runs on tokio's blocking pool, never on
//! the async threads. A semaphore bounds how many run (or wait) there at once: tokio's
//! blocking queue itself is unbounded, and redb serialises writers anyway. A call whose
//! future is dropped still finishes its transaction: a write may commit after its
//! caller stopped waiting.

mod cluster_ops;
mod codec;
mod ops;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{Builder, Database, DatabaseError, StorageError};
use tokio::sync::Semaphore;

use crate::cluster::{
    HeldZones, LeaseGrant, LeasedActivation, MemberRow, MemberTable, NodeRun, PlayerClaim,
};
use crate::store::{Counters, Op};
use crate::types::{
    ActionCommit, Activation, Checkpoint, DurableAction, PlayerRecord, SaveOutcome, ZoneRecord,
};
use crate::{Store, StoreError, StoreFuture, StoreStats, limits};

/// Options of [`RedbStore::open_with`].
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// Page cache size in bytes (redb's own default is 1 GiB; a game node needs far less).
    pub cache_size_bytes: usize,
    /// Verify every page checksum when opening, so a damaged file fails to open with
    /// [`StoreError::Corrupt`] instead of being trusted. Costs one read of the file.
    pub check_integrity_on_open: bool,
    /// Most transactions running or queued on the blocking pool at once; further calls
    /// wait (asynchronously) for a slot.
    pub max_blocking_ops: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_size_bytes: 64 * 1024 * 1024,
            check_integrity_on_open: true,
            max_blocking_ops: 8,
        }
    }
}

/// The embedded [`Store`]: a redb database file (or memory, for tests).
pub struct RedbStore {
    db: Arc<Database>,
    /// The file, `None` in memory; for errors and `Debug`.
    path: Option<PathBuf>,
    /// Bounds the transactions handed to the blocking pool.
    permits: Arc<Semaphore>,
    counters: Counters,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the database file at `path` with default options. Blocking:
    /// from async code, call it through `spawn_blocking` (as [`open_store`](crate::open_store) does).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &RedbOptions::default())
    }

    /// Opens (or creates) the database file at `path`. Blocking.
    pub fn open_with(path: impl AsRef<Path>, options: &RedbOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = builder(options)
            .create(&path)
            .map_err(|error| open_error(&path, error))?;
        Self::init(db, Some(path), options)
    }

    /// A fresh database held in memory: for tests and demos that need no durability.
    pub fn in_memory() -> Result<Self, StoreError> {
        let options = RedbOptions {
            check_integrity_on_open: false,
            ..RedbOptions::default()
        };
        let db = builder(&options)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(ops::from_redb)?;
        Self::init(db, None, &options)
    }

    fn init(
        db: Database,
        path: Option<PathBuf>,
        options: &RedbOptions,
    ) -> Result<Self, StoreError> {
        ops::init(&db)?;
        Ok(Self {
            db: Arc::new(db),
            path,
            permits: Arc::new(Semaphore::new(options.max_blocking_ops.max(1))),
            counters: Counters::default(),
        })
    }

    /// The database file, `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `job` on the blocking pool once a slot is free.
    async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::TaskFailed("store semaphore closed".into()))?;
        let db = Arc::clone(&self.db);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job(&db)
        });
        task.await
            .map_err(|error| StoreError::TaskFailed(error.to_string()))?
    }
}

/// A redb builder from our options.
fn builder(options: &RedbOptions) -> Builder {
    let mut builder = Builder::new();
    builder
        .set_cache_size(options.cache_size_bytes)
        .set_check_integrity_on_open(options.check_integrity_on_open);
    builder
}

/// Maps an error of opening `path` to the clearest [`StoreError`].
fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
            path: path.to_path_buf(),
        },
        // redb reports a file that is not a database (bad magic number) as invalid data.
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Corrupt(format!("{}: {source}", path.display()))
        }
        DatabaseError::Storage(StorageError::Io(source)) => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        DatabaseError::Storage(StorageError::Corrupted(detail)) => {
            StoreError::Corrupt(format!("{}: {detail}", path.display()))
        }
        other => StoreError::Database {
            source: format!("opening {}: {other}", path.display()).into(),
        },
    }
}

impl Store for RedbStore {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn activate_zone<'a>(&'a self, zone: u32, node: &'a str) -> StoreFuture<'a, Activation> {
        let node = node.to_owned();
        self.counters.counted(Op::Activate, async move {
            limits::validate_name("node name", &node)?;
            self.run(move |db| ops::activate(db, zone, &node)).await
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
            self.run(move |db| ops::checkpoint(db, zone, epoch, checkpoint))
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
            self.run(move |db| ops::save_players(db, zone, epoch, &players))
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
            self.run(move |db| ops::commit_action(db, zone, epoch, &action))
                .await
        })
    }

    fn load_zone(&self, zone: u32) -> StoreFuture<'_, Option<ZoneRecord>> {
        self.counters.counted(Op::LoadZone, async move {
            self.run(move |db| ops::load_zone(db, zone)).await
        })
    }

    fn load_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<PlayerRecord>> {
        let player = player.to_owned();
        self.counters.counted(Op::LoadPlayer, async move {
            self.run(move |db| ops::load_player(db, &player)).await
        })
    }

    fn actions_for_player<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Vec<DurableAction>> {
        let player = player.to_owned();
        self.counters.counted(Op::ActionsForPlayer, async move {
            self.run(move |db| ops::actions_for_player(db, &player))
                .await
        })
    }

    fn zone_epoch(&self, zone: u32) -> StoreFuture<'_, Option<u64>> {
        self.counters.counted(Op::ZoneEpoch, async move {
            self.run(move |db| ops::zone_epoch(db, zone)).await
        })
    }

    fn renew_lease(
        &self,
        node: NodeRun,
        duration: Duration,
    ) -> StoreFuture<'_, Option<LeaseGrant>> {
        self.counters.counted(Op::RenewLease, async move {
            let duration_ms = limits::validate_lease(duration)?;
            self.run(move |db| cluster_ops::renew_lease(db, node, duration_ms))
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
            self.run(move |db| cluster_ops::activate_leased(db, zone, node, attempt))
                .await
        })
    }

    fn release_zone(&self, zone: u32, node: NodeRun, epoch: u64) -> StoreFuture<'_, bool> {
        self.counters.counted(Op::ReleaseZone, async move {
            self.run(move |db| cluster_ops::release_zone(db, zone, node, epoch))
                .await
        })
    }

    fn zones_held_by(&self, node: NodeRun) -> StoreFuture<'_, HeldZones> {
        self.counters.counted(Op::ZonesHeldBy, async move {
            self.run(move |db| cluster_ops::zones_held_by(db, node))
                .await
        })
    }

    fn zone_holder(&self, zone: u32) -> StoreFuture<'_, Option<(NodeRun, u64)>> {
        self.counters.counted(Op::ZoneHolder, async move {
            self.run(move |db| cluster_ops::zone_holder(db, zone)).await
        })
    }

    fn claim_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
        takeover: Option<NodeRun>,
    ) -> StoreFuture<'a, PlayerClaim> {
        let player = player.to_owned();
        self.counters.counted(Op::ClaimPlayer, async move {
            limits::validate_name("player name", &player)?;
            self.run(move |db| cluster_ops::claim_player(db, &player, node, session, takeover))
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
            let players = players.to_vec();
            self.run(move |db| cluster_ops::take_over_players(db, &players, node, from))
                .await
        })
    }

    fn release_player<'a>(
        &'a self,
        player: &'a str,
        node: NodeRun,
        session: u64,
    ) -> StoreFuture<'a, bool> {
        let player = player.to_owned();
        self.counters.counted(Op::ReleasePlayer, async move {
            limits::validate_name("player name", &player)?;
            self.run(move |db| cluster_ops::release_player(db, &player, node, session))
                .await
        })
    }

    fn player_claim<'a>(&'a self, player: &'a str) -> StoreFuture<'a, Option<(NodeRun, u64)>> {
        let player = player.to_owned();
        self.counters.counted(Op::PlayerClaim, async move {
            limits::validate_name("player name", &player)?;
            self.run(move |db| cluster_ops::player_claim(db, &player))
                .await
        })
    }

    fn heartbeat_member<'a>(&'a self, row: &'a MemberRow, ttl: Duration) -> StoreFuture<'a, bool> {
        let row = row.clone();
        self.counters.counted(Op::HeartbeatMember, async move {
            limits::validate_member(&row)?;
            let ttl_ms = limits::validate_lease(ttl)?;
            self.run(move |db| cluster_ops::heartbeat_member(db, &row, ttl_ms))
                .await
        })
    }

    fn member_table(&self) -> StoreFuture<'_, MemberTable> {
        self.counters.counted(Op::MemberTable, async move {
            self.run(cluster_ops::member_table).await
        })
    }

    fn leave_member(&self, run: NodeRun) -> StoreFuture<'_, bool> {
        self.counters.counted(Op::LeaveMember, async move {
            self.run(move |db| cluster_ops::leave_member(db, run)).await
        })
    }

    fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }
}
