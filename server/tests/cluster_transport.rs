//! The node-to-node transport over real QUIC on loopback: nodes holding the cluster
//! secret exchange gossip and messages and know who sent them; a node with another
//! secret is refused with a reason and delivers nothing; a game client cannot open a
//! node connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use zonemesh_server::cluster::transport::{NodePacket, NodeTransport, Received, TransportConfig};
use zonemesh_server::dev::load_or_create;
use zonemesh_shared::node::NodeRef;

const SECRET: &[u8] = b"cluster-secret-0123456789abcdef!";
const WAIT: Duration = Duration::from_secs(10);

fn start(
    me: NodeRef,
    secret: &[u8],
) -> (NodeTransport, mpsc::Receiver<Received>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = load_or_create(dir.path()).expect("dev identity");
    let config = TransportConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        me,
        secret: secret.to_vec(),
        tls: identity.tls,
        inbox_capacity: 64,
        max_peers: 16,
    };
    let (transport, inbox) = NodeTransport::start(config).expect("transport starts");
    (transport, inbox, dir)
}

async fn next(inbox: &mut mpsc::Receiver<Received>) -> Received {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("a packet arrives in time")
        .expect("transport running")
}

#[tokio::test]
async fn nodes_with_the_secret_exchange_packets_and_know_the_sender() {
    let (a_node, b_node) = (NodeRef::new(0xa, 1), NodeRef::new(0xb, 7));
    let (a, mut a_inbox, _a_dir) = start(a_node, SECRET);
    let (b, mut b_inbox, _b_dir) = start(b_node, SECRET);
    let b_addr = b.local_addr().expect("addr");

    a.send(b_addr, &NodePacket::Gossip(Bytes::from_static(b"ping")));
    let got = next(&mut b_inbox).await;
    assert_eq!(got.from, a_node);
    assert_eq!(got.packet, NodePacket::Gossip(Bytes::from_static(b"ping")));

    // b answers over the connection a opened (it knows a by its address).
    b.send(got.addr, &NodePacket::Message(Bytes::from_static(b"pong")));
    let back = next(&mut a_inbox).await;
    assert_eq!(back.from, b_node);
    assert_eq!(
        back.packet,
        NodePacket::Message(Bytes::from_static(b"pong"))
    );
    assert_eq!(a.connected_peers(), vec![(b_addr, b_node)]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_without_the_secret_is_refused_and_delivers_nothing() {
    let (a, mut a_inbox, _a_dir) = start(NodeRef::new(0xa, 1), SECRET);
    let (outsider, _o_inbox, _o_dir) =
        start(NodeRef::new(0xbad, 1), b"some-other-secret-0123456789abcd");
    let a_addr = a.local_addr().expect("addr");
    for _ in 0..20 {
        outsider.send(
            a_addr,
            &NodePacket::Gossip(Bytes::from_static(b"let me in")),
        );
    }
    // Both sides see the failed handshake: the acceptor checks the outsider's proof
    // first, and the outsider sees the close.
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.stats().n_auth_failures == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no authentication failure seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.connected_peers().is_empty());
    assert!(outsider.connected_peers().is_empty());
    assert!(
        a_inbox.try_recv().is_err(),
        "nothing from the outsider was delivered"
    );
    assert_eq!(a.stats().n_received, 0);
    a.shutdown().await;
    outsider.shutdown().await;
}

#[tokio::test]
async fn a_game_client_cannot_open_a_node_connection() {
    let (a, _a_inbox, _a_dir) = start(NodeRef::new(0xa, 1), SECRET);
    let a_addr = a.local_addr().expect("addr");
    let config = zonemesh_client::ClientConfig::new(
        a_addr,
        zonemesh_client::Trust::InsecureDev,
        "zm1.00.00",
    );
    let result = tokio::time::timeout(WAIT, zonemesh_client::Client::connect(config)).await;
    let err = match result {
        Ok(Err(e)) => e,
        other => panic!("the node endpoint must refuse a game client, got {other:?}"),
    };
    // TLS alert 120, no_application_protocol: the ALPNs differ.
    assert!(err.to_string().contains("protocol"), "{err}");
    a.shutdown().await;
}
