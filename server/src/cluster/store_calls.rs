//! The node core's store calls, carried out on the real store ([`Store`]'s cluster
//! operations). The saved state an activation returns is kept here until the zone
//! runtime takes it, so loading a newly held zone costs no second read.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zonemesh_cluster::ZoneId;
use zonemesh_cluster::msg::{LeaseGrant, StoreCall, StoreReply};
use zonemesh_shared::node::NodeRef;
use zonemesh_store::{Activation, LeasedActivation, MemberRow, NodeRun, Store};

use super::driver::{StoreCalls, TableReply};
use zonemesh_cluster::membership::Member;
use zonemesh_cluster::membership::table::TableCall;

/// Activations kept for the runtime at most; past it the state is not kept and the
/// runtime reads it from the store when it loads the zone.
pub const MAX_KEPT_ACTIVATIONS: usize = 65_536;

/// [`StoreCalls`] on a real store.
#[derive(Debug, Clone)]
pub struct StoreAdapter {
    store: Arc<dyn Store>,
    lease: Duration,
    kept: Arc<Mutex<HashMap<ZoneId, Activation>>>,
}

impl StoreAdapter {
    /// Calls `store`, asking for leases of `lease`.
    pub fn new(store: Arc<dyn Store>, lease: Duration) -> Self {
        Self {
            store,
            lease,
            kept: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The saved state of `zone`'s latest activation here, if not taken yet.
    pub fn take_activation(&self, zone: ZoneId) -> Option<Activation> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&zone)
    }

    fn keep(&self, zone: ZoneId, activation: Activation) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < MAX_KEPT_ACTIVATIONS || kept.contains_key(&zone) {
            kept.insert(zone, activation);
        }
    }
}

/// The store's name of a node run.
pub(crate) fn store_run(node: NodeRef) -> NodeRun {
    NodeRun::new(node.id.0, node.incarnation.0)
}

fn node_ref(run: NodeRun) -> NodeRef {
    NodeRef::new(run.id, run.incarnation)
}

impl StoreCalls for StoreAdapter {
    fn table_call(
        &self,
        me: Member,
        call: TableCall,
    ) -> Pin<Box<dyn Future<Output = TableReply> + Send>> {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            let reply = table_call(store.as_ref(), me, call).await;
            reply.unwrap_or_else(|e| {
                tracing::warn!(?call, "membership table call failed: {e}");
                TableReply::failed(call)
            })
        })
    }

    fn call(
        &self,
        node: NodeRef,
        call: StoreCall,
    ) -> Pin<Box<dyn Future<Output = StoreReply> + Send>> {
        let adapter = self.clone();
        Box::pin(async move {
            let reply = adapter.carry_out(node, call).await;
            reply.unwrap_or_else(|e| {
                tracing::warn!(%node, ?call, "store call failed: {e}");
                StoreReply::Unavailable { call }
            })
        })
    }
}

/// Carries out a membership-table call on the store.
async fn table_call(
    store: &dyn Store,
    me: Member,
    call: TableCall,
) -> Result<TableReply, zonemesh_store::StoreError> {
    Ok(match call {
        TableCall::Heartbeat { ttl_ms } => {
            let row = MemberRow {
                run: store_run(me.node),
                node_addr: me.addr.to_string(),
                client_addr: me.client_addr.to_string(),
            };
            let written = store
                .heartbeat_member(&row, Duration::from_millis(ttl_ms))
                .await?;
            TableReply::Heartbeat(Some(written))
        }
        TableCall::Read => {
            let table = store.member_table().await?;
            let members = table.members.iter().filter_map(member_of).collect();
            TableReply::Table(Some((table.generation, members)))
        }
        TableCall::Leave => {
            store.leave_member(store_run(me.node)).await?;
            TableReply::Left
        }
    })
}

/// A table row as a member; a row whose addresses do not parse (written by something
/// else than a node) is left out.
fn member_of(row: &MemberRow) -> Option<Member> {
    let (Ok(addr), Ok(client_addr)) = (row.node_addr.parse(), row.client_addr.parse()) else {
        tracing::warn!(
            node = row.run.id,
            "membership row with unreadable addresses ignored"
        );
        return None;
    };
    Some(Member {
        node: node_ref(row.run),
        addr,
        client_addr,
    })
}

impl StoreAdapter {
    async fn carry_out(
        &self,
        node: NodeRef,
        call: StoreCall,
    ) -> Result<StoreReply, zonemesh_store::StoreError> {
        let me = store_run(node);
        Ok(match call {
            StoreCall::RenewLease { request } => {
                let grant = self.store.renew_lease(me, self.lease).await?;
                StoreReply::Lease {
                    request,
                    grant: grant.map(|g| LeaseGrant {
                        duration_ms: g.duration_ms,
                        generation: g.generation,
                    }),
                }
            }
            StoreCall::Activate { zone, attempt } => {
                match self.store.activate_zone_leased(zone.0, me, attempt).await? {
                    LeasedActivation::Activated {
                        activation,
                        lease_generation,
                    } => {
                        let epoch = activation.epoch;
                        self.keep(zone, activation);
                        StoreReply::Activated {
                            zone,
                            epoch,
                            lease_generation,
                            attempt,
                        }
                    }
                    LeasedActivation::Held {
                        holder,
                        epoch,
                        lease_left_ms,
                    } => StoreReply::Held {
                        zone,
                        holder: node_ref(holder),
                        epoch,
                        lease_left_ms,
                    },
                    LeasedActivation::NoLease => StoreReply::NoLease { zone },
                }
            }
            StoreCall::Release { zone, epoch } => {
                self.store.release_zone(zone.0, me, epoch).await?;
                StoreReply::Released { zone }
            }
            StoreCall::ZonesHeldBy { node: dead } => {
                let held = self.store.zones_held_by(store_run(dead)).await?;
                StoreReply::ZonesHeld {
                    node: dead,
                    zones: held.zones.into_iter().map(ZoneId).collect(),
                    truncated: held.truncated,
                }
            }
        })
    }
}
