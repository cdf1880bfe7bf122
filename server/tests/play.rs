//! Playing over real QUIC: players join, see each other move, cross zone borders
//! without reconnecting, and a second login replaces the first.

mod common;

use common::{TestServer, TestWorld, drive, own_position, wait_disconnect, wait_own_position};
use zonemesh_client::{DisconnectKind, ErrorCode, Event, Vec2};
use zonemesh_server::demo::{KIND_PLAYER, Nameplate, component_ids};
use zonemesh_server::zone::WorldLayout;

/// A unit velocity pointing from `from` towards the centre of a world of `size`,
/// scaled to `speed`, so walking never runs into the world's edge.
fn towards_centre(from: Vec2, size: Vec2, speed: f32) -> Vec2 {
    let dx = size.x / 2.0 - from.x;
    let dy = size.y / 2.0 - from.y;
    let len = (dx * dx + dy * dy).sqrt().max(0.001);
    Vec2::new(dx / len * speed, dy / len * speed)
}

fn distance(a: Vec2, b: Vec2) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

/// How many visible entities carry the nameplate `name`.
fn nameplates(client: &zonemesh_client::Client, name: &str) -> usize {
    client
        .replica()
        .iter()
        .filter(|e| {
            e.component::<Nameplate>(component_ids::NAMEPLATE)
                .and_then(Result::ok)
                .is_some_and(|n| n.0 == name)
        })
        .count()
}

#[tokio::test]
async fn players_join_and_see_each_other_move() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    assert_ne!(
        alice.player(),
        bob.player(),
        "each player gets its own entity"
    );

    let bob_id = bob.player();
    let alice_id = alice.player();
    drive(&mut alice, None, "alice sees bob", |c, _| {
        c.replica().contains(bob_id)
    })
    .await;
    drive(&mut bob, None, "bob sees alice", |c, _| {
        c.replica().contains(alice_id)
    })
    .await;
    let bob_entity = alice.replica().get(bob_id).expect("visible");
    assert_eq!(bob_entity.kind, KIND_PLAYER);
    assert_eq!(nameplates(&alice, "bob"), 1, "bob's nameplate replicated");
    assert!(alice.replica().len() > 2, "the NPCs around are visible too");

    // Bob walks; alice sees him move while bob sees his own movement.
    let bob_start = own_position(&bob).expect("bob saw himself");
    let seen_start = alice.replica().get(bob_id).expect("visible").position;
    let size = Vec2::new(64.0, 32.0);
    let walk = towards_centre(bob_start, size, 6.0);
    drive(&mut bob, Some(walk), "bob moves", |c, _| {
        own_position(c).is_some_and(|p| distance(p, bob_start) > 1.0)
    })
    .await;
    drive(&mut alice, None, "alice sees bob move", |c, _| {
        c.replica()
            .get(bob_id)
            .is_some_and(|e| distance(e.position, seen_start) > 1.0)
    })
    .await;
    assert!(bob.last_input_ack() > 0, "the server applied bob's inputs");
    assert_eq!(bob.last_input_ack(), bob.stats().last_input_ack);
    assert!(alice.rtt() > std::time::Duration::ZERO);
    let stats = alice.stats();
    assert!(stats.snapshots > 0 && stats.decode_errors == 0, "{stats:?}");
    assert_eq!(server.status().sessions, 2);
}

#[tokio::test]
async fn a_player_crossing_a_border_changes_zone_and_stays_single() {
    let layout = WorldLayout {
        zones_x: 2,
        zones_y: 1,
        zone_size: 16.0,
    };
    let server = TestServer::start(TestWorld {
        layout,
        ..TestWorld::default()
    })
    .await;
    let mut walker = server.connect("walker").await;
    let mut watcher = server.connect("watcher").await;
    let walker_id = walker.player();
    let first_zone = walker.zone();
    let start = wait_own_position(&mut walker).await;

    // Walk straight across the border at x = 16 at (almost) full speed.
    let velocity = if start.x < 16.0 {
        Vec2::new(7.5, 0.0)
    } else {
        Vec2::new(-7.5, 0.0)
    };
    let events = drive(&mut walker, Some(velocity), "zone change", |_, e| {
        matches!(e, Event::ZoneChanged { .. })
    })
    .await;
    let Some(Event::ZoneChanged { zone }) = events.last() else {
        unreachable!("drive stops on the zone change")
    };
    assert_ne!(*zone, first_zone);
    assert_eq!(walker.zone(), *zone, "the client follows the zone change");
    assert_eq!(
        walker.player(),
        walker_id,
        "identity kept across the border"
    );

    // The new zone keeps serving the same entity: it moves on under the same id.
    let crossed_at = own_position(&walker).expect("seen");
    drive(
        &mut walker,
        Some(velocity),
        "moving on in the new zone",
        |c, _| own_position(c).is_some_and(|p| distance(p, crossed_at) > 1.0),
    )
    .await;
    let now = own_position(&walker).expect("seen");
    assert_eq!(now.x < 16.0, start.x >= 16.0, "on the other side: {now:?}");

    // Exactly one walker on the server and in every view, under the same id.
    let target = *zone;
    server
        .wait_status("walker listed once, in the new zone", |s| {
            let listed: Vec<_> = s
                .zones
                .iter()
                .filter(|z| z.player_names.iter().any(|n| n == "walker"))
                .collect();
            listed.len() == 1 && listed[0].zone == target && listed[0].player_names.len() <= 2
        })
        .await;
    let status = server.status();
    assert_eq!(status.zones.iter().map(|z| z.players).sum::<usize>(), 2);
    assert!(status.zones.iter().map(|z| z.transfers_out).sum::<u64>() >= 1);
    drive(&mut watcher, None, "watcher sees the walker", |c, _| {
        c.replica().contains(walker_id)
    })
    .await;
    assert_eq!(nameplates(&watcher, "walker"), 1, "never duplicated");
    assert_eq!(nameplates(&walker, "walker"), 1, "never duplicated");
}

#[tokio::test]
async fn connecting_again_as_the_same_player_replaces_the_old_session() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut first = server.connect("twin").await;
    wait_own_position(&mut first).await;
    let mut second = server.connect("twin").await;

    let reason = wait_disconnect(&mut first, "first session replaced").await;
    assert_eq!(reason.code, ErrorCode::Replaced, "{reason:?}");
    assert_eq!(reason.kind, DisconnectKind::Server);
    assert!(first.disconnect_reason().is_some());

    // The new session plays on; the player exists once.
    wait_own_position(&mut second).await;
    server
        .wait_status("one twin", |s| {
            s.sessions == 1
                && s.zones
                    .iter()
                    .flat_map(|z| &z.player_names)
                    .filter(|n| *n == "twin")
                    .count()
                    == 1
        })
        .await;
    assert_eq!(nameplates(&second, "twin"), 1);
}

#[tokio::test]
async fn requests_are_answered_between_ticks() {
    use zonemesh_server::demo::EVENT_ADD_COIN;
    // One tick a second: an answer that waited for a tick would take seconds.
    let server = TestServer::start(TestWorld {
        tick_hz: 1,
        ..TestWorld::default()
    })
    .await;
    let mut client = server.connect("asker").await;
    let ticks = |s: &zonemesh_server::ServerStatus| s.zones.iter().map(|z| z.ticks).max();
    let before = ticks(&server.status());
    for expected in 1..=5u32 {
        client
            .send_game_event(EVENT_ADD_COIN, Vec::new())
            .await
            .expect("sent");
        let answers = drive(
            &mut client,
            None,
            "answer",
            |_, e| matches!(e, Event::GameEvent { kind, .. } if *kind == EVENT_ADD_COIN),
        )
        .await;
        let Some(Event::GameEvent { payload, .. }) = answers.last() else {
            unreachable!("drive stops on the answer")
        };
        assert_eq!(payload.as_slice(), expected.to_le_bytes());
    }
    let after = ticks(&server.status());
    let advanced = after.unwrap_or(0) - before.unwrap_or(0);
    assert!(advanced <= 1, "five answers took {advanced} ticks");
}
