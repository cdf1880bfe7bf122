//! Persistence over real QUIC: player records and persistent components survive a
//! restart, durable actions are acknowledged after commit and applied once, a slow
//! store makes first connections wait (`Loading`) without a stampede of loads, and
//! every session saves its player at a higher version than the sessions before it.

mod common;

use bytes::Bytes;
use common::{
    TestServer, TestWorld, action_answer, coins, drive, own_position, pick_up_coin,
    wait_own_position, within,
};
use std::time::Duration;
use zonemesh_client::{Client, ErrorCode, Event};
use zonemesh_server::demo::ACTION_PICK_UP_COIN;
use zonemesh_server::persist::KeepWarm;
use zonemesh_store::PlayerRecord;

#[tokio::test]
async fn durable_actions_commit_before_the_ack_and_apply_once() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut client = server.connect("collector").await;
    wait_own_position(&mut client).await;

    let first = pick_up_coin(&mut client).await;
    // The same id again (a client retrying after a lost answer): acknowledged, not re-applied.
    client
        .send_durable_action_with_id(first, ACTION_PICK_UP_COIN, Vec::new())
        .await
        .expect("sent");
    assert_eq!(
        action_answer(&mut client, first).await,
        Event::ActionCommitted { id: first }
    );
    let second = pick_up_coin(&mut client).await;
    drive(&mut client, None, "two coins", |c, _| coins(c) == Some(2)).await;

    // The store holds exactly the two actions.
    let stored = server
        .server
        .store()
        .actions_for_player("collector")
        .await
        .expect("readable");
    let mut ids: Vec<u128> = stored.iter().map(|a| a.id.0).collect();
    ids.sort_unstable();
    let mut expected = vec![first, second];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    // A kind the game does not handle is rejected and stores nothing.
    let unknown = client
        .send_durable_action(999, Vec::new())
        .await
        .expect("sent");
    match action_answer(&mut client, unknown).await {
        Event::ActionRejected { code, .. } => assert_eq!(code, ErrorCode::ProtocolViolation),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(coins(&client), Some(2));
}

#[tokio::test]
async fn players_and_their_coins_survive_a_restart() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut client = server.connect("returner").await;
    let start = wait_own_position(&mut client).await;
    pick_up_coin(&mut client).await;
    let towards_centre = if start.x < 32.0 { 6.0 } else { -6.0 };
    let walk = zonemesh_client::Vec2::new(towards_centre, 0.0);
    drive(&mut client, Some(walk), "walked and counted", |c, _| {
        own_position(c).is_some_and(|p| (p.x - start.x).abs() > 2.0) && coins(c) == Some(1)
    })
    .await;
    // Stand still, so the position the server saves is the one seen last.
    let mut last = own_position(&client);
    let mut unchanged = 0;
    drive(
        &mut client,
        Some(zonemesh_client::Vec2::new(0.0, 0.0)),
        "stopped",
        |c, _| {
            let now = own_position(c);
            unchanged = if now == last { unchanged + 1 } else { 0 };
            last = now;
            unchanged >= 5
        },
    )
    .await;
    let last = last.expect("seen");
    client.close().await;

    let restarted = server.restart().await;
    let mut again = restarted.connect("returner").await;
    let back = wait_own_position(&mut again).await;
    assert!(
        (back.x - last.x).abs() < 0.5 && (back.y - last.y).abs() < 0.5,
        "saved position {last:?}, restored {back:?}"
    );
    drive(&mut again, None, "coin restored", |c, _| {
        coins(c) == Some(1)
    })
    .await;
}

#[tokio::test]
async fn each_session_saves_above_the_last_and_older_writes_are_refused() {
    let server = TestServer::start(TestWorld::default()).await;
    let name = "returning";
    let mut last_version = 0;
    for generation in 1..=3u64 {
        let mut client = server.connect(name).await;
        wait_own_position(&mut client).await;
        client.close().await;
        // The session's records carry its generation; each is above the last's.
        let record = server
            .wait_player_record(name, "the session's record saved", |r| {
                r.version >> 32 == generation
            })
            .await;
        assert!(record.version > last_version, "{generation}: {record:?}");
        last_version = record.version;
    }

    // A hand-made write from a stale writer, under the zone's current epoch: refused
    // at an equal and at an older version, and the stored record stays.
    let store = server.server.store();
    let stored = store.load_player(name).await.expect("load").expect("saved");
    let epoch = store
        .zone_epoch(stored.zone)
        .await
        .expect("epoch")
        .expect("the zone is active");
    for version in [stored.version, 1 << 32] {
        let forged = PlayerRecord {
            x: stored.x + 1.0,
            data: Bytes::from_static(b"forged"),
            version,
            ..stored.clone()
        };
        let outcome = store
            .save_players(stored.zone, epoch, vec![forged])
            .await
            .expect("the write itself succeeds");
        assert_eq!(outcome.stale_players, vec![name.to_owned()]);
    }
    let kept = store.load_player(name).await.expect("load").expect("saved");
    assert!(
        kept.version >= stored.version && kept.version >> 32 == 3,
        "{kept:?}"
    );
    assert_ne!(kept.data, Bytes::from_static(b"forged"));
    assert!(store.stats().n_stale_player_records >= 2);
}

#[tokio::test]
async fn a_slow_store_makes_first_connections_wait_and_loads_each_zone_once() {
    // The scenario of the persistence issue: 2 s loads, 500 ms client attempts.
    let latency = Duration::from_secs(2);
    let server = TestServer::start(TestWorld {
        store_latency: latency,
        keep_warm: KeepWarm::None,
        ..TestWorld::default()
    })
    .await;
    let players: Vec<String> = (0..100).map(|i| format!("crowd-{i}")).collect();
    // Spawned all at once (collected), so the crowd really arrives together.
    let joins: Vec<_> = players
        .iter()
        .map(|name| {
            let mut config = server.client_config(name);
            config.attempt_timeout = Duration::from_millis(500);
            config.connect_deadline = Duration::from_secs(30);
            tokio::spawn(async move {
                let mut client = Client::connect(config).await?;
                client.wait_snapshot().await?;
                Ok::<Client, zonemesh_client::ClientError>(client)
            })
        })
        .collect();
    let joined = within("the crowd joins", futures_join_all(joins)).await;
    let clients: Vec<Client> = joined
        .into_iter()
        .map(|r| r.expect("task").expect("every client joins"))
        .collect();
    assert_eq!(clients.len(), 100);
    let stats = server.server.store().stats();
    let zones = 2; // TestWorld's 2x1 layout: both zones hold spawn points.
    assert!(
        stats.n_activations <= zones,
        "each zone loaded once: {stats:?}"
    );
    assert!(stats.n_player_loads >= 100, "{stats:?}");
    assert!(
        stats.n_player_loads < 200,
        "one record load per player, not one per attempt: {stats:?}"
    );
}

/// Awaits every handle (a tiny `join_all`, to avoid a dependency for one test).
async fn futures_join_all<T>(
    handles: impl IntoIterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await);
    }
    out
}

#[tokio::test]
async fn an_idle_zone_is_saved_leaves_memory_and_comes_back_on_demand() {
    let server = TestServer::start(TestWorld {
        keep_warm: KeepWarm::None,
        idle_after: Duration::from_millis(300),
        ..TestWorld::default()
    })
    .await;
    let mut client = server.connect("visitor").await;
    let seen = wait_own_position(&mut client).await;
    let zone = client.zone();
    // TestWorld: 20 NPCs over 2 zones, plus the visitor.
    let populated = |s: &zonemesh_server::ServerStatus| {
        s.zones.iter().any(|z| z.zone == zone && z.entities == 11)
    };
    server
        .wait_status("the visited zone is active", populated)
        .await;
    client.close().await;

    server
        .wait_status("the empty zone left memory", |s| {
            s.zones.iter().all(|z| z.zone != zone)
        })
        .await;
    let activations = server.server.store().stats().n_activations;

    let mut again = server.connect("visitor").await;
    let back = wait_own_position(&mut again).await;
    assert_eq!(again.zone(), zone);
    assert!((back.x - seen.x).abs() < 0.5 && (back.y - seen.y).abs() < 0.5);
    assert_eq!(server.server.store().stats().n_activations, activations + 1);
    server
        .wait_status("NPCs saved and restored", populated)
        .await;
}

#[tokio::test]
async fn zones_kept_warm_take_players_while_others_are_still_loading() {
    // Every store call takes 2.5 s: the early player waits one call (its record), the
    // late one at least two (its record, then its zone), a margin wide enough for a
    // loaded machine.
    let world = TestWorld {
        store_latency: Duration::from_millis(2500),
        ..TestWorld::default()
    };
    // Two players whose spawn points fall in different zones.
    let bounds = world.layout.world_bounds().max;
    let game = zonemesh_server::demo::demo_game(zonemesh_server::demo::DemoConfig {
        npcs: world.npcs,
        zones: world.layout.n_zones(),
        world_size: zonemesh_client::Vec2::new(bounds.x, bounds.y),
    });
    let zone_of = |name: &str| world.layout.zone_at((game.rules().spawn_point)(name));
    let early = "early";
    let late = (0..100)
        .map(|i| format!("late-{i}"))
        .find(|n| zone_of(n) != zone_of(early))
        .expect("a name spawning in the other zone");
    let (warm, cold) = (zone_of(early), zone_of(&late));
    let server = TestServer::start(TestWorld {
        keep_warm: KeepWarm::Zones(vec![warm]),
        ..world.clone()
    })
    .await;
    server
        .wait_status("the warm zone is loaded", |s| {
            s.zones.iter().any(|z| z.zone == warm)
        })
        .await;

    // The late player's zone starts loading (after its record: two slow reads).
    let mut late_config = server.client_config(&late);
    late_config.connect_deadline = Duration::from_secs(30);
    let late_join = tokio::spawn(Client::connect(late_config));
    // The early player only waits for its record; its zone is already there.
    let mut first = server.connect(early).await;
    wait_own_position(&mut first).await;
    assert!(
        server.status().zones.iter().all(|z| z.zone != cold),
        "the early player got in while the other zone was still loading"
    );
    let mut second = within("the late player joins", late_join)
        .await
        .expect("task")
        .expect("joins once its zone is loaded");
    wait_own_position(&mut second).await;
    assert_eq!(second.zone(), cold);
}

#[tokio::test]
async fn the_server_saves_to_postgres_when_given_a_url() {
    let Ok(url) = std::env::var("ZONEMESH_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped the_server_saves_to_postgres_when_given_a_url: ZONEMESH_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let server = TestServer::start(TestWorld {
        store: url,
        ..TestWorld::default()
    })
    .await;
    assert_eq!(server.server.store().backend(), "postgres");
    // A fresh name per run: the database outlives the test.
    let name = format!("pg-{:08x}", rand::random::<u32>());
    let mut client = server.connect(&name).await;
    wait_own_position(&mut client).await;
    pick_up_coin(&mut client).await;
    drive(&mut client, None, "coin counted", |c, _| {
        coins(c) == Some(1)
    })
    .await;
    client.close().await;

    let restarted = server.restart().await;
    let mut again = restarted.connect(&name).await;
    wait_own_position(&mut again).await;
    drive(&mut again, None, "coin restored from PostgreSQL", |c, _| {
        coins(c) == Some(1)
    })
    .await;
    let stored = restarted
        .server
        .store()
        .actions_for_player(&name)
        .await
        .expect("readable");
    assert_eq!(stored.len(), 1);
}
