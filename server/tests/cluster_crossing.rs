//! Players crossing between zones held by different nodes, over real QUIC on loopback
//! with real SDK clients: three nodes of `zonemesh dev --nodes 3` in this process, a
//! world of three zones in a row, zone `k` held by node `k`.
//!
//! - A bot walks from zone 0 through zones 1 and 2 and back: it changes node at each
//!   border (make-before-break, the SDK following the old node's redirect) and
//!   arrives with the same entity, `NetId`, replica and input sequence, held by
//!   exactly one node at the end.
//! - Durable actions sent all along such a walk are each applied exactly once, on
//!   whichever node holds the player when its commit completes.
//! - Ghosts cross nodes: a player in zone 1 sees players standing in zones 0 and 2,
//!   which live on the two other nodes.
//! - Every node publishes its load (zones, players, entities, tick time, what each
//!   zone's ticks cost) and every node sees the others' in its status.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{coins, drive, own_position, wait_own_position, within};
use tempfile::TempDir;
use zonemesh_client::{Client, Event};
use zonemesh_server::cluster::crossing::WAITING_DATAGRAM_BYTES;
use zonemesh_server::demo::ACTION_PICK_UP_COIN;
use zonemesh_server::dev::{DevServer, DevWorld};
use zonemesh_server::net::limits::RateLimit;
use zonemesh_server::zone::{WorldLayout, ZoneConfig};
use zonemesh_server::{NetLimits, NodeConfig};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::quant::Vec2;

/// Zone edge length: small, so a walk across a zone takes about two seconds.
const ZONE_SIZE: f32 = 16.0;
/// Zones in the row.
const ZONES: u16 = 3;

struct Row {
    nodes: Vec<DevServer>,
    data: TempDir,
    layout: WorldLayout,
}

impl Row {
    async fn start() -> Self {
        let layout = WorldLayout {
            zones_x: ZONES,
            zones_y: 1,
            zone_size: ZONE_SIZE,
        };
        let world = DevWorld {
            node: NodeConfig {
                layout,
                zone: ZoneConfig {
                    checkpoint_interval: Duration::from_secs(1),
                    ..ZoneConfig::default()
                },
                workers: Some(1),
                idle_deactivate_after: Duration::from_secs(60),
            },
            npcs: 0,
            limits: NetLimits {
                // The collector picks up coins far faster than a game would allow.
                event_rate: RateLimit::per_second_with_double_burst(1_000),
                ..NetLimits::default()
            },
            // Every store call takes a few ms, as on a real database: a durable action
            // is then being committed at nearly any instant the collector crosses (on
            // the embedded store at full speed, commits were sometimes all done then).
            store_latency: Duration::from_millis(3),
            ..DevWorld::default()
        }
        .with_aoi_radius(200.0);
        let (nodes, data) = common::start_cluster(&world, 3).await;
        Self {
            nodes,
            data,
            layout,
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].server.local_addr().expect("bound")
    }

    fn index_of(&self, addr: SocketAddr) -> usize {
        (0..self.nodes.len())
            .find(|i| self.addr(*i) == addr)
            .unwrap_or_else(|| panic!("{addr} is no node of the cluster"))
    }

    async fn connect(&self, i: usize, player: &str) -> Client {
        common::connect_dev(self.addr(i), self.data.path(), player).await
    }

    /// A player name whose first spawn point is in `zone`, away from its borders.
    fn name_spawning_in(&self, prefix: &str, zone: ZoneId) -> String {
        let world = Vec2::new(f32::from(ZONES) * ZONE_SIZE, ZONE_SIZE);
        let bounds = self.layout.bounds(zone);
        (0..10_000)
            .map(|i| format!("{prefix}{i}"))
            .find(|name| {
                let p = zonemesh_server::demo::spawn_point(name, world);
                self.layout.zone_at(p) == zone
                    && p.x > bounds.min.x + 2.0
                    && p.x < bounds.max.x - 2.0
            })
            .expect("some name spawns there")
    }

    /// The nodes whose zones hold `player` now, by their status.
    fn nodes_holding(&self, player: &str) -> Vec<usize> {
        common::nodes_holding(&self.nodes, player)
    }

    /// Places zone `k` on node `k` (a player standing in it through that node makes
    /// the node prefer itself), and returns those players.
    async fn occupy_each_zone(&self) -> Vec<Client> {
        let mut anchors = Vec::new();
        for k in 0..usize::from(ZONES) {
            let zone = ZoneId(u32::try_from(k).expect("few zones"));
            let name = self.name_spawning_in(&format!("anchor{k}-"), zone);
            let mut anchor = self.connect(k, &name).await;
            wait_own_position(&mut anchor).await;
            assert_eq!(anchor.zone(), zone);
            assert_eq!(
                self.index_of(anchor.remote_address()),
                k,
                "zone {k} is held by the node its first player came through"
            );
            anchors.push(anchor);
        }
        anchors
    }
}

/// Walks `client` with `velocity` until it is in `zone` on node `node`, and returns
/// the events on the way.
async fn walk_to(
    row: &Row,
    client: &mut Client,
    velocity: Vec2,
    zone: ZoneId,
    node: usize,
) -> Vec<Event> {
    let addr = row.addr(node);
    drive(
        client,
        Some(velocity),
        &format!("walking into zone {} on node {node}", zone.0),
        |c, _| c.zone() == zone && c.remote_address() == addr && own_position(c).is_some(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_walks_a_loop_across_zones_on_three_nodes_and_keeps_its_entity() {
    let row = Row::start().await;
    let _anchors = row.occupy_each_zone().await;
    let name = row.name_spawning_in("walker-", ZoneId(0));
    let mut walker = row.connect(0, &name).await;
    wait_own_position(&mut walker).await;
    let me = walker.player();
    let east = Vec2::new(8.0, 0.0);

    walk_to(&row, &mut walker, east, ZoneId(1), 1).await;
    assert_eq!(walker.player(), me, "same entity on the second node");
    assert_eq!(walker.node_changes(), 1);
    walk_to(&row, &mut walker, east, ZoneId(2), 2).await;
    assert_eq!(walker.node_changes(), 2);
    let west = Vec2::new(-8.0, 0.0);
    let events = walk_to(&row, &mut walker, west, ZoneId(0), 0).await;
    assert_eq!(walker.player(), me, "same entity back on the first node");
    assert_eq!(walker.node_changes(), 4, "0 → 1 → 2 → 1 → 0");
    assert_eq!(walker.reconnects(), 0, "moves are not reconnects");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Reconnected { .. } | Event::Disconnected(_))),
        "the session carried on: {events:?}"
    );
    assert!(
        walker.replica().get(me).is_some(),
        "the replica still holds the player's own entity"
    );

    // Inputs: the node that holds the player applies the newest one sent (numbering
    // carried on through the moves). A velocity that moves the player, so snapshots
    // (which carry the acknowledgement) keep coming.
    let last = walker
        .send_input(Vec2::new(0.0, 3.0), 0)
        .expect("input accepted");
    drive(
        &mut walker,
        None,
        "the newest input is applied on the last node",
        |c, _| c.last_input_ack() == last,
    )
    .await;

    within("exactly one node holds the walker", async {
        while row.nodes_holding(&name) != vec![0] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for node in &row.nodes {
        let crossings = node
            .server
            .cluster_runtime()
            .expect("clustered")
            .crossings()
            .counters();
        assert_eq!(
            crossings
                .taken_back
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "no offer was refused"
        );
    }
    for node in row.nodes {
        node.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghosts_show_players_standing_in_zones_on_other_nodes() {
    let row = Row::start().await;
    let mut anchors = row.occupy_each_zone().await;
    let (west, east) = (anchors[0].player(), anchors[2].player());
    let middle = &mut anchors[1];
    drive(
        middle,
        None,
        "the middle player sees both neighbours' players",
        |c, _| c.replica().contains(west) && c.replica().contains(east),
    )
    .await;
    for node in row.nodes {
        node.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_sees_the_load_the_others_publish() {
    let row = Row::start().await;
    let _anchors = row.occupy_each_zone().await;
    // Each node holds one zone with one player; each publishes that once a second and
    // every node's status shows all three reports.
    within("every node shows every member's load", async {
        loop {
            let seen = row.nodes.iter().all(|node| {
                let status = node.server.status();
                let members = status.cluster.expect("clustered").members;
                members.len() == 3
                    && members.iter().all(|m| {
                        m.load.as_ref().is_some_and(|l| {
                            l.zones == 1
                                && l.players == 1
                                && l.entities >= 1
                                && l.tick_us_per_s > 0
                                && l.costliest_zones.len() == 1
                                && l.costliest_zones[0].us_per_s == l.tick_us_per_s
                        })
                    })
            });
            if seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for node in row.nodes {
        node.server.shutdown().await;
    }
}

/// Durable actions a client sent and what became of them.
#[derive(Debug, Default)]
struct Actions {
    /// Sent, not answered yet.
    pending: HashSet<u128>,
    /// Answered `ActionCommitted`.
    committed: usize,
    /// Answered `ActionRejected` (the node would not take them then).
    rejected: usize,
}

impl Actions {
    fn note(&mut self, event: &Event) {
        match event {
            Event::ActionCommitted { id } if self.pending.remove(id) => self.committed += 1,
            Event::ActionRejected { id, .. } if self.pending.remove(id) => self.rejected += 1,
            _ => {}
        }
    }
}

/// Walks `client` as [`walk_to`] does while picking up coins (durable actions),
/// keeping [`ACTIONS_IN_FLIGHT`] unanswered at all times, so some are nearly always
/// being committed when the walker reaches a border.
async fn walk_picking_up_coins(
    row: &Row,
    client: &mut Client,
    velocity: Vec2,
    (zone, node): (ZoneId, usize),
    actions: &mut Actions,
) {
    let addr = row.addr(node);
    within(
        &format!("walking into zone {} on node {node}", zone.0),
        async {
            let mut inputs = tokio::time::interval(common::INPUT_INTERVAL);
            // Actions go out evenly, one every ACTION_PACE while fewer than
            // ACTIONS_IN_FLIGHT are unanswered, so one is nearly always being committed
            // and the rate stays within the node's event limit however fast the store.
            // After a refusal (`Busy` while the player waits to cross), wait for the
            // next input tick before sending more, as a game would back off.
            let mut pace = tokio::time::interval(ACTION_PACE);
            let mut backing_off = false;
            while !(client.zone() == zone
                && client.remote_address() == addr
                && own_position(client).is_some())
            {
                let room = !backing_off && actions.pending.len() < ACTIONS_IN_FLIGHT;
                tokio::select! {
                    event = client.next_event() => {
                        let event = event.expect("the session goes on");
                        assert!(!matches!(event, Event::Disconnected(_)), "{event:?}");
                        backing_off |= matches!(event, Event::ActionRejected { .. });
                        actions.note(&event);
                    }
                    _ = pace.tick(), if room => {
                        let id = client
                            .send_durable_action(ACTION_PICK_UP_COIN, Vec::new())
                            .await
                            .expect("durable action sent");
                        actions.pending.insert(id);
                    }
                    _ = inputs.tick() => {
                        client.send_input(velocity, 0).expect("input accepted by the SDK");
                        backing_off = false;
                    }
                }
            }
        },
    )
    .await;
}

/// Sends every unanswered action again with its id, twice a second, until each is
/// answered.
async fn resend_until_answered(client: &mut Client, actions: &mut Actions) {
    within("every durable action answered", async {
        while !actions.pending.is_empty() {
            let pending: Vec<u128> = actions.pending.iter().copied().collect();
            for id in pending {
                client
                    .send_durable_action_with_id(id, ACTION_PICK_UP_COIN, Vec::new())
                    .await
                    .expect("durable action sent again");
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(event) = client.next_event().await {
                    actions.note(&event);
                    if actions.pending.is_empty() {
                        return;
                    }
                }
            })
            .await;
        }
    })
    .await;
}

/// Durable actions the collector keeps unanswered (half what a session may have in
/// flight).
const ACTIONS_IN_FLIGHT: usize = 8;
/// How often the collector sends an action while it has room: 500 a second at most,
/// within the event rate limit its nodes allow (1,000 a second).
const ACTION_PACE: Duration = Duration::from_millis(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_actions_sent_while_crossing_between_nodes_are_each_applied_once() {
    let row = Row::start().await;
    let _anchors = row.occupy_each_zone().await;
    let name = row.name_spawning_in("collector-", ZoneId(0));
    let mut walker = row.connect(0, &name).await;
    wait_own_position(&mut walker).await;
    let start = coins(&walker).unwrap_or(0);
    let mut actions = Actions::default();
    let (east, west) = (Vec2::new(8.0, 0.0), Vec2::new(-8.0, 0.0));
    walk_picking_up_coins(&row, &mut walker, east, (ZoneId(1), 1), &mut actions).await;
    walk_picking_up_coins(&row, &mut walker, east, (ZoneId(2), 2), &mut actions).await;
    walk_picking_up_coins(&row, &mut walker, west, (ZoneId(1), 1), &mut actions).await;
    assert_eq!(walker.node_changes(), 3);

    // Every action is answered; each committed one added exactly one coin, wherever
    // the player was when its commit finished. An answer the old node sent after its
    // `Redirect` (a refusal while the player was leaving) may not reach the client:
    // as the SDK documents, such an action is sent again with its id.
    resend_until_answered(&mut walker, &mut actions).await;
    assert!(actions.committed > 50, "{actions:?}");
    // Crossings waited for actions being committed (every zone is loaded, so nothing
    // else defers a crossing here): without that wait their effects were left behind.
    let deferred: u64 = row
        .nodes
        .iter()
        .flat_map(|n| n.server.status().zones)
        .map(|z| z.transfers_deferred)
        .sum();
    assert!(deferred > 0, "no crossing waited for a durable action");
    let expected = start + u32::try_from(actions.committed).expect("few actions");
    drive(
        &mut walker,
        Some(Vec2::new(0.0, 1.0)),
        "the coins of every committed action",
        |c, _| coins(c) >= Some(expected),
    )
    .await;
    // Half a second more of play: a second application of any action would show.
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        drive(
            &mut walker,
            Some(Vec2::new(0.0, -1.0)),
            "nothing",
            |_, _| false,
        ),
    )
    .await;
    assert_eq!(
        coins(&walker),
        Some(expected),
        "no action applied twice: {actions:?}"
    );
    for node in row.nodes {
        node.server.shutdown().await;
    }
}

/// A player arriving from another node (a crossing or a zone's handoff) first gets
/// the snapshot its zone built while its client was on the way, in datagrams sized
/// before the connection existed. A fresh connection with the SDK's settings must be
/// able to send datagrams of that size, or the snapshot is skipped and the player
/// waits a tick longer.
#[tokio::test]
async fn a_fresh_connection_fits_the_snapshot_built_while_its_client_was_on_the_way() {
    let server = common::TestServer::start(common::TestWorld::default()).await;
    let config = server.client_config("arriving");
    let (_endpoint, conn) = common::raw_handshake(&config).await;
    let fits = conn.max_datagram_size().expect("datagrams enabled");
    let assumed = usize::try_from(WAITING_DATAGRAM_BYTES).expect("fits usize");
    assert!(
        assumed <= fits,
        "a waiting link builds {assumed}-byte datagrams; a fresh connection sends {fits}"
    );
}
