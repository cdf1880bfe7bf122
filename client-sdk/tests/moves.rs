//! Mid-session moves on scripted QUIC servers: the old node sends `Redirect` after
//! `Welcome`, the client connects to the new node while keeping the old connection, and
//! switches with its replica, inputs and acknowledgements; `Loading` is retried, the old
//! node closing meanwhile is harmless, and a failed move ends the session with
//! `MoveFailed` (or falls back to a new session when reconnecting by itself).

mod common;

use common::{
    Control, TestServer, WAIT, moved_record, read_inputs_until, seqs, snapshot, spawn_record,
    welcome, within,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use zonemesh_client::{
    BlockingClient, Client, ClientConfig, DisconnectKind, ErrorCode, Event, NetId, Trust, Vec2,
    ZoneId,
};
use zonemesh_shared::control::{ClientControl, ServerControl};

/// What the old node saw after its `Redirect`: the next control message (`None` once
/// the client closed) and how the connection ended.
type OldEnd = (Option<ClientControl>, quinn::ConnectionError);

fn welcome_as(player: u64, zone: u32) -> ServerControl {
    ServerControl::Welcome {
        player: NetId(player),
        zone: ZoneId(zone),
        tick_hz: 20,
    }
}

/// The old node's part: welcomes player 7 in zone 1, shows it (snapshot 1), waits for
/// the acknowledgement and inputs 1 and 2, then hands the player to `new` with a
/// `Redirect`, and a game event in the same write (so the client has surely read the
/// `Redirect` when it reports the event).
async fn old_node_session(conn: &quinn::Connection, new: SocketAddr) -> Control {
    let (mut control, token) = Control::accept(conn).await;
    assert_eq!(token, "tok");
    control.answer(&[welcome()]).await;
    conn.send_datagram(snapshot(1, 0, vec![spawn_record()]))
        .expect("send");
    read_inputs_until(conn, |ack, inputs| ack.covers(1) && seqs(inputs) == [2, 1]).await;
    let redirect = ServerControl::Redirect {
        addr: new.to_string(),
        token: "for-new".into(),
    };
    let marker = ServerControl::GameEvent {
        kind: 1,
        payload: vec![],
    };
    control.answer(&[redirect, marker]).await;
    control
}

/// The old node for tests that only need to know how its connection ended.
fn old_node(new: SocketAddr, end: oneshot::Sender<OldEnd>) -> TestServer {
    let end = Mutex::new(Some(end));
    TestServer::start(move |_, conn| {
        let end = end.lock().expect("lock").take().expect("one session");
        async move {
            let mut control = old_node_session(&conn, new).await;
            let next = control.next().await;
            let _ = end.send((next, conn.closed().await));
        }
    })
}

/// A new node that answers every `Hello` with `answer` and waits for the client to close.
fn answering(answer: ServerControl) -> TestServer {
    TestServer::start(move |_, conn| {
        let answer = answer.clone();
        async move {
            let (mut control, token) = Control::accept(&conn).await;
            assert_eq!(token, "for-new");
            control.answer(&[answer]).await;
            conn.closed().await;
        }
    })
}

/// Starts the [`old_node`] redirecting to `new`, connects a client through it and
/// plays until the old node has sent the redirect. The old node reports how the
/// session ended there.
async fn connect_until_redirected(
    new: &TestServer,
) -> (TestServer, Client, oneshot::Receiver<OldEnd>) {
    let (end_tx, end_rx) = oneshot::channel();
    let old = old_node(new.addr, end_tx);
    let mut client = within("connect", Client::connect(config(&old, new)))
        .await
        .expect("connects");
    play_until_redirected(&mut client).await;
    (old, client, end_rx)
}

fn config(old: &TestServer, new: &TestServer) -> ClientConfig {
    let mut config = old.config("tok");
    config.trust = Trust::PinnedCert(vec![old.cert.clone(), new.cert.clone()]);
    config
}

/// The game's side of [`old_node_session`]: sees its player, sends two inputs, and
/// reads up to the event that follows the `Redirect`.
async fn play_until_redirected(client: &mut Client) {
    let spawned = within("spawn", client.next_event()).await;
    assert_eq!(
        spawned,
        Some(Event::Spawned {
            id: NetId(7),
            kind: 1
        })
    );
    assert_eq!(client.send_input(Vec2::new(1.0, 0.0), 0).expect("input"), 1);
    assert_eq!(client.send_input(Vec2::new(1.0, 0.0), 0).expect("input"), 2);
    let marker = within("marker", client.next_event()).await;
    assert_eq!(
        marker,
        Some(Event::GameEvent {
            kind: 1,
            payload: vec![]
        })
    );
}

/// Every event up to the end of the session.
async fn events_to_the_end(client: &mut Client) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(event) = within("events", client.next_event()).await {
        events.push(event);
    }
    events
}

fn assert_closed_with(closed: &quinn::ConnectionError, reason: &[u8]) {
    let quinn::ConnectionError::ApplicationClosed(close) = closed else {
        panic!("expected an application close, got {closed:?}");
    };
    assert_eq!(close.error_code, quinn::VarInt::from_u32(0));
    assert_eq!(&close.reason[..], reason);
}

/// The new node of the main test: welcomes player 7 in zone 2, expects the re-sent
/// inputs with the acknowledgement, then the game event, then sends a delta against
/// the snapshot the old node sent.
async fn new_node_session(conn: quinn::Connection, done: oneshot::Sender<()>) {
    let (mut control, token) = Control::accept(&conn).await;
    assert_eq!(token, "for-new");
    control.answer(&[welcome_as(7, 2)]).await;
    read_inputs_until(&conn, |ack, inputs| ack.covers(1) && seqs(inputs) == [2, 1]).await;
    let event = ClientControl::GameEvent {
        kind: 5,
        payload: b"hi".to_vec(),
    };
    assert_eq!(control.next().await, Some(event));
    let moved = moved_record();
    conn.send_datagram(snapshot(2, 2, vec![moved]))
        .expect("send");
    assert_eq!(control.next().await, Some(ClientControl::Goodbye));
    conn.close(quinn::VarInt::from_u32(0), b"goodbye");
    let _ = done.send(());
}

#[tokio::test]
async fn a_mid_session_redirect_moves_the_session_and_keeps_the_replica() {
    let (done_tx, done_rx) = oneshot::channel();
    let done_tx = Mutex::new(Some(done_tx));
    let new = TestServer::start(move |_, conn| {
        let done = done_tx.lock().expect("lock").take().expect("one session");
        new_node_session(conn, done)
    });
    let (_old, mut client, end_rx) = connect_until_redirected(&new).await;
    assert!(client.is_moving(), "the redirect starts a move at once");
    // A reliable send waits for the move, so it reaches the node holding the player.
    within("game event", client.send_game_event(5, b"hi".to_vec()))
        .await
        .expect("sent on the new connection");
    assert!(!client.is_moving());
    assert_eq!(client.remote_address(), new.addr);
    assert_eq!((client.player(), client.zone()), (NetId(7), ZoneId(2)));
    let counts = (
        client.moves(),
        client.node_changes(),
        client.redirects_followed(),
        client.reconnects(),
    );
    assert_eq!(counts, (1, 1, 1, 0));
    let zone = within("zone", client.next_event()).await;
    assert_eq!(zone, Some(Event::ZoneChanged { zone: ZoneId(2) }));
    // A delta against the old node's snapshot: the replica carried on.
    let updated = within("update", client.next_event()).await;
    assert_eq!(updated, Some(Event::Updated { id: NetId(7) }));
    assert_eq!(
        client.replica().get(NetId(7)).map(|e| e.position),
        Some(Vec2::new(2.0, 1.0))
    );
    assert_eq!(client.send_input(Vec2::ZERO, 0).expect("input"), 3);
    within("close", client.close()).await;
    within("new node saw goodbye", done_rx)
        .await
        .expect("script finished");
    let (next, closed) = within("old node closed", end_rx).await.expect("sent");
    assert_eq!(next, None, "nothing more was sent to the old node");
    assert_closed_with(&closed, b"moved");
}

#[tokio::test]
async fn loading_is_retried_and_the_old_node_closing_meanwhile_does_not_end_the_session() {
    let loading_sent = Arc::new(Notify::new());
    let loading_for_new = Arc::clone(&loading_sent);
    let new = TestServer::start(move |n, conn| {
        let loading_sent = Arc::clone(&loading_for_new);
        async move {
            let (mut control, token) = Control::accept(&conn).await;
            assert_eq!(token, "for-new");
            if n == 0 {
                let loading = ServerControl::Loading {
                    retry_after_ms: 200,
                };
                control.answer(&[loading]).await;
                loading_sent.notify_one();
            } else {
                control.answer(&[welcome()]).await;
                conn.send_datagram(snapshot(2, 2, vec![])).expect("send");
            }
            conn.closed().await;
        }
    });
    let new_addr = new.addr;
    let old = TestServer::start(move |_, conn| {
        let loading_sent = Arc::clone(&loading_sent);
        async move {
            let _control = old_node_session(&conn, new_addr).await;
            // The old node ends its side while the client waits to ask again.
            loading_sent.notified().await;
            let code = quinn::VarInt::from_u32(ErrorCode::ZoneMoved as u32);
            conn.close(code, b"handed over");
        }
    });
    let mut client = within("connect", Client::connect(config(&old, &new)))
        .await
        .expect("connects");
    play_until_redirected(&mut client).await;
    within("snapshot from the new node", client.wait_snapshot())
        .await
        .expect("the session goes on");
    assert_eq!(new.accepted(), 2, "asked again after Loading");
    assert_eq!(client.remote_address(), new.addr);
    assert_eq!(client.moves(), 1);
    assert_eq!(client.disconnect_reason(), None);
    let mut events = Vec::new();
    client.drain_events(&mut events);
    assert_eq!(events, vec![], "same zone: no ZoneChanged; no Disconnected");
}

#[tokio::test]
async fn a_refused_move_ends_the_session_with_a_reconnectable_move_failed() {
    let new = answering(ServerControl::Error {
        code: ErrorCode::RedirectExpired,
        message: "too late".into(),
    });
    let (_old, mut client, end_rx) = connect_until_redirected(&new).await;
    let events = events_to_the_end(&mut client).await;
    let Some(Event::Disconnected(reason)) = events.last() else {
        panic!("the session must end with Disconnected: {events:?}");
    };
    assert_eq!(
        (reason.code, reason.kind),
        (ErrorCode::RedirectExpired, DisconnectKind::MoveFailed)
    );
    assert!(reason.message.contains("too late"), "{reason}");
    assert!(reason.can_reconnect());
    assert_eq!((client.moves(), client.reconnects()), (0, 0));
    let (_, closed) = within("old node closed", end_rx).await.expect("sent");
    assert_closed_with(&closed, b"move failed");
}

#[tokio::test]
async fn a_failed_move_falls_back_to_a_new_session_when_reconnecting_by_itself() {
    // The new node welcomes someone else: not this session.
    let new = answering(welcome_as(8, 2));
    let new_addr = new.addr;
    let old = TestServer::start(move |n, conn| async move {
        if n == 0 {
            let _control = old_node_session(&conn, new_addr).await;
        } else {
            let (mut control, token) = Control::accept(&conn).await;
            assert_eq!(token, "tok", "a new session presents the session token");
            control.answer(&[welcome_as(9, 2)]).await;
        }
        conn.closed().await;
    });
    let mut config = config(&old, &new);
    config.auto_reconnects = 1;
    let mut client = within("connect", Client::connect(config))
        .await
        .expect("connects");
    play_until_redirected(&mut client).await;
    let ended = within("disconnect", client.next_event()).await;
    let Some(Event::Disconnected(reason)) = ended else {
        panic!("expected Disconnected, got {ended:?}");
    };
    assert_eq!(reason.kind, DisconnectKind::MoveFailed);
    let back = within("reconnect", client.next_event()).await;
    assert_eq!(
        back,
        Some(Event::Reconnected {
            player: NetId(9),
            zone: ZoneId(2)
        })
    );
    assert_eq!((client.moves(), client.reconnects()), (0, 1));
    assert_eq!(client.remote_address(), old.addr);
    assert_eq!(new.accepted(), 1);
}

#[test]
fn a_blocking_client_moves_while_the_game_polls() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (new, old) = runtime.block_on(async {
        let new = TestServer::start(|_, conn| async move {
            let (mut control, _) = Control::accept(&conn).await;
            control.answer(&[welcome_as(7, 2)]).await;
            conn.closed().await;
        });
        let new_addr = new.addr;
        let old = TestServer::start(move |_, conn| async move {
            let (mut control, _) = Control::accept(&conn).await;
            control.answer(&[welcome()]).await;
            conn.send_datagram(snapshot(1, 0, vec![spawn_record()]))
                .expect("send");
            read_inputs_until(&conn, |ack, _| ack.covers(1)).await;
            let redirect = ServerControl::Redirect {
                addr: new_addr.to_string(),
                token: "for-new".into(),
            };
            control.answer(&[redirect]).await;
            conn.closed().await;
        });
        (new, old)
    });
    let mut client = BlockingClient::connect(config(&old, &new)).expect("connects");
    let started = std::time::Instant::now();
    let mut events = Vec::new();
    // One game frame per pass: poll, send an input, wait for the next frame.
    while !events.contains(&Event::ZoneChanged { zone: ZoneId(2) }) {
        assert!(started.elapsed() < WAIT, "no move: {events:?}");
        client.poll_events(&mut events);
        client.send_input(Vec2::new(0.0, 1.0), 0).expect("input");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(client.moves(), 1);
    assert_eq!(client.remote_address(), new.addr);
    assert!(client.replica().contains(NetId(7)));
    client.close();
    drop((old, new));
}
