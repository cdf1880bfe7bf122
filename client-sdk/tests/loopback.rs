//! Loopback tests of the SDK against tiny scripted QUIC servers on 127.0.0.1:0: the
//! handshake answers (Welcome, Busy, Redirect, Error), snapshot replication with
//! acknowledgements, input redundancy, game events, closes, and certificate pinning.

use std::time::Duration;
use tokio::sync::oneshot;
use zonemesh_client::{
    BlockingClient, Client, ClientError, DisconnectKind, ErrorCode, Event, NetId, Trust, Vec2,
    ZoneId,
};
use zonemesh_shared::control::{ClientControl, ServerControl};

mod common;

use common::{
    Control, TestServer, WAIT, moved_record, read_inputs_until, seqs, snapshot, spawn_record,
    welcome, within,
};

/// The main session script: replication with acks, inputs with redundancy, game
/// events both ways, and a polite close.
async fn play_session(conn: quinn::Connection, done: oneshot::Sender<()>) {
    let (mut control, token) = Control::accept(&conn).await;
    assert_eq!(token, "tok");
    // ZoneChanged in the same write as Welcome: the SDK must keep the leftover bytes.
    control
        .answer(&[welcome(), ServerControl::ZoneChanged { zone: ZoneId(2) }])
        .await;
    conn.send_datagram(snapshot(1, 0, vec![spawn_record()]))
        .expect("send");
    // No input from the game yet: the SDK acknowledges on its own.
    read_inputs_until(&conn, |ack, inputs| inputs.is_empty() && ack.covers(1)).await;
    let moved = moved_record();
    conn.send_datagram(snapshot(2, 0, vec![moved]))
        .expect("send");
    read_inputs_until(&conn, |_, inputs| seqs(inputs) == [3, 2, 1]).await;
    conn.send_datagram(snapshot(3, 2, vec![])).expect("send");
    read_inputs_until(&conn, |ack, inputs| seqs(inputs) == [4, 3] && ack.covers(3)).await;
    let event = control.next().await;
    assert_eq!(
        event,
        Some(ClientControl::GameEvent {
            kind: 5,
            payload: b"hi".to_vec()
        })
    );
    control
        .answer(&[ServerControl::GameEvent {
            kind: 9,
            payload: vec![1, 2],
        }])
        .await;
    assert_eq!(control.next().await, Some(ClientControl::Goodbye));
    conn.close(quinn::VarInt::from_u32(0), b"goodbye");
    let _ = done.send(());
}

#[tokio::test]
async fn session_replicates_acknowledges_sends_inputs_and_closes() {
    let (done_tx, done_rx) = oneshot::channel();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let server = TestServer::start(move |_, conn| {
        let done = done_tx.lock().expect("lock").take().expect("one session");
        play_session(conn, done)
    });
    let mut client = within("connect", Client::connect(server.config("tok")))
        .await
        .expect("connects");
    assert_eq!((client.player(), client.tick_hz()), (NetId(7), 20));
    assert_eq!(
        client.zone(),
        ZoneId(2),
        "ZoneChanged sent with Welcome applied"
    );
    let first = within("events", client.next_event()).await;
    assert_eq!(first, Some(Event::ZoneChanged { zone: ZoneId(2) }));
    let spawned = within("spawn", client.next_event()).await;
    assert_eq!(
        spawned,
        Some(Event::Spawned {
            id: NetId(7),
            kind: 1
        })
    );
    assert_eq!(
        client.replica().get(NetId(7)).map(|e| e.position),
        Some(Vec2::new(1.0, 1.0))
    );
    // The delta in snapshot 2 only comes after the SDK's own acknowledgement.
    let updated = within("update", client.next_event()).await;
    assert_eq!(updated, Some(Event::Updated { id: NetId(7) }));
    assert_eq!(
        client.replica().get(NetId(7)).map(|e| e.position),
        Some(Vec2::new(2.0, 1.0))
    );
    for expected in 1..=3 {
        assert_eq!(
            client.send_input(Vec2::new(1.0, 0.0), 0).expect("input"),
            expected
        );
    }
    within("snapshot 3", client.wait_snapshot())
        .await
        .expect("open");
    assert_eq!(client.stats().last_input_ack, 2);
    assert_eq!(client.send_input(Vec2::ZERO, 1).expect("input"), 4);
    client
        .send_game_event(5, b"hi".to_vec())
        .await
        .expect("event sent");
    let event = within("game event", client.next_event()).await;
    assert_eq!(
        event,
        Some(Event::GameEvent {
            kind: 9,
            payload: vec![1, 2]
        })
    );
    let stats = client.stats();
    assert_eq!(
        (stats.snapshots, stats.inputs_sent, stats.decode_errors),
        (3, 4, 0)
    );
    assert!(stats.bytes_down > 0 && stats.bytes_up > 0);
    within("close", client.close()).await;
    within("server saw goodbye", done_rx)
        .await
        .expect("script finished");
}

#[tokio::test]
async fn busy_answer_is_retried_and_the_refused_connection_closed_by_the_client() {
    let server = TestServer::start(|n, conn| async move {
        let (mut control, _) = Control::accept(&conn).await;
        if n == 0 {
            control
                .answer(&[ServerControl::Busy { retry_after_ms: 30 }])
                .await;
            // The server waits for the client to close after reading the answer.
            let closed = conn.closed().await;
            assert!(matches!(
                closed,
                quinn::ConnectionError::ApplicationClosed(_)
            ));
        } else {
            control.answer(&[welcome()]).await;
            conn.closed().await;
        }
    });
    let client = within("connect", Client::connect(server.config("tok")))
        .await
        .expect("second attempt welcomed");
    assert_eq!(server.accepted(), 2);
    drop(client);
}

#[tokio::test]
async fn busy_until_the_deadline_gives_up_with_the_last_error() {
    let server = TestServer::start(|_, conn| async move {
        let (mut control, _) = Control::accept(&conn).await;
        control
            .answer(&[ServerControl::Loading {
                retry_after_ms: 100,
            }])
            .await;
        conn.closed().await;
    });
    let mut config = server.config("tok");
    config.connect_deadline = Duration::from_millis(600);
    let err = within("give up", Client::connect(config))
        .await
        .expect_err("never welcomed");
    match err {
        ClientError::DeadlineExceeded { attempts, last } => {
            assert!(attempts >= 2, "retried: {attempts}");
            assert!(matches!(*last, ClientError::Unavailable(_)), "{last}");
        }
        other => panic!("expected DeadlineExceeded, got {other}"),
    }
}

#[tokio::test]
async fn redirect_is_followed_with_the_new_token() {
    let target = TestServer::start(|_, conn| async move {
        let (mut control, token) = Control::accept(&conn).await;
        assert_eq!(token, "for-b");
        control.answer(&[welcome()]).await;
        conn.closed().await;
    });
    let target_addr = target.addr;
    let redirector = TestServer::start(move |_, conn| async move {
        let (mut control, _) = Control::accept(&conn).await;
        let addr = target_addr.to_string();
        let token = "for-b".to_owned();
        control
            .answer(&[ServerControl::Redirect { addr, token }])
            .await;
        conn.closed().await;
    });
    // Both test servers use their own certificate; pin both.
    let mut config = redirector.config("for-a");
    config.trust = Trust::PinnedCert(vec![redirector.cert.clone(), target.cert.clone()]);
    let client = within("connect", Client::connect(config))
        .await
        .expect("welcomed after redirect");
    assert_eq!(client.remote_address(), target.addr);
    assert_eq!(target.accepted(), 1);
}

#[tokio::test]
async fn error_answer_is_rejected_without_retrying() {
    let server = TestServer::start(|_, conn| async move {
        let (mut control, _) = Control::accept(&conn).await;
        let error = ServerControl::Error {
            code: ErrorCode::AuthFailed,
            message: "token rejected".into(),
        };
        control.answer(&[error]).await;
        conn.closed().await;
    });
    let err = within("reject", Client::connect(server.config("bad")))
        .await
        .expect_err("rejected");
    assert!(
        matches!(&err, ClientError::Rejected { code: ErrorCode::AuthFailed, message } if message == "token rejected"),
        "{err}"
    );
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn unpinned_certificate_fails_fast_with_a_tls_error() {
    let server = TestServer::start(|_, conn| async move {
        conn.closed().await;
    });
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let mut config = server.config("tok");
    config.trust = Trust::PinnedCert(vec![other.cert.der().clone()]);
    let err = within("tls failure", Client::connect(config))
        .await
        .expect_err("certificate not pinned");
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    assert_eq!(server.accepted(), 1, "TLS failures are not retried");
}

#[tokio::test]
async fn server_close_code_becomes_disconnected() {
    let server = TestServer::start(|_, conn| async move {
        let (mut control, _) = Control::accept(&conn).await;
        control.answer(&[welcome()]).await;
        conn.send_datagram(snapshot(1, 0, vec![spawn_record()]))
            .expect("send");
        // Close once the client acknowledged the snapshot, so it is surely in session.
        read_inputs_until(&conn, |ack, _| ack.covers(1)).await;
        conn.close(
            quinn::VarInt::from_u32(ErrorCode::Replaced as u32),
            b"the player connected again",
        );
    });
    let mut client = within("connect", Client::connect(server.config("tok")))
        .await
        .expect("connects");
    let mut last = None;
    while let Some(event) = within("events", client.next_event()).await {
        last = Some(event);
    }
    let Some(Event::Disconnected(reason)) = last else {
        panic!("last event must be Disconnected, got {last:?}");
    };
    assert_eq!(reason.code, ErrorCode::Replaced);
    assert_eq!(reason.kind, DisconnectKind::Server);
    assert_eq!(reason.message, "the player connected again");
    assert!(matches!(
        client.send_input(Vec2::ZERO, 0),
        Err(ClientError::Closed { .. })
    ));
    assert_eq!(within("ended", client.next_event()).await, None);
}

#[test]
fn blocking_client_polls_without_an_async_caller() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(async {
        TestServer::start(|_, conn| async move {
            let (mut control, _) = Control::accept(&conn).await;
            control.answer(&[welcome()]).await;
            let mut seq = 0;
            // Stream snapshots until the client leaves.
            while conn.close_reason().is_none() {
                seq += 1;
                let records = if seq == 1 {
                    vec![spawn_record()]
                } else {
                    vec![]
                };
                let _ = conn.send_datagram(snapshot(seq, 0, records));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    let mut client = BlockingClient::connect(server.config("tok")).expect("connects");
    assert_eq!(client.player(), NetId(7));
    let started = std::time::Instant::now();
    let mut events = Vec::new();
    while !events.contains(&Event::Spawned {
        id: NetId(7),
        kind: 1,
    }) {
        assert!(started.elapsed() < WAIT, "no spawn: {events:?}");
        client.poll_events(&mut events);
        client.send_input(Vec2::new(0.0, 1.0), 0).expect("input");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(client.replica().contains(NetId(7)));
    assert!(client.stats().snapshots >= 1);
    client.close();
    drop(server);
}

#[tokio::test]
async fn clients_can_share_one_endpoint() {
    let server = TestServer::start(|n, conn| async move {
        let (mut control, _) = Control::accept(&conn).await;
        let player = NetId(100 + n as u64);
        let welcome = ServerControl::Welcome {
            player,
            zone: ZoneId(1),
            tick_hz: 20,
        };
        control.answer(&[welcome]).await;
        assert_eq!(control.next().await, Some(ClientControl::Goodbye));
        conn.close(quinn::VarInt::from_u32(0), b"goodbye");
    });
    let endpoint = Client::bind_endpoint(server.addr).expect("endpoint");
    let a = within("a", Client::connect_with(&endpoint, server.config("a")))
        .await
        .expect("a connects");
    let b = within("b", Client::connect_with(&endpoint, server.config("b")))
        .await
        .expect("b connects");
    assert_ne!(a.player(), b.player());
    assert_eq!(endpoint.open_connections(), 2);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn oversized_control_frame_ends_the_session_with_frame_too_large() {
    let (closed_tx, closed_rx) = oneshot::channel();
    let closed_tx = std::sync::Mutex::new(Some(closed_tx));
    let server = TestServer::start(move |_, conn| {
        let closed = closed_tx.lock().expect("lock").take().expect("one session");
        async move {
            let (mut control, _) = Control::accept(&conn).await;
            control.answer(&[welcome()]).await;
            // A varint length prefix of 1 MiB: far above CONTROL_FRAME_MAX.
            control
                .send
                .write_all(&[0x80, 0x80, 0x40])
                .await
                .expect("write");
            let _ = closed.send(conn.closed().await);
        }
    });
    let mut client = within("connect", Client::connect(server.config("tok")))
        .await
        .expect("connects");
    let event = within("disconnect", client.next_event()).await;
    let Some(Event::Disconnected(reason)) = event else {
        panic!("expected Disconnected, got {event:?}");
    };
    assert_eq!(
        (reason.code, reason.kind),
        (ErrorCode::FrameTooLarge, DisconnectKind::Local)
    );
    let seen = within("server sees close", closed_rx).await.expect("sent");
    let quinn::ConnectionError::ApplicationClosed(close) = seen else {
        panic!("expected an application close, got {seen:?}");
    };
    assert_eq!(
        close.error_code,
        quinn::VarInt::from_u32(ErrorCode::FrameTooLarge as u32)
    );
}
