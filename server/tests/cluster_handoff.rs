//! Live zone handoff over real QUIC on loopback with real SDK clients: two nodes of
//! `zonemesh dev --nodes 2` in this process, one zone with wandering NPCs, held by
//! node 0, moved to node 1 while its players play.
//!
//! - Every player ends on node 1 without a reconnect: same entity and `NetId`, the
//!   same replica (the NPCs it saw keep their ids), its coins (a durable action's
//!   effect) and its input numbering, and the zone is held by node 1 only.
//! - The move is listed by `GET /moves` through `zonemesh-ctl`'s client, with its
//!   pause.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::{coins, drive, pick_up_coin, wait_own_position, within};
use tempfile::TempDir;
use zonemesh_client::{Client, Event};
use zonemesh_server::dev::{DevServer, DevWorld};
use zonemesh_server::zone::{WorldLayout, ZoneConfig};
use zonemesh_server::{NetLimits, NodeConfig};
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::Vec2;

/// Players in the zone while it moves.
const PLAYERS: usize = 12;
/// NPCs wandering in it.
const NPCS: usize = 40;

struct Pair {
    nodes: Vec<DevServer>,
    data: TempDir,
}

impl Pair {
    async fn start() -> Self {
        let world = DevWorld {
            node: NodeConfig {
                layout: WorldLayout {
                    zones_x: 1,
                    zones_y: 1,
                    zone_size: 64.0,
                },
                zone: ZoneConfig {
                    checkpoint_interval: Duration::from_secs(1),
                    ..ZoneConfig::default()
                },
                workers: Some(1),
                idle_deactivate_after: Duration::from_secs(60),
            },
            npcs: NPCS,
            limits: NetLimits::default(),
            ..DevWorld::default()
        }
        .with_aoi_radius(200.0);
        let (nodes, data) = common::start_cluster(&world, 2).await;
        Self { nodes, data }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].server.local_addr().expect("bound")
    }

    async fn connect(&self, i: usize, player: &str) -> Client {
        common::connect_dev(self.addr(i), self.data.path(), player).await
    }

    fn nodes_holding(&self, player: &str) -> Vec<usize> {
        common::nodes_holding(&self.nodes, player)
    }
}

/// The NPCs `client` sees (every replicated entity but players).
fn npcs_seen(client: &Client) -> BTreeSet<NetId> {
    client
        .replica()
        .iter()
        .filter(|e| e.kind != zonemesh_server::demo::KIND_PLAYER)
        .map(|e| e.id)
        .collect()
}

/// Plays `client` (wandering slowly) until it is served by `addr` and sees its own
/// entity there; returns the events on the way.
async fn play_until_on(mut client: Client, addr: SocketAddr) -> (Client, Vec<Event>) {
    let v = Vec2::new(0.5, -0.5);
    let events = drive(
        &mut client,
        Some(v),
        "the move to the other node",
        |c, _| c.remote_address() == addr && common::own_position(c).is_some(),
    )
    .await;
    (client, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_full_of_players_moves_to_another_node_without_a_reconnect() {
    // The handoff's log lines, shown when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("zonemesh_server=debug")
        .with_test_writer()
        .try_init();
    let pair = Pair::start().await;
    let mut clients = Vec::new();
    for i in 0..PLAYERS {
        let mut client = pair.connect(0, &format!("mover{i}")).await;
        wait_own_position(&mut client).await;
        assert_eq!(client.remote_address(), pair.addr(0), "zone 0 is on node 0");
        clients.push(client);
    }
    // A durable action's effect (coins) must survive the move.
    pick_up_coin(&mut clients[0]).await;
    drive(&mut clients[0], None, "the coin shows", |c, _| {
        coins(c) == Some(1)
    })
    .await;
    let before: Vec<(NetId, BTreeSet<NetId>)> =
        clients.iter().map(|c| (c.player(), npcs_seen(c))).collect();
    assert!(
        before.iter().all(|(_, npcs)| npcs.len() == NPCS),
        "every player sees every NPC before the move"
    );

    let target = pair.nodes[1].node.id.to_string();
    let runtime = pair.nodes[0].server.cluster_runtime().expect("clustered");
    runtime
        .move_zone(ZoneId(0), &target, "test")
        .expect("the move starts");

    let to = pair.addr(1);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(play_until_on(c, to)))
        .collect();
    let mut moved = Vec::new();
    for task in tasks {
        moved.push(task.await.expect("player task"));
    }
    for ((client, events), (me, npcs)) in moved.iter().zip(&before) {
        assert_eq!(client.player(), *me, "same entity on the new node");
        assert_eq!(client.moves(), 1, "moved once");
        assert_eq!(client.reconnects(), 0, "a move is not a reconnect");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Disconnected(_) | Event::Reconnected { .. })),
            "the session carried on: {events:?}"
        );
        let seen = npcs_seen(client);
        assert!(
            seen.is_subset(npcs) && !seen.is_empty(),
            "the NPCs keep their ids across the move"
        );
    }
    let (first, _) = &moved[0];
    assert_eq!(coins(first), Some(1), "the coin moved with the player");

    let names: HashSet<String> = (0..PLAYERS).map(|i| format!("mover{i}")).collect();
    within("node 1 alone holds every player", async {
        while !names.iter().all(|n| pair.nodes_holding(n) == vec![1]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let status = pair.nodes[1].server.status();
    let zone = status
        .zones
        .iter()
        .find(|z| z.zone == ZoneId(0))
        .expect("zone 0 on node 1");
    assert_eq!(zone.players, PLAYERS);
    assert_eq!(zone.entities, PLAYERS + NPCS, "no entity lost or doubled");
    assert!(
        !pair.nodes[0]
            .server
            .status()
            .zones
            .iter()
            .any(|z| z.zone == ZoneId(0)),
        "node 0 let the zone go"
    );
    let moves = runtime.moves();
    let mv = moves.moves.first().expect("the move is listed");
    assert_eq!(
        mv.outcome.as_deref().map(|o| o.starts_with("moved")),
        Some(true)
    );
    assert!(mv.pause_ms.is_some());

    // Inputs carry on with their numbering on the new node.
    let mut moved = moved;
    let (client, _) = &mut moved[1];
    let last = client.send_input(Vec2::new(0.0, 1.0), 0).expect("input");
    drive(
        client,
        None,
        "the newest input is applied on node 1",
        |c, _| c.last_input_ack() == last,
    )
    .await;
    for node in pair.nodes {
        node.server.shutdown().await;
    }
}
