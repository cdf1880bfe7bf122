//! SDK clients the cluster benchmarks share: connecting a player with a deadline,
//! waiting until it sees itself, keeping a session alive in the background, choosing a
//! player name that spawns inside a given zone, and laying a world's zones out on the
//! nodes with one anchor player per zone.
//!
//! Laying out works because placement prefers the node a zone's first player asks:
//! one anchor per zone, connecting through the node that should hold it, puts the zone
//! there. The anchors stay (reading snapshots, standing still) so no zone goes idle and
//! moves. Shared by the `cluster` binary and the `scenarios` binary's cluster-overhead
//! scenario (included there with `#[path]`).

use crate::fixture::PHASE_LIMIT;
use crate::node::{Node, wait_until};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::runtime::Runtime;
use zonemesh_client::{Client, ClientConfig};
use zonemesh_server::zone::WorldLayout;
use zonemesh_shared::ids::ZoneId;

/// Longest one connect may take (redirects included).
pub(crate) const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Longest wait, after `Welcome`, for the snapshot showing the player itself.
pub(crate) const SNAPSHOT_LIMIT: Duration = Duration::from_secs(5);

/// Aborts a task when dropped, so a background session ends with its owner.
#[derive(Debug)]
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a session alive (reading snapshots, which sends their acknowledgements)
/// until it ends or the task is aborted.
pub(crate) async fn keep_reading(mut client: Client) {
    while client.wait_snapshot().await.is_ok() {}
}

/// Connects `name` through `addr` with the SDK's default settings, at most
/// [`CONNECT_LIMIT`].
pub(crate) async fn connect(addr: SocketAddr, shared: &Path, name: &str) -> anyhow::Result<Client> {
    let config = ClientConfig::from_dev_data(addr, shared, name)?;
    tokio::time::timeout(CONNECT_LIMIT, Client::connect(config))
        .await
        .with_context(|| format!("{name}: connect timed out"))?
        .with_context(|| format!("{name} cannot connect through {addr}"))
}

/// Waits (at most [`SNAPSHOT_LIMIT`]) until a snapshot showed the player its own
/// entity.
pub(crate) async fn see_itself(client: &mut Client, name: &str) -> anyhow::Result<()> {
    tokio::time::timeout(SNAPSHOT_LIMIT, async {
        while client.replica().get(client.player()).is_none() {
            client.wait_snapshot().await?;
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("{name}: no snapshot showed the player itself"))?
}

/// A player name starting with `prefix` whose first spawn point is inside `zone`, at
/// least `margin` from each of its borders (the demo game spawns a player at a point
/// derived from its name).
pub(crate) fn name_spawning_in(
    layout: &WorldLayout,
    prefix: &str,
    zone: ZoneId,
    margin: f32,
) -> anyhow::Result<String> {
    let world = layout.world_bounds().max;
    let bounds = layout.bounds(zone);
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|name| {
            let p = zonemesh_server::demo::spawn_point(name, world);
            p.x > bounds.min.x + margin
                && p.x < bounds.max.x - margin
                && p.y > bounds.min.y + margin
                && p.y < bounds.max.y - margin
        })
        .with_context(|| format!("no name spawns inside {zone}"))
}

/// Puts every zone of `layout` on node `host(zone)` (an index into `nodes`) with one
/// anchor per zone, then waits until every node's `/status` holds exactly its zones.
/// The anchors' sessions run on `runtime` until the returned guards are dropped.
pub(crate) fn lay_out(
    runtime: &Runtime,
    nodes: &[Node],
    shared: &Path,
    layout: &WorldLayout,
    host: impl Fn(ZoneId) -> usize,
) -> anyhow::Result<Vec<AbortOnDrop<()>>> {
    let mut anchors = Vec::new();
    for zone in layout.zones() {
        let node = &nodes[host(zone)];
        let prefix = format!("anchor-{}-{}-", zone.x(), zone.y());
        let name = name_spawning_in(layout, &prefix, zone, layout.zone_size / 8.0)?;
        let client = runtime.block_on(async {
            let mut client = connect(node.players, shared, &name).await?;
            see_itself(&mut client, &name).await?;
            anyhow::Ok(client)
        })?;
        if client.zone() != zone || client.remote_address() != node.players {
            bail!(
                "{name} should be in {zone} on node {} ({}), but is in {} on {}",
                node.index,
                node.players,
                client.zone(),
                client.remote_address()
            );
        }
        anchors.push(AbortOnDrop(runtime.spawn(keep_reading(client))));
    }
    let wanted = |i: usize| -> Vec<u32> {
        let mut zones: Vec<u32> = layout
            .zones()
            .filter(|&z| host(z) == i)
            .map(|z| z.0)
            .collect();
        zones.sort_unstable();
        zones
    };
    wait_until(
        "each node holds the zones laid out for it",
        PHASE_LIMIT,
        Duration::from_millis(50),
        || {
            nodes
                .iter()
                .all(|n| n.held_zones().into_iter().collect::<Vec<_>>() == wanted(n.index))
        },
    )?;
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_spawn_inside_their_zone() {
        let layout = WorldLayout {
            zones_x: 3,
            zones_y: 3,
            zone_size: 256.0,
        };
        for zone in layout.zones() {
            let name = name_spawning_in(&layout, "a-", zone, 32.0).expect("a name");
            let p = zonemesh_server::demo::spawn_point(&name, layout.world_bounds().max);
            assert_eq!(layout.zone_at(p), zone);
        }
    }
}
