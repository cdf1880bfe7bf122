//! The legs of a redirected connect on their own: a QUIC handshake with a node that
//! does not hold the player's zone, `Hello`, and that node's answer, timed at the
//! handshake and at the answer; then the second leg to the node the `Redirect` named,
//! resumed with 0-RTT as the SDK does it and with a full handshake (see
//! [`SecondLeg`]). It speaks the protocol directly with the SDK's TLS and transport
//! settings, and never lets the player in.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use zonemesh_client::{Client, ClientConfig};
use zonemesh_shared::PROTOCOL_VERSION;
use zonemesh_shared::control::{ClientControl, FrameDecoder, ServerControl};

/// Longest the leg may take.
const LEG_LIMIT: Duration = Duration::from_secs(10);
/// Longest the endpoint may take to close.
const CLOSE_LIMIT: Duration = Duration::from_millis(500);
/// Bytes read from the control stream at a time.
const READ_CHUNK: usize = 4096;

/// How a node answered `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Redirect,
    Loading,
    Busy,
    Welcome,
    /// `Error`: what the second legs' altered token gets.
    Error,
    Other,
}

/// One timed leg.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leg {
    /// From the start (a new endpoint, as `Client::connect` makes) to the completed
    /// QUIC handshake; for a 0-RTT leg, where `Hello` goes before the handshake ends,
    /// the same as `answered`.
    pub(crate) handshake: Duration,
    /// From the start to the node's answer to `Hello`.
    pub(crate) answered: Duration,
    pub(crate) answer: Answer,
}

/// The legs of one redirect, timed on their own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedirectLegs {
    /// Handshake, `Hello`, `Redirect` from the entry node.
    pub(crate) first: Leg,
    /// The second leg, to the node the `Redirect` named (when it was one).
    pub(crate) second: Option<SecondLeg>,
}

/// The second leg of a redirect twice: as the SDK makes it, resuming the TLS session
/// the entry node issued in the first leg (the nodes share them) with `Hello` in the
/// first packet, and, as the baseline, with a fresh TLS configuration (a full
/// handshake, then `Hello`): the cost of any first connection to a node. Both send a
/// `Hello` whose redirect token was altered, so the node answers at once (an `Error`)
/// instead of at its zone's next tick, and no player goes in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecondLeg {
    pub(crate) resumed: Leg,
    /// Whether the node took the resumed leg's `Hello` as 0-RTT data.
    pub(crate) zero_rtt: bool,
    pub(crate) fresh: Leg,
}

/// Connects `player` to `addr`, says `Hello` and times the answer; if the answer is a
/// `Redirect`, times the second leg both ways (see [`SecondLeg`]).
pub(crate) async fn redirect_legs(
    addr: SocketAddr,
    shared: &Path,
    player: &str,
) -> anyhow::Result<RedirectLegs> {
    // Reading the identity files and minting the token are not the connect's cost.
    let config = ClientConfig::from_dev_data(addr, shared, player)?;
    let quic = config.quic_client_config()?;
    let hello = hello_frame(config.token.clone());
    let (first, redirect, _) = timed_hello(&quic, addr, &config.server_name, &hello).await?;
    let Some((target, token)) = redirect else {
        return Ok(RedirectLegs {
            first,
            second: None,
        });
    };
    let target: SocketAddr = target.parse().context("the Redirect's address")?;
    let altered = hello_frame(alter(&token));
    let (resumed, _, zero_rtt) = timed_hello(&quic, target, &config.server_name, &altered).await?;
    let fresh_quic = config.quic_client_config()?;
    let (fresh, ..) = timed_hello(&fresh_quic, target, &config.server_name, &altered).await?;
    Ok(RedirectLegs {
        first,
        second: Some(SecondLeg {
            resumed,
            zero_rtt,
            fresh,
        }),
    })
}

fn hello_frame(token: String) -> Vec<u8> {
    ClientControl::Hello {
        version: PROTOCOL_VERSION,
        token,
    }
    .to_frame()
}

/// `token` with its last character changed: still well formed, no longer signed.
fn alter(token: &str) -> String {
    let mut altered = token.to_owned();
    let last = altered.pop();
    altered.push(if last == Some('0') { '1' } else { '0' });
    altered
}

/// One connection on a new endpoint with `quic`: `Hello` (with 0-RTT when `quic`
/// holds a TLS session the node takes), the answer, a `Redirect`'s address and token,
/// and whether the node took the `Hello` as 0-RTT data.
async fn timed_hello(
    quic: &quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    hello: &[u8],
) -> anyhow::Result<(Leg, Option<(String, String)>, bool)> {
    let start = Instant::now();
    let endpoint = Client::bind_endpoint(addr)?;
    let leg = tokio::time::timeout(LEG_LIMIT, async {
        let connecting = endpoint.connect_with(quic.clone(), addr, server_name)?;
        let (conn, early) = match connecting.into_0rtt() {
            Ok((conn, accepted)) => (conn, Some(accepted)),
            Err(connecting) => (connecting.await.context("handshake")?, None),
        };
        let handshake = start.elapsed();
        let (mut send, mut recv) = conn.open_bi().await.context("control stream")?;
        send.write_all(hello).await.context("sending Hello")?;
        let (answer, redirect) = read_answer(&mut recv).await?;
        let answered = start.elapsed();
        let took_early = match early {
            Some(accepted) => accepted.await,
            None => false,
        };
        conn.close(quinn::VarInt::from_u32(0), b"measured");
        let leg = Leg {
            handshake: if took_early { answered } else { handshake },
            answered,
            answer,
        };
        anyhow::Ok((leg, redirect, took_early))
    })
    .await
    .context("the leg timed out")?;
    let _ = tokio::time::timeout(CLOSE_LIMIT, endpoint.wait_idle()).await;
    leg
}

/// Reads the first control frame and names it, with a `Redirect`'s address and token.
async fn read_answer(
    recv: &mut quinn::RecvStream,
) -> anyhow::Result<(Answer, Option<(String, String)>)> {
    let mut decoder = FrameDecoder::default();
    let mut buf = [0u8; READ_CHUNK];
    loop {
        if let Some(body) = decoder.next_frame()? {
            return Ok(match ServerControl::decode(&body)? {
                ServerControl::Redirect { addr, token } => (Answer::Redirect, Some((addr, token))),
                ServerControl::Loading { .. } => (Answer::Loading, None),
                ServerControl::Busy { .. } => (Answer::Busy, None),
                ServerControl::Welcome { .. } => (Answer::Welcome, None),
                ServerControl::Error { .. } => (Answer::Error, None),
                _ => (Answer::Other, None),
            });
        }
        match recv.read(&mut buf).await.context("reading the answer")? {
            Some(n) => decoder.push(&buf[..n]),
            None => bail!("the stream ended before an answer"),
        }
    }
}
