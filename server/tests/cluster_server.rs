//! Zone servers in a cluster, over real QUIC on loopback with real SDK clients: three
//! nodes of `zonemesh dev --nodes 3` in this process, sharing the embedded store.
//!
//! - A player connecting to a node that does not serve its zone is redirected to the
//!   one that does, with a signed token, and plays there.
//! - Forged, expired, replayed, misaddressed and unknown-key redirect tokens are
//!   refused with their own error codes.
//! - A hundred players racing for ten cold zones through all three nodes give exactly
//!   one activation per zone, each zone served by one node.
//! - A node that stops hands its zones back; the player reconnecting through any node
//!   plays on the node that took the zone over.
//! - A player whose session is on one node and who logs in on another (its saved zone
//!   lives there) has the first session ended (`Replaced`) before the second begins.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{WAIT, wait_own_position, within};
use tempfile::TempDir;
use zonemesh_client::{Client, ClientConfig, ClientError, Event};
use zonemesh_server::dev::{DEV_CLUSTER_SECRET_FILE, DevServer, DevWorld, start_dev_cluster};
use zonemesh_server::zone::{WorldLayout, ZoneConfig};
use zonemesh_server::{NetLimits, NodeConfig};
use zonemesh_shared::control::ErrorCode;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::redirect::{self, RedirectClaims, RedirectKeys};
use zonemesh_store::PlayerRecord;

/// A running in-process cluster and its shared data directory.
struct TestCluster {
    nodes: Vec<DevServer>,
    data: TempDir,
}

impl TestCluster {
    /// `n` nodes hosting a world of `zones_x` x 1 zones, once every node sees all.
    async fn start(n: u16, zones_x: u16) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let world = DevWorld {
            node: NodeConfig {
                layout: WorldLayout {
                    zones_x,
                    zones_y: 1,
                    zone_size: 32.0,
                },
                zone: ZoneConfig {
                    checkpoint_interval: Duration::from_secs(1),
                    ..ZoneConfig::default()
                },
                workers: Some(1),
                idle_deactivate_after: Duration::from_secs(60),
            },
            npcs: 2 * usize::from(zones_x),
            limits: NetLimits::default(),
            ..DevWorld::default()
        }
        .with_aoi_radius(200.0);
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let nodes = start_dev_cluster(listen, data.path(), &world, n)
            .await
            .expect("cluster starts");
        let cluster = Self { nodes, data };
        within("every node sees the whole cluster", async {
            while !cluster.nodes.iter().all(|n| {
                n.server.cluster().expect("clustered").members().len()
                    == usize::from(n_of(&cluster))
            }) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        cluster
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].server.local_addr().expect("bound")
    }

    fn config(&self, i: usize, player: &str) -> ClientConfig {
        let mut config =
            ClientConfig::from_dev_data(self.addr(i), self.data.path(), player).expect("dev data");
        config.connect_deadline = WAIT;
        config
    }

    async fn connect(&self, i: usize, player: &str) -> Client {
        Client::connect(self.config(i, player))
            .await
            .unwrap_or_else(|e| panic!("{player} could not connect through node {i}: {e}"))
    }

    /// The players in node `i`'s zones, as its status says.
    fn players_on(&self, i: usize) -> Vec<String> {
        let status = self.nodes[i].server.status();
        status
            .zones
            .into_iter()
            .flat_map(|z| z.player_names)
            .collect()
    }

    /// Waits until node `i`'s status shows every one of `players`.
    async fn wait_players(&self, i: usize, players: &[&str]) {
        within("the node shows the players", async {
            while !players
                .iter()
                .all(|p| self.players_on(i).iter().any(|n| n == p))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// The index of the node whose client address is `addr`.
    fn index_of(&self, addr: SocketAddr) -> usize {
        (0..self.nodes.len())
            .find(|i| self.addr(*i) == addr)
            .unwrap_or_else(|| panic!("{addr} is no node of the cluster"))
    }

    /// The cluster's redirect keys, from the secret the dev cluster keeps.
    fn keys(&self) -> RedirectKeys {
        let secret =
            zonemesh_server::dev::read_secret(&self.data.path().join(DEV_CLUSTER_SECRET_FILE))
                .expect("cluster secret");
        RedirectKeys::new(1, &secret).expect("keys")
    }

    async fn stop(self) {
        for node in self.nodes {
            node.server.shutdown().await;
        }
    }
}

fn n_of(cluster: &TestCluster) -> u16 {
    u16::try_from(cluster.nodes.len()).expect("few nodes")
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_connecting_to_the_wrong_node_is_redirected_and_plays() {
    let cluster = TestCluster::start(3, 1).await;
    // One zone: whoever gets it first hosts it, and every other node redirects there.
    let mut first = cluster.connect(0, "first").await;
    wait_own_position(&mut first).await;
    let host = cluster.index_of(first.remote_address());
    let other = (host + 1) % 3;
    // The nodes share one store: its counters see every node's reads.
    let loads_before = cluster.nodes[host].server.store().stats().n_player_loads;
    let mut second = cluster.connect(other, "second").await;
    let loads = cluster.nodes[host].server.store().stats().n_player_loads - loads_before;
    assert_eq!(
        loads, 1,
        "only the entry node read the player's record; it forwarded it with the redirect"
    );
    assert_eq!(
        second.redirects_followed(),
        1,
        "one redirect to the zone's node"
    );
    assert_eq!(second.node_changes(), 1);
    assert_eq!(second.remote_address(), cluster.addr(host));
    // The entry node shared the TLS session it issued with the others: the redirected
    // connection resumed it, and its `Hello` went in the first packet and was taken.
    assert_eq!(
        second.zero_rtt_answers(),
        1,
        "the connect after the redirect resumed with 0-RTT"
    );
    wait_own_position(&mut second).await;
    // The zone publishes who is in it once per tick.
    cluster.wait_players(host, &["first", "second"]).await;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let zones = node.server.status().zones.len();
        assert_eq!(
            zones,
            usize::from(i == host),
            "node {i} holds {zones} zones"
        );
    }
    cluster.stop().await;
}

/// Connects with `token` in place of a session token and returns the refusal code.
async fn refused_code(cluster: &TestCluster, node: usize, token: String) -> ErrorCode {
    let mut config = cluster.config(node, "mallory");
    config.token = token;
    match Client::connect(config).await {
        Err(ClientError::Rejected { code, .. }) => code,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a bad redirect token was admitted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_redirect_tokens_are_refused_with_their_own_codes() {
    let cluster = TestCluster::start(2, 1).await;
    let mut first = cluster.connect(0, "first").await;
    wait_own_position(&mut first).await;
    let host = cluster.index_of(first.remote_address());
    let me = cluster.nodes[host].node;
    let other = cluster.nodes[1 - host].node;
    let claims = |target: NodeRef, expires_unix_ms: u64| RedirectClaims {
        player: "mallory".into(),
        session: 77,
        zone: ZoneId(0),
        target,
        epoch: 1,
        expires_unix_ms,
        nonce: rand::random(),
    };
    let keys = cluster.keys();
    let later = unix_ms() + 60_000;
    let sign = |keys: &RedirectKeys, c: &RedirectClaims| {
        redirect::to_text(&redirect::sign(keys, c).expect("signs"))
    };

    let mut forged = redirect::sign(&keys, &claims(me, later)).expect("signs");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let codes = [
        (redirect::to_text(&forged), ErrorCode::RedirectForged),
        (
            sign(&keys, &claims(me, unix_ms() - 1)),
            ErrorCode::RedirectExpired,
        ),
        (
            sign(&keys, &claims(other, later)),
            ErrorCode::RedirectMisaddressed,
        ),
        (
            sign(
                &RedirectKeys::new(2, b"another secret, 32 bytes long!!!").expect("keys"),
                &claims(me, later),
            ),
            ErrorCode::RedirectUnknownKey,
        ),
        (
            sign(
                &RedirectKeys::new(1, b"a wrong secret under the same id").expect("keys"),
                &claims(me, later),
            ),
            ErrorCode::RedirectForged,
        ),
        ("zr1.not-hex".to_owned(), ErrorCode::AuthFailed),
    ];
    for (token, want) in codes {
        assert_eq!(refused_code(&cluster, host, token).await, want);
    }

    // A genuine token is admitted once; the same token again is a replay.
    let genuine = sign(&keys, &claims(me, later));
    let mut config = cluster.config(host, "mallory");
    config.token = genuine.clone();
    let mut admitted = Client::connect(config)
        .await
        .expect("a genuine token is admitted");
    wait_own_position(&mut admitted).await;
    admitted.close().await;
    assert_eq!(
        refused_code(&cluster, host, genuine).await,
        ErrorCode::RedirectReplayed
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_players_racing_for_ten_cold_zones_give_one_activation_each() {
    let cluster = TestCluster::start(3, 10).await;
    let players: Vec<String> = (0..100).map(|i| format!("racer-{i}")).collect();
    let mut connects = tokio::task::JoinSet::new();
    for (i, name) in players.iter().enumerate() {
        connects.spawn(Client::connect(cluster.config(i % 3, name)));
    }
    let clients: Vec<Client> = within("100 players connect", connects.join_all())
        .await
        .into_iter()
        .map(|c| c.expect("every racer connects"))
        .collect();
    let store = cluster.nodes[0].server.store();
    let mut used: Vec<ZoneId> = clients.iter().map(Client::zone).collect();
    used.sort_unstable();
    used.dedup();
    for zone in &used {
        let epoch = store.zone_epoch(zone.0).await.expect("store readable");
        assert_eq!(
            epoch,
            Some(1),
            "zone {zone:?} was activated {epoch:?} times"
        );
    }
    let mut served: Vec<ZoneId> = cluster
        .nodes
        .iter()
        .flat_map(|n| n.server.status().zones.into_iter().map(|z| z.zone))
        .collect();
    served.sort_unstable();
    let before = served.len();
    served.dedup();
    assert_eq!(before, served.len(), "a zone is served by two nodes");
    assert_eq!(served, used, "every zone in use is served, once");
    for client in clients {
        client.close().await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_hands_its_zone_over_and_the_player_plays_on_elsewhere() {
    let mut cluster = TestCluster::start(3, 1).await;
    // The game knows every node; the SDK moves on to the others when one is gone.
    let mut config = cluster.config(0, "wanderer");
    config.other_servers = vec![cluster.addr(1), cluster.addr(2)];
    let mut player = Client::connect(config).await.expect("connects");
    wait_own_position(&mut player).await;
    // Another player lets the SDK reconnect by itself.
    let mut config = cluster.config(0, "roamer");
    config.other_servers = vec![cluster.addr(1), cluster.addr(2)];
    config.auto_reconnects = 3;
    let mut roamer = Client::connect(config).await.expect("connects");
    wait_own_position(&mut roamer).await;
    let host = cluster.index_of(player.remote_address());
    let gone = cluster.addr(host);
    let stopped = cluster.nodes.remove(host);
    let store = std::sync::Arc::clone(stopped.server.store());
    let claims = async || {
        let claim = async |player| store.player_claim(player).await.expect("store readable");
        (claim("wanderer").await, claim("roamer").await)
    };
    let claims_before = claims().await;
    assert!(claims_before.0.is_some() && claims_before.1.is_some());
    stopped.server.shutdown().await;
    // The stop gave its players' claims back once their zone was saved: the other
    // nodes need not wait for its lease to lapse to let them in.
    let claims_after = claims().await;
    assert_ne!(claims_after.0, claims_before.0, "wanderer's claim released");
    assert_ne!(claims_after.1, claims_before.1, "roamer's claim released");
    let mut ended = false;
    let reconnected = within("the roamer carries on by itself", async {
        loop {
            match roamer.next_event().await {
                Some(Event::Disconnected(reason)) => {
                    assert_eq!(reason.code, ErrorCode::ServerShutdown);
                    ended = true;
                }
                Some(Event::Reconnected { player, .. }) => return player,
                Some(_) => {}
                None => panic!("the roamer gave up: {:?}", roamer.disconnect_reason()),
            }
        }
    })
    .await;
    assert!(ended, "Disconnected comes before Reconnected");
    assert_eq!(reconnected, roamer.player());
    assert_ne!(roamer.remote_address(), gone);
    wait_own_position(&mut roamer).await;
    let reason = common::wait_disconnect(&mut player, "the stopped node ends the session").await;
    assert_eq!(reason.code, ErrorCode::ServerShutdown);
    assert!(reason.can_reconnect(), "{reason}");
    within("the player reconnects", player.reconnect())
        .await
        .expect("reconnects through another node");
    assert_eq!(player.reconnects(), 1);
    assert_ne!(player.remote_address(), gone);
    assert!(player.node_changes() >= 1);
    wait_own_position(&mut player).await;
    let store = cluster.nodes[0].server.store();
    assert_eq!(
        store.zone_epoch(0).await.expect("store readable"),
        Some(2),
        "taken over once, at the next epoch"
    );
    cluster.stop().await;
}

/// The zone `player` spawns in, found by connecting it (then it leaves).
async fn spawn_zone(cluster: &TestCluster, node: usize, player: &str) -> ZoneId {
    let client = cluster.connect(node, player).await;
    let zone = client.zone();
    client.close().await;
    zone
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_logging_in_on_another_node_ends_its_first_session_there() {
    let cluster = TestCluster::start(2, 2).await;
    let mut first = cluster.connect(0, "twin").await;
    wait_own_position(&mut first).await;
    let home = first.zone();
    let host = cluster.index_of(first.remote_address());
    let away = 1 - host;
    // Another player places the other zone on the other node.
    let mut other = None;
    for i in 0..64 {
        let name = format!("neighbour-{i}");
        if spawn_zone(&cluster, away, &name).await != home {
            other = Some(cluster.connect(away, &name).await);
            break;
        }
    }
    let mut other = other.expect("a name spawning in the other zone");
    wait_own_position(&mut other).await;
    let elsewhere = other.zone();
    assert_eq!(cluster.index_of(other.remote_address()), away);

    // The player's saved record says it is in the other zone (as after a crossing
    // saved by a zone that then lost touch): its next login goes to the other node.
    let store = cluster.nodes[0].server.store();
    let saved = cluster_record(store, "twin").await;
    let epoch = store
        .zone_epoch(elsewhere.0)
        .await
        .expect("readable")
        .expect("activated");
    let bounds = WorldLayout {
        zones_x: 2,
        zones_y: 1,
        zone_size: 32.0,
    }
    .bounds(elsewhere);
    let moved = PlayerRecord {
        zone: elsewhere.0,
        x: (bounds.min.x + bounds.max.x) / 2.0,
        y: (bounds.min.y + bounds.max.y) / 2.0,
        version: saved.version + (1 << 32),
        ..saved
    };
    store
        .save_players(elsewhere.0, epoch, vec![moved])
        .await
        .expect("saved");

    let mut second = cluster.connect(host, "twin").await;
    assert_eq!(
        cluster.index_of(second.remote_address()),
        away,
        "served where its zone is"
    );
    let reason = common::wait_disconnect(&mut first, "the first session ends").await;
    assert_eq!(reason.code, ErrorCode::Replaced, "{reason}");
    wait_own_position(&mut second).await;
    within("the first node lets the player go", async {
        while cluster.players_on(host).iter().any(|n| n == "twin") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    cluster.wait_players(away, &["twin"]).await;
    let claim = store
        .player_claim("twin")
        .await
        .expect("readable")
        .expect("claimed");
    assert_eq!(
        claim.0.id, cluster.nodes[away].node.id.0,
        "claimed by the node serving it"
    );
    second.close().await;
    other.close().await;
    cluster.stop().await;
}

/// The player's record once a checkpoint has saved it.
async fn cluster_record(
    store: &std::sync::Arc<dyn zonemesh_store::Store>,
    player: &str,
) -> PlayerRecord {
    within("the player's record is saved", async {
        loop {
            if let Some(record) = store.load_player(player).await.expect("readable") {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}
