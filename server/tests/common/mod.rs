//! Shared set-up for the integration tests: a real server on 127.0.0.1:0 hosting the
//! demo game in a small world, and SDK client configurations for it.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use zonemesh_client::{Client, ClientConfig, DisconnectReason, Event};
use zonemesh_server::demo::{ACTION_PICK_UP_COIN, Coins, component_ids};
use zonemesh_server::dev::{DevWorld, start_dev_server};
use zonemesh_server::persist::KeepWarm;
use zonemesh_server::zone::{WorldLayout, ZoneConfig};
use zonemesh_server::{NetLimits, NodeConfig, Server, ServerStatus};
use zonemesh_shared::quant::Vec2;
use zonemesh_store::PlayerRecord;

/// Completes a QUIC handshake with the server `config` names, with the SDK's TLS and
/// transport settings, and nothing more: for tests that speak the protocol by hand.
/// The endpoint must outlive the connection.
pub async fn raw_handshake(config: &ClientConfig) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("endpoint");
    endpoint.set_default_client_config(config.quic_client_config().expect("quic config"));
    let conn = within("raw handshake", async {
        endpoint
            .connect(config.server, &config.server_name)
            .expect("connect")
            .await
            .expect("handshake")
    })
    .await;
    (endpoint, conn)
}

/// How long any wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running test server and its data directory.
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    pub data: TempDir,
    world: TestWorld,
}

/// Knobs the tests turn.
#[derive(Clone)]
pub struct TestWorld {
    pub layout: WorldLayout,
    pub npcs: usize,
    pub aoi_radius: f32,
    pub limits: NetLimits,
    pub store_latency: Duration,
    pub keep_warm: KeepWarm,
    pub idle_after: Duration,
    /// Store spec (`zonemesh dev --store`): empty for the embedded store.
    pub store: String,
    pub tick_hz: u16,
}

impl Default for TestWorld {
    /// A 2x1 world of 32-unit zones where everyone sees everything.
    fn default() -> Self {
        Self {
            layout: WorldLayout {
                zones_x: 2,
                zones_y: 1,
                zone_size: 32.0,
            },
            npcs: 20,
            aoi_radius: 200.0,
            limits: NetLimits::default(),
            store_latency: Duration::ZERO,
            keep_warm: KeepWarm::All,
            idle_after: Duration::from_secs(60),
            store: String::new(),
            tick_hz: 20,
        }
    }
}

impl TestServer {
    pub async fn start(world: TestWorld) -> Self {
        Self::start_in(world, tempfile::tempdir().expect("tempdir")).await
    }

    /// Shuts down cleanly (saving everything) and starts again on the same data.
    pub async fn restart(self) -> Self {
        let (world, data) = (self.world, self.data);
        self.server.shutdown().await;
        Self::start_in(world, data).await
    }

    async fn start_in(world: TestWorld, data: TempDir) -> Self {
        let dev_world = DevWorld {
            node: NodeConfig {
                layout: world.layout,
                zone: ZoneConfig {
                    tick_hz: world.tick_hz,
                    ..ZoneConfig::default()
                },
                workers: Some(2),
                idle_deactivate_after: world.idle_after,
            },
            npcs: world.npcs,
            limits: world.limits.clone(),
            store_latency: world.store_latency,
            keep_warm: world.keep_warm.clone(),
            store: world.store.clone(),
            rebalance: None,
        }
        .with_aoi_radius(world.aoi_radius);
        let listen = "127.0.0.1:0".parse().expect("addr");
        let dev = start_dev_server(listen, data.path(), &dev_world)
            .await
            .expect("server starts");
        let addr = dev.server.local_addr().expect("bound");
        Self {
            server: dev.server,
            addr,
            data,
            world,
        }
    }

    pub fn client_config(&self, player: &str) -> ClientConfig {
        ClientConfig::from_dev_data(self.addr, self.data.path(), player).expect("dev data")
    }

    pub async fn connect(&self, player: &str) -> Client {
        Client::connect(self.client_config(player))
            .await
            .unwrap_or_else(|e| panic!("{player} could not connect: {e}"))
    }

    pub fn status(&self) -> ServerStatus {
        self.server.status()
    }

    /// Waits until `check` holds on the server status, re-reading it every tick.
    pub async fn wait_status(&self, what: &str, check: impl Fn(&ServerStatus) -> bool) {
        let ok = tokio::time::timeout(WAIT, async {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                if check(&self.status()) {
                    return;
                }
            }
        })
        .await;
        assert!(
            ok.is_ok(),
            "timed out waiting for: {what}; status: {:?}",
            self.status()
                .zones
                .iter()
                .map(|z| (&z.zone, &z.player_names))
                .collect::<Vec<_>>()
        );
    }
}

impl TestServer {
    /// Waits until the store holds a record of `player` for which `check` holds,
    /// re-reading it every 10 ms, and returns that record.
    pub async fn wait_player_record(
        &self,
        player: &str,
        what: &str,
        check: impl Fn(&PlayerRecord) -> bool,
    ) -> PlayerRecord {
        let store = self.server.store();
        within(what, async {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                let stored = store.load_player(player).await.expect("store readable");
                if let Some(record) = stored.filter(|r| check(r)) {
                    return record;
                }
            }
        })
        .await
    }
}

/// Drives `client` until `check` returns true for its state after some event.
pub async fn wait_for(
    client: &mut Client,
    what: &str,
    mut check: impl FnMut(&Client, &Event) -> bool,
) {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = client.next_event().await {
            if let Event::Disconnected(reason) = &event {
                panic!("disconnected while waiting for {what}: {reason:?}");
            }
            if check(client, &event) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "timed out or ended waiting for: {what}");
}

/// How often [`drive`] sends an input: the default tick rate.
pub const INPUT_INTERVAL: Duration = Duration::from_millis(50);

/// Plays `client` like a game loop: sends `velocity` every [`INPUT_INTERVAL`] (if
/// any) while handling events, until `check` holds after an event. Returns the events
/// seen on the way.
pub async fn drive(
    client: &mut Client,
    velocity: Option<Vec2>,
    what: &str,
    mut check: impl FnMut(&Client, &Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let done = tokio::time::timeout(WAIT, async {
        let mut inputs = tokio::time::interval(INPUT_INTERVAL);
        loop {
            tokio::select! {
                event = client.next_event() => {
                    let Some(event) = event else { return false };
                    if let Event::Disconnected(reason) = &event {
                        panic!("disconnected while waiting for {what}: {reason:?}");
                    }
                    let stop = check(client, &event);
                    seen.push(event);
                    if stop {
                        return true;
                    }
                }
                _ = inputs.tick(), if velocity.is_some() => {
                    let v = velocity.unwrap_or_default();
                    client.send_input(v, 0).expect("input accepted by the SDK");
                }
            }
        }
    })
    .await;
    assert_eq!(done, Ok(true), "timed out or ended waiting for: {what}");
    seen
}

/// Where `client` sees its own player, once a snapshot carried it.
pub fn own_position(client: &Client) -> Option<Vec2> {
    client.replica().get(client.player()).map(|e| e.position)
}

/// Waits until `client` has seen its own player and returns that position.
pub async fn wait_own_position(client: &mut Client) -> Vec2 {
    drive(client, None, "own player in a snapshot", |c, _| {
        own_position(c).is_some()
    })
    .await;
    own_position(client).expect("checked above")
}

/// Reads `client`'s events until the session ends and returns why.
pub async fn wait_disconnect(client: &mut Client, what: &str) -> DisconnectReason {
    within(what, async {
        loop {
            match client.next_event().await {
                Some(Event::Disconnected(reason)) => return reason,
                Some(_) => {}
                None => panic!("event stream ended without a reason: {what}"),
            }
        }
    })
    .await
}

/// The player's coins (the demo's `Coins`) as its own client sees them.
pub fn coins(client: &Client) -> Option<u32> {
    let me = client.replica().get(client.player())?;
    let coins = me.component::<Coins>(component_ids::COINS)?.ok()?;
    Some(coins.0)
}

/// Plays on until durable action `id` is answered; returns the answer.
pub async fn action_answer(client: &mut Client, id: u128) -> Event {
    let events = drive(client, None, "durable action answered", |_, e| {
        matches!(e, Event::ActionCommitted { id: i } | Event::ActionRejected { id: i, .. } if *i == id)
    })
    .await;
    events.last().cloned().expect("drive stops on the answer")
}

/// Picks up a coin as a durable action and plays on until it is committed; returns
/// the action's id.
pub async fn pick_up_coin(client: &mut Client) -> u128 {
    let id = client
        .send_durable_action(ACTION_PICK_UP_COIN, Vec::new())
        .await
        .expect("sent");
    assert_eq!(
        action_answer(client, id).await,
        Event::ActionCommitted { id }
    );
    id
}

/// Runs `fut` with the test deadline.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Drops a PostgreSQL schema a test made for itself.
pub async fn drop_postgres_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("schema dropped");
}

/// Starts `n` nodes of `zonemesh dev --nodes n` hosting `world` on loopback and waits
/// until each sees the whole cluster; returns them with their data directory.
pub async fn start_cluster(
    world: &DevWorld,
    n: u16,
) -> (Vec<zonemesh_server::dev::DevServer>, TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let nodes = zonemesh_server::dev::start_dev_cluster(listen, data.path(), world, n)
        .await
        .expect("cluster starts");
    within("every node sees the whole cluster", async {
        while !nodes
            .iter()
            .all(|node| node.server.cluster().expect("clustered").members().len() == usize::from(n))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    (nodes, data)
}

/// Connects `player` through the node at `addr` of a dev cluster kept in `data`.
pub async fn connect_dev(addr: SocketAddr, data: &std::path::Path, player: &str) -> Client {
    let mut config = ClientConfig::from_dev_data(addr, data, player).expect("dev data");
    config.connect_deadline = WAIT;
    Client::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{player} could not connect through {addr}: {e}"))
}

/// The nodes whose zones hold `player` now, by their status.
pub fn nodes_holding(nodes: &[zonemesh_server::dev::DevServer], player: &str) -> Vec<usize> {
    (0..nodes.len())
        .filter(|i| {
            nodes[*i]
                .server
                .status()
                .zones
                .iter()
                .any(|z| z.player_names.iter().any(|n| n == player))
        })
        .collect()
}
