//! Bad clients over real QUIC: forged and expired tokens, malformed datagrams,
//! oversized control frames and input floods each end only the offending session,
//! while a well-behaved player keeps receiving snapshots; a full server answers
//! `busy` and the SDK retries into a freed slot.

mod common;

use bytes::Bytes;
use common::{TestServer, TestWorld, drive, wait_own_position, within};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zonemesh_client::quinn::{self, ConnectionError};
use zonemesh_client::{Client, ClientConfig, ClientError, ErrorCode, Vec2, mint_token};
use zonemesh_server::NetLimits;
use zonemesh_shared::PROTOCOL_VERSION;
use zonemesh_shared::control::{ClientControl, FrameDecoder, ServerControl};
use zonemesh_shared::datagram::{Ack, ClientDatagram, InputFrame};
use zonemesh_shared::token::{self, Claims};

/// A hand-driven QUIC session speaking the protocol (or not) byte by byte.
struct RawSession {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
}

impl RawSession {
    /// Connects with the SDK's TLS and transport settings and completes `Hello`.
    async fn join(config: &ClientConfig) -> Self {
        let (endpoint, conn) = common::raw_handshake(config).await;
        let (mut send, mut recv) = conn.open_bi().await.expect("control stream");
        let hello = ClientControl::Hello {
            version: PROTOCOL_VERSION,
            token: config.token.clone(),
        };
        send.write_all(&hello.to_frame()).await.expect("hello");
        let welcome = within("welcome", read_control(&mut recv)).await;
        assert!(
            matches!(welcome, ServerControl::Welcome { .. }),
            "{welcome:?}"
        );
        Self {
            _endpoint: endpoint,
            conn,
            send,
        }
    }

    /// Waits for the server to close the connection and returns its code.
    async fn closed_with(&self) -> ErrorCode {
        match within("server closes the connection", self.conn.closed()).await {
            ConnectionError::ApplicationClosed(close) => {
                let code = u16::try_from(close.error_code.into_inner()).expect("u16 code");
                ErrorCode::from_u16(code)
            }
            other => panic!("closed without an application code: {other:?}"),
        }
    }
}

async fn read_control(recv: &mut quinn::RecvStream) -> ServerControl {
    let mut decoder = FrameDecoder::default();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(body) = decoder.next_frame().expect("valid frame") {
            return ServerControl::decode(&body).expect("valid message");
        }
        let n = recv.read(&mut buf).await.expect("read").expect("open");
        decoder.push(&buf[..n]);
    }
}

/// A player who keeps walking and must keep receiving snapshots throughout.
struct Bystander {
    client: Client,
}

impl Bystander {
    async fn join(server: &TestServer) -> Self {
        let mut client = server.connect("bystander").await;
        wait_own_position(&mut client).await;
        Self { client }
    }

    /// Plays on until ten more snapshots arrived.
    async fn still_playing(&mut self) {
        let before = self.client.stats().snapshots;
        drive(
            &mut self.client,
            Some(Vec2::new(0.5, 0.0)),
            "bystander keeps receiving snapshots",
            |c, _| c.stats().snapshots >= before + 10,
        )
        .await;
        assert!(self.client.disconnect_reason().is_none());
    }
}

fn input_datagram(seq: u32) -> Bytes {
    let datagram = ClientDatagram::Input {
        ack: Ack::default(),
        inputs: vec![InputFrame {
            seq,
            velocity: Vec2::new(1.0, 0.0),
            buttons: 0,
        }],
    };
    Bytes::from(datagram.encode())
}

#[tokio::test]
async fn malformed_datagram_closes_only_that_connection() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut bystander = Bystander::join(&server).await;
    let raw = RawSession::join(&server.client_config("mallory")).await;

    raw.conn
        .send_datagram(Bytes::from_static(&[0xff, 0x00, 0x13, 0x37]))
        .expect("datagram sent");
    assert_eq!(raw.closed_with().await, ErrorCode::ProtocolViolation);
    bystander.still_playing().await;
    server
        .wait_status("mallory gone", |s| s.sessions == 1)
        .await;
    assert_eq!(server.status().closes_with(ErrorCode::ProtocolViolation), 1);
}

#[tokio::test]
async fn oversized_control_frame_closes_only_that_connection() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut bystander = Bystander::join(&server).await;
    let mut raw = RawSession::join(&server.client_config("mallory")).await;

    // A length prefix announcing a 1 MiB frame: refused as soon as it is read.
    let mut announce = Vec::new();
    let mut w = zonemesh_shared::codec::Writer::with_capacity(8);
    w.varint(1 << 20);
    announce.extend_from_slice(&w.into_vec());
    announce.extend_from_slice(&[0u8; 64]);
    raw.send.write_all(&announce).await.expect("written");
    assert_eq!(raw.closed_with().await, ErrorCode::FrameTooLarge);
    bystander.still_playing().await;
}

#[tokio::test]
async fn malformed_control_frame_closes_only_that_connection() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut bystander = Bystander::join(&server).await;
    let mut raw = RawSession::join(&server.client_config("mallory")).await;

    let garbage = zonemesh_shared::control::frame(&[0xee, 0x01, 0x02]);
    raw.send.write_all(&garbage).await.expect("written");
    assert_eq!(raw.closed_with().await, ErrorCode::ProtocolViolation);
    bystander.still_playing().await;
}

#[tokio::test]
async fn input_flood_closes_only_that_connection() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut bystander = Bystander::join(&server).await;
    let raw = RawSession::join(&server.client_config("flooder")).await;

    // Far beyond 120 inputs/s: the excess is dropped, then the session is ended.
    let flood = async {
        for seq in 0..5_000u32 {
            if raw
                .conn
                .send_datagram_wait(input_datagram(seq))
                .await
                .is_err()
            {
                return; // Closed by the server mid-flood, as expected.
            }
        }
    };
    within("flood sent", flood).await;
    assert_eq!(raw.closed_with().await, ErrorCode::InputFlood);
    bystander.still_playing().await;
}

#[tokio::test]
async fn forged_and_expired_tokens_are_rejected() {
    let server = TestServer::start(TestWorld::default()).await;
    let mut bystander = Bystander::join(&server).await;

    let mut forged = server.client_config("forger");
    forged.token = mint_token(&[7u8; 32], "forger", Duration::from_secs(60)).expect("token");
    assert_rejected_auth(Client::connect(forged).await);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = Claims {
        player: "latecomer".into(),
        expires_unix_s: now - 60,
        nonce: 1,
    };
    let secret = zonemesh_client::read_dev_secret(
        &server.data.path().join(zonemesh_shared::dev_files::SECRET),
    )
    .expect("secret");
    let mut expired = server.client_config("latecomer");
    expired.token = token::sign(&secret, &claims).expect("signed");
    assert_rejected_auth(Client::connect(expired).await);

    let mut garbage = server.client_config("x");
    garbage.token = "not a token".into();
    assert_rejected_auth(Client::connect(garbage).await);

    bystander.still_playing().await;
    assert_eq!(server.status().sessions, 1);
    server
        .wait_status("three refusals counted", |s| {
            s.closes_with(ErrorCode::AuthFailed) == 3
        })
        .await;
}

fn assert_rejected_auth(result: Result<Client, ClientError>) {
    match result {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, ErrorCode::AuthFailed),
        Err(other) => panic!("expected an AuthFailed rejection, got {other}"),
        Ok(_) => panic!("a bad token was accepted"),
    }
}

#[tokio::test]
async fn a_full_server_answers_busy_and_the_sdk_retries_into_a_freed_slot() {
    let limits = NetLimits {
        max_connections: 1,
        busy_retry_after: Duration::from_millis(100),
        ..NetLimits::default()
    };
    let server = TestServer::start(TestWorld {
        limits,
        ..TestWorld::default()
    })
    .await;
    let mut first = server.connect("first").await;
    wait_own_position(&mut first).await;

    let mut config = server.client_config("second");
    config.connect_deadline = Duration::from_secs(15);
    let second = tokio::spawn(Client::connect(config));
    server
        .wait_status("the second player was told busy", |s| s.busy_answers > 0)
        .await;
    assert!(
        !second.is_finished(),
        "still retrying while the server is full"
    );

    first.close().await;
    let mut second = within("second gets in", second)
        .await
        .expect("task")
        .expect("second connects once a slot is free");
    wait_own_position(&mut second).await;
    assert_eq!(server.status().sessions, 1);
}

/// A UDP relay between one client and the server that can stop delivering the
/// server's packets, as a client whose link has stalled would.
struct StallableLink {
    addr: SocketAddr,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StallableLink {
    async fn start(server: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        use tokio::net::UdpSocket;
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        back.connect(server).await.expect("connect");
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let stalled = Arc::new(AtomicBool::new(false));
        let upstream = {
            let (front, back, client) = (front.clone(), back.clone(), client.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().expect("lock") = Some(from);
                    let _ = back.send(&buf[..n]).await;
                }
            })
        };
        let downstream = {
            let (front, stalled) = (front.clone(), stalled.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let to = *client.lock().expect("lock");
                    if let (false, Some(to)) = (stalled.load(Ordering::Relaxed), to) {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            })
        };
        Self {
            addr: front.local_addr().expect("addr"),
            stalled,
            tasks: vec![upstream, downstream],
        }
    }

    fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for StallableLink {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

#[tokio::test]
async fn a_client_that_stops_taking_snapshots_is_disconnected_as_slow() {
    let limits = NetLimits {
        slow_client_grace: Duration::from_millis(500),
        ..NetLimits::default()
    };
    // Many NPCs in view, so snapshots fill the stalled connection's send buffer quickly.
    let server = TestServer::start(TestWorld {
        npcs: 400,
        limits,
        ..TestWorld::default()
    })
    .await;
    let mut bystander = Bystander::join(&server).await;
    let link = StallableLink::start(server.addr).await;
    let mut config = server.client_config("stalled");
    config.server = link.addr;
    let mut stalled = Client::connect(config)
        .await
        .expect("connects via the link");
    wait_own_position(&mut stalled).await;

    link.stall();
    server
        .wait_status("the stalled client is disconnected as slow", |s| {
            s.closes_with(ErrorCode::SlowClient) == 1 && s.sessions == 1
        })
        .await;
    bystander.still_playing().await;
    drop(stalled);
}
