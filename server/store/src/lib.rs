//! ZoneMesh's durable store: the only durable state of a deployment.
//!
//! Zones keep their state in memory and persist it in the background through a
//! [`Store`]: zone checkpoints ([`Store::checkpoint`]), player records
//! ([`Store::save_players`]) and durable actions ([`Store::commit_action`], idempotent
//! by [`ActionId`]). Every write is fenced by the zone's epoch, which
//! [`Store::activate_zone`] bumps by compare-and-set, so a zone's stale owner can never
//! overwrite a newer one ([`StoreError::StaleEpoch`]). Player records carry a
//! version and a write replaces only an older one (reported in [`SaveOutcome`]), so
//! a stale node can never overwrite a player's newer progress either.
//!
//! For clusters the store also keeps node leases by run and which run holds each zone
//! ([`Store::renew_lease`], [`Store::activate_zone_leased`]): a zone is granted only
//! when no other run holds it under a live lease, decided by the store's own clock.
//! Player claims ([`Store::claim_player`]) keep one session per player across the
//! cluster. The membership table ([`Store::heartbeat_member`], [`Store::member_table`])
//! is one consistent view of a cluster's nodes with a generation, for deployments that
//! want it instead of gossip.
//!
//! Backends:
//! - [`RedbStore`]: the embedded default, one redb file in the data directory;
//! - [`PostgresStore`]: PostgreSQL or any Postgres-wire database, for clusters.
//!
//! [`open_store`] picks one from the `--store` setting. [`SlowStore`] adds latency to
//! any store for tests and demos of slow loads. Every input is bounded ([`limits`]).
//!
//! What a crash can lose is decided by when the server calls the store: zone state and
//! the players in it since the last successful [`Store::checkpoint`], players since
//! their last save, and no acknowledged durable action (acknowledge only after
//! [`Store::commit_action`] returned `Ok`).

mod cluster;
mod embedded;
mod error;
mod fence;
pub mod limits;
mod postgres;
mod slow;
mod spec;
mod store;
mod types;

pub use cluster::{
    HeldZones, LeaseGrant, LeasedActivation, MemberRow, MemberTable, NodeRun, PlayerClaim,
};
pub use embedded::{RedbOptions, RedbStore};
pub use error::{BoxError, StoreError};
pub use postgres::{DEFAULT_SCHEMA, MAX_POOL_SIZE, PostgresOptions, PostgresStore};
pub use slow::SlowStore;
pub use spec::{EMBEDDED_FILE_NAME, StoreSpec, embedded_path, open_store, open_store_with};
pub use store::{Store, StoreFuture, StoreStats};
pub use types::{
    ActionCommit, ActionId, Activation, Checkpoint, DurableAction, PlayerRecord, SaveOutcome,
    ZoneRecord, ZoneSnapshot,
};
