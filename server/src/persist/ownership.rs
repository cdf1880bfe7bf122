//! Who grants this node a zone. On a single node the store does, by bumping the
//! zone's epoch ([`StoreOwnership`]); in a cluster the cluster's leases and directory
//! do (`crate::cluster::runtime`), and a node may only load the zones the cluster has
//! activated for it. The host asks when it loads a zone and says when the zone left.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use zonemesh_shared::ids::ZoneId;
use zonemesh_store::{Activation, Store};

/// A future of an ownership call.
pub type OwnershipFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, AcquireError>> + Send + 'a>>;

/// Why a zone could not be taken here.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// Another node serves the zone, or its activation here is still under way: not a
    /// failure, the zone just does not load here now.
    #[error("zone not granted to this node: {0}")]
    NotGranted(String),
    /// The store failed or the saved state could not be read.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Grants zones to this node.
pub trait ZoneOwnership: Send + Sync + fmt::Debug {
    /// Takes `zone` for this node: its epoch and saved state.
    fn acquire(&self, zone: ZoneId) -> OwnershipFuture<'_, Activation>;

    /// Whether this node still holds `zone` at `epoch` (a grant can be withdrawn
    /// while the zone is being built).
    fn holds(&self, zone: ZoneId, epoch: u64) -> bool;

    /// `zone` left memory here: its final checkpoint is written, or it was lost to
    /// another node.
    fn released(&self, zone: ZoneId);
}

/// The single-node grant: the store alone, each activation taking the next epoch.
#[derive(Debug)]
pub struct StoreOwnership {
    store: Arc<dyn Store>,
    node_name: String,
}

impl StoreOwnership {
    /// Activations in `store`, recorded under `node_name` (for people reading it).
    pub fn new(store: Arc<dyn Store>, node_name: String) -> Self {
        Self { store, node_name }
    }
}

impl ZoneOwnership for StoreOwnership {
    fn acquire(&self, zone: ZoneId) -> OwnershipFuture<'_, Activation> {
        Box::pin(async move {
            let activation = self
                .store
                .activate_zone(zone.0, &self.node_name)
                .await
                .map_err(anyhow::Error::from)?;
            Ok(activation)
        })
    }

    /// Only another activation takes a zone away, and on a single node there is none
    /// while the zone is in memory.
    fn holds(&self, _zone: ZoneId, _epoch: u64) -> bool {
        true
    }

    /// Nothing to tell: the next activation bumps the epoch anyway.
    fn released(&self, _zone: ZoneId) {}
}
