//! Persistence and zone lifecycles: zones load from the store on demand (or at
//! start-up), save checkpoints off the tick, and hand their final state over on
//! shutdown; joining players get their saved record back.
//!
//! - [`lifecycle`]: sans-IO phases of each zone (one load at a time per zone);
//! - [`directory`]: that core behind a lock, shared by connections and zones;
//! - [`host`]: the async driver (loads, preloading, final saves);
//! - [`ownership`]: who grants the node a zone (the store alone, or the cluster);
//! - [`writer`]: the bounded, coalescing checkpoint queue and its writer task;
//! - [`players`]: single-flight player record loads;
//! - [`version`]: the versions that order a player's records across sessions;
//! - [`state`]: the saved formats and capture/restore against an ECS world.

pub mod directory;
pub mod host;
pub mod lifecycle;
pub mod ownership;
pub mod players;
pub mod state;
pub mod version;
pub mod writer;

pub use directory::ZoneDirectory;
pub use host::{KeepWarm, ZoneActivation, ZoneHost};
pub use ownership::{StoreOwnership, ZoneOwnership};
pub use version::RecordVersions;
pub use writer::{CheckpointJob, CheckpointWriter};
