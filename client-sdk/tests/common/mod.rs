//! Shared by the SDK's loopback tests: tiny scripted QUIC servers on 127.0.0.1:0 (each
//! accepted connection runs a handler), the server side of the control stream and of
//! datagrams, and the test deadline.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use zonemesh_client::{ClientConfig, NetId, Trust, ZoneId};
use zonemesh_shared::control::{ClientControl, FrameDecoder, ServerControl};
use zonemesh_shared::datagram::{
    Ack, ClientDatagram, EntityRecord, InputFrame, PosField, Snapshot, SnapshotHeader,
};
use zonemesh_shared::quant::QPos;
use zonemesh_shared::{ALPN, PROTOCOL_VERSION};

/// Longest any step may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

type Handler =
    Arc<dyn Fn(usize, quinn::Connection) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A scripted server: every accepted connection runs `handler(index, connection)`.
pub struct TestServer {
    endpoint: quinn::Endpoint,
    pub addr: SocketAddr,
    pub cert: CertificateDer<'static>,
    accepted: Arc<AtomicUsize>,
}

impl TestServer {
    pub fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(usize, quinn::Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |n, conn| Box::pin(handler(n, conn)));
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
        let cert = certified.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("identity");
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic tls");
        let config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let endpoint =
            quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = endpoint.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        tokio::spawn(accept_loop(
            endpoint.clone(),
            handler,
            Arc::clone(&accepted),
        ));
        Self {
            endpoint,
            addr,
            cert,
            accepted,
        }
    }

    pub fn config(&self, token: &str) -> ClientConfig {
        let mut config =
            ClientConfig::new(self.addr, Trust::PinnedCert(vec![self.cert.clone()]), token);
        config.connect_deadline = WAIT;
        config.backoff_initial = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(50);
        config
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"test over");
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, handler: Handler, accepted: Arc<AtomicUsize>) {
    while let Some(incoming) = endpoint.accept().await {
        let n = accepted.fetch_add(1, Ordering::SeqCst);
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                handler(n, conn).await;
            }
        });
    }
}

/// The server side of the control stream.
pub struct Control {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub decoder: FrameDecoder,
}

impl Control {
    /// Accepts the client's stream and reads `Hello`; returns its token.
    pub async fn accept(conn: &quinn::Connection) -> (Self, String) {
        let (send, recv) = conn.accept_bi().await.expect("control stream");
        let mut control = Self {
            send,
            recv,
            decoder: FrameDecoder::default(),
        };
        match control.next().await {
            Some(ClientControl::Hello { version, token }) => {
                assert_eq!(version, PROTOCOL_VERSION);
                (control, token)
            }
            other => panic!("expected hello, got {other:?}"),
        }
    }

    pub async fn next(&mut self) -> Option<ClientControl> {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(body) = self.decoder.next_frame().expect("frame") {
                return Some(ClientControl::decode(&body).expect("client control"));
            }
            let n = self.recv.read(&mut buf).await.ok()??;
            self.decoder.push(&buf[..n]);
        }
    }

    pub async fn answer(&mut self, msgs: &[ServerControl]) {
        let bytes: Vec<u8> = msgs.iter().flat_map(ServerControl::to_frame).collect();
        self.send.write_all(&bytes).await.expect("write answer");
    }
}

pub fn welcome() -> ServerControl {
    ServerControl::Welcome {
        player: NetId(7),
        zone: ZoneId(1),
        tick_hz: 20,
    }
}

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A snapshot datagram (tick = 100 + seq).
pub fn snapshot(seq: u32, input_ack: u32, records: Vec<EntityRecord>) -> bytes::Bytes {
    let header = SnapshotHeader {
        seq,
        tick: 100 + u64::from(seq),
        input_ack,
    };
    Snapshot { header, records }.encode().into()
}

/// Entity 7 (the player in `welcome()`) coming into view at (1, 1).
pub fn spawn_record() -> EntityRecord {
    EntityRecord::Update {
        id: NetId(7),
        spawn_kind: Some(1),
        pos: PosField::Absolute(QPos { x: 16, y: 16 }),
        components: vec![],
    }
}

/// The player of [`spawn_record`] 16 quantised units east of the previous snapshot.
pub fn moved_record() -> EntityRecord {
    EntityRecord::Update {
        id: NetId(7),
        spawn_kind: None,
        pos: PosField::Delta {
            baseline_back: 1,
            dx: 16,
            dy: 0,
        },
        components: vec![],
    }
}

/// Reads input datagrams until one satisfies `check`.
pub async fn read_inputs_until(
    conn: &quinn::Connection,
    mut check: impl FnMut(&Ack, &[InputFrame]) -> bool,
) {
    loop {
        let bytes = conn.read_datagram().await.expect("datagram");
        let ClientDatagram::Input { ack, inputs } =
            ClientDatagram::decode(&bytes).expect("input datagram");
        if check(&ack, &inputs) {
            return;
        }
    }
}

/// The sequence numbers of a datagram's inputs, newest first.
pub fn seqs(inputs: &[InputFrame]) -> Vec<u32> {
    inputs.iter().map(|i| i.seq).collect()
}
