//! How a client got to its server stays observable: redirects followed and node
//! changes (`Client::redirects_followed`, `Client::node_changes`), on scripted QUIC
//! servers; and a redirect loop ends at the hop limit with `TooManyRedirects`.

mod common;

use common::{Control, TestServer, welcome, within};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use zonemesh_client::{BlockingClient, Client, ClientError, Trust};
use zonemesh_shared::control::ServerControl;

/// Answers `Hello` with a redirect to `addr` carrying `token`, and waits for the
/// client to close.
async fn redirect(conn: quinn::Connection, addr: SocketAddr, token: &str) {
    let (mut control, _) = Control::accept(&conn).await;
    let redirect = ServerControl::Redirect {
        addr: addr.to_string(),
        token: token.to_owned(),
    };
    control.answer(&[redirect]).await;
    conn.closed().await;
}

/// Welcomes the client and keeps the session until the client closes it.
async fn welcome_session(conn: quinn::Connection) {
    let (mut control, _) = Control::accept(&conn).await;
    control.answer(&[welcome()]).await;
    conn.closed().await;
}

/// A server that welcomes everyone.
fn home() -> TestServer {
    TestServer::start(|_, conn| welcome_session(conn))
}

/// A server that redirects everyone to `target`.
fn entry(target: SocketAddr) -> TestServer {
    TestServer::start(move |_, conn| redirect(conn, target, "for-home"))
}

#[tokio::test]
async fn a_redirect_to_another_node_is_one_redirect_and_one_node_change() {
    let home = home();
    let entry = entry(home.addr);
    let mut config = entry.config("for-entry");
    config.trust = Trust::PinnedCert(vec![entry.cert.clone(), home.cert.clone()]);
    let client = within("connect", Client::connect(config))
        .await
        .expect("welcomed after the redirect");
    assert_eq!(client.remote_address(), home.addr);
    assert_eq!(client.redirects_followed(), 1);
    assert_eq!(client.node_changes(), 1);
    assert_eq!((entry.accepted(), home.accepted()), (1, 1));
}

#[tokio::test]
async fn a_direct_connect_has_no_redirect_and_no_node_change() {
    let home = home();
    let client = within("connect", Client::connect(home.config("tok")))
        .await
        .expect("welcomed");
    assert_eq!(client.remote_address(), home.addr);
    assert_eq!((client.redirects_followed(), client.node_changes()), (0, 0));
}

#[tokio::test]
async fn a_redirect_back_to_the_same_address_is_no_node_change() {
    // The first connection is redirected to this very server, the second welcomed.
    let own_addr = Arc::new(OnceLock::<SocketAddr>::new());
    let addr_for_handler = Arc::clone(&own_addr);
    let server = TestServer::start(move |n, conn| {
        let own = addr_for_handler.get().copied();
        async move {
            match (n, own) {
                (0, Some(own)) => redirect(conn, own, "again").await,
                _ => welcome_session(conn).await,
            }
        }
    });
    own_addr.set(server.addr).expect("set once");
    let client = within("connect", Client::connect(server.config("tok")))
        .await
        .expect("welcomed on the second connection");
    assert_eq!(server.accepted(), 2);
    assert_eq!(client.redirects_followed(), 1);
    assert_eq!(
        client.node_changes(),
        0,
        "the session never left this address"
    );
}

#[tokio::test]
async fn a_redirect_loop_ends_at_the_hop_limit() {
    // Two servers redirecting to each other: no session can ever be welcomed.
    let b_addr = Arc::new(OnceLock::<SocketAddr>::new());
    let b_for_a = Arc::clone(&b_addr);
    let a = TestServer::start(move |_, conn| {
        let b = b_for_a.get().copied();
        async move {
            let b = b.expect("b started before any client");
            redirect(conn, b, "to-b").await;
        }
    });
    let b = entry(a.addr);
    b_addr.set(b.addr).expect("set once");
    let mut config = a.config("tok");
    config.trust = Trust::PinnedCert(vec![a.cert.clone(), b.cert.clone()]);
    config.max_redirects = 3;
    match within("connect", Client::connect(config)).await {
        Err(ClientError::TooManyRedirects { limit }) => assert_eq!(limit, 3),
        other => panic!("expected TooManyRedirects, got {other:?}"),
    }
    // The first connection plus one per redirect followed; the fourth redirect is not.
    assert_eq!(a.accepted() + b.accepted(), 4);
}

#[test]
fn the_blocking_client_reports_its_route() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (home, entry) = runtime.block_on(async {
        let home = home();
        let entry = entry(home.addr);
        (home, entry)
    });
    let mut config = entry.config("for-entry");
    config.trust = Trust::PinnedCert(vec![entry.cert.clone(), home.cert.clone()]);
    let client = BlockingClient::connect(config).expect("welcomed after the redirect");
    assert_eq!(client.remote_address(), home.addr);
    assert_eq!((client.redirects_followed(), client.node_changes()), (1, 1));
    client.close();
    drop((home, entry));
}
