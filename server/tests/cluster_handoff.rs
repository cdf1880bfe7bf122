//! Live zone handoff over real QUIC on loopback with real SDK clients: two nodes of
//! `zonemesh dev --nodes 2` in this process, one zone with wandering NPCs, held by
//! node 0, moved to node 1 while its players play.
//!
//! - Every player ends on node 1 without a reconnect: same entity and `NetId`, the
//!   same replica (the NPCs it saw keep their ids), its coins (a durable action's
//!   effect) and its input numbering, and the zone is held by node 1 only.
//! - The move is listed by the node's moves report, with its pause.
//! - Draining a node holding several zones moves every zone and player to the other
//!   node, none disconnected, and the drained node says so.
//! - With every zone on one node, the rebalancers move zones until both nodes tick
//!   about as much, and then stop moving them.
//! - A target that goes silent after `Ready` (dead, or its link dropped): the zone
//!   plays on, on its source, its players never sent away. A source that dies once
//!   the target took the zone: its players reconnect by themselves and find the zone,
//!   with each of them once, on the target.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::{coins, drive, pick_up_coin, wait_own_position, within};
use tempfile::TempDir;
use zonemesh_client::{Client, Event};
use zonemesh_cluster::rebalance::RebalanceConfig;
use zonemesh_server::cluster::handoff::HandoffFault;
use zonemesh_server::dev::{DevServer, DevWorld};
use zonemesh_server::zone::{WorldLayout, ZoneConfig};
use zonemesh_server::{NetLimits, NodeConfig};
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::Vec2;
use zonemesh_shared::status::MovesReport;
use zonemesh_store::StoreStats;

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
        Self::with_zones(1, 64.0).await
    }

    /// Two nodes hosting a world of `side` × `side` zones, `NPCS` NPCs, no rebalancer.
    async fn with_zones(side: u16, zone_size: f32) -> Self {
        Self::with_world(side, zone_size, NPCS, None).await
    }

    async fn with_world(
        side: u16,
        zone_size: f32,
        npcs: usize,
        rebalance: Option<RebalanceConfig>,
    ) -> Self {
        let world = DevWorld {
            node: NodeConfig {
                layout: WorldLayout {
                    zones_x: side,
                    zones_y: side,
                    zone_size,
                },
                zone: ZoneConfig {
                    checkpoint_interval: Duration::from_secs(1),
                    ..ZoneConfig::default()
                },
                workers: Some(1),
                idle_deactivate_after: Duration::from_secs(60),
            },
            npcs,
            limits: NetLimits::default(),
            rebalance,
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

/// The source's report of the one move of `pair`'s zone 0, and the target's store
/// calls since `claims_before`: one takeover of every player.
fn check_move_report(moves: &MovesReport, pair: &Pair, claims_before: &StoreStats) {
    let mv = moves.moves.first().expect("the move is listed");
    assert_eq!(
        mv.outcome.as_deref().map(|o| o.starts_with("moved")),
        Some(true)
    );
    assert!(mv.pause_ms.is_some());
    let steps: Vec<&str> = mv.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        steps,
        ["frozen", "saved", "released", "activated", "redirected"],
        "the source's steps, in order"
    );
    assert!(mv.steps.windows(2).all(|w| w[0].at_us <= w[1].at_us));
    let stats = pair.nodes[1].server.store().stats();
    assert_eq!(
        (
            stats.n_player_takeovers - claims_before.n_player_takeovers,
            stats.n_player_claims - claims_before.n_player_claims
        ),
        (1, 0),
        "the target took the players over with one store call"
    );
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
    let claims_before = pair.nodes[1].server.store().stats();
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
    check_move_report(&runtime.moves(), &pair, &claims_before);

    let mut moved = moved;
    check_inputs_counted_once(&pair, &mut moved).await;
    for node in pair.nodes {
        node.server.shutdown().await;
    }
}

/// Inputs carry on with their numbering on the new node, and counted on both sides
/// none was applied twice or lost: after each client's newest input is acknowledged,
/// the zone on node 1 has counted each input its players sent once, applied or
/// superseded by a newer one, on whichever node held it.
async fn check_inputs_counted_once(pair: &Pair, moved: &mut [(Client, Vec<Event>)]) {
    for (client, _) in moved.iter_mut() {
        let last = client.send_input(Vec2::new(0.0, 1.0), 0).expect("input");
        drive(
            client,
            None,
            "the newest input is applied on node 1",
            |c, _| c.last_input_ack() == last,
        )
        .await;
    }
    let sent: u64 = moved.iter().map(|(c, _)| c.stats().inputs_sent).sum();
    let counted = || {
        let status = pair.nodes[1].server.status();
        let zone = status.zones.iter().find(|z| z.zone == ZoneId(0)).cloned();
        zone.map_or((0, 0), |z| (z.inputs_applied, z.inputs_superseded))
    };
    within("the zone counted the newest inputs", async {
        while counted().0 + counted().1 < sent {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (applied, superseded) = counted();
    assert_eq!(
        applied + superseded,
        sent,
        "every input counted once: {applied} applied, {superseded} superseded"
    );
    assert!(applied > 0 && applied <= sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_moves_every_zone_and_player_to_the_other_node() {
    let pair = Pair::with_zones(2, 24.0).await;
    let mut clients = Vec::new();
    for i in 0..PLAYERS {
        let mut client = pair.connect(0, &format!("drained{i}")).await;
        wait_own_position(&mut client).await;
        assert_eq!(client.remote_address(), pair.addr(0));
        clients.push(client);
    }
    let zones_before = pair.nodes[0].server.status().zones.len();
    assert!(
        zones_before >= 2,
        "the players are spread over zones: {zones_before}"
    );
    let runtime = pair.nodes[0].server.cluster_runtime().expect("clustered");
    runtime.drain().expect("the drain starts");

    let to = pair.addr(1);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(play_until_on(c, to)))
        .collect();
    let mut kept = Vec::new();
    for task in tasks {
        let (client, events) = task.await.expect("player task");
        assert_eq!(
            client.reconnects(),
            0,
            "a drain moves players, it does not drop them"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::Disconnected(_) | Event::Reconnected { .. })),
            "the session carried on: {events:?}"
        );
        kept.push(client);
    }
    assert!(runtime.wait_drained(common::WAIT).await, "the drain ends");
    let status = pair.nodes[0].server.status();
    assert!(
        status.zones.is_empty(),
        "node 0 holds no zone: {:?}",
        status.zones
    );
    let cluster = status.cluster.expect("clustered");
    assert!(cluster.draining && cluster.drained);
    assert!(cluster.held_zones.is_empty());
    let moved = runtime.moves().moves;
    assert_eq!(moved.len(), zones_before, "one move per zone: {moved:?}");
    assert!(moved.iter().all(|m| m.reason == "drain"));
    // Players may be between two zones of node 1 for a tick: wait for all of them.
    let names: Vec<String> = (0..PLAYERS).map(|i| format!("drained{i}")).collect();
    within("node 1 alone holds every player", async {
        while !names.iter().all(|n| pair.nodes_holding(n) == vec![1]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A newcomer asking the drained node is served by the other one.
    let mut newcomer = pair.connect(0, "newcomer").await;
    wait_own_position(&mut newcomer).await;
    assert_eq!(
        newcomer.remote_address(),
        to,
        "no zone is placed on a drained node"
    );
    for node in pair.nodes {
        node.server.shutdown().await;
    }
}

/// Zones held by each node now, by their status.
fn zones_per_node(pair: &Pair) -> Vec<usize> {
    pair.nodes
        .iter()
        .map(|n| n.server.status().zones.len())
        .collect()
}

/// Moves every node started, since start.
fn moves_started(pair: &Pair) -> usize {
    pair.nodes
        .iter()
        .map(|n| {
            n.server
                .cluster_runtime()
                .expect("clustered")
                .moves()
                .moves
                .len()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_cluster_converges_to_balance_and_then_stops_moving_zones() {
    // Four zones of equal cost (their NPCs), all loaded on node 0.
    let rebalance = RebalanceConfig {
        floor_us_per_s: 1_000,
        ..RebalanceConfig::default()
    };
    let pair = Pair::with_world(2, 32.0, 2_000, Some(rebalance)).await;
    let world = Vec2::new(64.0, 64.0);
    let layout = WorldLayout {
        zones_x: 2,
        zones_y: 2,
        zone_size: 32.0,
    };
    let mut anchors = Vec::new();
    for zone in [0, 1, 0x1_0000, 0x1_0001].map(ZoneId) {
        let name = (0..10_000)
            .map(|i| format!("anchor{}-{i}", zone.0))
            .find(|n| layout.zone_at(zonemesh_server::demo::spawn_point(n, world)) == zone)
            .expect("some name spawns there");
        let mut anchor = pair.connect(0, &name).await;
        wait_own_position(&mut anchor).await;
        anchors.push(anchor);
    }
    within("the rebalancers split the zones two and two", async {
        while zones_per_node(&pair) != vec![2, 2] {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let moves = moves_started(&pair);
    assert!(moves >= 2, "at least two moves: {moves}");
    // Balanced: no more moves for several decision rounds.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(zones_per_node(&pair), vec![2, 2], "still balanced");
    assert_eq!(moves_started(&pair), moves, "no zone moved once balanced");
    let reasons: Vec<String> = pair
        .nodes
        .iter()
        .flat_map(|n| n.server.cluster_runtime().expect("clustered").moves().moves)
        .map(|m| m.reason)
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.starts_with("rebalance: source costs")),
        "{reasons:?}"
    );
    drop(anchors);
    for node in pair.nodes {
        node.server.shutdown().await;
    }
}

/// Plays `client` (wandering) for `how_long`, handling events; returns them. A
/// disconnect fails the test.
async fn play_for(client: &mut Client, how_long: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    let mut inputs = tokio::time::interval(common::INPUT_INTERVAL);
    let until = tokio::time::Instant::now() + how_long;
    loop {
        tokio::select! {
            event = client.next_event() => {
                let event = event.expect("the client goes on");
                assert!(!matches!(event, Event::Disconnected(_)), "{event:?}");
                events.push(event);
            }
            _ = inputs.tick() => {
                client.send_input(Vec2::new(0.3, 0.2), 0).expect("input accepted by the SDK");
            }
            () = tokio::time::sleep_until(until) => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_target_goes_silent_leaves_the_zone_on_the_source() {
    let pair = Pair::start().await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut client = pair.connect(0, &format!("stayer{i}")).await;
        wait_own_position(&mut client).await;
        clients.push(client);
    }
    // Node 1 answers `Ready`, then never hears the state: as if it died right then.
    let target = pair.nodes[1].server.cluster_runtime().expect("clustered");
    target.inject_handoff_fault(Some(HandoffFault::TargetDropsState));
    let source = pair.nodes[0].server.cluster_runtime().expect("clustered");
    source
        .move_zone(ZoneId(0), &pair.nodes[1].node.id.to_string(), "test")
        .expect("the move starts");
    // The source gives the state 5 s, then takes the zone back.
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let events = play_for(&mut c, Duration::from_secs(8)).await;
                (c, events)
            })
        })
        .collect();
    let mut kept = Vec::new();
    for task in tasks {
        let (client, _) = task.await.expect("player task");
        assert_eq!(client.moves(), 0, "nobody was sent away");
        assert_eq!(client.remote_address(), pair.addr(0));
        kept.push(client);
    }
    let mv = source.moves().moves.into_iter().next().expect("listed");
    assert_eq!(mv.outcome.as_deref(), Some("not moved: NoActivation"));
    within("the zone plays on node 0 again", async {
        while !(0..4).all(|i| pair.nodes_holding(&format!("stayer{i}")) == vec![0]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(pair.nodes[1].server.status().zones.is_empty());
    let client = &mut kept[0];
    let last = client.send_input(Vec2::new(0.0, 1.0), 0).expect("input");
    drive(
        client,
        None,
        "inputs are applied on node 0 again",
        |c, _| c.last_input_ack() == last,
    )
    .await;
    for node in pair.nodes {
        node.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_source_dies_after_the_target_took_the_zone_recovers_on_the_target() {
    let pair = Pair::start().await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let name = format!("orphan{i}");
        let mut config =
            zonemesh_client::ClientConfig::from_dev_data(pair.addr(0), pair.data.path(), &name)
                .expect("dev data");
        config.other_servers = vec![pair.addr(1)];
        config.auto_reconnects = 3;
        config.connect_deadline = common::WAIT;
        let mut client = Client::connect(config).await.expect("connects");
        wait_own_position(&mut client).await;
        clients.push(client);
    }
    // Node 0 hands the zone over, then dies before it redirects anyone.
    let source = pair.nodes[0].server.cluster_runtime().expect("clustered");
    source.inject_handoff_fault(Some(HandoffFault::SourceStallsAfterActivation));
    source
        .move_zone(ZoneId(0), &pair.nodes[1].node.id.to_string(), "test")
        .expect("the move starts");
    within("node 1 holds the zone", async {
        while !pair.nodes[1]
            .server
            .status()
            .zones
            .iter()
            .any(|z| z.zone == ZoneId(0))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut nodes = pair.nodes;
    let dead = nodes.remove(0);
    dead.server.shutdown().await;
    let to = nodes[0].server.local_addr().expect("bound");
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let events = drive_reconnecting(&mut c, to).await;
                (c, events)
            })
        })
        .collect();
    let mut kept = Vec::new();
    for task in tasks {
        let (client, events) = task.await.expect("player task");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Reconnected { .. })),
            "the client came back by itself: {events:?}"
        );
        kept.push(client);
    }
    within("node 1 holds each player once", async {
        loop {
            let status = nodes[0].server.status();
            let zone = status.zones.iter().find(|z| z.zone == ZoneId(0));
            if zone.is_some_and(|z| z.players == 4 && z.entities == 4 + NPCS) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(kept);
    for node in nodes {
        node.server.shutdown().await;
    }
}

/// Plays `client` until it is served by `addr` again after its node died (the SDK
/// reconnects by itself, inside `next_event`, which is never cancelled here);
/// returns the events.
async fn drive_reconnecting(client: &mut Client, addr: SocketAddr) -> Vec<Event> {
    let mut events = Vec::new();
    within("the client is back, on the other node", async {
        while !(client.remote_address() == addr
            && client.reconnects() > 0
            && common::own_position(client).is_some())
        {
            let Some(event) = client.next_event().await else {
                panic!(
                    "the client gave up: {:?} after {events:?}",
                    client.disconnect_reason()
                );
            };
            events.push(event);
            // While reconnecting the SDK refuses inputs; the next event tries again.
            let _ = client.send_input(Vec2::new(0.3, 0.2), 0);
        }
    })
    .await;
    events
}
